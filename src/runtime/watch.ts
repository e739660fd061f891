import fs from "node:fs";
import path from "node:path";
import { checkStateRoot, type ContainerProbe, type StateRoot } from "./container.js";
import { RuntimeError, describeError, isErrno } from "./errors.js";
import { validateContainerId } from "./id.js";
import { UserNames, compareIds, containerDirNames, withoutStackTraces, type ContainerEntry } from "./list.js";
import { STATE_FILENAME } from "./paths.js";

/**
 * How often the status of every watched container that is not stopped is
 * re-derived from the freezer, `/proc/PID/stat` and the exec fifo, in ms. This
 * is how deaths of init processes and pause/resume are seen: neither touches
 * the state root, and Node has no pidfd. Each container costs about eight
 * syscalls (state.json is not re-read): some 50 µs on a 2-vCPU VM, so 100
 * watched live containers cost about a tenth of a CPU.
 */
export const POLL_INTERVAL_MS = 50;
/**
 * How often the whole root is re-checked as a safety net for dropped or missed
 * filesystem notifications, in ms: a readdir of the root, and an lstat of each
 * watched container's state dir and state.json; a container whose dir or
 * state.json changed since it was last loaded is loaded again.
 */
export const RESCAN_INTERVAL_MS = 2000;
/**
 * A poll or rescan that took `d` ms is followed by a pause of at least
 * `BACKOFF_FACTOR × d`, so a very large root costs at most about 1/(1+factor)
 * of a CPU (latency then grows with the number of containers).
 */
export const BACKOFF_FACTOR = 4;

/**
 * What a watch message reports.
 * - `initial`: the state of a container that existed when the watch began (these come first).
 * - `synced`: every `initial` event has been delivered (exactly once; no container).
 * - `appeared`: a container was created after the watch began.
 * - `changed`: a container's status, pid, creation time or load error changed.
 * - `removed`: a container was deleted (its state dir or its state.json is gone).
 */
export type WatchEventKind = "initial" | "synced" | "appeared" | "changed" | "removed";

/** One watch message. */
export interface WatchEvent {
  /** What happened. */
  readonly kind: WatchEventKind;
  /** The container id; `""` for `synced`. */
  readonly id: string;
  /** The container's state (or load error) now; `undefined` for `synced` and `removed`. */
  readonly entry: ContainerEntry | undefined;
}

/** The part of an entry whose change is reported: status, pid, creation time, or the error. */
export function entrySignature(e: ContainerEntry): string {
  if (e.state !== undefined) return `state|${e.state.status}|${e.state.pid}|${e.state.created.text}`;
  const err = e.error;
  return err instanceof RuntimeError ? `error|${err.kind}|${err.message}` : `error|bug|${describeError(err)}`;
}

/** The key of the `synced` marker in a pending queue: never a container id (ids are not empty). */
const SYNCED_KEY = "";

/**
 * One watcher's view of the root: a queue of pending events that never holds
 * more than one event per container (plus the `synced` marker), so a reader
 * that falls behind gets the latest state of each container rather than an
 * unbounded backlog. Events are merged per container as follows (the reader
 * never learns of states it did not receive):
 *
 * - pending `initial` + change → `initial` with the new state, in place (it stays before `synced`);
 * - pending `initial` or `appeared` + removal → dropped (the reader never saw it);
 * - pending `appeared` + change → `appeared` with the new state, moved to the end;
 * - pending `changed` + change or removal → the newer event, moved to the end;
 * - pending `removed` + appearance → `changed` with the new state, moved to the end.
 *
 * The hub feeds it with {@link offer}; the consumer drains it with {@link take}.
 */
export class WatchSubscription {
  /** The watched container id, or `undefined` for every container of the root. */
  readonly id: string | undefined;
  /** Signature of each container as the reader will know it once every pending event is taken. */
  private readonly view = new Map<string, string>();
  private readonly pending = new Map<string, WatchEvent>();
  private synced = false;
  private listener: (() => void) | undefined;
  private ending: { error?: unknown } | undefined;
  private closed = false;

  /**
   * @internal created by {@link WatchHub.subscribe}
   * @param onMerge told each time an offered event merges with (replaces or drops) a pending one
   */
  constructor(id: string | undefined, private readonly onClose: (s: WatchSubscription) => void, private readonly onMerge?: () => void) {
    this.id = id;
  }

  /** Events waiting to be taken. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Set once no event will be added any more (the hub was closed, or failed:
   * then `error` is the {@link RuntimeError}). Events still pending should be
   * taken first.
   */
  get done(): { readonly error?: unknown } | undefined {
    return this.ending;
  }

  /** Registers the one function called (synchronously) when an event is queued or the subscription ends. */
  listen(fn: () => void): void {
    this.listener = fn;
  }

  /** Takes the oldest pending event, or `undefined` when none is pending. */
  take(): WatchEvent | undefined {
    const first = this.pending.entries().next();
    if (first.done === true) return undefined;
    const [key, event] = first.value;
    this.pending.delete(key);
    return event;
  }

  /** Stops watching (the reader has gone). Idempotent; pending events are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.clear();
    this.listener = undefined;
    this.onClose(this);
  }

  /**
   * @internal The container `id` is now `entry` (`undefined`: absent). Queues
   * the event this means for the reader, if any.
   */
  offer(id: string, entry: ContainerEntry | undefined, sig: string | undefined = entry && entrySignature(entry)): void {
    if (this.closed || this.ending !== undefined) return;
    const before = this.view.get(id);
    if (before === sig) return;
    if (sig === undefined) this.view.delete(id);
    else this.view.set(id, sig);
    const kind: WatchEventKind = sig === undefined ? "removed" : before === undefined ? (this.synced ? "appeared" : "initial") : "changed";
    const event: WatchEvent = { kind, id, entry: sig === undefined ? undefined : entry };
    const queued = this.pending.get(id);
    if (queued !== undefined) this.onMerge?.();
    if (queued === undefined) {
      this.pending.set(id, event);
    } else if (queued.kind === "initial") {
      if (kind === "removed") this.pending.delete(id);
      else this.pending.set(id, { ...event, kind: "initial" }); // same key: keeps its place
    } else if (queued.kind === "appeared") {
      this.pending.delete(id);
      if (kind !== "removed") this.pending.set(id, { ...event, kind: "appeared" });
    } else {
      this.pending.delete(id);
      this.pending.set(id, queued.kind === "removed" ? { ...event, kind: "changed" } : event);
    }
    this.listener?.();
  }

  /** @internal Every `initial` event has been offered: queues the `synced` marker. */
  markSynced(): void {
    if (this.synced || this.closed) return;
    this.synced = true;
    this.pending.set(SYNCED_KEY, { kind: "synced", id: "", entry: undefined });
    this.listener?.();
  }

  /** @internal No event will follow (the hub closed, or failed with `error`). */
  end(error?: unknown): void {
    if (this.closed || this.ending !== undefined) return;
    this.ending = error === undefined ? {} : { error };
    this.listener?.();
  }
}

/** A container the hub keeps an eye on. */
interface Tracked {
  readonly id: string;
  /** Subscriptions to just this id. */
  singles: Set<WatchSubscription>;
  /** `<root>/<id>` is a real directory (what List and watch-all see). */
  listed: boolean;
  /** The last evaluation; `undefined` while absent (no state dir or no state.json). */
  entry: ContainerEntry | undefined;
  sig: string | undefined;
  /** For the cheap status poll; `undefined` while absent or failing to load. */
  probe: ContainerProbe | undefined;
  dirWatcher: fs.FSWatcher | undefined;
  /** Inode of the directory `dirWatcher` watches (a recreated dir needs a new watch). */
  dirIno: number;
  /** {@link fileKey} when last loaded: the rescan loads again only when it differs. */
  fileKey: string;
  /** Evaluated at least once since it was tracked. */
  loaded: boolean;
}

/** Identity of a container state dir and its state.json (inode, size, times), to notice missed changes. */
function fileKey(dir: string): string {
  const d = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (d === undefined) return "";
  const f = fs.lstatSync(path.join(dir, STATE_FILENAME), { throwIfNoEntry: false });
  return f === undefined ? `${d.ino}` : `${d.ino}|${f.ino}:${f.size}:${f.mtimeMs}:${f.ctimeMs}`;
}

/** Options of {@link WatchHub}. */
export interface WatchHubOptions {
  /** {@link POLL_INTERVAL_MS} by default. */
  pollMs?: number;
  /** {@link RESCAN_INTERVAL_MS} by default. */
  rescanMs?: number;
  /** Told about trouble worth a log line: a notification that could not be set up, an unexpected error. */
  onWarning?: (message: string, err: unknown) => void;
  /**
   * Told each time a subscriber's pending event is merged with a newer one
   * (replaced, or dropped with it) because the reader had not taken it yet
   * (see {@link WatchSubscription}); for metrics.
   */
  onMerged?: () => void;
}

/**
 * Watches one state root for any number of subscribers, with one set of
 * filesystem notifications and timers shared by all of them, active only while
 * someone watches.
 *
 * - **Notifications**: `fs.watch` (inotify) on the root (containers appearing
 *   and disappearing) and on each watched container state dir (state.json
 *   written or removed, exec fifo removed by a start). A notification marks the
 *   container dirty; dirty containers are re-loaded on the next turn of the
 *   event loop.
 * - **Poll** every {@link POLL_INTERVAL_MS}: the status of every watched
 *   container that is not stopped is re-derived from the same state.json
 *   record (freezer, `/proc/PID/stat`, exec fifo); a container whose status
 *   differs is re-loaded. This sees init deaths and pause/resume, which leave
 *   no trace in the root. (Stopped ones are re-derived at each rescan.)
 * - **Rescan** every {@link RESCAN_INTERVAL_MS}: readdir of the root and an
 *   lstat of each watched state dir and state.json; what changed since it was
 *   loaded is loaded again, in case notifications were dropped (inotify queue
 *   overflow, watch limit reached).
 *
 * A container dir without state.json (being created or deleted by runc) counts
 * as absent until its state.json appears. If the root becomes unusable every
 * subscription ends with the `ConfigInvalid` error.
 */
export class WatchHub {
  private readonly subs = new Set<WatchSubscription>();
  private readonly allSubs = new Set<WatchSubscription>();
  private readonly tracked = new Map<string, Tracked>();
  private readonly dirty = new Set<string>();
  private readonly users = new UserNames();
  private readonly pollMs: number;
  private readonly rescanMs: number;
  private readonly warned = new Set<string>();
  private rootWatcher: fs.FSWatcher | undefined;
  private rootIdent = "";
  private pollTimer: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private flushHandle: NodeJS.Immediate | undefined;
  private running = false;
  private offChange: (() => void) | undefined;

  constructor(private readonly root: StateRoot, private readonly opts: WatchHubOptions = {}) {
    this.pollMs = opts.pollMs ?? POLL_INTERVAL_MS;
    this.rescanMs = opts.rescanMs ?? RESCAN_INTERVAL_MS;
  }

  /** Subscriptions open now. */
  get subscribers(): number {
    return this.subs.size;
  }

  /**
   * Starts watching one container (`id`) or every container of the root
   * (`undefined`). The subscription holds, before anything else, one `initial`
   * event per container that exists now (sorted by id), then `synced`.
   * Containers the hub already follows for other subscriptions are not loaded
   * again: their state is the one last seen (at most one poll interval old,
   * and any change since is reported next).
   *
   * @throws {RuntimeError} `InvalidIdFormat`, `ConfigInvalid` (root unusable), `SystemError` (root unreadable)
   */
  subscribe(id?: string): WatchSubscription {
    if (id !== undefined) validateContainerId(id);
    checkStateRoot(this.root.path);
    this.start();
    const sub = new WatchSubscription(id, (s) => this.unsubscribe(s), this.opts.onMerged);
    try {
      this.users.refresh();
      // Containers the hub already follows are current (notifications, poll); only new ones are loaded.
      if (id === undefined) {
        for (const name of containerDirNames(this.root)) this.track(name);
        for (const t of [...this.tracked.values()]) if (!t.loaded) this.evaluate(t, true);
      } else {
        const t = this.track(id);
        if (!t.loaded) this.evaluate(t, true);
      }
    } catch (e) {
      if (e instanceof RuntimeError && e.kind === "ConfigInvalid") this.fail(e);
      else if (this.subs.size === 0) this.stop();
      throw e;
    }
    this.subs.add(sub);
    if (id === undefined) {
      this.allSubs.add(sub);
      for (const t of [...this.tracked.values()]) if (!t.listed && t.singles.size === 0) this.untrack(t);
      const ids = [...this.tracked.values()].filter((t) => t.listed && t.entry !== undefined).map((t) => t.id).sort(compareIds);
      for (const tid of ids) {
        const t = this.tracked.get(tid) as Tracked;
        sub.offer(tid, t.entry, t.sig);
      }
    } else {
      const t = this.tracked.get(id) as Tracked;
      t.singles.add(sub);
      if (t.entry !== undefined) sub.offer(id, t.entry, t.sig);
    }
    sub.markSynced();
    return sub;
  }

  /** Ends every subscription (without error) and releases every notification and timer. */
  close(): void {
    for (const s of [...this.subs]) s.end();
    this.subs.clear();
    this.allSubs.clear();
    this.stop();
  }

  private unsubscribe(sub: WatchSubscription): void {
    if (!this.subs.delete(sub)) return;
    this.allSubs.delete(sub);
    if (sub.id !== undefined) this.tracked.get(sub.id)?.singles.delete(sub);
    if (this.subs.size === 0) {
      this.stop();
      return;
    }
    if (this.allSubs.size === 0) {
      for (const t of [...this.tracked.values()]) if (t.singles.size === 0) this.untrack(t);
    }
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    // Operations done through the shim (create, start, kill, pause, resume, delete) are seen at once.
    this.offChange = this.root.onChange((id) => {
      if (this.tracked.has(id) || this.allSubs.size > 0) this.markDirty(id);
    });
    this.watchRoot();
    this.pollTimer = setTimeout(() => this.poll(), this.pollMs);
    this.rescanTimer = setTimeout(() => this.rescan(), this.rescanMs);
  }

  private stop(): void {
    this.running = false;
    this.offChange?.();
    this.offChange = undefined;
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    for (const t of this.tracked.values()) t.dirWatcher?.close();
    this.tracked.clear();
    this.dirty.clear();
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    if (this.rescanTimer !== undefined) clearTimeout(this.rescanTimer);
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle);
    this.pollTimer = this.rescanTimer = this.flushHandle = undefined;
  }

  /** The root is unusable: every subscription ends with `error`. */
  private fail(error: unknown): void {
    for (const s of [...this.subs]) s.end(error);
    this.subs.clear();
    this.allSubs.clear();
    this.stop();
  }

  private warn(key: string, message: string, err: unknown): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.onWarning?.(message, err);
  }

  private watchRoot(): void {
    // Re-armed when the root was swapped (a rename leaves the old watcher on the old inode, silent).
    let ident = "";
    try {
      const st = fs.statSync(this.root.path);
      ident = `${st.dev}:${st.ino}`;
    } catch {
      // gone: the rescan reports it
    }
    if (this.rootWatcher !== undefined && ident === this.rootIdent) return;
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    this.rootIdent = ident;
    try {
      const w = fs.watch(this.root.path, (_event, filename) => {
        if (filename === null || filename === undefined) {
          this.scheduleRescan(0);
          return;
        }
        const name = String(filename);
        if (this.allSubs.size > 0 || this.tracked.has(name)) this.markDirty(name);
      });
      w.on("error", (e) => {
        w.close();
        if (this.rootWatcher === w) this.rootWatcher = undefined;
        this.warn("root-watch-error", "notifications on the state root failed; relying on the rescan", e);
        this.scheduleRescan(0);
      });
      this.rootWatcher = w;
    } catch (e) {
      this.warn("root-watch", "cannot watch the state root for notifications; relying on the rescan", e);
    }
  }

  private track(id: string): Tracked {
    let t = this.tracked.get(id);
    if (t === undefined) {
      t = { id, singles: new Set(), listed: false, entry: undefined, sig: undefined, probe: undefined, dirWatcher: undefined, dirIno: -1, fileKey: "-", loaded: false };
      this.tracked.set(id, t);
    }
    return t;
  }

  private untrack(t: Tracked): void {
    t.dirWatcher?.close();
    t.dirWatcher = undefined;
    this.tracked.delete(t.id);
    this.dirty.delete(t.id);
  }

  private markDirty(id: string): void {
    this.dirty.add(id);
    this.flushHandle ??= setImmediate(() => {
      this.flushHandle = undefined;
      this.flush();
    });
  }

  /** Re-loads every dirty container, in the order they became dirty. */
  private flush(): void {
    if (!this.running) return;
    try {
      while (this.dirty.size > 0 && this.running) {
        const id = this.dirty.values().next().value as string;
        this.dirty.delete(id);
        const t = this.tracked.get(id) ?? (this.allSubs.size > 0 ? this.track(id) : undefined);
        if (t !== undefined) this.evaluate(t);
      }
    } catch (e) {
      this.onLoopError(e);
    }
  }

  private onLoopError(e: unknown): void {
    if (e instanceof RuntimeError && e.kind === "ConfigInvalid") this.fail(e);
    else this.warn(`loop:${describeError(e)}`, "unexpected error while watching", e);
  }

  /**
   * Re-loads one container and tells the subscriptions concerned when what
   * they see changed. Untracks it when nobody watches it any more, unless
   * `keep` (a subscription is being set up for it).
   *
   * @throws {RuntimeError} `ConfigInvalid` when the root itself is unusable
   */
  private evaluate(t: Tracked, keep = false): void {
    const dir = path.join(this.root.path, t.id);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(dir, { throwIfNoEntry: false });
    } catch {
      st = undefined; // ENOTDIR, ENAMETOOLONG: nothing there
    }
    const listed = st?.isDirectory() === true;
    let ownerUid = st?.uid;
    if (st?.isSymbolicLink() === true) {
      ownerUid = fs.statSync(dir, { throwIfNoEntry: false })?.uid;
    }
    if (listed || st?.isSymbolicLink() === true) this.watchDir(t, dir);
    else this.unwatchDir(t);
    try {
      t.fileKey = fileKey(dir); // before loading: a change while loading is caught by the next rescan
    } catch {
      t.fileKey = "-";
    }

    let entry: ContainerEntry | undefined;
    let probe: ContainerProbe | undefined;
    try {
      probe = this.root.probe(t.id);
      entry = { id: t.id, state: { ...probe.state, owner: ownerUid === undefined ? "" : this.users.name(ownerUid) } };
    } catch (e) {
      if (e instanceof RuntimeError && e.kind === "ConfigInvalid") throw e;
      if (!(e instanceof RuntimeError && e.kind === "ContainerNotExists")) entry = { id: t.id, error: e };
    }
    t.probe = probe;
    t.loaded = true;
    const sig = entry === undefined ? undefined : entrySignature(entry);
    const changed = sig !== t.sig || listed !== t.listed;
    t.entry = entry;
    t.sig = sig;
    t.listed = listed;
    if (changed) {
      for (const s of this.allSubs) s.offer(t.id, listed ? entry : undefined, listed ? sig : undefined);
      for (const s of t.singles) s.offer(t.id, entry, sig);
    }
    if (!keep && t.singles.size === 0 && (this.allSubs.size === 0 || !listed)) this.untrack(t);
  }

  private watchDir(t: Tracked, dir: string): void {
    let ino: number;
    try {
      ino = fs.statSync(dir).ino;
    } catch {
      this.unwatchDir(t);
      return;
    }
    if (t.dirWatcher !== undefined && t.dirIno === ino) return;
    this.unwatchDir(t);
    try {
      const w = fs.watch(dir, () => this.markDirty(t.id));
      w.on("error", () => {
        w.close();
        if (t.dirWatcher === w) t.dirWatcher = undefined;
        this.markDirty(t.id);
      });
      t.dirWatcher = w;
      t.dirIno = ino;
    } catch (e) {
      if (!isErrno(e, "ENOENT", "ENOTDIR")) {
        this.warn(`dir-watch:${describeError(e)}`, "cannot watch a container state dir for notifications; relying on the poll and the rescan", e);
      }
    }
  }

  private unwatchDir(t: Tracked): void {
    t.dirWatcher?.close();
    t.dirWatcher = undefined;
    t.dirIno = -1;
  }

  /** Re-derives the status of every loaded container; re-loads those that changed. */
  private poll(): void {
    this.pollTimer = undefined;
    if (!this.running) return;
    const t0 = performance.now();
    try {
      withoutStackTraces(() => {
        for (const t of this.tracked.values()) {
          // A dead init never comes back (pid + start time): a stopped container changes only
          // through its files (notifications) or, rarely, a freezer set by hand (the rescan).
          if (t.entry?.state?.status !== "stopped") this.checkStatus(t);
        }
      });
    } catch (e) {
      this.onLoopError(e);
    }
    this.flush();
    if (!this.running) return;
    const elapsed = performance.now() - t0;
    this.pollTimer = setTimeout(() => this.poll(), Math.max(this.pollMs, BACKOFF_FACTOR * elapsed));
  }

  /** Marks `t` dirty when its status, re-derived from its loaded record, is not the one reported. */
  private checkStatus(t: Tracked): void {
    if (t.probe === undefined || t.entry?.state === undefined) return;
    let status: string;
    try {
      status = t.probe.status();
    } catch {
      this.dirty.add(t.id);
      return;
    }
    if (status !== t.entry.state.status) this.dirty.add(t.id);
  }

  private scheduleRescan(delayMs: number): void {
    if (!this.running) return;
    if (this.rescanTimer !== undefined) clearTimeout(this.rescanTimer);
    this.rescanTimer = setTimeout(() => this.rescan(), delayMs);
  }

  /**
   * Re-reads the root: new directories are tracked, and every tracked
   * container whose state dir or state.json changed since it was loaded (or
   * that is gone) is loaded again.
   */
  private rescan(): void {
    this.rescanTimer = undefined;
    if (!this.running) return;
    const t0 = performance.now();
    try {
      this.users.refresh();
      this.watchRoot();
      if (this.allSubs.size > 0) {
        for (const name of containerDirNames(this.root)) {
          if (!this.tracked.has(name)) this.dirty.add(this.track(name).id);
        }
      } else {
        checkStateRoot(this.root.path);
      }
      withoutStackTraces(() => {
        for (const t of this.tracked.values()) {
          let key: string;
          try {
            key = fileKey(path.join(this.root.path, t.id));
          } catch {
            key = "?";
          }
          if (key !== t.fileKey) this.dirty.add(t.id);
          else if (t.entry?.state?.status === "stopped") this.checkStatus(t);
        }
      });
    } catch (e) {
      this.onLoopError(e);
    }
    this.flush();
    if (!this.running) return;
    const elapsed = performance.now() - t0;
    this.rescanTimer = setTimeout(() => this.rescan(), Math.max(this.rescanMs, BACKOFF_FACTOR * elapsed));
  }
}
