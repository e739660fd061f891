/**
 * Create, Kill, Pause, Resume and Delete through a real server process and
 * the typed client, with real runc 1.1.5 as the judge: after every call
 * `runc state` and `runc list` must agree with what the call answered.
 * Races, the parallel lifecycles and Watch are in lifecycle-races.test.ts.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { failure, outcome } from "../helpers/calls.js";
import { cgroupDirsNamed, expectJudged, isGoneOrZombie, LifeFixture, makeIn, processesInCgroupNamed, runcMessage, type Judged } from "../helpers/lifecycle.js";
import { makeBundle, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";
import { startServer, type ServerProcess } from "../helpers/server.js";

/** A settled call as `OK` or its code name. */
const answerOf = async (p: Promise<unknown>): Promise<string> => {
  const r = await outcome(p);
  return r.ok ? "OK" : r.e.codeName;
};

/** An init that exits 7 on SIGTERM, saying so on its stdout first. */
// Says "ready" once its trap is set: a SIGTERM before that would be dropped (an init without a handler).
const TRAP_TERM = ["/bin/sh", "-c", 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.2; done'];

type Status = Exclude<Judged, "absent">;
type Verb = "kill" | "pause" | "resume" | "delete" | "delete --force" | "create" | "start";
/** What a call answers: OK, or [code, message, reason] (`<id>` stands for the container id). */
type Answer = "OK" | readonly [string, string, string];
const NOT_RUNNING = ["FAILED_PRECONDITION", "container not running", "CONTAINER_NOT_RUNNING"] as const;
const NOT_PAUSED = ["FAILED_PRECONDITION", "container not paused", "CONTAINER_NOT_PAUSED"] as const;
const EXISTS = ["ALREADY_EXISTS", "container with given ID already exists", "CONTAINER_EXISTS"] as const;

/**
 * Every verb from every status: the answer, and the status runc sees after.
 * Kill sends SIGKILL here (SIGTERM and the other signals have their own tests).
 */
const MATRIX: ReadonlyArray<readonly [Status, Verb, Answer, Judged]> = [
  ["created", "kill", "OK", "stopped"],
  ["created", "pause", "OK", "paused"],
  ["created", "resume", NOT_PAUSED, "created"],
  ["created", "delete", "OK", "absent"],
  ["created", "delete --force", "OK", "absent"],
  ["created", "create", EXISTS, "created"],
  ["created", "start", "OK", "running"],
  ["running", "kill", "OK", "stopped"],
  ["running", "pause", "OK", "paused"],
  ["running", "resume", NOT_PAUSED, "running"],
  ["running", "delete", ["FAILED_PRECONDITION", "cannot delete container <id> that is not stopped: running", "CONTAINER_NOT_STOPPED"], "running"],
  ["running", "delete --force", "OK", "absent"],
  ["running", "create", EXISTS, "running"],
  ["running", "start", ["FAILED_PRECONDITION", "cannot start an already running container", "CONTAINER_RUNNING"], "running"],
  ["paused", "kill", "OK", "stopped"],
  ["paused", "pause", NOT_RUNNING, "paused"],
  ["paused", "resume", "OK", "running"],
  ["paused", "delete", ["FAILED_PRECONDITION", "cannot delete container <id> that is not stopped: paused", "CONTAINER_NOT_STOPPED"], "paused"],
  ["paused", "delete --force", "OK", "absent"],
  ["paused", "create", EXISTS, "paused"],
  ["paused", "start", ["FAILED_PRECONDITION", "cannot start a container in the paused state", "CONTAINER_PAUSED"], "paused"],
  ["stopped", "kill", NOT_RUNNING, "stopped"],
  ["stopped", "pause", NOT_RUNNING, "stopped"],
  ["stopped", "resume", NOT_PAUSED, "stopped"],
  ["stopped", "delete", "OK", "absent"],
  ["stopped", "delete --force", "OK", "absent"],
  ["stopped", "create", EXISTS, "stopped"],
  ["stopped", "start", ["FAILED_PRECONDITION", "cannot start a container that has stopped", "CONTAINER_STOPPED"], "stopped"],
];

/** The runc command of a verb, to check that runc refuses what the shim refused, with the same words. */
const RUNC_ARGS: Record<Exclude<Verb, "create">, (id: string) => string[]> = {
  kill: (id) => ["kill", id, "KILL"],
  pause: (id) => ["pause", id],
  resume: (id) => ["resume", id],
  delete: (id) => ["delete", id],
  "delete --force": (id) => ["delete", "--force", id],
  start: (id) => ["start", id],
};

describe.skipIf(skipRunc())("Create, Kill, Pause, Resume, Delete against real runc", () => {
  let fx: LifeFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  let trapBundle: string;
  /** Creates and starts a container of the trapping bundle, and waits until its trap is set. */
  let startTrapped: (id: string, out: string) => Promise<void>;

  beforeAll(async () => {
    fx = new LifeFixture("rs-life-");
    trapBundle = makeBundle(path.join(fx.dir, "trap"), TRAP_TERM);
    startTrapped = async (id, out) => {
      await shim.create(id, { bundle: trapBundle, stdout: out });
      await shim.start(id);
      await waitFor(() => fs.existsSync(out) && fs.readFileSync(out, "utf8") === "ready\n", 5000, "the init to set its SIGTERM trap");
    };
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    fx?.cleanupAll();
  });

  const call = (verb: Verb, id: string): Promise<unknown> => {
    switch (verb) {
      case "kill":
        return shim.kill(id, "KILL");
      case "pause":
        return shim.pause(id);
      case "resume":
        return shim.resume(id);
      case "delete":
        return shim.delete(id);
      case "delete --force":
        return shim.delete(id, { force: true });
      case "create":
        return shim.create(id, { bundle: fx.bundle });
      case "start":
        return shim.start(id);
    }
  };

  describe("every verb from every status, runc judging", () => {
    it.each(MATRIX)("%s, %s → %j, then %s", async (from, verb, answer, after) => {
      const id = await makeIn(fx, shim, from);
      const r = await outcome(call(verb, id));
      if (answer === "OK") {
        expect(r.ok ? "OK" : [r.e.codeName, r.e.details, r.e.reason]).toBe("OK");
      } else {
        const want = [answer[0], answer[1].replace("<id>", id), answer[2]];
        expect(r.ok ? "OK" : [r.e.codeName, r.e.details, r.e.reason]).toEqual(want);
        if (!r.ok) expect(r.e.metadata).toEqual({ container_id: id });
        // runc refuses the same call in the same words, and changes nothing either.
        if (verb !== "create") {
          const rr = fx.tryRunc(...RUNC_ARGS[verb](id));
          expect([rr.status, runcMessage(rr.stderr)]).toEqual([1, want[1]]);
        }
      }
      await expectJudged(fx, shim, id, after);
    });

    it("a created container that is paused: Delete refuses without force, Resume makes it created again", async () => {
      const id = await makeIn(fx, shim, "created");
      await shim.pause(id);
      await expectJudged(fx, shim, id, "paused");
      const e = await failure(shim.delete(id));
      expect([e.codeName, e.details, e.reason]).toEqual(["FAILED_PRECONDITION", `cannot delete container ${id} that is not stopped: paused`, "CONTAINER_NOT_STOPPED"]);
      await shim.resume(id);
      await expectJudged(fx, shim, id, "created");
    });
  });

  describe("Kill", () => {
    it("signal 0 (and no signal) sends SIGTERM", async () => {
      for (const signal of [0, undefined]) {
        const out = path.join(fx.dir, `${uniqueId("out")}.txt`);
        const id = fx.track(uniqueId("rs-lk"));
        await startTrapped(id, out);
        await shim.kill(id, signal);
        await waitFor(() => fx.judge(id) === "stopped", 5000, "the trapping init to exit on SIGTERM");
        expect(fs.readFileSync(out, "utf8")).toBe("ready\ngot-term\n");
        await expectJudged(fx, shim, id, "stopped");
      }
    });

    it("signal 65 is INVALID_ARGUMENT and nothing is signalled", async () => {
      const out = path.join(fx.dir, `${uniqueId("out")}.txt`);
      const id = fx.track(uniqueId("rs-lk"));
      await startTrapped(id, out);
      const e = await failure(shim.kill(id, 65));
      expect([e.codeName, e.details, e.reason]).toEqual(["INVALID_ARGUMENT", "invalid signal 65: expected 1-64 (0 means SIGTERM)", "INVALID_ARGUMENT"]);
      const e2 = await failure(shim.kill(id, 65, { all: true }));
      expect(e2.codeName).toBe("INVALID_ARGUMENT");
      await new Promise((r) => setTimeout(r, 400)); // two rounds of the init's loop: a SIGTERM would have landed
      expect(fs.readFileSync(out, "utf8")).toBe("ready\n");
      await expectJudged(fx, shim, id, "running");
    });

    it("TERM to a created container stops it (runc init dies)", async () => {
      const id = await makeIn(fx, shim, "created");
      const pid = fx.initPid(id);
      await shim.kill(id, "TERM");
      await waitFor(() => fx.judge(id) === "stopped", 5000, "runc to see the created container stopped");
      expect(isGoneOrZombie(pid)).toBe(true);
      await expectJudged(fx, shim, id, "stopped");
    });

    it("KILL to a paused container thaws it and stops it", async () => {
      const id = await makeIn(fx, shim, "paused");
      expect(fx.freezerState(id)).toBe("FROZEN");
      await shim.kill(id, "KILL");
      expect(fx.freezerState(id)).toBe("THAWED");
      await expectJudged(fx, shim, id, "stopped");
    });

    it("--all TERM to a paused container keeps it paused (runc would resume it); the TERM lands on Resume", async () => {
      const out = path.join(fx.dir, `${uniqueId("out")}.txt`);
      const id = fx.track(uniqueId("rs-lk"));
      await startTrapped(id, out);
      await shim.pause(id);
      await shim.kill(id, "TERM", { all: true });
      await new Promise((r) => setTimeout(r, 400));
      expect(fx.freezerState(id)).toBe("FROZEN");
      await expectJudged(fx, shim, id, "paused");
      expect(fs.readFileSync(out, "utf8")).toBe("ready\n");
      await shim.resume(id);
      await waitFor(() => fx.judge(id) === "stopped", 5000, "the pending SIGTERM to end the init after Resume");
      expect(fs.readFileSync(out, "utf8")).toBe("ready\ngot-term\n");
      await expectJudged(fx, shim, id, "stopped");
    });

    it("--all KILL to a paused container keeps it paused too (frozen, the SIGKILL pending); Resume lets it die", async () => {
      const id = await makeIn(fx, shim, "paused");
      const pid = fx.initPid(id);
      await shim.kill(id, "KILL", { all: true });
      await new Promise((r) => setTimeout(r, 300));
      expect(fx.freezerState(id)).toBe("FROZEN");
      await expectJudged(fx, shim, id, "paused");
      await shim.resume(id);
      await waitFor(() => isGoneOrZombie(pid), 5000, "the init to die once thawed");
      await expectJudged(fx, shim, id, "stopped");
    });

    it("--all TERM to a running container signals every process and leaves it thawed", async () => {
      const out = path.join(fx.dir, `${uniqueId("out")}.txt`);
      const id = fx.track(uniqueId("rs-lk"));
      await startTrapped(id, out);
      await shim.kill(id, "TERM", { all: true });
      expect(fx.freezerState(id)).toBe("THAWED");
      await waitFor(() => fx.judge(id) === "stopped", 5000, "the trapping init to exit on SIGTERM");
      expect(fs.readFileSync(out, "utf8")).toBe("ready\ngot-term\n");
      await expectJudged(fx, shim, id, "stopped");
    });

    it("--all of a stopped container whose cgroup is still there answers OK, as runc", async () => {
      const id = await makeIn(fx, shim, "stopped");
      await shim.kill(id, "KILL", { all: true });
      expect(fx.tryRunc("kill", "--all", id, "KILL").status).toBe(0);
      await expectJudged(fx, shim, id, "stopped");
    });

    it("an unknown id is NOT_FOUND, even with a bad signal (runc loads first)", async () => {
      const e = await failure(shim.kill("rs-lc-no-such", 65));
      expect([e.codeName, e.details, e.reason]).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS"]);
    });
  });

  describe("Delete", () => {
    it("of an unknown id: NOT_FOUND without force, OK with", async () => {
      const id = uniqueId("rs-ld");
      const e = await failure(shim.delete(id));
      expect([e.codeName, e.details, e.reason]).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS"]);
      expect(await shim.delete(id, { force: true })).toBe(0);
      expect(fx.judge(id)).toBe("absent");
    });

    it("removes a state dir without state.json: NOT_FOUND without force, OK with", async () => {
      for (const force of [false, true]) {
        const id = uniqueId("rs-ld");
        const dir = path.join(fx.root, id);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "exec.fifo"), "");
        const r = await outcome(shim.delete(id, { force }));
        expect(r.ok ? "OK" : [r.e.codeName, r.e.details]).toEqual(force ? "OK" : ["NOT_FOUND", "container does not exist"]);
        expect(fs.existsSync(dir)).toBe(false);
      }
    });

    it.each([
      ["created", false],
      ["running", true],
      ["paused", true],
      ["stopped", false],
    ] as const)("of a %s container (force %s) leaves no state dir, cgroup dir or process", async (from, force) => {
      const id = await makeIn(fx, shim, from);
      const pid = fx.initPid(id);
      const cgroups = fx.cgroupPaths(id);
      // v1 hybrid: every controller plus name=systemd and the unified dir.
      expect(cgroups.length).toBeGreaterThan(5);
      for (const dir of cgroups) expect(fs.existsSync(dir)).toBe(true);
      expect(await shim.delete(id, { force })).toBe(pid);
      expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
      expect(cgroups.filter((dir) => fs.existsSync(dir))).toEqual([]);
      expect(isGoneOrZombie(pid)).toBe(true);
      expect(fx.listed()).not.toContain(id);
      await expectJudged(fx, shim, id, "absent");
    });
  });

  describe("poststop hooks", () => {
    it("run exactly once, at Delete (not at Kill), with the OCI state on stdin", async () => {
      const dir = path.join(fx.dir, uniqueId("hook"));
      const log = path.join(dir, "hook.log");
      const bundle = makeBundle(dir, ["/bin/busybox", "sleep", "3600"], {
        poststop: [{ path: "/bin/sh", args: ["sh", "-c", `/bin/cat >> ${log}; echo >> ${log}`] }],
      });
      const id = fx.track(uniqueId("rs-lh"));
      await shim.create(id, { bundle });
      await shim.start(id);
      await shim.kill(id, "KILL");
      await expectJudged(fx, shim, id, "stopped");
      await new Promise((r) => setTimeout(r, 200));
      expect(fs.existsSync(log)).toBe(false);
      await shim.delete(id);
      await waitFor(() => fs.existsSync(log), 5000, "the hook's log");
      await new Promise((r) => setTimeout(r, 200)); // a second run would show by now
      expect(fs.readFileSync(log, "utf8")).toBe(`{"ociVersion":"1.0.2-dev","id":"${id}","status":"stopped","bundle":"${bundle}"}\n`);
    });

    it("a hook that hangs is killed at its timeout with its process group, and Delete answers OK with a warning", async () => {
      const dir = path.join(fx.dir, uniqueId("hook"));
      const pidFile = path.join(dir, "sleep.pid");
      const bundle = makeBundle(dir, ["/bin/busybox", "sleep", "3600"], {
        poststop: [{ path: "/bin/sh", args: ["sh", "-c", `/bin/sleep 100 & echo $! > ${pidFile}; wait`], timeout: 1 }],
      });
      const id = await makeIn(fx, shim, "stopped", bundle);
      const t0 = performance.now();
      expect(await shim.delete(id)).toBeGreaterThan(0);
      const took = performance.now() - t0;
      expect(took).toBeGreaterThanOrEqual(1000);
      expect(took).toBeLessThan(10_000);
      const sleepPid = Number(fs.readFileSync(pidFile, "utf8"));
      expect(sleepPid).toBeGreaterThan(0);
      await waitFor(() => isGoneOrZombie(sleepPid), 2000, "the hook's sleep to be killed");
      await waitFor(() => server.stderr().includes("hook ran past specified timeout of 1.0s"), 2000, "the warning in the server log");
      const line = server.stderr().split("\n").find((l) => l.includes("hook ran past specified timeout of 1.0s"))!;
      expect(JSON.parse(line)).toMatchObject({ level: 40, msg: "error running hook #0: hook ran past specified timeout of 1.0s" });
      await expectJudged(fx, shim, id, "absent");
    });
  });

  describe("Create", () => {
    it("sends the init's stdout and stderr to the files given", async () => {
      const dir = path.join(fx.dir, uniqueId("stdio"));
      const bundle = makeBundle(dir, ["/bin/sh", "-c", "echo out; echo err >&2"]);
      const [stdout, stderr] = [path.join(dir, "out.txt"), path.join(dir, "err.txt")];
      const id = fx.track(uniqueId("rs-lcr"));
      const pid = await shim.create(id, { bundle, stdout, stderr });
      expect(pid).toBe(fx.initPid(id));
      await expectJudged(fx, shim, id, "created");
      await shim.start(id);
      await waitFor(() => fx.judge(id) === "stopped", 5000, "the init to exit");
      expect(fs.readFileSync(stdout, "utf8")).toBe("out\n");
      expect(fs.readFileSync(stderr, "utf8")).toBe("err\n");
      await shim.delete(id);
      await expectJudged(fx, shim, id, "absent");
    });

    it("answers ALREADY_EXISTS for a leftover state dir without state.json (as runc); Delete clears it", async () => {
      const id = fx.track(uniqueId("rs-lcr"));
      fs.mkdirSync(path.join(fx.root, id));
      const e = await failure(shim.create(id, { bundle: fx.bundle }));
      expect([e.codeName, e.details, e.reason]).toEqual(EXISTS);
      const rr = fx.tryRunc("create", "--bundle", fx.bundle, id);
      expect([rr.status, runcMessage(rr.stderr)]).toEqual([1, "runc create failed: container with given ID already exists"]);
      expect((await failure(shim.delete(id))).codeName).toBe("NOT_FOUND");
      expect(await shim.create(id, { bundle: fx.bundle })).toBe(fx.initPid(id));
      await expectJudged(fx, shim, id, "created");
    });

    it("answers INVALID_ARGUMENT for a missing bundle, and creates nothing", async () => {
      const id = uniqueId("rs-lcr");
      const e = await failure(shim.create(id, { bundle: path.join(fx.dir, "no-such-bundle") }));
      expect([e.codeName, e.details, e.reason]).toEqual(["INVALID_ARGUMENT", `bundle ${path.join(fx.dir, "no-such-bundle")} does not exist`, "INVALID_ARGUMENT"]);
      expect(fx.judge(id)).toBe("absent");
      expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
    });

    it("answers INVALID_ARGUMENT for process.terminal true, and creates nothing", async () => {
      const bundle = makeBundle(path.join(fx.dir, uniqueId("tty")));
      const config = JSON.parse(fs.readFileSync(path.join(bundle, "config.json"), "utf8")) as { process: { terminal: boolean } };
      config.process.terminal = true;
      fs.writeFileSync(path.join(bundle, "config.json"), JSON.stringify(config));
      const id = uniqueId("rs-lcr");
      const e = await failure(shim.create(id, { bundle }));
      expect([e.codeName, e.reason]).toEqual(["INVALID_ARGUMENT", "INVALID_ARGUMENT"]);
      expect(e.details).toContain("process.terminal");
      expect(fx.judge(id)).toBe("absent");
      expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
    });

    it("passes on runc's failure (an executable that does not exist) as FAILED_PRECONDITION RUNC_FAILED, leaving nothing", async () => {
      const bundle = makeBundle(path.join(fx.dir, uniqueId("noexec")), ["nonexistent-binary"]);
      const before = fs.readdirSync(fx.root).sort();
      const id = uniqueId("rs-lcr");
      const e = await failure(shim.create(id, { bundle }));
      expect([e.codeName, e.reason]).toEqual(["FAILED_PRECONDITION", "RUNC_FAILED"]);
      expect(e.details).toContain('exec: "nonexistent-binary": executable file not found in $PATH');
      expect(e.metadata).toEqual({ container_id: id });
      expect(fs.readdirSync(fx.root).sort()).toEqual(before);
      expect(fx.judge(id)).toBe("absent");
      // The id is free again.
      expect(await shim.create(fx.track(id), { bundle: fx.bundle })).toBe(fx.initPid(id));
      await expectJudged(fx, shim, id, "created");
    });
    it("a Create cut short by the client's deadline leaves nothing: no state dir, cgroup dir or process", async () => {
      // Deadlines from before runc makes the cgroups to after it wrote state.json.
      for (const ms of [10, 20, 25, 30, 35, 40, 50, 60, 80, 100]) {
        const id = fx.track(uniqueId("rs-lcd"));
        const r = await outcome(shim.create(id, { bundle: fx.bundle }, { deadlineMs: ms }));
        const got = r.ok ? "OK" : r.e.codeName;
        expect(["OK", "DEADLINE_EXCEEDED"]).toContain(got);
        if (got === "OK") {
          await shim.delete(id);
          continue;
        }
        // The server may still be cleaning up after the client gave up: its lock orders this Delete after it.
        expect(await answerOf(shim.delete(id, { force: true }))).toBe("OK");
        expect([ms, fx.judge(id)]).toEqual([ms, "absent"]);
        expect([ms, fs.existsSync(path.join(fx.root, id))]).toEqual([ms, false]);
        expect([ms, cgroupDirsNamed(id)]).toEqual([ms, []]);
        expect([ms, processesInCgroupNamed(id)]).toEqual([ms, []]);
      }
    });
  });

  describe("interop with runc", () => {
    it("a container created by the shim is started, paused, killed and deleted by runc", async () => {
      const dir = path.join(fx.dir, uniqueId("interop"));
      const log = path.join(dir, "hook.log");
      const bundle = makeBundle(dir, ["/bin/busybox", "sleep", "3600"], {
        poststop: [{ path: "/bin/sh", args: ["sh", "-c", `/bin/cat >> ${log}; echo >> ${log}`] }],
      });
      const id = fx.track(uniqueId("rs-li"));
      const pid = await shim.create(id, { bundle });
      expect(fx.state(id)).toMatchObject({ status: "created", pid, bundle });
      fx.runc("start", id);
      await expectJudged(fx, shim, id, "running");
      fx.runc("pause", id);
      await expectJudged(fx, shim, id, "paused");
      fx.runc("kill", id, "KILL");
      await waitFor(() => fx.judge(id) === "stopped", 5000, "runc to see it stopped");
      await expectJudged(fx, shim, id, "stopped");
      const cgroups = fx.cgroupPaths(id);
      fx.runc("delete", id);
      await expectJudged(fx, shim, id, "absent");
      expect(cgroups.filter((d) => fs.existsSync(d))).toEqual([]);
      // runc's own poststop hook saw the same state the shim's would send.
      expect(fs.readFileSync(log, "utf8")).toBe(`{"ociVersion":"1.0.2-dev","id":"${id}","status":"stopped","bundle":"${bundle}"}\n`);
    });

    it("a container created by runc is started, paused, resumed, killed and deleted by the shim", async () => {
      const id = fx.create(uniqueId("rs-li"));
      const pid = fx.initPid(id);
      expect(await shim.start(id)).toBe(pid);
      expect(fx.judge(id)).toBe("running");
      await shim.pause(id);
      expect(fx.judge(id)).toBe("paused");
      await shim.resume(id);
      expect(fx.judge(id)).toBe("running");
      await shim.kill(id, "KILL");
      expect(fx.judge(id)).toBe("stopped");
      const cgroups = fx.cgroupPaths(id);
      expect(await shim.delete(id)).toBe(pid);
      fx.forget(id);
      await expectJudged(fx, shim, id, "absent");
      expect(cgroups.filter((d) => fs.existsSync(d))).toEqual([]);
      expect(isGoneOrZombie(pid)).toBe(true);
    });
  });
});
