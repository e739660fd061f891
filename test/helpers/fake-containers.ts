/**
 * Container state dirs without runc: copies of a real runc 1.1.5 state.json
 * whose init process is a `sleep` child of the test (alive, with its real start
 * time) or a pid that does not exist. Status then follows the files: `created`
 * while `exec.fifo` exists (any file type counts), `running` once it is removed,
 * `stopped` when the process dies. No cgroup: never paused.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readProcStat } from "../../src/runtime/proc.js";

const FIXTURE = JSON.parse(fs.readFileSync(new URL("../fixtures/runc-1.1.5/state.json", import.meta.url), "utf8")) as Record<string, unknown>;

/** A process to stand in for a container's init process. */
export interface FakeInit {
  pid: number;
  startTime: number;
  proc: ChildProcess | undefined;
  /** SIGKILLs it (when it is ours) and waits until it is gone. */
  kill(): Promise<void>;
}

/** Spawns `sleep 600` to serve as a live init process. */
export async function spawnInit(): Promise<FakeInit> {
  const proc = spawn("sleep", ["600"], { stdio: "ignore" });
  const pid = proc.pid as number;
  let st = readProcStat(pid);
  for (let i = 0; st === undefined && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 5));
    st = readProcStat(pid);
  }
  if (st === undefined) throw new Error("sleep did not start");
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return {
    pid,
    startTime: st.startTime,
    proc,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    },
  };
}

/** An init that never existed (pid beyond pid_max). */
export const DEAD_INIT: FakeInit = { pid: 4_194_305, startTime: 1, proc: undefined, kill: async () => {} };

/** A temporary state root. */
export function tempRoot(prefix = "rs-fake-"): { dir: string; root: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const root = path.join(dir, "root");
  fs.mkdirSync(root, { mode: 0o700 });
  return { dir, root, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Writes `<root>/<id>/state.json` (through a temporary file and a rename, as
 * runc does) for `init`, with an `exec.fifo` (a regular file) when `created`.
 */
export function writeFakeContainer(
  root: string,
  id: string,
  init: FakeInit,
  opts: { created?: boolean; bundle?: string; annotations?: Record<string, string> } = {},
): string {
  const dir = path.join(root, id);
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  if (opts.created ?? true) fs.writeFileSync(path.join(dir, "exec.fifo"), "");
  const state = {
    ...FIXTURE,
    id,
    init_process_pid: init.pid,
    init_process_start: init.startTime,
    cgroup_paths: {},
    config: {
      ...(FIXTURE.config as Record<string, unknown>),
      labels: [...Object.entries(opts.annotations ?? {}).map(([k, v]) => `${k}=${v}`), `bundle=${opts.bundle ?? `/bundles/${id}`}`],
    },
  };
  const tmp = path.join(dir, `state-${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(state));
  fs.renameSync(tmp, path.join(dir, "state.json"));
  return dir;
}
