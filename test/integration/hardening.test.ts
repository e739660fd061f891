/**
 * What an adversarial and a new-user trial of the lifecycle found, each fixed:
 * a crafted state.json whose pid is 0 or negative never reaches kill(2) (it
 * would signal a process group, the shim's own); a refused Create leaks no fd;
 * stdio paths naming the shim's own files are refused; cgroup paths with `..`
 * or through a symlink are not removed; a hook timeout past setTimeout's range
 * is not 1 ms; the client refuses a negative signal itself; `runc-shim kill ID
 * 0` probes as runc's does instead of sending SIGTERM; `--json` makes usage
 * errors JSON. Through real server processes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError, type ShimClient } from "../../src/client/client.js";
import { removeCgroupPaths } from "../../src/runtime/cgroup.js";
import { runHook } from "../../src/runtime/hooks.js";
import { failure } from "../helpers/calls.js";
import { LifeFixture, makeIn } from "../helpers/lifecycle.js";
import { procState, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";
import { MAIN, runMain, startServer, type ServerProcess } from "../helpers/server.js";

const FIXTURE = JSON.parse(fs.readFileSync(new URL("../fixtures/runc-1.1.5/state.json", import.meta.url), "utf8")) as Record<string, any>;

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

describe.skipIf(skipRunc())("hardening found by the trials", () => {
  let fx: LifeFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  const canaries: ChildProcess[] = [];
  const cgroups: string[] = [];

  beforeAll(async () => {
    fx = new LifeFixture("runc-shim-hard-");
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });
  afterAll(async () => {
    shim?.close();
    await server?.stop();
    for (const c of canaries) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, "SIGKILL");
    for (const dir of cgroups) {
      try {
        fs.writeFileSync(path.join(dir, "freezer.state"), "THAWED");
      } catch {
        // removed by the test's Delete
      }
      fs.rmSync(dir, { recursive: false, force: true });
      try {
        fs.rmdirSync(dir);
      } catch {
        // gone
      }
    }
    fx?.cleanupAll(); // the containers made through the shim too
  });

  /** A frozen freezer cgroup of our own, so a crafted container reads `paused` whatever its pid. */
  function frozenCgroup(): string {
    const dir = path.join("/sys/fs/cgroup/freezer", uniqueId("rs-hard"));
    fs.mkdirSync(dir);
    cgroups.push(dir);
    fs.writeFileSync(path.join(dir, "freezer.state"), "FROZEN");
    return dir;
  }

  it.each([
    ["0", 0],
    ["minus a canary's pid (its process group)", -1],
  ])("a forced Delete of a paused container whose pid is %s signals nothing and answers OK", async (_what, pidKind) => {
    // A canary in a process group of its own: kill(-pgid) would end it.
    const canary = spawn("sleep", ["600"], { detached: true, stdio: "ignore" });
    canaries.push(canary);
    const id = uniqueId("rs-hard-pid");
    const dir = path.join(fx.root, id);
    fs.mkdirSync(dir);
    const pid = pidKind === 0 ? 0 : -canary.pid!;
    fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify({ ...FIXTURE, id, init_process_pid: pid, cgroup_paths: { freezer: frozenCgroup() } }));
    expect((await shim.state(id)).status).toBe("paused");
    expect(await shim.delete(id, { force: true })).toBe(0);
    expect(fs.existsSync(dir)).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(procState(canary.pid!)).toBe("S"); // alive and sleeping
    expect(server.proc.exitCode).toBe(null); // kill(0) would have hit the server's own group
    expect((await shim.list()).length).toBeGreaterThanOrEqual(0);
  });

  it("a Create refused for a bad stdout or stderr path leaks no fd", async () => {
    const pid = server.proc.pid!;
    const stdin = path.join(fx.dir, "in.txt");
    fs.writeFileSync(stdin, "x");
    await failure(shim.create(uniqueId("rs-hard"), { bundle: fx.bundle, stdin, stdout: fx.dir }));
    const base = fdCount(pid);
    for (let i = 0; i < 30; i++) {
      const e = await failure(shim.create(uniqueId("rs-hard"), { bundle: fx.bundle, stdin, stdout: path.join(fx.dir, "out.txt"), stderr: fx.dir }));
      expect(e.codeName).toBe("INVALID_ARGUMENT");
      expect(e.details).toMatch(/^stderr .*: EISDIR/);
    }
    expect(fdCount(pid)).toBeLessThanOrEqual(base);
  });

  it.each(["/proc/self/fd/2", "/dev/stdout", "/dev/fd/1", "/proc/1/fd/1"])("stdout %s (the shim's own files) is refused", async (p) => {
    const e = await failure(shim.create(uniqueId("rs-hard"), { bundle: fx.bundle, stdout: p }));
    expect([e.codeName, e.details]).toEqual(["INVALID_ARGUMENT", `stdout ${p}: paths under /proc, /dev/fd and /dev/std* name the shim's own files; not opened`]);
  });

  it("cgroup paths with `..` or through a symlink are refused, not removed", async () => {
    const parent = path.join("/sys/fs/cgroup/pids", uniqueId("rs-hard-par"));
    const sibling = path.join(parent, "sibling");
    fs.mkdirSync(sibling, { recursive: true });
    const link = path.join(fx.dir, "link-to-cgroup");
    fs.symlinkSync(sibling, link);
    try {
      const left = await removeCgroupPaths({ pids: `${parent}/x/..`, memory: link });
      expect(left).toEqual({
        memory: `${link} goes through a symlink (to ${sibling}); not removed`,
        pids: `${parent}/x/.. is not an absolute, clean path (no "..", no "//"); not removed`,
      });
      expect(fs.existsSync(sibling)).toBe(true);
    } finally {
      fs.rmdirSync(sibling);
      fs.rmdirSync(parent);
    }
  });

  it("a hook timeout past setTimeout's range (24.8 days) lets the hook run", async () => {
    const out = path.join(fx.dir, "hook-ran");
    const err = await runHook(
      { path: "/bin/sh", args: ["sh", "-c", `echo ran > ${out}`], env: [], timeoutMs: 3e12 / 1e6 * 1e3 },
      { ociVersion: "1.0.2-dev", id: "x", status: "stopped", bundle: "/b" },
    );
    expect(err).toBe(undefined);
    expect(fs.readFileSync(out, "utf8")).toBe("ran\n");
  });

  it("the typed client refuses a negative or fractional signal itself, with INVALID_ARGUMENT", async () => {
    const id = await makeIn(fx, shim, "running");
    for (const bad of [-1, 1.5, 2 ** 32]) {
      const e = await failure(shim.kill(id, bad));
      expect(e).toBeInstanceOf(ShimError);
      expect([e.codeName, e.details]).toEqual(["INVALID_ARGUMENT", `invalid signal ${bad}: expected 1-64 (0 means SIGTERM)`]);
    }
    expect(fx.judge(id)).toBe("running");
  });

  it("`runc-shim kill ID 0` sends nothing, as `runc kill ID 0`: exit 0 while alive, `container not running` once stopped", async () => {
    const id = await makeIn(fx, shim, "running");
    const r = await runMain(["kill", id, "0", "--address", server.socket]);
    expect([r.code, r.stdout, r.stderr]).toEqual([0, "", ""]);
    expect(fx.judge(id)).toBe("running");
    expect(fx.tryRunc("kill", id, "0").status).toBe(0);
    await shim.kill(id, "KILL");
    await waitFor(() => fx.judge(id) === "stopped", 5000, "the container to stop");
    const stopped = await runMain(["kill", id, "0", "--address", server.socket]);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toContain("FAILED_PRECONDITION: container not running (reason CONTAINER_NOT_RUNNING)");
  });

  it("Create scrubs NOTIFY_SOCKET and LISTEN_FDS from runc's environment and the container inherits only its stdio", async () => {
    // A server started as systemd would with Type=notify and socket activation, and with two
    // fds its parent left open (a shell's `exec 30<...`: no close-on-exec; Node itself marks only
    // a few low inherited fds close-on-exec), which would otherwise pass through runc into the container.
    const envServer = await startServer(fx.root, [], {
      env: { NOTIFY_SOCKET: "/run/systemd/notify", LISTEN_FDS: "2", LISTEN_PID: "1", LISTEN_FDNAMES: "a:b" },
      wrap: (args) => ["/bin/bash", ["-c", 'exec 30</dev/null 200</dev/null; exec "$0" "$@"', process.execPath, MAIN, ...args]],
    });
    const closedLine = envServer.stderr().split("\n").find((l) => l.includes("closed file descriptors inherited"));
    expect(closedLine, envServer.stderr()).toBeDefined();
    expect((JSON.parse(closedLine!) as { fds: number[] }).fds).toEqual(expect.arrayContaining([30, 200]));
    const client = createShimClient(envServer.socket);
    try {
      const id = fx.track(uniqueId("rs-hard-env"));
      const out = path.join(fx.dir, `${id}.out`);
      const pid = await client.create(id, { bundle: fx.bundle, stdout: out });
      // runc given NOTIFY_SOCKET makes <state dir>/notify and bind-mounts it into the container.
      expect(fs.readdirSync(path.join(fx.root, id)).sort()).toEqual(["exec.fifo", "state.json"]);
      await client.start(id);
      // Start answers at end of file on the exec fifo, which the kernel closes early in the init's
      // exec, while it is still closing runc init's other close-on-exec fds: wait for the exec to end.
      await waitFor(() => fs.readlinkSync(`/proc/${pid}/exe`).endsWith("/busybox"), 2000, "the init to exec the user process");
      await waitFor(() => fs.readdirSync(`/proc/${pid}/fd`).length <= 3, 2000, "runc init's own fds to be closed by the exec");
      const environ = fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").filter(Boolean);
      for (const name of ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]) {
        expect(environ.some((kv) => kv.startsWith(`${name}=`)), name).toBe(false);
      }
      // The user process holds its three stdio fds and nothing of the shim's.
      const fds = fs.readdirSync(`/proc/${pid}/fd`).sort();
      expect(fds).toEqual(["0", "1", "2"]);
      expect(fs.readlinkSync(`/proc/${pid}/fd/0`)).toBe("/dev/null");
      expect(fs.readlinkSync(`/proc/${pid}/fd/1`)).toBe(out);
      expect(fs.readlinkSync(`/proc/${pid}/fd/2`)).toBe("/dev/null");
      expect(await client.delete(id, { force: true })).toBe(pid);
      fx.forget(id);
    } finally {
      client.close();
      await envServer.stop();
    }
  });

  it("a runc that hangs is killed with its process group at --create-timeout, and Create answers DEADLINE_EXCEEDED", async () => {
    // A stand-in for runc that never returns, with a child of its own, and says who they are.
    const pids = path.join(fx.dir, "hung-runc.pids");
    const script = path.join(fx.dir, "hung-runc.sh");
    fs.writeFileSync(script, `#!/bin/sh\n[ "$1" = --version ] && { echo "runc version 0-hung"; exit 0; }\nsleep 600 &\necho "$$ $!" > ${pids}\nwait\n`, { mode: 0o755 });
    const hung = await startServer(fx.root, ["--runc", script, "--create-timeout", "700ms"]);
    const client = createShimClient(hung.socket);
    try {
      const id = uniqueId("rs-hard-hung");
      const t0 = performance.now();
      const e = await failure(client.create(id, { bundle: fx.bundle }, { deadlineMs: 10_000 }));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(650);
      expect([e.codeName, e.reason]).toEqual(["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"]);
      expect(e.details).toBe("create timed out after 700 ms (--create-timeout); runc was killed and what it left removed");
      const [runcPid, childPid] = fs.readFileSync(pids, "utf8").trim().split(" ").map(Number);
      await waitFor(() => procState(runcPid!) === undefined || procState(runcPid!) === "Z", 2000, "the stand-in runc to be killed");
      await waitFor(() => procState(childPid!) === undefined || procState(childPid!) === "Z", 2000, "its child to be killed with its group");
      expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
      expect(hung.proc.exitCode).toBe(null);
    } finally {
      client.close();
      await hung.stop();
    }
  });

  it("a forced Delete whose init cannot die answers `container init still running` after 10 s and removes nothing", { timeout: 30_000 }, async () => {
    // runc's recipe: the init frozen through a freezer state.json does not name, so the SIGKILL stays pending.
    const id = await makeIn(fx, shim, "running");
    const stateFile = path.join(fx.root, id, "state.json");
    const original = fs.readFileSync(stateFile, "utf8");
    const state = JSON.parse(original) as { cgroup_paths: Record<string, string> };
    const realFreezer = state.cgroup_paths.freezer!;
    state.cgroup_paths.freezer = path.join("/sys/fs/cgroup/freezer", uniqueId("rs-hard-nofreezer"));
    fs.writeFileSync(`${stateFile}.tmp`, JSON.stringify(state));
    fs.renameSync(`${stateFile}.tmp`, stateFile);
    fs.writeFileSync(path.join(realFreezer, "freezer.state"), "FROZEN");
    try {
      const t0 = performance.now();
      const e = await failure(shim.delete(id, { force: true }));
      const took = performance.now() - t0;
      expect([e.codeName, e.details, e.reason]).toEqual(["FAILED_PRECONDITION", "container init still running", "CONTAINER_NOT_STOPPED"]);
      expect(took).toBeGreaterThanOrEqual(10_000);
      expect(took).toBeLessThan(12_000);
      expect(fs.existsSync(stateFile)).toBe(true);
      expect(fs.existsSync(realFreezer)).toBe(true);
    } finally {
      fs.writeFileSync(path.join(realFreezer, "freezer.state"), "THAWED"); // the pending SIGKILL lands
      fs.writeFileSync(`${stateFile}.tmp`, original);
      fs.renameSync(`${stateFile}.tmp`, stateFile);
    }
    await waitFor(() => fx.judge(id) === "stopped", 5000, "the init to die once thawed");
    expect(await shim.delete(id)).toBeGreaterThan(0);
    fx.forget(id);
  });

  it("with --json, usage errors are a JSON object on stderr (exit 2)", async () => {
    for (const args of [["state", "--json"], ["state", "c1", "--bogus", "--json"], ["state", "c1", "--timeout", "xyz", "--json"], ["frob", "--json"]]) {
      const r = await runMain([...args, "--address", path.join(os.tmpdir(), "rs-none.sock")]);
      expect(r.code, args.join(" ")).toBe(2);
      const parsed = JSON.parse(r.stderr.trim()) as { code: string; message: string };
      expect(parsed.code, args.join(" ")).toBe("USAGE");
      expect(parsed.message.length, args.join(" ")).toBeGreaterThan(5);
    }
  });
});
