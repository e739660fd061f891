/**
 * One lock per container, shared by every mutating operation (Start, Kill,
 * Pause, Resume, Delete, Create): two operations on one container never
 * interleave; operations on different containers never wait for each other.
 * Keyed by the container state dir (after SecureJoin), so an alias symlink
 * takes the same lock. Waiters are served in arrival order. Nothing is held
 * for a key without an operation (the map shrinks back to empty).
 */
export class ContainerLocks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Keys locked or waited for now (for tests and leak checks). */
  get size(): number {
    return this.tails.size;
  }

  /**
   * Runs `fn` once every earlier operation on `key` has finished. When nothing
   * holds or awaits `key`, `fn` starts at once, in the caller's turn of the
   * event loop (no promise hop): what the caller read just before is still
   * current, which `fn` learns from `waited` being `false`.
   *
   * @param signal aborts the wait (not `fn` once it runs): the promise rejects with `signal.reason`
   * @returns what `fn` returns
   * @throws `signal.reason` when aborted while waiting; whatever `fn` throws
   */
  async run<T>(key: string, signal: AbortSignal | undefined, fn: (waited: boolean) => Promise<T> | T): Promise<T> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.tails.set(key, tail);
    try {
      if (previous !== undefined) await waitOrAbort(previous, signal);
      else signal?.throwIfAborted();
      return await fn(previous !== undefined);
    } finally {
      release();
      // The key is free once the tail settles: at once for an operation that waited for nothing; for
      // a waiter, when every operation before it has finished too (a waiter whose wait was aborted
      // leaves while the holder still runs, and the next operation must still wait for the holder).
      if (previous === undefined) this.forgetIfLast(key, tail);
      else void tail.then(() => this.forgetIfLast(key, tail));
    }
  }

  private forgetIfLast(key: string, tail: Promise<void>): void {
    if (this.tails.get(key) === tail) this.tails.delete(key);
  }
}

/** Waits for `p` (fulfilled or rejected), or rejects with `signal.reason` when the signal aborts first. */
export function waitOrAbort(p: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return p.then(() => undefined, () => undefined);
  signal.throwIfAborted();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const settle = (): void => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    };
    p.then(settle, settle);
  });
}
