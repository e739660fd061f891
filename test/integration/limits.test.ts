/**
 * Issue 14, finding 4: streams and connections are bounded. Through real server
 * processes: connections that never send the HTTP/2 preface are closed after
 * --preface-timeout, garbage at once; past --max-connections the newest idle
 * connection is closed so a new client still gets answers (also under
 * `ulimit -n 64`); Watch streams are capped per connection and per server
 * (RESOURCE_EXHAUSTED naming the flag); running out of fds is
 * RESOURCE_EXHAUSTED, never a container's SystemError; HTTP/2
 * SETTINGS_MAX_CONCURRENT_STREAMS is what --max-streams-per-connection says.
 */
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { failure } from "../helpers/calls.js";
import { spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { waitFor } from "../helpers/runc.js";
import { MAIN, logged, startServer, tempSocketPath, type ServerProcess } from "../helpers/server.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** An empty SETTINGS frame: length 0, type 4, flags 0, stream 0. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Opens a raw connection to the socket; resolves once connected. Tracks it for cleanup. */
function rawConnect(socket: string, sockets: net.Socket[], send?: Buffer): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    sockets.push(c);
    c.on("error", () => {});
    // Read (and drop) what the server sends, as an idle HTTP/2 client does: a socket holding unread
    // data (the server's SETTINGS) never emits "end" or "close" after the server closes it.
    c.resume();
    c.once("connect", () => {
      if (send !== undefined) c.write(send);
      resolve(c);
    });
    c.once("close", () => reject(new Error("closed before connecting")));
  });
}

function closedWithin(c: net.Socket, ms: number): Promise<boolean> {
  if (c.destroyed || c.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    c.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("connections and streams are bounded (issue 14, finding 4)", () => {
  let tmp: ReturnType<typeof tempRoot>;
  let root: string;
  let init: FakeInit;
  let ids: string[];
  const servers: ServerProcess[] = [];
  const sockets: net.Socket[] = [];
  const clients: ShimClient[] = [];

  beforeAll(async () => {
    tmp = tempRoot();
    root = tmp.root;
    init = await spawnInit();
    ids = Array.from({ length: 8 }, (_, i) => {
      writeFakeContainer(root, `lim-${i}`, init, { created: false });
      return `lim-${i}`;
    });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of sockets.splice(0)) s.destroy();
    for (const s of servers.splice(0)) await s.stop();
  });
  afterAll(async () => {
    await init?.kill();
    tmp?.cleanup();
  });

  async function serve(extra: string[] = [], opts: { ulimit?: number } = {}): Promise<ServerProcess> {
    const s =
      opts.ulimit === undefined
        ? await startServer(root, extra)
        : await startServer(root, [], {
            socket: tempSocketPath(),
            // `ulimit -n` then exec: the server runs with that open-file limit.
            wrap: (args) => ["/bin/sh", ["-c", `ulimit -n ${opts.ulimit} && exec "$0" "$@"`, process.execPath, MAIN, ...args, ...extra]],
          });
    servers.push(s);
    return s;
  }
  /** A client on a connection of its own (grpc-js would share one subchannel between clients of one target). */
  function client(s: ServerProcess): ShimClient {
    const c = createShimClient(s.socket, { channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    clients.push(c);
    return c;
  }

  it("closes connections that send no preface within --preface-timeout, and garbage at once", async () => {
    const s = await serve(["--preface-timeout", "300ms"]);
    const pid = s.proc.pid!;
    await client(s).state(ids[0]!); // the server is warm; its fds are at their working level
    const base = fdCount(pid);
    const silent = await Promise.all(Array.from({ length: 40 }, () => rawConnect(s.socket, sockets)));
    const garbage = await rawConnect(s.socket, sockets, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect(await closedWithin(garbage, 200)).toBe(true);
    await waitFor(() => fdCount(pid) >= base + 30, 2000, "the silent connections to be accepted");
    const results = await Promise.all(silent.map((c) => closedWithin(c, 3000)));
    expect(results.every(Boolean)).toBe(true);
    await waitFor(() => fdCount(pid) <= base, 2000, "the server's fds to return to their baseline");
    // A real client is not affected.
    expect((await client(s).state(ids[1]!)).id).toBe(ids[1]);
    await logged(s, "sent no HTTP/2 preface in time (--preface-timeout)");
  });

  it("past --max-connections closes the newest idle connection, so a new client still gets answers", async () => {
    const s = await serve(["--max-connections", "10"]);
    const pid = s.proc.pid!;
    const base = fdCount(pid);
    // 30 connections that speak HTTP/2 (preface and SETTINGS) and then sit idle.
    for (let i = 0; i < 30; i++) await rawConnect(s.socket, sockets, Buffer.concat([PREFACE, EMPTY_SETTINGS]));
    // The server closes the extra ones as they arrive; on a loaded machine their close can take
    // longer to reach us than a fixed sleep: wait for it, bounded.
    const open = () => sockets.filter((c) => !c.destroyed && !c.closed).length;
    await waitFor(() => open() <= 10, 3000, "the connections past --max-connections to be closed");
    expect(fdCount(pid)).toBeLessThanOrEqual(base + 10 + 2);
    expect(open()).toBeLessThanOrEqual(10);
    await new Promise((r) => setTimeout(r, 200)); // and they stay closed: no connection past the limit is kept
    expect(open()).toBeLessThanOrEqual(10);
    const c = client(s);
    expect((await c.state(ids[2]!)).id).toBe(ids[2]);
    await logged(s, "connection limit reached (--max-connections)");
  });

  it("under `ulimit -n 64`, 43 idle connections leave State answering OK (no EMFILE)", async () => {
    const s = await serve([], { ulimit: 64 });
    expect(fs.readFileSync(`/proc/${s.proc.pid}/limits`, "utf8")).toMatch(/Max open files\s+64\s/);
    for (let i = 0; i < 43; i++) await rawConnect(s.socket, sockets, Buffer.concat([PREFACE, EMPTY_SETTINGS]));
    await new Promise((r) => setTimeout(r, 300));
    const c = client(s);
    for (const id of ids) expect((await c.state(id)).status).toBe("running");
  });

  it("running out of fds is RESOURCE_EXHAUSTED, not a container's SystemError", async () => {
    const s = await serve(["--max-connections", "1000"], { ulimit: 64 });
    const c = client(s);
    expect((await c.state(ids[3]!)).id).toBe(ids[3]); // connected (and that one cached) before the flood
    const fresh = "lim-fresh";
    // Fill the server's fd table with idle HTTP/2 connections.
    for (let i = 0; i < 80; i++) {
      try {
        await rawConnect(s.socket, sockets, Buffer.concat([PREFACE, EMPTY_SETTINGS]));
      } catch {
        break;
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    // Made only now: the server's read-ahead of new containers cannot open its state.json either, so State must.
    writeFakeContainer(root, fresh, init, { created: false });
    await new Promise((r) => setTimeout(r, 100));
    const e = await failure(c.state(fresh));
    expect(e.codeName).toBe("RESOURCE_EXHAUSTED");
    expect(e.reason).toBe("RESOURCE_EXHAUSTED");
    expect(e.details).toMatch(/^runc-shim is out of file descriptors \(EMFILE\): /);
    fs.rmSync(path.join(root, "lim-fresh"), { recursive: true, force: true });
  });

  it("caps Watch streams per connection and per server with RESOURCE_EXHAUSTED naming the flag", async () => {
    const s = await serve(["--max-watches-per-connection", "3", "--max-watches", "5"]);
    const a = client(s);
    const b = client(s);
    const third = client(s);
    const acs: AbortController[] = [];
    /** Opens a watch and resolves once it synced, or rejects with its error. */
    const open = async (c: ShimClient): Promise<AbortController> => {
      const ac = new AbortController();
      acs.push(ac);
      const it = c.watch("", { signal: ac.signal })[Symbol.asyncIterator]();
      for (;;) {
        const r = await it.next();
        if (r.done) throw new Error("watch ended");
        if (r.value.kind === "synced") break;
      }
      void (async () => {
        try {
          while (!(await it.next()).done);
        } catch {
          // ended by the test
        }
      })();
      return ac;
    };
    try {
      for (let i = 0; i < 3; i++) await open(a);
      const perConn = await failure(open(a));
      expect(perConn.codeName).toBe("RESOURCE_EXHAUSTED");
      expect(perConn.details).toBe("too many Watch streams on this connection: 3 open (--max-watches-per-connection)");
      await open(b);
      await open(b);
      const total = await failure(open(third));
      expect(total.codeName).toBe("RESOURCE_EXHAUSTED");
      expect(total.details).toBe("too many Watch streams on this server: 5 open (--max-watches)");
      acs[0]!.abort(); // one of a's watches ends: a slot frees up
      let reopened = false;
      for (let i = 0; i < 50 && !reopened; i++) {
        try {
          await open(third);
          reopened = true;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      expect(reopened).toBe(true);
    } finally {
      for (const ac of acs) ac.abort();
    }
  });

  it("announces --max-streams-per-connection as HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (default 128)", async () => {
    for (const [extra, expected] of [[[], 128], [["--max-streams-per-connection", "7"], 7]] as const) {
      const s = await serve([...extra]);
      const session = http2.connect("http://localhost", { createConnection: () => net.connect(s.socket) });
      session.on("error", () => {});
      const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      session.destroy();
      expect(settings.maxConcurrentStreams).toBe(expected);
    }
  });
});
