import { describe, expect, it } from "vitest";
import type { FreezerState } from "../../src/runtime/freezer.js";
import { deriveStatus, type ContainerStatus } from "../../src/runtime/status.js";

describe("status derivation (runc 1.1.5 refreshState), every combination of facts", () => {
  const freezers: FreezerState[] = ["undefined", "thawed", "freezing", "frozen"];
  const cases: Array<[FreezerState, boolean, boolean, ContainerStatus]> = [];
  for (const freezer of freezers) {
    for (const initAlive of [false, true]) {
      for (const execFifoExists of [false, true]) {
        const expected: ContainerStatus =
          freezer === "frozen" ? "paused" : freezer === "freezing" ? "pausing" : !initAlive ? "stopped" : execFifoExists ? "created" : "running";
        cases.push([freezer, initAlive, execFifoExists, expected]);
      }
    }
  }
  expect(cases).toHaveLength(16);
  it.each(cases)("freezer %s, init alive %s, exec fifo %s -> %s", (freezer, initAlive, execFifoExists, expected) => {
    expect(deriveStatus({ freezer: () => freezer, initAlive: () => initAlive, execFifoExists: () => execFifoExists })).toBe(expected);
  });

  it("reads each fact only when it decides", () => {
    const read: string[] = [];
    const fact = <T,>(name: string, v: T) => () => (read.push(name), v);
    deriveStatus({ freezer: fact("freezer", "frozen"), initAlive: fact("init", true), execFifoExists: fact("fifo", true) });
    expect(read).toEqual(["freezer"]);
    read.length = 0;
    deriveStatus({ freezer: fact("freezer", "thawed"), initAlive: fact("init", false), execFifoExists: fact("fifo", true) });
    expect(read).toEqual(["freezer", "init"]);
  });
});
