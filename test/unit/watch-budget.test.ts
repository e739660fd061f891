/**
 * The watch hub's loops never hold the event loop for long, whatever the
 * number of containers: 20,000 live containers without `cgroup.events` (their
 * status is polled), watched all at once; the poll, the rescan and the
 * re-loading of dirty containers work in slices (BACKGROUND_SLICE_MS for the
 * poll and the rescan).
 */
import fs from "node:fs";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { BACKGROUND_SLICE_MS, WatchHub } from "../../src/runtime/watch.js";
import { spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";

const N = 20_000;

/** Event-loop delay over `ms`, in ms beyond the monitor's 1 ms resolution: p50, p99 and max. */
async function loopDelay(ms: number): Promise<{ p50: number; p99: number; max: number; count: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await new Promise((r) => setTimeout(r, ms));
  h.disable();
  const ms1 = (ns: number): number => Math.max(0, ns / 1e6 - 1);
  return { p50: ms1(h.percentile(50)), p99: ms1(h.percentile(99)), max: ms1(h.max), count: h.count };
}

describe("WatchHub with 20,000 polled containers", () => {
  let fake: ReturnType<typeof tempRoot>;
  let init: FakeInit;

  beforeAll(async () => {
    fake = tempRoot("rs-budget-");
    init = await spawnInit();
    const template = writeFakeContainer(fake.root, "c00000", init, { created: false });
    const state = fs.readFileSync(path.join(template, "state.json"));
    for (let i = 1; i < N; i++) {
      const dir = path.join(fake.root, `c${String(i).padStart(5, "0")}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, "state.json"), state);
    }
  }, 120_000);
  afterAll(async () => {
    await init?.kill();
    fake?.cleanup();
  });

  it("polls and rescans them in slices of at most a couple of ms", { timeout: 120_000 }, async () => {
    const idle = await loopDelay(500);
    // Short intervals: the poll and the rescan run back to back for the whole window.
    const slices: Record<string, number[]> = { poll: [], rescan: [], flush: [] };
    // Turns of the event loop, counted by an immediate that re-arms itself (it runs once a turn);
    // each slice notes the turn it ran in.
    let turn = 0;
    let ticking = true;
    const tick = (): void => {
      turn++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const sliceTurns: number[] = [];
    const hub = new WatchHub(new StateRoot(fake.root, "v1"), {
      pollMs: 10,
      rescanMs: 50,
      onSlice: (loop, ms) => {
        slices[loop]?.push(ms);
        sliceTurns.push(turn);
      },
    });
    const sub = hub.subscribe();
    try {
      let initial = 0;
      for (let ev = sub.take(); ev !== undefined; ev = sub.take()) if (ev.kind === "initial") initial++;
      expect(initial).toBe(N);
      for (const l of Object.values(slices)) l.length = 0;
      sliceTurns.length = 0;
      const busy = await loopDelay(2000);
      // One slice a turn, of the poll or of the rescan in turn, though both have work all along
      // (a slice is noted in the turn before or after the tick's; a repeated turn is a second slice).
      const repeats = sliceTurns.filter((n, i) => i > 0 && n === sliceTurns[i - 1]).length;
      const c = hub.counters;
      const all = Object.values(slices).flat().sort((a, b) => a - b);
      const p99 = all[Math.ceil(all.length * 0.99) - 1] ?? 0;
      const p90 = all[Math.ceil(all.length * 0.9) - 1] ?? 0;
      const over = all.filter((ms) => ms > 3).length;
      console.log(
        `${N} polled containers: ${c.statusPolls} status polls in 2 s; ${all.length} slices (poll ${slices.poll?.length}, rescan ${slices.rescan?.length}, flush ${slices.flush?.length}): ` +
          `${repeats} in a turn that had one; p99 ${p99.toFixed(2)} ms, longest ${c.longestSliceMs.toFixed(2)} ms, ${over} over 3 ms; ` +
          `loop delay p50/p99/max ${busy.p50.toFixed(2)}/${busy.p99.toFixed(2)}/${busy.max.toFixed(2)} ms (idle: ${idle.p50.toFixed(2)}/${idle.p99.toFixed(2)}/${idle.max.toFixed(2)})`,
      );
      expect(c.statusPolled).toBe(N);
      expect((slices.poll ?? []).length).toBeGreaterThan(20);
      expect((slices.rescan ?? []).length).toBeGreaterThan(20);
      expect(repeats).toBeLessThan(all.length * 0.02);
      // More than one full pass happened (a pass of 20,000 takes about 1-2 s here; wait for it rather than time it).
      for (let waited = 0; hub.counters.statusPolls <= N && waited < 15_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
      expect(hub.counters.statusPolls).toBeGreaterThan(N);
      // A slice is the budget plus the one container that crossed it.
      expect(all.length).toBeGreaterThan(100);
      // Slices are timed by the wall clock, so this VM's stalls (4-11 ms even when idle) inflate a
      // few: the p90 of the poll's and the rescan's is held to their budget, and at most 3 % may run past 3 ms.
      const background = [...(slices.poll ?? []), ...(slices.rescan ?? [])].sort((a, b) => a - b);
      const backgroundP90 = background[Math.ceil(background.length * 0.9) - 1] ?? 0;
      console.log(`poll and rescan slices: p90 ${backgroundP90.toFixed(2)} ms (all: p90 ${p90.toFixed(2)} ms)`);
      expect(backgroundP90).toBeLessThan(BACKGROUND_SLICE_MS + 0.5);
      expect(over / all.length).toBeLessThan(0.03);
      // The loop was never held long: issue 11's bound on the event-loop delay p99 (this VM's own
      // stalls, 4-11 ms when idle, weigh on the max, not on the p99).
      expect(busy.p99).toBeLessThan(10);
      // Death of the init is still seen by the poll.
      await init.kill();
      const t0 = performance.now();
      let stopped = 0;
      while (stopped < N && performance.now() - t0 < 20_000) {
        await new Promise((r) => setTimeout(r, 20));
        for (let ev = sub.take(); ev !== undefined; ev = sub.take()) if (ev.entry?.state?.status === "stopped") stopped++;
      }
      expect(stopped).toBe(N);
      console.log(`all ${N} deaths reported within ${(performance.now() - t0).toFixed(0)} ms`);
    } finally {
      ticking = false;
      sub.close();
    }
  });
});
