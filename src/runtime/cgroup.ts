import fs from "node:fs";
import path from "node:path";
import { RuntimeError, describeError, isErrno } from "./errors.js";
import { onCgroupFs, readCgroupFile, type CgroupMode } from "./freezer.js";

/**
 * The dir whose processes are the container's: v1 (and hybrid) the `devices`
 * hierarchy as runc 1.1.5 walks it (`libcontainer/cgroups/fs/fs.go` GetAllPids),
 * v2 the unified dir.
 */
export function procsDir(cgroupPaths: Readonly<Record<string, string>>, mode: CgroupMode): string | undefined {
  const dir = mode === "v2" ? cgroupPaths[""] : cgroupPaths.devices;
  return dir === undefined || dir === "" ? undefined : dir;
}

/**
 * Every pid in a cgroup and its sub-cgroups (runc 1.1.5
 * `libcontainer/cgroups/getallpids.go`: a walk reading each `cgroup.procs`).
 *
 * @returns the pids, or `undefined` when the cgroup does not exist
 * @throws {RuntimeError} `SystemError` when `dir` is not on a cgroup filesystem, or a read fails
 */
export function cgroupPids(dir: string): number[] | undefined {
  if (!fs.existsSync(dir)) return undefined;
  if (!onCgroupFs(dir)) throw new RuntimeError("SystemError", `${dir}: not a cgroup directory`);
  const pids: number[] = [];
  const walk = (d: string, depth: number): void => {
    const text = readCgroupFile(path.join(d, "cgroup.procs"), 1 << 20);
    if (text !== undefined) for (const line of text.split("\n")) if (/^\d+$/.test(line)) pids.push(Number(line));
    if (depth >= 64) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      if (isErrno(e, "ENOENT")) return;
      throw new RuntimeError("SystemError", `readdir ${d}: ${describeError(e)}`, { cause: e });
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name), depth + 1);
  };
  walk(dir, 0);
  return pids;
}

/** Pauses between the passes of {@link removeCgroupPaths}, in ms (runc 1.1.5 `cgroups/utils.go` RemovePaths). */
export const REMOVE_BACKOFF_MS = [10, 20, 40, 80] as const;

/** rmdir a cgroup dir; on failure, its sub-cgroups first (children before parents), then it again. */
function removeCgroupDir(dir: string, depth = 0): void {
  try {
    fs.rmdirSync(dir);
    return;
  } catch (e) {
    if (isErrno(e, "ENOENT")) return;
    if (depth >= 64) throw e;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      throw e;
    }
    for (const sub of entries) if (sub.isDirectory()) removeCgroupDir(path.join(dir, sub.name), depth + 1);
    fs.rmdirSync(dir);
  }
}

/**
 * Removes a container's cgroup dirs as runc 1.1.5 does (`cgroups/utils.go`
 * RemovePaths): up to five passes over every path still present, rmdir'ing it
 * (sub-cgroups first), pausing {@link REMOVE_BACKOFF_MS} between passes. Only
 * dirs on a cgroup filesystem are touched: a path elsewhere is reported and
 * left alone; rmdir removes only empty cgroups, so no process is affected.
 *
 * A path that is not absolute and clean (`..`, `//`) or that goes through a
 * symlink is refused too (runc would follow it): state.json names the dirs,
 * and it is not trusted to name only the container's own.
 *
 * @param onRetry told of every failed pass (`Failed to remove cgroup (will retry)`): a removal racing
 *   the exit of the container's last process often needs a second pass
 * @returns the paths left behind (controller → dir) with the last error of each; empty when all are gone
 */
export async function removeCgroupPaths(
  cgroupPaths: Readonly<Record<string, string>>,
  onRetry: (message: string, fields: Record<string, unknown>) => void = () => {},
): Promise<Record<string, string>> {
  const left = new Map<string, string>();
  const errors = new Map<string, string>();
  for (const [key, dir] of Object.entries(cgroupPaths)) {
    if (!path.isAbsolute(dir) || path.normalize(dir) !== dir.replace(/\/+$/, "")) {
      errors.set(key, `${dir} is not an absolute, clean path (no "..", no "//"); not removed`);
      continue;
    }
    if (!fs.existsSync(dir)) continue;
    let real: string;
    try {
      real = fs.realpathSync(dir);
    } catch {
      continue;
    }
    if (real !== path.normalize(dir).replace(/\/+$/, "")) {
      errors.set(key, `${dir} goes through a symlink (to ${real}); not removed`);
      continue;
    }
    if (!onCgroupFs(dir)) {
      errors.set(key, `${dir} is not on a cgroup filesystem; not removed`);
      continue;
    }
    left.set(key, dir);
  }
  for (let pass = 0; pass <= REMOVE_BACKOFF_MS.length && left.size > 0; pass++) {
    if (pass > 0) await new Promise((r) => setTimeout(r, REMOVE_BACKOFF_MS[pass - 1]));
    for (const [key, dir] of left) {
      try {
        removeCgroupDir(dir);
      } catch (e) {
        errors.set(key, `rmdir ${dir}: ${describeError(e)}`);
        if (pass < REMOVE_BACKOFF_MS.length) onRetry("Failed to remove cgroup (will retry)", { cgroup: dir, err: describeError(e) });
      }
      if (!fs.existsSync(dir)) {
        left.delete(key);
        errors.delete(key);
      }
    }
  }
  return Object.fromEntries([...errors.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
