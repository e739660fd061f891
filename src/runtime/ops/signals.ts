import os from "node:os";
import { RuntimeError } from "../errors.js";

/** SIGKILL's number. */
export const SIGKILL = 9;
/** SIGTERM's number: what Kill sends for signal 0, as runc's default. */
export const SIGTERM = 15;
/** The highest signal number Linux knows (SIGRTMAX). */
export const MAX_SIGNAL = 64;

/**
 * The signal Kill sends for a request's `signal`: 0 means SIGTERM (runc 1.1.5
 * `kill.go` default), 1–64 as they are.
 *
 * @throws {RuntimeError} `InvalidArgument` (gRPC INVALID_ARGUMENT) for anything else
 */
export function killSignal(signal: number): number {
  if (signal === 0) return SIGTERM;
  if (!Number.isInteger(signal) || signal < 1 || signal > MAX_SIGNAL) {
    throw new RuntimeError("InvalidArgument", `invalid signal ${signal}: expected 1-${MAX_SIGNAL} (0 means SIGTERM)`);
  }
  return signal;
}

const BY_NUMBER: ReadonlyMap<number, string> = new Map(
  Object.entries(os.constants.signals).map(([name, n]) => [n, name] as const).reverse(),
);

/** A signal's name for messages and logs (`SIGKILL`), or its number when it has none (real-time signals). */
export function signalName(n: number): string {
  return BY_NUMBER.get(n) ?? String(n);
}

/**
 * Sends `signal` to the one process `pid` with kill(2). A pid that is not a
 * positive integer (0, negative: kill(2) would signal a process group, the
 * shim's own, or every process) is never passed on: it names no process, so
 * the answer is "gone". state.json is not trusted to hold a sane pid.
 * @returns false when the process is gone (ESRCH) or the pid names no single process
 * @throws NodeJS.ErrnoException for other errors (EPERM, EINVAL)
 */
export function sendSignal(pid: number, signal: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
}
