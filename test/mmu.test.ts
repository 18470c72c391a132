/**
 * Physical memory, MMU and TLB: deterministic cases. Frame allocator and pools; map / unmap /
 * protect error codes; fault codes and the accessed / dirty bits; copyin / copyout that fail
 * with EFAULT and touch nothing; teardown that gives every table frame back; the TLB and its
 * shootdown, in this thread and across a real worker thread.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { EEXIST, EFAULT, EINVAL, ENAMETOOLONG, ENOENT, ENOMEM, ENOSPC } from "../src/abi/errno.js";
import { PanicError } from "../src/errors.js";
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  FAULT_BAD_ADDRESS,
  FAULT_NOT_PRESENT,
  FAULT_NX,
  FAULT_PROT_USER,
  FAULT_PROT_WRITE,
  faultName,
  isFault,
  Mmu,
  makePte,
  PTE_A,
  PTE_COW,
  PTE_D,
  PTE_NX,
  PTE_P,
  PTE_U,
  PTE_W,
  pteFrame,
} from "../src/hw/mmu.js";
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
import {
  layShootdownBoard,
  PARTICIPANT_IDLE,
  PARTICIPANT_OFFLINE,
  Shootdown,
  ShootdownMailbox,
  Tlb,
  Translator,
} from "../src/hw/tlb.js";
import { Arena } from "../src/shm/layout.js";
import type { TlbWorkerReport } from "./fixtures/tlb-worker.js";

const RW_USER = PTE_W | PTE_U;

function machine(frames = 64) {
  const mem = PhysicalMemory.create(frames * PAGE_SIZE);
  const arena = new Arena(mem.sab);
  const fa = layFrameAllocator(arena, mem.frames);
  const board = layShootdownBoard(arena, 2, 4);
  const pool = layFramePool(arena, "core0.pool", 8);
  const ctrl = arena.alloc("test.ctrl", 64).offset;
  initFrameAllocator(mem, fa, firstFrameAfter(arena));
  const alloc = new FrameAllocator(mem, fa);
  const mmu = new Mmu(mem, alloc);
  return { mem, arena, alloc, mmu, board, pool, ctrl };
}

/** A data frame filled with `byte`. */
function dataFrame(m: ReturnType<typeof machine>, byte: number): number {
  const f = m.alloc.alloc();
  assert.ok(f >= 0);
  m.mem.frameBytes(f).fill(byte);
  return f;
}

function isPanic(re: RegExp) {
  return (e: unknown) => e instanceof PanicError && re.test(e.message);
}

// ---- frame allocator ----

test("the allocator hands out each allocatable frame once, then -ENOMEM", () => {
  const m = machine(48);
  const start = m.alloc.freeFrames;
  assert.equal(start, m.alloc.end - m.alloc.first);
  const got = new Set<number>();
  for (let i = 0; i < start; i++) {
    const f = m.alloc.alloc();
    assert.ok(f >= m.alloc.first && f < m.alloc.end, `frame ${f} in range`);
    assert.ok(!got.has(f), `frame ${f} handed out twice`);
    assert.ok(m.alloc.isAllocated(f));
    got.add(f);
  }
  assert.equal(m.alloc.freeFrames, 0);
  assert.equal(m.alloc.alloc(), -ENOMEM);
  assert.equal(m.alloc.allocContiguous(1), -ENOMEM);
  for (const f of got) m.alloc.free(f);
  assert.equal(m.alloc.freeFrames, start);
  assert.ok(m.alloc.isAllocated(0), "boot frames stay used");
});

test("double free and frees outside the allocatable range panic", () => {
  const m = machine();
  const f = m.alloc.alloc();
  m.alloc.free(f);
  assert.throws(() => m.alloc.free(f), isPanic(/physmem: double free of frame/));
  assert.throws(() => m.alloc.free(0), isPanic(/physmem: free of frame 0 outside/));
  assert.throws(() => m.alloc.free(m.mem.frames), isPanic(/outside the allocatable frames/));
  assert.throws(() => m.alloc.free(1.5), isPanic(/outside/));
});

test("allocContiguous finds an aligned free run, skips holes, and frees as a range", () => {
  const m = machine(64);
  const start = m.alloc.freeFrames;
  const run = m.alloc.allocContiguous(4, 4);
  assert.ok(run > 0 && run % 4 === 0);
  for (let f = run; f < run + 4; f++) assert.ok(m.alloc.isAllocated(f));
  assert.equal(m.alloc.freeFrames, start - 4);
  assert.equal(m.alloc.allocContiguous(0), -EINVAL);
  assert.equal(m.alloc.allocContiguous(2, 3), -EINVAL);
  assert.equal(m.alloc.allocContiguous(start), -ENOMEM);
  m.alloc.freeRange(run, 4);
  assert.equal(m.alloc.freeFrames, start);
  // Punch a hole pattern: every other frame used, so no run of 2 exists.
  const taken: number[] = [];
  for (let f = m.alloc.alloc(); f >= 0; f = m.alloc.alloc()) taken.push(f);
  for (let i = 0; i < taken.length; i += 2) m.alloc.free(taken[i]!);
  const sorted = taken.slice().sort((a, b) => a - b);
  const holes = sorted.filter((f) => !m.alloc.isAllocated(f));
  const adjacent = holes.some((f) => holes.includes(f + 1));
  assert.equal(m.alloc.allocContiguous(2) >= 0, adjacent);
});

test("allocZeroed gives a zeroed frame", () => {
  const m = machine();
  const f = dataFrame(m, 0xab);
  m.alloc.free(f);
  const g = m.alloc.allocZeroed();
  assert.ok(m.mem.frameBytes(g).every((b) => b === 0));
});

// ---- frame pools ----

test("a pool hands its core granted frames without the allocator, and refuses over capacity", () => {
  const m = machine();
  const hv = new FramePool(m.mem, m.pool);
  const core = new FramePool(m.mem, m.pool); // the core's own attachment
  assert.equal(core.alloc(), -ENOMEM, "empty pool");
  const run = m.alloc.allocContiguous(4);
  assert.equal(hv.grantRange(run, 4), 0);
  const f2 = m.alloc.alloc();
  assert.equal(hv.grant([f2]), 0);
  assert.equal(hv.owned, 5);
  assert.equal(core.available(), 5);
  const free = m.alloc.freeFrames;
  const got = [core.alloc(), core.alloc(), core.alloc()];
  assert.equal(m.alloc.freeFrames, free, "local allocation does not touch the allocator");
  assert.deepEqual(new Set(got).size, 3);
  for (const f of got) assert.ok((f >= run && f < run + 4) || f === f2);
  core.free(got[0]!);
  assert.equal(core.available(), 3);
  assert.equal(hv.grant([1, 2, 3, 4]), -ENOSPC, "5 + 4 > capacity 8");
  assert.equal(hv.grant([m.mem.frames]), -EINVAL);
  // The core stops; the hypervisor takes back what is free in the pool.
  const back = hv.reclaim();
  assert.equal(back.length, 3);
  assert.equal(hv.owned, 0);
  for (const f of back) m.alloc.free(f);
  for (const f of got.slice(1)) m.alloc.free(f);
  assert.equal(m.alloc.freeFrames, free + 5);
});

test("a pool panics when freed a frame it never granted beyond its capacity", () => {
  const m = machine();
  const core = new FramePool(m.mem, m.pool);
  for (let i = 0; i < 8; i++) core.free(m.alloc.alloc());
  assert.throws(() => core.free(m.alloc.alloc()), isPanic(/physmem: pool overflow/));
  assert.throws(() => core.free(-1), isPanic(/outside memory/));
});

// ---- page-table operations ----

test("map, lookup, unmap and protect return PTEs and -errno as documented", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  assert.ok(as > 0);
  const f = dataFrame(m, 1);
  const g = dataFrame(m, 2);
  const va = 0x0040_3000;
  assert.equal(m.mmu.map(as, va, f, RW_USER), 0);
  assert.equal(m.mmu.lookup(as, va), makePte(f, RW_USER));
  assert.equal(pteFrame(m.mmu.lookup(as, va)), f);
  assert.equal(m.mmu.map(as, va, g, PTE_U), -EEXIST);
  assert.equal(m.mmu.lookup(as, va), makePte(f, RW_USER), "unchanged after EEXIST");
  assert.equal(m.mmu.map(as, va + 1, f, 0), -EINVAL, "unaligned");
  assert.equal(m.mmu.map(as, 2 ** 32, f, 0), -EINVAL, "not a 32-bit address");
  assert.equal(m.mmu.map(as, 0.5, f, 0), -EINVAL);
  assert.equal(m.mmu.map(as, va, m.mem.frames, 0, true), -EINVAL, "frame outside memory");
  assert.equal(m.mmu.map(as, va, f, PTE_A), -EINVAL, "A belongs to the hardware");
  assert.equal(m.mmu.map(as, va, f, 1 << 12), -EINVAL, "frame bits are not flags");
  assert.equal(m.mmu.map(m.mem.frames, va, f, 0), -EINVAL, "root outside memory");
  assert.equal(
    m.mmu.map(as, va, g, PTE_U, true),
    makePte(f, RW_USER),
    "replace returns the old PTE",
  );
  assert.equal(m.mmu.protect(as, va, PTE_U | PTE_W | PTE_COW), makePte(g, PTE_U));
  assert.equal(m.mmu.lookup(as, va), makePte(g, PTE_U | PTE_W | PTE_COW));
  assert.equal(m.mmu.protect(as, va + PAGE_SIZE, PTE_U), -ENOENT);
  assert.equal(m.mmu.protect(as, 0x7000_0000, PTE_U), -ENOENT, "no table there");
  assert.equal(m.mmu.protect(as, va, PTE_D), -EINVAL);
  assert.equal(m.mmu.unmap(as, va), makePte(g, PTE_U | PTE_W | PTE_COW));
  assert.equal(m.mmu.lookup(as, va), 0);
  assert.equal(m.mmu.unmap(as, va), 0, "nothing left to unmap");
  assert.equal(m.mmu.unmap(as, va + 8), -EINVAL);
  // The high half of the address space, given as uint32 or as int32 (a syscall argument).
  assert.equal(m.mmu.map(as, 0xffff_f000, f, PTE_U), 0);
  assert.equal(m.mmu.lookup(as, -4096), makePte(f, PTE_U));
  assert.equal(m.mmu.unmap(as, -4096), makePte(f, PTE_U));
});

test("map gives -ENOMEM when no frame is left for a page table, and changes nothing", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const f = dataFrame(m, 0);
  assert.equal(m.mmu.map(as, 0x1000, f, PTE_U), 0);
  const hoard: number[] = [];
  for (let x = m.alloc.alloc(); x >= 0; x = m.alloc.alloc()) hoard.push(x);
  assert.equal(m.mmu.map(as, 0x2000, f, PTE_U), 0, "same table: no frame needed");
  assert.equal(m.mmu.map(as, 0x0080_0000, f, PTE_U), -ENOMEM);
  assert.equal(m.mmu.lookup(as, 0x0080_0000), 0);
  assert.equal(m.mmu.walk(as, 0x0080_0000), -1, "no table was installed");
  assert.equal(m.mmu.createAddressSpace(), -ENOMEM);
  for (const x of hoard) m.alloc.free(x);
});

test("a page fault says why, and nothing else is touched", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const ro = dataFrame(m, 0);
  const kern = dataFrame(m, 0);
  const nx = dataFrame(m, 0);
  m.mmu.map(as, 0x1000, ro, PTE_U);
  m.mmu.map(as, 0x2000, kern, PTE_W);
  m.mmu.map(as, 0x3000, nx, PTE_U | PTE_NX | PTE_W);
  const t = (va: number, access: 0 | 1 | 2, user: boolean) => m.mmu.translate(as, va, access, user);
  assert.equal(t(0x5000, ACCESS_READ, true), FAULT_NOT_PRESENT);
  assert.equal(t(0x4000_0000, ACCESS_READ, false), FAULT_NOT_PRESENT, "no table");
  assert.equal(t(0x1004, ACCESS_WRITE, true), FAULT_PROT_WRITE);
  assert.equal(t(0x1004, ACCESS_WRITE, false), FAULT_PROT_WRITE, "the kernel honours W too");
  assert.equal(t(0x2000, ACCESS_READ, true), FAULT_PROT_USER);
  assert.equal(t(0x3000, ACCESS_EXEC, true), FAULT_NX);
  assert.equal(t(1.5, ACCESS_READ, true), FAULT_BAD_ADDRESS);
  assert.equal(m.mmu.translate(m.mem.frames + 7, 0x1000, ACCESS_READ, true), FAULT_BAD_ADDRESS);
  for (const code of [
    FAULT_NOT_PRESENT,
    FAULT_PROT_WRITE,
    FAULT_PROT_USER,
    FAULT_NX,
    FAULT_BAD_ADDRESS,
  ]) {
    assert.ok(isFault(code));
    assert.doesNotMatch(faultName(code), /^fault /);
  }
  assert.ok(!isFault(-EFAULT));
  // None of the faulting accesses set A or D.
  assert.equal(m.mmu.lookup(as, 0x1000) & (PTE_A | PTE_D), 0);
  assert.equal(m.mmu.lookup(as, 0x2000) & (PTE_A | PTE_D), 0);
  assert.equal(m.mmu.lookup(as, 0x3000) & (PTE_A | PTE_D), 0);
  // Allowed accesses translate to the frame plus the offset.
  assert.equal(t(0x1abc, ACCESS_READ, true), ro * PAGE_SIZE + 0xabc);
  assert.equal(t(0x2abc, ACCESS_WRITE, false), kern * PAGE_SIZE + 0xabc);
});

test("translate sets accessed on a read and dirty on a write; probe sets nothing", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const f = dataFrame(m, 0);
  m.mmu.map(as, 0x1000, f, RW_USER);
  assert.equal(m.mmu.probe(as, 0x1000, ACCESS_WRITE, true), f * PAGE_SIZE);
  assert.equal(m.mmu.lookup(as, 0x1000) & (PTE_A | PTE_D), 0);
  m.mmu.translate(as, 0x1000, ACCESS_READ, true);
  assert.equal(m.mmu.lookup(as, 0x1000) & (PTE_A | PTE_D), PTE_A);
  m.mmu.translate(as, 0x1ffc, ACCESS_WRITE, true);
  assert.equal(m.mmu.lookup(as, 0x1000) & (PTE_A | PTE_D), PTE_A | PTE_D);
  // protect keeps A and D; unmap hands them to the caller (to write back a dirty page).
  m.mmu.protect(as, 0x1000, PTE_U);
  assert.equal(m.mmu.lookup(as, 0x1000), makePte(f, PTE_U | PTE_A | PTE_D));
  assert.equal(m.mmu.unmap(as, 0x1000), makePte(f, PTE_U | PTE_A | PTE_D));
});

// ---- copyin / copyout ----

function copyMachine() {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const a = dataFrame(m, 0x11);
  const b = dataFrame(m, 0x22);
  const r = dataFrame(m, 0x33);
  const k = dataFrame(m, 0x44);
  m.mmu.map(as, 0x1000, a, RW_USER);
  m.mmu.map(as, 0x2000, b, RW_USER);
  m.mmu.map(as, 0x3000, r, PTE_U); // read-only
  m.mmu.map(as, 0x5000, k, PTE_W); // kernel only
  return { ...m, as, a, b, r, k };
}

test("copyout and copyin cross page boundaries", () => {
  const m = copyMachine();
  const src = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  assert.equal(m.mmu.copyout(m.as, 0x2000 - 100, src), 0);
  assert.deepEqual([...m.mem.frameBytes(m.a).subarray(PAGE_SIZE - 100)], [...src.subarray(0, 100)]);
  assert.deepEqual([...m.mem.frameBytes(m.b).subarray(0, 200)], [...src.subarray(100)]);
  const back = new Uint8Array(300);
  assert.equal(m.mmu.copyin(m.as, 0x2000 - 100, back), 0);
  assert.deepEqual(back, src);
  assert.equal(m.mmu.lookup(m.as, 0x1000) & PTE_D, PTE_D);
  assert.equal(m.mmu.copyin(m.as, 0x3ff0, new Uint8Array(16)), 0, "read-only pages can be read");
  assert.equal(m.mmu.copyin(m.as, 0x9000, new Uint8Array(0)), 0, "an empty copy touches nothing");
});

test("copyout that would fault on any page gives EFAULT and writes nothing", () => {
  const m = copyMachine();
  const before = Buffer.from(m.mem.u8.slice(0));
  const src = new Uint8Array(2 * PAGE_SIZE).fill(0xee);
  const bad: Array<[number, number, string]> = [
    [0x2800, PAGE_SIZE, "second page read-only"],
    [0x2800, 2 * PAGE_SIZE, "third page unmapped"],
    [0x0800, PAGE_SIZE, "first page unmapped"],
    [0x4ff0, 32, "second page kernel-only"],
    [0x5000, 4, "kernel-only page"],
    [0xffff_fff0, 32, "runs past 4 GiB"],
    [-1, 2, "runs past 4 GiB (int32 form)"],
    [2 ** 32, 1, "not an address"],
    [Number.NaN, 1, "not an address"],
  ];
  for (const [va, len, why] of bad) {
    assert.equal(m.mmu.copyout(m.as, va, src.subarray(0, len)), -EFAULT, why);
  }
  assert.ok(Buffer.from(m.mem.u8.slice(0)).equals(before), "memory untouched, A/D bits included");
  assert.equal(m.mmu.writeU32(m.as, 0x3000, 1), -EFAULT);
  assert.equal(m.mmu.writeU32(m.as, 0x2ffe, 1), -EFAULT, "straddles into the read-only page");
  assert.ok(Buffer.from(m.mem.u8.slice(0)).equals(before));
});

test("copyin that would fault gives EFAULT and leaves the destination as it was", () => {
  const m = copyMachine();
  const dst = new Uint8Array(64).fill(0x5a);
  assert.equal(
    m.mmu.copyin(m.as, 0x3ff0, dst),
    -EFAULT,
    "page after the read-only one is unmapped",
  );
  assert.equal(m.mmu.copyin(m.as, 0x5000, dst), -EFAULT, "kernel-only");
  assert.equal(m.mmu.copyin(m.as, 0x0fff, dst), -EFAULT, "first page unmapped");
  assert.ok(dst.every((b) => b === 0x5a));
  assert.equal(m.mmu.readU32(m.as, 0x0ffe), -EFAULT);
  assert.equal(m.mmu.lookup(m.as, 0x1000) & PTE_A, 0, "the check pass set no bits");
});

test("typed user access: integers and strings through the page tables", () => {
  const m = copyMachine();
  assert.equal(m.mmu.writeU32(m.as, 0x1ffe, 0xdeadbeef), 0, "straddles two pages");
  assert.equal(m.mmu.readU32(m.as, 0x1ffe), 0xdeadbeef);
  assert.equal(m.mmu.writeU32(m.as, 0x1000, -1), 0);
  assert.equal(m.mmu.readU32(m.as, 0x1000), 0xffffffff);
  assert.equal(m.mmu.readU32(m.as, 0x3000), 0x33333333);
  const u = m.mmu.user;
  assert.equal(u.writeString(m.as, 0x1ff0, "héllo, wörld\0"), 15);
  assert.equal(m.mmu.readString(m.as, 0x1ff0, 14), "héllo, wörld");
  assert.equal(u.readCString(m.as, 0x1ff0, 100), "héllo, wörld");
  assert.equal(u.readCString(m.as, 0x1ff0, 5), -ENAMETOOLONG);
  assert.equal(u.readCString(m.as, 0x3ff0, 100), -EFAULT, "no NUL before the unmapped page");
  assert.equal(m.mmu.readString(m.as, 0x3ffe, 4), -EFAULT);
  assert.equal(m.mmu.readString(m.as, 0x1000, -1), -EINVAL);
});

// ---- teardown ----

test("destroyAddressSpace frees every table frame and reports every mapped page", () => {
  const m = machine();
  const start = m.alloc.freeFrames;
  const as = m.mmu.createAddressSpace();
  const pages = [0x0, 0x1000, 0x0040_0000, 0x8000_0000, 0xffff_f000];
  const frames = pages.map(() => m.alloc.alloc());
  for (const [i, va] of pages.entries()) assert.equal(m.mmu.map(as, va, frames[i]!, PTE_U), 0);
  assert.equal(m.alloc.freeFrames, start - 1 - 4 - frames.length, "root, 4 tables, 5 data frames");
  const seen: number[] = [];
  assert.equal(
    m.mmu.destroyAddressSpace(as, (va, pte) => {
      seen.push(va);
      assert.ok(pte & PTE_P);
      m.alloc.free(pteFrame(pte));
    }),
    0,
  );
  assert.deepEqual(seen, pages);
  assert.equal(m.alloc.freeFrames, start);
  assert.equal(m.mmu.destroyAddressSpace(m.mem.frames), -EINVAL);
});

test("a thread without a table source may walk but not change page tables", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const walker = new Mmu(m.mem);
  assert.equal(walker.translate(as, 0, ACCESS_READ, false), FAULT_NOT_PRESENT);
  assert.throws(() => walker.map(as, 0, 1, 0), isPanic(/mmu: map on a thread without/));
});

// ---- TLB ----

test("the TLB counts hits and misses, separates address spaces, and invalidates by page, range, asid", () => {
  const tlb = new Tlb();
  assert.equal(tlb.entries, 64);
  assert.equal(tlb.lookup(7, 1), 0);
  tlb.insert(7, 1, makePte(100, PTE_U));
  tlb.insert(8, 1, makePte(200, PTE_U));
  assert.equal(tlb.lookup(7, 1), makePte(100, PTE_U) | 0);
  assert.equal(tlb.lookup(8, 1), makePte(200, PTE_U) | 0);
  tlb.insert(7, 1, makePte(101, PTE_U)); // same tag: replaced in place, not duplicated
  assert.equal(tlb.lookup(7, 1), makePte(101, PTE_U) | 0);
  assert.equal(tlb.hits, 3);
  assert.equal(tlb.misses, 1);
  tlb.invalidatePage(7, 1 * PAGE_SIZE + 123);
  assert.equal(tlb.lookup(7, 1), 0);
  assert.notEqual(tlb.lookup(8, 1), 0);
  for (let v = 10; v < 14; v++) tlb.insert(9, v, makePte(v, 0));
  tlb.insert(8, 11, makePte(300, 0));
  tlb.invalidateRange(9, 11, 2);
  assert.deepEqual(
    [10, 11, 12, 13].map((v) => tlb.lookup(9, v) !== 0),
    [true, false, false, true],
  );
  assert.notEqual(tlb.lookup(8, 11), 0, "another asid's entry for the same page stays");
  tlb.invalidateAsid(9);
  assert.equal(tlb.lookup(9, 10), 0);
  assert.notEqual(tlb.lookup(8, 1), 0);
  tlb.invalidateAll();
  assert.equal(tlb.lookup(8, 1), 0);
  // More pages than entries: old ones are evicted, never wrong.
  const small = new Tlb({ sets: 4, ways: 2 });
  assert.equal(small.entries, 8);
  for (let v = 0; v < 100; v++) small.insert(1, v, makePte(v + 1, 0));
  let kept = 0;
  for (let v = 0; v < 100; v++) {
    const pte = small.lookup(1, v);
    if (pte !== 0) kept++;
    assert.ok(pte === 0 || pteFrame(pte) === v + 1);
  }
  assert.equal(kept, 8);
});

test("translate through the TLB: hits, a write re-walks to set dirty, faults are recorded", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const f = dataFrame(m, 0);
  m.mmu.map(as, 0x1000, f, PTE_U);
  const x = new Translator(m.mmu, new Tlb());
  assert.equal(x.translate(as, 0x1010, ACCESS_READ, true), f * PAGE_SIZE + 0x10);
  assert.equal(x.translate(as, 0x1020, ACCESS_READ, true), f * PAGE_SIZE + 0x20);
  assert.equal(x.tlb.hits, 1);
  assert.equal(x.tlb.misses, 1);
  assert.equal(x.translate(as, 0x1000, ACCESS_WRITE, true), FAULT_PROT_WRITE);
  assert.equal(x.faults, 1);
  assert.equal(x.faultVa, 0x1000);
  assert.equal(x.faultCode, FAULT_PROT_WRITE);
  assert.equal(x.faultAccess, ACCESS_WRITE);
  // The pager upgrades the page (a COW break would): no shootdown needed for more rights.
  m.mmu.protect(as, 0x1000, RW_USER);
  assert.equal(x.translate(as, 0x1000, ACCESS_WRITE, true), f * PAGE_SIZE);
  assert.equal(m.mmu.lookup(as, 0x1000) & PTE_D, PTE_D);
  assert.equal(x.translate(as, 0x1004, ACCESS_WRITE, true), f * PAGE_SIZE + 4);
  // copyin/copyout through the TLB.
  assert.equal(x.user.writeU32(as, 0x1008, 42), 0);
  assert.equal(x.user.readU32(as, 0x1008), 42);
  assert.equal(x.user.copyout(as, 0x1ff0, new Uint8Array(32)), -EFAULT);
});

test("a re-walk on a TLB hit replaces the entry in place: the next write is a plain hit", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const f = dataFrame(m, 0);
  m.mmu.map(as, 0x1000, f, RW_USER);
  const x = new Translator(m.mmu, new Tlb({ sets: 1, ways: 4 }));
  x.translate(as, 0x1000, ACCESS_READ, true); // fills an entry without D
  x.translate(as, 0x1000, ACCESS_WRITE, true); // hit without D: re-walks, sets D, refills
  // Take the page away behind the TLB's back (no shootdown): only a cached entry can answer now.
  m.mmu.unmap(as, 0x1000);
  assert.equal(
    x.translate(as, 0x1008, ACCESS_WRITE, true),
    f * PAGE_SIZE + 8,
    "served by the refilled entry",
  );
  assert.equal(x.tlb.misses, 1);
  assert.equal(x.tlb.hits, 2);
});

test("a shootdown in one thread: stale until processed, gone after; overflow flushes all", () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const f = dataFrame(m, 0);
  m.mmu.map(as, 0x1000, f, RW_USER);
  m.mmu.map(as, 0x2000, f, RW_USER);
  const hv = new Shootdown(m.mem.sab, m.board);
  const tlb = new Tlb();
  const box = new ShootdownMailbox(m.mem.sab, m.board, 0, tlb);
  const x = new Translator(m.mmu, tlb, box);
  assert.equal(hv.state(1), PARTICIPANT_OFFLINE);
  x.translate(as, 0x1000, ACCESS_READ, true);
  x.translate(as, 0x2000, ACCESS_READ, true);
  m.mmu.unmap(as, 0x1000);
  hv.invalidatePages(as, 0x1000);
  assert.equal(hv.pending(), 1, "participant 0 is active and has not acknowledged");
  assert.notEqual(tlb.lookup(as, 1), 0, "stale until the mailbox is processed (as hardware)");
  assert.equal(x.translate(as, 0x1000, ACCESS_READ, true), FAULT_NOT_PRESENT);
  assert.equal(hv.pending(), 0);
  assert.notEqual(tlb.lookup(as, 2), 0, "the other page stays cached");
  // More requests than the mailbox holds (capacity 4): the participant flushes everything.
  for (let i = 0; i < 6; i++) hv.invalidatePages(as, 0x7000_0000, 1, 1 << 0);
  assert.equal(hv.overflows, 2);
  assert.equal(box.poll(), true);
  assert.equal(tlb.lookup(as, 2), 0);
  assert.equal(tlb.flushes >= 1, true);
  assert.equal(box.poll(), false, "nothing new");
  // Idle participants are not waited for.
  box.enterIdle();
  assert.equal(hv.state(0), PARTICIPANT_IDLE);
  hv.invalidateAsid(as);
  assert.equal(hv.pending(), 0);
  box.leaveIdle();
  assert.equal(hv.pending(), 0, "caught up on waking");
  box.detach();
  assert.equal(hv.state(0), PARTICIPANT_OFFLINE);
});

test("a pending waitAcks is woken by an acknowledgement, by going idle, by detach, by markOffline", async () => {
  const m = machine();
  const hv = new Shootdown(m.mem.sab, m.board);
  const box = new ShootdownMailbox(m.mem.sab, m.board, 0, new Tlb());
  const wakeBy = async (act: () => void): Promise<void> => {
    hv.invalidateAsid(7, 1 << 0);
    assert.equal(hv.pending(), 1);
    const done = hv.waitAcks();
    act();
    await done;
    assert.equal(hv.pending(), 0);
  };
  await wakeBy(() => box.poll());
  await wakeBy(() => box.enterIdle());
  box.leaveIdle();
  await wakeBy(() => box.detach());
  const again = new ShootdownMailbox(m.mem.sab, m.board, 0, new Tlb()); // a restarted participant
  await wakeBy(() => hv.markOffline(0));
  assert.equal(again.poll(), true, "it still finds the request when it runs again");
});

// ---- across a real worker thread ----

function inbox(w: Worker): () => Promise<TlbWorkerReport> {
  const queue: TlbWorkerReport[] = [];
  const waiting: Array<(r: TlbWorkerReport) => void> = [];
  w.on("message", (r: TlbWorkerReport) => {
    const next = waiting.shift();
    if (next) next(r);
    else queue.push(r);
  });
  return () => {
    const r = queue.shift();
    return r ? Promise.resolve(r) : new Promise((resolve) => waiting.push(resolve));
  };
}

test("unmap on the hypervisor, shootdown, and the worker's TLB forgets the page", async () => {
  const m = machine();
  const as = m.mmu.createAddressSpace();
  const victim = 0x0040_2000;
  const f = dataFrame(m, 0);
  m.mem.dv.setUint32(f * PAGE_SIZE, 0xc0ffee, true);
  m.mmu.map(as, victim, f, RW_USER);
  const hv = new Shootdown(m.mem.sab, m.board);
  const ctrl = m.ctrl / 4;
  const step = (n: number) => {
    Atomics.store(m.mem.i32, ctrl, n); // publish: the next step
    Atomics.notify(m.mem.i32, ctrl); // wake: the worker
  };
  const w = new Worker(new URL("./fixtures/tlb-worker.js", import.meta.url), {
    workerData: { sab: m.mem.sab, board: m.board, index: 1, as, victim, ctrl: m.ctrl },
  });
  const exited = new Promise<number>((resolve, reject) => {
    w.once("exit", resolve);
    w.once("error", reject);
  });
  const next = inbox(w);
  try {
    const cached = await next();
    assert.equal(cached.phase, "cached");
    if (cached.phase !== "cached") return;
    assert.equal(cached.first, f * PAGE_SIZE);
    assert.equal(cached.second, f * PAGE_SIZE);
    assert.equal(cached.value, 0xc0ffee);
    assert.equal(cached.misses, 1);
    assert.equal(cached.hits, 1);

    // H1–H3 while the worker is active: it must acknowledge before the frame may be reused.
    assert.equal(m.mmu.unmap(as, victim) & PTE_A, PTE_A, "the worker's walk set accessed");
    hv.invalidatePages(as, victim, 1, 1 << 1);
    assert.equal(hv.pending(), 1);
    step(1);
    await hv.waitAcks();
    assert.equal(hv.pending(), 0);
    const shot = await next();
    assert.deepEqual(shot, {
      phase: "shot",
      staleBeforePoll: true,
      polled: true,
      cachedAfterPoll: false,
      result: FAULT_NOT_PRESENT,
      missed: true,
    });

    // Map again; the worker caches it and goes idle. A shootdown then needs no acknowledgement.
    m.mmu.map(as, victim, f, RW_USER);
    step(2);
    const idle = await next();
    assert.deepEqual(idle, { phase: "idle", result: f * PAGE_SIZE });
    assert.equal(hv.state(1), PARTICIPANT_IDLE);
    m.mmu.unmap(as, victim);
    hv.invalidatePages(as, victim);
    assert.equal(hv.pending(), 0);
    await hv.waitAcks();
    step(3);
    const woke = await next();
    assert.deepEqual(woke, {
      phase: "woke",
      staleWhileIdle: true,
      result: FAULT_NOT_PRESENT,
      missed: true,
    });
    assert.equal(await exited, 0);
    assert.equal(hv.state(1), PARTICIPANT_OFFLINE);
  } finally {
    await w.terminate();
  }
});
