/**
 * deploy/systemd/runc-shim.service: `systemd-analyze verify` finds nothing to
 * say about it (Debian's systemd package; it works without systemd running),
 * and its ExecStart is the installed binary with flags `serve` accepts.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMain } from "../helpers/server.js";

const UNIT = fileURLToPath(new URL("../../deploy/systemd/runc-shim.service", import.meta.url));
/** The binary the unit runs: where README's install (npm install -g --prefix /usr/local) puts it. */
const INSTALLED = "/usr/local/bin/runc-shim";

/** Whether to skip: never under CI=true (.ci/run installs systemd), otherwise when systemd-analyze is missing. */
function skipVerify(): boolean {
  if (spawnSync("systemd-analyze", ["--version"]).status === 0) return false;
  const why = "systemd-analyze is not installed (apt-get install -y systemd)";
  if (process.env.CI === "true") throw new Error(`CI=true but ${why}`);
  console.warn(`skipping the systemd unit test: ${why}`);
  return true;
}

describe.skipIf(skipVerify())("the systemd unit", () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-unit-"));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const text = (): string => fs.readFileSync(UNIT, "utf8");
  const execStart = (): string => {
    const lines = text().split("\n").filter((l) => l.startsWith("ExecStart="));
    expect(lines.length).toBe(1);
    return lines[0]!.slice("ExecStart=".length);
  };

  /**
   * `systemd-analyze verify` of a copy of `unitText` named runc-shim.service whose
   * ExecStart binary is an executable stand-in (verify refuses a unit whose binary does
   * not exist, and this machine need not have runc-shim installed).
   */
  const verify = (unitText: string): { status: number | null; output: string; copy: string } => {
    const bin = path.join(dir, "bin", "runc-shim");
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    fs.writeFileSync(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const copyDir = fs.mkdtempSync(path.join(dir, "unit-"));
    const copy = path.join(copyDir, "runc-shim.service");
    fs.writeFileSync(copy, unitText.split(`ExecStart=${INSTALLED} `).join(`ExecStart=${bin} `));
    const r = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8", timeout: 60_000 });
    return { status: r.status, output: `${r.stdout}${r.stderr}`, copy };
  };

  /** verify's lines about our unit (it may also speak of the host's own units, which are not ours to judge). */
  const aboutUnit = (output: string, copy: string): string[] =>
    output.split("\n").filter((l) => l.includes("runc-shim") || l.includes(copy));

  it("runs the installed binary with the default root and socket", () => {
    expect(execStart()).toBe(`${INSTALLED} serve --root /run/runc --address /run/runc-shim/shim.sock`);
    expect(text()).toMatch(/^RuntimeDirectory=runc-shim$/m);
    expect(text()).toMatch(/^RuntimeDirectoryMode=0700$/m);
    expect(text()).toMatch(/^Restart=on-failure$/m);
    expect(text()).toMatch(/^KillSignal=SIGTERM$/m);
    expect(text()).toMatch(/^KillMode=process$/m);
    expect(text()).toMatch(/^Delegate=yes$/m);
    for (const inherited of ["NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups", "MemoryDenyWriteExecute"]) {
      expect(text(), inherited).not.toMatch(new RegExp(`^${inherited}=`, "m"));
      expect(text(), inherited).toMatch(new RegExp(`^#.*\\b${inherited}=`, "m")); // said why not
    }
  });

  it("passes systemd-analyze verify without a word about the unit", () => {
    const r = verify(text());
    expect(aboutUnit(r.output, r.copy)).toEqual([]);
    expect(r.status).toBe(0);
  });

  it("(the check sees a bad unit: an unknown key and a bad value are reported)", () => {
    const r = verify(text().replace(/^KillMode=process$/m, "KillMode=bogus\nNoSuchKey=1"));
    expect(aboutUnit(r.output, r.copy).length).toBe(2);
  });

  it("has flags serve accepts (serve --check-config passes the flags)", async () => {
    const args = execStart().split(" ").slice(1);
    const r = await runMain([...args, "--check-config", "--json"]);
    const report = JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; detail: string }[] };
    expect(report.checks[0]).toMatchObject({ name: "flags", ok: true });
    expect(report.checks.map((c) => c.name)).toEqual(["flags", "root", "socket", "runc", "metrics", "cgroups", "limits"]);
  });
});
