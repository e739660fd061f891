/** What every operation gets besides its container id and request. */
export interface OpContext {
  /**
   * Aborts the wait for the container's lock (and Start's wait for the init
   * process); `reason` should be a `RuntimeError` of kind `Cancelled` or
   * `DeadlineExceeded`. Once an operation has begun changing things it finishes.
   */
  signal?: AbortSignal;
  /**
   * Told what an operation reports without failing, as runc logs a warning and
   * exits 0: a cgroup left behind, a poststop hook that failed.
   */
  warn?: (message: string, fields?: Record<string, unknown>) => void;
  /** Told of what is worth a debug line only: a cgroup removal retried (runc warns; it usually succeeds a pass later). */
  debug?: (message: string, fields?: Record<string, unknown>) => void;
}
