import { status as GrpcStatus, type ServerWritableStream, type handleServerStreamingCall } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { RuntimeError, describeError } from "../runtime/errors.js";
import { toGrpcStatus } from "./errors.js";
import { MalformedRequest, type CallObserver, type ConnectionCalls } from "./unary.js";

/**
 * Where a server stream's messages come from: a pull queue that the adapter
 * drains while the call is writable. A source that keeps only the latest
 * message per key (as a watch subscription does) thereby bounds what a slow
 * reader costs.
 */
export interface MessageSource<T> {
  /** Takes the next message ready to send, or `undefined` when none is ready. */
  next(): T | undefined;
  /** Set once no message will be added; `error` when the source failed (sent as the call's status). */
  readonly done: { readonly error?: unknown } | undefined;
  /** Registers the one function to call when a message is ready or the source is done. */
  listen(onReady: () => void): void;
  /** Releases the source; the call is over. Idempotent. */
  close(): void;
}

/** grpc-js 1.14's server-streaming call object, as far as {@link writeInBatches} uses it (not in its typings). */
interface WritableCallInternals {
  /** The call's intercepting call: `sendMessage` serializes one message and writes it to the http2 stream at once. */
  call?: { sendMessage?: (message: unknown, done: () => void) => void };
  _writev?: unknown;
}

/**
 * Lets grpc-js's server stream hand every message buffered behind a write in
 * progress to http2 in one go, instead of one per completed write.
 *
 * grpc-js's `ServerWritableStreamImpl` is a Node `Writable` with only
 * `_write`: each message waits for the previous one's http2 write to complete
 * (one native write request and its callbacks per message; with 200 watch-all
 * streams syncing 10,000 containers, ~60 % of the server's CPU). Given a
 * `_writev`, Node's `Writable` passes the messages buffered meanwhile in one
 * call; writing each through the call's `sendMessage` (what `_write` does,
 * in order and synchronously) lets Node's http2 stream, itself busy, buffer
 * them and flush them as one `writev`. `done` runs once all were written, as
 * `_write`'s callback does for one; a write that fails ends the call with
 * INTERNAL in grpc-js, as for `_write`.
 *
 * Feature-detected on grpc-js's object (its `call.sendMessage`, no `_writev`
 * of its own): with another grpc-js it returns `false` and nothing changes.
 * `test/unit/stream.test.ts` fails if it stops taking effect.
 *
 * @returns whether the call now writes in batches.
 */
export function writeInBatches(call: object): boolean {
  const internals = call as WritableCallInternals;
  const inner = internals.call;
  if (inner === undefined || typeof inner.sendMessage !== "function" || typeof internals._writev === "function") return false;
  const send = inner.sendMessage.bind(inner);
  internals._writev = (chunks: Array<{ chunk: unknown }>, done: () => void): void => {
    let left = chunks.length;
    const one = (): void => {
      if (--left === 0) done();
    };
    for (const c of chunks) send(c.chunk, one);
  };
  return true;
}

/** Options of {@link serverStream}. */
export interface StreamOptions<Req, Res = unknown> {
  /** The RPC name for logs, e.g. `Watch`. */
  rpc: string;
  /** The server's logger; each call gets a child of it. */
  log: Logger;
  /** The container id a request is about, for logs and error details (`""`: none; cut to 300 characters). */
  containerIdOf: (req: Req) => string;
  /** Marks the call's connection busy while the stream is open. */
  connections?: ConnectionCalls;
  /** Told when the stream opens and how it ends (metrics). */
  observer?: CallObserver;
  /**
   * Bound of the bytes written to grpc-js but not yet taken by http2, with
   * {@link StreamOptions.messageBytes}: past it the adapter stops taking
   * messages until writes complete, as it does on `write() === false`
   * (grpc-js's own bound counts 16 messages, whatever their size).
   */
  maxBufferedBytes?: number;
  /** The size of a message, in bytes, for {@link StreamOptions.maxBufferedBytes} (0: not counted, e.g. small ones). */
  messageBytes?: (msg: Res) => number;
}

/**
 * Turns a function that opens a {@link MessageSource} into grpc-js's
 * server-streaming callback API; every streaming handler goes through here.
 *
 * - A request that could not be decoded ({@link MalformedRequest}) ends the
 *   call at once with INVALID_ARGUMENT (reason INVALID_REQUEST).
 * - Opening may throw: the call then ends at once with the status
 *   {@link toGrpcStatus} makes of the error (the one translation to gRPC).
 * - Messages are written while `call.write()` accepts them; when it returns
 *   `false` the adapter stops taking messages until `drain`, so they wait (and
 *   may be merged) in the source, not in grpc-js's buffers. Those grpc-js
 *   buffers behind a write in progress reach http2 together ({@link writeInBatches}).
 * - When the source is done and drained the call ends: OK, or the source's error.
 * - When the client cancels (or the server is force-shut down) the source is closed.
 * - One log line per call when it ends: `rpc`, `containerId`, `code`,
 *   `durationMs`, `messages`, plus `errorKind` and `err` for failures;
 *   `observer` is told then too (and when the source opened).
 */
export function serverStream<Req, Res>(
  opts: StreamOptions<Req, Res>,
  open: (req: Req, ctx: { log: Logger; peer: string }) => MessageSource<Res>,
): handleServerStreamingCall<Req, Res> {
  return (call: ServerWritableStream<Req, Res>) => {
    const t0 = performance.now();
    writeInBatches(call);
    const malformed = call.request instanceof MalformedRequest ? call.request : undefined;
    const rawId = malformed ? "" : opts.containerIdOf(call.request);
    const containerId = rawId.length > 300 ? `${rawId.slice(0, 300)}...` : rawId;
    const log = opts.log.child({ rpc: opts.rpc, containerId });
    let source: MessageSource<Res> | undefined;
    let finished = false;
    let waitingDrain = false;
    let messages = 0;
    /** Bytes written and not yet taken by http2 (with maxBufferedBytes). */
    let buffered = 0;
    let waitingBytes = false;
    const maxBuffered = opts.messageBytes !== undefined ? (opts.maxBufferedBytes ?? Infinity) : Infinity;
    let closeObserved: (() => void) | undefined;

    const onDrain = (): void => {
      waitingDrain = false;
      pump();
    };
    const onCancelled = (): void => finish({ cancelled: true });
    const peer = call.getPeer();
    const leave = opts.connections?.enter(peer);

    const finish = (how: { cancelled?: boolean; error?: unknown }): void => {
      if (finished) return;
      finished = true;
      leave?.();
      call.removeListener("cancelled", onCancelled);
      call.removeListener("drain", onDrain);
      source?.close();
      closeObserved?.();
      const elapsed = performance.now() - t0;
      const durationMs = Math.round(elapsed * 1000) / 1000;
      const observe = (code: string): void => opts.observer?.callEnded(opts.rpc, code, elapsed / 1000, "stream");
      if (how.cancelled === true) {
        observe("CANCELLED");
        log.info({ code: "CANCELLED", durationMs, messages }, "rpc");
        return;
      }
      if (how.error === undefined) {
        observe("OK");
        log.info({ code: "OK", durationMs, messages }, "rpc");
        call.end();
        return;
      }
      const err = how.error;
      const st = toGrpcStatus(err, rawId === "" ? undefined : containerId);
      const codeName = GrpcStatus[st.code];
      observe(codeName);
      if (err instanceof RuntimeError) {
        const cause = err.cause === undefined ? undefined : describeError(err.cause);
        log.info({ code: codeName, durationMs, messages, errorKind: err.kind, err: describeError(err), cause }, "rpc");
      } else {
        log.error({ code: codeName, durationMs, messages, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, "rpc failed with a bug");
      }
      // ServerWritableStream turns an emitted status object into the call's status and ends the call.
      call.emit("error", st);
    };

    const pump = (): void => {
      if (finished || waitingDrain || waitingBytes || source === undefined) return;
      try {
        for (;;) {
          if (buffered >= maxBuffered) {
            waitingBytes = true;
            return;
          }
          const msg = source.next();
          if (msg === undefined) break;
          messages++;
          const size = maxBuffered === Infinity ? 0 : (opts.messageBytes as (m: Res) => number)(msg);
          let accepted: boolean;
          if (size === 0) accepted = call.write(msg);
          else {
            buffered += size;
            accepted = call.write(msg, () => {
              buffered -= size;
              if (waitingBytes && buffered < maxBuffered) {
                waitingBytes = false;
                pump();
              }
            });
          }
          if (!accepted) {
            waitingDrain = true;
            call.once("drain", onDrain);
            return;
          }
        }
        const done = source.done;
        if (done !== undefined) finish({ error: done.error });
      } catch (e) {
        finish({ error: e });
      }
    };

    call.once("cancelled", onCancelled);
    if (malformed !== undefined) {
      finish({ error: new RuntimeError("InvalidRequest", `malformed request: ${malformed.problem}`) });
      return;
    }
    try {
      source = open(call.request, { log, peer });
    } catch (e) {
      finish({ error: e });
      return;
    }
    closeObserved = opts.observer?.streamOpened(opts.rpc);
    if (call.cancelled) {
      finish({ cancelled: true });
      return;
    }
    log.debug("stream open");
    source.listen(pump);
    pump();
  };
}
