/**
 * runc-shim's package entry point: the typed TypeScript client.
 * `import { createShimClient, ShimError } from "runc-shim"`.
 */
export {
  createShimClient,
  ShimError,
  decodeErrorInfo,
  formatTimestamp,
  parseSignal,
  type CreateOptions,
  type CallOptions,
  type ContainerEntryView,
  type ContainerErrorView,
  type ContainerStateView,
  type ContainerStatusName,
  type ShimClient,
  type ShimClientOptions,
  type WatchEventKindName,
  type WatchEventView,
  type WatchOptions,
} from "./client/client.js";
