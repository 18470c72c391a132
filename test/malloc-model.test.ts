/**
 * malloc against a model (property test). Random sequences of malloc, calloc, realloc and free,
 * with sizes from 1 byte to 256 KiB (mostly small, some large), run on a real heap over a plain
 * Int32Array while a model keeps the live blocks: address, size and the seed of the pattern
 * written into them. Now and then sbrk starts or stops refusing, so ENOMEM happens mid-sequence.
 *
 * After every step: check() is empty (the whole heap walked: tiling, tags, coalescing, bins,
 * slabs, page map); a new block is 16-byte aligned, inside [arena, break), at least as large as
 * asked, and overlaps no live block; a calloc block reads as zero; a realloc keeps the prefix;
 * every block still holds its pattern when it is freed or reallocated (so no step wrote into
 * another block); a 0 result comes only while sbrk refuses, and leaves a realloc'd block as it
 * was. At the end everything is freed: at most one empty slab per class is kept; after trim()
 * the arena is one free block, and a single allocation of all of it succeeds without growing
 * the heap (the free space is whole and reusable).
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ENOMEM } from "../src/abi/errno.js";
import { ArrayHeapMemory, MALLOC_ALIGN, Malloc, sizeClasses } from "../src/libos/malloc.js";

const BASE = 0x1000_0000;
const HEAP = 48 * 1024 * 1024;

class RefusingHeap extends ArrayHeapMemory {
  refuse = false;
  override sbrk(bytes: number): number {
    return this.refuse ? -ENOMEM : super.sbrk(bytes);
  }
}

type Op =
  | { readonly op: "malloc"; readonly size: number }
  | { readonly op: "calloc"; readonly n: number; readonly size: number }
  | { readonly op: "realloc"; readonly pick: number; readonly size: number }
  | { readonly op: "free"; readonly pick: number }
  | { readonly op: "refit"; readonly pick: number; readonly delta: number }
  | { readonly op: "refuse"; readonly on: boolean };

const size = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 2048 }), weight: 6 },
  { arbitrary: fc.integer({ min: 2049, max: 16 * 1024 }), weight: 2 },
  { arbitrary: fc.integer({ min: 16 * 1024 + 1, max: 256 * 1024 }), weight: 1 },
);
const pick = fc.nat();
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("malloc" as const), size }), weight: 5 },
  {
    arbitrary: fc.record({
      op: fc.constant("calloc" as const),
      n: fc.integer({ min: 1, max: 64 }),
      size: fc.integer({ min: 1, max: 4096 }),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ op: fc.constant("realloc" as const), pick, size }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("free" as const), pick }), weight: 4 },
  {
    // a size close to one freed before: exact fits, and splits that leave 0, 16 or 32 bytes
    arbitrary: fc.record({
      op: fc.constant("refit" as const),
      pick,
      delta: fc.integer({ min: -48, max: 48 }),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant("refuse" as const), on: fc.boolean() }), weight: 1 },
);

interface Block {
  va: number;
  size: number;
  seed: number;
}

function word(seed: number, i: number): number {
  return (Math.imul(seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) | 0;
}

function runSequence(ops: readonly Op[]): void {
  const mem = new RefusingHeap(ArrayHeapMemory.create(HEAP, false), BASE);
  Malloc.init(mem, BASE, { maxHeapBytes: HEAP });
  const m = new Malloc(mem, BASE);
  const live: Block[] = [];
  const freed: number[] = []; // sizes of blocks freed so far (for "refit")
  let seeds = 1;

  const fill = (b: Block, from: number): void => {
    for (let i = from; i < Math.ceil(b.size / 4); i++) mem.store32(b.va + 4 * i, word(b.seed, i));
  };
  const verify = (b: Block, words: number, what: string): void => {
    for (let i = 0; i < words; i++) {
      const got = mem.load32(b.va + 4 * i);
      if (got !== word(b.seed, i))
        assert.fail(`${what}: block 0x${b.va.toString(16)} (${b.size} B) changed at word ${i}`);
    }
  };
  const place = (va: number, n: number, what: string): void => {
    assert.equal(va % MALLOC_ALIGN, 0, `${what}: misaligned 0x${va.toString(16)}`);
    assert.ok(va >= m.arena && va + n <= mem.brk, `${what}: 0x${va.toString(16)} outside the heap`);
    assert.ok(m.usableSize(va) >= n, `${what}: usable ${m.usableSize(va)} < ${n}`);
    for (const o of live) {
      if (o.va !== va && va < o.va + o.size && o.va < va + n)
        assert.fail(`${what}: 0x${va.toString(16)}+${n} overlaps 0x${o.va.toString(16)}+${o.size}`);
    }
  };
  const noMemory = (what: string): void => {
    assert.ok(mem.refuse, `${what} gave 0 while sbrk grants`);
  };

  const malloc = (n: number): void => {
    const va = m.malloc(n);
    if (va === 0) {
      noMemory(`malloc(${n})`);
      return;
    }
    place(va, n, `malloc(${n})`);
    const b = { va, size: n, seed: seeds++ };
    fill(b, 0);
    live.push(b);
  };

  for (const o of ops) {
    switch (o.op) {
      case "malloc":
        malloc(o.size);
        break;
      case "refit":
        if (freed.length > 0) malloc(Math.max(1, freed[o.pick % freed.length] + o.delta));
        break;
      case "calloc": {
        const n = o.n * o.size;
        const va = m.calloc(o.n, o.size);
        if (va === 0) {
          noMemory(`calloc(${o.n}, ${o.size})`);
          break;
        }
        place(va, n, `calloc(${o.n}, ${o.size})`);
        for (let i = 0; i < Math.floor(n / 4); i++)
          if (mem.load32(va + 4 * i) !== 0) assert.fail(`calloc: word ${i} not zero`);
        const b = { va, size: n, seed: seeds++ };
        fill(b, 0);
        live.push(b);
        break;
      }
      case "realloc": {
        if (live.length === 0) break;
        const i = o.pick % live.length;
        const b = live[i];
        verify(b, Math.ceil(b.size / 4), "before realloc");
        const va = m.realloc(b.va, o.size);
        if (va === 0) {
          noMemory(`realloc(${o.size})`);
          verify(b, Math.ceil(b.size / 4), "after a failed realloc");
          break;
        }
        live.splice(i, 1);
        freed.push(b.size);
        place(va, o.size, `realloc(0x${b.va.toString(16)}, ${o.size})`);
        const moved = { va, size: o.size, seed: b.seed };
        verify(moved, Math.floor(Math.min(b.size, o.size) / 4), "realloc prefix");
        fill(moved, 0);
        live.push(moved);
        break;
      }
      case "free": {
        if (live.length === 0) break;
        const i = o.pick % live.length;
        const b = live[i];
        verify(b, Math.ceil(b.size / 4), "before free");
        m.free(b.va);
        live.splice(i, 1);
        freed.push(b.size);
        break;
      }
      case "refuse":
        mem.refuse = o.on;
        break;
    }
    const bad = m.check();
    if (bad.length > 0) assert.fail(`after ${JSON.stringify(o)}: ${bad.join("; ")}`);
  }

  // free everything: the heap comes back whole
  for (const b of live) {
    verify(b, Math.ceil(b.size / 4), "at the end");
    m.free(b.va);
  }
  const st = m.stats();
  assert.equal(st.allocations, 0);
  assert.equal(st.allocatedBytes, 0);
  assert.ok(st.slabs <= sizeClasses().length && st.emptySlabs === st.slabs, JSON.stringify(st));
  m.trim();
  const end = m.stats();
  const arena = end.heapBytes - end.headerBytes;
  assert.equal(end.slabs, 0);
  if (arena > 0) {
    assert.equal(end.freeBlocks, 1, JSON.stringify(end));
    assert.equal(end.largestFreeBlock, arena);
    mem.refuse = true;
    const all = m.malloc(arena - 16);
    assert.ok(all !== 0, "the whole arena is one reusable block");
    m.free(all);
  }
  assert.deepEqual(m.check(), []);
}

test("malloc, calloc, realloc and free against a model", { timeout: 300_000 }, () => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), (ops) => runSequence(ops)),
    { numRuns: 150 },
  );
});

test("long runs of small objects: slabs fill, drain, and are reused", { timeout: 300_000 }, () => {
  const small = fc.oneof(
    {
      arbitrary: fc.record({
        op: fc.constant("malloc" as const),
        size: fc.integer({ min: 1, max: 512 }),
      }),
      weight: 3,
    },
    { arbitrary: fc.record({ op: fc.constant("free" as const), pick }), weight: 2 },
    {
      arbitrary: fc.record({
        op: fc.constant("realloc" as const),
        pick,
        size: fc.integer({ min: 1, max: 700 }),
      }),
      weight: 1,
    },
  );
  fc.assert(
    fc.property(fc.array(small, { minLength: 200, maxLength: 600 }), (ops) => runSequence(ops)),
    { numRuns: 30 },
  );
});
