/**
 * IOMMU: deterministic cases. Blocked DMAs move nothing and are recorded with the right RID,
 * addresses, kind and reason; read-only and write-only pages; accesses that span pages are all
 * or nothing; every context state (root / context absent, blocked, pass-through, invalid,
 * address width); fault records merge repeats, overflow, clear; the IOTLB counts hits and
 * misses, is really used, and never lets a DMA through after unmap or protect; page tables are
 * freed when emptied and every frame comes back on destroy.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM } from "../src/abi/errno.js";
import { PanicError } from "../src/errors.js";
import {
  DMA_OK,
  FR_ADDRESS_BEYOND_AW,
  FR_BLOCKED,
  FR_CONTEXT_INVALID,
  FR_CONTEXT_NOT_PRESENT,
  FR_NO_READ,
  FR_NO_WRITE,
  FR_PT_ACCESS,
  FR_PTE_NOT_PRESENT,
  FR_ROOT_NOT_PRESENT,
} from "../src/hw/dma.js";
import {
  type DmaFaultEvent,
  faultReasonName,
  IOPTE_READ,
  IOPTE_RW,
  IOPTE_WRITE,
  Iommu,
  type IommuOptions,
  TT_BLOCKED,
  TT_PASSTHROUGH,
  TT_TRANSLATE,
} from "../src/hw/iommu.js";
import {
  FrameAllocator,
  firstFrameAfter,
  initFrameAllocator,
  layFrameAllocator,
  PAGE_SIZE,
  PhysicalMemory,
} from "../src/hw/physmem.js";
import { Arena } from "../src/shm/layout.js";

const RID = 0x0108; // bus 1, device 1, function 0
const DID = 7;

function machine(frames = 96, options?: IommuOptions) {
  const mem = PhysicalMemory.create(frames * PAGE_SIZE);
  const arena = new Arena(mem.sab);
  const fa = layFrameAllocator(arena, mem.frames);
  initFrameAllocator(mem, fa, firstFrameAfter(arena));
  const alloc = new FrameAllocator(mem, fa);
  const freeAtBoot = alloc.freeFrames;
  const iommu = new Iommu(mem, alloc, options);
  return { mem, alloc, iommu, freeAtBoot };
}

type Machine = ReturnType<typeof machine>;

/** A data frame whose byte k is (seed + k) & 0xff. */
function dataFrame(m: Machine, seed: number): number {
  const f = m.alloc.alloc();
  assert.ok(f >= 0);
  const bytes = m.mem.frameBytes(f);
  for (let k = 0; k < PAGE_SIZE; k++) bytes[k] = (seed + k) & 0xff;
  return f;
}

/** A translating context for RID in DID with pages of frames mapped from `iova`. */
function withPages(m: Machine, iova: number, frames: number[], perms = IOPTE_RW): void {
  assert.equal(m.iommu.setContext(RID, { type: TT_TRANSLATE, domainId: DID }), 0);
  frames.forEach((f, k) => {
    assert.equal(m.iommu.map(DID, iova + k * PAGE_SIZE, f, perms), 0);
  });
}

function snapshot(m: Machine): Uint8Array {
  return m.mem.u8.slice();
}

function filled(n: number, byte: number): Uint8Array {
  return new Uint8Array(n).fill(byte);
}

test("a DMA to an unmapped IOVA moves nothing and is recorded with RID, address, kind and reason", () => {
  const m = machine();
  const f = dataFrame(m, 1);
  withPages(m, 0x10000, [f]);
  const events: DmaFaultEvent[] = [];
  m.iommu.onFault((e) => events.push({ ...e }));
  const before = snapshot(m);

  assert.equal(m.iommu.write(RID, 0x20010, filled(100, 0xab)), FR_PTE_NOT_PRESENT);
  assert.deepEqual(m.mem.u8, before, "physical memory unchanged");
  const dst = filled(100, 0xee);
  assert.equal(m.iommu.read(RID, 0x20010, dst), FR_PTE_NOT_PRESENT);
  assert.deepEqual(dst, filled(100, 0xee), "destination unchanged");

  assert.deepEqual(m.iommu.faults(), [
    {
      index: 0,
      rid: RID,
      iova: 0x20010,
      page: 0x20000,
      write: true,
      reason: FR_PTE_NOT_PRESENT,
      count: 1,
    },
    {
      index: 1,
      rid: RID,
      iova: 0x20010,
      page: 0x20000,
      write: false,
      reason: FR_PTE_NOT_PRESENT,
      count: 1,
    },
  ]);
  assert.deepEqual(events, [
    {
      rid: RID,
      iova: 0x20010,
      page: 0x20000,
      write: true,
      reason: FR_PTE_NOT_PRESENT,
      record: 0,
      count: 1,
    },
    {
      rid: RID,
      iova: 0x20010,
      page: 0x20000,
      write: false,
      reason: FR_PTE_NOT_PRESENT,
      record: 1,
      count: 1,
    },
  ]);
  assert.equal(m.iommu.stats().faults, 2);
  assert.equal(m.iommu.stats().reads + m.iommu.stats().writes, 0);
  assert.equal(faultReasonName(FR_PTE_NOT_PRESENT), "no-read-or-not-present");

  // the mapped page next to it works, both ways
  assert.equal(m.iommu.write(RID, 0x10010, filled(100, 0xab)), DMA_OK);
  assert.deepEqual(
    m.mem.u8.subarray(f * PAGE_SIZE + 0x10, f * PAGE_SIZE + 0x10 + 100),
    filled(100, 0xab),
  );
  assert.equal(m.iommu.read(RID, 0x10010, dst), DMA_OK);
  assert.deepEqual(dst, filled(100, 0xab));
});

test("a read-only page can be read but a write to it is blocked as no-write; a write-only page the other way", () => {
  const m = machine();
  const ro = dataFrame(m, 10);
  const wo = dataFrame(m, 20);
  assert.equal(m.iommu.setContext(RID, { type: TT_TRANSLATE, domainId: DID }), 0);
  assert.equal(m.iommu.map(DID, 0x4000, ro, IOPTE_READ), 0);
  assert.equal(m.iommu.map(DID, 0x5000, wo, IOPTE_WRITE), 0);
  const before = snapshot(m);

  assert.equal(m.iommu.write(RID, 0x4000, filled(8, 0xff)), FR_NO_WRITE);
  assert.deepEqual(m.mem.u8, before);
  const dst = new Uint8Array(8);
  assert.equal(m.iommu.read(RID, 0x4004, dst), DMA_OK);
  assert.deepEqual([...dst], [14, 15, 16, 17, 18, 19, 20, 21]);

  assert.equal(m.iommu.read(RID, 0x5000, filled(8, 0)), FR_NO_READ);
  assert.equal(m.iommu.write(RID, 0x5000, filled(8, 0x77)), DMA_OK);
  assert.deepEqual(m.mem.u8.subarray(wo * PAGE_SIZE, wo * PAGE_SIZE + 8), filled(8, 0x77));

  const recs = m.iommu.faults();
  assert.equal(recs.length, 2);
  assert.deepEqual(
    recs.map((r) => [r.page, r.write, r.reason]),
    [
      [0x4000, true, FR_NO_WRITE],
      [0x5000, false, FR_NO_READ],
    ],
  );
});

test("a DMA that spans a mapped and an unmapped page moves nothing, in either direction", () => {
  const m = machine();
  const a = dataFrame(m, 0);
  withPages(m, 0x10000, [a]); // 0x11000 is not mapped
  const before = snapshot(m);

  assert.equal(m.iommu.write(RID, 0x10800, filled(PAGE_SIZE, 0x5a)), FR_PTE_NOT_PRESENT);
  assert.deepEqual(m.mem.u8, before, "not even the mapped half was written");
  const dst = filled(PAGE_SIZE, 0x11);
  assert.equal(m.iommu.read(RID, 0x10800, dst), FR_PTE_NOT_PRESENT);
  assert.deepEqual(dst, filled(PAGE_SIZE, 0x11));
  const [rec] = m.iommu.faults();
  assert.equal(rec.iova, 0x10800);
  assert.equal(rec.page, 0x11000, "the record names the page that faulted");

  // a read-only second page blocks a spanning write the same way
  const ro = dataFrame(m, 0);
  assert.equal(m.iommu.map(DID, 0x11000, ro, IOPTE_READ), 0);
  const before2 = snapshot(m);
  assert.equal(m.iommu.write(RID, 0x10ff0, filled(32, 1)), FR_NO_WRITE);
  assert.deepEqual(m.mem.u8, before2);
  assert.equal(m.iommu.read(RID, 0x10ff0, filled(32, 1)), DMA_OK);
});

test("DMAs across pages land in the right frames, contiguous or not, small or large", () => {
  const m = machine();
  const run = m.alloc.allocContiguous(3);
  const lone = dataFrame(m, 0);
  assert.ok(run >= 0);
  // IOVA pages 0..2 → run, run+1, lone (not contiguous with run+1): two physical runs
  withPages(m, 0x3000_0000, [run, run + 1, lone]);
  const src = new Uint8Array(2 * PAGE_SIZE + 100);
  for (let k = 0; k < src.length; k++) src[k] = (k * 7) & 0xff;
  assert.equal(m.iommu.write(RID, 0x3000_0f00, src), DMA_OK);
  const u8 = m.mem.u8;
  for (let k = 0; k < src.length; k++) {
    const off = 0xf00 + k;
    const page = off >>> 12;
    const frame = [run, run + 1, lone][page];
    assert.equal(u8[frame * PAGE_SIZE + (off & 0xfff)], src[k], `byte ${k}`);
  }
  const back = new Uint8Array(src.length);
  assert.equal(m.iommu.read(RID, 0x3000_0f00, back), DMA_OK);
  assert.deepEqual(back, src);
  const small = new Uint8Array(16);
  assert.equal(m.iommu.read(RID, 0x3000_0ff8, small), DMA_OK, "16 bytes across a page boundary");
  assert.deepEqual(small, src.subarray(0xf8, 0xf8 + 16));
  assert.equal(m.iommu.read(RID, 0x3000_0000, new Uint8Array(0)), DMA_OK, "zero-length DMA");
  const s = m.iommu.stats();
  assert.equal(s.bytesWritten, src.length);
  assert.equal(s.bytesRead, src.length + 16);
});

test("contexts: root absent, context absent, blocked, invalid, pass-through, address width", () => {
  const m = machine();
  const f = dataFrame(m, 3);
  const none = filled(4, 9);
  // nothing on bus 2 at all
  assert.equal(m.iommu.read(0x0200, 0, none), FR_ROOT_NOT_PRESENT);
  withPages(m, 0, [f]);
  // bus 1 has a context table now, but devfn 9 has no entry
  assert.equal(m.iommu.read(0x0109, 0, none), FR_CONTEXT_NOT_PRESENT);

  assert.equal(m.iommu.setContext(0x0109, { type: TT_BLOCKED, domainId: DID }), 0);
  const before = snapshot(m);
  assert.equal(m.iommu.write(0x0109, 0, filled(4, 1)), FR_BLOCKED);
  assert.equal(m.iommu.read(0x0109, 0, none), FR_BLOCKED);
  assert.deepEqual(none, filled(4, 9));
  assert.deepEqual(m.mem.u8, before);

  // pass-through: IOVA = physical address, bounded by memory
  assert.equal(m.iommu.setContext(0x0109, { type: TT_PASSTHROUGH, domainId: DID }), 0);
  const dst = new Uint8Array(4);
  assert.equal(m.iommu.read(0x0109, f * PAGE_SIZE + 1, dst), DMA_OK);
  assert.deepEqual([...dst], [4, 5, 6, 7]);
  assert.equal(m.iommu.translate(0x0109, f * PAGE_SIZE + 5, true), f * PAGE_SIZE + 5);
  assert.equal(m.iommu.read(0x0109, m.mem.bytes - 2, dst), FR_ADDRESS_BEYOND_AW);
  assert.equal(m.iommu.faults().at(-1)?.page, m.mem.bytes, "the first page past memory");

  // a narrow address width: 22 bits = 4 MiB of IOVA
  assert.equal(m.iommu.setContext(RID, { type: TT_TRANSLATE, domainId: DID, addressWidth: 22 }), 0);
  assert.deepEqual(m.iommu.context(RID), { type: TT_TRANSLATE, domainId: DID, addressWidth: 22 });
  assert.equal(m.iommu.map(DID, 0x3ff000, f, IOPTE_RW), 0);
  assert.equal(m.iommu.read(RID, 0x3ffffe, dst), FR_ADDRESS_BEYOND_AW);
  assert.equal(m.iommu.read(RID, 0x3ffffc, dst), DMA_OK);
  assert.equal(m.iommu.translate(RID, 0x400000, false), -FR_ADDRESS_BEYOND_AW);

  // a context entry corrupted behind the IOMMU's back (TT 1) is invalid
  const at = m.iommu.contextEntryAddress(RID);
  assert.ok(at > 0);
  const w0 = m.mem.i32[at / 4];
  m.mem.i32[at / 4] = (w0 & ~0xc) | (1 << 2);
  assert.equal(m.iommu.read(RID, 0x3ff000, dst), FR_CONTEXT_INVALID);
  m.mem.i32[at / 4] = w0;
  assert.equal(m.iommu.read(RID, 0x3ff000, dst), DMA_OK);

  // clearing contexts: the last one on a bus takes the context table with it
  assert.equal(m.iommu.clearContext(0x0109), 0);
  assert.equal(m.iommu.clearContext(0x0109), -ENOENT);
  assert.equal(m.iommu.read(0x0109, 0, dst), FR_CONTEXT_NOT_PRESENT);
  assert.equal(m.iommu.clearContext(RID), 0);
  assert.equal(m.iommu.read(RID, 0x3ff000, dst), FR_ROOT_NOT_PRESENT);
  assert.equal(m.iommu.contextEntryAddress(RID), -1);
  assert.equal(m.iommu.context(RID), null);
});

test("a page-table pointer outside memory is a page-table access fault", () => {
  const m = machine();
  const f = dataFrame(m, 0);
  withPages(m, 0x1000, [f]);
  // find the directory entry through the context, and aim it past the end of memory
  const ce = m.iommu.contextEntryAddress(RID) / 4;
  const dir = m.mem.i32[ce] >>> 12;
  const pde = m.mem.i32[dir * 1024];
  m.mem.i32[dir * 1024] = (m.mem.frames << 12) | IOPTE_RW;
  assert.equal(m.iommu.read(RID, 0x2000, new Uint8Array(1)), FR_PT_ACCESS);
  m.mem.i32[dir * 1024] = pde;
  assert.equal(m.iommu.read(RID, 0x1000, new Uint8Array(1)), DMA_OK);
});

test("repeated faults of one RID, reason and kind merge into one record; others get their own", () => {
  const m = machine();
  withPages(m, 0, [dataFrame(m, 0)]);
  for (let k = 1; k <= 3; k++) m.iommu.write(RID, 0x9000 + k * 0x1000, filled(4, 0));
  m.iommu.read(RID, 0x9000, filled(4, 0)); // other kind
  assert.equal(m.iommu.setContext(0x0109, { type: TT_BLOCKED, domainId: 1 }), 0);
  m.iommu.write(0x0109, 0x100, filled(4, 0)); // other RID
  assert.deepEqual(
    m.iommu.faults().map((r) => [r.rid, r.write, r.reason, r.count, r.iova, r.page]),
    [
      [RID, true, FR_PTE_NOT_PRESENT, 3, 0xc000, 0xc000],
      [RID, false, FR_PTE_NOT_PRESENT, 1, 0x9000, 0x9000],
      [0x0109, true, FR_BLOCKED, 1, 0x100, 0],
    ],
  );
  assert.equal(m.iommu.overflow, false);
});

test("when every record is in use a new fault sets overflow and is counted, not recorded", () => {
  const m = machine(96, { faultRecords: 4 });
  const events: number[] = [];
  const off = m.iommu.onFault((e) => events.push(e.record));
  for (let d = 0; d < 5; d++) m.iommu.read(0x0300 + d, 0, filled(1, 0)); // 5 RIDs, bus 3 empty
  assert.equal(m.iommu.overflow, true);
  assert.deepEqual(
    m.iommu.faults().map((r) => r.rid),
    [0x0300, 0x0301, 0x0302, 0x0303],
  );
  assert.equal(m.iommu.stats().faults, 5);
  assert.equal(m.iommu.stats().faultsDropped, 1);
  // a repeat of a recorded fault still merges while full
  m.iommu.read(0x0302, 0x40, filled(1, 0));
  assert.equal(m.iommu.faults()[2].count, 2);
  assert.equal(m.iommu.stats().faultsDropped, 1);
  assert.deepEqual(events, [0, 1, 2, 3, -1, 2]);
  off();
  m.iommu.read(0x0300, 0, filled(1, 0));
  assert.equal(events.length, 6, "an unsubscribed listener hears nothing");
});

test("clearFaults empties the records and the overflow flag; clearFault frees one record", () => {
  const m = machine(96, { faultRecords: 2 });
  for (let d = 0; d < 3; d++) m.iommu.write(0x0400 + d, 0, filled(1, 0));
  assert.equal(m.iommu.overflow, true);
  m.iommu.clearFaults();
  assert.equal(m.iommu.overflow, false);
  assert.deepEqual(m.iommu.faults(), []);
  m.iommu.write(0x0400, 0, filled(1, 0));
  assert.deepEqual(
    m.iommu.faults().map((r) => [r.index, r.rid, r.count]),
    [[0, 0x0400, 1]],
    "a cleared record is not merged into",
  );
  m.iommu.write(0x0401, 0, filled(1, 0));
  m.iommu.clearFault(0);
  m.iommu.write(0x0402, 0, filled(1, 0));
  assert.deepEqual(
    m.iommu.faults().map((r) => [r.index, r.rid]),
    [
      [0, 0x0402],
      [1, 0x0401],
    ],
  );
  assert.equal(m.iommu.overflow, false);
  assert.throws(() => m.iommu.clearFault(2), /fault record/);
});

test("the IOTLB counts hits and misses, and is really consulted", () => {
  const m = machine();
  const f = dataFrame(m, 0);
  const g = dataFrame(m, 0);
  withPages(m, 0x7000, [f, g]);
  const dst = new Uint8Array(8);
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK);
  assert.deepEqual([m.iommu.stats().iotlbHits, m.iommu.stats().iotlbMisses], [0, 1]);
  assert.equal(m.iommu.read(RID, 0x7010, dst), DMA_OK);
  assert.deepEqual([m.iommu.stats().iotlbHits, m.iommu.stats().iotlbMisses], [1, 1]);
  assert.equal(m.iommu.read(RID, 0x7ffc, dst), DMA_OK); // page 0x7000 hit, 0x8000 miss
  assert.deepEqual([m.iommu.stats().iotlbHits, m.iommu.stats().iotlbMisses], [2, 2]);

  // another RID in the same domain shares the page table and the cached entries
  assert.equal(m.iommu.setContext(0x0109, { type: TT_TRANSLATE, domainId: DID }), 0);
  assert.equal(m.iommu.read(0x0109, 0x8000, dst), DMA_OK);
  assert.deepEqual([m.iommu.stats().iotlbHits, m.iommu.stats().iotlbMisses], [3, 2]);

  // clear the leaf behind the IOMMU's back: the cached entry still serves (this is what makes
  // invalidation necessary) — until the page is invalidated
  const ce = m.iommu.contextEntryAddress(RID) / 4;
  const dir = m.mem.i32[ce] >>> 12;
  const table = m.mem.i32[dir * 1024] >>> 12;
  m.mem.i32[table * 1024 + 7] = 0;
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK, "served by the stale IOTLB entry");
  m.iommu.invalidatePages(DID, 0x7000, 1);
  assert.equal(m.iommu.read(RID, 0x7000, dst), FR_PTE_NOT_PRESENT);
  m.mem.i32[table * 1024 + 7] = (f << 12) | IOPTE_RW;
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK);
  m.mem.i32[table * 1024 + 7] = 0;
  m.iommu.invalidateDomain(DID);
  assert.equal(m.iommu.read(RID, 0x7000, dst), FR_PTE_NOT_PRESENT);
  m.mem.i32[table * 1024 + 7] = (f << 12) | IOPTE_RW;
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK);
  m.mem.i32[table * 1024 + 7] = 0;
  m.iommu.invalidateGlobal();
  assert.equal(m.iommu.read(RID, 0x7000, dst), FR_PTE_NOT_PRESENT);
  assert.ok(m.iommu.stats().iotlbInvalidations >= 3);
});

test("a stale IOTLB entry never lets a DMA through after unmap, protect or a remap", () => {
  const m = machine();
  const f = dataFrame(m, 0);
  const g = dataFrame(m, 0x40);
  withPages(m, 0x7000, [f]);
  const dst = new Uint8Array(8);
  for (let k = 0; k < 3; k++) assert.equal(m.iommu.write(RID, 0x7000, filled(8, k)), DMA_OK);
  assert.ok(m.iommu.stats().iotlbHits >= 2, "the entry is cached");

  // protect to read-only: the cached read-write entry must not allow the write
  assert.equal(m.iommu.protect(DID, 0x7000, 1, IOPTE_READ), 0);
  const before = snapshot(m);
  assert.equal(m.iommu.write(RID, 0x7000, filled(8, 0xaa)), FR_NO_WRITE);
  assert.deepEqual(m.mem.u8, before);
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK);
  // adding the right back works at once (a hit without the right re-walks)
  assert.equal(m.iommu.protect(DID, 0x7000, 1, IOPTE_RW), 0);
  assert.equal(m.iommu.write(RID, 0x7000, filled(8, 3)), DMA_OK);

  // remap to another frame: DMAs reach the new frame, not the old
  assert.equal(m.iommu.map(DID, 0x7000, g, IOPTE_RW), -EEXIST);
  assert.equal(m.iommu.map(DID, 0x7000, g, IOPTE_RW, true), 0);
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK);
  assert.deepEqual([...dst], [0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]);

  // unmap: blocked at once, nothing moves
  assert.equal(m.iommu.read(RID, 0x7000, dst), DMA_OK); // cached again
  assert.equal(m.iommu.unmap(DID, 0x7000, 1), 1);
  const after = snapshot(m);
  assert.equal(m.iommu.write(RID, 0x7000, filled(8, 0xbb)), FR_PTE_NOT_PRESENT);
  assert.equal(m.iommu.read(RID, 0x7000, filled(8, 0)), FR_PTE_NOT_PRESENT);
  assert.deepEqual(m.mem.u8, after);
});

test("kernel operations check their arguments and change nothing on an error", () => {
  const m = machine();
  const f = dataFrame(m, 0);
  const io = m.iommu;
  assert.equal(io.map(DID, 0x1001, f, IOPTE_RW), -EINVAL, "unaligned");
  assert.equal(io.map(DID, 0x1000, f, 0), -EINVAL, "no rights");
  assert.equal(io.map(DID, 0x1000, f, 4), -EINVAL, "unknown bit");
  assert.equal(io.map(DID, 0x1000, m.mem.frames, IOPTE_RW), -EINVAL, "frame outside memory");
  assert.equal(io.map(0x10000, 0x1000, f, IOPTE_RW), -EINVAL, "domain id over 16 bits");
  assert.equal(io.mapRange(DID, 0xfffff000, f, 2, IOPTE_RW), -EINVAL, "past 4 GiB");
  assert.equal(io.setContext(0x10000, { type: TT_TRANSLATE, domainId: 1 }), -EINVAL);
  assert.equal(io.setContext(RID, { type: 1 as typeof TT_TRANSLATE, domainId: 1 }), -EINVAL);
  assert.equal(io.setContext(RID, { type: TT_TRANSLATE, domainId: 1, addressWidth: 33 }), -EINVAL);
  assert.equal(io.unmap(99, 0, 1), -ENOENT);
  assert.equal(io.protect(99, 0, 1, IOPTE_READ), -ENOENT);
  assert.equal(io.stats().domains, 0);

  // protect of a range with a hole changes nothing
  assert.equal(io.map(DID, 0x1000, f, IOPTE_RW), 0);
  assert.equal(io.protect(DID, 0x1000, 2, IOPTE_READ), -ENOENT);
  assert.equal(io.lookup(DID, 0x1000), ((f << 12) | IOPTE_RW) >>> 0);
  // mapRange over an existing page changes nothing
  assert.equal(io.mapRange(DID, 0, f, 3, IOPTE_READ), -EEXIST);
  assert.equal(io.lookup(DID, 0), 0);
  assert.equal(io.unmap(DID, 0x5000, 1), 0, "nothing was mapped there");
  assert.throws(
    () => io.read(0x10000, 0, new Uint8Array(1)),
    (e: unknown) => e instanceof PanicError && /requester id/.test(e.message),
  );
  assert.equal(io.read(RID, Number.NaN, new Uint8Array(1)), FR_ADDRESS_BEYOND_AW);
});

test("page tables are freed when emptied, mapRange is all or nothing on ENOMEM, destroy gives every frame back", () => {
  const m = machine(48);
  const io = m.iommu;
  const base = io.stats().tableFrames;
  assert.equal(base, 1, "the root table");
  const f = dataFrame(m, 0);
  // two pages either side of a directory boundary: directory + 2 tables
  assert.equal(io.mapRange(DID, 0x3ff000, f, 2, IOPTE_RW), 0);
  assert.equal(io.stats().tableFrames, base + 3);
  assert.equal(io.unmap(DID, 0x3ff000, 1), 1);
  assert.equal(io.stats().tableFrames, base + 2, "the emptied table is freed");
  assert.equal(io.unmap(DID, 0x400000, 1), 1);
  assert.equal(io.stats().tableFrames, base + 1, "only the directory is left");

  assert.equal(io.setContext(RID, { type: TT_TRANSLATE, domainId: DID }), 0);
  assert.equal(io.destroyDomain(DID), -EBUSY);
  assert.equal(io.setContext(RID, { type: TT_BLOCKED, domainId: DID }), 0);
  assert.equal(io.destroyDomain(DID), 0);
  assert.equal(io.destroyDomain(DID), -ENOENT);

  // exhaust memory, then ask for a range that needs two new tables but can get one
  const hog: number[] = [];
  while (m.alloc.freeFrames > 2) hog.push(m.alloc.alloc());
  assert.equal(io.createDomain(9), 0); // takes one of the two
  const free = m.alloc.freeFrames;
  assert.equal(io.mapRange(9, 0x3ff000, f, 2, IOPTE_RW), -ENOMEM);
  assert.equal(m.alloc.freeFrames, free, "the table it did get was given back");
  assert.equal(io.lookup(9, 0x3ff000), 0);
  assert.equal(io.mapRange(9, 0x3ff000, f, 1, IOPTE_RW), 0, "one table fits");
  for (const h of hog) m.alloc.free(h);

  assert.equal(io.mapRange(10, 0x10000000, f, 4, IOPTE_READ), 0);
  assert.equal(io.setContext(0x0500, { type: TT_TRANSLATE, domainId: 10 }), 0);
  m.alloc.free(f);
  io.destroy();
  assert.equal(m.alloc.freeFrames, m.freeAtBoot, "every table frame is back");
});

test("translate goes through the IOTLB and reports faults without recording them", () => {
  const m = machine();
  const f = dataFrame(m, 0);
  withPages(m, 0x2000, [f], IOPTE_READ);
  assert.equal(m.iommu.translate(RID, 0x2abc, false), f * PAGE_SIZE + 0xabc);
  assert.equal(m.iommu.translate(RID, 0x2abc, true), -FR_NO_WRITE);
  assert.equal(m.iommu.translate(RID, 0x3000, false), -FR_PTE_NOT_PRESENT);
  assert.equal(m.iommu.translate(0x0700, 0, false), -FR_ROOT_NOT_PRESENT);
  assert.deepEqual(m.iommu.faults(), []);
  assert.equal(m.iommu.stats().faults, 0);
});
