import fs from "node:fs";
import net from "node:net";
import { RuntimeError, describeError, isErrno } from "./errors.js";

/** How often the handshake re-checks the init process and the fifo path while it waits, in ms. */
export const LIVENESS_POLL_MS = 20;

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
}

/** How a handshake ended once committed: `exec` (end of file seen), `exited` (init gone) or `timeout`. */
export type CommitOutcome = "exec" | "exited" | "timeout";

const dead = () => new RuntimeError("ContainerStopped", "container process is already dead");
const alreadyRunning = () => new RuntimeError("ContainerRunning", "cannot start an already running container");

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
 *    read on to end of file, which comes when the init process exec's the user
 *    process (as runc 1.1.5 `start` does), bounded by `commitWaitMs`.
 *
 * Rejections (all before anything is changed; the fifo stays in place):
 * - `ContainerStopped` `container process is already dead`: the init process died before writing;
 * - `ContainerRunning` `cannot start an already running container`: end of file with no byte (another
 *   reader took it), or the fifo path vanished or was replaced (status then reads running);
 * - `SystemError`: the path is a directory (`read <path>: is a directory`), a regular file, a symlink,
 *   or another I/O error;
 * - `DeadlineExceeded` / `Cancelled`: `signal` aborted first (its reason).
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
  let sock: net.Socket;
  try {
    sock = new net.Socket({ fd, readable: true, writable: false });
  } catch (e) {
    fs.closeSync(fd);
    return Promise.reject(new RuntimeError("SystemError", `exec fifo ${fifoPath}: ${describeError(e)}`, { cause: e }));
  }

  /** Is `fifoPath` still the inode we opened? */
  const pathIsOurs = (): boolean => {
    const st = fs.statSync(fifoPath, { throwIfNoEntry: false });
    return st !== undefined && st.dev === ident.dev && st.ino === ident.ino;
  };

  return new Promise<CommitOutcome>((resolve, reject) => {
    let committed = false;
    let settled = false;
    let received = 0;
    let capTimer: NodeJS.Timeout | undefined;

    const finish = (result: CommitOutcome | RuntimeError): void => {
      if (settled) return;
      settled = true;
      clearInterval(poll);
      if (capTimer !== undefined) clearTimeout(capTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      sock.removeAllListeners("data");
      sock.removeAllListeners("end");
      sock.on("error", () => {}); // late errors after destroy are of no interest
      sock.destroy(); // closes fd
      if (result instanceof RuntimeError) reject(result);
      else resolve(result);
    };

    const commit = (): void => {
      committed = true;
      opts.signal?.removeEventListener("abort", onAbort);
      try {
        if (pathIsOurs()) fs.unlinkSync(fifoPath);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) {
          // The start happened; a leftover fifo only makes status read "created" while init lives.
          process.emitWarning(`runc-shim: cannot remove ${fifoPath}: ${describeError(e)}`);
        }
      }
      opts.onCommit?.();
      capTimer = setTimeout(() => finish("timeout"), opts.commitWaitMs);
    };

    /** A byte may sit in the pipe although the event loop has not delivered it yet. */
    const pendingByte = (): boolean => {
      try {
        const n = fs.readSync(fd, Buffer.alloc(16), 0, 16, null);
        received += n;
        return n > 0;
      } catch {
        return false; // EAGAIN (writer present, nothing written), EBADF, ...
      }
    };

    const onAbort = (): void => {
      if (committed) return;
      const reason: unknown = opts.signal?.reason;
      finish(reason instanceof RuntimeError ? reason : new RuntimeError("Cancelled", "start cancelled"));
    };

    const poll = setInterval(() => {
      if (committed) {
        if (!opts.isInitAlive()) finish("exited");
        return;
      }
      if (!opts.isInitAlive()) {
        if (pendingByte()) commit();
        else finish(dead());
        return;
      }
      if (!pathIsOurs()) {
        if (pendingByte()) commit();
        else finish(alreadyRunning());
      }
    }, LIVENESS_POLL_MS);

    sock.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (!committed && received > 0) commit();
    });
    sock.on("end", () => {
      if (committed) finish("exec");
      else finish(opts.isInitAlive() ? alreadyRunning() : dead());
    });
    sock.on("error", (e) => {
      if (committed) finish("exec");
      else finish(new RuntimeError("SystemError", `read ${fifoPath}: ${describeError(e)}`, { cause: e }));
    });
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
}
