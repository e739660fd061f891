import { RuntimeError } from "./errors.js";

/** Largest state.json read, in bytes (16 MiB). runc writes a few KiB; more is corruption or an attack. */
export const MAX_STATE_FILE_BYTES = 16 * 1024 * 1024;

/** A point in time with nanosecond precision, as RFC 3339 keeps it (`seconds` since the Unix epoch, UTC). */
export interface Instant {
  /** Whole seconds since 1970-01-01T00:00:00Z (may be negative: `0001-01-01` is -62135596800). */
  seconds: number;
  /** Nanoseconds, 0..999,999,999. */
  nanos: number;
  /** The text as state.json had it (offset preserved), e.g. `2026-11-29T15:23:59.278308126Z`. */
  text: string;
}

/** Go's zero `time.Time`, which runc prints for a missing `created`. */
export const ZERO_TIME: Instant = { seconds: -62135596800, nanos: 0, text: "0001-01-01T00:00:00Z" };

/**
 * The fields of runc's state.json that runc-shim uses, validated
 * (runc 1.1.5 `libcontainer/container_linux.go` State + `configs.Config`).
 */
export interface ContainerStateRecord {
  /** `init_process_pid`: the init process id (0 when absent; may be <= 0, which reads as dead). */
  initProcessPid: number;
  /** `init_process_start`: start time of the init process, field 22 of /proc/PID/stat, in clock ticks since boot. */
  initProcessStart: number;
  /** `created`, parsed. {@link ZERO_TIME} when absent. */
  created: Instant;
  /** `config.labels`: `key=value` strings; runc writes the spec annotations then `bundle=<dir>`. */
  labels: readonly string[];
  /** `config.rootfs`: absolute path of the root filesystem ("" when absent). */
  rootfs: string;
  /** `config.version`: the runtime-spec version runc was built with ("" when absent). */
  ociVersion: string;
  /** `cgroup_paths`, the entries status derivation reads: `freezer` (cgroup v1) and `""` (the unified path, v2). */
  cgroupPaths: Readonly<Record<string, string>>;
  /**
   * `config.namespaces` has `NEWPID` with no path: the init is the pid
   * namespace's reaper, so its death kills every other process of the
   * container (then its cgroup empties, which Watch is notified of).
   * False when absent or not an array (never an error here).
   */
  ownPidNamespace: boolean;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 time as Go's `time.Time.UnmarshalJSON` accepts it, keeping nanoseconds.
 * @returns the instant, or `undefined` when `text` is not a valid RFC 3339 time
 */
export function parseRfc3339(text: string): Instant | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s, frac = "", zone = "Z"] = m;
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), min = Number(mi), sec = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || min > 59 || sec > 59) return undefined;
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() + (month === 2 && !isLeap(year) ? -1 : 0);
  if (day > daysInMonth) return undefined;
  let offsetSeconds = 0;
  if (zone !== "Z" && zone !== "z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const oh = Number(zone.slice(1, 3)), om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetSeconds = sign * (oh * 3600 + om * 60);
  }
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, min, sec, 0);
  return {
    seconds: Math.floor(date.getTime() / 1000) - offsetSeconds,
    nanos: frac === "" ? 0 : Number(frac.slice(0, 9).padEnd(9, "0")), // Go accepts more digits and truncates
    text,
  };
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/**
 * Parses the first JSON value of `text`, ignoring what follows it, as Go's
 * `json.Decoder.Decode` does (runc 1.1.5 `loadState`).
 * @throws SyntaxError when there is no complete first value
 */
function parseFirstJsonValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8: "Unexpected non-whitespace character after JSON at position N"
    const m = e instanceof SyntaxError ? /after JSON at position (\d+)/.exec(e.message) : null;
    if (m === null) throw e;
    return JSON.parse(text.slice(0, Number(m[1])));
  }
}

/** Go integer types of state.json fields: `int` (int64 on Linux amd64/arm64) and `uint64`. */
type GoIntType = "int" | "uint64";

const INT_RANGE: Record<GoIntType, string> = {
  int: "an integer from -9223372036854775808 to 9223372036854775807 (Go int)",
  uint64: "an integer from 0 to 18446744073709551615 (Go uint64)",
};
const INT_LITERAL = /^-?(?:0|[1-9][0-9]*)$/;
const UINT_LITERAL = /^(?:0|[1-9][0-9]*)$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/**
 * Whether a JSON number literal decodes into a Go integer type, as
 * `encoding/json` decides it (`strconv.ParseInt(s, 10, 64)` /
 * `ParseUint`): an integer literal — no fraction, no exponent (`5374.0` and
 * `1e3` are rejected), no `-` for uint64 — within the type's range.
 */
export function isGoInteger(literal: string, type: GoIntType): boolean {
  if (!(type === "int" ? INT_LITERAL : UINT_LITERAL).test(literal)) return false;
  if (literal.length < 18) return true; // |n| < 10^17: in range of both
  const n = BigInt(literal);
  return type === "int" ? n >= INT64_MIN && n <= INT64_MAX : n <= UINT64_MAX;
}

/** The integer fields of state.json whose literals are checked. */
const INTEGER_FIELDS: ReadonlySet<string> = new Set(["init_process_pid", "init_process_start"]);
const NUMBER_AT = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/**
 * The fast path of {@link topLevelNumberLiterals} for a `key` the top-level
 * object has (JSON.parse found it): when the text has no `\u` escape, that
 * member is written `"key"` literally; when `"key"` occurs exactly once in the
 * text, that occurrence is it. Two native `indexOf` scans, no JavaScript loop.
 *
 * @returns the literal after it, or `undefined` when the fast path cannot decide
 */
function numberLiteralsOf(text: string, key: string): string[] | undefined {
  if (text.includes("\\u")) return undefined;
  const needle = `"${key}"`;
  const at = text.indexOf(needle);
  if (at === -1 || text.indexOf(needle, at + needle.length) !== -1) return undefined;
  let i = at + needle.length;
  for (let c = text.charCodeAt(i); c === 32 || c === 10 || c === 13 || c === 9 || c === 58; c = text.charCodeAt(++i)); // ws ':' ws
  NUMBER_AT.lastIndex = i;
  const m = NUMBER_AT.exec(text);
  return m === null ? undefined : [m[0]];
}

/**
 * The number literals, as written, of the members of the top-level object of
 * `text` whose (unescaped) name is in `keys`, every occurrence in order
 * (duplicates included: Go decodes each one and reports the first error).
 * A light scanner: it finds the end of strings with `indexOf` and skips
 * nested values by depth; it expects `text` to start with a JSON object that
 * `JSON.parse` accepted.
 *
 * @returns name → literals; names without a number value are absent
 */
export function topLevelNumberLiterals(text: string, keys: ReadonlySet<string>): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const n = text.length;
  let i = text.indexOf("{") + 1;
  if (i === 0) return found;
  /** Index just past the closing quote of the string opening at `at`. */
  const stringEnd = (at: number): number => {
    let j = at + 1;
    for (;;) {
      const q = text.indexOf('"', j);
      if (q === -1) return n;
      let bs = 0;
      for (let k = q - 1; text.charCodeAt(k) === 92; k--) bs++; // backslashes before the quote
      if (bs % 2 === 0) return q + 1;
      j = q + 1;
    }
  };
  const skipWs = (): void => {
    for (let c = text.charCodeAt(i); c === 32 || c === 10 || c === 13 || c === 9; c = text.charCodeAt(++i));
  };
  while (i < n) {
    skipWs();
    if (text.charCodeAt(i) !== 34) break; // '}' (or not an object member): done
    const keyEnd = stringEnd(i);
    const rawKey = text.slice(i + 1, keyEnd - 1);
    const key = rawKey.includes("\\") ? (JSON.parse(text.slice(i, keyEnd)) as string) : rawKey;
    i = keyEnd;
    skipWs();
    i++; // ':'
    skipWs();
    if (keys.has(key)) {
      NUMBER_AT.lastIndex = i;
      const m = NUMBER_AT.exec(text);
      if (m !== null) {
        const list = found.get(key);
        if (list === undefined) found.set(key, [m[0]]);
        else list.push(m[0]);
        i += m[0].length;
      }
    }
    // Skip the rest of the value, up to the ',' or '}' that ends it at depth 0.
    let depth = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 34) i = stringEnd(i) - 1;
      else if (c === 123 || c === 91) depth++;
      else if (c === 125 || c === 93) {
        if (depth === 0) return found; // the top-level object's '}'
        depth--;
      } else if (c === 44 && depth === 0) break;
    }
    i++; // past ','
  }
  return found;
}

/**
 * Validates the bytes of a state.json into a {@link ContainerStateRecord}.
 *
 * Rules (runc 1.1.5 `loadState` + Go's JSON decoding, and the project's own
 * decisions): the first JSON value must be an object (`null` is rejected where
 * runc panics); `init_process_pid` an integer literal within Go's int
 * (int64), `init_process_start` one within uint64 — no fraction or exponent,
 * as Go's `encoding/json` requires (`5374.0`, `1e3`, `1e400` are rejected,
 * with the literal as written in the message); `created` an RFC 3339 string; `config` an object with a
 * `cgroups` object (runc: `cgroups/manager.New: config must not be nil`);
 * `config.labels` an array of strings; `config.rootfs` and `config.version`
 * strings; `cgroup_paths` an object of strings. Absent fields take Go's zero
 * values; unknown fields are ignored.
 *
 * @param file path of the state.json, used in messages
 * @param bytes its content (at most {@link MAX_STATE_FILE_BYTES})
 * @throws {RuntimeError} `SystemError` (gRPC INTERNAL): `<file>: <problem>`
 */
export function parseStateFile(file: string, bytes: Uint8Array): ContainerStateRecord {
  const fail = (problem: string): never => {
    throw new RuntimeError("SystemError", `${file}: ${problem}`);
  };
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  if (text.trim() === "") fail("state file is empty (EOF)");
  let doc: unknown;
  try {
    doc = parseFirstJsonValue(text);
  } catch (e) {
    fail(`invalid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return fail(`state must be a JSON object, got ${typeName(doc)}`);
  }
  const state = doc as Record<string, unknown>;

  const integer = (key: string, type: GoIntType): number => {
    const v = state[key];
    if (v === undefined || v === null) return 0;
    if (typeof v !== "number") return fail(`field ${key} must be ${INT_RANGE[type]}, got ${typeName(v)} ${JSON.stringify(v).slice(0, 40)}`);
    // JSON.parse has rounded the number: judge the literal as written, as Go's decoder does.
    const written = numberLiteralsOf(text, key) ?? (literals ??= topLevelNumberLiterals(text, INTEGER_FIELDS)).get(key) ?? [];
    if (written.length === 0) return fail(`field ${key}: cannot find the number in the text`); // unreachable for valid JSON
    for (const raw of written) {
      if (!isGoInteger(raw, type)) {
        fail(`field ${key} must be ${INT_RANGE[type]}, got number ${raw.length > 40 ? `${raw.slice(0, 40)}...` : raw}`);
      }
    }
    return v; // beyond 2^53 rounded, but no live pid or start time is that large
  };
  let literals: Map<string, string[]> | undefined;
  const initProcessPid = integer("init_process_pid", "int");
  const initProcessStart = integer("init_process_start", "uint64");

  let created = ZERO_TIME;
  if (state.created !== undefined && state.created !== null) {
    if (typeof state.created !== "string") fail(`field created must be an RFC 3339 string, got ${typeName(state.created)}`);
    const parsed = parseRfc3339(state.created as string);
    if (parsed === undefined) fail(`field created is not an RFC 3339 time: ${JSON.stringify(state.created).slice(0, 80)}`);
    created = parsed as Instant;
  }

  const config = state.config;
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    return fail(`field config must be an object, got ${typeName(config)}`);
  }
  const cfg = config as Record<string, unknown>;
  if (typeof cfg.cgroups !== "object" || cfg.cgroups === null || Array.isArray(cfg.cgroups)) {
    fail(`field config.cgroups must be an object, got ${typeName(cfg.cgroups)} (cgroups/manager.New: config must not be nil)`);
  }
  const str = (key: string): string => {
    const v = cfg[key];
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") fail(`field config.${key} must be a string, got ${typeName(v)}`);
    return v as string;
  };
  let labels: string[] = [];
  if (cfg.labels !== undefined && cfg.labels !== null) {
    if (!Array.isArray(cfg.labels) || !cfg.labels.every((l) => typeof l === "string")) {
      fail("field config.labels must be an array of strings");
    }
    labels = cfg.labels as string[];
  }
  let freezerPath: string | undefined;
  let unifiedPath: string | undefined;
  const cp = state.cgroup_paths;
  if (cp !== undefined && cp !== null) {
    if (typeof cp !== "object" || Array.isArray(cp)) fail(`field cgroup_paths must be an object, got ${typeName(cp)}`);
    for (const [k, v] of Object.entries(cp as Record<string, unknown>)) {
      if (typeof v !== "string") fail(`field cgroup_paths.${k.slice(0, 40)} must be a string, got ${typeName(v)}`);
      // Only the freezer's paths are ever read (v1 "freezer", v2 ""): keep the cached record small.
      if (k === "freezer") freezerPath = v as string;
      else if (k === "") unifiedPath = v as string;
    }
  }
  const cgroupPaths = freezerPaths(freezerPath, unifiedPath);
  const ns = cfg.namespaces;
  const ownPidNamespace =
    Array.isArray(ns) &&
    ns.some((n: unknown) => {
      const e = n as { type?: unknown; path?: unknown } | null;
      return e !== null && typeof e === "object" && e.type === "NEWPID" && (e.path === undefined || e.path === null || e.path === "");
    });
  return { initProcessPid, initProcessStart, created, labels, rootfs: str("rootfs"), ociVersion: shared(str("version")), cgroupPaths, ownPidNamespace };
}

const NO_CGROUP_PATHS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The cached record's `cgroupPaths`: an object literal of one of four fixed
 * shapes (V8 keeps it in fast mode, ~40 bytes) rather than a dictionary-mode
 * `Object.create(null)` (~230 bytes), with only the keys present in state.json.
 * Only `freezer` and `""` are ever read from it, neither of which
 * `Object.prototype` has.
 */
function freezerPaths(freezer: string | undefined, unified: string | undefined): Readonly<Record<string, string>> {
  if (freezer !== undefined) return unified !== undefined ? { "": unified, freezer } : { freezer };
  return unified !== undefined ? { "": unified } : NO_CGROUP_PATHS;
}

/** Distinct strings {@link shared} keeps (`config.version`: every container of one runc has the same). */
const SHARED_STRINGS_MAX = 64;
const sharedStrings = new Map<string, string>();

/** One copy of a string that many cached records repeat (the runtime-spec version), instead of one per record. */
function shared(s: string): string {
  const seen = sharedStrings.get(s);
  if (seen !== undefined) return seen;
  if (sharedStrings.size < SHARED_STRINGS_MAX) sharedStrings.set(s, s);
  return s;
}

/**
 * Splits runc's labels into the bundle and the annotations
 * (runc 1.1.5 `libcontainer/utils/utils.go` Annotations): each label is split at
 * its first `=`; labels with no `=` are skipped; `bundle` sets the bundle (last
 * wins); any other key becomes an annotation (later duplicates win).
 */
export function splitLabels(labels: readonly string[]): { bundle: string; annotations: Record<string, string> } {
  let bundle = "";
  const annotations: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const label of labels) {
    const eq = label.indexOf("=");
    if (eq === -1) continue;
    const key = label.slice(0, eq);
    const value = label.slice(eq + 1);
    if (key === "bundle") bundle = value;
    else annotations[key] = value;
  }
  return { bundle, annotations };
}

/** One OCI hook as runc stores it in state.json (`configs.Command`: `Hooks.poststop[i]`). */
export interface HookCommand {
  /** Absolute path of the program (runc does no PATH lookup). */
  path: string;
  /** argv, `args[0]` included (may be empty: then argv is `[path]`). */
  args: string[];
  /** The whole environment of the hook (`KEY=value`); nothing is inherited. */
  env: string[];
  /** The hook's timeout in ms, or `undefined` when it has none. */
  timeoutMs: number | undefined;
}

/**
 * What the lifecycle verbs need beyond what State caches: read fresh from
 * state.json by Kill (all), Delete and Create's clean-up, never cached.
 */
export interface LifecycleConfig {
  /** Every `cgroup_paths` entry: controller (`freezer`, `devices`, `name=systemd`, `""` = unified) → absolute dir. */
  cgroupPaths: Readonly<Record<string, string>>;
  /** `config.Hooks.poststop`, in order. */
  poststop: readonly HookCommand[];
  /**
   * Whether the container has a pid namespace of its own (`config.namespaces`
   * has `NEWPID` with an empty path). When it does not, destroy SIGKILLs every
   * process of its cgroup (runc 1.1.5 `libcontainer/state_linux.go` destroy).
   */
  ownPidNamespace: boolean;
}

/**
 * Reads the parts of a state.json that Delete and Kill need: every cgroup
 * path, the poststop hooks (`config.Hooks`, timeouts in ns as Go's
 * `time.Duration`), and the pid namespace. The file has already passed
 * {@link parseStateFile}; a part with a wrong shape is a SystemError.
 *
 * @throws {RuntimeError} `SystemError` (gRPC INTERNAL): `<file>: <problem>`
 */
export function parseLifecycleConfig(file: string, bytes: Uint8Array): LifecycleConfig {
  const fail = (problem: string): never => {
    throw new RuntimeError("SystemError", `${file}: ${problem}`);
  };
  let doc: Record<string, unknown>;
  try {
    doc = parseFirstJsonValue(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    return fail(`invalid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return fail(`state must be a JSON object, got ${typeName(doc)}`);
  const cgroupPaths: Record<string, string> = Object.create(null) as Record<string, string>;
  const cp = doc.cgroup_paths;
  if (cp !== undefined && cp !== null) {
    if (typeof cp !== "object" || Array.isArray(cp)) fail(`field cgroup_paths must be an object, got ${typeName(cp)}`);
    for (const [k, v] of Object.entries(cp as Record<string, unknown>)) {
      if (typeof v !== "string") fail(`field cgroup_paths.${k.slice(0, 40)} must be a string, got ${typeName(v)}`);
      if (v !== "") cgroupPaths[k] = v as string;
    }
  }
  const cfg = (doc.config ?? {}) as Record<string, unknown>;
  const strings = (v: unknown, what: string): string[] => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) return fail(`field ${what} must be an array of strings`);
    return v as string[];
  };
  const poststop: HookCommand[] = [];
  const hooks = (cfg.Hooks ?? cfg.hooks) as Record<string, unknown> | null | undefined;
  if (hooks !== undefined && hooks !== null) {
    if (typeof hooks !== "object" || Array.isArray(hooks)) fail(`field config.Hooks must be an object, got ${typeName(hooks)}`);
    const list = hooks.poststop;
    if (list !== undefined && list !== null) {
      if (!Array.isArray(list)) fail(`field config.Hooks.poststop must be an array, got ${typeName(list)}`);
      (list as unknown[]).forEach((h, i) => {
        const what = `config.Hooks.poststop[${i}]`;
        if (typeof h !== "object" || h === null || Array.isArray(h)) fail(`field ${what} must be an object, got ${typeName(h)}`);
        const hook = h as Record<string, unknown>;
        if (typeof hook.path !== "string" || hook.path === "") fail(`field ${what}.path must be a non-empty string`);
        const t = hook.timeout;
        if (t !== undefined && t !== null && (typeof t !== "number" || !Number.isInteger(t) || t < 0)) {
          fail(`field ${what}.timeout must be a non-negative integer (ns), got ${typeName(t)}`);
        }
        poststop.push({
          path: hook.path as string,
          args: strings(hook.args, `${what}.args`),
          env: strings(hook.env, `${what}.env`),
          timeoutMs: typeof t === "number" && t > 0 ? Math.max(1, Math.round(t / 1e6)) : undefined,
        });
      });
    }
  }
  let ownPidNamespace = false;
  const ns = cfg.namespaces;
  if (ns !== undefined && ns !== null) {
    if (!Array.isArray(ns)) fail(`field config.namespaces must be an array, got ${typeName(ns)}`);
    ownPidNamespace = (ns as unknown[]).some((n) => {
      const e = n as { type?: unknown; path?: unknown } | null;
      return e !== null && typeof e === "object" && e.type === "NEWPID" && (e.path === undefined || e.path === null || e.path === "");
    });
  }
  return { cgroupPaths, poststop, ownPidNamespace };
}
