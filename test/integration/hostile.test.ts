/**
 * Issue 3: State and load against hostile state roots: pid reuse, zombies,
 * corrupt state.json, symlinks that try to leave the root, freezer paths off
 * cgroupfs, and arbitrary ids (property tests), through a real server process.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError, type ShimClient } from "../../src/client/client.js";
import { secureJoin, isWithin } from "../../src/runtime/paths.js";
import { readProcStat } from "../../src/runtime/proc.js";
import { RuncFixture, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";
import { failure } from "../helpers/calls.js";
import { logSettled, startServer, type ServerProcess } from "../helpers/server.js";

const FIXTURE = JSON.parse(fs.readFileSync(new URL("../fixtures/runc-1.1.5/state.json", import.meta.url), "utf8")) as Record<string, any>;


describe.skipIf(skipRunc())("State and load against hostile input", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  let outside: string;
  const children: ChildProcess[] = [];

  /** Writes `<root>/<id>/state.json` (or any content) and returns the id. */
  function plant(id: string, content: string | Buffer | Record<string, unknown>): string {
    const dir = path.join(fx.root, id);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "state.json"), typeof content === "object" && !Buffer.isBuffer(content) ? JSON.stringify(content) : content);
    return id;
  }
  const withPid = (pid: number, start: number, extra: Record<string, unknown> = {}) => ({
    ...FIXTURE,
    init_process_pid: pid,
    init_process_start: start,
    cgroup_paths: {},
    ...extra,
  });

  beforeAll(async () => {
    fx = new RuncFixture();
    outside = path.join(fx.dir, "outside");
    // The canary: a valid state.json outside the root, with a live pid, that must never be read.
    const canary = path.join(outside, "canary");
    fs.mkdirSync(canary, { recursive: true });
    const me = readProcStat(process.pid)!;
    fs.writeFileSync(path.join(canary, "state.json"), JSON.stringify(withPid(process.pid, me.startTime, { config: { ...FIXTURE.config, labels: ["bundle=/CANARY"] } })));
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, "SIGKILL");
    fx?.cleanup();
  });

  it("pid reuse: a live unrelated process with another start time reads STOPPED with pid 0", async () => {
    const me = readProcStat(process.pid)!;
    plant("rs-reused", withPid(process.pid, me.startTime + 1));
    expect(await shim.state("rs-reused")).toMatchObject({ status: "stopped", pid: 0 });
    // with its real start time runc (and we) trust it: alive
    plant("rs-trusted", withPid(process.pid, me.startTime));
    expect(await shim.state("rs-trusted")).toMatchObject({ status: "running", pid: process.pid });
  });

  it("a zombie init reads STOPPED", async () => {
    // `sleep 0.05 &` becomes a child of `sleep 30` after exec, which never reaps it: a zombie.
    const parent = spawn("sh", ["-c", "sleep 0.05 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
    children.push(parent);
    const zombie = await new Promise<number>((resolve) => parent.stdout!.once("data", (d: Buffer) => resolve(Number(String(d).trim()))));
    await waitFor(() => readProcStat(zombie)?.state === "Z", 3000, "a zombie");
    plant("rs-zombie", withPid(zombie, readProcStat(zombie)!.startTime));
    expect(await shim.state("rs-zombie")).toMatchObject({ status: "stopped", pid: 0 });
  });

  const corrupt: Array<[string, () => string]> = [
    ["empty", () => plant("rs-c-empty", "")],
    ["whitespace", () => plant("rs-c-ws", " \n\t ")],
    ["truncated", () => plant("rs-c-trunc", JSON.stringify(FIXTURE).slice(0, 100))],
    ["xyz", () => plant("rs-c-xyz", "xyz")],
    ["[]", () => plant("rs-c-arr", "[]")],
    ["null", () => plant("rs-c-null", "null")],
    ["{}", () => plant("rs-c-obj", "{}")],
    ["pid as string", () => plant("rs-c-pidstr", { ...FIXTURE, init_process_pid: "12" })],
    ["negative start time", () => plant("rs-c-negstart", { ...FIXTURE, init_process_start: -5 })],
    ["fractional start time", () => plant("rs-c-fracstart", { ...FIXTURE, init_process_start: 1.5 })],
    ["bad created", () => plant("rs-c-created", { ...FIXTURE, created: "yesterday" })],
    ["a directory named state.json", () => {
      fs.mkdirSync(path.join(fx.root, "rs-c-dir", "state.json"), { recursive: true });
      return "rs-c-dir";
    }],
    ["a 100 MB file", () => {
      const id = plant("rs-c-huge", "");
      fs.truncateSync(path.join(fx.root, id, "state.json"), 100 * 1024 * 1024); // sparse
      return id;
    }],
    ["a FIFO named state.json", () => {
      fs.mkdirSync(path.join(fx.root, "rs-c-fifo"));
      spawnSync("mkfifo", [path.join(fx.root, "rs-c-fifo", "state.json")]);
      return "rs-c-fifo";
    }],
  ];

  it.each(corrupt)("corrupt state.json (%s): INTERNAL naming the file, the server still serving", async (what, make) => {
    const id = make();
    for (const call of [shim.state(id), shim.start(id, { deadlineMs: 3000 })]) {
      const e = await failure(call);
      expect([e.codeName, e.reason]).toEqual(["INTERNAL", "SYSTEM_ERROR"]);
      expect(e.details).toContain(path.join(fx.root, id, "state.json"));
      if (what === "a 100 MB file") expect(e.details).toMatch(/4 MiB limit/);
    }
    expect((await failure(shim.state("rs-absent"))).codeName).toBe("NOT_FOUND");
  });

  it.each([
    ["1e400", "got number 1e400"],
    ["5374.0", "got number 5374.0"],
  ])("init_process_pid %s is rejected as Go rejects it, the message quoting the literal", async (literal, quoted) => {
    const id = `rs-c-num-${literal.replace(/\W/g, "")}`;
    plant(id, JSON.stringify({ ...FIXTURE, init_process_pid: 1 }).replace(/"init_process_pid":1\b/, `"init_process_pid":${literal}`));
    const e = await failure(shim.state(id));
    expect([e.codeName, e.reason]).toEqual(["INTERNAL", "SYSTEM_ERROR"]);
    expect(e.details).toBe(`${path.join(fx.root, id, "state.json")}: field init_process_pid must be an integer from -9223372036854775808 to 9223372036854775807 (Go int), ${quoted}`);
  });

  it("a freezer path off cgroupfs is a SystemError: a crafted state.json cannot make the shim read any file", async () => {
    const fake = path.join(outside, "fake-freezer");
    fs.mkdirSync(fake, { recursive: true });
    fs.writeFileSync(path.join(fake, "freezer.state"), "FROZEN\n");
    const me = readProcStat(process.pid)!;
    plant("rs-fakefreezer", withPid(process.pid, me.startTime, { cgroup_paths: { freezer: fake, "": fake } }));
    const e = await failure(shim.state("rs-fakefreezer"));
    expect([e.codeName, e.reason]).toEqual(["INTERNAL", "SYSTEM_ERROR"]);
    expect(e.details).toBe(`open ${fake}/freezer.state: not a cgroup file`);
  });

  it("symlinks: an alias inside the root loads its target; links out of the root never read the canary", async () => {
    const id = fx.create();
    const pid = fx.initPid(id);
    fs.symlinkSync(id, path.join(fx.root, "rs-alias"));
    expect(await shim.state("rs-alias")).toMatchObject({ id: "rs-alias", pid, status: "created" });

    fs.symlinkSync(path.join(outside, "canary"), path.join(fx.root, "rs-abs"));
    fs.symlinkSync("../outside/canary", path.join(fx.root, "rs-up"));
    fs.symlinkSync("/", path.join(fx.root, "rs-slash"));
    fs.mkdirSync(path.join(fx.root, "rs-inner"));
    fs.symlinkSync(path.join(outside, "canary", "state.json"), path.join(fx.root, "rs-inner", "state.json"));
    for (const evil of ["rs-abs", "rs-up", "rs-slash", "rs-inner"]) {
      const e = await failure(shim.state(evil));
      expect([evil, e.codeName, e.details]).toEqual([evil, "NOT_FOUND", "container does not exist"]);
      const s = await failure(shim.start(evil));
      expect(s.codeName).toBe("NOT_FOUND");
    }
    await logSettled();
    expect(server.stderr()).not.toContain("CANARY");
  });

  it("entries that are not container dirs appearing in the root while it serves (file, FIFO, symlinks, a loop) leave it serving", async () => {
    const tag = uniqueId("rs-odd");
    fs.writeFileSync(path.join(fx.root, `${tag}-file`), "");
    spawnSync("mkfifo", [path.join(fx.root, `${tag}-fifo`)]);
    fs.symlinkSync("/etc/hostname", path.join(fx.root, `${tag}-tofile`));
    fs.symlinkSync(`${tag}-loop`, path.join(fx.root, `${tag}-loop`));
    await new Promise((r) => setTimeout(r, 200)); // the server reads what appears in its root
    expect(server.proc.exitCode).toBeNull();
    const id = fx.create();
    expect(await shim.state(id)).toMatchObject({ id, status: "created" });
    for (const n of ["file", "fifo", "tofile", "loop"]) fs.rmSync(path.join(fx.root, `${tag}-${n}`));
  });

  it("property: any string as an id gives INVALID_ARGUMENT or NOT_FOUND, never INTERNAL or UNKNOWN, never the canary", async () => {
    // A root of its own holding only links that try to leave it (and no corrupt dirs).
    const root2 = path.join(fx.dir, "root-links");
    fs.mkdirSync(root2);
    fs.symlinkSync(path.join(outside, "canary"), path.join(root2, "abs"));
    fs.symlinkSync("../outside/canary", path.join(root2, "up"));
    fs.symlinkSync("/", path.join(root2, "slash"));
    fs.symlinkSync("..", path.join(root2, "dotdot"));
    fs.mkdirSync(path.join(root2, "inner"));
    fs.symlinkSync(path.join(outside, "canary", "state.json"), path.join(root2, "inner", "state.json"));
    const s2 = await startServer(root2);
    const client = createShimClient(s2.socket);
    try {
      const id = fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: fc.constantFrom("a", ".", "/", "..", "abs", "up", "slash", "dotdot", "inner", "canary", "outside", " ", "\0", "é"), maxLength: 12 }),
        fc.constantFrom("..", ".", "/", "abs/..", "../outside/canary", "up", "abs", "slash", "dotdot", "inner", "x".repeat(255), "x".repeat(256)),
      );
      await fc.assert(
        fc.asyncProperty(id, async (candidate) => {
          const e = await failure(client.state(candidate));
          expect(["INVALID_ARGUMENT", "NOT_FOUND"]).toContain(e.codeName);
          const st = await failure(client.start(candidate, { deadlineMs: 2000 }));
          expect(["INVALID_ARGUMENT", "NOT_FOUND"]).toContain(st.codeName);
        }),
        { numRuns: 300 },
      );
      await logSettled();
      expect(s2.stderr()).not.toContain("CANARY");
    } finally {
      client.close();
      await s2.stop();
    }
  });

  it("property: SecureJoin never leaves the root, whatever symlinks and components", () => {
    const parts = fc.constantFrom("a", "..", ".", "rs-abs", "rs-up", "rs-slash", "rs-alias", "state.json", "", "x/../..");
    fc.assert(
      fc.property(fc.array(parts, { maxLength: 8 }), (segments) => {
        const joined = secureJoin(fx.root, segments.join("/"));
        expect(isWithin(fx.root, joined)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("an exec.fifo that cannot be stat'ed (symlink loop, ENOTDIR) reads as no fifo, as in runc: running", async () => {
    for (const target of ["exec.fifo", "state.json/x"]) {
      const id = fx.create();
      const fifo = path.join(fx.root, id, "exec.fifo");
      fs.rmSync(fifo);
      fs.symlinkSync(target, fifo);
      expect(await shim.state(id)).toMatchObject({ status: "running" });
      const e = await failure(shim.start(id));
      expect([e.codeName, e.details]).toEqual(["FAILED_PRECONDITION", "cannot start an already running container"]);
    }
  });
});
