import type { StateRoot } from "../container.js";
import { RuntimeError } from "../errors.js";
import { freezerDir, thaw } from "../freezer.js";
import { MSG } from "../messages.js";
import { canResume } from "../status.js";
import type { OpContext } from "./context.js";

/**
 * Resumes a paused container (`runc resume ID`; runc 1.1.5
 * `libcontainer/container_linux.go` Resume): load → lock → refresh the status
 * → {@link canResume} → thaw its cgroup. state.json is never written.
 *
 * @throws {RuntimeError} as `StateRoot.load`; `ContainerNotPaused` (`container not paused`);
 *   `NoFreezer`; `SystemError` (the thaw failed)
 */
export async function resumeContainer(root: StateRoot, id: string, ctx: OpContext = {}): Promise<void> {
  const first = root.load(id);
  await root.locks.run(first.stateDir, ctx.signal, () => {
    const c = root.load(id);
    if (!canResume(root.status(c))) throw new RuntimeError("ContainerNotPaused", MSG.notPaused, { containerId: id });
    const dir = freezerDir(c.record.cgroupPaths, root.cgroupMode);
    if (dir === undefined) throw new RuntimeError("NoFreezer", MSG.noFreezer, { containerId: id });
    try {
      thaw(dir, root.cgroupMode);
    } catch (e) {
      throw e instanceof RuntimeError ? new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause }) : e;
    }
    root.changed(id);
  });
}
