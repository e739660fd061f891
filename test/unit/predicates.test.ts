import { describe, expect, it } from "vitest";
import { parseSignal } from "../../src/client/client.js";
import { killSignal } from "../../src/runtime/ops/signals.js";
import { canDelete, canKill, canPause, canResume, canStart, type ContainerStatus } from "../../src/runtime/status.js";

describe("status predicates (one row per status, written out)", () => {
  // status      start  kill   pause  resume delete(without force)
  const table: Array<[ContainerStatus, boolean, boolean, boolean, boolean, boolean]> = [
    ["created", true, true, true, false, true],
    ["running", false, true, true, false, false],
    ["pausing", false, true, false, true, false],
    ["paused", false, true, false, true, false],
    ["stopped", false, false, false, false, true],
  ];
  it.each(table)("%s: start %s, kill %s, pause %s, resume %s, delete %s", (status, start, kill, pause, resume, del) => {
    expect([canStart(status), canKill(status), canPause(status), canResume(status), canDelete(status)]).toEqual([start, kill, pause, resume, del]);
  });
  it("throws on a status that is not one (the exhaustive switch's default)", () => {
    expect(() => canKill("exploded" as ContainerStatus)).toThrow('unexpected value "exploded"');
  });
});

describe("signals", () => {
  it("Kill's request signal: 0 is SIGTERM, 1-64 as given, anything else INVALID_ARGUMENT", () => {
    expect(killSignal(0)).toBe(15);
    expect(killSignal(9)).toBe(9);
    expect(killSignal(64)).toBe(64);
    expect(() => killSignal(65)).toThrow("invalid signal 65: expected 1-64 (0 means SIGTERM)");
    expect(() => killSignal(65)).toThrow(expect.objectContaining({ kind: "InvalidArgument" }));
    expect(() => killSignal(-1)).toThrow(expect.objectContaining({ kind: "InvalidArgument" }));
  });
  it("the client takes runc's names and numbers", () => {
    expect(parseSignal(undefined)).toBe(0);
    expect(parseSignal("KILL")).toBe(9);
    expect(parseSignal("SIGKILL")).toBe(9);
    expect(parseSignal("SiGkIlL")).toBe(9);
    expect(parseSignal("kill")).toBe(9);
    expect(parseSignal("9")).toBe(9);
    expect(parseSignal("+9")).toBe(9);
    expect(parseSignal("term")).toBe(15);
    expect(parseSignal("WINCH")).toBe(28);
    expect(parseSignal(34)).toBe(34);
    for (const bad of ["BOGUS", "IOT", "POLL", "RTMIN", "0x9", " 9"]) {
      expect(() => parseSignal(bad), bad).toThrow(`unknown signal ${JSON.stringify(bad)}`);
    }
  });
});
