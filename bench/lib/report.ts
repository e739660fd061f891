/**
 * The benchmark's one table, its targets and its JSON form.
 *
 * Ratios compare the time per call: `runc÷shim` > 1 means the shim is that
 * many times faster than runc; `shim÷floor` 1.00 means State costs what the
 * no-op floor call costs. For throughput rows the time per call is
 * 1 / throughput, so there `runc÷shim` = shim calls/s ÷ runc calls/s and
 * `shim÷floor` = floor calls/s ÷ shim calls/s.
 */
import { fmt, fmtCount, fmtRatio, type Summary } from "./stats.js";

/** Units used in the table. */
export type Unit = "µs" | "ms" | "s" | "%" | "calls/s" | "MiB";

/** One row of the table (and of the JSON). */
export interface Row {
  /** Section of the issue: 0 floor, 1 State latency, 2 Start latency, 3 throughput, 4 scale. */
  section: number;
  /** Stable machine key, e.g. `state.created.p50`. */
  key: string;
  /** The printed label, e.g. `State latency created p50`. */
  label: string;
  unit: Unit;
  /** The shim's figure (in `unit`), or null. */
  shim: number | null;
  /** runc's figure (in `unit`), or null. */
  runc: number | null;
  /** The floor call's figure (in `unit`), or null. */
  floor: number | null;
  /** runc's time per call ÷ the shim's (dimensionless), or null. */
  runcOverShim: number | null;
  /** The shim's time per call ÷ the floor's (dimensionless), or null. */
  shimOverFloor: number | null;
  /** Sample counts, e.g. `shim 1000 / runc 1000 / floor 2000`, or the window for throughput. */
  samples: string;
}

/** One target of the issue, evaluated. */
export interface TargetResult {
  /** The target, as the issue states it. */
  name: string;
  pass: boolean;
  /** The figures it was decided on. */
  detail: string;
}

const div = (a: number | null, b: number | null): number | null =>
  a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b;

/**
 * A latency row (lower is better): ratios runc ÷ shim and shim ÷ floor.
 *
 * @param unit the unit of all three figures (µs or ms)
 */
export function latencyRow(
  section: number,
  key: string,
  label: string,
  unit: Unit,
  shim: number | null,
  runc: number | null,
  floor: number | null,
  samples: string,
): Row {
  return { section, key, label, unit, shim, runc, floor, runcOverShim: div(runc, shim), shimOverFloor: div(shim, floor), samples };
}

/**
 * A throughput row (higher is better, calls/s): ratios in time per call, i.e.
 * shim ÷ runc and floor ÷ shim of the throughputs.
 */
export function throughputRow(section: number, key: string, label: string, shim: number, runc: number, floor: number, samples: string): Row {
  return { section, key, label, unit: "calls/s", shim, runc, floor, runcOverShim: div(shim, runc), shimOverFloor: div(floor, shim), samples };
}

/** A row with the shim's figure only (no runc or floor counterpart), e.g. the server's RSS in MiB. */
export function shimOnlyRow(section: number, key: string, label: string, unit: Unit, shim: number, samples: string): Row {
  return { section, key, label, unit, shim, runc: null, floor: null, runcOverShim: null, shimOverFloor: null, samples };
}

/**
 * The three percentile rows (p50, p90, p99) of a latency comparison.
 *
 * @param unit the unit of the summaries' figures (µs for State, ms for Start)
 * @param shim the shim's samples summarised, or null for a floor-only row
 */
export function percentileRows(
  section: number,
  keyPrefix: string,
  labelPrefix: string,
  unit: Unit,
  shim: Summary | null,
  runc: Summary | null,
  floor: Summary | null,
): Row[] {
  const samples = [shim && `shim ${shim.n}`, runc && `runc ${runc.n}`, floor && `floor ${floor.n}`].filter(Boolean).join(" / ");
  return (["p50", "p90", "p99"] as const).map((p) =>
    latencyRow(section, `${keyPrefix}.${p}`, `${labelPrefix} ${p}`, unit, shim?.[p] ?? null, runc?.[p] ?? null, floor?.[p] ?? null, samples),
  );
}

/**
 * Renders the rows as one fixed-width text table, a header line per section.
 *
 * @returns the table, lines joined with `\n`
 */
export function renderTable(rows: readonly Row[], sectionTitles: Readonly<Record<number, string>>): string {
  const header = ["row", "unit", "shim", "runc", "floor", "runc÷shim", "shim÷floor", "samples"];
  const cells = rows.map((r) => [r.label, r.unit, fmt(r.shim), fmt(r.runc), fmt(r.floor), fmtRatio(r.runcOverShim), fmtRatio(r.shimOverFloor), r.samples]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string =>
    c
      .map((v, i) => (i === 0 || i === 1 || i === c.length - 1 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  let section = -1;
  rows.forEach((r, i) => {
    if (r.section !== section) {
      section = r.section;
      out.push(`${section}. ${sectionTitles[section] ?? ""}`);
    }
    out.push(line(cells[i]!));
  });
  return out.join("\n");
}

/** Renders target results as `PASS  name: detail` lines. */
export function renderTargets(targets: readonly TargetResult[]): string {
  return targets.map((t) => `${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${t.detail}`).join("\n");
}

/** The scale sizes as labels (`10`, `1,000`, `10,000`). */
export function sizeLabel(n: number): string {
  return fmtCount(n);
}
