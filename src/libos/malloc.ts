/**
 * malloc: the libOS heap allocator — malloc, free, calloc, realloc over pages that the pager
 * maps at the break of a process's address space.
 *
 * Owns: the heap region that starts at `heapBase` (every byte from there to the break); its
 * header, its page map, its blocks and slabs. All of the allocator's state lives in that region,
 * none in JS objects, because a process spans several cores (worker threads) and each core has
 * its own {@link Malloc} over the same heap. A Malloc object caches only values that never
 * change after {@link Malloc.init} (the heap's base, arena start and size limit).
 *
 * Who may call: any core of the process, concurrently. Memory is reached only through a
 * {@link HeapMemory} (each access is an address translation, so the hot paths touch as few
 * words as they can: a small malloc or free is about ten loads and stores plus the lock).
 *
 * ## Vocabulary and design
 *
 * - A **block** is a run of the arena with a 16-byte header; blocks tile the arena from its
 *   start to the break with no gap (boundary tags, dlmalloc style). A block is *in use* (a large
 *   allocation, or a slab) or *free*. Free blocks carry a footer (their size in their last word)
 *   so that the block after them can find their start, and each in-use/free state is mirrored in
 *   the PREV_INUSE bit of the next block's header. Freeing coalesces at once with both free
 *   neighbours, so two free blocks are never adjacent.
 * - Free blocks sit in **bins**, TLSF style (Masmano et al., 2004): 26 power-of-two ranges
 *   (first level), each cut into 8 linear sub-ranges (second level); two levels of bitmaps find
 *   the smallest non-empty bin that surely fits in O(1) ("good fit"). Large requests
 *   (> 2048 bytes) are served straight from the bins, split, and the rest returned.
 * - A **slab** is an in-use block of 1–8 whole pages, page-aligned, that holds objects of one
 *   **size class** (24 classes, 16 … 2048 bytes, four per doubling as in jemalloc). Objects are
 *   carved lazily with a bump pointer, and freed objects go on the slab's own free list, so a
 *   slab's metadata is one header in its first 32 bytes. Slabs with room are on their class's
 *   **partial list**; a slab that fills up leaves it, and goes back at its first free. A slab
 *   that becomes empty is released (its pages return to the bins and coalesce), unless it is
 *   the only slab of its class with room — that one is kept, so a loop of malloc/free of one
 *   size does not create and release a slab every time. {@link Malloc.trim} releases those too.
 * - The **page map** (4 bits per heap page) says for every page whether it belongs to a slab
 *   and, if so, how many pages back the slab starts: free(va) finds its slab with one load, and
 *   tells a small object from a large block soundly (nothing user data can forge).
 * - The heap grows with `sbrk` (at least {@link GROW_STEP} at a time) and never shrinks; the
 *   grown pages join the top free block. The page map is sized for `maxHeapBytes` at init.
 *
 * Rejected: a header word on every small object (50% overhead on 16-byte objects, and no sound
 * way to tell a small object from a large one); segments aligned to their size (mimalloc) —
 * `sbrk` hands out one contiguous break, and aligning segments would waste most of a segment per
 * process; a radix-tree page map with leaves allocated from the heap (leaves would pin the
 * arena and break "free everything → one block").
 *
 * ## Heap layout (addresses are virtual; H = heapBase, page-aligned)
 *
 *   H            H+4096           H+4096+mapBytes (= arena)                         break
 *   ┌────────────┬────────────────┬──────────┬──────────┬───────┬──────────┬───────┐
 *   │ header     │ page map       │ block    │ slab     │ block │ slab     │ block │ → sbrk
 *   │ (1 page)   │ 4 bits / page  │ (large)  │ (class c)│ (free)│ (class d)│ (free)│
 *   └────────────┴────────────────┴──────────┴──────────┴───────┴──────────┴───────┘
 *
 *   Header (byte offsets from H):
 *      0 magic      4 version    8 maxBytes (H + maxBytes bounds the break)
 *     12 arena     16 break     20 topFree (1 if the block that ends at the break is free)
 *     64 lock      68 contended acquisitions   72 yields   (own cache line; under the lock)
 *    128 sbrk calls
 *    132 first-level bitmap (bit f: some bin of level f is non-empty)
 *    136 second-level bitmaps, one word per level (26 words)
 *    256 bin heads, 26 × 8 words (first free block of each bin, 0 if none)
 *   1152 partial-list heads, one word per size class (24 words)
 *   4096 page map: nibble for page p (p = (va - H) >> 12) at word p >> 3, bits 4·(p & 7);
 *        0 = not a slab page, k = page of a slab that starts k-1 pages earlier
 *
 *   Block (b is 16-aligned; the user pointer of a large block is b + 16):
 *     b+0   size | SLAB(4) | PREV_INUSE(2) | INUSE(1)     size: multiple of 16, ≥ 32
 *     b+4   check = b ^ size ^ BLOCK_MAGIC                 (catches wild and stale pointers)
 *     b+8   free: next free block in its bin    in use: (large) user data from b+16
 *     b+12  free: previous free block in its bin
 *     b+size-4   free: footer = size
 *
 *   Slab (an in-use block with SLAB set, page-aligned, SLAB_PAGES[c] pages):
 *     s+0   block header (size | SLAB | INUSE | …)   s+4  check
 *     s+8   size class c                            s+12 objects in use
 *     s+16  free list head (object address, 0 if none; each free object's word 0 is the next)
 *     s+20  bump: next object never handed out     s+24 next / s+28 prev on the partial list
 *     s+32  objects: s + 32 + i·classSize, i < SLAB_OBJECTS[c]
 *   A free object's word 1 holds FREE_TAG ^ va: a free() that finds the tag walks the slab's free
 *   list to confirm a double free (the tag alone could be user data); malloc clears it.
 *
 * ## Concurrency
 *
 * One lock word in the header (its own cache line) guards all of it: taken with cas32
 * (test-and-test-and-set with exponential back-off), released with cas32, so a HeapMemory may
 * implement load32/store32 as plain accesses — the seq-cst CAS at release and acquire orders
 * them (JS memory model: synchronizes-with). The critical sections are short and bounded: a
 * malloc or free is O(1) (bitmap search, at most two coalesces, a slab header update), plus at
 * most one sbrk; realloc copies and calloc zeroes outside the lock; only check() and stats()
 * walk the heap under it. A green thread that finds the lock busy should yield, but malloc is a
 * synchronous call here: after {@link SPINS_BEFORE_NAP} failed rounds a waiter naps its whole
 * core for {@link NAP_MS} ms (Atomics.wait on a private word; with more threads than cores the
 * holder may be preempted, and spinning would only burn its time slice); the lock records how
 * many acquisitions had to wait and how many naps were taken.
 * Rejected for now: per-core caches (mimalloc's thread-local free lists) — they would take the
 * lock off the fast path but keep freed memory out of reach of other cores; see the report.
 *
 * Errors: malloc/calloc/realloc return 0 on ENOMEM (the heap stays sound) and on a size out of
 * range (n < 1, not an integer, ≥ 2^31). free/realloc/usableSize of a pointer that is not a live
 * block (misaligned, outside the heap, inside an object, never allocated, or freed already,
 * where the check is cheap) throw {@link InvalidFreeError} and change nothing. A broken
 * invariant found on the way (a corrupt header) is a panic.
 */

import { EINVAL, ENOMEM } from "../abi/errno.js";
import { checkInteger, ExocoreError, InvalidArgumentError, panic } from "../errors.js";

/**
 * The memory a heap lives in: a process's virtual memory as seen by one core. All addresses are
 * virtual, 4-byte aligned, inside [heapBase, break).
 */
export interface HeapMemory {
  load32(va: number): number; // aligned 32-bit read at a virtual address
  store32(va: number, v: number): void; // aligned 32-bit write
  cas32(va: number, expect: number, v: number): number; // atomic compare-exchange, returns old value
  /** Grow the heap by `bytes` (a multiple of 4096): maps fresh zeroed pages at the current break; returns the old break, or -ENOMEM. Called with the heap lock held. */
  sbrk(bytes: number): number;
  copy?(dst: number, src: number, bytes: number): void; // optional fast path for realloc
}

/** free/realloc/usableSize given a pointer that is not a live block (code EXO_ERR_INVALID_FREE). */
export class InvalidFreeError extends ExocoreError {
  /** The pointer, as a uint32 virtual address. */
  readonly va: number;
  constructor(op: string, va: number, why: string) {
    super("EXO_ERR_INVALID_FREE", `${op}: ${why} (0x${va.toString(16)})`, EINVAL);
    this.va = va;
  }
}

/** Options of {@link Malloc.init}. */
export interface HeapOptions {
  /** Most bytes the heap may span from heapBase, header included (sizes the page map). */
  readonly maxHeapBytes?: number;
}

/** Options of one core's {@link Malloc}. */
export interface MallocOptions {
  /**
   * Take the heap lock (default true). Turn it off only when this Malloc is the only one that
   * will ever touch the heap (a process on one core): then nothing orders two cores' accesses.
   */
  readonly locking?: boolean;
}

/** What {@link Malloc.stats} reports (a heap walk under the lock). */
export interface MallocStats {
  /** Bytes from heapBase to the break: header, page map and arena. */
  readonly heapBytes: number;
  /** Bytes of header and page map. */
  readonly headerBytes: number;
  /** Usable bytes of live allocations (class size for small ones). */
  readonly allocatedBytes: number;
  /** Live allocations. */
  readonly allocations: number;
  /** Bytes in free blocks (reusable by any size). */
  readonly freeBytes: number;
  /** Free blocks, and the largest of them. */
  readonly freeBlocks: number;
  readonly largestFreeBlock: number;
  /** Slabs, the empty ones among them, and the bytes of free objects in slabs. */
  readonly slabs: number;
  readonly emptySlabs: number;
  readonly slabFreeBytes: number;
  /** Lock acquisitions that had to wait, and naps taken while waiting (since init). */
  readonly lockContended: number;
  readonly lockNaps: number;
  /** Calls to sbrk that grew the heap (since init). */
  readonly sbrkCalls: number;
}

// ---- geometry ----
const PAGE = 4096;
const PAGE_SHIFT = 12;
/** Alignment of every pointer malloc returns. */
export const MALLOC_ALIGN = 16;
/** Bytes of a block header (in front of a large allocation). */
const HDR = 16;
/** Smallest block: a free block needs header, links and footer. */
const MIN_BLOCK = 32;
/** The heap grows by at least this much per sbrk. */
export const GROW_STEP = 64 * 1024;
/** Default and largest maxHeapBytes. */
export const DEFAULT_MAX_HEAP = 256 * 1024 * 1024;
const MAX_MAX_HEAP = 2 ** 31 - PAGE;
/** Largest request malloc accepts (sizes stay below 2^31 so that words hold them). */
export const MAX_ALLOC = 2 ** 31 - 2 * PAGE;

// ---- header fields (byte offsets from heapBase) ----
const H_MAGIC = 0;
const H_VERSION = 4;
const H_MAX = 8;
const H_ARENA = 12;
const H_BRK = 16;
const H_TOP_FREE = 20;
const H_LOCK = 64; // lock word, alone with its statistics on one cache line
const H_CONTENDED = 68;
const H_NAPS = 72;
const H_SBRKS = 128;
const H_FL = 132;
const H_SL = 136;
const H_BINS = 256;
const H_PARTIAL = 1152;
const H_MAP = PAGE;
const HEAP_MAGIC = 0x4d414c43; // "MALC"
const HEAP_VERSION = 1;

// ---- block header bits ----
const INUSE = 1;
const PREV_INUSE = 2;
const SLAB = 4;
const FLAGS = 15;
const BLOCK_MAGIC = 0x426c6b21; // "Blk!"
const FREE_TAG = 0x46524545; // "FREE"

// ---- TLSF bins ----
const FL_MIN = 5; // log2(MIN_BLOCK)
const FL_COUNT = 26; // levels 5 … 30: sizes below 2^31
const SL_SHIFT = 3;
const SL_COUNT = 1 << SL_SHIFT;

// ---- slabs ----
const S_CLASS = 8;
const S_USED = 12;
const S_FREE = 16;
const S_BUMP = 20;
const S_NEXT = 24;
const S_PREV = 28;
const SLAB_HDR = 32;

/** Object sizes of the small classes: four per doubling from 128 on. */
const CLASS_SIZE: readonly number[] = [
  16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
  1280, 1536, 1792, 2048,
];
const NCLASSES = CLASS_SIZE.length;
/** Largest small request. */
export const SMALL_MAX = CLASS_SIZE[NCLASSES - 1];
/** Class of a request of n bytes, indexed by ceil(n / 16). */
const CLASS_OF = new Uint8Array(SMALL_MAX / 16 + 1);
/** Pages and objects of a slab of each class. */
const SLAB_PAGES = new Int32Array(NCLASSES);
const SLAB_OBJECTS = new Int32Array(NCLASSES);
const SIZES = Int32Array.from(CLASS_SIZE);

for (let q = 0, c = 0; q < CLASS_OF.length; q++) {
  while (CLASS_SIZE[c] < Math.max(16, q * 16)) c++;
  CLASS_OF[q] = c;
}
for (let c = 0; c < NCLASSES; c++) {
  // the fewest pages (1, 2, 4, 8) that waste at most 1/8 of the slab and hold 8 objects
  let pages = 1;
  for (; pages < 8; pages *= 2) {
    const bytes = pages * PAGE;
    const n = Math.floor((bytes - SLAB_HDR) / SIZES[c]);
    if (n >= 8 && (bytes - n * SIZES[c]) * 8 <= bytes) break;
  }
  SLAB_PAGES[c] = pages;
  SLAB_OBJECTS[c] = Math.floor((pages * PAGE - SLAB_HDR) / SIZES[c]);
}

// ---- lock ----
/** Failed acquire rounds before a waiter naps (see the header). */
const SPINS_BEFORE_NAP = 16;
/** Longest back-off between two tries, in reads of the lock word. */
const MAX_BACKOFF = 256;
/** How long a waiter naps, in ms. */
const NAP_MS = 0.05;

// ---- free() verdicts (decoded under the lock, thrown after it is released) ----
const OK = 0;
const E_MISALIGNED = 1;
const E_OUTSIDE = 2;
const E_INTERIOR = 3;
const E_NOT_ALLOCATED = 4;
const E_DOUBLE = 5;
const E_NOT_BLOCK = 6;
const VERDICT: readonly string[] = [
  "",
  "pointer is not 16-byte aligned",
  "pointer is outside the heap",
  "pointer is inside an object, not at its start",
  "pointer was never allocated",
  "double free",
  "pointer is not the start of a block",
];

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** The class of a small request n (1 ≤ n ≤ SMALL_MAX). */
function classOf(n: number): number {
  return CLASS_OF[(n + 15) >>> 4];
}

/** Block bytes for a large request of n bytes. */
function blockFor(n: number): number {
  return Math.max(MIN_BLOCK, alignUp(n + HDR, MALLOC_ALIGN));
}

function checkWord(b: number, size: number): number {
  return (b ^ size ^ BLOCK_MAGIC) | 0;
}

/** Bin index of a free block of `size` bytes (TLSF mapping_insert). */
function binOf(size: number): number {
  const fl = 31 - Math.clz32(size);
  return (fl - FL_MIN) * SL_COUNT + ((size >>> (fl - SL_SHIFT)) & (SL_COUNT - 1));
}

/** Index of the lowest set bit of x (x ≠ 0). */
function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Size classes as (object bytes, slab pages, objects per slab), for tests and reports. */
export function sizeClasses(): ReadonlyArray<readonly [number, number, number]> {
  return CLASS_SIZE.map((s, c) => [s, SLAB_PAGES[c], SLAB_OBJECTS[c]] as const);
}

/** Bytes of header and page map for a heap of `maxHeapBytes`. */
function headerBytes(maxHeapBytes: number): number {
  return H_MAP + alignUp(Math.ceil(maxHeapBytes / PAGE / 2), PAGE);
}

/**
 * One core's handle on a process heap. Construct one per core after {@link Malloc.init} has
 * laid out the heap once.
 */
export class Malloc {
  readonly mem: HeapMemory;
  /** Start of the heap region (the header). */
  readonly heapBase: number;
  /** First block: the end of header and page map. */
  readonly arena: number;
  /** heapBase + maxHeapBytes: the break never passes it. */
  readonly limit: number;
  readonly #locking: boolean;
  /** A private word to nap on (Atomics.wait with a timeout) while the lock is busy. */
  readonly #nap = new Int32Array(new SharedArrayBuffer(4));

  /**
   * Lay out an empty heap at `heapBase` (page-aligned; the break must be there): sbrk the header
   * and page map, zeroed, and publish the magic. Once per process, before any Malloc is made.
   */
  static init(mem: HeapMemory, heapBase: number, options: HeapOptions = {}): void {
    checkInteger("heapBase", heapBase, 0, 2 ** 32 - PAGE);
    if (heapBase % PAGE !== 0)
      throw new InvalidArgumentError(
        `heapBase must be page-aligned, got 0x${heapBase.toString(16)}`,
      );
    const max = alignUp(
      checkInteger(
        "maxHeapBytes",
        options.maxHeapBytes ?? DEFAULT_MAX_HEAP,
        2 * PAGE,
        Math.min(MAX_MAX_HEAP, 2 ** 32 - heapBase),
      ),
      PAGE,
    );
    const hdr = headerBytes(max);
    if (hdr + PAGE > max)
      throw new InvalidArgumentError(`maxHeapBytes ${max} leaves no room after the page map`);
    const old = mem.sbrk(hdr);
    if (old < 0) throw new InvalidArgumentError(`heap init: sbrk(${hdr}) failed (${old})`);
    if (old !== heapBase) {
      throw new InvalidArgumentError(
        `heap init: the break is at 0x${old.toString(16)}, not at heapBase 0x${heapBase.toString(16)}`,
      );
    }
    mem.store32(heapBase + H_VERSION, HEAP_VERSION);
    mem.store32(heapBase + H_MAX, max);
    mem.store32(heapBase + H_ARENA, heapBase + hdr);
    mem.store32(heapBase + H_BRK, heapBase + hdr);
    // everything else starts as the zeroes sbrk gave us: no bins, no slabs, lock free
    mem.cas32(heapBase + H_MAGIC, 0, HEAP_MAGIC); // publish: the heap is laid out
  }

  constructor(mem: HeapMemory, heapBase: number, options: MallocOptions = {}) {
    this.mem = mem;
    this.heapBase = heapBase >>> 0;
    if ((mem.load32(heapBase + H_MAGIC) | 0) !== HEAP_MAGIC)
      panic(`malloc: no heap at 0x${this.heapBase.toString(16)} (Malloc.init not run)`);
    if (mem.load32(heapBase + H_VERSION) !== HEAP_VERSION)
      panic(`malloc: heap at 0x${this.heapBase.toString(16)} has another layout version`);
    this.arena = mem.load32(heapBase + H_ARENA) >>> 0;
    this.limit = this.heapBase + (mem.load32(heapBase + H_MAX) >>> 0);
    this.#locking = options.locking ?? true;
  }

  // ---------------------------------------------------------------------------------------
  // Public API

  /** A 16-byte aligned block of at least n bytes (contents undefined), or 0 (ENOMEM, bad n). */
  malloc(n: number): number {
    if (!(n >= 1 && n <= MAX_ALLOC) || n !== Math.floor(n)) return 0;
    this.#lock();
    try {
      return n <= SMALL_MAX ? this.#mallocSmall(classOf(n)) : this.#mallocLarge(blockFor(n));
    } finally {
      this.#unlock();
    }
  }

  /**
   * Give back a block malloc returned. free(0) does nothing. Throws InvalidFreeError (and changes
   * nothing) on a pointer that is not a live block, as far as the check is cheap.
   */
  free(va: number): void {
    if (va === 0) return;
    const a = toVa(va);
    let r: number;
    this.#lock();
    try {
      r = this.#free(a);
    } finally {
      this.#unlock();
    }
    if (r !== OK) throw new InvalidFreeError("free", a >>> 0, VERDICT[r]);
  }

  /** n × size zeroed bytes, or 0 (ENOMEM, bad sizes, or n × size ≥ 2^31). */
  calloc(n: number, size: number): number {
    const bytes = n * size;
    if (!(n >= 1 && size >= 1) || !(bytes <= MAX_ALLOC)) return 0;
    const va = this.malloc(bytes);
    if (va !== 0) this.#zero(va, alignUp(bytes, 4));
    return va;
  }

  /**
   * Resize the block at va to n bytes, keeping its first min(old, n) bytes; returns the new
   * address (maybe va), or 0 with the old block untouched on ENOMEM or a bad n. realloc(0, n) is
   * malloc(n); realloc(va, 0) frees va and returns 0. A small block that still fits stays put;
   * a large one shrinks in place, or grows in place into a free neighbour or at the break.
   */
  realloc(va: number, n: number): number {
    if (va === 0) return this.malloc(n);
    if (n === 0) {
      this.free(va);
      return 0;
    }
    const a = toVa(va);
    const ok = n >= 1 && n <= MAX_ALLOC && n === Math.floor(n);
    let r: number;
    let old: number;
    this.#lock();
    try {
      r = this.#classify(a);
      old = r === OK ? this.#usable(a) : 0;
      if (r === OK && ok && this.#resizeInPlace(a, n)) return a;
    } finally {
      this.#unlock();
    }
    if (r !== OK) throw new InvalidFreeError("realloc", a >>> 0, VERDICT[r]);
    if (!ok) return 0;
    const nv = this.malloc(n);
    if (nv === 0) return 0;
    this.#copy(nv, a, Math.min(old, alignUp(n, 4)));
    this.free(a);
    return nv;
  }

  /** Bytes usable at va (≥ what was asked). Throws InvalidFreeError if va is not a live block. */
  usableSize(va: number): number {
    const a = toVa(va);
    let r: number;
    this.#lock();
    try {
      r = this.#classify(a);
      if (r === OK) return this.#usable(a);
    } finally {
      this.#unlock();
    }
    throw new InvalidFreeError("usableSize", a >>> 0, VERDICT[r]);
  }

  /** Release every empty slab (malloc keeps one per class); returns the bytes released. */
  trim(): number {
    this.#lock();
    try {
      let released = 0;
      const most = (this.#ld(this.heapBase + H_BRK) - this.arena) / PAGE; // slabs that can exist
      for (let c = 0; c < NCLASSES; c++) {
        let s = this.#ld(this.heapBase + H_PARTIAL + 4 * c);
        for (let n = 0; s !== 0; n++) {
          if (n > most) panic(`malloc: partial list of class ${c} loops`);
          const next = this.#ld(s + S_NEXT);
          if (this.#ld(s + S_USED) === 0) released += this.#releaseSlab(s, c);
          s = next;
        }
      }
      return released;
    } finally {
      this.#unlock();
    }
  }

  /** Figures of the heap, from a walk under the lock (O(blocks + bins)). */
  stats(): MallocStats {
    this.#lock();
    try {
      return this.#stats();
    } finally {
      this.#unlock();
    }
  }

  /**
   * Walk the whole heap under the lock and list every broken invariant (empty if sound): block
   * tiling, headers, check words, boundary tags, coalescing, bins and bitmaps, slabs, their free
   * lists and partial lists, and the page map.
   */
  check(): string[] {
    this.#lock();
    try {
      return this.#check();
    } finally {
      this.#unlock();
    }
  }

  // ---------------------------------------------------------------------------------------
  // The lock

  #lock(): void {
    if (!this.#locking) return;
    if (this.mem.cas32(this.heapBase + H_LOCK, 0, 1) !== 0) this.#lockSlow(); // claim: the heap
  }

  #lockSlow(): void {
    const mem = this.mem;
    const at = this.heapBase + H_LOCK;
    let backoff = 1;
    let naps = 0;
    for (let round = 1; ; round++) {
      // test: spin on reads (no cache-line ping-pong) for the back-off, then try once
      for (let i = 0; i < backoff && mem.load32(at) !== 0; i++);
      if (mem.load32(at) === 0 && mem.cas32(at, 0, 1) === 0) break; // claim: the heap
      if (backoff < MAX_BACKOFF) backoff *= 2;
      if (round % SPINS_BEFORE_NAP === 0) {
        Atomics.wait(this.#nap, 0, 0, NAP_MS); // nap: let a preempted holder run
        naps++;
      }
    }
    const base = this.heapBase;
    mem.store32(base + H_CONTENDED, mem.load32(base + H_CONTENDED) + 1);
    if (naps > 0) mem.store32(base + H_NAPS, mem.load32(base + H_NAPS) + naps);
  }

  #unlock(): void {
    if (!this.#locking) return;
    if (this.mem.cas32(this.heapBase + H_LOCK, 1, 0) !== 1) panic("malloc: unlock of a free lock"); // release: our writes to the heap
  }

  // ---------------------------------------------------------------------------------------
  // Small objects (lock held)

  #mallocSmall(c: number): number {
    const head = this.heapBase + H_PARTIAL + 4 * c;
    let s = this.#ld(head);
    if (s === 0) {
      s = this.#newSlab(c);
      if (s === 0) return 0;
    }
    const mem = this.mem;
    let f = this.#ld(s + S_FREE);
    if (f !== 0) {
      mem.store32(s + S_FREE, mem.load32(f));
      mem.store32(f + 4, 0); // clear the free tag
    } else {
      f = this.#ld(s + S_BUMP);
      mem.store32(s + S_BUMP, f + SIZES[c]);
    }
    const used = mem.load32(s + S_USED) + 1;
    mem.store32(s + S_USED, used);
    if (used === SLAB_OBJECTS[c]) {
      // full: off the partial list (it is the head)
      const next = this.#ld(s + S_NEXT);
      mem.store32(head, next);
      if (next !== 0) mem.store32(next + S_PREV, 0);
    }
    return f;
  }

  /** Free the small object va of slab s; a verdict. */
  #freeSmall(va: number, s: number): number {
    const mem = this.mem;
    const c = mem.load32(s + S_CLASS);
    const r = this.#checkSmall(va, s, c);
    if (r !== OK) return r;
    mem.store32(va, mem.load32(s + S_FREE));
    mem.store32(va + 4, (va ^ FREE_TAG) | 0);
    mem.store32(s + S_FREE, va);
    const used = mem.load32(s + S_USED) - 1;
    mem.store32(s + S_USED, used);
    if (used === SLAB_OBJECTS[c] - 1) this.#pushPartial(s, c);
    else if (used === 0) {
      // empty: release it, unless it is the only slab of its class with room
      const head = this.#ld(this.heapBase + H_PARTIAL + 4 * c);
      if (head !== s || this.#ld(s + S_NEXT) !== 0) this.#releaseSlab(s, c);
    }
    return OK;
  }

  /** Whether va is a live object of slab s (class c): OK or a verdict. Three loads at most. */
  #checkSmall(va: number, s: number, c: number): number {
    if (!(c >= 0 && c < NCLASSES)) panic(`malloc: slab 0x${s.toString(16)} has class ${c}`);
    const off = va - (s + SLAB_HDR);
    if (off < 0 || off % SIZES[c] !== 0) return E_INTERIOR;
    if (va >= this.#ld(s + S_BUMP)) return E_NOT_ALLOCATED;
    // the tag may be user data: only the free list can confirm a double free
    if ((this.mem.load32(va + 4) | 0) === ((va ^ FREE_TAG) | 0) && this.#onFreeList(s, c, va))
      return E_DOUBLE;
    return OK;
  }

  #onFreeList(s: number, c: number, va: number): boolean {
    let f = this.#ld(s + S_FREE);
    for (let n = 0; f !== 0 && n < SLAB_OBJECTS[c]; n++) {
      if (f === va) return true;
      f = this.#ld(f);
    }
    return false;
  }

  /** A new slab of class c on the head of its partial list, or 0 on ENOMEM. */
  #newSlab(c: number): number {
    const bytes = SLAB_PAGES[c] * PAGE;
    let b = this.#findAligned(bytes);
    if (b === 0) {
      const t = this.#topStart();
      b = this.#extend(this.#alignedStart(t) + bytes);
      if (b === 0) return 0;
    }
    const s = this.#alignedStart(b);
    this.#unlink(b, this.#size(b));
    this.#take(b, this.#size(b), s, bytes, SLAB);
    const mem = this.mem;
    mem.store32(s + S_CLASS, c);
    mem.store32(s + S_USED, 0);
    mem.store32(s + S_FREE, 0);
    mem.store32(s + S_BUMP, s + SLAB_HDR);
    this.#setMap(s, SLAB_PAGES[c], true);
    this.#pushPartial(s, c);
    return s;
  }

  /** Take the empty slab s off its partial list and free its block; returns its bytes. */
  #releaseSlab(s: number, c: number): number {
    this.#unlinkPartial(s, c);
    this.#setMap(s, SLAB_PAGES[c], false);
    const h = this.mem.load32(s);
    this.#freeBlock(s, h & ~FLAGS, h);
    return h & ~FLAGS;
  }

  #pushPartial(s: number, c: number): void {
    const mem = this.mem;
    const head = this.heapBase + H_PARTIAL + 4 * c;
    const h = this.#ld(head);
    mem.store32(s + S_NEXT, h);
    mem.store32(s + S_PREV, 0);
    if (h !== 0) mem.store32(h + S_PREV, s);
    mem.store32(head, s);
  }

  #unlinkPartial(s: number, c: number): void {
    const mem = this.mem;
    const next = this.#ld(s + S_NEXT);
    const prev = this.#ld(s + S_PREV);
    if (prev !== 0) mem.store32(prev + S_NEXT, next);
    else mem.store32(this.heapBase + H_PARTIAL + 4 * c, next);
    if (next !== 0) mem.store32(next + S_PREV, prev);
  }

  /** Mark (or clear) the `pages` pages of the slab at s in the page map. */
  #setMap(s: number, pages: number, on: boolean): void {
    const mem = this.mem;
    const p0 = (s - this.heapBase) >>> PAGE_SHIFT;
    for (let i = 0; i < pages; i++) {
      const p = p0 + i;
      const at = this.heapBase + H_MAP + 4 * (p >>> 3);
      const shift = 4 * (p & 7);
      const w = mem.load32(at) & ~(15 << shift);
      mem.store32(at, on ? w | ((i + 1) << shift) : w);
    }
  }

  /** The slab whose page holds va (va inside [arena, break)), or 0 if none. */
  #slabOf(va: number): number {
    const p = (va - this.heapBase) >>> PAGE_SHIFT;
    const w = this.mem.load32(this.heapBase + H_MAP + 4 * (p >>> 3));
    const nib = (w >>> (4 * (p & 7))) & 15;
    return nib === 0 ? 0 : this.heapBase + (p - nib + 1) * PAGE;
  }

  // ---------------------------------------------------------------------------------------
  // Large blocks (lock held)

  #mallocLarge(need: number): number {
    let b = this.#findFit(need);
    if (b === 0) {
      b = this.#extend(this.#topStart() + need);
      if (b === 0) return 0;
    }
    const size = this.#size(b);
    this.#unlink(b, size);
    this.#take(b, size, b, need, 0);
    return b + HDR;
  }

  /** Check and free va; a verdict. */
  #free(va: number): number {
    if (va < 0 || va % MALLOC_ALIGN !== 0) return E_MISALIGNED;
    if (va < this.arena + HDR || va >= this.#ld(this.heapBase + H_BRK)) return E_OUTSIDE;
    const s = this.#slabOf(va);
    if (s !== 0) return this.#freeSmall(va, s);
    const r = this.#checkLarge(va);
    if (r !== OK) return r;
    const b = va - HDR;
    const h = this.mem.load32(b);
    this.#freeBlock(b, h & ~FLAGS, h);
    return OK;
  }

  /** Whether va is a live block: OK or a verdict (the checks free makes, changing nothing). */
  #classify(va: number): number {
    if (va < 0 || va % MALLOC_ALIGN !== 0) return E_MISALIGNED;
    if (va < this.arena + HDR || va >= this.#ld(this.heapBase + H_BRK)) return E_OUTSIDE;
    const s = this.#slabOf(va);
    if (s !== 0) return this.#checkSmall(va, s, this.mem.load32(s + S_CLASS));
    return this.#checkLarge(va);
  }

  /** Whether va is the user pointer of a live large block: OK or a verdict. */
  #checkLarge(va: number): number {
    const b = va - HDR;
    const h = this.mem.load32(b);
    const size = h & ~FLAGS;
    if ((this.mem.load32(b + 4) | 0) !== checkWord(b, size) || (h & SLAB) !== 0) return E_NOT_BLOCK;
    return (h & INUSE) === 0 ? E_DOUBLE : OK;
  }

  /** Usable bytes of the live block va (classified OK). */
  #usable(va: number): number {
    const s = this.#slabOf(va);
    if (s !== 0) return SIZES[this.mem.load32(s + S_CLASS)];
    return this.#size(va - HDR) - HDR;
  }

  /** Try to make the live block va hold n bytes without moving it. */
  #resizeInPlace(va: number, n: number): boolean {
    const s = this.#slabOf(va);
    if (s !== 0) return n <= SIZES[this.mem.load32(s + S_CLASS)];
    const b = va - HDR;
    const need = blockFor(n);
    let size = this.#size(b);
    if (need > size) {
      // grow into the next block if it is free; if it is the top (or b is), grow the heap first
      const h = this.mem.load32(b);
      const next = b + size;
      if (next === this.#ld(this.heapBase + H_BRK)) {
        if (this.#extend(b + need) === 0) return false;
      } else {
        const nh = this.mem.load32(next);
        if ((nh & INUSE) !== 0) return false;
        const nsize = nh & ~FLAGS;
        if (size + nsize < need) {
          if (next + nsize !== this.#ld(this.heapBase + H_BRK)) return false;
          if (this.#extend(b + need) === 0) return false;
        }
      }
      // now `next` is a free block and b + its size covers need
      const nsize = this.#size(next);
      this.#unlink(next, nsize);
      this.#take(b, size + nsize, b, need, h & (SLAB | PREV_INUSE), true);
      return true;
    }
    if (size - need >= MIN_BLOCK) {
      // shrink: cut the tail off as a free block (it coalesces with a free successor)
      const h = this.mem.load32(b);
      this.#writeHeader(b, need, (h & FLAGS) | INUSE);
      size -= need;
      this.#writeHeader(b + need, size, INUSE | PREV_INUSE);
      this.#freeBlock(b + need, size, INUSE | PREV_INUSE);
    }
    return true;
  }

  /**
   * Carve [s, s+size) out of the unlinked free block [b, b+bsize) for an in-use block with
   * `flags` (SLAB or 0): the front gap (0 or ≥ MIN_BLOCK) and the tail (if ≥ MIN_BLOCK) become
   * free blocks; a smaller tail stays with the new block. `merged` says that b is an in-use
   * block being grown (realloc), whose own PREV_INUSE bit is in `flags`.
   */
  #take(b: number, bsize: number, s: number, size: number, flags: number, merged = false): void {
    const front = s - b;
    let tail = b + bsize - (s + size);
    let alloc = size;
    if (tail < MIN_BLOCK) {
      alloc += tail;
      tail = 0;
    }
    if (front > 0) {
      this.#writeHeader(b, front, PREV_INUSE);
      this.mem.store32(b + front - 4, front);
      this.#insert(b, front);
    }
    const prev = merged ? flags & PREV_INUSE : front > 0 ? 0 : PREV_INUSE;
    this.#writeHeader(s, alloc, (flags & SLAB) | INUSE | prev);
    const after = s + alloc;
    if (tail > 0) {
      this.#writeHeader(after, tail, PREV_INUSE);
      this.mem.store32(after + tail - 4, tail);
      this.#insert(after, tail);
      // the block after the tail already has PREV_INUSE clear (it followed a free block)
    } else this.#setNextPrev(after, true);
  }

  /**
   * Free the block [b, b+size) whose header word is h (in use, or about to be), coalescing with
   * free neighbours, and put the result in its bin.
   */
  #freeBlock(b: number, size: number, h: number): void {
    const mem = this.mem;
    let start = b;
    let total = size;
    if ((h & PREV_INUSE) === 0) {
      const psize = mem.load32(b - 4);
      start = b - psize;
      if (
        psize < MIN_BLOCK ||
        start < this.arena ||
        (mem.load32(start + 4) | 0) !== checkWord(start, psize)
      )
        panic(`malloc: bad footer ${psize} before block 0x${b.toString(16)}`);
      this.#unlink(start, psize);
      total += psize;
    }
    const next = b + size;
    const brk = this.#ld(this.heapBase + H_BRK);
    if (next === brk) mem.store32(this.heapBase + H_TOP_FREE, 1);
    else {
      const nh = mem.load32(next);
      if ((nh & INUSE) === 0) {
        const nsize = nh & ~FLAGS;
        this.#unlink(next, nsize);
        total += nsize;
      } else mem.store32(next, nh & ~PREV_INUSE);
    }
    this.#writeHeader(start, total, PREV_INUSE);
    mem.store32(start + total - 4, total);
    this.#insert(start, total);
  }

  /** Set or clear PREV_INUSE of the block at va (the top-free flag if va is the break). */
  #setNextPrev(va: number, inuse: boolean): void {
    const mem = this.mem;
    if (va === this.#ld(this.heapBase + H_BRK)) {
      mem.store32(this.heapBase + H_TOP_FREE, inuse ? 0 : 1);
      return;
    }
    const h = mem.load32(va);
    mem.store32(va, inuse ? h | PREV_INUSE : h & ~PREV_INUSE);
  }

  #writeHeader(b: number, size: number, bits: number): void {
    this.mem.store32(b, size | bits);
    this.mem.store32(b + 4, checkWord(b, size));
  }

  /** Where the top free block starts, or the break if the last block is in use. */
  #topStart(): number {
    const brk = this.#ld(this.heapBase + H_BRK);
    if (this.mem.load32(this.heapBase + H_TOP_FREE) === 0) return brk;
    return brk - this.mem.load32(brk - 4);
  }

  /** The first page-aligned address in a free block at b that leaves a front gap of 0 or ≥ 32. */
  #alignedStart(b: number): number {
    const s = alignUp(b, PAGE);
    return s - b === HDR ? s + PAGE : s;
  }

  /**
   * Grow the heap so that the top free block reaches `end` (and usually GROW_STEP more); returns
   * the top free block (in its bin), or 0 on ENOMEM with nothing changed.
   */
  #extend(end: number): number {
    const mem = this.mem;
    const base = this.heapBase;
    const brk = this.#ld(base + H_BRK);
    const want = alignUp(end - brk, PAGE);
    if (want <= 0) return this.#topStart();
    if (brk + want > this.limit) return 0;
    let grow = Math.min(Math.max(want, GROW_STEP), this.limit - brk);
    let old = mem.sbrk(grow);
    if (old < 0 && grow > want) {
      grow = want;
      old = mem.sbrk(grow);
    }
    if (old < 0) return 0;
    if (old >>> 0 !== brk)
      panic(`malloc: the break moved under the heap (0x${(old >>> 0).toString(16)})`);
    mem.store32(base + H_SBRKS, mem.load32(base + H_SBRKS) + 1);
    const topFree = mem.load32(base + H_TOP_FREE) !== 0;
    let t = brk;
    let size = grow;
    if (topFree) {
      const tsize = mem.load32(brk - 4);
      t = brk - tsize;
      this.#unlink(t, tsize);
      size += tsize;
    }
    mem.store32(base + H_BRK, brk + grow);
    this.#writeHeader(t, size, PREV_INUSE);
    mem.store32(t + size - 4, size);
    this.#insert(t, size);
    mem.store32(base + H_TOP_FREE, 1);
    return t;
  }

  /** A free block (still in its bin) of at least `need` bytes, or 0. */
  #findFit(need: number): number {
    const mem = this.mem;
    const base = this.heapBase;
    // the head of need's own bin may fit even though the bin is not sure to
    const own = this.#ld(base + H_BINS + 4 * binOf(need));
    if (own !== 0 && this.#size(own) >= need) return own;
    // round up to the next bin boundary: every block from there on fits (TLSF mapping_search)
    const r = need + (1 << (31 - Math.clz32(need) - SL_SHIFT)) - 1;
    const fl = 31 - Math.clz32(r);
    if (fl - FL_MIN >= FL_COUNT) return 0;
    let fli = fl - FL_MIN;
    const sli = (r >>> (fl - SL_SHIFT)) & (SL_COUNT - 1);
    let sl = mem.load32(base + H_SL + 4 * fli) & (-1 << sli);
    if (sl === 0) {
      const flmap = fli + 1 < 32 ? mem.load32(base + H_FL) & (-1 << (fli + 1)) : 0;
      if (flmap === 0) return 0;
      fli = ctz(flmap);
      sl = mem.load32(base + H_SL + 4 * fli);
    }
    return this.#ld(base + H_BINS + 4 * (fli * SL_COUNT + ctz(sl)));
  }

  /** A free block (still in its bin) that holds a page-aligned run of `bytes`, or 0. */
  #findAligned(bytes: number): number {
    // a few blocks of the exact bin first (a released slab leaves a perfect hole)
    let b = this.#ld(this.heapBase + H_BINS + 4 * binOf(bytes));
    for (let n = 0; b !== 0 && n < 4; n++) {
      if (this.#alignedStart(b) + bytes <= b + this.#size(b)) return b;
      b = this.#ld(b + 8);
    }
    return this.#findFit(bytes + PAGE + HDR);
  }

  #insert(b: number, size: number): void {
    const mem = this.mem;
    const base = this.heapBase;
    const bin = binOf(size);
    const at = base + H_BINS + 4 * bin;
    const head = this.#ld(at);
    mem.store32(b + 8, head);
    mem.store32(b + 12, 0);
    if (head !== 0) mem.store32(head + 12, b);
    else {
      const fli = bin >>> SL_SHIFT;
      mem.store32(base + H_SL + 4 * fli, mem.load32(base + H_SL + 4 * fli) | (1 << (bin & 7)));
      mem.store32(base + H_FL, mem.load32(base + H_FL) | (1 << fli));
    }
    mem.store32(at, b);
  }

  #unlink(b: number, size: number): void {
    const mem = this.mem;
    const base = this.heapBase;
    const next = this.#ld(b + 8);
    const prev = this.#ld(b + 12);
    if (next !== 0) mem.store32(next + 12, prev);
    if (prev !== 0) {
      mem.store32(prev + 8, next);
      return;
    }
    const bin = binOf(size);
    mem.store32(base + H_BINS + 4 * bin, next);
    if (next === 0) {
      const fli = bin >>> SL_SHIFT;
      const sl = mem.load32(base + H_SL + 4 * fli) & ~(1 << (bin & 7));
      mem.store32(base + H_SL + 4 * fli, sl);
      if (sl === 0) mem.store32(base + H_FL, mem.load32(base + H_FL) & ~(1 << fli));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Helpers

  /** A word as an unsigned number (addresses). */
  #ld(va: number): number {
    return this.mem.load32(va) >>> 0;
  }

  #size(b: number): number {
    return this.mem.load32(b) & ~FLAGS;
  }

  /** Zero `bytes` (a multiple of 4) at va: a block this core owns, outside the lock. */
  #zero(va: number, bytes: number): void {
    const mem = this.mem;
    for (let i = 0; i < bytes; i += 4) mem.store32(va + i, 0);
  }

  #copy(dst: number, src: number, bytes: number): void {
    const mem = this.mem;
    if (mem.copy !== undefined) mem.copy(dst, src, bytes);
    else for (let i = 0; i < bytes; i += 4) mem.store32(dst + i, mem.load32(src + i));
  }

  // ---------------------------------------------------------------------------------------
  // Walks: stats and check (lock held)

  #stats(): MallocStats {
    const mem = this.mem;
    const base = this.heapBase;
    const brk = this.#ld(base + H_BRK);
    let allocatedBytes = 0;
    let allocations = 0;
    let freeBytes = 0;
    let freeBlocks = 0;
    let largestFreeBlock = 0;
    let slabs = 0;
    let emptySlabs = 0;
    let slabFreeBytes = 0;
    for (let b = this.arena; b < brk; ) {
      const h = mem.load32(b);
      const size = h & ~FLAGS;
      if (size < MIN_BLOCK) break; // corrupt: check() says so
      if ((h & INUSE) === 0) {
        freeBytes += size;
        freeBlocks++;
        largestFreeBlock = Math.max(largestFreeBlock, size);
      } else if ((h & SLAB) !== 0) {
        const c = mem.load32(b + S_CLASS);
        const used = mem.load32(b + S_USED);
        slabs++;
        if (used === 0) emptySlabs++;
        allocations += used;
        if (c >= 0 && c < NCLASSES) {
          allocatedBytes += used * SIZES[c];
          slabFreeBytes += (SLAB_OBJECTS[c] - used) * SIZES[c];
        }
      } else {
        allocations++;
        allocatedBytes += size - HDR;
      }
      b += size;
    }
    return {
      heapBytes: brk - base,
      headerBytes: this.arena - base,
      allocatedBytes,
      allocations,
      freeBytes,
      freeBlocks,
      largestFreeBlock,
      slabs,
      emptySlabs,
      slabFreeBytes,
      lockContended: mem.load32(base + H_CONTENDED),
      lockNaps: mem.load32(base + H_NAPS),
      sbrkCalls: mem.load32(base + H_SBRKS),
    };
  }

  #check(): string[] {
    const out: string[] = [];
    const mem = this.mem;
    const base = this.heapBase;
    const hex = (v: number): string => `0x${(v >>> 0).toString(16)}`;
    const brk = this.#ld(base + H_BRK);
    if ((mem.load32(base + H_MAGIC) | 0) !== HEAP_MAGIC) out.push("header: bad magic");
    if (brk < this.arena || brk > this.limit || brk % PAGE !== 0)
      return [...out, `header: break ${hex(brk)} outside [arena, limit] or not page-aligned`];

    // 1. walk the blocks
    const free = new Map<number, number>(); // free block → size
    const slabs = new Map<number, number>(); // slab → class
    const slabPage = new Map<number, number>(); // page index → expected nibble
    let prevInuse = true;
    let prevFree = false;
    let last = -1;
    for (let b = this.arena; b < brk; ) {
      const h = mem.load32(b);
      const size = h & ~FLAGS;
      const at = `block ${hex(b)}`;
      if (size < MIN_BLOCK || size % MALLOC_ALIGN !== 0 || b + size > brk) {
        out.push(`${at}: bad size ${size} (break ${hex(brk)}); walk stopped`);
        return out;
      }
      if ((mem.load32(b + 4) | 0) !== checkWord(b, size)) out.push(`${at}: bad check word`);
      if (((h & PREV_INUSE) !== 0) !== prevInuse)
        out.push(
          `${at}: PREV_INUSE is ${(h & PREV_INUSE) !== 0}, previous block in use: ${prevInuse}`,
        );
      const inuse = (h & INUSE) !== 0;
      if (!inuse) {
        if (prevFree) out.push(`${at}: free block after a free block (not coalesced)`);
        if ((h & SLAB) !== 0) out.push(`${at}: free block with SLAB set`);
        if (mem.load32(b + size - 4) !== size)
          out.push(`${at}: footer ${mem.load32(b + size - 4)} ≠ size ${size}`);
        free.set(b, size);
      } else if ((h & SLAB) !== 0) {
        this.#checkSlab(b, size, out, slabs, slabPage);
      }
      prevInuse = inuse;
      prevFree = !inuse;
      last = b;
      b += size;
    }
    const topFree = mem.load32(base + H_TOP_FREE) !== 0;
    if (topFree !== (last >= 0 && free.has(last)))
      out.push(`header: topFree is ${topFree}, last block free: ${last >= 0 && free.has(last)}`);

    // 2. bins and bitmaps: every free block exactly once, in its bin
    let listed = 0;
    const flmap = mem.load32(base + H_FL);
    for (let fli = 0; fli < FL_COUNT; fli++) {
      const slmap = mem.load32(base + H_SL + 4 * fli);
      if ((slmap !== 0) !== ((flmap & (1 << fli)) !== 0))
        out.push(`bins: first-level bit ${fli} disagrees with its second-level map`);
      for (let sli = 0; sli < SL_COUNT; sli++) {
        const bin = fli * SL_COUNT + sli;
        let b = this.#ld(base + H_BINS + 4 * bin);
        if ((b !== 0) !== ((slmap & (1 << sli)) !== 0))
          out.push(`bins: bitmap bit of bin ${bin} disagrees with its list`);
        let prev = 0;
        for (let n = 0; b !== 0; n++) {
          const size = free.get(b);
          if (size === undefined) {
            out.push(`bin ${bin}: ${hex(b)} is not a free block`);
            break;
          }
          if (binOf(size) !== bin)
            out.push(`bin ${bin}: block ${hex(b)} of ${size} bytes belongs in bin ${binOf(size)}`);
          if (this.#ld(b + 12) !== prev) out.push(`bin ${bin}: bad prev link at ${hex(b)}`);
          if (n > free.size) {
            out.push(`bin ${bin}: list loops`);
            break;
          }
          listed++;
          prev = b;
          b = this.#ld(b + 8);
        }
      }
    }
    if (listed !== free.size)
      out.push(`bins: ${listed} listed, ${free.size} free blocks in the heap`);

    // 3. partial lists: exactly the slabs with room, each on its class's list
    let onLists = 0;
    for (let c = 0; c < NCLASSES; c++) {
      let s = this.#ld(base + H_PARTIAL + 4 * c);
      let prev = 0;
      for (let n = 0; s !== 0; n++) {
        if (slabs.get(s) !== c) {
          out.push(`partial list ${c}: ${hex(s)} is not a slab of class ${c}`);
          break;
        }
        if (mem.load32(s + S_USED) >= SLAB_OBJECTS[c])
          out.push(`partial list ${c}: slab ${hex(s)} is full`);
        if (this.#ld(s + S_PREV) !== prev)
          out.push(`partial list ${c}: bad prev link at ${hex(s)}`);
        if (n > slabs.size) {
          out.push(`partial list ${c}: list loops`);
          break;
        }
        onLists++;
        prev = s;
        s = this.#ld(s + S_NEXT);
      }
    }
    let withRoom = 0;
    for (const [s, c] of slabs) if (mem.load32(s + S_USED) < SLAB_OBJECTS[c]) withRoom++;
    if (onLists !== withRoom)
      out.push(`partial lists: ${onLists} listed, ${withRoom} slabs have room`);

    // 4. the page map: slab pages say where their slab starts, all other pages say 0
    const pages = (brk - base) >>> PAGE_SHIFT;
    for (let p = 0; p < pages; p++) {
      const w = mem.load32(base + H_MAP + 4 * (p >>> 3));
      const nib = (w >>> (4 * (p & 7))) & 15;
      const want = slabPage.get(p) ?? 0;
      if (nib !== want)
        out.push(`page map: page ${hex(base + p * PAGE)} says ${nib}, want ${want}`);
    }
    return out;
  }

  #checkSlab(
    s: number,
    size: number,
    out: string[],
    slabs: Map<number, number>,
    slabPage: Map<number, number>,
  ): void {
    const mem = this.mem;
    const at = `slab 0x${s.toString(16)}`;
    const c = mem.load32(s + S_CLASS);
    if (!(c >= 0 && c < NCLASSES)) {
      out.push(`${at}: bad class ${c}`);
      return;
    }
    slabs.set(s, c);
    const pages = SLAB_PAGES[c];
    const obj = SIZES[c];
    const first = s + SLAB_HDR;
    const end = first + SLAB_OBJECTS[c] * obj;
    if (s % PAGE !== 0) out.push(`${at}: not page-aligned`);
    if (size < pages * PAGE || size >= pages * PAGE + MIN_BLOCK)
      out.push(`${at}: block of ${size} bytes for ${pages} pages`);
    const p0 = (s - this.heapBase) >>> PAGE_SHIFT;
    for (let i = 0; i < pages; i++) slabPage.set(p0 + i, i + 1);
    const bump = this.#ld(s + S_BUMP);
    if (bump < first || bump > end || (bump - first) % obj !== 0) {
      out.push(`${at}: bad bump ${bump.toString(16)}`);
      return;
    }
    const carved = (bump - first) / obj;
    const used = mem.load32(s + S_USED);
    const seen = new Set<number>();
    let f = this.#ld(s + S_FREE);
    while (f !== 0) {
      if (f < first || f >= bump || (f - first) % obj !== 0) {
        out.push(`${at}: free object 0x${f.toString(16)} is not a carved object`);
        break;
      }
      if (seen.has(f)) {
        out.push(`${at}: free list loops at 0x${f.toString(16)}`);
        break;
      }
      if ((mem.load32(f + 4) | 0) !== ((f ^ FREE_TAG) | 0))
        out.push(`${at}: free object 0x${f.toString(16)} lost its tag (written after free?)`);
      seen.add(f);
      f = this.#ld(f);
    }
    if (used < 0 || used !== carved - seen.size)
      out.push(`${at}: ${used} in use, but ${carved} carved and ${seen.size} free`);
  }
}

/** va as a uint32 address if it is one (uint32 or int32 form), else -1. */
function toVa(va: number): number {
  return va >>> 0 === va || (va | 0) === va ? va >>> 0 : -1;
}

// ---------------------------------------------------------------------------------------------
// A HeapMemory over a typed array

/** Options of {@link ArrayHeapMemory}. */
export interface ArrayHeapOptions {
  /** Use Atomics for every access (memory shared between threads); default: plain accesses. */
  readonly atomic?: boolean;
}

/**
 * A HeapMemory over an Int32Array (plain or over a SharedArrayBuffer), with no MMU: the heap's
 * virtual address `base` is byte 4096 of the array. Word 0 of the array holds the break (bytes
 * past `base`), so every ArrayHeapMemory over the same SharedArrayBuffer shares one break.
 * Accesses outside [base, break) or misaligned panic: an allocator that strays is caught.
 * For tests, benchmarks, and heaps that live outside any address space.
 */
export class ArrayHeapMemory implements HeapMemory {
  readonly i32: Int32Array;
  readonly base: number;
  readonly atomic: boolean;
  /** Bytes the heap can grow to. */
  readonly capacity: number;
  /** This thread's copy of the break (it only grows, so a stale copy is only too small). */
  #brk = 0;

  constructor(i32: Int32Array, base: number, options: ArrayHeapOptions = {}) {
    this.i32 = i32;
    this.base = base;
    this.atomic = options.atomic ?? false;
    this.capacity = i32.byteLength - PAGE;
  }

  /** A fresh array of `bytes` of heap (plus the control page), shared if `shared`. */
  static create(bytes: number, shared: boolean): Int32Array {
    const n = PAGE + alignUp(bytes, PAGE);
    return new Int32Array(shared ? new SharedArrayBuffer(n) : new ArrayBuffer(n));
  }

  /** The current break, as a virtual address. */
  get brk(): number {
    return this.base + (this.atomic ? Atomics.load(this.i32, 0) : this.i32[0]); // load: the shared break
  }

  load32(va: number): number {
    const i = this.#index(va);
    return this.atomic ? Atomics.load(this.i32, i) : this.i32[i]; // load: heap word
  }

  store32(va: number, v: number): void {
    const i = this.#index(va);
    if (this.atomic)
      Atomics.store(this.i32, i, v); // publish: heap word
    else this.i32[i] = v;
  }

  cas32(va: number, expect: number, v: number): number {
    const i = this.#index(va);
    if (this.atomic) return Atomics.compareExchange(this.i32, i, expect, v); // claim: lock or word
    const old = this.i32[i];
    if (old === (expect | 0)) this.i32[i] = v;
    return old;
  }

  sbrk(bytes: number): number {
    if (bytes % PAGE !== 0 || bytes < 0) panic(`heap memory: sbrk(${bytes}) not whole pages`);
    const old = this.atomic ? Atomics.load(this.i32, 0) : this.i32[0]; // load: the shared break
    if (old + bytes > this.capacity) return -ENOMEM;
    // pages past the break were never handed out, so they are still zero
    if (this.atomic)
      Atomics.store(this.i32, 0, old + bytes); // publish: the new break
    else this.i32[0] = old + bytes;
    this.#brk = old + bytes;
    return this.base + old;
  }

  copy(dst: number, src: number, bytes: number): void {
    if (bytes === 0) return;
    this.#index(dst + bytes - 4);
    this.#index(src + bytes - 4);
    const d = this.#index(dst);
    const s = this.#index(src);
    this.i32.copyWithin(d, s, s + bytes / 4);
  }

  #index(va: number): number {
    const off = va - this.base;
    if (off < 0 || off % 4 !== 0 || off >= this.#brk) {
      if (off >= 0 && off % 4 === 0) {
        this.#brk = this.atomic ? Atomics.load(this.i32, 0) : this.i32[0]; // load: the shared break
        if (off < this.#brk) return PAGE / 4 + off / 4;
      }
      panic(`heap memory: access at 0x${(va >>> 0).toString(16)} outside the heap or misaligned`);
    }
    return PAGE / 4 + off / 4;
  }
}
