/**
 * Interop with a client in another language (Python grpcio, Debian
 * python3-grpcio + python3-grpc-tools): the Python client's view of every call
 * must equal the TypeScript client's, and a strict reflection client (what
 * grpcurl does) must be able to link the reflected descriptors and call the
 * service from them. Real runc containers, a real server process.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, ShimError, type ContainerStateView, type ShimClient } from "../../src/client/client.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";
import { makeBundle, RuncFixture, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";
import { startServer, type ServerProcess } from "../helpers/server.js";

/** Debian's Python, which has python3-grpcio (the `python3` on PATH may be another one). */
const PYTHON = "/usr/bin/python3";
const INTEROP_PY = fileURLToPath(new URL("../interop/interop.py", import.meta.url));
const REFLECTION_PY = fileURLToPath(new URL("../interop/reflection.py", import.meta.url));
/** Per-test bound: each Python run generates its stubs first (about a second on an idle machine). */
const TEST_TIMEOUT_MS = 90_000;

/** Why the Python interop tests cannot run here, or undefined when they can. */
function pythonGrpcUnavailable(): string | undefined {
  const r = spawnSync(PYTHON, ["-c", "import grpc, grpc_tools, google.protobuf"], { encoding: "utf8", env: pythonEnv() });
  if (r.error !== undefined) return `${PYTHON} cannot run (${r.error.message}); apt-get install -y python3-grpcio python3-grpc-tools`;
  if (r.status !== 0) return `${PYTHON} lacks grpc (apt-get install -y python3-grpcio python3-grpc-tools): ${r.stderr.trim().split("\n").pop()}`;
  return undefined;
}

/**
 * Whether to skip the Python tests: never under CI=true (missing python grpc
 * then fails the run), otherwise when it is missing, with a message saying what
 * to install. Same pattern as `skipRunc`.
 */
function skipPython(): boolean {
  const why = pythonGrpcUnavailable();
  if (why === undefined) return false;
  if (process.env.CI === "true") throw new Error(`CI=true but ${why}`);
  console.warn(`skipping Python interop tests: ${why}`);
  return true;
}

/** The environment for Debian's Python: no PYTHONPATH or user site from another Python. */
function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONNOUSERSITE: "1", PYTHONDONTWRITEBYTECODE: "1" };
  delete env.PYTHONPATH;
  delete env.PYTHONHOME;
  return env;
}

/** Runs a Python script; resolves with its parsed JSON stdout, rejects (with stderr) on a non-zero exit. */
function runPython<T>(script: string, args: string[], input = ""): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const proc = spawn(PYTHON, [script, ...args], { stdio: ["pipe", "pipe", "pipe"], env: pythonEnv() });
    let out = "";
    let err = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    proc.once("error", reject);
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`${script} exited with ${code ?? signal}: ${err.trim()}`));
        return;
      }
      try {
        resolve(JSON.parse(out) as T);
      } catch (e) {
        reject(new Error(`${script} printed no JSON (${(e as Error).message}): ${out}\n${err}`));
      }
    });
    proc.stdin.end(input);
  });
}

/** The request fields of a call besides the id, by proto field name (interop.py's "request" object). */
interface CaseRequest {
  bundle?: string;
  terminal?: boolean;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  signal?: number;
  all?: boolean;
  force?: boolean;
}

/** One call of the interop script. */
interface Case {
  rpc: "State" | "Start" | "Create" | "Kill" | "Pause" | "Resume" | "Delete";
  id: string;
  request?: CaseRequest;
}

/** A StateResponse in the form both clients print. */
interface CanonicalState {
  id: string;
  bundle: string;
  pid: number;
  status: string;
  rootfs: string;
  created: { seconds: number; nanos: number };
  annotations: Record<string, string>;
  owner: string;
  ociVersion: string;
}

/** The outcome of one call, in the form both clients print. */
type Outcome =
  | { rpc: string; id: string; ok: true; response: CanonicalState | { pid: number } | Record<string, never> }
  | {
      rpc: string;
      id: string;
      ok: false;
      code: string;
      message: string;
      errorInfo: { reason: string; domain: string; metadata: Record<string, string> } | null;
    };

/** What interop.py prints for a failed call: also the code and message of the google.rpc.Status in the trailer. */
type PyOutcome = Outcome & { detailsStatus?: { code: number; message: string } | null };

function canonicalState(v: ContainerStateView): CanonicalState {
  return {
    id: v.id,
    bundle: v.bundle,
    pid: v.pid,
    status: `CONTAINER_STATUS_${v.status.toUpperCase()}`,
    rootfs: v.rootfs,
    created: { seconds: v.createdSeconds, nanos: v.createdNanos },
    annotations: v.annotations,
    owner: v.owner,
    ociVersion: v.ociVersion,
  };
}

/**
 * A Create with `terminal` set, which the wrapper cannot send (it always sends
 * false): through its underlying generated client, errors decoded as the
 * wrapper decodes them.
 */
function rawCreate(shim: ShimClient, id: string, req: CaseRequest, deadlineMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = { id, bundle: req.bundle ?? "", terminal: req.terminal === true, stdin: req.stdin ?? "", stdout: req.stdout ?? "", stderr: req.stderr ?? "" };
    shim.raw.create(request, new Metadata(), { deadline: Date.now() + deadlineMs }, (e, r) => (e ? reject(ShimError.fromServiceError(e)) : resolve(r.pid)));
  });
}

/** One call through the TypeScript client; the response in the form interop.py prints it. */
async function tsCall(shim: ShimClient, c: Case): Promise<Exclude<Outcome, { ok: false }>["response"]> {
  const opts = { deadlineMs: 20_000 };
  const req = c.request ?? {};
  switch (c.rpc) {
    case "State":
      return canonicalState(await shim.state(c.id, opts));
    case "Start":
      return { pid: await shim.start(c.id, opts) };
    case "Create":
      if (req.terminal === true) return { pid: await rawCreate(shim, c.id, req, opts.deadlineMs) };
      return { pid: await shim.create(c.id, { bundle: req.bundle ?? "", stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }, opts) };
    case "Kill":
      await shim.kill(c.id, req.signal ?? 0, { ...opts, all: req.all === true });
      return {};
    case "Pause":
      await shim.pause(c.id, opts);
      return {};
    case "Resume":
      await shim.resume(c.id, opts);
      return {};
    case "Delete":
      return { pid: await shim.delete(c.id, { ...opts, force: req.force === true }) };
  }
}

/** The same cases through the package's TypeScript client (createShimClient). */
async function tsCalls(shim: ShimClient, cases: Case[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const c of cases) {
    try {
      const response = await tsCall(shim, c);
      out.push({ rpc: c.rpc, id: c.id, ok: true, response });
    } catch (e) {
      if (!(e instanceof ShimError)) throw e;
      const errorInfo = e.reason === undefined ? null : { reason: e.reason, domain: e.domain ?? "", metadata: e.metadata };
      out.push({ rpc: c.rpc, id: c.id, ok: false, code: e.codeName, message: e.details, errorInfo });
    }
  }
  return out;
}

/**
 * The same cases through Python. Checks, for each failure, that the
 * google.rpc.Status in the trailer has the call's own code and message (the
 * richer error model requires it), then drops it so the rest compares to TS.
 */
async function pyCalls(target: string, cases: Case[]): Promise<Outcome[]> {
  const results = await runPython<PyOutcome[]>(INTEROP_PY, ["--target", target], JSON.stringify(cases));
  expect(results).toHaveLength(cases.length);
  return results.map((r) => {
    if (!r.ok) {
      expect(r.detailsStatus, `${r.rpc} ${JSON.stringify(r.id)}: grpc-status-details-bin`).toEqual({
        code: GrpcStatus[r.code as keyof typeof GrpcStatus],
        message: r.message,
      });
    }
    const { detailsStatus: _, ...rest } = r;
    return rest as Outcome;
  });
}

/** Python and TypeScript make the same calls; returns both after asserting they are equal. */
async function bothAgree(target: string, shim: ShimClient, cases: Case[]): Promise<Outcome[]> {
  const py = await pyCalls(target, cases);
  const ts = await tsCalls(shim, cases);
  expect(py).toEqual(ts);
  return py;
}

function failed(o: Outcome | undefined): [string, string, string | undefined, string, Record<string, string> | undefined] {
  if (o === undefined || o.ok) throw new Error(`expected a failure, got ${JSON.stringify(o)}`);
  return [o.code, o.message, o.errorInfo?.reason, o.errorInfo?.domain ?? "", o.errorInfo?.metadata];
}

function stateOf(o: Outcome | undefined): CanonicalState {
  if (o === undefined || !o.ok || !("status" in o.response)) throw new Error(`expected a State response, got ${JSON.stringify(o)}`);
  return o.response as CanonicalState;
}

/** RFC 3339 (any number of fraction digits) -> seconds and nanos. */
function parseRfc3339(s: string): { seconds: number; nanos: number } {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(s);
  if (m === null) throw new Error(`not an RFC 3339 UTC time: ${s}`);
  return { seconds: Date.parse(`${m[1]}Z`) / 1000, nanos: Number((m[2] ?? "").padEnd(9, "0")) };
}

/** Decided once for both suites (it may throw under CI=true, failing the file). */
const SKIP = skipRunc() || skipPython();

/** Stops the server and removes the temporary dir `startServer` made for its socket. */
async function stopServer(server: ServerProcess | undefined): Promise<void> {
  if (server === undefined) return;
  await server.stop();
  fs.rmSync(path.dirname(server.socket), { recursive: true, force: true });
}

describe.skipIf(SKIP)("Python client interop (grpcio, stubs generated from proto/ at test time)", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  let target: string;

  beforeAll(async () => {
    fx = new RuncFixture("runc-shim-interop-");
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
    target = `unix://${server.socket}`;
  });

  afterAll(async () => {
    shim?.close();
    await stopServer(server);
    fx?.cleanup();
  });

  it("sees the same State of a created container, NOT_FOUND and INVALID_ARGUMENT as the TypeScript client", async () => {
    const id = fx.create();
    const missing = "rs-interop-no-such";
    const long = "x".repeat(256);
    const cases: Case[] = [
      { rpc: "State", id },
      { rpc: "State", id: missing },
      { rpc: "Start", id: missing },
      { rpc: "State", id: "a b" },
      { rpc: "Start", id: "a b" },
      { rpc: "State", id: "" },
      { rpc: "Start", id: "" },
      { rpc: "State", id: "../x" },
      { rpc: "State", id: long },
    ];
    const r = await bothAgree(target, shim, cases);

    const state = stateOf(r[0]);
    const runcView = fx.state(id) as unknown as { created: string };
    expect(state).toEqual({
      id,
      bundle: fx.bundle,
      pid: fx.initPid(id),
      status: "CONTAINER_STATUS_CREATED",
      rootfs: `${fx.bundle}/rootfs`,
      created: parseRfc3339(runcView.created),
      annotations: {},
      owner: "",
      ociVersion: "1.0.2-dev",
    });
    for (const o of [r[1], r[2]]) {
      expect(failed(o)).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: missing }]);
    }
    for (const o of [r[3], r[4]]) {
      const [code, message, reason, domain, metadata] = failed(o);
      expect([code, reason, domain, metadata]).toEqual(["INVALID_ARGUMENT", "INVALID_ID_FORMAT", "runc-shim", { container_id: "a b" }]);
      expect(message).toMatch(/^invalid container ID format: /);
    }
    for (const o of [r[5], r[6]]) {
      const [code, message, reason, domain] = failed(o);
      expect([code, message, reason, domain]).toEqual(["INVALID_ARGUMENT", "container id cannot be empty", "INVALID_ID_FORMAT", "runc-shim"]);
    }
    const [dotCode, , dotReason] = failed(r[7]);
    expect([dotCode, dotReason]).toEqual(["INVALID_ARGUMENT", "INVALID_ID_FORMAT"]);
    expect(failed(r[8])[1]).toBe("invalid container ID format: container id is longer than 255 bytes");
  }, TEST_TIMEOUT_MS);

  it("a Start that outlives the Python client's deadline is DEADLINE_EXCEEDED to the server too, though C-core rounded the timeout up", async () => {
    // A created container whose init never writes its byte: a real fifo, an init that lives.
    const init = await spawnInit();
    const id = `rs-late-${process.pid}`;
    try {
      const dir = writeFakeContainer(fx.root, id, init, { created: false, bundle: fx.bundle });
      expect(spawnSync("mkfifo", [path.join(dir, "exec.fifo")]).status).toBe(0);
      // 1.005 s goes out as "101" in units of 10 ms (C-core's timeout_encoding.cc): the server's
      // deadline is ~5 ms after the client's own, which used to fire first (a cancel, logged CANCELLED).
      const [r] = await runPython<PyOutcome[]>(INTEROP_PY, ["--target", target, "--timeout", "1.005"], JSON.stringify([{ rpc: "Start", id }]));
      expect(r).toMatchObject({ ok: false, code: "DEADLINE_EXCEEDED" });
      let line: { code?: string; errorKind?: string } | undefined;
      await waitFor(() => {
        line = server
          .stderr()
          .split("\n")
          .filter((l) => l.includes('"rpc":"Start"') && l.includes(`"containerId":"${id}"`))
          .map((l) => JSON.parse(l) as { code?: string; errorKind?: string })
          .find((l) => l.code !== undefined);
        return line !== undefined;
      }, 5000, "the server's log line of the Start");
      expect(line).toMatchObject({ code: "DEADLINE_EXCEEDED", errorKind: "DeadlineExceeded" });
      expect(fs.existsSync(path.join(dir, "exec.fifo"))).toBe(true); // nothing started
    } finally {
      await init.kill();
      fs.rmSync(path.join(fx.root, id), { recursive: true, force: true });
    }
  }, TEST_TIMEOUT_MS);

  it("sees the same Start, running, start-again and stopped answers as the TypeScript client", async () => {
    const byPython = fx.create();
    const byTs = fx.create();

    // Start itself changes the container, so each client starts its own and gets that container's init pid.
    const pyStart = await pyCalls(target, [{ rpc: "Start", id: byPython }]);
    const tsStart = await tsCalls(shim, [{ rpc: "Start", id: byTs }]);
    expect(pyStart).toEqual([{ rpc: "Start", id: byPython, ok: true, response: { pid: fx.initPid(byPython) } }]);
    expect(tsStart).toEqual([{ rpc: "Start", id: byTs, ok: true, response: { pid: fx.initPid(byTs) } }]);
    expect(fx.state(byPython).status).toBe("running");

    // Everything else both clients ask about both containers.
    const cases: Case[] = [
      { rpc: "State", id: byPython },
      { rpc: "State", id: byTs },
      { rpc: "Start", id: byPython },
      { rpc: "Start", id: byTs },
    ];
    const running = await bothAgree(target, shim, cases);
    expect(stateOf(running[0])).toMatchObject({ status: "CONTAINER_STATUS_RUNNING", pid: fx.initPid(byPython) });
    expect(stateOf(running[1])).toMatchObject({ status: "CONTAINER_STATUS_RUNNING", pid: fx.initPid(byTs) });
    expect(failed(running[2])).toEqual([
      "FAILED_PRECONDITION",
      "cannot start an already running container",
      "CONTAINER_RUNNING",
      "runc-shim",
      { container_id: byPython },
    ]);
    expect(failed(running[3])[2]).toBe("CONTAINER_RUNNING");

    for (const id of [byPython, byTs]) fx.runc("kill", id, "KILL");
    await waitFor(() => fx.state(byPython).status === "stopped" && fx.state(byTs).status === "stopped", 5000, "runc to see both stopped");
    const stopped = await bothAgree(target, shim, cases);
    expect(stateOf(stopped[0])).toMatchObject({ status: "CONTAINER_STATUS_STOPPED", pid: 0 });
    expect(stateOf(stopped[1])).toMatchObject({ status: "CONTAINER_STATUS_STOPPED", pid: 0 });
    expect(failed(stopped[2])).toEqual([
      "FAILED_PRECONDITION",
      "cannot start a container that has stopped",
      "CONTAINER_STOPPED",
      "runc-shim",
      { container_id: byPython },
    ]);
  }, TEST_TIMEOUT_MS);
});

describe.skipIf(SKIP)("Python client interop: Watch-alls of 3,000 containers, unbatched and batched", () => {
  const WATCH_PY = fileURLToPath(new URL("../interop/watch.py", import.meta.url));
  const N = 3000;
  let fake: ReturnType<typeof tempRoot>;
  let server: ServerProcess | undefined;
  const ids: string[] = [];

  beforeAll(async () => {
    fake = tempRoot("rs-pywatch-");
    for (let i = 0; i < N; i++) {
      const id = `pyw-${String(i).padStart(5, "0")}`;
      writeFakeContainer(fake.root, id, DEAD_INIT, { created: false });
      ids.push(id);
    }
    server = await startServer(fake.root);
  }, TEST_TIMEOUT_MS);
  afterAll(async () => {
    await stopServer(server);
    fake?.cleanup();
  });

  type Stream = { messages: number; events: number; initial: string[]; kinds: Record<string, number>; statuses: Record<string, number> };

  it("8 streams at once on one channel: each gets every container once, in id order, then SYNCED", async () => {
    const r = await runPython<{ streams: Stream[] }>(WATCH_PY, ["--target", `unix://${(server as ServerProcess).socket}`, "--streams", "8"]);
    expect(r.streams).toHaveLength(8);
    for (const st of r.streams) {
      expect(st.initial).toEqual(ids);
      expect(st.kinds).toEqual({ WATCH_EVENT_KIND_INITIAL: N, WATCH_EVENT_KIND_SYNCED: 1 });
      expect(st.statuses).toEqual({ CONTAINER_STATUS_STOPPED: N });
      expect(st.messages).toBe(N + 1);
    }
  }, TEST_TIMEOUT_MS);

  it("max_batch 100: the same events in 31 messages per stream", async () => {
    const r = await runPython<{ streams: Stream[] }>(WATCH_PY, ["--target", `unix://${(server as ServerProcess).socket}`, "--streams", "4", "--max-batch", "100"]);
    for (const st of r.streams) {
      expect(st.initial).toEqual(ids);
      expect(st.events).toBe(N + 1);
      expect(st.messages).toBe(Math.ceil((N + 1) / 100));
    }
  }, TEST_TIMEOUT_MS);
});

describe.skipIf(SKIP)("Python client interop: Create, Kill, Pause, Resume, Delete", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;
  let target: string;
  /** Ids that Create may have made (the fixture only knows its own `runc create`s): `runc delete -f` in afterAll. */
  const made = new Set<string>();
  const missing = "rs-interop-lifecycle-no-such";

  beforeAll(async () => {
    fx = new RuncFixture("runc-shim-interop-life-");
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
    target = `unix://${server.socket}`;
  });

  afterAll(async () => {
    shim?.close();
    await stopServer(server);
    for (const id of made) {
      // A paused container cannot be deleted until thawed (as in RuncFixture.cleanup).
      fx?.tryRunc("resume", id);
      fx?.tryRunc("delete", "-f", id);
    }
    fx?.cleanup();
  });

  /** A fresh unique id, deleted with `runc delete -f` at the end whatever happens to it. */
  function newId(): string {
    const id = uniqueId();
    made.add(id);
    return id;
  }

  /** runc says the container does not exist, and its state dir is gone. */
  function expectGone(id: string): void {
    const r = fx.tryRunc("state", id);
    expect(r.status, `runc state ${id}`).toBe(1);
    expect(r.stderr).toContain('msg="container does not exist"');
    expect(fs.existsSync(path.join(fx.root, id))).toBe(false);
  }

  /** `runc create` + `runc start` (runc's own, not the shim's). */
  function running(): string {
    const id = fx.create();
    fx.runc("start", id);
    return id;
  }

  /** A container whose init was SIGKILLed by runc, once runc sees it stopped. */
  async function stopped(): Promise<string> {
    const id = running();
    fx.runc("kill", id, "KILL");
    await waitFor(() => fx.state(id).status === "stopped", 5000, `runc to see ${id} stopped`);
    return id;
  }

  it("agrees on Create: OK with the init pid, ALREADY_EXISTS, INVALID_ARGUMENT (relative bundle, terminal), RUNC_FAILED", async () => {
    const byPython = newId();
    const byTs = newId();
    const out = (id: string): string => path.join(fx.dir, `${id}.out`);
    // Create changes the root, so each client creates its own container; stdout/stderr go through the request.
    const createOf = (id: string): Case => ({ rpc: "Create", id, request: { bundle: fx.bundle, stdout: out(id), stderr: out(id) } });
    const pyCreate = await pyCalls(target, [createOf(byPython)]);
    const tsCreate = await tsCalls(shim, [createOf(byTs)]);
    expect(pyCreate).toEqual([{ rpc: "Create", id: byPython, ok: true, response: { pid: fx.initPid(byPython) } }]);
    expect(tsCreate).toEqual([{ rpc: "Create", id: byTs, ok: true, response: { pid: fx.initPid(byTs) } }]);
    const pyPid = fx.initPid(byPython);
    for (const id of [byPython, byTs]) {
      expect(fx.initPid(id)).toBeGreaterThan(0);
      expect(fx.state(id)).toMatchObject({ status: "created", pid: fx.initPid(id), bundle: fx.bundle });
      // The server opened the stdout path it was given: created 0600.
      expect(fs.statSync(out(id)).mode & 0o777).toBe(0o600);
    }

    // A bundle whose process.args[0] is not in its rootfs: runc create itself fails.
    const noExec = makeBundle(path.join(fx.dir, "bundle-no-exec"), ["/bin/no-such-binary"]);
    const [relative, terminal, runcFails] = [newId(), newId(), newId()];
    const cases: Case[] = [
      { rpc: "Create", id: byPython, request: { bundle: fx.bundle } },
      { rpc: "Create", id: relative, request: { bundle: "relative/bundle" } },
      { rpc: "Create", id: terminal, request: { bundle: fx.bundle, terminal: true } },
      { rpc: "Create", id: runcFails, request: { bundle: noExec } },
    ];
    const r = await bothAgree(target, shim, cases);
    expect(failed(r[0])).toEqual(["ALREADY_EXISTS", "container with given ID already exists", "CONTAINER_EXISTS", "runc-shim", { container_id: byPython }]);
    expect(failed(r[1])).toEqual(["INVALID_ARGUMENT", 'bundle "relative/bundle" is not an absolute path', "INVALID_ARGUMENT", "runc-shim", { container_id: relative }]);
    expect(failed(r[2])).toEqual([
      "INVALID_ARGUMENT",
      "terminal is not supported: runc-shim provides no console socket (runc create --console-socket)",
      "INVALID_ARGUMENT",
      "runc-shim",
      { container_id: terminal },
    ]);
    expect(failed(r[3])).toEqual([
      "FAILED_PRECONDITION",
      'runc create failed: unable to start container process: exec: "/bin/no-such-binary": stat /bin/no-such-binary: no such file or directory',
      "RUNC_FAILED",
      "runc-shim",
      { container_id: runcFails },
    ]);
    // The existing container is untouched; nothing was made for the failed ones.
    expect(fx.state(byPython)).toMatchObject({ status: "created", pid: pyPid });
    for (const id of [relative, terminal, runcFails]) expectGone(id);
  }, TEST_TIMEOUT_MS);

  it("agrees on Create's RUNC_NOT_FOUND (a server whose --runc cannot be run)", async () => {
    const noRunc = await startServer(fx.root, ["--runc", "/nonexistent/runc-shim-test/runc"]);
    const shim2 = createShimClient(noRunc.socket);
    try {
      const id = newId();
      const [o] = await bothAgree(`unix://${noRunc.socket}`, shim2, [{ rpc: "Create", id, request: { bundle: fx.bundle } }]);
      expect(failed(o)).toEqual([
        "FAILED_PRECONDITION",
        'cannot run runc binary "/nonexistent/runc-shim-test/runc" (--runc): no such file; Create needs runc, every other call works without it',
        "RUNC_NOT_FOUND",
        "runc-shim",
        { container_id: id },
      ]);
      expectGone(id);
    } finally {
      shim2.close();
      await stopServer(noRunc);
    }
  }, TEST_TIMEOUT_MS);

  it("agrees on Kill: OK, INVALID_ARGUMENT for signal 65, CONTAINER_NOT_RUNNING once stopped, NOT_FOUND", async () => {
    const byPython = running();
    const byTs = running();

    const live = await bothAgree(target, shim, [
      { rpc: "Kill", id: byPython, request: { signal: 65 } },
      { rpc: "Kill", id: missing, request: { signal: 9 } },
    ]);
    expect(failed(live[0])).toEqual(["INVALID_ARGUMENT", "invalid signal 65: expected 1-64 (0 means SIGTERM)", "INVALID_ARGUMENT", "runc-shim", { container_id: byPython }]);
    expect(failed(live[1])).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: missing }]);
    expect(fx.state(byPython)).toMatchObject({ status: "running", pid: fx.initPid(byPython) }); // nothing was signalled

    // Kill changes the container, so each client kills its own (SIGKILL: Kill answers once the init is dead).
    const pyKill = await pyCalls(target, [{ rpc: "Kill", id: byPython, request: { signal: 9 } }]);
    const tsKill = await tsCalls(shim, [{ rpc: "Kill", id: byTs, request: { signal: 9 } }]);
    expect(pyKill).toEqual([{ rpc: "Kill", id: byPython, ok: true, response: {} }]);
    expect(tsKill).toEqual([{ rpc: "Kill", id: byTs, ok: true, response: {} }]);
    // Kill waits at most 100 ms for the init to die; a loaded machine may take longer to tear its pid namespace down.
    await waitFor(() => fx.state(byPython).status === "stopped" && fx.state(byTs).status === "stopped", 5000, "runc to see both stopped");
    for (const id of [byPython, byTs]) expect(fx.state(id)).toMatchObject({ status: "stopped", pid: 0 });

    const dead = await bothAgree(target, shim, [
      { rpc: "Kill", id: byPython, request: { signal: 9 } },
      { rpc: "Kill", id: byPython, request: { signal: 9, all: true } },
      { rpc: "State", id: byPython },
    ]);
    expect(failed(dead[0])).toEqual(["FAILED_PRECONDITION", "container not running", "CONTAINER_NOT_RUNNING", "runc-shim", { container_id: byPython }]);
    // all: every process of the (empty) cgroup, as `runc kill --all` on a stopped container: OK.
    expect(dead[1]).toEqual({ rpc: "Kill", id: byPython, ok: true, response: {} });
    expect(stateOf(dead[2])).toMatchObject({ status: "CONTAINER_STATUS_STOPPED", pid: 0 });
    // runc answers the same.
    expect(fx.tryRunc("kill", byPython, "KILL").stderr).toContain('msg="container not running"');
    expect(fx.tryRunc("kill", "--all", byPython, "KILL").status).toBe(0);
    expect(fx.state(byPython).status).toBe("stopped");
  }, TEST_TIMEOUT_MS);

  it("agrees on Pause and Resume: OK, CONTAINER_NOT_RUNNING, CONTAINER_NOT_PAUSED, NOT_FOUND, NO_FREEZER", async () => {
    const byPython = running();
    const byTs = running();
    const dead = await stopped();

    const wrong = await bothAgree(target, shim, [
      { rpc: "Resume", id: byPython },
      { rpc: "Pause", id: dead },
      { rpc: "Resume", id: dead },
      { rpc: "Pause", id: missing },
      { rpc: "Resume", id: missing },
    ]);
    expect(failed(wrong[0])).toEqual(["FAILED_PRECONDITION", "container not paused", "CONTAINER_NOT_PAUSED", "runc-shim", { container_id: byPython }]);
    expect(failed(wrong[1])).toEqual(["FAILED_PRECONDITION", "container not running", "CONTAINER_NOT_RUNNING", "runc-shim", { container_id: dead }]);
    expect(failed(wrong[2])).toEqual(["FAILED_PRECONDITION", "container not paused", "CONTAINER_NOT_PAUSED", "runc-shim", { container_id: dead }]);
    for (const o of [wrong[3], wrong[4]]) {
      expect(failed(o)).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: missing }]);
    }
    expect(fx.state(byPython).status).toBe("running");
    expect(fx.state(dead).status).toBe("stopped");

    // Pause and Resume change the container, so each client pauses and resumes its own.
    expect(await pyCalls(target, [{ rpc: "Pause", id: byPython }])).toEqual([{ rpc: "Pause", id: byPython, ok: true, response: {} }]);
    expect(await tsCalls(shim, [{ rpc: "Pause", id: byTs }])).toEqual([{ rpc: "Pause", id: byTs, ok: true, response: {} }]);
    for (const id of [byPython, byTs]) expect(fx.state(id)).toMatchObject({ status: "paused", pid: fx.initPid(id) });

    const paused = await bothAgree(target, shim, [
      { rpc: "Pause", id: byPython },
      { rpc: "State", id: byPython },
    ]);
    expect(failed(paused[0])).toEqual(["FAILED_PRECONDITION", "container not running", "CONTAINER_NOT_RUNNING", "runc-shim", { container_id: byPython }]);
    expect(stateOf(paused[1])).toMatchObject({ status: "CONTAINER_STATUS_PAUSED", pid: fx.initPid(byPython) });
    expect(fx.tryRunc("pause", byPython).stderr).toContain('msg="container not running"'); // runc's words too

    expect(await pyCalls(target, [{ rpc: "Resume", id: byPython }])).toEqual([{ rpc: "Resume", id: byPython, ok: true, response: {} }]);
    expect(await tsCalls(shim, [{ rpc: "Resume", id: byTs }])).toEqual([{ rpc: "Resume", id: byTs, ok: true, response: {} }]);
    for (const id of [byPython, byTs]) expect(fx.state(id)).toMatchObject({ status: "running", pid: fx.initPid(id) });
    expect(fx.tryRunc("resume", byPython).stderr).toContain('msg="container not paused"');

    // No freezer cgroup: a state dir whose cgroup_paths is empty, its init a `sleep` of this test.
    const init = await spawnInit();
    const noFreezer = newId();
    try {
      writeFakeContainer(fx.root, noFreezer, init, { created: false, bundle: fx.bundle });
      const r = await bothAgree(target, shim, [
        { rpc: "Pause", id: noFreezer },
        { rpc: "State", id: noFreezer },
      ]);
      expect(failed(r[0])).toEqual([
        "FAILED_PRECONDITION",
        "cannot toggle freezer: cgroups not configured for container",
        "NO_FREEZER",
        "runc-shim",
        { container_id: noFreezer },
      ]);
      expect(stateOf(r[1])).toMatchObject({ status: "CONTAINER_STATUS_RUNNING", pid: init.pid });
      expect(fx.state(noFreezer)).toMatchObject({ status: "running", pid: init.pid });
    } finally {
      await init.kill();
    }
  }, TEST_TIMEOUT_MS);

  it("agrees on Delete: OK with the pid, CONTAINER_NOT_STOPPED without force, force OK, NOT_FOUND", async () => {
    const [stoppedPy, stoppedTs] = [await stopped(), await stopped()];
    const [createdPy, createdTs] = [fx.create(), fx.create()];
    const [runningPy, runningTs] = [running(), running()];
    const paused = running();
    fx.runc("pause", paused);
    const pid = new Map([stoppedPy, stoppedTs, createdPy, createdTs, runningPy, runningTs].map((id) => [id, fx.initPid(id)]));

    const refused = await bothAgree(target, shim, [
      { rpc: "Delete", id: runningPy },
      { rpc: "Delete", id: paused },
      { rpc: "Delete", id: missing },
      { rpc: "Delete", id: missing, request: { force: true } },
    ]);
    expect(failed(refused[0])).toEqual([
      "FAILED_PRECONDITION",
      `cannot delete container ${runningPy} that is not stopped: running`,
      "CONTAINER_NOT_STOPPED",
      "runc-shim",
      { container_id: runningPy },
    ]);
    expect(failed(refused[1])).toEqual([
      "FAILED_PRECONDITION",
      `cannot delete container ${paused} that is not stopped: paused`,
      "CONTAINER_NOT_STOPPED",
      "runc-shim",
      { container_id: paused },
    ]);
    expect(failed(refused[2])).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: missing }]);
    // force makes a missing container a success, as `runc delete --force`.
    expect(refused[3]).toEqual({ rpc: "Delete", id: missing, ok: true, response: { pid: 0 } });
    expect(fx.state(runningPy)).toMatchObject({ status: "running", pid: pid.get(runningPy) });
    expect(fx.state(paused).status).toBe("paused");
    expect(fx.tryRunc("delete", runningPy).stderr).toContain(`msg="cannot delete container ${runningPy} that is not stopped: running`);

    // Delete removes the container, so each client deletes its own: stopped and created without force, running with force.
    const py = await pyCalls(target, [
      { rpc: "Delete", id: stoppedPy },
      { rpc: "Delete", id: createdPy },
      { rpc: "Delete", id: runningPy, request: { force: true } },
    ]);
    const ts = await tsCalls(shim, [
      { rpc: "Delete", id: stoppedTs },
      { rpc: "Delete", id: createdTs },
      { rpc: "Delete", id: runningTs, request: { force: true } },
    ]);
    expect(py).toEqual([stoppedPy, createdPy, runningPy].map((id) => ({ rpc: "Delete", id, ok: true, response: { pid: pid.get(id) } })));
    expect(ts).toEqual([stoppedTs, createdTs, runningTs].map((id) => ({ rpc: "Delete", id, ok: true, response: { pid: pid.get(id) } })));
    for (const id of [stoppedPy, stoppedTs, createdPy, createdTs, runningPy, runningTs]) {
      expect(pid.get(id)).toBeGreaterThan(0);
      expectGone(id);
      fx.forget(id);
    }
    // Gone for both clients now.
    const gone = await bothAgree(target, shim, [{ rpc: "Delete", id: stoppedPy }, { rpc: "State", id: runningPy }]);
    expect(failed(gone[0])).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: stoppedPy }]);
    expect(failed(gone[1])).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS", "runc-shim", { container_id: runningPy }]);
    expect(fx.state(paused).status).toBe("paused");
  }, TEST_TIMEOUT_MS);
});

/** What reflection.py prints (see its main()). */
interface ReflectionReport {
  reflection: Record<
    "v1" | "v1alpha",
    {
      services: string[];
      trail: Array<{ file_containing_symbol?: string; file_by_filename?: string; served: string[] }>;
      files: Array<{ name: string; package: string; syntax: string; dependency: string[] }>;
      shimFile: string;
      negativeControl: { rejected: boolean; error: string | null };
      methods: Record<string, { input: string; output: string; inputFields: Record<string, number>; clientStreaming: boolean; serverStreaming: boolean }>;
      rpc: {
        trail: Array<{ file_containing_symbol?: string; file_by_filename?: string; served: string[] }>;
        files: Array<{ name: string; package: string; syntax: string; dependency: string[] }>;
        errorInfoFile: string;
        errorInfoFields: string[];
      };
    }
  >;
  errorDetails: {
    code: string;
    message: string;
    trailers: number;
    status?: { code: number; message: string };
    details?: Array<{ typeUrl: string; resolvedFrom: string; json: Record<string, unknown> }>;
  };
  sameFilesInV1AndV1alpha: boolean;
  descriptor: { createdType: string | null; createdTypeFile: string | null; statusType: string; annotationsIsMap: boolean };
  state: {
    method: string;
    id: string;
    pid: number;
    status: string;
    bundle: string;
    rootfs: string;
    created: { seconds: number; nanos: number; type: string };
    annotations: Record<string, string>;
    owner: string;
    ociVersion: string;
  };
  stateJson: Record<string, unknown>;
  health: Record<string, { status?: string; code?: string; message?: string }>;
  lifecycleJson: Record<"killSignal65" | "deleteMissing" | "deleteMissingForce", { response?: Record<string, unknown>; code?: string; message?: string }>;
}

/** Every method of runcshim.v1.ShimService as reflection must resolve it (request fields by number, from shim.proto). */
const SHIM_METHODS = {
  Start: { input: "runcshim.v1.StartRequest", output: "runcshim.v1.StartResponse", inputFields: { id: 1 }, clientStreaming: false, serverStreaming: false },
  State: { input: "runcshim.v1.StateRequest", output: "runcshim.v1.StateResponse", inputFields: { id: 1 }, clientStreaming: false, serverStreaming: false },
  List: { input: "runcshim.v1.ListRequest", output: "runcshim.v1.ListResponse", inputFields: {}, clientStreaming: false, serverStreaming: false },
  Watch: { input: "runcshim.v1.WatchRequest", output: "runcshim.v1.WatchResponse", inputFields: { id: 1, max_batch: 2 }, clientStreaming: false, serverStreaming: true },
  Create: {
    input: "runcshim.v1.CreateRequest",
    output: "runcshim.v1.CreateResponse",
    inputFields: { id: 1, bundle: 2, terminal: 4, stdin: 5, stdout: 6, stderr: 7 },
    clientStreaming: false,
    serverStreaming: false,
  },
  Kill: { input: "runcshim.v1.KillRequest", output: "runcshim.v1.KillResponse", inputFields: { id: 1, signal: 3, all: 4 }, clientStreaming: false, serverStreaming: false },
  Pause: { input: "runcshim.v1.PauseRequest", output: "runcshim.v1.PauseResponse", inputFields: { id: 1 }, clientStreaming: false, serverStreaming: false },
  Resume: { input: "runcshim.v1.ResumeRequest", output: "runcshim.v1.ResumeResponse", inputFields: { id: 1 }, clientStreaming: false, serverStreaming: false },
  Delete: { input: "runcshim.v1.DeleteRequest", output: "runcshim.v1.DeleteResponse", inputFields: { id: 1, force: 3 }, clientStreaming: false, serverStreaming: false },
};

describe.skipIf(SKIP)("strict reflection client (v1 and v1alpha) and health, from Python", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;

  beforeAll(async () => {
    fx = new RuncFixture("runc-shim-reflection-");
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await stopServer(server);
    fx?.cleanup();
  });

  it("links the reflected files strictly, resolves every ShimService method and google.rpc's error model, decodes a real error's details, and calls State, Kill, Delete and Health from them", async () => {
    const id = fx.create();
    const missing = "rs-reflection-no-such";
    const report = await runPython<ReflectionReport>(REFLECTION_PY, ["--target", `unix://${server.socket}`, "--id", id, "--missing-id", missing]);

    for (const version of ["v1", "v1alpha"] as const) {
      const r = report.reflection[version];
      expect(r.services, version).toEqual(expect.arrayContaining(["runcshim.v1.ShimService", "grpc.health.v1.Health"]));
      expect(r.shimFile).toBe("runcshim/v1/shim.proto");
      const shimFile = r.files.find((f) => f.name === "runcshim/v1/shim.proto");
      expect(shimFile).toEqual({ name: "runcshim/v1/shim.proto", package: "runcshim.v1", syntax: "proto3", dependency: ["google/protobuf/timestamp.proto"] });
      // Linked in dependency order: the import before the file importing it.
      const names = r.files.map((f) => f.name);
      expect(names.indexOf("google/protobuf/timestamp.proto")).toBeLessThan(names.indexOf("runcshim/v1/shim.proto"));
      expect(r.files.every((f) => f.syntax === "proto3")).toBe(true);
      // The dependency was fetched by its own name, as grpcurl does.
      expect(r.trail).toContainEqual({ file_by_filename: "google/protobuf/timestamp.proto", served: expect.arrayContaining(["google/protobuf/timestamp.proto"]) });
      // The pool really is strict: shim.proto alone does not link.
      expect(r.negativeControl.rejected).toBe(true);
      // Every method, the lifecycle ones included, resolves with its request and response types.
      expect(r.methods, version).toEqual(SHIM_METHODS);

      // The richer error model's files are served although no service names them (grpcurl decodes
      // ErrorInfo only then): found by symbol, their imports by file name, linked strictly.
      expect(r.rpc.errorInfoFile).toBe("google/rpc/error_details.proto");
      expect(r.rpc.errorInfoFields).toEqual(["reason", "domain", "metadata"]);
      expect(r.rpc.trail.slice(0, 2)).toEqual([
        { file_containing_symbol: "google.rpc.Status", served: expect.arrayContaining(["google/rpc/status.proto"]) },
        { file_containing_symbol: "google.rpc.ErrorInfo", served: expect.arrayContaining(["google/rpc/error_details.proto"]) },
      ]);
      expect(r.rpc.trail).toContainEqual({ file_by_filename: "google/protobuf/any.proto", served: expect.arrayContaining(["google/protobuf/any.proto"]) });
      expect(r.rpc.trail).toContainEqual({ file_by_filename: "google/protobuf/duration.proto", served: expect.arrayContaining(["google/protobuf/duration.proto"]) });
      expect(r.rpc.files.map((f) => [f.name, f.dependency])).toEqual(
        expect.arrayContaining([
          ["google/rpc/status.proto", ["google/protobuf/any.proto"]],
          ["google/rpc/error_details.proto", ["google/protobuf/duration.proto"]],
        ]),
      );
    }
    // A real error (State of a missing id): its grpc-status-details-bin decoded with the reflected
    // google.rpc.Status, its detail with the ErrorInfo resolved from the type URL, as grpcurl prints it.
    expect(report.errorDetails).toEqual({
      code: "NOT_FOUND",
      message: "container does not exist",
      trailers: 1,
      status: { code: 5, message: "container does not exist" },
      details: [
        {
          typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
          resolvedFrom: "google/rpc/error_details.proto",
          json: { reason: "CONTAINER_NOT_EXISTS", domain: "runc-shim", metadata: { container_id: missing } },
        },
      ],
    });
    expect(report.sameFilesInV1AndV1alpha).toBe(true);
    expect(report.descriptor).toEqual({
      createdType: "google.protobuf.Timestamp",
      createdTypeFile: "google/protobuf/timestamp.proto",
      statusType: "runcshim.v1.ContainerStatus",
      annotationsIsMap: true,
    });

    const view = await shim.state(id);
    expect(report.state).toEqual({
      method: "/runcshim.v1.ShimService/State",
      id,
      pid: view.pid,
      status: "CONTAINER_STATUS_CREATED",
      bundle: view.bundle,
      rootfs: view.rootfs,
      created: { seconds: view.createdSeconds, nanos: view.createdNanos, type: "google.protobuf.Timestamp" },
      annotations: view.annotations,
      owner: "",
      ociVersion: view.ociVersion,
    });
    expect(view.pid).toBe(fx.initPid(id));

    // The JSON-body call: proto3 JSON (defaults omitted, enum by name, Timestamp as RFC 3339).
    const { created, ...rest } = report.stateJson;
    expect(rest).toEqual({ id, bundle: view.bundle, pid: view.pid, status: "CONTAINER_STATUS_CREATED", rootfs: view.rootfs, ociVersion: view.ociVersion });
    expect(parseRfc3339(created as string)).toEqual({ seconds: view.createdSeconds, nanos: view.createdNanos });

    // JSON bodies through the reflected KillRequest/DeleteRequest: signal (field 3) and force (field 3) reach the server.
    expect(report.lifecycleJson).toEqual({
      killSignal65: { code: "INVALID_ARGUMENT", message: "invalid signal 65: expected 1-64 (0 means SIGTERM)" },
      deleteMissing: { code: "NOT_FOUND", message: "container does not exist" },
      deleteMissingForce: { response: { pid: 0 } },
    });
    expect(fx.state(id)).toMatchObject({ status: "created", pid: view.pid }); // the refused Kill signalled nothing

    expect(report.health[""]).toEqual({ status: "SERVING" });
    expect(report.health["runcshim.v1.ShimService"]).toEqual({ status: "SERVING" });
    expect(report.health["no.such.Service"]?.code).toBe("NOT_FOUND");
  }, TEST_TIMEOUT_MS);

  it("runs the README's grpcurl lines (Debugging a node) from reflection alone, in order, on a real container", async () => {
    // The first sh block of "Debugging a node": every grpcurl line there must use the form that works
    // on grpcurl 1.9.3 (`unix://$S`, no -unix), and each one must work.
    const readme = fs.readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");
    const section = readme.slice(readme.indexOf("## Debugging a node"));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
    const lines = block.split("\n").filter((l) => l.startsWith("grpcurl "));
    expect(lines.length).toBe(13);
    const id = `rs-readme-${process.pid}`;
    fx.track(id);
    const calls = lines.map((line) => {
      const m = /^grpcurl -plaintext (?:-d '([^']*)' )?unix:\/\/\$S (list|describe (\S+)|(\S+\/\S+))$/.exec(line);
      if (m === null) throw new Error(`README grpcurl line not in the 1.9.3 form \`grpcurl -plaintext [-d JSON] unix://$S ...\`: ${line}`);
      if (m[2] === "list") return { list: true };
      if (m[3] !== undefined) return { describe: m[3] };
      const body = (m[1] ?? "{}").replaceAll('"c1"', JSON.stringify(id)).replaceAll('"/containers/c1"', JSON.stringify(fx.bundle));
      return { method: m[4], body };
    });
    const methods = calls.flatMap((c) => ("method" in c ? [c.method] : []));
    for (const rpc of ["Create", "State", "Start", "List", "Pause", "Resume", "Kill", "Delete", "Watch"]) {
      expect(methods, rpc).toContain(`runcshim.v1.ShimService/${rpc}`);
    }
    expect(methods).toContain("grpc.health.v1.Health/Check");

    const report = await runPython<{ calls: Array<Record<string, unknown>> }>(REFLECTION_PY, ["--target", `unix://${server.socket}`, "--calls"], JSON.stringify(calls));
    expect(report.calls).toHaveLength(calls.length);
    const byMethod = new Map(report.calls.filter((c) => "method" in c).map((c) => [c.method as string, c]));
    for (const c of report.calls) expect(c, JSON.stringify(c)).not.toMatchObject({ ok: false });
    expect(report.calls.find((c) => c.list === true)?.services).toEqual(expect.arrayContaining(["runcshim.v1.ShimService", "grpc.health.v1.Health"]));
    expect(report.calls.filter((c) => "describe" in c)).toEqual(
      expect.arrayContaining([
        { describe: "runcshim.v1.StateResponse", kind: "message", file: "runcshim/v1/shim.proto" },
        { describe: "google.rpc.ErrorInfo", kind: "message", file: "google/rpc/error_details.proto" },
      ]),
    );
    // In README order the calls take the container through its life: Create's pid is the one Delete returns.
    const created = (byMethod.get("runcshim.v1.ShimService/Create")?.response as { pid: number }).pid;
    expect(created).toBeGreaterThan(0);
    expect(byMethod.get("runcshim.v1.ShimService/State")?.response).toMatchObject({ id, pid: created, status: "CONTAINER_STATUS_CREATED" });
    expect(byMethod.get("runcshim.v1.ShimService/Start")?.response).toEqual({ pid: created });
    expect(byMethod.get("runcshim.v1.ShimService/Delete")?.response).toEqual({ pid: created });
    expect(byMethod.get("grpc.health.v1.Health/Check")?.response).toEqual({ status: "SERVING" });
    const watched = byMethod.get("runcshim.v1.ShimService/Watch")?.messages as Array<{ kind: string }>;
    expect(watched.at(-1)).toEqual({ kind: "WATCH_EVENT_KIND_SYNCED" });
    // runc is the judge: Delete removed it.
    expect(fx.tryRunc("state", id).stderr).toContain("container does not exist");
    fx.forget(id);
  }, TEST_TIMEOUT_MS);
});
