import fs from "node:fs";
import path from "node:path";
import { checkStateRoot, type ContainerState, type StateRoot } from "./container.js";
import { RuntimeError, describeError, isErrno } from "./errors.js";

/** Where user names come from (what runc 1.1.5 `libcontainer/user` LookupUid reads). */
export const PASSWD_FILE = "/etc/passwd";

/**
 * One container of a state root, as List reports it: its state, or the error
 * that loading it raised (a {@link RuntimeError}, or anything else for a bug).
 */
export type ContainerEntry =
  | { readonly id: string; readonly state: ContainerState; readonly error?: undefined }
  | { readonly id: string; readonly state?: undefined; readonly error: unknown };

/**
 * User names by uid from `/etc/passwd`, re-read only when the file changes
 * (runc 1.1.5 `list.go` shows `user.LookupUid(uid).Name`, or `#<uid>`).
 */
export class UserNames {
  private readonly byUid = new Map<number, string>();
  private stamp = "";

  constructor(private readonly file: string = PASSWD_FILE) {}

  /** Re-reads the file when its inode, size or mtime changed since the last call. */
  refresh(): void {
    const st = fs.statSync(this.file, { throwIfNoEntry: false, bigint: true });
    const stamp = st === undefined ? "" : `${st.ino}:${st.size}:${st.mtimeNs}`;
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.byUid.clear();
    let text = "";
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch {
      return; // no names: every owner shows as #uid
    }
    for (const line of text.split("\n")) {
      const [name, , uid] = line.split(":");
      if (name === undefined || name === "" || uid === undefined || !/^\d+$/.test(uid)) continue;
      if (!this.byUid.has(Number(uid))) this.byUid.set(Number(uid), name); // the first entry wins
    }
  }

  /** The user name of `uid`, or `#<uid>` when it has none. */
  name(uid: number): string {
    return this.byUid.get(uid) ?? `#${uid}`;
  }
}

/**
 * Runs `fn` with V8's stack trace capture off (`Error.stackTraceLimit = 0`),
 * restoring it afterwards. Loading a stopped container throws and catches
 * ENOENT errors (`/proc/PID` gone, cgroup removed) whose stacks nobody reads;
 * capturing them is about a quarter of what List costs over a large root. `fn`
 * must be synchronous (nothing else runs meanwhile).
 */
export function withoutStackTraces<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Orders container ids as List and Watch report them (by UTF-16 code unit, which is byte order for valid ids). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The names of the real directories in the state root (symlinks and other
 * files skipped, as `runc list` does: `DirEntry.IsDir()`), unsorted.
 *
 * @throws {RuntimeError} `ConfigInvalid` when the root is gone or unreadable, else `SystemError`
 */
export function containerDirNames(root: StateRoot): string[] {
  let dirents: fs.Dirent[];
  try {
    dirents = fs.readdirSync(root.path, { withFileTypes: true });
  } catch (e) {
    checkStateRoot(root.path);
    throw new RuntimeError("SystemError", `readdir ${root.path}: ${describeError(e)}`, { cause: e });
  }
  const names: string[] = [];
  for (const d of dirents) if (d.isDirectory()) names.push(d.name);
  return names;
}

/**
 * The uid owning `<root>/<name>` when it is a real directory (not a symlink),
 * or `undefined` when it is anything else or gone.
 */
export function dirOwner(root: StateRoot, name: string): number | undefined {
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(path.join(root.path, name), { throwIfNoEntry: false });
  } catch (e) {
    if (isErrno(e, "ENOTDIR", "ENAMETOOLONG")) return undefined;
    throw e;
  }
  return st !== undefined && st.isDirectory() ? st.uid : undefined;
}

/**
 * Loads one container as an entry: its state (what State answers, with
 * `owner` set to `owner`), or the error that loading raised.
 */
export function loadEntry(root: StateRoot, id: string, owner: string): ContainerEntry {
  try {
    return { id, state: { ...root.state(id), owner } };
  } catch (e) {
    return { id, error: e };
  }
}

/**
 * {@link loadEntry} without stack traces ({@link withoutStackTraces}), except
 * that an error that is not a {@link RuntimeError} (a bug) is produced once
 * more with its stack, for the log.
 */
export function loadEntryFast(root: StateRoot, id: string, owner: string): ContainerEntry {
  const entry = withoutStackTraces(() => loadEntry(root, id, owner));
  return entry.error === undefined || entry.error instanceof RuntimeError ? entry : loadEntry(root, id, owner);
}

/**
 * Every container of the state root, sorted by id (runc 1.1.5 `list.go`
 * getContainers): one entry per real directory of the root; symlinked entries
 * are skipped, a directory removed while listing is left out (a race with
 * `runc delete`), and a directory that fails to load (no state.json, a corrupt
 * one, a name that is not a valid id) is an entry carrying its error instead
 * of failing the list. `owner` is the user owning the container state dir.
 *
 * Cost: one readdir and a sort, then per container one lstat plus what
 * {@link StateRoot.state} costs (about ten syscalls; state.json is parsed again
 * only when it changed), without capturing stack traces.
 *
 * @throws {RuntimeError} `ConfigInvalid` (root missing, not a directory, unreadable), `SystemError`
 */
/**
 * {@link listContainers} that yields to the event loop every `batch`
 * containers, so that a List of a large root does not hold other calls (State,
 * Start) for the whole of it.
 */
export async function listContainersYielding(root: StateRoot, users: UserNames = new UserNames(), batch = 200): Promise<ContainerEntry[]> {
  const names = containerDirNames(root).sort(compareIds);
  users.refresh();
  const entries: ContainerEntry[] = [];
  for (let i = 0; i < names.length; i += batch) {
    if (i > 0) await new Promise<void>((r) => setImmediate(r));
    for (const name of names.slice(i, i + batch)) {
      const entry = listEntry(root, users, name);
      if (entry !== undefined) entries.push(entry);
    }
  }
  return entries;
}

/** The List entry for one directory name, or undefined when it is not a directory (a symlink, a file). */
function listEntry(root: StateRoot, users: UserNames, name: string): ContainerEntry | undefined {
  let uid: number | undefined;
  try {
    uid = dirOwner(root, name);
  } catch (e) {
    return { id: name, error: new RuntimeError("SystemError", `lstat ${path.join(root.path, name)}: ${describeError(e)}`, { containerId: name, cause: e }) };
  }
  return uid === undefined ? undefined : loadEntryFast(root, name, users.name(uid));
}

export function listContainers(root: StateRoot, users: UserNames = new UserNames()): ContainerEntry[] {
  const names = containerDirNames(root).sort(compareIds);
  users.refresh();
  const entries: ContainerEntry[] = [];
  for (const name of names) {
    const entry = listEntry(root, users, name);
    if (entry !== undefined) entries.push(entry);
  }
  return entries;
}
