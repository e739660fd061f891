import fs from "node:fs";
import * as grpc from "@grpc/grpc-js";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, decodeErrorInfo, ShimError, type ShimClient } from "../../src/client/client.js";
import { RuncFixture, skipRunc, waitFor } from "../helpers/runc.js";
import { failure } from "../helpers/calls.js";
import { startServer, type ServerProcess } from "../helpers/server.js";


describe.skipIf(skipRunc())("Start and State against real runc", () => {
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

  it("walks a container created -> running -> paused -> running -> stopped, agreeing with runc", async () => {
    const id = fx.create();
    const pid = fx.initPid(id);

    const created = await shim.state(id);
    expect(created).toMatchObject({ id, pid, status: "created", bundle: fx.bundle, rootfs: path.join(fx.bundle, "rootfs"), owner: "", ociVersion: "1.0.2-dev" });
    const runcView = JSON.parse(fx.runc("state", id)) as Record<string, unknown>;
    expect(created.created).toBe(runcView.created);

    expect(await shim.start(id)).toBe(pid);
    expect(fs.existsSync(path.join(fx.root, id, "exec.fifo"))).toBe(false);
    expect((await shim.state(id)).status).toBe("running");
    expect(fx.state(id).status).toBe("running");

    const again = await failure(shim.start(id));
    expect([again.codeName, again.details, again.reason]).toEqual(["FAILED_PRECONDITION", "cannot start an already running container", "CONTAINER_RUNNING"]);
    expect(again.metadata).toEqual({ container_id: id });

    fx.runc("pause", id);
    expect(await shim.state(id)).toMatchObject({ status: "paused", pid });
    const paused = await failure(shim.start(id));
    expect([paused.codeName, paused.details, paused.reason]).toEqual(["FAILED_PRECONDITION", "cannot start a container in the paused state", "CONTAINER_PAUSED"]);
    fx.runc("resume", id);
    expect((await shim.state(id)).status).toBe("running");

    fx.runc("kill", id, "KILL");
    await waitFor(() => fx.state(id).status === "stopped", 5000, "runc to see the container stopped");
    expect(await shim.state(id)).toMatchObject({ status: "stopped", pid: 0 });
    const stopped = await failure(shim.start(id));
    expect([stopped.codeName, stopped.details, stopped.reason]).toEqual(["FAILED_PRECONDITION", "cannot start a container that has stopped", "CONTAINER_STOPPED"]);
  });

  it("answers NOT_FOUND for an unknown id", async () => {
    for (const call of [shim.state("rs-no-such-container"), shim.start("rs-no-such-container")]) {
      const e = await failure(call);
      expect([e.codeName, e.details, e.reason]).toEqual(["NOT_FOUND", "container does not exist", "CONTAINER_NOT_EXISTS"]);
    }
  });

  it.each(["../x", "a/b", "a b", "", ".", "..", "x".repeat(256)])("answers INVALID_ARGUMENT for id %j", async (id) => {
    for (const call of [shim.state(id), shim.start(id)]) {
      const e = await failure(call);
      expect(e.codeName).toBe("INVALID_ARGUMENT");
      expect(e.reason).toBe("INVALID_ID_FORMAT");
      expect(e.details).toMatch(id === "" ? /^container id cannot be empty$/ : /^invalid container ID format/);
    }
  });

  it("answers INTERNAL naming the file for a garbage state.json, and keeps serving", async () => {
    const dir = path.join(fx.root, "rs-garbage");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "state.json"), "xyz");
    const e = await failure(shim.state("rs-garbage"));
    expect([e.codeName, e.reason]).toEqual(["INTERNAL", "SYSTEM_ERROR"]);
    expect(e.details).toContain(path.join(dir, "state.json"));
    expect((await failure(shim.state("rs-still-no-such"))).codeName).toBe("NOT_FOUND");
  });

  it("answers a request that is not a valid message with INVALID_ARGUMENT and details, and keeps serving", async () => {
    const raw = new grpc.Client(`unix://${server.socket}`, grpc.credentials.createInsecure());
    const call = (method: string) =>
      new Promise<grpc.ServiceError>((resolve, reject) =>
        raw.makeUnaryRequest(
          `/runcshim.v1.ShimService/${method}`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // field 1, a length far past the end
          (e) => (e ? resolve(e) : reject(new Error("expected an error"))),
        ),
      );
    for (const method of ["State", "Start"]) {
      const e = await call(method);
      expect(grpc.status[e.code]).toBe("INVALID_ARGUMENT");
      expect(e.details).toMatch(/^malformed request/);
      expect(decodeErrorInfo(e.metadata.get("grpc-status-details-bin")[0])?.reason).toBe("INVALID_REQUEST");
    }
    raw.close();
    expect((await failure(shim.state("rs-after-garbage"))).codeName).toBe("NOT_FOUND");
  });
});
