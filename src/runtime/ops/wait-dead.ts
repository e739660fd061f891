import { isInitAlive } from "../proc.js";

/** Bound of Delete's wait for a SIGKILLed init process to die, in ms (runc 1.1.5 `delete.go`: 100 × 100 ms). */
export const INIT_DEATH_TIMEOUT_MS = 10_000;
/** The pauses between the checks of {@link waitForInitDeath}, in ms; the last repeats. */
const STEPS_MS = [1, 2, 5, 10, 20];

/**
 * Waits on the event loop until the init process is no longer alive (pid
 * gone, a zombie, or its start time changed: the test status derivation
 * uses), checking after 1, 2, 5, 10, then every 20 ms, at most `timeoutMs`.
 *
 * @returns true once dead, false when still alive at the bound
 */
export async function waitForInitDeath(pid: number, startTime: number, timeoutMs = INIT_DEATH_TIMEOUT_MS): Promise<boolean> {
  const t0 = performance.now();
  for (let i = 0; ; i++) {
    if (!isInitAlive(pid, startTime)) return true;
    if (performance.now() - t0 >= timeoutMs) return false;
    await new Promise((r) => setTimeout(r, STEPS_MS[Math.min(i, STEPS_MS.length - 1)]));
  }
}
