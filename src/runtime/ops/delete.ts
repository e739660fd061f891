import fs from "node:fs";
import type { StateRoot } from "../container.js";
import { RuntimeError } from "../errors.js";
import { MSG } from "../messages.js";
import { canDelete } from "../status.js";
import type { OpContext } from "./context.js";
import { destroy, killAndWait, removeStateDir } from "./destroy.js";

/** What Delete is asked: `force` kills a running or paused container first, and makes a missing one a success. */
export interface DeleteRequest {
  force: boolean;
}

/**
 * Deletes a container (`runc delete [--force] ID`; runc 1.1.5 `delete.go`):
 * load → lock → refresh the status → act by runc's matrix: stopped →
 * destroy; created → SIGKILL the init, wait for its death, destroy (also
 * without force, as runc); running, pausing or paused → the same with force,
 * else `cannot delete container ID that is not stopped: STATUS`. A state dir
 * without state.json is removed (runc's RemoveAll) and answers NOT_FOUND, or
 * OK with force. See {@link destroy} for what is removed and in which order.
 *
 * @returns the init pid the container had (0 when none was recorded)
 * @throws {RuntimeError} `InvalidIdFormat`; `ContainerNotExists` (without force); `ContainerNotStopped`
 *   (not stopped without force, or `container init still running` after 10 s); `SystemError`
 *   (corrupt state.json, even with force, as runc); `ConfigInvalid` (root unusable)
 */
export async function deleteContainer(root: StateRoot, id: string, req: DeleteRequest, ctx: OpContext = {}): Promise<number> {
  let stateDir: string;
  try {
    stateDir = root.load(id).stateDir;
  } catch (e) {
    if (!(e instanceof RuntimeError && e.kind === "ContainerNotExists")) throw e;
    stateDir = root.stateDirOf(id);
  }
  return root.locks.run(stateDir, ctx.signal, async () => {
    let c;
    try {
      c = root.load(id);
    } catch (e) {
      if (!(e instanceof RuntimeError && e.kind === "ContainerNotExists")) throw e;
      // runc: os.RemoveAll(<root>/<id>) (a dir left by an aborted create), then the error unless forced.
      if (fs.existsSync(stateDir)) {
        removeStateDir(root, stateDir, id);
        root.changed(id);
      }
      if (req.force) return 0;
      throw e;
    }
    const status = root.status(c);
    if (status !== "stopped") {
      if (!canDelete(status) && !req.force) {
        throw new RuntimeError("ContainerNotStopped", MSG.deleteNotStopped(id, status), { containerId: id });
      }
      await killAndWait(root, c);
    }
    await destroy(root, c, ctx);
    return c.record.initProcessPid > 0 && c.record.initProcessPid <= 0xffffffff ? c.record.initProcessPid : 0;
  });
}
