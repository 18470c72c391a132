/**
 * exofs at its edges: how paths and names are decoded (absolute paths, ".", "..", trailing
 * slashes, the 255-byte name limit in UTF-8 bytes), the errno of each refused call, handles
 * that are out of range, directories that grow and reuse their slots, group commit (many calls
 * in one transaction, a block logged once however often it changes), and a cache far smaller
 * than what the calls touch.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EBADF,
  EBUSY,
  EEXIST,
  EFBIG,
  EINVAL,
  EISDIR,
  ENAMETOOLONG,
  ENOENT,
  ENOTDIR,
  ENOTEMPTY,
} from "../src/abi/errno.js";
import { ESTALE, FileSystem } from "../src/fs/fs.js";
import { MAX_FILE_SIZE } from "../src/fs/layout.js";
import { MemoryBlockDevice } from "../src/fs/memdev.js";

function fresh(blocks = 2048, inodes?: number): { fs: FileSystem; dev: MemoryBlockDevice } {
  const dev = new MemoryBlockDevice(blocks);
  FileSystem.mkfs(dev, { inodes });
  return { fs: FileSystem.mount(dev), dev };
}

describe("paths and names", () => {
  it("walks '.', '..', repeated and trailing slashes; refuses relative paths", () => {
    const { fs } = fresh();
    assert.equal(fs.mkdir("/a"), 0);
    assert.equal(fs.mkdir("/a/b"), 0);
    const b = fs.lookup("/a/b");
    assert.ok(b > 0);
    for (const p of ["/a/b/", "//a///b", "/a/./b", "/a/b/../b", "/../a/b", "/a/b/."]) {
      assert.equal(fs.lookup(p), b, p);
    }
    assert.equal(fs.lookup("/a/b/.."), fs.lookup("/a"));
    assert.equal(fs.lookup("/"), 1);
    assert.equal(fs.lookup("/.."), 1, "the root is its own parent");
    assert.equal(fs.lookup("a/b"), -EINVAL);
    assert.equal(fs.lookup(""), -ENOENT);
    assert.equal(fs.create("/a/.", { mode: "dir", exclusive: false }), -EINVAL);
    assert.equal(fs.unlink("/a/.."), -EINVAL);
    assert.equal(fs.rmdir("/a/b/."), -EINVAL);
  });

  it("a name is at most 255 bytes of UTF-8", () => {
    const { fs } = fresh();
    assert.ok(fs.create(`/${"x".repeat(255)}`, { mode: "file", exclusive: true }) > 0);
    assert.equal(
      fs.create(`/${"y".repeat(256)}`, { mode: "file", exclusive: true }),
      -ENAMETOOLONG,
    );
    // 127 two-byte characters are 254 bytes; 128 are 256.
    assert.ok(fs.mkdir(`/${"é".repeat(127)}`) === 0);
    assert.equal(fs.mkdir(`/${"é".repeat(128)}`), -ENAMETOOLONG);
    assert.equal(fs.lookup(`/${"é".repeat(128)}/x`), -ENAMETOOLONG);
    assert.equal(fs.lookup(`/${"x".repeat(5000)}`), -ENAMETOOLONG, "past PATH_MAX");
    assert.equal(fs.create("/nul\0byte", { mode: "file", exclusive: true }), -EINVAL);
    const names = fs.readdir("/");
    assert.ok(Array.isArray(names));
    assert.deepEqual(names.map((e) => e.name).sort(), ["x".repeat(255), "é".repeat(127)].sort());
    assert.deepEqual(fs.fsck().problems, []);
  });

  it("refuses what POSIX refuses, with its errno", () => {
    const { fs } = fresh();
    const f = fs.create("/f", { mode: "file", exclusive: true });
    assert.equal(fs.mkdir("/d"), 0);
    assert.ok(fs.create("/d/x", { mode: "file", exclusive: true }) > 0);
    assert.equal(fs.lookup("/f/x"), -ENOTDIR, "a file in the middle of a path");
    assert.equal(fs.create("/f/x", { mode: "file", exclusive: false }), -ENOTDIR);
    assert.equal(fs.create("/f", { mode: "file", exclusive: true }), -EEXIST);
    assert.equal(fs.create("/f", { mode: "file", exclusive: false }), f, "open without O_EXCL");
    assert.equal(fs.create("/d", { mode: "file", exclusive: false }), -EISDIR);
    assert.equal(fs.create("/f", { mode: "dir", exclusive: false }), -ENOTDIR);
    assert.equal(fs.mkdir("/d"), -EEXIST);
    assert.equal(fs.unlink("/d"), -EISDIR);
    assert.equal(fs.unlink("/"), -EISDIR);
    assert.equal(fs.rmdir("/f"), -ENOTDIR);
    assert.equal(fs.rmdir("/d"), -ENOTEMPTY);
    assert.equal(fs.rmdir("/"), -EBUSY);
    assert.equal(fs.rename("/", "/x"), -EBUSY);
    assert.equal(fs.rename("/d", "/"), -EBUSY);
    assert.equal(fs.rename("/nope", "/x"), -ENOENT);
    assert.equal(fs.rename("/f", "/nope/x"), -ENOENT);
    assert.equal(fs.rename("/f", "/d"), -EISDIR);
    assert.equal(fs.mkdir("/e"), 0);
    assert.equal(fs.rename("/e", "/f"), -ENOTDIR);
    assert.equal(fs.rename("/e", "/d"), -ENOTEMPTY);
    assert.equal(fs.rename("/d", "/d/x/y"), -ENOTDIR, "through a file");
    assert.equal(fs.rename("/d", "/d/sub"), -EINVAL, "into itself");
    assert.equal(fs.readdir("/f"), -ENOTDIR);
    assert.equal(fs.read(fs.lookup("/d"), 0, new Uint8Array(1)), -EISDIR);
    assert.equal(fs.write(fs.lookup("/d"), 0, new Uint8Array(1)), -EISDIR);
    assert.equal(fs.truncate(f, -1), -EINVAL);
    assert.equal(fs.truncate(f, MAX_FILE_SIZE + 1), -EFBIG);
    assert.equal(fs.write(f, MAX_FILE_SIZE, new Uint8Array(1)), -EFBIG);
    assert.equal(
      fs.write(f, MAX_FILE_SIZE - 2, new Uint8Array(10)),
      2,
      "a short write at the limit",
    );
    assert.equal(fs.write(f, -1, new Uint8Array(1)), -EINVAL);
    assert.equal(fs.write(f, 0.5, new Uint8Array(1)), -EINVAL);
    for (const bad of [0, -3, 1.5, 1 << 30]) {
      assert.equal(fs.read(bad, 0, new Uint8Array(1)), -EBADF, `ino ${bad}`);
      assert.equal(fs.statIno(bad), -EBADF, `ino ${bad}`);
    }
    const st = fs.statIno(f);
    assert.ok(typeof st === "object");
    assert.equal(fs.read(f, 0, new Uint8Array(1), st.gen + 1), -ESTALE);
    assert.equal(fs.unpin(f), -EINVAL, "not pinned");
    assert.equal(fs.truncate(f, 0), 0);
    assert.deepEqual(fs.fsck().problems, []);
  });

  it("renaming a directory moves its subtree and fixes both parents' link counts", () => {
    const { fs } = fresh();
    for (const d of ["/a", "/a/x", "/a/x/y", "/b"]) assert.equal(fs.mkdir(d), 0);
    assert.equal(fs.rename("/a/x", "/b/z"), 0);
    const nlink = (p: string) => {
      const st = fs.stat(p);
      assert.ok(typeof st === "object", p);
      return st.nlink;
    };
    assert.equal(nlink("/a"), 2);
    assert.equal(nlink("/b"), 3);
    assert.equal(nlink("/b/z"), 3);
    assert.equal(fs.lookup("/b/z/y/.."), fs.lookup("/b/z"), "the moved directory's parent");
    assert.equal(fs.lookup("/b/z/.."), fs.lookup("/b"));
    assert.deepEqual(fs.fsck().problems, []);
  });
});

describe("directories", () => {
  it("grow by whole blocks and reuse freed slots", () => {
    const { fs } = fresh();
    assert.equal(fs.mkdir("/d"), 0);
    for (let i = 0; i < 100; i++) {
      assert.ok(fs.create(`/d/file-${i}`, { mode: "file", exclusive: true }) > 0);
    }
    const st = fs.stat("/d");
    assert.ok(typeof st === "object");
    assert.equal(st.size, 7 * 4096, "15 entries a block: 100 names need 7 blocks");
    for (let i = 0; i < 100; i += 2) assert.equal(fs.unlink(`/d/file-${i}`), 0);
    for (let i = 0; i < 50; i++) assert.ok(fs.mkdir(`/d/dir-${i}`) === 0);
    const again = fs.stat("/d");
    assert.ok(typeof again === "object");
    assert.equal(again.size, st.size, "the freed slots were reused");
    assert.equal(again.nlink, 52);
    const list = fs.readdir("/d");
    assert.ok(Array.isArray(list));
    assert.equal(list.length, 100);
    assert.equal(list.filter((e) => e.type === "dir").length, 50);
    assert.deepEqual(fs.fsck().problems, []);
  });
});

describe("group commit", () => {
  it("many calls share one transaction, and a block changed often is logged once", () => {
    const { fs } = fresh();
    const s0 = fs.stats();
    for (let i = 0; i < 20; i++) {
      const ino = fs.create(`/f${i}`, { mode: "file", exclusive: true });
      assert.equal(fs.write(ino, 0, new Uint8Array(100).fill(i)), 100);
    }
    const s1 = fs.stats();
    assert.equal(s1.transactions, s0.transactions, "nothing committed before sync");
    assert.equal(s1.flushes, s0.flushes);
    assert.equal(fs.sync(), 0);
    const s2 = fs.stats();
    assert.equal(s2.transactions, s0.transactions + 1, "one commit for all 40 calls");
    // The root's directory block, 1 inode block (20 inodes of 32), the bitmap, and the root's
    // inode block (the same as the others'): about 3 logged blocks, not 40 × several.
    // The 20 data blocks are new: ordered data, written home once and not logged.
    assert.ok(s2.logBlocksWritten - s1.logBlocksWritten <= 4, `${s2.logBlocksWritten}`);
    assert.equal(s2.orderedBlocks - s1.orderedBlocks, 20);
    assert.equal(s2.flushes - s1.flushes, 1, "data and copies are flushed before the commit");
    assert.equal(s2.fuaWrites - s1.fuaWrites, 1, "the commit record is a FUA write");
    assert.equal(fs.sync(), 0);
    assert.equal(fs.stats().flushes, s2.flushes, "nothing new: no flush");
    assert.equal(fs.stats().fuaWrites, s2.fuaWrites);
  });
});

describe("a small buffer cache", () => {
  it("evicts and still serves every call, pinning the transaction's blocks", () => {
    const dev = new MemoryBlockDevice(4096);
    FileSystem.mkfs(dev, { inodes: 2000, logBlocks: 64 });
    let fs = FileSystem.mount(dev, { cacheBlocks: 64 + 72 });
    for (let d = 0; d < 10; d++) {
      assert.equal(fs.mkdir(`/d${d}`), 0);
      for (let i = 0; i < 60; i++) {
        const ino = fs.create(`/d${d}/f${i}`, { mode: "file", exclusive: true });
        assert.ok(ino > 0);
        assert.equal(fs.write(ino, 0, new Uint8Array(50).fill((d * 60 + i) & 0xff)), 50);
      }
    }
    const s = fs.stats();
    assert.ok(s.cacheEvictions > 0, "more blocks were touched than the cache holds");
    assert.ok(s.cachedBlocks <= s.cacheCapacity);
    assert.ok(s.cacheHits > s.cacheMisses);
    assert.deepEqual(fs.fsck().problems, []);
    fs.unmount();
    fs = FileSystem.mount(dev, { cacheBlocks: 64 + 72 });
    const buf = new Uint8Array(50);
    for (let d = 0; d < 10; d++) {
      for (let i = 0; i < 60; i++) {
        const ino = fs.lookup(`/d${d}/f${i}`);
        assert.equal(fs.read(ino, 0, buf), 50);
        assert.ok(buf.every((v) => v === ((d * 60 + i) & 0xff)));
      }
    }
    assert.throws(() => FileSystem.mount(dev, { cacheBlocks: 100 }), /cacheBlocks must be/);
  });
});
