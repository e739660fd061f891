import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { joinFile } from "../../src/runtime/paths.js";

describe("joinFile (the freezer files' paths, read on every State)", () => {
  it("is path.join for clean absolute dirs and for every other dir", () => {
    const segment = fc.constantFrom("sys", "fs", "cgroup", "freezer", ".", "..", "", "a b", "x.y", "..z");
    fc.assert(
      fc.property(fc.boolean(), fc.array(segment, { maxLength: 8 }), fc.boolean(), fc.constantFrom("freezer.state", "cgroup.events"), (abs, parts, trailing, name) => {
        const dir = `${abs ? "/" : ""}${parts.join("/")}${trailing ? "/" : ""}`;
        expect(joinFile(dir, name)).toBe(path.join(dir, name));
      }),
      { numRuns: 5000 },
    );
  });

  it("keeps a runc cgroup path as it is", () => {
    expect(joinFile("/sys/fs/cgroup/freezer/user.slice/c1", "freezer.state")).toBe("/sys/fs/cgroup/freezer/user.slice/c1/freezer.state");
    expect(joinFile("/sys/fs/cgroup/a/../b", "freezer.state")).toBe("/sys/fs/cgroup/b/freezer.state");
    expect(joinFile("/", "cgroup.events")).toBe("/cgroup.events");
  });
});
