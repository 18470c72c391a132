/**
 * ProcessMemory.equalBytes (src/libos/vm.ts), the KV store's in-place key compare: it gives the
 * same answer as comparing the bytes read back, for runs that start anywhere and cross page
 * boundaries (two frames that are not adjacent in physical memory), and an address no pager
 * can back is a SegmentationFault, as any access.
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
import { layShootdownBoard, ShootdownMailbox, Tlb, Translator } from "../src/hw/tlb.js";
import { ProcessMemory, SegmentationFault } from "../src/libos/vm.js";
import { Arena } from "../src/shm/layout.js";

/** Pages below the heap window (no pager backs them); three mapped, the fourth not. */
const BASE = HEAP_BASE - 64 * PAGE_SIZE;
const PAGES = 3;

function setup(): ProcessMemory {
  const mem = PhysicalMemory.create(128 * PAGE_SIZE);
  const arena = new Arena(mem.sab);
  const fa = layFrameAllocator(arena, mem.frames);
  const board = layShootdownBoard(arena, 1, 64);
  const poolDesc = layFramePool(arena, "core0.pool", 8);
  const proc = arena.alloc("test.proc", 64).offset;
  initFrameAllocator(mem, fa, firstFrameAfter(arena));
  const frames = new FrameAllocator(mem, fa);
  const mmu = new Mmu(mem, frames);
  const root = mmu.createAddressSpace();
  mem.i32[proc / 4 + 4] = HEAP_BASE;
  for (let p = 0; p < PAGES; p++) {
    frames.alloc(); // a hole: the pages' frames are not adjacent
    const f = frames.alloc();
    mem.zeroFrame(f);
    assert.equal(mmu.map(root, BASE + p * PAGE_SIZE, f, PTE_W | PTE_U), 0);
  }
  const tlb = new Tlb();
  const x = new Translator(mmu, tlb, new ShootdownMailbox(mem.sab, board, 0, tlb));
  return new ProcessMemory(mem, mmu, x, new FramePool(mem, poolDesc), 1, root, proc / 4);
}

test("equalBytes agrees with a compare of the bytes read back, across page boundaries", () => {
  const vm = setup();
  const span = PAGES * PAGE_SIZE;
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
  const vm = setup();
  const end = BASE + PAGES * PAGE_SIZE;
  const src = new Uint8Array(8);
  assert.throws(() => vm.equalBytes(end - 4, src, 0, 8), SegmentationFault);
  assert.equal(vm.equalBytes(end - 4, src, 0, 4), true); // the mapped part alone: zeroes
});
