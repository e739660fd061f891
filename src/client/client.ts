import * as grpc from "@grpc/grpc-js";
import { ErrorInfo } from "../../gen/ts/google/rpc/error_details.js";
import { Status } from "../../gen/ts/google/rpc/status.js";
import {
  ContainerStatus as WireStatus,
  ShimServiceClient,
  type StartResponse,
  type StateResponse,
} from "../../gen/ts/runcshim/v1/shim.js";

/** Type URL of `google.rpc.ErrorInfo` inside `google.protobuf.Any`. */
const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
/** The trailer that carries the binary `google.rpc.Status`. */
const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** A container's status as the client reports it. */
export type ContainerStatusName = "unspecified" | "created" | "running" | "stopped" | "paused" | "pausing";

const STATUS_NAMES: Record<number, ContainerStatusName> = {
  [WireStatus.CONTAINER_STATUS_UNSPECIFIED]: "unspecified",
  [WireStatus.CONTAINER_STATUS_CREATED]: "created",
  [WireStatus.CONTAINER_STATUS_RUNNING]: "running",
  [WireStatus.CONTAINER_STATUS_STOPPED]: "stopped",
  [WireStatus.CONTAINER_STATUS_PAUSED]: "paused",
  [WireStatus.CONTAINER_STATUS_PAUSING]: "pausing",
};

/** A container's state, as State returns it, with plain JavaScript types. */
export interface ContainerStateView {
  /** Container id. */
  id: string;
  /** Init pid; 0 when stopped. */
  pid: number;
  /** Derived status. */
  status: ContainerStatusName;
  /** Absolute bundle path. */
  bundle: string;
  /** Absolute rootfs path. */
  rootfs: string;
  /** Creation time, RFC 3339 with nanoseconds in UTC (e.g. `2026-11-29T15:23:59.278308126Z`). */
  created: string;
  /** Creation time: whole seconds since the Unix epoch. */
  createdSeconds: number;
  /** Creation time: nanoseconds within the second. */
  createdNanos: number;
  /** The container's annotations (its `key=value` labels other than `bundle`). */
  annotations: Record<string, string>;
  /** Always "" (as `runc state`). */
  owner: string;
  /** OCI runtime-spec version runc was built with. */
  ociVersion: string;
}

/**
 * The one error class of the client: a failed call, with the gRPC status code,
 * the server's message, and the `google.rpc.ErrorInfo` the server sent in the
 * `grpc-status-details-bin` trailer, decoded.
 */
export class ShimError extends Error {
  /** The gRPC status code (e.g. `grpc.status.NOT_FOUND` = 5). */
  readonly code: grpc.status;
  /** The code's name, e.g. `NOT_FOUND`. */
  readonly codeName: string;
  /** The server's message (`details` of the status), e.g. `container does not exist`. */
  readonly details: string;
  /**
   * `ErrorInfo.reason`: the libcontainer error code in UPPER_SNAKE_CASE
   * (`INVALID_ID_FORMAT`, `CONTAINER_NOT_EXISTS`, `CONFIG_INVALID`, `SYSTEM_ERROR`,
   * `CONTAINER_RUNNING`, `CONTAINER_STOPPED`, `CONTAINER_PAUSED`, `DEADLINE_EXCEEDED`,
   * `CANCELLED`), or `undefined` when the server sent no ErrorInfo (for example a
   * deadline that passed on the client side).
   */
  readonly reason: string | undefined;
  /** `ErrorInfo.domain` (`runc-shim`), when sent. */
  readonly domain: string | undefined;
  /** `ErrorInfo.metadata` (e.g. `{ container_id: "c1" }`), `{}` when not sent. */
  readonly metadata: Record<string, string>;

  constructor(code: grpc.status, details: string, info?: { reason: string; domain: string; metadata: Record<string, string> }) {
    super(`${grpc.status[code] ?? code}: ${details}`);
    this.name = "ShimError";
    this.code = code;
    this.codeName = grpc.status[code] ?? String(code);
    this.details = details;
    this.reason = info?.reason;
    this.domain = info?.domain;
    this.metadata = info?.metadata ?? {};
  }

  /** Builds a ShimError from a grpc-js `ServiceError`, decoding its ErrorInfo. */
  static fromServiceError(e: grpc.ServiceError): ShimError {
    return new ShimError(e.code, e.details, decodeErrorInfo(e.metadata?.get(STATUS_DETAILS_KEY)[0]));
  }
}

/**
 * Decodes the first `google.rpc.ErrorInfo` from a `grpc-status-details-bin` value.
 * @returns it, or `undefined` when absent or not decodable
 */
export function decodeErrorInfo(
  value: grpc.MetadataValue | undefined,
): { reason: string; domain: string; metadata: Record<string, string> } | undefined {
  if (value === undefined || typeof value === "string") return undefined;
  try {
    const any = Status.decode(value).details.find((d) => d.typeUrl === ERROR_INFO_TYPE_URL);
    if (any === undefined) return undefined;
    const info = ErrorInfo.decode(any.value);
    return { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
  } catch {
    return undefined;
  }
}

/** Per-call options. */
export interface CallOptions {
  /** Deadline of the call, in ms from now. Start: until the init process signals; nothing changes if it passes first. */
  deadlineMs?: number;
  /** Cancels the call when aborted (the call then fails with CANCELLED). */
  signal?: AbortSignal;
}

/** Options of {@link createShimClient}. */
export interface ShimClientOptions {
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

/** A promise-based client of `runcshim.v1.ShimService`. */
export interface ShimClient {
  /**
   * Starts a created container.
   * @returns the init pid
   * @throws {ShimError} INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, DEADLINE_EXCEEDED, CANCELLED, INTERNAL, UNAVAILABLE
   */
  start(id: string, options?: CallOptions): Promise<number>;
  /**
   * A container's state, status derived on this call.
   * @throws {ShimError} INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, INTERNAL, UNAVAILABLE
   */
  state(id: string, options?: CallOptions): Promise<ContainerStateView>;
  /** The underlying generated grpc-js client, for calls this wrapper does not cover. */
  readonly raw: ShimServiceClient;
  /** Closes the channel. */
  close(): void;
}

/** `/run/x.sock`, `unix:/run/x.sock` or `unix:///run/x.sock` -> a grpc-js target. */
export function targetOf(address: string): string {
  if (address.startsWith("unix:")) return address;
  return `unix://${address.startsWith("/") ? "" : `${process.cwd()}/`}${address}`;
}

/** RFC 3339 in UTC with nanoseconds, as Go's RFC3339Nano prints it (trailing zeros trimmed). */
export function formatTimestamp(seconds: number, nanos: number): string {
  const base = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  const frac = nanos === 0 ? "" : `.${String(nanos).padStart(9, "0").replace(/0+$/, "")}`;
  return `${base}${frac}Z`;
}

/** Converts a `StateResponse` to a {@link ContainerStateView}. */
export function stateView(r: StateResponse): ContainerStateView {
  const seconds = Number(r.created?.seconds ?? 0);
  const nanos = r.created?.nanos ?? 0;
  return {
    id: r.id,
    pid: r.pid,
    status: STATUS_NAMES[r.status] ?? "unspecified",
    bundle: r.bundle,
    rootfs: r.rootfs,
    created: formatTimestamp(seconds, nanos),
    createdSeconds: seconds,
    createdNanos: nanos,
    annotations: { ...r.annotations },
    owner: r.owner,
    ociVersion: r.ociVersion,
  };
}

/**
 * Creates a client of a runc-shim server.
 *
 * @param address the server's Unix socket: `/path`, `unix:/path` or `unix:///path`
 * @example
 * ```ts
 * import { createShimClient } from "runc-shim";
 * const shim = createShimClient("/run/runc-shim/shim.sock");
 * const pid = await shim.start("c1", { deadlineMs: 5000 });
 * console.log((await shim.state("c1")).status); // "running"
 * shim.close();
 * ```
 */
export function createShimClient(address: string, options: ShimClientOptions = {}): ShimClient {
  const raw = new ShimServiceClient(targetOf(address), grpc.credentials.createInsecure(), options.channelOptions);
  function call<Req, Res>(
    method: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => grpc.ClientUnaryCall,
    req: Req,
    opts: CallOptions,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new ShimError(grpc.status.CANCELLED, "call cancelled before it was sent"));
        return;
      }
      const callOpts: Partial<grpc.CallOptions> = opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs };
      const onAbort = (): void => c.cancel();
      const c = method.call(raw, req, new grpc.Metadata(), callOpts, (e, r) => {
        opts.signal?.removeEventListener("abort", onAbort);
        if (e) reject(ShimError.fromServiceError(e));
        else resolve(r);
      });
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
  return {
    raw,
    async start(id, opts = {}) {
      const r = await call<{ id: string }, StartResponse>(raw.start, { id }, opts);
      return r.pid;
    },
    async state(id, opts = {}) {
      return stateView(await call<{ id: string }, StateResponse>(raw.state, { id }, opts));
    },
    close() {
      raw.close();
    },
  };
}
