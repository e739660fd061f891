import type { FreezerState } from "./freezer.js";

/**
 * A container's status, derived, never stored (runc 1.1.5
 * `libcontainer/container.go` Status; `pausing` is reported where runc would loop).
 */
export type ContainerStatus = "created" | "running" | "pausing" | "paused" | "stopped";

/**
 * The facts status derivation reads, each from its own source. Each is a
 * function, read only when the derivation gets to it (a frozen container's
 * /proc entry is never read, a dead one's exec fifo is never stat'ed).
 */
export interface StatusFacts {
  /** From the cgroup freezer (`freezer.state` / `cgroup.freeze`). */
  freezer: () => FreezerState;
  /** From `/proc/PID/stat`: pid exists, start time matches, state not Z or X. */
  initAlive: () => boolean;
  /** `stat(<state dir>/exec.fifo)` succeeds (follows symlinks, any file type). */
  execFifoExists: () => boolean;
}

/**
 * Derives the status from the facts, in runc's order
 * (runc 1.1.5 `libcontainer/container_linux.go` refreshState): the freezer
 * first (`frozen` -> paused, `freezing` -> pausing, whatever the init process
 * is doing), then stopped unless the init process is alive, then created while
 * the exec fifo exists, else running.
 */
export function deriveStatus(facts: StatusFacts): ContainerStatus {
  const freezer = facts.freezer();
  if (freezer === "frozen") return "paused";
  if (freezer === "freezing") return "pausing";
  if (!facts.initAlive()) return "stopped";
  return facts.execFifoExists() ? "created" : "running";
}

/** Compile-time exhaustiveness: a `switch` over a union calls this in `default`; a missing case does not compile. */
export function assertNever(x: never): never {
  throw new Error(`unexpected value ${JSON.stringify(x)}`);
}

/**
 * Whether Start may run the user process: only a `created` container
 * (runc 1.1.5 `libcontainer/container_linux.go` Exec → `start.go` status switch).
 */
export function canStart(status: ContainerStatus): boolean {
  switch (status) {
    case "created":
      return true;
    case "running":
    case "pausing":
    case "paused":
    case "stopped":
      return false;
    default:
      return assertNever(status);
  }
}

/**
 * Whether Kill may signal the container: every status whose init process may
 * be alive (runc 1.1.5 `container_linux.go` Signal: Running, Created, Paused;
 * `pausing` counts as paused); a stopped one is `container not running`.
 */
export function canKill(status: ContainerStatus): boolean {
  switch (status) {
    case "created":
    case "running":
    case "pausing":
    case "paused":
      return true;
    case "stopped":
      return false;
    default:
      return assertNever(status);
  }
}

/**
 * Whether Pause may freeze the container: `created` or `running`
 * (runc 1.1.5 `container_linux.go` Pause); otherwise `container not running`.
 */
export function canPause(status: ContainerStatus): boolean {
  switch (status) {
    case "created":
    case "running":
      return true;
    case "pausing":
    case "paused":
    case "stopped":
      return false;
    default:
      return assertNever(status);
  }
}

/**
 * Whether Resume may thaw the container: `paused`, and `pausing` (a freeze in
 * progress is undone) (runc 1.1.5 `container_linux.go` Resume); otherwise
 * `container not paused`.
 */
export function canResume(status: ContainerStatus): boolean {
  switch (status) {
    case "paused":
    case "pausing":
      return true;
    case "created":
    case "running":
    case "stopped":
      return false;
    default:
      return assertNever(status);
  }
}

/**
 * Whether Delete may go ahead without `force`: `stopped` (destroyed) and
 * `created` (its init is killed first, as runc 1.1.5 `delete.go` does even
 * without `--force`); a running, pausing or paused container needs `force`.
 */
export function canDelete(status: ContainerStatus): boolean {
  switch (status) {
    case "stopped":
    case "created":
      return true;
    case "running":
    case "pausing":
    case "paused":
      return false;
    default:
      return assertNever(status);
  }
}
