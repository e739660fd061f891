/**
 * The parent side of the client worker: forks `client-worker.js` and sends it
 * one request at a time.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { RoundsResult, StartResult, ThroughputResult, TouchResult, WatchOpenResult, WorkerCommand, WorkerReply, WorkerRequest } from "./protocol.js";

/** The built worker (`dist/bench/client-worker.js`). */
export const WORKER = fileURLToPath(new URL("../client-worker.js", import.meta.url));

/** A forked client worker. */
export class Worker {
  /** The worker's pid. */
  readonly pid: number;
  private readonly proc: ChildProcess;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exitError: Error | undefined;

  constructor() {
    // RUNC_SHIM_BENCH_WORKER_NODE_ARGS: node flags for the worker (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"), for profiling the client.
    const execArgv = (process.env.RUNC_SHIM_BENCH_WORKER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
    this.proc = fork(WORKER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv });
    if (this.proc.pid === undefined) throw new Error("could not fork the client worker");
    this.pid = this.proc.pid;
    this.proc.on("message", (m: WorkerReply) => {
      const p = this.pending.get(m.seq);
      if (p === undefined) return;
      this.pending.delete(m.seq);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`client worker: ${m.error}`));
    });
    this.proc.once("exit", (code, signal) => {
      this.exitError = new Error(`client worker exited (${code ?? signal})`);
      for (const p of this.pending.values()) p.reject(this.exitError);
      this.pending.clear();
    });
  }

  /** Sends one request and resolves with its result. */
  request(cmd: Extract<WorkerCommand, { op: "rounds" }>): Promise<RoundsResult>;
  request(cmd: Extract<WorkerCommand, { op: "start" }>): Promise<StartResult>;
  request(cmd: Extract<WorkerCommand, { op: "throughput" | "runcThroughput" }>): Promise<ThroughputResult>;
  request(cmd: Extract<WorkerCommand, { op: "touch" }>): Promise<TouchResult>;
  request(cmd: Extract<WorkerCommand, { op: "watchOpen" }>): Promise<WatchOpenResult>;
  request(cmd: Extract<WorkerCommand, { op: "watchKill" }>): Promise<{ ms: number[]; runcMs: number[] }>;
  request(cmd: WorkerCommand): Promise<unknown>;
  request(cmd: WorkerCommand): Promise<unknown> {
    if (this.exitError !== undefined) return Promise.reject(this.exitError);
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.proc.send({ ...cmd, seq } as WorkerRequest);
    });
  }

  /** Asks the worker to close its channels and exit; kills it (SIGKILL) if it has not after `graceMs` ms. */
  async exit(graceMs = 3000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.proc.once("exit", () => r()));
    this.request({ op: "exit" }).catch(() => undefined);
    const timer = setTimeout(() => this.kill(), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Kills the worker by pid (SIGKILL); nothing when it is gone. */
  kill(): void {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
