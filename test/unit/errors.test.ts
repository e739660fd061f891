import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { decodeErrorInfo } from "../../src/client/client.js";
import { ERROR_KINDS, RuntimeError } from "../../src/runtime/errors.js";
import { ERROR_TABLE, INTERNAL_MESSAGE, STATUS_DETAILS_KEY, toGrpcStatus } from "../../src/server/errors.js";

describe("the error table (libcontainer code -> gRPC status)", () => {
  it("has the documented rows", () => {
    expect(Object.fromEntries(Object.entries(ERROR_TABLE).map(([k, v]) => [k, [status[v.code], v.reason]]))).toEqual({
      InvalidIdFormat: ["INVALID_ARGUMENT", "INVALID_ID_FORMAT"],
      ContainerNotExists: ["NOT_FOUND", "CONTAINER_NOT_EXISTS"],
      ConfigInvalid: ["FAILED_PRECONDITION", "CONFIG_INVALID"],
      SystemError: ["INTERNAL", "SYSTEM_ERROR"],
      ContainerRunning: ["FAILED_PRECONDITION", "CONTAINER_RUNNING"],
      ContainerStopped: ["FAILED_PRECONDITION", "CONTAINER_STOPPED"],
      ContainerPaused: ["FAILED_PRECONDITION", "CONTAINER_PAUSED"],
      ContainerNotRunning: ["FAILED_PRECONDITION", "CONTAINER_NOT_RUNNING"],
      ContainerNotPaused: ["FAILED_PRECONDITION", "CONTAINER_NOT_PAUSED"],
      ContainerNotStopped: ["FAILED_PRECONDITION", "CONTAINER_NOT_STOPPED"],
      ContainerExists: ["ALREADY_EXISTS", "CONTAINER_EXISTS"],
      InvalidArgument: ["INVALID_ARGUMENT", "INVALID_ARGUMENT"],
      RuncFailed: ["FAILED_PRECONDITION", "RUNC_FAILED"],
      RuncNotFound: ["FAILED_PRECONDITION", "RUNC_NOT_FOUND"],
      NoFreezer: ["FAILED_PRECONDITION", "NO_FREEZER"],
      ResourceExhausted: ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"],
      DeadlineExceeded: ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"],
      Cancelled: ["CANCELLED", "CANCELLED"],
      InvalidRequest: ["INVALID_ARGUMENT", "INVALID_REQUEST"],
    });
    expect(Object.keys(ERROR_TABLE).sort()).toEqual([...ERROR_KINDS].sort());
  });

  it.each(ERROR_KINDS)("%s carries its message and a decodable ErrorInfo", (kind) => {
    const st = toGrpcStatus(new RuntimeError(kind, `msg ${kind}`, { containerId: "c1" }));
    expect(st.code).toBe(ERROR_TABLE[kind].code);
    expect(st.details).toBe(`msg ${kind}`);
    const info = decodeErrorInfo(st.metadata?.get(STATUS_DETAILS_KEY)[0]);
    expect(info).toEqual({ reason: ERROR_TABLE[kind].reason, domain: "runc-shim", metadata: { container_id: "c1" } });
  });

  it("sends a fixed message for a bug and keeps its text out of the wire", () => {
    const st = toGrpcStatus(new TypeError("secret stack detail"));
    expect(st.code).toBe(status.INTERNAL);
    expect(st.details).toBe(INTERNAL_MESSAGE);
    expect(decodeErrorInfo(st.metadata?.get(STATUS_DETAILS_KEY)[0])?.reason).toBe("INTERNAL");
  });
});
