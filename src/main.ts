#!/usr/bin/env node
import { runCli } from "./cli.js";

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// Let stdout/stderr drain (they are asynchronous on pipes), then make sure no
// stray handle keeps a finished command alive.
setTimeout(() => process.exit(code), 2000).unref();
