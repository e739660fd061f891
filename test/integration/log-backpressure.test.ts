/**
 * Issue 14, finding 1: a stuck log reader must not freeze the server. The
 * server's stderr is a pipe the test does not read: every call still answers,
 * health answers, SIGTERM is acted on; lines past the bounded buffer are
 * dropped and one line reports how many once the reader catches up.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError } from "../../src/client/client.js";
import { healthClient } from "../helpers/health.js";
import { startStuckServer, within, type StuckServer } from "../helpers/stuck-stderr.js";

const madeDirs: string[] = [];
const tmpRoot = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rslb-"));
  madeDirs.push(dir);
  return path.join(dir, "root");
};

/** A valid id that names no container: each State on it is NOT_FOUND and logged at info (~450 bytes a line). */
const ID = `gone-${"x".repeat(200)}`;

/** `n` State calls on {@link ID}, 32 in flight, each with a 5 s deadline; resolves with the code names. */
async function stateCalls(socket: string, n: number): Promise<Map<string, number>> {
  const shim = createShimClient(socket);
  const codes = new Map<string, number>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const e = await shim.state(ID, { deadlineMs: 5000 }).then(
        () => "OK",
        (x: unknown) => (x instanceof ShimError ? x.codeName : String(x)),
      );
      codes.set(e, (codes.get(e) ?? 0) + 1);
    }
  };
  try {
    await Promise.all(Array.from({ length: 32 }, worker));
  } finally {
    shim.close();
  }
  return codes;
}

/** Reads the pipe until `re` matches what was read, for at most `ms`. */
async function readUntil(server: StuckServer, re: RegExp, ms: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    server.drain();
    const m = re.exec(server.text());
    if (m !== null) return m;
    if (Date.now() > deadline) throw new Error(`${re} not seen in ${ms} ms; read ${server.text().length} chars, tail: ${server.text().slice(-400)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function sigtermExit(server: StuckServer, withinMs: number): Promise<{ code: number | string; ms: number }> {
  const t0 = Date.now();
  process.kill(server.pid, "SIGTERM");
  const code = await within(server.exited, withinMs + 2000, "exit after SIGTERM").catch(() => "no exit");
  return { code, ms: Date.now() - t0 };
}

describe("a stuck log reader", () => {
  afterAll(() => {
    for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("json: 3,000 calls and health answer, lines are dropped and counted, SIGTERM exits 0 in time", { timeout: 120_000 }, async () => {
    const server = await startStuckServer(tmpRoot(), ["--shutdown-timeout", "3s"]);
    try {
      // 3,000 lines of ~450 bytes: far more than the 64 KiB pipe plus the 1 MiB buffer.
      expect(Object.fromEntries(await within(stateCalls(server.socket, 3000), 60_000, "3,000 State calls"))).toEqual({ NOT_FOUND: 3000 });
      const health = healthClient(server.socket);
      try {
        expect(await within(health.check(""), 2000, "health Check")).toBe("SERVING");
      } finally {
        health.close();
      }

      // The reader catches up: what was queued arrives, then one line says how many were dropped.
      const m = await readUntil(server, /^\{.*"msg":"dropped (\d+) log lines[^\n]*\n/m, 10_000);
      const report = JSON.parse(m[0]) as Record<string, unknown>;
      const dropped = Number(m[1]);
      expect(report).toMatchObject({ level: 40, droppedLines: dropped });
      expect(dropped).toBeGreaterThan(0);
      const lines = server.text().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
      const logged = lines.filter((l) => l.rpc === "State" && l.containerId === ID).length;
      expect(logged).toBeGreaterThan(1000); // the 64 KiB pipe plus ~1 MiB of queue were delivered
      expect(logged + dropped).toBe(3000); // every call is either logged or counted

      // Lines flow again after the report.
      expect(Object.fromEntries(await stateCalls(server.socket, 1))).toEqual({ NOT_FOUND: 1 });
      await readUntil(server, new RegExp(`"msg":"dropped \\d+ log lines[^\\n]*\\n(?:.*\\n)*.*"containerId":"${ID}"`), 5000);

      // Stuck again (the test stops reading), then SIGTERM: exit 0 within --shutdown-timeout.
      expect(Object.fromEntries(await within(stateCalls(server.socket, 3000), 60_000, "3,000 more State calls"))).toEqual({ NOT_FOUND: 3000 });
      const { code, ms } = await sigtermExit(server, 3000);
      expect(code).toBe(0);
      expect(ms).toBeLessThan(3000);
      expect(fs.existsSync(server.socket)).toBe(false);
    } finally {
      await server.cleanup();
    }
  });

  it("text (--log-format text): the same, and the report is a text line", { timeout: 120_000 }, async () => {
    const server = await startStuckServer(tmpRoot(), ["--shutdown-timeout", "3s", "--log-format", "text"]);
    try {
      expect(Object.fromEntries(await within(stateCalls(server.socket, 3000), 60_000, "3,000 State calls"))).toEqual({ NOT_FOUND: 3000 });
      const health = healthClient(server.socket);
      try {
        expect(await within(health.check(""), 2000, "health Check")).toBe("SERVING");
      } finally {
        health.close();
      }
      const m = await readUntil(server, /^\[[^\]]+\] WARN \(\d+\): dropped (\d+) log lines[^\n]*\n/m, 10_000);
      const dropped = Number(m[1]);
      expect(dropped).toBeGreaterThan(0);
      const logged = server.text().split(`containerId: "${ID}"`).length - 1;
      expect(logged + dropped).toBe(3000);
      expect(server.text()).not.toContain('{"level"'); // no JSON line slipped through

      expect(Object.fromEntries(await within(stateCalls(server.socket, 3000), 60_000, "3,000 more State calls"))).toEqual({ NOT_FOUND: 3000 });
      const { code, ms } = await sigtermExit(server, 3000);
      expect(code).toBe(0);
      expect(ms).toBeLessThan(3000);
    } finally {
      await server.cleanup();
    }
  });
});
