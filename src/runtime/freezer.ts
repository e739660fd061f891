import fs from "node:fs";
import path from "node:path";
import { RuntimeError, describeError, isErrno } from "./errors.js";
import { heldFiles, openReleasingHeld } from "./held-files.js";
import { joinFile } from "./paths.js";

/** statfs `f_type` of a cgroup v1 hierarchy (CGROUP_SUPER_MAGIC). */
export const CGROUP_SUPER_MAGIC = 0x27e0eb;
/** statfs `f_type` of the cgroup v2 unified hierarchy (CGROUP2_SUPER_MAGIC). */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * The freezer state of a container's cgroup
 * (runc 1.1.5 `libcontainer/configs/cgroup_linux.go` FreezerState, plus `freezing`).
 * - `undefined`: no freezer (no path, or the cgroup is gone): not paused.
 * - `thawed`: not frozen, or frozen only through an ancestor (v1 `self_freezing` 0).
 * - `freezing`: a freeze was requested and has not completed (runc loops; we answer at once).
 * - `frozen`: the container's own cgroup is frozen.
 */
export type FreezerState = "undefined" | "thawed" | "freezing" | "frozen";

/** Which cgroup layout the host uses: `v1` (legacy or hybrid) or `v2` (unified). */
export type CgroupMode = "v1" | "v2";

/**
 * Detects the host's cgroup mode as runc's `cgroups.IsCgroup2UnifiedMode` does:
 * `/sys/fs/cgroup` is a cgroup2 mount. Hybrid hosts (tmpfs with v1 controllers
 * and a `unified` v2 mount) are `v1`.
 */
export function detectCgroupMode(mountPoint = "/sys/fs/cgroup"): CgroupMode {
  try {
    return fs.statfsSync(mountPoint).type === CGROUP2_SUPER_MAGIC ? "v2" : "v1";
  } catch {
    return "v1";
  }
}

/**
 * Reads one cgroup file, after checking (statfs of the opened fd) that it lies
 * on a cgroup filesystem, so a crafted state.json cannot make the shim read an
 * arbitrary file (runc 1.1.5 `libcontainer/cgroups/file.go` OpenFile: `not a
 * cgroup file`). The open is non-blocking (a FIFO or device cannot stall it)
 * and does not follow a final symlink; nothing is read before the check.
 *
 * @param maxBytes bytes to read at most
 * @returns the content, or `undefined` when the file or its cgroup does not exist (ENOENT, ENODEV, ENOTDIR)
 * @throws {RuntimeError} `SystemError`: `open <file>: not a cgroup file`, or another I/O error
 */
export function readCgroupFile(file: string, maxBytes = 64): string | undefined {
  return readCgroup(file, maxBytes, true);
}

// Reads are synchronous and decoded at once: one buffer serves every small read.
const READ_BUFFER = Buffer.allocUnsafe(4096);

/**
 * Read through the fd {@link heldFiles} holds for `file`, if any; else open
 * (non-blocking, no final symlink), optionally check the fs type of the very
 * fd, read, and hold the fd for the next read (or close it).
 */
function readCgroup(file: string, maxBytes: number, checkFs: boolean): string | undefined {
  const buf = maxBytes <= READ_BUFFER.length ? READ_BUFFER : Buffer.allocUnsafe(maxBytes);
  const held = heldFiles.read(file, buf, maxBytes);
  if (held !== undefined) return buf.toString("utf8", 0, held);
  if (missing(file)) return undefined;
  let fd: number;
  try {
    fd = openReleasingHeld(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (e) {
    if (isErrno(e, "ENOENT", "ENODEV", "ENOTDIR")) return undefined;
    throw new RuntimeError("SystemError", `open ${file}: ${describeError(e)}`, { cause: e });
  }
  let keep = false;
  try {
    if (checkFs) {
      // statfs of /proc/self/fd/N is fstatfs: the check applies to the very file opened.
      let fsType: number;
      try {
        fsType = fs.statfsSync(`/proc/self/fd/${fd}`).type;
      } catch (e) {
        throw new RuntimeError("SystemError", `statfs ${file}: ${describeError(e)}`, { cause: e });
      }
      if (!isCgroupFsType(fsType)) {
        throw new RuntimeError("SystemError", `open ${file}: not a cgroup file`);
      }
    }
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, maxBytes, 0);
    } catch (e) {
      if (isErrno(e, "ENODEV")) return undefined;
      throw new RuntimeError("SystemError", `read ${file}: ${describeError(e)}`, { cause: e });
    }
    const text = buf.toString("utf8", 0, n);
    // Only a file checked to lie on cgroupfs is held (a held fd is read without a check): a read in a
    // checked dir checks the fd once here, and its later reads are a pread each.
    keep = (checkFs || onCgroupFs(`/proc/self/fd/${fd}`)) && heldFiles.keep(file, fd);
    return text;
  } finally {
    if (!keep) fs.closeSync(fd);
  }
}

/**
 * Whether `file` is not there (lstat: ENOENT, ENOTDIR), looked up before an
 * open that would fail: a stopped container's cgroup is gone, and a failed
 * open's exception costs ~10 µs (its stack trace) where the lookup costs ~1.
 * Anything else (a symlink, EACCES) is left to the open and its checks.
 */
function missing(file: string): boolean {
  try {
    return fs.lstatSync(file, { throwIfNoEntry: false }) === undefined;
  } catch (e) {
    return isErrno(e, "ENOTDIR");
  }
}

/**
 * Reads a file of a cgroup directory: `(file, maxBytes) => content`, or
 * `undefined` when absent. {@link readCgroupFile} in production; tests pass a
 * reader over prepared cgroupfs-like fixtures.
 */
export type CgroupReader = (file: string, maxBytes?: number) => string | undefined;

/**
 * The freezer state of a cgroup v1 freezer directory
 * (runc 1.1.5 `libcontainer/cgroups/fs/freezer.go` GetState): `THAWED` ->
 * thawed; `FROZEN` -> frozen if `freezer.self_freezing` is `1` or missing,
 * thawed if `0` (frozen only by an ancestor); `FREEZING` -> freezing (runc
 * retries every 1 ms without bound; we answer at once).
 *
 * @throws {RuntimeError} `SystemError` for an unknown state or self_freezing value, or a path off cgroupfs
 */
export function freezerStateV1(dir: string, read: CgroupReader = readCgroupFile): FreezerState {
  const raw = read(joinFile(dir, "freezer.state"));
  if (raw === undefined) return "undefined";
  switch (raw.trim()) {
    case "THAWED":
      return "thawed";
    case "FREEZING":
      return "freezing";
    case "FROZEN": {
      const self = read(joinFile(dir, "freezer.self_freezing"));
      if (self === undefined) return "frozen";
      if (self.trim() === "1") return "frozen";
      if (self.trim() === "0") return "thawed";
      throw new RuntimeError("SystemError", `unknown "freezer.self_freezing" state: ${JSON.stringify(self)}`);
    }
    default:
      throw new RuntimeError("SystemError", `unknown freezer.state ${JSON.stringify(raw)}`);
  }
}

/**
 * The freezer state of a cgroup v2 directory
 * (runc 1.1.5 `libcontainer/cgroups/fs2/freezer.go` getFreezer): `cgroup.freeze`
 * `0` -> thawed; `1` -> frozen when `cgroup.events` has the line `frozen 1`,
 * else freezing (runc polls up to 10 s; we answer at once).
 *
 * @throws {RuntimeError} `SystemError` for an unknown `cgroup.freeze` value, or a path off cgroupfs
 */
export function freezerStateV2(dir: string, read: CgroupReader = readCgroupFile): FreezerState {
  const raw = read(joinFile(dir, "cgroup.freeze"), 2);
  if (raw === undefined) return "undefined";
  if (raw === "0\n" || raw === "0") return "thawed";
  if (raw !== "1\n" && raw !== "1") {
    throw new RuntimeError("SystemError", `unknown "cgroup.freeze" state: ${JSON.stringify(raw)}`);
  }
  const events = read(joinFile(dir, "cgroup.events"), 4096);
  if (events === undefined) return "undefined";
  return events.split("\n").some((l) => l.trim() === "frozen 1") ? "frozen" : "freezing";
}

/**
 * The freezer state of a container from its `cgroup_paths`: on a v1 or hybrid
 * host the `freezer` entry, on a v2 host the `""` (unified) entry. No entry ->
 * `undefined` (not paused).
 *
 * @throws {RuntimeError} `SystemError` as {@link freezerStateV1} / {@link freezerStateV2}
 */
export function containerFreezerState(cgroupPaths: Readonly<Record<string, string>>, mode: CgroupMode, read: CgroupReader = readCgroupFile): FreezerState {
  if (mode === "v2") {
    const dir = cgroupPaths[""];
    return dir ? freezerStateV2(dir, read) : "undefined";
  }
  const dir = cgroupPaths.freezer;
  return dir ? freezerStateV1(dir, read) : "undefined";
}

/**
 * Reads a file of a cgroup dir that the caller has already checked lies on a
 * cgroup filesystem ({@link onCgroupFs}): open (non-blocking, no final
 * symlink), read, and the fd held for the next read once fstatfs shows it on
 * cgroupfs ({@link heldFiles}), so later reads are one pread each; no statfs per read. For watchers that read the same
 * freezer files many times; the first check is what keeps them on cgroupfs
 * (only root can mount over or move a cgroup dir).
 *
 * @returns the content, or `undefined` when the file or its cgroup does not exist
 * @throws {RuntimeError} `SystemError` for any other I/O error
 */
export function readInCheckedDir(file: string, maxBytes = 64): string | undefined {
  return readCgroup(file, maxBytes, false);
}

/** Whether a statfs `f_type` is a cgroup filesystem's (v1 or v2). */
export function isCgroupFsType(type: number): boolean {
  return type === CGROUP_SUPER_MAGIC || type === CGROUP2_SUPER_MAGIC;
}

/**
 * Whether `file` (a dir, or `/proc/self/fd/N` for an open fd: fstatfs) lies on
 * a cgroup filesystem (v1 or v2), by statfs; false when statfs fails.
 */
export function onCgroupFs(file: string): boolean {
  try {
    return isCgroupFsType(fs.statfsSync(file).type);
  } catch {
    return false;
  }
}

/**
 * Writes one cgroup file, after checking (fstatfs of the opened fd) that it
 * lies on a cgroup filesystem, as {@link readCgroupFile} does for reads
 * (runc 1.1.5 `libcontainer/cgroups/file.go` WriteFile). Non-blocking open,
 * no final symlink followed.
 *
 * @throws {RuntimeError} `SystemError`: `open <file>: not a cgroup file`, or the write's error
 * @throws NodeJS.ErrnoException ENOENT when the file (the cgroup) does not exist
 */
export function writeCgroupFile(file: string, content: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (e) {
    if (isErrno(e, "ENOENT")) throw e;
    throw new RuntimeError("SystemError", `open ${file}: ${describeError(e)}`, { cause: e });
  }
  try {
    const fsType = fs.statfsSync(`/proc/self/fd/${fd}`).type;
    if (!isCgroupFsType(fsType)) {
      throw new RuntimeError("SystemError", `open ${file}: not a cgroup file`);
    }
    fs.writeSync(fd, content);
  } catch (e) {
    if (e instanceof RuntimeError) throw e;
    throw new RuntimeError("SystemError", `write ${file}: ${describeError(e)}`, { cause: e });
  } finally {
    fs.closeSync(fd);
  }
}

/** Bound of a v2 freeze: how long `cgroup.events` may take to say `frozen 1`, in ms (runc 1.1.5: 1000 × 10 ms). */
export const V2_FREEZE_TIMEOUT_MS = 10_000;
/** Rounds of the v1 freeze loop before `unable to freeze` (runc 1.1.5 `fs/freezer.go`). */
export const V1_FREEZE_ROUNDS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The freezer dir of a container for `mode`: v1 (and hybrid) `cgroup_paths.freezer`, v2 `cgroup_paths[""]`. */
export function freezerDir(cgroupPaths: Readonly<Record<string, string>>, mode: CgroupMode): string | undefined {
  const dir = mode === "v2" ? cgroupPaths[""] : cgroupPaths.freezer;
  return dir === undefined || dir === "" ? undefined : dir;
}

/**
 * Freezes a container's cgroup, on the event loop (never a blocking sleep).
 *
 * - v1 (runc 1.1.5 `libcontainer/cgroups/fs/freezer.go` Set(Frozen)): up to
 *   {@link V1_FREEZE_ROUNDS} rounds of writing `FROZEN` and reading
 *   `freezer.state` back until it says `FROZEN`; every 50th round writes
 *   `THAWED` and waits 10 ms (lets forking tasks settle), every 25th yields.
 * - v2 (`fs2/freezer.go`): writes `1` to `cgroup.freeze`, then polls
 *   `cgroup.events` every 10 ms for `frozen 1`, at most {@link V2_FREEZE_TIMEOUT_MS}.
 *
 * On any failure the cgroup is thawed again before the error is thrown.
 *
 * @param dir the container's freezer dir ({@link freezerDir})
 * @throws {RuntimeError} `SystemError`: `unable to freeze`, `unexpected state <s> while freezing`,
 *   `timeout of 10s reached waiting for the cgroup to freeze`, `not a cgroup file`, I/O errors
 */
export async function freeze(dir: string, mode: CgroupMode): Promise<void> {
  try {
    if (mode === "v2") {
      writeCgroupFile(path.join(dir, "cgroup.freeze"), "1");
      const t0 = Date.now();
      for (;;) {
        if (freezerStateV2(dir) === "frozen") return;
        if (Date.now() - t0 >= V2_FREEZE_TIMEOUT_MS) {
          throw new RuntimeError("SystemError", "timeout of 10s reached waiting for the cgroup to freeze");
        }
        await sleep(10);
      }
    }
    const stateFile = path.join(dir, "freezer.state");
    for (let i = 0; i < V1_FREEZE_ROUNDS; i++) {
      if (i % 50 === 49) {
        writeCgroupFile(stateFile, "THAWED");
        await sleep(10);
      }
      writeCgroupFile(stateFile, "FROZEN");
      if (i % 25 === 24) await new Promise<void>((r) => setImmediate(r));
      const state = readCgroupFile(stateFile)?.trim();
      if (state === "FROZEN") return;
      if (state !== "FREEZING") throw new RuntimeError("SystemError", `unexpected state ${state ?? "(none)"} while freezing`);
    }
    throw new RuntimeError("SystemError", "unable to freeze");
  } catch (e) {
    try {
      thaw(dir, mode);
    } catch {
      // the freeze's own error is the one reported
    }
    if (isErrno(e, "ENOENT")) throw new RuntimeError("SystemError", `freeze ${dir}: the cgroup does not exist`, { cause: e });
    throw e;
  }
}

/**
 * Thaws a container's cgroup: one write, no read-back (runc 1.1.5
 * `fs/freezer.go` Set(Thawed), `fs2/freezer.go`). A cgroup that no longer
 * exists is left alone.
 *
 * @throws {RuntimeError} `SystemError`: `not a cgroup file`, I/O errors
 */
export function thaw(dir: string, mode: CgroupMode): void {
  try {
    if (mode === "v2") writeCgroupFile(path.join(dir, "cgroup.freeze"), "0");
    else writeCgroupFile(path.join(dir, "freezer.state"), "THAWED");
  } catch (e) {
    if (isErrno(e, "ENOENT")) return;
    throw e;
  }
}
