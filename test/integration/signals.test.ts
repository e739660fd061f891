/**
 * Issue 14, finding 2: signals to a real server process. SIGUSR1 never opens
 * Node's inspector (a root hole); SIGHUP, SIGUSR1 and SIGUSR2 are logged and
 * ignored; SIGQUIT shuts down gracefully like SIGTERM.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError } from "../../src/client/client.js";
import { waitFor } from "../helpers/runc.js";
import { MAIN, startServer } from "../helpers/server.js";

const madeDirs: string[] = [];
const tmpRoot = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rssg-"));
  madeDirs.push(dir);
  return path.join(dir, "root");
};

/**
 * TCP ports in LISTEN state on sockets the process `pid` holds: the socket
 * inodes of /proc/PID/fd matched against /proc/PID/net/tcp and tcp6.
 */
function tcpListeners(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const target = (() => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return ""; // closed meanwhile
      }
    })();
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m?.[1] !== undefined) inodes.add(m[1]);
  }
  const ports: number[] = [];
  for (const table of ["tcp", "tcp6"]) {
    const lines = fs.readFileSync(`/proc/${pid}/net/${table}`, "utf8").trim().split("\n").slice(1);
    for (const line of lines) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const cols = line.trim().split(/\s+/);
      const [local, st, inode] = [cols[1] ?? "", cols[3], cols[9] ?? ""];
      if (st === "0A" && inodes.has(inode)) ports.push(parseInt(local.split(":")[1] ?? "", 16));
    }
  }
  return ports;
}

/** One State call on a missing container: answers NOT_FOUND while the server serves. */
async function stateAnswers(socket: string): Promise<string> {
  const shim = createShimClient(socket);
  try {
    return await shim.state("no-such-container", { deadlineMs: 3000 }).then(
      () => "OK",
      (e: unknown) => (e instanceof ShimError ? e.codeName : String(e)),
    );
  } finally {
    shim.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("signals to a real server", () => {
  afterAll(() => {
    for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("the probe sees a TCP listener of the process (a node listening on 127.0.0.1:0)", async () => {
    const child = spawn(process.execPath, ["-e", "require('net').createServer().listen(0, '127.0.0.1', () => console.log('up'))"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    try {
      await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
      expect(tcpListeners(child.pid!)).toHaveLength(1);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("SIGUSR1: no inspector (no TCP listener), logged as ignored, still serving", async () => {
    const server = await startServer(tmpRoot());
    const pid = server.proc.pid!;
    try {
      expect(tcpListeners(pid)).toEqual([]);
      process.kill(pid, "SIGUSR1");
      await sleep(300); // the inspector, when it opens, listens within a few ms of the signal
      expect(tcpListeners(pid)).toEqual([]); // Node's default: [9229]
      await waitFor(() => server.stderr().includes('"signal":"SIGUSR1"'), 3000, "the SIGUSR1 log line");
      expect(server.stderr()).not.toMatch(/Debugger listening|inspector/i);
      const line = server.stderr().split("\n").find((l) => l.includes('"signal":"SIGUSR1"'))!;
      expect(JSON.parse(line)).toMatchObject({ level: 30, signal: "SIGUSR1", msg: "signal ignored" });
      expect(await stateAnswers(server.socket)).toBe("NOT_FOUND");
      expect(server.proc.exitCode).toBeNull();
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it("SIGUSR1 to a client command (watch): no inspector, it keeps running, SIGTERM still ends it with 0", async () => {
    const server = await startServer(tmpRoot());
    const watch = spawn(process.execPath, [MAIN, "watch", "--address", server.socket], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    watch.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    watch.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const exited = new Promise<number | string>((resolve) => watch.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
    try {
      await waitFor(() => out.includes("synced"), 5000, "the watch's synced line");
      process.kill(watch.pid!, "SIGUSR1");
      await sleep(300);
      expect(tcpListeners(watch.pid!)).toEqual([]);
      expect(err).not.toMatch(/Debugger listening/);
      expect(watch.exitCode).toBeNull();
      process.kill(watch.pid!, "SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (watch.exitCode === null && watch.signalCode === null) watch.kill("SIGKILL");
      await server.stop();
    }
  });

  for (const signal of ["SIGHUP", "SIGUSR2"] as const) {
    it(`${signal}: logged as ignored, still serving, the socket kept`, async () => {
      const server = await startServer(tmpRoot());
      try {
        process.kill(server.proc.pid!, signal);
        await waitFor(() => server.stderr().includes(`"signal":"${signal}"`), 3000, `the ${signal} log line`);
        const line = server.stderr().split("\n").find((l) => l.includes(`"signal":"${signal}"`))!;
        expect(JSON.parse(line)).toMatchObject({ signal, msg: "signal ignored" });
        expect(await stateAnswers(server.socket)).toBe("NOT_FOUND");
        expect(server.proc.exitCode).toBeNull();
        expect(fs.existsSync(server.socket)).toBe(true);
      } finally {
        expect(await server.stop()).toBe(0);
      }
    });
  }

  it("SIGQUIT: a graceful shutdown like SIGTERM, exit 0, the socket removed", async () => {
    const server = await startServer(tmpRoot());
    process.kill(server.proc.pid!, "SIGQUIT");
    const code = await Promise.race([server.exited, sleep(5000).then(() => "no exit")]);
    try {
      expect(code).toBe(0);
      expect(fs.existsSync(server.socket)).toBe(false);
      expect(server.stderr()).toMatch(/"signal":"SIGQUIT","msg":"signal"/);
      expect(server.stderr()).toMatch(/"msg":"shut down"/);
    } finally {
      await server.stop(1000);
    }
  });

  it("all three ignored signals in a row, then SIGTERM: one log line each, exit 0", async () => {
    const server = await startServer(tmpRoot());
    try {
      for (const signal of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const) {
        process.kill(server.proc.pid!, signal);
        await waitFor(() => server.stderr().includes(`"signal":"${signal}"`), 3000, `the ${signal} log line`);
      }
      expect(server.stderr().match(/"msg":"signal ignored"/g)).toHaveLength(3);
      expect(await stateAnswers(server.socket)).toBe("NOT_FOUND");
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(fs.existsSync(server.socket)).toBe(false);
  });
});
