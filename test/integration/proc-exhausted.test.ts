/**
 * Running out of fds while reading `/proc/<pid>/stat` is the server's state,
 * not the init's death: isInitAlive throws ResourceExhausted instead of
 * answering "not alive" (which State would report as `stopped`). Found by this
 * session's adversarial trial; runs in a child under `ulimit -n 64` with every
 * other fd taken.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const PROC = fileURLToPath(new URL("../../dist/src/runtime/proc.js", import.meta.url));

describe("isInitAlive under fd exhaustion", () => {
  it("throws ResourceExhausted (EMFILE) rather than reading a live process as dead", () => {
    expect(fs.existsSync(PROC), `${PROC} is missing: npm test builds it`).toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-exhaust-"));
    const script = path.join(dir, "x.mjs");
    fs.writeFileSync(
      script,
      `import fs from "node:fs";
const { isInitAlive, readProcStat } = await import(${JSON.stringify(PROC)});
const me = readProcStat(process.pid);
const alive = isInitAlive(process.pid, me.startTime);
const { heldFiles } = await import(${JSON.stringify(fileURLToPath(new URL("../../dist/src/runtime/held-files.js", import.meta.url)))});
heldFiles.clear(); // nothing held: nothing to release when the open fails
const taken = [];
try { for (;;) taken.push(fs.openSync("/dev/null", "r")); } catch {}
let outcome;
try { outcome = "answered " + isInitAlive(process.pid, me.startTime); } catch (e) { outcome = e.kind + ": " + e.message; }
for (const fd of taken) fs.closeSync(fd);
process.stdout.write(JSON.stringify({ alive, taken: taken.length, outcome }));
`,
    );
    try {
      const r = spawnSync("/bin/sh", ["-c", `ulimit -n 64 && exec "${process.execPath}" "${script}"`], { encoding: "utf8", timeout: 20_000 });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { alive: boolean; taken: number; outcome: string };
      expect(out.alive).toBe(true);
      expect(out.taken).toBeGreaterThan(0);
      expect(out.outcome).toMatch(/^ResourceExhausted: runc-shim is out of file descriptors \(EMFILE\): open \/proc\/\d+\/stat/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
