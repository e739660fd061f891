import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { execFileSync } from "node:child_process";

/** Longest Unix socket path Linux accepts, in bytes (`sun_path` is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;
/** How long the stale-socket probe waits for a connection, in ms (containerd's CanConnect uses 100 ms). */
export const PROBE_TIMEOUT_MS = 200;

/** A socket address that cannot be used; `message` says why. Exit code 2 (bad usage or config). */
export class SocketAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SocketAddressError";
  }
}

/**
 * Turns `--address` into a filesystem path. Accepts `/path`, a relative path
 * (made absolute), `unix:/path` and `unix:///path`. Refuses abstract sockets
 * (`@name`, `unix-abstract:`): they have no permissions and are reachable from
 * other network namespaces (CVE-2020-15257, containerd). Refuses paths longer
 * than {@link MAX_SOCKET_PATH_BYTES} bytes (Node would silently truncate them).
 *
 * @throws {SocketAddressError}
 */
export function socketPathOf(address: string): string {
  if (address === "") throw new SocketAddressError("socket address is empty");
  if (address.startsWith("@") || address.startsWith("unix-abstract:") || address.includes("\0")) {
    throw new SocketAddressError(
      `abstract socket address ${JSON.stringify(address)} refused: abstract sockets have no file permissions and are reachable from other network namespaces (CVE-2020-15257); give a filesystem path`,
    );
  }
  let p = address;
  if (p.startsWith("unix://")) p = p.slice("unix://".length);
  else if (p.startsWith("unix:")) p = p.slice("unix:".length);
  else if (/^[a-z][a-z0-9+.-]*:/i.test(p) && !p.startsWith("/") && !p.startsWith(".")) {
    throw new SocketAddressError(`socket address ${JSON.stringify(address)} is not a filesystem path (only unix sockets are served)`);
  }
  if (p === "" || p.startsWith("@")) throw new SocketAddressError(`socket address ${JSON.stringify(address)} has no filesystem path`);
  const abs = path.resolve(p);
  const bytes = Buffer.byteLength(abs);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new SocketAddressError(
      `socket path ${abs} is ${bytes} bytes, longer than the ${MAX_SOCKET_PATH_BYTES}-byte limit of a Unix socket address; choose a shorter path`,
    );
  }
  return abs;
}

/** Whether something accepts connections on the socket at `socketPath`. */
export function canConnect(socketPath: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    const done = (alive: boolean): void => {
      clearTimeout(timer);
      c.destroy();
      resolve(alive);
    };
    // A listener that does not accept within the timeout is still a listener.
    const timer = setTimeout(() => done(true), timeoutMs);
    c.once("connect", () => done(true));
    c.once("error", (e: NodeJS.ErrnoException) => done(e.code !== "ECONNREFUSED" && e.code !== "ENOENT"));
  });
}

/**
 * Makes `socketPath` ready for a bind, as containerd's `NewSocket` does: the
 * parent dir is created 0700 when missing; a leftover socket file with no
 * listener (after a crash or SIGKILL) is removed; a live listener is never
 * touched; anything that is not a socket is refused, not removed.
 *
 * @throws {SocketAddressError} `address in use by a running server: <path>`, or a non-socket at the path
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  try {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new SocketAddressError(`cannot create the socket's directory ${path.dirname(socketPath)}: ${(e as Error).message}`);
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(socketPath, { throwIfNoEntry: false });
  } catch (e) {
    throw new SocketAddressError(`cannot use socket path ${socketPath}: ${(e as Error).message}`);
  }
  if (st === undefined) return;
  if (!st.isSocket()) {
    throw new SocketAddressError(`${socketPath} exists and is not a socket; refusing to remove it`);
  }
  if (await canConnect(socketPath)) {
    throw new SocketAddressError(`address in use by a running server: ${socketPath}`);
  }
  fs.rmSync(socketPath, { force: true });
}

/**
 * Listens on a Unix socket path with umask 0177 for the bind, so the socket is
 * never reachable by others, not even between bind and the chmod of
 * {@link secureSocket}. The umask is restored once the bind is done.
 *
 * @throws Error the listener's bind error (EADDRINUSE, EACCES, ...)
 */
export function listenUnix(listener: net.Server, socketPath: string): Promise<void> {
  const previous = process.umask(0o177);
  return new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => {
      process.umask(previous);
      reject(e);
    };
    listener.once("error", onError);
    listener.listen(socketPath, () => {
      process.umask(previous);
      listener.removeListener("error", onError);
      resolve();
    });
  });
}

/**
 * Sets the socket's mode right after bind: 0600, or 0660 with group `group`
 * (a group name or numeric gid) when given; then a private parent dir owned by
 * us also gets that group and mode 0710, so the group can reach the socket.
 *
 * @throws Error when the group does not exist or chmod/chown fails
 */
export function secureSocket(socketPath: string, group?: string): void {
  if (group === undefined) {
    fs.chmodSync(socketPath, 0o600);
    return;
  }
  const gid = /^\d+$/.test(group) ? Number(group) : lookupGroup(group);
  const uid = process.getuid?.() ?? 0;
  fs.chownSync(socketPath, uid, gid);
  fs.chmodSync(socketPath, 0o660);
  // The group must also reach the socket: a private parent dir of ours (0700, as created above)
  // becomes 0710 for that group. A shared or someone else's dir is left as it is.
  const dir = path.dirname(socketPath);
  const st = fs.statSync(dir);
  if (st.uid === uid && (st.mode & 0o077) === 0) {
    fs.chownSync(dir, uid, gid);
    fs.chmodSync(dir, 0o710);
  }
}

/** Resolves a group name to its gid through the system's group database (`getent group`). */
export function lookupGroup(name: string): number {
  let line: string;
  try {
    line = execFileSync("getent", ["group", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    throw new SocketAddressError(`--socket-group: no such group ${JSON.stringify(name)}`);
  }
  const gid = Number(line.split(":")[2]);
  if (!Number.isInteger(gid)) throw new SocketAddressError(`--socket-group: cannot read the gid of ${JSON.stringify(name)}`);
  return gid;
}
