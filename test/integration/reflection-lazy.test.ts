/**
 * Reflection is loaded on its first call (src/server/reflection.ts): both
 * versions answer from the first call on, calls racing the load all answer,
 * and a malformed request ends the stream with INTERNAL while the server goes
 * on serving. (Strict clients — Python's and grpcurl — are in interop.test.ts.)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type ServerProcess } from "../helpers/server.js";

/** `ServerReflectionRequest { list_services: "" }` (field 7, a string), encoded by hand. */
const LIST_SERVICES = Buffer.from([0x3a, 0x00]);

/** Opens one ServerReflectionInfo stream, sends `requests`, half-closes; resolves with the responses' bytes or rejects with the status. */
function reflect(client: grpc.Client, version: "v1" | "v1alpha", requests: Buffer[]): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(`/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`, (b: Buffer) => b, (b: Buffer) => b);
    const got: Buffer[] = [];
    call.on("data", (b: Buffer) => got.push(b));
    call.on("error", reject);
    call.on("status", (s: grpc.StatusObject) => s.code === grpc.status.OK && resolve(got));
    for (const r of requests) call.write(r);
    call.end();
  });
}

describe("reflection, loaded on the first call", () => {
  let root: string;
  let server: ServerProcess;
  let client: grpc.Client;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "rs-refl-"));
    server = await startServer(root);
    client = new grpc.Client(`unix://${server.socket}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it("answers v1 and v1alpha calls that race the load, each with the service list", async () => {
    const answers = await Promise.all([
      reflect(client, "v1", [LIST_SERVICES]),
      reflect(client, "v1alpha", [LIST_SERVICES, LIST_SERVICES]),
      reflect(client, "v1", [LIST_SERVICES]),
    ]);
    expect(answers.map((a) => a.length)).toEqual([1, 2, 1]);
    for (const a of answers) for (const b of a) expect(b.toString("latin1")).toContain("runcshim.v1.ShimService");
  });

  it("ends a stream whose request cannot be decoded with INTERNAL, and keeps serving", async () => {
    const err = await reflect(client, "v1", [Buffer.from([0xff, 0xff, 0xff])]).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.INTERNAL);
    const again = await reflect(client, "v1alpha", [LIST_SERVICES]);
    expect(again).toHaveLength(1);
  });
});
