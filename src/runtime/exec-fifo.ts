import fs from "node:fs";
import net from "node:net";
import { RuntimeError, describeError, isErrno } from "./errors.js";
import { MSG } from "./messages.js";

/** How often the handshake re-checks the init process and the fifo path while it waits, in ms. */
export const LIVENESS_POLL_MS = 20;

/**
 * After the byte, the most the handshake reads from the fifo per
 * {@link LIVENESS_POLL_MS} tick while it waits for end of file, in bytes
 * (256 KiB, in reads of {@link DRAIN_CHUNK_BYTES}): at most 12.5 MiB/s, so an
 * init that keeps writing costs the event loop a few reads per tick, and a pipe
 * of the default 64 KiB (or the 1 MiB `pipe-max-size`) left full by a writer
 * that then closed is drained to end of file within one tick (four ticks).
 */
export const DRAIN_BYTES_PER_TICK = 256 * 1024;

/** Size of one read while draining, in bytes: the default pipe capacity (16 pages). */
export const DRAIN_CHUNK_BYTES = 64 * 1024;

// One reusable buffer for what is drained (and thrown away): the reads are synchronous, so it is never shared.
const DRAIN_BUFFER = Buffer.allocUnsafe(DRAIN_CHUNK_BYTES);
// Before the byte the event loop reads into this: one read of any length > 0 is the byte.
// The event loop's reads land in one shared buffer: only their sizes are used, synchronously.
const READ_BUFFER = Buffer.allocUnsafe(DRAIN_CHUNK_BYTES);
// What a probe reads: the byte, if it came (its value is not looked at).
const PROBE_BUFFER = Buffer.allocUnsafe(16);

/**
 * One read(2) of the fifo at its current position into `buf`: the byte count
 * (0 is end of file), or -1 when it would block (EAGAIN: a writer is attached
 * and has nothing for now). EAGAIN is the common answer in the waits here, so
 * the exception behind it is made without a stack trace (it is never shown).
 *
 * @throws the read's other errors (ErrnoException, without a stack trace)
 */
function readOrAgain(fd: number, buf: Buffer): number {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fs.readSync(fd, buf, 0, buf.length, null);
  } catch (e) {
    if (isErrno(e, "EAGAIN")) return -1;
    throw e;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** What {@link execFifoHandshake} needs besides the fifo path. */
export interface HandshakeOptions {
  /** Whether the init process is still alive (pid + start time, not Z/X). Called every {@link LIVENESS_POLL_MS}. */
  isInitAlive: () => boolean;
  /**
   * Aborts the wait before the byte is read; its `reason` (a {@link RuntimeError}
   * of kind `DeadlineExceeded` or `Cancelled`) is what the handshake rejects
   * with. Ignored once the byte has been read: the start is then committed.
   */
  signal?: AbortSignal;
  /** After the byte, how long to wait for end of file (the init process exec'ing the user process) at most, in ms. */
  commitWaitMs: number;
  /** Called once, the moment the byte has been read and the fifo removed (the start is committed). */
  onCommit?: () => void;
  /**
   * Called when a handshake the caller gave up on (see `signal`) while the init
   * process had its end open ends: with the commit outcome if the init process
   * wrote its byte after all, or with the error that ended the wait.
   */
  onDetachedEnd?: (result: CommitOutcome | RuntimeError) => void;
  /** Called when the caller gave up while the init process had its end open, and the wait goes on detached. */
  onDetach?: () => void;
}

/**
 * How a handshake ended once committed: `exec` (end of file seen: the user
 * process runs), `exited` (the init process is gone), `timeout` (no end of file
 * within `commitWaitMs`), or `answered-early` (the caller's deadline or
 * cancellation came between the byte and end of file: it is answered at once,
 * since the start has happened, and the wait for end of file goes on detached).
 */
export type CommitOutcome = "exec" | "exited" | "timeout" | "answered-early";

/**
 * Right after opening the fifo, the handshake gives the CPU to the init process for at most this
 * long, in ms, checking for its byte and end of file every {@link YIELD_SLICE_MS}: our open
 * wakes the init (blocked in its own open for writing), and on a busy host the woken init waits
 * for a CPU while ours runs the event loop. Sleeping in short slices lets it run at once: the
 * median handshake went from 2.2 to 0.6 ms with both cores busy (measured; a process doing the
 * handshake with blocking calls: 0.4 ms). The event loop is blocked meanwhile, so this is
 * bounded per Start and by {@link YIELD_SHARE} of the time over all Starts.
 */
export const YIELD_MAX_MS = 1;
/** One sleep of the yield, in ms (a futex wait: the thread sleeps, the CPU is free). */
export const YIELD_SLICE_MS = 0.05;
/** Most of any {@link YIELD_WINDOW_MS} window the yields of all Starts may take together (a fraction). */
export const YIELD_SHARE = 0.1;
/** The window of {@link YIELD_SHARE}, in ms. */
export const YIELD_WINDOW_MS = 20;

const yieldSleeper = new Int32Array(new SharedArrayBuffer(4));
let yieldWindowStart = 0;
let yieldUsedMs = 0;

/** How long this handshake may yield now, in ms: {@link YIELD_MAX_MS}, less what the window has used. */
function yieldBudget(now: number): number {
  if (now - yieldWindowStart >= YIELD_WINDOW_MS) {
    yieldWindowStart = now;
    yieldUsedMs = 0;
  }
  return Math.min(YIELD_MAX_MS, YIELD_SHARE * YIELD_WINDOW_MS - yieldUsedMs);
}

const dead = () => new RuntimeError("ContainerStopped", MSG.initDead);
const alreadyRunning = () => new RuntimeError("ContainerRunning", MSG.alreadyRunning);

/**
 * The start side of runc's exec fifo handshake
 * (runc 1.1.5 `libcontainer/container_linux.go` exec / awaitFifoOpen /
 * handleFifoResult), without parking a libuv pool thread:
 *
 * 1. open `fifoPath` with `O_RDONLY|O_NONBLOCK|O_NOFOLLOW` (never blocks; this
 *    also releases the init process blocked in its own open for writing);
 * 2. wait, on the event loop, for the byte the init process writes, polling
 *    init liveness and the fifo path every {@link LIVENESS_POLL_MS} ms;
 * 3. on the byte: remove the fifo (only if the path is still that fifo), then
 *    wait for end of file, which comes when the init process exec's the user
 *    process (as runc 1.1.5 `start` does), bounded by `commitWaitMs`. The event
 *    loop stops reading the fifo at the byte; the poll drains it instead, at most
 *    {@link DRAIN_BYTES_PER_TICK} bytes per tick, until a read returns 0 (end of
 *    file). An init that keeps writing after its byte thus costs next to no CPU
 *    (it blocks on a full pipe), and our end stays open, so it gets no SIGPIPE.
 *
 * Rejections (all before anything is changed; the fifo stays in place):
 * - `ContainerStopped` `container process is already dead`: the init process died before writing;
 * - `ContainerRunning` `cannot start an already running container`: end of file with no byte (another
 *   reader took it), or the fifo path vanished or was replaced (status then reads running);
 * - `SystemError`: the path is a directory (`read <path>: is a directory`), a regular file, a symlink,
 *   or another I/O error;
 * - `DeadlineExceeded` / `Cancelled`: `signal` aborted first (its reason). If at that
 *   moment the init process has opened its end of the fifo but not written,
 *   closing ours would kill it with SIGPIPE; the handshake then goes on detached
 *   from the caller and reports through `onDetachedEnd`.
 */
export function execFifoHandshake(fifoPath: string, opts: HandshakeOptions): Promise<CommitOutcome> {
  opts.signal?.throwIfAborted();
  let fd: number;
  try {
    fd = fs.openSync(fifoPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return Promise.reject(opts.isInitAlive() ? alreadyRunning() : dead());
    if (isErrno(e, "ELOOP")) {
      return Promise.reject(new RuntimeError("SystemError", `exec fifo ${fifoPath} is a symlink, refusing to follow it`));
    }
    return Promise.reject(new RuntimeError("SystemError", `exec fifo: open ${fifoPath}: ${describeError(e)}`, { cause: e }));
  }
  let ident: fs.Stats;
  try {
    ident = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    return Promise.reject(new RuntimeError("SystemError", `exec fifo: fstat ${fifoPath}: ${describeError(e)}`, { cause: e }));
  }
  if (!ident.isFIFO()) {
    fs.closeSync(fd);
    const what = ident.isDirectory() ? "is a directory" : ident.isFile() ? "is a regular file, not a FIFO" : "is not a FIFO";
    return Promise.reject(new RuntimeError("SystemError", `read ${fifoPath}: ${what}`));
  }
  /** Is `fifoPath` still the inode we opened? */
  const pathIsOurs = (): boolean => {
    const st = fs.statSync(fifoPath, { throwIfNoEntry: false });
    return st !== undefined && st.dev === ident.dev && st.ino === ident.ino;
  };
  /** Removes the fifo if the path is still ours: the start is committed. */
  const removeFifo = (): void => {
    try {
      if (pathIsOurs()) fs.unlinkSync(fifoPath);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) {
        // The start happened; a leftover fifo only makes status read "created" while init lives.
        process.emitWarning(`runc-shim: cannot remove ${fifoPath}: ${describeError(e)}`);
      }
    }
  };

  const early = opts.signal?.aborted ? "skipped" : yieldToInit(fd);
  if (early === "exec") {
    // The whole handshake happened during the yield: no event-loop wait is needed.
    fs.closeSync(fd);
    removeFifo();
    opts.onCommit?.();
    return Promise.resolve("exec");
  }

  let sock: net.Socket;
  // `onread` hands each read to a callback (no stream buffering), and pause() stops reading at once rather
  // than after the stream's buffer fills. The constructor takes it (and Node documents it there);
  // @types/node 20 declares it on ConnectOpts only.
  let onRead = (_bytes: number): boolean => true;
  const sockOpts: net.SocketConstructorOpts & Pick<net.ConnectOpts, "onread"> = {
    fd,
    readable: true,
    writable: false,
    onread: { buffer: READ_BUFFER, callback: (bytes: number) => onRead(bytes) },
  };
  try {
    sock = new net.Socket(sockOpts);
  } catch (e) {
    fs.closeSync(fd);
    return Promise.reject(new RuntimeError("SystemError", `exec fifo ${fifoPath}: ${describeError(e)}`, { cause: e }));
  }

  return new Promise<CommitOutcome>((resolve, reject) => {
    let committed = false;
    let settled = false; // the caller has its answer
    let closed = false; // the fd is closed, timers cleared
    let detached = false; // the caller gave up while a writer was attached: we keep reading, see onAbort
    let capTimer: NodeJS.Timeout | undefined;
    let ended = false; // the socket saw end of file (and closes the fd on its own)

    const settle = (result: CommitOutcome | RuntimeError): void => {
      if (settled) return;
      settled = true;
      if (result instanceof RuntimeError) reject(result);
      else resolve(result);
    };

    const finish = (result: CommitOutcome | RuntimeError): void => {
      if (!closed) {
        closed = true;
        clearInterval(poll);
        if (capTimer !== undefined) clearTimeout(capTimer);
        opts.signal?.removeEventListener("abort", onAbort);
        onRead = () => false;
        sock.removeAllListeners("end");
        sock.on("error", () => {}); // late errors after destroy are of no interest
        sock.destroy(); // closes fd
      }
      if (detached) opts.onDetachedEnd?.(result);
      settle(result);
    };

    const commit = (): void => {
      if (committed) return;
      committed = true;
      removeFifo();
      opts.onCommit?.();
      capTimer = setTimeout(() => finish("timeout"), opts.commitWaitMs);
    };

    /**
     * Reads what sits in the pipe now, without waiting for the event loop:
     * `data` (the byte is here), `writer` (a writer is attached and has not
     * written), or `none` (no writer).
     */
    const probe = (): "data" | "writer" | "none" => {
      if (ended || closed) return "none"; // the socket may have closed the fd: never read a reused number
      try {
        const n = readOrAgain(fd, PROBE_BUFFER);
        return n > 0 ? "data" : n < 0 ? "writer" : "none";
      } catch {
        return "none";
      }
    };

    /**
     * After the byte: reads what the writer left, at most {@link DRAIN_BYTES_PER_TICK}
     * bytes, and says whether end of file came (`eof`: a read returned 0, or an error
     * other than EAGAIN) or a writer still has its end open (`open`: EAGAIN, or the
     * budget was used up by data).
     */
    const drain = (): "eof" | "open" => {
      if (ended || closed) return "eof"; // the socket may have closed the fd: never read a reused number
      while (readThisTick < DRAIN_BYTES_PER_TICK) {
        let n: number;
        try {
          n = readOrAgain(fd, DRAIN_BUFFER);
        } catch {
          return "eof";
        }
        if (n < 0) return "open";
        if (n === 0) return "eof";
        readThisTick += n;
      }
      return "open";
    };

    const onAbort = (): void => {
      if (settled) return;
      if (committed) {
        // The start has happened; only end of file (the exec) is still awaited. Tell the caller
        // the truth before its deadline rather than let it time out on a started container.
        detached = true;
        settle("answered-early");
        return;
      }
      const reason: unknown = opts.signal?.reason;
      const error = reason instanceof RuntimeError ? reason : new RuntimeError("Cancelled", "start cancelled");
      switch (probe()) {
        case "data":
          commit(); // the byte came just in time: the start happened
          detached = true;
          settle("answered-early");
          return;
        case "writer":
          // The init process has opened its end and not yet written (it may be stopped right
          // there). Closing our end now would kill it with SIGPIPE when it writes, so the caller
          // gets its answer and we keep the fifo open until the init writes or dies.
          detached = true;
          opts.onDetach?.();
          settle(
            new RuntimeError(
              error.kind,
              `${error.message}; the init process had already opened the exec fifo, so the start may still complete (it would be logged)`,
            ),
          );
          return;
        case "none":
          finish(error);
      }
    };

    // Linux reports no EPOLLHUP to a reader that opened the fifo after the writer did (pipe_poll
    // compares f_version with w_counter): when another reader (a racing `runc start`) released
    // the init process first, end of file never wakes the event loop. So the poll also reads:
    // a writer seen and then gone is end of file.
    let sawWriter = false;
    let writerGoneTicks = 0;
    const poll = setInterval(() => {
      if (committed) {
        // A new tick, a new budget, shared by this drain and the event loop's reads (see onRead).
        readThisTick = 0;
        if (drain() === "eof") finish("exec");
        else if (!opts.isInitAlive()) finish("exited");
        else if (paused && readThisTick < DRAIN_BYTES_PER_TICK) {
          paused = false;
          sock.resume();
        }
        return;
      }
      const alive = opts.isInitAlive();
      const now = probe();
      if (now === "data") {
        commit();
        return;
      }
      if (!alive) {
        finish(dead());
        return;
      }
      if (now === "writer") {
        sawWriter = true;
        writerGoneTicks = 0;
      } else if (sawWriter && ++writerGoneTicks >= 2) {
        // The writer came and went without a byte for us. Decided a poll later, because an
        // exiting init closes its fds before /proc shows it dead: alive now means its byte went
        // to another reader (the container runs); otherwise it died.
        finish(alreadyRunning());
        return;
      }
      if (!pathIsOurs()) finish(alreadyRunning());
    }, LIVENESS_POLL_MS);

    // The event loop keeps reading after the byte, so end of file (the init's exec) is seen the
    // moment it comes; an init that keeps writing is read at most DRAIN_BYTES_PER_TICK per tick,
    // then reading pauses until the next tick of the poll.
    let readThisTick = 0;
    let paused = false;
    onRead = (n) => {
      if (n <= 0) return true;
      if (!committed) {
        commit();
        return true;
      }
      readThisTick += n;
      if (readThisTick < DRAIN_BYTES_PER_TICK) return true;
      paused = true;
      return false; // pauses the socket; the poll resumes it
    };
    sock.on("end", () => {
      ended = true;
      if (committed) finish("exec");
      else sawWriter = true; // the poll decides between dead and already running
    });
    sock.on("error", (e) => {
      if (committed) finish("exec");
      else finish(new RuntimeError("SystemError", `read ${fifoPath}: ${describeError(e)}`, { cause: e }));
    });
    if (early === "committed") commit(); // the byte came during the yield: the fifo is removed here
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Gives the CPU to the init process for a bounded time (see {@link YIELD_MAX_MS}), right after
 * the fifo was opened, reading `fd` every {@link YIELD_SLICE_MS}: `exec` when the byte and end of
 * file both came (the whole handshake done), `committed` when only the byte came, `waiting`
 * when a writer is attached and silent, `none` when no writer is (then the event loop's poll
 * tells a dead init from one whose byte went to another reader), `skipped` when the budget
 * over all Starts is spent.
 */
function yieldToInit(fd: number): "exec" | "committed" | "waiting" | "none" | "skipped" {
  const t0 = performance.now();
  const budget = yieldBudget(t0);
  if (budget <= 0) return "skipped";
  let gotByte = false;
  let read = 0;
  try {
    for (;;) {
      let n: number;
      try {
        n = readOrAgain(fd, DRAIN_BUFFER); // -1: a writer is attached and has nothing more for now
      } catch {
        return gotByte ? "committed" : "none";
      }
      if (n === 0) return gotByte ? "exec" : "none";
      if (n > 0) {
        gotByte = true;
        read += n;
        if (read >= DRAIN_BYTES_PER_TICK) return "committed"; // a flood: left to the bounded drain
        continue;
      }
      if (performance.now() - t0 >= budget) return gotByte ? "committed" : "waiting";
      Atomics.wait(yieldSleeper, 0, 0, YIELD_SLICE_MS);
    }
  } finally {
    yieldUsedMs += performance.now() - t0;
  }
}
