import path from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { Command, CommanderError, Help, Option } from "commander";
import {
  createShimClient,
  parseSignal,
  ShimError,
  type ContainerEntryView,
  type ContainerStateView,
  type WatchEventView,
} from "./client/client.js";
import {
  ConfigError,
  DEFAULT_ADDRESS,
  DEFAULT_ROOT,
  DEFAULT_CREATE_TIMEOUT,
  DEFAULT_RUNC,
  DEFAULT_SHUTDOWN_TIMEOUT,
  DEFAULT_START_TIMEOUT,
  EXIT,
  parseDuration,
  serveConfig,
  type RawServeOptions,
} from "./config.js";
import { LOG_FORMATS, LOG_LEVELS } from "./log.js";
import { serve } from "./serve.js";
import { checkConfig, printChecks } from "./check-config.js";
import { socketPathOf } from "./server/socket.js";
import { VERSION } from "./version.js";

/** Help laid out like runc's (urfave/cli): NAME, USAGE, DESCRIPTION, COMMANDS, OPTIONS. */
class RuncLikeHelp extends Help {
  override formatHelp(cmd: Command, helper: Help): string {
    const indent = (s: string): string => s.split("\n").map((l) => (l === "" ? l : `   ${l}`)).join("\n");
    const names: string[] = [];
    for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
    const full = names.join(" ");
    const out: string[] = ["NAME:", indent(`${full} - ${cmd.summary() || cmd.description().split("\n")[0]}`), ""];
    const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(" ");
    const isRoot = cmd.parent === null;
    out.push("USAGE:", indent(isRoot ? `${full} [global options] command [command options] [arguments...]` : `${full} [command options] ${args}`.trimEnd()), "");
    const longDescription = cmd.description().split("\n").slice(1).join("\n").trim();
    if (longDescription !== "") out.push("DESCRIPTION:", indent(longDescription), "");
    const commands = helper.visibleCommands(cmd);
    if (commands.length > 0) {
      const width = Math.max(...commands.map((c) => c.name().length));
      out.push("COMMANDS:", ...commands.map((c) => indent(`${c.name().padEnd(width)}  ${c.summary() || c.description().split("\n")[0]}`)), "");
    }
    const options = helper.visibleOptions(cmd);
    if (options.length > 0) {
      const terms = options.map((o) => helper.optionTerm(o));
      const width = Math.max(...terms.map((t) => t.length));
      out.push(isRoot ? "GLOBAL OPTIONS:" : "OPTIONS:", ...options.map((o, i) => indent(`${(terms[i] ?? "").padEnd(width)}  ${helper.optionDescription(o)}`)), "");
    }
    return `${out.join("\n").trimEnd()}\n`;
  }
}

function printState(s: ContainerStateView, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(s)}\n`);
    return;
  }
  // The layout of `runc state` (runc 1.1.5 state.go: json.MarshalIndent of containerState, 2-space indent).
  process.stdout.write(`${goJson(runcContainerState(s), 2)}\n`);
}

/**
 * Lays out rows as Go's text/tabwriter does for `runc list`
 * (`tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)`): every column but the
 * last is padded to max(12, widest cell + 3) characters; the last is written as is.
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 12, [...cell].length + 3)));
  }
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell + " ".repeat((widths[i] ?? 12) - [...cell].length))).join("") + "\n")
    .join("");
}

/**
 * JSON as Go's `encoding/json` writes it by default: `JSON.stringify`, plus the
 * HTML-safe escapes of `<`, `>` and `&` (`\u003c`, `\u003e`, `\u0026`) and of
 * U+2028 and U+2029 (`\u2028`, `\u2029`), which Go applies inside strings.
 * `indent` as `json.MarshalIndent`'s (spaces per level).
 */
export function goJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * runc 1.1.5's `containerState` (list.go, printed by `runc state` and `runc list -f json`) in its
 * field order: `ociVersion`, `id`, `pid`, `status`, `bundle`, `rootfs`, `created`, `annotations`
 * (only when there are some: `omitempty`; keys in Go's map order, by UTF-8 bytes), `owner`.
 */
export function runcContainerState(s: ContainerStateView): Record<string, unknown> {
  const view: Record<string, unknown> = {
    ociVersion: s.ociVersion,
    id: s.id,
    pid: s.pid,
    status: s.status,
    bundle: s.bundle,
    rootfs: s.rootfs,
    created: s.created,
  };
  const keys = Object.keys(s.annotations).sort(byUtf8);
  if (keys.length > 0) view.annotations = Object.fromEntries(keys.map((k) => [k, s.annotations[k]]));
  view.owner = s.owner;
  return view;
}

/** Compares strings by their UTF-8 bytes, as Go orders map keys. */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * The output of runc 1.1.5's `runc list -f json` for these entries: one line,
 * an array of runc's `containerState` (list.go) in its field order —
 * `ociVersion`, `id`, `pid`, `status`, `bundle`, `rootfs`, `created`,
 * `annotations` (only when there are some: `omitempty`; keys sorted), `owner` —
 * Go's escaping, and `null` when no container loaded (Go encodes an empty nil
 * slice so). Entries that failed to load are left out, as runc leaves them out.
 */
export function formatRuncListJson(entries: readonly ContainerEntryView[]): string {
  const states = entries.flatMap((e) => (e.state === undefined ? [] : [e.state]));
  if (states.length === 0) return "null\n";
  return `${goJson(states.map(runcContainerState))}\n`;
}

/** How `list` prints: `--format` (runc's table or runc's JSON), `--json` (runc-shim's own shape), `--quiet`. */
interface ListPrintOptions {
  json?: boolean;
  quiet?: boolean;
  format?: "table" | "json";
}

/**
 * Prints List's answer: the `runc list` table, ids only (`quiet`, which wins
 * over `format` as in runc), `runc list -f json`'s array (`format: "json"`), or
 * runc-shim's own JSON (`json`). Containers that failed to load go to stderr,
 * except with `json`, whose entries carry their error.
 */
function printList(entries: ContainerEntryView[], opts: ListPrintOptions): void {
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(entries)}\n`);
    return;
  }
  const rows: string[][] = [];
  for (const e of entries) {
    if (e.state === undefined) {
      process.stderr.write(`runc-shim: load container ${e.id}: ${e.error?.message ?? "unknown error"} (reason ${e.error?.code ?? "?"})\n`);
      continue;
    }
    const s = e.state;
    rows.push([s.id, String(s.pid), s.status, s.bundle, s.created, s.owner]);
  }
  if (opts.quiet) {
    process.stdout.write(rows.map((r) => `${r[0]}\n`).join(""));
    return;
  }
  if (opts.format === "json") {
    process.stdout.write(formatRuncListJson(entries));
    return;
  }
  process.stdout.write(formatTable([["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], ...rows]));
}

/** One line per Watch message: `<time> <kind> <id> <status> <pid>`, or JSON with a `time` field. */
export function formatWatchEvent(ev: WatchEventView, json: boolean, now: Date = new Date()): string {
  const time = now.toISOString();
  if (json) return `${JSON.stringify({ time, ...ev })}\n`;
  if (ev.kind === "synced") return `${time} synced\n`;
  if (ev.state !== undefined) return `${time} ${ev.kind} ${ev.id} ${ev.state.status} ${ev.state.pid}\n`;
  if (ev.error !== undefined) return `${time} ${ev.kind} ${ev.id} error ${ev.error.code}: ${ev.error.message}\n`;
  return `${time} ${ev.kind} ${ev.id}\n`;
}

/** What a client command was asked, for telling the user what went wrong in its terms. */
export interface CallContext {
  /** `--address` as given. */
  address: string;
  /** `--timeout` as given (`500ms`, `10s`, or a bare number of ms); undefined for watch. */
  timeout?: string;
}

/**
 * The message of a failed call, in the user's terms. A failure the server
 * answered (it sent an ErrorInfo) keeps the server's message. A failure of
 * the transport (no ErrorInfo) is said anew, naming the socket and the flag
 * that set it, rather than grpc-js's internals (`Deadline exceeded after
 * 0.008s,name resolution: ...`, `No connection established. Last error: ...`):
 * - DEADLINE_EXCEEDED: `no answer from the server at PATH within 1ms (--timeout)`;
 * - UNAVAILABLE: `no server at PATH: ...` with why (no socket, nothing
 *   listening, permission denied), or `cannot reach the server at PATH: ...`.
 */
export function describeFailure(e: ShimError, ctx: CallContext): string {
  const details = e.details.replace(/\s*Resolution note:\s*$/, "");
  if (e.reason !== undefined) return details;
  let where = ctx.address;
  try {
    where = socketPathOf(ctx.address);
  } catch {
    // keep the address as given
  }
  if (e.codeName === "DEADLINE_EXCEEDED" && ctx.timeout !== undefined) {
    const within = /^\d+$/.test(ctx.timeout.trim()) ? `${ctx.timeout.trim()}ms` : ctx.timeout.trim();
    return `no answer from the server at ${where} within ${within} (--timeout)`;
  }
  if (e.codeName === "UNAVAILABLE") {
    const errno = /\bconnect (E[A-Z]+)\b/.exec(details)?.[1];
    switch (errno) {
      case "ENOENT":
        return `no server at ${where}: the socket does not exist (is runc-shim serving there? set --address or RUNC_SHIM_ADDRESS)`;
      case "ECONNREFUSED":
        return `no server at ${where}: nothing is listening on that socket (a server that was killed leaves it behind)`;
      case "EACCES":
        return `permission denied connecting to ${where} (the socket is root's: run as root, or as a member of the server's --socket-group)`;
      case undefined:
        return `lost the server at ${where}: ${details}`;
      default:
        return `cannot reach the server at ${where}: connect ${errno}`;
    }
  }
  return details;
}

/** The JSON object `--json` prints on stderr for bad usage (exit 2). */
function usageError(message: string): { code: "USAGE"; message: string; reason: null; metadata: Record<string, never> } {
  return { code: "USAGE", message, reason: null, metadata: {} };
}

function reportError(e: unknown, json: boolean, ctx?: CallContext): number {
  if (e instanceof ShimError) {
    const message = ctx === undefined ? e.details : describeFailure(e, ctx);
    if (json) {
      process.stderr.write(`${JSON.stringify({ code: e.codeName, message, reason: e.reason ?? null, metadata: e.metadata })}\n`);
    } else {
      process.stderr.write(`runc-shim: ${e.codeName}: ${message}${e.reason ? ` (reason ${e.reason})` : ""}\n`);
    }
    return EXIT.FAILURE;
  }
  if (e instanceof ConfigError) {
    process.stderr.write(json ? `${JSON.stringify(usageError(e.message))}\n` : `runc-shim: ${e.message}\n`);
    return EXIT.USAGE;
  }
  process.stderr.write(`runc-shim: ${e instanceof Error ? e.message : String(e)}\n`);
  return EXIT.FAILURE;
}

interface ClientOptions {
  address: string;
  json?: boolean;
  /** undefined for watch, which has no deadline. */
  timeout?: string;
}

function clientCommand(program: Command, name: string, summary: string, description: string, defaultTimeout: string): Command {
  return program
    .command(name)
    .summary(summary)
    .description(`${summary}\n${description}`)
    .argument("<container-id>", "the container id")
    .addOption(new Option("--address <path>", "the runc-shim socket").default(DEFAULT_ADDRESS).env("RUNC_SHIM_ADDRESS"))
    .option("--json", "print machine-readable JSON (one line)")
    .option("--timeout <duration>", "deadline of the call (500ms, 10s, 2m)", defaultTimeout);
}

/** Runs a client call and turns its outcome into an exit code. */
async function runClient(opts: ClientOptions, fn: (client: ReturnType<typeof createShimClient>, deadlineMs: number) => Promise<void>): Promise<number> {
  let client: ReturnType<typeof createShimClient> | undefined;
  try {
    const deadlineMs = opts.timeout === undefined ? 0 : parseDuration("--timeout", opts.timeout);
    try {
      socketPathOf(opts.address); // a filesystem path, as the server requires
    } catch (e) {
      throw new ConfigError(`--address: ${(e as Error).message}`);
    }
    client = createShimClient(opts.address);
    await fn(client, deadlineMs);
    return EXIT.OK;
  } catch (e) {
    return reportError(e, opts.json === true, { address: opts.address, timeout: opts.timeout });
  } finally {
    client?.close();
  }
}

/**
 * Builds the command line: `serve` (the server) and the client commands
 * `state`, `start`, `list` and `watch`. Each action stores its exit code in `result.code`.
 */
export function buildProgram(result: { code: number }): Command {
  const program = new Command("runc-shim")
    .description(
      "a gRPC shim over a runc state root\n" +
        "Serves a container's whole life (Create, Start, State, List, Watch, Kill, Pause, Resume, Delete), with\n" +
        "health and reflection, for the containers of one runc state root on a Unix socket, and is also a\n" +
        "command-line client of such a server.\n\n" +
        "EXAMPLES:\n" +
        "  runc-shim serve --root /run/runc\n" +
        "  runc-shim create c1 --bundle /containers/c1 && runc-shim start c1\n" +
        "  runc-shim list -f json",
    )
    .summary("a gRPC shim over a runc state root")
    .version(VERSION, "-v, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .configureHelp({})
    .showHelpAfterError(false)
    .exitOverride();
  program.createHelp = () => Object.assign(new RuncLikeHelp(), program.configureHelp());

  program
    .command("serve")
    .summary("serve a state root over gRPC on a Unix socket")
    .description(
      "serve a state root over gRPC on a Unix socket\n" +
        "Serves runcshim.v1.ShimService, grpc.health.v1.Health and server reflection (v1, v1alpha).\n" +
        "SIGTERM, SIGINT or SIGQUIT: health goes NOT_SERVING, new calls are refused, calls in flight finish\n" +
        "(at most --shutdown-timeout), the socket is removed, exit 0. A second signal forces.\n" +
        "SIGHUP, SIGUSR1, SIGUSR2: logged and ignored (SIGUSR1 never opens an inspector).\n" +
        "Logging never blocks: past 1 MiB waiting for a slow stderr reader, lines are dropped and counted.\n" +
        "Exit codes: 0 clean, 1 runtime failure, 2 bad usage or configuration.\n\n" +
        "EXAMPLES:\n" +
        "  runc-shim serve --root /run/runc --address /run/runc-shim/shim.sock\n" +
        "  runc-shim serve --root /tmp/myroot --address /tmp/shim/shim.sock --log-format text\n" +
        "  runc-shim serve --socket-group docker --start-timeout 10s",
    )
    .option("--root <dir>", "the runc state root to serve (created 0700 when missing)", DEFAULT_ROOT)
    .option("--address <path>", "the Unix socket path (parent dir created 0700; socket mode 0600)", DEFAULT_ADDRESS)
    .option("--socket-group <name>", "make the socket 0660 and owned by this group")
    .option("--start-timeout <duration>", "bound of a Start whose client set no deadline", DEFAULT_START_TIMEOUT)
    .option("--shutdown-timeout <duration>", "how long calls in flight may finish after SIGTERM", DEFAULT_SHUTDOWN_TIMEOUT)
    .option("--create-timeout <duration>", "bound of one runc create (runc is then killed and what it left removed)", DEFAULT_CREATE_TIMEOUT)
    .option("--runc <path>", "the runc binary Create runs (a path, or a name looked up on PATH)", DEFAULT_RUNC)
    .option("--max-connections <n>", "most client connections open at once; past it the newest idle one is closed (default: 1024, or half the open-file limit)")
    .option("--preface-timeout <duration>", "close a connection that sends no HTTP/2 preface within this (default: 5s)")
    .option("--max-streams-per-connection <n>", "most concurrent calls per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS) (default: 128)")
    .option("--max-watches <n>", "most open Watch streams in the server; more are RESOURCE_EXHAUSTED (default: 512, half the default --max-connections: a connection busy with a Watch is never idle)")
    .option("--max-watches-per-connection <n>", "most open Watch streams per connection; more are RESOURCE_EXHAUSTED (default: 64)")
    .option("--metrics-address <addr>", "serve GET /metrics (Prometheus) on a Unix socket path (mode 0600), 127.0.0.1:PORT or [::1]:PORT (default: off)")
    .option("--check-config", "check the flags, the root, the socket path, runc and the metrics address, print what serve would do, and exit 0 (ok) or 2, binding nothing")
    .option("--json", "with --check-config: print one JSON object {ok, checks}")
    .addOption(new Option("--log-level <level>", "log level").choices(LOG_LEVELS).default("info"))
    .addOption(new Option("--log-format <format>", "json lines, or text for people (needs pino-pretty)").choices(LOG_FORMATS).default("json"))
    .action(async (raw: RawServeOptions & { checkConfig?: boolean; json?: boolean }) => {
      let config;
      try {
        config = serveConfig(raw);
      } catch (e) {
        if (raw.checkConfig === true && e instanceof ConfigError) {
          result.code = printChecks([{ name: "flags", ok: false, detail: e.message }], raw.json === true);
          return;
        }
        result.code = reportError(e, false);
        return;
      }
      if (raw.checkConfig === true) {
        result.code = printChecks(await checkConfig(config), raw.json === true);
        return;
      }
      result.code = await serve(config);
    });

  clientCommand(program, "state", "output the state of a container",
    "Prints the state like `runc state` (JSON, 2-space indent); --json prints one line with every field.\n\n" +
    "EXAMPLES:\n  runc-shim state c1\n  runc-shim state c1 --address /tmp/shim/shim.sock --json", "10s")
    .action(async (id: string, opts: ClientOptions) => {
      result.code = await runClient(opts, async (client, deadlineMs) => printState(await client.state(id, { deadlineMs }), opts.json === true));
    });

  clientCommand(program, "start", "executes the user defined process in a created container",
    "Completes the exec fifo handshake of a created container through the server and prints the init pid.\n\n" +
    "EXAMPLES:\n  runc-shim start c1\n  runc-shim start c1 --timeout 5s --json", "70s")
    .action(async (id: string, opts: ClientOptions) => {
      result.code = await runClient(opts, async (client, deadlineMs) => {
        const pid = await client.start(id, { deadlineMs });
        process.stdout.write(opts.json ? `${JSON.stringify({ id, pid })}\n` : `started ${id} (init pid ${pid})\n`);
      });
    });
  clientCommand(program, "create", "create a container",
    "Runs `runc create` through the server, on its state root: the container is made from the bundle and\n" +
    "waits for `start`. Prints the init pid. stdio paths are opened by the server for the init process\n" +
    "(a file is created 0600 and appended to, a FIFO opened read-write; omitted: /dev/null).\n\n" +
    "EXAMPLES:\n  runc-shim create --bundle /containers/c1 c1\n  runc-shim create c1 --bundle . --stdout /var/log/c1.out --stderr /var/log/c1.err", "70s")
    .requiredOption("-b, --bundle <dir>", "path to the bundle dir (holding config.json), made absolute against the current dir")
    .option("--stdin <path>", "file or FIFO for the init's stdin")
    .option("--stdout <path>", "file or FIFO for the init's stdout")
    .option("--stderr <path>", "file or FIFO for the init's stderr")
    .action(async (id: string, opts: ClientOptions & { bundle: string; stdin?: string; stdout?: string; stderr?: string }) => {
      const abs = (p: string | undefined): string | undefined => (p === undefined || p === "" ? p : path.resolve(p));
      result.code = await runClient(opts, async (client, deadlineMs) => {
        const pid = await client.create(id, { bundle: path.resolve(opts.bundle), stdin: abs(opts.stdin), stdout: abs(opts.stdout), stderr: abs(opts.stderr) }, { deadlineMs });
        process.stdout.write(opts.json ? `${JSON.stringify({ id, pid })}\n` : `created ${id} (init pid ${pid})\n`);
      });
    });

  clientCommand(program, "kill", "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "SIGNAL is a name (KILL, SIGKILL, term; those of signals 1-31) or a number (1-64); --all signals every\n" +
    "process of the container's cgroup (a paused container stays paused, unlike runc). As with runc, 0 sends\n" +
    "nothing: it checks that the container's init is alive (exit 0) or says `container not running` (exit 1).\n\n" +
    "EXAMPLES:\n  runc-shim kill c1 KILL\n  runc-shim kill --all c1 9", "10s")
    .argument("[signal]", "the signal (default SIGTERM)")
    .option("-a, --all", "send the signal to every process of the container")
    .action(async (id: string, signal: string | undefined, opts: ClientOptions & { all?: boolean }) => {
      result.code = await runClient(opts, async (client, deadlineMs) => {
        let n: number;
        try {
          n = parseSignal(signal);
        } catch (e) {
          throw new ConfigError((e as Error).message.replace(/^.*?: /, ""));
        }
        if (signal !== undefined && signal !== "" && n === 0) {
          // runc kill ID 0 is kill(2)'s existence probe; on the wire 0 means SIGTERM, so ask State instead.
          const st = await client.state(id, { deadlineMs });
          if (st.status === "stopped") throw new ShimError(GrpcStatus.FAILED_PRECONDITION, "container not running", { reason: "CONTAINER_NOT_RUNNING", domain: "runc-shim", metadata: { container_id: id } });
        } else {
          await client.kill(id, n, { deadlineMs, all: opts.all === true });
        }
        if (opts.json) process.stdout.write(`${JSON.stringify({ id, signal: n })}\n`);
      });
    });

  for (const [verb, summary, example] of [
    ["pause", "pause suspends all processes inside the container", "runc-shim pause c1"],
    ["resume", "resumes all processes that have been previously paused", "runc-shim resume c1"],
  ] as const) {
    clientCommand(program, verb, summary, `Freezes (pause) or thaws (resume) the container's cgroup through the server.\n\nEXAMPLES:\n  ${example}`, "30s")
      .action(async (id: string, opts: ClientOptions) => {
        result.code = await runClient(opts, async (client, deadlineMs) => {
          await (verb === "pause" ? client.pause(id, { deadlineMs }) : client.resume(id, { deadlineMs }));
          if (opts.json) process.stdout.write(`${JSON.stringify({ id })}\n`);
        });
      });
  }

  clientCommand(program, "delete", "delete any resources held by the container often used with detached container",
    "A stopped container is destroyed (cgroups, state dir, then its poststop hooks); a created one is killed\n" +
    "first; a running or paused one only with --force. Prints nothing (--json: the init pid it had).\n\n" +
    "EXAMPLES:\n  runc-shim delete c1\n  runc-shim delete --force c1", "30s")
    .option("-f, --force", "forcibly deletes the container if it is still running (uses SIGKILL)")
    .action(async (id: string, opts: ClientOptions & { force?: boolean }) => {
      result.code = await runClient(opts, async (client, deadlineMs) => {
        const pid = await client.delete(id, { deadlineMs, force: opts.force === true });
        if (opts.json) process.stdout.write(`${JSON.stringify({ id, pid })}\n`);
      });
    });

  program
    .command("list")
    .summary("lists the containers of the server's state root")
    .description(
      "lists the containers of the server's state root\n" +
        "The root is the one the server at --address serves (its serve --root); a client cannot choose it.\n" +
        "Prints what `runc list` prints for that root: -f table (the default) its table\n" +
        "(ID PID STATUS BUNDLE CREATED OWNER), -f json the array `runc list -f json` prints, field for\n" +
        "field (runc 1.1.5); a container that fails to load is left out and reported on stderr.\n" +
        "--json prints runc-shim's own shape instead, one line: an array of {id, state} (every field of\n" +
        "State, with createdSeconds and createdNanos) or {id, error: {code, message}} objects.\n\n" +
        "EXAMPLES:\n  runc-shim list\n  runc-shim list -f json\n  runc-shim list -q\n  runc-shim list --json --address /tmp/shim/shim.sock",
    )
    .addOption(new Option("--address <path>", "the runc-shim socket").default(DEFAULT_ADDRESS).env("RUNC_SHIM_ADDRESS"))
    .addOption(new Option("-f, --format <format>", "select one of: table or json (as runc list)").choices(["table", "json"]).default("table").conflicts("json"))
    .option("--json", "print runc-shim's own JSON (one line, load errors included)")
    .option("-q, --quiet", "display only container IDs")
    .option("--timeout <duration>", "deadline of the call (500ms, 10s, 2m)", "30s")
    .action(async (opts: ClientOptions & ListPrintOptions) => {
      result.code = await runClient(opts, async (client, deadlineMs) => printList(await client.list({ deadlineMs }), opts));
    });

  program
    .command("watch")
    .summary("prints status changes of one container, or of all")
    .description(
      "prints status changes of one container, or of all\n" +
        "Prints the current state of the container (or of every container when no id is given), a\n" +
        "`synced` line, then one line per change as it happens: <time> <kind> <id> <status> <pid>,\n" +
        "where kind is initial, synced, appeared, changed or removed. --json prints one JSON object\n" +
        "per line. Runs until interrupted (SIGINT/SIGTERM: exit 0) or the server ends the watch.\n\n" +
        "EXAMPLES:\n  runc-shim watch\n  runc-shim watch c1 --json",
    )
    .argument("[container-id]", "the container id (default: every container)")
    .addOption(new Option("--address <path>", "the runc-shim socket").default(DEFAULT_ADDRESS).env("RUNC_SHIM_ADDRESS"))
    .option("--json", "print one JSON object per line")
    .action(async (id: string | undefined, opts: { address: string; json?: boolean }) => {
      const ac = new AbortController();
      const onSignal = (): void => ac.abort();
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        // A watch has no deadline.
        result.code = await runClient({ ...opts, timeout: undefined }, async (client) => {
          for await (const ev of client.watch(id ?? "", { signal: ac.signal })) {
            process.stdout.write(formatWatchEvent(ev, opts.json === true));
          }
          // Not interrupted here: the server ended the watch (it shuts down on SIGTERM with OK).
          if (!ac.signal.aborted) {
            process.stderr.write(opts.json ? `${JSON.stringify({ code: "OK", message: "the server ended the watch" })}\n` : "runc-shim: the server ended the watch\n");
          }
        });
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
  return program;
}

/**
 * The command line entry: parses `argv`, runs the command and returns the exit code.
 * Usage errors (unknown command or flag, missing argument, bad value) return 2;
 * `--help` and `--version` return 0.
 */
export async function runCli(argv: readonly string[]): Promise<number> {
  const result = { code: EXIT.OK as number };
  const program = buildProgram(result);
  // With --json, commander's own usage errors (unknown option or command, missing argument) are JSON too.
  const json = argv.includes("--json");
  const output = {
    outputError: (text: string, write: (s: string) => void): void =>
      write(json ? `${JSON.stringify(usageError(text.trim().replace(/^error: /, "")))}\n` : text),
  };
  program.configureOutput(output);
  for (const c of program.commands) {
    c.exitOverride();
    c.createHelp = program.createHelp;
    c.configureOutput(output);
  }
  try {
    await program.parseAsync(argv as string[], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return EXIT.OK;
      return EXIT.USAGE;
    }
    throw e;
  }
  return result.code;
}
