/**
 * exofs survives power cuts: for each workload (create + write, rename, unlink, a multi-block
 * write, a directory tree, group commit that overflows the log, ordered data written home early
 * by a small cache, a write larger than the log), the power is cut after every possible number
 * of block writes — which puts a cut at every device write, just before every flush and at every
 * FUA commit record — and the image after the cut keeps none, all, or random subsets of the
 * writes not yet flushed (the durability contract of src/fs/blockdev.ts). Each such image must
 * mount, pass fsck, and show exactly the state of a commit point: the last commit that
 * completed, or the one the cut interrupted — never part of a transaction, data included: new
 * blocks are written home unlogged before their commit (ordered data), overwrites are logged,
 * and neither may show early. The log's slots are a ring whose commits leave homes unflushed;
 * the workloads commit often enough to wrap it, and a remount after each crash replays.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { EIO } from "../src/abi/errno.js";
import { FileSystem, type FileSystem as Fs } from "../src/fs/fs.js";
import { type CrashChoice, MemoryBlockDevice } from "../src/fs/memdev.js";

const BS = 4096;
const CLOCK = { now: () => 1_700_000_000_000 };

/** One filesystem call; returns what the call returned (a negative number is -errno). */
type Step = (fs: Fs) => number;
/** Steps that form one transaction: committed together after the last one. */
type Txn = readonly Step[];

function bytes(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (seed * 7 + i * 13 + (i >> 12)) & 0xff;
  return out;
}

const create =
  (path: string): Step =>
  (fs) =>
    fs.create(path, { mode: "file", exclusive: true });
const write =
  (path: string, off: number, data: Uint8Array): Step =>
  (fs) => {
    const ino = fs.lookup(path);
    return ino < 0 ? ino : fs.write(ino, off, data);
  };
const truncate =
  (path: string, size: number): Step =>
  (fs) => {
    const ino = fs.lookup(path);
    return ino < 0 ? ino : fs.truncate(ino, size);
  };

/** Everything visible through the API, as one string: paths, types, sizes, link counts, data. */
function snapshot(fs: Fs): string {
  const lines: string[] = [];
  const walk = (path: string) => {
    const entries = fs.readdir(path);
    assert.ok(Array.isArray(entries), `readdir ${path}: ${entries}`);
    for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path === "/" ? `/${e.name}` : `${path}/${e.name}`;
      const st = fs.stat(p);
      assert.ok(typeof st === "object", `stat ${p}: ${st}`);
      if (st.type === "dir") {
        lines.push(`${p}/ nlink=${st.nlink}`);
        walk(p);
      } else {
        const data = new Uint8Array(st.size);
        assert.equal(fs.read(st.ino, 0, data), st.size, `read ${p}`);
        const sum = createHash("sha1").update(data).digest("hex").slice(0, 12);
        lines.push(`${p} size=${st.size} nlink=${st.nlink} sha1=${sum}`);
      }
    }
  };
  walk("/");
  return lines.join("\n");
}

/**
 * End transaction `t`: sync() for odd ones, commit() for even ones — both are durable when
 * they return, and both are checked.
 */
function end(fs: Fs, t: number): number {
  return t % 2 === 1 ? fs.sync() : fs.commit();
}

/** Mount options of the runs under test: a cache size (else the default) and the clock. */
type Mount = { readonly cacheBlocks?: number; readonly now: () => number };

/** A base image: mkfs, then `setup` committed and cleanly unmounted. */
function baseImage(setup: Txn, logBlocks = 64, blocks = 512): Uint8Array {
  const dev = new MemoryBlockDevice(blocks); // 2 MiB by default
  FileSystem.mkfs(dev, { logBlocks, inodes: 64, ...CLOCK });
  const fs = FileSystem.mount(dev, CLOCK);
  for (const step of setup) assert.ok(step(fs) >= 0, "setup step");
  fs.unmount();
  return dev.image();
}

/** A small seeded generator (LCG) for random subsets of the unflushed writes. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Reference {
  /** States at the commit points, in order (the first is the base image). */
  readonly states: readonly string[];
  /** Block writes the whole workload issues. */
  readonly writes: number;
  /** For each step, in order: the last commit point that is durable once it returns. */
  readonly afterStep: readonly number[];
  /** For each transaction: its commit point (durable once commit() returns). */
  readonly afterCommit: readonly number[];
}

/**
 * Run the workload once with no power cut and record its commit points: after each explicit
 * commit, and before any step during which the log committed by itself (group commit).
 */
function reference(image: Uint8Array, txns: readonly Txn[], mount: Mount = CLOCK): Reference {
  const dev = new MemoryBlockDevice(0, image);
  const fs = FileSystem.mount(dev, mount);
  const w0 = dev.stats.writeBlocks;
  const states = [snapshot(fs)];
  const afterStep: number[] = [];
  const afterCommit: number[] = [];
  let before = states[0];
  for (const [t, txn] of txns.entries()) {
    for (const step of txn) {
      const t0 = fs.stats().transactions;
      assert.ok(step(fs) >= 0, "reference step");
      if (fs.stats().transactions > t0) states.push(before); // committed at this step's start
      afterStep.push(states.length - 1);
      before = snapshot(fs);
    }
    assert.equal(end(fs, t), 0);
    states.push(before);
    afterCommit.push(states.length - 1);
  }
  return { states, writes: dev.stats.writeBlocks - w0, afterStep, afterCommit };
}

const CHOICES = (k: number): readonly [string, CrashChoice][] => [
  ["none", "none"],
  ["all", "all"],
  ["random a", { rng: rng(k * 3 + 1) }],
  ["random b", { rng: rng(k * 3 + 2), keep: 0.2 }],
  ["random c", { rng: rng(k * 3 + 3), keep: 0.8 }],
];

/**
 * Cut the power after k block writes, for every k, and check every image a crash can leave.
 * Returns how many images were checked.
 */
function crashEverywhere(
  setup: Txn,
  txns: readonly Txn[],
  logBlocks?: number,
  mount: Mount = CLOCK,
  blocks?: number,
): number {
  const image = baseImage(setup, logBlocks, blocks);
  const ref = reference(image, txns, mount);
  const distinct = new Set(ref.states).size;
  assert.ok(distinct >= 2, "the workload changes something");
  let checked = 0;
  for (let k = 0; k <= ref.writes; k++) {
    const dev = new MemoryBlockDevice(0, image);
    const fs = FileSystem.mount(dev, mount);
    dev.cutPowerAfter(k);
    let durable = 0;
    let stepIndex = 0;
    run: for (const [t, txn] of txns.entries()) {
      for (const step of txn) {
        const r = step(fs);
        if (r === -EIO) break run;
        assert.ok(r >= 0, `step ${stepIndex} returned ${r}`);
        durable = ref.afterStep[stepIndex++];
      }
      if (end(fs, t) !== 0) break;
      durable = ref.afterCommit[t];
    }
    // The commit in flight when the power went is the one after the last that completed.
    const allowed = ref.states.slice(durable, durable + 2);
    for (const [label, choice] of CHOICES(k)) {
      const after = FileSystem.mount(dev.crash(choice), CLOCK);
      const report = after.fsck();
      assert.deepEqual(report.problems, [], `fsck after a cut at write ${k} (${label})`);
      const state = snapshot(after);
      assert.ok(
        allowed.includes(state),
        `cut at write ${k} (${label}), ${durable} commits durable: the state is no commit point\n--- got\n${state}\n--- allowed\n${allowed.join("\n---\n")}`,
      );
      checked++;
    }
  }
  return checked;
}

describe("exofs after a power cut at every write", () => {
  it("create + write, then an overwrite that extends the file", () => {
    const n = crashEverywhere(
      [],
      [[create("/f"), write("/f", 0, bytes(1, 10_000))], [write("/f", 5000, bytes(2, 9000))]],
    );
    assert.ok(n > 50);
  });

  it("rename across directories, and rename replacing a file", () => {
    crashEverywhere(
      [
        (fs) => fs.mkdir("/d1"),
        (fs) => fs.mkdir("/d2"),
        create("/d1/x"),
        write("/d1/x", 0, bytes(3, 7000)),
        create("/d1/z"),
        write("/d1/z", 0, bytes(4, 20_000)),
      ],
      [[(fs) => fs.rename("/d1/x", "/d2/y")], [(fs) => fs.rename("/d2/y", "/d1/z")]],
    );
  });

  it("unlink of a large file, then unlink + create in one transaction", () => {
    crashEverywhere(
      [
        create("/big"),
        write("/big", 0, bytes(5, 200_000)),
        create("/small"),
        write("/small", 0, bytes(6, 100)),
      ],
      [[(fs) => fs.unlink("/big")], [(fs) => fs.unlink("/small"), create("/new")]],
    );
  });

  it("a multi-block write across the direct/indirect boundary, then a truncate", () => {
    crashEverywhere(
      [create("/f"), write("/f", 0, bytes(7, 30_000))],
      [[write("/f", 40_000, bytes(8, 100_000))], [truncate("/f", 45_000)]],
    );
  });

  it("a directory tree made, filled, moved and pruned", () => {
    crashEverywhere(
      [],
      [
        [
          (fs) => fs.mkdir("/t"),
          (fs) => fs.mkdir("/t/a"),
          (fs) => fs.mkdir("/t/a/b"),
          create("/t/a/b/f"),
          write("/t/a/b/f", 0, bytes(9, 5000)),
        ],
        [(fs) => fs.rename("/t/a", "/u"), (fs) => fs.rmdir("/t")],
        [(fs) => fs.unlink("/u/b/f"), (fs) => fs.rmdir("/u/b")],
      ],
    );
  });

  it("group commit: calls that overflow the log commit at call boundaries", () => {
    const setup: Step[] = [];
    const many: Step[] = [];
    for (let i = 0; i < 13; i++) {
      setup.push(create(`/f${i}`), write(`/f${i}`, 0, bytes(i, 16_000)));
      // New files' blocks are ordered data, not logged; overwrites of committed data are
      // logged, and fill the log.
      many.push(write(`/f${i}`, 100, bytes(i + 50, 15_000)), create(`/g${i}`));
      many.push(write(`/g${i}`, 0, bytes(i + 90, 5000)));
    }
    const ref = reference(baseImage(setup, 40), [many]);
    assert.ok(ref.states.length > 3, "the log filled and committed by itself");
    crashEverywhere(setup, [many], 40);
  });

  it("a block freed and allocated again in one transaction is logged, not written over", () => {
    // On a 1 MiB image (183 data blocks) /a takes all but ~10; the new file's blocks run past
    // them into /a's, which the running transaction freed but the committed state gives to /a.
    crashEverywhere(
      [create("/a"), write("/a", 0, bytes(20, 170 * BS))],
      [[(fs) => fs.unlink("/a"), create("/c"), write("/c", 0, bytes(21, 24 * BS))]],
      undefined,
      CLOCK,
      256,
    );
  });

  it("ordered data that a small cache writes home early, then appends and overwrites", () => {
    // 40 log blocks + 72: room for 4 ordered blocks, so most of them go home mid-transaction.
    const small = { cacheBlocks: 112, ...CLOCK };
    const first: Txn = [
      create("/o"),
      write("/o", 0, bytes(14, 12_000)),
      write("/o", 12_000, bytes(18, 12_000)),
      write("/o", 24_000, bytes(19, 16_000)),
    ];
    const dev = new MemoryBlockDevice(0, baseImage([], 40));
    const fs = FileSystem.mount(dev, small);
    for (const step of first) assert.ok(step(fs) > 0);
    assert.ok(fs.stats().orderedBlocks >= 6, "ordered data went home before any commit");
    assert.equal(fs.stats().transactions, 0);
    crashEverywhere(
      [],
      [
        first,
        [write("/o", 40_000, bytes(15, 30_000)), write("/o", 1000, bytes(16, 6000))],
        [create("/p"), write("/p", 0, bytes(17, 20_000)), truncate("/o", 12_000)],
      ],
      40,
      small,
    );
  });
});

describe("exofs after a power cut during a write larger than the log", () => {
  it("shows a prefix of an overwrite, in whole chunks, and all of it once committed", () => {
    const old = bytes(10, 600_000);
    const image = baseImage([create("/f"), write("/f", 0, old)], 40);
    const data = bytes(11, 600_000); // an overwrite is logged: several chunks with a 40-block log
    let writes = 0;
    {
      const dev = new MemoryBlockDevice(0, image);
      const fs = FileSystem.mount(dev, CLOCK);
      assert.equal(write("/f", 0, data)(fs), data.length);
      assert.equal(fs.commit(), 0);
      assert.ok(fs.stats().transactions >= 4, "the write spans several transactions");
      writes = dev.stats.writeBlocks;
    }
    const prefixes = new Set<number>();
    for (let k = 0; k <= writes; k += 3) {
      const dev = new MemoryBlockDevice(0, image);
      const fs = FileSystem.mount(dev, CLOCK);
      dev.cutPowerAfter(k);
      const done = write("/f", 0, data)(fs) === data.length && fs.sync() === 0;
      for (const [label, choice] of CHOICES(k)) {
        const after = FileSystem.mount(dev.crash(choice), CLOCK);
        assert.deepEqual(after.fsck().problems, [], `fsck, cut at ${k} (${label})`);
        const st = after.stat("/f");
        assert.ok(typeof st === "object");
        assert.equal(st.size, data.length);
        const got = new Uint8Array(st.size);
        assert.equal(after.read(st.ino, 0, got), st.size);
        // The two patterns differ in every byte: the first one not new is where old ones start.
        let p = 0;
        while (p < got.length && got[p] === data[p]) p++;
        if (done) assert.equal(p, data.length, "all of it once committed");
        assert.ok(p === data.length || p % BS === 0, `the new bytes end at ${p}, not a chunk end`);
        const rest = Buffer.from(got.subarray(p));
        assert.ok(rest.equals(Buffer.from(old.subarray(p))), "the old bytes after the new prefix");
        prefixes.add(p);
      }
    }
    assert.ok(prefixes.size >= 3, `several prefixes seen: ${[...prefixes]}`);
  });

  it("shows a prefix of a new file's data, in whole chunks, and all of it once committed", () => {
    const image = baseImage([create("/f")], 40);
    const small = { cacheBlocks: 112, ...CLOCK }; // little room for ordered data: many commits
    const data = bytes(11, 600_000);
    let writes = 0;
    {
      const dev = new MemoryBlockDevice(0, image);
      const fs = FileSystem.mount(dev, small);
      assert.equal(write("/f", 0, data)(fs), data.length);
      assert.equal(fs.commit(), 0);
      assert.ok(fs.stats().transactions >= 4, "the write spans several transactions");
      writes = dev.stats.writeBlocks;
    }
    const sizes = new Set<number>();
    for (let k = 0; k <= writes; k += 3) {
      const dev = new MemoryBlockDevice(0, image);
      const fs = FileSystem.mount(dev, small);
      dev.cutPowerAfter(k);
      const done = write("/f", 0, data)(fs) === data.length && fs.sync() === 0;
      for (const [label, choice] of CHOICES(k)) {
        const after = FileSystem.mount(dev.crash(choice), CLOCK);
        assert.deepEqual(after.fsck().problems, [], `fsck, cut at ${k} (${label})`);
        const st = after.stat("/f");
        assert.ok(typeof st === "object");
        if (done) assert.equal(st.size, data.length);
        assert.ok(st.size === data.length || st.size % BS === 0, `size ${st.size} is a chunk end`);
        const got = new Uint8Array(st.size);
        assert.equal(after.read(st.ino, 0, got), st.size);
        assert.ok(Buffer.from(got).equals(Buffer.from(data.subarray(0, st.size))), "a prefix");
        sizes.add(st.size);
      }
    }
    assert.ok(sizes.size >= 3, `several prefixes seen: ${[...sizes]}`);
  });
});

describe("exofs log replay", () => {
  it("installs a committed transaction at mount, again after a crash during the replay", () => {
    const image = baseImage([create("/f"), write("/f", 0, bytes(12, 20_000))]);
    const dev = new MemoryBlockDevice(0, image);
    const fs = FileSystem.mount(dev, CLOCK);
    const fresh = bytes(13, 30_000);
    assert.equal(write("/f", 0, fresh)(fs), fresh.length);
    const n = fs.stats().runningTxnBlocks;
    assert.ok(n > 5);
    const ordered = fs.stats().orderedWaiting;
    assert.ok(ordered > 0, "the new blocks of the file are ordered data");
    const want = snapshot(fs);
    // The power goes at the first install write after the commit point (the ordered data, the
    // log copies, their flush and the FUA header are done); "none" drops that write.
    dev.cutPowerAfter(ordered + n + 1);
    assert.equal(fs.commit(), -EIO);
    const committed = dev.crash("none").image();

    // The power goes again during the replay's install, after a few of its writes.
    for (let k = 0; k < n; k += 2) {
      const replaying = new MemoryBlockDevice(0, committed);
      replaying.cutPowerAfter(k);
      assert.throws(() => FileSystem.mount(replaying, CLOCK), /power cut/);
      for (const [label, choice] of CHOICES(k)) {
        const after = FileSystem.mount(replaying.crash(choice), CLOCK);
        assert.equal(after.stats().replayedBlocks, n, `replayed again (${label})`);
        assert.equal(snapshot(after), want, `cut at ${k} (${label})`);
        assert.deepEqual(after.fsck().problems, []);
      }
    }
    // A clean replay clears the header: the next mount has nothing to replay.
    const once = new MemoryBlockDevice(0, committed);
    assert.equal(FileSystem.mount(once, CLOCK).stats().replayedBlocks, n);
    const twice = FileSystem.mount(once.crash("none"), CLOCK);
    assert.equal(twice.stats().replayedBlocks, 0);
    assert.equal(snapshot(twice), want);
  });
});
