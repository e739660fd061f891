/**
 * runc-shim's package entry point: the typed TypeScript client.
 * `import { createShimClient, ShimError } from "runc-shim"`.
 */
export {
  createShimClient,
  ShimError,
  decodeErrorInfo,
  formatTimestamp,
  type CallOptions,
  type ContainerStateView,
  type ContainerStatusName,
  type ShimClient,
  type ShimClientOptions,
} from "./client/client.js";
