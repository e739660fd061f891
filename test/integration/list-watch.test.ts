/**
 * Issue 7: List and Watch against real runc (and, for the slow reader, a root
 * of state dirs made without runc), through the built server and the client.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { createShimClient, decodeErrorInfo, ShimError, type ShimClient } from "../../src/client/client.js";
import { detectCgroupMode } from "../../src/runtime/freezer.js";
import { spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { collect, type Received } from "../helpers/lifecycle.js";
import { RuncFixture, skipRunc, uniqueId } from "../helpers/runc.js";
import { MAIN, logged, startServer, type ServerProcess } from "../helpers/server.js";

const synced = (evs: Received[]) => evs.some((e) => e.kind === "synced");
const changesOf = (evs: Received[], id: string) =>
  evs.filter((e) => e.id === id && e.state?.status !== "pausing").map((e) => [e.kind, e.state?.status ?? null]);

function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!fs.readlinkSync(`/proc/${pid}/fd/${fd}`).includes("inotify")) continue;
      n += fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8").split("\n").filter((l) => l.startsWith("inotify wd:")).length;
    } catch {
      // the fd closed meanwhile
    }
  }
  return n;
}

describe.skipIf(skipRunc())("List and Watch against real runc", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  let shim: ShimClient;

  beforeAll(async () => {
    fx = new RuncFixture();
    server = await startServer(fx.root);
    shim = createShimClient(server.socket);
  });

  afterAll(async () => {
    shim?.close();
    await server?.stop();
    fx?.cleanup();
  });

  it("List agrees with `runc list`, skips symlinks and carries load errors", async () => {
    const created = fx.create(uniqueId("rs-l"));
    const running = fx.create(uniqueId("rs-l"));
    fx.runc("start", running);
    const stopped = fx.create(uniqueId("rs-l"));
    fx.runc("start", stopped);
    fx.runc("kill", stopped, "KILL");
    const garbage = uniqueId("rs-l-garbage");
    fs.mkdirSync(path.join(fx.root, garbage));
    fs.writeFileSync(path.join(fx.root, garbage, "state.json"), "xyz");
    fs.symlinkSync(running, path.join(fx.root, uniqueId("rs-l-alias")));
    const runcList = () =>
      (JSON.parse(fx.runc("list", "--format", "json")) as Array<Record<string, unknown>>).map((c) => ({
        id: c.id, pid: c.pid, status: c.status, bundle: c.bundle, created: c.created, owner: c.owner,
      }));
    const ours = await shim.list();
    try {
      const byRunc = runcList().sort((a, b) => (String(a.id) < String(b.id) ? -1 : 1));
      const loaded = ours.filter((e) => e.state !== undefined).map((e) => {
        const s = e.state!;
        return { id: s.id, pid: s.pid, status: s.status, bundle: s.bundle, created: s.created, owner: s.owner };
      });
      expect(loaded.map((s) => s.status).sort()).toEqual(["created", "running", "stopped"]);
      expect(loaded).toEqual(byRunc);
      expect(ours.map((e) => e.id)).toEqual([...ours.map((e) => e.id)].sort());
      expect(ours.find((e) => e.id === garbage)).toEqual({
        id: garbage,
        error: { code: "SYSTEM_ERROR", message: expect.stringContaining(path.join(fx.root, garbage, "state.json")) },
      });
      expect(ours).toHaveLength(4);

      // The CLI prints runc's table, byte for byte, and reports the broken entry on stderr.
      const table = spawnSync(process.execPath, [MAIN, "list", "--address", server.socket], { encoding: "utf8" });
      expect(table.status).toBe(0);
      expect(table.stdout).toBe(fx.runc("list"));
      expect(table.stdout.trimEnd().split("\n")).toHaveLength(4);
      expect(table.stderr).toContain(`load container ${garbage}:`);
      const json = spawnSync(process.execPath, [MAIN, "list", "--json", "--address", server.socket], { encoding: "utf8" });
      expect(JSON.parse(json.stdout)).toEqual(ours);
    } finally {
      for (const id of [created, running, stopped]) {
        fx.runc("delete", "-f", id);
        fx.forget(id);
      }
      for (const name of fs.readdirSync(fx.root)) fs.rmSync(path.join(fx.root, name), { recursive: true, force: true });
    }
  });

  it("Watch reports create, start, pause, resume, kill and delete in order, each within 100 ms", async () => {
    const ac = new AbortController();
    const all = collect(shim.watch("", { signal: ac.signal }));
    await all.until(synced);
    const id = uniqueId("rs-w");
    const one = collect(shim.watch(id, { signal: ac.signal }));
    await one.until(synced);
    expect(one.got.map((e) => e.kind)).toEqual(["synced"]);

    const latencies: Record<string, number> = {};
    const step = async (what: string, action: () => void, kind: string, status: string | null) => {
      const seen = [all.got.length, one.got.length];
      action();
      const t = performance.now();
      const match = (e: Received) => e.id === id && e.kind === kind && (e.state?.status ?? null) === status;
      const found = await Promise.all([all, one].map(async (c, i) => {
        await c.until((evs) => evs.slice(seen[i]).some(match));
        return c.got.slice(seen[i]).find(match) as Received;
      }));
      latencies[what] = Math.round(Math.max(...found.map((e) => e.at - t)));
    };
    await step("create", () => fx.create(id), "appeared", "created");
    await step("start", () => fx.runc("start", id), "changed", "running");
    await step("pause", () => fx.runc("pause", id), "changed", "paused");
    await step("resume", () => fx.runc("resume", id), "changed", "running");
    await step("kill", () => fx.runc("kill", id, "KILL"), "changed", "stopped");
    await step("delete", () => {
      fx.runc("delete", id);
      fx.forget(id);
    }, "removed", null);
    ac.abort();
    await Promise.all([all.done, one.done]);
    expect(all.failure()).toBeUndefined();

    const expected = [
      ["appeared", "created"],
      ["changed", "running"],
      ["changed", "paused"],
      ["changed", "running"],
      ["changed", "stopped"],
      ["removed", null],
    ];
    expect(changesOf(all.got, id)).toEqual(expected);
    expect(changesOf(one.got, id)).toEqual(expected);
    const stoppedEvent = all.got.find((e) => e.id === id && e.state?.status === "stopped");
    expect(stoppedEvent?.state?.pid).toBe(0);
    console.log("watch latencies after each runc command returned (ms):", latencies);
    for (const ms of Object.values(latencies)) expect(ms).toBeLessThan(100);
  });

  it("Watch loses none of 50 containers started at once", { timeout: 120_000 }, async () => {
    const ids = Array.from({ length: 50 }, () => fx.create(uniqueId("rs-w50")));
    const ac = new AbortController();
    const all = collect(shim.watch("", { signal: ac.signal }));
    await all.until(synced);
    const initial = all.got.filter((e) => e.kind === "initial");
    expect(initial.map((e) => [e.id, e.state?.status])).toEqual([...ids].sort().map((id) => [id, "created"]));

    const pids = await Promise.all(ids.map((id) => shim.start(id)));
    expect(pids).toEqual(ids.map((id) => fx.initPid(id)));
    await all.until((evs) => ids.every((id) => evs.some((e) => e.id === id && e.kind === "changed" && e.state?.status === "running")), 10_000);

    for (const id of ids) fx.runc("kill", id, "KILL");
    await all.until((evs) => ids.every((id) => evs.some((e) => e.id === id && e.state?.status === "stopped")), 10_000);
    for (const id of ids) {
      fx.runc("delete", id);
      fx.forget(id);
    }
    await all.until((evs) => ids.every((id) => evs.some((e) => e.id === id && e.kind === "removed")), 10_000);
    ac.abort();
    await all.done;
    for (const id of ids) {
      expect(changesOf(all.got, id)).toEqual([
        ["initial", "created"],
        ["changed", "running"],
        ["changed", "stopped"],
        ["removed", null],
      ]);
    }
  });

  it("a cancelled watch returns the server's fds and inotify watches to their baseline", async () => {
    const pid = server.proc.pid as number;
    const id = fx.create(uniqueId("rs-wfd"));
    const openAndCancel = async (n: number) => {
      const ac = new AbortController();
      const cs = Array.from({ length: n }, (_, i) => collect(shim.watch(i % 2 === 0 ? "" : id, { signal: ac.signal })));
      for (const c of cs) await c.until(synced);
      const during = inotifyWatches(pid);
      ac.abort();
      await Promise.all(cs.map((c) => c.done));
      for (const c of cs) expect(c.failure()).toBeUndefined();
      return during;
    };
    await openAndCancel(1); // warm-up: libuv keeps its one inotify fd for the life of the process
    await new Promise((r) => setTimeout(r, 200));
    const fdsBefore = fs.readdirSync(`/proc/${pid}/fd`).length;
    expect(inotifyWatches(pid)).toBe(1); // the root, watched for new containers whether or not anyone watches
    const during = await openAndCancel(6);
    // The root (the same inotify watch), the one container dir, its cgroup's cgroup.events and, on a v1 (hybrid) host, its
    // freezer.state: shared by six watches.
    expect(during).toBe(detectCgroupMode() === "v1" ? 4 : 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(inotifyWatches(pid)).toBe(1);
    expect(fs.readdirSync(`/proc/${pid}/fd`).length).toBe(fdsBefore);
    fx.runc("delete", "-f", id);
    fx.forget(id);
    await logged(server, /"rpc":"Watch".*"code":"CANCELLED"/);
  });

  it("Watch refuses a bad id with INVALID_ARGUMENT", async () => {
    const c = collect(shim.watch("../x"));
    await c.done;
    const e = c.failure() as ShimError;
    expect(e).toBeInstanceOf(ShimError);
    expect([e.codeName, e.reason]).toEqual(["INVALID_ARGUMENT", "INVALID_ID_FORMAT"]);
  });

  it("Watch answers a request that is not a valid message with INVALID_ARGUMENT, INVALID_REQUEST", async () => {
    const raw = new grpc.Client(`unix://${server.socket}`, grpc.credentials.createInsecure());
    try {
      const e = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const call = raw.makeServerStreamRequest(
          "/runcshim.v1.ShimService/Watch",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // field 1, a length far past the end
        );
        call.on("data", () => reject(new Error("expected no message")));
        call.on("error", resolve);
        call.on("end", () => reject(new Error("expected an error")));
      });
      expect(grpc.status[e.code]).toBe("INVALID_ARGUMENT");
      expect(e.details).toMatch(/^malformed request/);
      expect(decodeErrorInfo(e.metadata.get("grpc-status-details-bin")[0])?.reason).toBe("INVALID_REQUEST");
    } finally {
      raw.close();
    }
  });

  it("`runc-shim watch ID --json` prints one line per change and exits 0 on SIGINT", async () => {
    const id = fx.create(uniqueId("rs-wcli"));
    const cli = spawn(process.execPath, [MAIN, "watch", id, "--json", "--address", server.socket], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    cli.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => cli.once("exit", (code) => r(code)));
    const lines = () => out.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, any>);
    const t0 = Date.now();
    while (!lines().some((l) => l.kind === "synced")) {
      if (Date.now() - t0 > 10_000) throw new Error(`no synced line: ${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await shim.start(id);
    while (!lines().some((l) => l.kind === "changed")) {
      if (Date.now() - t0 > 10_000) throw new Error(`no changed line: ${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    cli.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(lines().map((l) => [l.kind, l.id, l.state?.status])).toEqual([
      ["initial", id, "created"],
      ["synced", "", undefined],
      ["changed", id, "running"],
    ]);
    expect(lines()[0]?.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    fx.runc("delete", "-f", id);
    fx.forget(id);
  });

  it("a Watch stream ends when the server shuts down on SIGTERM, and the server exits 0", async () => {
    const other = await startServer(fx.root);
    const client = createShimClient(other.socket);
    try {
      const id = fx.create(uniqueId("rs-wterm"));
      const c = collect(client.watch(""));
      const single = collect(client.watch(id));
      await c.until(synced);
      await single.until(synced);
      const t0 = performance.now();
      expect(await other.stop()).toBe(0);
      await Promise.all([c.done, single.done]);
      expect(performance.now() - t0).toBeLessThan(3000);
      for (const s of [c, single]) {
        // shutdown closes the watch hub first: open watches end cleanly, with OK
        expect(s.failure()).toBeUndefined();
      }
      await logged(other, /"rpc":"Watch".*"code":"OK"/);
      fx.runc("delete", "-f", id);
      fx.forget(id);
    } finally {
      client.close();
      await other.stop();
    }
  });
});

describe("Watch with a reader that falls behind", () => {
  let fake: ReturnType<typeof tempRoot>;
  let server: ServerProcess;
  let init: FakeInit;

  beforeAll(async () => {
    fake = tempRoot();
    init = await spawnInit();
    server = await startServer(fake.root);
  });
  afterAll(async () => {
    await server?.stop();
    await init?.kill();
    fake?.cleanup();
  });

  it.each([
    ["one event per message", undefined, "c"],
    ["batched (max_batch 64)", 64, "b"],
  ] as const)("gets the latest state of each container, not every change, and the server queues no backlog: %s", async (_name, maxBatch, prefix) => {
    const n = 200;
    const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);
    // 4 KiB of annotations per message, so the socket buffers hold few of them.
    for (const id of ids) writeFakeContainer(fake.root, id, init, { annotations: { note: "x".repeat(4096) } });
    // The reader is a process of its own that we stop (SIGSTOP): it then reads nothing at all,
    // so the server's writes back up. (A grpc-js client that is merely slow to consume keeps
    // reading the socket into its own memory, and the server never sees backpressure.)
    const client = new URL("../../dist/src/client/client.js", import.meta.url).href;
    const reader = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { createShimClient } from ${JSON.stringify(client)};
         const maxBatch = process.argv[2] === "" ? undefined : Number(process.argv[2]);
         for await (const ev of createShimClient(process.argv[1]).watch("", { maxBatch }))
           process.stdout.write(ev.kind + " " + ev.id + " " + (ev.state?.status ?? "") + "\\n");`,
        server.socket,
        String(maxBatch ?? ""),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    reader.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    const lines = () => out.split("\n").filter((l) => l !== "").map((l) => l.split(" "));
    try {
      const t0 = Date.now();
      while (!lines().some(([kind]) => kind === "synced")) {
        if (Date.now() - t0 > 10_000) throw new Error(`no synced line: ${out}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const before = lines().length;
      process.kill(reader.pid as number, "SIGSTOP");
      const rounds = 21;
      for (let round = 0; round < rounds; round++) {
        for (const id of ids) {
          const fifo = path.join(fake.root, id, "exec.fifo");
          if (round % 2 === 0) fs.rmSync(fifo);
          else fs.writeFileSync(fifo, "");
        }
        await new Promise((r) => setTimeout(r, 15));
      }
      await new Promise((r) => setTimeout(r, 1000)); // the server sees every change while the reader is stopped
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${server.proc.pid}/status`, "utf8"))?.[1]);
      process.kill(reader.pid as number, "SIGCONT");
      // Every container started `created`; the last round (even) leaves it `running`.
      const last = new Map<string, string>();
      while (!ids.every((id) => last.get(id) === "running")) {
        if (Date.now() - t0 > 30_000) throw new Error("the reader did not catch up");
        await new Promise((r) => setTimeout(r, 10));
        for (const [kind, id, status] of lines().slice(before)) if (kind === "changed" && id !== undefined) last.set(id, status ?? "");
      }
      const after = lines().length - before;
      console.log(`slow reader: ${rounds * n} changes while stopped, ${after} messages received after; server RSS ${Math.round(rssKiB / 1024)} MiB`);
      expect(lines().slice(0, before).filter(([kind]) => kind === "initial")).toHaveLength(n);
      // The last state of each container, plus the few messages the socket buffers held: the
      // server kept one pending state per container instead of 4,200 messages (17 MiB).
      expect(after).toBeLessThan(n + 100);
    } finally {
      if (reader.exitCode === null) {
        process.kill(reader.pid as number, "SIGCONT");
        reader.kill("SIGKILL");
      }
      for (const id of ids) fs.rmSync(path.join(fake.root, id), { recursive: true, force: true });
    }
  });
});
