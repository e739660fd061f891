#!/usr/bin/env node
// First, before any other module is loaded: signal dispositions (no inspector on SIGUSR1).
// The CLI is imported dynamically below so that no module of it is loaded or run before this.
import "./signals.js";
import { holdYoungGeneration } from "./heap-flags.js";

// Before the CLI's modules load: they would grow V8's young generation, and an idle server would hold it (heap-flags.ts).
holdYoungGeneration();

const { runCli } = await import("./cli.js");
const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// The server has flushed its log (for a bounded time) before it returns. After one turn of the
// event loop no idle client connection or timer may keep a finished command (or a server that
// has shut down) alive.
setImmediate(() => process.exit(code));
