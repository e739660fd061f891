/**
 * --metrics-address: a real server scraped over its listener (a Unix socket,
 * 127.0.0.1) with Node's HTTP client after real calls; the exposition parsed
 * with parse-prometheus-text-format and the counts checked exactly.
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { failure } from "../helpers/calls.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { LifeFixture } from "../helpers/lifecycle.js";
import { httpRequest, scrape, type Metrics } from "../helpers/metrics.js";
import { makeBundle, skipRunc, uniqueId } from "../helpers/runc.js";
import { runMain, startServer, tempSocketPath, type ServerProcess } from "../helpers/server.js";

const VERSION = (JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** The `metricsAddress` of the server's `listening` line. */
function metricsAddressOf(server: ServerProcess): string {
  const line = server.stderr().split("\n").find((l) => l.includes('"msg":"listening"'));
  return (JSON.parse(line ?? "{}") as { metricsAddress: string }).metricsAddress;
}

describe("metrics on a Unix socket (fake containers)", () => {
  let tmp: ReturnType<typeof tempRoot>;
  let init: FakeInit;
  let server: ServerProcess;
  let shim: ShimClient;
  let metricsSock: string;
  const target = (): { socketPath: string } => ({ socketPath: metricsSock });

  beforeAll(async () => {
    tmp = tempRoot("rs-metrics-");
    init = await spawnInit();
    writeFakeContainer(tmp.root, "c-created", init, { created: true }); // exec.fifo is a regular file here
    writeFakeContainer(tmp.root, "c-running", init, { created: false });
    writeFakeContainer(tmp.root, "c-stopped", DEAD_INIT, { created: false });
    fs.mkdirSync(path.join(tmp.root, "c-bad"));
    fs.writeFileSync(path.join(tmp.root, "c-bad", "state.json"), "xyz"); // fails to load: unknown
    fs.mkdirSync(path.join(tmp.root, "c-nostate")); // runc mid-create: not a container
    metricsSock = path.join(path.dirname(tempSocketPath()), "metrics", "m.sock");
    server = await startServer(tmp.root, ["--metrics-address", metricsSock]);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    await init?.kill();
    tmp?.cleanup();
  });

  it("listens on a socket of mode 0600 in a dir of mode 0700, and says where in the listening line", () => {
    expect(fs.lstatSync(metricsSock).isSocket()).toBe(true);
    expect(fs.statSync(metricsSock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(metricsSock)).mode & 0o777).toBe(0o700);
    expect(metricsAddressOf(server)).toBe(metricsSock);
  });

  it("counts calls by RPC and code, times them, counts containers by status; build_info and Node's metrics", async () => {
    for (let i = 0; i < 3; i++) expect((await shim.state("c-running")).status).toBe("running");
    for (let i = 0; i < 2; i++) expect((await failure(shim.state("nope"))).codeName).toBe("NOT_FOUND");
    expect((await failure(shim.state("bad/id"))).codeName).toBe("INVALID_ARGUMENT");
    expect((await shim.list()).length).toBe(5);
    // The fake created container's exec.fifo is a regular file: the handshake ends with a SystemError.
    expect((await failure(shim.start("c-created"))).codeName).toBe("INTERNAL");

    const r = await httpRequest(target());
    expect(r.status).toBe(200);
    expect(r.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m: Metrics = await scrape(target());
    expect(m.types.get("runcshim_rpc_calls_total")).toBe("COUNTER");
    expect(m.types.get("runcshim_rpc_duration_seconds")).toBe("HISTOGRAM");
    expect(m.value("runcshim_rpc_calls_total", { rpc: "State", code: "OK" })).toBe(3);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "State", code: "NOT_FOUND" })).toBe(2);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "State", code: "INVALID_ARGUMENT" })).toBe(1);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "List", code: "OK" })).toBe(1);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "Start", code: "INTERNAL" })).toBe(1);
    expect(m.samples("runcshim_rpc_calls_total").length).toBe(5);
    expect(m.value("runcshim_rpc_duration_seconds_count", { rpc: "State" })).toBe(6);
    expect(m.value("runcshim_rpc_duration_seconds_count", { rpc: "List" })).toBe(1);
    expect(m.value("runcshim_rpc_duration_seconds_bucket", { rpc: "State", le: "+Inf" })).toBe(6);
    expect(m.samples("runcshim_rpc_duration_seconds_bucket").filter((s) => s.labels.rpc === "State").map((s) => s.labels.le)).toEqual(
      ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.1", "1", "10", "+Inf"],
    );
    expect(m.value("runcshim_exec_fifo_handshake_duration_seconds_count", { outcome: "SystemError" })).toBe(1);
    expect(m.samples("runcshim_exec_fifo_handshake_duration_seconds_count").length).toBe(1);
    for (const [status, n] of Object.entries({ created: 1, running: 1, pausing: 0, paused: 0, stopped: 1, unknown: 1 })) {
      expect([status, m.value("runcshim_containers", { status })]).toEqual([status, n]);
    }
    expect(m.value("runcshim_containers_count_duration_seconds")).toBeGreaterThan(0);
    expect(m.value("runcshim_build_info", { version: VERSION })).toBe(1);
    expect(m.value("runcshim_open_streams", { rpc: "Watch" })).toBe(0);
    expect(m.value("runcshim_runc_create_duration_seconds_count")).toBe(0);
    expect(m.types.get("process_cpu_user_seconds_total")).toBe("COUNTER");
    expect(m.types.get("nodejs_eventloop_lag_seconds")).toBe("GAUGE");
    expect(m.value("process_open_fds")).toBeGreaterThan(0);
  });

  it("counts open Watch streams and the messages they sent; a cancelled Watch is counted once it ends", async () => {
    const ac = new AbortController();
    const kinds: string[] = [];
    const it = shim.watch("", { signal: ac.signal })[Symbol.asyncIterator]();
    for (;;) {
      const ev = await it.next();
      if (ev.done === true) throw new Error("the watch ended");
      kinds.push(ev.value.kind);
      if (ev.value.kind === "synced") break;
    }
    expect(kinds).toEqual(["initial", "initial", "initial", "initial", "synced"]);
    const open = await scrape(target());
    expect(open.value("runcshim_open_streams", { rpc: "Watch" })).toBe(1);
    expect(open.value("runcshim_watch_events_sent_total", { kind: "initial" })).toBe(4);
    expect(open.value("runcshim_watch_events_sent_total", { kind: "synced" })).toBe(1);
    expect(open.value("runcshim_watch_events_merged_total")).toBe(0);
    expect(open.value("runcshim_rpc_calls_total", { rpc: "Watch", code: "CANCELLED" })).toBeUndefined();
    ac.abort();
    await it.return?.();
    let after = await scrape(target());
    for (const t0 = Date.now(); after.value("runcshim_open_streams", { rpc: "Watch" }) !== 0 && Date.now() - t0 < 5000; ) {
      await new Promise((r) => setTimeout(r, 20));
      after = await scrape(target());
    }
    expect(after.value("runcshim_open_streams", { rpc: "Watch" })).toBe(0);
    expect(after.value("runcshim_rpc_calls_total", { rpc: "Watch", code: "CANCELLED" })).toBe(1);
    expect(after.value("runcshim_watch_events_sent_total", { kind: "initial" })).toBe(4);
  });

  it("answers 404 elsewhere and 405 to other methods", async () => {
    expect((await httpRequest(target(), "/")).status).toBe(404);
    expect((await httpRequest(target(), "/metrics", "POST")).status).toBe(405);
  });

  it("removes its socket on shutdown", async () => {
    const tmp2 = tempRoot("rs-metrics2-");
    const sock = path.join(tmp2.dir, "m.sock");
    const s = await startServer(tmp2.root, ["--metrics-address", `unix://${sock}`]);
    try {
      expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
      expect((await scrape({ socketPath: sock })).value("runcshim_containers", { status: "running" })).toBe(0);
    } finally {
      expect(await s.stop()).toBe(0);
      expect(fs.existsSync(sock)).toBe(false);
      tmp2.cleanup();
    }
  });
});

describe("--metrics-address refuses what is not a Unix socket or loopback (exit 2)", () => {
  let tmp: ReturnType<typeof tempRoot>;
  beforeAll(() => (tmp = tempRoot("rs-metrics-refused-")));
  afterAll(() => tmp?.cleanup());

  for (const addr of ["0.0.0.0:9100", "localhost:9100", "[::]:9100", ":9100", "9100", "192.168.1.10:9100", "example.com:80"]) {
    it(`refuses ${addr}, binding nothing`, async () => {
      const sock = path.join(tmp.dir, "s.sock");
      const r = await runMain(["serve", "--root", tmp.root, "--address", sock, "--metrics-address", addr]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^runc-shim: --metrics-address: /);
      expect(fs.existsSync(sock)).toBe(false);
    });
  }

  it("gives the reason for a host that is not loopback", async () => {
    const r = await runMain(["serve", "--root", tmp.root, "--address", path.join(tmp.dir, "s.sock"), "--metrics-address", "0.0.0.0:9100"]);
    expect(r.stderr).toBe(
      'runc-shim: --metrics-address: host "0.0.0.0" refused: the metrics name containers, so they are served only on a Unix socket path, 127.0.0.1:PORT or [::1]:PORT\n',
    );
  });

  it("exits 2 when the loopback port is taken, removing its gRPC socket", async () => {
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    const port = (taken.address() as { port: number }).port;
    const sock = path.join(tmp.dir, "s2.sock");
    try {
      const r = await runMain(["serve", "--root", tmp.root, "--address", sock, "--metrics-address", `127.0.0.1:${port}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`runc-shim: --metrics-address: cannot listen on 127.0.0.1:${port}: `);
      expect(r.stderr).toContain("EADDRINUSE");
      expect(fs.existsSync(sock)).toBe(false);
    } finally {
      taken.close();
    }
  });
});

describe.skipIf(skipRunc())("metrics on 127.0.0.1 (real runc: Create, Start)", () => {
  let fx: LifeFixture;
  let server: ServerProcess;
  let shim: ShimClient;

  beforeAll(async () => {
    fx = new LifeFixture("rs-metrics-runc-");
    server = await startServer(fx.root, ["--metrics-address", "127.0.0.1:0"]);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    fx?.cleanupAll();
  });

  it("times runc create, counts its failures by reason, and the handshake's outcome", async () => {
    const addr = metricsAddressOf(server);
    expect(addr).toMatch(/^127\.0\.0\.1:\d+$/);
    const port = Number(addr.split(":")[1]);
    expect(port).toBeGreaterThan(0);
    const id = fx.track(uniqueId("met"));
    const pid = await shim.create(id, { bundle: fx.bundle });
    expect(await shim.start(id)).toBe(pid);
    const noexec = makeBundle(path.join(fx.dir, uniqueId("noexec")), ["nonexistent-binary"]);
    const bad = fx.track(uniqueId("met-bad"));
    const e = await failure(shim.create(bad, { bundle: noexec }));
    expect([e.codeName, e.reason]).toEqual(["FAILED_PRECONDITION", "RUNC_FAILED"]);
    await shim.kill(id, "KILL");
    expect(await shim.delete(id)).toBe(pid);

    const m = await scrape({ host: "127.0.0.1", port });
    expect(m.value("runcshim_runc_create_duration_seconds_count")).toBe(2);
    expect(m.value("runcshim_runc_create_duration_seconds_sum")).toBeGreaterThan(0);
    expect(m.value("runcshim_runc_create_failures_total", { reason: "RUNC_FAILED" })).toBe(1);
    expect(m.samples("runcshim_runc_create_failures_total").length).toBe(1);
    expect(m.value("runcshim_exec_fifo_handshake_duration_seconds_count", { outcome: "exec" })).toBe(1);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "Create", code: "OK" })).toBe(1);
    expect(m.value("runcshim_rpc_calls_total", { rpc: "Create", code: "FAILED_PRECONDITION" })).toBe(1);
    for (const rpc of ["Start", "Kill", "Delete"]) expect([rpc, m.value("runcshim_rpc_calls_total", { rpc, code: "OK" })]).toEqual([rpc, 1]);
    expect(m.value("runcshim_containers", { status: "running" })).toBe(0);
  });
});
