/**
 * The main job, end to end: creates a busybox container with real runc under a
 * temporary state root, serves that root with runc-shim (its own process, on a
 * Unix socket), and through the gRPC client calls State, Start, State, printing
 * each answer. Cleans up everything it made, also on Ctrl-C.
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
    console.log(`$ runc --root ${fx.root} create --bundle ${fx.bundle} ${id}`);
    fx.create(id);

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
    try {
      console.log(`\n-> State(${id})`);
      console.log(JSON.stringify(await shim.state(id), null, 2));
      console.log(`\n-> Start(${id})`);
      console.log(JSON.stringify({ pid: await shim.start(id, { deadlineMs: 10_000 }) }, null, 2));
      console.log(`\n-> State(${id})`);
      const after = await shim.state(id);
      console.log(JSON.stringify(after, null, 2));
      console.log(`\nrunc agrees: ${fx.state(id).status}`);
      return after.status === "running" ? 0 : 1;
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
