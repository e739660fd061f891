/**
 * The benchmark's client: a separate process (forked by bench.ts and
 * profile.ts with an IPC channel) that drives runc-shim over its Unix socket
 * with the package's gRPC client, and spawns `runc` from this same process for
 * the comparison. It answers one request at a time (see ./lib/protocol.ts).
 *
 * Both the State call and the floor call (`grpc.health.v1.Health/Check`,
 * service "") go through the raw grpc-js callback API on one shared channel,
 * so the client-side cost of the two is the same.
 */
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { spawn } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { createShimClient, STATUS_NAMES, type ShimClient } from "../src/client/client.js";
import { WatchRequest, WatchResponse, type StartResponse, type StateResponse } from "../gen/ts/runcshim/v1/shim.js";
import type {
  Probe,
  RoundsResult,
  StartResult,
  ThroughputResult,
  TouchResult,
  WatchOpenResult,
  WorkerReply,
  WorkerRequest,
} from "./lib/protocol.js";
import { seededRandom, shuffle } from "./lib/stats.js";

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;

interface HealthClient extends grpc.Client {
  Check(req: { service: string }, cb: Callback<{ status: string }>): grpc.ClientUnaryCall;
}

const HealthClientCtor = grpc.makeGenericClientConstructor(
  healthService as unknown as grpc.ServiceDefinition,
  "grpc.health.v1.Health",
) as unknown as new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => HealthClient;

interface Conn {
  shim: ShimClient;
  health: HealthClient;
}

const conns = new Map<string, Conn>();


function conn(name: string | undefined): Conn {
  const c = name === undefined ? undefined : conns.get(name);
  if (c === undefined) throw new Error(`no connection named ${String(name)}`);
  return c;
}

/** Opens a channel to the server and waits until a health check answers SERVING. */
async function connect(name: string, socket: string): Promise<void> {
  const shim = createShimClient(socket);
  const health = new HealthClientCtor(`unix://${socket}`, grpc.credentials.createInsecure(), {
    channelOverride: shim.raw.getChannel(),
  });
  await new Promise<void>((resolve, reject) =>
    shim.raw.waitForReady(Date.now() + 10_000, (e) => (e ? reject(new Error(`server on ${socket} not ready: ${e.message}`)) : resolve())),
  );
  const status = await new Promise<string>((resolve, reject) =>
    health.Check({ service: "" }, (e, r) => (e ? reject(e) : resolve(String(r?.status)))),
  );
  if (status !== "SERVING") throw new Error(`health check of ${socket} says ${status}`);
  conns.set(name, { shim, health });
}

/** One floor call; resolves with its latency in µs. */
function floorCall(c: Conn): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    c.health.Check({ service: "" }, (e) => {
      const us = (performance.now() - t0) * 1000;
      if (e) reject(new Error(`Health/Check failed: ${e.message}`));
      else resolve(us);
    });
  });
}

/** One State call; resolves with its latency in µs, after checking the status. */
function shimStateCall(c: Conn, id: string, expect: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    c.shim.raw.state({ id }, (e: grpc.ServiceError | null, r?: StateResponse) => {
      const us = (performance.now() - t0) * 1000;
      if (e) return reject(new Error(`State ${id} failed: ${e.message}`));
      const status = STATUS_NAMES[r?.status ?? -1] ?? "unspecified";
      if (expect !== undefined && status !== expect) return reject(new Error(`State ${id}: ${status}, expected ${expect}`));
      resolve(us);
    });
  });
}

/** Runs `runc --root root args...`; resolves with the wall time from spawn to close in ms and its stdout. */
function runc(root: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn("runc", ["--root", root, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    p.once("error", reject);
    p.once("close", (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`runc ${args.join(" ")} exited ${code}: ${err.trim()}`));
      else resolve({ ms, stdout: out });
    });
  });
}

/** One `runc state`; resolves with its latency in µs, after checking the status. */
async function runcStateCall(root: string, id: string, expect: string | undefined): Promise<number> {
  const { ms, stdout } = await runc(root, ["state", id]);
  if (expect !== undefined) {
    const status = (JSON.parse(stdout) as { status: string }).status;
    if (status !== expect) throw new Error(`runc state ${id}: ${status}, expected ${expect}`);
  }
  return ms * 1000;
}

function probeCall(p: Probe, round: number): Promise<number> {
  const id = p.ids === undefined || p.ids.length === 0 ? "" : p.ids[round % p.ids.length]!;
  switch (p.kind) {
    case "floor":
      return floorCall(conn(p.conn));
    case "shim":
      return shimStateCall(conn(p.conn), id, p.expect);
    case "runc":
      if (p.root === undefined) throw new Error(`probe ${p.key}: no root`);
      return runcStateCall(p.root, id, p.expect);
  }
}

/** `rounds` rounds; in each, every probe once, in a seeded shuffled order. */
async function rounds(probes: Probe[], n: number, seed: number): Promise<RoundsResult> {
  const out: RoundsResult = Object.fromEntries(probes.map((p) => [p.key, [] as number[]]));
  const random = seededRandom(seed);
  for (let i = 0; i < n; i++) {
    for (const p of shuffle([...probes], random)) out[p.key]!.push(await probeCall(p, i));
  }
  return out;
}

/**
 * The exec fifo handshake done directly by this process, the floor of Start: a blocking open of
 * `<root>/<id>/exec.fifo` for reading (the init is already blocked in its open for writing), reads to
 * end of file (the byte, then the init's exec closes its end), unlink. Blocking calls are fine here:
 * this process does nothing else meanwhile.
 * @returns its duration, in ms
 */
function directHandshake(root: string, id: string): number {
  const fifo = path.join(root, id, "exec.fifo");
  const t0 = performance.now();
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY);
  const buf = Buffer.alloc(64);
  let got = 0;
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) got += n;
  } finally {
    fs.closeSync(fd);
  }
  fs.unlinkSync(fifo);
  const ms = performance.now() - t0;
  if (got === 0) throw new Error(`direct handshake of ${id}: no byte`);
  return ms;
}

/**
 * Start triples: shim Start of `shimIds[i]`, `runc start` of `runcIds[i]` and the direct handshake of
 * `directIds[i]`, the order rotating so that each side goes first, second and third alike.
 */
async function startPairs(c: Conn, root: string, shimIds: string[], runcIds: string[], directIds: string[]): Promise<StartResult> {
  const out: StartResult = { shim: [], runc: [], direct: [], floorAfterDirect: [] };
  // The raw callback API, as the State and floor calls use (the typed client's promise, error
  // mapping and deadline timer cost the client ~0.1 ms a call that the floor call does not pay);
  // no deadline: the server's --start-timeout bounds the call.
  const shimStart = (id: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      c.shim.raw.start({ id }, (e: grpc.ServiceError | null, r?: StartResponse) => {
        const ms = performance.now() - t0;
        if (e) return reject(new Error(`Start ${id} failed: ${e.message}`));
        if (!((r?.pid ?? 0) > 0)) return reject(new Error(`Start ${id} returned pid ${r?.pid}`));
        resolve(ms);
      });
    });
  const steps = [
    async (i: number) => out.shim.push(await shimStart(shimIds[i]!)),
    async (i: number) => out.runc.push((await runc(root, ["start", runcIds[i]!])).ms),
    async (i: number) => {
      out.direct.push(directHandshake(root, directIds[i]!));
      out.floorAfterDirect.push((await floorCall(c)) / 1000);
    },
  ];
  for (let i = 0; i < Math.min(shimIds.length, runcIds.length, directIds.length); i++) {
    for (let k = 0; k < steps.length; k++) {
      await steps[(i + k) % steps.length]!(i);
      await new Promise((r) => setTimeout(r, 2)); // each side starts from the same idle state
    }
  }
  return out;
}

/**
 * A closed loop with `concurrency` calls in flight for `warmupMs + durationMs`;
 * counts the completions inside the last `durationMs`.
 */
function closedLoop(
  call: (i: number, done: (ok: boolean) => void) => void,
  concurrency: number,
  warmupMs: number,
  durationMs: number,
): Promise<ThroughputResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const from = t0 + warmupMs;
    const until = from + durationMs;
    let calls = 0;
    let errors = 0;
    let totalCalls = 0;
    let active = concurrency;
    let next = 0;
    const lane = (): void => {
      if (performance.now() >= until) {
        if (--active === 0) resolve({ calls, errors, seconds: durationMs / 1000, totalCalls });
        return;
      }
      call(next++, (ok) => {
        totalCalls++;
        const t = performance.now();
        if (t >= from && t < until) {
          if (ok) calls++;
          else errors++;
        }
        lane();
      });
    };
    for (let i = 0; i < concurrency; i++) lane();
  });
}

function throughput(c: Conn, kind: "shim" | "floor", ids: string[], concurrency: number, warmupMs: number, durationMs: number): Promise<ThroughputResult> {
  const call =
    kind === "floor"
      ? (_i: number, done: (ok: boolean) => void) => void c.health.Check({ service: "" }, (e) => done(!e))
      : (i: number, done: (ok: boolean) => void) => void c.shim.raw.state({ id: ids[i % ids.length]! }, (e: grpc.ServiceError | null) => done(!e));
  return closedLoop(call, concurrency, warmupMs, durationMs);
}

function runcThroughput(root: string, ids: string[], parallel: number, warmupMs: number, durationMs: number): Promise<ThroughputResult> {
  return closedLoop(
    (i, done) => void runc(root, ["state", ids[i % ids.length]!]).then(() => done(true), () => done(false)),
    parallel,
    warmupMs,
    durationMs,
  );
}

/** State of every id once, `concurrency` in flight (fills the server's state.json cache). */
function touch(c: Conn, ids: string[], concurrency: number): Promise<TouchResult> {
  return new Promise((resolve) => {
    const out: TouchResult = { ok: 0, errors: 0, statuses: {} };
    let next = 0;
    let active = Math.min(concurrency, ids.length);
    if (active === 0) return resolve(out);
    const lane = (): void => {
      if (next >= ids.length) {
        if (--active === 0) resolve(out);
        return;
      }
      c.shim.raw.state({ id: ids[next++]! }, (e: grpc.ServiceError | null, r?: StateResponse) => {
        if (e) out.errors++;
        else {
          out.ok++;
          const s = STATUS_NAMES[r?.status ?? -1] ?? "unspecified";
          out.statuses[s] = (out.statuses[s] ?? 0) + 1;
        }
        lane();
      });
    };
    for (let i = 0; i < active; i++) lane();
  });
}

/**
 * List latency: `reps` shim List calls alternating with `runcReps` `runc list`
 * runs (while both remain), each checked to return `expect` entries.
 * @returns wall times in ms per side
 */
async function listTimes(c: Conn, root: string, reps: number, runcReps: number, expect: number): Promise<{ shim: number[]; runc: number[] }> {
  const shim: number[] = [];
  const runcMs: number[] = [];
  for (let i = 0; i < Math.max(reps, runcReps); i++) {
    if (i < reps) {
      const t0 = performance.now();
      const entries = await c.shim.list({ deadlineMs: 60_000 });
      shim.push(performance.now() - t0);
      if (entries.length !== expect) throw new Error(`List returned ${entries.length} entries, expected ${expect}`);
    }
    if (i < runcReps) {
      const { ms, stdout } = await runc(root, ["list", "--format", "json"]);
      runcMs.push(ms);
      const n = (JSON.parse(stdout) as unknown[] | null)?.length ?? 0;
      if (n !== expect) throw new Error(`runc list returned ${n} entries, expected ${expect}`);
    }
  }
  return { shim, runc: runcMs };
}

/** Open watch-all streams, by name: how to cancel their calls and close their connections, and a hook told of each decoded message. */
interface OpenWatches {
  cancel: () => void;
  close: () => void;
  onMessage?: (m: WatchResponse, at: number) => void;
}
const watches = new Map<string, OpenWatches>();
/** The encoding of a SYNCED message: kind = 2, nothing else. */
const SYNCED_BYTES = Buffer.from([0x08, 0x02]);

/**
 * The events of a raw batched message (`WatchResponse { batch = 3: WatchBatch { events = 1 } }`),
 * walked without decoding them: how many, and whether one is SYNCED.
 */
function batchEvents(b: Buffer): { n: number; synced: boolean } {
  const varint = (at: number): [number, number] => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const x = b[at++]!;
      v += (x & 0x7f) * mul;
      if (x < 0x80) return [v, at];
      mul *= 128;
    }
  };
  if (b[0] !== 0x1a) throw new Error("a message of a batched watch is not a batch");
  let [len, at] = varint(1);
  const end = at + len;
  let n = 0;
  let synced = false;
  while (at < end) {
    if (b[at] !== 0x0a) throw new Error("unexpected field in a WatchBatch");
    [len, at] = varint(at + 1);
    n++;
    if (len === 2 && b[at] === 0x08 && b[at + 1] === 0x02) synced = true;
    at += len;
  }
  return { n, synced };
}

/**
 * Opens `streams` watch-all streams over `connections` connections of their
 * own (not shared with the State channel) with grpc-js; resolves when every
 * stream has had its SYNCED message. Without `decode`, messages are counted as
 * raw bytes, not decoded.
 */
async function watchOpen(name: string, socket: string, streams: number, connections: number, decode: boolean, maxBatch?: number): Promise<WatchOpenResult> {
  const clients = Array.from({ length: connections }, () =>
    new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": 64 << 20 }),
  );
  const calls: grpc.ClientReadableStream<Buffer>[] = [];
  const entry: OpenWatches = {
    cancel: () => calls.forEach((c) => c.cancel()),
    close: () => clients.forEach((c) => c.close()),
  };
  watches.set(name, entry);
  const t0 = performance.now();
  let messages = 0;
  let events = 0;
  const request = maxBatch === undefined ? Buffer.alloc(0) : Buffer.from(WatchRequest.encode({ id: "", maxBatch }).finish());
  const syncedMs = await Promise.all(
    Array.from({ length: streams }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        const call = clients[i % connections]!.makeServerStreamRequest("/runcshim.v1.ShimService/Watch", () => request, (b: Buffer) => b, {});
        calls.push(call);
        let synced = false;
        call.on("data", (b: Buffer) => {
          if (!synced) messages++;
          if (decode) {
            const m = WatchResponse.decode(b);
            const all = m.batch !== undefined ? m.batch.events : [m];
            if (!synced) events += all.length;
            for (const e of all) {
              entry.onMessage?.(e, performance.now());
              if (!synced && e.kind === 2) {
                synced = true;
                resolve(performance.now() - t0);
              }
            }
          } else if (maxBatch !== undefined) {
            if (synced) return;
            const r = batchEvents(b);
            events += r.n;
            if (r.synced) {
              synced = true;
              resolve(performance.now() - t0);
            }
          } else if (!synced && (events++, b.equals(SYNCED_BYTES))) {
            synced = true;
            resolve(performance.now() - t0);
          }
        });
        call.on("error", (e: grpc.ServiceError) => {
          if (!synced) reject(new Error(`Watch failed before SYNCED: ${e.message}`));
        });
      }),
    ),
  );
  return { syncedMs, messages, events };
}

/**
 * Splits a gRPC response body into its messages as its chunks arrive (each: a
 * flags byte, a 4-byte big-endian length, the message). A message split
 * across chunks is copied once whole; the others are views of their chunk.
 */
class GrpcMessages {
  private rest: Buffer | undefined;

  push(chunk: Buffer, onMessage: (m: Buffer) => void): void {
    const buf = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk]);
    let at = 0;
    while (buf.length - at >= 5) {
      const len = buf.readUInt32BE(at + 1);
      if (buf.length - at - 5 < len) break;
      onMessage(buf.subarray(at + 5, at + 5 + len));
      at += 5 + len;
    }
    this.rest = at < buf.length ? buf.subarray(at) : undefined;
  }
}

/**
 * As {@link watchOpen} without decoding, through Node's http2 alone: the
 * request's headers and body written as gRPC frames them, the response split
 * into messages by their length prefixes and counted, SYNCED found by its
 * bytes (a batch's events walked by {@link batchEvents}). A client this cheap
 * per message (no grpc-js call machinery, no per-message callbacks) is what
 * the 200-stream rows use, so they measure the server's delivery rather than
 * a grpc-js client's receive path (which cost as much CPU as the server,
 * measured). Flow control: Node's defaults, as grpc-js's (65,535-byte windows).
 */
async function watchOpenHttp2(name: string, socket: string, streams: number, connections: number, maxBatch?: number): Promise<WatchOpenResult> {
  const sessions = Array.from({ length: connections }, () =>
    http2.connect("http://localhost", { createConnection: () => net.connect(socket), maxSessionMemory: Number.MAX_SAFE_INTEGER }),
  );
  const calls: http2.ClientHttp2Stream[] = [];
  watches.set(name, {
    cancel: () => calls.forEach((c) => c.close(http2.constants.NGHTTP2_CANCEL)),
    close: () => sessions.forEach((s) => s.close()),
  });
  for (const s of sessions) s.on("error", () => {}); // reported through the streams
  const t0 = performance.now();
  let messages = 0;
  let events = 0;
  const payload = maxBatch === undefined ? Buffer.alloc(0) : Buffer.from(WatchRequest.encode({ id: "", maxBatch }).finish());
  const body = Buffer.alloc(5 + payload.length);
  body.writeUInt32BE(payload.length, 1);
  payload.copy(body, 5);
  const syncedMs = await Promise.all(
    Array.from({ length: streams }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        const call = (sessions[i % connections] as http2.ClientHttp2Session).request({
          ":method": "POST",
          ":path": "/runcshim.v1.ShimService/Watch",
          "content-type": "application/grpc",
          te: "trailers",
        });
        calls.push(call);
        call.end(body);
        let synced = false;
        const framing = new GrpcMessages();
        const onMessage = (m: Buffer): void => {
          if (synced) return;
          messages++;
          if (maxBatch !== undefined) {
            const r = batchEvents(m);
            events += r.n;
            synced = r.synced;
          } else {
            events++;
            synced = m.equals(SYNCED_BYTES);
          }
          if (synced) resolve(performance.now() - t0);
        };
        call.on("data", (chunk: Buffer) => {
          if (!synced) framing.push(chunk, onMessage);
        });
        const failed = (why: string): void => {
          if (!synced) reject(new Error(`Watch failed before SYNCED: ${why}`));
        };
        call.on("trailers", (t) => t["grpc-status"] !== undefined && t["grpc-status"] !== "0" && failed(`grpc-status ${String(t["grpc-status"])} ${String(t["grpc-message"] ?? "")}`));
        call.on("response", (h) => h["grpc-status"] !== undefined && h["grpc-status"] !== "0" && failed(`grpc-status ${String(h["grpc-status"])}`));
        call.on("error", (e: Error) => failed(e.message));
        call.on("close", () => failed(`stream closed (code ${call.rstCode ?? "?"})`));
      }),
    ),
  );
  return { syncedMs, messages, events };
}

/**
 * `runc kill ID KILL` for each id in turn, each timed from the spawn of runc
 * kill to the CHANGED/STOPPED message on the (decoded) watch `name`.
 * @returns ms per kill
 */
async function watchKill(name: string, root: string, ids: string[]): Promise<{ ms: number[]; runcMs: number[] }> {
  const w = watches.get(name);
  if (w === undefined) throw new Error(`no watch named ${name}`);
  const out: number[] = [];
  const runcMs: number[] = [];
  for (const id of ids) {
    let seenAt: number | undefined;
    w.onMessage = (m, at) => {
      if (m.container?.id === id && m.container.result?.$case === "state" && m.container.result.value.status === 3) seenAt ??= at;
    };
    // Timed from the spawn of `runc kill`, not from its exit: with cgroup.events the STOPPED message often
    // arrives before runc's own exit is reaped, so from the exit it would be ≤ 0. From the spawn it is an
    // upper bound that includes runc's own run time (reported apart, in runcMs).
    const spawned = performance.now();
    const { ms } = await runc(root, ["kill", id, "KILL"]);
    runcMs.push(ms);
    const t0 = Date.now();
    while (seenAt === undefined && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 1));
    if (seenAt === undefined) throw new Error(`the kill of ${id} was not reported within 5 s`);
    out.push(seenAt - spawned);
  }
  w.onMessage = undefined;
  return { ms: out, runcMs };
}

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case "connect":
      return connect(req.name, req.socket);
    case "close": {
      const c = conns.get(req.name);
      c?.health.close();
      c?.shim.close();
      conns.delete(req.name);
      return undefined;
    }
    case "rounds":
      return rounds(req.probes, req.rounds, req.seed);
    case "start":
      return startPairs(conn(req.conn), req.root, req.shimIds, req.runcIds, req.directIds);
    case "throughput":
      return throughput(conn(req.conn), req.kind, req.ids, req.concurrency, req.warmupMs, req.durationMs);
    case "runcThroughput":
      return runcThroughput(req.root, req.ids, req.parallel, req.warmupMs, req.durationMs);
    case "touch":
      return touch(conn(req.conn), req.ids, req.concurrency);
    case "list":
      return listTimes(conn(req.conn), req.root, req.reps, req.runcReps, req.expect);
    case "watchOpen":
      return req.client === "http2"
        ? watchOpenHttp2(req.name, req.socket, req.streams, req.connections, req.maxBatch)
        : watchOpen(req.name, req.socket, req.streams, req.connections, req.decode, req.maxBatch);
    case "watchKill":
      return watchKill(req.name, req.root, req.ids);
    case "watchClose": {
      const w = watches.get(req.name);
      watches.delete(req.name);
      w?.cancel();
      await new Promise((r) => setTimeout(r, 50));
      w?.close();
      return undefined;
    }
    case "exit":
      for (const w of watches.values()) {
        w.cancel();
        w.close();
      }
      watches.clear();
      for (const c of conns.values()) {
        c.health.close();
        c.shim.close();
      }
      conns.clear();
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

if (process.send === undefined) {
  process.stderr.write("client-worker: run me with child_process.fork (bench.js does)\n");
  process.exit(2);
}
// The parent going away (even by SIGKILL) closes the IPC channel: then leave too.
process.on("disconnect", () => process.exit(0));
// Ctrl-C reaches the whole process group; the parent does the cleaning up.
process.on("SIGINT", () => process.exit(130));
process.on("message", (msg: WorkerRequest) => {
  void handle(msg).then(
    (result) => process.send?.({ seq: msg.seq, ok: true, result } satisfies WorkerReply),
    (e: unknown) => process.send?.({ seq: msg.seq, ok: false, error: e instanceof Error ? e.message : String(e) } satisfies WorkerReply),
  );
});
