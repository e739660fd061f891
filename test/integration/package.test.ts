/**
 * The published package works for a consumer: `npm pack` (which runs
 * `prepare`, the build), `npm install <tarball>` into a separate project, then
 * an ESM import of the client from plain Node, the installed `runc-shim serve`
 * binary (which reads gen/*.binpb for reflection at start), and a typecheck of
 * a TypeScript consumer against the installed declarations. Needs no runc and
 * no root: the server serves an empty temporary state root.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const TSC = path.join(REPO, "node_modules", ".bin", "tsc");
const NPM_TIMEOUT_MS = 240_000;

/** The environment for child npm/node processes: without the npm_* variables of the `npm test` that runs us. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env.NO_UPDATE_NOTIFIER = "1";
  return env;
}

/** Runs a command to completion; resolves with its exit code and output (never rejects on a non-zero exit). */
function run(cmd: string, args: string[], cwd: string, timeoutMs = NPM_TIMEOUT_MS): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.once("error", reject);
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, stdout, stderr });
    });
  });
}

/** {@link run}, failing the test with the command's output when it exits non-zero. */
async function runOk(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited with ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The consumer's ESM script: the client against a missing socket, then against the server given in argv[2]. */
const SMOKE_MJS = `
import { createShimClient, ShimError } from "runc-shim";

async function outcome(address, id) {
  const shim = createShimClient(address);
  try {
    return { ok: true, state: await shim.state(id, { deadlineMs: 10000 }) };
  } catch (e) {
    return {
      ok: false,
      isShimError: e instanceof ShimError,
      name: e.name,
      codeName: e.codeName,
      reason: e.reason ?? null,
      domain: e.domain ?? null,
      metadata: e.metadata,
      details: e.details,
    };
  } finally {
    shim.close();
  }
}

const missing = await outcome(process.argv[2], "c1");
const live = process.argv[3] === undefined ? null : await outcome(process.argv[3], "rs-no-such-container");
console.log(JSON.stringify({ missing, live }));
`;

/** The consumer's TypeScript: uses the public types; the @ts-expect-error lines fail the typecheck if the types were `any`. */
const TYPED_TS = `
import { createShimClient, ShimError, decodeErrorInfo, formatTimestamp } from "runc-shim";
import type { CallOptions, ContainerStateView, ContainerStatusName, ShimClient, ShimClientOptions } from "runc-shim";

const options: ShimClientOptions = { channelOptions: { "grpc.max_receive_message_length": 8 << 20 } };
const shim: ShimClient = createShimClient("/run/runc-shim/shim.sock", options);
const call: CallOptions = { deadlineMs: 1000, signal: new AbortController().signal };

export async function main(): Promise<number> {
  try {
    const view: ContainerStateView = await shim.state("c1", call);
    const status: ContainerStatusName = view.status;
    const created: string = view.created;
    const pid: number = await shim.start("c1");
    return pid + status.length + created.length + formatTimestamp(view.createdSeconds, view.createdNanos).length;
  } catch (e) {
    if (e instanceof ShimError) {
      const code: number = e.code;
      const reason: string | undefined = e.reason;
      const metadata: Record<string, string> = e.metadata;
      return code + (reason?.length ?? 0) + Object.keys(metadata).length + (decodeErrorInfo(undefined)?.reason.length ?? 0);
    }
    throw e;
  } finally {
    shim.close();
  }
}

// @ts-expect-error -- an id is a string
void shim.state(42);
// @ts-expect-error -- no such status
const wrong: ContainerStatusName = "exploded";
void wrong;
`;

const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    lib: ["ES2023"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    types: ["node"],
    strict: true,
    noEmit: true,
    skipLibCheck: false,
  },
  files: ["typed.ts"],
};

describe("npm pack: the package installs and works for a consumer", () => {
  let tmp: string;
  let consumer: string;
  let packed: { filename: string; files: Array<{ path: string }> };
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "runc-shim-pack-"));
    const packDir = path.join(tmp, "pack");
    fs.mkdirSync(packDir);
    // Runs `prepare` (the build), as `npm publish` would.
    const out = await runOk("npm", ["pack", "--json", "--pack-destination", packDir], REPO);
    packed = (JSON.parse(out.slice(out.indexOf("["))) as Array<typeof packed>)[0]!;

    consumer = path.join(tmp, "consumer");
    fs.mkdirSync(consumer);
    fs.writeFileSync(path.join(consumer, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true, type: "module" }, null, 1));
    const typesNode = (JSON.parse(fs.readFileSync(path.join(REPO, "node_modules", "@types", "node", "package.json"), "utf8")) as { version: string }).version;
    await runOk(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", path.join(packDir, packed.filename), `@types/node@${typesNode}`],
      consumer,
    );
  }, NPM_TIMEOUT_MS * 2);

  afterAll(async () => {
    if (server?.pid !== undefined && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((r) => server?.once("exit", r));
      process.kill(server.pid, "SIGTERM");
      await exited;
    }
    if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("ships the built entry points, their declarations and the descriptor sets read at run time", () => {
    const files = packed.files.map((f) => f.path);
    expect(files).toEqual(
      expect.arrayContaining([
        "package.json",
        "dist/src/index.js",
        "dist/src/index.d.ts",
        "dist/src/main.js",
        "dist/src/client/client.js",
        "dist/src/client/client.d.ts",
        "gen/descriptors.binpb",
        "gen/health.binpb",
        "proto/runcshim/v1/shim.proto",
        "deploy/systemd/runc-shim.service",
      ]),
    );
    expect(files.filter((f) => f.startsWith("test/") || f.startsWith("src/") || f.startsWith("node_modules/"))).toEqual([]);
    const installed = path.join(consumer, "node_modules", "runc-shim");
    for (const f of ["gen/descriptors.binpb", "gen/health.binpb", "dist/src/index.d.ts"]) expect(fs.existsSync(path.join(installed, f)), f).toBe(true);
  });

  it("imports from plain Node ESM; the installed binary serves; errors are ShimErrors", async () => {
    // The installed bin, as a consumer would run it: it loads gen/*.binpb for reflection before it listens.
    const root = path.join(tmp, "root");
    const socket = path.join(tmp, "s.sock");
    const main = path.join(consumer, "node_modules", "runc-shim", "dist", "src", "main.js");
    const version = await runOk(process.execPath, [main, "--version"], consumer);
    expect(version).toContain((JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version);
    const proc = spawn(process.execPath, [main, "serve", "--root", root, "--address", socket], { cwd: consumer, env: childEnv(), stdio: ["ignore", "ignore", "pipe"] });
    server = proc;
    let log = "";
    proc.stderr?.setEncoding("utf8");
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`installed runc-shim did not listen in 10 s: ${log}`)), 10_000);
      proc.stderr?.on("data", (d: string) => {
        log += d;
        if (log.includes('"msg":"listening"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`installed runc-shim exited with ${code}: ${log}`));
      });
    });

    fs.writeFileSync(path.join(consumer, "smoke.mjs"), SMOKE_MJS);
    const out = await runOk(process.execPath, ["smoke.mjs", path.join(tmp, "no-such-dir", "shim.sock"), socket], consumer);
    const r = JSON.parse(out) as Record<"missing" | "live", Record<string, unknown>>;
    expect(r.missing).toMatchObject({ ok: false, isShimError: true, name: "ShimError", codeName: "UNAVAILABLE", reason: null });
    expect(r.live).toEqual({
      ok: false,
      isShimError: true,
      name: "ShimError",
      codeName: "NOT_FOUND",
      reason: "CONTAINER_NOT_EXISTS",
      domain: "runc-shim",
      metadata: { container_id: "rs-no-such-container" },
      details: "container does not exist",
    });
  });

  it("typechecks a TypeScript consumer against the installed declarations (the project's tsc)", async () => {
    fs.writeFileSync(path.join(consumer, "typed.ts"), TYPED_TS);
    fs.writeFileSync(path.join(consumer, "tsconfig.json"), JSON.stringify(CONSUMER_TSCONFIG, null, 1));
    const ok = await run(TSC, ["-p", "tsconfig.json"], consumer);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);

    // And the check has teeth: a misuse of the API is reported.
    fs.writeFileSync(path.join(consumer, "typed.ts"), `${TYPED_TS}\nconst n: number = createShimClient("/x").close;\n`);
    const bad = await run(TSC, ["-p", "tsconfig.json"], consumer);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/typed\.ts\(\d+,\d+\): error TS2322/);
  });
});
