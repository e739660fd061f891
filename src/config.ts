import path from "node:path";
import ms from "ms";
import type { LevelWithSilent } from "pino";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from "./log.js";
import { socketPathOf } from "./server/socket.js";

/** Default state root, as runc's. */
export const DEFAULT_ROOT = "/run/runc";
/** Default socket path. */
export const DEFAULT_ADDRESS = "/run/runc-shim/shim.sock";
/** Default `--start-timeout`: bound of a Start with no client deadline. */
export const DEFAULT_START_TIMEOUT = "60s";
/** Default `--create-timeout`: bound of one `runc create`. */
export const DEFAULT_CREATE_TIMEOUT = "60s";
/** Default `--runc`: the runc binary Create runs, looked up on PATH. */
export const DEFAULT_RUNC = "runc";
/** Default `--shutdown-timeout`: how long in-flight calls may run after SIGTERM. */
export const DEFAULT_SHUTDOWN_TIMEOUT = "10s";

/** Process exit codes. */
export const EXIT = {
  /** Clean exit (also after a graceful or forced shutdown on a signal). */
  OK: 0,
  /** Runtime failure: a failed call (client commands), an unexpected error (server). */
  FAILURE: 1,
  /** Bad usage or configuration: unknown flag, bad value, unusable state root or socket address. */
  USAGE: 2,
} as const;

/** A configuration error: exit code 2 with a one-line message. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** The immutable configuration of `runc-shim serve`. */
export interface ServeConfig {
  /** State root, as given (made absolute when prepared). */
  readonly root: string;
  /** Socket address, as given (`/path`, `unix:/path`, `unix:///path`). */
  readonly address: string;
  /** Group given read/write access to the socket (mode 0660). */
  readonly socketGroup: string | undefined;
  /** Bound of a Start with no client deadline, in ms. */
  readonly startTimeoutMs: number;
  /** Bound of the graceful shutdown, in ms. */
  readonly shutdownTimeoutMs: number;
  /** Bound of one `runc create`, in ms. */
  readonly createTimeoutMs: number;
  /** The runc binary Create runs: a path, or a name looked up on PATH. */
  readonly runc: string;
  /** Limits on connections and streams (flags); absent ones take the server's defaults. */
  readonly limits: Readonly<Partial<ServerLimitsConfig>>;
  /** Where `GET /metrics` is served (`--metrics-address`); undefined: no metrics listener. */
  readonly metricsAddress: MetricsAddress | undefined;
  /** pino level. */
  readonly logLevel: LevelWithSilent;
  /** json or text. */
  readonly logFormat: LogFormat;
}

/**
 * Parses a duration: `500ms`, `10s`, `1m`, `1h` (the `ms` package); a bare
 * number is milliseconds.
 * @returns milliseconds, a positive integer
 * @throws {ConfigError} for anything else, naming the flag
 */
export function parseDuration(flag: string, text: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : (ms(text.trim() as ms.StringValue) as number | undefined);
  if (value === undefined || !Number.isFinite(value) || value <= 0 || value > 2_147_483_647) {
    throw new ConfigError(`${flag}: invalid duration ${JSON.stringify(text)} (examples: 500ms, 10s, 2m)`);
  }
  return Math.round(value);
}

/** The limits `serve` takes as flags (see `ServerLimits` in src/server/server.ts). */
export interface ServerLimitsConfig {
  maxConnections: number;
  prefaceTimeoutMs: number;
  maxStreamsPerConnection: number;
  maxWatches: number;
  maxWatchesPerConnection: number;
}

/**
 * Parses a count flag: a positive integer.
 * @throws {ConfigError} naming the flag
 */
export function parseCount(flag: string, text: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`${flag}: expected a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * Where the metrics listener listens: a Unix socket path (mode 0600, as the
 * gRPC socket), or a loopback TCP address.
 */
export type MetricsAddress =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly host: "127.0.0.1" | "::1"; readonly port: number };

/** The hosts `--metrics-address` accepts besides a Unix socket path: loopback only. */
export const METRICS_HOSTS = ["127.0.0.1", "::1"] as const;

/**
 * Parses `--metrics-address`: a Unix socket path (`/path`, `./path`,
 * `unix:/path`, `unix:///path`; the rules of `--address`) or
 * `127.0.0.1:PORT` / `[::1]:PORT` (PORT 0–65535; 0 picks a free port). Any
 * other host (`0.0.0.0`, `localhost`, a name, an empty host) is refused: the
 * metrics name containers, so they are never served beyond this machine.
 *
 * @throws {ConfigError} naming the flag and what is wrong
 */
export function parseMetricsAddress(text: string): MetricsAddress {
  const t = text.trim();
  if (t.startsWith("/") || t.startsWith(".") || t.startsWith("unix:") || t.startsWith("@")) {
    try {
      return { kind: "unix", path: socketPathOf(t) };
    } catch (e) {
      throw new ConfigError(`--metrics-address: ${(e as Error).message}`);
    }
  }
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(t);
  const host = m?.[1] ?? m?.[2];
  if (m === null || host === undefined) {
    throw new ConfigError(`--metrics-address: expected a Unix socket path, 127.0.0.1:PORT or [::1]:PORT, got ${JSON.stringify(text)}`);
  }
  if (!(METRICS_HOSTS as readonly string[]).includes(host)) {
    throw new ConfigError(
      `--metrics-address: host ${JSON.stringify(host)} refused: the metrics name containers, so they are served only on a Unix socket path, 127.0.0.1:PORT or [::1]:PORT`,
    );
  }
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`--metrics-address: port ${port} is out of range (0-65535)`);
  return { kind: "tcp", host: host as "127.0.0.1" | "::1", port };
}

/** How a metrics address is written in logs and by `--check-config`: the socket path, or `host:port` (`[::1]:port`). */
export function formatMetricsAddress(a: MetricsAddress): string {
  if (a.kind === "unix") return a.path;
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Raw `serve` options as the argument parser gives them. */
export interface RawServeOptions {
  root: string;
  address: string;
  socketGroup?: string;
  startTimeout: string;
  shutdownTimeout: string;
  createTimeout: string;
  runc: string;
  maxConnections?: string;
  prefaceTimeout?: string;
  maxStreamsPerConnection?: string;
  maxWatches?: string;
  maxWatchesPerConnection?: string;
  metricsAddress?: string;
  logLevel: string;
  logFormat: string;
}

/**
 * Validates raw options into a frozen {@link ServeConfig}. A `--runc` that
 * contains a `/` is made absolute against the working directory.
 * @throws {ConfigError} for a bad level, format, duration, count or metrics address
 */
export function serveConfig(raw: RawServeOptions): ServeConfig {
  if (!LOG_LEVELS.includes(raw.logLevel as LevelWithSilent)) {
    throw new ConfigError(`--log-level: expected one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(raw.logLevel)}`);
  }
  if (!(LOG_FORMATS as readonly string[]).includes(raw.logFormat)) {
    throw new ConfigError(`--log-format: expected one of ${LOG_FORMATS.join(", ")}, got ${JSON.stringify(raw.logFormat)}`);
  }
  if (raw.root === "") throw new ConfigError("--root: the state root cannot be empty");
  if (raw.runc === "") throw new ConfigError("--runc: the runc binary cannot be empty");
  // A path is made absolute here: runc is spawned with the bundle as its working directory.
  const runc = raw.runc.includes("/") ? path.resolve(raw.runc) : raw.runc;
  return Object.freeze({
    root: raw.root,
    address: raw.address,
    socketGroup: raw.socketGroup,
    startTimeoutMs: parseDuration("--start-timeout", raw.startTimeout),
    shutdownTimeoutMs: parseDuration("--shutdown-timeout", raw.shutdownTimeout),
    createTimeoutMs: parseDuration("--create-timeout", raw.createTimeout),
    runc,
    limits: Object.freeze({
      ...(raw.maxConnections === undefined ? {} : { maxConnections: parseCount("--max-connections", raw.maxConnections) }),
      ...(raw.prefaceTimeout === undefined ? {} : { prefaceTimeoutMs: parseDuration("--preface-timeout", raw.prefaceTimeout) }),
      ...(raw.maxStreamsPerConnection === undefined ? {} : { maxStreamsPerConnection: parseCount("--max-streams-per-connection", raw.maxStreamsPerConnection) }),
      ...(raw.maxWatches === undefined ? {} : { maxWatches: parseCount("--max-watches", raw.maxWatches) }),
      ...(raw.maxWatchesPerConnection === undefined ? {} : { maxWatchesPerConnection: parseCount("--max-watches-per-connection", raw.maxWatchesPerConnection) }),
    }),
    metricsAddress: raw.metricsAddress === undefined ? undefined : parseMetricsAddress(raw.metricsAddress),
    logLevel: raw.logLevel as LevelWithSilent,
    logFormat: raw.logFormat as LogFormat,
  });
}
