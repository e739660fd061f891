/**
 * StateRoot.start when the caller gives up while the init process has opened
 * its end of the exec fifo but not written (stopped right there): the init is
 * not killed, later Starts wait for that one handshake instead of opening more
 * readers, and the late byte completes the start. A shell plays the init.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { startContainer } from "../../src/runtime/ops/start.js";
import { parseProcStat, readProcStat } from "../../src/runtime/proc.js";
import { tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";

const tmp = tempRoot("rs-detached-");
const pids: number[] = [];
afterAll(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  tmp.cleanup();
});

const fds = () => fs.readdirSync("/proc/self/fd").length;
const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
};
const abortAfter = (ms: number) => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(new RuntimeError("DeadlineExceeded", "deadline exceeded")), ms);
  return ac.signal;
};

describe("a Start given up on while the init holds the exec fifo open", () => {
  it("keeps the init alive, lets later Starts wait for the same handshake, and completes on the late byte", async () => {
    const id = "c-detached";
    const dir = path.join(tmp.root, id);
    fs.mkdirSync(dir);
    const fifo = path.join(dir, "exec.fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const init = spawn("sh", ["-c", 'exec 3>"$F"; kill -STOP $$; printf 0 >&3; exec 3>&-; exec sleep 30'], {
      env: { ...process.env, F: fifo },
      stdio: "ignore",
    });
    pids.push(init.pid!);
    await until(() => readProcStat(init.pid!) !== undefined, "the init to start");
    const startTime = readProcStat(init.pid!)!.startTime;
    writeFakeContainer(tmp.root, id, { pid: init.pid!, startTime, proc: init, kill: async () => {} }, { created: false });
    const root = new StateRoot(tmp.root, "v1");
    expect(root.state(id).status).toBe("created");
    const baseline = fds();

    let late: unknown;
    const first = await startContainer(root, id, { signal: abortAfter(300), onDetachedEnd: (r) => (late = r) }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(RuntimeError);
    expect((first as RuntimeError).kind).toBe("DeadlineExceeded");
    expect((first as RuntimeError).message).toMatch(/may still complete/);
    // Read without holding an fd (readProcStat holds one), so that the fd counts below see only the handshake's.
    expect(parseProcStat(fs.readFileSync(`/proc/${init.pid}/stat`, "latin1"))?.state).toBe("T"); // stopped between its open and its write, not killed
    expect(fs.statSync(fifo).isFIFO()).toBe(true);
    expect(root.state(id).status).toBe("created");
    expect(fds()).toBe(baseline + 1);

    const second = await startContainer(root, id, { signal: abortAfter(200) }).catch((e: unknown) => e);
    expect((second as RuntimeError).kind).toBe("DeadlineExceeded");
    expect(fds()).toBe(baseline + 1); // waited for the pending handshake: no second reader

    process.kill(init.pid!, "SIGCONT");
    await until(() => late !== undefined, "the late byte");
    expect(late).toBe("exec");
    expect(fs.existsSync(fifo)).toBe(false);
    expect(root.state(id)).toMatchObject({ status: "running", pid: init.pid });
    await until(() => fds() === baseline, "the reader to close");
    await expect(startContainer(root, id)).rejects.toMatchObject({ kind: "ContainerRunning" });
  });
});

describe("a Start whose deadline comes between the byte and end of file", () => {
  it("answers with the pid at once (the start has happened) and finishes the wait detached", async () => {
    const id = "c-early";
    const dir = path.join(tmp.root, id);
    fs.mkdirSync(dir);
    const fifo = path.join(dir, "exec.fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    // writes its byte at once, then keeps its end open for 1 s (a slow startContainer hook)
    const init = spawn("sh", ["-c", 'exec 3>"$F"; printf 0 >&3; sleep 1; exec 3>&-; exec sleep 30'], { env: { ...process.env, F: fifo }, stdio: "ignore" });
    pids.push(init.pid!);
    await until(() => readProcStat(init.pid!) !== undefined, "the init to start");
    writeFakeContainer(tmp.root, id, { pid: init.pid!, startTime: readProcStat(init.pid!)!.startTime, proc: init, kill: async () => {} }, { created: false });
    const root = new StateRoot(tmp.root, "v1");
    let late: unknown;
    const t0 = performance.now();
    const pid = await startContainer(root, id, { signal: abortAfter(300), onDetachedEnd: (r) => (late = r) });
    expect(pid).toBe(init.pid);
    expect(performance.now() - t0).toBeLessThan(800);
    expect(fs.existsSync(fifo)).toBe(false);
    await until(() => late !== undefined, "end of file");
    expect(late).toBe("exec");
  });
});
