/**
 * Drives real runc (Debian `runc`) on busybox containers (Debian
 * `busybox-static`) under temporary state roots, for the demo, the benchmark
 * and the tests. Every container made here is deleted with `runc delete -f` by
 * {@link RuncFixture.cleanup}; the host's `/run/runc` is never touched.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Where Debian's busybox-static installs busybox. */
export const BUSYBOX = "/bin/busybox";

/** Why runc tests cannot run here, or undefined when they can. */
export function runcUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "runc tests need root";
  const which = spawnSync("runc", ["--version"], { encoding: "utf8" });
  if (which.status !== 0) return "runc is not installed (apt-get install -y runc busybox-static)";
  if (!fs.existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install -y busybox-static)`;
  return undefined;
}

let counter = 0;
/** A container id unique across processes and runs (runc shares the cgroup `/<id>` between roots). */
export function uniqueId(prefix = "rs"): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Writes an OCI bundle whose rootfs holds busybox; the process runs `args` (default `sleep 3600`). */
export function makeBundle(dir: string, args: string[] = ["/bin/busybox", "sleep", "3600"], hooks?: Record<string, unknown>): string {
  const rootfs = path.join(dir, "rootfs");
  fs.mkdirSync(path.join(rootfs, "bin"), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(rootfs, "bin", "busybox"));
  fs.chmodSync(path.join(rootfs, "bin", "busybox"), 0o755);
  for (const applet of ["sh", "sleep", "true"]) {
    const link = path.join(rootfs, "bin", applet);
    if (!fs.existsSync(link)) fs.symlinkSync("busybox", link);
  }
  execFileSync("runc", ["spec"], { cwd: dir, stdio: "ignore" });
  const configPath = path.join(dir, "config.json");
  const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as Record<string, any>;
  config.process.terminal = false;
  config.process.args = args;
  if (hooks !== undefined) config.hooks = hooks;
  fs.writeFileSync(configPath, JSON.stringify(config, null, 1));
  return dir;
}

/** A temporary state root with a bundle, and the containers created in it. */
export class RuncFixture {
  readonly dir: string;
  readonly root: string;
  readonly bundle: string;
  private readonly ids = new Set<string>();

  constructor(prefix = "runc-shim-test-") {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.root = path.join(this.dir, "root");
    fs.mkdirSync(this.root, { mode: 0o700 });
    this.bundle = makeBundle(path.join(this.dir, "bundle"));
  }

  /** `runc --root <root> <args>`; returns stdout. Throws with runc's stderr on failure. */
  runc(...args: string[]): string {
    const r = spawnSync("runc", ["--root", this.root, ...args], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`runc ${args.join(" ")} failed (${r.status}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** `runc --root <root> <args>` without throwing. */
  tryRunc(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync("runc", ["--root", this.root, ...args], { encoding: "utf8", timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /**
   * `runc create` a container (stdio not captured through pipes: the init would keep them open).
   * @returns the container id
   */
  create(id = uniqueId(), bundle = this.bundle): string {
    const errFile = path.join(this.dir, `create-${id}.err`);
    const err = fs.openSync(errFile, "w");
    this.ids.add(id);
    try {
      const r = spawnSync("runc", ["--root", this.root, "create", "--bundle", bundle, id], {
        stdio: ["ignore", "ignore", err],
        timeout: 30_000,
      });
      if (r.status !== 0) throw new Error(`runc create ${id} failed: ${fs.readFileSync(errFile, "utf8").trim()}`);
    } finally {
      fs.closeSync(err);
    }
    return id;
  }

  /** The parsed `runc state` of a container. */
  state(id: string): { status: string; pid: number; bundle: string } {
    return JSON.parse(this.runc("state", id)) as { status: string; pid: number; bundle: string };
  }

  /** The init pid recorded in state.json. */
  initPid(id: string): number {
    return (JSON.parse(fs.readFileSync(path.join(this.root, id, "state.json"), "utf8")) as { init_process_pid: number }).init_process_pid;
  }

  /** Remember an id made elsewhere (through the shim), so {@link cleanup} deletes it. */
  track(id: string): void {
    this.ids.add(id);
  }

  /** Forget an id (after the test deleted it itself). */
  forget(id: string): void {
    this.ids.delete(id);
  }

  /** Deletes every container made here (`runc delete -f`) and removes the temporary folder. */
  cleanup(): void {
    for (const id of this.ids) {
      // A paused container cannot be deleted until thawed.
      spawnSync("runc", ["--root", this.root, "resume", id], { stdio: "ignore" });
      spawnSync("runc", ["--root", this.root, "delete", "-f", id], { stdio: "ignore", timeout: 30_000 });
    }
    this.ids.clear();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Waits until `cond()` holds, polling every 10 ms, at most `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The one-letter state of a process from /proc, or undefined when it is gone. */
export function procState(pid: number): string | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    return text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}
