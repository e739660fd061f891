/**
 * Helpers of the lifecycle tests (Create, Kill, Pause, Resume, Delete against
 * real runc): containers made through the shim are tracked and removed with
 * `runc resume` + `runc delete -f` at the end; runc is asked what it sees.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import type { ShimClient, WatchEventView } from "../../src/client/client.js";
import { procState, RuncFixture, uniqueId } from "./runc.js";

/** What runc says of a container: its status, or `absent` when `runc state` says it does not exist. */
export type Judged = "created" | "running" | "paused" | "stopped" | "absent";

/** runc's `msg="…"` of a failed command (text log format), unescaped. */
export function runcMessage(stderr: string): string | undefined {
  const m = /level=error msg="((?:[^"\\]|\\.)*)"/.exec(stderr);
  return m === null ? undefined : (JSON.parse(`"${m[1]}"`) as string);
}

/** A RuncFixture whose containers may also be made through the shim (tracked here and deleted with runc at the end). */
export class LifeFixture extends RuncFixture {
  private readonly shimIds = new Set<string>();

  /** Remembers an id for {@link cleanupAll}. */
  track(id: string): string {
    this.shimIds.add(id);
    return id;
  }

  /** `runc state ID` → status, or `absent` (`container does not exist`); anything else throws. */
  judge(id: string): Judged {
    const r = this.tryRunc("state", id);
    if (r.status === 0) return (JSON.parse(r.stdout) as { status: Judged }).status;
    if (runcMessage(r.stderr) === "container does not exist") return "absent";
    throw new Error(`runc state ${id} failed: ${r.stderr}`);
  }

  /** The ids `runc list` shows. */
  listed(): string[] {
    const out = this.runc("list", "--format", "json").trim();
    const arr = (out === "" || out === "null" ? [] : JSON.parse(out)) as { id: string }[] | null;
    return (arr ?? []).map((c) => c.id);
  }

  /** `runc list`'s status of `id`, or `absent`. */
  listedStatus(id: string): Judged {
    const out = this.runc("list", "--format", "json").trim();
    const arr = (out === "" || out === "null" ? [] : JSON.parse(out)) as { id: string; status: Judged }[] | null;
    return (arr ?? []).find((c) => c.id === id)?.status ?? "absent";
  }

  /** The `cgroup_paths` values of a container's state.json (read before a delete). */
  cgroupPaths(id: string): string[] {
    const s = JSON.parse(fs.readFileSync(path.join(this.root, id, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
    return Object.values(s.cgroup_paths).filter((p) => p !== "");
  }

  /** The freezer.state of a container (v1), or undefined when its freezer dir is gone. */
  freezerState(id: string): string | undefined {
    const s = JSON.parse(fs.readFileSync(path.join(this.root, id, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
    try {
      return fs.readFileSync(path.join(s.cgroup_paths.freezer!, "freezer.state"), "utf8").trim();
    } catch {
      return undefined;
    }
  }

  /** Resumes and force-deletes every tracked container, then what {@link RuncFixture.cleanup} does. */
  cleanupAll(): void {
    for (const id of this.shimIds) {
      spawnSync("runc", ["--root", this.root, "resume", id], { stdio: "ignore" });
      spawnSync("runc", ["--root", this.root, "delete", "-f", id], { stdio: "ignore", timeout: 30_000 });
      // Empty cgroup dirs a failed test leaked (rmdir removes only empty cgroups).
      for (const dir of cgroupDirsNamed(id)) {
        try {
          fs.rmdirSync(dir);
        } catch {
          // not empty: leave it
        }
      }
    }
    this.shimIds.clear();
    this.cleanup();
  }
}

/**
 * Asserts that runc (`runc state` and `runc list`) and the shim's State agree
 * that `id` is `expected`.
 */
export async function expectJudged(fx: LifeFixture, shim: ShimClient, id: string, expected: Judged): Promise<void> {
  expect([id, fx.judge(id)]).toEqual([id, expected]);
  expect([id, fx.listedStatus(id)]).toEqual([id, expected]);
  if (expected === "absent") {
    expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
    await expect(shim.state(id)).rejects.toMatchObject({ codeName: "NOT_FOUND" });
  } else {
    expect((await shim.state(id)).status).toBe(expected);
  }
}

/**
 * Every cgroup dir named `id` in any hierarchy under /sys/fs/cgroup (at most
 * `depth` levels below a hierarchy's root): what runc made for a container
 * whose `cgroup_paths` were never recorded.
 */
export function cgroupDirsNamed(id: string, depth = 4): string[] {
  const found: string[] = [];
  const walk = (dir: string, left: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (e.name === id) found.push(p);
      else if (left > 0) walk(p, left - 1);
    }
  };
  walk("/sys/fs/cgroup", depth + 1);
  return found;
}

/** Pids of live (not zombie) processes whose /proc/PID/cgroup names a cgroup ending in `/id`. */
export function processesInCgroupNamed(id: string): number[] {
  const pids: number[] = [];
  for (const n of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const lines = fs.readFileSync(`/proc/${n}/cgroup`, "utf8").split("\n");
      if (lines.some((l) => l.endsWith(`/${id}`)) && !isGoneOrZombie(Number(n))) pids.push(Number(n));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** A process that no longer runs: gone, or a zombie (pid 1 here does not reap). */
export function isGoneOrZombie(pid: number): boolean {
  const s = procState(pid);
  return s === undefined || s === "Z" || s === "X";
}

/**
 * Makes a container through the shim in `status`, from `bundle`:
 * created (Create), running (+ Start), paused (+ Pause), stopped (+ Kill KILL).
 */
export async function makeIn(fx: LifeFixture, shim: ShimClient, status: Exclude<Judged, "absent">, bundle = fx.bundle, prefix = "rs-lc"): Promise<string> {
  const id = fx.track(uniqueId(prefix));
  await shim.create(id, { bundle });
  if (status !== "created") await shim.start(id);
  if (status === "paused") await shim.pause(id);
  if (status === "stopped") await shim.kill(id, "KILL");
  expect(fx.judge(id)).toBe(status);
  return id;
}

/** An event received on a watch, with the time it arrived. */
export interface Received extends WatchEventView {
  at: number;
}

/** Reads a watch in the background, timestamping each event as it arrives. */
export function collect(events: AsyncIterable<WatchEventView>) {
  const got: Received[] = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const ev of events) got.push({ ...ev, at: performance.now() });
    } catch (e) {
      failure = e;
    }
  })();
  return {
    got,
    done,
    failure: () => failure,
    /** Waits until `pred` holds for the events so far (polling every 2 ms), at most `ms`. */
    async until(pred: (evs: Received[]) => boolean, ms = 5000): Promise<void> {
      const t0 = Date.now();
      while (!pred(got)) {
        if (failure !== undefined) throw failure;
        if (Date.now() - t0 > ms) throw new Error(`timed out; got ${JSON.stringify(got.map((e) => [e.kind, e.id, e.state?.status]))}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}

/** Writes a bundle like {@link RuncFixture}'s into `fx.dir/<name>`, with `args` and optional hooks. */
export { makeBundle } from "./runc.js";
