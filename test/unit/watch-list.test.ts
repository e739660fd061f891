import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { UserNames, listContainers } from "../../src/runtime/list.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";

describe("listContainers", () => {
  let fake: ReturnType<typeof tempRoot>;
  let init: FakeInit;

  beforeAll(async () => {
    init = await spawnInit();
    fake = tempRoot();
  });
  afterAll(async () => {
    await init.kill();
    fake.cleanup();
  });

  it("has one entry per directory, sorted by id, with errors for those that do not load; skips symlinks and files", () => {
    const r = fake.root;
    writeFakeContainer(r, "zeta", init);
    writeFakeContainer(r, "alpha", init, { created: false });
    writeFakeContainer(r, "mid", DEAD_INIT);
    fs.symlinkSync("alpha", path.join(r, "alias"));
    fs.writeFileSync(path.join(r, "plain-file"), "");
    fs.mkdirSync(path.join(r, "empty"));
    fs.mkdirSync(path.join(r, "garbage"));
    fs.writeFileSync(path.join(r, "garbage", "state.json"), "xyz");
    fs.mkdirSync(path.join(r, "not valid"));
    const root = new StateRoot(r, "v1");

    const entries = listContainers(root);
    expect(entries.map((e) => [e.id, e.state?.status ?? (e.error as RuntimeError).kind])).toEqual([
      ["alpha", "running"],
      ["empty", "ContainerNotExists"],
      ["garbage", "SystemError"],
      ["mid", "stopped"],
      ["not valid", "InvalidIdFormat"],
      ["zeta", "created"],
    ]);
    expect(entries[0]?.state).toEqual({ ...root.state("alpha"), owner: "root" });
    expect(entries[3]?.state).toMatchObject({ pid: 0, bundle: "/bundles/mid" });
    expect((entries[2]?.error as RuntimeError).message).toContain(path.join(r, "garbage", "state.json"));
  });

  it("fails with ConfigInvalid when the root is gone", () => {
    const gone = new StateRoot(path.join(fake.dir, "nope"), "v1");
    expect(() => listContainers(gone)).toThrow(expect.objectContaining({ kind: "ConfigInvalid" }));
  });

  it("probe() gives what state() gives, and re-derives the status without re-reading state.json", () => {
    const root = new StateRoot(fake.root, "v1");
    const p = root.probe("zeta");
    expect(p.state).toEqual(root.state("zeta"));
    fs.rmSync(path.join(fake.root, "zeta", "exec.fifo"));
    expect(p.status()).toBe("running");
  });
});

describe("UserNames", () => {
  it("maps uids as /etc/passwd says (first entry wins), #uid otherwise, and re-reads a changed file", () => {
    const fake = tempRoot();
    try {
      const file = path.join(fake.dir, "passwd");
      fs.writeFileSync(file, "root:x:0:0:root:/root:/bin/sh\nfirst:x:1000:1000::/h:/bin/sh\nsecond:x:1000:1000::/h:/bin/sh\nbroken-line\n");
      const users = new UserNames(file);
      users.refresh();
      expect([users.name(0), users.name(1000), users.name(4242)]).toEqual(["root", "first", "#4242"]);
      fs.writeFileSync(file, "admin:x:0:0::/:/bin/sh\n");
      users.refresh();
      expect([users.name(0), users.name(1000)]).toEqual(["admin", "#1000"]);
    } finally {
      fake.cleanup();
    }
  });
});
