import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RuntimeError } from "../../src/runtime/errors.js";
import {
  CGROUP2_SUPER_MAGIC,
  freezerStateV1,
  freezerStateV2,
  readCgroupFile,
  readInCheckedDir,
  type CgroupReader,
} from "../../src/runtime/freezer.js";
import { heldFiles } from "../../src/runtime/held-files.js";

/** A reader over plain files: prepared cgroupfs-like fixtures (no statfs check). */
const fixtureReader: CgroupReader = (file, maxBytes = 64) => {
  try {
    return fs.readFileSync(file, "utf8").slice(0, maxBytes);
  } catch {
    return undefined;
  }
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rs-freezer-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function fixture(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(tmp, "cg-"));
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

describe("cgroup v1 freezer (runc 1.1.5 fs/freezer.go), fixtures", () => {
  it.each([
    [{ "freezer.state": "THAWED\n" }, "thawed"],
    [{ "freezer.state": "FROZEN\n", "freezer.self_freezing": "1\n" }, "frozen"],
    [{ "freezer.state": "FROZEN\n", "freezer.self_freezing": "0\n" }, "thawed"], // frozen only by a parent
    [{ "freezer.state": "FROZEN\n" }, "frozen"], // no self_freezing file
    [{ "freezer.state": "FREEZING\n", "freezer.self_freezing": "1\n" }, "freezing"], // answered at once, no loop
    [{}, "undefined"], // cgroup gone
  ] as const)("%j -> %s", (files, expected) => {
    expect(freezerStateV1(fixture(files), fixtureReader)).toBe(expected);
  });

  it("rejects unknown values with a SystemError", () => {
    expect(() => freezerStateV1(fixture({ "freezer.state": "MELTED\n" }), fixtureReader)).toThrow(/unknown freezer.state "MELTED\\n"/);
    expect(() => freezerStateV1(fixture({ "freezer.state": "FROZEN\n", "freezer.self_freezing": "2\n" }), fixtureReader)).toThrow(
      /freezer.self_freezing/,
    );
  });
});

describe("cgroup v2 freezer (runc 1.1.5 fs2/freezer.go), fixtures", () => {
  it.each([
    [{ "cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 0\n" }, "thawed"],
    [{ "cgroup.freeze": "1\n", "cgroup.events": "populated 1\nfrozen 1\n" }, "frozen"],
    [{ "cgroup.freeze": "1\n", "cgroup.events": "populated 1\nfrozen 0\n" }, "freezing"], // answered at once, no 10 s poll
    [{}, "undefined"],
  ] as const)("%j -> %s", (files, expected) => {
    expect(freezerStateV2(fixture(files), fixtureReader)).toBe(expected);
  });

  it("rejects an unknown cgroup.freeze value", () => {
    expect(() => freezerStateV2(fixture({ "cgroup.freeze": "7\n" }), fixtureReader)).toThrow(RuntimeError);
  });
});

describe("cgroup files must lie on a cgroup filesystem (statfs)", () => {
  it("refuses a file on another filesystem with a SystemError, and reads nothing", () => {
    const dir = fixture({ "freezer.state": "FROZEN\n" });
    expect(() => readCgroupFile(path.join(dir, "freezer.state"))).toThrow(/not a cgroup file/);
    expect(() => freezerStateV1(dir)).toThrow(/not a cgroup file/);
    expect(() => freezerStateV1("/etc")).not.toThrow(); // /etc/freezer.state does not exist: undefined
    expect(freezerStateV1("/etc")).toBe("undefined");
  });

  const unified = "/sys/fs/cgroup/unified";
  const v2 = fs.existsSync(unified) && fs.statfsSync(unified).type === CGROUP2_SUPER_MAGIC ? unified
    : fs.statfsSync("/sys/fs/cgroup").type === CGROUP2_SUPER_MAGIC ? "/sys/fs/cgroup" : undefined;
  it.runIf(process.getuid?.() === 0 && v2 !== undefined)("reads a real cgroup v2 freeze (thawed -> frozen -> thawed)", () => {
    const dir = path.join(v2!, `rs-freezer-test-${process.pid}`);
    fs.mkdirSync(dir);
    try {
      expect(freezerStateV2(dir)).toBe("thawed");
      fs.writeFileSync(path.join(dir, "cgroup.freeze"), "1");
      expect(freezerStateV2(dir)).toBe("frozen"); // an empty cgroup freezes at once
      fs.writeFileSync(path.join(dir, "cgroup.freeze"), "0");
      expect(freezerStateV2(dir)).toBe("thawed");
    } finally {
      fs.rmdirSync(dir);
    }
  });

  const v1 = "/sys/fs/cgroup/freezer";
  it.runIf(process.getuid?.() === 0 && fs.existsSync(path.join(v1, "freezer.state")) === false && fs.existsSync(v1))(
    "reads a real cgroup v1 freezer: a child frozen only by its parent is not frozen",
    () => {
      const parent = path.join(v1, `rs-freezer-test-${process.pid}`);
      const child = path.join(parent, "child");
      fs.mkdirSync(child, { recursive: true });
      try {
        expect(freezerStateV1(parent)).toBe("thawed");
        fs.writeFileSync(path.join(parent, "freezer.state"), "FROZEN");
        expect(freezerStateV1(parent)).toBe("frozen");
        expect(freezerStateV1(child)).toBe("thawed"); // FROZEN with self_freezing 0
        fs.writeFileSync(path.join(parent, "freezer.state"), "THAWED");
      } finally {
        fs.rmdirSync(child);
        fs.rmdirSync(parent);
      }
    },
  );

  it.runIf(process.getuid?.() === 0 && fs.existsSync(path.join(v1, "freezer.state")) === false && fs.existsSync(v1))(
    "readInCheckedDir reads through held fds (pread): sees FROZEN and THAWED, never holds the cgroup, and is absent once it is removed",
    () => {
      const dir = path.join(v1, `rs-kept-test-${process.pid}`);
      fs.mkdirSync(dir);
      const state = path.join(dir, "freezer.state");
      const self = path.join(dir, "freezer.self_freezing");
      try {
        expect(freezerStateV1(dir, readInCheckedDir)).toBe("thawed");
        expect(heldFiles.files()).toContain(state);
        fs.writeFileSync(state, "FROZEN");
        expect(freezerStateV1(dir, readInCheckedDir)).toBe("frozen");
        fs.writeFileSync(state, "THAWED");
        expect(freezerStateV1(dir, readInCheckedDir)).toBe("thawed");
        fs.writeFileSync(state, "FROZEN");
        expect(freezerStateV1(dir, readInCheckedDir)).toBe("frozen");
        expect(heldFiles.files()).toEqual(expect.arrayContaining([state, self])); // each opened once and re-read
        fs.writeFileSync(state, "THAWED");
        fs.rmdirSync(dir); // an open fd does not hold the cgroup
        expect(freezerStateV1(dir, readInCheckedDir)).toBe("undefined");
        expect(heldFiles.files()).not.toContain(state);
      } finally {
        heldFiles.dropUnder(dir);
        if (fs.existsSync(dir)) fs.rmdirSync(dir);
      }
    },
  );
});
