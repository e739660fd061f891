import fs from "node:fs";

/** `O_CLOEXEC` as `/proc/<pid>/fdinfo/<fd>` prints it in its octal `flags:` field. */
const O_CLOEXEC = 0o2000000;

/**
 * Closes the file descriptors this process inherited from its parent (every
 * fd above 2 without close-on-exec), as a daemon should (systemd's daemon(7)):
 * left open they would pass to runc and from runc into every container it
 * creates. Node and libuv open everything close-on-exec, so only what came
 * from the parent is touched; Node's own IPC channel (`NODE_CHANNEL_FD`) is
 * kept.
 *
 * @param procDir the procfs dir of this process, `/proc/self` by default
 * @returns the fds closed
 */
export function closeInheritedFds(procDir = "/proc/self"): number[] {
  const keep = new Set([0, 1, 2]);
  const channel = Number(process.env.NODE_CHANNEL_FD);
  if (Number.isInteger(channel)) keep.add(channel);
  let names: string[];
  try {
    names = fs.readdirSync(`${procDir}/fd`);
  } catch {
    return []; // no procfs: nothing can be told apart
  }
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || keep.has(fd)) continue;
    let flags: number;
    try {
      const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`${procDir}/fdinfo/${fd}`, "utf8"));
      if (m === null) continue;
      flags = parseInt(m[1]!, 8);
    } catch {
      continue; // the fd of the readdir itself, gone by now
    }
    if ((flags & O_CLOEXEC) !== 0) continue;
    try {
      fs.closeSync(fd);
      closed.push(fd);
    } catch {
      // closed meanwhile
    }
  }
  return closed;
}
