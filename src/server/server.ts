import fs from "node:fs";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { StateRoot, checkStateRoot } from "../runtime/container.js";
import { describeError } from "../runtime/errors.js";
import { NewContainerWarmer } from "../runtime/warm-new.js";
import { WatchHub } from "../runtime/watch.js";
import { ConnectionGate, DEFAULT_PREFACE_TIMEOUT_MS, defaultMaxConnections } from "./connections.js";
import { ShimHealth } from "./health.js";
import { addReflection } from "./reflection.js";
import { createShimService, loggedHeapReleaser, shimServiceDefinition } from "./service.js";
import { SocketAddressError, listenUnix, prepareSocketPath, secureSocket } from "./socket.js";
import { CallTracker, safeDeserializers } from "./unary.js";
import type { MetricsListener, ShimMetrics } from "./metrics.js";
import type { MetricsAddress } from "../config.js";
import type { CgroupMode } from "../runtime/freezer.js";
import { VERSION } from "../version.js";

/** After the last unary call answered, how long shutdown lets responses flush before cancelling streams, in ms. */
export const FLUSH_GRACE_MS = 250;

/**
 * grpc-js server options: HTTP/2 keepalive pings find peers that vanished
 * without closing (their connection and fds are then released), and a
 * connection with no call for 5 minutes is closed (clients reconnect on their
 * next call).
 */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.keepalive_time_ms": 60_000,
  "grpc.keepalive_timeout_ms": 20_000,
  "grpc.max_connection_idle_ms": 5 * 60_000,
};

/** What {@link startShimServer} needs. */
export interface ServerConfig {
  /** Absolute path of the state root (already prepared). */
  root: string;
  /** Absolute path of the Unix socket. */
  socketPath: string;
  /** Group given access to the socket (mode 0660), or undefined for 0600. */
  socketGroup?: string;
  /** Bound of a Start with no client deadline, in ms. */
  startTimeoutMs: number;
  /** Bound of one `runc create`, in ms (default 60 s). */
  createTimeoutMs?: number;
  /** The runc binary Create runs (default `runc` on PATH). */
  runc?: string;
  /** Limits on connections and streams; the defaults of {@link DEFAULT_LIMITS} when absent. */
  limits?: Partial<ServerLimits>;
  /** Where to serve `GET /metrics` (`--metrics-address`); no metrics (and no listener) when absent. */
  metricsAddress?: MetricsAddress;
}

/** Limits on what clients may hold open (flags of `serve`). */
export interface ServerLimits {
  /** Most connections open at once (`--max-connections`). */
  maxConnections: number;
  /** How long a new connection may take to send the HTTP/2 preface, in ms (`--preface-timeout`). */
  prefaceTimeoutMs: number;
  /** Most concurrent HTTP/2 streams (calls) per connection (`--max-streams-per-connection`; `grpc.max_concurrent_streams`). */
  maxStreamsPerConnection: number;
  /** Most open Watch streams in the server (`--max-watches`). */
  maxWatches: number;
  /** Most open Watch streams per connection (`--max-watches-per-connection`). */
  maxWatchesPerConnection: number;
}

/** The default limits. */
export const DEFAULT_LIMITS: Readonly<Omit<ServerLimits, "maxConnections">> = {
  prefaceTimeoutMs: DEFAULT_PREFACE_TIMEOUT_MS,
  maxStreamsPerConnection: 128,
  maxWatches: 512,
  maxWatchesPerConnection: 64,
};

/**
 * How long a forced shutdown waits for the calls it cancelled to answer, in ms
 * (100): a Start waiting on its exec fifo answers CANCELLED at once and logs
 * its line; a Create lets its runc finish first, which may take longer.
 */
export const FORCED_SETTLE_MS = 100;

/** A running server. */
export interface RunningServer {
  /** The grpc-js server. */
  server: grpc.Server;
  /** The health service (NOT_SERVING once shutdown begins). */
  health: ShimHealth;
  /** The cgroup layout detected on this host (`StateRoot.cgroupMode`). */
  cgroupMode: CgroupMode;
  /** Where `GET /metrics` is served (the port bound when 0 was asked), or undefined without `metricsAddress`. */
  metricsAddress: string | undefined;
  /**
   * Graceful shutdown: health NOT_SERVING, new calls refused, in-flight calls
   * finish (at most `timeoutMs`, then forced), the socket file removed.
   * @returns `true` when it finished in time, `false` when it was forced
   */
  shutdown(timeoutMs: number): Promise<boolean>;
  /**
   * Immediate shutdown: cancels every call and removes the socket file, then
   * waits at most {@link FORCED_SETTLE_MS} for the cancelled calls to answer
   * (each logs its line as it does).
   * @returns the calls still in flight after that (they get no line of their own)
   */
  forceShutdown(): Promise<number>;
}

/**
 * Builds the server (ShimService, grpc.health.v1.Health, reflection v1 and
 * v1alpha), binds it on the Unix socket as containerd's shim does (stale socket
 * removed and bind retried once, a live one refused, mode 0600 or 0660 before
 * the first call can be served), then the metrics listener when asked for
 * (see `startMetricsListener` in ./metrics.ts), and returns a handle to shut it down.
 *
 * @throws {SocketAddressError} `address in use by a running server`, a non-socket at the path (the
 *   gRPC socket or the metrics address)
 */
export async function startShimServer(config: ServerConfig, log: Logger): Promise<RunningServer> {
  const root = new StateRoot(config.root);
  const tracker = new CallTracker();
  // prom-client is loaded only when metrics are asked for (it costs ~2 MiB of RSS otherwise).
  const metricsModule = config.metricsAddress === undefined ? undefined : await import("./metrics.js");
  const metrics: ShimMetrics | undefined = metricsModule === undefined ? undefined : new metricsModule.ShimMetrics({ root, version: VERSION });
  // One hub shared by every Watch; closed when shutdown begins, which ends open watches with OK.
  const watchHub = new WatchHub(root, {
    onWarning: (message, err) => log.warn({ err: describeError(err) }, `watch: ${message}`),
    onMerged: metrics === undefined ? undefined : () => metrics.watchEventMerged(),
  });
  metrics?.observeWatchHub(() => watchHub.counters);
  // Told of every call and Watch stream (Health/Check included), and of the end of start-up below.
  const heapRelease = loggedHeapReleaser(log);
  const health = new ShimHealth(
    () => {
      try {
        checkStateRoot(config.root);
        return true;
      } catch {
        return false;
      }
    },
    () => heapRelease.activity(),
  );
  const limits: ServerLimits = { maxConnections: defaultMaxConnections(), ...DEFAULT_LIMITS, ...config.limits };
  const server = new grpc.Server({ ...SERVER_OPTIONS, "grpc.max_concurrent_streams": limits.maxStreamsPerConnection });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const gate = new ConnectionGate({
    maxConnections: limits.maxConnections,
    prefaceTimeoutMs: limits.prefaceTimeoutMs,
    inject: (socket) => injector.injectConnection(socket),
    onEvent: (event, fields) =>
      log.warn(fields, event === "over-limit"
        ? fields.closedIdle !== undefined
          ? "connection limit reached (--max-connections): closed the newest idle connection"
          : "connection limit reached (--max-connections) and every connection has a call in flight: refused the new one"
        : event === "no-preface"
          ? "closed a connection that sent no HTTP/2 preface in time (--preface-timeout)"
          : "closed a connection that did not speak HTTP/2"),
  });
  server.addService(safeDeserializers(shimServiceDefinition()), createShimService({
    root, log, tracker, watchHub, gate, limits, metrics, heapRelease,
    startTimeoutMs: config.startTimeoutMs, createTimeoutMs: config.createTimeoutMs, runc: config.runc,
  }));
  health.addToServer(server);
  addReflection(server);

  const makeListener = (): net.Server => {
    const l = net.createServer();
    l.on("connection", (socket) => gate.admit(socket));
    return l;
  };
  let listener = makeListener();
  await prepareSocketPath(config.socketPath);
  try {
    await listenUnix(listener, config.socketPath);
  } catch {
    // Lost a race with another process for the path: decide again once.
    listener.close();
    await prepareSocketPath(config.socketPath);
    listener = makeListener();
    try {
      await listenUnix(listener, config.socketPath);
    } catch (e2) {
      listener.close();
      injector.destroy();
      throw new SocketAddressError(`cannot listen on ${config.socketPath}: ${(e2 as Error).message}`);
    }
  }
  listener.on("error", (e) => log.error({ err: describeError(e) }, "accepting a connection failed"));
  const closeListener = (): void => {
    listener.close();
    metricsListener?.close();
  };
  let socketIno: number | undefined;
  let metricsListener: MetricsListener | undefined;
  try {
    secureSocket(config.socketPath, config.socketGroup);
    socketIno = fs.statSync(config.socketPath).ino;
    if (metricsModule !== undefined && metrics !== undefined && config.metricsAddress !== undefined) {
      metricsListener = await metricsModule.startMetricsListener(config.metricsAddress, metrics, log);
    }
  } catch (e) {
    // Start-up failed after the bind: nothing may be left listening, and the socket goes.
    listener.close();
    injector.destroy();
    server.forceShutdown();
    fs.rmSync(config.socketPath, { force: true });
    throw e;
  }

  // Parse every state.json once in the background, so the first List of a large root is fast;
  // containers created from now on are read as soon as runc has written their state.json.
  const warmUp = new AbortController();
  const warmStart = performance.now();
  const warmer = new NewContainerWarmer(root);
  if (!warmer.start()) log.debug("state root not watched for new containers: their first call reads them");
  warmUp.signal.addEventListener("abort", () => warmer.close(), { once: true });
  void root.warmCache(warmUp.signal).then((n) => {
    log.debug({ containers: n, durationMs: Math.round(performance.now() - warmStart) }, "state.json cache warmed");
    // What loading the modules and reading the root left is garbage now: given back once quiet.
    if (!warmUp.signal.aborted) heapRelease.startedUp();
  });

  const removeSocket = (): void => {
    const st = fs.lstatSync(config.socketPath, { throwIfNoEntry: false });
    if (st !== undefined && st.ino === socketIno) fs.rmSync(config.socketPath, { force: true });
  };
  let shutdownPromise: Promise<boolean> | undefined;
  const running: RunningServer = {
    server,
    health,
    cgroupMode: root.cgroupMode,
    metricsAddress: metricsListener?.address,
    shutdown(timeoutMs) {
      shutdownPromise ??= new Promise<boolean>((resolve) => {
        closeListener();
        health.shutdown();
        watchHub.close();
        heapRelease.close();
        warmUp.abort();
        const timer = setTimeout(() => {
          if (finished) return;
          finished = true;
          const stuck = root.detachedContainers();
          if (stuck.length > 0) {
            log.warn({ containers: stuck }, "exiting while these init processes hold the exec fifo open without writing; they will get EPIPE if they write");
          }
          server.forceShutdown();
          injector.destroy();
          gate.destroyAll();
          removeSocket();
          resolve(false);
        }, timeoutMs);
        let finished = false;
        const finish = (): void => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          removeSocket();
          resolve(true);
        };
        server.tryShutdown(finish);
        // Unary calls in flight finish; streams (health Watch) are then cancelled rather than
        // waited for, after a moment for the last responses to be flushed to their clients.
        // Detached exec fifo waits (an init that opened its end and has not written) are waited for
        // too: exiting would close our end and kill that init with SIGPIPE when it writes.
        void Promise.all([tracker.idle(), root.detachedIdle()]).then(() => {
          if (finished) return;
          setTimeout(() => {
            if (finished) return;
            server.forceShutdown();
            injector.destroy();
            gate.destroyAll();
            finish();
          }, FLUSH_GRACE_MS);
        });
      });
      return shutdownPromise;
    },
    forceShutdown() {
      closeListener();
      health.shutdown();
      watchHub.close();
      warmUp.abort();
      server.forceShutdown();
      injector.destroy();
      gate.destroyAll();
      removeSocket();
      if (tracker.inFlight === 0) return Promise.resolve(0);
      return new Promise<number>((resolve) => {
        const timer = setTimeout(() => resolve(tracker.inFlight), FORCED_SETTLE_MS);
        void tracker.idle().then(() => {
          clearTimeout(timer);
          resolve(0);
        });
      });
    },
  };
  return running;
}
