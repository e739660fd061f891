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
