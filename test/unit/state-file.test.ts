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

  it("keeps of cgroup_paths exactly the freezer's entries present (v1 freezer, v2 \"\"), nothing else", () => {
    const both = parse(minimal({ cgroup_paths: { "": "/sys/fs/cgroup/unified/c1", freezer: "/sys/fs/cgroup/freezer/c1", devices: "/d" } }));
    expect({ ...both.cgroupPaths }).toEqual({ "": "/sys/fs/cgroup/unified/c1", freezer: "/sys/fs/cgroup/freezer/c1" });
    expect({ ...parse(minimal({ cgroup_paths: { "": "/u" } })).cgroupPaths }).toEqual({ "": "/u" });
    expect({ ...parse(minimal({ cgroup_paths: { freezer: "/f", memory: "/m" } })).cgroupPaths }).toEqual({ freezer: "/f" });
    const none = parse(minimal({ cgroup_paths: { memory: "/m" } })).cgroupPaths;
    expect(Object.keys(none)).toEqual([]);
    expect(none[""]).toBeUndefined();
    expect(none.freezer).toBeUndefined();
  });

  it("keeps nanoseconds and offsets of created", () => {
    expect(parseRfc3339("2026-11-29T15:23:59.278308126Z")).toMatchObject({ seconds: 1795965839, nanos: 278308126 });
    expect(parseRfc3339("2020-01-01T00:00:00+02:00")).toMatchObject({ seconds: 1577829600, nanos: 0 });
    expect(parseRfc3339("0001-01-01T00:00:00Z")?.seconds).toBe(ZERO_TIME.seconds);
    expect(parseRfc3339("yesterday")).toBeUndefined();
    expect(parseRfc3339("2021-02-29T00:00:00Z")).toBeUndefined();
    expect(parseRfc3339("2026-11-29T15:23:59.1234567891Z")?.nanos).toBe(123456789); // Go truncates past 9 digits
  });

  it("accepts integers beyond 2^53 up to the ends of Go's int and uint64 (no live pid has them)", () => {
    const r = parse(`{"config":{"cgroups":{}},"init_process_pid":9223372036854775807,"init_process_start":18446744073709551615}`);
    expect(r.initProcessPid).toBe(2 ** 63); // rounded by JavaScript, accepted as Go accepts it
    expect(r.initProcessStart).toBe(2 ** 64);
    expect(parse(`{"config":{"cgroups":{}},"init_process_pid":-9223372036854775808}`).initProcessPid).toBe(-(2 ** 63));
    expect(parse(`{"config":{"cgroups":{}},"init_process_pid":-0,"init_process_start":0}`)).toMatchObject({ initProcessPid: -0, initProcessStart: 0 });
  });

  const PID_RANGE = "an integer from -9223372036854775808 to 9223372036854775807 (Go int)";
  const START_RANGE = "an integer from 0 to 18446744073709551615 (Go uint64)";
  const withPid = (literal: string): string => `{"config":{"cgroups":{}},"init_process_pid":${literal}}`;
  const withStart = (literal: string): string => `{"config":{"cgroups":{}},"init_process_start":${literal}}`;

  // Go 1.20 encoding/json into runc 1.1.5's State: each of these is
  // "json: cannot unmarshal number <literal> into Go struct field State.init_process_pid of type int"
  // (or ...init_process_start of type uint64).
  it.each([
    ["1e400 (out of float range; JSON.parse makes it Infinity)", withPid("1e400"), `field init_process_pid must be ${PID_RANGE}, got number 1e400`],
    ["5374.0 (a fraction, even zero)", withPid("5374.0"), `field init_process_pid must be ${PID_RANGE}, got number 5374.0`],
    ["5374e0 (an exponent)", withPid("5374e0"), `field init_process_pid must be ${PID_RANGE}, got number 5374e0`],
    ["1E3", withPid("1E3"), `field init_process_pid must be ${PID_RANGE}, got number 1E3`],
    ["-0.0", withPid("-0.0"), `field init_process_pid must be ${PID_RANGE}, got number -0.0`],
    ["2^63 (past int64)", withPid("9223372036854775808"), `field init_process_pid must be ${PID_RANGE}, got number 9223372036854775808`],
    ["-2^63-1", withPid("-9223372036854775809"), `field init_process_pid must be ${PID_RANGE}, got number -9223372036854775809`],
    ["start 2^64 (past uint64)", withStart("18446744073709551616"), `field init_process_start must be ${START_RANGE}, got number 18446744073709551616`],
    ["start -1", withStart("-1"), `field init_process_start must be ${START_RANGE}, got number -1`],
    ["start -0 (ParseUint refuses the sign)", withStart("-0"), `field init_process_start must be ${START_RANGE}, got number -0`],
    ["start 12.5", withStart("12.5"), `field init_process_start must be ${START_RANGE}, got number 12.5`],
    ["a long literal is cut at 40 characters", withPid(`1${"0".repeat(60)}.5`), `field init_process_pid must be ${PID_RANGE}, got number 1${"0".repeat(39)}...`],
    ["pid as string", withPid('"12"'), `field init_process_pid must be ${PID_RANGE}, got string "12"`],
    ["pid as bool", withPid("true"), `field init_process_pid must be ${PID_RANGE}, got boolean true`],
    ["a bad duplicate before a good one (Go reports the first error)", `{"config":{"cgroups":{}},"init_process_pid":1.0,"init_process_pid":1}`, `field init_process_pid must be ${PID_RANGE}, got number 1.0`],
    ["a \\u escape elsewhere (Go writes & as \\u0026): the full scan", `{"config":{"cgroups":{},"labels":["a=\\u0026"]},"init_process_pid":5374.0}`, `field init_process_pid must be ${PID_RANGE}, got number 5374.0`],
    ["an escaped key is the same key", `{"config":{"cgroups":{}},"init\u005fprocess_pid":7.0}`, `field init_process_pid must be ${PID_RANGE}, got number 7.0`],
  ])("integer fields take only integer literals in range, as Go: %s", (_what, text, message) => {
    expect(() => parse(text)).toThrow(new RuntimeError("SystemError", `${FILE}: ${message}`));
    let err: unknown;
    try {
      parse(text);
    } catch (e) {
      err = e;
    }
    expect((err as RuntimeError).message).toBe(`${FILE}: ${message}`);
  });

  it("judges the top-level member only: same-named keys in nested objects and strings do not count", () => {
    const text =
      `{"config":{"cgroups":{},"init_process_pid":1.5,"labels":["init_process_pid=2.5","x\\\"init_process_pid\\\":3.5"]},` +
      `"cgroup_paths":{"init_process_pid":"4.5"},"nested":[{"init_process_pid":5.5}],"init_process_pid":42,"init_process_start":7}`;
    expect(parse(text)).toMatchObject({ initProcessPid: 42, initProcessStart: 7 });
    expect(() => parse(text.replace('"init_process_pid":42', '"init_process_pid":42.0'))).toThrow(
      `${FILE}: field init_process_pid must be ${PID_RANGE}, got number 42.0`,
    );
  });

  it("the fixture's integers are read from their literals", () => {
    const raw = JSON.parse(fixtureText) as Record<string, number>;
    const r = parse(`${fixtureText}\n{"init_process_pid":1.5}`); // a second value after the first is ignored, as runc does
    expect([r.initProcessPid, r.initProcessStart]).toEqual([raw.init_process_pid, raw.init_process_start]);
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
