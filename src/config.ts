import ms from "ms";
import type { LevelWithSilent } from "pino";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from "./log.js";

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
  logLevel: string;
  logFormat: string;
}

/**
 * Validates raw options into a frozen {@link ServeConfig}.
 * @throws {ConfigError} for a bad level, format or duration
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
  return Object.freeze({
    root: raw.root,
    address: raw.address,
    socketGroup: raw.socketGroup,
    startTimeoutMs: parseDuration("--start-timeout", raw.startTimeout),
    shutdownTimeoutMs: parseDuration("--shutdown-timeout", raw.shutdownTimeout),
    createTimeoutMs: parseDuration("--create-timeout", raw.createTimeout),
    runc: raw.runc,
    limits: Object.freeze({
      ...(raw.maxConnections === undefined ? {} : { maxConnections: parseCount("--max-connections", raw.maxConnections) }),
      ...(raw.prefaceTimeout === undefined ? {} : { prefaceTimeoutMs: parseDuration("--preface-timeout", raw.prefaceTimeout) }),
      ...(raw.maxStreamsPerConnection === undefined ? {} : { maxStreamsPerConnection: parseCount("--max-streams-per-connection", raw.maxStreamsPerConnection) }),
      ...(raw.maxWatches === undefined ? {} : { maxWatches: parseCount("--max-watches", raw.maxWatches) }),
      ...(raw.maxWatchesPerConnection === undefined ? {} : { maxWatchesPerConnection: parseCount("--max-watches-per-connection", raw.maxWatchesPerConnection) }),
    }),
    logLevel: raw.logLevel as LevelWithSilent,
    logFormat: raw.logFormat as LogFormat,
  });
}
