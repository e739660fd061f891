import { describe, expect, it } from "vitest";
import { ContainerLocks } from "../../src/runtime/locks.js";

describe("ContainerLocks", () => {
  it("runs at once, in the caller's turn, when nothing holds the key, and says it did not wait", async () => {
    const locks = new ContainerLocks();
    const seen: string[] = [];
    const p = locks.run("k", undefined, (waited) => {
      seen.push(`fn waited=${waited}`);
      return 1;
    });
    seen.push("after run()");
    expect(seen).toEqual(["fn waited=false", "after run()"]);
    expect(await p).toBe(1);
    expect(locks.size).toBe(0);
  });

  it("serialises operations on one key in arrival order; the later ones say they waited", async () => {
    const locks = new ContainerLocks();
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = locks.run("k", undefined, (waited) => {
      order.push(`1 waited=${waited}`);
      return new Promise<void>((r) => (releaseFirst = r));
    });
    const second = locks.run("k", undefined, (waited) => void order.push(`2 waited=${waited}`));
    const third = locks.run("k", undefined, (waited) => void order.push(`3 waited=${waited}`));
    const other = locks.run("other", undefined, (waited) => void order.push(`other waited=${waited}`));
    await other;
    expect(order).toEqual(["1 waited=false", "other waited=false"]);
    releaseFirst();
    await Promise.all([first, second, third]);
    expect(order).toEqual(["1 waited=false", "other waited=false", "2 waited=true", "3 waited=true"]);
    expect(locks.size).toBe(0);
  });

  it("rejects with the signal's reason, without running, when aborted before or while waiting", async () => {
    const locks = new ContainerLocks();
    const aborted = AbortSignal.abort(new Error("gone"));
    let ran = false;
    await expect(locks.run("k", aborted, () => (ran = true))).rejects.toThrow("gone");
    let release!: () => void;
    const holder = locks.run("k", undefined, () => new Promise<void>((r) => (release = r)));
    const ac = new AbortController();
    const waiter = locks.run("k", ac.signal, () => (ran = true));
    ac.abort(new Error("deadline"));
    await expect(waiter).rejects.toThrow("deadline");
    release();
    await holder;
    expect(ran).toBe(false);
    await new Promise((r) => setTimeout(r, 0)); // the aborted waiter's tail settles after the holder's
    expect(locks.size).toBe(0);
  });

  it("a waiter whose wait was aborted leaves the key locked while the holder runs: the next operation still waits for it", async () => {
    const locks = new ContainerLocks();
    const order: string[] = [];
    let release!: () => void;
    const holder = locks.run("k", undefined, () => {
      order.push("holder in");
      return new Promise<void>((r) => (release = r)).then(() => void order.push("holder out"));
    });
    const ac = new AbortController();
    const waiter = locks.run("k", ac.signal, () => void order.push("waiter ran"));
    ac.abort(new Error("deadline"));
    await expect(waiter).rejects.toThrow("deadline");
    const next = locks.run("k", undefined, (waited) => void order.push(`next waited=${waited}`));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(["holder in"]); // not run alongside the holder
    expect(locks.size).toBe(1);
    release();
    await Promise.all([holder, next]);
    expect(order).toEqual(["holder in", "holder out", "next waited=true"]);
    await new Promise((r) => setTimeout(r, 0));
    expect(locks.size).toBe(0);
  });
});
