/** Small helpers for asserting on client calls. */
import { expect } from "vitest";
import { ShimError } from "../../src/client/client.js";

/** Settles a call into a value: `{ ok: true, value }` or `{ ok: false, e }` (a ShimError; anything else is rethrown). */
export async function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; e: ShimError }> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    if (!(e instanceof ShimError)) throw e;
    return { ok: false, e };
  }
}

/** Awaits a call that must fail with a ShimError, and returns the error. */
export async function failure(p: Promise<unknown>): Promise<ShimError> {
  const r = await outcome(p);
  if (r.ok) throw new Error(`expected the call to fail, got ${JSON.stringify(r.value)}`);
  expect(r.e).toBeInstanceOf(ShimError);
  return r.e;
}
