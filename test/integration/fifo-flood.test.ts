/**
 * Issue 14, finding 5: an init that writes its byte to the exec fifo and then
 * keeps writing (64 KiB chunks, never closing) must not make the server burn a
 * core while Start waits for end of file. A real server process serves a fake
 * container whose init is a shell: it opens the fifo, writes its byte, leaves a
 * `dd` flooding the fifo and waits. The server's CPU time is read from
 * `/proc/PID/stat` over 3 s of the flood; then the flood is stopped (the last
 * writer closes its end) and Start must answer OK with the pid promptly.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { readProcStat } from "../../src/runtime/proc.js";
import { outcome } from "../helpers/calls.js";
import { tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";
import { logged, startServer, type ServerProcess } from "../helpers/server.js";

/** Clock ticks per second (`getconf CLK_TCK`), the unit of utime and stime in /proc/PID/stat. */
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time (user + system, all threads) used so far by process `pid`, in seconds. */
function cpuSeconds(pid: number): number {
  const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the name: [0] is field 3 (state), so field N is [N - 3]; utime is field 14, stime field 15.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (cond: () => boolean, what: string, ms = 3000) => {
  for (const t0 = Date.now(); !cond() && Date.now() - t0 < ms; ) await sleep(10);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
};
const alive = (pid: number) => {
  const st = readProcStat(pid);
  return st !== undefined && st.state !== "Z" && st.state !== "X";
};

/** Measured flood window, in ms, and the bound: 5 % of one core. */
const WINDOW_MS = 3000;
const MAX_CORE_SHARE = 0.05;

describe("an init flooding its exec fifo after the byte", () => {
  const tmp = tempRoot("rs-flood-");
  const pids: number[] = [];
  let server: ServerProcess;
  let shim: ShimClient;

  beforeAll(async () => {
    server = await startServer(tmp.root, ["--start-timeout", "30s"]);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    tmp.cleanup();
  });

  it("costs the server under 5 % of a core while Start waits, and Start answers OK once the writer closes", async () => {
    const id = "c-flood";
    const dir = path.join(tmp.root, id);
    fs.mkdirSync(dir);
    const fifo = path.join(dir, "exec.fifo");
    const ddPidFile = path.join(tmp.dir, "dd.pid");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    // The init: opens its end (blocks until the server opens the reader), writes the byte, leaves dd
    // flooding the fifo in 64 KiB writes, closes its own copy of the fd and waits for dd.
    const init = spawn(
      "sh",
      ["-c", 'exec 3>"$F"; printf 0 >&3; dd if=/dev/zero bs=65536 status=none >&3 & echo $! >"$P"; exec 3>&-; wait; exec sleep 600'],
      { env: { ...process.env, F: fifo, P: ddPidFile }, stdio: "ignore" },
    );
    pids.push(init.pid!);
    await until(() => readProcStat(init.pid!) !== undefined, "the init to start");
    writeFakeContainer(tmp.root, id, { pid: init.pid!, startTime: readProcStat(init.pid!)!.startTime, proc: init, kill: async () => {} }, { created: false });
    expect((await shim.state(id)).status).toBe("created");

    const pending = outcome(shim.start(id, { deadlineMs: 20_000 }));
    await until(() => fs.existsSync(ddPidFile) && fs.readFileSync(ddPidFile, "utf8").trim() !== "", "the flood to begin");
    const ddPid = Number(fs.readFileSync(ddPidFile, "utf8").trim());
    pids.push(ddPid);
    await until(() => !fs.existsSync(fifo), "the byte to be read (fifo removed)");
    await sleep(300); // past the commit

    const serverPid = server.proc.pid!;
    const cpu0 = cpuSeconds(serverPid);
    const t0 = performance.now();
    await sleep(WINDOW_MS);
    const share = (cpuSeconds(serverPid) - cpu0) / ((performance.now() - t0) / 1000);
    console.info(`server CPU over ${WINDOW_MS} ms of flood: ${(share * 100).toFixed(1)} % of a core`);
    expect(alive(ddPid)).toBe(true); // the flood went on for the whole window (not killed by SIGPIPE)
    expect(share).toBeLessThan(MAX_CORE_SHARE);

    // The last writer closes its end: end of file. Start answers with the pid (the byte was read).
    const closedAt = performance.now();
    process.kill(ddPid, "SIGKILL");
    const r = await pending;
    const after = performance.now() - closedAt;
    expect(r).toEqual({ ok: true, value: init.pid });
    expect(after).toBeLessThan(300); // a poll tick (20 ms) drains the pipe; slack for the round trip
    expect(alive(init.pid!)).toBe(true);
    expect(await shim.state(id)).toMatchObject({ status: "running", pid: init.pid });
    await logged(server, new RegExp(`"rpc":"Start","containerId":"${id}","code":"OK"`));
  });
});
