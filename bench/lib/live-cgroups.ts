/**
 * Live containers without runc, for the Watch rows: each is a `sleep`
 * process of the benchmark, moved into cgroup dirs made for it (the unified
 * cgroup2 dir, and on a v1/hybrid host a v1 freezer dir), with a state.json
 * copied from a real runc container's whose init pid, start time and
 * `cgroup_paths` are its own. The shim then follows it as it follows a real
 * container: death through the unified `cgroup.events`, pause through the
 * freezer. Everything (processes, cgroup dirs) is removed by {@link LiveCgroups.cleanup}.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** Where the unified (cgroup2) hierarchy is mounted: `/sys/fs/cgroup` on v2, `/sys/fs/cgroup/unified` on hybrid hosts. */
export function unifiedMount(): string | undefined {
  const CGROUP2_SUPER_MAGIC = 0x63677270;
  for (const p of ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    try {
      if (fs.statfsSync(p).type === CGROUP2_SUPER_MAGIC) return p;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Start time (field 22 of /proc/PID/stat) of a process, or undefined when gone. */
function startTime(pid: number): number | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    return Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
}

/** The live fake containers of one root, and how to remove them. */
export class LiveCgroups {
  /** Container ids made. */
  readonly ids: string[] = [];
  private readonly procs: ChildProcess[] = [];
  private readonly dirs: string[] = [];

  /** @param prefix unique per run: cgroup dirs are `<mount>/<prefix>-<n>` */
  constructor(private readonly prefix: string) {}

  /**
   * Makes `count` live containers `<prefix>-<n>` in `root`, from the real
   * `templateFile` (a running runc container's state.json, `templateId` its id).
   *
   * @throws Error when no unified hierarchy is mounted or a step fails
   */
  async make(root: string, templateFile: string, templateId: string, count: number): Promise<void> {
    const unified = unifiedMount();
    if (unified === undefined) throw new Error("no cgroup2 hierarchy mounted");
    const freezerRoot = unified === "/sys/fs/cgroup" ? undefined : "/sys/fs/cgroup/freezer";
    const template = JSON.parse(fs.readFileSync(templateFile, "utf8")) as Record<string, any>;
    for (let n = 0; n < count; n++) {
      const id = `${this.prefix}-${n}`;
      const proc = spawn("sleep", ["3600"], { stdio: "ignore" });
      if (proc.pid === undefined) throw new Error("could not spawn sleep");
      this.procs.push(proc);
      const pid = proc.pid;
      const cgroupPaths: Record<string, string> = {};
      const uni = path.join(unified, id);
      fs.mkdirSync(uni);
      this.dirs.push(uni);
      fs.writeFileSync(path.join(uni, "cgroup.procs"), String(pid));
      cgroupPaths[""] = uni;
      if (freezerRoot !== undefined && fs.existsSync(freezerRoot)) {
        const frz = path.join(freezerRoot, id);
        fs.mkdirSync(frz);
        this.dirs.push(frz);
        fs.writeFileSync(path.join(frz, "cgroup.procs"), String(pid));
        cgroupPaths.freezer = frz;
      }
      let start = startTime(pid);
      for (let i = 0; start === undefined && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 2));
        start = startTime(pid);
      }
      if (start === undefined) throw new Error(`sleep ${pid} vanished`);
      const state = JSON.parse(JSON.stringify(template).split(templateId).join(id)) as Record<string, any>;
      state.init_process_pid = pid;
      state.init_process_start = start;
      state.cgroup_paths = cgroupPaths;
      const dir = path.join(root, id);
      fs.mkdirSync(dir, { mode: 0o711 });
      fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state), { mode: 0o600 });
      this.ids.push(id);
    }
  }

  /** SIGKILLs the sleeps (ours, by pid), waits for them, removes the cgroup dirs (children first). */
  async cleanup(): Promise<void> {
    const exits = this.procs.map((p) => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => p.once("exit", () => r()))));
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000))]);
    this.procs.length = 0;
    this.removeDirs();
  }

  /** The last resort on exit: SIGKILL and rmdir, synchronously. */
  cleanupSync(): void {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    this.removeDirs();
  }

  private removeDirs(): void {
    for (let pass = 0; pass < 50 && this.dirs.length > 0; pass++) {
      for (let i = this.dirs.length - 1; i >= 0; i--) {
        try {
          fs.rmdirSync(this.dirs[i] as string);
          this.dirs.splice(i, 1);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") this.dirs.splice(i, 1);
        }
      }
      if (this.dirs.length > 0) {
        const until = Date.now() + 20; // a killed process leaves its cgroup a moment later
        while (Date.now() < until);
      }
    }
  }

  /** Cgroup dirs that could not be removed. */
  get leftDirs(): readonly string[] {
    return this.dirs;
  }
}
