import { runcUnavailable } from "../../scripts/lib/runc.js";

export * from "../../scripts/lib/runc.js";

/**
 * Whether to skip runc tests: never under CI=true (a missing runc or a non-root
 * user then fails the run), otherwise when runc cannot run here, with a message
 * saying what to install.
 */
export function skipRunc(): boolean {
  const why = runcUnavailable();
  if (why === undefined) return false;
  if (process.env.CI === "true") throw new Error(`CI=true but ${why}`);
  console.warn(`skipping runc tests: ${why}`);
  return true;
}

/** SIGSTOPs a process and waits until /proc says it is stopped (T), so the stop has taken effect. */
export async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  const { procState, waitFor } = await import("../../scripts/lib/runc.js");
  await waitFor(() => procState(pid) === "T", 5000, `pid ${pid} to stop`);
}
