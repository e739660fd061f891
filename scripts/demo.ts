/**
 * The main job, end to end: serves a temporary state root with runc-shim (its
 * own process, on a Unix socket) and, through the gRPC client, runs a busybox
 * container's whole life: Create, State, Start, Pause, Resume, Kill, Delete,
 * printing each answer and checking after each that `runc state` agrees.
 * Cleans up everything it made, also on Ctrl-C.
 *
 * Run: npm run demo (as root; installs runc and busybox-static when missing).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createShimClient } from "../src/client/client.js";
import { RuncFixture, runcUnavailable, uniqueId } from "./lib/runc.js";

const MAIN = fileURLToPath(new URL("../src/main.js", import.meta.url));

async function main(): Promise<number> {
  const why = runcUnavailable();
  if (why !== undefined) {
    console.error(`demo: ${why}`);
    return 1;
  }
  const fx = new RuncFixture("runc-shim-demo-");
  const socket = path.join(fx.dir, "shim.sock");
  let server: ReturnType<typeof spawn> | undefined;
  const cleanup = (): void => {
    if (server?.pid !== undefined && server.exitCode === null) process.kill(server.pid, "SIGTERM");
    fx.cleanup();
  };
  process.once("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  try {
    const id = uniqueId("demo");
    console.log(`$ runc-shim serve --root ${fx.root} --address ${socket}`);
    server = spawn(process.execPath, [MAIN, "serve", "--root", fx.root, "--address", socket, "--log-level", "warn"], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    const t0 = Date.now();
    while (!fs.existsSync(socket)) {
      if (server.exitCode !== null || Date.now() - t0 > 10_000) throw new Error("runc-shim did not start");
      await new Promise((r) => setTimeout(r, 20));
    }

    const shim = createShimClient(socket);
    fx.track(id); // deleted by the cleanup if the demo stops half-way
    try {
      const step = async (label: string, call: () => Promise<unknown>, expected: string | undefined): Promise<void> => {
        console.log(`\n-> ${label}`);
        const answer = await call();
        if (answer !== undefined) console.log(JSON.stringify(answer, null, 2));
        if (expected === undefined) return;
        const runc = fx.state(id).status;
        const ours = (await shim.state(id)).status;
        console.log(`   State: ${ours}; runc state agrees: ${runc}`);
        if (ours !== expected || runc !== expected) throw new Error(`expected ${expected}, got ${ours} (runc: ${runc})`);
      };
      await step(`Create(${id}, bundle ${fx.bundle})`, async () => ({ pid: await shim.create(id, { bundle: fx.bundle }) }), "created");
      await step(`State(${id})`, () => shim.state(id), undefined);
      await step(`Start(${id})`, async () => ({ pid: await shim.start(id, { deadlineMs: 10_000 }) }), "running");
      await step(`Pause(${id})`, () => shim.pause(id), "paused");
      await step(`Resume(${id})`, () => shim.resume(id), "running");
      await step(`Kill(${id}, SIGKILL)`, () => shim.kill(id, "KILL"), "stopped");
      console.log(`\n-> Delete(${id})`);
      console.log(JSON.stringify({ pid: await shim.delete(id) }, null, 2));
      const gone = fx.tryRunc("state", id);
      console.log(`   runc state agrees it is gone: ${gone.stderr.includes("container does not exist")}`);
      fx.forget(id);
      return gone.status !== 0 ? 0 : 1;
    } finally {
      shim.close();
    }
  } finally {
    cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
