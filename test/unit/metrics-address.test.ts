import { describe, expect, it } from "vitest";
import { ConfigError, formatMetricsAddress, parseMetricsAddress } from "../../src/config.js";
import { WatchSubscription } from "../../src/runtime/watch.js";
import type { ContainerEntry } from "../../src/runtime/list.js";

describe("parseMetricsAddress", () => {
  it("takes a Unix socket path or a loopback host:port", () => {
    expect(parseMetricsAddress("/run/runc-shim/metrics.sock")).toEqual({ kind: "unix", path: "/run/runc-shim/metrics.sock" });
    expect(parseMetricsAddress("unix:///run/m.sock")).toEqual({ kind: "unix", path: "/run/m.sock" });
    expect(parseMetricsAddress("127.0.0.1:9100")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 9100 });
    expect(parseMetricsAddress("[::1]:0")).toEqual({ kind: "tcp", host: "::1", port: 0 });
    expect(formatMetricsAddress({ kind: "tcp", host: "::1", port: 9100 })).toBe("[::1]:9100");
    expect(formatMetricsAddress({ kind: "tcp", host: "127.0.0.1", port: 9100 })).toBe("127.0.0.1:9100");
  });

  it("refuses any other host, a bad port, an abstract socket", () => {
    for (const bad of ["0.0.0.0:9100", "localhost:9100", "[::]:9100", ":9100", "9100", "127.0.0.2:9100", "[::1]", "127.0.0.1:65536", "127.0.0.1:-1", "@m", "http://127.0.0.1:9100"]) {
      expect(() => parseMetricsAddress(bad), bad).toThrow(ConfigError);
    }
    expect(() => parseMetricsAddress("127.0.0.1:65536")).toThrow("--metrics-address: port 65536 is out of range (0-65535)");
  });
});

describe("WatchSubscription merge hook", () => {
  const entry = (status: "created" | "running"): ContainerEntry =>
    ({ id: "a", state: { id: "a", pid: 1, status, bundle: "/b", rootfs: "/r", created: { seconds: 1, nanos: 0, text: "t" }, annotations: {}, owner: "", ociVersion: "1" } }) as unknown as ContainerEntry;

  it("is told once per event merged into a pending one, never for an event queued alone", () => {
    let merged = 0;
    const s = new WatchSubscription(undefined, () => {}, () => merged++);
    s.offer("a", entry("created")); // initial, pending
    expect(merged).toBe(0);
    s.offer("a", entry("running")); // merged into the pending initial
    expect(merged).toBe(1);
    s.markSynced();
    expect(s.take()?.kind).toBe("initial");
    expect(s.take()?.kind).toBe("synced");
    s.offer("a", entry("created")); // changed, alone
    expect(merged).toBe(1);
    s.offer("a", undefined); // removal merged into the pending change
    expect(merged).toBe(2);
    expect(s.take()?.kind).toBe("removed");
    expect(s.take()).toBeUndefined();
  });
});
