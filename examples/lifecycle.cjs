// The same as lifecycle.mjs, from CommonJS: require("runc-shim") loads the ES
// module on Node >= 20.19 (require of ES modules).
//
//   node lifecycle.cjs [SOCKET] [BUNDLE] [ID]
"use strict";
const { createShimClient, ShimError } = require("runc-shim");

const [
  address = process.env.RUNC_SHIM_ADDRESS ?? "/run/runc-shim/shim.sock",
  bundle = "/containers/c1",
  id = "c1",
] = process.argv.slice(2);

async function main() {
  const shim = createShimClient(address);
  const status = async () => (await shim.state(id, { deadlineMs: 10_000 })).status;
  try {
    const pid = await shim.create(id, { bundle }, { deadlineMs: 60_000 });
    console.log(`create: ${id} is ${await status()}, init pid ${pid}`);
    await shim.start(id, { deadlineMs: 60_000 });
    console.log(`start: ${await status()}`);
    await shim.pause(id);
    console.log(`pause: ${await status()}`);
    await shim.resume(id);
    console.log(`resume: ${await status()}`);
    await shim.kill(id, "KILL");
    console.log(`kill: ${await status()}`);
    const hadPid = await shim.delete(id);
    console.log(`delete: ${id} is gone, its init pid was ${hadPid}`);
  } catch (e) {
    if (!(e instanceof ShimError)) throw e;
    console.error(`${e.codeName}: ${e.details}${e.reason === undefined ? "" : ` (reason ${e.reason})`}`);
    process.exitCode = 1;
  } finally {
    shim.close();
  }
}

main();
