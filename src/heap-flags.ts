/**
 * The V8 heap flags the program runs with, set by the program itself
 * (`v8.setFlagsFromString`) so that they hold however it is started: the
 * installed `runc-shim` binary, `node dist/src/main.js serve`, `npx runc-shim
 * serve`, `npm start` or the systemd unit in `deploy/` — no `NODE_OPTIONS`, no
 * re-exec, no shebang arguments.
 *
 * This module imports nothing but Node built-ins.
 */
import v8 from "node:v8";
import { PerformanceObserver } from "node:perf_hooks";

/**
 * Most a semi-space of the young generation grows to under load in `serve`,
 * in bytes (4 MiB; V8's own bound is 16 MiB).
 */
export const SERVE_SEMI_SPACE_CAP_BYTES = 4 << 20;

/**
 * The flags, with why (measured on the benchmark machine, Node 20.20 / V8
 * 11.3, with a heap statistics probe in the server and `npm run bench`):
 *
 * - `--semi-space-growth-factor=1` before any module loads ({@link holdYoungGeneration},
 *   first thing in `main.ts`): the young generation keeps V8's initial size
 *   (two 1 MiB semi-spaces) through start-up. Loading the modules used to grow
 *   it to two 4 MiB semi-spaces that an idle server then held (idle RSS
 *   ~70 MiB; 60 MiB only once V8's memory reducer had run, ~10 s after start).
 * - In `serve`, once started ({@link capYoungGeneration}): the young
 *   generation may grow again under load, up to {@link SERVE_SEMI_SPACE_CAP_BYTES}
 *   per semi-space and no further: the growth factor is 2 while a semi-space
 *   is under the cap and 1 once it is there (looked at after each collection).
 *   Under a State load a young generation held at 1 MiB made every call's
 *   objects outlive more scavenges and be promoted (CPU per State at 64 in
 *   flight +7 %, 205 vs 192 µs, median of 5 alternated runs; the bench's 200
 *   Watch streams peaked at 308 instead of 209 MiB), and one grown to V8's
 *   16 MiB held ~40 MiB of RSS for nothing with 10,000 containers cached. Once
 *   the server is quiet, its heap release gives it back (a scavenge 5.5 s
 *   after a burst, `server/heap-release.ts`): V8 shrinks it only at a
 *   collection that finds the allocation rate low, and an idle server runs none.
 *
 * Tried and not set, measured:
 * - `--optimize-for-size`: the old generation stays at ~30 MiB with 10,000
 *   containers cached (RSS 82 instead of ~140 MiB) but the CPU per State at 64
 *   in flight nearly doubles (~190 → ~330 µs, alternated runs).
 * - `--heap-growing-percent=40`: RSS 88 instead of 138 MiB with 10,000 cached
 *   under load, CPU per State +28 % (240 vs 188 µs, median of 4 alternated runs).
 * - `--lite-mode` costs the optimizing compiler.
 */
let held = false;

/**
 * Keeps the young generation at its initial size (growth factor 1). Called
 * first thing in `main.ts`, before the CLI's modules load; once per process.
 */
export function holdYoungGeneration(): void {
  if (held) return;
  held = true;
  v8.setFlagsFromString("--semi-space-growth-factor=1");
}

let capped: PerformanceObserver | undefined;
let growing: boolean | undefined;

/**
 * The capacity of one semi-space of the young generation now, in bytes: what
 * V8's heap statistics give as the new space's used plus available size (its
 * `space_size` is the memory committed, one or both semi-spaces). A little under
 * 1, 2, 4... MiB: page headers are not counted.
 */
export function semiSpaceBytes(): number {
  for (const s of v8.getHeapSpaceStatistics()) if (s.space_name === "new_space") return s.space_used_size + s.space_available_size;
  return 0;
}

/** Growth factor 2 while a semi-space is under the cap, 1 once it is there. */
function adjustGrowth(): void {
  // Three quarters of the cap: the capacities are powers of two less their page headers.
  const grow = semiSpaceBytes() < (SERVE_SEMI_SPACE_CAP_BYTES * 3) / 4;
  if (grow === growing) return;
  growing = grow;
  v8.setFlagsFromString(`--semi-space-growth-factor=${grow ? 2 : 1}`);
}

/**
 * Lets the young generation grow under load up to {@link SERVE_SEMI_SPACE_CAP_BYTES}
 * per semi-space (see the flags above), looking at its size after each
 * garbage collection (a `gc` PerformanceObserver, which holds no handle).
 * Called by `serve` once its modules are loaded; once per process; {@link releaseYoungGenerationCap} undoes it.
 */
export function capYoungGeneration(): void {
  if (capped !== undefined) return;
  adjustGrowth();
  capped = new PerformanceObserver(adjustGrowth);
  capped.observe({ entryTypes: ["gc"] });
}

/** Stops looking after the young generation's size (for tests). */
export function releaseYoungGenerationCap(): void {
  capped?.disconnect();
  capped = undefined;
}
