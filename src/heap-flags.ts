/**
 * The V8 heap flags `serve` runs with, set by the program itself
 * (`v8.setFlagsFromString`, from `serve`) so that they hold however it is
 * started: the installed `runc-shim` binary, `node dist/src/main.js serve`,
 * `npx runc-shim serve`, `npm start` or the systemd unit in `deploy/` — no
 * `NODE_OPTIONS`, no re-exec, no shebang arguments.
 *
 * This module imports nothing but Node built-ins.
 */
import v8 from "node:v8";

/**
 * The flags, with why (measured on the benchmark machine, Node 20.20 / V8
 * 11.3, with a heap statistics probe in the server and `npm run bench -- --quick`):
 *
 * - `--semi-space-growth-factor=1`, set once the modules are loaded: the young
 *   generation keeps the size start-up gave it (two 4 MiB semi-spaces) instead
 *   of doubling up to 16 MiB each under load, which holds ~40 MiB of RSS for
 *   nothing with 10,000 containers cached.
 *
 * Tried and not set, measured:
 * - the same flag set before the modules load (first thing in `main.ts`):
 *   the young generation stays at 2 × 1 MiB, idle RSS −6 MiB, but every State
 *   call's objects outlive more scavenges and are promoted to the old
 *   generation: CPU per State at 64 in flight +7 % (median of 5 alternated
 *   runs: 205 vs 192 µs) and the bench's 200 watch-all streams peak at 308
 *   instead of 209 MiB (the 300 MiB target).
 * - `--optimize-for-size`: the old generation stays at ~30 MiB with 10,000
 *   containers cached (RSS 82 instead of ~140 MiB) but the CPU per State at 64
 *   in flight nearly doubles (~190 → ~330 µs, alternated runs).
 * - `--heap-growing-percent=40`: RSS 88 instead of 138 MiB with 10,000 cached
 *   under load, CPU per State +28 % (240 vs 188 µs, median of 4 alternated runs).
 * - `--lite-mode` costs the optimizing compiler.
 */
export const SERVE_V8_FLAGS = ["--semi-space-growth-factor=1"] as const;

let applied = false;

/** Sets {@link SERVE_V8_FLAGS} in this process (once; later calls do nothing). */
export function applyServeHeapFlags(): void {
  if (applied) return;
  applied = true;
  for (const flag of SERVE_V8_FLAGS) v8.setFlagsFromString(flag);
}
