/**
 * Issue 12: the CLI where scripts and people meet it — `list -f json` is
 * runc 1.1.5's `runc list -f json` (real runc is the judge, same containers),
 * `--json` keeps runc-shim's own shape, every command's help has EXAMPLES, and
 * failures of the transport are said in the user's terms (the deadline, the
 * socket), not in grpc-js's. Real runc containers, a real server process, the
 * built CLI (`node dist/src/main.js`).
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeBundle, RuncFixture, skipRunc, waitFor } from "../helpers/runc.js";
import { runMain, startServer, type ServerProcess } from "../helpers/server.js";

describe.skipIf(skipRunc())("runc-shim CLI: runc's list formats, help examples, transport errors", () => {
  let fx: RuncFixture;
  let server: ServerProcess;
  const madeDirs: string[] = [];

  beforeAll(async () => {
    fx = new RuncFixture("runc-shim-cli-");
    server = await startServer(fx.root);
  });

  afterAll(async () => {
    await server?.stop();
    if (server !== undefined) fs.rmSync(path.dirname(server.socket), { recursive: true, force: true });
    fx?.cleanup();
    for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** `runc-shim list ...args --address <server>`. */
  const shimList = (...args: string[]) => runMain(["list", ...args, "--address", server.socket]);

  it("list -f json prints exactly what runc list -f json prints, for the same containers", async () => {
    // An empty root: runc prints `null` (Go's encoding of an empty nil slice).
    const empty = await shimList("-f", "json");
    expect([empty.code, empty.stdout, empty.stderr]).toEqual([0, "null\n", ""]);
    expect(fx.runc("list", "-f", "json")).toBe("null\n");

    // Created, running, stopped, paused, and one with annotations Go escapes (`<`, `&`, `>`) and a
    // `bundle` annotation runc drops; plus a dir without state.json, which both leave out.
    const annotated = makeBundle(path.join(fx.dir, "bundle-annotated"));
    const configPath = path.join(annotated, "config.json");
    const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as Record<string, unknown>;
    config.annotations = { "z.last": "v<&>", "a.first": "x=y", "org.empty": "", bundle: "dropped" };
    fs.writeFileSync(configPath, JSON.stringify(config));
    const created = fx.create();
    const running = fx.create();
    fx.runc("start", running);
    const stopped = fx.create();
    fx.runc("start", stopped);
    fx.runc("kill", stopped, "KILL");
    const paused = fx.create();
    fx.runc("start", paused);
    fx.runc("pause", paused);
    const withAnnotations = fx.create(undefined, annotated);
    await waitFor(() => fx.state(stopped).status === "stopped", 5000, "the killed container to stop");
    fs.mkdirSync(path.join(fx.root, "rs-broken"));
    try {
      const shim = await shimList("-f", "json");
      const runc = fx.tryRunc("list", "-f", "json");
      expect([shim.code, runc.status]).toEqual([0, 0]);
      // Byte for byte: field order, omitempty annotations (sorted keys), Go's escapes, one line.
      expect(shim.stdout).toBe(runc.stdout);
      const parsed = JSON.parse(shim.stdout) as Array<Record<string, unknown>>;
      expect(parsed).toEqual(JSON.parse(runc.stdout));
      expect(parsed.map((c) => c.id)).toEqual([created, running, stopped, paused, withAnnotations].sort());
      const byId = new Map(parsed.map((c) => [c.id, c]));
      expect(Object.keys(byId.get(created)!)).toEqual(["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]);
      expect(Object.keys(byId.get(withAnnotations)!)).toEqual(["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "owner"]);
      expect(byId.get(withAnnotations)!.annotations).toEqual({ "a.first": "x=y", "org.empty": "", "z.last": "v<&>" });
      expect(shim.stdout).toContain('"z.last":"v\\u003c\\u0026\\u003e"');
      expect(byId.get(stopped)).toMatchObject({ pid: 0, status: "stopped", owner: "root", ociVersion: "1.0.2-dev" });
      expect(byId.get(paused)).toMatchObject({ status: "paused", pid: fx.initPid(paused) });
      // The broken dir: left out of stdout, reported on stderr (as runc does, in runc-shim's words).
      expect(runc.stderr).toContain("load container rs-broken: container does not exist");
      expect(shim.stderr).toBe("runc-shim: load container rs-broken: container does not exist (reason CONTAINER_NOT_EXISTS)\n");

      // -q wins over -f, as in runc.
      const quiet = await shimList("-q", "-f", "json");
      expect(quiet.stdout).toBe(fx.runc("list", "-q", "-f", "json"));
      // -f table is the default table.
      const table = await shimList("-f", "table");
      expect(table.stdout).toBe((await shimList()).stdout);
      expect(table.stdout).toBe(fx.runc("list", "-f", "table"));

      // --json keeps runc-shim's own shape: {id, state} with createdSeconds/createdNanos, {id, error}.
      const own = await shimList("--json");
      const entries = JSON.parse(own.stdout) as Array<{ id: string; state?: Record<string, unknown>; error?: unknown }>;
      expect(entries.find((e) => e.id === "rs-broken")).toEqual({
        id: "rs-broken",
        error: { code: "CONTAINER_NOT_EXISTS", message: "container does not exist" },
      });
      expect(entries.find((e) => e.id === created)?.state).toMatchObject({ id: created, status: "created", createdSeconds: expect.any(Number), createdNanos: expect.any(Number) });

      // Bad usage: an unknown format (runc: `invalid format option`, exit 1) and -f with --json.
      const yaml = await shimList("-f", "yaml");
      expect([yaml.code, yaml.stdout]).toEqual([2, ""]);
      expect(yaml.stderr).toContain("argument 'yaml' is invalid. Allowed choices are table, json.");
      const both = await shimList("-f", "json", "--json");
      expect(both.code).toBe(2);
      expect(both.stderr).toContain("cannot be used with option '--json'");
    } finally {
      fs.rmdirSync(path.join(fx.root, "rs-broken"));
      fx.runc("resume", paused);
      for (const id of [created, running, stopped, paused, withAnnotations]) {
        fx.runc("delete", "-f", id);
        fx.forget(id);
      }
    }
  }, 60_000);

  it("every command's help has EXAMPLES of itself; list's speaks of the server's state root", async () => {
    const commands = ["serve", "state", "start", "list", "watch", "create", "kill", "pause", "resume", "delete"];
    const top = await runMain(["--help"]);
    expect(top.stdout).toMatch(/\n {3}EXAMPLES:\n {5}runc-shim serve /);
    for (const cmd of commands) {
      const help = await runMain([cmd, "--help"]);
      expect([cmd, help.code]).toEqual([cmd, 0]);
      const examples = help.stdout.split("EXAMPLES:\n")[1]?.split("\n\n")[0] ?? "";
      const lines = examples.split("\n").filter((l) => l.trim() !== "");
      expect(lines.length, `${cmd} --help has EXAMPLES`).toBeGreaterThanOrEqual(1);
      for (const l of lines) expect(l, `${cmd} example`).toMatch(new RegExp(`^ {5}runc-shim ${cmd}( |$)`));
    }
    const list = await runMain(["list", "--help"]);
    expect(list.stdout).not.toContain("the given root");
    expect(list.stdout).toMatch(/^NAME:\n {3}runc-shim list - lists the containers of the server's state root\n/);
    expect(list.stdout).toMatch(/-f, --format <format> +select one of: table or json/);
  });

  it("says what happened when the transport fails: the deadline, the socket, why", async () => {
    // A socket that accepts and never answers: the deadline passes on the client's side.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-cli-"));
    madeDirs.push(dir);
    const silentPath = path.join(dir, "silent.sock");
    const held: net.Socket[] = [];
    const silent = net.createServer((c) => held.push(c));
    await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
    try {
      const slow = await runMain(["state", "c1", "--address", silentPath, "--timeout", "300ms"]);
      expect([slow.code, slow.stdout, slow.stderr]).toEqual([1, "", `runc-shim: DEADLINE_EXCEEDED: no answer from the server at ${silentPath} within 300ms (--timeout)\n`]);
      const bare = await runMain(["list", "--address", `unix://${silentPath}`, "--timeout", "1"]);
      expect(bare.stderr).toBe(`runc-shim: DEADLINE_EXCEEDED: no answer from the server at ${silentPath} within 1ms (--timeout)\n`);
      const json = await runMain(["start", "c1", "--address", silentPath, "--timeout", "200ms", "--json"]);
      expect([json.code, JSON.parse(json.stderr)]).toEqual([
        1,
        { code: "DEADLINE_EXCEEDED", message: `no answer from the server at ${silentPath} within 200ms (--timeout)`, reason: null, metadata: {} },
      ]);
    } finally {
      for (const c of held) c.destroy();
      await new Promise((r) => silent.close(r));
    }

    // The real server with --timeout 1: whatever grpc-js's timings were, the user reads the deadline.
    const real = await runMain(["state", "c1", "--address", server.socket, "--timeout", "1"]);
    expect(real.code).toBe(1);
    expect(real.stderr).not.toMatch(/name resolution|LB pick|Deadline exceeded after/);
    if (real.stderr.includes("DEADLINE_EXCEEDED")) {
      expect(real.stderr).toBe(`runc-shim: DEADLINE_EXCEEDED: no answer from the server at ${server.socket} within 1ms (--timeout)\n`);
    } else {
      // It answered within 1 ms after all: the server's own error, unchanged.
      expect(real.stderr).toBe("runc-shim: NOT_FOUND: container does not exist (reason CONTAINER_NOT_EXISTS)\n");
    }

    // No socket at the path.
    const missing = path.join(dir, "no-such", "shim.sock");
    const none = await runMain(["state", "c1", "--address", missing]);
    expect([none.code, none.stderr]).toEqual([
      1,
      `runc-shim: UNAVAILABLE: no server at ${missing}: the socket does not exist (is runc-shim serving there? set --address or RUNC_SHIM_ADDRESS)\n`,
    ]);
    // Something at the path that nobody listens on.
    const stale = path.join(dir, "stale.sock");
    fs.writeFileSync(stale, "");
    const refused = await runMain(["list", "--address", stale]);
    expect(refused.stderr).toBe(`runc-shim: UNAVAILABLE: no server at ${stale}: nothing is listening on that socket (a server that was killed leaves it behind)\n`);
    // A user who may not reach the socket (its dir is 0700 root, the socket 0600).
    const nobody = await runMain(["state", "c1", "--address", server.socket], { uid: 65534, gid: 65534 });
    expect(nobody.stderr).toBe(
      `runc-shim: UNAVAILABLE: permission denied connecting to ${server.socket} (the socket is root's: run as root, or as a member of the server's --socket-group)\n`,
    );
    // A server that answers keeps its own message.
    const known = await runMain(["state", "rs-cli-missing", "--address", server.socket]);
    expect(known.stderr).toBe("runc-shim: NOT_FOUND: container does not exist (reason CONTAINER_NOT_EXISTS)\n");
  }, 60_000);
});
