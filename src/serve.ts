import type { Logger } from "pino";
import { EXIT, type ServeConfig } from "./config.js";
import { createLogger } from "./log.js";
import { RuntimeError } from "./runtime/errors.js";
import { prepareStateRoot } from "./runtime/container.js";
import { startShimServer, type RunningServer } from "./server/server.js";
import { SocketAddressError, socketPathOf } from "./server/socket.js";

/**
 * `runc-shim serve`: prepares the state root, serves it on the socket until
 * SIGTERM or SIGINT, then shuts down gracefully (a second signal forces).
 *
 * @returns the exit code once the server has stopped: 0 after a shutdown on a
 *   signal, 2 for an unusable state root or socket address, 1 for any other failure
 */
export async function serve(config: ServeConfig): Promise<number> {
  let log: Logger;
  try {
    log = createLogger(config.logLevel, config.logFormat);
  } catch (e) {
    process.stderr.write(`runc-shim: ${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  let root: string;
  let socketPath: string;
  let running: RunningServer;
  try {
    socketPath = socketPathOf(config.address);
    root = prepareStateRoot(config.root);
    running = await startShimServer(
      { root, socketPath, socketGroup: config.socketGroup, startTimeoutMs: config.startTimeoutMs },
      log,
    );
  } catch (e) {
    const usage = e instanceof SocketAddressError || (e instanceof RuntimeError && e.kind === "ConfigInvalid");
    const message = e instanceof Error ? e.message : String(e);
    log.fatal({ err: message }, "cannot serve");
    process.stderr.write(`runc-shim: ${message}\n`);
    return usage ? EXIT.USAGE : EXIT.FAILURE;
  }
  log.info({ address: socketPath, root }, "listening");

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down: refusing new calls, finishing calls in flight");
        void running.shutdown(config.shutdownTimeoutMs).then((graceful) => {
          log.info({ graceful }, graceful ? "shut down" : "shutdown timed out; calls in flight were cancelled");
          stop(EXIT.OK);
        });
      } else {
        log.warn({ signal }, "second signal: forcing shutdown");
        running.forceShutdown();
        stop(EXIT.OK);
      }
    };
    const onFatal = (e: unknown): void => {
      log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, "unexpected error; exiting");
      running.forceShutdown();
      stop(EXIT.FAILURE);
    };
    const stop = (code: number): void => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      resolve(code);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    process.on("uncaughtException", onFatal);
    process.on("unhandledRejection", onFatal);
  });
}
