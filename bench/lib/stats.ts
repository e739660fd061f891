/**
 * Small statistics and formatting helpers of the benchmark.
 */

/** Summary of a set of samples; every figure in the unit of the samples. */
export interface Summary {
  /** Number of samples. */
  n: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * The `p`-th percentile of `samples` by the nearest-rank method (the smallest
 * sample such that at least `p` % of the samples are less than or equal to it).
 *
 * @param samples any unit; not modified
 * @param p percentile, 0 < p <= 100
 * @returns the percentile in the unit of `samples`, or NaN when there are none
 */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/**
 * Summarises samples (count, min, mean, p50, p90, p99, max).
 *
 * @param samples any unit (the benchmark uses µs for State and ms for Start)
 * @returns the summary in the same unit; NaN figures when there are no samples
 */
export function summarize(samples: readonly number[]): Summary {
  const n = samples.length;
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number): number => (n === 0 ? Number.NaN : sorted[Math.min(Math.max(1, Math.ceil((p / 100) * n)), n) - 1]!);
  return {
    n,
    min: n === 0 ? Number.NaN : sorted[0]!,
    mean: n === 0 ? Number.NaN : sorted.reduce((a, b) => a + b, 0) / n,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: n === 0 ? Number.NaN : sorted[n - 1]!,
  };
}

/**
 * A seeded pseudo-random generator (mulberry32), so that the order of the
 * calls in each round is reproducible from run to run.
 *
 * @param seed any 32-bit integer
 * @returns a function returning floats in [0, 1)
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Fisher-Yates shuffle in place.
 *
 * @param items shuffled in place and returned
 * @param random a generator of floats in [0, 1), e.g. {@link seededRandom}
 */
export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * Formats a number for the table: thousands separators, and a number of
 * decimals that keeps about three significant digits for small values.
 *
 * @param v the value, or null/NaN for "not applicable" (printed as an em dash)
 */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const abs = Math.abs(v);
  const decimals = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/**
 * Formats a ratio as `12.3×`.
 *
 * @param r the ratio (dimensionless), or null/NaN for "not applicable"
 */
export function fmtRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return "—";
  const abs = Math.abs(r);
  const decimals = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return `${r.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals })}×`;
}

/**
 * Formats an integer count with thousands separators (`10,000`).
 *
 * @param n a count
 */
export function fmtCount(n: number): string {
  return n.toLocaleString("en-US");
}
