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
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const t0 = performance.now();
    const trackerDone = opts.tracker?.begin();
    const leave = opts.connections?.enter(call.getPeer());
    const done = (): void => {
      trackerDone?.();
      leave?.();
    };
    const malformed = call.request instanceof MalformedRequest ? call.request : undefined;
    const rawId = malformed ? "" : opts.containerIdOf(call.request);
    const containerId = rawId.length > 300 ? `${rawId.slice(0, 300)}...` : rawId;
    // The child logger is made only when something is logged (at --log-level warn, never for a good call).
    let child: Logger | undefined;
    const logger = (): Logger => (child ??= opts.log.child({ rpc: opts.rpc, containerId }));
    let signal: AbortSignal | undefined;
    let cleanup = (): void => {};
    if (opts.cancellable) {
      const ac = new AbortController();
      signal = ac.signal;
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
      const untilDeadline = Number.isFinite(deadlineMs) ? deadlineMs - Date.now() - DEADLINE_MARGIN_MS : Infinity;
      const cap = opts.capMs ?? Infinity;
      const wait = Math.max(0, Math.min(untilDeadline, cap));
      const timer = Number.isFinite(wait)
        ? setTimeout(() => {
            ac.abort(
              untilDeadline <= cap
                ? new RuntimeError("DeadlineExceeded", `deadline exceeded before ${opts.waitingFor ?? "the container's init process signalled"}`)
                : new RuntimeError("DeadlineExceeded", `${opts.rpc.toLowerCase()} timed out after ${cap} ms (${opts.capFlag ?? "--start-timeout"}) waiting for ${opts.waitingFor === undefined ? "the init process" : opts.waitingFor}`),
            );
          }, wait)
        : undefined;
      const onCancelled = (): void => {
        const late = Number.isFinite(deadlineMs) && Date.now() >= deadlineMs - DEADLINE_MARGIN_MS;
        ac.abort(
          late
            ? new RuntimeError("DeadlineExceeded", "deadline exceeded")
            : new RuntimeError("Cancelled", "call cancelled by the client"),
        );
      };
      call.once("cancelled", onCancelled);
      cleanup = () => {
        if (timer !== undefined) clearTimeout(timer);
        call.removeListener("cancelled", onCancelled);
      };
    }
    let answered = false;
    const respond = (err: unknown, value?: Res): void => {
      if (answered) return;
      answered = true;
      cleanup();
      done();
      const elapsed = performance.now() - t0;
      const durationMs = Math.round(elapsed * 1000) / 1000;
      if (err === undefined) {
        opts.observer?.callEnded(opts.rpc, "OK", elapsed / 1000, "unary");
        if (opts.log.isLevelEnabled("info")) logger().info({ code: "OK", durationMs }, "rpc");
        callback(null, value);
        return;
      }
      const st = toGrpcStatus(err, rawId === "" ? undefined : containerId);
      const codeName = GrpcStatus[st.code];
      opts.observer?.callEnded(opts.rpc, codeName, elapsed / 1000, "unary");
      if (err instanceof RuntimeError) {
        const cause = err.cause === undefined ? undefined : describeError(err.cause);
        if (opts.log.isLevelEnabled("info")) logger().info({ code: codeName, durationMs, errorKind: err.kind, err: describeError(err), cause }, "rpc");
      } else {
        logger().error({ code: codeName, durationMs, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, "rpc failed with a bug");
      }
      callback(st, null);
    };
    if (malformed !== undefined) {
      respond(new RuntimeError("InvalidRequest", `malformed request: ${malformed.problem}`));
      return;
    }
    // A call the client gave up on before its handler ran must not run: Start would change things.
    if (call.cancelled) {
      respond(new RuntimeError("Cancelled", "call cancelled by the client before it was handled"));
      return;
    }
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    if (Number.isFinite(deadlineMs) && Date.now() >= deadlineMs - DEADLINE_MARGIN_MS) {
      respond(new RuntimeError("DeadlineExceeded", "deadline exceeded before the call was handled"));
      return;
    }
    let result: Promise<Res> | Res;
    try {
      result = handler(call.request, {
        signal,
        get log() {
          return logger();
        },
      });
    } catch (e) {
      respond(e);
      return;
    }
    if (result instanceof Promise) result.then((v) => respond(undefined, v), (e: unknown) => respond(e));
    else respond(undefined, result);
  };
}
