/**
 * The exec fifo handshake against real FIFOs and real writer processes
 * (`sh` playing the init process's part).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RuntimeError } from "../../src/runtime/errors.js";
import { DRAIN_BYTES_PER_TICK, LIVENESS_POLL_MS, execFifoHandshake, type CommitOutcome } from "../../src/runtime/exec-fifo.js";
import { readProcStat } from "../../src/runtime/proc.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rs-fifo-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, "SIGKILL");
  fs.rmSync(tmp, { recursive: true, force: true });
});

let n = 0;
function fifo(): string {
  const p = path.join(tmp, `exec-${++n}.fifo`);
  expect(spawnSync("mkfifo", [p]).status).toBe(0);
  return p;
}

/** A writer process running `script` with $F set to the fifo; resolves its exit once it ends. */
function writer(fifoPath: string, script: string): { proc: ChildProcess; exit: Promise<{ code: number | null; signal: string | null }>; alive: () => boolean } {
  const proc = spawn("sh", ["-c", script], { env: { ...process.env, F: fifoPath }, stdio: "ignore" });
  children.push(proc);
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => proc.once("exit", (code, signal) => r({ code, signal })));
  const alive = () => {
    const st = readProcStat(proc.pid!);
    return st !== undefined && st.state !== "Z" && st.state !== "X";
  };
  return { proc, exit, alive };
}

const waitState = async (pid: number, state: string) => {
  for (let i = 0; i < 300 && readProcStat(pid)?.state !== state; i++) await new Promise((r) => setTimeout(r, 10));
  expect(readProcStat(pid)?.state).toBe(state);
};

describe("exec fifo handshake", () => {
  it("reads the byte, removes the fifo, and waits for end of file (the exec)", async () => {
    const f = fifo();
    const w = writer(f, 'exec 3>"$F"; printf 0 >&3; sleep 0.2; exec 3>&-; sleep 5');
    const t0 = performance.now();
    const outcome = await execFifoHandshake(f, { isInitAlive: w.alive, commitWaitMs: 5000 });
    expect(outcome).toBe("exec");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150); // returned at end of file, not at the byte
    expect(fs.existsSync(f)).toBe(false);
  });

  it("a writer that dies before writing: container process is already dead, fifo left", async () => {
    const f = fifo();
    const w = writer(f, 'sleep 0.1; exec 3>"$F"; exit 0');
    await expect(execFifoHandshake(f, { isInitAlive: w.alive, commitWaitMs: 5000 })).rejects.toMatchObject({
      kind: "ContainerStopped",
      message: "container process is already dead",
    });
    expect(fs.statSync(f).isFIFO()).toBe(true);
  });

  it("no writer and an abort: rejects with the abort reason, fifo left", async () => {
    const f = fifo();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new RuntimeError("DeadlineExceeded", "deadline")), 100);
    await expect(execFifoHandshake(f, { isInitAlive: () => true, signal: ac.signal, commitWaitMs: 1000 })).rejects.toMatchObject({ kind: "DeadlineExceeded" });
    expect(fs.statSync(f).isFIFO()).toBe(true);
  });

  it("an abort while the writer has its end open but has not written: the writer is not killed; its late byte still starts it", async () => {
    const f = fifo();
    // opens its end (released by our reader), then stops itself before writing
    const w = writer(f, 'exec 3>"$F"; kill -STOP $$; printf 0 >&3; exec 3>&-; exit 0');
    const ac = new AbortController();
    let detachedEnd: CommitOutcome | RuntimeError | undefined;
    const p = execFifoHandshake(f, {
      isInitAlive: w.alive,
      signal: ac.signal,
      commitWaitMs: 5000,
      onDetachedEnd: (r) => (detachedEnd = r),
    });
    await waitState(w.proc.pid!, "T");
    ac.abort(new RuntimeError("Cancelled", "cancelled"));
    await expect(p).rejects.toMatchObject({ kind: "Cancelled" });
    expect(fs.statSync(f).isFIFO()).toBe(true); // nothing changed yet
    process.kill(w.proc.pid!, "SIGCONT");
    expect(await w.exit).toEqual({ code: 0, signal: null }); // no SIGPIPE
    for (let i = 0; i < 100 && detachedEnd === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    expect(detachedEnd).toBe("exec");
    expect(fs.existsSync(f)).toBe(false);
  });

  it("a writer that keeps writing after its byte is drained at a bounded rate, not killed, and its close is end of file", async () => {
    const f = fifo();
    // 4 MiB after the byte, then it closes its end and lives on; `|| exit 7` if the write failed (SIGPIPE, EPIPE)
    const w = writer(f, 'exec 3>"$F"; printf 0 >&3; head -c 4194304 /dev/zero >&3 || exit 7; exec 3>&-; exec sleep 5');
    const t0 = performance.now();
    const outcome = await execFifoHandshake(f, { isInitAlive: w.alive, commitWaitMs: 5000 });
    const took = performance.now() - t0;
    expect(outcome).toBe("exec");
    expect(w.alive()).toBe(true);
    // at most DRAIN_BYTES_PER_TICK per LIVENESS_POLL_MS tick: 4 MiB takes 16 ticks at least
    const minTicks = (4 * 1024 * 1024) / DRAIN_BYTES_PER_TICK;
    expect(took).toBeGreaterThanOrEqual((minTicks - 2) * LIVENESS_POLL_MS);
    expect(took).toBeLessThan(3000);
    expect(fs.existsSync(f)).toBe(false);
  });

  it.each([
    ["a directory", (p: string) => fs.mkdirSync(p), /is a directory/],
    ["a regular file", (p: string) => fs.writeFileSync(p, "0"), /regular file, not a FIFO/],
    ["a symlink", (p: string) => fs.symlinkSync("/etc/hostname", p), /symlink/],
  ])("%s at the path: SystemError, path untouched", async (_what, make, message) => {
    const p = path.join(tmp, `other-${++n}`);
    make(p);
    const err = await execFifoHandshake(p, { isInitAlive: () => true, commitWaitMs: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as RuntimeError).kind).toBe("SystemError");
    expect((err as RuntimeError).message).toMatch(message);
    expect(fs.lstatSync(p)).toBeDefined();
  });
});

describe("exec fifo handshake when another reader released the writer first", () => {
  it("still sees end of file although Linux sends no EPOLLHUP to a reader that opened after the writer", async () => {
    const f = fifo();
    const other = writer(f, 'exec 4<"$F"; sleep 3'); // another reader (a racing `runc start`), holding its end without reading
    await new Promise((r) => setTimeout(r, 100));
    const w = writer(f, 'exec 3>"$F"; sleep 0.2; printf 0 >&3; exec 3>&-; sleep 5');
    await new Promise((r) => setTimeout(r, 100)); // the writer is attached before we open
    const t0 = performance.now();
    const outcome = await execFifoHandshake(f, { isInitAlive: w.alive, commitWaitMs: 2500 });
    expect(outcome).toBe("exec");
    expect(performance.now() - t0).toBeLessThan(1000);
    process.kill(other.proc.pid!, "SIGKILL");
  });
});
