import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { detectCgroupMode } from "../../src/runtime/freezer.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import type { ContainerEntry } from "../../src/runtime/list.js";
import { NOTIFIED_RESCAN_EVERY, WatchHub, WatchSubscription, type WatchEvent } from "../../src/runtime/watch.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { uniqueId } from "../helpers/runc.js";

function entry(id: string, status: "created" | "running" | "stopped", pid = 1, owner = "root"): ContainerEntry {
  return {
    id,
    state: {
      id,
      pid,
      status,
      bundle: "/b",
      rootfs: "/b/rootfs",
      created: { seconds: 0, nanos: 0, text: "1970-01-01T00:00:00Z" },
      annotations: {},
      owner,
      ociVersion: "1.0.2-dev",
    },
  };
}

function drain(sub: WatchSubscription): Array<[string, string, string | undefined]> {
  const out: Array<[string, string, string | undefined]> = [];
  for (let ev = sub.take(); ev !== undefined; ev = sub.take()) out.push([ev.kind, ev.id, ev.entry?.state?.status ?? (ev.entry?.error === undefined ? undefined : "error")]);
  return out;
}

describe("WatchSubscription: one pending event per container", () => {
  const sub = (): WatchSubscription => new WatchSubscription(undefined, () => {});

  it("queues initial events, then synced, then changes in order", () => {
    const s = sub();
    s.offer("a", entry("a", "created"));
    s.offer("b", entry("b", "running"));
    s.markSynced();
    expect(drain(s)).toEqual([
      ["initial", "a", "created"],
      ["initial", "b", "running"],
      ["synced", "", undefined],
    ]);
    s.offer("c", entry("c", "created"));
    s.offer("a", entry("a", "running"));
    s.offer("b", undefined);
    expect(drain(s)).toEqual([
      ["appeared", "c", "created"],
      ["changed", "a", "running"],
      ["removed", "b", undefined],
    ]);
  });

  it("reports nothing when the signature did not change", () => {
    const s = sub();
    s.markSynced();
    s.offer("a", entry("a", "created"));
    drain(s);
    s.offer("a", entry("a", "created", 1, "other"));
    s.offer("x", undefined);
    expect(s.size).toBe(0);
  });

  it("keeps only the latest state of a container while the reader is behind, moved to the end", () => {
    const s = sub();
    s.markSynced();
    for (const id of ["a", "b"]) s.offer(id, entry(id, "created"));
    drain(s);
    s.offer("a", entry("a", "running"));
    s.offer("b", entry("b", "running"));
    s.offer("a", entry("a", "stopped", 0));
    expect(s.size).toBe(2);
    expect(drain(s)).toEqual([
      ["changed", "b", "running"],
      ["changed", "a", "stopped"],
    ]);
  });

  it("merges per kind: initial stays in place, appeared+removed vanish, removed+appeared is a change", () => {
    const s = sub();
    s.offer("a", entry("a", "created"));
    s.offer("b", entry("b", "created"));
    s.markSynced();
    s.offer("a", entry("a", "running")); // initial a updated in place, still before synced
    s.offer("b", undefined); // initial b dropped: the reader never saw it
    s.offer("c", entry("c", "created"));
    s.offer("c", undefined); // appeared then removed: nothing
    expect(drain(s)).toEqual([
      ["initial", "a", "running"],
      ["synced", "", undefined],
    ]);
    s.offer("a", undefined);
    s.offer("a", entry("a", "created", 2)); // removed then recreated: the reader sees a change
    expect(drain(s)).toEqual([["changed", "a", "created"]]);
    s.offer("d", entry("d", "created"));
    s.offer("d", entry("d", "running")); // appeared, then changed before it was read
    s.offer("a", entry("a", "running", 2));
    s.offer("a", undefined); // changed then removed: removed
    expect(drain(s)).toEqual([
      ["appeared", "d", "running"],
      ["removed", "a", undefined],
    ]);
  });

  it("never holds more than one event per container however many changes arrive", () => {
    const s = sub();
    s.markSynced();
    const statuses = ["created", "running", "stopped"] as const;
    for (let i = 0; i < 10_000; i++) s.offer(`c${i % 10}`, entry(`c${i % 10}`, statuses[i % 3] as "created", i));
    expect(s.size).toBeLessThanOrEqual(11);
  });

  it("ends: pending events stay takeable, later offers are ignored; close() tells the hub once", () => {
    let closed = 0;
    const s = new WatchSubscription("a", () => closed++);
    s.markSynced();
    s.offer("a", entry("a", "created"));
    const err = new RuntimeError("ConfigInvalid", "state root /x does not exist");
    s.end(err);
    s.offer("a", entry("a", "running"));
    expect(s.done).toEqual({ error: err });
    expect(drain(s)).toEqual([
      ["synced", "", undefined],
      ["appeared", "a", "created"],
    ]);
    s.close();
    s.close();
    expect(closed).toBe(1);
  });
});

/** Collects a subscription's events as they come. */
function collect(sub: WatchSubscription): { events: WatchEvent[]; until: (pred: (evs: WatchEvent[]) => boolean, ms?: number) => Promise<void> } {
  const events: WatchEvent[] = [];
  let wake: (() => void) | undefined;
  sub.listen(() => {
    for (let ev = sub.take(); ev !== undefined; ev = sub.take()) events.push(ev);
    wake?.();
  });
  for (let ev = sub.take(); ev !== undefined; ev = sub.take()) events.push(ev);
  return {
    events,
    async until(pred, ms = 2000) {
      const t0 = Date.now();
      while (!pred(events)) {
        if (Date.now() - t0 > ms) throw new Error(`timed out; events so far: ${JSON.stringify(events.map((e) => [e.kind, e.id, e.entry?.state?.status]))}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 20);
        });
      }
    },
  };
}

const summary = (evs: WatchEvent[]): Array<[string, string, string | undefined]> =>
  evs.map((e) => [e.kind, e.id, e.entry?.state?.status ?? (e.entry?.error instanceof RuntimeError ? e.entry.error.kind : undefined)]);

function countResources(): { watchers: number; timers: number } {
  const info = process.getActiveResourcesInfo();
  return { watchers: info.filter((r) => r === "FSEventWrap").length, timers: info.filter((r) => r === "Timeout" || r === "Immediate").length };
}

/** Notification handles are back to `before`; no timer was added (the test's own may come and go); the hub holds none. */
function expectBaseline(hub: WatchHub, before: { watchers: number; timers: number }): void {
  const now = countResources();
  expect(now.watchers).toBe(before.watchers);
  expect(now.timers).toBeLessThanOrEqual(before.timers);
  const h = hub as unknown as { pollTimer?: unknown; rescanTimer?: unknown; sliceHandle?: unknown; rootWatcher?: unknown; tracked: Map<string, unknown> };
  expect("sliceHandle" in h).toBe(true);
  expect([h.pollTimer, h.rescanTimer, h.sliceHandle, h.rootWatcher, h.tracked.size]).toEqual([undefined, undefined, undefined, undefined, 0]);
}

describe("WatchHub over a state root", () => {
  let fake: ReturnType<typeof tempRoot>;
  let root: StateRoot;
  let hub: WatchHub;
  const inits: FakeInit[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) inits.push(await spawnInit());
  });
  afterAll(async () => {
    for (const i of inits) await i.kill();
  });
  afterEach(() => {
    hub?.close();
    fake?.cleanup();
  });
  const setup = (opts: { pollMs?: number; rescanMs?: number } = {}): void => {
    fake = tempRoot();
    root = new StateRoot(fake.root, "v1");
    hub = new WatchHub(root, opts);
  };

  it("reports every container first (sorted, symlinks skipped, loading errors included), then each change", async () => {
    setup();
    const [i1, i2] = inits as [FakeInit, FakeInit];
    writeFakeContainer(fake.root, "b", i1);
    writeFakeContainer(fake.root, "a", i2, { created: false });
    fs.symlinkSync("a", path.join(fake.root, "alias"));
    fs.mkdirSync(path.join(fake.root, "corrupt"));
    fs.writeFileSync(path.join(fake.root, "corrupt", "state.json"), "{");
    fs.mkdirSync(path.join(fake.root, "half")); // no state.json: being created, not reported
    const c = collect(hub.subscribe());
    expect(summary(c.events)).toEqual([
      ["initial", "a", "running"],
      ["initial", "b", "created"],
      ["initial", "corrupt", "SystemError"],
      ["synced", "", undefined],
    ]);
    expect(c.events[1]?.entry?.state).toEqual({ ...root.state("b"), owner: "root" });

    fs.rmSync(path.join(fake.root, "b", "exec.fifo")); // a start
    await c.until((e) => e.length >= 5);
    writeFakeContainer(fake.root, "half", DEAD_INIT); // its state.json appears
    await c.until((e) => e.length >= 6);
    fs.rmSync(path.join(fake.root, "a"), { recursive: true }); // a delete
    await c.until((e) => e.length >= 7);
    writeFakeContainer(fake.root, "corrupt", i2, { created: true }); // repaired
    await c.until((e) => e.length >= 8);
    expect(summary(c.events.slice(4))).toEqual([
      ["changed", "b", "running"],
      ["appeared", "half", "stopped"],
      ["removed", "a", undefined],
      ["changed", "corrupt", "created"],
    ]);
  });

  it("sees an init process die within the poll interval", async () => {
    setup({ pollMs: 20 });
    const init = await spawnInit();
    writeFakeContainer(fake.root, "c1", init, { created: false });
    const c = collect(hub.subscribe("c1"));
    expect(summary(c.events)).toEqual([["initial", "c1", "running"], ["synced", "", undefined]]);
    const t0 = performance.now();
    await init.kill();
    await c.until((e) => e.length >= 3);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(c.events[2]?.entry?.state).toMatchObject({ status: "stopped", pid: 0 });
  });

  it("watches one id that does not exist yet, and follows a symlink alias like State", async () => {
    setup();
    const c = collect(hub.subscribe("later"));
    const alias = collect(hub.subscribe("alias"));
    expect(summary(c.events)).toEqual([["synced", "", undefined]]);
    writeFakeContainer(fake.root, "later", inits[0] as FakeInit);
    await c.until((e) => e.length >= 2);
    expect(summary(c.events)).toEqual([["synced", "", undefined], ["appeared", "later", "created"]]);
    fs.symlinkSync("later", path.join(fake.root, "alias"));
    await alias.until((e) => e.length >= 2);
    expect(summary(alias.events)).toEqual([["synced", "", undefined], ["appeared", "alias", "created"]]);
  });

  it("finds changes whose notifications were missed on the next rescan", async () => {
    setup({ rescanMs: 100 });
    const c = collect(hub.subscribe());
    // A container dir made while the dir had no watch and whose events are then lost:
    // simulate by writing it under another name and renaming the whole dir in one step.
    const staging = path.join(fake.dir, "staging");
    writeFakeContainer(staging, "moved", inits[0] as FakeInit);
    (hub as unknown as { rootWatcher?: fs.FSWatcher }).rootWatcher?.close(); // notifications lost
    fs.renameSync(path.join(staging, "moved"), path.join(fake.root, "moved"));
    await c.until((e) => e.length >= 2, 1000);
    expect(summary(c.events)).toEqual([["synced", "", undefined], ["appeared", "moved", "created"]]);
    // A rewritten state.json whose notification is lost: the poll cannot see it (it re-derives the
    // status from the old record), the rescan notices the new file and loads it.
    const internals = hub as unknown as { rootWatcher?: fs.FSWatcher; tracked: Map<string, { dirWatcher?: fs.FSWatcher }> };
    internals.rootWatcher?.close();
    internals.tracked.get("moved")?.dirWatcher?.close();
    writeFakeContainer(fake.root, "moved", DEAD_INIT);
    await c.until((e) => e.length >= 3, 1000);
    expect(summary(c.events)[2]).toEqual(["changed", "moved", "stopped"]);
  });

  it("reports a stopped container paused once its freezer is frozen by hand, and stopped once thawed (runc's order: the freezer first)", async () => {
    // A real freezer cgroup of its own, with no process in it: freezing it completes at once.
    const mode = detectCgroupMode();
    const cgroup = mode === "v2" ? path.join("/sys/fs/cgroup", uniqueId("rs-wstop")) : path.join("/sys/fs/cgroup/freezer", uniqueId("rs-wstop"));
    const freezeFile = path.join(cgroup, mode === "v2" ? "cgroup.freeze" : "freezer.state");
    const [frozen, thawed] = mode === "v2" ? ["1", "0"] : ["FROZEN", "THAWED"];
    fs.mkdirSync(cgroup);
    try {
      fake = tempRoot();
      root = new StateRoot(fake.root, mode);
      hub = new WatchHub(root, { rescanMs: 50 });
      const dir = writeFakeContainer(fake.root, "gone", DEAD_INIT, { created: false });
      const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
      state.cgroup_paths = mode === "v2" ? { "": cgroup } : { freezer: cgroup };
      fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state));
      // A stopped container whose cgroup is gone is never paused: the rescan finds no freezer dir.
      writeFakeContainer(fake.root, "no-cgroup", DEAD_INIT, { created: false });
      const c = collect(hub.subscribe());
      expect(summary(c.events)).toEqual([["initial", "gone", "stopped"], ["initial", "no-cgroup", "stopped"], ["synced", "", undefined]]);
      fs.writeFileSync(freezeFile, frozen);
      await c.until((e) => e.length >= 4, 2000);
      fs.writeFileSync(freezeFile, thawed);
      await c.until((e) => e.length >= 5, 2000);
      await new Promise((r) => setTimeout(r, 200)); // a few more rescans: nothing else changed
      expect(summary(c.events.slice(3))).toEqual([["changed", "gone", "paused"], ["changed", "gone", "stopped"]]);
    } finally {
      hub.close();
      fs.rmdirSync(cgroup);
    }
  });

  it("checks a stopped container in one rescan of NOTIFIED_RESCAN_EVERY, each pass a different share, and a live one whose status is polled in every pass", async () => {
    setup({ rescanMs: 20 });
    const stopped = 4 * NOTIFIED_RESCAN_EVERY;
    for (let i = 0; i < stopped; i++) writeFakeContainer(fake.root, `s${i}`, DEAD_INIT, { created: false });
    writeFakeContainer(fake.root, "live", inits[0] as FakeInit, { created: false });
    const c = collect(hub.subscribe());
    expect(c.events.filter((e) => e.entry?.state?.status === "stopped")).toHaveLength(stopped);
    // From the first pass on (the containers were loaded after the root's watcher was set up: no full pass).
    const before = hub.counters;
    while (hub.counters.rescans < before.rescans + 2 * NOTIFIED_RESCAN_EVERY) await new Promise((r) => setTimeout(r, 20));
    const after = hub.counters;
    const passes = after.rescans - before.rescans;
    const checks = after.rescanChecks - before.rescanChecks;
    // Per pass: the live one and an eighth of the stopped (4); a pass may be under way at either end.
    expect(checks).toBeGreaterThanOrEqual((passes - 1) * (1 + stopped / NOTIFIED_RESCAN_EVERY));
    expect(checks).toBeLessThanOrEqual((passes + 1) * (1 + stopped / NOTIFIED_RESCAN_EVERY));
  });

  /** The cgroup2 hierarchy: /sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a hybrid host (undefined on a pure v1 host). */
  const unifiedDir = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].find((d) => {
    try {
      return fs.statfsSync(d).type === 0x63677270;
    } catch {
      return false;
    }
  });

  /** Removes a cgroup dir made by a test, once the kernel has taken its last (killed) process out. */
  async function removeCgroup(dir: string): Promise<void> {
    for (let i = 0; i < 50; i++) {
      try {
        fs.rmdirSync(dir);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  it.skipIf(unifiedDir === undefined)("checks the files of a live container followed through its cgroup.events in one rescan of NOTIFIED_RESCAN_EVERY too, its status in every one", async () => {
    // A real cgroup2 dir holding a real process: the hub follows these containers through its cgroup.events.
    const cgroup = path.join(unifiedDir as string, uniqueId("rs-wlive"));
    fs.mkdirSync(cgroup);
    const init = await spawnInit();
    let other: FakeInit | undefined;
    try {
      fs.writeFileSync(path.join(cgroup, "cgroup.procs"), String(init.pid));
      fake = tempRoot();
      root = new StateRoot(fake.root, detectCgroupMode());
      hub = new WatchHub(root, { rescanMs: 20 });
      const followed = 2 * NOTIFIED_RESCAN_EVERY;
      for (let i = 0; i < followed; i++) {
        const dir = writeFakeContainer(fake.root, `e${i}`, init, { created: false });
        const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
        state.cgroup_paths = { "": cgroup };
        fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state));
      }
      writeFakeContainer(fake.root, "polled", inits[0] as FakeInit, { created: false }); // no cgroup: its status is polled
      const c = collect(hub.subscribe());
      expect(c.events.filter((e) => e.entry?.state?.status === "running")).toHaveLength(followed + 1);
      expect([hub.counters.eventsFollowed, hub.counters.statusPolled]).toEqual([followed, 1]);
      const before = hub.counters; // from the first pass on
      while (hub.counters.rescans < before.rescans + 2 * NOTIFIED_RESCAN_EVERY) await new Promise((r) => setTimeout(r, 20));
      const after = hub.counters;
      const passes = after.rescans - before.rescans;
      const checks = after.rescanChecks - before.rescanChecks;
      // Per pass: the polled one and an eighth of the followed (2), not all 17; a pass may be under way at either end.
      const perPass = 1 + followed / NOTIFIED_RESCAN_EVERY;
      expect(checks).toBeGreaterThanOrEqual((passes - 1) * perPass);
      expect(checks).toBeLessThanOrEqual((passes + 1) * perPass);
      // The init dies while another process keeps its cgroup populated: no notification comes, and each
      // pass of the rescan (not one in NOTIFIED_RESCAN_EVERY) re-derives the status of these containers.
      other = await spawnInit();
      fs.writeFileSync(path.join(cgroup, "cgroup.procs"), String(other.pid));
      const atKill = hub.counters.rescans;
      await init.kill();
      await c.until((e) => e.filter((x) => x.kind === "changed" && x.entry?.state?.status === "stopped").length === followed, 2000);
      expect(hub.counters.rescans - atKill).toBeLessThanOrEqual(2); // the pass under way, then a whole one
    } finally {
      hub.close();
      await init.kill();
      await other?.kill();
      await removeCgroup(cgroup);
    }
  });

  it.skipIf(unifiedDir === undefined)("polls a live container whose init left its cgroup (cgroup.events said populated 0): its death is then seen", async () => {
    const cgroup = path.join(unifiedDir as string, uniqueId("rs-wleft"));
    fs.mkdirSync(cgroup);
    const init = await spawnInit();
    try {
      fs.writeFileSync(path.join(cgroup, "cgroup.procs"), String(init.pid));
      fake = tempRoot();
      root = new StateRoot(fake.root, detectCgroupMode());
      hub = new WatchHub(root, { rescanMs: 600_000 }); // no rescan during the test: only the notification and the poll
      for (const id of ["l1", "l2"]) {
        const dir = writeFakeContainer(fake.root, id, init, { created: false });
        const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
        state.cgroup_paths = { "": cgroup };
        fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state));
      }
      const c = collect(hub.subscribe());
      expect([hub.counters.eventsFollowed, hub.counters.statusPolled]).toEqual([2, 0]);
      fs.writeFileSync(path.join(unifiedDir as string, "cgroup.procs"), String(init.pid)); // out of its cgroup, alive
      for (let t0 = Date.now(); hub.counters.statusPolled < 2 && Date.now() - t0 < 2000; ) await new Promise((r) => setTimeout(r, 10));
      expect([hub.counters.eventsFollowed, hub.counters.statusPolled]).toEqual([0, 2]);
      await init.kill();
      await c.until((e) => e.filter((x) => x.kind === "changed" && x.entry?.state?.status === "stopped").length === 2, 1000);
    } finally {
      hub.close();
      await init.kill();
      await removeCgroup(cgroup);
    }
  });

  /** 16 stopped containers, each then deleted and made again live with the same id. */
  const STOPPED_THEN_LIVE = Array.from({ length: 16 }, (_, i) => `s${i}`);
  const nowRunning = (c: { events: WatchEvent[] }): string[] =>
    STOPPED_THEN_LIVE.filter((id) => c.events.some((e) => e.id === id && e.entry?.state?.status === "running"));

  it("a rescan asked for because the root's notifications failed checks every stopped container, not an eighth", async () => {
    setup({ rescanMs: 600_000 }); // no periodic rescan during the test
    for (const id of STOPPED_THEN_LIVE) writeFakeContainer(fake.root, id, DEAD_INIT, { created: false });
    const c = collect(hub.subscribe());
    const internals = hub as unknown as { rootWatcher?: fs.FSWatcher; tracked: Map<string, { dirWatcher?: fs.FSWatcher }> };
    const w = internals.rootWatcher as fs.FSWatcher;
    w.close(); // notifications lost
    for (const t of internals.tracked.values()) t.dirWatcher?.close();
    for (const id of STOPPED_THEN_LIVE) {
      fs.rmSync(path.join(fake.root, id), { recursive: true });
      writeFakeContainer(fake.root, id, inits[0] as FakeInit, { created: false });
    }
    const before = hub.counters.rescans;
    w.emit("error", new Error("inotify failed")); // the hub asks for a rescan at once
    await c.until(() => nowRunning(c).length === STOPPED_THEN_LIVE.length, 2000);
    expect(hub.counters.rescans - before).toBe(1);
  });

  it("after the root is swapped for another, the next rescan checks every container", async () => {
    setup({ rescanMs: 100 });
    for (const id of STOPPED_THEN_LIVE) writeFakeContainer(fake.root, id, DEAD_INIT, { created: false });
    const c = collect(hub.subscribe());
    fs.renameSync(fake.root, path.join(fake.dir, "old-root"));
    fs.mkdirSync(fake.root, { mode: 0o700 });
    for (const id of STOPPED_THEN_LIVE) writeFakeContainer(fake.root, id, inits[0] as FakeInit, { created: false });
    const before = hub.counters.rescans;
    await c.until(() => nowRunning(c).length === STOPPED_THEN_LIVE.length, 3000);
    expect(hub.counters.rescans - before).toBeLessThanOrEqual(2); // the pass under way when the root moved, then the full one
  });

  it("shares one set of notifications between watchers and releases every handle and timer when the last leaves", async () => {
    setup();
    for (const id of ["x1", "x2", "x3"]) writeFakeContainer(fake.root, id, inits[0] as FakeInit);
    await new Promise((r) => setTimeout(r, 60));
    const before = countResources();
    const s1 = hub.subscribe();
    const during1 = countResources();
    const s2 = hub.subscribe();
    const s3 = hub.subscribe("x1");
    const during3 = countResources();
    expect(during1.watchers - before.watchers).toBe(4); // the root and three container dirs
    expect(during3).toEqual(during1);
    s1.close();
    s2.close();
    await new Promise((r) => setTimeout(r, 60)); // handles leave the list once their close completes
    expect(countResources().watchers - before.watchers).toBe(2); // the root and x1
    const timersWhileOpen = countResources().timers;
    s3.close();
    await new Promise((r) => setTimeout(r, 60));
    expectBaseline(hub, before);
    expect(countResources().timers).toBeLessThan(timersWhileOpen); // the poll and the rescan
    expect(hub.subscribers).toBe(0);
  });

  it("ends every subscription with ConfigInvalid when the root goes away", async () => {
    setup({ rescanMs: 50 });
    const s = hub.subscribe();
    const c = collect(s);
    fs.rmSync(fake.root, { recursive: true });
    await c.until(() => s.done !== undefined, 1000);
    expect(s.done?.error).toBeInstanceOf(RuntimeError);
    expect((s.done?.error as RuntimeError).kind).toBe("ConfigInvalid");
    expect(hub.subscribers).toBe(0);
  });

  it("a root that fails while a reader is still taking its initial events: no SYNCED, the error", async () => {
    setup({ rescanMs: 50 });
    for (const id of ["r1", "r2", "r3"]) writeFakeContainer(fake.root, id, DEAD_INIT);
    const s = hub.subscribe();
    const first = s.take();
    expect([first?.kind, first?.id]).toEqual(["initial", "r1"]);
    fs.rmSync(fake.root, { recursive: true });
    const t0 = Date.now();
    while (s.done === undefined && Date.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 10));
    const rest: string[] = [];
    for (let ev = s.take(); ev !== undefined; ev = s.take()) rest.push(ev.kind);
    expect(rest).not.toContain("synced");
    expect((s.done?.error as RuntimeError | undefined)?.kind).toBe("ConfigInvalid");
  });

  it("refuses a bad id and an unusable root", async () => {
    setup();
    await new Promise((r) => setTimeout(r, 60));
    const before = countResources();
    expect(() => hub.subscribe("../x")).toThrow(expect.objectContaining({ kind: "InvalidIdFormat" }));
    fs.rmSync(fake.root, { recursive: true });
    expect(() => hub.subscribe()).toThrow(expect.objectContaining({ kind: "ConfigInvalid" }));
    expect(hub.subscribers).toBe(0);
    await new Promise((r) => setTimeout(r, 60));
    expectBaseline(hub, before);
  });
});
