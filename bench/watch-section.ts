/**
 * Section 5 of the benchmark: Watch on a large root. One root of
 * `config.watchDirs` container dirs, of which `config.watchLive` are live
 * containers made without runc (a `sleep` of the benchmark in cgroup dirs made
 * for it, see ./lib/live-cgroups.ts), `config.watchKills` are real runc
 * containers (killed with `runc kill` while watched) and the rest copies of a
 * real state.json whose init is dead. One fresh server on that root, with its
 * event-loop delay reported (LOOP_DELAY_ENV).
 *
 * Measured: State p50/p99 (and the floor) with no watch, then with one
 * watch-all open and synced; the server's event-loop delay and CPU while that
 * watch is open; `runc kill` to the watcher's STOPPED message; then
 * `config.watchStreams` watch-all streams at once (time to SYNCED, server RSS
 * before, while open, and after they are cancelled).
 */
import fs from "node:fs";
import path from "node:path";
import { uniqueId } from "../scripts/lib/runc.js";
import { LOOP_DELAY_ENV } from "../src/serve.js";
import type { BenchConfig } from "./bench.js";
import { fillWithCopies, runcAsync, type ContainerRegistry } from "./lib/containers.js";
import { LiveCgroups } from "./lib/live-cgroups.js";
import type { Probe, WatchOpenResult } from "./lib/protocol.js";
import { latencyRow, shimOnlyRow, type Row, type TargetResult } from "./lib/report.js";
import { cpuTimes, launchServer, rssMiB, type ServerHandle } from "./lib/server.js";
import { summarize, type Summary } from "./lib/stats.js";
import type { Worker } from "./lib/worker-client.js";

/** What the section needs from the benchmark. */
export interface WatchSectionContext {
  config: BenchConfig;
  worker: Worker;
  registry: ContainerRegistry;
  servers: Set<ServerHandle>;
  /** Live fake containers made here are added, so the benchmark's clean-up removes them. */
  lives: Set<LiveCgroups>;
  /** The benchmark's temporary dir (state roots, sockets). */
  dir: string;
  bundle: string;
  log: (msg: string) => void;
}

/** What the section measured. */
export interface WatchSectionResult {
  rows: Row[];
  targets: TargetResult[];
  summary: Record<string, unknown>;
  stderr: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** With RUNC_SHIM_BENCH_WATCH_SMAPS=DIR, copies the server's /proc/PID/smaps to DIR/smaps-<when> (where its RSS lies: V8 heap, malloc arenas, ...). */
function dumpSmaps(pid: number, when: string): void {
  const dir = process.env.RUNC_SHIM_BENCH_WATCH_SMAPS;
  if (dir === undefined || dir === "") return;
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `smaps-${when}`), fs.readFileSync(`/proc/${pid}/smaps`));
  } catch {
    // gone
  }
}

/** The `loop-delay` lines the server wrote since `from` (an offset into its stderr). */
function loopDelays(stderr: string, from: number): Array<{ p50: number; p99: number; max: number; n: number }> {
  return stderr
    .slice(from)
    .split("\n")
    .filter((l) => l.startsWith("loop-delay "))
    .map((l) => JSON.parse(l.slice("loop-delay ".length)) as { p50: number; p99: number; max: number; n: number });
}

export async function watchSection(ctx: WatchSectionContext): Promise<WatchSectionResult> {
  const { config, worker, registry, log } = ctx;
  const root = path.join(ctx.dir, "root-watch");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(root, { mode: 0o700 });

  // ---- The root: real runc containers to kill, live fake ones in their own cgroups, dead copies.
  const kills = Array.from({ length: config.watchKills }, () => uniqueId("bw"));
  for (const id of kills) {
    await registry.create(root, ctx.bundle, id, ctx.dir);
    const r = await runcAsync(root, ["start", id]);
    if (r.code !== 0) throw new Error(`runc start ${id}: ${r.stderr.trim()}`);
  }
  const template = kills[0] as string;
  const live = new LiveCgroups(uniqueId("rsb"));
  ctx.lives.add(live);
  const t0 = performance.now();
  await live.make(root, path.join(root, template, "state.json"), template, config.watchLive);
  fillWithCopies(root, path.join(root, template, "state.json"), template, config.watchDirs, uniqueId("bwc"));
  log(`section 5: a root of ${config.watchDirs} dirs: ${config.watchLive} live containers (sleep processes in cgroups made for them), ${kills.length} runc containers, the rest dead copies; made in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const srv = await launchServer({
    root,
    socket: path.join(ctx.dir, "watch.sock"),
    env: { [LOOP_DELAY_ENV]: "250" },
    serveArgs: ["--max-watches-per-connection", "256", "--max-watches", "1024"],
    // RUNC_SHIM_BENCH_WATCH_NODE_ARGS: node flags for this server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"), for profiling it.
    nodeArgs: (process.env.RUNC_SHIM_BENCH_WATCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""),
  });
  ctx.servers.add(srv);
  await worker.request({ op: "connect", name: "watch", socket: srv.socket });
  const probeIds = live.ids.slice(0, 8);
  const probes: Probe[] = [
    { key: "floor", kind: "floor", conn: "watch" },
    { key: "shim", kind: "shim", conn: "watch", ids: probeIds, expect: "running" },
  ];
  await worker.request({ op: "throughput", conn: "watch", kind: "shim", ids: probeIds, concurrency: 16, warmupMs: 0, durationMs: config.jitWarmupMs });
  await worker.request({ op: "rounds", probes, rounds: config.warmupRounds, seed: 5 });

  // ---- State with no watch, then with one watch-all open.
  const noWatch = await worker.request({ op: "rounds", probes, rounds: config.watchRounds, seed: 51 });
  const tOpen = performance.now();
  const first = await worker.request({ op: "watchOpen", name: "one", socket: srv.socket, streams: 1, connections: 1, decode: true });
  const firstSyncMs = first.syncedMs[0] ?? Number.NaN;
  log(`section 5: one watch-all synced in ${firstSyncMs.toFixed(0)} ms (${first.messages} messages); ${config.watchRounds} rounds with it open`);
  void tOpen;
  await sleep(500); // the hub's first poll and rescan passes
  const from = srv.stderr().length;
  const cpu0 = cpuTimes(srv.pid)?.selfMs;
  const w0 = performance.now();
  const withWatch = await worker.request({ op: "rounds", probes, rounds: config.watchRounds, seed: 52 });
  await sleep(300);
  const roundsMs = performance.now() - w0;
  const cpuRounds = (cpuTimes(srv.pid)?.selfMs ?? Number.NaN) - (cpu0 ?? Number.NaN);
  // Idle with the watch open: what following 1,000 live containers costs by itself.
  const cpu1 = cpuTimes(srv.pid)?.selfMs;
  const i0 = performance.now();
  await sleep(config.watchIdleMs);
  const idleCpuPct = (100 * ((cpuTimes(srv.pid)?.selfMs ?? Number.NaN) - (cpu1 ?? Number.NaN))) / (performance.now() - i0);
  const delays = loopDelays(srv.stderr(), from);

  // ---- runc kill, seen by the open watch.
  const { ms: killMs, runcMs: killRuncMs } = await worker.request({ op: "watchKill", name: "one", root, ids: kills });
  await worker.request({ op: "watchClose", name: "one" });
  log(`section 5: runc kill seen after ${killMs.map((m) => m.toFixed(1)).join(", ")} ms; ${config.watchStreams} watch-all streams next`);
  await sleep(1000);

  // ---- Many watch-all streams at once.
  const rssBefore = rssMiB(srv.pid);
  dumpSmaps(srv.pid, "before");
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(srv.pid))), 100);
  let many: WatchOpenResult | undefined;
  const cpuM0 = { server: cpuTimes(srv.pid)?.selfMs ?? Number.NaN, client: cpuTimes(worker.pid)?.selfMs ?? Number.NaN, at: performance.now() };
  let cpuMany = { server: Number.NaN, client: Number.NaN, seconds: Number.NaN };
  try {
    many = await worker.request({ op: "watchOpen", name: "many", socket: srv.socket, streams: config.watchStreams, connections: Math.ceil(config.watchStreams / 50), decode: false, client: "http2" });
    cpuMany = {
      server: ((cpuTimes(srv.pid)?.selfMs ?? Number.NaN) - cpuM0.server) / 1000,
      client: ((cpuTimes(worker.pid)?.selfMs ?? Number.NaN) - cpuM0.client) / 1000,
      seconds: (performance.now() - cpuM0.at) / 1000,
    };
    await sleep(1000);
    rssPeak = Math.max(rssPeak, rssMiB(srv.pid));
  } finally {
    clearInterval(sampler);
  }
  const rssOpen = rssMiB(srv.pid);
  dumpSmaps(srv.pid, "open");
  await worker.request({ op: "watchClose", name: "many" });
  // RSS every 500 ms while settling (in the JSON summary: how fast, if at all, the server gives memory back).
  const settleMs = Number(process.env.RUNC_SHIM_BENCH_WATCH_SETTLE_MS ?? config.watchSettleMs);
  const rssSettling: number[] = [];
  for (let t = 0; t < settleMs; t += 500) {
    await sleep(Math.min(500, settleMs - t));
    rssSettling.push(Math.round(rssMiB(srv.pid) * 10) / 10);
  }
  log(`section 5: RSS every 500 ms after the cancel: ${rssSettling.join(" ")}`);
  const rssAfter = rssMiB(srv.pid);
  dumpSmaps(srv.pid, "after");
  if (process.env.RUNC_SHIM_BENCH_WATCH_SNAPSHOT_SIGNAL !== undefined) {
    // Diagnosis: the server runs with --heapsnapshot-signal=SIG (RUNC_SHIM_BENCH_WATCH_NODE_ARGS); a snapshot begins with a full GC.
    process.kill(srv.pid, process.env.RUNC_SHIM_BENCH_WATCH_SNAPSHOT_SIGNAL as NodeJS.Signals);
    await sleep(15_000);
    log(`section 5: RSS after a heap snapshot (and its full GC): ${rssMiB(srv.pid).toFixed(1)} MiB`);
    dumpSmaps(srv.pid, "after-snapshot");
  }
  if (many === undefined) throw new Error("the watch-all streams did not open");

  // ---- The same streams again, batched (WatchRequest.max_batch): the opt-in for a manager that syncs many containers.
  await sleep(1000);
  const cpuB0 = { server: cpuTimes(srv.pid)?.selfMs ?? Number.NaN, client: cpuTimes(worker.pid)?.selfMs ?? Number.NaN };
  const batched = await worker.request({ op: "watchOpen", name: "batched", socket: srv.socket, streams: config.watchStreams, connections: Math.ceil(config.watchStreams / 50), decode: false, maxBatch: config.watchBatch, client: "http2" });
  const cpuBatched = {
    server: ((cpuTimes(srv.pid)?.selfMs ?? Number.NaN) - cpuB0.server) / 1000,
    client: ((cpuTimes(worker.pid)?.selfMs ?? Number.NaN) - cpuB0.client) / 1000,
  };
  const rssBatched = rssMiB(srv.pid);
  await worker.request({ op: "watchClose", name: "batched" });
  const batchedSync = summarize(batched.syncedMs);
  log(`section 5: ${config.watchStreams} batched streams (max_batch ${config.watchBatch}) synced in ${(batchedSync.max / 1000).toFixed(1)} s (${batched.messages} messages, ${batched.events} events)`);
  const manySync = summarize(many.syncedMs);
  log(`section 5: ${config.watchStreams} streams synced in ${(manySync.max / 1000).toFixed(1)} s; RSS ${rssBefore.toFixed(0)} → peak ${rssPeak.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`);

  await worker.request({ op: "close", name: "watch" });
  await srv.stop();
  ctx.servers.delete(srv);
  await live.cleanup();
  ctx.lives.delete(live);
  if (live.leftDirs.length > 0) log(`section 5: ${live.leftDirs.length} cgroup dirs could not be removed: ${live.leftDirs.slice(0, 3).join(", ")}`);

  // ---- Rows and targets.
  const S = (r: Record<string, number[]>, k: string): Summary => summarize(r[k] ?? []);
  const a = S(noWatch, "shim");
  const b = S(withWatch, "shim");
  const fa = S(noWatch, "floor");
  const fb = S(withWatch, "floor");
  const p99s = delays.map((d) => d.p99).sort((x, y) => x - y);
  const worstP99 = p99s.at(-1) ?? Number.NaN;
  const medianP99 = p99s[Math.floor((p99s.length - 1) / 2)] ?? Number.NaN;
  const maxDelay = Math.max(...delays.map((d) => d.max));
  const ks = summarize(killMs);
  const N = config.watchDirs.toLocaleString("en-US");
  const rows: Row[] = [
    latencyRow(5, "watch.state.p50.none", "State p50, no watch", "µs", a.p50, null, fa.p50, `shim ${a.n} / floor ${fa.n}`),
    latencyRow(5, "watch.state.p99.none", "State p99, no watch", "µs", a.p99, null, fa.p99, `shim ${a.n} / floor ${fa.n}`),
    latencyRow(5, "watch.state.p50.open", "State p50, a watch-all open", "µs", b.p50, null, fb.p50, `shim ${b.n} / floor ${fb.n}`),
    latencyRow(5, "watch.state.p99.open", "State p99, a watch-all open", "µs", b.p99, null, fb.p99, `shim ${b.n} / floor ${fb.n}`),
    shimOnlyRow(5, "watch.loopdelay.p99", "event-loop delay p99, watch open", "ms", worstP99, `worst of ${delays.length} windows of 250 ms (median ${medianP99.toFixed(2)}, max ${maxDelay.toFixed(1)})`),
    shimOnlyRow(5, "watch.cpu.idle", "server CPU, watch open, idle", "%", idleCpuPct, `${config.watchIdleMs} ms; ${(cpuRounds / (roundsMs / 1000) / 10).toFixed(1)} % during the State rounds`),
    shimOnlyRow(5, "watch.sync.one", "first watch-all synced", "ms", firstSyncMs, `${first.messages} messages`),
    shimOnlyRow(5, "watch.kill.max", "runc kill seen by the watch, max", "ms", ks.max, `${ks.n} kills from the spawn of runc kill, p50 ${ks.p50.toFixed(1)} ms; runc kill itself ran ${summarize(killRuncMs).p50.toFixed(1)} ms p50`),
    shimOnlyRow(5, "watch.sync.many", `${config.watchStreams} watch-alls synced (last)`, "s", manySync.max / 1000, `${many.messages} messages; first ${(manySync.min / 1000).toFixed(1)} s; CPU s server ${cpuMany.server.toFixed(1)}, client ${cpuMany.client.toFixed(1)}`),
    shimOnlyRow(5, "watch.sync.batched", `${config.watchStreams} watch-alls synced, max_batch ${config.watchBatch} (last)`, "s", batchedSync.max / 1000, `${batched.messages} messages, ${batched.events} events; CPU s server ${cpuBatched.server.toFixed(1)}, client ${cpuBatched.client.toFixed(1)}; RSS ${rssBatched.toFixed(0)} MiB once synced`),
    shimOnlyRow(5, "watch.rss.before", `server RSS before the ${config.watchStreams}`, "MiB", rssBefore, "VmRSS"),
    shimOnlyRow(5, "watch.rss.open", `server RSS, ${config.watchStreams} open (peak)`, "MiB", rssPeak, `1 s after the last synced: ${rssOpen.toFixed(0)}`),
    shimOnlyRow(5, "watch.rss.after", `server RSS after they ended`, "MiB", rssAfter, `${settleMs} ms after the cancel`),
  ];
  const targets: TargetResult[] = [
    {
      name: `State p99 with a watch-all open on ${N} dirs (${config.watchLive} live) ≤ 2× its p99 with no watch`,
      pass: b.p99 <= 2 * a.p99,
      detail: `${(b.p99 / a.p99).toFixed(2)}× (${(b.p99 / 1000).toFixed(2)} vs ${(a.p99 / 1000).toFixed(2)} ms)`,
    },
    { name: "event-loop delay p99 ≤ 10 ms with the watch-all open", pass: worstP99 <= 10, detail: `worst 250 ms window ${worstP99.toFixed(2)} ms, median ${medianP99.toFixed(2)} ms` },
    { name: "runc kill seen by the watch within 100 ms", pass: ks.max <= 100, detail: `max ${ks.max.toFixed(1)} ms over ${ks.n} kills` },
    { name: `${config.watchStreams} watch-all streams on ${N} containers synced within 10 s`, pass: manySync.max <= 10_000, detail: `${(manySync.max / 1000).toFixed(2)} s` },
    {
      name: `the same ${config.watchStreams} streams with max_batch ${config.watchBatch} (opt-in) synced within 10 s`,
      pass: batchedSync.max <= 10_000,
      detail: `${(batchedSync.max / 1000).toFixed(2)} s (${batched.messages} messages)`,
    },
    { name: `RSS ≤ 300 MiB with ${config.watchStreams} watch-alls open`, pass: rssPeak <= 300, detail: `peak ${rssPeak.toFixed(0)} MiB` },
    {
      name: "RSS back to its baseline after they end (within 10 %)",
      pass: rssAfter <= 1.1 * rssBefore,
      detail: `${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`,
    },
  ];
  const stderr = srv
    .stderr()
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("loop-delay "))
    .join("\n");
  return {
    rows,
    targets,
    stderr,
    summary: { noWatch: { shim: a, floor: fa }, withWatch: { shim: b, floor: fb }, loopDelay: delays, idleCpuPct, firstSyncMs, killMs, manySyncedMs: manySync, manyCpuSeconds: cpuMany, batched: { maxBatch: config.watchBatch, syncedMs: batchedSync, messages: batched.messages, events: batched.events, cpuSeconds: cpuBatched, rssMiB: rssBatched }, rss: { before: rssBefore, peak: rssPeak, open: rssOpen, after: rssAfter, settlingEvery500ms: rssSettling } },
  };
}
