/**
 * What a metrics scrape costs on a large root, and whether it stalls calls:
 * `node dist/bench/metrics-scrape.js [--containers 10000] [--seconds 10]`.
 *
 * Writes N container dirs on tmpfs (copies of a runc 1.1.5 state.json; half
 * with a live init — this process —, half with a dead one), starts the server
 * on them with `--metrics-address` (a Unix socket), waits for the state.json
 * cache to warm, then runs State calls back to back (1 in flight) for the given
 * time, twice: without scrapes, and with a scrape every 1.1 s (each one past
 * the 1 s reuse, so each counts the whole root). Prints State's latency
 * percentiles in both phases, the scrapes' wall times and the count time the
 * server reports (`runcshim_containers_count_duration_seconds`). No runc needed.
 */
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createShimClient } from "../src/client/client.js";
import { readProcStat } from "../src/runtime/proc.js";
import { launchServer } from "./lib/server.js";

const FIXTURE = fileURLToPath(new URL("../../test/fixtures/runc-1.1.5/state.json", import.meta.url));

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function get(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: "/metrics", agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const fmt = (ms: number): string => `${ms.toFixed(2)} ms`;

async function main(): Promise<void> {
  const n = arg("containers", 10_000);
  const seconds = arg("seconds", 10);
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, "rs-scrape-"));
  const root = path.join(dir, "root");
  fs.mkdirSync(root, { mode: 0o700 });
  const fixture = JSON.parse(fs.readFileSync(FIXTURE, "utf8")) as Record<string, unknown>;
  const me = readProcStat(process.pid);
  if (me === undefined) throw new Error("cannot read /proc/self/stat");
  for (let i = 0; i < n; i++) {
    const id = `c${String(i).padStart(5, "0")}`;
    fs.mkdirSync(path.join(root, id));
    const live = i % 2 === 0;
    const state = { ...fixture, id, init_process_pid: live ? process.pid : 4_194_305, init_process_start: live ? me.startTime : 1 };
    fs.writeFileSync(path.join(root, id, "state.json"), JSON.stringify(state));
  }
  const msock = path.join(dir, "m.sock");
  const server = await launchServer({ root, socket: path.join(dir, "s.sock"), serveArgs: ["--metrics-address", msock] });
  const shim = createShimClient(server.socket);
  try {
    // Warm the cache (the server does it in the background at start-up; a List waits for all of it).
    const tList = performance.now();
    const listed = (await shim.list()).length;
    console.log(`root: ${n} containers (${listed} listed in ${fmt(performance.now() - tList)}), on ${base}`);

    const phase = async (scraping: boolean): Promise<{ lat: number[]; scrapes: number[]; counts: number[] }> => {
      const lat: number[] = [];
      const scrapes: number[] = [];
      const counts: number[] = [];
      let stop = false;
      const scraper = (async () => {
        while (scraping && !stop) {
          const t0 = performance.now();
          const body = await get(msock);
          scrapes.push(performance.now() - t0);
          const m = /^runcshim_containers_count_duration_seconds (\S+)$/m.exec(body); // a report, not a test
          if (m !== null) counts.push(Number(m[1]) * 1000);
          await new Promise((r) => setTimeout(r, 1100));
        }
      })();
      const end = performance.now() + seconds * 1000;
      let i = 0;
      while (performance.now() < end) {
        const id = `c${String((i++ * 7919) % n).padStart(5, "0")}`;
        const t0 = performance.now();
        await shim.state(id);
        lat.push(performance.now() - t0);
      }
      stop = true;
      await scraper;
      return { lat, scrapes, counts };
    };

    const quiet = await phase(false);
    const busy = await phase(true);
    for (const [name, r] of [["without scrapes", quiet], ["scrape every 1.1 s", busy]] as const) {
      console.log(
        `State ${name.padEnd(18)}: ${r.lat.length} calls, p50 ${fmt(pct(r.lat, 50))}, p99 ${fmt(pct(r.lat, 99))}, p99.9 ${fmt(pct(r.lat, 99.9))}, max ${fmt(Math.max(...r.lat))}`,
      );
    }
    console.log(`scrapes: ${busy.scrapes.length}, wall time p50 ${fmt(pct(busy.scrapes, 50))}, max ${fmt(Math.max(...busy.scrapes))}`);
    console.log(`count of the root (server-side, runcshim_containers_count_duration_seconds): p50 ${fmt(pct(busy.counts, 50))}, max ${fmt(Math.max(...busy.counts))}`);
  } finally {
    shim.close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
