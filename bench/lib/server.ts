/**
 * Starts runc-shim servers (`node dist/src/main.js serve`) in their own
 * processes for the benchmark, reads their memory use, and stops them by pid.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

/** The built server entry point (`dist/src/main.js`). */
export const MAIN = fileURLToPath(new URL("../../src/main.js", import.meta.url));

/** A server process started by {@link launchServer}. */
export interface ServerHandle {
  /** The server's pid (the node process itself). */
  pid: number;
  proc: ChildProcess;
  /** Unix socket path it serves on. */
  socket: string;
  /** State root it serves. */
  root: string;
  /** Everything it wrote to stderr so far (nothing below warn, with `--log-level warn`). */
  stderr(): string;
  /** Resolves with the exit code, or the signal name, once it has exited. */
  exited: Promise<number | string>;
  /**
   * SIGTERM (graceful shutdown), then SIGKILL after `graceMs`.
   * @param graceMs ms to wait before SIGKILL
   * @returns the exit code or signal name
   */
  stop(graceMs?: number): Promise<number | string>;
}

/**
 * Spawns `node [nodeArgs] dist/src/main.js serve --root root --address socket
 * --log-level warn` and waits until the socket accepts connections (the
 * listening line is logged at info, so with warn the socket file is watched).
 *
 * @param opts.nodeArgs extra node flags, e.g. `--cpu-prof`
 * @param opts.readyTimeoutMs how long to wait for the socket, in ms
 * @throws Error with the server's stderr when it exits first or the socket does not appear in time
 */
export async function launchServer(opts: {
  root: string;
  socket: string;
  nodeArgs?: string[];
  logLevel?: string;
  readyTimeoutMs?: number;
  /** More `serve` flags, e.g. `--metrics-address`. */
  serveArgs?: string[];
  /** More environment variables for the server, e.g. the loop-delay report of the Watch rows. */
  env?: NodeJS.ProcessEnv;
  /** The server's `main.js`: this build's ({@link MAIN}) by default; another build's for A/B runs (`ab.ts`). */
  main?: string;
}): Promise<ServerHandle> {
  const main = opts.main ?? MAIN;
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first (npm run bench does)`);
  const proc = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), main, "serve", "--root", opts.root, "--address", opts.socket, "--log-level", opts.logLevel ?? "warn", ...(opts.serveArgs ?? [])],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...opts.env } },
  );
  if (proc.pid === undefined) throw new Error("could not spawn the server");
  const pid = proc.pid;
  let err = "";
  proc.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  let gone = false;
  void exited.then(() => (gone = true));
  const t0 = Date.now();
  for (;;) {
    if (gone) throw new Error(`server exited before listening: ${err.trim()}`);
    if (fs.statSync(opts.socket, { throwIfNoEntry: false })?.isSocket()) break;
    if (Date.now() - t0 > (opts.readyTimeoutMs ?? 10_000)) {
      process.kill(pid, "SIGKILL");
      throw new Error(`server did not create ${opts.socket} in time: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const stop = async (graceMs = 5000): Promise<number | string> => {
    if (!gone) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          if (!gone) process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }
    return exited;
  };
  return { pid, proc, socket: opts.socket, root: opts.root, stderr: () => err, exited, stop };
}

/**
 * A process's resident set size (`VmRSS` of `/proc/<pid>/status`).
 *
 * @returns the RSS in MiB, or NaN when the process is gone
 */
export function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time of a process, from `/proc/<pid>/stat`, in ms. */
export interface CpuTimes {
  /** utime + stime of the process itself. */
  selfMs: number;
  /** cutime + cstime: its children that it has waited for (e.g. the `runc` processes the worker spawned). */
  childrenMs: number;
}

/**
 * Reads a process's CPU times (fields 14-17 of `/proc/<pid>/stat`, clock ticks
 * of 10 ms on Linux with USER_HZ 100).
 *
 * @returns the times in ms, or undefined when the process is gone
 */
export function cpuTimes(pid: number): CpuTimes | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state); utime is field 14 -> f[11].
  const tick = 1000 / CLOCK_TICKS_PER_SECOND;
  const n = (i: number): number => Number(f[i] ?? 0) * tick;
  return { selfMs: n(11) + n(12), childrenMs: n(13) + n(14) };
}

/** USER_HZ: the unit of the CPU times in `/proc/<pid>/stat` (100 on every Linux architecture Node supports). */
export const CLOCK_TICKS_PER_SECOND = 100;
