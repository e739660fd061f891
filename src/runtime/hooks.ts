import { spawn } from "node:child_process";
import type { HookCommand } from "./state-file.js";

/** Bound of a hook that has no `timeout` of its own, in ms (runc 1.1.5 would wait forever). */
export const DEFAULT_HOOK_TIMEOUT_MS = 60_000;
/** Most bytes kept of a hook's stdout and of its stderr (the rest is dropped). */
export const HOOK_OUTPUT_BYTES = 4096;
/** After a hook exits (or is killed), how long its stdout/stderr may stay open (a background child holding them), in ms. */
export const HOOK_PIPE_GRACE_MS = 500;

/** The OCI state a poststop hook reads on stdin (runc 1.1.5: `status` stopped, no `pid`). */
export interface HookState {
  ociVersion: string;
  id: string;
  status: "stopped";
  bundle: string;
  annotations?: Record<string, string>;
}

/** Formats a duration in seconds as Go's `%.1f`. */
function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/**
 * Runs one hook as runc 1.1.5 does (`libcontainer/configs/config.go`
 * Command.Run): `path` executed directly (no PATH lookup, no shell), argv
 * `args`, the environment exactly `env`, the state JSON on stdin, stdout and
 * stderr captured (at most {@link HOOK_OUTPUT_BYTES} each). Unlike runc, the
 * hook runs in a process group of its own, and past its timeout the whole
 * group is SIGKILLed; the wait for its output is bounded too.
 *
 * @returns `undefined` on success, else runc's error text (`error running hook: exit status 3, stdout: …, stderr: …`
 *   or `hook ran past specified timeout of 1.0s`)
 */
export function runHook(hook: HookCommand, state: HookState): Promise<string | undefined> {
  return new Promise((resolve) => {
    if (!hook.path.startsWith("/")) {
      resolve(`error running hook: fork/exec ${hook.path}: the hook path must be absolute`);
      return;
    }
    const timeoutMs = hook.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
    // setTimeout takes at most 2^31-1 ms (24.8 days; more fires at once): a longer timeout is that.
    const timerMs = Math.min(timeoutMs, 2 ** 31 - 1);
    const child = spawn(hook.path, hook.args.slice(1), {
      argv0: hook.args[0] ?? hook.path,
      env: Object.fromEntries(hook.env.map((kv) => {
        const eq = kv.indexOf("=");
        return eq === -1 ? [kv, ""] : [kv.slice(0, eq), kv.slice(eq + 1)];
      })),
      cwd: "/",
      stdio: ["pipe", "pipe", "pipe"],
      detached: true, // its own process group, killed whole at the timeout
    });
    const out = { stdout: "", stderr: "" };
    const keep = (which: "stdout" | "stderr") => (chunk: Buffer): void => {
      if (out[which].length < HOOK_OUTPUT_BYTES) out[which] += chunk.toString("utf8", 0, Math.min(chunk.length, HOOK_OUTPUT_BYTES - out[which].length));
    };
    child.stdout.on("data", keep("stdout"));
    child.stderr.on("data", keep("stderr"));
    child.stdin.on("error", () => {}); // a hook that does not read its stdin
    child.stdin.end(JSON.stringify(state));
    let timedOut = false;
    let done = false;
    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // the group is gone already
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timerMs);
    const finish = (result: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(result);
    };
    child.once("error", (e) => finish(`error running hook: ${e.message}`));
    child.once("exit", (code, signal) => {
      const result = timedOut
        ? `hook ran past specified timeout of ${seconds(timeoutMs)}s`
        : code === 0
          ? undefined
          : `error running hook: ${code !== null ? `exit status ${code}` : `signal: ${signal ?? "unknown"}`}, stdout: ${out.stdout}, stderr: ${out.stderr}`;
      // The output pipes may be held by a child the hook left behind: wait a little, not forever.
      if (child.stdout.readableEnded && child.stderr.readableEnded) finish(result);
      else {
        const grace = setTimeout(() => finish(result), HOOK_PIPE_GRACE_MS);
        child.once("close", () => {
          clearTimeout(grace);
          finish(result);
        });
      }
    });
  });
}

/**
 * Runs the poststop hooks in order, as runc 1.1.5 destroy does (after the
 * cgroups and the state dir are gone): the first failure is returned
 * (`error running hook #<i>: …`) and the remaining hooks are skipped.
 *
 * @returns `undefined` when every hook succeeded, else the error text
 */
export async function runPoststopHooks(hooks: readonly HookCommand[], state: HookState): Promise<string | undefined> {
  for (const [i, hook] of hooks.entries()) {
    const err = await runHook(hook, state);
    if (err !== undefined) return `error running hook #${i}: ${err}`;
  }
  return undefined;
}
