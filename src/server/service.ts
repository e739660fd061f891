import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import {
  ContainerStatus as WireStatus,
  type ShimServiceServer,
  type StartRequest,
  type StartResponse,
  type StateRequest,
  type StateResponse,
} from "../../gen/ts/runcshim/v1/shim.js";
import type { ContainerState, StateRoot } from "../runtime/container.js";
import type { ContainerStatus } from "../runtime/status.js";
import { unary, type CallTracker } from "./unary.js";

/** Domain status -> wire enum (numbers of containerd.v1.types.Status). */
export const WIRE_STATUS: Readonly<Record<ContainerStatus, WireStatus>> = {
  created: WireStatus.CONTAINER_STATUS_CREATED,
  running: WireStatus.CONTAINER_STATUS_RUNNING,
  stopped: WireStatus.CONTAINER_STATUS_STOPPED,
  paused: WireStatus.CONTAINER_STATUS_PAUSED,
  pausing: WireStatus.CONTAINER_STATUS_PAUSING,
};

/** Converts the domain state to the `StateResponse` message. */
export function toStateResponse(s: ContainerState): StateResponse {
  return {
    id: s.id,
    bundle: s.bundle,
    pid: s.pid > 0 && s.pid <= 0xffffffff ? s.pid : 0,
    status: WIRE_STATUS[s.status],
    rootfs: s.rootfs,
    created: { seconds: String(s.created.seconds), nanos: s.created.nanos },
    annotations: s.annotations,
    owner: s.owner,
    ociVersion: s.ociVersion,
  };
}

/** Options of {@link createShimService}. */
export interface ShimServiceOptions {
  /** The state root served. */
  root: StateRoot;
  /** The server's logger. */
  log: Logger;
  /** Bound of a Start with no (or a later) client deadline, in ms (`--start-timeout`). */
  startTimeoutMs: number;
  /** Tracks calls in flight for graceful shutdown. */
  tracker?: CallTracker;
}

/** The `runcshim.v1.ShimService` implementation over one {@link StateRoot}. */
export function createShimService(opts: ShimServiceOptions): ShimServiceServer & UntypedServiceImplementation {
  const { root, log, tracker } = opts;
  return {
    state: unary<StateRequest, StateResponse>(
      { rpc: "State", log, tracker, containerIdOf: (r) => r.id },
      (req) => toStateResponse(root.state(req.id)),
    ),
    start: unary<StartRequest, StartResponse>(
      { rpc: "Start", log, tracker, containerIdOf: (r) => r.id, cancellable: true, capMs: opts.startTimeoutMs },
      async (req, ctx) => {
        const pid = await root.start(req.id, {
          signal: ctx.signal,
          commitWaitMs: opts.startTimeoutMs,
          onCommitted: (outcome) => ctx.log.debug({ outcome }, "start committed: exec fifo consumed and removed"),
          onDetachedEnd: (result) =>
            typeof result === "string"
              ? ctx.log.warn({ outcome: result }, "start committed after the call had ended: the init process wrote its byte late")
              : ctx.log.info({ errorKind: result.kind, err: result.message }, "detached exec fifo wait ended without a start"),
        });
        return { pid };
      },
    ),
  };
}
