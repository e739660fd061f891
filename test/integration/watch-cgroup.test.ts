/**
 * Issue 11: Watch sees a container's death through its unified cgroup's
 * `cgroup.events` (inotify), not by polling `/proc`, and pause/resume on a v1
 * (hybrid) host through `freezer.state`'s notifications. Real runc, a real server
 * process, its metrics scraped to count what the poll did.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient, type WatchEventView } from "../../src/client/client.js";
import { detectCgroupMode } from "../../src/runtime/freezer.js";
import { NOTIFIED_RESCAN_EVERY, RESCAN_INTERVAL_MS } from "../../src/runtime/watch.js";
import { scrape, type Metrics } from "../helpers/metrics.js";
import { RuncFixture, procState, skipRunc, uniqueId } from "../helpers/runc.js";
import { startServer, tempSocketPath, type ServerProcess } from "../helpers/server.js";

interface Received extends WatchEventView {
  at: number;
}

function collect(events: AsyncIterable<WatchEventView>) {
  const got: Received[] = [];
  const done = (async () => {
    try {
      for await (const ev of events) got.push({ ...ev, at: performance.now() });
    } catch {
      // cancelled
    }
  })();
  return {
    got,
    done,
    async until(pred: (evs: Received[]) => boolean, ms = 5000): Promise<void> {
      const t0 = Date.now();
      while (!pred(got)) {
        if (Date.now() - t0 > ms) throw new Error(`timed out; got ${JSON.stringify(got.map((e) => [e.kind, e.id, e.state?.status]))}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}

describe.skipIf(skipRunc())("Watch follows containers through cgroup.events", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  let metricsSock: string;
  const mode = detectCgroupMode();
  const metrics = (): Promise<Metrics> => scrape({ socketPath: metricsSock });
  const counter = (m: Metrics, name: string): number => m.value(name) ?? Number.NaN;

  beforeAll(async () => {
    fx = new RuncFixture("runc-shim-wcg-");
    metricsSock = path.join(path.dirname(tempSocketPath()), "m.sock");
    server = await startServer(fx.root, ["--metrics-address", metricsSock]);
    shim = createShimClient(server.socket);
  });
  afterAll(async () => {
    shim?.close();
    await server?.stop();
    fx?.cleanup();
  });

  it("reports a runc kill -9 from the cgroup's populated 0, without polling /proc for it", async () => {
    const id = fx.create(uniqueId("rs-wcg"));
    fx.runc("start", id);
    const state = JSON.parse(fs.readFileSync(path.join(fx.root, id, "state.json"), "utf8")) as { cgroup_paths: Record<string, string>; init_process_pid: number };
    expect(state.cgroup_paths[""]).toMatch(/^\/sys\/fs\/cgroup\//); // the unified dir (cgroup v2, or hybrid)
    const ac = new AbortController();
    const all = collect(shim.watch("", { signal: ac.signal }));
    const one = collect(shim.watch(id, { signal: ac.signal }));
    await all.until((e) => e.some((x) => x.kind === "synced"));
    await one.until((e) => e.some((x) => x.kind === "synced"));
    await new Promise((r) => setTimeout(r, 150)); // a few poll intervals
    const before = await metrics();
    expect(before.value("runcshim_watch_containers_followed", { how: "cgroup-events" })).toBe(1);
    expect(before.value("runcshim_watch_containers_followed", { how: "poll" })).toBe(0);
    expect(counter(before, "runcshim_watch_status_polls_total")).toBe(0);

    fx.runc("kill", id, "KILL");
    const t = performance.now();
    const stopped = (e: Received) => e.id === id && e.kind === "changed" && e.state?.status === "stopped";
    await Promise.all([all, one].map((c) => c.until((evs) => evs.some(stopped), 2000)));
    const latency = Math.max(...[all, one].map((c) => (c.got.find(stopped) as Received).at - t));
    const initState = procState(state.init_process_pid);
    console.log(`runc kill -9 seen ${latency.toFixed(1)} ms after runc returned; the init is ${initState === "Z" ? "a zombie (nobody reaped it)" : initState === undefined ? "reaped" : `in state ${initState}`}`);
    const after = await metrics();
    // Seen through the notification: the poll never derived this container's status.
    expect(counter(after, "runcshim_watch_status_polls_total")).toBe(0);
    expect(counter(after, "runcshim_watch_cgroup_events_total")).toBeGreaterThanOrEqual(1);
    expect(latency).toBeLessThan(100);
    expect(after.value("runcshim_watch_containers_followed", { how: "cgroup-events" })).toBe(0); // stopped: nothing to follow
    ac.abort();
    await Promise.all([all.done, one.done]);
    fx.runc("delete", id);
    fx.forget(id);
  });

  /** A started container with a watch of its id, synced. */
  async function watchedContainer(): Promise<{ id: string; one: ReturnType<typeof collect>; ac: AbortController }> {
    const id = fx.create(uniqueId("rs-wcg"));
    fx.runc("start", id);
    const ac = new AbortController();
    const one = collect(shim.watch(id, { signal: ac.signal }));
    await one.until((e) => e.some((x) => x.kind === "synced"));
    return { id, one, ac };
  }

  /** Runs `runc ARGS...` and waits (at most `ms`) for the CHANGED event to `status`; returns ms from runc's return to it. */
  async function seenAfter(one: ReturnType<typeof collect>, args: string[], status: string, ms: number): Promise<number> {
    const seen = one.got.length;
    fx.runc(...args);
    const t = performance.now();
    const match = (e: Received) => e.kind === "changed" && e.state?.status === status;
    await one.until((evs) => evs.slice(seen).some(match), ms);
    return (one.got.slice(seen).find(match) as Received).at - t;
  }

  async function endWatch(w: { id: string; one: ReturnType<typeof collect>; ac: AbortController }): Promise<void> {
    w.ac.abort();
    await w.one.done;
    fx.runc("delete", "-f", w.id);
    fx.forget(w.id);
  }

  it("reports runc pause and resume: freezer.state's notifications on a v1 host, cgroup.events on v2", async () => {
    const w = await watchedContainer();
    const { id, one } = w;
    const before = await metrics();
    const latencies: number[] = [];
    for (const [verb, status] of [["pause", "paused"], ["resume", "running"]] as const) latencies.push(await seenAfter(one, [verb, id], status, 2000));
    const after = await metrics();
    console.log(`cgroup ${mode}: pause seen after ${latencies[0]?.toFixed(1)} ms, resume after ${latencies[1]?.toFixed(1)} ms`);
    for (const ms of latencies) expect(ms).toBeLessThan(100);
    expect(counter(after, "runcshim_watch_status_polls_total")).toBe(0);
    const freezerEvents = counter(after, "runcshim_watch_freezer_events_total") - counter(before, "runcshim_watch_freezer_events_total");
    const freezerPolls = counter(after, "runcshim_watch_freezer_polls_total") - counter(before, "runcshim_watch_freezer_polls_total");
    console.log(`freezer.state notifications ${freezerEvents}, freezer polls ${freezerPolls}`);
    if (mode === "v1") expect(freezerEvents).toBeGreaterThanOrEqual(2); // runc pause and runc resume each wrote freezer.state
    else expect(freezerEvents + freezerPolls).toBe(0);
    await endWatch(w);
  });

  it("a container deleted and made again with the same id while the server was stopped: its new cgroup files are watched", async () => {
    const w = await watchedContainer();
    const { id, one } = w;
    const firstPid = fx.initPid(id);
    const pid = server.proc.pid as number;
    // The server's event loop stalls (a long GC pause, a starved CPU) while the id is made again.
    process.kill(pid, "SIGSTOP");
    try {
      fx.runc("delete", "-f", id);
      fx.create(id);
      fx.runc("start", id);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    const newPid = fx.initPid(id);
    await one.until((evs) => evs.some((e) => e.kind !== "synced" && e.kind !== "initial" && e.state?.status === "running" && e.state.pid === newPid), 2000);
    expect(newPid).not.toBe(firstPid);
    for (const [verb, status, args] of [["pause", "paused", []], ["resume", "running", []], ["kill", "stopped", ["KILL"]]] as const) {
      // Well within the 2 s rescan: through the new cgroup.events and freezer.state, not the old ones.
      expect(await seenAfter(one, [verb, id, ...args], status, 1000), verb).toBeLessThan(100);
    }
    await endWatch(w);
  });

  it("follows a freezer.state made anew at the same path: its cgroup removed and made again under a live container", async () => {
    const w = await watchedContainer();
    const { id, one } = w;
    const state = JSON.parse(fs.readFileSync(path.join(fx.root, id, "state.json"), "utf8")) as { init_process_pid: number; cgroup_paths: Record<string, string> };
    const dir = mode === "v2" ? state.cgroup_paths[""] : state.cgroup_paths.freezer;
    expect(dir, "state.json names the container's freezer cgroup").toBeTruthy();
    // The init moves to the hierarchy's root cgroup, its cgroup is removed and made again, the init moves back.
    const top = path.dirname(dir as string);
    const pid = String(state.init_process_pid);
    fs.writeFileSync(path.join(top, "cgroup.procs"), pid);
    fs.rmdirSync(dir as string);
    fs.mkdirSync(dir as string);
    fs.writeFileSync(path.join(dir as string, "cgroup.procs"), pid);
    // Nothing notifies of that (kernfs sends no IN_DELETE_SELF): the rescan that checks this container (one
    // pass of NOTIFIED_RESCAN_EVERY, every RESCAN_INTERVAL_MS) finds the file's new inode and watches it; from
    // then on pause and resume are seen through it again.
    await new Promise((r) => setTimeout(r, NOTIFIED_RESCAN_EVERY * RESCAN_INTERVAL_MS + 600));
    for (const [verb, status] of [["pause", "paused"], ["resume", "running"]] as const) {
      expect(await seenAfter(one, [verb, id], status, 1000), verb).toBeLessThan(100);
    }
    await endWatch(w);
  });
});
