import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { HeapReleaser } from "../../src/server/heap-release.js";
import { CallTracker } from "../../src/server/unary.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("HeapReleaser (one full collection after a burst of Watch streams ended)", () => {
  it("collects once the streams have ended and none opened or ended for the quiet time", async () => {
    const releases: Array<{ heapAfter: number; usedAfter: number }> = [];
    const r = new HeapReleaser({ quietMs: 30, minGrowthBytes: 0, onRelease: (x) => releases.push(x) });
    for (let i = 0; i < 4; i++) r.opened();
    r.ended();
    await sleep(60);
    expect(releases).toHaveLength(0); // 3 of 4 still open: not yet half
    r.ended(); // 2 of 4: half of the peak
    await sleep(10);
    r.opened(); // activity postpones it
    await sleep(25);
    expect(releases).toHaveLength(0);
    await sleep(40);
    expect(releases).toHaveLength(1);
    expect(releases[0]!.usedAfter).toBeGreaterThan(0);
    expect(releases[0]!.usedAfter).toBeLessThanOrEqual(releases[0]!.heapAfter);
    r.close();
  });

  it("does nothing when the heap has not grown by the threshold", async () => {
    const releases: unknown[] = [];
    const r = new HeapReleaser({ quietMs: 10, minGrowthBytes: 2 ** 40, onRelease: (x) => releases.push(x) });
    r.opened();
    r.ended();
    await sleep(40);
    expect(releases).toHaveLength(0);
    r.close();
  });

  it("does not expose gc to other contexts", async () => {
    const r = new HeapReleaser({ quietMs: 5, minGrowthBytes: 0 });
    r.opened();
    r.ended();
    await sleep(30);
    const vm = await import("node:vm");
    expect(vm.runInNewContext("typeof gc")).toBe("undefined");
    r.close();
  });

  it("counts unary calls through the CallTracker: collects once a burst of calls has ended", async () => {
    const releases: unknown[] = [];
    const r = new HeapReleaser({ quietMs: 20, minGrowthBytes: 0, onRelease: (x) => releases.push(x) });
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    const done = Array.from({ length: 64 }, () => tracker.begin());
    for (const d of done.slice(0, 10)) d();
    await sleep(50);
    expect(releases).toHaveLength(0); // 54 of 64 calls in flight
    for (const d of done.slice(10)) d();
    done[0]!(); // idempotent: not counted twice
    expect(tracker.inFlight).toBe(0);
    await sleep(60);
    expect(releases).toHaveLength(1);
    r.close();
  });

  it("a burst of calls while a Watch stream is open leads to no collection (its pause would hold the stream's events back)", async () => {
    const releases: unknown[] = [];
    const r = new HeapReleaser({ quietMs: 20, minGrowthBytes: 0, onRelease: (x) => releases.push(x) });
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    r.opened(); // a watch-all stays open
    const done = Array.from({ length: 16 }, () => tracker.begin());
    for (const d of done) d();
    await sleep(60);
    expect(releases).toHaveLength(0);
    r.ended(); // the stream ends: now it may collect
    await sleep(60);
    expect(releases).toHaveLength(1);
    r.close();
  });

  it("a collection scheduled after calls does not run once a Watch stream has opened", async () => {
    const releases: unknown[] = [];
    const r = new HeapReleaser({ quietMs: 30, minGrowthBytes: 0, onRelease: (x) => releases.push(x) });
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    tracker.begin()(); // a call ends: a collection is scheduled
    await sleep(10);
    r.opened(); // a watch opens before it runs
    await sleep(80);
    expect(releases).toHaveLength(0);
    r.close();
  });

  it("after start-up, once quiet, collects once whatever the heap's growth, and compacts: the old generation does not grow", async () => {
    const releases: Array<{ heapBefore: number; heapAfter: number; usedAfter: number }> = [];
    const r = new HeapReleaser({ quietMs: 20, minGrowthBytes: 2 ** 40, onRelease: (x) => releases.push(x) });
    // Start-up's garbage: objects that survive long enough to reach the old generation, then die.
    let keep: unknown[] = [];
    for (let round = 0; round < 4; round++) {
      keep = Array.from({ length: 50_000 }, (_, i) => ({ i, s: `entry ${i}` }));
      await sleep(1);
    }
    keep = [];
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    r.startedUp();
    await sleep(10);
    tracker.begin()(); // a call within the quiet time postpones it
    await sleep(15);
    expect(releases).toHaveLength(0);
    await sleep(40);
    expect(releases).toHaveLength(1);
    expect(keep).toHaveLength(0);
    expect(releases[0]!.usedAfter).toBeLessThan(releases[0]!.heapAfter);
    expect(releases[0]!.heapAfter).toBeLessThanOrEqual(releases[0]!.heapBefore);
    // Once only: later quiet moments with no growth collect nothing.
    tracker.begin()();
    await sleep(60);
    expect(releases).toHaveLength(1);
    expect(vm.runInNewContext("typeof gc")).toBe("undefined");
    r.close();
  });

  it("a call answered outside the CallTracker (Health/Check) postpones a pending collection but schedules none", async () => {
    const releases: unknown[] = [];
    const r = new HeapReleaser({ quietMs: 30, minGrowthBytes: 0, onRelease: (x) => releases.push(x) });
    r.activity(); // nothing pending: schedules nothing
    await sleep(60);
    expect(releases).toHaveLength(0);
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    tracker.begin()(); // a burst ended: a collection is pending
    for (let i = 0; i < 4; i++) {
      await sleep(15);
      r.activity(); // health checks every 15 ms: never quiet for 30 ms
    }
    expect(releases).toHaveLength(0);
    await sleep(60);
    expect(releases).toHaveLength(1);
    r.close();
  });

  it("a quiet moment's check schedules one scavenge that gives the young generation back, postponed by any call", async () => {
    // Grow this process's young generation beyond V8's initial 1 MiB semi-space first.
    let keep: unknown[][] = [];
    for (let i = 0; i < 600; i++) {
      keep.push(Array.from({ length: 2000 }, (_, j) => ({ j })));
      if (keep.length > 8) keep.shift();
      if (i % 20 === 0) await sleep(0);
    }
    keep = [];
    const shrinks: Array<{ semiSpaceBefore: number; semiSpaceAfter: number }> = [];
    const r = new HeapReleaser({ quietMs: 10, minGrowthBytes: 2 ** 40, youngShrinkAfterMs: 60, onYoungShrink: (x) => shrinks.push(x) });
    const tracker = new CallTracker();
    tracker.observe(r.callListener);
    tracker.begin()(); // the check runs 10 ms later, the scavenge 60 ms after that
    for (let i = 0; i < 4; i++) {
      await sleep(30);
      r.activity(); // health checks: the scavenge waits
    }
    expect(shrinks).toHaveLength(0);
    await sleep(150);
    expect(keep).toHaveLength(0);
    // One scavenge, and a second one 60 ms later when V8 kept the young generation.
    expect(shrinks.length).toBeGreaterThanOrEqual(1);
    expect(shrinks.length).toBeLessThanOrEqual(2);
    expect(shrinks[0]!.semiSpaceBefore).toBeGreaterThan(1 << 20);
    expect(shrinks[0]!.semiSpaceAfter).toBeLessThanOrEqual(shrinks[0]!.semiSpaceBefore);
    r.close();
  });
});

