/**
 * vm: a process's memory as its green threads see it on this core — typed access through the
 * process's page tables, the page-fault path, the heap that malloc grows with sbrk, and a
 * futex on a word (wait32 / notify32: Atomics.wait and notify at its physical address).
 *
 * Page faults are the libOS's (XOS): an access that finds no valid PTE goes first to the
 * program's own handler, if it installed one, then to the default pager, which serves
 * demand-zero pages of the heap window [HEAP_BASE, break) from this core's granted frame pool
 * and maps them with one CAS on the empty PTE (another core may be paging in the same page:
 * the loser gives its frame back). A fault nobody resolves kills the faulting green thread with
 * a SegmentationFault — only that thread.
 *
 * Every access goes through a last-translation cache in front of the core's TLB (a software
 * TLB in the accessor): two direct-mapped arrays of CACHE_SETS entries (virtual page → frame),
 * one for reads and one for writes, filled only from successful translations (a write entry
 * only from a write, which set D). They are as good as TLB entries and no better: each access
 * compares the TLB's invalidation epoch (src/hw/tlb.ts) with the one the cache was filled
 * under, and a change empties the cache; every POLL_EVERY accesses, and at every miss, the
 * translator's stamp() also does the shootdown poll (step P1), so an acknowledgement is never
 * more than that many accesses late; an entry is filled only if no invalidation came between
 * the translation and the fill. So a hit costs a countdown, two compares and the typed-array
 * access — about 4 ns against 20 ns for a TLB lookup on this machine — and whole values and
 * byte runs are copied (readInto / writeFrom) and compared (equalBytes, the KV store's key
 * compare) page by page through one translation each. Over a translation without
 * a stamp (the bare walk) nothing is cached.
 *
 * Owner notes: the break (process table, kpBrk) is bumped with CAS by any core; the pool is this
 * core's alone; page tables of the heap window exist from process creation (the kernel's job),
 * so the pager never installs a table; the translation cache is this object's, on one thread.
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
import {
  type FramePool,
  PAGE_MASK,
  PAGE_SHIFT,
  PAGE_SIZE,
  type PhysicalMemory,
} from "../hw/physmem.js";
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

/** Accesses through the last-translation cache between two shootdown polls. */
const POLL_EVERY = 64;

/** A translation with a TLB: its stamp (poll, then epoch) and its epoch alone. */
interface Stamped {
  stamp(): number;
  readonly epoch: number;
}

function isStamped(x: AddressTranslation): x is AddressTranslation & Stamped {
  return x.stamp !== undefined && typeof (x as Partial<Stamped>).epoch === "number";
}

/** Entries of each last-translation cache (direct-mapped by virtual page number). */
const CACHE_SETS = 1024;
const CACHE_MASK = CACHE_SETS - 1;

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
  /** The translation again if it has a stamp (else nothing is cached). */
  readonly #stamped: Stamped | null;
  /** Accesses left before the next shootdown poll. */
  #budget = POLL_EVERY;
  /** The stamp the cache's entries were made under. */
  #epoch = 0;
  /** Read cache: virtual page number (-1: empty) → frame number. */
  readonly #rVpn = new Int32Array(CACHE_SETS).fill(-1);
  readonly #rFrame = new Int32Array(CACHE_SETS);
  /** Write cache: the same, for pages a write went through (writable, dirty). */
  readonly #wVpn = new Int32Array(CACHE_SETS).fill(-1);
  readonly #wFrame = new Int32Array(CACHE_SETS);

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
    this.#stamped = isStamped(translation) ? translation : null;
    this.#mem = mem;
    this.#mmu = mmu;
    this.#pool = pool;
    this.#i32 = mem.i32;
    this.#u8 = mem.u8;
    this.pid = pid;
    this.root = root;
    this.#brk = procAt + kpBrk;
    if (this.#stamped !== null) this.#epoch = this.#stamped.stamp();
  }

  /** The physical byte address of `va` for `access`, paging it in if the fault is resolvable. */
  phys(va: number, access: Access): number {
    const a = va >>> 0;
    const s = (a >>> PAGE_SHIFT) & CACHE_MASK;
    if (this.#fresh()) {
      if (access === ACCESS_WRITE) {
        if (this.#wVpn[s] === a >>> PAGE_SHIFT)
          return this.#wFrame[s] * PAGE_SIZE + (a & PAGE_MASK);
      } else if (this.#rVpn[s] === a >>> PAGE_SHIFT) {
        return this.#rFrame[s] * PAGE_SIZE + (a & PAGE_MASK);
      }
    }
    return this.#walk(a, access);
  }

  /**
   * Is the cache still good (nothing invalidated since it was filled)? Empties it if not. Every
   * invalidation on this thread shows at once in the TLB's epoch; shootdowns posted since the
   * last poll are fetched every {@link POLL_EVERY} accesses (and at every miss, and whenever the
   * core parks or wakes): the hypervisor waits for the acknowledgement before it reuses a frame,
   * so an entry used meanwhile still names the frame the page had (an IPI that arrives a few
   * instructions late).
   */
  #fresh(): boolean {
    const x = this.#stamped;
    if (x === null) return false;
    let e: number;
    if (--this.#budget > 0) e = x.epoch;
    else {
      this.#budget = POLL_EVERY;
      e = x.stamp();
    }
    if (e === this.#epoch) return true;
    this.#rVpn.fill(-1);
    this.#wVpn.fill(-1);
    this.#epoch = e;
    return false;
  }

  /** A cache miss: translate (paging in on a fault), then remember the page if still valid. */
  #walk(a: number, access: Access): number {
    const before = this.#stamped === null ? 0 : this.#stamped.stamp();
    let r: number;
    for (;;) {
      r = this.#x.translate(this.root, a, access, true); // the core's TLB, then a walk
      if (r >= 0) break;
      if (!this.#fault(a, access, r)) throw new SegmentationFault(a, faultName(r));
    }
    if (this.#fresh() && this.#epoch === before) {
      const s = (a >>> PAGE_SHIFT) & CACHE_MASK;
      const frame = (r - (a & PAGE_MASK)) / PAGE_SIZE;
      this.#rVpn[s] = a >>> PAGE_SHIFT;
      this.#rFrame[s] = frame;
      if (access === ACCESS_WRITE) {
        this.#wVpn[s] = a >>> PAGE_SHIFT;
        this.#wFrame[s] = frame;
      }
    }
    return r;
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
    const a = va >>> 0;
    const s = (a >>> PAGE_SHIFT) & CACHE_MASK;
    if (this.#rVpn[s] === a >>> PAGE_SHIFT && this.#fresh())
      return this.#i32[this.#rFrame[s] * (PAGE_SIZE / 4) + ((a & PAGE_MASK) >>> 2)];
    return this.#i32[this.#walk(a, ACCESS_READ) >>> 2];
  }

  store32(va: number, v: number): void {
    const a = va >>> 0;
    const s = (a >>> PAGE_SHIFT) & CACHE_MASK;
    if (this.#wVpn[s] === a >>> PAGE_SHIFT && this.#fresh())
      this.#i32[this.#wFrame[s] * (PAGE_SIZE / 4) + ((a & PAGE_MASK) >>> 2)] = v;
    else this.#i32[this.#walk(a, ACCESS_WRITE) >>> 2] = v;
  }

  cas32(va: number, expect: number, v: number): number {
    const a = va >>> 0;
    const s = (a >>> PAGE_SHIFT) & CACHE_MASK;
    const at =
      this.#wVpn[s] === a >>> PAGE_SHIFT && this.#fresh()
        ? this.#wFrame[s] * (PAGE_SIZE / 4) + ((a & PAGE_MASK) >>> 2)
        : this.#walk(a, ACCESS_WRITE) >>> 2;
    return Atomics.compareExchange(this.#i32, at, expect, v); // claim
  }

  /**
   * Sleep this core's thread while the word at `va` holds `expect`, at most `timeoutMs`
   * (Atomics.wait on its physical address: a futex). The whole core waits — every green thread
   * on it — so callers use it only for a short wait on a lock held by another core.
   */
  wait32(va: number, expect: number, timeoutMs: number): void {
    Atomics.wait(this.#i32, this.phys(va, ACCESS_READ) >>> 2, expect, timeoutMs); // park: until notify32
  }

  /** Wake up to `count` threads sleeping in wait32 on the word at `va`. */
  notify32(va: number, count: number): void {
    Atomics.notify(this.#i32, this.phys(va, ACCESS_READ) >>> 2, count); // wake
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
    this.writeFrom(va, bytes, 0, bytes.length);
  }

  /**
   * Copy src[off … off+len) to `va`, one translation per page. A run of up to 16 bytes within a
   * page is copied byte by byte (nothing allocated); a longer one with one subarray view.
   */
  writeFrom(va: number, src: Uint8Array, off: number, len: number): void {
    const u8 = this.#u8;
    for (let done = 0; done < len; ) {
      const a = (va + done) >>> 0;
      const n = Math.min(len - done, PAGE_SIZE - (a & PAGE_MASK));
      const p = this.phys(a, ACCESS_WRITE);
      if (n <= 16) for (let i = 0; i < n; i++) u8[p + i] = src[off + done + i];
      else u8.set(src.subarray(off + done, off + done + n), p);
      done += n;
    }
  }

  /**
   * Do the `len` bytes at `va` equal src[off … off+len)? One translation per page (a key
   * compare of the KV store costs one translated access, not one per word); allocates nothing.
   */
  equalBytes(va: number, src: Uint8Array, off: number, len: number): boolean {
    const u8 = this.#u8;
    for (let done = 0; done < len; ) {
      const a = (va + done) >>> 0;
      const n = Math.min(len - done, PAGE_SIZE - (a & PAGE_MASK));
      const p = this.phys(a, ACCESS_READ);
      const o = off + done;
      for (let i = 0; i < n; i++) if (u8[p + i] !== src[o + i]) return false;
      done += n;
    }
    return true;
  }

  readBytes(va: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(va, out, 0, len);
    return out;
  }

  /** Copy `len` bytes at `va` into dst[off…], one translation per page (views as writeFrom). */
  readInto(va: number, dst: Uint8Array, off: number, len: number): void {
    const u8 = this.#u8;
    for (let done = 0; done < len; ) {
      const a = (va + done) >>> 0;
      const n = Math.min(len - done, PAGE_SIZE - (a & PAGE_MASK));
      const p = this.phys(a, ACCESS_READ);
      if (n <= 16) for (let i = 0; i < n; i++) dst[off + done + i] = u8[p + i];
      else dst.set(u8.subarray(p, p + n), off + done);
      done += n;
    }
  }
}
