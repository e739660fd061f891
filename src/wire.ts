/**
 * Names fixed by the gRPC richer error model, shared by the server (which
 * writes them) and the client (which reads them). No grpc-js import.
 */

/** The trailer that carries the binary `google.rpc.Status`. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
/** Type URL of `google.rpc.ErrorInfo` inside `google.protobuf.Any`. */
export const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
