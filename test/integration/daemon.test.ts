/**
 * Issue 4: the server as a node daemon — health, the socket, shutdown, exit
 * codes, the CLI and the logs — driven as a real process with real signals.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError } from "../../src/client/client.js";
import { healthClient } from "../helpers/health.js";
import { RuncFixture, skipRunc, waitFor, stopProcess } from "../helpers/runc.js";
import { logSettled, logged, runMain, startServer, tempSocketPath } from "../helpers/server.js";

const madeDirs: string[] = [];
const tmpDir = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rsd-"));
  madeDirs.push(dir);
  return dir;
};

describe.skipIf(skipRunc())("runc-shim as a node daemon", () => {
  let fx: RuncFixture;
  beforeAll(() => {
    fx = new RuncFixture();
  });
  afterAll(() => {
    fx?.cleanup();
    for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  describe("health", () => {
    it('"" and runcshim.v1.ShimService follow the state root; unknown services are NOT_FOUND', async () => {
      const root = path.join(tmpDir(), "root");
      const server = await startServer(root);
      const health = healthClient(server.socket);
      try {
        expect(fs.statSync(root).mode & 0o777).toBe(0o700); // created 0700
        expect(await health.check("")).toBe("SERVING");
        expect(await health.check("runcshim.v1.ShimService")).toBe("SERVING");
        await expect(health.check("nope.Service")).rejects.toMatchObject({ code: 5 });

        const seen: string[] = [];
        const watch = health.watch("", (s) => seen.push(s));
        await waitFor(() => seen.length === 1, 2000, "the first Watch message");
        fs.rmSync(root, { recursive: true });
        expect(await health.check("")).toBe("NOT_SERVING"); // re-checked on each Check
        const shim = createShimClient(server.socket);
        const e = (await shim.state("rs-x").catch((x: unknown) => x)) as ShimError;
        expect([e.codeName, e.reason]).toEqual(["FAILED_PRECONDITION", "CONFIG_INVALID"]);
        shim.close();
        fs.mkdirSync(root);
        await waitFor(() => seen.join(",") === "SERVING,NOT_SERVING,SERVING", 3000, `Watch to follow the root (${seen})`);
        watch.call.cancel();
      } finally {
        health.close();
        await server.stop();
      }
    });
  });

  describe("the socket", () => {
    it("refuses abstract addresses and paths over 107 bytes, exit 2", async () => {
      for (const address of ["@runc-shim", "unix-abstract:runc-shim"]) {
        const r = await runMain(["serve", "--root", fx.root, "--address", address]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/abstract socket address .* refused.*CVE-2020-15257/);
      }
      const long = `/tmp/${"x".repeat(110)}.sock`;
      const r = await runMain(["serve", "--root", fx.root, "--address", long]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/longer than the 107-byte limit/);
      expect(fs.existsSync(long)).toBe(false);
    });

    it("creates the parent 0700, binds 0600, and 0660 with --socket-group", async () => {
      const socket = path.join(tmpDir(), "sub", "dir", "shim.sock");
      const server = await startServer(fx.root, [], { socket });
      try {
        expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o700);
        expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
      } finally {
        expect(await server.stop()).toBe(0);
      }
      expect(fs.existsSync(socket)).toBe(false);

      const grouped = await startServer(fx.root, ["--socket-group", "nogroup"]);
      try {
        const st = fs.statSync(grouped.socket);
        expect(st.mode & 0o777).toBe(0o660);
        expect(st.gid).toBe(Number(spawnSync("getent", ["group", "nogroup"], { encoding: "utf8" }).stdout.split(":")[2]));
        // the group can reach it: the private dir made for it is 0710 with that group
        expect(fs.statSync(path.dirname(grouped.socket)).mode & 0o777).toBe(0o710);
        const probe = `require("net").connect(${JSON.stringify(grouped.socket)}).on("connect",()=>{console.log("CONNECTED");process.exit(0)}).on("error",e=>{console.log(e.code);process.exit(0)})`;
        const asGroup = spawnSync("setpriv", ["--reuid=65534", `--regid=${st.gid}`, "--clear-groups", process.execPath, "-e", probe], { encoding: "utf8" });
        expect(asGroup.stdout.trim()).toBe("CONNECTED");
      } finally {
        await grouped.stop();
      }
      const bad = await runMain(["serve", "--root", fx.root, "--address", tempSocketPath(), "--socket-group", "no-such-group-xyz"]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/no such group/);
    });

    it("removes a stale socket, never touches a live one, refuses a regular file", async () => {
      const socket = tempSocketPath();
      // a stale socket: a listener SIGKILLed, so nothing unlinked its file
      const holder = spawnSync(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, "SIGKILL"))`]);
      expect(holder.signal).toBe("SIGKILL");
      expect(fs.statSync(socket).isSocket()).toBe(true);
      const first = await startServer(fx.root, [], { socket }); // binds: the stale file was removed

      const second = await runMain(["serve", "--root", fx.root, "--address", socket]);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toMatch(/address in use by a running server/);
      const health = healthClient(socket);
      expect(await health.check("")).toBe("SERVING"); // the first keeps serving
      health.close();
      await first.stop();

      const file = tempSocketPath();
      fs.writeFileSync(file, "keep me");
      const r = await runMain(["serve", "--root", fx.root, "--address", file]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/is not a socket; refusing to remove it/);
      expect(fs.readFileSync(file, "utf8")).toBe("keep me");
    });

    it("an unprivileged user cannot connect", async () => {
      const dir = tmpDir();
      fs.chmodSync(dir, 0o755); // only the socket's own mode stands in the way
      const socket = path.join(dir, "shim.sock");
      const server = await startServer(fx.root, [], { socket });
      try {
        const probe = `require("net").connect(${JSON.stringify(socket)}).on("connect",()=>{console.log("CONNECTED");process.exit(0)}).on("error",e=>{console.log(e.code);process.exit(0)})`;
        const r = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", probe], { encoding: "utf8" });
        expect(r.stdout.trim()).toBe("EACCES");
        const asRoot = spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" });
        expect(asRoot.stdout.trim()).toBe("CONNECTED");
      } finally {
        await server.stop();
      }
    });
  });

  describe("shutdown", () => {
    it("SIGTERM lets a Start in the middle of its handshake finish, refuses new calls, removes the socket, exits 0", async () => {
      const server = await startServer(fx.root, ["--shutdown-timeout", "10s"]);
      const shim = createShimClient(server.socket);
      const health = healthClient(server.socket);
      const statuses: string[] = [];
      health.watch("", (s) => statuses.push(s));
      const id = fx.create();
      const pid = fx.initPid(id);
      await stopProcess(pid);
      const start = shim.start(id, { deadlineMs: 10_000 });
      await new Promise((r) => setTimeout(r, 200));
      process.kill(server.proc.pid!, "SIGTERM");
      await waitFor(() => statuses.includes("NOT_SERVING"), 2000, "health NOT_SERVING on shutdown");
      const late = createShimClient(server.socket);
      await expect(late.state(id, { deadlineMs: 1000 })).rejects.toBeInstanceOf(ShimError);
      late.close();
      process.kill(pid, "SIGCONT");
      expect(await start).toBe(pid);
      expect(await server.exited).toBe(0);
      expect(fs.existsSync(server.socket)).toBe(false);
      expect(fx.state(id).status).toBe("running");
      shim.close();
      health.close();
    });

    it("bounds the wait by --shutdown-timeout, even with a health Watch open; a second signal forces at once", async () => {
      const id = fx.create();
      const pid = fx.initPid(id);
      await stopProcess(pid);
      try {
        const server = await startServer(fx.root, ["--shutdown-timeout", "700ms"]);
        const shim = createShimClient(server.socket);
        const health = healthClient(server.socket);
        health.watch("", () => {});
        const start = shim.start(id, { deadlineMs: 20_000 }).catch((e: unknown) => e);
        await new Promise((r) => setTimeout(r, 200));
        const t0 = performance.now();
        process.kill(server.proc.pid!, "SIGTERM");
        expect(await server.exited).toBe(0);
        const took = performance.now() - t0;
        expect(took).toBeGreaterThan(600);
        expect(took).toBeLessThan(3000);
        expect(await start).toBeInstanceOf(ShimError);
        expect(fs.existsSync(server.socket)).toBe(false);
        expect(fs.existsSync(path.join(fx.root, id, "exec.fifo"))).toBe(true); // nothing changed

        const again = await startServer(fx.root, ["--shutdown-timeout", "30s"]);
        const shim2 = createShimClient(again.socket);
        const pending = shim2.start(id, { deadlineMs: 20_000 }).catch((e: unknown) => e);
        await new Promise((r) => setTimeout(r, 200));
        const t1 = performance.now();
        process.kill(again.proc.pid!, "SIGTERM");
        await new Promise((r) => setTimeout(r, 100));
        process.kill(again.proc.pid!, "SIGINT");
        expect(await again.exited).toBe(0);
        expect(performance.now() - t1).toBeLessThan(2000);
        expect(await pending).toBeInstanceOf(ShimError);
        expect(fs.existsSync(again.socket)).toBe(false);
        shim.close();
        shim2.close();
        health.close();
      } finally {
        process.kill(pid, "SIGKILL");
      }
    });

    it("a second signal waits a moment for the calls it cancels: a Create whose runc ends 50 ms later still logs its line", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-forced-"));
      try {
        // A "runc" that takes 50 ms to fail a create (Create lets runc finish before it answers),
        // and marks that it began.
        const fakeRunc = path.join(dir, "slow-runc");
        const began = path.join(dir, "began");
        fs.writeFileSync(fakeRunc, `#!/bin/sh\n[ "$1" = --version ] && { echo "runc version 1.1.5"; exit 0; }\ntouch ${began}\nsleep 0.05\nexit 1\n`, { mode: 0o755 });
        const bundle = path.join(dir, "bundle");
        fs.mkdirSync(bundle);
        fs.writeFileSync(path.join(bundle, "config.json"), "{}");
        const root = path.join(dir, "root");
        const server = await startServer(root, ["--runc", fakeRunc, "--shutdown-timeout", "30s"]);
        const shim = createShimClient(server.socket);
        const created = shim.create("rs-forced-create", { bundle }).catch((e: unknown) => e);
        await waitFor(() => fs.existsSync(began), 5000, "the fake runc to begin");
        process.kill(server.proc.pid!, "SIGTERM");
        process.kill(server.proc.pid!, "SIGINT");
        expect(await server.exited).toBe(0);
        expect(await created).toBeInstanceOf(ShimError);
        // The child's stderr may still be read after its exit: wait for the lines.
        await logged(server, /"msg":"second signal: forcing shutdown"/);
        await logged(server, /"rpc":"Create","containerId":"rs-forced-create"/);
        await logSettled();
        expect(server.stderr()).not.toContain("calls in flight, which get no log line");
        shim.close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("with only a health Watch open, SIGTERM exits at once", async () => {
      const server = await startServer(fx.root, ["--shutdown-timeout", "10s"]);
      const health = healthClient(server.socket);
      const w = health.watch("", () => {});
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      process.kill(server.proc.pid!, "SIGTERM");
      expect(await server.exited).toBe(0);
      expect(performance.now() - t0).toBeLessThan(1500);
      await w.ended;
      health.close();
    });
  });

  describe("exit codes and the CLI", () => {
    it("exits 2 for bad usage and bad configuration", async () => {
      const file = path.join(tmpDir(), "not-a-dir");
      fs.writeFileSync(file, "");
      const cases = [
        ["serve", "--bogus"],
        ["serve", "--root", file, "--address", tempSocketPath()],
        ["serve", "--root", fx.root, "--address", `${file}/shim.sock`], // the socket's parent is a file
        ["serve", "--start-timeout", "soon"],
        ["nope"],
        ["state"],
        ["state", "c1", "--address", ""],
        ["state", "c1", "--address", "dns:///x"],
      ];
      for (const args of cases) {
        const r = await runMain(args);
        expect([args.join(" "), r.code]).toEqual([args.join(" "), 2]);
        expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(3);
      }
      const notDir = await runMain(["serve", "--root", file, "--address", tempSocketPath()]);
      expect(notDir.stderr).toMatch(/is not a directory/);
    });

    it("state and start print like runc, --json for scripts, errors with code, message and reason", async () => {
      const server = await startServer(fx.root);
      try {
        const id = fx.create();
        const pid = fx.initPid(id);
        const human = await runMain(["state", id, "--address", server.socket]);
        expect(human.code).toBe(0);
        const runcView = JSON.parse(fx.runc("state", id));
        expect(JSON.parse(human.stdout)).toEqual(runcView);
        expect(human.stdout).toContain('\n  "id"'); // 2-space indent like runc
        const started = await runMain(["start", id, "--address", server.socket, "--json"]);
        expect([started.code, JSON.parse(started.stdout)]).toEqual([0, { id, pid }]);
        const json = await runMain(["state", id, "--json", "--address", server.socket]);
        expect(JSON.parse(json.stdout)).toMatchObject({ id, pid, status: "running" });
        const missing = await runMain(["state", "rs-missing", "--address", server.socket]);
        expect(missing.code).toBe(1);
        expect(missing.stderr).toContain("NOT_FOUND: container does not exist (reason CONTAINER_NOT_EXISTS)");
        const missingJson = await runMain(["start", "rs-missing", "--json", "--address", server.socket]);
        expect(JSON.parse(missingJson.stderr)).toMatchObject({ code: "NOT_FOUND", reason: "CONTAINER_NOT_EXISTS" });
        const down = await runMain(["state", id, "--address", tempSocketPath()]);
        expect(down.code).toBe(1);
        expect(down.stderr).toMatch(/UNAVAILABLE/);
      } finally {
        await server.stop();
      }
    });

    it("--help reads like runc's, --version prints the version", async () => {
      const help = await runMain(["--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^NAME:\n {3}runc-shim - /);
      expect(help.stdout).toMatch(/\nUSAGE:\n/);
      expect(help.stdout).toMatch(/\nCOMMANDS:\n(.|\n)*serve(.|\n)*state(.|\n)*start/);
      const sub = await runMain(["state", "--help"]);
      expect(sub.stdout).toMatch(/^NAME:\n {3}runc-shim state - output the state of a container/);
      expect(sub.stdout).toMatch(/OPTIONS:\n(.|\n)*--address/);
      const version = await runMain(["--version"]);
      expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    });
  });

  describe("logs", () => {
    it("one JSON line per call with rpc, containerId, code, durationMs, and the libcontainer code for errors; --log-format text", async () => {
      const server = await startServer(fx.root, ["--log-level", "info"]);
      const shim = createShimClient(server.socket);
      await shim.state("rs-log-missing").catch(() => undefined);
      await shim.state("x".repeat(5000)).catch(() => undefined);
      shim.close();
      await server.stop();
      const lines = server.stderr().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      const missing = lines.find((l) => l.containerId === "rs-log-missing");
      expect(missing).toMatchObject({ rpc: "State", code: "NOT_FOUND", errorKind: "ContainerNotExists", err: "container does not exist" });
      expect(typeof missing?.durationMs).toBe("number");
      const long = lines.find((l) => l.code === "INVALID_ARGUMENT");
      expect(String(long?.containerId).length).toBeLessThan(400);
      expect(lines.every((l) => JSON.stringify(l).length < 2000)).toBe(true);

      const text = await startServer(fx.root, ["--log-format", "text"], { ready: /listening/ });
      await text.stop();
      expect(text.stderr()).toMatch(/INFO.*listening/);
      expect(text.stderr()).not.toContain('"msg":"listening"');
    });
  });
});
