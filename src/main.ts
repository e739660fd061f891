#!/usr/bin/env node
import { runCli } from "./cli.js";

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// stdout and stderr are synchronous for files, pipes and TTYs on Linux; after one turn of the
// event loop nothing is left to write, and no idle client connection or timer may keep a
// finished command (or a server that has shut down) alive.
setImmediate(() => process.exit(code));
