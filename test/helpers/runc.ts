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
