import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import pino, { type Logger, type LevelWithSilent } from "pino";

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
/** Log formats accepted by `--log-format`: JSON lines, or pino-pretty text for people. */
export const LOG_FORMATS = ["json", "text"] as const;
/** A `--log-format` value. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * Bound of the log lines waiting for a slow stderr reader, in bytes (1 MiB,
 * counted in UTF-16 code units, i.e. bytes for ASCII lines). A line that would
 * take the queue past it is dropped and counted.
 */
export const LOG_QUEUE_BYTES = 1024 * 1024;

/**
 * Most bytes (UTF-16 code units) of log lines written together: PIPE_BUF
 * (4 KiB), which a pipe takes whole or not at all (POSIX); a line that would
 * take the waiting lines past it goes in the next write.
 *
 * Lines logged in one turn of the event loop are written together at the end
 * of that turn (`setImmediate`), so a reader (journald, a pipe) is woken once
 * for them instead of once per line, and a line is on stderr microseconds
 * after the answer of the call that logged it, never a timer later. Measured
 * at `--log-level info` (one line per call), State at 64 in flight: one write
 * per line cost the server ~100 µs of CPU per call, a quarter of it in the write.
 */
export const LOG_BATCH_BYTES = 4096;

/** The part of a writable stream the log destination uses. */
export interface LogOutput {
  write(chunk: string): boolean;
  readonly writableLength: number;
  on(event: "drain", listener: () => void): unknown;
  on(event: "error", listener: (e: Error) => void): unknown;
  once(event: "drain", listener: () => void): unknown;
  off(event: "drain", listener: () => void): unknown;
}

/**
 * Opens stderr for the log without ever blocking the event loop on a pipe.
 *
 * A pipe or FIFO gets an open file description of its own
 * (`/proc/self/fd/2` reopened `O_WRONLY|O_NONBLOCK`), written through libuv:
 * a full pipe queues in memory and is resumed on writability (epoll), never by
 * a blocked write, a spin or a threadpool thread; and no other process sharing
 * the pipe can make it blocking again. Anything else (a socket such as
 * journald's, which libuv also writes asynchronously; a file or a terminal,
 * which Node writes synchronously) is `process.stderr`.
 */
export function openLogOutput(): LogOutput {
  try {
    if (fs.fstatSync(2).isFIFO()) {
      const fd = fs.openSync("/proc/self/fd/2", fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      const out = new net.Socket({ fd, readable: false, writable: true });
      out.unref(); // the log never keeps the process alive
      return out;
    }
  } catch {
    // no /proc, or fd 2 closed: process.stderr below
  }
  return process.stderr;
}

/**
 * The log's destination: writes lines to `out` unless the lines still
 * waiting there would exceed `limitBytes`; then it drops lines and counts them,
 * never waiting. Lines are written together, in order: those of one turn of
 * the event loop at its end, in writes of at most {@link LOG_BATCH_BYTES}
 * (one line longer than that alone), and always before {@link flush} waits.
 * When `out` has caught up (its `drain`, or nothing waits in it),
 * `onCaughtUp` is called once with the number dropped, before any later line
 * is written. A write error on `out` (EPIPE: the reader went away) drops
 * every later line.
 */
export class BoundedLogDestination {
  /** Lines dropped since the last report. */
  dropped = 0;
  /** Lines dropped in total, over the process's life. */
  droppedTotal = 0;
  private broken = false;
  /** Lines not yet handed to `out`, and their length in UTF-16 code units. */
  private pending: string[] = [];
  private pendingLength = 0;
  private scheduled: NodeJS.Immediate | undefined;
  /** Called with the count once the reader has caught up after drops; set by {@link createLogger}. */
  onCaughtUp: (dropped: number) => void = () => {};

  /**
   * @param out where lines go (see {@link openLogOutput})
   * @param limitBytes bound of the lines waiting in `out`, in UTF-16 code units (bytes for ASCII)
   * @param format turns a pino JSON line into the line written (the text format); identity by default
   * @param batch write the lines of a turn of the event loop together at its end (true), or each at once
   */
  constructor(
    private readonly out: LogOutput,
    readonly limitBytes: number = LOG_QUEUE_BYTES,
    private readonly format: (line: string) => string = (line) => line,
    private readonly batch: boolean = true,
  ) {
    out.on("error", () => {
      this.broken = true;
    });
    out.on("drain", () => this.caughtUp());
  }

  /** The reader has caught up: the drops are reported (once), before any later line. */
  private caughtUp(): void {
    if (this.dropped === 0 || this.broken) return;
    const n = this.dropped;
    this.dropped = 0;
    this.onCaughtUp(n);
  }

  /** pino's destination interface: writes or drops one line; never blocks, never throws. */
  write(line: string): boolean {
    if (this.broken) {
      this.drop();
      return true;
    }
    const text = this.format(line);
    // Lines were dropped but nothing waits in `out` (a line longer than the bound alone, or a
    // file, which is written at once): no `drain` will come, so the reader has caught up now.
    if (this.dropped > 0 && this.out.writableLength === 0 && this.pending.length === 0) this.caughtUp();
    // While lines are being dropped, drop every line until the reader caught up, so
    // the report comes before any later line.
    if (this.dropped > 0 || this.out.writableLength + this.pendingLength + text.length > this.limitBytes) {
      this.drop();
      return true;
    }
    if (this.pendingLength > 0 && this.pendingLength + text.length > LOG_BATCH_BYTES) this.writePending();
    this.pending.push(text);
    this.pendingLength += text.length;
    if (!this.batch || this.pendingLength >= LOG_BATCH_BYTES) this.writePending();
    else this.scheduled ??= setImmediate(this.writePending);
    return true;
  }

  /** Hands the waiting lines to `out` in one write. */
  private readonly writePending = (): void => {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingLength = 0;
    if (this.broken) {
      for (let i = 0; i < lines.length; i++) this.drop();
      return;
    }
    try {
      this.out.write(lines.length === 1 ? lines[0]! : lines.join(""));
    } catch {
      this.broken = true;
      for (let i = 0; i < lines.length; i++) this.drop();
    }
  };

  private drop(): void {
    this.dropped++;
    this.droppedTotal++;
  }

  /**
   * Waits until the queued lines are written, for at most `timeoutMs`; never
   * longer, so that a stuck reader cannot hold up an exit.
   * @returns true when nothing is left queued
   */
  flush(timeoutMs: number): Promise<boolean> {
    this.writePending();
    if (this.broken || this.out.writableLength === 0) return Promise.resolve(!this.broken);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.out.off("drain", done);
        resolve(this.out.writableLength === 0);
      };
      const timer = setTimeout(done, timeoutMs);
      this.out.once("drain", done);
    });
  }
}

/** The server's logger and its destination (for {@link BoundedLogDestination.flush} before exiting). */
export interface ServerLog {
  log: Logger;
  destination: BoundedLogDestination;
}

/**
 * The server's logger: pino JSON lines (or pino-pretty text) on stderr, through
 * a {@link BoundedLogDestination} that never blocks: past
 * {@link LOG_QUEUE_BYTES} waiting, lines are dropped and counted, and a warn
 * line `dropped N log lines ...` (field `droppedLines`) follows once the reader
 * has caught up.
 *
 * @param out where lines go; {@link openLogOutput} by default
 * @throws Error when `format` is `text` and pino-pretty is not installed
 */
export function createLogger(level: LevelWithSilent, format: LogFormat, out: LogOutput = openLogOutput()): ServerLog {
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  let prettify: ((line: string) => string) | undefined;
  if (format === "text") {
    const require = createRequire(import.meta.url);
    let prettyFactory: (opts: Record<string, unknown>) => (line: string) => string;
    try {
      prettyFactory = (require("pino-pretty") as { prettyFactory: typeof prettyFactory }).prettyFactory;
    } catch {
      throw new Error("--log-format text needs the optional dependency pino-pretty (npm install pino-pretty)");
    }
    prettify = prettyFactory({ colorize: out === process.stderr && process.stderr.isTTY });
  }
  const destination = new BoundedLogDestination(out, LOG_QUEUE_BYTES, prettify);
  const log = pino(options, destination);
  destination.onCaughtUp = (n) =>
    log.warn({ droppedLines: n }, `dropped ${n} log lines: stderr was not read fast enough (more than ${LOG_QUEUE_BYTES} bytes waiting)`);
  return { log, destination };
}
