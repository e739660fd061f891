/**
 * Containers for the benchmark: real runc containers created (in parallel)
 * under temporary state roots, copies of a real `state.json` that fill a root
 * to a given number of container dirs, and the deletion of all of it.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** Result of one runc process. */
export interface RuncResult {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `runc --root root args...` asynchronously, stdout and stderr captured
 * (not for `create`: the container's init would keep the pipes open).
 *
 * @param timeoutMs the process is killed (SIGKILL) after this many ms
 */
export function runcAsync(root: string, args: string[], timeoutMs = 30_000): Promise<RuncResult> {
  return new Promise((resolve, reject) => {
    const p = spawn("runc", ["--root", root, ...args], { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs, killSignal: "SIGKILL" });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    p.once("error", reject);
    p.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs `fn` over `items` with at most `concurrency` promises pending.
 *
 * @returns the results, in the order of `items`
 */
export async function pool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  return out;
}

/**
 * Every real container the benchmark made, by state root, so that all of them
 * can be deleted (`runc delete -f`) at the end or on an interruption. An id is
 * registered before its `runc create` starts.
 */
export class ContainerRegistry {
  private readonly byRoot = new Map<string, Set<string>>();
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  /** Remembers `id` under `root`. */
  add(root: string, id: string): void {
    let ids = this.byRoot.get(root);
    if (ids === undefined) this.byRoot.set(root, (ids = new Set()));
    ids.add(id);
  }

  /** Number of containers registered. */
  get size(): number {
    let n = 0;
    for (const ids of this.byRoot.values()) n += ids.size;
    return n;
  }

  /**
   * `runc create --bundle bundle id` under `root` (stdout ignored, stderr to a
   * file in `errDir`, read only on failure).
   *
   * @throws Error with runc's stderr when it fails
   */
  async create(root: string, bundle: string, id: string, errDir: string): Promise<string> {
    if (this.closed) throw new Error(`not creating ${id}: cleaning up`);
    this.add(root, id);
    const p = this.createOne(root, bundle, id, errDir);
    this.pending.add(p);
    try {
      return await p;
    } finally {
      this.pending.delete(p);
    }
  }

  private async createOne(root: string, bundle: string, id: string, errDir: string): Promise<string> {
    const errFile = path.join(errDir, `create-${id}.err`);
    const fd = fs.openSync(errFile, "w");
    let code: number | null;
    try {
      const p = spawn("runc", ["--root", root, "create", "--bundle", bundle, id], { stdio: ["ignore", "ignore", fd], timeout: 30_000, killSignal: "SIGKILL" });
      code = await new Promise<number | null>((resolve, reject) => {
        p.once("error", reject);
        p.once("exit", (c) => resolve(c));
      });
    } finally {
      fs.closeSync(fd);
    }
    if (code !== 0) throw new Error(`runc create ${id} failed (${code}): ${fs.readFileSync(errFile, "utf8").trim()}`);
    return id;
  }

  /**
   * Deletes every registered container with `runc delete -f`, `concurrency` at a
   * time, after the creates under way have finished; no create starts after this.
   *
   * @returns how many deletions failed (a container already gone counts as deleted)
   */
  async deleteAll(concurrency = 4): Promise<number> {
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    const jobs = [...this.byRoot].flatMap(([root, ids]) => [...ids].map((id) => ({ root, id })));
    const results = await pool(jobs, concurrency, async ({ root, id }) => {
      const r = await runcAsync(root, ["delete", "-f", id]).catch(() => undefined);
      const gone = r !== undefined && (r.code === 0 || /does not exist/.test(r.stderr));
      if (gone) this.byRoot.get(root)?.delete(id);
      return gone;
    });
    return results.filter((ok) => !ok).length;
  }

  /** The synchronous last resort (`runc delete -f` each, one by one), for the `exit` event. */
  deleteAllSync(): void {
    for (const [root, ids] of this.byRoot) {
      for (const id of ids) spawnSync("runc", ["--root", root, "delete", "-f", id], { stdio: "ignore", timeout: 10_000 });
      ids.clear();
    }
  }
}

/**
 * A pid that no process has now (so a copy's init reads as dead), taken from
 * the top of the pid range downwards.
 *
 * @param taken pids already handed out, skipped
 */
function deadPid(taken: Set<number>): number {
  let max = 32768;
  try {
    max = Number(fs.readFileSync("/proc/sys/kernel/pid_max", "utf8").trim()) || max;
  } catch {
    // keep the default
  }
  for (let pid = max - 1 - taken.size; pid > 300; pid--) {
    if (taken.has(pid) || fs.existsSync(`/proc/${pid}`)) continue;
    taken.add(pid);
    return pid;
  }
  throw new Error("no free pid found");
}

/**
 * Fills `root` with copies of a real container's state dir until it holds
 * `total` container dirs. Each copy is a dir `<prefix>-<n>` (mode 0711, as runc
 * makes them) with a `state.json` where the template's id is replaced by the
 * copy's own id everywhere (so its cgroup paths are its own, and absent), and
 * `init_process_pid` is a pid no process has, with `init_process_start` 1: the
 * shim and runc both report it `stopped`.
 *
 * @param templateFile a real `state.json`
 * @param templateId the id of the container it belongs to
 * @param total the number of container dirs wanted in `root`
 * @returns the ids of the copies made
 */
export function fillWithCopies(root: string, templateFile: string, templateId: string, total: number, prefix: string): string[] {
  const existing = fs.readdirSync(root).length;
  const template = fs.readFileSync(templateFile, "utf8");
  const taken = new Set<number>();
  const pids = Array.from({ length: 64 }, () => deadPid(taken));
  const ids: string[] = [];
  for (let n = existing; n < total; n++) {
    const id = `${prefix}-${n}`;
    const state = JSON.parse(template.split(templateId).join(id)) as Record<string, unknown>;
    state.init_process_pid = pids[n % pids.length];
    state.init_process_start = 1;
    const dir = path.join(root, id);
    fs.mkdirSync(dir, { mode: 0o711 });
    fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state), { mode: 0o600 });
    ids.push(id);
  }
  return ids;
}
