/**
 * `npm run bench`: runc-shim against runc 1.1.5, on real busybox containers.
 *
 *   node dist/bench/bench.js [--quick] [--out FILE]
 *
 * Creates its own containers with real runc under a temporary state root,
 * serves that root with runc-shim in its own process (`--log-level warn`: at
 * info the server writes one log line per call, which would be measured too),
 * and drives it from a separate client process (client-worker.js) that also
 * spawns `runc` for the comparison. Measures, with the sides alternated call
 * by call in a seeded shuffled order so that machine drift hits all equally:
 *
 *   0. the floor: grpc.health.v1.Health/Check (service "") on the same channel;
 *   1. State latency vs `runc state`, on created and on running containers;
 *   2. Start latency vs `runc start`, on fresh created containers;
 *   3. throughput at 1, 16 and 64 calls in flight, State vs the floor, and
 *      `runc state` with 2 processes in parallel;
 *   4. State p50 and the server's RSS with 10, 1,000 and 10,000 container
 *      dirs in the root (one fresh server per size; all three run at once and
 *      the rounds alternate between them).
 *
 * Prints one table and the targets (PASS/FAIL, never a non-zero exit for a
 * FAIL), writes the same as JSON to bench/results/latest.json, and deletes
 * every container, server and temporary file, also on SIGINT/SIGTERM.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { makeBundle, runcUnavailable, uniqueId } from "../scripts/lib/runc.js";
import { ContainerRegistry, fillWithCopies, pool, runcAsync } from "./lib/containers.js";
import type { Probe, RoundsResult, ThroughputResult } from "./lib/protocol.js";
import {
  percentileRows,
  renderTable,
  renderTargets,
  shimOnlyRow,
  sizeLabel,
  throughputRow,
  latencyRow,
  type Row,
  type TargetResult,
} from "./lib/report.js";
import { cpuTimes, launchServer, rssMiB, type ServerHandle } from "./lib/server.js";
import { summarize, type Summary } from "./lib/stats.js";
import { defaultTempBase, fsTypeOf } from "./lib/tmp.js";
import { Worker } from "./lib/worker-client.js";
import type { LiveCgroups } from "./lib/live-cgroups.js";
import { watchSection, type WatchSectionResult } from "./watch-section.js";

/** Iteration counts and sizes of one mode. */
export interface BenchConfig {
  mode: "quick" | "full";
  /** Rounds of section 0-1 (each: floor, State and runc state on a created and on a running container). */
  latencyRounds: number;
  /** Rounds of the back-to-back rows of section 0-1 (floor and State only: no runc process between the calls). */
  backToBackRounds: number;
  /** Start pairs (shim Start + runc start), each on its own fresh created container. */
  startPairs: number;
  /** Alternations of the throughput windows (State, floor at each concurrency, and runc). */
  throughputReps: number;
  /** Length of one throughput window, in ms (after its warm-up). */
  throughputWindowMs: number;
  /** Warm-up of each throughput window, not counted, in ms. */
  throughputWarmupMs: number;
  /** Calls in flight for the throughput rows. */
  concurrencies: number[];
  /** `runc state` processes in parallel for runc's throughput. */
  runcParallel: number;
  /** Container dirs in the root for the scale rows. */
  scaleSizes: number[];
  /**
   * Rounds of section 4 (each: floor and State against each size's server, no
   * runc in between: its disturbance would bury a ±10% comparison).
   */
  scaleRounds: number;
  /** Rounds of `runc state` on each size's root, for the runc column of section 4. */
  scaleRuncRounds: number;
  /** List calls per size (after the cache was filled), and `runc list` runs per size. */
  listReps: number;
  listRuncReps: number;
  /** Unrecorded rounds before each measured section (without runc). */
  warmupRounds: number;
  /**
   * JIT warm-up of each server before it is measured, in ms: State at 16 in
   * flight for this long, then the floor call for half as long, so that every
   * server measured runs equally optimised code.
   */
  jitWarmupMs: number;
  /** Section 5: container dirs in the watched root, live ones among them (own processes and cgroups), runc containers killed while watched. */
  watchDirs: number;
  watchLive: number;
  watchKills: number;
  /** Rounds of floor and State with no watch, then as many with a watch-all open. */
  watchRounds: number;
  /** Idle time with the watch-all open, for its CPU cost, in ms. */
  watchIdleMs: number;
  /** Watch-all streams opened at once, and how long after their end RSS is read, in ms. */
  watchStreams: number;
  /** WatchRequest.max_batch of the batched run of the same streams (after the default, unbatched one). */
  watchBatch: number;
  watchSettleMs: number;
}

/** `--quick`: under a minute; every row is still printed. */
export const QUICK: BenchConfig = {
  mode: "quick",
  latencyRounds: 200,
  backToBackRounds: 1000,
  startPairs: 30,
  throughputReps: 2,
  throughputWindowMs: 400,
  throughputWarmupMs: 100,
  concurrencies: [1, 16, 64],
  runcParallel: 2,
  scaleSizes: [10, 1000, 10_000],
  scaleRounds: 500,
  scaleRuncRounds: 40,
  listReps: 3,
  listRuncReps: 1,
  warmupRounds: 100,
  jitWarmupMs: 1000,
  watchDirs: 10_000,
  watchLive: 1000,
  watchKills: 3,
  watchRounds: 1000,
  watchIdleMs: 2000,
  watchStreams: 200,
  watchBatch: 1024,
  watchSettleMs: 3000,
};

/** The default: under five minutes. */
export const FULL: BenchConfig = {
  mode: "full",
  latencyRounds: 1000,
  backToBackRounds: 3000,
  startPairs: 60,
  throughputReps: 4,
  throughputWindowMs: 2000,
  throughputWarmupMs: 300,
  concurrencies: [1, 16, 64],
  runcParallel: 2,
  scaleSizes: [10, 1000, 10_000],
  scaleRounds: 2000,
  scaleRuncRounds: 100,
  listReps: 10,
  listRuncReps: 3,
  warmupRounds: 300,
  jitWarmupMs: 2000,
  watchDirs: 10_000,
  watchLive: 1000,
  watchKills: 6,
  watchRounds: 3000,
  watchIdleMs: 5000,
  watchStreams: 200,
  watchBatch: 1024,
  watchSettleMs: 5000,
};

/** Real containers per status in the main root, State calls rotate over them. */
const REAL_PER_STATUS = 4;
/** Real (running) containers in each scale root. */
const REAL_PER_SCALE_ROOT = 3;
/**
 * How long the scale servers are left without a call before their idle RSS is
 * read, in ms: past the server's own collection 1 s after a burst
 * (src/server/heap-release.ts) and V8's memory reducer, which shrinks the young
 * generation ~8-10 s after a full collection once allocation has slowed.
 */
const SCALE_IDLE_MS = 12_000;
/** Default JSON output (bench/results/ is git-ignored). */
const DEFAULT_OUT = fileURLToPath(new URL("../../bench/results/latest.json", import.meta.url));

const SECTION_TITLES: Record<number, string> = {
  0: "floor: grpc.health.v1.Health/Check (service \"\"), same socket, same client",
  1: "State latency: shim State vs `runc state` (spawned by the same client); back-to-back rows: rounds of floor and State only",
  2: "Start latency: shim Start vs `runc start`, fresh created containers",
  3: "throughput (closed loop; runc column: `runc state`, 2 processes in parallel); CPU: server's per call (runc's own for runc)",
  4: "scale: container dirs in the root (fresh server per size; State on a running container; floor and State back-to-back, runc in its own rounds)",
  5: "Watch on a large root (a fresh server; State and floor back-to-back on live containers, with no watch then with a watch-all open)",
};

function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);
}
const T0 = performance.now();

/** Everything that must be undone: containers, servers, the worker, temp dirs. */
const registry = new ContainerRegistry();
const servers = new Set<ServerHandle>();
const tempDirs = new Set<string>();
/** Live fake containers of section 5 (sleep processes in cgroup dirs made for them). */
const lives = new Set<LiveCgroups>();
let worker: Worker | undefined;
let cleaning: Promise<void> | undefined;

/** Stops the worker and the servers (by pid), deletes the containers (`runc delete -f`), removes the temp dirs. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await worker?.exit(2000).catch(() => worker?.kill());
    await Promise.all([...servers].map((s) => s.stop(3000).catch(() => undefined)));
    servers.clear();
    for (const l of lives) await l.cleanup();
    lives.clear();
    const n = registry.size;
    const failed = await registry.deleteAll(4);
    if (n > 0) log(`deleted ${n - failed} containers${failed > 0 ? `, ${failed} could not be deleted` : ""}`);
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
    tempDirs.clear();
  })();
  return cleaning;
}

/** The last resort when the process exits without cleanup() having finished. */
function cleanupSync(): void {
  worker?.kill();
  for (const s of servers) {
    try {
      process.kill(s.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const l of lives) l.cleanupSync();
  registry.deleteAllSync();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}

let interrupted = false;
function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    log(`${signal} again: still cleaning up, please wait`);
    return;
  }
  interrupted = true;
  log(`${signal}: stopping, deleting the containers`);
  void cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
}

function parseArgs(argv: string[]): { config: BenchConfig; out: string; tmp: string; onlyWatch: boolean } {
  let config = FULL;
  let out = DEFAULT_OUT;
  let tmp = defaultTempBase();
  let onlyWatch = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") config = QUICK;
    else if (a === "--only-watch") onlyWatch = true;
    else if (a === "--out") out = path.resolve(argv[++i] ?? "");
    else if (a === "--tmp") tmp = path.resolve(argv[++i] ?? "");
    else if (a === "--help" || a === "-h") {
      process.stdout.write("usage: node dist/bench/bench.js [--quick] [--only-watch] [--out FILE] [--tmp DIR]\n");
      process.exit(0);
    } else {
      process.stderr.write(`bench: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return { config, out, tmp, onlyWatch };
}

/** Calls per second of the summed windows. */
function rate(rs: ThroughputResult[]): number {
  const calls = rs.reduce((a, r) => a + r.calls, 0);
  const s = rs.reduce((a, r) => a + r.seconds, 0);
  return calls / s;
}

/** Brings a server's JIT to a steady state: State, then the floor, at 16 in flight (see {@link BenchConfig.jitWarmupMs}). */
async function jitWarmup(w: Worker, conn: string, ids: string[], ms: number): Promise<void> {
  await w.request({ op: "throughput", conn, kind: "shim", ids, concurrency: 16, warmupMs: 0, durationMs: ms });
  await w.request({ op: "throughput", conn, kind: "floor", ids, concurrency: 16, warmupMs: 0, durationMs: ms / 2 });
}

function merge(into: RoundsResult, from: RoundsResult): void {
  for (const [k, v] of Object.entries(from)) (into[k] ??= []).push(...v);
}

async function main(): Promise<number> {
  const { config, out, tmp, onlyWatch } = parseArgs(process.argv.slice(2));
  const why = runcUnavailable();
  if (why !== undefined) {
    process.stderr.write(`bench: ${why}\n`);
    return 1;
  }
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", cleanupSync);
  const startedAt = new Date();
  log(`mode ${config.mode}; server runs with --log-level warn (at info it logs one line per call)`);

  // ---- Setup: containers, created ahead of every measurement.
  const loadAtStart = os.loadavg()[0]!;
  const dir = fs.mkdtempSync(path.join(tmp, "runc-shim-bench-"));
  tempDirs.add(dir);
  const root = path.join(dir, "root");
  fs.mkdirSync(root, { mode: 0o700 });
  const bundle = makeBundle(path.join(dir, "bundle"));
  const fx = { dir, root, bundle };
  if (onlyWatch) return watchOnly(config, fx, out);
  const created = Array.from({ length: REAL_PER_STATUS }, () => uniqueId("bc"));
  const running = Array.from({ length: REAL_PER_STATUS }, () => uniqueId("br"));
  const startShim = Array.from({ length: config.startPairs }, () => uniqueId("bs"));
  const startRunc = Array.from({ length: config.startPairs }, () => uniqueId("bu"));
  const startDirect = Array.from({ length: config.startPairs }, () => uniqueId("bd"));
  const scaleRoots = config.scaleSizes.map((size) => {
    const r = path.join(fx.dir, `root-${size}`);
    fs.mkdirSync(r, { mode: 0o700 });
    return { size, root: r, real: Array.from({ length: REAL_PER_SCALE_ROOT }, () => uniqueId(`bz${size}`)) };
  });
  const jobs = [
    ...[...created, ...running, ...startShim, ...startRunc, ...startDirect].map((id) => ({ root, id })),
    ...scaleRoots.flatMap((s) => s.real.map((id) => ({ root: s.root, id }))),
  ];
  log(`creating ${jobs.length} busybox containers with runc under ${fx.dir}`);
  await pool(jobs, 3, ({ root: r, id }) => registry.create(r, fx.bundle, id, fx.dir));
  const toStart = [...running.map((id) => ({ root, id })), ...scaleRoots.flatMap((s) => s.real.map((id) => ({ root: s.root, id })))];
  await pool(toStart, 3, async ({ root: r, id }) => {
    const res = await runcAsync(r, ["start", id]);
    if (res.code !== 0) throw new Error(`runc start ${id}: ${res.stderr.trim()}`);
  });
  const tFill = performance.now();
  const copies = new Map<number, string[]>();
  for (const s of scaleRoots) {
    const template = s.real[0]!;
    copies.set(s.size, fillWithCopies(s.root, path.join(s.root, template, "state.json"), template, s.size, `copy${s.size}`));
    const n = fs.readdirSync(s.root).length;
    if (n !== s.size) throw new Error(`${s.root} holds ${n} dirs, expected ${s.size}`);
  }
  log(`filled the scale roots (${config.scaleSizes.map(sizeLabel).join(", ")} dirs) in ${((performance.now() - tFill) / 1000).toFixed(1)} s`);

  // ---- The main server and the client worker.
  const main = await launchServer({ root, socket: path.join(fx.dir, "main.sock") });
  servers.add(main);
  // A second server on the same root at the default log level (info: one JSON line per call).
  const info = await launchServer({ root, socket: path.join(fx.dir, "info.sock"), logLevel: "info" });
  servers.add(info);
  await new Promise((r) => setTimeout(r, 1000)); // start-up done (the cache warm-up of this small root, runc --version)
  const startRss = rssMiB(info.pid);
  // Quiet for 1 s after start-up, the server has given back what start-up left (src/server/heap-release.ts).
  await new Promise((r) => setTimeout(r, 1500));
  const idleRss = rssMiB(info.pid);
  worker = new Worker();
  await worker.request({ op: "connect", name: "main", socket: main.socket });
  await worker.request({ op: "connect", name: "info", socket: info.socket });
  log(`server pid ${main.pid} (--log-level warn), ${info.pid} (info), client worker pid ${worker.pid}`);

  const probesMain: Probe[] = [
    { key: "floor", kind: "floor", conn: "main" },
    { key: "shim.created", kind: "shim", conn: "main", ids: created, expect: "created" },
    { key: "runc.created", kind: "runc", root, ids: created, expect: "created" },
    { key: "shim.running", kind: "shim", conn: "main", ids: running, expect: "running" },
    { key: "runc.running", kind: "runc", root, ids: running, expect: "running" },
  ];
  const noRunc = (ps: Probe[]): Probe[] => ps.filter((p) => p.kind !== "runc");

  // ---- Sections 0 and 1.
  log("warm-up");
  await jitWarmup(worker, "main", [...created, ...running], config.jitWarmupMs);
  await worker.request({ op: "rounds", probes: noRunc(probesMain), rounds: config.warmupRounds, seed: 1 });
  await worker.request({ op: "rounds", probes: probesMain, rounds: 10, seed: 2 });
  log(`sections 0-1: ${config.backToBackRounds} rounds back-to-back (floor / State, no runc between)`);
  const probesInfo: Probe[] = [
    { key: "floor.info", kind: "floor", conn: "info" },
    { key: "shim.info", kind: "shim", conn: "info", ids: running, expect: "running" },
  ];
  await worker.request({ op: "rounds", probes: probesInfo, rounds: config.warmupRounds, seed: 3 });
  const b2b = await worker.request({ op: "rounds", probes: [...noRunc(probesMain), ...probesInfo], rounds: config.backToBackRounds, seed: 41 });
  log(`sections 0-1: ${config.latencyRounds} rounds of floor / State / runc state, created and running`);
  const lat = await worker.request({ op: "rounds", probes: probesMain, rounds: config.latencyRounds, seed: 42 });

  // ---- Section 2.
  log(`section 2: ${config.startPairs} Start pairs`);
  const start = await worker.request({ op: "start", conn: "main", root, shimIds: startShim, runcIds: startRunc, directIds: startDirect });

  // ---- Section 3.
  const tput: Record<string, ThroughputResult[]> = {};
  /**
   * CPU ms spent and calls completed (warm-up included), by window kind: the
   * server's for `shim.N`/`floor.N`, the client worker's for `client.shim.N`/`client.floor.N`, runc's for `runc`.
   */
  const cpu: Record<string, { ms: number; calls: number }> = {};
  const addCpu = (key: string, before: number | undefined, after: number | undefined, calls: number): void => {
    if (before === undefined || after === undefined) return;
    const c = (cpu[key] ??= { ms: 0, calls: 0 });
    c.ms += after - before;
    c.calls += calls;
  };
  const ids = [...created, ...running];
  log(`section 3: throughput, ${config.throughputReps} alternations of ${config.throughputWindowMs} ms windows`);
  for (let rep = 0; rep < config.throughputReps; rep++) {
    for (const [ci, c] of config.concurrencies.entries()) {
      const kinds: Array<"shim" | "floor"> = (rep + ci) % 2 === 0 ? ["shim", "floor"] : ["floor", "shim"];
      for (const kind of kinds) {
        const before = cpuTimes(main.pid)?.selfMs;
        const beforeClient = cpuTimes(worker.pid)?.selfMs;
        const r = await worker.request({
          op: "throughput",
          conn: "main",
          kind,
          ids,
          concurrency: c,
          warmupMs: config.throughputWarmupMs,
          durationMs: config.throughputWindowMs,
        });
        (tput[`${kind}.${c}`] ??= []).push(r);
        addCpu(`${kind}.${c}`, before, cpuTimes(main.pid)?.selfMs, r.totalCalls);
        addCpu(`client.${kind}.${c}`, beforeClient, cpuTimes(worker.pid)?.selfMs, r.totalCalls);
      }
    }
    const before = cpuTimes(worker.pid)?.childrenMs;
    const r = await worker.request({
      op: "runcThroughput",
      root,
      ids,
      parallel: config.runcParallel,
      warmupMs: config.throughputWarmupMs,
      durationMs: config.throughputWindowMs,
    });
    (tput.runc ??= []).push(r);
    addCpu("runc", before, cpuTimes(worker.pid)?.childrenMs, r.totalCalls);
  }
  await worker.request({ op: "close", name: "main" });
  await main.stop();
  servers.delete(main);
  const mainStderr = main.stderr().trim();

  // ---- Section 4: a fresh server per size, all running; rounds alternate between them.
  log(`section 4: servers on ${config.scaleSizes.map(sizeLabel).join(", ")} container dirs`);
  const scaleServers = new Map<number, ServerHandle>();
  const rssAtLaunch = new Map<number, number>();
  const rssAfterTouch = new Map<number, number>();
  for (const s of scaleRoots) {
    const srv = await launchServer({ root: s.root, socket: path.join(fx.dir, `scale-${s.size}.sock`) });
    servers.add(srv);
    scaleServers.set(s.size, srv);
    await worker.request({ op: "connect", name: `scale${s.size}`, socket: srv.socket });
    rssAtLaunch.set(s.size, rssMiB(srv.pid));
  }
  const touched = new Map<number, { ok: number; errors: number; statuses: Record<string, number> }>();
  for (const s of scaleRoots) {
    await jitWarmup(worker, `scale${s.size}`, s.real, config.jitWarmupMs);
    const all = [...s.real, ...(copies.get(s.size) ?? [])];
    const t = await worker.request({ op: "touch", conn: `scale${s.size}`, ids: all, concurrency: 64 });
    if (t.errors > 0) throw new Error(`State failed for ${t.errors} of the ${all.length} containers in ${s.root}`);
    touched.set(s.size, t);
    rssAfterTouch.set(s.size, rssMiB(scaleServers.get(s.size)!.pid));
  }
  log(`every dir State'd once (the servers' state.json caches hold them all); ${config.scaleRounds} rounds, then ${config.scaleRuncRounds} of runc`);
  const probesScale: Probe[] = scaleRoots.flatMap((s) => [
    { key: `floor.${s.size}`, kind: "floor" as const, conn: `scale${s.size}` },
    { key: `shim.${s.size}`, kind: "shim" as const, conn: `scale${s.size}`, ids: s.real, expect: "running" as const },
  ]);
  const runcScale: Probe[] = scaleRoots.map((s) => ({ key: `runc.${s.size}`, kind: "runc" as const, root: s.root, ids: s.real, expect: "running" as const }));
  await worker.request({ op: "rounds", probes: probesScale, rounds: config.warmupRounds, seed: 3 });
  const scale: RoundsResult = {};
  merge(scale, await worker.request({ op: "rounds", probes: probesScale, rounds: config.scaleRounds, seed: 43 }));
  const lastScaleCall = performance.now();
  merge(scale, await worker.request({ op: "rounds", probes: runcScale, rounds: config.scaleRuncRounds, seed: 44 }));
  const rss = new Map(config.scaleSizes.map((size) => [size, rssMiB(scaleServers.get(size)!.pid)]));
  // The same servers once idle: no call for SCALE_IDLE_MS (V8's memory reducer has run by then, see bench/README.md).
  await new Promise((r) => setTimeout(r, Math.max(0, SCALE_IDLE_MS - (performance.now() - lastScaleCall))));
  const rssIdle = new Map(config.scaleSizes.map((size) => [size, rssMiB(scaleServers.get(size)!.pid)]));
  log(`List: ${config.listReps} shim calls and ${config.listRuncReps} runc list per size`);
  const lists = new Map<number, { shim: number[]; runc: number[] }>();
  for (const s of scaleRoots) {
    lists.set(
      s.size,
      (await worker.request({ op: "list", conn: `scale${s.size}`, root: s.root, reps: config.listReps, runcReps: config.listRuncReps, expect: s.size })) as {
        shim: number[];
        runc: number[];
      },
    );
  }
  const scaleStderr = [...scaleServers.values()].map((s) => s.stderr().trim()).filter(Boolean);
  for (const s of scaleRoots) await worker.request({ op: "close", name: `scale${s.size}` });
  await Promise.all([...scaleServers.values()].map(async (s) => {
    await s.stop();
    servers.delete(s);
  }));

  // ---- Section 5.
  const watch: WatchSectionResult = await watchSection({ config, worker, registry, servers, lives, dir: fx.dir, bundle: fx.bundle, log });

  // ---- Done measuring: clean up before printing.
  log("cleaning up");
  await cleanup();

  // ---- The table.
  const S = (k: string, from: RoundsResult): Summary => summarize(from[k] ?? []);
  const floorAll = summarize([...(lat.floor ?? [])]);
  const floorB2b = S("floor", b2b);
  const b2bRows: Row[] = [];
  for (const p of ["p50", "p99"] as const) {
    b2bRows.push(latencyRow(1, `b2b.floor.${p}`, `floor latency ${p} back-to-back`, "µs", null, null, floorB2b[p], `floor ${floorB2b.n}`));
  }
  for (const status of ["created", "running"] as const) {
    const sh = S(`shim.${status}`, b2b);
    for (const p of ["p50", "p99"] as const) {
      b2bRows.push(latencyRow(1, `b2b.${status}.${p}`, `State latency ${status} ${p} back-to-back`, "µs", sh[p], null, floorB2b[p], `shim ${sh.n} / floor ${floorB2b.n}`));
    }
  }
  {
    const fi = S("floor.info", b2b);
    const si = S("shim.info", b2b);
    for (const p of ["p50", "p99"] as const) {
      b2bRows.push(latencyRow(1, `b2b.info.${p}`, `State running ${p} back-to-back, log info`, "µs", si[p], null, fi[p], `shim ${si.n} / floor ${fi.n} (server at --log-level info)`));
    }
  }
  const startShimMs = summarize(start.shim);
  const startRuncMs = summarize(start.runc);
  const startDirectMs = summarize(start.direct);
  // The round trip while the init process finishes its exec: a Start answers at that moment.
  const startFloorAfterMs = summarize(start.floorAfterDirect);
  const startDirectPlusFloorMs = summarize(start.direct.map((d, i) => d + (start.floorAfterDirect[i] ?? Number.NaN)));
  const floorMs: Summary = { ...floorAll, p50: floorAll.p50 / 1000, p90: floorAll.p90 / 1000, p99: floorAll.p99 / 1000 };
  const rows: Row[] = [
    ...percentileRows(0, "floor", "floor Health/Check latency", "µs", null, null, floorAll),
    ...percentileRows(1, "state.created", "State latency created", "µs", S("shim.created", lat), S("runc.created", lat), floorAll),
    ...percentileRows(1, "state.running", "State latency running", "µs", S("shim.running", lat), S("runc.running", lat), floorAll),
    ...b2bRows,
    ...percentileRows(2, "start", "Start latency", "ms", startShimMs, startRuncMs, floorMs),
    ...percentileRows(2, "start.direct", "direct handshake (client process)", "ms", startDirectMs, null, null),
    ...percentileRows(2, "start.floorAfterDirect", "floor right after a direct handshake", "ms", startFloorAfterMs, null, null),
    ...percentileRows(2, "start.directPlusFloor", "direct handshake + that floor call", "ms", startDirectPlusFloorMs, null, null),
  ];
  const runcRate = rate(tput.runc ?? []);
  const cpuPerCall = (key: string): number | null => {
    const c = cpu[key];
    return c === undefined || c.calls === 0 ? null : (1000 * c.ms) / c.calls;
  };
  const windowS = (config.throughputReps * config.throughputWindowMs) / 1000;
  for (const c of config.concurrencies) {
    rows.push(
      throughputRow(3, `throughput.${c}`, `State throughput ${c} in flight`, rate(tput[`shim.${c}`] ?? []), runcRate, rate(tput[`floor.${c}`] ?? []), `${windowS} s each`),
    );
  }
  {
    const cMax = Math.max(...config.concurrencies);
    const n = cpu[`shim.${cMax}`]?.calls ?? 0;
    rows.push(
      latencyRow(3, `cpu.${cMax}`, `CPU per call ${cMax} in flight`, "µs", cpuPerCall(`shim.${cMax}`), cpuPerCall("runc"), cpuPerCall(`floor.${cMax}`), `shim ${n} / runc ${cpu.runc?.calls ?? 0} / floor ${cpu[`floor.${cMax}`]?.calls ?? 0} calls`),
    );
  }
  for (const size of config.scaleSizes) {
    const sh = S(`shim.${size}`, scale);
    rows.push(
      latencyRow(4, `scale.${size}.p50`, `State p50 at ${sizeLabel(size)} containers`, "µs", sh.p50, S(`runc.${size}`, scale).p50, S(`floor.${size}`, scale).p50, `shim ${sh.n} / runc ${S(`runc.${size}`, scale).n} / floor ${S(`floor.${size}`, scale).n}`),
    );
  }
  for (const size of config.scaleSizes) {
    const l = lists.get(size)!;
    const sh = summarize(l.shim);
    const rc = summarize(l.runc);
    rows.push(latencyRow(4, `list.${size}.p50`, `List p50 at ${sizeLabel(size)} containers`, "ms", sh.p50, rc.p50, null, `shim ${sh.n} / runc list ${rc.n}`));
  }
  for (const size of config.scaleSizes) {
    rows.push(shimOnlyRow(4, `scale.${size}.rss`, `server RSS at ${sizeLabel(size)} containers`, "MiB", rss.get(size)!, "VmRSS right after the rounds"));
    rows.push(shimOnlyRow(4, `scale.${size}.rss.idle`, `server RSS at ${sizeLabel(size)} containers, idle`, "MiB", rssIdle.get(size)!, `VmRSS ${SCALE_IDLE_MS / 1000} s after the last State`));
    if (size === config.scaleSizes[0]) {
      rows.push(shimOnlyRow(4, "start.rss", "server RSS 1 s after start, no call", "MiB", startRss, "VmRSS"));
      rows.push(shimOnlyRow(4, "idle.rss", "server RSS idle, 2.5 s after start, no call", "MiB", idleRss, "VmRSS"));
    }
  }

  rows.push(...watch.rows);

  // ---- Targets.
  const row = (key: string): Row => rows.find((r) => r.key === key)!;
  const x = (v: number | null): string => (v === null ? "n/a" : `${v.toFixed(v >= 10 ? 1 : 2)}×`);
  const targets: TargetResult[] = [];
  {
    const c = row("state.created.p50").runcOverShim;
    const r = row("state.running.p50").runcOverShim;
    targets.push({ name: "State p50 ≥10× faster than runc state", pass: (c ?? 0) >= 10 && (r ?? 0) >= 10, detail: `created ${x(c)}, running ${x(r)}` });
  }
  {
    const c = row("b2b.created.p50").shimOverFloor;
    const r = row("b2b.running.p50").shimOverFloor;
    const i = row("b2b.info.p50").shimOverFloor;
    targets.push({
      name: "State back-to-back p50 ≤1.15× the floor (warn; info shown)",
      pass: c !== null && r !== null && c <= 1.15 && r <= 1.15,
      detail: `created ${x(c)}, running ${x(r)}; at --log-level info ${x(i)}`,
    });
  }
  {
    const c = row("state.created.p50").shimOverFloor;
    const r = row("state.running.p50").shimOverFloor;
    targets.push({
      name: "State p50 ≤1.25× the floor",
      pass: c !== null && r !== null && c <= 1.25 && r <= 1.25,
      detail: `created ${x(c)}, running ${x(r)} (floor p50 ${floorAll.p50.toFixed(1)} µs)`,
    });
  }
  {
    const s = row("start.p50").runcOverShim;
    targets.push({ name: "Start p50 ≥5× faster than runc start", pass: (s ?? 0) >= 5, detail: `${x(s)} (shim ${startShimMs.p50.toFixed(2)} ms, runc ${startRuncMs.p50.toFixed(2)} ms)` });
    const bound = startDirectMs.p50 + 1.25 * floorMs.p50;
    targets.push({
      name: "Start p50 ≤ direct handshake p50 + 1.25 × floor p50",
      pass: startShimMs.p50 <= bound,
      detail: `${startShimMs.p50.toFixed(2)} ms vs ${bound.toFixed(2)} ms (direct ${startDirectMs.p50.toFixed(2)} ms, floor ${floorMs.p50.toFixed(3)} ms; a floor call right after a direct handshake takes ${startFloorAfterMs.p50.toFixed(2)} ms, direct + it ${startDirectPlusFloorMs.p50.toFixed(2)} ms)`,
    });
  }
  {
    const cMax = Math.max(...config.concurrencies);
    const r = row(`throughput.${cMax}`);
    const pct = r.shim !== null && r.floor !== null ? (100 * r.shim) / r.floor : Number.NaN;
    targets.push({
      name: `State throughput at ${cMax} in flight ≥80% of floor throughput at ${cMax}`,
      pass: pct >= 80,
      detail: `${pct.toFixed(1)}% (${Math.round(r.shim ?? 0)} vs ${Math.round(r.floor ?? 0)} calls/s)`,
    });
  }
  {
    const base = row(`scale.${config.scaleSizes[0]}.p50`).shim!;
    const devs = config.scaleSizes.map((size) => ({ size, dev: (row(`scale.${size}.p50`).shim! / base - 1) * 100 }));
    const worst = Math.max(...devs.map((d) => Math.abs(d.dev)));
    const first = sizeLabel(config.scaleSizes[0]!);
    const last = sizeLabel(config.scaleSizes.at(-1)!);
    targets.push({
      name: `State p50 within ±10% from ${first} to ${last} containers`,
      pass: worst <= 10,
      detail: devs.map((d) => `${sizeLabel(d.size)}: ${d.dev >= 0 ? "+" : ""}${d.dev.toFixed(1)}%`).join(", ") + ` (vs ${first})`,
    });
  }
  {
    const size = config.scaleSizes.at(-1)!;
    const m = rss.get(size)!;
    targets.push({ name: `RSS < 100 MiB at ${sizeLabel(size)} containers`, pass: m < 100, detail: `${m.toFixed(1)} MiB` });
  }
  {
    const cMax = Math.max(...config.concurrencies);
    const r = row(`throughput.${cMax}`);
    const pct = r.shim !== null && r.floor !== null ? (100 * r.shim) / r.floor : Number.NaN;
    targets.push({ name: `State throughput at ${cMax} in flight ≥85% of the floor's`, pass: pct >= 85, detail: `${pct.toFixed(1)}%` });
    const c = row(`cpu.${cMax}`).shimOverFloor;
    targets.push({ name: `server CPU per State ≤1.3× the floor's (${cMax} in flight)`, pass: c !== null && c <= 1.3, detail: x(c) });
  }
  {
    const size = config.scaleSizes.at(-1)!;
    targets.push({ name: "RSS ≤ 64 MiB idle", pass: idleRss <= 64, detail: `${idleRss.toFixed(1)} MiB` });
    const idle = rssIdle.get(size)!;
    targets.push({ name: `RSS ≤ 80 MiB at ${sizeLabel(size)} containers, idle`, pass: idle <= 80, detail: `${idle.toFixed(1)} MiB ${SCALE_IDLE_MS / 1000} s after the last State (${rss.get(size)!.toFixed(1)} right after the rounds)` });
  }
  {
    const size = config.scaleSizes.at(-1)!;
    const ms = summarize(lists.get(size)!.shim).p50;
    targets.push({ name: `List of ${sizeLabel(size)} containers under 1 s`, pass: ms < 1000, detail: `p50 ${ms.toFixed(0)} ms` });
  }

  targets.push(...watch.targets);

  const elapsedS = (performance.now() - T0) / 1000;
  const loadAtEnd = os.loadavg()[0]!;
  const runcVersion = spawnSync("runc", ["--version"], { encoding: "utf8" }).stdout.split("\n")[0] ?? "";
  const meta = {
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    elapsedSeconds: Math.round(elapsedS * 10) / 10,
    node: process.version,
    runc: runcVersion,
    cpu: os.cpus()[0]?.model ?? "",
    cores: os.cpus().length,
    serverLogLevel: "warn",
    stateRootFs: `${tmp} (${fsTypeOf(tmp)})`,
    tempDir: dir,
    tempDirRemoved: !fs.existsSync(dir),
    loadAverage1m: { atStart: loadAtStart, atEnd: loadAtEnd },
    floorCall: 'grpc.health.v1.Health/Check { service: "" }',
    scaleServers: "a fresh server per size, all running during section 4; rounds alternate between them",
    scaleStateCalls: `State on the ${REAL_PER_SCALE_ROOT} real running containers of each root, after every dir was State'd once; floor and State in rounds across the three servers with no runc between (as the back-to-back rows), runc state in rounds of its own`,
    realContainers: { mainRoot: jobs.length - scaleRoots.length * REAL_PER_SCALE_ROOT, perScaleRoot: REAL_PER_SCALE_ROOT },
    config,
    notes: [
      "latency: each round calls every probe once in a seeded shuffled order; figures are nearest-rank percentiles",
      "ratios compare time per call: runc÷shim > 1 = shim faster; shim÷floor 1.00 = as cheap as the floor call",
      "throughput rows: time per call = 1/throughput, so runc÷shim = shim calls/s ÷ runc calls/s, shim÷floor = floor calls/s ÷ shim calls/s",
    ],
  };
  const summaries = {
    floor: floorAll,
    backToBack: { floor: floorB2b, created: S("shim.created", b2b), running: S("shim.running", b2b) },
    cpuPerCallUs: Object.fromEntries(Object.keys(cpu).map((k) => [k, { ...cpu[k], usPerCall: cpuPerCall(k) }])),
    stateCreated: { shim: S("shim.created", lat), runc: S("runc.created", lat) },
    stateRunning: { shim: S("shim.running", lat), runc: S("runc.running", lat) },
    startMs: { shim: startShimMs, runc: startRuncMs, direct: startDirectMs, floorAfterDirect: startFloorAfterMs, directPlusFloor: startDirectPlusFloorMs },
    throughput: Object.fromEntries(Object.entries(tput).map(([k, v]) => [k, { callsPerSecond: rate(v), windows: v }])),
    watch: watch.summary,
    scale: Object.fromEntries(
      config.scaleSizes.map((size) => [
        size,
        {
          shim: S(`shim.${size}`, scale),
          runc: S(`runc.${size}`, scale),
          floor: S(`floor.${size}`, scale),
          rssMiB: { atLaunch: rssAtLaunch.get(size), afterTouchingEveryDir: rssAfterTouch.get(size), afterRounds: rss.get(size), idle: rssIdle.get(size) },
          touched: touched.get(size),
        },
      ]),
    ),
  };

  const table = renderTable(rows, SECTION_TITLES);
  const lines = [
    "",
    `runc-shim benchmark (${config.mode}${config.mode === "quick" ? ", --quick" : ""}): node ${process.version}, ${runcVersion}, ${meta.cores} × ${meta.cpu}`,
    "server: node dist/src/main.js serve --log-level warn (one process); client: a separate worker process; runc spawned by that client",
    `state roots under ${meta.stateRootFs}; 1-min load average ${loadAtStart.toFixed(2)} at start, ${loadAtEnd.toFixed(2)} at end`,
    ...(Math.max(loadAtStart, loadAtEnd) > 0.5 * meta.cores
      ? ["WARNING: other processes were using the CPU (load average above half the cores): the figures are disturbed"]
      : []),
    "",
    table,
    "",
    "ratios compare time per call: runc÷shim > 1 = the shim is faster; shim÷floor 1.00 = as cheap as the floor call.",
    "throughput rows: time per call = 1 / throughput (runc÷shim = shim ÷ runc calls/s; shim÷floor = floor ÷ shim calls/s).",
    "back-to-back rows: no runc process runs between the calls (a hot server); the other latency rows interleave runc, as in real use the server idles between calls.",
    "CPU per call: the server's user+system CPU time over the State (floor) windows ÷ calls; runc: CPU of the runc processes ÷ calls.",
    `scale: ${meta.scaleServers}; ${meta.scaleStateCalls}.`,
    "",
    "targets:",
    renderTargets(targets),
    "",
    `ran ${elapsedS.toFixed(1)} s; JSON: ${out}`,
  ];
  const tputErrors = Object.values(tput)
    .flat()
    .reduce((a, r) => a + r.errors, 0);
  if (tputErrors > 0) lines.push(`WARNING: ${tputErrors} calls failed during the throughput windows (not counted)`);
  for (const [what, err] of [["main server", mainStderr], ...scaleStderr.map((e) => ["scale server", e]), ["watch server", watch.stderr]] as Array<[string, string]>) {
    if (err !== "") lines.push(`${what} stderr (warn and above):\n${err}`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ meta, rows, targets, summaries }, null, 2)}\n`);
  return 0;
}

/**
 * `--only-watch`: section 5 alone (no containers of sections 0-4 are made),
 * printing its rows and targets; for iterating on Watch. Its JSON goes to
 * `out` as the full run's does, with only section 5 in it.
 */
async function watchOnly(config: BenchConfig, fx: { dir: string; bundle: string }, out: string): Promise<number> {
  worker = new Worker();
  const watch = await watchSection({ config, worker, registry, servers, lives, dir: fx.dir, bundle: fx.bundle, log });
  log("cleaning up");
  await cleanup();
  const lines = [
    "",
    `runc-shim benchmark, section 5 only (${config.mode}): node ${process.version}, ${os.cpus().length} cores; 1-min load average ${os.loadavg()[0]!.toFixed(2)} at end`,
    "",
    renderTable(watch.rows, SECTION_TITLES),
    "",
    "targets:",
    renderTargets(watch.targets),
  ];
  if (watch.stderr !== "") lines.push(`watch server stderr (warn and above):\n${watch.stderr}`);
  process.stdout.write(`${lines.join("\n")}\n`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ meta: { mode: config.mode, onlyWatch: true, config }, rows: watch.rows, targets: watch.targets, summaries: { watch: watch.summary } }, null, 2)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (e: unknown) => {
    if (interrupted) return; // the signal handler cleans up and exits
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    await cleanup().catch(() => undefined);
    process.exitCode = 1;
  },
);
