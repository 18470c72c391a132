/**
 * nvme: the NVMe device model (src/hw/nvme.ts) on this test's main thread, as on the
 * hypervisor, and the NVMe VF driver (src/drivers/nvme.ts) in a real worker thread, over one
 * SharedArrayBuffer and a real image file.
 *
 *   raw queues   a queue pair driven by hand from the main thread: CQE fields and the phase tag
 *                over many passes of a 3-entry CQ, CQ back-pressure, a bad doorbell and a bad
 *                queue configuration failing the VF
 *   durability   WRITE data reaches the image file on FLUSH and not before
 *   transfers    multi-block and large transfers split into MDTS-sized commands, batched behind
 *                one doorbell; transfers larger than the cache force write-backs
 *   statuses     LBA Out of Range, Invalid Opcode, Invalid Namespace, MDTS overrun, PRP offset
 *   phase        thousands of commands through a 4-entry queue pair
 *   isolation    two VFs with separate namespaces cannot see each other's blocks
 *   DMA faults   a PRP outside the VF's region fails with Data Transfer Error, changes nothing
 *   in flight    non-blocking reads that miss the cache, all in flight at once
 *   options      precise InvalidArgumentErrors for bad controller and driver options
 *
 * No assertion is about time. Every wait has a deadline that fails the test instead of hanging.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { EINVAL } from "../src/abi/errno.js";
import { NvmeDriver } from "../src/drivers/nvme.js";
import { InvalidArgumentError } from "../src/errors.js";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { NvmeController, type NvmeControllerOptions } from "../src/hw/nvme.js";
import {
  CQE_CID,
  CQE_SQHD,
  CQE_SQID,
  CQE_STATUS,
  cqHeadDoorbell,
  NVME_CMD_FLUSH,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_NSID,
  NVME_SC_DATA_TRANSFER_ERROR,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_NAMESPACE,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_OUT_OF_RANGE,
  NVME_SC_PRP_OFFSET_INVALID,
  NVME_SC_SUCCESS,
  nqCqBaseHi,
  nqCqBaseLo,
  nqCqEntries,
  nqSqBaseHi,
  nqSqBaseLo,
  nqSqEntries,
  nrFailReason,
  nrReady,
  queueConfigWord,
  SQE_CDW12,
  SQE_CID,
  SQE_NSID,
  SQE_OPCODE,
  SQE_PRP1,
  SQE_SLBA,
  sqTailDoorbell,
  vsReads,
  vsWrites,
} from "../src/hw/nvme-regs.js";
import {
  VF_DOORBELL_WAKE,
  VF_FAILED,
  VFC_ENABLE,
  type VfDescriptor,
  vrControl,
  vrStatus,
  vsCommands,
  vsDmaFaults,
  vsInterrupts,
} from "../src/hw/vf.js";
import { Notifier } from "../src/shm/wake.js";
import type {
  AsyncReadsResult,
  AttachInfo,
  ChurnResult,
  NvmeRequest,
} from "./fixtures/nvme-driver-worker.js";
import {
  blockOf,
  buildMachine,
  DriverWorker,
  type NvmeMachine,
  patternBlocks,
  type TempImage,
  tempImage,
  until,
} from "./fixtures/nvme-harness.js";

// ---- raw queues, driven from the main thread ----

/** A queue pair programmed by hand (no driver): the device's view of the protocol, unfiltered. */
class RawQueue {
  readonly #m: NvmeMachine;
  readonly #desc: VfDescriptor;
  readonly #sq: number;
  readonly #cq: number;
  readonly #b: number;
  readonly #bell: Notifier;
  tail = 0;
  head = 0;
  phase = 1;

  constructor(
    m: NvmeMachine,
    vf: number,
    readonly sqEntries: number,
    readonly cqEntries: number,
    /** Queue pair index; its SQ and CQ sit at DMA offsets q × 8 KiB and q × 8 KiB + 4 KiB. */
    readonly q = 0,
  ) {
    this.#m = m;
    this.#desc = m.descs[vf];
    this.#sq = this.#desc.dma.phys + q * 8192;
    this.#cq = this.#sq + 4096;
    this.#b = this.#desc.regs / 4;
    this.#bell = new Notifier(m.mem.sab, this.#desc.regs + VF_DOORBELL_WAKE);
    const i32 = m.mem.i32;
    const iova = this.#desc.dma.iova + q * 8192;
    const cfg = (f: number, v: number) => Atomics.store(i32, this.#b + queueConfigWord(q, f), v);
    cfg(nqSqBaseLo, iova);
    cfg(nqSqBaseHi, 0);
    cfg(nqSqEntries, sqEntries);
    cfg(nqCqBaseLo, iova + 4096);
    cfg(nqCqBaseHi, 0);
    cfg(nqCqEntries, cqEntries);
  }

  async enable(): Promise<void> {
    Atomics.store(this.#m.mem.i32, this.#b + vrControl, VFC_ENABLE);
    this.#bell.notify();
    await until(() => Atomics.load(this.#m.mem.i32, this.#b + nrReady) === 1, "raw enable");
  }

  /** Write one SQE at the tail: a one-block command whose data sits at DMA offset 64 KiB. */
  submit(opcode: number, cid: number, slba: number): void {
    const dv = this.#m.mem.dv;
    const at = this.#sq + this.tail * 64;
    this.#m.mem.u8.fill(0, at, at + 64);
    dv.setUint8(at + SQE_OPCODE, opcode);
    dv.setUint16(at + SQE_CID, cid, true);
    dv.setUint32(at + SQE_NSID, NVME_NSID, true);
    dv.setUint32(at + SQE_PRP1, this.#desc.dma.iova + 65536, true);
    dv.setUint32(at + SQE_SLBA, slba, true);
    dv.setUint32(at + SQE_CDW12, 0, true);
    this.tail = (this.tail + 1) % this.sqEntries;
  }

  ring(tail = this.tail): void {
    Atomics.store(this.#m.mem.i32, this.#b + sqTailDoorbell(this.q), tail);
    this.#bell.notify();
  }

  /** Phase tag of CQ slot `k` as it is in memory now. */
  phaseAt(k: number): number {
    return this.#m.mem.dv.getUint16(this.#cq + k * 16 + CQE_STATUS, true) & 1;
  }

  /** Wait for the next CQE, consume it, move the CQ head doorbell. */
  async next(): Promise<{
    cid: number;
    status: number;
    phase: number;
    sqhd: number;
    sqid: number;
  }> {
    await until(() => this.phaseAt(this.head) === this.phase, "raw completion");
    const dv = this.#m.mem.dv;
    const at = this.#cq + this.head * 16;
    const st = dv.getUint16(at + CQE_STATUS, true);
    const cqe = {
      cid: dv.getUint16(at + CQE_CID, true),
      status: st >>> 1,
      phase: st & 1,
      sqhd: dv.getUint16(at + CQE_SQHD, true),
      sqid: dv.getUint16(at + CQE_SQID, true),
    };
    if (++this.head === this.cqEntries) {
      this.head = 0;
      this.phase ^= 1;
    }
    Atomics.store(this.#m.mem.i32, this.#b + cqHeadDoorbell(this.q), this.head);
    this.#bell.notify();
    return cqe;
  }
}

test("CQEs carry CID, SQ head and SQ id, and the phase tag flips on every pass over a 3-entry CQ", async (t) => {
  const env = await setup(1);
  try {
    const q = new RawQueue(env.m, 0, 3, 3);
    await q.enable();
    const phases: number[] = [];
    for (let i = 0; i < 12; i++) {
      q.submit(i % 2 === 0 ? NVME_CMD_WRITE : NVME_CMD_READ, 100 + i, i % 5);
      q.ring();
      const slot = i % 3;
      const c = await q.next();
      assert.equal(c.cid, 100 + i);
      assert.equal(c.status, NVME_SC_SUCCESS);
      assert.equal(c.sqid, 1, "queue pair 0 is SQ 1");
      assert.equal(c.sqhd, (i + 1) % 3, "the SQ head after fetching this command");
      assert.equal(c.phase, Math.floor(i / 3) % 2 === 0 ? 1 : 0, `pass ${Math.floor(i / 3)}`);
      assert.equal(q.phaseAt(slot), c.phase, "the entry in memory holds that phase");
      phases.push(c.phase);
    }
    t.diagnostic(`phases: ${phases.join("")}`);
    assert.deepEqual(phases, [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
  } finally {
    await env.close();
  }
});

test("the device never posts more completions than the CQ has room for", async () => {
  const env = await setup(1);
  try {
    const i32 = env.m.mem.i32;
    const b = env.m.descs[0].regs / 4;
    const q = new RawQueue(env.m, 0, 4, 2); // a CQ of 2 entries holds 1 unconsumed completion
    await q.enable();
    for (let i = 0; i < 3; i++) q.submit(NVME_CMD_WRITE, i, i);
    q.ring();
    await until(() => q.phaseAt(0) === 1, "first completion");
    for (let k = 0; k < 50; k++) await new Promise((r) => setImmediate(r)); // chances to overrun
    assert.equal(q.phaseAt(1), 0, "the second CQ slot was not written while the CQ was full");
    assert.equal(Atomics.load(i32, b + vsCommands), 1, "only one command was fetched");
    const got = [(await q.next()).cid, (await q.next()).cid, (await q.next()).cid];
    assert.deepEqual(got, [0, 1, 2], "the held commands complete once the head moves");
  } finally {
    await env.close();
  }
});

test("a VF may run several queue pairs; each completion names its own SQ", async () => {
  const env = await setup(1);
  try {
    const q0 = new RawQueue(env.m, 0, 4, 4, 0);
    const q2 = new RawQueue(env.m, 0, 8, 8, 2); // pair 1 stays unused
    await q0.enable();
    for (let i = 0; i < 6; i++) {
      q2.submit(NVME_CMD_WRITE, 200 + i, i);
      q0.submit(NVME_CMD_READ, 100 + i, i);
      q2.ring();
      q0.ring();
      const [a, b] = [await q0.next(), await q2.next()];
      assert.deepEqual([a.cid, a.sqid, a.status], [100 + i, 1, NVME_SC_SUCCESS]);
      assert.deepEqual([b.cid, b.sqid, b.status], [200 + i, 3, NVME_SC_SUCCESS]);
    }
  } finally {
    await env.close();
  }
});

test("a doorbell past the end of the SQ, or a misaligned queue, fails the VF (EINVAL)", async () => {
  const env = await setup(1);
  try {
    const i32 = env.m.mem.i32;
    const b = env.m.descs[0].regs / 4;
    const q = new RawQueue(env.m, 0, 4, 4);
    await q.enable();
    q.ring(9);
    await until(() => Atomics.load(i32, b + vrStatus) === VF_FAILED, "VF fails");
    assert.equal(Atomics.load(i32, b + nrFailReason), EINVAL);
    assert.equal(Atomics.load(i32, b + nrReady), -1, "CSTS.CFS");

    env.ctl.resetVf(0);
    Atomics.store(i32, b + queueConfigWord(0, nqSqEntries), 4);
    Atomics.store(i32, b + queueConfigWord(0, nqCqEntries), 4);
    Atomics.store(i32, b + queueConfigWord(0, nqSqBaseLo), env.m.descs[0].dma.iova + 64);
    Atomics.store(i32, b + queueConfigWord(0, nqCqBaseLo), env.m.descs[0].dma.iova + 4096);
    Atomics.store(i32, b + vrControl, VFC_ENABLE);
    new Notifier(env.m.mem.sab, env.m.descs[0].regs + VF_DOORBELL_WAKE).notify();
    await until(() => Atomics.load(i32, b + vrStatus) === VF_FAILED, "VF refuses the queues");
    assert.equal(Atomics.load(i32, b + nrFailReason), EINVAL);
  } finally {
    await env.close();
  }
});

// ---- through the driver in a worker ----

test("a WRITE reaches the image file on FLUSH, and not before", async () => {
  const env = await setup(1);
  const w = new DriverWorker(env.m, 0);
  try {
    const info = await w.call<AttachInfo>({ op: "attach" });
    assert.equal(info.blocks, NS_BLOCKS);
    await w.call({ op: "write", lba: 3, count: 4, seed: 11 });
    const want = patternBlocks(11, 3, 4);
    const before = await env.img.readBlocks(NS0 + 3, 4);
    assert.ok(
      before.every((x) => x === 0),
      "unflushed data is only in the device's cache",
    );
    assert.deepEqual(await w.call({ op: "read", lba: 3, count: 4 }), want, "READ sees the cache");
    await w.call({ op: "flush" });
    assert.deepEqual(await env.img.readBlocks(NS0 + 3, 4), want, "FLUSH wrote the blocks");
    const s = env.ctl.stats();
    assert.equal(s.flushes, 1);
    assert.equal(s.flushedBlocks, 4);
    assert.equal(s.cacheHits, 4);
    assert.equal(s.dirtyBlocks, 0);
    const b = env.m.descs[0].regs / 4;
    assert.equal(Atomics.load(env.m.mem.i32, b + vsWrites), 1);
    assert.equal(Atomics.load(env.m.mem.i32, b + vsReads), 1);
    assert.ok(Atomics.load(env.m.mem.i32, b + vsInterrupts) >= 1, "completions raised interrupts");
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("long transfers are split into MDTS-sized commands and batched behind one doorbell", async () => {
  const env = await setup(1, { maxTransferBlocks: 8 });
  const w = new DriverWorker(env.m, 0);
  try {
    const info = await w.call<AttachInfo>({ op: "attach" });
    assert.equal(info.blocksPerCommand, 8, "the driver takes the device's MDTS");
    const before = await w.call<{ submitted: number; sqDoorbells: number }>({ op: "stats" });
    await w.call({ op: "write", lba: 10, count: 400, seed: 21 });
    const after = await w.call<{ submitted: number; sqDoorbells: number }>({ op: "stats" });
    const commands = after.submitted - before.submitted;
    const rings = after.sqDoorbells - before.sqDoorbells;
    assert.equal(commands, 50, "400 blocks in commands of 8");
    assert.ok(rings >= Math.ceil(commands / info.slots), "never more commands than slots");
    assert.ok(
      rings <= commands - info.slots + 1,
      `the first ${info.slots} commands went behind one doorbell (${rings} rings for ${commands} commands)`,
    );
    const back = await w.call<Uint8Array>({ op: "read", lba: 10, count: 400 });
    assert.deepEqual(back, patternBlocks(21, 10, 400));
    const odd = await w.call<Uint8Array>({ op: "read", lba: 13, count: 11 });
    assert.deepEqual(odd, patternBlocks(21, 13, 11), "a range that starts mid-command");
    await w.call({ op: "flush" });
    assert.deepEqual(await env.img.readBlocks(NS0 + 10, 400), patternBlocks(21, 10, 400));
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("writes larger than the cache write back the oldest blocks, unsynced, and read back whole", async () => {
  const env = await setup(1, { cacheBlocks: 16, maxTransferBlocks: 4, writeBackBlocks: 4 });
  const w = new DriverWorker(env.m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "write", lba: 0, count: 100, seed: 31 });
    const s = env.ctl.stats();
    assert.ok(s.writeBacks >= 100 - 16, `at least 84 blocks written back, got ${s.writeBacks}`);
    assert.ok(s.dirtyBlocks <= 16);
    const first = await env.img.readBlocks(NS0, 1);
    assert.deepEqual(first, patternBlocks(31, 0, 1), "the oldest block went to the file first");
    assert.deepEqual(await w.call({ op: "read", lba: 0, count: 100 }), patternBlocks(31, 0, 100));
    await w.call({ op: "flush" });
    assert.deepEqual(await env.img.readBlocks(NS0, 100), patternBlocks(31, 0, 100));
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("bad commands complete with NVMe's generic statuses, which the driver throws as IoError", async () => {
  const env = await setup(1, { maxTransferBlocks: 8 });
  const w = new DriverWorker(env.m, 0);
  try {
    await w.call({ op: "attach" });
    const range = await w.fails({ op: "read", lba: NS_BLOCKS - 1, count: 2 });
    assert.equal(range.name, "NvmeStatusError");
    assert.equal(range.code, "EXO_ERR_IO");
    assert.equal(range.errno, 5, "EIO");
    assert.equal(range.status, NVME_SC_LBA_OUT_OF_RANGE);
    assert.match(range.message, /LBA Out of Range/);
    const wr = await w.fails({ op: "write", lba: NS_BLOCKS, count: 1, seed: 1 });
    assert.equal(wr.status, NVME_SC_LBA_OUT_OF_RANGE);

    const exec = (cmd: Extract<NvmeRequest, { op: "execute" }>["cmd"]) =>
      w.call<number>({ op: "execute", cmd });
    assert.equal(await exec({ opcode: 0x7f }), NVME_SC_INVALID_OPCODE);
    assert.equal(await exec({ opcode: NVME_CMD_READ, nsid: 2 }), NVME_SC_INVALID_NAMESPACE);
    assert.equal(await exec({ opcode: NVME_CMD_FLUSH, nsid: 0 }), NVME_SC_INVALID_NAMESPACE);
    assert.equal(await exec({ opcode: NVME_CMD_FLUSH, nsid: 0xffffffff }), NVME_SC_SUCCESS);
    assert.equal(await exec({ opcode: NVME_CMD_READ, blocks: 9 }), NVME_SC_INVALID_FIELD, "MDTS");
    assert.equal(await exec({ opcode: NVME_CMD_READ, flags: 0x40 }), NVME_SC_INVALID_FIELD, "SGL");
    assert.equal(await exec({ opcode: NVME_CMD_READ, slba: 2 ** 32 }), NVME_SC_LBA_OUT_OF_RANGE);
    const iova = env.m.descs[0].dma.iova;
    assert.equal(await exec({ opcode: NVME_CMD_READ, prp1: iova + 2 }), NVME_SC_PRP_OFFSET_INVALID);
    assert.equal(env.ctl.stats().errors, 9);
    // The driver still works after all of that.
    await w.call({ op: "write", lba: 0, count: 1, seed: 5 });
    assert.deepEqual(await w.call({ op: "read", lba: 0, count: 1 }), patternBlocks(5, 0, 1));
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("the phase tag stays right over thousands of commands through a 4-entry queue pair", async (t) => {
  const env = await setup(1);
  const w = new DriverWorker(env.m, 0);
  try {
    const info = await w.call<AttachInfo>({ op: "attach", options: { queueEntries: 4 } });
    assert.equal(info.slots, 3, "a 4-entry queue holds 3 commands");
    const n = 3000;
    const r = await w.call<ChurnResult>({ op: "churn", n, lbas: 7 });
    const s = await w.call<{ completed: number; cqWraps: number }>({ op: "stats" });
    t.diagnostic(`completions ${s.completed}, CQ wraps ${s.cqWraps}`);
    assert.equal(r.mismatches, 0, "every block read back is the one just written");
    assert.equal(s.completed, 2 * n);
    assert.equal(s.cqWraps, Math.floor((2 * n) / 4), "one wrap per 4 completions");
    assert.equal(env.ctl.stats().commands, 2 * n);
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("two VFs have separate namespaces and cannot reach each other's blocks", async () => {
  const env = await setup(2);
  const w0 = new DriverWorker(env.m, 0);
  const w1 = new DriverWorker(env.m, 1);
  try {
    await Promise.all([w0.call({ op: "attach" }), w1.call({ op: "attach" })]);
    await Promise.all([
      w0.call({ op: "write", lba: 0, count: 4, seed: 41 }),
      w1.call({ op: "write", lba: 0, count: 4, seed: 42 }),
    ]);
    assert.deepEqual(await w0.call({ op: "read", lba: 0, count: 4 }), patternBlocks(41, 0, 4));
    assert.deepEqual(await w1.call({ op: "read", lba: 0, count: 4 }), patternBlocks(42, 0, 4));
    // VF 0's namespace ends where VF 1's begins: the block past its end is VF 1's block 0.
    const past = await w0.fails({ op: "read", lba: NS_BLOCKS, count: 1 });
    assert.equal(past.status, NVME_SC_LBA_OUT_OF_RANGE);
    const past1 = await w1.fails({ op: "read", lba: NS1_BLOCKS, count: 1 });
    assert.equal(past1.status, NVME_SC_LBA_OUT_OF_RANGE);
    await Promise.all([w0.call({ op: "flush" }), w1.call({ op: "flush" })]);
    assert.deepEqual(await env.img.readBlocks(NS0, 4), patternBlocks(41, 0, 4));
    assert.deepEqual(await env.img.readBlocks(NS1, 4), patternBlocks(42, 0, 4));
  } finally {
    await Promise.all([w0.terminate(), w1.terminate()]);
    await env.close();
  }
});

test("a DMA outside the VF's region fails with Data Transfer Error and changes nothing", async () => {
  const env = await setup(2);
  const w = new DriverWorker(env.m, 0);
  try {
    await w.call({ op: "attach" });
    await w.call({ op: "write", lba: 5, count: 2, seed: 51 });
    await w.call({ op: "flush" });
    const d0 = env.m.descs[0].dma;
    const d1 = env.m.descs[1].dma;
    const rogue = [
      d0.iova + d0.bytes, // just past the end
      d0.iova + d0.bytes - BLOCK_SIZE, // starts inside, runs past the end (2 blocks)
      d1.iova, // the other VF's memory: not mapped for this requester
      d0.iova - BLOCK_SIZE * 2, // below the region
    ];
    for (const prp1 of rogue) {
      const st = await w.call<number>({
        op: "execute",
        cmd: { opcode: NVME_CMD_WRITE, slba: 5, blocks: 2, prp1 },
      });
      assert.equal(st, NVME_SC_DATA_TRANSFER_ERROR, `WRITE from ${prp1.toString(16)}`);
    }
    const rd = await w.call<number>({
      op: "execute",
      cmd: { opcode: NVME_CMD_READ, slba: 5, blocks: 2, prp1: d1.iova },
    });
    assert.equal(rd, NVME_SC_DATA_TRANSFER_ERROR, "READ into another VF's memory");
    assert.ok(env.m.mem.u8.subarray(d1.phys, d1.phys + 2 * BLOCK_SIZE).every((x) => x === 0));
    assert.deepEqual(await w.call({ op: "read", lba: 5, count: 2 }), patternBlocks(51, 5, 2));
    assert.equal(env.ctl.stats().dirtyBlocks, 0, "no blocked WRITE reached the cache");
    await w.call({ op: "flush" });
    assert.deepEqual(await env.img.readBlocks(NS0 + 5, 2), patternBlocks(51, 5, 2));
    const b = env.m.descs[0].regs / 4;
    assert.equal(Atomics.load(env.m.mem.i32, b + vsDmaFaults), 5);
    const faults = env.m.dma.faults.filter((f) => f.rid === env.m.descs[0].rid);
    assert.equal(faults.length, 5, "every blocked DMA was recorded, with the VF's rid");
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("non-blocking reads that miss the cache are all in flight at once and return the file's data", async () => {
  const env = await setup(1);
  const want = patternBlocks(61, 0, 20);
  await env.img.writeBlocks(NS0, want); // on the medium before the device caches anything
  const w = new DriverWorker(env.m, 0);
  try {
    const info = await w.call<AttachInfo>({ op: "attach" });
    const r = await w.call<AsyncReadsResult>({ op: "asyncReads", lba: 0, count: 20 });
    assert.deepEqual(r.data, want);
    assert.equal(r.maxInflight, info.slots, "every slot held a command at once");
    const s = env.ctl.stats();
    assert.equal(s.cacheMisses, 20);
    assert.equal(s.cacheHits, 0);
    assert.deepEqual(blockOf(r.data, 7), blockOf(want, 7));
  } finally {
    await w.terminate();
    await env.close();
  }
});

test("bad options are refused with precise messages", async () => {
  const env = await setup(1);
  try {
    const base = { mem: env.m.mem, dma: env.m.dma, image: env.img.path };
    const bad: [Partial<NvmeControllerOptions>, RegExp][] = [
      [
        {
          namespaces: [
            { lbaOffset: 0, blocks: 10 },
            { lbaOffset: 5, blocks: 10 },
          ],
        },
        /namespaces\[1\] overlaps namespaces\[0\]/,
      ],
      [{ namespaces: [] }, /at least one namespace/],
      [{ namespaces: [{ lbaOffset: 0, blocks: 0 }] }, /namespaces\[0\]\.blocks must be/],
      [
        { namespaces: [{ lbaOffset: 0, blocks: 8 }], cacheBlocks: 4, maxTransferBlocks: 8 },
        /cacheBlocks must be an integer from 8/,
      ],
    ];
    for (const [o, msg] of bad) {
      await assert.rejects(
        NvmeController.open({ ...base, namespaces: [], ...o } as NvmeControllerOptions),
        (e: unknown) => e instanceof InvalidArgumentError && msg.test(e.message),
      );
    }
    assert.throws(
      () => env.ctl.attachVf({ ...env.m.descs[0], kind: "nic" }),
      /VF 0 is a nic, not an nvme/,
    );
    assert.throws(() => env.ctl.attachVf(env.m.descs[0]), /already attached/);
    const tiny = { ...env.m.descs[0], dma: { ...env.m.descs[0].dma, bytes: 16384 } };
    assert.throws(
      () => new NvmeDriver(env.m.mem, tiny),
      (e: unknown) =>
        e instanceof InvalidArgumentError && /cannot hold 64-entry queues/.test(e.message),
    );
  } finally {
    await env.close();
  }
});

// ---- setup ----

/** Namespace of VF 0 and of VF 1 in the image (in blocks). */
const NS0 = 16;
const NS_BLOCKS = 1024;
const NS1 = NS0 + NS_BLOCKS;
const NS1_BLOCKS = 128;

interface Env {
  readonly m: NvmeMachine;
  readonly img: TempImage;
  readonly ctl: NvmeController;
  close(): Promise<void>;
}

async function setup(vfs: number, opts: Partial<NvmeControllerOptions> = {}): Promise<Env> {
  const m = buildMachine(vfs);
  const img = await tempImage(NS1 + NS1_BLOCKS);
  const ctl = await NvmeController.open({
    mem: m.mem,
    dma: m.dma,
    image: img.path,
    namespaces: [
      { lbaOffset: NS0, blocks: NS_BLOCKS },
      { lbaOffset: NS1, blocks: NS1_BLOCKS },
    ],
    ...opts,
  });
  for (let k = 0; k < vfs; k++) ctl.attachVf(m.descs[k]);
  return {
    m,
    img,
    ctl,
    async close() {
      await ctl.close();
      await img.remove();
    },
  };
}
