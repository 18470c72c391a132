/**
 * nvme-power: what the NVMe device keeps across faults — power loss and function-level reset —
 * with the device model on this test's main thread and the driver in a real worker.
 *
 *   power cut    write A, flush, write B, cut: a new device instance on the same image file has
 *                A and not B; the driver sees the failure as IoError
 *   in flight    a cut while a worker writes in a loop: the commands in flight are abandoned,
 *                the flushed blocks survive
 *   same device  after a cut the VF stays VF_FAILED until reset; reattach() resets it and finds
 *                the cache empty (flushed data read back from the file)
 *   flush race   a block written while a flush is writing it out stays dirty, and the next flush
 *                writes the newer data
 *   property     (fast-check) any sequence of writes and flushes, then a cut: every block holds
 *                its last flushed value (a cache that never fills), or that value or a later
 *                write (a cache small enough to write back): flushed writes are never lost
 *   reset        hypervisor and driver resets bump the generation; the driver notices, reattaches
 *                and finds what was written before the reset, flushed or not; a reset during a
 *                write loop abandons the commands in flight
 *
 * No assertion is about time; every wait has a deadline that fails the test instead of hanging.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { EIO } from "../src/abi/errno.js";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { NvmeController, type NvmeControllerOptions } from "../src/hw/nvme.js";
import { nrFailReason, vsWrites } from "../src/hw/nvme-regs.js";
import { VF_FAILED, VF_READY, vrGeneration, vrStatus } from "../src/hw/vf.js";
import type { AttachInfo, WriteLoopResult } from "./fixtures/nvme-driver-worker.js";
import {
  blockOf,
  buildMachine,
  DriverWorker,
  fillPattern,
  type NvmeMachine,
  patternBlocks,
  type TempImage,
  tempImage,
  until,
} from "./fixtures/nvme-harness.js";

const NS_OFFSET = 8;
const NS_BLOCKS = 64;

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

function reg(m: NvmeMachine, word: number): number {
  return Atomics.load(m.mem.i32, m.descs[0].regs / 4 + word);
}

test("power cut: flushed writes survive on the image, unflushed ones are lost", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  let ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "write", lba: 0, count: 4, seed: 1 }); // A
    await w.call({ op: "flush" });
    await w.call({ op: "write", lba: 4, count: 4, seed: 2 }); // B
    await w.call({ op: "write", lba: 1, count: 1, seed: 3 }); // B over A
    ctl.powerCut();
    assert.equal(reg(m, vrStatus), VF_FAILED);
    assert.equal(reg(m, nrFailReason), EIO);
    const seen = await w.fails({ op: "read", lba: 0, count: 1 });
    assert.equal(seen.code, "EXO_ERR_IO");
    assert.match(seen.message, /the device failed \(EIO\)/);
    await ctl.close();

    ctl = await open(m, img); // the machine powers up again: a new device on the same medium
    ctl.attachVf(m.descs[0]);
    await w.call({ op: "reattach" });
    const back = await w.call<Uint8Array>({ op: "read", lba: 0, count: 8 });
    assert.deepEqual(back.subarray(0, 4 * BLOCK_SIZE), patternBlocks(1, 0, 4), "A, whole");
    assert.ok(
      back.subarray(4 * BLOCK_SIZE).every((x) => x === 0),
      "B is gone",
    );
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

test("a power cut abandons the commands in flight; flushed blocks survive it", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  let ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "write", lba: 0, count: 8, seed: 5 });
    await w.call({ op: "flush" });
    const writes0 = reg(m, vsWrites);
    const loop = w.call<WriteLoopResult>({ op: "writeUntilError", lba: 8, blocks: 32 });
    await until(() => reg(m, vsWrites) >= writes0 + 200, "the write loop runs");
    ctl.powerCut();
    const r = await loop;
    assert.ok(r.error, "the loop ended with an error");
    assert.equal(r.error.code, "EXO_ERR_IO");
    assert.ok(r.written >= 199);
    assert.equal(ctl.stats().inflight, 0, "nothing is left in flight");
    await ctl.close();

    ctl = await open(m, img);
    ctl.attachVf(m.descs[0]);
    await w.call({ op: "reattach" });
    assert.deepEqual(await w.call({ op: "read", lba: 0, count: 8 }), patternBlocks(5, 0, 8));
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

test("after a power cut the VF stays failed until reset; reattach() resets it to an empty cache", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  const ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    const first = await w.call<AttachInfo>({ op: "attach" });
    await w.call({ op: "write", lba: 0, count: 2, seed: 7 });
    await w.call({ op: "flush" });
    await w.call({ op: "write", lba: 2, count: 2, seed: 8 });
    ctl.powerCut();
    await w.fails({ op: "flush" });
    assert.equal(reg(m, vrStatus), VF_FAILED, "still failed: nobody reset it");
    const again = await w.call<AttachInfo>({ op: "reattach" });
    assert.equal(again.generation, first.generation + 1, "reattach reset the VF once");
    assert.equal(reg(m, vrStatus), VF_READY);
    const back = await w.call<Uint8Array>({ op: "read", lba: 0, count: 4 });
    assert.deepEqual(back.subarray(0, 2 * BLOCK_SIZE), patternBlocks(7, 0, 2));
    assert.ok(
      back.subarray(2 * BLOCK_SIZE).every((x) => x === 0),
      "the unflushed write is lost",
    );
    assert.equal(ctl.stats().cacheHits, 0, "the cache was empty after the cut");
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

// ---- property: flushed writes are never lost ----

type Op =
  | { readonly kind: "write"; readonly lba: number; readonly count: number }
  | { readonly kind: "flush" };

const LBAS = 8;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      lba: fc.nat(LBAS - 1),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "flush" as const }) },
);

for (const cache of ["a cache that never fills", "a 4-block cache that writes back"] as const) {
  test(`after writes, flushes and a power cut, flushed writes are never lost (${cache})`, async (t) => {
    const small = cache !== "a cache that never fills";
    const m = buildMachine(1);
    const w = new DriverWorker(m, 0);
    let attached = false;
    let writeBacks = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 14 }), async (ops) => {
          const img = await tempImage(NS_OFFSET + NS_BLOCKS);
          const opts = small ? { cacheBlocks: 4, maxTransferBlocks: 4, writeBackBlocks: 2 } : {};
          let ctl = await open(m, img, opts);
          try {
            ctl.attachVf(m.descs[0]);
            await w.call({ op: attached ? "reattach" : "attach" });
            attached = true;
            // Model: per block, the seed it holds durably, and the seeds written since.
            const durable = new Array<number>(LBAS).fill(0);
            const since: number[][] = Array.from({ length: LBAS }, () => []);
            let seed = 100;
            for (const op of ops) {
              if (op.kind === "flush") {
                await w.call({ op: "flush" });
                for (let b = 0; b < LBAS; b++) {
                  const last = since[b].at(-1);
                  if (last !== undefined) durable[b] = last;
                  since[b] = [];
                }
              } else {
                const count = Math.min(op.count, LBAS - op.lba);
                const s = ++seed;
                // One seed per write; each block's pattern also depends on its LBA.
                await w.call({ op: "write", lba: op.lba, count, seed: s });
                for (let i = 0; i < count; i++) since[op.lba + i].push(s);
              }
            }
            writeBacks += ctl.stats().writeBacks;
            ctl.powerCut();
            await ctl.close();
            ctl = await open(m, img, opts);
            ctl.attachVf(m.descs[0]);
            await w.call({ op: "reattach" });
            const back = await w.call<Uint8Array>({ op: "read", lba: 0, count: LBAS });
            const want = new Uint8Array(BLOCK_SIZE);
            for (let b = 0; b < LBAS; b++) {
              const allowed = small ? [durable[b], ...since[b]] : [durable[b]];
              const got = blockOf(back, b);
              const match = allowed.some((s) => {
                fillPattern(want, 0, s, b);
                return Buffer.compare(got, want) === 0;
              });
              assert.ok(match, `block ${b} holds none of seeds ${allowed.join(", ")}`);
            }
          } finally {
            await ctl.close();
            await img.remove();
          }
        }),
        { numRuns: 30 },
      );
      t.diagnostic(`blocks written back before the cuts: ${writeBacks}`);
      if (small) assert.ok(writeBacks > 0, "the small cache wrote back: the weaker property ran");
      else assert.equal(writeBacks, 0);
    } finally {
      await w.terminate();
    }
  });
}

test("a block written while a flush writes it out stays dirty, and the next flush makes it durable", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  let ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "flushRace", lba: 3, seeds: [21, 22] });
    assert.equal(ctl.stats().dirtyBlocks, 0);
    ctl.powerCut();
    await ctl.close();
    ctl = await open(m, img);
    ctl.attachVf(m.descs[0]);
    await w.call({ op: "reattach" });
    assert.deepEqual(
      await w.call({ op: "read", lba: 3, count: 1 }),
      patternBlocks(22, 3, 1),
      "the second write, flushed by the second flush",
    );
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

// ---- reset ----

test("a reset by the hypervisor bumps the generation; the driver notices, reattaches and keeps its data", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  const ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    const first = await w.call<AttachInfo>({ op: "attach" });
    await w.call({ op: "write", lba: 0, count: 2, seed: 9 });
    await w.call({ op: "flush" });
    await w.call({ op: "write", lba: 2, count: 2, seed: 10 }); // not flushed
    ctl.resetVf(0);
    assert.equal(reg(m, vrGeneration), first.generation + 1);
    const seen = await w.fails({ op: "read", lba: 0, count: 1 });
    assert.equal(seen.code, "EXO_ERR_IO");
    assert.match(seen.message, /reset \(generation/);
    const again = await w.call<AttachInfo>({ op: "reattach" });
    assert.equal(again.generation, first.generation + 1, "no second reset: the VF was clean");
    const back = await w.call<Uint8Array>({ op: "read", lba: 0, count: 4 });
    assert.deepEqual(back.subarray(0, 2 * BLOCK_SIZE), patternBlocks(9, 0, 2));
    assert.deepEqual(
      back.subarray(2 * BLOCK_SIZE),
      patternBlocks(10, 2, 2),
      "a reset is not power loss: the unflushed write is still in the cache",
    );

    const mine = await w.call<AttachInfo>({ op: "reset" }); // the driver's own FLR (VFC_RESET)
    assert.equal(mine.generation, first.generation + 2);
    assert.deepEqual(await w.call({ op: "read", lba: 2, count: 2 }), patternBlocks(10, 2, 2));
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});

test("a reset during a write loop abandons the commands in flight; the driver recovers", async () => {
  const m = buildMachine(1);
  const img = await tempImage(NS_OFFSET + NS_BLOCKS);
  const ctl = await open(m, img);
  ctl.attachVf(m.descs[0]);
  const w = new DriverWorker(m, 0);
  try {
    await w.call({ op: "attach" });
    const writes0 = reg(m, vsWrites);
    const loop = w.call<WriteLoopResult>({ op: "writeUntilError", lba: 0, blocks: 16 });
    await until(() => reg(m, vsWrites) >= writes0 + 100, "the write loop runs");
    ctl.resetVf(0);
    const r = await loop;
    assert.ok(r.error);
    assert.match(r.error.message, /reset/);
    assert.equal(ctl.stats().inflight, 0);
    await w.call({ op: "reattach" });
    await w.call({ op: "write", lba: 20, count: 1, seed: 77 });
    assert.deepEqual(await w.call({ op: "read", lba: 20, count: 1 }), patternBlocks(77, 20, 1));
  } finally {
    await w.terminate();
    await ctl.close();
    await img.remove();
  }
});
