/**
 * Scrapes a runc-shim metrics listener with Node's HTTP client and parses the
 * exposition with parse-prometheus-text-format.
 */
import http from "node:http";
import parsePrometheusTextFormat, { type PromFamily } from "parse-prometheus-text-format";

/** What a scrape answered. */
export interface Scrape {
  status: number;
  contentType: string;
  body: string;
}

/** `METHOD path` over a Unix socket (`{ socketPath }`) or TCP (`{ host, port }`). */
export function httpRequest(target: { socketPath: string } | { host: string; port: number }, path = "/metrics", method = "GET"): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, path, method, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end();
  });
}

/** Parsed metric families, with lookups by name and exact labels. */
export class Metrics {
  /** Family name -> type, as the exposition declares it. */
  readonly types = new Map<string, PromFamily["type"]>();
  private readonly families: PromFamily[];

  constructor(text: string) {
    for (const f of parsePrometheusTextFormat(text)) this.types.set(f.name, f.type);
    // parse-prometheus-text-format 1.1.1 flattens a histogram family with labels into one sample
    // (flattenMetrics: the labels, _count and _sum are lost). Parsed without the HELP/TYPE lines of
    // histogram families, each of their series is an untyped family of its own (NAME_bucket,
    // NAME_count, NAME_sum) with its labels and value, which is all the tests need.
    const histograms = new Set([...this.types].filter(([, t]) => t === "HISTOGRAM").map(([n]) => n));
    const kept = text.split("\n").filter((line) => {
      if (!line.startsWith("# ")) return true;
      const name = line.split(" ")[2];
      return name === undefined || !histograms.has(name);
    });
    this.families = parsePrometheusTextFormat(kept.join("\n"));
  }

  /**
   * The value of the sample of family `name` whose labels are exactly `labels`
   * (a histogram series: `NAME_count`, `NAME_sum`, `NAME_bucket` with `le`), or
   * undefined when there is none.
   */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const want = Object.entries(labels).sort();
    const sample = this.all(name).find((m) => JSON.stringify(Object.entries(m.labels ?? {}).sort()) === JSON.stringify(want));
    return sample === undefined ? undefined : Number(sample.value);
  }

  /** The samples of every family named `name` (a histogram's series come as several families of one name, see the constructor). */
  private all(name: string): PromFamily["metrics"] {
    return this.families.filter((f) => f.name === name).flatMap((f) => f.metrics);
  }

  /** Every sample of family `name`: its labels and value. */
  samples(name: string): { labels: Record<string, string>; value: number }[] {
    return this.all(name).map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) }));
  }
}

/** Scrapes `GET /metrics` and parses it; throws unless the answer is 200. */
export async function scrape(target: { socketPath: string } | { host: string; port: number }): Promise<Metrics> {
  const r = await httpRequest(target);
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.body}`);
  return new Metrics(r.body);
}
