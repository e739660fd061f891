import { format } from "node:util";
import { monitorEventLoopDelay } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { EXIT, type ServeConfig } from "./config.js";
import { capYoungGeneration } from "./heap-flags.js";
import { closeInheritedFds } from "./inherited-fds.js";
import { createLogger, type BoundedLogDestination } from "./log.js";
import { RuntimeError } from "./runtime/errors.js";
import { prepareStateRoot } from "./runtime/container.js";
import { probeRunc } from "./runtime/runc-cli.js";
import { startShimServer, type RunningServer } from "./server/server.js";
import { SocketAddressError, socketPathOf } from "./server/socket.js";
import { closedEarlyInspector, handleSignals, holdSignals, IGNORED_SIGNALS, SHUTDOWN_SIGNALS } from "./signals.js";

/**
 * For the benchmark only: when set to a number of ms, the server measures its
 * event-loop delay (`perf_hooks.monitorEventLoopDelay`, 1 ms resolution) and
 * every that many ms writes one line `loop-delay {"p50":..,"p99":..,"max":..,"n":..}`
 * (ms beyond the resolution, over the interval) to stderr. Not a user-facing setting.
 */
export const LOOP_DELAY_ENV = "RUNC_SHIM_BENCH_LOOP_DELAY_MS";

/** Starts the {@link LOOP_DELAY_ENV} report when the variable is set. */
function reportLoopDelay(): void {
  const every = Number(process.env[LOOP_DELAY_ENV]);
  if (!(every > 0)) return;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const ms = (ns: number): number => Math.round(Math.max(0, ns / 1e6 - 1) * 1000) / 1000;
  setInterval(() => {
    process.stderr.write(`loop-delay ${JSON.stringify({ p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), n: h.count })}\n`);
    h.reset();
  }, every).unref();
}

/** How long a shutdown waits for queued log lines to reach a slow stderr reader, in ms. */
const LOG_FLUSH_MS = 200;

/**
 * `runc-shim serve`: prepares the state root, serves it on the socket until
 * SIGTERM, SIGINT or SIGQUIT, then shuts down gracefully (a second signal
 * forces). SIGHUP, SIGUSR1 and SIGUSR2 are logged (`signal ignored`) and
 * otherwise ignored. The signals are held from the first line of `main.ts`
 * (`signals.ts`); one that arrived while starting is acted on here.
 *
 * Before the `listening` line it logs the runc binary Create will run and its
 * version (or, as a warning, that none was found: Create then fails with
 * RUNC_NOT_FOUND while every other call works) and the cgroup mode detected.
 *
 * @returns the exit code once the server has stopped: 0 after a shutdown on a
 *   signal, 2 for an unusable state root, socket address or metrics address, 1 for any other failure
 */
export async function serve(config: ServeConfig): Promise<number> {
  let log: Logger;
  let logDestination: BoundedLogDestination;
  try {
    ({ log, destination: logDestination } = createLogger(config.logLevel, config.logFormat));
  } catch (e) {
    process.stderr.write(`runc-shim: ${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  // Fds inherited from the parent would pass to runc and into every container it creates.
  const inherited = closeInheritedFds();
  if (inherited.length > 0) log.info({ fds: inherited }, "closed file descriptors inherited from the parent (they would reach containers)");
  // V8's young generation (heap-flags.ts): held at its initial size through start-up (main.ts),
  // from now on it may grow under load up to 4 MiB a semi-space, not to V8's 16 MiB, which would
  // hold ~40 MiB of RSS for nothing.
  capYoungGeneration();

  // grpc-js's own diagnostics go to our log as JSON, not as raw lines on stderr.
  grpc.setLogger({ error: (...args: unknown[]) => log.warn({ grpc: format(...args) }, "grpc-js") });
  grpc.setLogVerbosity(grpc.logVerbosity.ERROR);

  // Signals are handled from the start, so one that arrives while starting up (or right after
  // the "listening" line) still shuts down cleanly instead of killing the process.
  let running: RunningServer | undefined;
  let signals = 0;
  let resolveExit!: (code: number) => void;
  const exit = new Promise<number>((resolve) => (resolveExit = resolve)).then(async (code) => {
    // Log lines wait for the end of the event loop's turn to be written together: none is lost on the way out
    // (a slow stderr reader gets a moment; a stuck one cannot hold up the exit).
    await logDestination.flush(LOG_FLUSH_MS);
    return code;
  });
  const stop = (code: number): void => resolveExit(code); // the first call wins
  let shuttingDown = false;
  // A forced shutdown (second signal): settled once the calls it cancelled have answered, or a moment has passed.
  let forced: Promise<void> | undefined;
  const beginShutdown = (server: RunningServer): void => {
    if (shuttingDown) return; // a signal during the start-up checks below has begun it already
    shuttingDown = true;
    log.info({ timeoutMs: config.shutdownTimeoutMs }, "shutting down: refusing new calls, finishing calls in flight");
    void server.shutdown(config.shutdownTimeoutMs).then(async (graceful) => {
      // Forced, the server closes at once; the calls it cancelled still answer (and log) first.
      if (forced !== undefined) await forced;
      log.info({ graceful }, graceful ? "shut down" : "shutdown timed out; calls in flight were cancelled");
      // Give a slow stderr reader a moment for the last lines; a stuck one cannot hold up the exit.
      await logDestination.flush(LOG_FLUSH_MS);
      stop(EXIT.OK);
    });
  };
  function onSignal(signal: NodeJS.Signals): void {
    if ((IGNORED_SIGNALS as readonly string[]).includes(signal)) {
      log.info({ signal }, "signal ignored");
      return;
    }
    signals++;
    log.info({ signal }, "signal");
    if (running === undefined) return; // still starting: acted on once the server is up
    if (signals === 1) beginShutdown(running);
    else {
      log.warn({ signal }, "second signal: forcing shutdown");
      // The calls it cancels answer, and log their line, within a moment; those that cannot are counted.
      forced ??= running.forceShutdown().then((left) => {
        if (left > 0) log.warn({ callsInFlight: left }, `forced shutdown: exiting with ${left} calls in flight, which get no log line of their own`);
      });
      void forced.then(() => stop(EXIT.OK));
    }
  }
  const onFatal = (e: unknown): void => {
    log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, "unexpected error; exiting");
    void running?.forceShutdown();
    stop(EXIT.FAILURE);
  };
  holdSignals([...IGNORED_SIGNALS, ...SHUTDOWN_SIGNALS]); // already held when started through main.ts
  handleSignals(onSignal);
  if (closedEarlyInspector) log.warn("closed the inspector a SIGUSR1 opened while Node was starting");
  process.on("uncaughtException", onFatal);
  process.on("unhandledRejection", onFatal);

  let root: string;
  let socketPath: string;
  try {
    socketPath = socketPathOf(config.address);
    root = prepareStateRoot(config.root);
    running = await startShimServer(
      {
        root, socketPath, socketGroup: config.socketGroup, startTimeoutMs: config.startTimeoutMs, createTimeoutMs: config.createTimeoutMs,
        runc: config.runc, limits: config.limits, metricsAddress: config.metricsAddress,
      },
      log,
    );
  } catch (e) {
    const usage = e instanceof SocketAddressError || (e instanceof RuntimeError && e.kind === "ConfigInvalid");
    const message = e instanceof Error ? e.message : String(e);
    log.fatal({ err: message }, "cannot serve");
    await logDestination.flush(LOG_FLUSH_MS); // the JSON line before the plain one
    process.stderr.write(`runc-shim: ${message}\n`);
    stop(usage ? EXIT.USAGE : EXIT.FAILURE);
    return exit;
  }
  // What Create will run: found once here for the operator; Create itself spawns it every time,
  // so a runc installed later is used without a restart.
  const runc = await probeRunc(config.runc);
  if ("error" in runc) {
    log.warn({ runc: config.runc, err: runc.error }, "runc not found: Create will answer FAILED_PRECONDITION (RUNC_NOT_FOUND) until it can run it; every other call works");
  } else {
    log.info({ runc: runc.path, runcVersion: runc.version }, "runc found: Create will run it");
  }
  log.info({ cgroupMode: running.cgroupMode }, `cgroup mode detected: ${running.cgroupMode}`);
  log.info({ address: socketPath, root, metricsAddress: running.metricsAddress }, "listening");
  reportLoopDelay();
  if (signals > 0) beginShutdown(running);
  return exit;
}
