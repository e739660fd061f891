import os from "node:os";
import * as grpc from "@grpc/grpc-js";
import { ERROR_INFO_TYPE_URL, STATUS_DETAILS_KEY } from "../wire.js";
import { ErrorInfo } from "../../gen/ts/google/rpc/error_details.js";
import { Status } from "../../gen/ts/google/rpc/status.js";
import {
  ContainerStatus as WireStatus,
  ShimServiceClient,
  WatchEventKind as WireEventKind,
  type ContainerEntry,
  type CreateRequest,
  type CreateResponse,
  type DeleteRequest,
  type DeleteResponse,
  type KillRequest,
  type KillResponse,
  type ListResponse,
  type PauseRequest,
  type PauseResponse,
  type ResumeRequest,
  type ResumeResponse,
  type StartResponse,
  type StateResponse,
  type WatchResponse,
} from "../../gen/ts/runcshim/v1/shim.js";


/**
 * Largest message the client accepts, in bytes (grpc-js defaults to 4 MiB): a
 * List answer takes 100 to 400 bytes per container.
 */
export const MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024 * 1024;

/** A container's status as the client reports it. */
export type ContainerStatusName = "unspecified" | "created" | "running" | "stopped" | "paused" | "pausing";

/** Wire status number -> name (numbers of containerd.v1.types.Status). */
export const STATUS_NAMES: Readonly<Record<number, ContainerStatusName>> = {
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

/** Why one container of a List or Watch answer could not be loaded. */
export interface ContainerErrorView {
  /**
   * The libcontainer error code in UPPER_SNAKE_CASE, as in ErrorInfo reasons:
   * `SYSTEM_ERROR` (corrupt state.json, I/O error), `CONTAINER_NOT_EXISTS` (no
   * state.json), `INVALID_ID_FORMAT` (a directory name that is not a valid id),
   * `INTERNAL` (a server bug).
   */
  code: string;
  /** The error message, as State would send it. */
  message: string;
}

/**
 * One container of a List answer or a Watch message: `state` when it loaded
 * (with `owner` set to the user owning its state dir, as `runc list` shows),
 * else `error`.
 */
export interface ContainerEntryView {
  /** The container id (the name of its state dir). */
  id: string;
  /** Its state; `undefined` when it failed to load, or in a `removed` watch event. */
  state?: ContainerStateView;
  /** Why it failed to load; `undefined` when it loaded. */
  error?: ContainerErrorView;
}

/**
 * What a Watch message reports:
 * - `initial`: a container that existed when the watch began (these come first);
 * - `synced`: every `initial` message has been received (exactly once; `id` is "");
 * - `appeared`: a container was created after the watch began;
 * - `changed`: a container's status, pid, creation time or load error changed;
 * - `removed`: a container was deleted (no `state`, no `error`).
 */
export type WatchEventKindName = "initial" | "synced" | "appeared" | "changed" | "removed";

/** One Watch message. */
export interface WatchEventView extends ContainerEntryView {
  /** What happened. */
  kind: WatchEventKindName;
}

/** Options of {@link ShimClient.watch}. */
export interface WatchOptions {
  /** Ends the watch when aborted: the iteration then simply finishes. */
  signal?: AbortSignal;
  /**
   * `WatchRequest.max_batch`: above 1, the server may send up to that many
   * events per message (fewer messages to sync a large root); the iteration
   * yields the same events either way. Unset: one event per message.
   */
  maxBatch?: number;
}

const EVENT_KIND_NAMES: Record<number, WatchEventKindName> = {
  [WireEventKind.WATCH_EVENT_KIND_INITIAL]: "initial",
  [WireEventKind.WATCH_EVENT_KIND_SYNCED]: "synced",
  [WireEventKind.WATCH_EVENT_KIND_APPEARED]: "appeared",
  [WireEventKind.WATCH_EVENT_KIND_CHANGED]: "changed",
  [WireEventKind.WATCH_EVENT_KIND_REMOVED]: "removed",
};

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

/** What {@link ShimClient.create} is given besides the id. */
export interface CreateOptions {
  /** Absolute path of the OCI bundle dir (holding config.json). */
  bundle: string;
  /** Absolute paths for the init process's stdio; omitted or "" means /dev/null. */
  stdin?: string;
  stdout?: string;
  stderr?: string;
}

/**
 * A signal as `runc kill` takes it: a number, or a name with or without
 * `SIG` in any case (`KILL`, `sigterm`, `9`). Names are those of Linux's
 * signals 1–31 (`os.constants.signals`).
 * @returns the number
 * @throws {ShimError} INVALID_ARGUMENT (`unknown signal "X"`), without a call
 */
export function parseSignal(signal: number | string | undefined): number {
  if (signal === undefined || signal === "") return 0;
  if (typeof signal === "number") {
    // The wire field is a uint32; the server takes 0-64 and says why it refuses more.
    if (!Number.isInteger(signal) || signal < 0 || signal > 0xffffffff) {
      throw new ShimError(grpc.status.INVALID_ARGUMENT, `invalid signal ${signal}: expected 1-64 (0 means SIGTERM)`, undefined);
    }
    return signal;
  }
  if (/^[+]?\d+$/.test(signal)) return Number(signal);
  const upper = signal.toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  const n = (os.constants.signals as Record<string, number | undefined>)[name];
  if (n === undefined || n > 31 || name === "SIGIOT" || name === "SIGPOLL" || name === "SIGUNUSED") {
    throw new ShimError(grpc.status.INVALID_ARGUMENT, `unknown signal ${JSON.stringify(signal)}`, undefined);
  }
  return n;
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
  /**
   * Every container of the served state root, sorted by id, like `runc list`
   * (symlinked entries skipped). A container that fails to load is an entry
   * with `error` rather than a failed call.
   * @throws {ShimError} FAILED_PRECONDITION (state root unusable), INTERNAL, UNAVAILABLE
   */
  list(options?: CallOptions): Promise<ContainerEntryView[]>;
  /**
   * Watches one container (`id`), or every container of the root (`id`
   * omitted or ""). Yields first one `initial` event per existing container,
   * then `synced`, then one event per change in the order the changes
   * happened. A consumer that reads slowly gets the latest state of each
   * container rather than every intermediate one (the server merges what it
   * cannot send yet, and so does this client, whose grpc-js reads the socket
   * eagerly: see {@link WatchQueue}). The call starts when the
   * iteration starts; leaving the loop (`break`) or aborting `signal` cancels
   * it and the iteration finishes without error. A server that shuts down
   * cancels open watches: the iteration then throws a ShimError `CANCELLED`
   * (watch again once a server is back); a stream the server ends with OK
   * finishes the iteration. Messages of a kind this client does not know (from
   * a newer server) are skipped.
   *
   * @example
   * ```ts
   * const ac = new AbortController();
   * for await (const ev of shim.watch("c1", { signal: ac.signal })) {
   *   console.log(ev.kind, ev.state?.status);
   *   if (ev.kind === "removed") break;
   * }
   * ```
   * @throws {ShimError} INVALID_ARGUMENT (bad id), FAILED_PRECONDITION (state root unusable, also when it
   *   becomes so), CANCELLED (the server shut down), INTERNAL, UNAVAILABLE
   */
  watch(id?: string, options?: WatchOptions): AsyncIterable<WatchEventView>;
  /**
   * Creates a container from an OCI bundle through `runc create` (the one call
   * that runs runc). `stdin`/`stdout`/`stderr` are absolute paths the server
   * opens for the init process (a regular file is created 0600 and appended
   * to, a FIFO opened read-write; omitted means /dev/null).
   * @returns the init pid (the container is then `created`)
   * @throws {ShimError} INVALID_ARGUMENT (bad id or bundle, a terminal asked for, bad stdio path),
   *   ALREADY_EXISTS (`container with given ID already exists`), FAILED_PRECONDITION (runc failed: its
   *   message, reason RUNC_FAILED; runc not found, RUNC_NOT_FOUND), DEADLINE_EXCEEDED / CANCELLED (runc
   *   was killed, nothing created), UNAVAILABLE
   */
  create(id: string, request: CreateOptions, options?: CallOptions): Promise<number>;
  /**
   * Sends a signal to the container's init process, or with `all` to every
   * process of its cgroup (a paused container then stays paused). `signal` is
   * a number (1–64; 0 or omitted: SIGTERM) or a name (`KILL`, `SIGKILL`).
   * @throws {ShimError} INVALID_ARGUMENT (bad id or signal), NOT_FOUND, FAILED_PRECONDITION (`container not
   *   running`, reason CONTAINER_NOT_RUNNING), INTERNAL, UNAVAILABLE
   */
  kill(id: string, signal?: number | string, options?: CallOptions & { all?: boolean }): Promise<void>;
  /**
   * Freezes a created or running container's cgroup.
   * @throws {ShimError} INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION (`container not running`,
   *   CONTAINER_NOT_RUNNING; no freezer, NO_FREEZER), INTERNAL (the freeze failed and was undone), UNAVAILABLE
   */
  pause(id: string, options?: CallOptions): Promise<void>;
  /**
   * Thaws a paused container's cgroup.
   * @throws {ShimError} INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION (`container not paused`,
   *   CONTAINER_NOT_PAUSED), INTERNAL, UNAVAILABLE
   */
  resume(id: string, options?: CallOptions): Promise<void>;
  /**
   * Deletes a container as `runc delete` does (a created one is killed first;
   * a running or paused one only with `force`).
   * @returns the init pid the container had
   * @throws {ShimError} INVALID_ARGUMENT, NOT_FOUND (without force), FAILED_PRECONDITION (`cannot delete
   *   container ID that is not stopped: STATUS`, or `container init still running`, CONTAINER_NOT_STOPPED),
   *   INTERNAL (corrupt state.json), UNAVAILABLE
   */
  delete(id: string, options?: CallOptions & { force?: boolean }): Promise<number>;
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

/** Converts a `ContainerEntry` message to a {@link ContainerEntryView}. */
export function entryView(e: ContainerEntry): ContainerEntryView {
  const r = e.result;
  if (r?.$case === "state") return { id: e.id, state: stateView(r.value) };
  if (r?.$case === "error") return { id: e.id, error: { code: r.value.code, message: r.value.message } };
  return { id: e.id };
}

/**
 * Converts a `WatchResponse` message to a {@link WatchEventView}, or `undefined`
 * for a kind this client does not know (from a newer server).
 */
export function watchEventView(m: WatchResponse): WatchEventView | undefined {
  const kind = EVENT_KIND_NAMES[m.kind];
  if (kind === undefined) return undefined;
  return { kind, ...(m.container === undefined ? { id: "" } : entryView(m.container)) };
}

/**
 * Watch events not yet taken by the consumer, at most one per container (plus
 * `synced`), merged by the rules the server applies to a stream that is not
 * writable: a newer event replaces the pending one of its container and moves
 * to the end, except that a pending `initial` keeps its kind and place, a
 * pending `initial`/`appeared` keeps its kind and vanishes with a `removed`,
 * and `removed` then `appeared` becomes `changed`.
 */
export class WatchQueue {
  private readonly pending = new Map<string, WatchEventView>();

  /** Events waiting. */
  get size(): number {
    return this.pending.size;
  }

  /** Adds an event, merging it with its container's pending one. */
  push(ev: WatchEventView): void {
    const key = ev.kind === "synced" ? "" : ev.id;
    const queued = this.pending.get(key);
    if (queued === undefined || ev.kind === "synced") {
      this.pending.set(key, ev);
    } else if (queued.kind === "initial") {
      if (ev.kind === "removed") this.pending.delete(key);
      else this.pending.set(key, { ...ev, kind: "initial" });
    } else if (queued.kind === "appeared") {
      this.pending.delete(key);
      if (ev.kind !== "removed") this.pending.set(key, { ...ev, kind: "appeared" });
    } else {
      this.pending.delete(key);
      this.pending.set(key, queued.kind === "removed" && ev.kind !== "removed" ? { ...ev, kind: "changed" } : ev);
    }
  }

  /** Takes the oldest event, or `undefined`. */
  take(): WatchEventView | undefined {
    const first = this.pending.entries().next();
    if (first.done === true) return undefined;
    this.pending.delete(first.value[0]);
    return first.value[1];
  }
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as grpc.ServiceError).code === "number" && "metadata" in e;
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
  const raw = new ShimServiceClient(targetOf(address), grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX_RECEIVE_MESSAGE_BYTES,
    ...options.channelOptions,
  });
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
    async list(opts = {}) {
      const r = await call<Record<string, never>, ListResponse>(raw.list, {}, opts);
      return r.containers.map(entryView);
    },
    async *watch(id = "", opts = {}) {
      const signal = opts.signal;
      if (signal?.aborted) return;
      const stream = raw.watch({ id, maxBatch: opts.maxBatch ?? 0 });
      // grpc-js reads the socket whether or not we consume, so messages are merged here as the
      // server merges them for a stream that is not writable: one pending event per container.
      const pending = new WatchQueue();
      let ended: { error?: unknown } | undefined;
      let wake: (() => void) | undefined;
      const poke = (): void => {
        wake?.();
        wake = undefined;
      };
      stream.on("data", (m: WatchResponse) => {
        for (const one of m.batch !== undefined ? m.batch.events : [m]) {
          const ev = watchEventView(one);
          if (ev !== undefined) pending.push(ev);
        }
        poke();
      });
      stream.on("error", (e: unknown) => {
        ended ??= { error: e };
        poke();
      });
      stream.on("end", () => {
        ended ??= {};
        poke();
      });
      const onAbort = (): void => stream.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for (;;) {
          if (signal?.aborted) return;
          const ev = pending.take();
          if (ev !== undefined) {
            yield ev;
            continue;
          }
          if (ended !== undefined) break;
          await new Promise<void>((resolve) => (wake = resolve));
        }
        const e = ended.error;
        if (e === undefined) return;
        if (isServiceError(e)) {
          if (e.code === grpc.status.CANCELLED && signal?.aborted) return;
          throw ShimError.fromServiceError(e);
        }
        throw e;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        stream.cancel();
      }
    },
    async create(id, request, opts = {}) {
      const r = await call<CreateRequest, CreateResponse>(raw.create, {
        id,
        bundle: request.bundle,
        terminal: false,
        stdin: request.stdin ?? "",
        stdout: request.stdout ?? "",
        stderr: request.stderr ?? "",
      }, opts);
      return r.pid;
    },
    async kill(id, signal, opts = {}) {
      await call<KillRequest, KillResponse>(raw.kill, { id, signal: parseSignal(signal), all: opts.all === true }, opts);
    },
    async pause(id, opts = {}) {
      await call<PauseRequest, PauseResponse>(raw.pause, { id }, opts);
    },
    async resume(id, opts = {}) {
      await call<ResumeRequest, ResumeResponse>(raw.resume, { id }, opts);
    },
    async delete(id, opts = {}) {
      const r = await call<DeleteRequest, DeleteResponse>(raw.delete, { id, force: opts.force === true }, opts);
      return r.pid;
    },
    close() {
      raw.close();
    },
  };
}
