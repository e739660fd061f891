/**
 * Lifecycle calls racing each other through a real server process, 20 full
 * lifecycles in parallel (nothing left behind: containers, cgroup dirs, fds,
 * child processes), and Watch seeing every change an operation makes. runc
 * 1.1.5 judges the end states.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { outcome } from "../helpers/calls.js";
import { collect, expectJudged, isGoneOrZombie, LifeFixture, makeIn, type Judged, type Received } from "../helpers/lifecycle.js";
import { skipRunc, uniqueId, waitFor } from "../helpers/runc.js";
import { startServer, type ServerProcess } from "../helpers/server.js";

/** A settled call as `OK` or `CODE: message`. */
async function answer(p: Promise<unknown>): Promise<string> {
  const r = await outcome(p);
  return r.ok ? "OK" : `${r.e.codeName}: ${r.e.details}`;
}

const ROUNDS = 4;
/** Which outcomes each race produced (logged, so a run shows which orders it exercised). */
const seen: Record<string, string[]> = {};
const note = (race: string, what: unknown): void => {
  (seen[race] ??= []).push(JSON.stringify(what));
};

describe.skipIf(skipRunc())("lifecycle races, parallel lifecycles and Watch against real runc", () => {
  let fx: LifeFixture;
  let server: ServerProcess;
  let shim: ShimClient;

  beforeAll(async () => {
    fx = new LifeFixture("rs-liferace-");
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    console.log("race outcomes:", seen);
    shim?.close();
    await server?.stop();
    fx?.cleanupAll();
  });

  describe("races: every call answers and runc agrees with the end state", () => {
    it("Delete racing Start", async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const id = await makeIn(fx, shim, "created");
        const calls = [() => shim.start(id), () => shim.delete(id)];
        if (i % 2 === 1) calls.reverse();
        const [a, b] = await Promise.all(calls.map((c) => answer(c())));
        const [start, del] = i % 2 === 1 ? [b, a] : [a, b];
        const outcomes: Record<string, Judged> = {
          [JSON.stringify(["OK", `FAILED_PRECONDITION: cannot delete container ${id} that is not stopped: running`])]: "running",
          [JSON.stringify(["NOT_FOUND: container does not exist", "OK"])]: "absent",
        };
        note("delete/start", [start, del]);
        const end = outcomes[JSON.stringify([start, del])];
        expect(end, JSON.stringify([start, del])).toBeDefined();
        await expectJudged(fx, shim, id, end!);
      }
    });

    it("Kill racing Delete (with and without force)", async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const force = i % 2 === 0;
        const deleteFirst = i >= 2; // the order the calls are sent in (the server's lock decides the rest)
        const id = await makeIn(fx, shim, "running");
        const pid = fx.initPid(id);
        const calls = [() => answer(shim.kill(id, "KILL")), () => answer(shim.delete(id, { force }))];
        const [kill, del] = deleteFirst
          ? await Promise.all(calls.reverse().map((c) => c())).then(([d, k]) => [k!, d!])
          : await Promise.all(calls.map((c) => c()));
        const outcomes: Record<string, Judged> = force
          ? {
              [JSON.stringify(["OK", "OK"])]: "absent",
              [JSON.stringify(["NOT_FOUND: container does not exist", "OK"])]: "absent",
            }
          : {
              [JSON.stringify(["OK", "OK"])]: "absent",
              [JSON.stringify(["OK", `FAILED_PRECONDITION: cannot delete container ${id} that is not stopped: running`])]: "stopped",
            };
        note(`kill/delete force=${force}${deleteFirst ? ", delete sent first" : ""}`, [kill, del]);
        const end = outcomes[JSON.stringify([kill, del])];
        expect(end, JSON.stringify([force, kill, del])).toBeDefined();
        await expectJudged(fx, shim, id, end!);
        expect(isGoneOrZombie(pid)).toBe(true);
      }
    });

    it("Pause racing Kill: never left frozen", async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const id = await makeIn(fx, shim, "running");
        const calls = [() => answer(shim.pause(id)), () => answer(shim.kill(id, "KILL"))];
        const [pause, kill] = i % 2 === 1
          ? await Promise.all(calls.reverse().map((c) => c())).then(([k, p]) => [p!, k!])
          : await Promise.all(calls.map((c) => c()));
        note("pause/kill", [pause, kill]);
        expect(["OK", "FAILED_PRECONDITION: container not running"]).toContain(pause);
        expect(kill).toBe("OK");
        await expectJudged(fx, shim, id, "stopped");
        expect(fx.freezerState(id)).toBe("THAWED");
      }
    });

    it("two Creates of one id: exactly one OK, the other ALREADY_EXISTS", async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const id = fx.track(uniqueId("rs-lr"));
        const answers = await Promise.all([answer(shim.create(id, { bundle: fx.bundle })), answer(shim.create(id, { bundle: fx.bundle }))]);
        expect(answers.sort()).toEqual(["ALREADY_EXISTS: container with given ID already exists", "OK"]);
        await expectJudged(fx, shim, id, "created");
      }
    });
  });

  it("20 full lifecycles in parallel leave no container, cgroup dir, fd or child process behind", async () => {
    const serverPid = server.proc.pid!;
    const fds = (): number => fs.readdirSync(`/proc/${serverPid}/fd`).length;
    const children = (): number[] =>
      fs
        .readdirSync("/proc")
        .filter((n) => /^\d+$/.test(n))
        .filter((n) => {
          try {
            const stat = fs.readFileSync(`/proc/${n}/stat`, "latin1");
            return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === serverPid;
          } catch {
            return false;
          }
        })
        .map(Number);
    // One lifecycle first, so whatever the server opens once (lazily) is in the baseline.
    const warm = await makeIn(fx, shim, "running");
    await shim.delete(warm, { force: true });
    await waitFor(() => children().length === 0, 5000, "the server to have no child process");
    const baseline = fds();

    const ids = Array.from({ length: 20 }, () => fx.track(uniqueId("rs-lp")));
    const cgroups = new Map<string, string[]>();
    const lifecycle = async (id: string): Promise<string[]> => {
      const steps: string[] = [];
      const step = async (name: string, p: Promise<unknown>): Promise<void> => {
        steps.push(`${name}: ${await answer(p)}`);
      };
      await step("create", shim.create(id, { bundle: fx.bundle }));
      cgroups.set(id, fx.cgroupPaths(id));
      await step("start", shim.start(id));
      await step("pause", shim.pause(id));
      await step("resume", shim.resume(id));
      await step("kill", shim.kill(id, "KILL"));
      await step("delete", shim.delete(id));
      return steps;
    };
    const results = await Promise.all(ids.map(lifecycle));
    for (const steps of results) {
      expect(steps).toEqual(["create: OK", "start: OK", "pause: OK", "resume: OK", "kill: OK", "delete: OK"]);
    }
    const listed = fx.listed();
    expect(ids.filter((id) => listed.includes(id) || fs.existsSync(path.join(fx.root, id)))).toEqual([]);
    const left = [...cgroups.values()].flat().filter((d) => fs.existsSync(d));
    expect(left).toEqual([]);
    expect(cgroups.size).toBe(20);
    await waitFor(() => children().length === 0, 5000, "the server to have no child process");
    await waitFor(() => fds() <= baseline, 5000, `the server's fds to return to ${baseline}`);
    expect(fds()).toBe(baseline);
  });

  it("Watch sees every change an operation makes within 100 ms of the call's answer", async () => {
    const ac = new AbortController();
    const all = collect(shim.watch("", { signal: ac.signal }));
    await all.until((evs) => evs.some((e) => e.kind === "synced"));
    const id = fx.track(uniqueId("rs-lw"));
    const one = collect(shim.watch(id, { signal: ac.signal }));
    await one.until((evs) => evs.some((e) => e.kind === "synced"));

    const latencies: Record<string, number> = {};
    const step = async (what: string, action: () => Promise<unknown>, kind: string, status: string | null): Promise<void> => {
      const seen = [all.got.length, one.got.length];
      await action();
      const t = performance.now();
      const match = (e: Received): boolean => e.id === id && e.kind === kind && (e.state?.status ?? null) === status;
      const found = await Promise.all(
        [all, one].map(async (c, i) => {
          await c.until((evs) => evs.slice(seen[i]).some(match));
          return c.got.slice(seen[i]).find(match)!;
        }),
      );
      latencies[what] = Math.round(Math.max(...found.map((e) => e.at - t)));
    };
    await step("create", () => shim.create(id, { bundle: fx.bundle }), "appeared", "created");
    await step("start", () => shim.start(id), "changed", "running");
    await step("pause", () => shim.pause(id), "changed", "paused");
    await step("resume", () => shim.resume(id), "changed", "running");
    await step("kill", () => shim.kill(id, "KILL"), "changed", "stopped");
    await step("delete", () => shim.delete(id), "removed", null);
    ac.abort();
    await Promise.all([all.done, one.done]);
    expect(all.failure()).toBeUndefined();
    expect(one.failure()).toBeUndefined();

    const expected = [
      ["appeared", "created"],
      ["changed", "running"],
      ["changed", "paused"],
      ["changed", "running"],
      ["changed", "stopped"],
      ["removed", null],
    ];
    const changesOf = (evs: Received[]) => evs.filter((e) => e.id === id && e.state?.status !== "pausing").map((e) => [e.kind, e.state?.status ?? null]);
    expect(changesOf(all.got)).toEqual(expected);
    expect(changesOf(one.got)).toEqual(expected);
    console.log("watch latencies after each call answered (ms):", latencies);
    for (const [what, ms] of Object.entries(latencies)) expect([what, ms < 100]).toEqual([what, true]);
  });
});
