import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { EXIT, formatMetricsAddress, type MetricsAddress, type ServeConfig } from "./config.js";
import { checkStateRoot } from "./runtime/container.js";
import { describeError } from "./runtime/errors.js";
import { detectCgroupMode } from "./runtime/freezer.js";
import { probeRunc } from "./runtime/runc-cli.js";
import { DEFAULT_LIMITS } from "./server/server.js";
import { defaultMaxConnections } from "./server/connections.js";
import { canConnect, lookupGroup, socketPathOf } from "./server/socket.js";

/** One line of `serve --check-config`: what was checked, whether it passes, and what `serve` would do. */
export interface ConfigCheck {
  /** `flags`, `root`, `socket`, `runc`, `metrics`, `cgroups`, `limits`. */
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The nearest existing ancestor of `p` (itself when it exists), as an lstat-followed stat. */
function nearestExisting(p: string): { dir: string; st: fs.Stats } | undefined {
  for (let dir = p; ; dir = path.dirname(dir)) {
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    if (st !== undefined) return { dir, st };
    if (dir === path.dirname(dir)) return undefined;
  }
}

/** Whether a missing directory `dir` could be created (`mkdir -p`): its nearest existing ancestor is a directory we may write to. */
function creatable(dir: string): string | undefined {
  const near = nearestExisting(dir);
  if (near === undefined) return `no ancestor of ${dir} exists`;
  if (!near.st.isDirectory()) return `${near.dir} is not a directory`;
  try {
    fs.accessSync(near.dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    return `${near.dir} is not writable: ${describeError(e)}`;
  }
  return undefined;
}

function checkRoot(root: string): ConfigCheck {
  const abs = path.resolve(root);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (st === undefined) {
    const why = creatable(abs);
    return why === undefined
      ? { name: "root", ok: true, detail: `${abs} does not exist; serve would create it (mode 0700)` }
      : { name: "root", ok: false, detail: `${abs} does not exist and cannot be created: ${why}` };
  }
  try {
    checkStateRoot(abs);
  } catch (e) {
    return { name: "root", ok: false, detail: (e as Error).message };
  }
  const dirs = fs.readdirSync(abs, { withFileTypes: true }).filter((d) => d.isDirectory()).length;
  return { name: "root", ok: true, detail: `${abs} is a readable directory (${dirs} container dir${dirs === 1 ? "" : "s"}); serve would serve it` };
}

/** The checks of `prepareSocketPath`, without creating, removing or binding anything. */
async function checkSocketPath(name: string, socketPath: string, what: string): Promise<ConfigCheck> {
  const dir = path.dirname(socketPath);
  const dst = fs.statSync(dir, { throwIfNoEntry: false });
  let dirNote: string;
  if (dst === undefined) {
    const why = creatable(dir);
    if (why !== undefined) return { name, ok: false, detail: `${socketPath}: its directory ${dir} does not exist and cannot be created: ${why}` };
    dirNote = `would create ${dir} (mode 0700)`;
  } else if (!dst.isDirectory()) {
    return { name, ok: false, detail: `${socketPath}: ${dir} is not a directory` };
  } else {
    try {
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    } catch (e) {
      return { name, ok: false, detail: `${socketPath}: cannot create a socket in ${dir}: ${describeError(e)}` };
    }
    dirNote = `${dir} exists`;
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(socketPath, { throwIfNoEntry: false });
  } catch (e) {
    return { name, ok: false, detail: `cannot use socket path ${socketPath}: ${describeError(e)}` };
  }
  if (st === undefined) return { name, ok: true, detail: `${socketPath}: ${dirNote}; would listen there (${what})` };
  if (!st.isSocket()) return { name, ok: false, detail: `${socketPath} exists and is not a socket; serve would refuse to remove it` };
  if (await canConnect(socketPath)) return { name, ok: false, detail: `address in use by a running server: ${socketPath}` };
  return { name, ok: true, detail: `${socketPath}: a stale socket (no listener) that serve would remove; would listen there (${what})` };
}

/** Whether something accepts TCP connections on host:port (a connect, never a bind). */
function tcpInUse(host: string, port: number, timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port });
    const done = (v: boolean): void => {
      clearTimeout(timer);
      c.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    c.once("connect", () => done(true));
    c.once("error", () => done(false));
  });
}

async function checkMetrics(address: MetricsAddress | undefined): Promise<ConfigCheck> {
  if (address === undefined) return { name: "metrics", ok: true, detail: "off (no --metrics-address)" };
  if (address.kind === "unix") {
    const c = await checkSocketPath("metrics", address.path, "GET /metrics over HTTP, mode 0600");
    return c;
  }
  const shown = formatMetricsAddress(address);
  if (address.port !== 0 && (await tcpInUse(address.host, address.port))) {
    return { name: "metrics", ok: false, detail: `${shown} is in use: something accepts connections there` };
  }
  return { name: "metrics", ok: true, detail: `would serve http://${shown}/metrics${address.port === 0 ? " (a free port, logged at start-up)" : ""}` };
}

/**
 * `runc-shim serve --check-config`: checks what `serve` would need with this
 * configuration (the flags have already been validated into `config`) without
 * creating, removing or binding anything:
 *
 * - the state root exists and is a readable directory, or could be created;
 * - the socket path: its directory exists or could be created, and the path is
 *   free or a stale socket (`prepareSocketPath`'s rules, by lstat and a connect);
 *   `--socket-group` names a group;
 * - the runc binary `--runc` is found and answers `runc --version`;
 * - the metrics address: a usable socket path, or a loopback port nobody accepts on;
 * - and reports the cgroup mode and the effective limits.
 *
 * @returns one {@link ConfigCheck} per item, in that order
 */
export async function checkConfig(config: ServeConfig): Promise<ConfigCheck[]> {
  const checks: ConfigCheck[] = [];
  checks.push({
    name: "flags",
    ok: true,
    detail: `valid: --start-timeout ${config.startTimeoutMs} ms, --create-timeout ${config.createTimeoutMs} ms, --shutdown-timeout ${config.shutdownTimeoutMs} ms, --log-level ${config.logLevel}, --log-format ${config.logFormat}`,
  });
  checks.push(checkRoot(config.root));
  let socketPath: string | undefined;
  try {
    socketPath = socketPathOf(config.address);
  } catch (e) {
    checks.push({ name: "socket", ok: false, detail: (e as Error).message });
  }
  if (socketPath !== undefined) {
    const mode = config.socketGroup === undefined ? "mode 0600" : `mode 0660, group ${config.socketGroup}`;
    const c = await checkSocketPath("socket", socketPath, `gRPC, ${mode}`);
    if (c.ok && config.socketGroup !== undefined) {
      try {
        if (!/^\d+$/.test(config.socketGroup)) lookupGroup(config.socketGroup);
        checks.push(c);
      } catch (e) {
        checks.push({ name: "socket", ok: false, detail: (e as Error).message });
      }
    } else checks.push(c);
  }
  const runc = await probeRunc(config.runc);
  checks.push(
    "error" in runc
      ? { name: "runc", ok: false, detail: `${runc.error}: Create would answer FAILED_PRECONDITION (RUNC_NOT_FOUND); every other call would work` }
      : { name: "runc", ok: true, detail: `Create would run ${runc.path} (${runc.version})` },
  );
  checks.push(await checkMetrics(config.metricsAddress));
  checks.push({ name: "cgroups", ok: true, detail: `cgroup mode ${detectCgroupMode()}` });
  const l = { maxConnections: defaultMaxConnections(), ...DEFAULT_LIMITS, ...config.limits };
  checks.push({
    name: "limits",
    ok: true,
    detail: `--max-connections ${l.maxConnections}, --preface-timeout ${l.prefaceTimeoutMs} ms, --max-streams-per-connection ${l.maxStreamsPerConnection}, --max-watches ${l.maxWatches}, --max-watches-per-connection ${l.maxWatchesPerConnection}`,
  });
  return checks;
}

/**
 * Prints the checks (one `ok`/`FAIL` line each and a verdict, or with `json`
 * one JSON object `{ ok, checks }`) on stdout.
 *
 * @returns the exit code: 0 when every check passes, 2 otherwise
 */
export function printChecks(checks: readonly ConfigCheck[], json: boolean): number {
  const ok = checks.every((c) => c.ok);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok, checks })}\n`);
  } else {
    const width = Math.max(...checks.map((c) => c.name.length));
    for (const c of checks) process.stdout.write(`${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(width)}  ${c.detail}\n`);
    const failed = checks.filter((c) => !c.ok).length;
    process.stdout.write(ok ? "configuration OK: runc-shim serve would start\n" : `configuration NOT OK: ${failed} problem${failed === 1 ? "" : "s"}; runc-shim serve would not start as intended\n`);
  }
  return ok ? EXIT.OK : EXIT.USAGE;
}
