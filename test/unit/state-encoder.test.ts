/**
 * Issue 11: State answers are encoded once per container state (StateEncoder):
 * the same bytes while state.json, status and pid are unchanged; new bytes,
 * decoding to the new state, as soon as one of them changes; bounded.
 */
import { describe, expect, it } from "vitest";
import { ContainerStatus as WireStatus, StateResponse } from "../../gen/ts/runcshim/v1/shim.js";
import type { ContainerState, LazyState } from "../../src/runtime/container.js";
import type { ContainerStatus } from "../../src/runtime/status.js";
import { STATE_ENCODINGS_KEPT, StateEncoder } from "../../src/server/service.js";

function lazy(source: object, id: string, status: ContainerStatus, pid: number): LazyState & { made: number } {
  const s = {
    id,
    status,
    pid,
    source,
    made: 0,
    state(): ContainerState {
      s.made++;
      return {
        id,
        status,
        pid,
        bundle: "/b",
        rootfs: "/b/rootfs",
        created: { seconds: 1_700_000_000, nanos: 5, text: "2023-11-14T22:13:20.000000005Z" },
        annotations: { a: "1" },
        owner: "",
        ociVersion: "1.0.2",
      };
    },
  };
  return s;
}

describe("StateEncoder", () => {
  it("answers an unchanged container with the same bytes, and a changed one with new bytes of the new state", () => {
    const enc = new StateEncoder();
    const record = {};
    const a = lazy(record, "c1", "created", 42);
    const first = enc.encode(a);
    expect(StateResponse.decode(first)).toMatchObject({ id: "c1", pid: 42, status: WireStatus.CONTAINER_STATUS_CREATED, bundle: "/b", annotations: { a: "1" } });
    const again = lazy(record, "c1", "created", 42);
    expect(enc.encode(again)).toBe(first);
    expect(again.made).toBe(0); // no state built on a hit

    const running = enc.encode(lazy(record, "c1", "running", 42));
    expect(running).not.toBe(first);
    expect(StateResponse.decode(running).status).toBe(WireStatus.CONTAINER_STATUS_RUNNING);
    const stopped = enc.encode(lazy(record, "c1", "stopped", 0));
    expect(StateResponse.decode(stopped)).toMatchObject({ pid: 0, status: WireStatus.CONTAINER_STATUS_STOPPED });
    // The same parse asked for under another id (an alias) is encoded with that id.
    expect(StateResponse.decode(enc.encode(lazy(record, "alias", "stopped", 0))).id).toBe("alias");
    // A new parse of state.json (the file changed) is encoded anew.
    const changed = lazy({}, "c1", "stopped", 0);
    enc.encode(changed);
    expect(changed.made).toBe(1);
  });

  it(`keeps the encodings of the ${STATE_ENCODINGS_KEPT} containers answered last`, () => {
    const enc = new StateEncoder();
    const sources = Array.from({ length: STATE_ENCODINGS_KEPT + 1 }, () => ({}));
    const firstBytes = enc.encode(lazy(sources[0]!, "c0", "running", 7));
    for (let i = 1; i < sources.length; i++) enc.encode(lazy(sources[i]!, `c${i}`, "running", 7));
    const evicted = lazy(sources[0]!, "c0", "running", 7);
    expect(enc.encode(evicted)).not.toBe(firstBytes);
    expect(evicted.made).toBe(1);
    const kept = lazy(sources[sources.length - 1]!, `c${sources.length - 1}`, "running", 7);
    enc.encode(kept);
    expect(kept.made).toBe(0);
  });
});
