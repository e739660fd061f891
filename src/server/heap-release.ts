import v8 from "node:v8";
import vm from "node:vm";
import { semiSpaceBytes } from "../heap-flags.js";

/** Options of {@link HeapReleaser}. */
export interface HeapReleaserOptions {
  /** How long no call or Watch stream may begin or end before the collection runs, in ms. */
  quietMs?: number;
  /**
   * Least growth of V8's heap (its committed size) since the last collection (or
   * since the releaser was made) that is worth a collection, in bytes. (Its "used" size
   * is no guide: garbage counts as used until a collection.)
   */
  minGrowthBytes?: number;
  /** Told of each collection done: its pause and the heap's committed size before and after, in ms and bytes. */
  onRelease?: (r: { pauseMs: number; heapBefore: number; heapAfter: number; usedAfter: number }) => void;
  /**
   * How long after a quiet moment's check, with no call or stream beginning or
   * ending, the young generation is given back, in ms ({@link YOUNG_SHRINK_AFTER_MS}).
   */
  youngShrinkAfterMs?: number;
  /** Told of each scavenge run to give the young generation back: one semi-space's capacity before and after, in bytes. */
  onYoungShrink?: (r: { semiSpaceBefore: number; semiSpaceAfter: number }) => void;
}

/**
 * {@link HeapReleaserOptions.youngShrinkAfterMs} by default: 5.5 s. V8 shrinks
 * its young generation (grown to 4 MiB a semi-space under load, see
 * `heap-flags.ts`) only at a collection that finds the allocation rate of the
 * last 5 s low, and an idle server runs none; its memory reducer did it at
 * times, some 8-10 s after a full collection, and at times not at all
 * (measured: a server holding 10,000 containers stayed at 87.5 MiB instead of
 * ~77). One scavenge 5.5 s after the burst, still quiet, does it (~1 ms).
 */
export const YOUNG_SHRINK_AFTER_MS = 5500;

/** {@link HeapReleaserOptions.quietMs} by default: 1 s. */
export const HEAP_RELEASE_QUIET_MS = 1000;
/** {@link HeapReleaserOptions.minGrowthBytes} by default: 8 MiB. */
export const HEAP_RELEASE_MIN_GROWTH_BYTES = 8 << 20;

/** The `gc` of `--expose-gc`: a full collection, or a scavenge with `{ type: "minor" }`. */
type GcFunction = (options?: { type: "major" | "minor" }) => void;

let gcFunction: GcFunction | undefined | null;

/**
 * V8's full collection, the `gc` that `--expose-gc` gives, obtained at run
 * time (the flag is set, a context made to take its `gc`, and the flag unset
 * again, so no other context sees it); `undefined` if V8 refuses.
 */
function fullGc(): GcFunction | undefined {
  if (gcFunction === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      const fn: unknown = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
      gcFunction = typeof fn === "function" ? (fn as GcFunction) : null;
    } catch {
      gcFunction = null;
    } finally {
      v8.setFlagsFromString("--no-expose-gc");
    }
  }
  return gcFunction ?? undefined;
}

/**
 * Runs V8's full collection `times` times as a memory-reducing one: with
 * `--optimize-for-size` set for its duration only (V8 then compacts the old
 * generation's fragmented pages and gives them back; a plain full collection
 * leaves them). Measured on an idle server just started: RSS 65.3 → 63.1 MiB
 * with it, unchanged (65.6) without. Does nothing when V8 refuses `gc`.
 */
function compactingGc(gc: () => void, times: number): void {
  v8.setFlagsFromString("--optimize-for-size");
  try {
    for (let i = 0; i < times; i++) gc();
  } finally {
    v8.setFlagsFromString("--no-optimize-for-size");
    // V8 set this as an implication of the flag (it is only read when a heap is made, e.g. a
    // worker's): back to its default, 0, "V8's own".
    v8.setFlagsFromString("--max-semi-space-size=0");
  }
}

/**
 * Gives the memory of a burst of calls or Watch streams back to the system once
 * they have ended (the service tells it of both: unary calls through the
 * `CallTracker`, streams directly; after calls only while no stream is open). A State of each of 10,000 containers at 64
 * in flight left the heap at ~70 MiB with 22 MiB live, and the RSS above
 * 110 MiB for as long as the server idled (measured); so does a burst of Watch
 * streams. Syncing many streams makes V8 promote what it has in flight
 * (messages queued in grpc-js and http2, their write requests) to the old
 * generation; once the streams end that is garbage, but an idle server runs
 * no major collection, and V8 only unmaps its free pages after one, so the
 * RSS stayed at its peak (measured: 136 → 209 MiB, and still 208 MiB 30 s
 * later, with 25 MiB live in the heap). So when the number of open streams
 * has fallen to half its peak (or to none), and no stream has opened or ended
 * for {@link HeapReleaserOptions.quietMs}, one full collection runs — only if
 * V8's heap has grown by at least {@link HeapReleaserOptions.minGrowthBytes}
 * since the last collection or its start (two collections, see `check`). It pauses the event loop once (measured 30–60 ms after 200 streams
 * on 10,000 containers), in a quiet moment, instead of leaving 70+ MiB held.
 */
export class HeapReleaser {
  private readonly quietMs: number;
  private readonly minGrowthBytes: number;
  /** V8's committed heap after the last collection (or when this was made), in bytes. */
  private baseline: number | undefined;
  /** Watch streams open now. */
  private open = 0;
  /** Unary calls in flight now. */
  private calls = 0;
  /** The pending collection was scheduled by streams ending (it may run with streams still open). */
  private streamsEnded = false;
  /** The pending collection is the one after start-up: it runs whatever the heap's growth. */
  private startUp = false;
  /** Most streams open at once since the last check. */
  private peak = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The pending scavenge that gives the young generation back. */
  private shrinkTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HeapReleaserOptions = {}) {
    this.quietMs = opts.quietMs ?? HEAP_RELEASE_QUIET_MS;
    this.minGrowthBytes = opts.minGrowthBytes ?? HEAP_RELEASE_MIN_GROWTH_BYTES;
    // From the start: what the state.json cache's warm-up at start-up grows counts too (10,000
    // containers parsed before the first call left the heap at ~70 MiB, so growth counted from
    // the first call never reached the threshold; measured in the benchmark's scale section).
    this.baseline = v8.getHeapStatistics().total_heap_size;
  }

  /**
   * The server has started (its modules loaded, the state root read, the
   * socket listening): once it has been quiet for the quiet time, one
   * collection runs whatever the heap's growth, to give back what start-up
   * left (a fresh server's RSS is what an idle node pays for it).
   */
  startedUp(): void {
    this.startUp = true;
    this.schedule();
  }

  /** A Watch stream opened: a pending collection waits for the next quiet moment. */
  opened(): void {
    this.open++;
    if (this.open > this.peak) this.peak = this.open;
    this.timer?.refresh();
    this.shrinkTimer?.refresh();
  }

  /** A Watch stream ended: a collection is scheduled once half of the peak (or all) has ended. */
  ended(): void {
    this.open = Math.max(0, this.open - 1);
    if (this.open === 0 || this.open <= this.peak / 2) {
      this.streamsEnded = true;
      this.schedule();
    }
  }

  /**
   * A call answered at once, outside the `CallTracker` (Health/Check): a
   * pending collection waits for the next quiet moment (a prober's checks
   * every few seconds leave those; a client polling health leaves none).
   */
  activity(): void {
    this.timer?.refresh();
    this.shrinkTimer?.refresh();
  }

  /** A unary call began (through `CallTracker.observe`): a pending collection waits. */
  callBegan(): void {
    this.calls++;
    this.timer?.refresh();
    this.shrinkTimer?.refresh();
  }

  /**
   * A unary call ended: a collection is scheduled once no call is in flight
   * and no Watch stream is open. With a stream open, a burst of calls never
   * leads to a collection: its pause (30–160 ms on a root of 10,000
   * containers, measured) would hold back the stream's events.
   */
  callEnded(): void {
    this.calls = Math.max(0, this.calls - 1);
    if (this.calls === 0 && this.open === 0) this.schedule();
  }

  /** What `CallTracker.observe` takes: unary calls begun and ended. */
  get callListener(): { opened(): void; ended(): void } {
    return { opened: () => this.callBegan(), ended: () => this.callEnded() };
  }

  private schedule(): void {
    if (this.timer !== undefined) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => this.check(), this.quietMs);
    this.timer.unref();
  }

  /** Stops any pending collection. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.shrinkTimer !== undefined) clearTimeout(this.shrinkTimer);
    this.shrinkTimer = undefined;
  }

  /** After a quiet moment's check: the young generation is given back once quiet for {@link YOUNG_SHRINK_AFTER_MS}. */
  private scheduleShrink(): void {
    if (this.shrinkTimer !== undefined) {
      this.shrinkTimer.refresh();
      return;
    }
    this.shrinkTimer = setTimeout(() => this.shrinkYoung(), this.opts.youngShrinkAfterMs ?? YOUNG_SHRINK_AFTER_MS);
    this.shrinkTimer.unref();
  }

  /**
   * The scavenge, run twice in a row when the first kept the young
   * generation, and tried again once after the same quiet time when both did.
   * V8 (11.3 `Heap::ShouldResizeNewSpace`) shrinks at a collection that finds
   * the allocation rate of the last 5 s low, unless the same collection also
   * finds the bytes that survived since the last growth above the capacity
   * (it then neither grows nor shrinks, and resets that count): after a burst
   * that grew the heap, the first scavenge resets it and the second shrinks
   * (a server that had State'd 10,000 containers: 83.6 MiB after one, 75 MiB
   * after two, measured). The later try covers an allocation rate still high
   * (one of V8's own collections between the burst and now can make the
   * 5 s window reach back into the burst).
   */
  private shrinkYoung(retries = 1): void {
    this.shrinkTimer = undefined;
    const before = semiSpaceBytes();
    // V8's initial semi-space is 1 MiB: nothing to give back.
    if (before <= 1 << 20) return;
    const gc = fullGc();
    if (gc === undefined) return;
    gc({ type: "minor" });
    if (semiSpaceBytes() > 1 << 20) gc({ type: "minor" });
    const after = semiSpaceBytes();
    this.opts.onYoungShrink?.({ semiSpaceBefore: before, semiSpaceAfter: after });
    if (after > 1 << 20 && retries > 0) {
      this.shrinkTimer = setTimeout(() => this.shrinkYoung(retries - 1), this.opts.youngShrinkAfterMs ?? YOUNG_SHRINK_AFTER_MS);
      this.shrinkTimer.unref();
    }
  }

  private check(): void {
    this.timer = undefined;
    const streamsEnded = this.streamsEnded;
    this.streamsEnded = false;
    const startUp = this.startUp;
    this.startUp = false;
    // Scheduled after calls, but a stream opened since: its events must not wait for a collection.
    if (this.open > 0 && !streamsEnded) return;
    this.peak = this.open;
    this.scheduleShrink();
    const h = v8.getHeapStatistics();
    // Growth since the last collection (or the start): steps under the threshold add up.
    const grown = h.total_heap_size - (this.baseline ?? h.total_heap_size);
    if (grown < this.minGrowthBytes && !startUp) return;
    const gc = fullGc();
    if (gc === undefined) return;
    const t0 = performance.now();
    // With no stream open, twice: the second collection frees what the first left (promoted
    // survivors of the burst) and lets V8 give back their pages: a server that had State'd 10,000
    // containers went from 134 to 109 MiB of RSS with one, to 87 MiB with two (pause 30 vs 66 ms),
    // measured. With streams still open (half of a burst ended), once: their events wait for it.
    compactingGc(gc, this.open === 0 ? 2 : 1);
    const pauseMs = performance.now() - t0;
    const after = v8.getHeapStatistics();
    this.baseline = after.total_heap_size;
    this.opts.onRelease?.({ pauseMs, heapBefore: h.total_heap_size, heapAfter: after.total_heap_size, usedAfter: after.used_heap_size });
  }
}
