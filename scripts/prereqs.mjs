#!/usr/bin/env node
// Installs the system packages runc-shim's demo, tests and benchmark need when
// they are missing and we are root (Debian: apt-get), or prints the exact
// command otherwise. Usage: node scripts/prereqs.mjs [--python]
import { spawnSync } from "node:child_process";
import fs from "node:fs";

const wantPython = process.argv.includes("--python");
const missing = [];
if (spawnSync("runc", ["--version"]).status !== 0) missing.push("runc");
if (!fs.existsSync("/bin/busybox")) missing.push("busybox-static");
if (wantPython) {
  const py = spawnSync("/usr/bin/python3", ["-c", "import grpc, grpc_tools, google.protobuf"]);
  if (py.status !== 0) missing.push("python3-grpcio", "python3-grpc-tools");
}
if (missing.length === 0) process.exit(0);
const command = `apt-get update && apt-get install -y ${missing.join(" ")}`;
if (process.getuid?.() !== 0 || spawnSync("apt-get", ["--version"]).status !== 0) {
  console.error(`runc-shim: missing ${missing.join(", ")}; install them with: sudo sh -c '${command}'`);
  process.exit(0); // the runc tests then skip with a message (and fail under CI=true)
}
console.error(`runc-shim: installing ${missing.join(", ")} (${command})`);
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
for (const args of [["update"], ["install", "-y", "--no-install-recommends", ...missing]]) {
  const r = spawnSync("apt-get", args, { stdio: ["ignore", "inherit", "inherit"], env });
  if (r.status !== 0) {
    console.error(`runc-shim: apt-get ${args.join(" ")} failed (exit ${r.status})`);
    process.exit(1);
  }
}
