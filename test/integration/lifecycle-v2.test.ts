/**
 * The cgroup v2 paths of Pause, Resume, Kill --all and Delete, on real cgroup2
 * files: this host is hybrid (v1 controllers plus a cgroup2 mount at
 * /sys/fs/cgroup/unified, state.json's `cgroup_paths[""]`), so a StateRoot told
 * the host is v2 freezes through `cgroup.freeze` / `cgroup.events`, reads the
 * container's processes from the unified `cgroup.procs`, and removes the
 * unified dir with the rest — the code a v2 host runs. The judge is the
 * kernel's own files (runc on this host reads the v1 freezer).
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { deleteContainer } from "../../src/runtime/ops/delete.js";
import { killContainer } from "../../src/runtime/ops/kill.js";
import { pauseContainer } from "../../src/runtime/ops/pause.js";
import { resumeContainer } from "../../src/runtime/ops/resume.js";
import { RuncFixture, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";

function unifiedDir(fx: RuncFixture, id: string): string {
  const state = JSON.parse(fs.readFileSync(path.join(fx.root, id, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> };
  return state.cgroup_paths[""]!;
}

const read = (file: string): string => fs.readFileSync(file, "utf8");

describe.skipIf(skipRunc())("the cgroup v2 paths, on this host's real cgroup2 mount", () => {
  let fx: RuncFixture;
  let root: StateRoot;

  beforeAll(() => {
    fx = new RuncFixture("runc-shim-v2-");
    root = new StateRoot(fx.root, "v2");
  });
  afterAll(() => fx?.cleanup());

  it("Pause writes cgroup.freeze and waits for cgroup.events frozen 1; Resume thaws", async () => {
    const id = fx.create(uniqueId("rs-v2"));
    fx.runc("start", id);
    const dir = unifiedDir(fx, id);
    expect(dir.startsWith("/sys/fs/cgroup/unified/")).toBe(true);
    expect(root.state(id).status).toBe("running");
    await pauseContainer(root, id);
    expect(read(path.join(dir, "cgroup.freeze"))).toBe("1\n");
    expect(read(path.join(dir, "cgroup.events"))).toContain("frozen 1");
    expect(root.state(id).status).toBe("paused");
    await expect(pauseContainer(root, id)).rejects.toMatchObject({ kind: "ContainerNotRunning", message: "container not running" });
    await resumeContainer(root, id);
    expect(read(path.join(dir, "cgroup.freeze"))).toBe("0\n");
    expect(read(path.join(dir, "cgroup.events"))).toContain("frozen 0");
    expect(root.state(id).status).toBe("running");
    await expect(resumeContainer(root, id)).rejects.toMatchObject({ kind: "ContainerNotPaused", message: "container not paused" });
  });

  it("Kill --all reads the unified cgroup.procs and keeps a paused container frozen", async () => {
    const id = fx.create(uniqueId("rs-v2"));
    fx.runc("start", id);
    const dir = unifiedDir(fx, id);
    const pids = read(path.join(dir, "cgroup.procs")).trim().split("\n").map(Number);
    expect(pids).toContain(fx.initPid(id));
    await pauseContainer(root, id);
    // v2 lets a fatal signal through a frozen cgroup: the processes die, the cgroup stays frozen.
    await killContainer(root, id, { signal: 9, all: true });
    expect(read(path.join(dir, "cgroup.freeze"))).toBe("1\n");
    await waitFor(() => read(path.join(dir, "cgroup.procs")).trim() === "", 5000, "every process of the cgroup to be gone");
    expect(root.state(id).status).toBe("paused"); // frozen, as the kernel says: Resume or a forced Delete ends it
    await resumeContainer(root, id);
    expect(root.state(id).status).toBe("stopped");
  });

  it("Delete --force of a paused container thaws it, kills it and removes the unified dir with every other", async () => {
    const id = fx.create(uniqueId("rs-v2"));
    fx.runc("start", id);
    const paths = Object.values(
      (JSON.parse(fs.readFileSync(path.join(fx.root, id, "state.json"), "utf8")) as { cgroup_paths: Record<string, string> }).cgroup_paths,
    );
    expect(paths).toContain(unifiedDir(fx, id));
    await pauseContainer(root, id);
    await expect(deleteContainer(root, id, { force: false })).rejects.toMatchObject({
      kind: "ContainerNotStopped",
      message: `cannot delete container ${id} that is not stopped: paused`,
    });
    const pid = fx.initPid(id);
    expect(await deleteContainer(root, id, { force: true })).toBe(pid);
    fx.forget(id);
    for (const p of paths) expect(fs.existsSync(p), p).toBe(false);
    expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
    expect(fx.tryRunc("state", id).stderr).toContain("container does not exist");
  });
});
