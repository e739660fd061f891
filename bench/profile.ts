/**
 * Where the server's time goes under a State load:
 *
 *   node dist/bench/profile.js [--seconds 10] [--concurrency 64] [--dir /tmp/prof] [--top 25] [--kind shim|floor]
 *   node dist/bench/profile.js --cpu [--seconds 10] [--concurrency 64] [--log-level warn]
 *
 * `--cpu` runs no profiler: it alternates State and floor windows of 1 s on one
 * server for `--seconds` each and prints the server's CPU time per call
 * (utime + stime from /proc) and the calls per second of each, for quick A/B
 * comparisons of a change (the benchmark's section 3 in a few seconds).
 *
 * Creates busybox containers with runc under a temporary state root (2 created,
 * 2 running), runs the server as
 * `node --cpu-prof --cpu-prof-dir=DIR dist/src/main.js serve ... --log-level warn`,
 * drives State at `--concurrency` calls in flight from the client worker (a
 * separate process) for `--seconds`, stops the server with SIGTERM (the profile
 * is written at exit), prints the self time per category and the top functions,
 * writes the summary to bench/results/profile.json, and deletes everything
 * (also on SIGINT/SIGTERM). The .cpuprofile file stays in DIR for DevTools.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runcUnavailable } from "../scripts/lib/runc.js";
import { inclusive, summarizeProfile, type CpuProfile } from "./lib/cpuprofile.js";
import { Owned, arg } from "./lib/owned.js";
import { cpuTimes, launchServer } from "./lib/server.js";
import { Worker } from "./lib/worker-client.js";

const OUT = fileURLToPath(new URL("../../bench/results/profile.json", import.meta.url));

const owned = new Owned();

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const seconds = Number(arg(argv, "--seconds", "10"));
  const concurrency = Number(arg(argv, "--concurrency", "64"));
  // The server's log level (warn by default: at info it logs one line per call, to a pipe read here).
  const logLevel = arg(argv, "--log-level", "warn");
  const profDir = path.resolve(arg(argv, "--dir", "/tmp/prof"));
  const top = Number(arg(argv, "--top", "25"));
  // `floor` profiles the floor call (Health/Check) under the same load, to compare per-call costs.
  const kind = arg(argv, "--kind", "shim") === "floor" ? "floor" : "shim";
  const why = runcUnavailable();
  if (why !== undefined) {
    process.stderr.write(`profile: ${why}\n`);
    return 1;
  }
  owned.install();

  const { tempDir, root, created, running } = await owned.makeContainers("prof");

  if (argv.includes("--cpu")) {
    const server = await launchServer({ root, socket: path.join(tempDir, "s.sock"), logLevel });
    owned.servers.push(server);
    const worker = new Worker();
    owned.worker = worker;
    await worker.request({ op: "connect", name: "p", socket: server.socket });
    const ids = [...created, ...running];
    const totals = { shim: { ms: 0, calls: 0, s: 0 }, floor: { ms: 0, calls: 0, s: 0 } };
    for (const k of ["shim", "floor"] as const) await worker.request({ op: "throughput", conn: "p", kind: k, ids, concurrency, warmupMs: 0, durationMs: 1000 });
    for (let i = 0; i < seconds; i++) {
      for (const k of i % 2 === 0 ? (["shim", "floor"] as const) : (["floor", "shim"] as const)) {
        const before = cpuTimes(server.pid)?.selfMs ?? Number.NaN;
        const r = await worker.request({ op: "throughput", conn: "p", kind: k, ids, concurrency, warmupMs: 0, durationMs: 1000 });
        totals[k].ms += (cpuTimes(server.pid)?.selfMs ?? Number.NaN) - before;
        totals[k].calls += r.calls;
        totals[k].s += r.seconds;
      }
    }
    await owned.cleanup();
    const per = (k: "shim" | "floor"): number => (1000 * totals[k].ms) / totals[k].calls;
    process.stdout.write(
      `server CPU per call at ${concurrency} in flight, --log-level ${logLevel} (${seconds} × 1 s windows each): State ${per("shim").toFixed(1)} µs, floor ${per("floor").toFixed(1)} µs, ratio ${(per("shim") / per("floor")).toFixed(2)}×\n` +
        `throughput: State ${Math.round(totals.shim.calls / totals.shim.s)}/s, floor ${Math.round(totals.floor.calls / totals.floor.s)}/s, ${((100 * totals.shim.calls * totals.floor.s) / (totals.floor.calls * totals.shim.s)).toFixed(1)} %\n`,
    );
    return 0;
  }
  fs.mkdirSync(profDir, { recursive: true });
  const server = await launchServer({ root, socket: path.join(tempDir, "s.sock"), logLevel, nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profDir}`] });
  owned.servers.push(server);
  const pid = server.pid;
  const worker = new Worker();
  owned.worker = worker;
  await worker.request({ op: "connect", name: "p", socket: server.socket });
  const ids = [...created, ...running];
  process.stderr.write(`profile: server pid ${pid} under --cpu-prof; State at ${concurrency} in flight for ${seconds} s\n`);
  await worker.request({ op: "throughput", conn: "p", kind, ids, concurrency, warmupMs: 0, durationMs: 1000 });
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const load = await worker.request({ op: "throughput", conn: "p", kind, ids, concurrency, warmupMs: 0, durationMs: seconds * 1000 });
  const toUs = Number(process.hrtime.bigint() / 1000n);
  await worker.request({ op: "close", name: "p" });
  const code = await server.stop(10_000);
  const file = fs
    .readdirSync(profDir)
    .filter((f) => f.endsWith(".cpuprofile") && f.includes(`.${pid}.`))
    .map((f) => path.join(profDir, f))[0];
  if (file === undefined) throw new Error(`server (exit ${code}) wrote no .cpuprofile for pid ${pid} in ${profDir}`);
  await owned.cleanup();

  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  if (profile.startTime > fromUs || profile.endTime < toUs) {
    throw new Error(`the profile (${profile.startTime}..${profile.endTime} µs) does not cover the load (${fromUs}..${toUs} µs of CLOCK_MONOTONIC)`);
  }
  const summary = summarizeProfile(profile, { fromUs, toUs });
  const rate = load.calls / load.seconds;
  const ms = (v: number): string => v.toFixed(0).padStart(7);
  const pct = (v: number): string => `${((100 * v) / summary.busyMs).toFixed(1).padStart(5)}%`;
  const lines: string[] = [
    `profile: ${file}`,
    `load: ${kind === "shim" ? "State" : "floor (Health/Check)"} at ${concurrency} in flight, ${Math.round(rate)} calls/s under the profiler (${load.calls} calls in ${load.seconds} s, ${load.errors} errors)`,
    `samples inside the ${seconds} s load window only (start-up, warm-up and shutdown excluded): server busy ${summary.busyMs.toFixed(0)} ms of ${summary.sampledMs.toFixed(0)} ms`,
    `server busy time per call: ${((1000 * summary.busyMs) / Math.max(1, load.calls)).toFixed(1)} µs`,
    "",
    "self time by category (% of busy):",
    ...summary.categories.map((c) => `${ms(c.selfMs)} ms ${pct(c.selfMs)}  ${c.category}`),
    "",
    `top ${top} functions by self time:`,
    ...summary.functions
      .filter((f) => f.category !== "idle")
      .slice(0, top)
      .map((f) => `${ms(f.selfMs)} ms ${pct(f.selfMs)}  ${f.fn}  [${f.category}]`),
    "",
    "callers (nearest frame outside node's own modules) of the top self-time functions:",
    ...summary.callers.flatMap((c) => [
      `${ms(c.selfMs)} ms  ${c.fn}`,
      ...c.callers.slice(0, 4).map((k) => `            ${ms(k.ms)} ms  <- ${k.fn}`),
    ]),
    "",
    "inclusive time of our code and the logger (% of busy):",
    ...inclusive(summary, /\/src\/(runtime|server)\/|pino|(^|\s)child /)
      .slice(0, top)
      .map((f) => `${ms(f.totalMs)} ms ${pct(f.totalMs)}  ${f.fn}`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, `${JSON.stringify({ file, window: { fromUs, toUs }, concurrency, seconds, load, callsPerSecond: rate, ...summary, functions: summary.functions.slice(0, 200) }, null, 2)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (e: unknown) => {
    process.stderr.write(`profile failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    await owned.cleanup().catch(() => undefined);
    process.exitCode = 1;
  },
);
