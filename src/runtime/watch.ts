import fs from "node:fs";
import path from "node:path";
import { checkStateRoot, type ContainerProbe, type StateRoot } from "./container.js";
import { RuntimeError, describeError, isErrno } from "./errors.js";
import { CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, onCgroupFs, readCgroupFile, readInCheckedDir, type FreezerState } from "./freezer.js";
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
 * A rescan checks a container all of whose changes reach the hub as
 * notifications in one pass out of this many, each pass a different eighth of
 * them: a stopped container whose dir is watched (its status changes only when
 * its dir or its freezer is changed by hand), and a live one whose dir and
 * `cgroup.events` are watched and of which nothing is polled (its death, and
 * on a v1 host its pause and resume through `freezer.state`, notify) — whose
 * status is still re-derived in every pass, through held fds: an init that
 * dies while its cgroup stays populated (another process in it, a cgroup
 * shared by two containers) sends no notification. The
 * rescan is there for notifications the kernel dropped (libuv drops inotify's
 * queue overflow without a word), so such a change is still noticed within
 * this many rescans ({@link RESCAN_INTERVAL_MS} each: 16 s).
 *
 * Measured on the benchmark's root (10,000 dirs, 1,000 live): checking every
 * stopped container each pass did 20,000 lstats and 9,000 existence checks of
 * freezer dirs that were gone (~90 ms of work every 2 s); with stopped ones
 * rotated, the 1,000 live ones still cost ~70 ms a pass (lstats of the dir,
 * state.json and cgroup files, the status re-derived), in slices that half of
 * the slowest 2 % of State calls ran into (per-call timestamps against the
 * server's slices and GC events).
 *
 * A rescan asked for because notifications were lost (the root watcher's
 * error), the first after the root was swapped (not the first after the hub
 * starts: the containers are loaded after the root's watcher is in place) or
 * while it has no watcher, and a container whose dir has no watcher or whose
 * status is polled are checked in every pass.
 */
export const NOTIFIED_RESCAN_EVERY = 8;
/**
 * Most work the re-loading of dirty containers (the flush, which delivers
 * changes) does in one turn of the event loop, in ms: the flush, the poll and
 * the rescan each work in slices that end when they have run this long
 * ({@link BACKGROUND_SLICE_MS} for the poll and the rescan), and one slice runs
 * per turn, of one of them in turn (`setImmediate`), so a call waits at most
 * about one slice, whatever the number of containers or how many of these
 * loops have work at once.
 */
export const SLICE_BUDGET_MS = 1.5;
/**
 * The slice of the poll and the rescan, in ms: they only look for what a
 * notification might have missed, so they yield sooner than the flush. With a
 * watch-all open on the benchmark's root (10,000 dirs, 1,000 live), alternated
 * runs: State p99 2.6-4.1 ms at 0.5 against 3.4-4.3 ms at 1.5; of the slowest
 * 60 of 3,000 State calls, 4-17 overlapped a rescan slice against 9-18 (the
 * rest overlapped no slice and no collection: the VM's own stalls of 3-10 ms,
 * as many with no watch open).
 */
export const BACKGROUND_SLICE_MS = 0.5;

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
  /**
   * Identifies the state reported: the same object in the events of every
   * subscription that reports this state of this container (the entry itself,
   * or one object per removal; one object for every `synced`). What a consumer
   * derives from an event depends only on `key` and `kind`, so it can be
   * computed once and shared (the server encodes each message once).
   */
  readonly key: object;
}

/** The part of an entry whose change is reported: status, pid, creation time, or the error. */
export function entrySignature(e: ContainerEntry): string {
  if (e.state !== undefined) return `state|${e.state.status}|${e.state.pid}|${e.state.created.text}`;
  const err = e.error;
  return err instanceof RuntimeError ? `error|${err.kind}|${err.message}` : `error|bug|${describeError(err)}`;
}

/** The key of the `synced` marker in a pending queue: never a container id (ids are not empty). */
const SYNCED_KEY = "";

/** The `key` of every `synced` event: one object for all subscriptions, so its encoding can be shared too. */
const SYNCED_EVENT_KEY: object = Object.freeze({ synced: true });

/** `offer()` without a `before`: the subscription keeps its own record of what its reader knows. */
const OWN_VIEW: unique symbol = Symbol("own view");

/** A pending event and the signature it carries (what the reader will know once it is taken). */
interface PendingEvent extends WatchEvent {
  readonly sig: string | undefined;
}

/** What {@link WatchSubscription.seed} looks up when an `initial` event is taken. */
export interface WatchSnapshotEntry {
  readonly entry: ContainerEntry;
  readonly sig: string;
  /** See {@link WatchEvent.key}. */
  readonly key: object;
}

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
 * The hub feeds it with {@link seed} (the `initial` events, produced lazily:
 * each is the container's state when the reader takes it, so a subscription
 * costs one array of ids until its reader has caught up, not one event per
 * container) and {@link offer}; the consumer drains it with {@link take}.
 */
export class WatchSubscription {
  /** The watched container id, or `undefined` for every container of the root. */
  readonly id: string | undefined;
  /**
   * Signature of each container as the reader will know it once every pending
   * event is taken; kept only for offers without `before` (a subscription fed
   * by the hub learns it from the hub instead, and holds nothing per container).
   */
  private readonly view = new Map<string, string>();
  private readonly pending = new Map<string, PendingEvent>();
  /** Ids whose `initial` event is still to be taken (sorted by {@link compareIds}), from `snapshotAt` on. */
  private snapshot: readonly string[] = [];
  private snapshotAt = 0;
  private lookup: ((id: string) => WatchSnapshotEntry | undefined) | undefined;
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

  /** Events waiting to be taken (`initial` events of containers removed meanwhile included). */
  get size(): number {
    return this.pending.size + this.snapshot.length - this.snapshotAt;
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
    while (this.snapshotAt < this.snapshot.length) {
      const id = this.snapshot[this.snapshotAt++] as string;
      const now = this.lookup?.(id);
      if (now === undefined) continue; // removed before the reader got it: never seen
      return { kind: "initial", id, entry: now.entry, key: now.key };
    }
    if (this.snapshot.length > 0) {
      this.snapshot = [];
      this.snapshotAt = 0;
      this.lookup = undefined;
    }
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
    this.snapshot = [];
    this.lookup = undefined;
    this.listener = undefined;
    this.onClose(this);
  }

  /**
   * @internal The `initial` events: one per id of `ids` (sorted by
   * {@link compareIds}), each made when the reader takes it from what `lookup`
   * says then (`undefined`: gone, no event). Offers about these ids are ignored
   * until their `initial` event is taken. Called before {@link markSynced}.
   */
  seed(ids: readonly string[], lookup: (id: string) => WatchSnapshotEntry | undefined): void {
    this.snapshot = ids;
    this.snapshotAt = 0;
    this.lookup = lookup;
    if (ids.length > 0) this.listener?.();
  }

  /** Whether `id`'s `initial` event is still to be taken (a binary search of the rest of the snapshot). */
  private inSnapshot(id: string): boolean {
    let lo = this.snapshotAt;
    let hi = this.snapshot.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareIds(this.snapshot[mid] as string, id);
      if (c === 0) return true;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /**
   * @internal The container `id` is now `entry` (`undefined`: absent). Queues
   * the event this means for the reader, if any. The subscription records
   * what it offered, to know what its reader knows.
   */
  offer(id: string, entry: ContainerEntry | undefined, sig: string | undefined = entry && entrySignature(entry)): void {
    this.queue(id, entry, sig, OWN_VIEW, entry ?? { removed: id });
  }

  /**
   * @internal As {@link offer}, from the hub, which says what the reader knows
   * of `id` when nothing is pending for it, so that the subscription keeps
   * nothing per container.
   *
   * @param before the signature the hub last offered for `id` (`undefined`: absent)
   * @param key see {@link WatchEvent.key}
   */
  offerFromHub(id: string, entry: ContainerEntry | undefined, sig: string | undefined, before: string | undefined, key: object): void {
    this.queue(id, entry, sig, before, key);
  }

  private queue(id: string, entry: ContainerEntry | undefined, sig: string | undefined, before: string | undefined | typeof OWN_VIEW, key: object): void {
    if (this.closed || this.ending !== undefined) return;
    if (this.snapshotAt < this.snapshot.length && this.inSnapshot(id)) return; // taken later, as it is then
    const queued = this.pending.get(id);
    const known = queued !== undefined ? queued.sig : before === OWN_VIEW ? this.view.get(id) : before;
    if (known === sig) return;
    if (before === OWN_VIEW) {
      if (sig === undefined) this.view.delete(id);
      else this.view.set(id, sig);
    }
    const kind: WatchEventKind = sig === undefined ? "removed" : known === undefined ? (this.synced ? "appeared" : "initial") : "changed";
    const event: PendingEvent = { kind, id, entry: sig === undefined ? undefined : entry, key, sig };
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
    this.pending.set(SYNCED_KEY, { kind: "synced", id: "", entry: undefined, key: SYNCED_EVENT_KEY, sig: undefined });
    this.listener?.();
  }

  /**
   * @internal No event will follow (the hub closed, or failed with `error`).
   * On a failure before the reader took every `initial` event, the rest of them
   * and the `synced` marker are dropped: `synced` says the reader has seen every
   * container, which it then has not (it gets the error instead).
   */
  end(error?: unknown): void {
    if (this.closed || this.ending !== undefined) return;
    if (error !== undefined && this.snapshotAt < this.snapshot.length) {
      this.snapshot = [];
      this.snapshotAt = 0;
      this.lookup = undefined;
      this.pending.delete(SYNCED_KEY);
    }
    this.ending = error === undefined ? {} : { error };
    this.listener?.();
  }
}

/** How the hub learns that a live container's status changed, besides the files of its state dir. */
type Follow =
  /** Nothing to follow: not loaded, failed to load, or stopped (a dead init never comes back). */
  | "none"
  /** inotify on its unified `cgroup.events` (death; on v2 pause and resume too). */
  | "events"
  /** Its status is re-derived by the poll (freezer, `/proc/PID/stat`, exec fifo). */
  | "poll";

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
  /** {@link WatchEvent.key} of the current state. */
  key: object;
  /** For the cheap status poll; `undefined` while absent or failing to load. */
  probe: ContainerProbe | undefined;
  dirWatcher: fs.FSWatcher | undefined;
  /** Inode of the directory `dirWatcher` watches (a recreated dir needs a new watch). */
  dirIno: number;
  /** {@link fileKey} when last loaded: the rescan loads again only when it differs. */
  fileKey: string;
  /** Evaluated at least once since it was tracked. */
  loaded: boolean;
  /** Its number in the order of tracking: which rescan passes check it while all its changes notify ({@link NOTIFIED_RESCAN_EVERY}). */
  readonly seq: number;
  follow: Follow;
  /** The `cgroup.events` file watched (`follow === "events"`). */
  eventsFile: string | undefined;
  eventsWatcher: fs.FSWatcher | undefined;
  /** Inode of the `cgroup.events` watched ({@link watchedFileMoved}). */
  eventsIno: number;
  /** In the poll: its status (`follow === "poll"`) or, on a v1 host, its freezer (`"events"`). */
  polled: boolean;
  /** The freezer dir found on a cgroup filesystem, once (the poll then reads it without a statfs per read). */
  freezerChecked: string | undefined;
  /** The v1 `freezer.state` watched (`follow === "events"` on a v1 host): inotify tells of every write to it. */
  freezerFile: string | undefined;
  freezerWatcher: fs.FSWatcher | undefined;
  /** Inode of the `freezer.state` watched ({@link watchedFileMoved}). */
  freezerIno: number;
}

/** The loops that work in slices, in the order {@link WatchHub} takes them in turn. */
type SliceLoop = "flush" | "poll" | "rescan";
const SLICE_LOOPS: readonly SliceLoop[] = ["flush", "poll", "rescan"];

/** A rescan in progress: the root being read, then the containers being checked. */
interface RescanPass {
  /** The root, open while its entries are read (the first part of a rescan). */
  dir: fs.Dir | undefined;
  /** The containers to check, once the root was read. */
  items: Tracked[];
  at: number;
  busyMs: number;
  /** Notified containers whose {@link Tracked.seq} gives this remainder are checked in this pass ({@link NOTIFIED_RESCAN_EVERY}). */
  turn: number;
  /** Every container is checked, stopped ones too (see `WatchHub.fullRescan`). */
  full: boolean;
}

const POPULATED = /^populated 1$/m;

/** Whether a `cgroup.events` file says `populated 1` (false when it cannot be read). */
function cgroupPopulated(file: string): boolean {
  try {
    const content = readCgroupFile(file, 256);
    return content !== undefined && POPULATED.test(content);
  } catch {
    return false;
  }
}

/** Identity of a container state dir and its state.json (inode, size, times), to notice missed changes. */
function fileKey(dir: string): string {
  const d = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (d === undefined) return "";
  const f = fs.lstatSync(`${dir}/${STATE_FILENAME}`, { throwIfNoEntry: false });
  return f === undefined ? `${d.ino}` : `${d.ino}|${f.ino}:${f.size}:${f.mtimeMs}:${f.ctimeMs}`;
}

/** The inode at `file` now, or -1 when there is none (or it cannot be stat'ed). */
function inodeOf(file: string): number {
  try {
    return fs.statSync(file, { throwIfNoEntry: false })?.ino ?? -1;
  } catch {
    return -1;
  }
}

/**
 * Whether the file at `file` is no longer the inode `ino` a watch was set on.
 * An inotify watch follows its inode, and a cgroup file says nothing when its
 * cgroup is removed (kernfs sends no `IN_DELETE_SELF`, measured): a cgroup
 * removed and made again at the same path (a container deleted and made again
 * with the same id while the event loop was busy; processes moved out and
 * back) leaves a watch that never fires again, which only this check finds.
 */
function watchedFileMoved(file: string, ino: number): boolean {
  return inodeOf(file) !== ino;
}

/** The status a freezer state forces, whatever the init does (runc's order: the freezer first). */
function frozenStatus(f: FreezerState): "paused" | "pausing" | undefined {
  return f === "frozen" ? "paused" : f === "freezing" ? "pausing" : undefined;
}

/** What the hub's loops did, cumulated since it was made (for metrics and tests). */
export interface WatchHubCounters {
  /** Full status derivations by the poll (freezer, `/proc/PID/stat`, exec fifo): containers without `cgroup.events`. */
  statusPolls: number;
  /**
   * Freezer reads by the poll: containers followed through `cgroup.events` on
   * a v1 (hybrid) host while their freezer is `FREEZING` (the kernel ends that
   * state without a notification), or whose `freezer.state` could not be watched.
   */
  freezerPolls: number;
  /** Notifications from a watched v1 `freezer.state` (a write to it: runc pause or resume, or by hand). */
  freezerEvents: number;
  /** Notifications from a watched `cgroup.events`. */
  cgroupEvents: number;
  /** Containers followed through `cgroup.events` now. */
  eventsFollowed: number;
  /** Containers whose status the poll re-derives now. */
  statusPolled: number;
  /** The longest one slice of a poll, a rescan or a flush ran for, in ms. */
  longestSliceMs: number;
  /** Rescan passes completed. */
  rescans: number;
  /** Containers whose files rescans compared with what was loaded (see {@link NOTIFIED_RESCAN_EVERY}). */
  rescanChecks: number;
}

/** Options of {@link WatchHub}. */
export interface WatchHubOptions {
  /** {@link POLL_INTERVAL_MS} by default. */
  pollMs?: number;
  /** {@link RESCAN_INTERVAL_MS} by default. */
  rescanMs?: number;
  /** {@link SLICE_BUDGET_MS} by default. */
  sliceMs?: number;
  /** {@link BACKGROUND_SLICE_MS} by default. */
  backgroundSliceMs?: number;
  /** Told about trouble worth a log line: a notification that could not be set up, an unexpected error. */
  onWarning?: (message: string, err: unknown) => void;
  /** Told how long each slice of the poll, the rescan or the re-loading of dirty containers ran, in ms (tests, profiling). */
  onSlice?: (loop: "poll" | "rescan" | "flush", ms: number) => void;
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
 *   and disappearing), on each watched container state dir (state.json
 *   written or removed, exec fifo removed by a start), and on the unified
 *   `cgroup.events` of each live container that has one and a pid namespace of
 *   its own ({@link ContainerProbe.cgroupEvents}): `populated 0` when the init
 *   dies (the kernel takes even a zombie out of its cgroup), and on cgroup v2
 *   `frozen` for pause and resume. A notification marks the container dirty;
 *   dirty containers are re-loaded on the next turn of the event loop.
 *   Operations done through the shim ({@link StateRoot.changed}) mark it dirty
 *   at once.
 * - **Poll** every {@link POLL_INTERVAL_MS}, only of what has no
 *   notification: the status of live containers without `cgroup.events`
 *   (freezer, `/proc/PID/stat`, exec fifo, from the same state.json record),
 *   and on v1 and hybrid hosts the freezer of the others when their
 *   `freezer.state` could not be watched or they are pausing (`FREEZING` ends
 *   without a write). A container whose status differs is re-loaded.
 * - **Rescan** every {@link RESCAN_INTERVAL_MS}: readdir of the root and an
 *   lstat of each watched state dir and state.json; what changed since it was
 *   loaded is loaded again, in case notifications were dropped (inotify queue
 *   overflow, watch limit reached); the status of containers followed through
 *   `cgroup.events` is re-derived too. Containers whose changes all notify
 *   (stopped ones, and live ones followed through `cgroup.events` with nothing
 *   polled) are checked in one pass of {@link NOTIFIED_RESCAN_EVERY}.
 *
 * The poll, the rescan and the re-loading of dirty containers each run in
 * slices of at most {@link BACKGROUND_SLICE_MS} (the poll and the rescan) or
 * {@link SLICE_BUDGET_MS} (the re-loading) of work, one slice per turn of the
 * event loop over all three (`setImmediate`), whatever the number of containers.
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
  private readonly polled = new Set<Tracked>();
  private readonly users = new UserNames();
  private readonly pollMs: number;
  private readonly rescanMs: number;
  private readonly sliceMs: number;
  private readonly backgroundSliceMs: number;
  private readonly warned = new Set<string>();
  private rootWatcher: fs.FSWatcher | undefined;
  private rootIdent = "";
  private pollTimer: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  /** The next slice of the flush, a poll pass or a rescan pass: one per turn of the event loop ({@link runSlice}). */
  private sliceHandle: NodeJS.Immediate | undefined;
  /** The loop whose slice ran last ({@link runSlice} takes them in turn). */
  private lastSlice: SliceLoop = "rescan";
  private pollPass: { readonly items: Tracked[]; at: number; busyMs: number } | undefined;
  private rescanPass: RescanPass | undefined;
  private running = false;
  /** Bumped for each container tracked ({@link Tracked.seq}). */
  private trackedSeq = 0;
  /** Bumped for each rescan pass ({@link NOTIFIED_RESCAN_EVERY}). */
  private rescans = 0;
  /**
   * The next rescan checks every container, stopped ones too: it was asked for
   * because notifications were lost (a root watcher's error or overflow), or
   * the root was swapped or could not be watched.
   */
  private fullRescan = false;
  /** Bumped whenever the set of listed, loaded containers may have changed (see {@link sortedIds}). */
  private membership = 0;
  private idsCache: { version: number; ids: readonly string[] } | undefined;
  /** The root's entries read in this turn of the event loop (see {@link rootNames}). */
  private listing: string[] | undefined;
  private offChange: (() => void) | undefined;
  private readonly stats: WatchHubCounters = { statusPolls: 0, freezerPolls: 0, freezerEvents: 0, cgroupEvents: 0, eventsFollowed: 0, statusPolled: 0, longestSliceMs: 0, rescans: 0, rescanChecks: 0 };

  constructor(private readonly root: StateRoot, private readonly opts: WatchHubOptions = {}) {
    this.pollMs = opts.pollMs ?? POLL_INTERVAL_MS;
    this.rescanMs = opts.rescanMs ?? RESCAN_INTERVAL_MS;
    this.sliceMs = opts.sliceMs ?? SLICE_BUDGET_MS;
    this.backgroundSliceMs = opts.backgroundSliceMs ?? BACKGROUND_SLICE_MS;
  }

  /** Subscriptions open now. */
  get subscribers(): number {
    return this.subs.size;
  }

  /** What the hub's loops did so far (a copy). */
  get counters(): WatchHubCounters {
    let events = 0;
    let status = 0;
    for (const t of this.tracked.values()) {
      if (t.follow === "events") events++;
      else if (t.follow === "poll") status++;
    }
    return { ...this.stats, eventsFollowed: events, statusPolled: status };
  }

  /**
   * Starts watching one container (`id`) or every container of the root
   * (`undefined`). The subscription holds, before anything else, one `initial`
   * event per container that exists now (sorted by id), then `synced`.
   * Containers the hub already follows for other subscriptions are not loaded
   * again: their state is the one last seen (at most one poll interval old,
   * and any change since is reported next). Each `initial` event carries the
   * container's state when the reader takes it.
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
      withoutStackTraces(() => {
        if (id === undefined) {
          for (const name of this.rootNames()) this.track(name);
          for (const t of [...this.tracked.values()]) if (!t.loaded) this.evaluate(t, true);
        } else {
          const t = this.track(id);
          if (!t.loaded) this.evaluate(t, true);
        }
      });
    } catch (e) {
      if (e instanceof RuntimeError && e.kind === "ConfigInvalid") this.fail(e);
      else if (this.subs.size === 0) this.stop();
      throw e;
    }
    this.subs.add(sub);
    if (id === undefined) {
      this.allSubs.add(sub);
      for (const t of [...this.tracked.values()]) if (!t.listed && t.singles.size === 0) this.untrack(t);
      sub.seed(this.sortedIds(), (tid) => {
        const t = this.tracked.get(tid);
        return t !== undefined && t.listed && t.entry !== undefined && t.sig !== undefined ? { entry: t.entry, sig: t.sig, key: t.key } : undefined;
      });
    } else {
      const t = this.tracked.get(id) as Tracked;
      t.singles.add(sub);
      if (t.entry !== undefined) sub.offerFromHub(id, t.entry, t.sig, undefined, t.key);
    }
    sub.markSynced();
    return sub;
  }

  /**
   * The root's entries for a watch-all that begins now: one readdir, shared by
   * the watch-alls that begin in the same turn of the event loop (many
   * clients syncing at once; nothing can change in the hub between them, and
   * a readdir of 10,000 dirs took 6 ms each, measured with 200 at once).
   */
  private rootNames(): string[] {
    if (this.listing === undefined) {
      this.listing = containerDirNames(this.root);
      setImmediate(() => (this.listing = undefined));
    }
    return this.listing;
  }

  /**
   * The ids a watch-all's `initial` events are about (listed, loaded), sorted
   * by {@link compareIds}: one array shared by every subscription seeded while
   * no container was added, removed or began or ceased to load (read only).
   */
  private sortedIds(): readonly string[] {
    if (this.idsCache?.version !== this.membership) {
      const ids: string[] = [];
      for (const t of this.tracked.values()) if (t.listed && t.entry !== undefined) ids.push(t.id);
      this.idsCache = { version: this.membership, ids: ids.sort(compareIds) };
    }
    return this.idsCache.ids;
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
    // Not a swapped root: whoever subscribes next loads the containers it wants after this watcher is in
    // place (a watch-all reads the whole root), each after its dir's watcher. A first rescan that checked
    // every container again cost ~0.2 s of slices on 10,000 dirs, 2 s after a watch-all opened.
    this.fullRescan = false;
    this.rescanTimer = setTimeout(() => this.rescan(), this.rescanMs);
  }

  private stop(): void {
    this.running = false;
    this.offChange?.();
    this.offChange = undefined;
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    for (const t of this.tracked.values()) {
      t.dirWatcher?.close();
      t.eventsWatcher?.close();
      t.freezerWatcher?.close();
    }
    this.tracked.clear();
    this.membership++;
    this.polled.clear();
    this.dirty.clear();
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    if (this.rescanTimer !== undefined) clearTimeout(this.rescanTimer);
    if (this.sliceHandle !== undefined) clearImmediate(this.sliceHandle);
    this.pollTimer = this.rescanTimer = this.sliceHandle = undefined;
    try {
      this.rescanPass?.dir?.closeSync();
    } catch {
      // already closed
    }
    this.pollPass = this.rescanPass = undefined;
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
    // A root swapped for another, or one whose notifications failed: every container is checked.
    this.fullRescan = true;
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
      t = {
        id, singles: new Set(), listed: false, entry: undefined, sig: undefined, key: { removed: id }, probe: undefined,
        dirWatcher: undefined, dirIno: -1, fileKey: "-", loaded: false, seq: this.trackedSeq++,
        follow: "none", eventsFile: undefined, eventsWatcher: undefined, polled: false, freezerChecked: undefined,
        freezerFile: undefined, freezerWatcher: undefined, eventsIno: -1, freezerIno: -1,
      };
      this.tracked.set(id, t);
      this.membership++;
    }
    return t;
  }

  private untrack(t: Tracked): void {
    t.dirWatcher?.close();
    t.dirWatcher = undefined;
    this.unwatchEvents(t);
    this.unwatchFreezer(t);
    this.uncheckFreezer(t);
    this.setPolled(t, false);
    t.follow = "none";
    this.tracked.delete(t.id);
    this.membership++;
    this.dirty.delete(t.id);
  }

  private markDirty(id: string): void {
    this.dirty.add(id);
    this.scheduleSlice();
  }

  /** Whether `loop` has a slice to run. */
  private wantsSlice(loop: SliceLoop): boolean {
    switch (loop) {
      case "flush":
        return this.dirty.size > 0;
      case "poll":
        return this.pollPass !== undefined;
      case "rescan":
        return this.rescanPass !== undefined;
    }
  }

  /** Arranges for {@link runSlice} on the next turn of the event loop when a loop has work. */
  private scheduleSlice(): void {
    if (!this.running || this.sliceHandle !== undefined) return;
    if (!SLICE_LOOPS.some((l) => this.wantsSlice(l))) return;
    this.sliceHandle = setImmediate(() => this.runSlice());
  }

  /**
   * Runs one slice — of the flush, of a poll pass or of a rescan pass, taken in
   * turn among those with work — and no more in this turn of the event loop:
   * a call waits for at most one slice ({@link SLICE_BUDGET_MS}), whatever
   * runs at once (an immediate set from an immediate runs on the next turn,
   * after the loop has polled for I/O).
   */
  private runSlice(): void {
    this.sliceHandle = undefined;
    if (!this.running) return;
    const at = SLICE_LOOPS.indexOf(this.lastSlice);
    for (let i = 1; i <= SLICE_LOOPS.length; i++) {
      const loop = SLICE_LOOPS[(at + i) % SLICE_LOOPS.length] as SliceLoop;
      if (!this.wantsSlice(loop)) continue;
      this.lastSlice = loop;
      if (loop === "flush") this.flush();
      else if (loop === "poll") this.pollSlice();
      else this.rescanSlice();
      break;
    }
    this.scheduleSlice();
  }

  /** Notes how long a slice ran. */
  private sliceEnded(t0: number, loop: "poll" | "rescan" | "flush"): number {
    const ms = performance.now() - t0;
    if (ms > this.stats.longestSliceMs) this.stats.longestSliceMs = ms;
    this.opts.onSlice?.(loop, ms);
    return ms;
  }

  /**
   * Re-loads dirty containers, in the order they became dirty, for at most one
   * slice; the rest waits for the next turn of the event loop.
   */
  private flush(): void {
    if (!this.running) return;
    const t0 = performance.now();
    const until = t0 + this.sliceMs;
    try {
      withoutStackTraces(() => {
        while (this.dirty.size > 0 && this.running) {
          const id = this.dirty.values().next().value as string;
          this.dirty.delete(id);
          const t = this.tracked.get(id) ?? (this.allSubs.size > 0 ? this.track(id) : undefined);
          if (t !== undefined) this.evaluate(t);
          if (performance.now() >= until) break;
        }
      });
    } catch (e) {
      this.onLoopError(e);
    }
    this.sliceEnded(t0, "flush");
    this.scheduleSlice();
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
    const dir = this.root.entryPath(t.id);
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
    if (listed || st?.isSymbolicLink() === true) this.watchDir(t, dir, st?.isSymbolicLink() === true ? undefined : st?.ino);
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
    const before = t.sig;
    const listedBefore = t.listed;
    if (entry !== undefined) t.key = entry;
    else if (before !== undefined) t.key = { removed: t.id };
    if ((entry === undefined) !== (t.entry === undefined) || listed !== t.listed) this.membership++;
    t.entry = entry;
    t.sig = sig;
    t.listed = listed;
    this.follow(t);
    if (changed) {
      const gone = listedBefore && !listed ? { removed: t.id } : undefined;
      for (const s of this.allSubs) {
        if (listed) s.offerFromHub(t.id, entry, sig, listedBefore ? before : undefined, t.key);
        else s.offerFromHub(t.id, undefined, undefined, listedBefore ? before : undefined, gone ?? t.key);
      }
      for (const s of t.singles) s.offerFromHub(t.id, entry, sig, before, t.key);
    }
    if (!keep && t.singles.size === 0 && (this.allSubs.size === 0 || !listed)) this.untrack(t);
  }

  /**
   * Decides how a container's status changes are learnt after it was loaded:
   * through its `cgroup.events` when it has one (set up here), else by the poll;
   * a stopped one needs neither.
   */
  private follow(t: Tracked): void {
    const status = t.entry?.state?.status;
    const probe = t.probe;
    if (probe === undefined || status === undefined || status === "stopped") {
      this.unwatchEvents(t);
      this.unwatchFreezer(t);
      this.uncheckFreezer(t);
      this.setPolled(t, false);
      t.follow = "none";
      return;
    }
    const file = probe.cgroupEvents;
    if (file !== t.eventsFile || (file !== undefined && t.eventsWatcher !== undefined && watchedFileMoved(file, t.eventsIno))) {
      this.unwatchEvents(t);
      if (file !== undefined) this.watchEvents(t, file);
    } else if (t.eventsWatcher !== undefined && !cgroupPopulated(t.eventsFile as string)) {
      // Live, yet its cgroup is empty (its init was moved out, as a notification just told): nothing there
      // will tell of its death any more, so the poll follows it.
      this.unwatchEvents(t);
    }
    t.follow = t.eventsWatcher !== undefined ? "events" : "poll";
    // v1 (hybrid) host: cgroup.events tells of the death, not of pause and resume. A write to freezer.state
    // (runc pause and resume write it) notifies; FREEZING ends without a write, so a pausing one is polled.
    const freezerFollowed = t.follow === "events" && !probe.freezerNotifies && probe.freezerDir !== undefined;
    if (freezerFollowed) this.watchFreezer(t, `${probe.freezerDir as string}/freezer.state`);
    else this.unwatchFreezer(t);
    const freezerPolled = freezerFollowed && (t.freezerWatcher === undefined || status === "pausing");
    // The freezer dir is checked to lie on cgroupfs once; the poll then reads it without a statfs each time.
    if (freezerPolled && t.freezerChecked !== probe.freezerDir) {
      this.uncheckFreezer(t);
      t.freezerChecked = onCgroupFs(probe.freezerDir as string) ? probe.freezerDir : undefined;
    }
    if (!freezerPolled) this.uncheckFreezer(t);
    this.setPolled(t, t.follow === "poll" || freezerPolled);
  }

  /**
   * An inotify watch of `file`, one of `t`'s cgroup files, when its dir lies on
   * the cgroup filesystem `magic` (statfs; else nothing is watched:
   * `undefined`). Each notification counts in `stats[counter]` and marks `t`
   * dirty; on an error the watch is closed, `lost` is told (to forget it, if it
   * is still the caller's) and `t` is marked dirty.
   *
   * @throws what statfs and fs.watch throw (ENOENT: no such file)
   */
  private watchCgroupFile(t: Tracked, file: string, magic: number, counter: "cgroupEvents" | "freezerEvents", lost: (w: fs.FSWatcher) => void): fs.FSWatcher | undefined {
    if (fs.statfsSync(path.dirname(file)).type !== magic) return undefined;
    const w = fs.watch(file, () => {
      this.stats[counter]++;
      this.markDirty(t.id);
    });
    w.on("error", () => {
      w.close();
      lost(w);
      this.markDirty(t.id);
    });
    return w;
  }

  /**
   * Watches a live container's `cgroup.events` (inotify `IN_MODIFY` on every
   * change of `populated` or `frozen`). Only a file on cgroup2 is watched, and
   * only while it says `populated 1` (else the init is not where state.json
   * says: the poll follows it).
   */
  private watchEvents(t: Tracked, file: string): void {
    let content: string | undefined;
    try {
      const w = this.watchCgroupFile(t, file, CGROUP2_SUPER_MAGIC, "cgroupEvents", (lost) => {
        if (t.eventsWatcher === lost) this.unwatchEvents(t);
      });
      if (w === undefined) return;
      t.eventsWatcher = w;
      t.eventsFile = file;
      t.eventsIno = inodeOf(file);
      // Read after the watch is in place: a death between the load and now is then never missed.
      content = readCgroupFile(file, 256);
    } catch (e) {
      if (!isErrno(e, "ENOENT", "ENOTDIR") && !(e instanceof RuntimeError)) {
        this.warn(`events-watch:${describeError(e)}`, "cannot watch a container's cgroup.events; polling its status instead", e);
      }
    }
    if (t.eventsWatcher !== undefined && (content === undefined || !POPULATED.test(content))) this.unwatchEvents(t);
  }

  /**
   * Watches a live container's v1 `freezer.state` (inotify `IN_MODIFY` on
   * every write to it: `runc pause` and `resume` write it), when it lies on a
   * cgroup v1 filesystem. After the watch is in place the freezer is read
   * once, so a pause between the load and now is never missed. On failure
   * the container's freezer is polled, as before.
   */
  private watchFreezer(t: Tracked, file: string): void {
    if (t.freezerWatcher !== undefined && t.freezerFile === file && !watchedFileMoved(file, t.freezerIno)) return;
    this.unwatchFreezer(t);
    try {
      const w = this.watchCgroupFile(t, file, CGROUP_SUPER_MAGIC, "freezerEvents", (lost) => {
        if (t.freezerWatcher === lost) this.unwatchFreezer(t);
      });
      if (w === undefined) return;
      t.freezerWatcher = w;
      t.freezerFile = file;
      t.freezerIno = inodeOf(file);
    } catch (e) {
      if (!isErrno(e, "ENOENT", "ENOTDIR")) {
        this.warn(`freezer-watch:${describeError(e)}`, "cannot watch a container's freezer.state; polling its freezer instead", e);
      }
      return;
    }
    this.checkFreezer(t);
    this.scheduleSlice();
  }

  private unwatchFreezer(t: Tracked): void {
    t.freezerWatcher?.close();
    t.freezerWatcher = undefined;
    t.freezerFile = undefined;
  }

  /** Forgets that `t`'s freezer dir was checked (it is checked again when it is polled again). */
  private uncheckFreezer(t: Tracked): void {
    t.freezerChecked = undefined;
  }

  private unwatchEvents(t: Tracked): void {
    t.eventsWatcher?.close();
    t.eventsWatcher = undefined;
    t.eventsFile = undefined;
  }

  private setPolled(t: Tracked, on: boolean): void {
    if (t.polled === on) return;
    t.polled = on;
    if (on) {
      this.polled.add(t);
      if (this.pollTimer === undefined && this.pollPass === undefined && this.running) {
        this.pollTimer = setTimeout(() => this.poll(), this.pollMs);
      }
    } else {
      this.polled.delete(t);
    }
  }

  private watchDir(t: Tracked, dir: string, knownIno: number | undefined): void {
    let ino: number;
    if (knownIno !== undefined) ino = knownIno;
    else {
      try {
        ino = fs.statSync(dir).ino;
      } catch {
        this.unwatchDir(t);
        return;
      }
    }
    if (t.dirWatcher !== undefined && t.dirIno === ino) return;
    this.unwatchDir(t);
    try {
      const w = fs.watch(dir, (event, name) => {
        // The dir itself removed (IN_DELETE_SELF: the name is the dir's own): this watch will never fire
        // again, and a dir made again at the path may reuse the inode number, so the inode check below
        // would keep it. Dropped here; the evaluation watches whatever is at the path now.
        if (event === "rename" && name === t.id && t.dirWatcher === w) this.unwatchDir(t);
        this.markDirty(t.id);
      });
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

  /** Starts a pass of the poll over the containers that have no notification (see {@link pollSlice}). */
  private poll(): void {
    this.pollTimer = undefined;
    if (!this.running || this.polled.size === 0) return;
    this.pollPass = { items: [...this.polled], at: 0, busyMs: 0 };
    this.scheduleSlice();
  }

  /**
   * One slice of a poll pass: re-derives what has no notification (see
   * {@link checkPolled}) for at most {@link BACKGROUND_SLICE_MS}, then yields; the
   * next pass begins `max(pollMs, BACKOFF_FACTOR × work)` after this one ends.
   */
  private pollSlice(): void {
    const pass = this.pollPass;
    if (!this.running || pass === undefined) return;
    const t0 = performance.now();
    const until = t0 + this.backgroundSliceMs;
    let status = 0;
    let freezer = 0;
    try {
      withoutStackTraces(() => {
        while (pass.at < pass.items.length) {
          const t = pass.items[pass.at++] as Tracked;
          if (!t.polled) continue; // untracked or followed otherwise since the pass began
          if (t.follow === "poll") {
            status++;
            this.checkStatus(t);
          } else {
            freezer++;
            this.checkFreezer(t);
          }
          if (performance.now() >= until) break;
        }
      });
    } catch (e) {
      this.onLoopError(e);
    }
    this.stats.statusPolls += status;
    this.stats.freezerPolls += freezer;
    pass.busyMs += this.sliceEnded(t0, "poll");
    this.scheduleSlice();
    if (!this.running) return;
    if (pass.at < pass.items.length) return; // the next slice: runSlice
    this.pollPass = undefined;
    if (this.polled.size > 0) this.pollTimer = setTimeout(() => this.poll(), Math.max(this.pollMs, BACKOFF_FACTOR * pass.busyMs));
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

  /**
   * Marks a stopped `t` dirty when its freezer now forces paused or pausing
   * (runc's order: the freezer first). Its init cannot live again (the pid
   * and its start time are checked), so the freezer alone can change its
   * status: no `/proc` read. Most stopped containers' cgroups are gone: an
   * existence check of the dir costs a third of an open that fails (and makes
   * an error object), measured.
   */
  private checkStopped(t: Tracked): void {
    const dir = t.probe?.freezerDir;
    if (t.probe === undefined || dir === undefined || !fs.existsSync(dir)) return;
    let forced: string | undefined;
    try {
      forced = frozenStatus(t.probe.freezer());
    } catch {
      this.dirty.add(t.id);
      return;
    }
    if (forced !== undefined) this.dirty.add(t.id);
  }

  /** Whether a file `t`'s notifications come from was replaced at its path since it was watched (the next evaluation watches the new one). */
  private watchesMoved(t: Tracked): boolean {
    return (
      (t.eventsFile !== undefined && watchedFileMoved(t.eventsFile, t.eventsIno)) ||
      (t.freezerFile !== undefined && watchedFileMoved(t.freezerFile, t.freezerIno))
    );
  }

  /**
   * Whether every change of `t` reaches the hub as a notification: its dir is
   * watched, and it is stopped or followed through `cgroup.events` with nothing
   * of it polled (see {@link NOTIFIED_RESCAN_EVERY}).
   */
  private allNotified(t: Tracked): boolean {
    if (t.dirWatcher === undefined) return false;
    return t.entry?.state?.status === "stopped" || (t.follow === "events" && !t.polled);
  }

  /** Marks `t` dirty when its freezer no longer agrees with the status reported (pause and resume on a v1 host). */
  private checkFreezer(t: Tracked): void {
    const reported = t.entry?.state?.status;
    if (t.probe === undefined || reported === undefined) return;
    let forced: string | undefined;
    try {
      if (t.freezerChecked !== undefined && t.freezerChecked === t.probe.freezerDir) {
        // Read through the held fds (src/runtime/held-files.ts): a pread per poll, no open or statfs.
        forced = frozenStatus(t.probe.freezer(readInCheckedDir));
      } else {
        forced = frozenStatus(t.probe.freezer());
      }
    } catch {
      this.dirty.add(t.id);
      return;
    }
    if (forced !== undefined ? forced !== reported : reported === "paused" || reported === "pausing") this.dirty.add(t.id);
  }

  private scheduleRescan(delayMs: number): void {
    if (delayMs === 0) this.fullRescan = true;
    if (!this.running || this.rescanPass !== undefined) return;
    if (this.rescanTimer !== undefined) clearTimeout(this.rescanTimer);
    this.rescanTimer = setTimeout(() => this.rescan(), delayMs);
  }

  /**
   * Re-reads the root: new directories are tracked, and every tracked
   * container whose state dir or state.json changed since it was loaded (or
   * that is gone) is loaded again. The root is read through `opendir`, a few
   * entries at a time, in the slices of {@link rescanSlice}.
   */
  private rescan(): void {
    this.rescanTimer = undefined;
    if (!this.running) return;
    const t0 = performance.now();
    let dir: fs.Dir | undefined;
    try {
      this.users.refresh();
      this.watchRoot();
      if (this.allSubs.size > 0) {
        try {
          dir = fs.opendirSync(this.root.path, { bufferSize: 32 });
        } catch (e) {
          checkStateRoot(this.root.path);
          throw e;
        }
      } else {
        checkStateRoot(this.root.path);
      }
    } catch (e) {
      this.onLoopError(e);
    }
    if (!this.running) {
      dir?.closeSync();
      return;
    }
    const full = this.fullRescan || this.rootWatcher === undefined;
    this.fullRescan = false;
    this.rescanPass = { dir, items: dir === undefined ? [...this.tracked.values()] : [], at: 0, busyMs: this.sliceEnded(t0, "rescan"), turn: this.rescans++ % NOTIFIED_RESCAN_EVERY, full };
    this.scheduleSlice();
  }

  /** Reads root entries until `until`; new real directories are tracked and marked dirty. @returns whether the root was read to its end */
  private readRoot(pass: RescanPass, until: number): boolean {
    const dir = pass.dir as fs.Dir;
    try {
      for (;;) {
        const e = dir.readSync();
        if (e === null) break;
        if (e.isDirectory() && !this.tracked.has(e.name)) this.dirty.add(this.track(e.name).id);
        if (performance.now() >= until) return false;
      }
    } catch (e) {
      try {
        checkStateRoot(this.root.path);
        this.warn(`rescan:${describeError(e)}`, "cannot read the state root during a rescan", e);
      } catch (e2) {
        this.onLoopError(e2);
      }
    }
    try {
      dir.closeSync();
    } catch {
      // already closed
    }
    pass.dir = undefined;
    pass.items = [...this.tracked.values()];
    return true;
  }

  /**
   * One slice of a rescan: for at most {@link BACKGROUND_SLICE_MS}, compares each
   * container's files with what was loaded, re-derives the status of those
   * that are followed through `cgroup.events` (a dropped notification is then
   * noticed within a rescan), and reads the freezer of stopped ones (a freezer
   * set by hand, {@link checkStopped}).
   */
  private rescanSlice(): void {
    const pass = this.rescanPass;
    if (!this.running || pass === undefined) return;
    const t0 = performance.now();
    const until = t0 + this.backgroundSliceMs;
    try {
      withoutStackTraces(() => {
        if (pass.dir !== undefined && !this.readRoot(pass, until)) return;
        while (pass.at < pass.items.length) {
          const t = pass.items[pass.at++] as Tracked;
          if (this.tracked.get(t.id) !== t) continue;
          // One pass of NOTIFIED_RESCAN_EVERY for a container whose changes all notify, unless notifications were lost.
          if (!pass.full && t.seq % NOTIFIED_RESCAN_EVERY !== pass.turn && this.allNotified(t)) {
            // A live one's status is still re-derived in every pass (a pread or two of held fds): its init's death
            // sends nothing when its cgroup stays populated (another process in it, a cgroup shared by containers).
            if (t.follow === "events") this.checkStatus(t);
            continue;
          }
          this.stats.rescanChecks++;
          let key: string;
          try {
            key = fileKey(this.root.entryPath(t.id));
          } catch {
            key = "?";
          }
          if (key !== t.fileKey) this.dirty.add(t.id);
          else if (t.entry?.state?.status === "stopped") this.checkStopped(t);
          else if (t.follow === "events") {
            this.checkStatus(t);
            if (this.watchesMoved(t)) this.dirty.add(t.id);
          }
          if (performance.now() >= until) break;
        }
      });
    } catch (e) {
      this.onLoopError(e);
    }
    pass.busyMs += this.sliceEnded(t0, "rescan");
    this.scheduleSlice();
    if (!this.running) return;
    if (pass.dir !== undefined || pass.at < pass.items.length) return; // the next slice: runSlice
    this.rescanPass = undefined;
    this.stats.rescans++;
    this.rescanTimer = setTimeout(() => this.rescan(), Math.max(this.rescanMs, BACKOFF_FACTOR * pass.busyMs));
  }
}
