/**
 * Reading through the whole machine — a program on an XOS core, the storage domain, its buffer
 * cache with read-ahead, the NVMe VF and the device model — counted in NVMe READ commands the
 * device served. Programs are jobs of test/fixtures/programs/files-read.ts; each checks the
 * bytes it read against the pattern the image was made with.
 *
 *   whole file   what the HTTP server does per request (open, fstat, close, open, pread,
 *                close), 200 times on a 20 KiB file: the device reads the file once
 *   stream       a 4 MiB file read in 4 KiB read() calls: a few commands per 128 KiB, not one
 *                per call
 *   seeks        4 KiB preads 64 KiB apart: one block each, nothing read ahead
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import { boot, type Machine } from "../src/hv/machine.js";
import { fillPattern } from "./fixtures/programs/files-pattern.js";

const PROGRAM = fileURLToPath(new URL("./fixtures/programs/files-read.js", import.meta.url));
const SEED = 7; // the files-read jobs check against this seed
const KiB = 1024;

let dir = "";
let image = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "exocore-readahead-"));
  image = join(dir, "ra.img");
  const dev = FileBlockDevice.create(image, 8192);
  try {
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    for (const [path, size] of [
      ["/page.html", 20 * KiB + 300],
      ["/big.bin", 4096 * KiB],
    ] as const) {
      const ino = fs.create(path, { mode: "file", exclusive: true });
      assert.ok(ino > 0);
      assert.equal(fs.write(ino, 0, fillPattern(new Uint8Array(size), SEED, 0)), size);
    }
    fs.unmount();
  } finally {
    dev.close();
  }
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Boot a machine on the image, run one files-read job, return its line and the NVMe reads. */
async function job(
  ...args: (string | number)[]
): Promise<{ line: Record<string, number>; reads: number }> {
  let out = "";
  const m: Machine = await boot({
    cores: 1,
    memoryMiB: 32,
    disk: image,
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      out += s;
    },
  });
  try {
    const nvme = () => m.devices?.stats().nvme?.reads ?? Number.NaN;
    const r0 = nvme();
    const status = await m.run(
      PROGRAM,
      args.map((a) => String(a)),
    );
    assert.equal(status, 0, out);
    const line = JSON.parse(out.trim().split("\n").pop() ?? "") as Record<string, number>;
    return { line, reads: nvme() - r0 };
  } finally {
    await m.shutdown();
  }
}

test("a small file served 200 times is read from the device once", async () => {
  const { line, reads } = await job("whole", "/page.html", 200, 64 * KiB);
  assert.equal(line.bad, -1, "the bytes are the file's");
  assert.equal(line.bytes, 20 * KiB + 300);
  // The file's 6 blocks in one command, and the root directory's block; the inode table's
  // block was read at mount.
  assert.ok(reads <= 3, `${reads} NVMe reads for 200 requests`);
});

test("a file read in 4 KiB calls is read from the device a window at a time", async () => {
  const { line, reads } = await job("stream", "/big.bin", 4 * KiB);
  assert.equal(line.bad, -1, "the bytes are the file's");
  assert.equal(line.bytes, 4096 * KiB);
  assert.equal(line.calls, 1024);
  // 1024 blocks in commands of up to 32 blocks (the device's MDTS): 32, and a few more where
  // windows start small or meet the block map.
  assert.ok(reads <= 48, `${reads} NVMe reads for 1024 read() calls`);
});

test("reads 64 KiB apart read what they ask for, and nothing ahead", async () => {
  const { line, reads } = await job("strided", "/big.bin", 4 * KiB, 64 * KiB);
  assert.equal(line.bad, -1);
  assert.equal(line.calls, 64);
  assert.ok(reads >= 64, `a command per read: ${reads}`);
  assert.ok(reads <= 64 + 4, `and no more (the directory and the block map): ${reads}`);
});
