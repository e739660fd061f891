/**
 * Summarises a V8 `.cpuprofile` (as written by `node --cpu-prof`): self and
 * inclusive time per function, and self time per category (grpc-js, node's
 * http2, our runtime, pino, syscalls, ...).
 */

/** A `.cpuprofile` file, the parts read here. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }>;
  /** Start and end of the profile, in µs. */
  startTime: number;
  endTime: number;
  /** The node id of each sample. */
  samples: number[];
  /** µs between each sample and the one before it. */
  timeDeltas: number[];
}

/** One function's share of the profile. */
export interface FunctionTime {
  /** `name (file:line)`. */
  fn: string;
  category: string;
  /** Time with this function on top of the stack, in ms. */
  selfMs: number;
  /** Time with this function anywhere on the stack (counted once per sample), in ms. */
  totalMs: number;
}

/** A function's callers and their share of its self time. */
export interface Callers {
  fn: string;
  /** Self time of `fn`, in ms. */
  selfMs: number;
  /** The nearest callers outside node's own modules (our code, grpc-js, pino, ...) with the self time spent under each, in ms, largest first. */
  callers: Array<{ fn: string; ms: number }>;
}

/** What {@link summarizeProfile} returns. */
export interface ProfileSummary {
  /** Sampled time, in ms. */
  sampledMs: number;
  /** Sampled time not idle, in ms (the denominator of the percentages). */
  busyMs: number;
  /** Self time per category, in ms, largest first; idle excluded. */
  categories: Array<{ category: string; selfMs: number; pctOfBusy: number }>;
  /** Every function on a sampled stack, by self time, largest first. */
  functions: FunctionTime[];
  /** For the functions with the most self time (idle excluded): who called them. */
  callers: Callers[];
}

/** A time window of the profile, in µs of CLOCK_MONOTONIC (the clock of `process.hrtime`, and of V8's profile timestamps on Linux). */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/**
 * The category of a frame from its script URL. Native frames (no URL) take the
 * category of their nearest JavaScript caller, marked as native: under node's
 * fs module that is a system call (open, read, fstat, lstat, statfs, ...).
 */
function categoryOf(url: string, name: string): string | undefined {
  if (url === "") {
    if (name === "(idle)") return "idle";
    if (name === "(garbage collector)") return "V8 garbage collector";
    if (name === "(program)") return "V8/native, no JS frame (program)";
    if (name === "(root)") return "root";
    return undefined;
  }
  if (url.includes("@grpc/grpc-js")) return "grpc-js";
  if (url.includes("@grpc/proto-loader") || url.includes("protobufjs") || url.includes("@bufbuild/protobuf")) return "protobuf runtime";
  if (url.includes("/pino") || url.includes("sonic-boom") || url.includes("thread-stream")) return "pino";
  if (url.includes("/src/runtime/")) return "our code: src/runtime";
  if (url.includes("/src/server/")) return "our code: src/server";
  if (url.includes("/src/")) return "our code: src (other)";
  if (url.includes("/gen/ts/")) return "generated protobuf code (gen/ts)";
  if (url.startsWith("node:internal/http2") || url === "node:http2") return "node http2 (JS)";
  if (url === "node:net" || url.startsWith("node:internal/stream_base_commons") || url.includes("streams") || url === "node:stream") {
    return "node net/streams (JS)";
  }
  if (url === "node:fs" || url.startsWith("node:internal/fs")) return "node fs (JS)";
  if (url.startsWith("node:")) return "node internals (events, timers, buffers, ...)";
  return "other";
}

/** The native category under a JavaScript category. */
function nativeUnder(jsCategory: string): string {
  if (jsCategory === "node fs (JS)") return "syscalls (fs bindings: open/read/fstat/lstat/statfs/readlink/close)";
  if (jsCategory === "node http2 (JS)" || jsCategory === "grpc-js") return "native http2/socket (nghttp2, writev, ...)";
  if (jsCategory === "node net/streams (JS)") return "native http2/socket (nghttp2, writev, ...)";
  return `native, called from ${jsCategory}`;
}

/**
 * Self time per function and per category, and inclusive time per function.
 *
 * @param p a parsed `.cpuprofile`
 * @param window only the samples taken inside it (e.g. the measured load, without start-up and shutdown)
 * @param callersOf for how many of the top self-time functions to list the callers
 */
export function summarizeProfile(p: CpuProfile, window?: ProfileWindow, callersOf = 12): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (id: number): string => {
    const f = byId.get(id)!.callFrame;
    const file = f.url === "" ? "native" : `${f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, "$1/")}:${f.lineNumber + 1}`;
    return `${f.functionName || "(anonymous)"} (${file})`;
  };
  const catCache = new Map<number, string>();
  const catOfNode = (id: number): string => {
    const hit = catCache.get(id);
    if (hit !== undefined) return hit;
    const f = byId.get(id)!.callFrame;
    let c = categoryOf(f.url, f.functionName);
    if (c === undefined) {
      let up = parent.get(id);
      while (up !== undefined && byId.get(up)!.callFrame.url === "") up = parent.get(up);
      c = up === undefined ? "native (no JS caller)" : nativeUnder(catOfNode(up));
    }
    catCache.set(id, c);
    return c;
  };

  // Sample i lasts until sample i + 1 (as DevTools counts it); the last one gets the mean.
  const n = p.samples.length;
  const dur = new Array<number>(n);
  for (let i = 0; i < n; i++) dur[i] = i + 1 < n ? p.timeDeltas[i + 1]! : (p.endTime - p.startTime) / Math.max(1, n);
  const self = new Map<string, { ms: number; category: string }>();
  const total = new Map<string, number>();
  const catOfKey = new Map<string, string>();
  const callerMs = new Map<string, Map<string, number>>();
  const cats = new Map<string, number>();
  let sampledMs = 0;
  let t = p.startTime;
  for (let i = 0; i < n; i++) {
    const id = p.samples[i]!;
    t += p.timeDeltas[i]!;
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) continue;
    const ms = Math.max(0, dur[i]!) / 1000;
    sampledMs += ms;
    const key = keyOf(id);
    const cat = catOfNode(id);
    const s = self.get(key) ?? { ms: 0, category: cat };
    s.ms += ms;
    self.set(key, s);
    cats.set(cat, (cats.get(cat) ?? 0) + ms);
    let caller = parent.get(id);
    const internal = (nid: number): boolean => {
      const u = byId.get(nid)!.callFrame.url;
      return u === "" || u.startsWith("node:");
    };
    while (caller !== undefined && internal(caller) && parent.get(caller) !== undefined) caller = parent.get(caller);
    if (caller !== undefined) {
      const m = callerMs.get(key) ?? new Map<string, number>();
      const ck = keyOf(caller);
      m.set(ck, (m.get(ck) ?? 0) + ms);
      callerMs.set(key, m);
    }
    const seen = new Set<string>();
    for (let up: number | undefined = id; up !== undefined; up = parent.get(up)) {
      const k = keyOf(up);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + ms);
      if (!catOfKey.has(k)) catOfKey.set(k, catOfNode(up));
    }
  }
  const idle = cats.get("idle") ?? 0;
  const busyMs = sampledMs - idle;
  const bySelf = [...self].filter(([, s]) => s.category !== "idle").sort((a, b) => b[1].ms - a[1].ms);
  return {
    callers: bySelf.slice(0, callersOf).map(([fn, s]) => ({
      fn,
      selfMs: s.ms,
      callers: [...(callerMs.get(fn) ?? new Map<string, number>())].map(([c, ms]) => ({ fn: c, ms })).sort((a, b) => b.ms - a.ms),
    })),
    sampledMs,
    busyMs,
    categories: [...cats]
      .filter(([c]) => c !== "idle")
      .map(([category, selfMs]) => ({ category, selfMs, pctOfBusy: (100 * selfMs) / busyMs }))
      .sort((a, b) => b.selfMs - a.selfMs),
    functions: [...total]
      .map(([fn, totalMs]) => ({ fn, category: self.get(fn)?.category ?? catOfKey.get(fn) ?? "other", selfMs: self.get(fn)?.ms ?? 0, totalMs }))
      .sort((a, b) => b.selfMs - a.selfMs),
  };
}

/**
 * Inclusive time of the functions whose key matches `pattern`, largest first.
 *
 * @param summary from {@link summarizeProfile}
 * @param pattern matched against `name (file:line)`
 */
export function inclusive(summary: ProfileSummary, pattern: RegExp): FunctionTime[] {
  return summary.functions.filter((f) => pattern.test(f.fn)).sort((a, b) => b.totalMs - a.totalMs);
}
