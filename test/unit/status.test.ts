import { describe, expect, it } from "vitest";
import type { FreezerState } from "../../src/runtime/freezer.js";
import { deriveStatus, type ContainerStatus } from "../../src/runtime/status.js";

describe("status derivation (runc 1.1.5 refreshState), every combination of facts", () => {
  // freezer, init alive, exec fifo exists -> status (runc's order: freezer, then init, then the fifo)
  const cases: Array<[FreezerState, boolean, boolean, ContainerStatus]> = [
    ["undefined", false, false, "stopped"],
    ["undefined", false, true, "stopped"],
    ["undefined", true, false, "running"],
    ["undefined", true, true, "created"],
    ["thawed", false, false, "stopped"],
    ["thawed", false, true, "stopped"],
    ["thawed", true, false, "running"],
    ["thawed", true, true, "created"],
    ["freezing", false, false, "pausing"],
    ["freezing", false, true, "pausing"],
    ["freezing", true, false, "pausing"],
    ["freezing", true, true, "pausing"],
    ["frozen", false, false, "paused"],
    ["frozen", false, true, "paused"],
    ["frozen", true, false, "paused"],
    ["frozen", true, true, "paused"],
  ];
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
