/**
 * What a benchmark script (`profile.ts`, `ab.ts`) starts and must not leave
 * behind, and its one clean-up: the client worker and the servers stopped by
 * pid, the containers deleted with `runc delete -f`, the temporary dir removed
 * — at the end, on SIGINT/SIGTERM, and (synchronously, by SIGKILL) at exit.
 */
import fs from "node:fs";
import path from "node:path";
import { makeBundle, uniqueId } from "../../scripts/lib/runc.js";
import { ContainerRegistry, pool, runcAsync } from "./containers.js";
import { defaultTempBase } from "./tmp.js";
import type { ServerHandle } from "./server.js";
import type { Worker } from "./worker-client.js";

/** What a script owns; it fills the fields as it starts things. */
export class Owned {
  readonly registry = new ContainerRegistry();
  readonly servers: ServerHandle[] = [];
  worker: Worker | undefined;
  tempDir: string | undefined;
  private cleaning: Promise<void> | undefined;

  /**
   * Installs the SIGINT/SIGTERM handlers (clean up, then exit 130/143) and the
   * exit hook (the synchronous last resort). Once per script.
   */
  install(): void {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      void this.cleanup().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("exit", () => {
      this.worker?.kill();
      for (const s of this.servers) {
        try {
          process.kill(s.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      this.registry.deleteAllSync();
      if (this.tempDir !== undefined) fs.rmSync(this.tempDir, { recursive: true, force: true });
    });
  }

  /**
   * Makes a temporary dir (owned) with a state root and a busybox bundle, and
   * 2 created and 2 running containers in it (runc create, runc start), ids
   * `<prefix>c-…` and `<prefix>r-…`.
   * @returns the state root and the ids (created first)
   */
  async makeContainers(prefix: string): Promise<{ tempDir: string; root: string; created: string[]; running: string[] }> {
    const tempDir = fs.mkdtempSync(path.join(defaultTempBase(), `runc-shim-${prefix}-`));
    this.tempDir = tempDir;
    const root = path.join(tempDir, "root");
    fs.mkdirSync(root, { mode: 0o700 });
    const bundle = makeBundle(path.join(tempDir, "bundle"));
    const created = [uniqueId(`${prefix}c`), uniqueId(`${prefix}c`)];
    const running = [uniqueId(`${prefix}r`), uniqueId(`${prefix}r`)];
    await pool([...created, ...running], 2, (id) => this.registry.create(root, bundle, id, tempDir));
    for (const id of running) {
      const r = await runcAsync(root, ["start", id]);
      if (r.code !== 0) throw new Error(`runc start ${id}: ${r.stderr}`);
    }
    return { tempDir, root, created, running };
  }

  /** Stops the worker and the servers, deletes the containers and the temporary dir; once (later calls get the same promise). */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      await this.worker?.exit(2000).catch(() => this.worker?.kill());
      for (const s of this.servers) await s.stop(5000).catch(() => undefined);
      await this.registry.deleteAll(4);
      if (this.tempDir !== undefined) fs.rmSync(this.tempDir, { recursive: true, force: true });
    })();
    return this.cleaning;
  }
}

/** The value after `name` in `argv` (`--seconds 10`), or `def`. */
export function arg(argv: string[], name: string, def: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : def;
}
