/**
 * The last-translation cache of a process's memory (src/libos/vm.ts) in front of a core's TLB:
 * it never outlives a shootdown the core has acknowledged, it acknowledges within a bounded
 * number of accesses, it sees at once what the core's own TLB dropped (a poll on waking, a
 * fault), it caches writes only through pages that are writable, and over a bare page walk
 * (no TLB) it caches nothing. A model check (fast-check) runs random accesses, remaps, unmaps,
 * protects and acknowledgements against a map of what each page holds. equalBytes (the KV
 * store's in-place key compare) agrees with a compare of the bytes read back across page
 * boundaries, and an address no pager can back is a SegmentationFault, as any access.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { HEAP_BASE } from "../src/hv/layout.js";
import { Mmu, PTE_U, PTE_W } from "../src/hw/mmu.js";
import {
  FrameAllocator,
  FramePool,
  firstFrameAfter,
  initFrameAllocator,
  layFrameAllocator,
  layFramePool,
  PAGE_SIZE,
  PhysicalMemory,
} from "../src/hw/physmem.js";
import { layShootdownBoard, Shootdown, ShootdownMailbox, Tlb, Translator } from "../src/hw/tlb.js";
import { ProcessMemory, SegmentationFault } from "../src/libos/vm.js";
import { Arena } from "../src/shm/layout.js";

const RW = PTE_W | PTE_U;
/** Pages the tests use: below the heap window, so that no pager ever backs them. */
const BASE = HEAP_BASE - 64 * PAGE_SIZE;
/** Accesses between two shootdown polls of the cache (vm.ts POLL_EVERY), with slack. */
const ACK_WITHIN = 64 + 2;

/** One core's view of one address space, with the hypervisor's shootdown side next to it. */
function setup(options: { tlb?: boolean } = {}) {
  const mem = PhysicalMemory.create(256 * PAGE_SIZE);
  const arena = new Arena(mem.sab);
  const fa = layFrameAllocator(arena, mem.frames);
  const board = layShootdownBoard(arena, 1, 64);
  const poolDesc = layFramePool(arena, "core0.pool", 8);
  const proc = arena.alloc("test.proc", 64).offset;
  initFrameAllocator(mem, fa, firstFrameAfter(arena));
  const frames = new FrameAllocator(mem, fa);
  const mmu = new Mmu(mem, frames);
  const root = mmu.createAddressSpace();
  mem.i32[proc / 4 + 4] = HEAP_BASE; // kpBrk: an empty heap, so no fault here is paged in
  const hv = new Shootdown(mem.sab, board);
  const tlb = new Tlb();
  const box = new ShootdownMailbox(mem.sab, board, 0, tlb);
  const x = options.tlb === false ? mmu : new Translator(mmu, tlb, box);
  const pool = new FramePool(mem, poolDesc);
  const vm = new ProcessMemory(mem, mmu, x, pool, 1, root, proc / 4);
  /** A fresh frame whose first word is `v`. */
  const frame = (v: number): number => {
    const f = frames.alloc();
    assert.ok(f >= 0);
    mem.zeroFrame(f);
    mem.i32[(f * PAGE_SIZE) / 4] = v;
    return f;
  };
  return { mem, mmu, root, hv, tlb, box, vm, frame };
}

/** Read `va` until the core has acknowledged everything posted; returns how many reads it took. */
function readUntilAcked(s: ReturnType<typeof setup>, va: number): number {
  let n = 0;
  while (s.hv.pending() > 0) {
    s.vm.load32(va);
    n++;
    assert.ok(n <= ACK_WITHIN, `acknowledged within ${ACK_WITHIN} accesses`);
  }
  return n;
}

test("a remap is seen once the core acknowledges its shootdown, and the ack comes soon", () => {
  const s = setup();
  s.mmu.map(s.root, BASE, s.frame(111), RW);
  assert.equal(s.vm.load32(BASE), 111);
  s.vm.store32(BASE + 4, 5);
  s.mmu.map(s.root, BASE, s.frame(222), RW, true); // the kernel moves the page
  s.hv.invalidatePages(s.root, BASE);
  readUntilAcked(s, BASE);
  assert.equal(s.vm.load32(BASE), 222, "no read through the old frame after the ack");
  assert.equal(s.vm.load32(BASE + 4), 0);
  s.vm.store32(BASE + 8, 9);
  assert.equal(s.mem.i32[s.vm.phys(BASE + 8, 1) / 4], 9, "writes go to the new frame");
});

test("an unmapped page faults after the acknowledgement, a read-only one refuses writes", () => {
  const s = setup();
  s.mmu.map(s.root, BASE, s.frame(1), RW);
  s.mmu.map(s.root, BASE + PAGE_SIZE, s.frame(2), RW);
  s.vm.store32(BASE, 10);
  s.vm.store32(BASE + PAGE_SIZE, 20);
  s.mmu.unmap(s.root, BASE);
  s.mmu.protect(s.root, BASE + PAGE_SIZE, PTE_U);
  s.hv.invalidatePages(s.root, BASE, 2);
  readUntilAcked(s, BASE + PAGE_SIZE);
  assert.throws(() => s.vm.load32(BASE), SegmentationFault);
  assert.throws(() => s.vm.store32(BASE + PAGE_SIZE, 1), SegmentationFault);
  assert.equal(s.vm.load32(BASE + PAGE_SIZE), 20, "reads still go through");
  assert.throws(() => s.vm.cas32(BASE + PAGE_SIZE, 20, 21), SegmentationFault);
  assert.throws(() => s.vm.writeBytes(BASE + PAGE_SIZE, new Uint8Array(4)), SegmentationFault);
});

test("what the core's TLB drops on waking (a poll of the mailbox) is dropped from the cache at once", () => {
  const s = setup();
  s.mmu.map(s.root, BASE, s.frame(7), RW);
  assert.equal(s.vm.load32(BASE), 7);
  s.mmu.map(s.root, BASE, s.frame(8), RW, true);
  s.box.enterIdle(); // the core parks: the hypervisor does not wait for it
  s.hv.invalidatePages(s.root, BASE);
  assert.equal(s.hv.pending(), 0);
  s.box.leaveIdle(); // the core wakes: catches up before its next access
  assert.equal(s.vm.load32(BASE), 8, "the very next access sees the new frame");
});

test("a write through a page first read, then made writable, walks once and then hits", () => {
  const s = setup();
  s.mmu.map(s.root, BASE, s.frame(3), PTE_U);
  assert.equal(s.vm.load32(BASE), 3);
  assert.throws(() => s.vm.store32(BASE, 4), SegmentationFault, "read-only: no write entry");
  s.mmu.protect(s.root, BASE, RW); // raising a right needs no shootdown
  s.vm.store32(BASE, 4);
  const misses = s.tlb.misses;
  const hits = s.tlb.hits;
  for (let i = 0; i < 100; i++) s.vm.store32(BASE, i);
  assert.equal(s.tlb.misses, misses, "no walk");
  assert.ok(s.tlb.hits - hits < 10, "hardly a TLB lookup: the cache serves the writes");
  assert.equal(s.vm.load32(BASE), 99);
});

test("bytes cross pages in one call each way, and agree with word access", () => {
  const s = setup();
  for (let p = 0; p < 3; p++) s.mmu.map(s.root, BASE + p * PAGE_SIZE, s.frame(0), RW);
  const src = Uint8Array.from({ length: 2 * PAGE_SIZE }, (_, i) => (i * 7) & 255);
  s.vm.writeFrom(BASE + 100, src, 10, 5000);
  const back = new Uint8Array(5010);
  s.vm.readInto(BASE + 100, back, 10, 5000);
  assert.deepEqual(back.subarray(10), src.subarray(10, 5010));
  assert.deepEqual(s.vm.readBytes(BASE + 100, 5000), src.subarray(10, 5010));
  const w = s.vm.load32(BASE + 4096);
  const at = 4096 - 100 + 10;
  assert.equal(w, src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24) | 0);
});

test("over a bare page walk nothing is cached: a remap is seen at the next access", () => {
  const s = setup({ tlb: false });
  s.mmu.map(s.root, BASE, s.frame(1), RW);
  assert.equal(s.vm.load32(BASE), 1);
  s.mmu.map(s.root, BASE, s.frame(2), RW, true); // no shootdown: there is no TLB to shoot
  assert.equal(s.vm.load32(BASE), 2);
  s.mmu.unmap(s.root, BASE);
  assert.throws(() => s.vm.load32(BASE), SegmentationFault);
});

type Op =
  | { kind: "read"; page: number }
  | { kind: "write"; page: number; v: number }
  | { kind: "remap"; page: number; v: number }
  | { kind: "unmap"; page: number }
  | { kind: "protect"; page: number; writable: boolean }
  | { kind: "ack" };

const PAGES = 6;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant("read" as const), page: fc.nat(PAGES - 1) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      page: fc.nat(PAGES - 1),
      v: fc.integer({ min: 1, max: 1 << 30 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("remap" as const),
      page: fc.nat(PAGES - 1),
      v: fc.integer({ min: 1, max: 1 << 30 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("unmap" as const), page: fc.nat(PAGES - 1) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("protect" as const),
      page: fc.nat(PAGES - 1),
      writable: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: "ack" as const }) },
);

test("model: after every acknowledged shootdown, accesses match the page tables exactly", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), (ops) => {
      const s = setup();
      /** What each page holds now, as the kernel left it: null = unmapped. */
      const model: ({ v: number; writable: boolean } | null)[] = [];
      for (let p = 0; p < PAGES; p++) {
        s.mmu.map(s.root, BASE + p * PAGE_SIZE, s.frame(p + 1), RW);
        model.push({ v: p + 1, writable: true });
      }
      /** Kernel changes not yet acknowledged: accesses may still see the old state. */
      let unsettled = false;
      const settle = (): void => {
        readUntilAcked(s, BASE + PAGES * PAGE_SIZE); // a page never mapped: always a walk
        unsettled = false;
      };
      s.mmu.map(s.root, BASE + PAGES * PAGE_SIZE, s.frame(0), RW);
      for (const op of ops) {
        const va = BASE + ("page" in op ? op.page : 0) * PAGE_SIZE;
        const m = "page" in op ? model[op.page] : null;
        switch (op.kind) {
          case "read":
          case "write": {
            if (unsettled) settle();
            if (m === null || m === undefined) {
              assert.throws(() => s.vm.load32(va), SegmentationFault);
            } else if (op.kind === "read") {
              assert.equal(s.vm.load32(va), m.v);
            } else if (!m.writable) {
              assert.throws(() => s.vm.store32(va, op.v), SegmentationFault);
            } else {
              s.vm.store32(va, op.v);
              m.v = op.v;
            }
            break;
          }
          case "remap":
            s.mmu.map(s.root, va, s.frame(op.v), RW, true);
            model[op.page] = { v: op.v, writable: true };
            s.hv.invalidatePages(s.root, va);
            unsettled = true;
            break;
          case "unmap":
            s.mmu.unmap(s.root, va);
            model[op.page] = null;
            s.hv.invalidatePages(s.root, va);
            unsettled = true;
            break;
          case "protect":
            if (m === null || m === undefined) break;
            s.mmu.protect(s.root, va, op.writable ? RW : PTE_U);
            m.writable = op.writable;
            s.hv.invalidatePages(s.root, va);
            unsettled = true;
            break;
          case "ack":
            settle();
            break;
        }
      }
    }),
    { numRuns: 200 },
  );
});

// ---- equalBytes: the KV store's in-place key compare ----

/** Pages mapped for the equalBytes tests; the page after them is not. */
const EQ_PAGES = 3;

/** setup() with `pages` pages mapped at BASE on frames that are not adjacent (a hole each). */
function withPages(pages: number): ReturnType<typeof setup> {
  const s = setup();
  for (let p = 0; p < pages; p++) {
    s.frame(0); // a hole: the pages' frames are not adjacent in physical memory
    assert.equal(s.mmu.map(s.root, BASE + p * PAGE_SIZE, s.frame(0), RW), 0);
  }
  return s;
}

test("equalBytes agrees with a compare of the bytes read back, across page boundaries", () => {
  const { vm } = withPages(EQ_PAGES);
  const span = EQ_PAGES * PAGE_SIZE;
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: span - 1 }),
      fc.integer({ min: 0, max: 64 }),
      fc.uint8Array({ minLength: 64, maxLength: 64 }),
      fc.option(fc.integer({ min: 0, max: 63 }), { nil: undefined }),
      (start, len0, bytes, flip) => {
        const len = Math.min(len0, span - start);
        vm.writeFrom(BASE + start, bytes, 0, len);
        const probe = Uint8Array.from(bytes);
        if (flip !== undefined && flip < len) probe[flip] ^= 1 << (flip % 8);
        const src = new Uint8Array(8 + len);
        src.set(probe.subarray(0, len), 8); // at an offset of the source, as a parsed argument is
        const want =
          Buffer.compare(
            Buffer.from(vm.readBytes(BASE + start, len)),
            Buffer.from(src.subarray(8)),
          ) === 0;
        assert.equal(vm.equalBytes(BASE + start, src, 8, len), want);
        assert.equal(want, flip === undefined || flip >= len);
      },
    ),
    { numRuns: 2000 },
  );
});

test("equalBytes over an unmapped page is a segmentation fault", () => {
  const { vm } = withPages(EQ_PAGES);
  const end = BASE + EQ_PAGES * PAGE_SIZE;
  const src = new Uint8Array(8);
  assert.throws(() => vm.equalBytes(end - 4, src, 0, 8), SegmentationFault);
  assert.equal(vm.equalBytes(end - 4, src, 0, 4), true); // the mapped part alone: zeroes
});
