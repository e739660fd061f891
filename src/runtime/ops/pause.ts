import type { StateRoot } from "../container.js";
import { RuntimeError } from "../errors.js";
import { freeze, freezerDir } from "../freezer.js";
import { MSG } from "../messages.js";
import { canPause } from "../status.js";
import type { OpContext } from "./context.js";

/**
 * Pauses a container (`runc pause ID`; runc 1.1.5 `libcontainer/container_linux.go`
 * Pause): load → lock → refresh the status → {@link canPause} → freeze its
 * cgroup on the event loop (v1 runc's retry loop, v2 `cgroup.freeze` and a
 * bounded wait for `cgroup.events`). On a failed freeze the cgroup is thawed
 * again. state.json is never written.
 *
 * @throws {RuntimeError} as `StateRoot.load`; `ContainerNotRunning` (`container not running`: paused,
 *   pausing or stopped); `NoFreezer` (no freezer cgroup); `SystemError` (the freeze failed)
 */
export async function pauseContainer(root: StateRoot, id: string, ctx: OpContext = {}): Promise<void> {
  const first = root.load(id);
  await root.locks.run(first.stateDir, ctx.signal, async () => {
    const c = root.load(id);
    if (!canPause(root.status(c))) throw new RuntimeError("ContainerNotRunning", MSG.notRunning, { containerId: id });
    const dir = freezerDir(c.record.cgroupPaths, root.cgroupMode);
    if (dir === undefined) throw new RuntimeError("NoFreezer", MSG.noFreezer, { containerId: id });
    try {
      await freeze(dir, root.cgroupMode);
    } catch (e) {
      throw e instanceof RuntimeError ? new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause }) : e;
    } finally {
      root.changed(id);
    }
  });
}
