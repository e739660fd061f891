import fs from "node:fs";
import path from "node:path";
import type { StateRoot } from "./container.js";
import { describeError } from "./errors.js";
import { idProblem } from "./id.js";
import { STATE_FILENAME } from "./paths.js";

/** Most container dirs waited on at once for their state.json (runc writes it within ~50 ms of the mkdir). */
export const MAX_PENDING_DIRS = 64;
/** How long a new container dir is waited on for its state.json, in ms. */
export const PENDING_DIR_MS = 30_000;

/**
 * Parses a container's state.json when runc creates it, so that the Start (or
 * State) that follows finds it in the cache: on a server idle between calls
 * the first parse of a 6 KiB state.json costs 0.4–0.6 ms, on Start's critical
 * path otherwise. One inotify watch on the root (a new dir), then one on each
 * new dir until its state.json appears (runc writes it through a rename), at
 * most {@link MAX_PENDING_DIRS} at once, each for at most {@link PENDING_DIR_MS}.
 * Best effort: a failure (inotify limits, the root replaced) is reported once
 * and the warmer stops; the cache then fills on first use, as before.
 */
export class CreationWarmer {
  private rootWatcher: fs.FSWatcher | undefined;
  private readonly pending = new Map<string, { watcher: fs.FSWatcher; timer: NodeJS.Timeout }>();
  private stopped = false;

  constructor(
    private readonly root: StateRoot,
    private readonly onWarning: (message: string) => void = () => {},
  ) {}

  /** Dirs waited on now (for tests). */
  get pendingDirs(): number {
    return this.pending.size;
  }

  /** Starts watching the root. */
  start(): void {
    try {
      this.rootWatcher = fs.watch(this.root.path, { persistent: false }, (_event, name) => {
        if (typeof name === "string") this.arm(name);
      });
      this.rootWatcher.on("error", (e) => this.fail(e));
    } catch (e) {
      this.fail(e);
    }
  }

  /** Stops every watch. Idempotent. */
  close(): void {
    this.stopped = true;
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    for (const [, p] of this.pending) {
      p.watcher.close();
      clearTimeout(p.timer);
    }
    this.pending.clear();
  }

  private fail(e: unknown): void {
    if (this.stopped) return;
    this.onWarning(`parsing state.json files when they are created is off: ${describeError(e)}`);
    this.close();
  }

  private warm(id: string): boolean {
    try {
      this.root.load(id);
      return true;
    } catch {
      return false; // not there yet, or bad: the call that asks reports it
    }
  }

  private arm(name: string): void {
    if (this.stopped || idProblem(name) !== undefined) return;
    const dir = path.join(this.root.path, name);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(dir, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (st === undefined || !st.isDirectory()) {
      this.disarm(name); // removed (or replaced) before its state.json came
      return;
    }
    if (this.pending.has(name)) return;
    if (fs.existsSync(path.join(dir, STATE_FILENAME))) {
      this.warm(name);
      return;
    }
    if (this.pending.size >= MAX_PENDING_DIRS) return;
    let watcher: fs.FSWatcher;
    try {
      watcher = fs.watch(dir, { persistent: false }, (_event, file) => {
        if (file === STATE_FILENAME && this.warm(name)) this.disarm(name);
        else if (!fs.existsSync(dir)) this.disarm(name);
      });
    } catch {
      return; // gone already, or not readable
    }
    watcher.on("error", () => this.disarm(name));
    const timer = setTimeout(() => this.disarm(name), PENDING_DIR_MS);
    timer.unref();
    this.pending.set(name, { watcher, timer });
    // state.json may have come between the check and the watch.
    if (fs.existsSync(path.join(dir, STATE_FILENAME)) && this.warm(name)) this.disarm(name);
  }

  private disarm(name: string): void {
    const p = this.pending.get(name);
    if (p === undefined) return;
    p.watcher.close();
    clearTimeout(p.timer);
    this.pending.delete(name);
  }
}
