/**
 * Starts a real runc-shim server process (`node dist/src/main.js serve`, built
 * by `npm test`) and stops it by its pid.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The built entry point. */
export const MAIN = fileURLToPath(new URL("../../dist/src/main.js", import.meta.url));

/** A server process under test. */
export interface ServerProcess {
  proc: ChildProcess;
  socket: string;
  /** Everything the server wrote to stderr so far. */
  stderr: () => string;
  /** Resolves with the exit code (or signal name) when the process exits. */
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `ms`; resolves with the exit code. */
  stop: (ms?: number) => Promise<number | string>;
}

const tempDirs = new Set<string>();

/** Removes every temporary socket dir made so far (test/helpers/setup.ts runs it after each test file). */
export function removeTempDirs(): void {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Short socket path in a fresh temp dir (well under the 107-byte limit); the dir is removed when the test process exits. */
export function tempSocketPath(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rss-"));
  if (tempDirs.size === 0) process.once("exit", () => tempDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  tempDirs.add(dir);
  return path.join(dir, "shim.sock");
}

/**
 * Spawns `runc-shim serve --root root --address socket ...extra` and waits for its "listening" log line.
 * Rejects if the process exits first (with its stderr).
 */
export async function startServer(
  root: string,
  extra: string[] = [],
  opts: {
    socket?: string;
    env?: NodeJS.ProcessEnv;
    ready?: RegExp;
    /** Runs the server through another program: gets the server's arguments (after `main.js`), returns [file, args]. */
    wrap?: (args: string[]) => [string, string[]];
  } = {},
): Promise<ServerProcess> {
  const socket = opts.socket ?? tempSocketPath();
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  const serveArgs = ["serve", "--root", root, "--address", socket, ...extra];
  const [file, args] = opts.wrap?.(serveArgs) ?? [process.execPath, [MAIN, ...serveArgs]];
  const proc = spawn(file, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  let err = "";
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (d: string) => (err += d));
  proc.stdout?.resume();
  const exited = new Promise<number | string>((resolve) =>
    proc.once("exit", (code, signal) => {
      // The temporary socket dir made for this server goes with it (vitest's workers may end without "exit").
      const dir = path.dirname(socket);
      if (tempDirs.delete(dir)) fs.rmSync(dir, { recursive: true, force: true });
      resolve(code ?? signal ?? -1);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 10 s: ${err}`)), 10_000);
    const onData = (): void => {
      if ((opts.ready ?? /"msg":"listening"/).test(err)) {
        clearTimeout(timer);
        proc.stderr?.off("data", onData);
        resolve();
      }
    };
    proc.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${err}`));
    });
  });
  const stop = async (ms = 5000): Promise<number | string> => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      process.kill(proc.pid, "SIGTERM");
      const timer = setTimeout(() => proc.pid !== undefined && proc.exitCode === null && process.kill(proc.pid, "SIGKILL"), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }
    return exited;
  };
  return { proc, socket, stderr: () => err, exited, stop };
}

/** Runs `node dist/src/main.js ...args` to completion (at most `timeoutMs`, then SIGKILL); returns its exit code and output. */
export function runMain(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MAIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...opts.env },
      uid: opts.uid,
      gid: opts.gid,
    });
    let stdout = "";
    let stderr = "";
    proc.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => proc.pid !== undefined && process.kill(proc.pid, "SIGKILL"), opts.timeoutMs ?? 15_000);
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stdout, stderr });
    });
  });
}

/**
 * Waits until the server's stderr holds a line matching `pattern` (the server
 * writes the lines of a turn of its event loop together at the end of it, and
 * this process reads its stderr pipe in a turn of its own: a line may not be
 * in `stderr()` yet the moment the call that logs it has answered).
 * @throws Error after `timeoutMs` with the stderr so far
 */
export async function logged(server: Pick<ServerProcess, "stderr">, pattern: RegExp | string, timeoutMs = 2000): Promise<void> {
  const test = (): boolean => (typeof pattern === "string" ? server.stderr().includes(pattern) : pattern.test(server.stderr()));
  const t0 = Date.now();
  while (!test()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`no log line matching ${String(pattern)} within ${timeoutMs} ms; stderr:\n${server.stderr()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until every line the server has logged so far is on its stderr (before a check that a line is absent). */
export function logSettled(): Promise<void> {
  return new Promise((r) => setTimeout(r, 100));
}
