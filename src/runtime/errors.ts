/**
 * The domain error of runc-shim: a string kind named after libcontainer's error
 * codes (runc v1.0.0 `libcontainer/error.go`; since v1.1 sentinel errors in the
 * same file), plus the two ways a call ends without an answer.
 *
 * Domain code throws {@link RuntimeError}; exactly one module
 * (`src/server/errors.ts`) maps a kind to a gRPC status code. This module never
 * imports grpc-js.
 */

/**
 * The kinds of failure the runtime reports.
 *
 * - `InvalidIdFormat`: the container id breaks the id rule (gRPC INVALID_ARGUMENT).
 * - `ContainerNotExists`: no state.json for the id (NOT_FOUND).
 * - `ConfigInvalid`: the state root is missing, not a directory, or unreadable (FAILED_PRECONDITION).
 * - `SystemError`: corrupt state.json or an unexpected I/O error (INTERNAL).
 * - `ContainerRunning` / `ContainerStopped` / `ContainerPaused`: Start in the wrong status (FAILED_PRECONDITION).
 * - `ContainerNotRunning`: Kill of a stopped container, Pause of one not created or running (FAILED_PRECONDITION).
 * - `ContainerNotPaused`: Resume of a container that is not paused (FAILED_PRECONDITION).
 * - `ContainerNotStopped`: Delete of a running or paused container without force, or an init that
 *   outlived Delete's wait (FAILED_PRECONDITION).
 * - `ContainerExists`: Create of an id that exists (ALREADY_EXISTS; libcontainer's IdInUse).
 * - `InvalidArgument`: a request field that is not valid: a signal out of range, a bundle that is
 *   not an absolute directory with a config.json, a terminal asked for (INVALID_ARGUMENT).
 * - `RuncFailed`: `runc create` failed; the message is runc's own (FAILED_PRECONDITION).
 * - `RuncNotFound`: the runc binary Create needs cannot be run (FAILED_PRECONDITION).
 * - `NoFreezer`: the container has no freezer cgroup to pause or resume (FAILED_PRECONDITION).
 * - `ResourceExhausted`: the server is out of something that is not the container's fault: file
 *   descriptors (EMFILE, ENFILE), memory (ENOMEM), or a limit on streams (RESOURCE_EXHAUSTED).
 * - `DeadlineExceeded` / `Cancelled`: the caller's deadline passed or it cancelled before anything changed.
 * - `InvalidRequest`: the request message itself cannot be decoded (INVALID_ARGUMENT); not a libcontainer code.
 */
export type ErrorKind =
  | "InvalidIdFormat"
  | "ContainerNotExists"
  | "ConfigInvalid"
  | "SystemError"
  | "ContainerRunning"
  | "ContainerStopped"
  | "ContainerPaused"
  | "ContainerNotRunning"
  | "ContainerNotPaused"
  | "ContainerNotStopped"
  | "ContainerExists"
  | "InvalidArgument"
  | "RuncFailed"
  | "RuncNotFound"
  | "NoFreezer"
  | "ResourceExhausted"
  | "DeadlineExceeded"
  | "Cancelled"
  | "InvalidRequest";

/** Every {@link ErrorKind}, in table order (for tests and docs). */
export const ERROR_KINDS: readonly ErrorKind[] = [
  "InvalidIdFormat",
  "ContainerNotExists",
  "ConfigInvalid",
  "SystemError",
  "ContainerRunning",
  "ContainerStopped",
  "ContainerPaused",
  "ContainerNotRunning",
  "ContainerNotPaused",
  "ContainerNotStopped",
  "ContainerExists",
  "InvalidArgument",
  "RuncFailed",
  "RuncNotFound",
  "NoFreezer",
  "ResourceExhausted",
  "DeadlineExceeded",
  "Cancelled",
  "InvalidRequest",
];

/**
 * A failure the runtime knows how to describe. `message` is what a client sees
 * (runc's words where runc has words); `cause`, when set, goes only to the log.
 * Deliberately has no numeric `code` property: grpc-js would take one as a gRPC
 * status.
 */
export class RuntimeError extends Error {
  /** The libcontainer-style error kind. */
  readonly kind: ErrorKind;
  /** The container id the call was about, when it passed validation. */
  readonly containerId: string | undefined;

  constructor(kind: ErrorKind, message: string, opts: { containerId?: string; cause?: unknown } = {}) {
    // Running out of fds or memory is the server's state, not a fault of the container being read.
    const exhausted = kind === "SystemError" && isErrno(opts.cause, ...EXHAUSTION_ERRNOS);
    super(
      exhausted ? `runc-shim is out of ${errnoOf(opts.cause) === "ENOMEM" ? "memory" : "file descriptors"} (${errnoOf(opts.cause)}): ${message}` : message,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = "RuntimeError";
    this.kind = exhausted ? "ResourceExhausted" : kind;
    this.containerId = opts.containerId;
  }
}

/** errno names that mean the server ran out of a resource: reported as `ResourceExhausted`, never as a container's SystemError. */
export const EXHAUSTION_ERRNOS = ["EMFILE", "ENFILE", "ENOMEM"] as const;

/** True when `e` is a Node.js system error with errno name `code` (e.g. `"ENOENT"`). */
export function isErrno(e: unknown, ...codes: string[]): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" &&
    codes.includes((e as NodeJS.ErrnoException).code as string);
}

/** The errno name of a Node.js system error, or `undefined`. */
export function errnoOf(e: unknown): string | undefined {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string"
    ? ((e as NodeJS.ErrnoException).code as string)
    : undefined;
}

/** A short, one-line description of an unknown thrown value (at most 300 characters). */
export function describeError(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}
