/**
 * exofs reading ahead, and a buffer cache that a stream does not thrash: on a FileSystem over a
 * MemoryBlockDevice, counting device reads.
 *
 *   sequential   4 KiB reads of a cold file, one open file's ReadAhead: a device read per window
 *                (growing to 256 blocks), not per block; the same reads with no ReadAhead read
 *                block by block
 *   seeks        reads at scattered offsets read only what they ask for, nothing ahead
 *   whole file   a small file read whole is one device read the first time, none after, even
 *                with a large buffer; a file large for the cache goes past it
 *   cached runs  a run stops at a cached block: no block is read twice
 *   2Q           a small file read again and again stays cached while a file four times the
 *                cache streams through it
 *   crowded      a fill when the transaction pins most of what the active list leaves: it
 *                evicts active blocks, never its own
 *   model        (fast-check) random reads (sequential runs, seeks, odd sizes) and writes with a
 *                small cache: every byte read matches a plain model
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { FileSystem, RA_MAX_BLOCKS, ReadAhead } from "../src/fs/fs.js";
import { MemoryBlockDevice } from "../src/fs/memdev.js";

const BS = 4096;

function bytes(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (seed * 7 + i * 13 + (i >> 12)) & 0xff;
  return out;
}

/** A fresh image holding `files` (path → bytes), mounted again from cold (nothing cached). */
function coldMount(
  files: Record<string, Uint8Array>,
  opts: { cacheBlocks?: number; blocks?: number } = {},
): { fs: FileSystem; dev: MemoryBlockDevice } {
  const dev = new MemoryBlockDevice(opts.blocks ?? 8192);
  FileSystem.mkfs(dev, { logBlocks: 64 });
  const w = FileSystem.mount(dev);
  for (const [path, data] of Object.entries(files)) {
    const ino = w.create(path, { mode: "file", exclusive: true });
    assert.ok(ino > 0);
    for (let at = 0; at < data.length; at += 1 << 20) {
      const part = data.subarray(at, Math.min(data.length, at + (1 << 20)));
      assert.equal(w.write(ino, at, part), part.length);
    }
  }
  w.unmount();
  return { fs: FileSystem.mount(dev, { cacheBlocks: opts.cacheBlocks }), dev };
}

/** Read `path` to its end in `size`-byte reads; returns the bytes. */
function readAll(fs: FileSystem, path: string, size: number, ra?: ReadAhead): Uint8Array {
  const ino = fs.lookup(path);
  const st = fs.statIno(ino);
  assert.ok(typeof st === "object");
  const out = new Uint8Array(st.size);
  const buf = new Uint8Array(size);
  for (let off = 0; ; ) {
    const n = fs.read(ino, off, buf, -1, ra);
    assert.ok(n >= 0, `read at ${off}: ${n}`);
    if (n === 0) break;
    out.set(buf.subarray(0, n), off);
    off += n;
  }
  return out;
}

describe("read-ahead", () => {
  it("reads a file read in order a window at a time, up to 256 blocks", () => {
    const data = bytes(1, 4 << 20); // 1024 blocks
    const { fs, dev } = coldMount({ "/f": data });
    const r0 = dev.stats.reads;
    const b0 = dev.stats.readBlocks;
    const got = readAll(fs, "/f", BS, new ReadAhead());
    assert.ok(Buffer.from(got).equals(Buffer.from(data)), "every byte");
    const reads = dev.stats.reads - r0;
    // Windows of 4, 8, …, 256 blocks, split where the file's block map interrupts the run.
    assert.ok(reads <= 1024 / RA_MAX_BLOCKS + 8, `1024 blocks in ${reads} device reads`);
    assert.ok(dev.stats.readBlocks - b0 <= 1024 + 8, "no block read twice (but tables)");
    assert.ok(fs.stats().readAheadBlocks > 900, `${fs.stats().readAheadBlocks} read ahead`);
  });

  it("reads block by block without a ReadAhead, and with one at scattered offsets", () => {
    const data = bytes(2, 1 << 20); // 256 blocks
    {
      const { fs, dev } = coldMount({ "/f": data });
      const r0 = dev.stats.reads;
      readAll(fs, "/f", BS);
      assert.ok(dev.stats.reads - r0 >= 256, "no ReadAhead: a device read per block");
    }
    const { fs, dev } = coldMount({ "/f": data });
    const ino = fs.lookup("/f");
    const ra = new ReadAhead();
    const buf = new Uint8Array(100);
    const r0 = dev.stats.reads;
    const b0 = dev.stats.readBlocks;
    const offsets = [200, 9, 120, 31, 250, 64, 3, 180];
    for (const blk of offsets) {
      const off = blk * BS + 17;
      assert.equal(fs.read(ino, off, buf, -1, ra), 100);
      assert.ok(Buffer.from(buf).equals(Buffer.from(data.subarray(off, off + 100))));
    }
    assert.equal(dev.stats.reads - r0, offsets.length + 1, "one per seek, and the block map");
    assert.ok(dev.stats.readBlocks - b0 <= offsets.length + 2, "nothing read ahead (but tables)");
    assert.equal(fs.stats().readAheadBlocks, 0);
  });

  it("reads a small file whole with one device read, and from the cache after", () => {
    const data = bytes(3, 20 * 1024 + 300); // 6 blocks, all direct
    const { fs, dev } = coldMount({ "/index.html": data }, { blocks: 2048 });
    const buf = new Uint8Array(64 * 1024);
    assert.ok(fs.lookup("/index.html") > 0); // the directory block: read once, and cached
    const r0 = dev.stats.reads;
    for (let i = 0; i < 50; i++) {
      const ino = fs.lookup("/index.html");
      assert.equal(fs.read(ino, 0, buf, -1, new ReadAhead()), data.length);
      assert.ok(Buffer.from(buf.subarray(0, data.length)).equals(Buffer.from(data)));
    }
    assert.equal(dev.stats.reads - r0, 1, "one device read for 50 requests");
  });

  it("caches a file read whole with a large buffer, unless it is large for the cache", () => {
    const mid = bytes(12, 300 * 1024); // 75 blocks: a large request, a small file
    const huge = bytes(13, 600 * BS); // more than a quarter of a 2048-block cache
    const { fs, dev } = coldMount({ "/mid": mid, "/huge": huge });
    const buf = new Uint8Array(4 << 20);
    const reads = (path: string, size: number) => {
      const r0 = dev.stats.reads;
      assert.equal(fs.read(fs.lookup(path), 0, buf, -1, new ReadAhead()), size);
      return dev.stats.reads - r0;
    };
    assert.ok(reads("/mid", mid.length) >= 1);
    assert.equal(reads("/mid", mid.length), 0, "the second read of the small file is cached");
    assert.ok(Buffer.from(buf.subarray(0, mid.length)).equals(Buffer.from(mid)));
    const first = reads("/huge", huge.length);
    assert.ok(first >= 1 && first <= 4, `one device read per run: ${first}`);
    assert.ok(reads("/huge", huge.length) >= 1, "the large file went past the cache");
    assert.ok(Buffer.from(buf.subarray(0, huge.length)).equals(Buffer.from(huge)));
  });

  it("stops a run at a cached block, so no block is read twice", () => {
    const data = bytes(4, 64 * BS);
    const { fs, dev } = coldMount({ "/f": data });
    const ino = fs.lookup("/f");
    const one = new Uint8Array(BS);
    for (const blk of [20, 21, 40]) assert.equal(fs.read(ino, blk * BS, one), BS); // cache some
    const b0 = dev.stats.readBlocks;
    const got = readAll(fs, "/f", BS, new ReadAhead());
    assert.ok(Buffer.from(got).equals(Buffer.from(data)));
    assert.ok(dev.stats.readBlocks - b0 <= 64 - 3 + 1, `${dev.stats.readBlocks - b0} blocks read`);
  });
});

describe("the buffer cache under a stream", () => {
  it("keeps a file read again and again while a file four times the cache streams through", () => {
    const hot = bytes(5, 40 * 1024);
    const big = bytes(6, 4 * 2048 * BS); // 32 MiB: 4 × the default cache
    const { fs, dev } = coldMount({ "/hot": hot, "/big": big }, { blocks: 12_000 });
    const buf = new Uint8Array(64 * 1024);
    const hotRead = () => {
      const ino = fs.lookup("/hot");
      assert.equal(fs.read(ino, 0, buf, -1, new ReadAhead()), hot.length);
    };
    hotRead();
    hotRead(); // a second access: the hot file's blocks are on the active list
    const big0 = dev.stats.reads;
    const got = readAll(fs, "/big", BS, new ReadAhead());
    assert.ok(Buffer.from(got).equals(Buffer.from(big)), "the stream read right");
    assert.ok(dev.stats.reads - big0 < 200, "the stream was read ahead");
    assert.ok(fs.stats().cacheEvictions > 4 * 2048 - 2048, "the stream cycled through the cache");
    const r0 = dev.stats.reads;
    hotRead();
    assert.equal(dev.stats.reads - r0, 0, "the hot file is still cached");
    assert.ok(fs.stats().cacheActive > 0);
  });
});

describe("read-ahead in a crowded cache", () => {
  it("fills from the active list when pinned blocks leave the inactive one short", () => {
    const hot = bytes(7, 290 * BS);
    const big = bytes(8, 1500 * BS);
    const old = bytes(10, 60 * BS);
    // 600 buffers: 64 for the log, 236 for ordered data, fills of up to 118, half active.
    const { fs } = coldMount({ "/hot": hot, "/big": big, "/w": old }, { cacheBlocks: 600 });
    for (let i = 0; i < 2; i++) readAll(fs, "/hot", 32 * BS); // through the cache, twice
    assert.ok(fs.stats().cacheActive >= 280, "the hot file is on the active list");
    // Pin what a transaction may: new blocks waiting as ordered data, and logged overwrites.
    const n = fs.create("/n", { mode: "file", exclusive: true });
    assert.equal(fs.write(n, 0, bytes(11, 230 * BS)), 230 * BS);
    assert.equal(fs.write(fs.lookup("/w"), 0, bytes(12, 40 * BS)), 40 * BS);
    const s = fs.stats();
    assert.equal(s.transactions, 0);
    assert.ok(s.orderedWaiting + s.runningTxnBlocks > 260, "most of the rest is pinned");
    const got = readAll(fs, "/big", BS, new ReadAhead());
    assert.ok(Buffer.from(got).equals(Buffer.from(big)), "the stream read right");
    const back = new Uint8Array(40 * BS);
    assert.equal(fs.read(fs.lookup("/w"), 0, back), back.length);
    assert.ok(Buffer.from(back).equals(Buffer.from(bytes(12, 40 * BS))), "the pinned data held");
    assert.deepEqual(fs.fsck().problems, []);
  });
});

describe("reads against a model", () => {
  it("return the bytes written, whatever the order of reads, seeks and writes", () => {
    const FILE = 300 * BS;
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("seq" as const),
        start: fc.nat(FILE),
        size: fc.oneof(fc.constant(BS), fc.integer({ min: 1, max: 3 * BS })),
        count: fc.integer({ min: 1, max: 40 }),
      }),
      fc.record({
        kind: fc.constant("write" as const),
        off: fc.nat(FILE),
        len: fc.integer({ min: 1, max: 6 * BS }),
        seed: fc.nat(255),
      }),
      fc.record({ kind: fc.constant("commit" as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
        const model = bytes(9, 200 * BS + 123);
        const { fs } = coldMount({ "/m": model }, { cacheBlocks: 64 + 72, blocks: 2048 });
        let size = model.length;
        const mem = new Uint8Array(FILE + 6 * BS);
        mem.set(model);
        const ino = fs.lookup("/m");
        const ra = new ReadAhead();
        for (const o of ops) {
          if (o.kind === "write") {
            const data = bytes(o.seed, o.len);
            assert.equal(fs.write(ino, o.off, data), o.len);
            mem.set(data, o.off);
            size = Math.max(size, o.off + o.len);
          } else if (o.kind === "commit") {
            assert.equal(fs.commit(), 0);
          } else {
            const buf = new Uint8Array(o.size);
            let off = o.start;
            for (let i = 0; i < o.count; i++) {
              const n = fs.read(ino, off, buf, -1, ra);
              const want = Math.max(0, Math.min(o.size, size - off));
              assert.equal(n, want, `read at ${off}`);
              assert.ok(
                Buffer.from(buf.subarray(0, n)).equals(Buffer.from(mem.subarray(off, off + n))),
                `bytes at ${off}`,
              );
              off += n;
            }
          }
        }
        assert.deepEqual(fs.fsck().problems, []);
      }),
      { numRuns: 60 },
    );
  });
});
