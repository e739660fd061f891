import fs from "node:fs";
import { EXHAUSTION_ERRNOS, RuntimeError, describeError, isErrno } from "./errors.js";
import { heldFiles, openReleasingHeld } from "./held-files.js";

/** What runc reads from `/proc/PID/stat` (runc 1.1.5 `libcontainer/system/proc.go` Stat_t). */
export interface ProcStat {
  /** The command name: between the first `(` and the last `)`. */
  name: string;
  /** The one-letter process state (field 3): R, S, D, T, t, Z, X, ... */
  state: string;
  /** Start time (field 22), in clock ticks since boot. */
  startTime: number;
}

/**
 * Parses the text of `/proc/PID/stat` the way runc does
 * (runc 1.1.5 `libcontainer/system/proc.go` parseStat): the name is found
 * between the first `(` and the **last** `)`, so names containing spaces or `)`
 * cannot shift the fields; the state is the character two past that `)`; the
 * start time is field 22, the 20th space-separated field after the `)`.
 *
 * @returns the parsed stat, or `undefined` when the text is malformed (fewer
 *   than 20 fields after the name, or a start time that is not a decimal number)
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open === -1 || close < open || text.charCodeAt(close + 1) !== 0x20) return undefined;
  const state = text.charAt(close + 2);
  if (state === "" || text.charCodeAt(close + 3) !== 0x20) return undefined;
  // Skip to field 22: the 19th space after the state field (no split over all 52 fields).
  let at = close + 3;
  for (let field = 4; field < 22; field++) {
    at = text.indexOf(" ", at + 1);
    if (at === -1) return undefined;
  }
  let end = at + 1;
  while (end < text.length && text.charCodeAt(end) >= 0x30 && text.charCodeAt(end) <= 0x39) end++;
  const next = text.charCodeAt(end);
  if (end === at + 1 || !(end === text.length || next === 0x20 || next === 0x0a)) return undefined;
  return { name: text.slice(open + 1, close), state, startTime: Number(text.slice(at + 1, end)) };
}

// One reusable buffer: the reads below are synchronous, so it is never shared.
const STAT_BUFFER = Buffer.allocUnsafe(4096);

/**
 * Running out of fds or memory is the server's state, not a sign that the
 * process is gone: it is thrown (`ResourceExhausted`), never read as "not alive".
 */
function throwIfExhausted(e: unknown, file: string): void {
  if (isErrno(e, ...EXHAUSTION_ERRNOS)) throw new RuntimeError("SystemError", `open ${file}: ${describeError(e)}`, { cause: e });
}

/**
 * Reads and parses `/proc/<pid>/stat`: one pread(2) through the fd
 * {@link heldFiles} holds for it, else one open, one read, and the fd held for
 * the next call (synchronous: procfs answers from memory). A held fd reads
 * ESRCH once its process is reaped (a later process with the same pid is
 * another file); the path is then opened anew.
 *
 * @param pid a process id; anything <= 0 or not an integer reads as absent
 * @returns the parsed stat, or `undefined` when the process does not exist or
 *   the file cannot be read or parsed (runc treats all of these as "not alive")
 * @throws {RuntimeError} `ResourceExhausted` when the open or read fails with
 *   EMFILE, ENFILE or ENOMEM (runc would read "stopped"; a wrong status is worse than an error)
 */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const file = `/proc/${pid}/stat`;
  const held = heldFiles.read(file, STAT_BUFFER, STAT_BUFFER.length);
  if (held !== undefined) return parseProcStat(STAT_BUFFER.toString("latin1", 0, held));
  // A stopped container's init is gone: say so without the failed open's exception (its stack trace
  // costs ~10 µs; the lookup ~1). A process that dies between the two is the open's ENOENT below.
  if (!fs.existsSync(file)) return undefined;
  let fd: number;
  try {
    fd = openReleasingHeld(file, fs.constants.O_RDONLY);
  } catch (e) {
    throwIfExhausted(e, file);
    return undefined;
  }
  let keep = false;
  try {
    const n = fs.readSync(fd, STAT_BUFFER, 0, STAT_BUFFER.length, 0);
    const stat = parseProcStat(STAT_BUFFER.toString("latin1", 0, n));
    keep = stat !== undefined && heldFiles.keep(file, fd);
    return stat;
  } catch (e) {
    throwIfExhausted(e, file);
    return undefined;
  } finally {
    if (!keep) fs.closeSync(fd);
  }
}

/**
 * The key under which {@link heldFiles} holds the `/proc/<pid>/statm` of a
 * process checked to be the init with start time `startTime`: the path, then
 * `@` and that start time (another record with the same pid and another start
 * time has a key of its own; `dropUnder("/proc/<pid>")` drops it).
 */
export function heldStatmKey(pid: number, startTime: number): string {
  return `/proc/${pid}/statm@${startTime}`;
}

// One reusable buffer: the reads below are synchronous. statm is seven numbers on one line.
const STATM_BUFFER = Buffer.allocUnsafe(128);

/**
 * `/proc/<pid>/statm` as the kernel writes it for a task without a memory map
 * (`fs/proc/array.c` proc_pid_statm: `0 0 0 0 0 0 0`): a zombie, a process
 * that is exiting and has released its memory (`do_exit` → `exit_mm`; the
 * init of a pid namespace stays so, in state S, until every other process of
 * its namespace is reaped), or a kernel thread. A live user process that is
 * not exiting — running, sleeping, stopped, or runc's init blocked on the exec
 * fifo — always has one, so its first field (pages) is not 0.
 */
function noMemoryMap(buf: Buffer, n: number): boolean {
  return n >= 2 && buf[0] === 0x30 && buf[1] === 0x20;
}

/**
 * Whether the init process recorded in state.json is alive
 * (runc 1.1.5 `libcontainer/container_linux.go` runType; main `hasInit`):
 * `/proc/PID/stat` parses, its start time equals `init_process_start` (so a
 * reused pid reads as dead), and its state is neither `Z` (zombie) nor `X` (dead).
 * A stopped (`T`) process counts as alive.
 *
 * Once a process has been found alive so, later calls first read its
 * `/proc/<pid>/statm` through an fd held for it (~1.3 µs a pread instead of
 * ~3.5 µs for `stat`, which the kernel builds from ~50 fields, and nothing to
 * parse). An fd of `/proc/<pid>/...` stays bound to the process it was opened
 * for and reads ESRCH once that process is reaped (a later process given the
 * same pid is another file); a statm that is not all zeros means that very
 * process still has its memory, so it is neither a zombie nor dead: alive, as
 * runc would say. All zeros (a zombie, an exit in progress — which for a pid
 * namespace's init lasts until its namespace's last process is reaped, in
 * state S, alive for runc —, a kernel thread) or ESRCH: `/proc/<pid>/stat` is
 * read and runc's rule decides. The statm fd is opened after the first check
 * and kept only when a second check (through the held `stat` fd, bound to the
 * process checked) still finds that process: it then had the pid all along, so
 * the statm fd is its. It replaces the held `stat` fd, which is closed (one
 * held fd per live init, as before).
 *
 * @param pid `init_process_pid`
 * @param startTime `init_process_start`, clock ticks since boot
 * @throws {RuntimeError} `ResourceExhausted` as {@link readProcStat}
 */
export function isInitAlive(pid: number, startTime: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  const key = heldStatmKey(pid, startTime);
  const n = heldFiles.read(key, STATM_BUFFER, STATM_BUFFER.length);
  if (n !== undefined && !noMemoryMap(STATM_BUFFER, n)) return true;
  if (!isThatInitAlive(readProcStat(pid), startTime)) return false;
  if (n === undefined) holdStatm(pid, startTime, key);
  return true;
}

function isThatInitAlive(st: ProcStat | undefined, startTime: number): boolean {
  return st !== undefined && st.startTime === startTime && st.state !== "Z" && st.state !== "X";
}

/** Opens and holds the statm of the init just found alive (see {@link isInitAlive}); any failure holds nothing. */
function holdStatm(pid: number, startTime: number, key: string): void {
  let fd: number;
  try {
    fd = openReleasingHeld(`/proc/${pid}/statm`, fs.constants.O_RDONLY);
  } catch {
    return; // the stat fd (or a fresh open) answers the next call
  }
  let keep = false;
  try {
    keep = isThatInitAlive(readProcStat(pid), startTime) && heldFiles.keep(key, fd);
  } catch {
    keep = false;
  } finally {
    if (!keep) fs.closeSync(fd);
  }
  if (keep) heldFiles.drop(`/proc/${pid}/stat`);
}
