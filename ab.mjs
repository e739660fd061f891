import { createShimClient } from "./dist/src/index.js";
import { RuncFixture, uniqueId } from "./dist/scripts/lib/runc.js";
import { spawn } from "node:child_process";
import fs from "node:fs";
const fx = new RuncFixture("ab-");
const mk = async (main, name) => { const sock = `${fx.dir}/${name}.sock`; const p = spawn(process.execPath, [main, "serve", "--root", fx.root, "--address", sock, "--log-level", "warn"], { stdio: "ignore" }); while (!fs.existsSync(sock)) await new Promise(r => setTimeout(r, 20)); return { p, c: createShimClient(sock) }; };
const A = await mk("./dist/src/main.js", "yield"), B = await mk("./dist-noyield/src/main.js", "noyield");
await new Promise(r => setTimeout(r, 1000));
const N = Number(process.argv[2] ?? 40);
const ids = Array.from({ length: N * 3 }, () => fx.create(uniqueId("ab")));
for (let i = 0; i < 300; i++) { await A.c.state(ids[0]); await B.c.state(ids[0]); }
const res = { yield: [], noyield: [], direct: [] };
const buf = Buffer.alloc(64);
for (let i = 0; i < N; i++) {
  const steps = [
    async () => { const t0 = performance.now(); await A.c.start(ids[3 * i]); res.yield.push(performance.now() - t0); },
    async () => { const t0 = performance.now(); await B.c.start(ids[3 * i + 1]); res.noyield.push(performance.now() - t0); },
    async () => { const f = `${fx.root}/${ids[3 * i + 2]}/exec.fifo`; const t0 = performance.now(); const fd = fs.openSync(f, fs.constants.O_RDONLY); while (fs.readSync(fd, buf) > 0); fs.closeSync(fd); fs.unlinkSync(f); res.direct.push(performance.now() - t0); },
  ];
  for (let k = 0; k < 3; k++) { await steps[(i + k) % 3](); await new Promise(r => setTimeout(r, 2)); }
}
const q = (a, p) => a.sort((x, y) => x - y)[Math.floor(a.length * p)].toFixed(2);
for (const k of Object.keys(res)) console.log(k.padEnd(8), "p50", q(res[k], 0.5), "p90", q(res[k], 0.9));
A.c.close(); B.c.close(); A.p.kill("SIGTERM"); B.p.kill("SIGTERM"); await new Promise(r => setTimeout(r, 300)); fx.cleanup();
