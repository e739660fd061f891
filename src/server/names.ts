/** Full name of the shim's gRPC service, as health and reflection use it. */
export const SHIM_SERVICE_NAME = "runcshim.v1.ShimService";
