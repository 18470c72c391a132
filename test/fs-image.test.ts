/**
 * exofs images on real files: mount refuses what is not a sound exofs image (a foreign file,
 * an empty or truncated image, a damaged superblock or log header, another version, regions
 * that do not fit) with a clear IoError and changes nothing; a 64 MiB file goes through a
 * FileBlockDevice (its data written once, as ordered data, only metadata logged) and comes back
 * intact, read in a few large device reads; a full disk gives
 * short writes and -ENOSPC and the filesystem stays consistent.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EEXIST, EINVAL, EIO, ENOSPC } from "../src/abi/errno.js";
import { IoError } from "../src/errors.js";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import { SB_DATA_START, SB_TOTAL, SB_VERSION, sealSuperblock } from "../src/fs/layout.js";
import { MemoryBlockDevice } from "../src/fs/memdev.js";

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "exofs-image-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh 2 MiB image file; returns its path. */
function makeImage(name: string, blocks = 512): string {
  const path = join(dir, name);
  const dev = FileBlockDevice.create(path, blocks, { overwrite: true });
  FileSystem.mkfs(dev);
  const fs = FileSystem.mount(dev);
  const ino = fs.create("/hello", { mode: "file", exclusive: true });
  assert.equal(fs.write(ino, 0, new TextEncoder().encode("hello\n")), 6);
  fs.unmount();
  dev.close();
  return path;
}

/** Mount `path` and expect an IoError whose message matches `message`, with `errno`. */
function refused(path: string, message: RegExp, errno: number): void {
  const before = readFileSync(path);
  const dev = FileBlockDevice.open(path);
  try {
    assert.throws(
      () => FileSystem.mount(dev),
      (err: unknown) => {
        assert.ok(err instanceof IoError, `an IoError, got ${String(err)}`);
        assert.equal(err.code, "EXO_ERR_IO");
        assert.equal(err.errno, errno);
        assert.match(err.message, message);
        return true;
      },
    );
  } finally {
    dev.close();
  }
  assert.ok(readFileSync(path).equals(before), "a refused image is left as it was");
}

/** Patch bytes of block 0 of an image file, optionally resealing its checksum. */
function patchSuperblock(path: string, patch: (dv: DataView) => void, reseal: boolean): void {
  const img = readFileSync(path);
  const sb = new Uint8Array(img.buffer, img.byteOffset, BLOCK_SIZE);
  patch(new DataView(sb.buffer, sb.byteOffset, BLOCK_SIZE));
  if (reseal) sealSuperblock(sb);
  writeFileSync(path, img);
}

describe("mount refuses a bad image", () => {
  it("a foreign file: bad magic (EINVAL)", () => {
    const path = join(dir, "foreign.img");
    writeFileSync(path, Buffer.alloc(1 << 20, "not a filesystem, just text. "));
    refused(path, /not an exofs image: bad magic "not a fi"/, EINVAL);
  });

  it("an empty file: smaller than one block (EINVAL)", () => {
    const path = join(dir, "empty.img");
    writeFileSync(path, "");
    refused(path, /smaller than one block/, EINVAL);
  });

  it("a truncated image: the superblock says more blocks than the file has (EIO)", () => {
    const path = makeImage("truncated.img");
    truncateSync(path, 256 * BLOCK_SIZE);
    refused(path, /truncated: its superblock says 512 blocks, the device has 256/, EIO);
  });

  it("a corrupted superblock: checksum mismatch (EIO)", () => {
    const path = makeImage("corrupt.img");
    patchSuperblock(path, (dv) => dv.setUint32(SB_TOTAL, 400, true), false);
    refused(path, /superblock checksum mismatch/, EIO);
  });

  it("another version, even with a valid checksum (EINVAL)", () => {
    const path = makeImage("version.img");
    patchSuperblock(path, (dv) => dv.setUint32(SB_VERSION, 2, true), true);
    refused(path, /unsupported exofs version 2 \(this build reads version 1\)/, EINVAL);
  });

  it("regions that do not fit, even with a valid checksum (EIO)", () => {
    const path = makeImage("regions.img");
    patchSuperblock(path, (dv) => dv.setUint32(SB_DATA_START, 9999, true), true);
    refused(path, /superblock regions do not fit: data region at 9999/, EIO);
  });

  it("a damaged log header (EIO)", () => {
    const path = makeImage("log.img");
    const img = readFileSync(path);
    img[BLOCK_SIZE + 20] ^= 0xff; // block 1 is the log header
    writeFileSync(path, img);
    refused(path, /log header \(block 1\) is damaged: checksum mismatch/, EIO);
  });

  it("a sound image mounts, and creating over it needs overwrite", () => {
    const path = makeImage("sound.img");
    const dev = FileBlockDevice.open(path);
    const fs = FileSystem.mount(dev);
    const st = fs.stat("/hello");
    assert.ok(typeof st === "object");
    const text = new Uint8Array(st.size);
    assert.equal(fs.read(st.ino, 0, text), 6);
    assert.equal(new TextDecoder().decode(text), "hello\n");
    assert.deepEqual(fs.fsck().problems, []);
    fs.unmount();
    dev.close();
    assert.throws(
      () => FileBlockDevice.create(path, 16),
      (err: unknown) => err instanceof IoError && err.errno === EEXIST,
    );
  });
});

/** Deterministic bytes (xorshift32) for piece `i` of a big file. */
function piece(i: number, bytes: number): Uint8Array {
  const words = new Uint32Array(bytes / 4);
  let x = (i + 1) * 0x9e3779b9;
  for (let k = 0; k < words.length; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[k] = x;
  }
  return new Uint8Array(words.buffer);
}

describe("a 64 MiB file on a FileBlockDevice", () => {
  it("is written, survives a remount, and reads back intact in few device reads", () => {
    const path = join(dir, "big.img");
    const dev = FileBlockDevice.create(path, (80 << 20) / BLOCK_SIZE);
    FileSystem.mkfs(dev);
    let fs = FileSystem.mount(dev);
    const ino = fs.create("/big", { mode: "file", exclusive: true });
    const PIECE = 8 << 20;
    for (let i = 0; i < 8; i++) assert.equal(fs.write(ino, i * PIECE, piece(i, PIECE)), PIECE);
    fs.unmount();
    const w = fs.stats();
    assert.ok(w.orderedBlocks >= 16384, "64 MiB of new blocks went home as ordered data");
    assert.ok(w.logBlocksWritten < 200, `and only metadata was logged: ${w.logBlocksWritten}`);
    fs = FileSystem.mount(dev);
    const st = fs.stat("/big");
    assert.ok(typeof st === "object");
    assert.equal(st.size, 64 << 20);
    assert.ok(st.blocks >= 16384 + 16, `data and indirect blocks: ${st.blocks}`);
    const reads0 = fs.stats().deviceReads;
    const dst = new Uint8Array(PIECE);
    for (let i = 0; i < 8; i++) {
      assert.equal(fs.read(ino, i * PIECE, dst), PIECE);
      assert.ok(Buffer.from(dst).equals(Buffer.from(piece(i, PIECE))), `piece ${i} intact`);
    }
    const reads = fs.stats().deviceReads - reads0;
    assert.ok(reads < 200, `16384 blocks read in ${reads} device reads`);
    assert.equal(fs.read(ino, 64 << 20, dst), 0, "end of file");
    assert.deepEqual(fs.fsck().problems, []);
    fs.unmount();
    dev.close();
  });
});

describe("a full disk", () => {
  it("gives a short write, then -ENOSPC, and stays consistent", () => {
    const dev = new MemoryBlockDevice(256); // 1 MiB
    FileSystem.mkfs(dev, { inodes: 32 });
    let fs = FileSystem.mount(dev);
    const free0 = fs.stats().freeBlocks;
    const a = fs.create("/a", { mode: "file", exclusive: true });
    const data = piece(1, 2 << 20);
    const n = fs.write(a, 0, data);
    assert.ok(n > 0 && n < data.length, `a short write: ${n}`);
    assert.equal(n % BLOCK_SIZE, 0);
    assert.equal(fs.write(a, n, data.subarray(0, 10)), -ENOSPC);
    assert.equal(fs.stats().freeBlocks, 0);
    assert.deepEqual(fs.fsck().problems, []);
    // A new name still fits in the root's first block; its data does not.
    const b = fs.create("/b", { mode: "file", exclusive: true });
    assert.ok(b > 0);
    assert.equal(fs.write(b, 0, data.subarray(0, 100)), -ENOSPC);
    // Fill the root's first directory block (15 entries); the 16th name needs a block.
    for (let i = 0; i < 13; i++) assert.ok(fs.mkdir(`/d${i}`) === 0);
    assert.equal(fs.mkdir("/one-too-many"), -ENOSPC);
    assert.deepEqual(fs.fsck().problems, []);
    assert.equal(fs.sync(), 0);
    // After a power cut the prefix that was written is there, and nothing else.
    fs = FileSystem.mount(dev.crash("none"));
    assert.deepEqual(fs.fsck().problems, []);
    const st = fs.stat("/a");
    assert.ok(typeof st === "object");
    assert.equal(st.size, n);
    const back = new Uint8Array(n);
    assert.equal(fs.read(st.ino, 0, back), n);
    assert.ok(Buffer.from(back).equals(Buffer.from(data.subarray(0, n))));
    // Space comes back with the file.
    assert.equal(fs.unlink("/a"), 0);
    assert.equal(fs.stats().freeBlocks, free0 - 1, "all but the root directory's block");
    assert.equal(fs.mkdir("/one-too-many"), 0);
    assert.deepEqual(fs.fsck().problems, []);
  });

  it("runs out of inodes with -ENOSPC", () => {
    const dev = new MemoryBlockDevice(256);
    FileSystem.mkfs(dev, { inodes: 16 });
    const fs = FileSystem.mount(dev);
    let made = 0;
    for (;;) {
      const r = fs.create(`/f${made}`, { mode: "file", exclusive: true });
      if (r < 0) {
        assert.equal(r, -ENOSPC);
        break;
      }
      made++;
    }
    assert.equal(made, fs.sb.ninodes - 2, "every inode but 0 and the root");
    assert.equal(fs.stats().freeInodes, 0);
    assert.deepEqual(fs.fsck().problems, []);
    assert.equal(fs.unlink("/f0"), 0);
    assert.ok(fs.create("/again", { mode: "file", exclusive: true }) > 0);
    assert.deepEqual(fs.fsck().problems, []);
  });

  it("a device error fails the filesystem: -EIO from then on, and the image still mounts", () => {
    const dev = new MemoryBlockDevice(256);
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    const ino = fs.create("/f", { mode: "file", exclusive: true });
    assert.equal(fs.write(ino, 0, piece(2, 8192)), 8192);
    assert.equal(fs.sync(), 0);
    dev.cutPowerAfter(1);
    assert.equal(fs.write(ino, 8192, piece(3, 8192)), 8192, "in the cache: no device write yet");
    assert.equal(fs.sync(), -EIO);
    assert.equal(fs.lookup("/f"), -EIO);
    assert.throws(() => fs.unmount(), IoError);
    const again = FileSystem.mount(dev.crash("all"));
    assert.deepEqual(again.fsck().problems, []);
    const st = again.stat("/f");
    assert.ok(typeof st === "object");
    assert.equal(st.size, 8192);
  });
});
