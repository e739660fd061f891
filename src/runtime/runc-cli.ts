import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RuntimeError, describeError } from "./errors.js";
import { MSG } from "./messages.js";

/** Environment variables never passed to runc: each would change the container (runc 1.1.5 `notify_socket.go`, `utils_linux.go`). */
export const SCRUBBED_ENV = ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] as const;
/** Most bytes of runc's `--log` file read back for its error message (the tail). */
export const RUNC_LOG_TAIL_BYTES = 64 * 1024;

/** What {@link runcCreate} needs. */
export interface RuncCreateOptions {
  /** The runc binary: a path, or a name looked up on PATH (`--runc`). */
  runc: string;
  /** The state root runc is given (`runc --root`). */
  root: string;
  /** Absolute bundle dir. */
  bundle: string;
  /** Container id (already validated). */
  id: string;
  /** fds for runc's (and so the init process's) stdin, stdout and stderr: files or /dev/null, never pipes. */
  stdio: readonly [number, number, number];
  /** Bound of the whole run, in ms (`--create-timeout`); past it runc's process group is SIGKILLed. */
  timeoutMs: number;
  /**
   * The client's deadline or cancellation: runc is left to finish (within
   * `timeoutMs`), then `reason` is thrown, so the caller destroys a container
   * whose state.json, and so whose cgroup paths, runc has recorded. Killing runc
   * mid-create would leave cgroup dirs (and possibly an init) nobody knows of.
   */
  signal?: AbortSignal;
  /**
   * Told once when runc's run ends (exit, spawn failure, timeout): how long it
   * took, in seconds, and the error it ended with (undefined: runc exited 0).
   * For metrics; must not throw.
   */
  onEnd?: (seconds: number, error: RuntimeError | undefined) => void;
}

/** What {@link probeRunc} found: the binary and the first line of its `--version`, or why there is none. */
export type RuncProbe = { readonly path: string; readonly version: string } | { readonly error: string };

/** How long {@link probeRunc} lets `runc --version` run, in ms. */
export const RUNC_VERSION_TIMEOUT_MS = 5000;

/**
 * Where the binary `runc` (a path, or a name looked up on `PATH` as spawn(2)
 * does) is: an existing executable regular file.
 *
 * @returns its absolute path, or an explanation (`not found on PATH (...)`,
 *   `does not exist`, `is not a regular file`, `is not executable`)
 */
export function resolveRunc(runc: string, envPath: string = process.env.PATH ?? ""): { path: string } | { error: string } {
  const check = (file: string): string | undefined => {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st === undefined) return "does not exist";
    if (!st.isFile()) return "is not a regular file";
    try {
      fs.accessSync(file, fs.constants.X_OK);
    } catch {
      return "is not executable";
    }
    return undefined;
  };
  if (runc.includes("/")) {
    const abs = path.resolve(runc);
    const why = check(abs);
    return why === undefined ? { path: abs } : { error: `runc binary ${JSON.stringify(runc)} (--runc) ${why}` };
  }
  for (const dir of envPath.split(":")) {
    if (dir === "") continue;
    const file = path.resolve(dir, runc);
    if (check(file) === undefined) return { path: file };
  }
  return { error: `runc binary ${JSON.stringify(runc)} (--runc) not found on PATH (${envPath})` };
}

/**
 * Finds the runc binary Create will run ({@link resolveRunc}) and asks it for
 * its version (`runc --version`, at most {@link RUNC_VERSION_TIMEOUT_MS}).
 * Never throws: a binary that cannot be found or run is an `error`.
 *
 * @returns `{ path, version }` (the first line of the output, e.g. `runc version 1.1.5+ds1`), or `{ error }`
 */
export async function probeRunc(runc: string, timeoutMs = RUNC_VERSION_TIMEOUT_MS): Promise<RuncProbe> {
  const found = resolveRunc(runc);
  if ("error" in found) return found;
  return new Promise((resolve) => {
    execFile(found.path, ["--version"], { timeout: timeoutMs, env: runcEnv(), encoding: "utf8" }, (err, stdout) => {
      const first = stdout.split("\n")[0]?.trim() ?? "";
      if (err !== null) resolve({ error: `${found.path} --version failed: ${describeError(err)}` });
      else if (first === "") resolve({ error: `${found.path} --version printed nothing` });
      else resolve({ path: found.path, version: first });
    });
  });
}

/**
 * The message of Create's `RuncNotFound` error: which binary, why it cannot
 * be run, and that only Create needs it.
 */
export function runcNotFoundMessage(runc: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === "ENOENT"
      ? runc.includes("/") ? "no such file" : `not found on PATH (${process.env.PATH ?? ""})`
      : code === "EACCES"
        ? "permission denied (not an executable file?)"
        : describeError(e);
  return `cannot run runc binary ${JSON.stringify(runc)} (--runc): ${why}; Create needs runc, every other call works without it`;
}

/** The environment runc runs with: the shim's, without {@link SCRUBBED_ENV}. */
export function runcEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of SCRUBBED_ENV) delete out[k];
  return out;
}

/**
 * The error message of a failed runc run, from its `--log-format json` log:
 * the `msg` of the last `error` (or `fatal`) line.
 */
export function runcErrorFromLog(log: string): string | undefined {
  let found: string | undefined;
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      if ((entry.level === "error" || entry.level === "fatal") && typeof entry.msg === "string") found = entry.msg;
    } catch {
      // a torn line
    }
  }
  return found;
}

function readTail(file: string): string {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, RUNC_LOG_TAIL_BYTES);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf.toString("utf8");
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return "";
  }
}

/**
 * Runs `runc --root ROOT --log FILE --log-format json create --bundle B ID`
 * (the one place runc-shim runs runc): `child_process.spawn`, never a shell,
 * in a process group of its own, stdio the given fds (the init process
 * inherits them and nothing else: Node opens every other fd close-on-exec),
 * the environment scrubbed of {@link SCRUBBED_ENV}. runc's errors come back
 * through the log file, which lives in a private temporary dir removed after.
 *
 * @throws {RuntimeError} `RuncNotFound` (the binary cannot be run); `ContainerExists` (runc says the id
 *   exists); `RuncFailed` (runc's own message); `DeadlineExceeded` (`timeoutMs` passed: the process group
 *   was SIGKILLed; the caller removes what it left), or `signal.reason` when aborted (once runc has exited;
 *   the caller destroys what it created)
 */
export async function runcCreate(opts: RuncCreateOptions): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "runc-shim-create-"));
  const logFile = path.join(tmp, "runc.log");
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        opts.runc,
        ["--root", opts.root, "--log", logFile, "--log-format", "json", "create", "--bundle", opts.bundle, opts.id],
        { stdio: [...opts.stdio], env: runcEnv(), cwd: opts.bundle, detached: true },
      );
      const t0 = performance.now();
      let reported = false;
      const report = (error: RuntimeError | undefined): void => {
        if (reported) return;
        reported = true;
        opts.onEnd?.((performance.now() - t0) / 1000, error);
      };
      const fail = (e: RuntimeError): void => {
        report(e);
        reject(e);
      };
      let aborted: unknown;
      let timedOut: unknown;
      const timer = setTimeout(() => {
        timedOut = new RuntimeError("DeadlineExceeded", `create timed out after ${opts.timeoutMs} ms (--create-timeout); runc was killed and what it left removed`);
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, opts.timeoutMs);
      // Not a kill: runc is still building the container, and only once it has written state.json can it be destroyed whole.
      const onAbort = (): void => {
        aborted ??= opts.signal?.reason ?? new RuntimeError("Cancelled", "create cancelled");
      };
      if (opts.signal?.aborted === true) onAbort();
      else opts.signal?.addEventListener("abort", onAbort, { once: true });
      const done = (): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      child.once("error", (e) => {
        done();
        fail(new RuntimeError("RuncNotFound", runcNotFoundMessage(opts.runc, e), { cause: e }));
      });
      child.once("exit", (code, signal) => {
        done();
        if (timedOut !== undefined || aborted !== undefined) {
          const e = timedOut ?? aborted;
          report(e instanceof RuntimeError ? e : new RuntimeError("Cancelled", "create cancelled"));
          reject(e);
          return;
        }
        if (code === 0) {
          report(undefined);
          resolve();
          return;
        }
        const message = runcErrorFromLog(readTail(logFile)) ?? `runc create ${code !== null ? `exited with status ${code}` : `was killed by ${signal ?? "a signal"}`}`;
        if (message.endsWith(MSG.exists)) fail(new RuntimeError("ContainerExists", MSG.exists));
        else fail(new RuntimeError("RuncFailed", message));
      });
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
