import { RuntimeError } from "./errors.js";
import type { ContainerStateRecord } from "./state-file.js";

/**
 * Bounds on the work one state.json may cost. runc writes a few KiB; labels
 * come from OCI annotations that higher layers pass through (Kubernetes caps a
 * pod's annotations at 256 KiB in all), so these leave ample room for real
 * containers while keeping a crafted file from stalling the server.
 */
export const STATE_BOUNDS = {
  /** Largest state.json read, in bytes (checked with fstat, before reading). */
  maxFileBytes: 4 * 1024 * 1024,
  /** Deepest nesting of arrays and objects (runc's own files nest under 10 levels). */
  maxDepth: 64,
  /** Files larger than this are scanned for their nesting depth before they are parsed, in bytes. */
  depthScanFromBytes: 64 * 1024,
  /** Most `config.labels` entries. */
  maxLabels: 10_000,
  /** Most bytes of all `config.labels` together (UTF-16 code units, ~bytes). */
  maxLabelBytes: 1024 * 1024,
} as const;

const OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d, QUOTE = 0x22, BACKSLASH = 0x5c;

/**
 * The nesting depth of a JSON text, scanned byte by byte (strings and escapes
 * skipped) and stopped as soon as it passes `limit`: a file nested millions
 * of levels deep is rejected after reading `limit` brackets, not parsed.
 *
 * @returns the depth, or `limit + 1` as soon as the text is deeper than `limit`
 */
export function jsonDepth(bytes: Uint8Array, limit: number): number {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return limit + 1;
      }
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return max;
}

/**
 * Checks what can be checked before parsing: the nesting depth of a large file.
 * @throws {RuntimeError} `SystemError` naming the bound
 */
export function checkBeforeParse(file: string, bytes: Uint8Array): void {
  if (bytes.length < STATE_BOUNDS.depthScanFromBytes) return;
  if (jsonDepth(bytes, STATE_BOUNDS.maxDepth) > STATE_BOUNDS.maxDepth) {
    throw new RuntimeError("SystemError", `${file}: state file nests deeper than ${STATE_BOUNDS.maxDepth} levels; not parsed`);
  }
}

/**
 * Checks a parsed record against the label bounds.
 * @throws {RuntimeError} `SystemError` naming the bound
 */
export function checkRecordBounds(file: string, record: ContainerStateRecord): void {
  const { labels } = record;
  if (labels.length > STATE_BOUNDS.maxLabels) {
    throw new RuntimeError("SystemError", `${file}: config.labels has ${labels.length} entries, more than ${STATE_BOUNDS.maxLabels}`);
  }
  let bytes = 0;
  for (const l of labels) bytes += l.length;
  if (bytes > STATE_BOUNDS.maxLabelBytes) {
    throw new RuntimeError("SystemError", `${file}: config.labels take ${bytes} bytes, more than ${STATE_BOUNDS.maxLabelBytes}`);
  }
}
