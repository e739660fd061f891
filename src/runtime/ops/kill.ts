import type { StateRoot, LoadedContainer } from "../container.js";
import { RuntimeError, describeError } from "../errors.js";
import { cgroupPids, procsDir } from "../cgroup.js";
import { freeze, freezerDir, thaw } from "../freezer.js";
import { MSG } from "../messages.js";
import { isInitAlive } from "../proc.js";
import { canKill, type ContainerStatus } from "../status.js";
import type { OpContext } from "./context.js";
import { SIGKILL, killSignal, sendSignal, signalName } from "./signals.js";
import { waitForInitDeath } from "./wait-dead.js";

/** What Kill is asked: the signal (0 = SIGTERM, 1–64) and whether to signal every process of the cgroup. */
export interface KillRequest {
  signal: number;
  all: boolean;
}

/** After a SIGKILL to the init process, how long Kill waits for it to die before answering, in ms. */
export const KILL_SETTLE_MS = 100;

/**
 * Signals a container (`runc kill [--all] ID SIGNAL`; runc 1.1.5 `kill.go`,
 * `libcontainer/container_linux.go` Signal): load → signal checked → lock →
 * refresh the status → {@link canKill} → the init pid and start time checked
 * again right before kill(2). A paused container that gets SIGKILL is thawed
 * afterwards (as runc), so the init dies; after a SIGKILL Kill answers once
 * the init is dead (at most {@link KILL_SETTLE_MS}), so a State right after
 * reads stopped. `all`: see {@link signalAllProcesses}.
 *
 * @throws {RuntimeError} as `StateRoot.load`; `InvalidArgument` (signal not 0–64, before anything is
 *   signalled); `ContainerNotRunning` (`container not running`, or `unable to signal init: os: process
 *   already finished` when the pid vanished); `SystemError` (kill(2) failed otherwise, a cgroup error)
 */
export async function killContainer(root: StateRoot, id: string, req: KillRequest, ctx: OpContext = {}): Promise<void> {
  const first = root.load(id); // runc loads first, then parses the signal
  const signal = killSignal(req.signal);
  await root.locks.run(first.stateDir, ctx.signal, async () => {
    const c = root.load(id);
    const status = root.status(c);
    if (req.all) {
      await signalAllProcesses(root, c, status, signal, ctx);
      root.changed(id);
      return;
    }
    if (!canKill(status)) throw new RuntimeError("ContainerNotRunning", MSG.notRunning, { containerId: id });
    const { initProcessPid: pid, initProcessStart: startTime } = c.record;
    // The status may be minutes old by now (a wait for the lock): the pid is checked again just before the signal.
    if (!isInitAlive(pid, startTime)) throw new RuntimeError("ContainerNotRunning", MSG.notRunning, { containerId: id });
    let sent: boolean;
    try {
      sent = sendSignal(pid, signal);
    } catch (e) {
      throw new RuntimeError("SystemError", `unable to signal init: ${describeError(e)}`, { containerId: id, cause: e });
    }
    if (!sent) throw new RuntimeError("ContainerNotRunning", MSG.processFinished, { containerId: id });
    if (signal === SIGKILL) {
      const dir = freezerDir(c.record.cgroupPaths, root.cgroupMode);
      if ((status === "paused" || status === "pausing") && dir !== undefined) {
        try {
          thaw(dir, root.cgroupMode);
        } catch (e) {
          ctx.warn?.("thaw after SIGKILL failed", { err: describeError(e) });
        }
      }
      await waitForInitDeath(pid, startTime, KILL_SETTLE_MS);
    }
    root.changed(id);
  });
}

/**
 * Signals every process of the container's cgroup (runc 1.1.5
 * `libcontainer/init_linux.go` signalAllProcesses): a stopped container whose
 * cgroup is gone is a no-op; otherwise the cgroup is frozen (a failure only
 * warns), the pids of the `devices` hierarchy (v1) or the unified dir (v2),
 * sub-cgroups included, are signalled, and the cgroup is thawed — unless the
 * container was paused before, which runc would resume and runc-shim keeps paused.
 *
 * @throws {RuntimeError} `SystemError` when the pids cannot be read (the cgroup is thawed first)
 */
export async function signalAllProcesses(root: StateRoot, c: LoadedContainer, status: ContainerStatus, signal: number, ctx: OpContext): Promise<void> {
  const life = root.lifecycle(c);
  const dir = procsDir(life.cgroupPaths, root.cgroupMode);
  const exists = dir !== undefined && cgroupPids(dir) !== undefined;
  if (status === "stopped" && !exists) return;
  if (dir === undefined) throw new RuntimeError("SystemError", "cannot signal all processes: cgroups not configured for container", { containerId: c.id });
  const wasPaused = status === "paused" || status === "pausing";
  const fz = freezerDir(life.cgroupPaths, root.cgroupMode);
  if (fz === undefined) ctx.warn?.(MSG.noFreezer);
  else if (!wasPaused) {
    try {
      await freeze(fz, root.cgroupMode);
    } catch (e) {
      ctx.warn?.("freeze before signalling all processes failed", { err: describeError(e) });
    }
  }
  const thawUnlessPaused = (): void => {
    if (fz === undefined || wasPaused) return;
    try {
      thaw(fz, root.cgroupMode);
    } catch (e) {
      ctx.warn?.("thaw after signalling all processes failed", { err: describeError(e) });
    }
  };
  let pids: number[];
  try {
    pids = cgroupPids(dir) ?? [];
  } catch (e) {
    thawUnlessPaused();
    throw e instanceof RuntimeError ? new RuntimeError(e.kind, e.message, { containerId: c.id, cause: e.cause }) : e;
  }
  for (const pid of pids) {
    try {
      sendSignal(pid, signal);
    } catch (e) {
      ctx.warn?.(`cannot send ${signalName(signal)} to pid ${pid}`, { err: describeError(e) });
    }
  }
  thawUnlessPaused();
}
