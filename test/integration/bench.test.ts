/**
 * `npm run bench -- --quick` end to end (no speed thresholds): it exits 0,
 * prints every row of the table and the targets, writes every row as JSON, and
 * leaves no temporary state root behind.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { skipRunc } from "../helpers/runc.js";

const BENCH = fileURLToPath(new URL("../../dist/bench/bench.js", import.meta.url));

const ROWS = [
  "floor Health/Check latency p50",
  "floor Health/Check latency p90",
  "floor Health/Check latency p99",
  "State latency created p50",
  "State latency created p90",
  "State latency created p99",
  "State latency running p50",
  "State latency running p90",
  "State latency running p99",
  "floor latency p50 back-to-back",
  "floor latency p99 back-to-back",
  "State latency created p50 back-to-back",
  "State latency created p99 back-to-back",
  "State latency running p50 back-to-back",
  "State latency running p99 back-to-back",
  "State running p50 back-to-back, log info",
  "State running p99 back-to-back, log info",
  "Start latency p50",
  "Start latency p90",
  "Start latency p99",
  "direct handshake (client process) p50",
  "direct handshake (client process) p90",
  "direct handshake (client process) p99",
  "floor right after a direct handshake p50",
  "floor right after a direct handshake p90",
  "floor right after a direct handshake p99",
  "direct handshake + that floor call p50",
  "direct handshake + that floor call p90",
  "direct handshake + that floor call p99",
  "State throughput 1 in flight",
  "State throughput 16 in flight",
  "State throughput 64 in flight",
  "CPU per call 64 in flight",
  "State p50 at 10 containers",
  "State p50 at 1,000 containers",
  "State p50 at 10,000 containers",
  "List p50 at 10 containers",
  "List p50 at 1,000 containers",
  "List p50 at 10,000 containers",
  "server RSS at 10 containers",
  "server RSS at 10 containers, idle",
  "server RSS 1 s after start, no call",
  "server RSS idle, 2.5 s after start, no call",
  "server RSS at 1,000 containers",
  "server RSS at 1,000 containers, idle",
  "server RSS at 10,000 containers",
  "server RSS at 10,000 containers, idle",
];

/** Section 5 (Watch on a large root), with how many figures each row has (shim and floor, or shim alone). */
const WATCH_ROWS: Array<[string, number]> = [
  ["State p50, no watch", 2],
  ["State p99, no watch", 2],
  ["State p50, a watch-all open", 2],
  ["State p99, a watch-all open", 2],
  ["event-loop delay p99, watch open", 1],
  ["server CPU, watch open, idle", 1],
  ["first watch-all synced", 1],
  ["runc kill seen by the watch, max", 1],
  ["200 watch-alls synced (last)", 1],
  ["200 watch-alls synced, max_batch 1024 (last)", 1],
  ["server RSS before the 200", 1],
  ["server RSS, 200 open (peak)", 1],
  ["server RSS after they ended", 1],
];
const WATCH_FIGURES = new Map(WATCH_ROWS);

interface BenchJson {
  meta: { mode: string; serverLogLevel: string; tempDir: string };
  rows: Array<{ label: string; unit: string; shim: number | null; runc: number | null; floor: number | null }>;
  targets: Array<{ name: string; pass: boolean; detail: string }>;
}

function run(args: string[], timeoutMs: number): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BENCH, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    // SIGTERM lets the benchmark delete its containers before it exits.
    const timer = setTimeout(() => p.pid !== undefined && process.kill(p.pid, "SIGTERM"), timeoutMs);
    p.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stdout, stderr });
    });
  });
}

describe.skipIf(skipRunc())("npm run bench -- --quick", () => {
  it("exits 0, prints every row and the targets, and writes every row as JSON", async () => {
    expect(fs.existsSync(BENCH), `${BENCH} is missing: npm test builds it`).toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-bench-test-"));
    const out = path.join(dir, "bench.json");
    try {
      const r = await run(["--quick", "--out", out], 150_000);
      expect(r.code, r.stderr).toBe(0);
      for (const label of [...ROWS, ...WATCH_FIGURES.keys()]) expect(r.stdout).toContain(label);
      expect(r.stdout.match(/^(PASS|FAIL) {2}/gm)).toHaveLength(20);

      const json = JSON.parse(fs.readFileSync(out, "utf8")) as BenchJson;
      expect(json.meta).toMatchObject({ mode: "quick", serverLogLevel: "warn" });
      expect(json.rows.map((row) => row.label)).toEqual([...ROWS, ...WATCH_FIGURES.keys()]);
      for (const row of json.rows) {
        const figures = [row.shim, row.runc, row.floor].filter((v): v is number => v !== null);
        const single = row.label.startsWith("floor") || row.label.startsWith("server RSS") || row.label.startsWith("direct handshake");
        const noRunc = row.label.includes("back-to-back") && !single;
        const noFloor = row.label.startsWith("List"); // List vs `runc list`: no floor call compares
        expect(figures, row.label).toHaveLength(WATCH_FIGURES.get(row.label) ?? (single ? 1 : noRunc || noFloor ? 2 : 3));
        for (const v of figures) {
          expect(Number.isFinite(v), row.label).toBe(true);
          expect(v, row.label).toBeGreaterThan(0);
        }
      }
      expect(json.targets).toHaveLength(20);
      for (const t of json.targets) expect(typeof t.pass).toBe("boolean");
      // Everything it made is gone: the temporary dir held every state root.
      expect(fs.existsSync(json.meta.tempDir)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 170_000);
});
