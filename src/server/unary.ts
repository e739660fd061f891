import { status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type handleUnaryCall } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { RuntimeError, describeError } from "../runtime/errors.js";
import { toGrpcStatus } from "./errors.js";

/**
 * What a request decodes to when its bytes are not a valid message. grpc-js
 * would answer such a call itself, with INTERNAL and no details or log line;
 * with {@link safeDeserializers} the handler adapter answers it instead:
 * INVALID_ARGUMENT, reason INVALID_REQUEST.
 */
export class MalformedRequest {
  constructor(readonly problem: string) {}
}

/**
 * Wraps every `requestDeserialize` of a grpc-js service definition so that a
 * request that fails to decode becomes a {@link MalformedRequest} instead of an
 * exception.
 */
export function safeDeserializers<T extends ServiceDefinition>(definition: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (e) {
          return new MalformedRequest(describeError(e));
        }
      },
    };
  }
  return wrapped as T;
}

/** Margin before the client's deadline at which a call is aborted, so our own DEADLINE_EXCEEDED (with details) goes out first, in ms. */
export const DEADLINE_MARGIN_MS = 3;

/**
 * How long before the deadline the server sees a cancellable call is aborted,
 * in ms, for a call whose deadline is `timeoutMs` away when it is handled:
 * {@link DEADLINE_MARGIN_MS}, or 1 % of the timeout when that is more. The
 * `grpc-timeout` header may have been rounded up by the client: gRPC C-core
 * (Python, Ruby, PHP, C++ clients) sends a timeout of 1–10 s in units of
 * 10 ms, of 10–100 s in units of 100 ms, and so on (`Timeout::FromMillis` in
 * its `timeout_encoding.cc`) — up to 1 % later than the client's own
 * deadline, which then fires first: the client cancelled and the server,
 * with the old 3 ms margin, logged and counted the call as `CANCELLED`
 * instead of answering `DEADLINE_EXCEEDED` with its details. A cancel that
 * comes this close to the deadline is taken as the deadline's.
 */
export function deadlineSlackMs(timeoutMs: number): number {
  return Math.max(DEADLINE_MARGIN_MS, Math.ceil(timeoutMs / 100));
}

/**
 * Counts the unary calls in flight, so shutdown can wait for exactly those
 * (streams such as health Watch never end by themselves).
 */
export class CallTracker {
  private count = 0;
  private waiters: Array<() => void> = [];
  private readonly activity: Array<{ opened(): void; ended(): void }> = [];

  /** Tells `listener` of every call begun and ended (the heap releaser's view of activity). */
  observe(listener: { opened(): void; ended(): void }): void {
    this.activity.push(listener);
  }

  /** Calls in flight now. */
  get inFlight(): number {
    return this.count;
  }

  /** Marks a call begun; returns the function that marks it done (idempotent). */
  begin(): () => void {
    this.count++;
    for (const l of this.activity) l.opened();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.count--;
      for (const l of this.activity) l.ended();
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves when no call is in flight. */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

/** What a handler gets besides its request. */
export interface CallContext {
  /**
   * Aborts when the client cancels, its deadline is about to pass, or the
   * server-side cap (`capMs`) passes; `reason` is a {@link RuntimeError} of kind
   * `Cancelled` or `DeadlineExceeded`. Present only for handlers registered with `cancellable`.
   */
  signal: AbortSignal | undefined;
  /** A child logger with `rpc` and `containerId`. */
  log: Logger;
}

/** Options of {@link unary}. */
export interface UnaryOptions<Req> {
  /** The RPC name for logs, e.g. `Start`. */
  rpc: string;
  /** The server's logger; each call gets a child of it. */
  log: Logger;
  /** The container id a request is about (logged after validation; cut to 300 characters). */
  containerIdOf: (req: Req) => string;
  /** Give the handler an abort signal for cancellation and deadlines. */
  cancellable?: boolean;
  /** Server-side bound of a call with no deadline (or a later one), in ms; needs `cancellable`. */
  capMs?: number;
  /** What the call was waiting for, for its DEADLINE_EXCEEDED message (default: Start's "the container's init process signalled"). */
  waitingFor?: string;
  /** The flag that sets `capMs`, for its DEADLINE_EXCEEDED message (default `--start-timeout`). */
  capFlag?: string;
  /** Tracks this call while it runs. */
  tracker?: CallTracker;
  /** Marks the call's connection busy while it runs (see `ConnectionGate.enter`). */
  connections?: ConnectionCalls;
  /** Told how the call ended (metrics). */
  observer?: CallObserver;
}

/**
 * Told how each call ends, once, by the unary and stream adapters (the same
 * place that writes the call's log line): the server's metrics observe calls
 * through this, so handlers and domain code know nothing of them. Must not throw.
 */
export interface CallObserver {
  /**
   * A call ended: a unary call answered, or a stream ended.
   * @param code the gRPC status code name (`OK`, `NOT_FOUND`, ...)
   * @param seconds from the call's arrival to its answer (a stream: to its end)
   */
  callEnded(rpc: string, code: string, seconds: number, kind: "unary" | "stream"): void;
  /** A server stream is open (its source was opened); returns the function to call when it ends. */
  streamOpened(rpc: string): () => void;
}

/** Counts calls per connection, by grpc-js peer name (`ConnectionGate`). */
export interface ConnectionCalls {
  /** Marks a call begun on the connection `peer`; returns the function that marks it ended. */
  enter(peer: string): () => void;
}

/**
 * Turns an async handler into grpc-js's callback API. Every handler goes
 * through here: it awaits the handler, catches everything (grpc-js ignores the
 * promise an async handler returns), responds exactly once through
 * {@link toGrpcStatus} (the one translation to gRPC status), and logs one line
 * per call: `rpc`, `containerId`, `code`, `durationMs`, plus `errorKind` and
 * `err` for failures. The log line is written when the handler settles, also
 * when the client has gone; `observer` (metrics) is told at the same moment,
 * before the answer is sent.
 */
export function unary<Req, Res>(
  opts: UnaryOptions<Req>,
  handler: (req: Req, ctx: CallContext) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => new UnaryRun(opts, call, callback).run(handler);
}

/**
 * One unary call through {@link unary}: its state in one object whose methods
 * are on the prototype (a State at 64 in flight made six closures and a
 * context object per call before, ~1.3 KiB of heap, measured). It is the
 * handler's {@link CallContext}.
 */
class UnaryRun<Req, Res> implements CallContext {
  signal: AbortSignal | undefined;
  private readonly t0 = performance.now();
  private readonly trackerDone: (() => void) | undefined;
  private readonly leave: (() => void) | undefined;
  private readonly malformed: MalformedRequest | undefined;
  private readonly rawId: string;
  private readonly containerId: string;
  // The child logger is made only when something is logged (at --log-level warn, never for a good call).
  private child: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private onCancelled: (() => void) | undefined;
  private answered = false;

  constructor(
    private readonly opts: UnaryOptions<Req>,
    private readonly call: ServerUnaryCall<Req, Res>,
    private readonly callback: sendUnaryData<Res>,
  ) {
    this.trackerDone = opts.tracker?.begin();
    this.leave = opts.connections?.enter(call.getPeer());
    this.malformed = call.request instanceof MalformedRequest ? call.request : undefined;
    this.rawId = this.malformed ? "" : opts.containerIdOf(call.request);
    this.containerId = this.rawId.length > 300 ? `${this.rawId.slice(0, 300)}...` : this.rawId;
  }

  /** {@link CallContext.log}: a child logger with `rpc` and `containerId`. */
  get log(): Logger {
    return (this.child ??= this.opts.log.child({ rpc: this.opts.rpc, containerId: this.containerId }));
  }

  run(handler: (req: Req, ctx: CallContext) => Promise<Res> | Res): void {
    if (this.opts.cancellable) this.arm();
    if (this.malformed !== undefined) {
      this.respond(new RuntimeError("InvalidRequest", `malformed request: ${this.malformed.problem}`));
      return;
    }
    // A call the client gave up on before its handler ran must not run: Start would change things.
    if (this.call.cancelled) {
      this.respond(new RuntimeError("Cancelled", "call cancelled by the client before it was handled"));
      return;
    }
    const deadlineMs = deadlineOf(this.call);
    if (Number.isFinite(deadlineMs) && Date.now() >= deadlineMs - DEADLINE_MARGIN_MS) {
      this.respond(new RuntimeError("DeadlineExceeded", "deadline exceeded before the call was handled"));
      return;
    }
    let result: Promise<Res> | Res;
    try {
      result = handler(this.call.request, this);
    } catch (e) {
      this.respond(e);
      return;
    }
    if (result instanceof Promise) result.then((v) => this.respond(undefined, v), (e: unknown) => this.respond(e));
    else this.respond(undefined, result);
  }

  /** The abort signal of a cancellable call: the client's cancel, its deadline (less the margin) or the cap. */
  private arm(): void {
    const opts = this.opts;
    const ac = new AbortController();
    this.signal = ac.signal;
    const deadlineMs = deadlineOf(this.call);
    const slackMs = Number.isFinite(deadlineMs) ? deadlineSlackMs(deadlineMs - Date.now()) : 0;
    const untilDeadline = Number.isFinite(deadlineMs) ? deadlineMs - Date.now() - slackMs : Infinity;
    const cap = opts.capMs ?? Infinity;
    const wait = Math.max(0, Math.min(untilDeadline, cap));
    this.timer = Number.isFinite(wait)
      ? setTimeout(() => {
          ac.abort(
            untilDeadline <= cap
              ? new RuntimeError("DeadlineExceeded", `deadline exceeded before ${opts.waitingFor ?? "the container's init process signalled"}`)
              : new RuntimeError("DeadlineExceeded", `${opts.rpc.toLowerCase()} timed out after ${cap} ms (${opts.capFlag ?? "--start-timeout"}) waiting for ${opts.waitingFor === undefined ? "the init process" : opts.waitingFor}`),
          );
        }, wait)
      : undefined;
    this.onCancelled = (): void => {
      const late = Number.isFinite(deadlineMs) && Date.now() >= deadlineMs - slackMs;
      ac.abort(late ? new RuntimeError("DeadlineExceeded", "deadline exceeded") : new RuntimeError("Cancelled", "call cancelled by the client"));
    };
    this.call.once("cancelled", this.onCancelled);
  }

  private respond(err: unknown, value?: Res): void {
    if (this.answered) return;
    this.answered = true;
    const opts = this.opts;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.onCancelled !== undefined) this.call.removeListener("cancelled", this.onCancelled);
    this.trackerDone?.();
    this.leave?.();
    const elapsed = performance.now() - this.t0;
    const durationMs = Math.round(elapsed * 1000) / 1000;
    if (err === undefined) {
      opts.observer?.callEnded(opts.rpc, "OK", elapsed / 1000, "unary");
      if (opts.log.isLevelEnabled("info")) this.log.info({ code: "OK", durationMs }, "rpc");
      this.callback(null, value);
      return;
    }
    const st = toGrpcStatus(err, this.rawId === "" ? undefined : this.containerId);
    const codeName = GrpcStatus[st.code];
    opts.observer?.callEnded(opts.rpc, codeName, elapsed / 1000, "unary");
    if (err instanceof RuntimeError) {
      const cause = err.cause === undefined ? undefined : describeError(err.cause);
      if (opts.log.isLevelEnabled("info")) this.log.info({ code: codeName, durationMs, errorKind: err.kind, err: describeError(err), cause }, "rpc");
    } else {
      this.log.error({ code: codeName, durationMs, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, "rpc failed with a bug");
    }
    this.callback(st, null);
  }
}

/** The call's deadline in ms since the epoch (Infinity when none). */
function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}
