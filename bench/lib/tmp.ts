/**
 * Where the benchmark's temporary state roots go.
 */
import fs from "node:fs";
import os from "node:os";

/** statfs `f_type` of tmpfs (TMPFS_MAGIC). */
export const TMPFS_MAGIC = 0x01021994;

/**
 * The base dir for temporary state roots: like runc's own `/run/runc`, a
 * tmpfs: `/dev/shm` when it is one, else the system's temp dir.
 *
 * @returns an absolute path
 */
export function defaultTempBase(): string {
  try {
    if (fs.statfsSync("/dev/shm").type === TMPFS_MAGIC) return "/dev/shm";
  } catch {
    // no /dev/shm
  }
  return os.tmpdir();
}

/**
 * The file system type of `dir`, for the report.
 *
 * @returns `tmpfs`, `fs type 0x...`, or `unknown fs`
 */
export function fsTypeOf(dir: string): string {
  try {
    const t = fs.statfsSync(dir).type;
    return t === TMPFS_MAGIC ? "tmpfs" : `fs type 0x${t.toString(16)}`;
  } catch {
    return "unknown fs";
  }
}
