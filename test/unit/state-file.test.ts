import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { RuntimeError } from "../../src/runtime/errors.js";
import { parseRfc3339, parseStateFile, splitLabels, ZERO_TIME } from "../../src/runtime/state-file.js";

const FIXTURE = new URL("../fixtures/runc-1.1.5/state.json", import.meta.url);
const fixtureText = fs.readFileSync(FIXTURE, "utf8");
const FILE = "/root/c1/state.json";
const parse = (text: string) => parseStateFile(FILE, Buffer.from(text));
const minimal = (extra: Record<string, unknown> = {}) => JSON.stringify({ config: { cgroups: {} }, ...extra });

describe("state.json parsing", () => {
  it("reads the fixture captured from runc 1.1.5 (see runc-version.txt beside it)", () => {
    const raw = JSON.parse(fixtureText) as Record<string, any>;
    const r = parse(fixtureText);
    expect(r.initProcessPid).toBe(raw.init_process_pid);
    expect(r.initProcessStart).toBe(raw.init_process_start);
    expect(r.created.text).toBe(raw.created);
    expect(r.rootfs).toBe(raw.config.rootfs);
    expect(r.ociVersion).toBe("1.0.2-dev");
    expect(r.cgroupPaths.freezer).toBe(raw.cgroup_paths.freezer);
    const runcState = JSON.parse(fs.readFileSync(new URL("../fixtures/runc-1.1.5/runc-state.json", import.meta.url), "utf8"));
    expect(splitLabels(r.labels).bundle).toBe(runcState.bundle);
    expect(r.created.text).toBe(runcState.created);
  });

  it("keeps nanoseconds and offsets of created", () => {
    expect(parseRfc3339("2026-11-29T15:23:59.278308126Z")).toMatchObject({ seconds: 1795965839, nanos: 278308126 });
    expect(parseRfc3339("2020-01-01T00:00:00+02:00")).toMatchObject({ seconds: 1577829600, nanos: 0 });
    expect(parseRfc3339("0001-01-01T00:00:00Z")?.seconds).toBe(ZERO_TIME.seconds);
    expect(parseRfc3339("yesterday")).toBeUndefined();
    expect(parseRfc3339("2021-02-29T00:00:00Z")).toBeUndefined();
    expect(parseRfc3339("2026-11-29T15:23:59.1234567891Z")?.nanos).toBe(123456789); // Go truncates past 9 digits
  });

  it("accepts integers beyond 2^53 as Go's int and uint64 do (no live pid has them)", () => {
    expect(parse(minimal({ init_process_pid: 2 ** 63 - 1, init_process_start: 2 ** 64 - 1 })).initProcessPid).toBe(2 ** 63 - 1);
  });

  it("takes Go's zero values for absent fields and ignores trailing data after the first value", () => {
    const r = parse(`${minimal()} trailing garbage`);
    expect(r).toMatchObject({ initProcessPid: 0, initProcessStart: 0, rootfs: "", ociVersion: "", labels: [] });
    expect(r.created).toEqual(ZERO_TIME);
  });

  it.each([
    ["empty", "", /empty/],
    ["whitespace", "  \n\t ", /empty/],
    ["truncated", fixtureText.slice(0, 100), /invalid JSON/],
    ["xyz", "xyz", /invalid JSON/],
    ["[]", "[]", /must be a JSON object, got array/],
    ["null", "null", /must be a JSON object, got null/],
    ["a number", "42", /must be a JSON object, got number/],
    ["{}", "{}", /config must be an object/],
    ["config without cgroups", JSON.stringify({ config: {} }), /config.cgroups/],
    ["pid as string", minimal({ init_process_pid: "12" }), /init_process_pid/],
    ["fractional pid", minimal({ init_process_pid: 1.5 }), /init_process_pid/],
    ["negative start", minimal({ init_process_start: -5 }), /init_process_start/],
    ["fractional start", minimal({ init_process_start: 1.5 }), /init_process_start/],
    ["bad created", minimal({ created: "yesterday" }), /created/],
    ["created as number", minimal({ created: 5 }), /created/],
    ["labels not strings", JSON.stringify({ config: { cgroups: {}, labels: [1] } }), /labels/],
    ["rootfs not a string", JSON.stringify({ config: { cgroups: {}, rootfs: 1 } }), /rootfs/],
    ["cgroup_paths not strings", minimal({ cgroup_paths: { freezer: 1 } }), /cgroup_paths/],
  ])("%s is a SystemError naming the file", (_what, text, problem) => {
    let err: unknown;
    try {
      parse(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as RuntimeError).kind).toBe("SystemError");
    expect((err as RuntimeError).message).toContain(FILE);
    expect((err as RuntimeError).message).toMatch(problem);
  });
});

describe("labels -> bundle and annotations (runc 1.1.5 utils.Annotations)", () => {
  it("splits at the first =, skips labels without =, last bundle wins", () => {
    expect(splitLabels(["a=b=c", "noeq", "=v", "k=", "bundle=/x", "a=later", "bundle=/y"])).toEqual({
      bundle: "/y",
      annotations: { a: "later", "": "v", k: "" },
    });
  });
});

describe("jsonDepth (the scan that bounds nesting before a parse)", () => {
  it("counts nesting outside strings and stops past the limit", async () => {
    const { jsonDepth } = await import("../../src/runtime/state-bounds.js");
    const enc = (s: string) => Buffer.from(s);
    expect(jsonDepth(enc("{}"), 64)).toBe(1);
    expect(jsonDepth(enc('{"a":[1,{"b":[]}]}'), 64)).toBe(4);
    expect(jsonDepth(enc('{"a":"[[[[\\"[[["}'), 64)).toBe(1);
    expect(jsonDepth(enc("[".repeat(1000)), 64)).toBe(65);
    expect(jsonDepth(enc("1"), 64)).toBe(0);
  });
});
