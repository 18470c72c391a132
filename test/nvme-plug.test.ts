/**
 * nvme-plug: the NVMe VF driver's batching and durability verbs that the filesystem's commit
 * and read-ahead use — plugged writes, scattered reads (readv) and FUA writes — with the device
 * model on this test's main thread and the driver in a real worker thread.
 *
 *   plug      separate writes between plug() and unplug() go behind one doorbell; the data is
 *             taken when write() returns (the caller may reuse its buffer); a read inside the
 *             plug sees the plugged writes; more writes than slots still all complete
 *   pending   writes that unplug(false) did not wait for are waited for by the next call, which
 *             sees them, or throws their failure (and the driver goes on)
 *   readv     blocks land one per buffer, nothing past each buffer is touched, across commands
 *   FUA       a FUA write survives a power cut with no flush; a plain write beside it does not
 *
 * No assertion is about time; every wait has a deadline that fails the test instead of hanging.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { NvmeController, type NvmeControllerOptions } from "../src/hw/nvme.js";
import type { AttachInfo } from "./fixtures/nvme-driver-worker.js";
import {
  buildMachine,
  DriverWorker,
  type NvmeMachine,
  patternBlocks,
  type TempImage,
  tempImage,
} from "./fixtures/nvme-harness.js";

const NS_OFFSET = 4;
const NS_BLOCKS = 512;

interface DriverStats {
  readonly submitted: number;
  readonly sqDoorbells: number;
}

function open(
  m: NvmeMachine,
  img: TempImage,
  opts: Partial<NvmeControllerOptions> = {},
): Promise<NvmeController> {
  return NvmeController.open({
    mem: m.mem,
    dma: m.dma,
    image: img.path,
    namespaces: [{ lbaOffset: NS_OFFSET, blocks: NS_BLOCKS }],
    ...opts,
  });
}

/** A controller and a driver worker attached to VF 0; `body` runs, then everything closes. */
async function withDriver(
  opts: Partial<NvmeControllerOptions>,
  body: (w: DriverWorker, info: AttachInfo, ctl: NvmeController) => Promise<void>,
): Promise<void> {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  const ctl = await open(m, img, opts);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    const info = await w.call<AttachInfo>({ op: "attach" });
    await body(w, info, ctl);
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
}

test("plugged writes go behind one doorbell, and their buffers are free once write() returns", async () => {
  await withDriver({}, async (w) => {
    const before = await w.call<DriverStats>({ op: "stats" });
    const writes = [
      { lba: 100, count: 3, seed: 41 },
      { lba: 7, count: 1, seed: 42 },
      { lba: 200, count: 5, seed: 43 },
      { lba: 50, count: 2, seed: 44 },
    ];
    await w.call({ op: "plugged", writes });
    const after = await w.call<DriverStats>({ op: "stats" });
    assert.equal(after.submitted - before.submitted, 4, "one command per write");
    assert.equal(after.sqDoorbells - before.sqDoorbells, 1, "one doorbell for the four");
    for (const x of writes) {
      const back = await w.call<Uint8Array>({ op: "read", lba: x.lba, count: x.count });
      assert.deepEqual(back, patternBlocks(x.seed, x.lba, x.count), `the write at ${x.lba}`);
    }
  });
});

test("a read inside a plug sees the plugged writes; more writes than slots all complete", async () => {
  await withDriver({ maxTransferBlocks: 2 }, async (w, info) => {
    const writes = [];
    for (let i = 0; i < info.slots * 2 + 3; i++)
      writes.push({ lba: i * 2, count: 2, seed: 60 + i });
    const seen = await w.call<Uint8Array>({
      op: "plugged",
      writes,
      readInside: { lba: 0, count: 6 },
    });
    const want = new Uint8Array(6 * BLOCK_SIZE);
    for (let i = 0; i < 3; i++) want.set(patternBlocks(60 + i, i * 2, 2), i * 2 * BLOCK_SIZE);
    assert.deepEqual(seen, want, "the read came after the writes it follows");
    for (const x of writes) {
      const back = await w.call<Uint8Array>({ op: "read", lba: x.lba, count: x.count });
      assert.deepEqual(back, patternBlocks(x.seed, x.lba, x.count), `the write at ${x.lba}`);
    }
  });
});

test("readv puts each block in its own buffer, across several commands", async () => {
  await withDriver({ maxTransferBlocks: 4 }, async (w) => {
    await w.call({ op: "write", lba: 30, count: 40, seed: 51 });
    const before = await w.call<DriverStats>({ op: "stats" });
    const back = await w.call<Uint8Array>({ op: "readv", lba: 33, count: 17 });
    const after = await w.call<DriverStats>({ op: "stats" });
    assert.deepEqual(back, patternBlocks(51, 33, 17));
    assert.equal(after.submitted - before.submitted, 5, "17 blocks in commands of 4");
    assert.equal(after.sqDoorbells - before.sqDoorbells, 1, "behind one doorbell");
  });
});

test("a FUA write is durable when it returns; a plain write beside it is not", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  let ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "write", lba: 10, count: 2, seed: 71 }); // plain: in the volatile cache
    await w.call({ op: "write", lba: 20, count: 3, seed: 72, fua: true });
    ctl.powerCut();
    await ctl.close();
    ctl = await open(m, img);
    ctl.attachVf(m.descs[0]);
    await w.call({ op: "reattach" });
    assert.deepEqual(
      await w.call<Uint8Array>({ op: "read", lba: 20, count: 3 }),
      patternBlocks(72, 20, 3),
      "the FUA write survived",
    );
    const plain = await w.call<Uint8Array>({ op: "read", lba: 10, count: 2 });
    assert.ok(
      plain.every((x) => x === 0),
      "the plain write was lost with the cache",
    );
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

test("writes left pending by unplug(false) are waited for by the next call, which throws their failure", async () => {
  await withDriver({}, async (w) => {
    const writes = [
      { lba: 300, count: 4, seed: 81 },
      { lba: 310, count: 2, seed: 82 },
    ];
    await w.call({ op: "plugged", writes, wait: false });
    const back = await w.call<Uint8Array>({ op: "read", lba: 300, count: 12 });
    const want = new Uint8Array(12 * BLOCK_SIZE);
    want.set(patternBlocks(81, 300, 4), 0);
    want.set(patternBlocks(82, 310, 2), 10 * BLOCK_SIZE);
    assert.deepEqual(back, want, "the read came after the pending writes");
    // A write past the namespace fails on the device; unplug(false) does not see it, the next
    // call does.
    await w.call({
      op: "plugged",
      writes: [{ lba: NS_BLOCKS - 1, count: 2, seed: 83 }],
      wait: false,
    });
    const err = await w.fails({ op: "read", lba: 0, count: 1 });
    assert.equal(err.code, "EXO_ERR_IO");
    assert.match(err.message, /plugged writes failed at block 511: .*LBA Out of Range/i);
    assert.deepEqual(
      await w.call<Uint8Array>({ op: "read", lba: 300, count: 4 }),
      patternBlocks(81, 300, 4),
      "the driver works on after the failure is reported",
    );
  });
});
