import type { StateRoot } from "../container.js";
import { execFifoExists } from "../container.js";
import { RuntimeError } from "../errors.js";
import { execFifoHandshake, type CommitOutcome } from "../exec-fifo.js";
import { waitOrAbort } from "../locks.js";
import { MSG } from "../messages.js";
import { EXEC_FIFO_FILENAME } from "../paths.js";
import { isInitAlive } from "../proc.js";
import { assertNever, canStart, type ContainerStatus } from "../status.js";
import type { OpContext } from "./context.js";

/** Options of {@link startContainer}. */
export interface StartOptions extends OpContext {
  /** After the byte, how long to wait for the init process to exec the user process at most, in ms. */
  commitWaitMs?: number;
  /** Told when the start is committed (fifo removed) and how the wait after it ended. */
  onCommitted?: (outcome: CommitOutcome) => void;
  /**
   * Told how a handshake ended that went on after the call had failed with
   * `DeadlineExceeded`/`Cancelled`, because the init process had its end of the
   * fifo open (closing ours would have killed it).
   */
  onDetachedEnd?: (result: CommitOutcome | RuntimeError) => void;
  /**
   * Told once per exec fifo handshake, when the call's wait for it ends: how
   * long it took, in seconds (from opening the fifo), and its outcome — a
   * {@link CommitOutcome} (`exec`, `exited`, `timeout`, `answered-early`), or the
   * kind of the error that ended it (`ContainerStopped`, `ContainerRunning`,
   * `DeadlineExceeded`, `Cancelled`, `SystemError`). For metrics; must not throw.
   */
  onHandshakeEnd?: (outcome: string, seconds: number) => void;
}

/** The error Start answers for a container whose status is not `created`. */
function cannotStart(status: ContainerStatus, fifo: string, id: string): RuntimeError {
  switch (status) {
    case "running":
      return new RuntimeError("ContainerRunning", MSG.alreadyRunning, { containerId: id });
    case "stopped":
      // The init process died before writing its byte when the exec fifo is still there.
      return new RuntimeError("ContainerStopped", execFifoExists(fifo) ? MSG.initDead : MSG.startStopped, { containerId: id });
    case "paused":
    case "pausing":
      return new RuntimeError("ContainerPaused", MSG.startPaused(status), { containerId: id });
    case "created":
      throw new Error("a created container can start");
    default:
      return assertNever(status);
  }
}

/**
 * Starts a created container (`runc start ID`; runc 1.1.5 `libcontainer/container_linux.go`
 * exec): load → lock → refresh the status → {@link canStart} → the exec fifo
 * handshake. Concurrent operations on one container (also through an alias
 * symlink) are serialised, so exactly one Start succeeds and the others see it running.
 *
 * @returns the init pid
 * @throws {RuntimeError} as `StateRoot.load`, and `ContainerRunning` (`cannot start an already running
 *   container`), `ContainerStopped` (`cannot start a container that has stopped`, or `container process
 *   is already dead` when the init process died before writing its byte), `ContainerPaused` (`cannot
 *   start a container in the paused state` / `pausing state`), `DeadlineExceeded` / `Cancelled`
 *   (from `signal`, nothing changed), `SystemError` (exec fifo not a FIFO, I/O error)
 */
export async function startContainer(root: StateRoot, id: string, opts: StartOptions = {}): Promise<number> {
  const first = root.load(id);
  return root.locks.run(first.stateDir, opts.signal, async (waited) => {
    // A handshake that went on detached still holds the fifo: wait for it rather than open a second reader.
    const pending = root.detachedFor(first.stateDir);
    if (pending !== undefined) await waitOrAbort(pending, opts.signal);
    // Loaded again only after a wait: with none, `first` was read in this same turn of the event loop.
    const c = waited || pending !== undefined ? root.load(id) : first;
    const fifo = `${c.stateDir}/${EXEC_FIFO_FILENAME}`;
    const status = root.status(c);
    if (!canStart(status)) throw cannotStart(status, fifo, id);
    const { initProcessPid: pid, initProcessStart: startTime } = c.record;
    let detachedEnd: (() => void) | undefined;
    const t0 = performance.now();
    const ended = (outcome: string): void => opts.onHandshakeEnd?.(outcome, (performance.now() - t0) / 1000);
    const outcome = await execFifoHandshake(fifo, {
      isInitAlive: () => isInitAlive(pid, startTime),
      signal: opts.signal,
      commitWaitMs: opts.commitWaitMs ?? 60_000,
      onCommit: () => root.changed(id),
      onDetach: () => {
        detachedEnd = root.addDetached(c.stateDir);
      },
      onDetachedEnd: (result) => {
        detachedEnd?.();
        opts.onDetachedEnd?.(result);
      },
    }).then((o) => {
      ended(o);
      return o;
    }, (e: unknown) => {
      ended(e instanceof RuntimeError ? e.kind : "error");
      if (e instanceof RuntimeError && e.containerId === undefined) {
        throw new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause });
      }
      throw e;
    });
    opts.onCommitted?.(outcome);
    return pid;
  });
}
