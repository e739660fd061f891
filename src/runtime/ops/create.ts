import fs from "node:fs";
import path from "node:path";
import type { StateRoot } from "../container.js";
import { RuntimeError, describeError, isErrno } from "../errors.js";
import { MSG } from "../messages.js";
import { runcCreate } from "../runc-cli.js";
import type { OpContext } from "./context.js";
import { destroy, killAndWait, removeStateDir } from "./destroy.js";

/** What Create is asked (the fields of `CreateRequest`). */
export interface CreateRequest {
  /** Absolute bundle dir holding config.json. */
  bundle: string;
  /** Must be false: runc-shim provides no console socket. */
  terminal: boolean;
  /** Paths opened for the init process's stdio; `""` means /dev/null. */
  stdin: string;
  stdout: string;
  stderr: string;
}

/** Options of {@link createContainer}. */
export interface CreateOptions extends OpContext {
  /** The runc binary (`--runc`). */
  runc: string;
  /** Bound of runc create, in ms (`--create-timeout`). */
  timeoutMs: number;
  /** Told when runc's run ends: its duration in seconds and the error it ended with, if any (see `RuncCreateOptions.onEnd`). */
  onRuncEnd?: (seconds: number, error: RuntimeError | undefined) => void;
}

/** Largest config.json read to check `process.terminal`, in bytes. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/**
 * Checks a bundle before runc runs: an absolute path to a directory with a
 * regular `config.json` whose `process.terminal` is not true.
 *
 * @throws {RuntimeError} `InvalidArgument` saying what is wrong
 */
export function checkBundle(bundle: string, terminal: boolean): void {
  const bad = (why: string): never => {
    throw new RuntimeError("InvalidArgument", why);
  };
  if (terminal) bad("terminal is not supported: runc-shim provides no console socket (runc create --console-socket)");
  if (bundle === "") bad("bundle cannot be empty");
  if (!path.isAbsolute(bundle)) bad(`bundle ${JSON.stringify(bundle)} is not an absolute path`);
  const st = fs.statSync(bundle, { throwIfNoEntry: false });
  if (st === undefined) bad(`bundle ${bundle} does not exist`);
  if (!st!.isDirectory()) bad(`bundle ${bundle} is not a directory`);
  const config = path.join(bundle, "config.json");
  let text: string;
  try {
    const fd = fs.openSync(config, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const cst = fs.fstatSync(fd);
      if (!cst.isFile()) bad(`${config} is not a regular file`);
      if (cst.size > MAX_CONFIG_BYTES) bad(`${config} is ${cst.size} bytes, more than ${MAX_CONFIG_BYTES}`);
      text = fs.readFileSync(fd, "utf8");
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if (e instanceof RuntimeError) throw e;
    return bad(isErrno(e, "ENOENT") ? `bundle ${bundle} has no config.json` : `${config}: ${describeError(e)}`);
  }
  let spec: { process?: { terminal?: unknown } } | undefined;
  try {
    spec = JSON.parse(text) as typeof spec;
  } catch {
    return; // runc reports a malformed config.json in its own words
  }
  if (spec?.process?.terminal === true) {
    bad(`${config} sets process.terminal: runc-shim provides no console socket; set it to false`);
  }
}

/** Opens the init process's stdin (`write` false) or stdout/stderr: files or /dev/null, FIFOs read-write so they never block. */
function openStdio(what: string, file: string, write: boolean): number {
  if (file === "") return fs.openSync("/dev/null", write ? "w" : "r");
  if (!path.isAbsolute(file)) throw new RuntimeError("InvalidArgument", `${what} ${JSON.stringify(file)} is not an absolute path`);
  // The shim's own fds are not the container's to have: /proc/self/fd/2 is the server's log.
  if (/^\/(proc|dev\/fd)\//.test(path.normalize(file)) || /^\/dev\/std(in|out|err)$/.test(path.normalize(file))) {
    throw new RuntimeError("InvalidArgument", `${what} ${file}: paths under /proc, /dev/fd and /dev/std* name the shim's own files; not opened`);
  }
  const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_APPEND, O_NONBLOCK, O_NOCTTY } = fs.constants;
  try {
    if (fs.statSync(file, { throwIfNoEntry: false })?.isFIFO()) return fs.openSync(file, O_RDWR | O_NOCTTY);
    let fd: number;
    try {
      fd = fs.openSync(file, (write ? O_WRONLY | O_CREAT | O_APPEND : O_RDONLY) | O_NONBLOCK | O_NOCTTY, 0o600);
    } catch (e) {
      if (isErrno(e, "ENXIO")) return fs.openSync(file, O_RDWR | O_NOCTTY); // a FIFO made meanwhile, with no reader
      throw e;
    }
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) {
      fs.closeSync(fd);
      throw new RuntimeError("InvalidArgument", `${what} ${file} is a directory`);
    }
    if (!st.isFIFO() && !st.isCharacterDevice()) return fd; // O_NONBLOCK means nothing to a regular file
    // Reopen without O_NONBLOCK, so the init's reads and writes block as usual.
    try {
      return fs.openSync(`/proc/self/fd/${fd}`, (st.isFIFO() ? O_RDWR : write ? O_WRONLY | O_APPEND : O_RDONLY) | O_NOCTTY);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if (e instanceof RuntimeError) throw e;
    throw new RuntimeError("InvalidArgument", `${what} ${file}: ${describeError(e)}`, { cause: e });
  }
}

/**
 * Creates a container through runc (`runc create`; the one operation that
 * runs runc, since only runc's init can build a container's namespaces):
 * checks the id and the bundle, takes the container's lock, refuses an id
 * that exists, opens the stdio paths, runs runc ({@link runcCreate}) and
 * answers with the init pid once the init waits on the exec fifo. Two Creates
 * of one id at once: one succeeds, the other gets `ContainerExists`. Aborted
 * (the client's deadline or cancellation): runc is left to finish, then what it
 * created is destroyed (its init killed, its cgroups and state dir removed), so
 * nothing was created. Past `timeoutMs` (runc hung): runc is killed and what it
 * left is removed as far as state.json records it.
 *
 * @returns the init pid
 * @throws {RuntimeError} `InvalidIdFormat`; `InvalidArgument` (bundle, terminal, stdio paths);
 *   `ContainerExists` (`container with given ID already exists`); `RuncNotFound`; `RuncFailed` (runc's
 *   message); `DeadlineExceeded` / `Cancelled`; `ConfigInvalid` (root unusable)
 */
export async function createContainer(root: StateRoot, id: string, req: CreateRequest, opts: CreateOptions): Promise<number> {
  const stateDir = root.stateDirOf(id);
  checkBundle(req.bundle, req.terminal);
  return root.locks.run(stateDir, opts.signal, async () => {
    if (fs.existsSync(stateDir)) throw new RuntimeError("ContainerExists", MSG.exists, { containerId: id });
    const fds: number[] = [];
    try {
      // One at a time: an fd opened before a later open fails is closed below too.
      fds.push(openStdio("stdin", req.stdin, false));
      fds.push(openStdio("stdout", req.stdout, true));
      fds.push(openStdio("stderr", req.stderr, true));
      await runcCreate({
        runc: opts.runc,
        root: root.path,
        bundle: req.bundle,
        id,
        stdio: [fds[0]!, fds[1]!, fds[2]!],
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
        onEnd: opts.onRuncEnd,
      });
    } catch (e) {
      if (e instanceof RuntimeError && (e.kind === "DeadlineExceeded" || e.kind === "Cancelled")) await removeLeftovers(root, id, stateDir, opts);
      throw e instanceof RuntimeError && e.containerId === undefined ? new RuntimeError(e.kind, e.message, { containerId: id, cause: e.cause }) : e;
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
    root.changed(id);
    const c = root.load(id);
    // Derived once here, the status opens (and holds) the files the Start that follows reads; an error
    // here is the State's or Start's to report, not Create's (the container exists).
    try {
      root.status(c);
    } catch {
      // reported by the next call on the container
    }
    return c.record.initProcessPid;
  });
}

/** After an aborted create: kill the init and destroy the container if runc got as far as state.json, else remove the dir. */
async function removeLeftovers(root: StateRoot, id: string, stateDir: string, ctx: OpContext): Promise<void> {
  try {
    const c = root.load(id);
    await killAndWait(root, c);
    await destroy(root, c, ctx);
  } catch (e) {
    if (!(e instanceof RuntimeError && e.kind === "ContainerNotExists")) ctx.warn?.("cleaning up after an aborted create failed", { err: describeError(e) });
    if (fs.existsSync(stateDir)) {
      try {
        removeStateDir(root, stateDir, id);
      } catch (e2) {
        ctx.warn?.("cannot remove the state dir an aborted create left", { err: describeError(e2) });
      }
    }
  }
  root.changed(id);
}
