/**
 * The storage domain end to end: file calls from programs on XOS cores cross the request rings
 * to the storage domain, whose filesystem runs on an NVMe VF backed by an image file in a tmp
 * folder — the whole machine, nothing mocked. Programs are scenarios of
 * test/fixtures/programs/files.ts; each prints one JSON line that this file checks, and the
 * image is checked again from the host after shutdown (mount, read, fsck).
 *
 * Behaviours: every file call's result and errno against Linux's; durability across a power
 * cut (fsynced data complete, unsynced data absent or a prefix of whole write calls, the image
 * consistent), also when the cut lands in the middle of fsyncs (each fsync that returned 0
 * survives; the program gets EIO, not a crash); shared green threads on both cores writing
 * files at once, appending to one O_APPEND file, racing on O_EXCL; descriptors private to a
 * process; files closed at process exit (their space comes back), even when the pid is reused
 * before the domain looks; a tree written by one machine read back by the next.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  EIO,
  EISDIR,
  EMFILE,
  ENAMETOOLONG,
  ENOENT,
  ENOTDIR,
  ENOTEMPTY,
  ESPIPE,
} from "../src/abi/errno.js";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import { MAX_FDS } from "../src/hv/layout.js";
import { boot, type Machine, type SupervisorEvent } from "../src/hv/machine.js";
import { firstMismatch } from "./fixtures/programs/files-pattern.js";

const FILES = fileURLToPath(new URL("./fixtures/programs/files.js", import.meta.url));
/** 32 MiB images: a 128-block log, so a 1 MiB write spans several transactions. */
const IMAGE_BLOCKS = 8192;

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "exocore-storage-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Line = Record<string, unknown> & { tag: string };

/** A running machine on an image, with its console split into the scenarios' JSON lines. */
interface Booted {
  readonly m: Machine;
  readonly events: SupervisorEvent[];
  readonly errors: string[];
  /** The next line tagged `tag` not taken yet (waits until a program prints it). */
  line(tag: string): Promise<Line>;
  /** Run a scenario of files.ts; resolves with its exit status. */
  run(...args: (string | number)[]): Promise<number>;
}

/** A fresh image made by mkfs; `prepare` may shape it from the host first. */
function makeImage(name: string, prepare?: (fs: FileSystem) => void): string {
  const path = join(dir, name);
  const dev = FileBlockDevice.create(path, IMAGE_BLOCKS);
  try {
    FileSystem.mkfs(dev);
    if (prepare) {
      const fs = FileSystem.mount(dev);
      prepare(fs);
      fs.unmount();
    }
  } finally {
    dev.close();
  }
  return path;
}

/** Boot a 2-core machine on `image`, run `body`, and shut down (unless body already did). */
async function withMachine<T>(image: string, body: (b: Booted) => Promise<T>): Promise<T> {
  const lines: Line[] = []; // printed, not taken yet
  const waiting = new Map<string, (l: Line) => void>();
  const events: SupervisorEvent[] = [];
  const errors: string[] = [];
  let pending = "";
  const m = await boot({
    cores: 2,
    memoryMiB: 32,
    disk: image,
    stdout: (s) => {
      pending += s;
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const l = JSON.parse(pending.slice(0, nl)) as Line;
        pending = pending.slice(nl + 1);
        const w = waiting.get(l.tag);
        waiting.delete(l.tag);
        if (w) w(l);
        else lines.push(l);
      }
    },
    stderr: (s) => {
      errors.push(s);
    },
    onEvent: (e) => events.push(e),
  });
  const b: Booted = {
    m,
    events,
    errors,
    line: (tag) => {
      const at = lines.findIndex((l) => l.tag === tag);
      if (at >= 0) return Promise.resolve(lines.splice(at, 1)[0] as Line);
      return new Promise((resolve) => waiting.set(tag, resolve));
    },
    run: (...args) =>
      m.run(
        FILES,
        args.map((a) => String(a)),
      ),
  };
  try {
    return await body(b);
  } finally {
    await m.shutdown();
  }
}

/** Mount the image from the host (replaying its log), run `look`, unmount. */
function inspect<T>(image: string, look: (fs: FileSystem) => T): T {
  const dev = FileBlockDevice.open(image);
  try {
    const fs = FileSystem.mount(dev);
    const r = look(fs);
    fs.unmount();
    return r;
  } finally {
    dev.close();
  }
}

/** A file's bytes as the host sees them, or -errno. */
function contents(fs: FileSystem, path: string): Uint8Array | number {
  const ino = fs.lookup(path);
  if (ino < 0) return ino;
  const st = fs.statIno(ino);
  if (typeof st === "number") return st;
  const buf = new Uint8Array(st.size);
  const n = fs.read(ino, 0, buf);
  return n < 0 ? n : buf.subarray(0, n);
}

function assertPattern(got: Uint8Array | number, seed: number, size: number, what: string): void {
  assert.ok(typeof got !== "number", `${what}: ${String(got)}`);
  assert.equal(got.length, size, `${what}: size`);
  assert.equal(firstMismatch(got, seed, 0), -1, `${what}: content`);
}

/** Cut the power of the machine's disk: its volatile write cache is lost. */
function powerCut(b: Booted): void {
  assert.ok(b.m.devices, "the machine has devices");
  b.m.devices.powerCut();
}

/** Supervisor events other than long runs (a slow host may report those): none expected. */
function quiet(events: SupervisorEvent[]): SupervisorEvent[] {
  return events.filter((e) => e.type !== "long-run");
}

function assertClean(fs: FileSystem): void {
  const report = fs.fsck();
  assert.deepEqual(report.problems, [], "fsck finds no problem");
  assert.equal(report.clean, true);
}

test("every file call through the machine gives Linux's result or errno", async () => {
  const image = makeImage("errno.img");
  const r = await withMachine(image, async (b) => {
    assert.equal(await b.run("errno"), 0);
    assert.deepEqual(quiet(b.events), []);
    return b.line("errno");
  });
  const expected: Record<string, unknown> = {
    // open, O_CREAT, O_EXCL, paths
    mkdir: 0,
    mkdirExisting: -EEXIST,
    mkdirNoParent: -ENOENT,
    openMissing: -ENOENT,
    openMissingParent: -ENOENT,
    openEmptyPath: -ENOENT,
    statEmptyPath: -ENOENT,
    createFd: 3,
    exclExisting: -EEXIST,
    creatExistingOpens: true,
    closeAgain: 0,
    // offsets: read/write move them, pread/pwrite do not, lseek in all three ways
    write: 11,
    offsetAfterWrite: 11,
    pread: "world",
    offsetAfterPread: 11,
    pwrite: 5,
    offsetAfterPwrite: 11,
    seekSet: 0,
    read: "HELLO world",
    readAtEnd: "",
    seekEnd: 6,
    seekCur: 8,
    seekNegativeSet: -EINVAL,
    seekNegativeCur: -EINVAL,
    seekNegativeEnd: -EINVAL,
    seekBadWhence: -EINVAL,
    offsetAfterBadSeeks: 8,
    seekPastEnd: 20000,
    writeAfterHole: 1,
    // fstat / stat: sizes, types, links; a hole holds no block and reads as zeros
    fstatSize: 20001,
    fstatType: "file",
    fstatNlink: 1,
    fstatBlocks: 2,
    holeReadsZeros: true,
    statSameInode: true,
    statSize: 20001,
    statDirType: "dir",
    statDirNlink: 2,
    statRootType: "dir",
    statMissing: -ENOENT,
    statThroughFile: -ENOTDIR,
    // ftruncate: shrink frees, grow reads zeros (not the bytes cut off before), offset stays
    truncateShrink: 0,
    sizeAfterShrink: 5,
    blocksAfterShrink: 1,
    truncateGrow: 0,
    sizeAfterGrow: 10000,
    grownContent: `HELLO${"\0".repeat(11)}`,
    truncateNegative: -EINVAL,
    offsetAfterTruncate: 20001,
    // close, and every call on a closed or never-opened fd
    close: 0,
    closeTwice: -EBADF,
    readAfterClose: -EBADF,
    writeAfterClose: -EBADF,
    preadAfterClose: -EBADF,
    pwriteAfterClose: -EBADF,
    lseekAfterClose: -EBADF,
    fstatAfterClose: -EBADF,
    fsyncAfterClose: -EBADF,
    ftruncateAfterClose: -EBADF,
    closeNeverOpened: -EBADF,
    closeNegative: -EBADF,
    closeHuge: -EBADF,
    // access modes
    writeReadOnly: -EBADF,
    pwriteReadOnly: -EBADF,
    ftruncateReadOnly: -EINVAL,
    fsyncReadOnly: 0,
    readReadOnly: "HELLO",
    readWriteOnly: -EBADF,
    preadWriteOnly: -EBADF,
    sizeUnchangedByMisuse: 10000,
    sizeAfterOTrunc: 0,
    // O_APPEND: every write goes to the end, even after lseek; reads still use the offset
    appendSeek: 0,
    appendWrite: 3,
    appendOffset: 6,
    appendContent: "abcdef",
    appendReadsFromStart: "abc",
    appendWriteRdwr: 1,
    appendRdwrContent: "abcdefg",
    // directories and files in the wrong place
    openDirWrite: -EISDIR,
    openDirRdwr: -EISDIR,
    openDirCreate: -EISDIR,
    openFileAsDir: -ENOTDIR,
    openThroughFile: -ENOTDIR,
    readDirFd: -EISDIR,
    writeDirFd: -EBADF,
    ftruncateDirFd: -EINVAL,
    fstatDirFd: "dir",
    lseekConsole: -ESPIPE,
    readStdin: 0,
    // unlink, rmdir, mkdir
    unlinkDir: -EISDIR,
    unlinkMissing: -ENOENT,
    rmdirNonEmpty: -ENOTEMPTY,
    rmdirFile: -ENOTDIR,
    rmdirMissing: -ENOENT,
    rmdirRoot: -EBUSY,
    mkdirOverFile: -EEXIST,
    rmdirEmpty: 0,
    statRemovedDir: -ENOENT,
    // rename replaces a file; a descriptor of the replaced file still reads it
    renameReplace: 0,
    renameSourceGone: -ENOENT,
    renameTargetContent: "SRC",
    replacedStillOpenReads: "DST-OLD",
    replacedNlink: 0,
    renameFileOntoDir: -EISDIR,
    renameDirOntoFile: -ENOTDIR,
    renameDirOntoNonEmpty: -ENOTEMPTY,
    renameIntoItself: -EINVAL,
    renameMissing: -ENOENT,
    renameDirMove: 0,
    movedParentNlink: 3,
    // readdir
    readdir: ["a:file", "dst:file", "log:file", "sub:dir"],
    readdirFile: -ENOTDIR,
    readdirMissing: -ENOENT,
    readdirRoot: ["e:dir"],
    readdirMany: 150,
    // bad buffers: caught by the libOS, and by the domain when a call goes straight to it
    readWild: -EFAULT,
    writeWild: -EFAULT,
    writePageZero: -EFAULT,
    preadWild: -EFAULT,
    pwriteWild: -EFAULT,
    readIntoReadOnly: -EFAULT,
    domainReadWild: -EFAULT,
    offsetAfterDomainReadWild: 0,
    domainWriteWild: -EFAULT,
    sizeAfterDomainWriteWild: 7,
    domainReadReadOnly: -EFAULT,
    domainOpenWild: -EFAULT,
    domainFstatWild: -EFAULT,
    domainStatWild: -EFAULT,
    writeZero: 0,
    readZero: 0,
    // names and paths: NAME_MAX 255, PATH_MAX 4096 with the NUL (4095 bytes at most)
    nameTooLong: -ENAMETOOLONG,
    name255Opens: true,
    name255Unlink: 0,
    mkdirNameTooLong: -ENAMETOOLONG,
    renameNameTooLong: -ENAMETOOLONG,
    pathTooLong: -ENAMETOOLONG,
    path4095: "dir",
    path4096: -ENAMETOOLONG,
    // the descriptor table: EMFILE when full, the lowest free fd first
    emfile: -EMFILE,
    openBeforeEmfile: MAX_FDS - 3,
    lowestFirst: true,
    closedAll: true,
    reusesLowestFree: true,
    fsyncBadFd: -EBADF,
  };
  const { tag: _tag, ...got } = r;
  for (const [k, want] of Object.entries(expected)) assert.deepEqual(got[k], want, k);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(expected).sort(), "every result checked");
  // What the program left is on the image, consistent, once the machine is down.
  inspect(image, (fs) => {
    assertClean(fs);
    assert.deepEqual((fs.readdir("/e") as { name: string }[]).map((e) => e.name).sort(), [
      "a",
      "dst",
      "log",
      "many",
      "sub",
    ]);
    const log = contents(fs, "/e/log");
    assert.equal(typeof log === "number" ? log : new TextDecoder().decode(log), "abcdefg");
  });
});

test("a power cut keeps what fsync made durable; unsynced writes come back whole or not at all", async (t) => {
  const image = makeImage("durable.img");
  const A = 100_000;
  const B = 1 << 20;
  const CHUNK = 65536;
  await withMachine(image, async (b) => {
    assert.equal(await b.run("durable", A, B, CHUNK), 0);
    const r = await b.line("durable");
    assert.equal(r.wroteA, A);
    assert.equal(r.fsyncA, 0);
    assert.equal(r.wroteB, B);
    // Pull the plug before the storage domain's unmount can commit what was never fsynced.
    powerCut(b);
  });
  inspect(image, (fs) => {
    assertPattern(contents(fs, "/A"), 1, A, "/A (fsynced)");
    const got = contents(fs, "/B");
    if (typeof got === "number") {
      assert.equal(got, -ENOENT, "/B is absent, or present and correct");
    } else {
      // Each write call of B was one transaction chunk: a prefix of whole calls survives.
      assert.equal(got.length % CHUNK, 0, `/B holds whole write calls: ${got.length} bytes`);
      assert.equal(firstMismatch(got, 2, 0), -1, "/B holds B's bytes, in place");
    }
    // More than one outcome is correct (the domain commits on its own after 100 ms): say which.
    const seen = typeof got === "number" ? "absent" : `${got.length} of ${B} bytes`;
    t.diagnostic(`after the power cut /B is ${seen}; ${fs.stats().replayedBlocks} blocks replayed`);
    assertClean(fs);
  });
});

test("a power cut between fsyncs: each fsync that returned 0 survives, the next call fails with EIO", async () => {
  const image = makeImage("churn.img");
  const BYTES = 4000; // one write call per file: a file after the last fsync is whole or absent
  let synced = 0;
  await withMachine(image, async (b) => {
    const running = b.run("churn", BYTES);
    await b.line("churn-go");
    powerCut(b);
    assert.equal(await running, 0);
    const r = await b.line("churn");
    assert.equal(r.error, -EIO, "the program sees an error, not a crash");
    synced = r.synced as number;
    assert.ok(synced >= 3, `at least the files before "churn-go" were fsynced (${synced})`);
    assert.deepEqual(quiet(b.events), []);
  });
  inspect(image, (fs) => {
    for (let k = 0; k < synced; k++) {
      assertPattern(contents(fs, `/c/f${k}`), 1000 + k, BYTES, `/c/f${k} (fsync returned 0)`);
    }
    for (const e of fs.readdir("/c") as { name: string }[]) {
      const k = Number(e.name.slice(1));
      if (k < synced) continue;
      const got = contents(fs, `/c/${e.name}`);
      assert.ok(typeof got !== "number" && (got.length === 0 || got.length === BYTES), e.name);
      assert.equal(firstMismatch(got, 1000 + k, 0), -1, `${e.name} holds its own bytes`);
    }
    assertClean(fs);
  });
});

test("shared green threads appending to one O_APPEND file never overwrite each other", async () => {
  const image = makeImage("append.img");
  const N = 16;
  const K = 40;
  await withMachine(image, async (b) => {
    assert.equal(await b.run("append", N, K), 0);
    assert.deepEqual(await b.line("append"), {
      tag: "append",
      failed: 0,
      size: N * K * 100,
      records: N * K,
      bad: 0,
    });
  });
});

test("shared green threads on both cores write distinct files at once, all intact", async () => {
  const image = makeImage("threads.img");
  const N = 200;
  const BYTES = 12_000;
  await withMachine(image, async (b) => {
    assert.equal(await b.run("threads", N, BYTES, 3000), 0);
    const r = (await b.line("threads")) as Line & { statuses: number[] };
    // A writer's status is its core, or 100 + errno of a failed open, 200 + errno of a write…
    const failed: Record<number, number> = {};
    for (const s of r.statuses) if (s !== 0 && s !== 1) failed[s] = (failed[s] ?? 0) + 1;
    assert.deepEqual(failed, {}, "every writer wrote and checked its file (status → count)");
    assert.ok(r.statuses.includes(0) && r.statuses.includes(1), "writers ran on both cores");
    assert.equal(r.verified, N);
    assert.equal(r.listed, N + 1, "the writers' files and /t/excl");
    const exclusive = r.exclusive as number[];
    assert.deepEqual(exclusive, [...new Array(15).fill(-EEXIST), 0], "one O_EXCL create wins");
    assert.deepEqual(quiet(b.events), []);
  });
  inspect(image, (fs) => {
    for (let i = 0; i < N; i++) assertPattern(contents(fs, `/t/f${i}`), 100 + i, BYTES, `/t/f${i}`);
    assertClean(fs);
  });
});

test("a process's descriptors and domain handles mean nothing in another process", async () => {
  const image = makeImage("procs.img");
  await withMachine(image, async (b) => {
    const holding = b.run("holder");
    const h = await b.line("holder");
    assert.equal(h.fd, 3);
    const probing = b.run("prober", h.handle as number, h.fd as number);
    assert.equal(await probing, 0);
    assert.equal(await holding, 0);
    const p = await b.line("prober");
    assert.notEqual(p.pid, h.pid, "two processes ran at once");
    assert.deepEqual(
      { ...p, pid: 0 },
      {
        tag: "prober",
        pid: 0,
        fdNotMine: -EBADF,
        domainRead: -EBADF,
        domainWrite: -EBADF,
        domainLseek: -EBADF,
        domainFstat: -EBADF,
        domainFtruncate: -EBADF,
        domainFsync: -EBADF,
        domainClose: -EBADF,
        mineFd: 3,
        mineHandleDiffers: true,
        mineReads: "prober's own",
      },
    );
    // The holder's file was not read, written, truncated, moved or closed by the prober.
    assert.deepEqual(await b.line("holder-done"), {
      tag: "holder-done",
      stillReads: "held by the holder",
      offset: 18,
      size: 18,
      close: 0,
    });
    // A later process (it may get the holder's pid again) cannot use the closed handle either.
    assert.equal(await b.run("prober", h.handle as number, h.fd as number), 0);
    const later = await b.line("prober");
    for (const k of ["fdNotMine", "domainRead", "domainWrite", "domainClose"]) {
      assert.equal(later[k], -EBADF, k);
    }
  });
});

test("files a process leaves open are closed at its exit: unlinked, their space comes back", async () => {
  let baseline = { freeBlocks: 0, freeInodes: 0 };
  // The root gets its first directory block before the baseline, so the run can give back
  // every block it takes.
  const image = makeImage("leak.img", (fs) => {
    assert.equal(fs.mkdir("/keep"), 0);
  });
  inspect(image, (fs) => {
    const s = fs.stats();
    baseline = { freeBlocks: s.freeBlocks, freeInodes: s.freeInodes };
  });
  const N = 6;
  const BYTES = 100_000;
  await withMachine(image, async (b) => {
    assert.equal(await b.run("leak", N, BYTES), 0);
    assert.deepEqual(await b.line("leak"), {
      tag: "leak",
      mkdir: 0,
      second: true,
      goneWrote: BYTES,
      goneUnlink: 0,
      goneStillReads: true,
      sync: 0,
      opened: N,
    });
    assert.equal(await b.run("unleak", N), 0);
    assert.deepEqual(await b.line("unleak"), { tag: "unleak", unlinked: N, rmdir: 0, sync: 0 });
  });
  inspect(image, (fs) => {
    const s = fs.stats();
    assert.equal(s.orphansFreed, 0, "no inode was left for mount to free: the exit closed them");
    assert.deepEqual({ freeBlocks: s.freeBlocks, freeInodes: s.freeInodes }, baseline);
    assertClean(fs);
  });
});

test("an exited process's files are closed even when its pid runs again before the domain looks", async () => {
  // A process overwriting 1 MiB at a time keeps the storage domain in long rounds; meanwhile a
  // process exits with files open and the next process takes its pid before the domain looks.
  // That process unlinks the files and is still running when the machine stops: if the exit
  // had not closed them, they would be open orphans at shutdown, for mount to free.
  const image = makeImage("reuse.img");
  await withMachine(image, async (b) => {
    void b.run("hammer", 2);
    await b.line("hammer-go");
    assert.equal(await b.run("leak", 4, 50_000), 0);
    assert.equal((await b.line("leak")).opened, 4);
    void b.run("unleak", 4, "hold");
    assert.deepEqual(await b.line("unleak"), { tag: "unleak", unlinked: 4, rmdir: 0, sync: 0 });
  });
  inspect(image, (fs) => {
    assert.equal(fs.stats().orphansFreed, 0, "every leaked file was closed at its process's exit");
    assertClean(fs);
  });
});

test("a tree written by one machine is read back by the next after a clean shutdown", async () => {
  const image = makeImage("persist.img");
  await withMachine(image, async (b) => {
    assert.equal(await b.run("persist-write"), 0);
    assert.deepEqual(await b.line("persist-write"), {
      tag: "persist-write",
      mkdir: 0,
      big: 300 * 1024 + 123,
      small: 12,
      rename: 0,
      unlink: 0,
    });
  });
  await withMachine(image, async (b) => {
    assert.equal(await b.run("persist-read"), 0);
    assert.deepEqual(await b.line("persist-read"), {
      tag: "persist-read",
      listing: ["hello.txt:file", "q:dir"],
      hello: "hello, disk\n",
      big: 300 * 1024 + 123,
      gone: -ENOENT,
    });
  });
  inspect(image, (fs) => {
    assertPattern(contents(fs, "/p/q/big"), 7, 300 * 1024 + 123, "/p/q/big");
    assert.equal(fs.stats().replayedBlocks, 0, "the clean shutdown left nothing in the log");
    assertClean(fs);
  });
});
