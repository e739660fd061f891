/**
 * The V8 heap flags `serve` runs with, set by the program itself
 * (`v8.setFlagsFromString`) so that they hold however it is started: the
 * installed `runc-shim` binary, `node dist/src/main.js serve`, `npx runc-shim
 * serve`, `npm start` or the systemd unit in `deploy/` — no `NODE_OPTIONS`,
 * no re-exec, no shebang arguments. `main.ts` applies them before any module
 * of the CLI is loaded (loading grpc-js and the rest allocates enough to
 * grow V8's young generation), and `serve` applies them again (idempotent)
 * for a server started in-process.
 *
 * This module imports nothing but Node built-ins.
 */
import v8 from "node:v8";

/**
 * The flags, with why (measured on this repository's benchmark machine, Node
 * 20.20 / V8 11.3, with a heap statistics probe in the server):
 *
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial
 *   size (two 1 MiB semi-spaces) instead of doubling up to 16 MiB each. A young
 *   generation grown to its default holds ~40 MiB of RSS for nothing. Set here,
 *   before the modules load, it stays at 2 MiB; set after them (as `serve` did
 *   before), their allocations had already grown it to 8 MiB, resident even
 *   when idle (`npm run bench -- --quick`: idle RSS 74 → 66 MiB).
 *
 * Not set, measured: `--optimize-for-size` keeps the old generation at ~30 MiB
 * with 10,000 containers cached (RSS 82 instead of ~140 MiB) but nearly
 * doubles the server's CPU per State at 64 in flight (~190 → ~330 µs, the
 * same load alternated with and without it); `--lite-mode` costs the
 * optimizing compiler.
 */
export const SERVE_V8_FLAGS = ["--semi-space-growth-factor=1"] as const;

let applied = false;

/** Sets {@link SERVE_V8_FLAGS} in this process (once; later calls do nothing). */
export function applyServeHeapFlags(): void {
  if (applied) return;
  applied = true;
  for (const flag of SERVE_V8_FLAGS) v8.setFlagsFromString(flag);
}
