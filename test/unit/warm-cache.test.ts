import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { DEAD_INIT, tempRoot, writeFakeContainer } from "../helpers/fake-containers.js";

const tmp = tempRoot("rs-warm-");
afterAll(() => tmp.cleanup());

describe("StateRoot.warmCache", () => {
  it("loads every container dir in batches, skips what fails, and stops when aborted", async () => {
    for (let i = 0; i < 250; i++) writeFakeContainer(tmp.root, `w-${i}`, DEAD_INIT, { created: false });
    fs.mkdirSync(path.join(tmp.root, "w-corrupt"));
    fs.writeFileSync(path.join(tmp.root, "w-corrupt", "state.json"), "xyz");
    const root = new StateRoot(tmp.root, "v1");
    expect(await root.warmCache(undefined, 50)).toBe(250);
    expect(root.state("w-7")).toMatchObject({ id: "w-7", status: "stopped" });

    const ac = new AbortController();
    ac.abort();
    expect(await new StateRoot(tmp.root, "v1").warmCache(ac.signal, 50)).toBe(0);
  });
});

describe("listContainersYielding", () => {
  it("gives the event loop back between batches, with the same entries as the synchronous list", async () => {
    const { listContainers, listContainersYielding } = await import("../../src/runtime/list.js");
    const root = new StateRoot(tmp.root, "v1");
    let turns = 0;
    const tick = setInterval(() => turns++, 0);
    const yielded = await listContainersYielding(root, undefined, 20);
    clearInterval(tick);
    expect(turns).toBeGreaterThan(0);
    expect(yielded.map((e) => e.id)).toEqual(listContainers(root).map((e) => e.id));
    expect(yielded.length).toBe(251); // 250 containers + the corrupt one as an error entry
  });
});
