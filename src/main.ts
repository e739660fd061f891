#!/usr/bin/env node
import { runCli } from "./cli.js";

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// The server has flushed its log (for a bounded time) before it returns. After one turn of the
// event loop no idle client connection or timer may keep a finished command (or a server that
// has shut down) alive.
setImmediate(() => process.exit(code));
