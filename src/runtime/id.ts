import { RuntimeError } from "./errors.js";

/** Longest container id, in bytes: the file-name limit (NAME_MAX) of the state root. */
export const MAX_ID_BYTES = 255;

/**
 * The id rule of runc 1.1.5 (`libcontainer/factory_linux.go` validateID:
 * `^[\w+-\.]+$`, where `+-\.` is the range `+ , - .`, plus `"/"+id` must be
 * lexically clean), with one deliberate difference: more than 255 bytes is an
 * invalid format here (runc fails later with a system error, `file name too long`).
 */
const ID_PATTERN = /^[A-Za-z0-9_+,\-.]+$/;

/**
 * Why `id` is not a valid container id, or `undefined` when it is valid.
 * Checked before any filesystem access.
 */
export function idProblem(id: string): string | undefined {
  if (id.length === 0) return "container id cannot be empty";
  if (id.length > MAX_ID_BYTES) return `container id is longer than ${MAX_ID_BYTES} bytes`;
  if (!ID_PATTERN.test(id)) return "container id may contain only A-Z a-z 0-9 _ + , - .";
  if (id === "." || id === "..") return `container id cannot be "${id}"`;
  return undefined;
}

/**
 * Validates a container id.
 *
 * @throws {RuntimeError} `InvalidIdFormat` (gRPC INVALID_ARGUMENT): `container id cannot be
 *   empty` for `""`, else `invalid container ID format: <why>` (runc 1.1.5 says
 *   `invalid container ID format`).
 */
export function validateContainerId(id: string): void {
  const problem = idProblem(id);
  if (problem === undefined) return;
  throw new RuntimeError(
    "InvalidIdFormat",
    id.length === 0 ? problem : `invalid container ID format: ${problem}`,
  );
}
