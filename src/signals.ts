/**
 * Signal dispositions installed before anything else runs: `main.ts` imports
 * this module first and has no other static import, so its handlers are in
 * place before the CLI, grpc-js or pino are even loaded.
 *
 * Node's default for SIGUSR1 is to open the inspector on 127.0.0.1:9229,
 * unauthenticated: in a root process anyone on the host who can connect to it
 * could run code as root. A listener for SIGUSR1 replaces that default, so no
 * signal ever opens an inspector, in the server or in a client command.
 *
 * Node's own bootstrap (~70-100 ms, before any of our code runs) still
 * answers SIGUSR1 by opening the inspector: Node 20 has no
 * `--disable-sigusr1`. {@link closeEarlyInspector} closes an inspector
 * opened in that window as soon as this module runs.
 *
 * This module imports nothing but Node built-ins.
 */
import { createRequire } from "node:module";

/** Signals the server logs and otherwise ignores. */
export const IGNORED_SIGNALS = ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const satisfies readonly NodeJS.Signals[];
/** Signals that make the server shut down gracefully (a second one forces). */
export const SHUTDOWN_SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT"] as const satisfies readonly NodeJS.Signals[];

/** Most signals kept while no handler is attached yet (a flood beyond it is counted as one more of the same). */
const MAX_PENDING = 64;

let sink: ((signal: NodeJS.Signals) => void) | undefined;
const pending: NodeJS.Signals[] = [];
const held = new Set<NodeJS.Signals>();

function record(signal: NodeJS.Signals): void {
  if (sink !== undefined) sink(signal);
  else if (pending.length < MAX_PENDING) pending.push(signal);
}

/**
 * Installs a listener for each signal (idempotent), replacing Node's default
 * disposition: the signal is queued until {@link handleSignals} attaches a
 * handler, then passed to it. With no handler ever attached it is ignored.
 */
export function holdSignals(signals: readonly NodeJS.Signals[]): void {
  for (const signal of signals) {
    if (held.has(signal)) continue;
    held.add(signal);
    process.on(signal, record);
  }
}

/**
 * Sends every held signal to `handler`: first those that arrived before this
 * call (in arrival order), then each as it comes. Replaces a previous handler.
 */
export function handleSignals(handler: (signal: NodeJS.Signals) => void): void {
  sink = handler;
  for (const signal of pending.splice(0)) handler(signal);
}

/** Holds SIGUSR1 (no inspector), and for `serve` every signal the server handles. */
export function holdEarlySignals(argv: readonly string[]): void {
  holdSignals(["SIGUSR1"]);
  if (argv[0] === "serve") holdSignals([...IGNORED_SIGNALS, ...SHUTDOWN_SIGNALS]);
}

/** Whether an inspector opened before this module ran was closed (reported by `serve` in its log). */
export let closedEarlyInspector = false;

/**
 * Closes an inspector that a SIGUSR1 opened during Node's bootstrap, before
 * {@link holdEarlySignals} ran. A no-op when none is open, or when Node was
 * built without the inspector.
 */
export function closeEarlyInspector(): void {
  try {
    const inspector = createRequire(import.meta.url)("node:inspector") as typeof import("node:inspector");
    if (inspector.url() !== undefined) {
      inspector.close();
      closedEarlyInspector = true;
    }
  } catch {
    // no inspector in this build of Node
  }
}

holdEarlySignals(process.argv.slice(2));
closeEarlyInspector();
