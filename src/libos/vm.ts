/**
 * vm: a process's memory as its green threads see it on this core — typed access through the
 * process's page tables, the page-fault path, and the heap that malloc grows with sbrk.
 *
 * Page faults are the libOS's (XOS): an access that finds no valid PTE goes first to the
 * program's own handler, if it installed one, then to the default pager, which serves
 * demand-zero pages of the heap window [HEAP_BASE, break) from this core's granted frame pool
 * and maps them with one CAS on the empty PTE (another core may be paging in the same page:
 * the loser gives its frame back). A fault nobody resolves kills the faulting green thread with
 * a SegmentationFault — only that thread.
 *
 * Owner notes: the break (process table, kpBrk) is bumped with CAS by any core; the pool is this
 * core's alone; page tables of the heap window exist from process creation (the kernel's job),
 * so the pager never installs a table.
 */

import { EFAULT, ENOMEM } from "../abi/errno.js";
import { ExocoreError } from "../errors.js";
import { HEAP_BASE, HEAP_MAX, kpBrk } from "../hv/layout.js";
import {
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  type AddressTranslation,
  FAULT_NOT_PRESENT,
  FAULT_PROT_WRITE,
  faultName,
  type Mmu,
  PTE_COW,
  PTE_LAZY,
  PTE_MAP_FLAGS,
  PTE_P,
  PTE_U,
  PTE_W,
} from "../hw/mmu.js";
import { type FramePool, PAGE_MASK, type PhysicalMemory } from "../hw/physmem.js";
import type { HeapMemory } from "./malloc.js";

/** A fault nobody resolved: thrown into the faulting green thread, which dies of it (SIGSEGV). */
export class SegmentationFault extends ExocoreError {
  readonly address: number;
  constructor(va: number, why: string) {
    super("EXO_ERR_SEGV", `segmentation fault at 0x${(va >>> 0).toString(16)} (${why})`, EFAULT);
    this.address = va >>> 0;
  }
}

/**
 * A program's page-fault handler: return true if it made `va` accessible (the access is
 * retried), false to pass the fault on to the default pager.
 */
export type FaultHandler = (va: number, access: Access, code: number, vm: ProcessMemory) => boolean;

export interface VmCounters {
  faults: number;
  cowBreaks: number;
  zeroFills: number;
  lostRaces: number;
}

/** One process's memory, seen from one core. */
export class ProcessMemory implements HeapMemory {
  readonly pid: number;
  readonly root: number;
  readonly counters: VmCounters = { faults: 0, cowBreaks: 0, zeroFills: 0, lostRaces: 0 };
  handler: FaultHandler | null = null;
  readonly #mem: PhysicalMemory;
  readonly #mmu: Mmu;
  readonly #pool: FramePool;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #brk: number;
  readonly #refill: () => boolean;
  readonly #cowBreak: (va: number) => boolean;

  readonly #x: AddressTranslation;

  constructor(
    mem: PhysicalMemory,
    mmu: Mmu,
    translation: AddressTranslation,
    pool: FramePool,
    pid: number,
    root: number,
    procAt: number,
    refill: () => boolean = () => false,
    cowBreak: (va: number) => boolean = () => false,
  ) {
    this.#cowBreak = cowBreak;
    this.#refill = refill;
    this.#x = translation;
    this.#mem = mem;
    this.#mmu = mmu;
    this.#pool = pool;
    this.#i32 = mem.i32;
    this.#u8 = mem.u8;
    this.pid = pid;
    this.root = root;
    this.#brk = procAt + kpBrk;
  }

  /** The physical byte address of `va` for `access`, paging it in if the fault is resolvable. */
  phys(va: number, access: Access): number {
    for (;;) {
      const r = this.#x.translate(this.root, va, access, true); // the core's TLB, then a walk
      if (r >= 0) return r;
      if (!this.#fault(va, access, r)) throw new SegmentationFault(va, faultName(r));
    }
  }

  #fault(va: number, access: Access, code: number): boolean {
    this.counters.faults++;
    if (this.handler?.(va, access, code, this)) return true;
    if (code === FAULT_PROT_WRITE) {
      // Copy-on-write: a write to a page shared read-only by mshare goes to the kernel.
      const pte = this.#mmu.lookup(this.root, va >>> 0);
      if ((pte & PTE_COW) !== 0 && (pte & PTE_P) !== 0) {
        this.counters.cowBreaks++;
        return this.#cowBreak(va >>> 0);
      }
      return false;
    }
    if (code !== FAULT_NOT_PRESENT) return false;
    const a = va >>> 0;
    const pte = this.#mmu.lookup(this.root, a);
    if ((pte & PTE_LAZY) !== 0 && (pte & PTE_P) === 0) return this.#fillLazy(a, pte);
    if (a < HEAP_BASE || a >= Atomics.load(this.#i32, this.#brk) >>> 0) return false; // load: the break
    return this.mapZeroPage(a) === 0;
  }

  /** A page the kernel reserved with mmap: fill it with a zeroed frame, rights as reserved. */
  #fillLazy(va: number, lazy: number): boolean {
    let frame = this.#pool.alloc();
    if (frame < 0 && this.#refill()) frame = this.#pool.alloc();
    if (frame < 0) return false;
    this.#mem.zeroFrame(frame);
    const flags = lazy & PTE_MAP_FLAGS & ~PTE_LAZY;
    if (this.#mmu.mapIfAbsent(this.root, va & ~PAGE_MASK, frame, flags, lazy) === 0) {
      this.counters.zeroFills++;
    } else {
      this.#pool.free(frame); // another core filled it, or munmap took it back (then: retry faults)
      this.counters.lostRaces++;
    }
    return true;
  }

  /** Map a fresh zeroed frame from this core's pool at `va`'s page: 0, or -ENOMEM. */
  mapZeroPage(va: number): number {
    let frame = this.#pool.alloc();
    if (frame < 0 && this.#refill()) frame = this.#pool.alloc(); // the kernel granted more
    if (frame < 0) return -ENOMEM;
    this.#mem.zeroFrame(frame);
    const r = this.#mmu.mapIfAbsent(this.root, (va >>> 0) & ~PAGE_MASK, frame, PTE_W | PTE_U);
    if (r === 0) {
      this.counters.zeroFills++;
      return 0;
    }
    this.#pool.free(frame); // another core paged it in first (or the page was mapped meanwhile)
    this.counters.lostRaces++;
    return 0;
  }

  load32(va: number): number {
    return this.#i32[this.phys(va, ACCESS_READ) >>> 2] as number;
  }

  store32(va: number, v: number): void {
    this.#i32[this.phys(va, ACCESS_WRITE) >>> 2] = v;
  }

  cas32(va: number, expect: number, v: number): number {
    return Atomics.compareExchange(this.#i32, this.phys(va, ACCESS_WRITE) >>> 2, expect, v); // claim
  }

  /** malloc's sbrk: move the break (any core, CAS); pages arrive on first touch. */
  sbrk(bytes: number): number {
    for (;;) {
      const old = Atomics.load(this.#i32, this.#brk) >>> 0; // load: the break
      const next = old + bytes;
      if (next > HEAP_BASE + HEAP_MAX) return -ENOMEM;
      if (Atomics.compareExchange(this.#i32, this.#brk, old | 0, next | 0) === (old | 0))
        return old; // claim
    }
  }

  /** Copy bytes into the process's memory at `va` (page by page; faults as any access). */
  writeBytes(va: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const a = (va + done) >>> 0;
      const n = Math.min(bytes.length - done, 4096 - (a & PAGE_MASK));
      this.#u8.set(bytes.subarray(done, done + n), this.phys(a, ACCESS_WRITE));
      done += n;
    }
  }

  readBytes(va: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = (va + done) >>> 0;
      const n = Math.min(len - done, 4096 - (a & PAGE_MASK));
      const p = this.phys(a, ACCESS_READ);
      out.set(this.#u8.subarray(p, p + n), done);
      done += n;
    }
    return out;
  }
}
