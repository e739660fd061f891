/**
 * A server process whose stderr is a pipe that nobody reads until the test
 * says so: a FIFO whose read end the test holds open (non-blocking) and reads
 * only on demand, so the server sees a full pipe after 64 KiB.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { healthClient } from "./health.js";
import { MAIN } from "./server.js";

/** A server writing its stderr into a pipe the test reads only when asked. */
export interface StuckServer {
  proc: ChildProcess;
  pid: number;
  socket: string;
  /** Resolves with the exit code (or signal name) when the process exits. */
  exited: Promise<number | string>;
  /** Reads what is in the pipe right now (never blocks); the text read so far is kept in `text()`. */
  drain(): string;
  /** Everything read from the pipe so far. */
  text(): string;
  /** SIGKILLs the process if still running, closes the read end and removes the temp dir. */
  cleanup(): Promise<void>;
}

/** Resolves with `p`, or rejects after `ms` with `what`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))),
  ]);
}

/**
 * Spawns `node dist/src/main.js serve --root root --address <tmp> ...extra` with
 * stderr a FIFO the test does not read; waits until health Check answers
 * SERVING (without reading stderr).
 */
export async function startStuckServer(root: string, extra: string[] = []): Promise<StuckServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rsl-"));
  const fifo = path.join(dir, "stderr.fifo");
  const socket = path.join(dir, "shim.sock");
  const mk = spawnSync("mkfifo", [fifo]);
  if (mk.status !== 0) throw new Error(`mkfifo: ${mk.stderr.toString()}`);
  // The read end first (O_NONBLOCK: no writer yet is fine), then the write end for the child.
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(fifo, fs.constants.O_WRONLY);
  const proc = spawn(process.execPath, [MAIN, "serve", "--root", root, "--address", socket, ...extra], {
    stdio: ["ignore", "ignore", wfd],
  });
  fs.closeSync(wfd); // only the child holds the write end now
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  let text = "";
  const buf = Buffer.alloc(1 << 16);
  const decoder = new TextDecoder();
  const drain = (): string => {
    let got = "";
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(rfd, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") break;
        throw e;
      }
      if (n === 0) break; // no writer left
      got += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    text += got;
    return got;
  };
  let closed = false;
  const cleanup = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      process.kill(proc.pid, "SIGKILL");
      await exited;
    }
    if (!closed) fs.closeSync(rfd);
    closed = true;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const health = healthClient(socket);
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}: ${drain()}`);
      if (fs.existsSync(socket)) {
        const status = await within(health.check(""), 2000, "health Check").catch(() => "");
        if (status === "SERVING") break;
      }
      if (Date.now() > deadline) throw new Error("server did not serve in 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await cleanup();
    throw e;
  } finally {
    health.close();
  }
  return { proc, pid: proc.pid!, socket, exited, drain, text: () => text, cleanup };
}
