import fs from "node:fs";
import http from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Logger } from "pino";
import { formatMetricsAddress, type MetricsAddress } from "../config.js";
import type { StateRoot } from "../runtime/container.js";
import { RuntimeError, describeError } from "../runtime/errors.js";
import { containerDirNames, loadEntryFast } from "../runtime/list.js";
import type { WatchHubCounters } from "../runtime/watch.js";
import { ERROR_TABLE } from "./errors.js";
import { SocketAddressError, listenUnix, prepareSocketPath, secureSocket } from "./socket.js";
import type { CallObserver } from "./unary.js";

/** Buckets of `runcshim_rpc_duration_seconds`, in seconds: they resolve 0.1–10 ms, where State and Start answer. */
export const RPC_DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1, 10];
/** Buckets of the exec fifo handshake's duration, in seconds (from 1 ms to Start's 60 s default bound). */
export const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10, 60];
/** Buckets of `runc create`'s duration, in seconds (runc 1.1.5 takes 30–100 ms here; 60 s is `--create-timeout`'s default). */
export const RUNC_CREATE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60];
/** The statuses `runcshim_containers` reports (`unknown`: the dir fails to load), always all of them. */
export const CONTAINER_STATUSES = ["created", "running", "pausing", "paused", "stopped", "unknown"] as const;
/** How long one count of the root's containers is reused by later scrapes, in ms. */
export const CONTAINER_COUNT_TTL_MS = 1000;
/** Containers counted per turn of the event loop while a scrape counts the root. */
export const CONTAINER_COUNT_BATCH = 100;

/** What {@link ShimMetrics} needs. */
export interface ShimMetricsOptions {
  /** The state root whose containers are counted at scrape time. */
  root: StateRoot;
  /** The package version, the `version` label of `runcshim_build_info`. */
  version: string;
  /** Reuse of one count, in ms ({@link CONTAINER_COUNT_TTL_MS}). */
  countTtlMs?: number;
  /** Containers per event-loop turn while counting ({@link CONTAINER_COUNT_BATCH}). */
  countBatch?: number;
}

type StatusCounts = Record<(typeof CONTAINER_STATUSES)[number], number>;

/**
 * The server's Prometheus metrics, in a registry of their own (never
 * prom-client's global one), fed through hooks: {@link CallObserver} for every
 * ShimService call (the unary and stream adapters), and small callbacks handed
 * to Start, Create and the watch hub. The container counts are computed at
 * scrape time from the state.json cache (see {@link countContainers}).
 */
export class ShimMetrics implements CallObserver {
  /** The registry `GET /metrics` serves. */
  readonly registry = new Registry();
  private readonly calls: Counter<"rpc" | "code">;
  private readonly durations: Histogram<"rpc">;
  private readonly handshakes: Histogram<"outcome">;
  private readonly runcCreate: Histogram;
  private readonly runcCreateFailures: Counter<"reason">;
  private readonly streams: Gauge<"rpc">;
  private readonly watchSent: Counter<"kind">;
  private readonly watchMerged: Counter;
  private readonly countSeconds: Gauge;
  private readonly root: StateRoot;
  private readonly ttlMs: number;
  private readonly batch: number;
  private counting: Promise<StatusCounts> | undefined;
  private counted: { at: number; counts: StatusCounts } | undefined;

  constructor(opts: ShimMetricsOptions) {
    this.root = opts.root;
    this.ttlMs = opts.countTtlMs ?? CONTAINER_COUNT_TTL_MS;
    this.batch = opts.countBatch ?? CONTAINER_COUNT_BATCH;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: "runcshim_build_info", help: "Always 1; the version of runc-shim serving", labelNames: ["version"], registers }).set({ version: opts.version }, 1);
    this.calls = new Counter({ name: "runcshim_rpc_calls_total", help: "ShimService calls ended, by RPC and gRPC status code", labelNames: ["rpc", "code"], registers });
    this.durations = new Histogram({
      name: "runcshim_rpc_duration_seconds",
      help: "Time from a unary ShimService call's arrival to its answer, by RPC (Watch streams are not included)",
      labelNames: ["rpc"],
      buckets: RPC_DURATION_BUCKETS,
      registers,
    });
    this.handshakes = new Histogram({
      name: "runcshim_exec_fifo_handshake_duration_seconds",
      help: "Start's exec fifo handshake, from opening the fifo to the end of Start's wait, by outcome (exec, exited, timeout, answered-early, or the error kind that ended it)",
      labelNames: ["outcome"],
      buckets: HANDSHAKE_BUCKETS,
      registers,
    });
    this.runcCreate = new Histogram({ name: "runcshim_runc_create_duration_seconds", help: "Runs of runc create by Create, from spawn to exit (every run, failed ones too)", buckets: RUNC_CREATE_BUCKETS, registers });
    this.runcCreateFailures = new Counter({
      name: "runcshim_runc_create_failures_total",
      help: "Runs of runc create that did not create a container, by ErrorInfo reason (RUNC_FAILED, RUNC_NOT_FOUND, CONTAINER_EXISTS, DEADLINE_EXCEEDED, CANCELLED)",
      labelNames: ["reason"],
      registers,
    });
    this.streams = new Gauge({ name: "runcshim_open_streams", help: "Server streams open now, by RPC (Watch)", labelNames: ["rpc"], registers });
    this.streams.set({ rpc: "Watch" }, 0);
    this.watchSent = new Counter({ name: "runcshim_watch_events_sent_total", help: "Watch messages sent, by kind (initial, synced, appeared, changed, removed)", labelNames: ["kind"], registers });
    this.watchMerged = new Counter({
      name: "runcshim_watch_events_merged_total",
      help: "Watch events merged into an event still pending for a reader that had not taken it (a slow reader gets the latest state, not a backlog)",
      registers,
    });
    const self = this;
    this.countSeconds = new Gauge({
      name: "runcshim_containers_count_duration_seconds",
      help: "How long the count of the root's containers that runcshim_containers reports took",
      registers,
      async collect() {
        await self.countContainers();
      },
    });
    new Gauge({
      name: "runcshim_containers",
      help: `Containers in the state root by status, counted at scrape time from the state.json cache (unknown: fails to load; a dir without state.json is not counted); one count serves the scrapes of ${this.ttlMs} ms`,
      labelNames: ["status"],
      registers,
      async collect() {
        const counts = await self.countContainers();
        for (const s of CONTAINER_STATUSES) this.set({ status: s }, counts[s]);
      },
    });
  }

  /** {@link CallObserver}: counts the call and, for a unary call, observes its duration. */
  callEnded(rpc: string, code: string, seconds: number, kind: "unary" | "stream"): void {
    this.calls.inc({ rpc, code });
    if (kind === "unary") this.durations.observe({ rpc }, seconds);
  }

  /** {@link CallObserver}: one more open stream of `rpc` until the returned function is called (idempotent). */
  streamOpened(rpc: string): () => void {
    this.streams.inc({ rpc });
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.streams.dec({ rpc });
    };
  }

  /**
   * Reports how the watch hub follows containers, read from `counters()` at
   * scrape time: `runcshim_watch_status_polls_total` (status derivations by
   * the poll: freezer, `/proc/PID/stat`, exec fifo — only containers without a
   * `cgroup.events` to watch), `runcshim_watch_freezer_polls_total` (freezer
   * reads of containers followed through `cgroup.events` on v1 and hybrid
   * hosts while `FREEZING`, or whose `freezer.state` cannot be watched),
   * `runcshim_watch_freezer_events_total` (notifications from a v1
   * `freezer.state`), `runcshim_watch_cgroup_events_total` (notifications from
   * `cgroup.events`) and `runcshim_watch_containers_followed{how}`.
   */
  observeWatchHub(counters: () => WatchHubCounters): void {
    const registers = [this.registry];
    const counter = (name: string, help: string, pick: (c: WatchHubCounters) => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(pick(counters()));
        },
      });
    };
    counter("runcshim_watch_status_polls_total", "Status derivations by Watch's poll (freezer, /proc/PID/stat, exec fifo): live watched containers that have no cgroup.events to watch", (c) => c.statusPolls);
    counter("runcshim_watch_freezer_polls_total", "Freezer reads by Watch's poll of containers followed through cgroup.events on a cgroup v1 (hybrid) host: while FREEZING (which ends without a notification), or when freezer.state cannot be watched", (c) => c.freezerPolls);
    counter("runcshim_watch_freezer_events_total", "Notifications (inotify) from the v1 freezer.state files Watch follows on a cgroup v1 (hybrid) host: writes to them (runc pause and resume)", (c) => c.freezerEvents);
    counter("runcshim_watch_cgroup_events_total", "Notifications (inotify) from the cgroup.events files Watch follows", (c) => c.cgroupEvents);
    new Gauge({
      name: "runcshim_watch_containers_followed",
      help: "Live watched containers by how their status changes are seen: cgroup-events (inotify on the unified cgroup.events) or poll",
      labelNames: ["how"],
      registers,
      collect() {
        const c = counters();
        this.set({ how: "cgroup-events" }, c.eventsFollowed);
        this.set({ how: "poll" }, c.statusPolled);
      },
    });
  }

  /** A Watch message of `kind` was handed to gRPC. */
  watchEventSent(kind: string): void {
    this.watchSent.inc({ kind });
  }

  /** A Watch event merged with one still pending (`WatchHubOptions.onMerged`). */
  watchEventMerged(): void {
    this.watchMerged.inc();
  }

  /** Start's exec fifo handshake ended (`StartOptions.onHandshakeEnd`): its outcome and duration in seconds. */
  handshakeEnded(outcome: string, seconds: number): void {
    this.handshakes.observe({ outcome }, seconds);
  }

  /** Create's run of runc ended (`CreateOptions.onRuncEnd`): its duration in seconds and its error, if any. */
  runcCreateEnded(seconds: number, error: RuntimeError | undefined): void {
    this.runcCreate.observe(seconds);
    if (error !== undefined) this.runcCreateFailures.inc({ reason: ERROR_TABLE[error.kind].reason });
  }

  /**
   * Counts the root's containers by status: one readdir, then per container
   * dir what State costs from the state.json cache (an lstat while state.json
   * is unchanged, then the freezer, `/proc` and the exec fifo), in batches of
   * `countBatch` per turn of the event loop, so that a scrape of a large root
   * never holds calls for long. Scrapes that come while a count runs share
   * it, and one count is reused for `countTtlMs`. A root that cannot be read
   * counts nothing.
   */
  countContainers(): Promise<StatusCounts> {
    if (this.counted !== undefined && performance.now() - this.counted.at < this.ttlMs) return Promise.resolve(this.counted.counts);
    this.counting ??= this.count().finally(() => (this.counting = undefined));
    return this.counting;
  }

  private async count(): Promise<StatusCounts> {
    const t0 = performance.now();
    const counts: StatusCounts = { created: 0, running: 0, pausing: 0, paused: 0, stopped: 0, unknown: 0 };
    let names: string[] = [];
    try {
      names = containerDirNames(this.root);
    } catch {
      // an unusable root: health says so; nothing to count
    }
    for (let i = 0; i < names.length; i += this.batch) {
      if (i > 0) await new Promise<void>((r) => setImmediate(r));
      for (const name of names.slice(i, i + this.batch)) {
        const entry = loadEntryFast(this.root, name, "");
        if (entry.state !== undefined) counts[entry.state.status]++;
        // A dir without state.json is runc creating or deleting it: not a container (as Watch sees it).
        else if (!(entry.error instanceof RuntimeError && entry.error.kind === "ContainerNotExists")) counts.unknown++;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    this.countSeconds.set(seconds);
    this.counted = { at: performance.now(), counts };
    return counts;
  }
}

/** A running metrics listener. */
export interface MetricsListener {
  /** Where it listens: the socket path, or `host:port` with the port bound (also when 0 was asked). */
  readonly address: string;
  /** Stops listening and closes open connections; removes the socket file (if still ours). */
  close(): void;
}

/**
 * Serves `GET /metrics` (Prometheus text format, `registry.contentType`) over
 * HTTP/1.1 on `address`: a Unix socket (prepared as the gRPC socket: parent
 * dir 0700, a stale socket removed, a live one or a non-socket refused; bound
 * under umask 0177, then mode 0600), or a loopback TCP address. Any other path
 * is 404, any other method 405.
 *
 * @throws {SocketAddressError} the address is in use or cannot be bound
 */
export async function startMetricsListener(address: MetricsAddress, metrics: ShimMetrics, log: Logger): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (url !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: runc-shim serves GET /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (e: unknown) => {
        log.error({ err: describeError(e) }, "metrics: collecting failed");
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("collecting metrics failed (see the log)\n");
      },
    );
  });
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  let socketIno: number | undefined;
  if (address.kind === "unix") {
    await prepareSocketPath(address.path);
    try {
      await listenUnix(server, address.path);
      secureSocket(address.path);
      socketIno = fs.statSync(address.path).ino;
    } catch (e) {
      server.close();
      if (e instanceof SocketAddressError) throw e;
      throw new SocketAddressError(`--metrics-address: cannot listen on ${address.path}: ${describeError(e)}`);
    }
  } else {
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) => reject(new SocketAddressError(`--metrics-address: cannot listen on ${formatMetricsAddress(address)}: ${describeError(e)}`)));
      server.listen({ host: address.host, port: address.port, exclusive: true }, () => resolve());
    });
  }
  server.on("error", (e) => log.error({ err: describeError(e) }, "metrics listener failed"));
  const bound = server.address();
  const actual = address.kind === "unix" || bound === null || typeof bound === "string" ? address : { ...address, port: bound.port };
  return {
    address: formatMetricsAddress(actual),
    close() {
      server.close();
      server.closeAllConnections();
      if (address.kind === "unix") {
        const st = fs.lstatSync(address.path, { throwIfNoEntry: false });
        if (st !== undefined && st.ino === socketIno) fs.rmSync(address.path, { force: true });
      }
    },
  };
}
