/**
 * Issue 11: a container runc creates is parsed when it is created, so the
 * Start that follows does not pay the first parse of its state.json. In
 * process, with real runc: the cache holds the container soon after `runc
 * create` returns, without any call; the warmer's watches end with it.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { CreationWarmer } from "../../src/runtime/warm.js";
import { RuncFixture, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";

describe.skipIf(skipRunc())("the creation warmer", () => {
  let fx: RuncFixture;
  let root: StateRoot;
  let warmer: CreationWarmer;
  const warnings: string[] = [];

  beforeAll(() => {
    fx = new RuncFixture("runc-shim-warm-");
    root = new StateRoot(fx.root);
    warmer = new CreationWarmer(root, (m) => warnings.push(m));
    warmer.start();
  });
  afterAll(() => {
    warmer?.close();
    fx?.cleanup();
  });

  it("parses the state.json of a container runc creates, before anyone asks", async () => {
    const id = uniqueId("rs-warm");
    expect(root.isCached(id)).toBe(false);
    fx.create(id);
    await waitFor(() => root.isCached(id), 2000, "the new container to be parsed");
    expect(warmer.pendingDirs).toBe(0);
    expect(root.state(id).status).toBe("created");
    expect(warnings).toEqual([]);
  });

  it("ignores what is not a container dir, and gives up on a dir that never gets a state.json", async () => {
    fs.writeFileSync(path.join(fx.root, "a-file"), "");
    fs.mkdirSync(path.join(fx.root, "bad id!"));
    const empty = uniqueId("rs-warm-empty");
    fs.mkdirSync(path.join(fx.root, empty));
    await waitFor(() => warmer.pendingDirs === 1, 2000, "the empty dir to be waited on");
    expect(root.isCached(empty)).toBe(false);
    fs.rmSync(path.join(fx.root, empty), { recursive: true });
    await waitFor(() => warmer.pendingDirs === 0, 2000, "the removed dir's watch to end");
    fs.rmSync(path.join(fx.root, "a-file"));
    fs.rmSync(path.join(fx.root, "bad id!"), { recursive: true });
  });
});
