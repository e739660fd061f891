/**
 * The Watch handler through a real grpc-js server in this process, over a root
 * of state dirs made without runc: how a stream ends (hub closed: OK; client
 * cancel: resources released; root gone: FAILED_PRECONDITION with details).
 */
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchRequest, WatchResponse } from "../../gen/ts/runcshim/v1/shim.js";
import { createShimClient, ShimError, WatchQueue, type ShimClient, type WatchEventView } from "../../src/client/client.js";
import { StateRoot } from "../../src/runtime/container.js";
import { WatchHub } from "../../src/runtime/watch.js";
import { createShimService, encodeWatchBatch, shimServiceDefinition } from "../../src/server/service.js";
import type { WatchEvent } from "../../src/runtime/watch.js";
import { spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";

describe("Watch over gRPC (in process)", () => {
  let fake: ReturnType<typeof tempRoot>;
  let init: FakeInit;
  let server: grpc.Server;
  let hub: WatchHub;
  let shim: ShimClient;
  let socket: string;
  const encoded: WatchEvent[] = [];

  beforeAll(async () => {
    fake = tempRoot();
    init = await spawnInit();
    writeFakeContainer(fake.root, "c1", init);
    const root = new StateRoot(fake.root, "v1");
    hub = new WatchHub(root, { rescanMs: 50 });
    server = new grpc.Server();
    server.addService(
      shimServiceDefinition(),
      createShimService({ root, log: pino({ level: "silent" }), startTimeoutMs: 1000, watchHub: hub, onWatchEncode: (ev) => encoded.push(ev) }),
    );
    socket = path.join(fake.dir, "s.sock");
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    shim = createShimClient(socket);
  });
  afterAll(async () => {
    shim?.close();
    server?.forceShutdown();
    await init?.kill();
    fake?.cleanup();
  });

  async function firstEvents(it: AsyncIterator<WatchEventView>, n: number): Promise<WatchEventView[]> {
    const out: WatchEventView[] = [];
    while (out.length < n) {
      const r = await it.next();
      if (r.done === true) break;
      out.push(r.value);
    }
    return out;
  }

  it("leaving the loop cancels the call and the hub lets go of everything", async () => {
    const it = shim.watch("c1")[Symbol.asyncIterator]();
    const evs = await firstEvents(it, 2);
    expect(evs.map((e) => [e.kind, e.id, e.state?.status])).toEqual([["initial", "c1", "created"], ["synced", "", undefined]]);
    expect(hub.subscribers).toBe(1);
    await it.return?.();
    const t0 = Date.now();
    while (hub.subscribers > 0 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5));
    expect(hub.subscribers).toBe(0);
  });

  it("encodes each change once and writes the same bytes to every watcher", async () => {
    /** A Watch stream read as raw bytes (no decoding on the client). */
    const rawWatch = (client: grpc.Client, id: string) => {
      const got: Buffer[] = [];
      const call = client.makeServerStreamRequest(
        "/runcshim.v1.ShimService/Watch",
        (r: { id: string }) => Buffer.from([0x0a, r.id.length, ...Buffer.from(r.id)]),
        (b: Buffer) => b,
        { id },
      );
      call.on("data", (b: Buffer) => got.push(b));
      call.on("error", () => {});
      return { got, call };
    };
    const until = async (pred: () => boolean) => {
      const t0 = Date.now();
      while (!pred()) {
        if (Date.now() - t0 > 3000) throw new Error("timed out");
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    writeFakeContainer(fake.root, "enc", init);
    const clients = [0, 1].map(() => new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure()));
    try {
      const watchers = [rawWatch(clients[0]!, ""), rawWatch(clients[1]!, ""), rawWatch(clients[0]!, "enc")];
      const isSynced = (b: Buffer) => WatchResponse.decode(b).kind === 2;
      await until(() => watchers.every((w) => w.got.some(isSynced)));
      encoded.length = 0;
      const seen = watchers.map((w) => w.got.length);
      fs.rmSync(path.join(fake.root, "enc", "exec.fifo")); // a start: one change
      await until(() => watchers.every((w, i) => w.got.length > (seen[i] ?? 0)));
      const changes = watchers.map((w, i) => w.got.slice(seen[i]));
      expect(changes.map((c) => c.length)).toEqual([1, 1, 1]);
      expect(WatchResponse.decode(changes[0]![0]!)).toMatchObject({ kind: 4, container: { id: "enc", result: { $case: "state", value: { status: 2 } } } });
      // Byte for byte the same message to the three watchers (two of all containers, one of "enc"), encoded once.
      expect(changes[1]![0]!.equals(changes[0]![0]!)).toBe(true);
      expect(changes[2]![0]!.equals(changes[0]![0]!)).toBe(true);
      expect(encoded.map((e) => [e.kind, e.id])).toEqual([["changed", "enc"]]);
      // The initial messages of the two watch-alls were the same bytes too.
      const initial = watchers.slice(0, 2).map((w) => w.got.slice(0, w.got.findIndex(isSynced) + 1).map((b) => b.toString("hex")));
      expect(initial[1]).toEqual(initial[0]);
      for (const w of watchers) w.call.cancel();
    } finally {
      for (const c of clients) c.close();
      fs.rmSync(path.join(fake.root, "enc"), { recursive: true, force: true });
    }
  });

  it("max_batch: the same events in the same order, several per message, SYNCED once; changes batched too", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `batch${String(i).padStart(2, "0")}`);
    for (const id of ids) writeFakeContainer(fake.root, id, init);
    const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
    const open = (maxBatch: number | undefined) => {
      const got: Buffer[] = [];
      const call = client.makeServerStreamRequest(
        "/runcshim.v1.ShimService/Watch",
        () => Buffer.from(WatchRequest.encode({ id: "", maxBatch: maxBatch ?? 0 }).finish()),
        (b: Buffer) => b,
        {},
      );
      call.on("data", (b: Buffer) => got.push(b));
      call.on("error", () => {});
      return { got, call };
    };
    /** Every event of a stream, each as the bytes of an unbatched WatchResponse. */
    const events = (msgs: Buffer[], batched: boolean): string[] =>
      msgs.flatMap((b) => {
        const m = WatchResponse.decode(b);
        if (!batched) {
          expect(m.batch).toBeUndefined();
          return [b.toString("hex")];
        }
        expect(m.kind).toBe(0);
        expect(m.container).toBeUndefined();
        expect(m.batch?.events.length).toBeGreaterThan(0);
        expect(m.batch?.events.length).toBeLessThanOrEqual(7);
        return (m.batch?.events ?? []).map((e) => Buffer.from(WatchResponse.encode(e).finish()).toString("hex"));
      });
    const until = async (pred: () => boolean) => {
      const t0 = Date.now();
      while (!pred()) {
        if (Date.now() - t0 > 3000) throw new Error("timed out");
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const SYNCED = Buffer.from([0x08, 0x02]).toString("hex");
    try {
      const plain = open(undefined);
      const batched = open(7);
      await until(() => events(plain.got, false).includes(SYNCED) && events(batched.got, true).includes(SYNCED));
      const a = events(plain.got, false);
      const b = events(batched.got, true);
      expect(b).toEqual(a); // byte for byte the same events, in the same order
      expect(b.filter((e) => e === SYNCED)).toHaveLength(1);
      expect(b.at(-1)).toBe(SYNCED);
      expect(b.length).toBeGreaterThanOrEqual(ids.length + 1);
      expect(batched.got.length).toBeLessThan(b.length); // several events per message
      const seen = [plain.got.length, batched.got.length];
      for (const id of ids.slice(0, 10)) fs.rmSync(path.join(fake.root, id, "exec.fifo")); // ten starts
      await until(() => events(plain.got.slice(seen[0]), false).length >= 10 && events(batched.got.slice(seen[1]), true).length >= 10);
      const changes = events(batched.got.slice(seen[1]), true).map((h) => WatchResponse.decode(Buffer.from(h, "hex")));
      expect(changes.map((c) => [c.kind, c.container?.id]).sort()).toEqual(ids.slice(0, 10).map((id) => [4, id]).sort());
      plain.call.cancel();
      batched.call.cancel();
    } finally {
      client.close();
      for (const id of ids) fs.rmSync(path.join(fake.root, id), { recursive: true, force: true });
    }
  });

  it("the typed client's watch() with maxBatch yields the same events as without", async () => {
    const ids = ["tb1", "tb2", "tb3"];
    for (const id of ids) writeFakeContainer(fake.root, id, init);
    try {
      const read = async (maxBatch?: number) => {
        const it = shim.watch("", { maxBatch })[Symbol.asyncIterator]();
        const out: Array<[string, string, string | undefined]> = [];
        for (;;) {
          const r = await it.next();
          if (r.done === true) break;
          out.push([r.value.kind, r.value.id, r.value.state?.status]);
          if (r.value.kind === "synced") break;
        }
        await it.return?.();
        return out;
      };
      const plain = await read();
      expect(await read(4)).toEqual(plain);
      expect(plain.map((e) => e[1])).toEqual(expect.arrayContaining(ids));
    } finally {
      for (const id of ids) fs.rmSync(path.join(fake.root, id), { recursive: true, force: true });
    }
  });

  it("a batched stream whose reader stops reading holds at most ~128 KiB in grpc-js: the rest waits, merged, in the subscription", async () => {
    // 300 containers of ~4 KiB each: 64 KiB batches of ~16 events. A reader that never reads
    // (HTTP/2 flow control: the window is not replenished) blocks the stream; grpc-js alone would
    // take 16 batches (~256 events, all stale by the time they are read).
    const ids = Array.from({ length: 300 }, (_, i) => `fc${String(i).padStart(3, "0")}`);
    for (const id of ids) writeFakeContainer(fake.root, id, init, { annotations: { note: "x".repeat(4096) } });
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    try {
      const req = session.request({
        ":method": "POST",
        ":path": "/runcshim.v1.ShimService/Watch",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const body = Buffer.from(WatchRequest.encode({ id: "", maxBatch: 64 }).finish());
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      req.end(frame);
      req.pause(); // read nothing: the server's writes back up
      await new Promise((r) => setTimeout(r, 300));
      for (const id of ids) fs.rmSync(path.join(fake.root, id, "exec.fifo")); // every container starts
      await new Promise((r) => setTimeout(r, 300)); // the hub sees them all
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      req.resume();
      const events: Array<{ kind: number; status: number | undefined }> = [];
      const t0 = Date.now();
      while (!events.some((e) => e.kind === 2)) {
        if (Date.now() - t0 > 5000) throw new Error("no SYNCED");
        await new Promise((r) => setTimeout(r, 10));
        const all = Buffer.concat(chunks);
        events.length = 0;
        for (let at = 0; at + 5 <= all.length; ) {
          const len = all.readUInt32BE(at + 1);
          if (at + 5 + len > all.length) break;
          const m = WatchResponse.decode(all.subarray(at + 5, at + 5 + len));
          for (const e of m.batch?.events ?? []) {
            const r = e.container?.result;
            events.push({ kind: e.kind, status: r?.$case === "state" ? r.value.status : undefined });
          }
          at += 5 + len;
        }
      }
      const initial = events.filter((e) => e.kind === 1);
      expect(initial).toHaveLength(ids.length + 1); // c1 too
      const stale = initial.filter((e) => e.status === 1).length; // created: taken before the starts
      // What HTTP/2 let through (a 64 KiB window) plus at most 128 KiB in grpc-js, and one batch: well under 256.
      expect(stale).toBeLessThan(120);
      expect(initial.filter((e) => e.status === 2).length).toBeGreaterThan(ids.length - 120);
      req.close();
    } finally {
      session.destroy();
      for (const id of ids) fs.rmSync(path.join(fake.root, id), { recursive: true, force: true });
    }
  });

  it("encodeWatchBatch makes what the generated code decodes as a WatchBatch", () => {
    const one = Buffer.from(WatchResponse.encode({ kind: 1, container: { id: "x".repeat(200), result: undefined } }).finish());
    const synced = Buffer.from(WatchResponse.encode({ kind: 2 }).finish());
    const m = WatchResponse.decode(encodeWatchBatch([one, synced, one]));
    expect(m.batch?.events.map((e) => [e.kind, e.container?.id.length])).toEqual([[1, 200], [2, undefined], [1, 200]]);
  });

  it("a consumer that is slow while its process keeps reading the socket gets the latest state of each container", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `slow${i}`);
    for (const id of ids) writeFakeContainer(fake.root, id, init);
    const it = shim.watch("")[Symbol.asyncIterator]();
    try {
      const first = await firstEvents(it, ids.length + 2); // c1, slow0..19, synced
      expect(first.at(-1)?.kind).toBe("synced");
      for (let round = 0; round < 10; round++) {
        for (const id of ids) {
          const fifo = path.join(fake.root, id, "exec.fifo");
          if (round % 2 === 0) fs.rmSync(fifo);
          else fs.writeFileSync(fifo, "");
        }
        await new Promise((r) => setTimeout(r, 20)); // the server sends every change; we read none
      }
      fs.rmSync(path.join(fake.root, "slow0"), { recursive: true });
      await new Promise((r) => setTimeout(r, 100));
      // 200 changes and a removal arrived meanwhile: what is left is one event per container
      // (in the order the server saw their last changes).
      const later = await firstEvents(it, ids.length);
      const byId = (a: string[], b: string[]) => ((a[1] ?? "") < (b[1] ?? "") ? -1 : 1);
      expect(later.map((e) => [e.kind, e.id, e.state?.status ?? ""]).sort(byId)).toEqual(
        [...ids.slice(1).map((id) => ["changed", id, "created"]), ["removed", "slow0", ""]].sort(byId),
      );
    } finally {
      await it.return?.();
      for (const id of ids) fs.rmSync(path.join(fake.root, id), { recursive: true, force: true });
    }
  });

  it("a stream ends with OK when the hub is closed (as on a shutdown that ends watches)", async () => {
    const got: string[] = [];
    const done = (async () => {
      for await (const ev of shim.watch("")) {
        got.push(ev.kind);
        if (ev.kind === "synced") hub.close();
      }
    })();
    await expect(done).resolves.toBeUndefined();
    expect(got).toEqual(["initial", "synced"]);
    expect(hub.subscribers).toBe(0);
  });

  it("a stream ends with FAILED_PRECONDITION when the state root goes away", async () => {
    const it = shim.watch("")[Symbol.asyncIterator]();
    await firstEvents(it, 2);
    fs.renameSync(fake.root, `${fake.root}.moved`);
    try {
      const e = await it.next().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(ShimError);
      expect([(e as ShimError).codeName, (e as ShimError).reason]).toEqual(["FAILED_PRECONDITION", "CONFIG_INVALID"]);
      expect((e as ShimError).details).toMatch(/^state root .* does not exist$/);
    } finally {
      fs.renameSync(`${fake.root}.moved`, fake.root);
    }
  });
});

describe("WatchQueue (the client's merging)", () => {
  const ev = (kind: WatchEventView["kind"], id: string, status?: string): WatchEventView =>
    status === undefined ? { kind, id } : ({ kind, id, state: { status } } as WatchEventView);
  const drain = (q: WatchQueue) => {
    const out: Array<[string, string, string | undefined]> = [];
    for (let e = q.take(); e !== undefined; e = q.take()) out.push([e.kind, e.id, e.state?.status]);
    return out;
  };

  it("merges per container as the server does", () => {
    const q = new WatchQueue();
    q.push(ev("initial", "a", "created"));
    q.push(ev("initial", "b", "created"));
    q.push(ev("synced", ""));
    q.push(ev("changed", "a", "running")); // initial a keeps its place and kind
    q.push(ev("removed", "b")); // never seen: gone
    q.push(ev("appeared", "c", "created"));
    q.push(ev("changed", "c", "running")); // appeared c, now running
    expect(drain(q)).toEqual([
      ["initial", "a", "running"],
      ["synced", "", undefined],
      ["appeared", "c", "running"],
    ]);
    q.push(ev("changed", "a", "paused"));
    q.push(ev("changed", "c", "stopped"));
    q.push(ev("changed", "a", "running")); // moves behind c
    q.push(ev("removed", "c"));
    q.push(ev("appeared", "c", "created")); // removed then appeared: a change
    expect(q.size).toBe(2);
    expect(drain(q)).toEqual([
      ["changed", "a", "running"],
      ["changed", "c", "created"],
    ]);
  });
});
