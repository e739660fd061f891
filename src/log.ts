import { createRequire } from "node:module";
import pino, { type Logger, type LevelWithSilent } from "pino";

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
/** Log formats accepted by `--log-format`: JSON lines, or pino-pretty text for people. */
export const LOG_FORMATS = ["json", "text"] as const;
/** A `--log-format` value. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The server's logger: pino writing synchronously to stderr (fd 2), JSON lines
 * by default, or text through the optional dependency pino-pretty.
 *
 * @throws Error when `format` is `text` and pino-pretty is not installed
 */
export function createLogger(level: LevelWithSilent, format: LogFormat): Logger {
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === "json") return pino(options, pino.destination({ dest: 2, sync: true }));
  const require = createRequire(import.meta.url);
  let pretty: (opts: Record<string, unknown>) => NodeJS.WritableStream;
  try {
    pretty = require("pino-pretty") as typeof pretty;
  } catch {
    throw new Error("--log-format text needs the optional dependency pino-pretty (npm install pino-pretty)");
  }
  return pino(options, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY }));
}
