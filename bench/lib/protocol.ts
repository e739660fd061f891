/**
 * The messages between the benchmark (parent) and its client worker (a child
 * process forked with an IPC channel). The parent sends one {@link WorkerRequest}
 * at a time and waits for the {@link WorkerReply} with the same `seq`.
 */

/** What one probe of a measurement round calls. */
export type ProbeKind =
  /** `grpc.health.v1.Health/Check` with service "" over the same channel: the floor. */
  | "floor"
  /** `runcshim.v1.ShimService/State` over the socket. */
  | "shim"
  /** `runc --root R state ID`, spawned as a process from the worker. */
  | "runc";

/** One call made once per round, in a shuffled order with the round's other probes. */
export interface Probe {
  /** Where its samples go in the reply, e.g. `shim.created`. */
  key: string;
  kind: ProbeKind;
  /** Connection name (for `floor` and `shim`). */
  conn?: string;
  /** State root (for `runc`). */
  root?: string;
  /** Container ids; round `i` uses `ids[i % ids.length]` (for `shim` and `runc`). */
  ids?: string[];
  /** The status the answer must report, e.g. `running`; a different one fails the run. */
  expect?: "created" | "running";
}

/** A request to the worker. */
export type WorkerRequest =
  | { seq: number; op: "connect"; name: string; socket: string }
  | { seq: number; op: "close"; name: string }
  | { seq: number; op: "rounds"; probes: Probe[]; rounds: number; seed: number }
  | { seq: number; op: "start"; conn: string; root: string; shimIds: string[]; runcIds: string[]; directIds: string[] }
  | {
      seq: number;
      op: "throughput";
      conn: string;
      kind: "shim" | "floor";
      ids: string[];
      concurrency: number;
      warmupMs: number;
      durationMs: number;
    }
  | { seq: number; op: "runcThroughput"; root: string; ids: string[]; parallel: number; warmupMs: number; durationMs: number }
  | { seq: number; op: "touch"; conn: string; ids: string[]; concurrency: number }
  | { seq: number; op: "list"; conn: string; root: string; reps: number; runcReps: number; expect: number }
  | {
      seq: number;
      op: "watchOpen";
      /** Names the set of streams for watchKill and watchClose. */
      name: string;
      socket: string;
      /** Watch-all streams to open, spread over `connections` connections of their own. */
      streams: number;
      connections: number;
      /** Decode the messages (needed by watchKill) instead of counting raw bytes. */
      decode: boolean;
      /** WatchRequest.max_batch (unset: one event per message, the default stream). */
      maxBatch?: number;
      /** The client: grpc-js (default), or Node's http2 alone counting raw messages (`decode` false). */
      client?: "grpc-js" | "http2";
    }
  | { seq: number; op: "watchKill"; name: string; root: string; ids: string[] }
  | { seq: number; op: "watchClose"; name: string }
  | { seq: number; op: "exit" };

/** Result of a `watchOpen` request. */
export interface WatchOpenResult {
  /** Per stream, ms from the request to its SYNCED message. */
  syncedMs: number[];
  /** Messages received by all streams up to their SYNCED. */
  messages: number;
  /** Events received by all streams up to their SYNCED (= messages without batching). */
  events: number;
}

/** Distributes `Omit` over the union, so each request can be written without `seq`. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A request before the parent numbers it. */
export type WorkerCommand = DistributiveOmit<WorkerRequest, "seq">;

/** Samples of a `rounds` request, by probe key: µs per call. */
export type RoundsResult = Record<string, number[]>;

/** Samples of a `start` request: ms per call. */
export interface StartResult {
  shim: number[];
  runc: number[];
  /** The exec fifo handshake done by the client process itself (open, read to end of file, unlink), in ms. */
  direct: number[];
  /**
   * The floor call (Health/Check) made right after each direct handshake, in
   * ms: what a round trip costs while the init process is still finishing
   * its exec (the moment a Start answers).
   */
  floorAfterDirect: number[];
}

/** Result of a `throughput` or `runcThroughput` request. */
export interface ThroughputResult {
  /** Calls completed (successfully) inside the measured window. */
  calls: number;
  /** Calls that failed inside the window. */
  errors: number;
  /** Length of the measured window, in s. */
  seconds: number;
  /** Every call completed during the request, warm-up and the calls in flight at the end included (for CPU per call). */
  totalCalls: number;
}

/** Result of a `touch` request. */
export interface TouchResult {
  ok: number;
  errors: number;
  /** Count of answers by status name. */
  statuses: Record<string, number>;
}

/** The worker's answer to the request with the same `seq`. */
export type WorkerReply = { seq: number; ok: true; result: unknown } | { seq: number; ok: false; error: string };
