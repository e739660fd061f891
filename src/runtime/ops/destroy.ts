import fs from "node:fs";
import type { LoadedContainer, StateRoot } from "../container.js";
import { cgroupPids, procsDir, removeCgroupPaths } from "../cgroup.js";
import { RuntimeError, describeError } from "../errors.js";
import { freezerDir, thaw } from "../freezer.js";
import { runPoststopHooks } from "../hooks.js";
import { MSG } from "../messages.js";
import { isWithin } from "../paths.js";
import { splitLabels } from "../state-file.js";
import type { OpContext } from "./context.js";
import { SIGKILL, sendSignal } from "./signals.js";
import { waitForInitDeath } from "./wait-dead.js";

/**
 * `ociVersion` of the state poststop hooks read: runc 1.1.5 sends its own runtime-spec version
 * (`specs.Version`, `runc --version` prints it as `spec: 1.0.2-dev`), not the bundle's (observed).
 */
export const OCI_STATE_VERSION = "1.0.2-dev";

/** How long destroy waits for a detached exec fifo wait of the container to notice its init died, in ms. */
const DETACHED_END_MS = 1000;

/**
 * Removes a container state dir, and nothing else: it must lie strictly inside the state root.
 * @throws {RuntimeError} `SystemError` when it does not, or the removal fails
 */
export function removeStateDir(root: StateRoot, stateDir: string, id: string): void {
  if (stateDir === root.path || !isWithin(root.path, stateDir)) {
    throw new RuntimeError("SystemError", `refusing to remove ${stateDir}: not a container state dir of ${root.path}`, { containerId: id });
  }
  try {
    fs.rmSync(stateDir, { recursive: true, force: true }); // never follows symlinks inside
  } catch (e) {
    throw new RuntimeError("SystemError", `remove ${stateDir}: ${describeError(e)}`, { containerId: id, cause: e });
  }
}

/**
 * SIGKILLs the init process (thawing a paused container so it can die) and
 * waits for it to be dead (runc 1.1.5 `delete.go` killContainer, polled sooner
 * than runc's 100 ms steps).
 *
 * @throws {RuntimeError} `ContainerNotStopped` `container init still running` past the bound (nothing removed)
 */
export async function killAndWait(root: StateRoot, c: LoadedContainer): Promise<void> {
  const { initProcessPid: pid, initProcessStart: startTime } = c.record;
  try {
    sendSignal(pid, SIGKILL);
  } catch {
    // runc ignores the error; the wait below decides
  }
  const dir = freezerDir(c.record.cgroupPaths, root.cgroupMode);
  if (dir !== undefined) {
    try {
      thaw(dir, root.cgroupMode);
    } catch {
      // not paused through a freezer we can write: the wait decides
    }
  }
  if (!(await waitForInitDeath(pid, startTime))) {
    throw new RuntimeError("ContainerNotStopped", MSG.initStillRunning, { containerId: c.id });
  }
}

/**
 * Destroys a stopped container, in runc 1.1.5's order
 * (`libcontainer/state_linux.go` destroy): without a pid namespace of its own,
 * every process of its cgroup is SIGKILLed; every `cgroup_paths` dir is
 * removed (five passes with backoff); the state dir is removed; watchers are
 * told; then the poststop hooks run with the OCI state on stdin, each bounded
 * by its timeout. Cgroup and hook failures are reported to `ctx.warn` and do
 * not fail the call, as in runc. Nothing outside the state root and the
 * container's own cgroup dirs is removed.
 *
 * @throws {RuntimeError} `SystemError` when state.json cannot be read again or the state dir cannot be removed
 */
export async function destroy(root: StateRoot, c: LoadedContainer, ctx: OpContext): Promise<void> {
  const life = root.lifecycle(c);
  const pending = root.detachedFor(c.stateDir);
  if (pending !== undefined) await Promise.race([pending, new Promise((r) => setTimeout(r, DETACHED_END_MS))]);
  if (!life.ownPidNamespace) {
    const dir = procsDir(life.cgroupPaths, root.cgroupMode);
    try {
      for (const pid of (dir !== undefined ? cgroupPids(dir) : undefined) ?? []) sendSignal(pid, SIGKILL);
    } catch (e) {
      ctx.warn?.("cannot kill the processes of the container's cgroup", { err: describeError(e) });
    }
  }
  const left = await removeCgroupPaths(life.cgroupPaths, (message, fields) => ctx.debug?.(message, fields));
  if (Object.keys(left).length > 0) ctx.warn?.("Failed to remove paths", { paths: left });
  removeStateDir(root, c.stateDir, c.id);
  root.forget(c);
  root.changed(c.id);
  if (life.poststop.length > 0) {
    const { bundle, annotations } = splitLabels(c.record.labels);
    const err = await runPoststopHooks(life.poststop, {
      ociVersion: OCI_STATE_VERSION,
      id: c.id,
      status: "stopped",
      bundle,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    });
    if (err !== undefined) ctx.warn?.(err);
  }
}
