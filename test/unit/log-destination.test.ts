import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { BoundedLogDestination, LOG_BATCH_BYTES, type LogOutput } from "../../src/log.js";

/** The end of this turn of the event loop (the destination's immediate runs first: it was queued before). */
const endOfTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A LogOutput that records each write(2)-like call; `writableLength` is what the test says is still queued. */
class RecordingOutput extends EventEmitter implements LogOutput {
  writes: string[] = [];
  writableLength = 0;
  failWith: Error | undefined;
  write(chunk: string): boolean {
    if (this.failWith !== undefined) throw this.failWith;
    this.writes.push(chunk);
    return true;
  }
}

const line = (i: number): string => `{"msg":"line ${i}"}\n`;

describe("BoundedLogDestination: lines written together", () => {
  it("writes the lines of one turn of the event loop in one write at its end, in order, and not before", async () => {
    const out = new RecordingOutput();
    const d = new BoundedLogDestination(out);
    for (let i = 0; i < 3; i++) d.write(line(i));
    await Promise.resolve(); // microtasks of the same turn: still waiting
    for (let i = 3; i < 5; i++) d.write(line(i));
    expect(out.writes).toEqual([]);
    await endOfTurn();
    expect(out.writes).toEqual([[0, 1, 2, 3, 4].map(line).join("")]);
    d.write(line(5));
    await endOfTurn();
    expect(out.writes).toEqual([[0, 1, 2, 3, 4].map(line).join(""), line(5)]);
  });

  it("never writes more than LOG_BATCH_BYTES (PIPE_BUF) at once but for one longer line, and flush() writes what waits first", async () => {
    const out = new RecordingOutput();
    const d = new BoundedLogDestination(out);
    const half = `${"x".repeat(LOG_BATCH_BYTES / 2 - 2)}\n`; // two fit, three do not
    d.write(half);
    d.write(half);
    expect(out.writes).toHaveLength(0);
    d.write(half); // would pass PIPE_BUF: the two waiting go first
    expect(out.writes).toEqual([half + half]);
    const long = `${"y".repeat(LOG_BATCH_BYTES * 2)}\n`;
    d.write(long); // the waiting line, then the long one alone
    expect(out.writes).toEqual([half + half, half, long]);
    d.write(line(1));
    expect(await d.flush(100)).toBe(true);
    expect(out.writes).toEqual([half + half, half, long, line(1)]);
    for (const w of out.writes.slice(0, 2)) expect(w.length).toBeLessThanOrEqual(LOG_BATCH_BYTES);
  });

  it("a line longer than the bound with nothing waiting is dropped and reported before the next line (no drain will come)", async () => {
    const out = new RecordingOutput();
    const d = new BoundedLogDestination(out, 1000);
    const reports: number[] = [];
    d.onCaughtUp = (n) => {
      reports.push(n);
      d.write(`{"msg":"dropped ${n}"}\n`);
    };
    d.write(`${"z".repeat(2000)}\n`);
    expect(d.dropped).toBe(1);
    d.write(line(1));
    d.write(line(2));
    expect(reports).toEqual([1]);
    expect(d.dropped).toBe(0);
    await endOfTurn();
    expect(out.writes).toEqual([`{"msg":"dropped 1"}\n` + line(1) + line(2)]);
  });

  it("counts the lines waiting in the batch against the bound, and drops past it", () => {
    const out = new RecordingOutput();
    const d = new BoundedLogDestination(out, 100);
    const l = `${"y".repeat(39)}\n`; // 40 code units
    d.write(l);
    d.write(l);
    d.write(l); // 120 > 100: dropped
    expect(d.dropped).toBe(1);
    out.writableLength = 80; // the reader fell behind: 80 queued in the stream + 80 waiting
    void d.flush(0);
    expect(out.writes).toEqual([l + l]);
    d.write(l); // dropped: lines are dropped until the reader has caught up
    expect(d.droppedTotal).toBe(2);
  });

  it("unbatched, each line is written at once; a failing write drops the batch's lines and every later one", () => {
    const out = new RecordingOutput();
    const d = new BoundedLogDestination(out, 1 << 20, undefined, false);
    d.write(line(0));
    expect(out.writes).toEqual([line(0)]);
    out.failWith = new Error("EPIPE");
    d.write(line(1));
    d.write(line(2));
    expect(d.droppedTotal).toBe(2);
    expect(out.writes).toEqual([line(0)]);
  });
});
