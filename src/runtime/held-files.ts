import fs from "node:fs";
import { isErrno } from "./errors.js";

/**
 * Most fds {@link heldFiles} keeps open, whatever the fd limit: the stat and
 * freezer files of 2,048 containers (a Watch following 1,000 live v1
 * containers reads ~2,000 of them; with 1,024 the least recently read were
 * closed and opened again on every poll, measured).
 */
export const HELD_FILES_MAX = 4096;

/**
 * The open-file soft limit of this process (`Max open files` of
 * `/proc/self/limits`), or `undefined` when it cannot be read or is unlimited.
 */
export function openFileSoftLimit(limitsFile = "/proc/self/limits"): number | undefined {
  try {
    const line = fs.readFileSync(limitsFile, "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined; // no procfs
  }
}

/**
 * Read-only files that status derivation reads on every State, kept open
 * between calls and read again with pread(2) at offset 0: a container's
 * `/proc/<pid>/stat` (or, once its init was found alive, its `statm`: see
 * `isInitAlive` in ./proc.ts) and its cgroup freezer files. procfs and cgroupfs make a
 * file's content anew on every read at offset 0, so a held fd reads what a
 * fresh open would, without the open, the close and (for cgroupfs) the statfs
 * that checks the fs type: ~20 µs of the ~150 µs of server CPU a State cost
 * at 64 calls in flight (`node dist/bench/profile.js`).
 *
 * A held fd stays bound to the very object it opened: once its process is
 * reaped, `/proc/<pid>/stat` reads ESRCH (a later process given the same pid is
 * another file), and once its cgroup is removed, its files read ENODEV (an open
 * file does not keep rmdir(2) from removing a cgroup). Any error drops the fd,
 * and the caller opens the path again, as it would with nothing held.
 *
 * Bounded: at most `max` fds, the least recently read closed first; an fd is
 * close-on-exec (libuv opens every fd so), so `runc` and hooks never inherit
 * one. When an open fails with EMFILE or ENFILE, the caller closes every held
 * fd ({@link HeldFiles.clear}) and tries again.
 */
export class HeldFiles {
  // Insertion order is recency order: a read moves its file to the end.
  private readonly fds = new Map<string, number>();

  /** @param max most fds held at once; 0 holds none */
  constructor(readonly max: number) {}

  /** Fds held now. */
  get size(): number {
    return this.fds.size;
  }

  /**
   * Reads up to `maxBytes` into `buf` from offset 0 of the fd held for `file`.
   * @returns the bytes read, or `undefined` when no fd is held for `file` or the
   *   read failed (the fd is then closed and forgotten: the caller opens `file` anew)
   */
  read(file: string, buf: Buffer, maxBytes: number): number | undefined {
    const fd = this.fds.get(file);
    if (fd === undefined) return undefined;
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, maxBytes, 0);
    } catch {
      this.drop(file);
      return undefined;
    }
    this.fds.delete(file);
    this.fds.set(file, fd);
    return n;
  }

  /**
   * Holds `fd`, just opened for `file` and read once, for later {@link read}s;
   * the least recently read fd is closed when more than `max` would be held.
   * @returns false when nothing is held (`max` 0): the caller closes `fd`
   */
  keep(file: string, fd: number): boolean {
    if (this.max <= 0) return false;
    this.drop(file);
    this.fds.set(file, fd);
    while (this.fds.size > this.max) {
      const oldest = this.fds.keys().next().value as string;
      this.drop(oldest);
    }
    return true;
  }

  /** Closes and forgets the fd held for `file`, if any. */
  drop(file: string): void {
    const fd = this.fds.get(file);
    if (fd === undefined) return;
    this.fds.delete(file);
    try {
      fs.closeSync(fd);
    } catch {
      // EBADF cannot happen (only this class closes these fds); EINTR/EIO on close: the fd is gone anyway
    }
  }

  /** Closes and forgets every held fd whose file lies under `dir` (a container's cgroup, `/proc/<pid>`). */
  dropUnder(dir: string): void {
    const prefix = dir.endsWith("/") ? dir : `${dir}/`;
    for (const file of [...this.fds.keys()]) if (file.startsWith(prefix)) this.drop(file);
  }

  /** Closes every held fd. @returns how many were closed */
  clear(): number {
    const n = this.fds.size;
    for (const file of [...this.fds.keys()]) this.drop(file);
    return n;
  }

  /** The files held now, least recently read first (for tests and diagnostics). */
  files(): string[] {
    return [...this.fds.keys()];
  }
}

/**
 * Opens `file` with `flags`; when that fails with EMFILE or ENFILE and
 * {@link heldFiles} held fds, closes them all and tries once more.
 * @throws what `fs.openSync` throws
 */
export function openReleasingHeld(file: string, flags: number): number {
  try {
    return fs.openSync(file, flags);
  } catch (e) {
    if (isErrno(e, "EMFILE", "ENFILE") && heldFiles.clear() > 0) return fs.openSync(file, flags);
    throw e;
  }
}

/**
 * The process's held files: up to a quarter of the open-file soft limit, at
 * most {@link HELD_FILES_MAX} (the other fds are for connections, state.json,
 * runc and Watch; `--max-connections` takes up to half).
 */
export const heldFiles = new HeldFiles(Math.min(HELD_FILES_MAX, Math.floor((openFileSoftLimit() ?? 1024) / 4)));
