/**
 * malloc: the libOS allocator's behaviours, one test each — size classes and alignment, reuse,
 * coalescing, calloc, realloc in place and moved, invalid frees, ENOMEM, the page-map bound,
 * check() catching corruption, the number of words a small malloc/free touches, slab release
 * and trim — and a cross-thread case: three worker threads (this machine has 2 cores, so three
 * threads on two cores: a lock holder is preempted now and then) malloc and free on one heap in
 * one SharedArrayBuffer, each with its own Malloc, then check() is empty and no two live blocks
 * overlap. Random sequences against a model are in malloc-model.test.ts.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { ENOMEM } from "../src/abi/errno.js";
import { InvalidArgumentError, PanicError } from "../src/errors.js";
import {
  ArrayHeapMemory,
  type HeapMemory,
  InvalidFreeError,
  MALLOC_ALIGN,
  Malloc,
  SMALL_MAX,
  sizeClasses,
} from "../src/libos/malloc.js";
import {
  ctrlWords,
  kArrived,
  kGo,
  type MallocWorkerData,
  type MallocWorkerReport,
  pattern,
  tableAt,
} from "./fixtures/malloc-worker.js";

const BASE = 0x4000_0000;
const MiB = 1024 * 1024;

/** A heap memory whose sbrk can be told to refuse, and that counts accesses. */
class TestHeap extends ArrayHeapMemory {
  refuse = false;
  loads = 0;
  stores = 0;
  override load32(va: number): number {
    this.loads++;
    return super.load32(va);
  }
  override store32(va: number, v: number): void {
    this.stores++;
    super.store32(va, v);
  }
  override cas32(va: number, expect: number, v: number): number {
    this.stores++;
    return super.cas32(va, expect, v);
  }
  override sbrk(bytes: number): number {
    return this.refuse ? -ENOMEM : super.sbrk(bytes);
  }
}

function heap(bytes = 16 * MiB, maxHeapBytes = bytes): { mem: TestHeap; m: Malloc } {
  const mem = new TestHeap(ArrayHeapMemory.create(bytes, false), BASE);
  Malloc.init(mem, BASE, { maxHeapBytes });
  return { mem, m: new Malloc(mem, BASE) };
}

function sound(m: Malloc): void {
  assert.deepEqual(m.check(), []);
}

test("init lays out one heap that every core's Malloc uses", () => {
  const { mem, m } = heap();
  const other = new Malloc(mem, BASE); // a second core of the same process
  const a = m.malloc(100);
  const b = other.malloc(100);
  assert.notEqual(a, b);
  other.free(a);
  m.free(b);
  assert.equal(other.malloc(100), b, "the last object freed (by either core) comes back first");
  assert.equal(m.stats().allocations, 1);
  sound(other);
});

test("init checks its arguments; a Malloc without init panics", () => {
  const mem = new TestHeap(ArrayHeapMemory.create(MiB, false), BASE);
  assert.throws(() => Malloc.init(mem, BASE + 16), InvalidArgumentError);
  assert.throws(() => Malloc.init(mem, BASE, { maxHeapBytes: 4096 }), InvalidArgumentError);
  assert.throws(() => new Malloc(mem, BASE), PanicError);
  const moved = new TestHeap(ArrayHeapMemory.create(MiB, false), BASE);
  moved.sbrk(4096); // the break is no longer at heapBase
  assert.throws(() => Malloc.init(moved, BASE), /not at heapBase/);
});

test("small requests round up to their class; every pointer is 16-byte aligned", () => {
  const { m } = heap();
  const classes = sizeClasses().map(([size]) => size);
  for (let n = 1; n <= SMALL_MAX + 100; n += n < 300 ? 1 : 37) {
    const p = m.malloc(n);
    assert.equal(p % MALLOC_ALIGN, 0);
    const u = m.usableSize(p);
    assert.ok(u >= n, `usable ${u} < ${n}`);
    if (n <= SMALL_MAX)
      assert.equal(
        u,
        classes.find((s) => s >= n),
      );
    else assert.ok(u - n < 16 + 32, `large block of ${u} for ${n}`);
  }
  sound(m);
});

test("a freed small object is handed out again before the slab grows", () => {
  const { m } = heap();
  const a = m.malloc(40);
  const b = m.malloc(40);
  m.free(a);
  assert.equal(m.malloc(33), a);
  m.free(b);
  assert.equal(m.malloc(48), b);
  sound(m);
});

test("large frees coalesce with both neighbours into one reusable block", () => {
  const { m } = heap();
  const a = m.malloc(10_000);
  const b = m.malloc(20_000);
  const c = m.malloc(30_000);
  const guard = m.malloc(5_000);
  const before = m.stats().freeBlocks;
  m.free(a);
  m.free(c);
  assert.equal(m.stats().freeBlocks, before + 2);
  m.free(b); // joins a and c
  assert.equal(m.stats().freeBlocks, before + 1);
  sound(m);
  // the joined block holds a request of all three, at a's address
  assert.equal(m.malloc(10_000 + 20_000 + 30_000 + 32), a);
  m.free(guard);
  sound(m);
});

test("calloc zeroes memory that was used before; an overflowing calloc gives 0", () => {
  const { mem, m } = heap();
  for (const n of [24, 3000, 70_000]) {
    const p = m.malloc(n);
    for (let i = 0; i < n; i += 4) mem.store32(p + i, -1);
    m.free(p);
    const q = m.calloc(n / 4, 4);
    assert.equal(q, p, "reuses the block");
    for (let i = 0; i < n; i += 4) assert.equal(mem.load32(q + i), 0);
    m.free(q);
  }
  assert.equal(m.calloc(2 ** 16, 2 ** 16), 0);
  assert.equal(m.calloc(0, 16), 0);
  sound(m);
});

test("realloc keeps the prefix, grows in place when it can, and moves when it must", () => {
  const { mem, m } = heap();
  const fill = (p: number, n: number): void => {
    for (let i = 0; i < n; i += 4) mem.store32(p + i, pattern(0, i, 1));
  };
  const same = (p: number, n: number): void => {
    for (let i = 0; i < n; i += 4) assert.equal(mem.load32(p + i), pattern(0, i, 1));
  };
  // small: stays while it fits its class, moves past it
  const s = m.malloc(20);
  fill(s, 20);
  assert.equal(m.realloc(s, 32), s);
  const s2 = m.realloc(s, 200);
  assert.notEqual(s2, s);
  same(s2, 20);
  // large at the top of the heap: grows in place at the break
  const l = m.malloc(5000);
  fill(l, 5000);
  assert.equal(m.realloc(l, 500_000), l);
  same(l, 5000);
  // large before a free neighbour: grows into it; shrinks in place
  const x = m.malloc(8000);
  const y = m.malloc(8000);
  const z = m.malloc(8000);
  fill(x, 8000);
  m.free(y);
  assert.equal(m.realloc(x, 15_000), x);
  same(x, 8000);
  assert.equal(m.realloc(x, 3000), x);
  same(x, 3000);
  assert.ok(m.usableSize(x) < 3100);
  // large before an in-use neighbour: moves
  const x2 = m.realloc(x, 40_000);
  assert.notEqual(x2, x);
  same(x2, 3000);
  // realloc(0, n) is malloc; realloc(p, 0) frees
  const p = m.realloc(0, 64);
  assert.ok(p !== 0);
  assert.equal(m.realloc(p, 0), 0);
  for (const q of [s2, l, x2, z]) m.free(q);
  assert.equal(m.stats().allocations, 0);
  sound(m);
});

test("malloc gives 0 for sizes out of range", () => {
  const { m } = heap();
  for (const n of [0, -1, 1.5, Number.NaN, 2 ** 31, Number.POSITIVE_INFINITY])
    assert.equal(m.malloc(n), 0, `malloc(${n})`);
  assert.equal(m.stats().allocations, 0);
});

test("free(0) does nothing; an invalid free throws InvalidFreeError and changes nothing", () => {
  const { mem, m } = heap();
  m.free(0);
  const small = m.malloc(64);
  const large = m.malloc(10_000);
  const keep = m.malloc(64);
  m.free(small);
  m.free(large);
  const before = JSON.stringify(m.stats());
  const cases: Array<[number, RegExp]> = [
    [small, /double free/],
    [large, /double free/],
    [keep + 8, /not 16-byte aligned/],
    [keep + 16, /inside an object/],
    [keep + 64 * 40, /never allocated/],
    [BASE, /outside the heap/],
    [mem.brk + 4096, /outside the heap/],
    [-3, /not 16-byte aligned/],
  ];
  for (const [va, why] of cases) {
    assert.throws(
      () => m.free(va),
      (e: unknown) =>
        e instanceof InvalidFreeError && e.code === "EXO_ERR_INVALID_FREE" && why.test(e.message),
      `free(0x${(va >>> 0).toString(16)})`,
    );
  }
  assert.throws(() => m.realloc(small, 10), InvalidFreeError);
  assert.throws(() => m.usableSize(large), InvalidFreeError);
  // a pointer into the middle of a live large block is not a block
  const big = m.malloc(50_000);
  assert.throws(() => m.free(big + 4096), /not the start of a block/);
  m.free(big);
  assert.equal(JSON.stringify(m.stats()), before);
  sound(m);
  m.free(keep);
  sound(m);
});

test("a freed object whose tag matches by chance is still freed (the tag is only a hint)", () => {
  const { mem, m } = heap();
  const p = m.malloc(16);
  mem.store32(p + 4, (p ^ 0x46524545) | 0); // user data that looks like the free tag
  m.free(p);
  sound(m);
});

test("ENOMEM when sbrk refuses: malloc gives 0, the heap stays sound and recovers", () => {
  const { mem, m } = heap(4 * MiB);
  const live: number[] = [];
  for (;;) {
    const p = m.malloc(live.length % 2 === 0 ? 100 : 20_000);
    if (p === 0) break;
    live.push(p);
  }
  sound(m);
  assert.ok(live.length > 100);
  // freed space is reused even though the heap cannot grow
  for (let i = 0; i < live.length; i += 2) m.free(live[i]);
  assert.ok(m.malloc(100) !== 0);
  mem.refuse = true;
  const before = m.stats().heapBytes;
  assert.equal(m.malloc(10 * MiB), 0);
  assert.equal(m.stats().heapBytes, before);
  sound(m);
  // realloc that cannot grow leaves the old block alone
  const p = live[1];
  assert.equal(m.realloc(p, 3 * MiB), 0);
  assert.ok(m.usableSize(p) >= 20_000);
  sound(m);
});

test("maxHeapBytes bounds the break even when sbrk would give more", () => {
  const { mem, m } = heap(16 * MiB, MiB);
  let total = 0;
  while (m.malloc(4000) !== 0) total += 4000;
  assert.ok(total > MiB / 2 && mem.brk - BASE <= MiB, `${total} bytes, break +${mem.brk - BASE}`);
  sound(m);
});

test("check() reports a corrupt header, footer or free list", () => {
  const { mem, m } = heap();
  const a = m.malloc(10_000);
  const b = m.malloc(10_000);
  m.malloc(10_000);
  const s = m.malloc(32);
  m.malloc(32);
  m.free(b);
  m.free(s);
  sound(m);
  const saved = mem.load32(a - 16);
  mem.store32(a - 16, saved + 16); // size of a's block
  assert.ok(m.check().length > 0);
  mem.store32(a - 16, saved);
  const footerAt = b - 16 + 10_016 - 4; // b's block is free, alone (a and c are in use)
  assert.equal(mem.load32(footerAt), 10_016);
  mem.store32(footerAt, 7);
  const footer = m.check();
  assert.ok(
    footer.some((e) => /footer/.test(e)),
    footer.join("\n"),
  );
  mem.store32(footerAt, 10_016);
  sound(m);
  mem.store32(s + 4, 0); // the free object's tag: written after free
  assert.ok(m.check().some((e) => /tag/.test(e)));
});

test("a small malloc and free touch a few words of the heap", () => {
  const { mem, m } = heap();
  const warm = [m.malloc(24), m.malloc(24)];
  m.free(warm[0]);
  mem.loads = mem.stores = 0;
  const p = m.malloc(24);
  const mallocTouches = mem.loads + mem.stores;
  mem.loads = mem.stores = 0;
  m.free(p);
  const freeTouches = mem.loads + mem.stores;
  assert.ok(mallocTouches <= 10, `malloc touched ${mallocTouches} words`);
  assert.ok(freeTouches <= 13, `free touched ${freeTouches} words`);
});

test("an empty slab is released unless it is its class's last; trim releases the rest", () => {
  const { m } = heap();
  const objects = sizeClasses()[2][2]; // 48-byte class: objects per slab
  const ps: number[] = [];
  for (let i = 0; i < 3 * objects; i++) ps.push(m.malloc(48));
  const big = m.malloc(100_000);
  assert.equal(m.stats().slabs, 3);
  for (const p of ps) m.free(p);
  const st = m.stats();
  assert.equal(st.slabs, 1, "two slabs released, one kept");
  assert.equal(st.emptySlabs, 1);
  m.free(big);
  assert.ok(m.trim() > 0);
  const end = m.stats();
  assert.equal(end.slabs, 0);
  assert.equal(end.freeBlocks, 1, "everything freed: one free block");
  assert.equal(end.freeBytes, end.heapBytes - end.headerBytes);
  sound(m);
});

// ---------------------------------------------------------------------------------------------
// Across threads

const WORKERS = 3;
const SLOTS = 256;
const OPS = 40_000;

function runWorker(data: MallocWorkerData): { worker: Worker; done: Promise<MallocWorkerReport> } {
  const worker = new Worker(new URL("./fixtures/malloc-worker.js", import.meta.url), {
    workerData: data,
  });
  const done = new Promise<MallocWorkerReport>((resolve, reject) => {
    worker.once("message", (r: MallocWorkerReport) => resolve(r));
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`worker ${data.id} exited with ${code}`)));
  });
  return { worker, done };
}

test("three threads malloc and free on one heap: sound, and no two live blocks overlap", {
  timeout: 120_000,
}, async () => {
  const heapSab = new SharedArrayBuffer(4096 + 64 * MiB);
  const ctrlSab = new SharedArrayBuffer(4 * ctrlWords(WORKERS, SLOTS));
  const mem = new ArrayHeapMemory(new Int32Array(heapSab), BASE, { atomic: true });
  Malloc.init(mem, BASE, { maxHeapBytes: 64 * MiB });
  const ctrl = new Int32Array(ctrlSab);
  const seeds = Array.from({ length: WORKERS }, () => (Math.random() * 2 ** 31) | 1);
  const runs = seeds.map((seed, id) =>
    runWorker({
      kind: "malloc-worker",
      heap: heapSab,
      ctrl: ctrlSab,
      base: BASE,
      id,
      ops: OPS,
      slots: SLOTS,
      seed,
      checkEvery: 2000,
    }),
  );
  try {
    while (Atomics.load(ctrl, kArrived) < WORKERS) await new Promise((r) => setTimeout(r, 5)); // load: workers attached
    Atomics.store(ctrl, kGo, 1); // publish: start
    Atomics.notify(ctrl, kGo); // wake: every worker
    const reports = await Promise.all(runs.map((r) => r.done));
    const errors = reports.flatMap((r) => r.errors);
    assert.deepEqual(errors, [], `seeds ${seeds.join(", ")}`);
    for (const r of reports) assert.ok(r.mallocs > OPS / 4, `worker ${r.id}: ${r.mallocs} mallocs`);

    const m = new Malloc(mem, BASE);
    sound(m);
    // every live block: inside the heap, its pattern whole, and no overlap with another
    const live: Array<{ va: number; end: number; id: number }> = [];
    for (let id = 0; id < WORKERS; id++) {
      for (let s = 0; s < SLOTS; s++) {
        const at = tableAt(id, SLOTS) + 2 * s;
        const va = ctrl[at] >>> 0;
        const n = ctrl[at + 1];
        if (va === 0) continue;
        assert.ok(m.usableSize(va) >= n);
        for (let i = 0; i < Math.ceil(n / 4); i++)
          assert.equal(mem.load32(va + 4 * i), pattern(va, i, id), `block 0x${va.toString(16)}`);
        live.push({ va, end: va + n, id });
      }
    }
    live.sort((a, b) => a.va - b.va);
    for (let i = 1; i < live.length; i++)
      assert.ok(
        live[i - 1].end <= live[i].va,
        `0x${live[i - 1].va.toString(16)} overlaps 0x${live[i].va.toString(16)}`,
      );
    const st = m.stats();
    assert.equal(st.allocations, live.length);
    // the lock was contended (three threads, two cores), and every waiter got through
    console.log(
      `[malloc] ${WORKERS} threads × ${OPS} ops: ${st.lockContended} contended acquisitions, ${st.lockNaps} naps, heap ${(st.heapBytes / MiB).toFixed(1)} MiB, ${live.length} live`,
    );
    for (const b of live) m.free(b.va);
    m.trim();
    assert.equal(m.stats().freeBlocks, 1);
    sound(m);
  } finally {
    await Promise.all(runs.map((r) => r.worker.terminate()));
  }
});

/** The HeapMemory type is what a lead's MMU-backed memory implements: keep it assignable. */
const _typed: HeapMemory = new ArrayHeapMemory(new Int32Array(1024), 0);
void _typed;
