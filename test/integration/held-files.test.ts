/**
 * Issue 11: status files held open between calls (src/runtime/held-files.ts)
 * read what a fresh open would, on real processes and real cgroups: a held
 * `/proc/<pid>/stat` follows its process to its end and is dropped once it is
 * reaped; a held freezer file sees freeze and thaw, does not keep its cgroup
 * from being removed, and is dropped after; the number held is bounded.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { uniqueId } from "../../scripts/lib/runc.js";
import { StateRoot } from "../../src/runtime/container.js";
import { readCgroupFile } from "../../src/runtime/freezer.js";
import { HeldFiles, heldFiles } from "../../src/runtime/held-files.js";
import { heldStatmKey, isInitAlive, parseProcStat, readProcStat } from "../../src/runtime/proc.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";

const children: ChildProcess[] = [];
const cgroups: string[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const dir of cgroups.splice(0)) if (fs.existsSync(dir)) fs.rmdirSync(dir);
});

function sleeper(): ChildProcess {
  const c = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(c);
  return c;
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once("exit", () => r())));
const waitFor = async (cond: () => boolean, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("held status files", () => {
  it("a held /proc/<pid>/stat follows its process: running, stopped, zombie, then dropped once reaped", async () => {
    const c = sleeper();
    const pid = c.pid!;
    const file = `/proc/${pid}/stat`;
    const first = readProcStat(pid)!;
    expect(first.state).toMatch(/^[RS]$/);
    expect(heldFiles.files()).toContain(file);
    expect(isInitAlive(pid, first.startTime)).toBe(true);

    process.kill(pid, "SIGSTOP");
    await waitFor(() => readProcStat(pid)?.state === "T", 2000, "the process to read as stopped (T)");
    expect(heldFiles.files()).toContain(file); // read through the same held fd

    process.kill(pid, "SIGKILL");
    await exited(c); // node reaped it: the held fd now reads ESRCH
    expect(readProcStat(pid)).toBeUndefined();
    expect(isInitAlive(pid, first.startTime)).toBe(false);
    expect(heldFiles.files()).not.toContain(file);
  });

  it("an init found alive is then read through a held /proc/<pid>/statm: alive while running or stopped, dead once a zombie, dropped once reaped", async () => {
    // A child of a shell that reaps it only at `wait`: it stays a zombie until the shell reads a line.
    const sh = spawn("sh", ["-c", 'sleep 0.3 & echo $!; read x; wait; exec sleep 60'], { stdio: ["pipe", "pipe", "ignore"] });
    children.push(sh);
    const pid = await new Promise<number>((resolve, reject) => {
      sh.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      sh.once("exit", () => reject(new Error("the shell exited early")));
    });
    const fresh = () => parseProcStat(fs.readFileSync(`/proc/${pid}/stat`, "latin1")); // holds no fd
    const startTime = fresh()!.startTime;
    const key = heldStatmKey(pid, startTime);

    expect(isInitAlive(pid, startTime)).toBe(true);
    expect(heldFiles.files()).toContain(key);
    expect(heldFiles.files()).not.toContain(`/proc/${pid}/stat`); // the statm fd replaced it
    expect(isInitAlive(pid, startTime + 1)).toBe(false); // another start time: not this held fd's process
    expect(isInitAlive(pid, startTime)).toBe(true);

    process.kill(pid, "SIGSTOP");
    await waitFor(() => fresh()?.state === "T", 2000, "the process to read as stopped (T)");
    expect(isInitAlive(pid, startTime)).toBe(true); // stopped counts as alive, as in runc
    process.kill(pid, "SIGCONT");

    await waitFor(() => fresh()?.state === "Z", 3000, "the process to become a zombie");
    expect(heldFiles.files()).toContain(key);
    expect(isInitAlive(pid, startTime)).toBe(false); // read through the held statm: no memory map
    expect(heldFiles.files()).toContain(key);

    sh.stdin!.write("reap\n");
    await waitFor(() => !fs.existsSync(`/proc/${pid}`), 3000, "the zombie to be reaped");
    expect(isInitAlive(pid, startTime)).toBe(false);
    expect(heldFiles.files()).not.toContain(key); // read ESRCH: dropped
  });

  it("a pid namespace's init that has exited but waits for its namespace's last process (no memory, state S) is alive, as runc says", async () => {
    // The init of a pid namespace of its own, as a container's is: unshare's child.
    const unshare = spawn("unshare", ["--pid", "--fork", "sleep", "60"], { stdio: "ignore" });
    children.push(unshare);
    const childrenOf = (pid: number) => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    await waitFor(() => childrenOf(unshare.pid!).length === 1 && fs.readFileSync(`/proc/${childrenOf(unshare.pid!)[0]}/comm`, "utf8") === "sleep\n", 3000, "the namespace's init");
    const init = childrenOf(unshare.pid!)[0]!;
    const fresh = (pid: number) => parseProcStat(fs.readFileSync(`/proc/${pid}/stat`, "latin1")); // holds no fd
    const startTime = fresh(init)!.startTime;
    expect(isInitAlive(init, startTime)).toBe(true);
    expect(heldFiles.files()).toContain(heldStatmKey(init, startTime));

    // A process of the namespace whose parent, outside it, does not reap it: a zombie the init's exit waits for.
    const sh = spawn("nsenter", ["-t", String(init), "-p", "-F", "sh", "-c", "sleep 0.1 & echo $!; read x; wait"], { stdio: ["pipe", "pipe", "ignore"] });
    children.push(sh);
    const zombie = await new Promise<number>((resolve, reject) => {
      sh.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      sh.once("exit", () => reject(new Error("nsenter exited early")));
    });
    await waitFor(() => fresh(zombie)?.state === "Z", 3000, "the namespace's other process to become a zombie");
    process.kill(init, "SIGKILL");
    await waitFor(() => fs.readFileSync(`/proc/${init}/statm`, "latin1").startsWith("0 "), 3000, "the init to release its memory");
    expect(fresh(init)?.state).toMatch(/^[RSD]$/); // still exiting: alive for runc
    expect(isInitAlive(init, startTime)).toBe(true);

    sh.stdin!.write("reap\n"); // the zombie is reaped: the init's exit completes, unshare reaps it
    await exited(unshare);
    expect(isInitAlive(init, startTime)).toBe(false);
  });

  // The v1 freezer, and the v2 freezer on the cgroup2 mount (the whole /sys/fs/cgroup on a v2 host, `unified` on a hybrid one).
  const v2Mount = fs.existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
  const freezers = [
    { name: "v1 freezer.state", hierarchy: "/sys/fs/cgroup/freezer", file: "freezer.state", freeze: "FROZEN", thaw: "THAWED", frozen: "FROZEN\n", thawed: "THAWED\n" },
    { name: "v2 cgroup.freeze", hierarchy: v2Mount, file: "cgroup.freeze", freeze: "1", thaw: "0", frozen: "1\n", thawed: "0\n" },
  ].filter((f) => fs.existsSync(path.join(f.hierarchy, "cgroup.procs")));

  it("this host has a freezer to test", () => {
    expect(freezers.length).toBeGreaterThan(0);
  });

  it.each(freezers)("a held $name sees freeze and thaw, lets rmdir remove its cgroup, and is dropped after", async (f) => {
    const dir = path.join(f.hierarchy, uniqueId("rs-held"));
    fs.mkdirSync(dir);
    cgroups.push(dir);
    const c = sleeper();
    fs.writeFileSync(path.join(dir, "cgroup.procs"), String(c.pid));
    const file = path.join(dir, f.file);
    expect(readCgroupFile(file)).toBe(f.thawed);
    expect(heldFiles.files()).toContain(file);

    fs.writeFileSync(file, f.freeze);
    await waitFor(() => readCgroupFile(file) === f.frozen, 2000, `the held ${f.file} to read frozen`);
    fs.writeFileSync(file, f.thaw);
    expect(readCgroupFile(file)).toBe(f.thawed);
    expect(heldFiles.files()).toContain(file);

    c.kill("SIGKILL");
    await exited(c);
    await waitFor(() => fs.readFileSync(path.join(dir, "cgroup.procs"), "utf8") === "", 2000, "the cgroup to empty");
    fs.rmdirSync(dir); // not EBUSY: the held fd does not pin the cgroup
    cgroups.pop();
    expect(readCgroupFile(file)).toBeUndefined();
    expect(heldFiles.files()).not.toContain(file);
  });

  it("a container's state.json replaced (the id made again for another init): the old init's held /proc file is closed", async () => {
    const fake = tempRoot("rs-held-");
    try {
      const [a, b] = [await spawnInit(), await spawnInit()];
      try {
        const root = new StateRoot(fake.root, "v1");
        writeFakeContainer(fake.root, "c1", a, { created: false });
        expect(root.state("c1").status).toBe("running");
        expect(heldFiles.files()).toContain(heldStatmKey(a.pid, a.startTime));
        fs.rmSync(path.join(fake.root, "c1"), { recursive: true }); // runc delete, then runc create of the same id
        writeFakeContainer(fake.root, "c1", b, { created: false });
        expect(root.state("c1").pid).toBe(b.pid);
        expect(heldFiles.files()).toContain(heldStatmKey(b.pid, b.startTime));
        expect(heldFiles.files().filter((f) => f.startsWith(`/proc/${a.pid}/`))).toEqual([]); // while the old init still lives
        expect(isInitAlive(a.pid, a.startTime)).toBe(true);
      } finally {
        await a.kill();
        await b.kill();
      }
    } finally {
      fake.cleanup();
    }
  });

  it("a container deleted outside the shim: the load that finds its state.json gone closes the files held for it", async () => {
    const fake = tempRoot("rs-held-");
    try {
      const a = await spawnInit();
      try {
        const root = new StateRoot(fake.root, "v1");
        writeFakeContainer(fake.root, "c1", a, { created: false });
        expect(root.state("c1").status).toBe("running");
        expect(heldFiles.files()).toContain(heldStatmKey(a.pid, a.startTime));
        fs.rmSync(path.join(fake.root, "c1", "state.json")); // runc delete removes state.json first, then the dir
        expect(() => root.load("c1")).toThrow(expect.objectContaining({ kind: "ContainerNotExists" }));
        expect(heldFiles.files().filter((f) => f.startsWith(`/proc/${a.pid}/`))).toEqual([]); // while the init still lives
        expect(root.forgetIfGone("c1")).toBe(false); // nothing left to drop later
      } finally {
        await a.kill();
      }
    } finally {
      fake.cleanup();
    }
  });

  it("a stopped container whose init and cgroup are gone is read without a failing open (each would build an exception)", () => {
    const fake = tempRoot("rs-held-");
    try {
      const dir = writeFakeContainer(fake.root, "gone", DEAD_INIT, { created: false });
      const stateFile = path.join(dir, "state.json");
      const gone = uniqueId("rs-gone");
      const state = JSON.parse(fs.readFileSync(stateFile, "utf8")) as Record<string, unknown>;
      state.cgroup_paths = { freezer: `/sys/fs/cgroup/freezer/${gone}`, "": `/sys/fs/cgroup/unified/${gone}` };
      fs.writeFileSync(stateFile, JSON.stringify(state));
      const root = new StateRoot(fake.root, "v1");
      const open = vi.spyOn(fs, "openSync");
      try {
        expect(root.state("gone").status).toBe("stopped");
        expect(root.state("gone").status).toBe("stopped");
        const statusOpens = open.mock.calls.map((c) => String(c[0])).filter((f) => f.startsWith("/proc/") || f.startsWith("/sys/fs/cgroup/"));
        expect(statusOpens).toEqual([]);
      } finally {
        open.mockRestore();
      }
    } finally {
      fake.cleanup();
    }
  });

  it("holds at most `max` fds, closing the least recently read first", () => {
    const held = new HeldFiles(2);
    const files = [1, 2, 3].map(() => {
      const c = sleeper();
      return `/proc/${c.pid}/stat`;
    });
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    const buf = Buffer.alloc(4096);
    for (const f of files) {
      const fd = fs.openSync(f, "r");
      expect(held.keep(f, fd)).toBe(true);
      if (f === files[1]) expect(held.read(files[0]!, buf, buf.length)).toBeGreaterThan(0); // files[0] is now the most recent
    }
    expect(held.files()).toEqual([files[0], files[2]]);
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore + 2);
    expect(held.read(files[1]!, buf, buf.length)).toBeUndefined();
    expect(held.clear()).toBe(2);
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);
    expect(new HeldFiles(0).keep(files[0]!, -1)).toBe(false);
  });
});
