import fs from "node:fs";
import type { StateRoot } from "./container.js";
import { idProblem } from "./id.js";
import { STATE_FILENAME } from "./paths.js";

/** Most container dirs followed at once while runc has not yet written their state.json. */
export const WARM_DIR_WATCHES_MAX = 64;

/** How long a new container dir is followed for its state.json at most, in ms (then the first call reads it). */
export const WARM_DIR_WATCH_MS = 30_000;

/** Most time one turn of the event loop spends reading new containers, in ms; the rest waits for the next turn. */
export const WARM_SLICE_MS = 1.5;

/** Options of {@link NewContainerWarmer}. */
export interface WarmerOptions {
  /** {@link WARM_DIR_WATCHES_MAX} by default. */
  maxDirWatches?: number;
  /** {@link WARM_DIR_WATCH_MS} by default, in ms. */
  dirWatchMs?: number;
}

/**
 * Reads each container that appears in the state root while the server runs
 * (made by `runc create` outside the shim, or by another shim) once runc has
 * written its state.json: the state.json is parsed into the cache and the
 * status derived once, which opens the status files the later calls re-read
 * (see `held-files.ts`). The first Start or State of that container then costs
 * what later ones do: measured on a 2-vCPU VM, the cold path (open, read,
 * parse and check state.json; open the freezer and `/proc/<pid>/stat` files)
 * took ~0.6–0.9 ms of a Start's critical path.
 *
 * How: inotify (`fs.watch`) on the root sees a container dir appear; the dir is
 * followed (one more inotify watch) until `state.json` appears in it — runc
 * 1.1.5 writes it last, through a temporary file renamed into place
 * (`libcontainer/container_linux.go` saveState) — then it is read and the
 * watch closed. At most {@link WARM_DIR_WATCHES_MAX} dirs are followed at once,
 * each for at most {@link WARM_DIR_WATCH_MS} (few, and briefly: the inotify
 * watches a Watch stream needs come from the same per-user budget); what is
 * missed is read by the first call that asks, as without the warmer. An entry
 * that is not a real directory (a file, a symlink) is never looked into. When a
 * container dir is removed (`runc delete` outside the shim), what was kept for
 * it — its cached state.json and held status files — is dropped then, rather
 * than when the held-file pool runs over. Only reads: nothing in the root is
 * changed, and errors are left for the calls to report. The watches do not keep
 * the process alive.
 */
export class NewContainerWarmer {
  private rootWatch: fs.FSWatcher | undefined;
  private readonly dirWatches = new Map<string, { watch: fs.FSWatcher; timer: NodeJS.Timeout; ino: number }>();
  private readonly pending = new Set<string>();
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;
  private readonly maxDirWatches: number;
  private readonly dirWatchMs: number;
  /** Containers read so far (for tests and the debug log). */
  warmed = 0;

  constructor(
    private readonly root: StateRoot,
    opts: WarmerOptions = {},
  ) {
    this.maxDirWatches = opts.maxDirWatches ?? WARM_DIR_WATCHES_MAX;
    this.dirWatchMs = opts.dirWatchMs ?? WARM_DIR_WATCH_MS;
  }

  /**
   * Starts following the root.
   * @returns false when the root cannot be watched (no inotify, root gone): calls then read new containers themselves
   */
  start(): boolean {
    if (this.closed || this.rootWatch !== undefined) return this.rootWatch !== undefined;
    try {
      this.rootWatch = fs.watch(this.root.path, { persistent: false }, (_event, name) => {
        if (typeof name === "string") this.enqueue(name);
      });
    } catch {
      return false;
    }
    this.rootWatch.on("error", () => this.close());
    return true;
  }

  /** Container dirs followed now, waiting for their state.json. */
  get following(): number {
    return this.dirWatches.size;
  }

  /** Stops: closes every watch; nothing is read after this. */
  close(): void {
    this.closed = true;
    this.rootWatch?.close();
    this.rootWatch = undefined;
    for (const name of [...this.dirWatches.keys()]) this.unfollow(name);
    this.pending.clear();
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  private enqueue(name: string): void {
    if (this.closed || idProblem(name) !== undefined) return;
    this.pending.add(name);
    this.scheduled ??= setImmediate(() => this.drain());
  }

  /** Looks at the pending names for at most {@link WARM_SLICE_MS}; the rest in the next turn. */
  private drain(): void {
    this.scheduled = undefined;
    const t0 = performance.now();
    for (const name of this.pending) {
      this.pending.delete(name);
      this.look(name);
      if (performance.now() - t0 >= WARM_SLICE_MS) break;
    }
    if (this.pending.size > 0 && !this.closed) this.scheduled = setImmediate(() => this.drain());
  }

  /**
   * state.json there: read it. A dir without it: follow the dir (anew if the dir
   * was replaced). Neither (removed, or not a dir: a file, a symlink, a loop):
   * stop following it and drop what was kept for a container of that name.
   * Never throws: an error means "not a container dir now".
   */
  private look(name: string): void {
    const dir = this.root.entryPath(name);
    let dirSt: fs.Stats | undefined;
    let stateSt: fs.Stats | undefined;
    try {
      dirSt = fs.lstatSync(dir, { throwIfNoEntry: false });
      if (dirSt?.isDirectory()) stateSt = fs.lstatSync(`${dir}/${STATE_FILENAME}`, { throwIfNoEntry: false });
    } catch {
      dirSt = undefined; // ENOTDIR, ELOOP, EACCES: the root or the entry changed under us
    }
    if (dirSt === undefined || !dirSt.isDirectory()) {
      this.unfollow(name);
      this.root.forgetIfGone(name); // deleted outside the shim: its held status files go too
      return;
    }
    if (stateSt !== undefined) {
      this.unfollow(name);
      if (stateSt.isFile()) this.warm(name);
      return;
    }
    const followed = this.dirWatches.get(name);
    if (followed !== undefined) {
      if (followed.ino === dirSt.ino) return;
      this.unfollow(name); // removed and made again under the same name: follow the new dir
    }
    if (this.dirWatches.size >= this.maxDirWatches) return;
    let watch: fs.FSWatcher;
    try {
      watch = fs.watch(dir, { persistent: false }, (_event, file) => {
        if (file === name) this.unfollow(name); // the dir itself was removed or moved (inotify names the watched dir)
        if (file === STATE_FILENAME || file === name || file === null) this.enqueue(name);
      });
    } catch {
      return; // gone already, or out of inotify watches
    }
    watch.on("error", () => this.unfollow(name));
    const timer = setTimeout(() => this.unfollow(name), this.dirWatchMs);
    timer.unref();
    this.dirWatches.set(name, { watch, timer, ino: dirSt.ino });
    // state.json may have been renamed into place before the watch was added.
    if (fs.existsSync(`${dir}/${STATE_FILENAME}`)) this.enqueue(name);
  }

  private unfollow(name: string): void {
    const w = this.dirWatches.get(name);
    if (w === undefined) return;
    this.dirWatches.delete(name);
    clearTimeout(w.timer);
    w.watch.close();
  }

  private warm(name: string): void {
    try {
      this.root.stateLazy(name);
      this.warmed++;
    } catch {
      // A broken or vanished container: the calls that ask for it report that.
    }
  }
}
