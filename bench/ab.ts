/**
 * A/B of the server's CPU per State against the floor, for two builds on one state root:
 *
 *   node dist/bench/ab.js --other DIST [--rounds 20] [--concurrency 64]
 *
 * Server A is this build (`dist/src/main.js`), server B another build's
 * (`DIST/src/main.js`, e.g. `/tmp/old/dist` of an older commit checked out
 * and built there), both serving one temporary state root with 2 created and
 * 2 running busybox containers made with runc. Each round both servers take a
 * turn, in alternating order: 400 ms of State load unmeasured (warm-up after
 * its idle pause), then 1 s of State and 1 s of the floor (Health/Check)
 * at `--concurrency` calls in flight, their order alternating every two
 * rounds. The server's user+system CPU time (`/proc/<pid>/stat`) is summed
 * per window kind. Prints, per build, the CPU per State and per floor call,
 * their ratio (and the median of the per-round ratios), and State's
 * throughput as a % of the floor's. Both builds see the same machine drift,
 * which the benchmark's CPU row, from one server at a time, does not cancel.
 *
 * Everything is deleted at the end (also on SIGINT/SIGTERM): containers with
 * `runc delete -f`, servers and the worker stopped by pid, the temporary dir.
 */
import fs from "node:fs";
import path from "node:path";
import { runcUnavailable } from "../scripts/lib/runc.js";
import { Owned, arg } from "./lib/owned.js";
import { cpuTimes, launchServer, type ServerHandle } from "./lib/server.js";
import { Worker } from "./lib/worker-client.js";

const owned = new Owned();

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const other = arg(argv, "--other", "");
  const rounds = Number(arg(argv, "--rounds", "20"));
  const concurrency = Number(arg(argv, "--concurrency", "64"));
  const otherMain = path.resolve(other, "src/main.js");
  if (other === "" || !fs.existsSync(otherMain)) {
    process.stderr.write(`usage: node dist/bench/ab.js --other DIST [--rounds 20] [--concurrency 64]  (DIST/src/main.js must exist${other === "" ? "" : `; ${otherMain} does not`})\n`);
    return 2;
  }
  const why = runcUnavailable();
  if (why !== undefined) {
    process.stderr.write(`ab: ${why}\n`);
    return 1;
  }
  owned.install();

  const { tempDir, root, created, running } = await owned.makeContainers("ab");
  const ids = [...created, ...running];
  const builds = [
    { name: "A (this build)", conn: "a", main: undefined },
    { name: `B (${other})`, conn: "b", main: otherMain },
  ];
  const worker = new Worker();
  owned.worker = worker;
  const handles = new Map<string, ServerHandle>();
  for (const b of builds) {
    const s = await launchServer({ root, socket: path.join(tempDir, `${b.conn}.sock`), main: b.main });
    owned.servers.push(s);
    handles.set(b.conn, s);
    await worker.request({ op: "connect", name: b.conn, socket: s.socket });
    for (const kind of ["shim", "floor"] as const) await worker.request({ op: "throughput", conn: b.conn, kind, ids, concurrency, warmupMs: 0, durationMs: 1500 });
  }
  process.stderr.write(`ab: ${rounds} rounds of 1 s windows at ${concurrency} in flight on each of two servers\n`);
  const totals = new Map<string, { ms: number; cpuCalls: number; calls: number; seconds: number }>();
  const ratios = new Map<string, number[]>(builds.map((b) => [b.conn, []]));
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const pid = handles.get(b.conn)!.pid;
      await worker.request({ op: "throughput", conn: b.conn, kind: "shim", ids, concurrency, warmupMs: 0, durationMs: 400 });
      const perCall: Record<string, number> = {};
      for (const kind of Math.floor(r / 2) % 2 === 0 ? (["shim", "floor"] as const) : (["floor", "shim"] as const)) {
        const before = cpuTimes(pid)?.selfMs ?? Number.NaN;
        const res = await worker.request({ op: "throughput", conn: b.conn, kind, ids, concurrency, warmupMs: 0, durationMs: 1000 });
        const ms = (cpuTimes(pid)?.selfMs ?? Number.NaN) - before;
        const t = totals.get(`${b.conn}.${kind}`) ?? { ms: 0, cpuCalls: 0, calls: 0, seconds: 0 };
        // CPU per call over every call the window completed (as the benchmark's CPU row); throughput over the measured ones.
        totals.set(`${b.conn}.${kind}`, { ms: t.ms + ms, cpuCalls: t.cpuCalls + res.totalCalls, calls: t.calls + res.calls, seconds: t.seconds + res.seconds });
        perCall[kind] = ms / res.totalCalls;
      }
      ratios.get(b.conn)!.push(perCall.shim! / perCall.floor!);
    }
  }
  for (const b of builds) await worker.request({ op: "close", name: b.conn });
  await owned.cleanup();
  for (const b of builds) {
    const st = totals.get(`${b.conn}.shim`)!;
    const fl = totals.get(`${b.conn}.floor`)!;
    const s = (1000 * st.ms) / st.cpuCalls;
    const f = (1000 * fl.ms) / fl.cpuCalls;
    process.stdout.write(
      `${b.name}: server CPU per call State ${s.toFixed(1)} µs, floor ${f.toFixed(1)} µs, ratio ${(s / f).toFixed(2)}× (median of rounds ${median(ratios.get(b.conn)!).toFixed(2)}×); State throughput ${((100 * (st.calls / st.seconds)) / (fl.calls / fl.seconds)).toFixed(1)} % of the floor's\n`,
    );
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (e: unknown) => {
    process.stderr.write(`ab failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    await owned.cleanup().catch(() => undefined);
    process.exitCode = 1;
  },
);
