import fs from "node:fs";
import path from "node:path";
import { heldFiles } from "./held-files.js";
import { RuntimeError, describeError, errnoOf, isErrno } from "./errors.js";
import { containerFreezerState, detectCgroupMode, freezerDir, type CgroupMode, type CgroupReader, type FreezerState } from "./freezer.js";
import { validateContainerId } from "./id.js";
import { EXEC_FIFO_FILENAME, STATE_FILENAME, isWithin, secureJoin } from "./paths.js";
import { ContainerLocks } from "./locks.js";
import { MSG } from "./messages.js";
import { isInitAlive } from "./proc.js";
import { STATE_BOUNDS, checkBeforeParse, checkRecordBounds } from "./state-bounds.js";
import {
  parseLifecycleConfig,
  parseStateFile,
  splitLabels,
  type ContainerStateRecord,
  type Instant,
  type LifecycleConfig,
} from "./state-file.js";
import { deriveStatus, type ContainerStatus, type StatusFacts } from "./status.js";

/** How state.json is opened: never blocking (a FIFO cannot stall the loop), never through a final symlink. */
const STATE_OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW;

/** Most parsed state.json records kept in memory (~740 bytes of heap each with runc 1.1.5 state files, measured). */
export const STATE_CACHE_ENTRIES = 20_000;

/** What State answers: `runc state`'s fields (runc 1.1.5 `state.go`, `list.go` containerState). */
export interface ContainerState {
  /** The container id, as requested. */
  id: string;
  /** Init pid; 0 when stopped. */
  pid: number;
  /** Derived on this call. */
  status: ContainerStatus;
  /** Absolute bundle path, from the last `bundle=` label. */
  bundle: string;
  /** Absolute rootfs path (`config.rootfs`). */
  rootfs: string;
  /** When the container was created. */
  created: Instant;
  /** The `key=value` labels other than `bundle`. */
  annotations: Record<string, string>;
  /** Always "" (as `runc state`). */
  owner: string;
  /** `config.version`. */
  ociVersion: string;
}

/** What {@link StateRoot.stateLazy} returns: a container's status now, the rest of its state on demand. */
export interface LazyState {
  /** The container id, as requested. */
  readonly id: string;
  /** Derived on this call. */
  readonly status: ContainerStatus;
  /** Init pid; 0 when stopped. */
  readonly pid: number;
  /** The parse of state.json this comes from (the same object while the file is unchanged). */
  readonly source: object;
  /** The whole state (bundle, annotations, ...), made on this call. */
  state(): ContainerState;
}

/** A container loaded from its state dir, before status derivation. */
export interface LoadedContainer {
  id: string;
  /** `<root>/<id>` after SecureJoin; the key of the container's lock. */
  stateDir: string;
  record: ContainerStateRecord;
}

interface CacheEntry {
  /**
   * Identity of the file parsed, from a plain (not BigInt) stat: device,
   * inode, size, and mtime and ctime in ms since the epoch with their
   * fraction (a double: ~0.25 µs steps today; a file rewritten in place gets
   * timestamps further apart than that, and runc replaces the file, a new
   * inode). A BigInt stat costs twice the heap per call (~1.7 KiB, measured).
   */
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /** The parse, or why it failed: a file is parsed once per identity, a bad one too. */
  record: ContainerStateRecord | RuntimeError;
}

/** A load's failure as the error for container `id`: a RuntimeError with the id added, anything else a SystemError saying `what` failed. */
function failLoad(id: string, e: unknown, what: string): never {
  if (e instanceof RuntimeError) throw new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause });
  throw new RuntimeError("SystemError", `${what}: ${describeError(e)}`, { containerId: id, cause: e });
}

/** A cached parse: the record, or its error thrown again. */
function unwrap(r: ContainerStateRecord | RuntimeError): ContainerStateRecord {
  if (r instanceof RuntimeError) throw r;
  return r;
}

function sameFile(e: CacheEntry, st: fs.Stats): boolean {
  return e.ino === st.ino && e.dev === st.dev && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ctimeMs === st.ctimeMs;
}

/**
 * The facts of one loaded container for {@link deriveStatus}, read only when
 * asked (one small object per derivation, its methods on the prototype: no
 * closures made per call).
 */
class ContainerFacts implements StatusFacts {
  constructor(
    private readonly c: LoadedContainer,
    private readonly mode: CgroupMode,
  ) {}

  freezer(read?: CgroupReader): FreezerState {
    return containerFreezerState(this.c.record.cgroupPaths, this.mode, read);
  }

  initAlive(): boolean {
    return isInitAlive(this.c.record.initProcessPid, this.c.record.initProcessStart);
  }

  execFifoExists(): boolean {
    return execFifoExists(`${this.c.stateDir}/${EXEC_FIFO_FILENAME}`);
  }
}

/** {@link LazyState} of a loaded container whose status was derived. */
class LoadedState implements LazyState {
  readonly id: string;
  readonly pid: number;
  readonly source: object;

  constructor(
    private readonly root: StateRoot,
    private readonly c: LoadedContainer,
    readonly status: ContainerStatus,
  ) {
    this.id = c.id;
    this.pid = status === "stopped" ? 0 : c.record.initProcessPid;
    this.source = c.record;
  }

  state(): ContainerState {
    return this.root.stateOfLoaded(this.c, this.status);
  }
}

/** What {@link StateRoot.probe} returns. */
export interface ContainerProbe {
  /** The state, as {@link StateRoot.state} answers it. */
  state: ContainerState;
  /** Re-derives the status from the same state.json record (freezer, /proc, exec fifo). */
  status(): ContainerStatus;
  /**
   * Reads the freezer alone (v1 `freezer.state`, v2 `cgroup.freeze`), for
   * watchers that poll pause and resume only.
   * @param read how cgroup files are read: {@link readCgroupFile} (a statfs check per read) by
   *   default; a watcher that checked {@link freezerDir} once may pass {@link readInCheckedDir}
   */
  freezer(read?: CgroupReader): FreezerState;
  /** The container's freezer dir (v1 `cgroup_paths.freezer`, v2 the unified dir), if any. */
  readonly freezerDir: string | undefined;
  /**
   * `<unified cgroup dir>/cgroup.events` when that file tells of the init's
   * death: state.json has a unified path (`cgroup_paths[""]`, on cgroup v2 and
   * on hybrid hosts) and the container has a pid namespace of its own, so the
   * init's death kills every process of the container and the cgroup's
   * `populated` goes to 0 (inotify: `IN_MODIFY`). `undefined` otherwise. The
   * path comes from state.json: check it lies on cgroup2 before watching it.
   */
  readonly cgroupEvents: string | undefined;
  /** `cgroup.events` tells of pause and resume too (`frozen`): cgroup v2 hosts, where the unified dir is the freezer. */
  readonly freezerNotifies: boolean;

}

/**
 * Checks that a state root is usable: it exists, is a directory (symlinks
 * followed) and can be listed.
 *
 * @throws {RuntimeError} `ConfigInvalid` (gRPC FAILED_PRECONDITION) saying which
 */
export function checkStateRoot(root: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(root);
  } catch (e) {
    throw new RuntimeError(
      "ConfigInvalid",
      isErrno(e, "ENOENT") ? `state root ${root} does not exist` : `state root ${root}: ${describeError(e)}`,
      { cause: e },
    );
  }
  if (!st.isDirectory()) throw new RuntimeError("ConfigInvalid", `state root ${root} is not a directory`);
  try {
    fs.accessSync(root, fs.constants.R_OK | fs.constants.X_OK);
  } catch (e) {
    throw new RuntimeError("ConfigInvalid", `state root ${root} cannot be read: ${describeError(e)}`, { cause: e });
  }
}

/**
 * Prepares a state root at start-up as runc 1.1 does (`libcontainer/factory_linux.go`
 * New: `MkdirAll(root, 0700)`): a missing root is created with mode 0700.
 *
 * @param root the state root, made absolute against the working directory
 * @returns the absolute path
 * @throws {RuntimeError} `ConfigInvalid` when it cannot be created, is not a directory, or cannot be read
 */
export function prepareStateRoot(root: string): string {
  const abs = path.resolve(root);
  try {
    fs.mkdirSync(abs, { recursive: true, mode: 0o700 });
  } catch (e) {
    if (!isErrno(e, "EEXIST")) {
      throw new RuntimeError("ConfigInvalid", `cannot create state root ${abs}: ${describeError(e)}`, { cause: e });
    }
  }
  checkStateRoot(abs);
  return abs;
}

/**
 * One runc state root: loads containers, derives their status and starts them,
 * natively (no runc process). Mirrors runc 1.1.5 `libcontainer/factory_linux.go`
 * Load and `libcontainer/container_linux.go` refreshState / exec.
 *
 * Filesystem access is synchronous on the hot path (tmpfs, procfs and cgroupfs
 * answer from memory); every open is non-blocking, so a FIFO or device where a
 * file is expected cannot stall the process. The only waiting is the exec fifo
 * handshake, which waits on the event loop.
 */
export class StateRoot {
  /** Absolute path of the root, as configured. */
  readonly path: string;
  /** The host's cgroup layout, detected once. */
  readonly cgroupMode: CgroupMode;
  private realPath: string;
  private readonly cache = new Map<string, CacheEntry>();
  /** The per-container lock every mutating operation takes (keyed by container state dir). */
  readonly locks = new ContainerLocks();
  private readonly changeListeners = new Set<(id: string) => void>();
  /** Handshakes that went on after their call gave up (see execFifoHandshake), by container state dir. */
  private readonly detached = new Map<string, Promise<void>>();

  /**
   * @param root absolute path of an existing state root (see {@link prepareStateRoot})
   * @param cgroupMode override for tests; detected from `/sys/fs/cgroup` by default
   */
  constructor(root: string, cgroupMode: CgroupMode = detectCgroupMode()) {
    this.path = path.resolve(root);
    this.realPath = this.resolveRealPath();
    this.cgroupMode = cgroupMode;
  }

  private resolveRealPath(): string {
    try {
      return fs.realpathSync(this.path);
    } catch {
      return this.path;
    }
  }

  /**
   * Loads a container's state and derives its status (`runc state ID`).
   *
   * @throws {RuntimeError} `InvalidIdFormat`, `ContainerNotExists`, `ConfigInvalid` (root gone), `SystemError`
   *   (corrupt state.json, freezer on a non-cgroup path, I/O error)
   */
  state(id: string): ContainerState {
    return this.stateOf(this.load(id));
  }

  /**
   * As {@link state}, in two steps: the container is loaded and its status
   * derived now; the rest of its state is made by `state()` only when asked.
   * `source` is the parse of state.json the state comes from: the same object
   * for every call while the file is unchanged (another once it changes), so a
   * caller can keep what it derives from a state (its encoding) with `source`
   * and use it again while `id`, `status` and `pid` are the same.
   *
   * @throws {RuntimeError} as {@link state}
   */
  stateLazy(id: string): LazyState {
    const c = this.load(id);
    return new LoadedState(this, c, this.status(c));
  }

  /**
   * Loads a container once and returns its state (as {@link state} does) with
   * a way to re-derive its status later from the same state.json record: the
   * freezer, `/proc` and the exec fifo are read again, state.json is not. For
   * watchers that poll many containers often.
   *
   * @throws {RuntimeError} as {@link state}; `status()` throws `SystemError` (freezer)
   */
  probe(id: string): ContainerProbe {
    const c = this.load(id);
    const r = c.record;
    return {
      state: this.stateOf(c),
      status: () => this.status(c),
      freezer: (read?: CgroupReader) => containerFreezerState(r.cgroupPaths, this.cgroupMode, read),
      cgroupEvents: r.ownPidNamespace && r.cgroupPaths[""] ? `${r.cgroupPaths[""]}/cgroup.events` : undefined,
      freezerNotifies: this.cgroupMode === "v2",
      freezerDir: freezerDir(r.cgroupPaths, this.cgroupMode),
    };
  }

  /** The state of a loaded container whose status was derived a moment ago (for {@link LazyState}). */
  stateOfLoaded(c: LoadedContainer, status: ContainerStatus): ContainerState {
    return this.stateOf(c, status);
  }

  /** The state of a loaded container, its status derived now (or given, derived a moment ago). */
  private stateOf(c: LoadedContainer, status = this.status(c)): ContainerState {
    const r = c.record;
    const { bundle, annotations } = splitLabels(r.labels);
    return {
      id: c.id,
      pid: status === "stopped" ? 0 : r.initProcessPid,
      status,
      bundle,
      rootfs: r.rootfs,
      created: r.created,
      annotations,
      owner: "",
      ociVersion: r.ociVersion,
    };
  }

  /**
   * `<root>/<name>` as written, without SecureJoin: for a lookup that then
   * checks what it finds there (the fast load path, the read-ahead), never to
   * act on.
   */
  entryPath(name: string): string {
    return `${this.path === "/" ? "" : this.path}/${name}`;
  }

  /** Whether the state.json of container `id` (as `<root>/<id>/state.json`) is parsed and cached. */
  isCached(id: string): boolean {
    return this.cache.has(`${this.entryPath(id)}/${STATE_FILENAME}`);
  }

  /**
   * Fills the state.json cache for every container dir in the root, a batch of
   * `batch` dirs per turn of the event loop, so that the first List (or State)
   * after start-up does not parse thousands of state files at once; each
   * container's status is derived once too, which opens the status files later
   * calls re-read (held files, bounded). Errors are ignored here: a call reports
   * them. Stops early when `signal` aborts.
   *
   * @returns how many containers were loaded
   */
  async warmCache(signal?: AbortSignal, batch = 100): Promise<number> {
    let names: string[];
    try {
      names = fs.readdirSync(this.path, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      return 0;
    }
    let loaded = 0;
    for (let i = 0; i < names.length && loaded < STATE_CACHE_ENTRIES; i += batch) {
      await new Promise<void>((r) => setImmediate(r));
      if (signal?.aborted) break;
      for (const name of names.slice(i, i + batch)) {
        try {
          this.stateLazy(name);
          loaded++;
        } catch {
          // reported by the calls that ask for it
        }
      }
    }
    return loaded;
  }

  /**
   * Registers a handshake that goes on after its call gave up (see execFifoHandshake)
   * for a container state dir; later Starts and Deletes wait for it.
   * @returns the function to call when it has ended
   */
  addDetached(stateDir: string): () => void {
    let end!: () => void;
    const p = new Promise<void>((r) => (end = r));
    this.detached.set(stateDir, p);
    return () => {
      end();
      if (this.detached.get(stateDir) === p) this.detached.delete(stateDir);
    };
  }

  /** The detached handshake pending for a container state dir, if any. */
  detachedFor(stateDir: string): Promise<void> | undefined {
    return this.detached.get(stateDir);
  }

  /**
   * Tells every listener that an operation changed a container (created,
   * started, paused, resumed, killed, deleted), so watchers hear of it at once
   * rather than at their next poll.
   */
  changed(id: string): void {
    for (const fn of this.changeListeners) fn(id);
  }

  /**
   * Listens for {@link changed}.
   * @returns the function that removes the listener
   */
  onChange(fn: (id: string) => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  /**
   * Reads the container's state.json again, whole, for what Kill (all) and
   * Delete need beyond the cached record: every cgroup path, the poststop
   * hooks, the pid namespace. Never cached.
   *
   * @throws {RuntimeError} `SystemError` (unreadable or malformed), `ContainerNotExists` (gone meanwhile)
   */
  lifecycle(c: LoadedContainer): LifecycleConfig {
    const stateFile = `${c.stateDir}/${STATE_FILENAME}`;
    let fd: number;
    try {
      fd = fs.openSync(stateFile, STATE_OPEN_FLAGS);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new RuntimeError("ContainerNotExists", MSG.notExists, { containerId: c.id });
      throw new RuntimeError("SystemError", `open ${stateFile}: ${describeError(e)}`, { containerId: c.id, cause: e });
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new RuntimeError("SystemError", `read ${stateFile}: not a regular file`, { containerId: c.id });
      return parseLifecycleConfig(stateFile, readBounded(fd, stateFile, st.size));
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Drops the cached parse of a container's state.json and the files held open
   * for its status (its cgroup files, its init's `/proc/<pid>/stat` or `statm`), after Delete removed it.
   */
  forget(c: LoadedContainer): void {
    dropHeldFiles(c.record, undefined);
    this.cache.delete(`${c.stateDir}/${STATE_FILENAME}`);
    this.cache.delete(`${this.entryPath(c.id)}/${STATE_FILENAME}`);
  }

  /**
   * Drops what is kept for container `id` once its `<root>/<id>/state.json` is
   * gone (deleted outside the shim, by `runc delete`): its cached record and
   * the status files held for it (see {@link forget}). Nothing happens while the
   * file is there.
   *
   * @returns whether something was dropped
   */
  forgetIfGone(id: string): boolean {
    const stateDir = this.entryPath(id);
    const file = `${stateDir}/${STATE_FILENAME}`;
    const hit = this.cache.get(file);
    if (hit === undefined) return false;
    try {
      if (fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined) return false;
    } catch {
      // ENOTDIR, ELOOP: no state.json there either
    }
    if (hit.record instanceof RuntimeError) this.cache.delete(file);
    else this.forget({ id, stateDir, record: hit.record });
    return true;
  }

  /**
   * The container state dir an id would have (`<root>/<id>` after SecureJoin),
   * whether or not it exists. For Create and for Delete of a dir without state.json.
   *
   * @throws {RuntimeError} `InvalidIdFormat`; `SystemError` when the join fails (ELOOP, EACCES)
   */
  stateDirOf(id: string): string {
    validateContainerId(id);
    try {
      return secureJoin(this.path, id);
    } catch (e) {
      throw new RuntimeError("SystemError", `lstat ${path.join(this.path, id)}: ${describeError(e)}`, { containerId: id, cause: e });
    }
  }

  /** Resolves when no detached handshake is pending (for a graceful shutdown). */
  detachedIdle(): Promise<void> {
    return Promise.all([...this.detached.values()]).then(() => undefined);
  }

  /** State dirs of the containers whose detached handshake is still pending. */
  detachedContainers(): string[] {
    return [...this.detached.keys()];
  }

  /** Status, derived from the freezer, /proc and the exec fifo; never cached (runc 1.1.5 refreshState). */
  status(c: LoadedContainer): ContainerStatus {
    return deriveStatus(new ContainerFacts(c, this.cgroupMode));
  }

  /**
   * runc 1.1.5 Load: validate the id, SecureJoin it to the root, SecureJoin
   * `state.json` to that, open without blocking and without following a final
   * symlink, check the opened file really lies inside the root, then parse
   * (re-using the last parse while device, inode, size, mtime and ctime are unchanged).
   *
   * @throws {RuntimeError} `InvalidIdFormat`, `ContainerNotExists`, `ConfigInvalid` (root gone), `SystemError`
   */
  load(id: string): LoadedContainer {
    validateContainerId(id);
    return this.loadDirect(id) ?? this.loadResolved(id);
  }

  /**
   * Fast path: `<root>/<id>/state.json` directly. When an lstat shows the file
   * cached for this path (same device, inode, size, mtime, ctime, and a single
   * link: it was checked to lie inside the root when it was cached), its record
   * is used without opening it. Otherwise it is opened and accepted when
   * `/proc/self/fd` shows exactly that path under the real root (no symlink was
   * involved, so SecureJoin would give the same path).
   * Anything else goes the careful way ({@link loadResolved}).
   */
  private loadDirect(id: string): LoadedContainer | undefined {
    const stateDir = this.entryPath(id);
    const stateFile = `${stateDir}/${STATE_FILENAME}`;
    // The hot path: one lstat, and no open at all, when the file is the one parsed before.
    const hit = this.cache.get(stateFile);
    if (hit !== undefined) {
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(stateFile, { throwIfNoEntry: false });
      } catch {
        st = undefined;
      }
      if (st !== undefined && st.isFile() && st.nlink === 1 && sameFile(hit, st)) return { id, stateDir, record: unwrap(hit.record) };
    }
    let fd: number;
    try {
      fd = fs.openSync(stateFile, STATE_OPEN_FLAGS);
    } catch {
      return undefined;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return undefined;
      if (hit !== undefined && st.nlink === 1 && sameFile(hit, st)) return { id, stateDir, record: unwrap(hit.record) };
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) !== `${this.realPath === "/" ? "" : this.realPath}/${id}/${STATE_FILENAME}`) {
        return undefined;
      }
      return { id, stateDir, record: this.parse(fd, st, stateFile) };
    } catch (e) {
      return failLoad(id, e, `read ${stateFile}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** runc's way: SecureJoin the id, then state.json, open, and check the opened file lies inside the root. */
  private loadResolved(id: string): LoadedContainer {
    let stateDir: string, stateFile: string;
    try {
      stateDir = secureJoin(this.path, id);
      stateFile = secureJoin(stateDir, STATE_FILENAME);
    } catch (e) {
      this.rootOrThrow(id);
      return failLoad(id, e, `lstat ${path.join(this.path, id)}`);
    }
    let fd: number;
    try {
      fd = fs.openSync(stateFile, STATE_OPEN_FLAGS);
    } catch (e) {
      this.rootOrThrow(id);
      if (isErrno(e, "ENOENT")) {
        // Gone (deleted outside the shim): the status files held for it go with its record.
        const gone = this.cache.get(stateFile)?.record;
        if (gone !== undefined && !(gone instanceof RuntimeError)) dropHeldFiles(gone, undefined);
        this.cache.delete(stateFile);
        throw new RuntimeError("ContainerNotExists", MSG.notExists, { containerId: id });
      }
      return failLoad(id, e, `open ${stateFile}`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new RuntimeError("SystemError", `read ${stateFile}: is a directory`);
      if (!st.isFile()) throw new RuntimeError("SystemError", `read ${stateFile}: not a regular file`);
      this.checkInsideRoot(fd, stateFile);
      const hit = this.cache.get(stateFile);
      if (hit !== undefined && sameFile(hit, st)) return { id, stateDir, record: unwrap(hit.record) };
      return { id, stateDir, record: this.parse(fd, st, stateFile) };
    } catch (e) {
      return failLoad(id, e, `read ${stateFile}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Reads and parses an opened state.json within {@link STATE_BOUNDS}: its size
   * (fstat, before reading), its nesting depth (a scan that stops at the bound,
   * before parsing), its labels (after). The outcome, a record or the error, is
   * cached by the file's identity, so a large or bad file costs one parse, not
   * one per call.
   */
  private parse(fd: number, st: fs.Stats, stateFile: string): ContainerStateRecord {
    let result: ContainerStateRecord | RuntimeError;
    try {
      if (st.size > STATE_BOUNDS.maxFileBytes) {
        throw new RuntimeError("SystemError", `${stateFile}: state file is ${st.size} bytes, more than the ${STATE_BOUNDS.maxFileBytes / 1024 / 1024} MiB limit; not read`);
      }
      const bytes = readBounded(fd, stateFile, st.size);
      checkBeforeParse(stateFile, bytes);
      result = parseStateFile(stateFile, bytes);
      checkRecordBounds(stateFile, result);
    } catch (e) {
      if (!(e instanceof RuntimeError) || e.kind !== "SystemError") throw e; // EMFILE and the like: not the file's fault
      result = e;
    }
    this.remember(stateFile, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, record: result });
    return unwrap(result);
  }

  /** The opened file must resolve inside the real state root (guards against symlink races). */
  private checkInsideRoot(fd: number, stateFile: string): void {
    let real: string;
    try {
      real = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return; // no procfs: the lexical SecureJoin guarantee stands alone
    }
    if (isWithin(this.realPath, real)) return;
    this.realPath = this.resolveRealPath(); // the root itself may have been replaced
    if (!isWithin(this.realPath, real)) {
      throw new RuntimeError("SystemError", `${stateFile} resolves outside the state root (a symlink changed under it); not read`);
    }
  }

  private remember(file: string, entry: CacheEntry): void {
    const before = this.cache.get(file)?.record;
    if (before !== undefined && !(before instanceof RuntimeError)) dropHeldFiles(before, entry.record instanceof RuntimeError ? undefined : entry.record);
    this.cache.delete(file);
    this.cache.set(file, entry);
    if (this.cache.size > STATE_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
  }

  /** After a failed lookup: if the root itself is unusable that is the error (ConfigInvalid). */
  private rootOrThrow(id: string): void {
    try {
      checkStateRoot(this.path);
    } catch (e) {
      if (e instanceof RuntimeError) throw new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause });
      throw e;
    }
  }
}

/**
 * Closes the status files held for a container record — its init's
 * `/proc/<pid>/stat` or `statm` and its cgroup dirs' files — that `next` does not use:
 * all of them when the container is forgotten (`next` undefined), the old
 * record's own when its state.json was replaced (the id deleted and made
 * again, a rewrite), rather than leave them open until the held-file pool's
 * eviction (an open file of a removed cgroup keeps the kernel's record of that
 * cgroup). Files at paths `next` uses too are left: a read of one whose cgroup
 * was made again fails (ENODEV) and opens the path anew.
 */
function dropHeldFiles(old: ContainerStateRecord, next: ContainerStateRecord | undefined): void {
  if (old.initProcessPid > 0 && next?.initProcessPid !== old.initProcessPid) heldFiles.dropUnder(`/proc/${old.initProcessPid}`);
  const kept = new Set(next === undefined ? [] : Object.values(next.cgroupPaths));
  for (const dir of Object.values(old.cgroupPaths)) if (dir !== "" && !kept.has(dir)) heldFiles.dropUnder(dir);
}

/**
 * Whether the exec fifo exists as runc decides it (runc 1.1.5 refreshState:
 * `os.Stat(fifo) == nil`): stat follows symlinks, any file type counts, and any
 * stat error (ENOENT, ELOOP, ENOTDIR, ENAMETOOLONG, ...) means it does not.
 */
export function execFifoExists(fifo: string): boolean {
  return fs.existsSync(fifo); // stat(2) semantics without building a Stats object; never throws
}

/**
 * Reads a whole regular file of known size from `fd`, at most
 * {@link STATE_BOUNDS.maxFileBytes} bytes. The result may be a view of a shared
 * buffer: decode it before the next call.
 */
// One reusable read buffer for ordinary state files (runc writes a few KiB): reads are
// synchronous and the bytes are decoded before the next read, so it is never shared, and no
// buffer is allocated (and left to malloc) per call.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function readBounded(fd: number, file: string, size: number): Uint8Array {
  const need = Math.min(Math.max(size, 4096), STATE_BOUNDS.maxFileBytes) + 1;
  const buf = need <= READ_BUFFER.length ? READ_BUFFER : Buffer.allocUnsafe(need);
  let n = 0;
  for (;;) {
    let got: number;
    try {
      got = fs.readSync(fd, buf, n, buf.length - n, null);
    } catch (e) {
      throw new RuntimeError("SystemError", `read ${file}: ${errnoOf(e) ?? describeError(e)}`, { cause: e });
    }
    if (got === 0) break;
    n += got;
    if (n >= buf.length) {
      if (n > STATE_BOUNDS.maxFileBytes) {
        throw new RuntimeError("SystemError", `${file}: state file grew past the ${STATE_BOUNDS.maxFileBytes / 1024 / 1024} MiB limit; not read`);
      }
      break;
    }
  }
  return buf.subarray(0, n);
}
