// A container's whole life through runc-shim's typed client (ES module):
// create, state, start, pause, resume, kill, delete.
//
//   node lifecycle.mjs [SOCKET] [BUNDLE] [ID]
//
// SOCKET: the server's socket (default $RUNC_SHIM_ADDRESS or /run/runc-shim/shim.sock);
// BUNDLE: an absolute path to an OCI bundle dir holding config.json (default /containers/c1);
// ID: the container id (default c1). Exit 0 when the container went through its whole life.
import { createShimClient, ShimError } from "runc-shim";

const [
  address = process.env.RUNC_SHIM_ADDRESS ?? "/run/runc-shim/shim.sock",
  bundle = "/containers/c1",
  id = "c1",
] = process.argv.slice(2);

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
  // codeName: NOT_FOUND, FAILED_PRECONDITION, ...; reason: the libcontainer code the server sent.
  console.error(`${e.codeName}: ${e.details}${e.reason === undefined ? "" : ` (reason ${e.reason})`}`);
  process.exitCode = 1;
} finally {
  shim.close();
}
