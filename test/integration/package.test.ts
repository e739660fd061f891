/**
 * The published package works for a consumer: `npm pack` (which runs
 * `prepare`, the build), `npm install <tarball>` into two separate projects —
 * an ES module one and a CommonJS one (`npm init -y`'s shape) — then a call
 * from each (an ESM `import`, a CommonJS `require()` of the ES module entry,
 * which Node >= 20.19 allows) against the installed `runc-shim serve` binary
 * (which reads gen/*.binpb for reflection at start), a typecheck of a
 * TypeScript consumer against the installed declarations, and the README's
 * examples (examples/lifecycle.mjs and .cjs) run from each project through a
 * container's whole life. The tarball holds only what users import or run.
 * Only the examples need runc and root (skipped without, never under CI=true).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuncFixture, skipRunc, uniqueId } from "../helpers/runc.js";

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

/** The CommonJS consumer's script: `require("runc-shim")` (an ES module), then one call against the server in argv[2]. */
const SMOKE_CJS = `
const runcShim = require("runc-shim");
const { createShimClient, ShimError } = runcShim;

async function main() {
  const shim = createShimClient(process.argv[2]);
  try {
    await shim.state("rs-no-such-container", { deadlineMs: 10000 });
    console.log(JSON.stringify({ ok: true }));
  } catch (e) {
    console.log(JSON.stringify({
      ok: false,
      exports: Object.keys(runcShim).sort(),
      isShimError: e instanceof ShimError,
      codeName: e.codeName,
      reason: e.reason ?? null,
      domain: e.domain ?? null,
      metadata: e.metadata,
      details: e.details,
    }));
  } finally {
    shim.close();
  }
}
main();
`;

/** What the package may ship: the built client and CLI, the generated code they import, the descriptor sets, the contract. */
const SHIPPED = [/^package\.json$/, /^README\.md$/, /^dist\/src\//, /^dist\/gen\/ts\//, /^gen\/(descriptors|health|rpc)\.binpb$/, /^proto\/runcshim\/v1\/shim\.proto$/, /^deploy\/systemd\/runc-shim\.service$/];

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

/** Spawns an installed `runc-shim serve` (the consumer's node_modules/.bin link) and waits until it listens. */
async function startInstalled(consumer: string, root: string, socket: string): Promise<ChildProcess> {
  const bin = path.join(consumer, "node_modules", ".bin", "runc-shim");
  const proc = spawn(bin, ["serve", "--root", root, "--address", socket], { cwd: consumer, env: childEnv(), stdio: ["ignore", "ignore", "pipe"] });
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
  return proc;
}

/** SIGTERM to a server this test started (by its pid), and wait for its exit. */
async function stopInstalled(proc: ChildProcess | undefined): Promise<void> {
  if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  process.kill(proc.pid, "SIGTERM");
  await exited;
}

describe("npm pack: the package installs and works for a consumer", () => {
  let tmp: string;
  let consumer: string;
  let cjsConsumer: string;
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

    // A CommonJS project as `npm init -y` makes it: no "type" field.
    cjsConsumer = path.join(tmp, "cjs-consumer");
    fs.mkdirSync(cjsConsumer);
    fs.writeFileSync(path.join(cjsConsumer, "package.json"), JSON.stringify({ name: "cjs-consumer", version: "1.0.0", main: "index.js", license: "ISC" }, null, 1));
    await runOk("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", path.join(packDir, packed.filename)], cjsConsumer);
  }, NPM_TIMEOUT_MS * 3);

  afterAll(async () => {
    await stopInstalled(server);
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
        "gen/rpc.binpb",
        "dist/gen/ts/runcshim/v1/shim.js",
        "proto/runcshim/v1/shim.proto",
        "deploy/systemd/runc-shim.service",
      ]),
    );
    // Nothing users do not import or run: no benchmark, no repository scripts, no tests, no sources.
    expect(files.filter((f) => !SHIPPED.some((re) => re.test(f)))).toEqual([]);
    expect(files.filter((f) => f.startsWith("dist/bench/") || f.startsWith("dist/scripts/"))).toEqual([]);
    for (const dir of [consumer, cjsConsumer]) {
      const installed = path.join(dir, "node_modules", "runc-shim");
      for (const f of ["gen/descriptors.binpb", "gen/health.binpb", "gen/rpc.binpb", "dist/src/index.d.ts"]) expect(fs.existsSync(path.join(installed, f)), f).toBe(true);
      expect(fs.existsSync(path.join(installed, "dist", "bench"))).toBe(false);
      expect(fs.existsSync(path.join(installed, "dist", "scripts"))).toBe(false);
    }
  });

  it("imports from plain Node ESM and require()s from CommonJS; the installed binary serves; errors are ShimErrors", async () => {
    // The installed bin, as a consumer runs it (node_modules/.bin): it loads gen/*.binpb for reflection before it listens.
    const root = path.join(tmp, "root");
    const socket = path.join(tmp, "s.sock");
    const version = await runOk(path.join(cjsConsumer, "node_modules", ".bin", "runc-shim"), ["--version"], cjsConsumer);
    expect(version.trim()).toBe((JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version);
    server = await startInstalled(consumer, root, socket);

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

    // CommonJS: require() of the ES module entry, with no warning on stderr.
    fs.writeFileSync(path.join(cjsConsumer, "index.js"), SMOKE_CJS);
    const cjs = await run(process.execPath, ["index.js", socket], cjsConsumer);
    expect([cjs.code, cjs.stderr]).toEqual([0, ""]);
    expect(JSON.parse(cjs.stdout)).toEqual({
      ok: false,
      exports: ["ShimError", "createShimClient", "decodeErrorInfo", "formatTimestamp", "parseSignal"],
      isShimError: true,
      codeName: "NOT_FOUND",
      reason: "CONTAINER_NOT_EXISTS",
      domain: "runc-shim",
      metadata: { container_id: "rs-no-such-container" },
      details: "container does not exist",
    });
  }, 30_000);

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

  it.skipIf(skipRunc())("runs the README's examples, ESM and CommonJS, through a container's whole life against real runc", async () => {
    const fx = new RuncFixture("runc-shim-examples-");
    const socket = path.join(fx.dir, "s.sock");
    let exampleServer: ChildProcess | undefined;
    try {
      exampleServer = await startInstalled(consumer, fx.root, socket);
      for (const [dir, file] of [[consumer, "lifecycle.mjs"], [cjsConsumer, "lifecycle.cjs"]] as const) {
        fs.copyFileSync(path.join(REPO, "examples", file), path.join(dir, file));
        const id = uniqueId("rs-example");
        fx.track(id);
        const r = await run(process.execPath, [file, socket, fx.bundle, id], dir, 90_000);
        expect([file, r.code, r.stderr]).toEqual([file, 0, ""]);
        const pid = /init pid (\d+)$/m.exec(r.stdout)?.[1];
        expect(Number(pid)).toBeGreaterThan(0);
        expect(r.stdout).toBe(
          [
            `create: ${id} is created, init pid ${pid}`,
            "start: running",
            "pause: paused",
            "resume: running",
            "kill: stopped",
            `delete: ${id} is gone, its init pid was ${pid}`,
            "",
          ].join("\n"),
        );
        // runc is the judge: the container is gone from the root.
        const after = fx.tryRunc("state", id);
        expect([after.status, after.stderr]).toEqual([1, expect.stringContaining("container does not exist")]);
        fx.forget(id);
      }

      // A failure reads as the example prints it: the container exists already.
      const taken = fx.create();
      const dup = await run(process.execPath, ["lifecycle.mjs", socket, fx.bundle, taken], consumer, 30_000);
      expect([dup.code, dup.stdout, dup.stderr]).toEqual([1, "", "ALREADY_EXISTS: container with given ID already exists (reason CONTAINER_EXISTS)\n"]);
    } finally {
      await stopInstalled(exampleServer);
      fx.cleanup();
    }
  }, 240_000);

  it("the README shows examples/lifecycle.mjs as it is, and lifecycle.cjs makes the same calls", () => {
    const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
    const mjs = fs.readFileSync(path.join(REPO, "examples", "lifecycle.mjs"), "utf8");
    expect(readme).toContain(`\`\`\`js\n${mjs}\`\`\`\n`);
    const cjs = fs.readFileSync(path.join(REPO, "examples", "lifecycle.cjs"), "utf8");
    const calls = (src: string): string[] => [...src.matchAll(/shim\.(\w+)\(/g)].map((m) => m[1]!);
    expect(calls(cjs)).toEqual(calls(mjs));
    expect(calls(mjs)).toEqual(["state", "create", "start", "pause", "resume", "kill", "delete", "close"]);
  });
});
