import { EventEmitter } from "node:events";
import type { ServerUnaryCall } from "@grpc/grpc-js";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { unary } from "../../src/server/unary.js";

function fakeCall(opts: { cancelled?: boolean; deadline?: number }): ServerUnaryCall<{ id: string }, unknown> {
  const call = new EventEmitter() as EventEmitter & Record<string, unknown>;
  call.request = { id: "c1" };
  call.cancelled = opts.cancelled ?? false;
  call.getDeadline = () => opts.deadline ?? Infinity;
  return call as unknown as ServerUnaryCall<{ id: string }, unknown>;
}

describe("the unary adapter", () => {
  const log = pino({ level: "silent" });
  const run = (call: ServerUnaryCall<{ id: string }, unknown>) => {
    let ran = false;
    const handler = unary<{ id: string }, string>({ rpc: "Start", log, containerIdOf: (r) => r.id, cancellable: true }, () => {
      ran = true;
      return "done";
    });
    return new Promise<{ ran: boolean; err: { code: number; details: string } | null; value: unknown }>((resolve) =>
      handler(call, (err, value) => resolve({ ran, err: err as { code: number; details: string } | null, value })),
    );
  };

  it("does not run the handler of a call the client cancelled before it was handled", async () => {
    const r = await run(fakeCall({ cancelled: true }));
    expect(r.ran).toBe(false);
    expect(r.err?.code).toBe(1); // CANCELLED
  });

  it("does not run the handler of a call whose deadline has already passed", async () => {
    const r = await run(fakeCall({ deadline: Date.now() - 5 }));
    expect(r.ran).toBe(false);
    expect(r.err?.code).toBe(4); // DEADLINE_EXCEEDED
  });

  it("runs a live call exactly once and answers once", async () => {
    const r = await run(fakeCall({ deadline: Date.now() + 10_000 }));
    expect(r).toMatchObject({ ran: true, err: null, value: "done" });
  });
});
