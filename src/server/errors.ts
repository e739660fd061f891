import { Metadata, status as GrpcStatus, type StatusObject } from "@grpc/grpc-js";
import { Any } from "../../gen/ts/google/protobuf/any.js";
import { ErrorInfo } from "../../gen/ts/google/rpc/error_details.js";
import { Status } from "../../gen/ts/google/rpc/status.js";
import { RuntimeError, type ErrorKind } from "../runtime/errors.js";
import { ERROR_INFO_TYPE_URL, STATUS_DETAILS_KEY } from "../wire.js";

export { ERROR_INFO_TYPE_URL, STATUS_DETAILS_KEY };

/** `ErrorInfo.domain` of every error runc-shim sends. */
export const ERROR_DOMAIN = "runc-shim";
/** Message sent for an error that is a bug; the cause goes only to the log. */
export const INTERNAL_MESSAGE = "internal error in runc-shim (see its log)";

/** One row of the error table. */
export interface ErrorRow {
  /** The gRPC status code sent. */
  code: GrpcStatus;
  /** `ErrorInfo.reason`: the libcontainer code in UPPER_SNAKE_CASE. */
  reason: string;
}

/**
 * The one table from libcontainer error kind to gRPC status. It is typed as a
 * `Record` over {@link ErrorKind}, so a kind without a row does not compile.
 * FAILED_PRECONDITION for a Start in the wrong status follows gRPC's guide
 * ("the system is not in a state required for the operation"); containerd
 * sends UNKNOWN there.
 */
export const ERROR_TABLE: Readonly<Record<ErrorKind, ErrorRow>> = {
  InvalidIdFormat: { code: GrpcStatus.INVALID_ARGUMENT, reason: "INVALID_ID_FORMAT" },
  ContainerNotExists: { code: GrpcStatus.NOT_FOUND, reason: "CONTAINER_NOT_EXISTS" },
  ConfigInvalid: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONFIG_INVALID" },
  SystemError: { code: GrpcStatus.INTERNAL, reason: "SYSTEM_ERROR" },
  ContainerRunning: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_RUNNING" },
  ContainerStopped: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_STOPPED" },
  ContainerPaused: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_PAUSED" },
  ContainerNotRunning: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_NOT_RUNNING" },
  ContainerNotPaused: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_NOT_PAUSED" },
  ContainerNotStopped: { code: GrpcStatus.FAILED_PRECONDITION, reason: "CONTAINER_NOT_STOPPED" },
  ContainerExists: { code: GrpcStatus.ALREADY_EXISTS, reason: "CONTAINER_EXISTS" },
  InvalidArgument: { code: GrpcStatus.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT" },
  RuncFailed: { code: GrpcStatus.FAILED_PRECONDITION, reason: "RUNC_FAILED" },
  RuncNotFound: { code: GrpcStatus.FAILED_PRECONDITION, reason: "RUNC_NOT_FOUND" },
  NoFreezer: { code: GrpcStatus.FAILED_PRECONDITION, reason: "NO_FREEZER" },
  ResourceExhausted: { code: GrpcStatus.RESOURCE_EXHAUSTED, reason: "RESOURCE_EXHAUSTED" },
  DeadlineExceeded: { code: GrpcStatus.DEADLINE_EXCEEDED, reason: "DEADLINE_EXCEEDED" },
  Cancelled: { code: GrpcStatus.CANCELLED, reason: "CANCELLED" },
  InvalidRequest: { code: GrpcStatus.INVALID_ARGUMENT, reason: "INVALID_REQUEST" },
};

/** The row for errors that are bugs (not a {@link RuntimeError}). */
export const BUG_ROW: ErrorRow = { code: GrpcStatus.INTERNAL, reason: "INTERNAL" };

/**
 * Translates any thrown value into the status object grpc-js sends: the code
 * from {@link ERROR_TABLE}, the message (a fixed {@link INTERNAL_MESSAGE} for a
 * bug), and a `grpc-status-details-bin` trailer holding a `google.rpc.Status`
 * with one `google.rpc.ErrorInfo` (domain `runc-shim`, the reason, metadata
 * `container_id` when known).
 */
export function toGrpcStatus(e: unknown, containerId?: string): Partial<StatusObject> & { code: GrpcStatus; details: string } {
  const known = e instanceof RuntimeError;
  const row = known ? ERROR_TABLE[e.kind] : BUG_ROW;
  const message = known ? e.message : INTERNAL_MESSAGE;
  const id = (known ? e.containerId : undefined) ?? containerId;
  const info = ErrorInfo.encode({
    reason: row.reason,
    domain: ERROR_DOMAIN,
    metadata: id === undefined ? {} : { container_id: id },
  }).finish();
  const status = Status.encode({
    code: row.code,
    message,
    details: [Any.fromPartial({ typeUrl: ERROR_INFO_TYPE_URL, value: Buffer.from(info) })],
  }).finish();
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(status));
  return { code: row.code, details: message, metadata };
}
