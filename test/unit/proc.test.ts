import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isInitAlive, parseProcStat, readProcStat } from "../../src/runtime/proc.js";

const statLine = (name: string, state: string, start: number | string) =>
  `1234 (${name}) ${state} 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n`;

describe("/proc/PID/stat parsing (runc 1.1.5 libcontainer/system/proc.go)", () => {
  it("reads state and start time (field 22)", () => {
    expect(parseProcStat(statLine("sleep", "S", 50684))).toEqual({ name: "sleep", state: "S", startTime: 50684 });
  });

  it.each([
    ["a name with spaces", "a b c"],
    ["a name with )", "a) b"],
    ["a name like a stat tail", ") Z 1 2 3 4"],
    ["an empty name", ""],
    ["parentheses", "((x))"],
  ])("handles %s", (_what, name) => {
    expect(parseProcStat(statLine(name, "T", 99))).toEqual({ name, state: "T", startTime: 99 });
  });

  it("rejects malformed text", () => {
    expect(parseProcStat("")).toBeUndefined();
    expect(parseProcStat("1 (x) S 1 2 3")).toBeUndefined();
    expect(parseProcStat("1 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22")).toBeUndefined();
    expect(parseProcStat(statLine("x", "S", "12a"))).toBeUndefined();
  });

  it("agrees with a model for arbitrary command names", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 64 }), fc.constantFrom("R", "S", "D", "T", "t", "Z", "X"), fc.nat(), (name, state, start) => {
        expect(parseProcStat(statLine(name, state, start))).toEqual({ name, state, startTime: start });
      }),
      { numRuns: 2000 },
    );
  });

  it("reads this process and says it is alive only with its own start time", () => {
    const me = readProcStat(process.pid);
    expect(me?.state).toMatch(/^[RS]$/);
    expect(isInitAlive(process.pid, me!.startTime)).toBe(true);
    expect(isInitAlive(process.pid, me!.startTime + 1)).toBe(false);
    expect(isInitAlive(0, 0)).toBe(false);
    expect(isInitAlive(-1, 0)).toBe(false);
    expect(isInitAlive(2 ** 30, 0)).toBe(false);
  });
});
