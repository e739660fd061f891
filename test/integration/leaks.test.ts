/**
 * Issue 3: after 1,000 mixed calls, including every failure kind, the server's
 * fds, libuv handles and timers return to their baseline, and it has no child
 * processes. The server runs in this process (so its handles can be counted),
 * and once more as its own process (fds and children counted from /proc).
 */
import fs from "node:fs";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError, type ShimClient } from "../../src/client/client.js";
import { heldFiles } from "../../src/runtime/held-files.js";
import { startShimServer, type RunningServer } from "../../src/server/server.js";
import { RuncFixture, skipRunc, stopProcess } from "../helpers/runc.js";
import { startServer, tempSocketPath } from "../helpers/server.js";

/** Whether an fd's target is a status file the server holds open on purpose (src/runtime/held-files.ts). */
const isHeldStatusFile = (target: string) => /^\/proc\/\d+\/statm?$/.test(target) || target.startsWith("/sys/fs/cgroup/");
const fdTargets = (pid: number | "self") =>
  fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return ""; // the fd readdir itself used, closed since
    }
  });
/** Fds other than the held status files (a bounded cache: at most `heldFiles.max`, checked apart). */
const fdCount = (pid: number | "self") => fdTargets(pid).filter((t) => !isHeldStatusFile(t)).length;
const heldCount = (pid: number | "self") => fdTargets(pid).filter(isHeldStatusFile).length;
const resources = () => {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
};
const settle = () => new Promise((r) => setTimeout(r, 300));

describe.skipIf(skipRunc())("no leaks after 1,000 mixed calls", () => {
  let fx: RuncFixture;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    fx = new RuncFixture();
    ids.created = fx.create();
    ids.running = fx.create();
    fx.runc("start", ids.running);
    ids.stoppedInit = fx.create();
    await stopProcess(fx.initPid(ids.stoppedInit));
    ids.dead = fx.create();
    process.kill(fx.initPid(ids.dead), "SIGKILL");
    ids.fifoDir = fx.create();
    fs.rmSync(path.join(fx.root, ids.fifoDir, "exec.fifo"));
    fs.mkdirSync(path.join(fx.root, ids.fifoDir, "exec.fifo"));
    for (const [name, content] of [["rs-l-null", "null"], ["rs-l-xyz", "xyz"], ["rs-l-empty", ""]] as const) {
      fs.mkdirSync(path.join(fx.root, name));
      fs.writeFileSync(path.join(fx.root, name, "state.json"), content);
    }
    fs.mkdirSync(path.join(fx.root, "rs-l-fifo"));
    fs.symlinkSync("/", path.join(fx.root, "rs-l-slash"));
  });

  afterAll(() => {
    const pid = ids.stoppedInit === undefined ? undefined : fx?.initPid(ids.stoppedInit);
    if (pid !== undefined) process.kill(pid, "SIGKILL");
    fx?.cleanup();
  });

  /** 1,000 calls: State and Start on every kind of container, bad ids, deadlines and cancellations. */
  async function mixedCalls(shim: ShimClient): Promise<Set<string>> {
    const seen = new Set<string>();
    const record = async (p: Promise<unknown>) => {
      try {
        await p;
        seen.add("OK");
      } catch (e) {
        if (!(e instanceof ShimError)) throw e;
        seen.add(e.codeName);
      }
    };
    const targets = [ids.created!, ids.running!, ids.dead!, ids.fifoDir!, "rs-l-null", "rs-l-xyz", "rs-l-empty", "rs-l-fifo", "rs-l-slash", "rs-none", "../x", "", "a b"];
    let n = 0;
    for (let round = 0; n < 1000; round++) {
      const batch: Promise<void>[] = [];
      for (const id of targets) {
        batch.push(record(shim.state(id)));
        n++;
        if (id !== ids.created) {
          batch.push(record(shim.start(id, { deadlineMs: 2000 })));
          n++;
        }
      }
      if (round % 10 === 0) {
        batch.push(record(shim.start(ids.stoppedInit!, { deadlineMs: 60 })));
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 30);
        batch.push(record(shim.start(ids.stoppedInit!, { signal: ac.signal, deadlineMs: 5000 })));
        n += 2;
      }
      await Promise.all(batch);
    }
    return seen;
  }

  it("in process: fds, handles and timers return to the baseline", async () => {
    const socket = tempSocketPath();
    const server: RunningServer = await startShimServer(
      { root: fx.root, socketPath: socket, startTimeoutMs: 10_000 },
      pino({ level: "silent" }),
    );
    try {
      // warm up once (lazy module state, the first channel), then take the baseline
      const warm = createShimClient(socket);
      await warm.state(ids.created!);
      warm.close();
      await settle();
      const baseFds = fdCount("self");
      const baseResources = resources();

      const shim = createShimClient(socket);
      const seen = await mixedCalls(shim);
      shim.close();
      expect([...seen].sort()).toEqual(["CANCELLED", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION", "INTERNAL", "INVALID_ARGUMENT", "NOT_FOUND", "OK"]);
      await settle();
      expect(fdCount("self")).toBe(baseFds);
      // The held status files: those of the few containers read, within the bound, all of them known to the cache.
      expect(heldCount("self")).toBeGreaterThan(0);
      expect(heldCount("self")).toBe(heldFiles.size);
      expect(heldFiles.size).toBeLessThanOrEqual(heldFiles.max);
      expect(resources()).toEqual(baseResources);
      expect(fs.existsSync(path.join(fx.root, ids.stoppedInit!, "exec.fifo"))).toBe(true);
    } finally {
      server.forceShutdown();
    }
  });

  it("as its own process: fd count back to baseline, no child processes", async () => {
    const server = await startServer(fx.root);
    try {
      const pid = server.proc.pid!;
      const warm = createShimClient(server.socket);
      await warm.state(ids.created!);
      warm.close();
      await settle();
      const baseFds = fdCount(pid);
      const shim = createShimClient(server.socket);
      await mixedCalls(shim);
      shim.close();
      await settle();
      expect(fdCount(pid)).toBe(baseFds);
      // 5 containers with a live or dead init: at most a /proc file (stat or statm) and a freezer file each.
      expect(heldCount(pid)).toBeLessThanOrEqual(10);
      const children = fs.readdirSync(`/proc/${pid}/task`).flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean));
      expect(children).toEqual([]);
    } finally {
      await server.stop();
    }
  });
});
