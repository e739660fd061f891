/** Types of parse-prometheus-text-format 1.1 (the package ships none): prom2json's shape. */
declare module "parse-prometheus-text-format" {
  /** A sample of a counter, gauge or untyped metric. */
  export interface PromSample {
    value: string;
    labels?: Record<string, string>;
  }
  /** A histogram sample: cumulative buckets by upper bound, count and sum. */
  export interface PromHistogramSample {
    buckets: Record<string, string>;
    count: string;
    sum: string;
    labels?: Record<string, string>;
  }
  /** One metric family. */
  export interface PromFamily {
    name: string;
    help: string;
    type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
    metrics: Array<PromSample & Partial<PromHistogramSample>>;
  }
  export default function parsePrometheusTextFormat(text: string): PromFamily[];
}
