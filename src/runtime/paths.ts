import fs from "node:fs";
import path from "node:path";
import { isErrno } from "./errors.js";

/** Name of the state file in a container state dir (runc `libcontainer/container_linux.go` stateFilename). */
export const STATE_FILENAME = "state.json";
/** Name of the exec fifo in a container state dir (runc `libcontainer/container_linux.go` execFifoFilename). */
export const EXEC_FIFO_FILENAME = "exec.fifo";
/** Most symlinks one {@link secureJoin} follows before it fails with ELOOP (filepath-securejoin). */
export const MAX_SYMLINK_HOPS = 255;

/**
 * Joins `unsafePath` to `root` with SecureJoin semantics (filepath-securejoin
 * v0.2.3 `SecureJoinVFS`, used by runc 1.1.5 Load): every symlink met on the way
 * is resolved as if `root` were `/`, so absolute targets are re-rooted under
 * `root` and `..` is clamped at `root`. Missing components are kept as they are
 * (the result may not exist). The result is always `root` or below it,
 * lexically.
 *
 * Uses synchronous `lstat`/`readlink`; the state root is a tmpfs in practice, so
 * each is a few microseconds and needs no threadpool hop.
 *
 * @param root absolute, clean path of the state root
 * @param unsafePath a relative path (a container id, `state.json`, ...)
 * @returns the absolute joined path
 * @throws NodeJS.ErrnoException `ELOOP` after {@link MAX_SYMLINK_HOPS} symlinks; any
 *   `lstat` error other than ENOENT/ENOTDIR (e.g. ENAMETOOLONG, EACCES)
 */
export function secureJoin(root: string, unsafePath: string): string {
  let resolved = ""; // the part already resolved, relative to root, "a/b/"
  let rest = unsafePath;
  let hops = 0;
  while (rest !== "") {
    if (hops > MAX_SYMLINK_HOPS) {
      const e: NodeJS.ErrnoException = new Error(`SecureJoin ${root}/${unsafePath}: too many levels of symbolic links`);
      e.code = "ELOOP";
      throw e;
    }
    const slash = rest.indexOf("/");
    const part = slash === -1 ? rest : rest.slice(0, slash);
    rest = slash === -1 ? "" : rest.slice(slash + 1);
    const cleanPart = path.posix.normalize(`/${resolved}${part}`);
    if (cleanPart === "/") {
      resolved = "";
      continue;
    }
    const full = path.posix.normalize(root + cleanPart);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(full, { throwIfNoEntry: false }); // no exception for the common miss
    } catch (e) {
      if (!isErrno(e, "ENOENT", "ENOTDIR")) throw e;
    }
    if (st === undefined || !st.isSymbolicLink()) {
      resolved += `${part}/`;
      continue;
    }
    hops++;
    const target = fs.readlinkSync(full);
    if (target.startsWith("/")) resolved = "";
    rest = rest === "" ? target : `${target}/${rest}`;
  }
  const inner = path.posix.normalize(`/${resolved}`);
  return path.posix.normalize(root + (inner === "/" ? "" : inner.replace(/\/$/, "")));
}

/**
 * `path.join(dir, name)` for a file name `name`, without `path.join`'s
 * normalizing (its scans and intermediate strings) when `dir` is already
 * absolute and clean — no `//`, `.` or `..` component, no trailing `/` — as the
 * paths runc writes are. For the files status derivation reads on every call
 * (a cgroup dir's freezer files).
 */
export function joinFile(dir: string, name: string): string {
  const clean =
    dir.length > 1 &&
    dir.charCodeAt(0) === 0x2f &&
    dir.charCodeAt(dir.length - 1) !== 0x2f &&
    !dir.includes("//") &&
    !dir.includes("/./") &&
    !dir.includes("/../") &&
    !dir.endsWith("/.") &&
    !dir.endsWith("/..");
  return clean ? `${dir}/${name}` : path.join(dir, name);
}

/** True when `candidate` is `root` itself or a path below it (both absolute and clean). */
export function isWithin(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root.endsWith("/") ? root : `${root}/`);
}
