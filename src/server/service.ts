import type { UntypedServiceImplementation, handleServerStreamingCall, handleUnaryCall } from "@grpc/grpc-js";
import type { Logger } from "pino";
import {
  ContainerStatus as WireStatus,
  WatchEventKind as WireEventKind,
  type ContainerEntry as WireEntry,
  type ContainerError,
  type CreateRequest,
  type CreateResponse,
  type DeleteRequest,
  type DeleteResponse,
  type KillRequest,
  type KillResponse,
  type PauseRequest,
  type PauseResponse,
  type ResumeRequest,
  type ResumeResponse,
  type ListRequest,
  type ListResponse,
  type ShimServiceServer,
  type StartRequest,
  type StartResponse,
  type StateRequest,
  type StateResponse,
  type WatchRequest,
  WatchResponse,
  ShimServiceService,
} from "../../gen/ts/runcshim/v1/shim.js";
import type { ContainerState, LazyState, StateRoot } from "../runtime/container.js";
import { RuntimeError, describeError } from "../runtime/errors.js";
import { listContainersYielding, type ContainerEntry } from "../runtime/list.js";
import type { ContainerStatus } from "../runtime/status.js";
import { WatchHub, type WatchEvent, type WatchEventKind } from "../runtime/watch.js";
import { BUG_ROW, ERROR_TABLE, INTERNAL_MESSAGE } from "./errors.js";
import { HeapReleaser, type HeapReleaserOptions } from "./heap-release.js";
import { serverStream, type MessageSource } from "./stream.js";
import { unary, type CallContext, type CallTracker, type ConnectionCalls } from "./unary.js";
import type { ShimMetrics } from "./metrics.js";
import type { ServerLimits } from "./server.js";
import type { OpContext } from "../runtime/ops/context.js";
import { createContainer } from "../runtime/ops/create.js";
import { deleteContainer } from "../runtime/ops/delete.js";
import { killContainer } from "../runtime/ops/kill.js";
import { pauseContainer } from "../runtime/ops/pause.js";
import { resumeContainer } from "../runtime/ops/resume.js";
import { startContainer } from "../runtime/ops/start.js";

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

/** Domain watch event kind -> wire enum. */
export const WIRE_EVENT_KIND: Readonly<Record<WatchEventKind, WireEventKind>> = {
  initial: WireEventKind.WATCH_EVENT_KIND_INITIAL,
  synced: WireEventKind.WATCH_EVENT_KIND_SYNCED,
  appeared: WireEventKind.WATCH_EVENT_KIND_APPEARED,
  changed: WireEventKind.WATCH_EVENT_KIND_CHANGED,
  removed: WireEventKind.WATCH_EVENT_KIND_REMOVED,
};

/**
 * A per-container error inside a successful List or Watch answer: the same
 * code (ErrorInfo reason, from {@link ERROR_TABLE}) and message the error would
 * get as a call's status; a bug gets INTERNAL and the fixed message, and its
 * cause is logged.
 */
export function toContainerError(e: unknown, log: Logger, containerId: string): ContainerError {
  if (e instanceof RuntimeError) return { code: ERROR_TABLE[e.kind].reason, message: e.message };
  log.error({ containerId, err: e instanceof Error ? { message: e.message, stack: e.stack } : describeError(e) }, "container entry failed with a bug");
  return { code: BUG_ROW.reason, message: INTERNAL_MESSAGE };
}

/**
 * Most bytes one List entry may take (about: ids, paths and annotations). A
 * larger state (a container with many or long annotations, up to the label
 * bounds of state.json) is still answered by State; in List its entry carries
 * an error instead, so one such container cannot push the answer past a
 * client's 4 MiB receive limit.
 */
export const MAX_LIST_ENTRY_BYTES = 64 * 1024;

/** An entry whose state is larger than {@link MAX_LIST_ENTRY_BYTES} becomes an entry with a SystemError saying so. */
export function boundListEntry(e: ContainerEntry): ContainerEntry {
  const s = e.state;
  if (s === undefined) return e;
  let bytes = s.id.length + s.bundle.length + s.rootfs.length + s.ociVersion.length + s.owner.length + 64;
  for (const k in s.annotations) bytes += k.length + (s.annotations[k]?.length ?? 0) + 4;
  if (bytes <= MAX_LIST_ENTRY_BYTES) return e;
  return {
    id: e.id,
    error: new RuntimeError(
      "SystemError",
      `the state of container ${e.id} takes about ${bytes} bytes, more than the ${MAX_LIST_ENTRY_BYTES} bytes a List entry may take; ask State for it`,
      { containerId: e.id },
    ),
  };
}

/** Converts a domain container entry to the `ContainerEntry` message. */
export function toWireEntry(e: ContainerEntry, log: Logger): WireEntry {
  return e.state !== undefined
    ? { id: e.id, result: { $case: "state", value: toStateResponse(e.state) } }
    : { id: e.id, result: { $case: "error", value: toContainerError(e.error, log, e.id) } };
}

/** Converts a domain watch event to the `WatchResponse` message. */
export function toWatchResponse(ev: WatchEvent, log: Logger): WatchResponse {
  const kind = WIRE_EVENT_KIND[ev.kind];
  if (ev.kind === "synced") return { kind };
  if (ev.entry === undefined) return { kind, container: { id: ev.id } };
  return { kind, container: toWireEntry(ev.entry, log) };
}

/**
 * The `runcshim.v1.ShimService` definition the server registers: the
 * generated one, except that the response serializers of State and Watch pass
 * bytes through as they are, so that their handlers can answer with messages
 * already encoded (a State once per container state, see {@link StateEncoder};
 * a Watch change once for every watcher, see {@link WatchEncoder}). Clients use
 * the generated definition unchanged.
 */
export function shimServiceDefinition(): typeof ShimServiceService {
  const encodeWatch = ShimServiceService.watch.responseSerialize;
  const encodeState = ShimServiceService.state.responseSerialize;
  return {
    ...ShimServiceService,
    state: {
      ...ShimServiceService.state,
      responseSerialize: (value: StateResponse | Uint8Array): Buffer => (value instanceof Uint8Array ? asBuffer(value) : encodeState(value)),
    },
    watch: {
      ...ShimServiceService.watch,
      responseSerialize: (value: WatchResponse | Uint8Array): Buffer => (value instanceof Uint8Array ? asBuffer(value) : encodeWatch(value)),
    },
  };
}

/** A Buffer over the bytes of `u8`, without a copy. */
function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/**
 * The ShimService handlers {@link createShimService} makes: those of the
 * generated `ShimServiceServer`, except that State answers with bytes already
 * encoded (register them with {@link shimServiceDefinition}, which passes bytes through).
 */
export type ShimServiceHandlers = Omit<ShimServiceServer, "state"> & { state: handleUnaryCall<StateRequest, Buffer> } & UntypedServiceImplementation;

/** Most containers whose encoded State answer {@link StateEncoder} keeps. */
export const STATE_ENCODINGS_KEPT = 512;

/**
 * Encodes State answers, once per container state: the bytes are kept with the
 * parse of state.json the state came from (`source` of `StateRoot.stateLazy`)
 * and used again while the id, status and pid are those encoded, so a State on
 * an unchanged container builds and encodes no message. Bounded: the
 * {@link STATE_ENCODINGS_KEPT} containers answered last (a root State'd once
 * per container keeps no encoding of each).
 */
export class StateEncoder {
  // Insertion order is recency order.
  private readonly cache = new Map<object, { id: string; status: string; pid: number; bytes: Buffer }>();
  private readonly serialize = ShimServiceService.state.responseSerialize;

  /** The encoded `StateResponse` of `s`. */
  encode(s: LazyState): Buffer {
    const hit = this.cache.get(s.source);
    if (hit !== undefined && hit.id === s.id && hit.status === s.status && hit.pid === s.pid) {
      this.cache.delete(s.source);
      this.cache.set(s.source, hit);
      return hit.bytes;
    }
    const bytes = asBuffer(this.serialize(toStateResponse(s.state())));
    this.cache.delete(s.source);
    this.cache.set(s.source, { id: s.id, status: s.status, pid: s.pid, bytes });
    if (this.cache.size > STATE_ENCODINGS_KEPT) this.cache.delete(this.cache.keys().next().value as object);
    return bytes;
  }
}

/**
 * Encodes Watch events, once per state reported and kind: the bytes are kept
 * with the event's {@link WatchEvent.key} (the same object in every watcher's
 * event for one state of one container), so every watcher that is sent that
 * message gets the same bytes, encoded once. They live as long as the hub or a
 * subscription holds the key.
 */
export class WatchEncoder {
  private readonly cache = new WeakMap<object, Array<Buffer | undefined>>();

  /** @param onEncode told of each encoding actually done (tests count them) */
  constructor(private readonly onEncode?: (ev: WatchEvent) => void) {}

  /** The encoded `WatchResponse` of `ev` (`log` gets a bug's details, the first time). */
  encode(ev: WatchEvent, log: Logger): Buffer {
    let byKind = this.cache.get(ev.key);
    if (byKind === undefined) this.cache.set(ev.key, (byKind = []));
    const k = WIRE_EVENT_KIND[ev.kind];
    let bytes = byKind[k];
    if (bytes === undefined) {
      const u8 = WatchResponse.encode(toWatchResponse(ev, log)).finish();
      bytes = asBuffer(u8);
      byKind[k] = bytes;
      this.onEncode?.(ev);
    }
    return bytes;
  }
}

/** Most events in one batched Watch message, whatever `max_batch` asks. */
export const MAX_WATCH_BATCH = 1024;
/** A batched Watch message stops growing once it holds this many bytes of events (one event may take it past). */
export const WATCH_BATCH_BYTES = 64 * 1024;
/**
 * Bound of a batched Watch stream's bytes written but not yet taken by http2
 * (two full batches): 200 batched streams otherwise held up to 16 batches
 * each in grpc-js (469 MiB of RSS, measured).
 */
export const WATCH_BATCH_BUFFERED_BYTES = 2 * WATCH_BATCH_BYTES;

/** Bytes of `n` as a protobuf varint. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/**
 * A `WatchResponse { batch: WatchBatch { events } }` made of events already
 * encoded as `WatchResponse` messages (field 1 of WatchBatch each, the batch
 * field 3 of WatchResponse): the events' bytes are copied, never re-encoded.
 */
export function encodeWatchBatch(events: readonly Buffer[]): Buffer {
  let inner = 0;
  for (const e of events) inner += 1 + varintSize(e.length) + e.length;
  const out = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
  out[0] = 0x1a; // field 3, length-delimited
  let at = writeVarint(out, 1, inner);
  for (const e of events) {
    out[at++] = 0x0a; // field 1, length-delimited
    at = writeVarint(out, at, e.length);
    at += e.copy(out, at);
  }
  return out;
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
  /** The watch hub Watch subscribes to; one over `root` by default. */
  watchHub?: WatchHub;
  /** The runc binary Create runs (`--runc`); `runc` on PATH by default. */
  runc?: string;
  /** Bound of a Create, in ms (`--create-timeout`); 60 s by default. */
  createTimeoutMs?: number;
  /** Counts calls per connection (the server's `ConnectionGate`). */
  gate?: ConnectionCalls;
  /** Watch stream limits; unlimited when absent. */
  limits?: Pick<ServerLimits, "maxWatches" | "maxWatchesPerConnection">;
  /** Metrics told of every call, handshake, runc run and Watch message; none when absent. */
  metrics?: ShimMetrics;
  /** Told of each Watch message encoded (once per state and kind, whatever the number of watchers); for tests. */
  onWatchEncode?: (ev: WatchEvent) => void;
  /**
   * One full garbage collection once a burst of calls or Watch streams has
   * ended (see {@link HeapReleaser}): the releaser to tell (the server's, which
   * also tells it when start-up is done), options for one made here, or
   * `false` for none; one made here by default.
   */
  heapRelease?: HeapReleaser | HeapReleaserOptions | false;
}

/**
 * Counts open Watch streams, in the server and per connection (grpc-js peer
 * name), against `--max-watches` and `--max-watches-per-connection`.
 */
export class WatchLimits {
  private total = 0;
  private readonly perConnection = new Map<string, number>();

  constructor(private readonly max: number, private readonly maxPerConnection: number) {}

  /**
   * Counts one more stream for `peer`.
   * @returns the function that releases it (idempotent)
   * @throws {RuntimeError} `ResourceExhausted` (gRPC RESOURCE_EXHAUSTED) naming the limit reached
   */
  acquire(peer: string): () => void {
    const mine = this.perConnection.get(peer) ?? 0;
    if (mine >= this.maxPerConnection) {
      throw new RuntimeError("ResourceExhausted", `too many Watch streams on this connection: ${this.maxPerConnection} open (--max-watches-per-connection)`);
    }
    if (this.total >= this.max) {
      throw new RuntimeError("ResourceExhausted", `too many Watch streams on this server: ${this.max} open (--max-watches)`);
    }
    this.total++;
    this.perConnection.set(peer, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.perConnection.get(peer) ?? 1) - 1;
      if (n === 0) this.perConnection.delete(peer);
      else this.perConnection.set(peer, n);
    };
  }
}

/** What an operation reports without failing goes to the call's log: a cgroup left behind or a failed poststop hook as a warning, a retried cgroup removal at debug. */
function reporters(ctx: CallContext): Pick<OpContext, "warn" | "debug"> {
  return {
    warn: (message, fields) => ctx.log.warn(fields ?? {}, message),
    debug: (message, fields) => ctx.log.debug(fields ?? {}, message),
  };
}

/**
 * The `runcshim.v1.ShimService` implementation over one {@link StateRoot}.
 * Register it with {@link shimServiceDefinition} (Watch writes pre-encoded messages).
 */
/** A {@link HeapReleaser} that logs each collection at debug. */
export function loggedHeapReleaser(log: Logger, opts?: HeapReleaserOptions): HeapReleaser {
  return new HeapReleaser({
    onRelease: (r) =>
      log.debug(
        { pauseMs: Math.round(r.pauseMs * 10) / 10, heapMiBBefore: r.heapBefore >> 20, heapMiBAfter: r.heapAfter >> 20, usedMiBAfter: r.usedAfter >> 20 },
        "full garbage collection, freed heap pages returned to the system",
      ),
    onYoungShrink: (r) =>
      log.debug({ semiSpaceKiBBefore: r.semiSpaceBefore >> 10, semiSpaceKiBAfter: r.semiSpaceAfter >> 10 }, "quiet: young generation given back"),
    ...opts,
  });
}

export function createShimService(opts: ShimServiceOptions): ShimServiceHandlers {
  const { root, log, tracker } = opts;
  const createTimeoutMs = opts.createTimeoutMs ?? 60_000;
  const connections = opts.gate;
  const metrics = opts.metrics;
  const observer = metrics;
  const watches = new WatchLimits(opts.limits?.maxWatches ?? Infinity, opts.limits?.maxWatchesPerConnection ?? Infinity);
  const encoder = new WatchEncoder(opts.onWatchEncode);
  const stateEncoder = new StateEncoder();
  const releaser =
    opts.heapRelease === false
      ? undefined
      : opts.heapRelease instanceof HeapReleaser
        ? opts.heapRelease
        : loggedHeapReleaser(log, opts.heapRelease);
  // Unary calls count as activity too: a burst of them (a State of every container) leaves garbage as Watch streams do.
  if (releaser !== undefined) tracker?.observe(releaser.callListener);
  const hub =
    opts.watchHub ??
    new WatchHub(root, { onWarning: (message, err) => log.warn({ err: describeError(err) }, `watch: ${message}`) });
  return {
    // Answered with bytes: a container's StateResponse is encoded once per state.json version, status and pid.
    state: unary<StateRequest, Buffer>(
      { connections, observer, rpc: "State", log, tracker, containerIdOf: (r) => r.id },
      (req) => stateEncoder.encode(root.stateLazy(req.id)),
    ),
    start: unary<StartRequest, StartResponse>(
      { connections, observer, rpc: "Start", log, tracker, containerIdOf: (r) => r.id, cancellable: true, capMs: opts.startTimeoutMs },
      async (req, ctx) => {
        const pid = await startContainer(root, req.id, {
          signal: ctx.signal,
          commitWaitMs: opts.startTimeoutMs,
          // Only when debug is on: ctx.log makes the call's child logger.
          onCommitted: log.isLevelEnabled("debug") ? (outcome) => ctx.log.debug({ outcome }, "start committed: exec fifo consumed and removed") : undefined,
          onDetachedEnd: (result) =>
            typeof result === "string"
              ? ctx.log.warn({ outcome: result }, "start completed after its call had ended (exec fifo consumed and removed)")
              : ctx.log.info({ errorKind: result.kind, err: result.message }, "detached exec fifo wait ended without a start"),
          onHandshakeEnd: metrics === undefined ? undefined : (outcome, seconds) => metrics.handshakeEnded(outcome, seconds),
        });
        return { pid };
      },
    ),
    create: unary<CreateRequest, CreateResponse>(
      {
        connections, observer, rpc: "Create", log, tracker, containerIdOf: (r) => r.id, cancellable: true,
        waitingFor: "runc create finished; what it created was removed",
      },
      async (req, ctx) => ({
        pid: await createContainer(root, req.id, req, { signal: ctx.signal, ...reporters(ctx), runc: opts.runc ?? "runc", timeoutMs: createTimeoutMs,
          onRuncEnd: metrics === undefined ? undefined : (seconds, error) => metrics.runcCreateEnded(seconds, error),
        }),
      }),
    ),
    kill: unary<KillRequest, KillResponse>(
      { connections, observer, rpc: "Kill", log, tracker, containerIdOf: (r) => r.id, cancellable: true, waitingFor: "the container's lock was free (nothing was signalled)" },
      async (req, ctx) => {
        await killContainer(root, req.id, { signal: req.signal, all: req.all }, { signal: ctx.signal, ...reporters(ctx) });
        return {};
      },
    ),
    pause: unary<PauseRequest, PauseResponse>(
      { connections, observer, rpc: "Pause", log, tracker, containerIdOf: (r) => r.id, cancellable: true, waitingFor: "the container's lock was free (nothing was frozen)" },
      async (req, ctx) => {
        await pauseContainer(root, req.id, { signal: ctx.signal, ...reporters(ctx) });
        return {};
      },
    ),
    resume: unary<ResumeRequest, ResumeResponse>(
      { connections, observer, rpc: "Resume", log, tracker, containerIdOf: (r) => r.id, cancellable: true, waitingFor: "the container's lock was free (nothing was thawed)" },
      async (req, ctx) => {
        await resumeContainer(root, req.id, { signal: ctx.signal, ...reporters(ctx) });
        return {};
      },
    ),
    delete: unary<DeleteRequest, DeleteResponse>(
      { connections, observer, rpc: "Delete", log, tracker, containerIdOf: (r) => r.id, cancellable: true, waitingFor: "the container's lock was free (nothing was removed)" },
      async (req, ctx) => ({ pid: await deleteContainer(root, req.id, { force: req.force }, { signal: ctx.signal, ...reporters(ctx) }) }),
    ),
    list: unary<ListRequest, ListResponse>(
      { connections, observer, rpc: "List", log, tracker, containerIdOf: () => "" },
      async (_req, ctx) => ({ containers: (await listContainersYielding(root)).map((e) => toWireEntry(boundListEntry(e), ctx.log)) }),
    ),
    // Messages go out as bytes encoded once per change (shimServiceDefinition passes them through).
    watch: serverStream<WatchRequest, Buffer>(
      {
        connections, observer, rpc: "Watch", log, containerIdOf: (r) => r.id,
        // Unbatched messages are a few hundred bytes: grpc-js's bound of 16 messages holds them; batches of 64 KiB are bounded by bytes.
        maxBufferedBytes: WATCH_BATCH_BUFFERED_BYTES,
        messageBytes: (b) => (b.length >= 4096 ? b.length : 0),
      },
      (req, ctx): MessageSource<Buffer> => {
        const release = watches.acquire(ctx.peer);
        let sub: ReturnType<WatchHub["subscribe"]>;
        try {
          sub = hub.subscribe(req.id === "" ? undefined : req.id);
        } catch (e) {
          release();
          throw e;
        }
        releaser?.opened();
        let closed = false;
        const maxBatch = Math.min(req.maxBatch ?? 0, MAX_WATCH_BATCH);
        const take = (): Buffer | undefined => {
          const ev = sub.take();
          if (ev === undefined) return undefined;
          metrics?.watchEventSent(ev.kind);
          return encoder.encode(ev, ctx.log);
        };
        return {
          next:
            maxBatch <= 1
              ? take
              : () => {
                  // What is pending now, up to max_batch events or about WATCH_BATCH_BYTES: never waits to fill a batch.
                  const events: Buffer[] = [];
                  let bytes = 0;
                  while (events.length < maxBatch && bytes < WATCH_BATCH_BYTES) {
                    const b = take();
                    if (b === undefined) break;
                    events.push(b);
                    bytes += b.length;
                  }
                  return events.length === 0 ? undefined : encodeWatchBatch(events);
                },
          get done() {
            return sub.done;
          },
          listen: (fn) => sub.listen(fn),
          close: () => {
            release();
            sub.close();
            if (!closed) releaser?.ended();
            closed = true;
          },
        };
      },
    ) as unknown as handleServerStreamingCall<WatchRequest, WatchResponse>,
  };
}
