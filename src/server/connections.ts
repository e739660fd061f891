import net from "node:net";
import { openFileSoftLimit } from "../runtime/held-files.js";

/** The client connection preface of HTTP/2 (RFC 9113 §3.4), which must be followed by a SETTINGS frame. */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** Bytes read before a connection is handed to gRPC: the preface and the 9-byte header of the SETTINGS frame that follows it. */
const PREFACE_AND_SETTINGS_HEADER = PREFACE.length + 9;
/** HTTP/2 frame type of SETTINGS. */
const FRAME_SETTINGS = 0x4;

/** Default `--preface-timeout`: how long a new connection may take to send the HTTP/2 preface and its SETTINGS, in ms. */
export const DEFAULT_PREFACE_TIMEOUT_MS = 5000;

/**
 * The default `--max-connections`: 1,024, or half the process's open-file soft
 * limit when that is lower (each connection costs one fd; the other half is
 * left for the state root, cgroupfs, /proc and runc).
 */
export function defaultMaxConnections(limitsFile = "/proc/self/limits"): number {
  const soft = openFileSoftLimit(limitsFile);
  return soft === undefined ? 1024 : Math.max(1, Math.min(1024, Math.floor(soft / 2)));
}

/** What {@link ConnectionGate} needs. */
export interface ConnectionGateOptions {
  /** Most connections open at once; past it the newest idle connection is closed. */
  maxConnections: number;
  /** How long a connection may take to send the preface and its SETTINGS header, in ms; then it is closed. */
  prefaceTimeoutMs: number;
  /** Hands a connection that sent a valid preface to gRPC (grpc-js's connection injector). */
  inject: (socket: net.Socket) => void;
  /** Told when a connection is refused or closed by the gate (at most once a second per reason). */
  onEvent?: (event: "over-limit" | "no-preface" | "bad-preface", fields: Record<string, unknown>) => void;
}

interface Tracked {
  socket: net.Socket;
  /** Calls (unary or streaming) in flight on this connection. */
  calls: number;
  /** Connection number, increasing: newer connections have larger ones. */
  seq: number;
}

/**
 * The server's door: every connection to the Unix socket passes through here
 * before gRPC sees it.
 *
 * - Each connection gets a distinct peer name (`conn-<n>`, what grpc-js's
 *   `call.getPeer()` answers), so per-connection limits can be kept.
 * - A connection that does not send the HTTP/2 preface followed by a SETTINGS
 *   frame header within `prefaceTimeoutMs` is closed; one that sends anything
 *   else is closed at once. Nothing of it reaches gRPC.
 * - Past `maxConnections`, the newest idle connection (no call in flight) is
 *   closed to make room; when every connection has a call in flight, the new
 *   connection is the one closed. Clients reconnect on their next call.
 */
export class ConnectionGate {
  private readonly open = new Map<string, Tracked>();
  private seq = 0;
  private readonly lastEvent = new Map<string, number>();
  /** Connections refused or closed, by reason, since start. */
  readonly closed = { overLimit: 0, noPreface: 0, badPreface: 0 };

  constructor(private readonly opts: ConnectionGateOptions) {}

  /** Connections open now (also those still sending their preface). */
  get size(): number {
    return this.open.size;
  }

  /** Takes a new connection: the `connection` listener of the server's `net.Server`. */
  admit(socket: net.Socket): void {
    const seq = ++this.seq;
    const peer = `conn-${seq}`;
    // grpc-js names the peer of a call after its socket's remoteAddress; a Unix socket has none.
    Object.defineProperty(socket, "remoteAddress", { value: peer, configurable: true });
    socket.on("error", () => {}); // a reset by the peer; the close below cleans up
    if (this.open.size >= this.opts.maxConnections && !this.evictNewestIdle()) {
      this.event("over-limit", { maxConnections: this.opts.maxConnections });
      this.closed.overLimit++;
      socket.destroy();
      return;
    }
    const t: Tracked = { socket, calls: 0, seq };
    this.open.set(peer, t);
    socket.once("close", () => this.open.delete(peer));
    this.awaitPreface(t, peer);
  }

  /** Marks a call begun on the connection named `peer`; returns the function that marks it ended. */
  enter(peer: string): () => void {
    const t = this.open.get(peer);
    if (t === undefined) return () => {};
    t.calls++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      t.calls--;
    };
  }

  /** Closes every connection (forced shutdown). */
  destroyAll(): void {
    for (const t of this.open.values()) t.socket.destroy();
    this.open.clear();
  }

  private evictNewestIdle(): boolean {
    let victim: Tracked | undefined;
    for (const t of this.open.values()) if (t.calls === 0 && (victim === undefined || t.seq > victim.seq)) victim = t;
    if (victim === undefined) return false;
    this.event("over-limit", { maxConnections: this.opts.maxConnections, closedIdle: `conn-${victim.seq}` });
    this.closed.overLimit++;
    this.open.delete(`conn-${victim.seq}`);
    victim.socket.destroy();
    return true;
  }

  private awaitPreface(t: Tracked, peer: string): void {
    const { socket } = t;
    let got = Buffer.alloc(0);
    const stop = (): void => {
      clearTimeout(timer);
      socket.removeListener("readable", onReadable);
    };
    const timer = setTimeout(() => {
      stop();
      this.event("no-preface", { peer, prefaceTimeoutMs: this.opts.prefaceTimeoutMs, bytes: got.length });
      this.closed.noPreface++;
      socket.destroy();
    }, this.opts.prefaceTimeoutMs);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) got = Buffer.concat([got, chunk]);
      const n = Math.min(got.length, PREFACE.length);
      if (!got.subarray(0, n).equals(PREFACE.subarray(0, n)) || (got.length >= PREFACE_AND_SETTINGS_HEADER && got[PREFACE.length + 3] !== FRAME_SETTINGS)) {
        stop();
        this.event("bad-preface", { peer });
        this.closed.badPreface++;
        socket.destroy();
        return;
      }
      if (got.length < PREFACE_AND_SETTINGS_HEADER) return;
      stop();
      socket.unshift(got); // HTTP/2 reads what is buffered before the socket's own data
      this.opts.inject(socket);
    };
    socket.on("readable", onReadable);
    socket.once("close", () => clearTimeout(timer));
  }

  private event(kind: "over-limit" | "no-preface" | "bad-preface", fields: Record<string, unknown>): void {
    const now = Date.now();
    if ((this.lastEvent.get(kind) ?? 0) + 1000 > now) return;
    this.lastEvent.set(kind, now);
    this.opts.onEvent?.(kind, fields);
  }
}
