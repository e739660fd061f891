/**
 * Issue 14, finding 3: a large but valid state.json cannot stall everyone.
 * Through a real server process: the work per file is bounded (size, labels,
 * nesting depth, each a SystemError naming the bound), a bad file is parsed
 * once per version rather than on every call, State on an unrelated container
 * stays fast while such a file is hammered, and one oversized entry does not
 * fail a List for a client with the default 4 MiB receive limit.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createShimClient, type ShimClient } from "../../src/client/client.js";
import { failure } from "../helpers/calls.js";
import { spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { startServer, type ServerProcess } from "../helpers/server.js";

const FIXTURE = JSON.parse(fs.readFileSync(new URL("../fixtures/runc-1.1.5/state.json", import.meta.url), "utf8")) as Record<string, any>;

describe("bounded work per state.json (issue 14, finding 3)", () => {
  let tmp: ReturnType<typeof tempRoot>;
  let init: FakeInit;
  let server: ServerProcess;
  let shim: ShimClient;
  /** A client with grpc-js's default 4 MiB receive limit, as most clients keep. */
  let plain: ShimClient;

  /** Writes a state.json for `id` whose init is the live `init`, with `labels` and extra top-level fields. */
  function plant(id: string, labels: string[], extra = ""): void {
    const dir = path.join(tmp.root, id);
    fs.mkdirSync(dir, { recursive: true });
    const state = { ...FIXTURE, id, init_process_pid: init.pid, init_process_start: init.startTime, cgroup_paths: {}, config: { ...FIXTURE.config, labels } };
    const text = JSON.stringify(state);
    fs.writeFileSync(path.join(dir, "state.json"), extra === "" ? text : `${text.slice(0, -1)},${extra}}`);
  }

  beforeAll(async () => {
    tmp = tempRoot();
    init = await spawnInit();
    for (let i = 0; i < 5; i++) writeFakeContainer(tmp.root, `ok-${i}`, init, { created: false });
    // 300,000 labels in 3.9 MB: under the size bound, over the label bound.
    plant("many-labels", Array.from({ length: 300_000 }, (_, i) => `k${i}=v`));
    // 1.5 million levels of nesting in a field runc-shim ignores, in 3 MB.
    plant("deep", ["bundle=/b"], `"x":${"[".repeat(1_500_000)}${"]".repeat(1_500_000)}`);
    // 5,000 annotations of 100 bytes: valid, under the label bounds, too large for a List entry.
    plant("fat", [...Array.from({ length: 5000 }, (_, i) => `a${i}=${"x".repeat(95)}`), "bundle=/b"]);
    server = await startServer(tmp.root);
    shim = createShimClient(server.socket);
    plain = createShimClient(server.socket, { channelOptions: { "grpc.max_receive_message_length": 4 * 1024 * 1024, "grpc.use_local_subchannel_pool": 1 } });
  });
  afterAll(async () => {
    shim?.close();
    plain?.close();
    await server?.stop();
    await init?.kill();
    tmp?.cleanup();
  });

  it("a file past a bound is a SystemError naming the bound", async () => {
    const labels = await failure(shim.state("many-labels"));
    expect(labels.codeName).toBe("INTERNAL");
    expect(labels.reason).toBe("SYSTEM_ERROR");
    expect(labels.details).toBe(`${path.join(tmp.root, "many-labels", "state.json")}: config.labels has 300000 entries, more than 10000`);
    const deep = await failure(shim.state("deep"));
    expect(deep.details).toBe(`${path.join(tmp.root, "deep", "state.json")}: state file nests deeper than 64 levels; not parsed`);
    const big = path.join(tmp.root, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "state.json"), Buffer.alloc(15 * 1024 * 1024, 0x20));
    const size = await failure(shim.state("big"));
    expect(size.details).toBe(`${path.join(big, "state.json")}: state file is ${15 * 1024 * 1024} bytes, more than the 4 MiB limit; not read`);
  });

  it("parses a bad file once per version, and State on other containers stays fast while it is hammered", async () => {
    // Four clients hammer the two expensive files while one measures State on an unrelated container.
    let stop = false;
    const hammer = async (): Promise<void> => {
      while (!stop) await Promise.allSettled([shim.state("many-labels"), shim.state("deep")]);
    };
    const hammers = Array.from({ length: 4 }, hammer);
    const times: number[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        expect((await plain.state("ok-1")).status).toBe("running");
        times.push(performance.now() - t0);
      }
    } finally {
      stop = true;
      await Promise.all(hammers);
    }
    times.sort((a, b) => a - b);
    const p99 = times[Math.floor(times.length * 0.99)]!;
    // Before the bounds each call re-parsed the files (p50 195 ms, p99 3 s on the trial).
    expect(p99).toBeLessThan(250);
  });

  it("one oversized entry does not fail a List for a client with the default 4 MiB limit", async () => {
    const entries = await plain.list();
    const byId = new Map(entries.map((e) => [e.id, e]));
    for (let i = 0; i < 5; i++) expect(byId.get(`ok-${i}`)?.state?.status).toBe("running");
    expect(byId.get("fat")?.error?.code).toBe("SYSTEM_ERROR");
    expect(byId.get("fat")?.error?.message).toMatch(/^the state of container fat takes about \d+ bytes, more than the 65536 bytes a List entry may take; ask State for it$/);
    expect(byId.get("many-labels")?.error?.code).toBe("SYSTEM_ERROR");
    // State still answers the large container whole.
    expect(Object.keys((await shim.state("fat")).annotations)).toHaveLength(5000);
  });
});
