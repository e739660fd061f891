/**
 * `serve --check-config` (validates, prints what serve would do, exits 0 or 2,
 * creates and binds nothing) and what serve logs at start-up: the runc binary
 * Create will run and its version (or that none was found, while every other
 * verb works) and the cgroup mode.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient } from "../../src/client/client.js";
import { detectCgroupMode } from "../../src/runtime/freezer.js";
import { resolveRunc } from "../../src/runtime/runc-cli.js";
import { failure } from "../helpers/calls.js";
import { spawnInit, tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";
import { skipRunc } from "../helpers/runc.js";
import { runMain, startServer } from "../helpers/server.js";

interface Report {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

/** Where runc is here and its first --version line, as the tests expect the shim to report them. */
function localRunc(): { path: string; version: string } {
  const found = resolveRunc("runc");
  if ("error" in found) throw new Error(found.error);
  const version = spawnSync(found.path, ["--version"], { encoding: "utf8" }).stdout.split("\n")[0]!.trim();
  return { path: found.path, version };
}

describe.skipIf(skipRunc())("serve --check-config", () => {
  let tmp: ReturnType<typeof tempRoot>;
  beforeAll(() => (tmp = tempRoot("rs-check-")));
  afterAll(() => tmp?.cleanup());

  it("passes a usable configuration, prints one line per check and creates nothing", async () => {
    const root = path.join(tmp.dir, "new-root");
    const sock = path.join(tmp.dir, "sockdir", "s.sock");
    const msock = path.join(tmp.dir, "mdir", "m.sock");
    const r = await runMain(["serve", "--check-config", "--root", root, "--address", sock, "--metrics-address", msock]);
    expect(r.code).toBe(0);
    const { path: runc, version } = localRunc();
    expect(r.stdout.split("\n")).toEqual([
      "ok    flags    valid: --start-timeout 60000 ms, --create-timeout 60000 ms, --shutdown-timeout 10000 ms, --log-level info, --log-format json",
      `ok    root     ${root} does not exist; serve would create it (mode 0700)`,
      `ok    socket   ${sock}: would create ${path.dirname(sock)} (mode 0700); would listen there (gRPC, mode 0600)`,
      `ok    runc     Create would run ${runc} (${version})`,
      `ok    metrics  ${msock}: would create ${path.dirname(msock)} (mode 0700); would listen there (GET /metrics over HTTP, mode 0600)`,
      `ok    cgroups  cgroup mode ${detectCgroupMode()}`,
      expect.stringMatching(/^ok {4}limits {3}--max-connections \d+, --preface-timeout 5000 ms, --max-streams-per-connection 128, --max-watches 512, --max-watches-per-connection 64$/),
      "configuration OK: runc-shim serve would start",
      "",
    ]);
    expect(r.stderr).toBe("");
    for (const p of [root, path.dirname(sock), path.dirname(msock)]) expect(fs.existsSync(p)).toBe(false);
  });

  it("--json: one object with every check", async () => {
    const r = await runMain(["serve", "--check-config", "--json", "--root", tmp.root, "--address", path.join(tmp.dir, "s.sock"), "--metrics-address", "127.0.0.1:0"]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ["flags", true], ["root", true], ["socket", true], ["runc", true], ["metrics", true], ["cgroups", true], ["limits", true],
    ]);
    expect(report.checks[1]!.detail).toBe(`${tmp.root} is a readable directory (0 container dirs); serve would serve it`);
    expect(report.checks[4]!.detail).toBe("would serve http://127.0.0.1:0/metrics (a free port, logged at start-up)");
  });

  it("fails (exit 2) on each unusable item, naming it, and leaves everything as it was", async () => {
    const file = path.join(tmp.dir, "a-file");
    fs.writeFileSync(file, "");
    const notSock = path.join(tmp.dir, "not-a-socket");
    fs.writeFileSync(notSock, "keep");
    const r = await runMain(["serve", "--check-config", "--json", "--root", file, "--address", notSock, "--runc", "/nonexistent/runc-shim-test/runc", "--metrics-address", `${file}/m.sock`]);
    expect(r.code).toBe(2);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok)).toEqual([
      { name: "root", ok: false, detail: `state root ${file} is not a directory` },
      { name: "socket", ok: false, detail: `${notSock} exists and is not a socket; serve would refuse to remove it` },
      { name: "runc", ok: false, detail: 'runc binary "/nonexistent/runc-shim-test/runc" (--runc) does not exist: Create would answer FAILED_PRECONDITION (RUNC_NOT_FOUND); every other call would work' },
      { name: "metrics", ok: false, detail: `${file}/m.sock: ${file} is not a directory` },
    ]);
    expect(fs.readFileSync(notSock, "utf8")).toBe("keep");
  });

  it("fails on a socket a running server holds, and passes (saying so) over a stale one", async () => {
    const live = await startServer(tmp.root);
    try {
      const r = await runMain(["serve", "--check-config", "--root", tmp.root, "--address", live.socket]);
      expect(r.code).toBe(2);
      expect(r.stdout).toContain(`FAIL  socket   address in use by a running server: ${live.socket}\n`);
      expect(r.stdout).toContain("configuration NOT OK: 1 problem; runc-shim serve would not start as intended\n");
    } finally {
      expect(await live.stop()).toBe(0);
    }
    // A socket file nobody listens on (as a SIGKILLed server leaves): made by binding and closing without unlink.
    const stale = path.join(tmp.dir, "stale.sock");
    const net = await import("node:net");
    const l = net.createServer();
    await new Promise<void>((res) => l.listen(stale, () => res()));
    const copy = path.join(tmp.dir, "stale2.sock");
    fs.linkSync(stale, copy); // a second name survives the listener's unlink on close
    await new Promise<void>((res) => l.close(() => res()));
    const r2 = await runMain(["serve", "--check-config", "--root", tmp.root, "--address", copy]);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toContain(`ok    socket   ${copy}: a stale socket (no listener) that serve would remove; would listen there (gRPC, mode 0600)\n`);
    expect(fs.lstatSync(copy).isSocket()).toBe(true);
  });

  it("reports a bad flag as a failed flags check (exit 2)", async () => {
    const r = await runMain(["serve", "--check-config", "--json", "--start-timeout", "soon"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, checks: [{ name: "flags", ok: false, detail: '--start-timeout: invalid duration "soon" (examples: 500ms, 10s, 2m)' }] });
  });
});

describe.skipIf(skipRunc())("serve logs runc and the cgroup mode at start-up", () => {
  let tmp: ReturnType<typeof tempRoot>;
  beforeAll(() => (tmp = tempRoot("rs-startup-")));
  afterAll(() => tmp?.cleanup());

  const lines = (stderr: string): Record<string, unknown>[] =>
    stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);

  it("logs the runc binary Create will run, its version, and the cgroup mode, before listening", async () => {
    const s = await startServer(tmp.root);
    try {
      const log = lines(s.stderr());
      const { path: runc, version } = localRunc();
      const i = log.findIndex((l) => l.msg === "runc found: Create will run it");
      expect(log[i]).toMatchObject({ level: 30, runc, runcVersion: version });
      const j = log.findIndex((l) => l.msg === `cgroup mode detected: ${detectCgroupMode()}`);
      expect(log[j]).toMatchObject({ level: 30, cgroupMode: detectCgroupMode() });
      const k = log.findIndex((l) => l.msg === "listening");
      expect(i).toBeGreaterThanOrEqual(0);
      expect(j).toBeGreaterThan(i);
      expect(k).toBeGreaterThan(j);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("without runc: warns, Create answers FAILED_PRECONDITION RUNC_NOT_FOUND saying so, every other verb works", async () => {
    const init = await spawnInit();
    writeFakeContainer(tmp.root, "c1", init, { created: false });
    const bundle = path.join(tmp.dir, "bundle");
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, "config.json"), "{}");
    const s = await startServer(tmp.root, ["--runc", "/nonexistent/runc-shim-test/runc"]);
    const shim = createShimClient(s.socket);
    try {
      expect(lines(s.stderr()).find((l) => l.level === 40)).toMatchObject({
        runc: "/nonexistent/runc-shim-test/runc",
        err: 'runc binary "/nonexistent/runc-shim-test/runc" (--runc) does not exist',
        msg: "runc not found: Create will answer FAILED_PRECONDITION (RUNC_NOT_FOUND) until it can run it; every other call works",
      });
      const e = await failure(shim.create("c2", { bundle }));
      expect([e.codeName, e.details, e.reason]).toEqual([
        "FAILED_PRECONDITION",
        'cannot run runc binary "/nonexistent/runc-shim-test/runc" (--runc): no such file; Create needs runc, every other call works without it',
        "RUNC_NOT_FOUND",
      ]);
      expect(fs.existsSync(path.join(tmp.root, "c2"))).toBe(false);
      expect((await shim.state("c1")).status).toBe("running");
      expect((await shim.list()).map((c) => c.id)).toEqual(["c1"]);
      await shim.kill("c1", "KILL");
      await init.kill();
      expect(await shim.delete("c1")).toBe(init.pid);
      expect(fs.existsSync(path.join(tmp.root, "c1"))).toBe(false);
    } finally {
      shim.close();
      await init.kill();
      expect(await s.stop()).toBe(0);
    }
  });

  it("a name not on PATH: the message says where it looked", async () => {
    const bundle = path.join(tmp.dir, "bundle2");
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, "config.json"), "{}");
    const s = await startServer(tmp.root, ["--runc", "runc-shim-no-such-runc"], { env: { PATH: "/nonexistent-bin:/usr/bin:/bin" } });
    const shim = createShimClient(s.socket);
    try {
      const e = await failure(shim.create("c3", { bundle }));
      expect(e.details).toBe(
        'cannot run runc binary "runc-shim-no-such-runc" (--runc): not found on PATH (/nonexistent-bin:/usr/bin:/bin); Create needs runc, every other call works without it',
      );
    } finally {
      shim.close();
      expect(await s.stop()).toBe(0);
    }
  });
});
