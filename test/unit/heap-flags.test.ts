import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SERVE_SEMI_SPACE_CAP_BYTES } from "../../src/heap-flags.js";

const HEAP_FLAGS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/src/heap-flags.js");

/**
 * Runs a fresh node process (V8's heap flags are the process's) that holds the
 * young generation, allocates objects that survive scavenges, then caps it and
 * does the same again; returns the semi-space capacities it saw, in bytes.
 */
function youngGenerationSizes(): { initial: number; held: number; capped: number } {
  const script = `
    const hf = await import(${JSON.stringify(HEAP_FLAGS)});
    hf.holdYoungGeneration();
    const initial = hf.semiSpaceBytes();
    // Survivors: each batch lives across a few scavenges before it is dropped.
    const churn = async () => { let keep = []; for (let i = 0; i < 300; i++) { keep.push(Array.from({ length: 2000 }, (_, j) => ({ j }))); if (keep.length > 8) keep.shift(); if (i % 20 === 0) await new Promise((r) => setImmediate(r)); } };
    await churn();
    const held = hf.semiSpaceBytes();
    hf.capYoungGeneration();
    await churn(); await churn();
    const capped = hf.semiSpaceBytes();
    hf.releaseYoungGenerationCap();
    process.stdout.write(JSON.stringify({ initial, held, capped }));
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`node exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { initial: number; held: number; capped: number };
}

describe("the young generation's size (heap-flags.ts)", () => {
  it("is held at V8's initial size until serve caps it; then grows under load to the cap and no further", () => {
    const { initial, held, capped } = youngGenerationSizes();
    // V8's initial semi-space on 64-bit: 1 MiB (less its page headers).
    expect(initial).toBeGreaterThan(0.9 * (1 << 20));
    expect(initial).toBeLessThanOrEqual(1 << 20);
    expect(held).toBe(initial);
    // Grown 1 → 2 → 4 MiB and held there, not to V8's 16 MiB.
    expect(capped).toBeGreaterThan(0.9 * SERVE_SEMI_SPACE_CAP_BYTES);
    expect(capped).toBeLessThanOrEqual(SERVE_SEMI_SPACE_CAP_BYTES);
  });

  it("is given back by the server's heap release once quiet for 5.5 s after a burst", () => {
    const releaser = path.resolve(path.dirname(HEAP_FLAGS), "server/heap-release.js");
    const script = `
      const hf = await import(${JSON.stringify(HEAP_FLAGS)});
      const { HeapReleaser } = await import(${JSON.stringify(releaser)});
      hf.holdYoungGeneration();
      hf.capYoungGeneration();
      let keep = []; for (let i = 0; i < 900; i++) { keep.push(Array.from({ length: 2000 }, (_, j) => ({ j }))); if (keep.length > 8) keep.shift(); if (i % 20 === 0) await new Promise((r) => setImmediate(r)); }
      keep = [];
      const grown = hf.semiSpaceBytes();
      const shrinks = [];
      const r = new HeapReleaser({ quietMs: 10, minGrowthBytes: 2 ** 40, onYoungShrink: (x) => shrinks.push(x) });
      r.callBegan(); r.callEnded(); // a burst of one call ended
      // The scavenge 5.5 s after the check, and once more 5.5 s later if V8 kept the young generation.
      for (let t = 0; t < 13_000 && !(shrinks.length > 0 && shrinks.at(-1).semiSpaceAfter <= 1 << 20); t += 100) await new Promise((res) => setTimeout(res, 100));
      r.close(); hf.releaseYoungGenerationCap();
      process.stdout.write(JSON.stringify({ grown, shrinks, after: hf.semiSpaceBytes() }));
    `;
    const res = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 35_000 });
    if (res.status !== 0) throw new Error(`node exited ${res.status}: ${res.stderr}`);
    const out = JSON.parse(res.stdout) as { grown: number; shrinks: Array<{ semiSpaceBefore: number; semiSpaceAfter: number }>; after: number };
    expect(out.grown).toBeGreaterThan(0.9 * SERVE_SEMI_SPACE_CAP_BYTES);
    expect(out.shrinks[0]!.semiSpaceBefore).toBe(out.grown);
    // Given back at the first try: its second scavenge shrinks where the first only reset V8's
    // count of bytes survived since the last growth (a single scavenge kept it at times, measured).
    expect(out.shrinks).toHaveLength(1);
    expect(out.shrinks[0]!.semiSpaceAfter).toBeLessThanOrEqual(1 << 20);
    expect(out.after).toBeLessThanOrEqual(1 << 20);
  }, 40_000);
});

