/**
 * Issue 11: containers that appear in the state root while the server runs are
 * read once runc has written their state.json (src/runtime/warm-new.ts), so
 * their first Start or State takes the warm path: state.json parsed and
 * cached, status files held open.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { StateRoot } from "../../src/runtime/container.js";
import { heldFiles } from "../../src/runtime/held-files.js";
import { NewContainerWarmer } from "../../src/runtime/warm-new.js";
import { DEAD_INIT, spawnInit, tempRoot, writeFakeContainer, type FakeInit } from "../helpers/fake-containers.js";
import { RuncFixture, skipRunc, uniqueId, waitFor } from "../helpers/runc.js";

const tmp = tempRoot("rs-warm-new-");
const inits: FakeInit[] = [];
const warmers: NewContainerWarmer[] = [];
afterEach(async () => {
  for (const w of warmers.splice(0)) w.close();
  for (const i of inits.splice(0)) await i.kill();
});
afterAll(() => tmp.cleanup());

function rootFor(name: string): string {
  const r = path.join(tmp.root, name);
  fs.mkdirSync(r, { mode: 0o700 });
  return r;
}

function warmerOn(root: StateRoot, opts?: ConstructorParameters<typeof NewContainerWarmer>[1]): NewContainerWarmer {
  const w = new NewContainerWarmer(root, opts);
  warmers.push(w);
  expect(w.start()).toBe(true);
  return w;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Whether a status file of a process (its `/proc/<pid>/stat`, or the `statm` held once its init was found alive) is held. */
const heldUnder = (procDir: string) => heldFiles.files().some((f) => f.startsWith(procDir));

describe("NewContainerWarmer", () => {
  it("reads a container that appears whole: state.json cached, its status files held", async () => {
    const dir = rootFor("whole");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root);
    const init = await spawnInit();
    inits.push(init);
    writeFakeContainer(dir, "c-whole", init);
    await waitFor(() => root.isCached("c-whole"), 5000, "the new container to be read");
    expect(w.warmed).toBe(1);
    expect(heldUnder(`/proc/${init.pid}/`)).toBe(true);
    expect(root.state("c-whole").status).toBe("created");
  });

  it("follows a dir made before its state.json until runc renames state.json into place, then stops following it", async () => {
    const dir = rootFor("later");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root);
    fs.mkdirSync(path.join(dir, "c-later"), { mode: 0o711 });
    await waitFor(() => w.following === 1, 5000, "the new dir to be followed");
    await sleep(50);
    expect(root.isCached("c-later")).toBe(false);
    writeFakeContainer(dir, "c-later", DEAD_INIT, { created: false }); // temporary file, then rename
    await waitFor(() => root.isCached("c-later"), 5000, "state.json to be read");
    expect(w.following).toBe(0);
    expect(root.state("c-later").status).toBe("stopped");
  });

  it("follows at most maxDirWatches dirs, each for at most dirWatchMs; what it misses is read by the first call", async () => {
    const dir = rootFor("bounded");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root, { maxDirWatches: 2, dirWatchMs: 300 });
    for (const n of ["b-1", "b-2", "b-3"]) fs.mkdirSync(path.join(dir, n), { mode: 0o711 });
    await waitFor(() => w.following === 2, 5000, "two dirs followed");
    await sleep(100);
    expect(w.following).toBe(2);
    await waitFor(() => w.following === 0, 5000, "the follow time to run out");
    writeFakeContainer(dir, "b-3", DEAD_INIT, { created: false });
    await sleep(200);
    expect(root.isCached("b-3")).toBe(false); // no longer followed: not read ahead
    expect(root.state("b-3").status).toBe("stopped"); // the call reads it, as without the warmer
  });

  it("ignores names that are not container ids and dirs removed before their state.json, and reads nothing after close", async () => {
    const dir = rootFor("odd");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root);
    fs.writeFileSync(path.join(dir, "not a container"), "");
    fs.mkdirSync(path.join(dir, "gone"), { mode: 0o711 });
    await waitFor(() => w.following === 1, 5000, "the dir to be followed");
    fs.rmdirSync(path.join(dir, "gone"));
    await waitFor(() => w.following === 0, 5000, "the removed dir to be let go");
    w.close();
    writeFakeContainer(dir, "after-close", DEAD_INIT, { created: false });
    await sleep(200);
    expect(root.isCached("after-close")).toBe(false);
    expect(w.warmed).toBe(0);
  });
});

describe("NewContainerWarmer against odd entries and removals", () => {
  it("keeps going past entries that are not container dirs: a file, a FIFO, a symlink to a file, a symlink loop", async () => {
    const dir = rootFor("stray");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root);
    fs.writeFileSync(path.join(dir, "stray"), "");
    fs.symlinkSync("/etc/hostname", path.join(dir, "to-file"));
    fs.symlinkSync("loop", path.join(dir, "loop"));
    execFileSync("mkfifo", [path.join(dir, "fifo")]);
    fs.symlinkSync(fs.mkdtempSync(path.join(tmp.dir, "outside-")), path.join(dir, "to-dir"));
    await sleep(100); // an uncaught ENOTDIR/ELOOP here would fail this run
    expect(w.following).toBe(0); // the symlinked dir is not followed
    writeFakeContainer(dir, "after-stray", DEAD_INIT, { created: false });
    await waitFor(() => root.isCached("after-stray"), 5000, "a container made after the odd entries to be read");
  });

  it("drops what it kept for a container deleted outside the shim: its cached state.json and held status files", async () => {
    const dir = rootFor("deleted");
    const root = new StateRoot(dir, "v1");
    warmerOn(root);
    const init = await spawnInit();
    inits.push(init);
    writeFakeContainer(dir, "c-deleted", init, { created: false });
    await waitFor(() => root.isCached("c-deleted"), 5000, "the container to be read");
    expect(heldUnder(`/proc/${init.pid}/`)).toBe(true);
    fs.rmSync(path.join(dir, "c-deleted"), { recursive: true }); // as runc delete does, with no call to the shim
    await waitFor(() => !root.isCached("c-deleted"), 5000, "the removal to be noticed");
    expect(heldUnder(`/proc/${init.pid}/`)).toBe(false);
  });

  it("follows a dir removed and made again under the same name: the new dir's state.json is read", async () => {
    const dir = rootFor("remade");
    const root = new StateRoot(dir, "v1");
    const w = warmerOn(root);
    const c = path.join(dir, "c-remade");
    fs.mkdirSync(c, { mode: 0o711 });
    await waitFor(() => w.following === 1, 5000, "the first dir to be followed");
    fs.rmdirSync(c);
    fs.mkdirSync(c, { mode: 0o711 }); // same name, same turn: a retried create
    await sleep(100);
    writeFakeContainer(dir, "c-remade", DEAD_INIT, { created: false });
    await waitFor(() => root.isCached("c-remade"), 5000, "the new dir's state.json to be read");
    expect(w.following).toBe(0);
  });
});

describe.skipIf(skipRunc())("NewContainerWarmer with runc", () => {
  let fx: RuncFixture;
  beforeAll(() => {
    fx = new RuncFixture("rs-warm-runc-");
  });
  afterAll(() => fx?.cleanup());

  it("a container made by runc create after start-up is read without any call", async () => {
    const root = new StateRoot(fx.root);
    const w = warmerOn(root);
    const id = fx.create(uniqueId("rs-warm"));
    await waitFor(() => root.isCached(id), 5000, "the runc container to be read");
    expect(w.warmed).toBe(1);
    expect(heldUnder(`/proc/${fx.initPid(id)}/`)).toBe(true);
    expect(root.state(id).status).toBe(fx.state(id).status);
    const pid = fx.initPid(id);
    fx.runc("delete", "-f", id);
    await waitFor(() => !root.isCached(id), 5000, "runc delete to be noticed");
    expect(heldUnder(`/proc/${pid}/`)).toBe(false);
  });
});
