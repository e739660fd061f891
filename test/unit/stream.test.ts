/**
 * The server-streaming adapter (src/server/stream.ts) through a real grpc-js
 * server and client in this process: messages buffered behind a write in
 * progress reach http2 in one write (writeInBatches), every message arrives,
 * in order, and the call ends OK.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverStream, writeInBatches, type MessageSource } from "../../src/server/stream.js";

const PATH = "/test.Stream/Count";
const identity = (b: Buffer): Buffer => b;

/** A source of `n` messages, each the 4-byte big-endian index, then done. */
function counting(n: number): MessageSource<Buffer> {
  let i = 0;
  return {
    next: () => {
      if (i >= n) return undefined;
      const b = Buffer.alloc(4);
      b.writeUInt32BE(i++);
      return b;
    },
    get done() {
      return i >= n ? {} : undefined;
    },
    listen: () => {},
    close: () => {},
  };
}

describe("serverStream over grpc-js", () => {
  let dir: string;
  let server: grpc.Server;
  let client: grpc.Client;
  /** Chunks per `_writev` call, as grpc-js's stream called it. */
  const writev: number[] = [];
  let batched: boolean[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-stream-"));
    const handler = serverStream<Buffer, Buffer>(
      { rpc: "Count", log: pino({ level: "silent" }), containerIdOf: () => "" },
      (req) => counting(req.readUInt32BE(0)),
    );
    server = new grpc.Server();
    server.addService(
      {
        Count: {
          path: PATH,
          requestStream: false,
          responseStream: true,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      {
        Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
          handler(call);
          const internals = call as unknown as { _writev?: (chunks: unknown[], cb: () => void) => void };
          const installed = internals._writev;
          batched.push(typeof installed === "function");
          if (installed !== undefined) {
            internals._writev = (chunks, cb) => {
              writev.push(chunks.length);
              installed(chunks, cb);
            };
          }
        },
      },
    );
    const socket = path.join(dir, "s.sock");
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function count(n: number): Promise<{ got: number[]; code: grpc.status }> {
    const req = Buffer.alloc(4);
    req.writeUInt32BE(n);
    return new Promise((resolve) => {
      const got: number[] = [];
      const call = client.makeServerStreamRequest(PATH, identity, identity, req);
      call.on("data", (b: Buffer) => got.push(b.readUInt32BE(0)));
      call.on("status", (s: grpc.StatusObject) => resolve({ got, code: s.code }));
      call.on("error", () => {});
    });
  }

  it("hands grpc-js's buffered messages to http2 together, and every message arrives in order", async () => {
    batched = [];
    writev.length = 0;
    const { got, code } = await count(20_000);
    expect(code).toBe(grpc.status.OK);
    expect(got).toHaveLength(20_000);
    expect(got.every((v, i) => v === i)).toBe(true);
    // With this grpc-js (1.14), the adapter gave its stream a _writev, and grpc-js called it with many messages at once.
    expect(batched).toEqual([true]);
    expect(writev.length).toBeGreaterThan(0);
    expect(Math.max(...writev)).toBeGreaterThan(1);
  });

  it("leaves an object that is not grpc-js's stream as it is", () => {
    expect(writeInBatches({})).toBe(false);
    expect(writeInBatches({ call: {} })).toBe(false);
    const own = { call: { sendMessage: () => {} }, _writev: () => {} };
    const before = own._writev;
    expect(writeInBatches(own)).toBe(false);
    expect(own._writev).toBe(before);
  });
});
