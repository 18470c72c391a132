/**
 * physmem: the machine's physical memory — one SharedArrayBuffer cut into 4 KiB frames — the
 * frame allocator that hands frames out, and the frame pools granted to cores.
 *
 * Owns: the frame size and frame numbering; {@link PhysicalMemory}, the views over the whole
 * buffer that every thread makes once; {@link FrameAllocator}, the machine-wide bitmap of used
 * frames; {@link FramePool}, a set of frames granted to one core (XOS spatial partitioning) that
 * the core allocates from locally, with no lock and no call to the hypervisor.
 *
 * Physical memory map (frame n is the bytes [n * 4096, (n + 1) * 4096) of the buffer):
 *
 *   byte 0                                                                 sab.byteLength
 *   ┌─────────────────────────────────┬──────────────────────────────────────────────────┐
 *   │ boot regions (src/shm Arena)    │ allocatable frames [first, end)                  │
 *   │ rings, ready queues, wake words,│ page directories, page tables, process memory,   │
 *   │ allocator bitmap, frame pools,  │ DMA buffers, frames granted to pools             │
 *   │ shootdown board, …              │ (handed out by the FrameAllocator only)          │
 *   └─────────────────────────────────┴──────────────────────────────────────────────────┘
 *   frames 0 … first-1: laid out once at boot,   first = ceil(arena.used / 4096)
 *   never allocated or freed
 *
 *   FrameAllocator at byte `off` (a region of the boot arena):
 *     off +  0  line H   magic, frames, first, end, free, hint     written by the hypervisor
 *     off + 64  bitmap   one bit per frame 0 … frames-1, 1 = used  written by the hypervisor
 *               (frames outside [first, end) and the padding bits of the last word stay 1)
 *
 *   FramePool at byte `off` (one per core):
 *     off +   0  line H  magic, capacity, owned                    written by the hypervisor
 *     off +  64  line G  grantTail                                 written by the hypervisor
 *     off + 128  line C  grantHead, top, allocs, frees             written by the owning core
 *     off + 192  inbox   capacity × int32: granted frames, not yet taken (SPSC ring hv → core)
 *     …          stack   capacity × int32: the core's free frames, [0, top)
 *
 * Invariants: a frame is in exactly one of: free in the bitmap; used (held by whoever allocated
 * it, which may be a pool). Freeing a free frame or a frame outside [first, end) is a broken
 * invariant: `panic("physmem: …")`. Running out is not: alloc returns -ENOMEM, as every call
 * inside the machine returns -errno.
 *
 * Who may call: anyone may read through PhysicalMemory's views. The FrameAllocator's alloc/free
 * run on the hypervisor thread only (one writer; other threads may read `freeFrames` and
 * `isAllocated` for statistics). A FramePool's grant/reclaim run on the hypervisor, its
 * alloc/free on the owning core only.
 */

import { EINVAL, ENOMEM, ENOSPC } from "../abi/errno.js";
import { checkInteger, checkPowerOfTwo, InvalidArgumentError, panic } from "../errors.js";
import { type Arena, alignUp, CACHE_LINE } from "../shm/layout.js";

/** log2 of the frame (and page) size. */
export const PAGE_SHIFT = 12;
/** Bytes in one frame / page. */
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Mask of the offset bits of an address inside its page. */
export const PAGE_MASK = PAGE_SIZE - 1;
/** Int32 words in one frame (a page table holds this many entries). */
export const PAGE_WORDS = PAGE_SIZE / 4;
/** Largest physical memory a 20-bit frame number can name: 4 GiB. */
export const MAX_PHYS_BYTES = 2 ** 32;

/**
 * Something frames can be taken from and given back to: the machine-wide allocator on the
 * hypervisor, or a core's pool on that core. The MMU takes its page-table frames from one.
 */
export interface FrameSource {
  /** A frame number, or -ENOMEM when none is left. The frame's contents are undefined. */
  alloc(): number;
  /** Give a frame back. Panics on a frame this source did not hand out (double free). */
  free(frame: number): void;
}

/**
 * The machine's physical memory: views over the whole buffer, made once per thread.
 * Every thread that touches memory (hypervisor, domains, cores) makes one of these at start.
 */
export class PhysicalMemory {
  readonly sab: SharedArrayBuffer;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly dv: DataView;
  /** Size in bytes, a multiple of {@link PAGE_SIZE}. */
  readonly bytes: number;
  /** Number of frames: frame numbers are 0 … frames-1. */
  readonly frames: number;

  constructor(sab: SharedArrayBuffer) {
    const bytes = sab.byteLength;
    if (bytes < PAGE_SIZE || bytes % PAGE_SIZE !== 0 || bytes > MAX_PHYS_BYTES) {
      throw new InvalidArgumentError(
        `physical memory must be a whole number of ${PAGE_SIZE}-byte frames up to 4 GiB, got ${bytes} bytes`,
      );
    }
    this.sab = sab;
    this.u8 = new Uint8Array(sab);
    this.i32 = new Int32Array(sab);
    this.dv = new DataView(sab);
    this.bytes = bytes;
    this.frames = bytes / PAGE_SIZE;
  }

  /** Allocate a fresh physical memory of `bytes` (boot, tests). */
  static create(bytes: number): PhysicalMemory {
    checkInteger("memory bytes", bytes, PAGE_SIZE, MAX_PHYS_BYTES);
    return new PhysicalMemory(new SharedArrayBuffer(bytes));
  }

  /** True if `frame` names a frame of this memory. */
  hasFrame(frame: number): boolean {
    return Number.isInteger(frame) && frame >= 0 && frame < this.frames;
  }

  /** Byte address of the first byte of `frame`. */
  frameAddress(frame: number): number {
    return frame * PAGE_SIZE;
  }

  /** Int32 index (in `i32`) of the first word of `frame`. */
  frameWord(frame: number): number {
    return frame * PAGE_WORDS;
  }

  /** Fill `frame` with zeros. Panics on a frame outside memory. */
  zeroFrame(frame: number): void {
    if (!this.hasFrame(frame)) panic(`physmem: zero of frame ${frame} outside memory`);
    const at = frame * PAGE_SIZE;
    this.u8.fill(0, at, at + PAGE_SIZE);
  }

  /** Copy the whole of frame `src` into frame `dst` (copy-on-write breaks use this). */
  copyFrame(dst: number, src: number): void {
    if (!this.hasFrame(dst) || !this.hasFrame(src))
      panic(`physmem: copy ${src} → ${dst} outside memory`);
    const at = src * PAGE_SIZE;
    this.u8.copyWithin(dst * PAGE_SIZE, at, at + PAGE_SIZE);
  }

  /** A byte view of one frame (allocates a view: not for hot paths). */
  frameBytes(frame: number): Uint8Array {
    if (!this.hasFrame(frame)) panic(`physmem: view of frame ${frame} outside memory`);
    return this.u8.subarray(frame * PAGE_SIZE, (frame + 1) * PAGE_SIZE);
  }
}

/** The first frame wholly past everything an arena has laid out: where allocatable frames start. */
export function firstFrameAfter(arena: Arena): number {
  return Math.ceil(arena.used / PAGE_SIZE);
}

// ---------------------------------------------------------------------------------------------
// FrameAllocator

/** Names the allocator's region across threads: plain data, safe in workerData. */
export interface FrameAllocatorDescriptor {
  /** Byte offset of the allocator's header. */
  readonly offset: number;
  /** Frames the bitmap covers: frame numbers 0 … frames-1 (the whole memory). */
  readonly frames: number;
}

// Word indexes in the allocator's header line (written by the hypervisor only).
const kaMagic = 0;
const kaFrames = 1;
const kaFirst = 2; // first allocatable frame
const kaEnd = 3; // one past the last allocatable frame
const kaFree = 4; // frames free now
const kaHint = 5; // bitmap word where the next search starts (next fit)
const ALLOC_MAGIC = 0x46524d41; // "FRMA"

/** Bytes the allocator's region takes for a memory of `frames` frames. */
export function frameAllocatorBytes(frames: number): number {
  return CACHE_LINE + alignUp(Math.ceil(frames / 32) * 4, CACHE_LINE);
}

/** Reserve the allocator's region in the boot arena (boot only; initialise it afterwards). */
export function layFrameAllocator(arena: Arena, frames: number): FrameAllocatorDescriptor {
  checkInteger("frames", frames, 1, MAX_PHYS_BYTES / PAGE_SIZE);
  const region = arena.alloc("physmem.allocator", frameAllocatorBytes(frames));
  return { offset: region.offset, frames };
}

/**
 * Write a fresh allocator: frames [first, end) free, every other frame used for good.
 * Hypervisor, at boot, after the arena is complete (first = {@link firstFrameAfter}(arena)).
 */
export function initFrameAllocator(
  mem: PhysicalMemory,
  desc: FrameAllocatorDescriptor,
  first: number,
  end: number = mem.frames,
): void {
  checkAllocatorDescriptor(mem, desc);
  checkInteger("first allocatable frame", first, 0, desc.frames);
  checkInteger("end of allocatable frames", end, first, desc.frames);
  if (desc.offset + frameAllocatorBytes(desc.frames) > first * PAGE_SIZE) {
    throw new InvalidArgumentError(
      `allocatable frames start at frame ${first}, inside the allocator's own region at byte ${desc.offset}`,
    );
  }
  const base = desc.offset / 4;
  const words = Math.ceil(desc.frames / 32);
  const i32 = mem.i32;
  i32.fill(-1, base + CACHE_LINE / 4, base + CACHE_LINE / 4 + words); // all used…
  for (let f = first; f < end; f++) {
    const w = base + CACHE_LINE / 4 + (f >>> 5);
    i32[w] = i32[w] & ~(1 << (f & 31)); // …but [first, end)
  }
  i32[base + kaFrames] = desc.frames;
  i32[base + kaFirst] = first;
  i32[base + kaEnd] = end;
  i32[base + kaFree] = end - first;
  i32[base + kaHint] = first >>> 5;
  Atomics.store(i32, base + kaMagic, ALLOC_MAGIC); // publish: the allocator is initialised
}

function checkAllocatorDescriptor(mem: PhysicalMemory, desc: FrameAllocatorDescriptor): void {
  checkInteger("allocator frames", desc.frames, 1, mem.frames);
  checkInteger("allocator offset", desc.offset, 0, mem.bytes);
  if (
    desc.offset % CACHE_LINE !== 0 ||
    desc.offset + frameAllocatorBytes(desc.frames) > mem.bytes
  ) {
    throw new InvalidArgumentError(
      `allocator region at byte ${desc.offset} is misaligned or overruns memory`,
    );
  }
}

/**
 * The machine-wide frame allocator: a bitmap in shared memory, next-fit search.
 *
 * Owner notes: header and bitmap are written by the hypervisor thread alone (alloc, free); each
 * write is an Atomics.store of a whole word so that readers on other threads (statistics, the
 * supervisor, a debugger) never see a torn word. No lock: there is one writer.
 */
export class FrameAllocator implements FrameSource {
  readonly mem: PhysicalMemory;
  readonly descriptor: FrameAllocatorDescriptor;
  /** First allocatable frame. */
  readonly first: number;
  /** One past the last allocatable frame. */
  readonly end: number;
  readonly #i32: Int32Array;
  readonly #hdr: number;
  readonly #map: number;
  readonly #words: number;

  constructor(mem: PhysicalMemory, desc: FrameAllocatorDescriptor) {
    checkAllocatorDescriptor(mem, desc);
    this.mem = mem;
    this.descriptor = desc;
    this.#i32 = mem.i32;
    this.#hdr = desc.offset / 4;
    this.#map = this.#hdr + CACHE_LINE / 4;
    this.#words = Math.ceil(desc.frames / 32);
    const magic = Atomics.load(this.#i32, this.#hdr + kaMagic); // load: published at init
    if (magic !== ALLOC_MAGIC) panic(`physmem: no frame allocator at byte ${desc.offset}`);
    this.first = this.#i32[this.#hdr + kaFirst];
    this.end = this.#i32[this.#hdr + kaEnd];
  }

  /** Frames free now (any thread; may be stale by the time it is read). */
  get freeFrames(): number {
    return Atomics.load(this.#i32, this.#hdr + kaFree); // load: statistics
  }

  /** Frames the allocator manages in all, [first, end). */
  get capacity(): number {
    return this.end - this.first;
  }

  /** True if `frame` is in use (allocated, or outside the allocatable range). Any thread. */
  isAllocated(frame: number): boolean {
    if (!this.mem.hasFrame(frame) || frame >= this.descriptor.frames) return true;
    const w = Atomics.load(this.#i32, this.#map + (frame >>> 5)); // load: one whole bitmap word
    return (w & (1 << (frame & 31))) !== 0;
  }

  /** One frame, or -ENOMEM. Hypervisor only. Contents are whatever its last owner left. */
  alloc(): number {
    const i32 = this.#i32;
    if (i32[this.#hdr + kaFree] === 0) return -ENOMEM;
    const words = this.#words;
    let w = i32[this.#hdr + kaHint];
    for (let n = 0; n < words; n++) {
      const v = i32[this.#map + w];
      if (v !== -1) {
        const bit = 31 - Math.clz32(~v & (v + 1)); // lowest clear bit
        Atomics.store(i32, this.#map + w, v | (1 << bit)); // publish: frame now used
        this.#addFree(-1);
        Atomics.store(i32, this.#hdr + kaHint, w); // publish: next search starts here
        return w * 32 + bit;
      }
      w = w + 1 === words ? 0 : w + 1;
    }
    return panic(`physmem: free count ${i32[this.#hdr + kaFree]} but no clear bit in the bitmap`);
  }

  /** A frame filled with zeros, or -ENOMEM. Hypervisor only. */
  allocZeroed(): number {
    const f = this.alloc();
    if (f >= 0) this.mem.zeroFrame(f);
    return f;
  }

  /**
   * `count` physically contiguous frames whose first frame number is a multiple of `align`
   * (first fit); returns the first frame, -ENOMEM when no such run is free, -EINVAL on a bad
   * count or alignment. Hypervisor only (DMA buffers, contiguous pool grants).
   */
  allocContiguous(count: number, align = 1): number {
    if (!Number.isInteger(count) || count < 1) return -EINVAL;
    if (!Number.isInteger(align) || align < 1 || (align & (align - 1)) !== 0) return -EINVAL;
    if (count > this.freeFrames) return -ENOMEM;
    let start = alignUp(this.first, align);
    while (start + count <= this.end) {
      const used = this.#lastUsedIn(start, count);
      if (used < 0) {
        for (let f = start; f < start + count; f++) this.#setBit(f);
        this.#addFree(-count);
        return start;
      }
      start = alignUp(used + 1, align);
    }
    return -ENOMEM;
  }

  /** Give `frame` back. Hypervisor only. Panics on a double free or a frame outside [first, end). */
  free(frame: number): void {
    this.#checkFreeable(frame);
    this.#clearBit(frame);
    this.#addFree(1);
  }

  /** Give back `count` frames starting at `first` (what allocContiguous handed out). */
  freeRange(first: number, count: number): void {
    for (let f = first; f < first + count; f++) this.#checkFreeable(f);
    for (let f = first; f < first + count; f++) this.#clearBit(f);
    this.#addFree(count);
  }

  #checkFreeable(frame: number): void {
    if (!Number.isInteger(frame) || frame < this.first || frame >= this.end) {
      panic(
        `physmem: free of frame ${frame} outside the allocatable frames [${this.first}, ${this.end})`,
      );
    }
    if ((this.#i32[this.#map + (frame >>> 5)] & (1 << (frame & 31))) === 0) {
      panic(`physmem: double free of frame ${frame}`);
    }
  }

  /** The highest used frame in [start, start+count), or -1 if all are free. */
  #lastUsedIn(start: number, count: number): number {
    for (let f = start + count - 1; f >= start; f--) {
      if ((this.#i32[this.#map + (f >>> 5)] & (1 << (f & 31))) !== 0) return f;
    }
    return -1;
  }

  #setBit(frame: number): void {
    const w = this.#map + (frame >>> 5);
    Atomics.store(this.#i32, w, this.#i32[w] | (1 << (frame & 31))); // publish: frame used
  }

  #clearBit(frame: number): void {
    const w = this.#map + (frame >>> 5);
    Atomics.store(this.#i32, w, this.#i32[w] & ~(1 << (frame & 31))); // publish: frame free
  }

  #addFree(delta: number): void {
    const at = this.#hdr + kaFree;
    Atomics.store(this.#i32, at, this.#i32[at] + delta); // publish: statistics for readers
  }
}

// ---------------------------------------------------------------------------------------------
// FramePool

/** Names a core's frame pool across threads: plain data, safe in workerData. */
export interface FramePoolDescriptor {
  /** Byte offset of the pool's header. */
  readonly offset: number;
  /** Most frames the pool can hold at once (a power of two). */
  readonly capacity: number;
}

// Word indexes relative to the pool's first word.
const kpMagic = 0; // line H, hypervisor
const kpCapacity = 1;
const kpOwned = 2; // frames granted and not reclaimed (free in the pool or in use by the core)
const kpGrantTail = CACHE_LINE / 4; // line G, hypervisor: inbox positions published
const kpGrantHead = (2 * CACHE_LINE) / 4; // line C, core: inbox positions taken
const kpTop = kpGrantHead + 1; // core: frames on the free stack
const kpAllocs = kpGrantHead + 2; // core: statistics
const kpFrees = kpGrantHead + 3;
const POOL_HEADER_BYTES = 3 * CACHE_LINE;
const POOL_MAGIC = 0x504f4f4c; // "POOL"

/** Bytes a pool of `capacity` frames takes. */
export function framePoolBytes(capacity: number): number {
  return POOL_HEADER_BYTES + 2 * alignUp(capacity * 4, CACHE_LINE);
}

/** Lay out and initialise an empty pool in the boot arena (boot only). */
export function layFramePool(arena: Arena, name: string, capacity: number): FramePoolDescriptor {
  checkPowerOfTwo("pool capacity", capacity, 1, 1 << 20);
  const region = arena.alloc(name, framePoolBytes(capacity));
  const desc = { offset: region.offset, capacity };
  const w = new Int32Array(arena.sab, region.offset, framePoolBytes(capacity) / 4);
  w.fill(0);
  w[kpCapacity] = capacity;
  Atomics.store(w, kpMagic, POOL_MAGIC); // publish: the pool is initialised
  return desc;
}

/**
 * A set of frames granted to one core (XOS spatial partitioning): the hypervisor grants frames
 * once, and the core then allocates and frees them with no lock and no crossing.
 *
 * Design: the hypervisor pushes granted frames into an SPSC inbox (it is the only producer,
 * the core the only consumer); the core keeps its free frames on a private stack in the same
 * region, and refills the stack from the inbox when it runs dry. Frames the core frees go back
 * on its stack, never to the hypervisor. Rejected: a shared free list with CAS (every core
 * allocation would be an atomic RMW on a line the hypervisor also writes); a lock (a parked
 * holder would stall the core's page faults).
 *
 * Owner notes: magic, capacity, owned, grantTail and the inbox slots in [head, tail) — the
 * hypervisor (Atomics.store publishes a grant). grantHead, top, the stack and the statistics —
 * the owning core (Atomics.store so that the supervisor can read them). {@link reclaim} reads
 * the core's fields and may run only once the core's thread has stopped.
 */
export class FramePool implements FrameSource {
  readonly mem: PhysicalMemory;
  readonly descriptor: FramePoolDescriptor;
  readonly capacity: number;
  readonly #i32: Int32Array;
  readonly #at: number;
  readonly #inbox: number;
  readonly #stack: number;
  readonly #mask: number;
  // Core-local copies of the core's own counters.
  #top: number;
  #head: number;

  constructor(mem: PhysicalMemory, desc: FramePoolDescriptor) {
    checkPowerOfTwo("pool capacity", desc.capacity, 1, 1 << 20);
    checkInteger("pool offset", desc.offset, 0, mem.bytes - framePoolBytes(desc.capacity));
    this.mem = mem;
    this.descriptor = desc;
    this.capacity = desc.capacity;
    this.#i32 = mem.i32;
    this.#at = desc.offset / 4;
    this.#inbox = this.#at + POOL_HEADER_BYTES / 4;
    this.#stack = this.#inbox + alignUp(desc.capacity * 4, CACHE_LINE) / 4;
    this.#mask = desc.capacity - 1;
    const magic = Atomics.load(this.#i32, this.#at + kpMagic); // load: published at lay-out
    if (magic !== POOL_MAGIC) panic(`physmem: no frame pool at byte ${desc.offset}`);
    if (this.#i32[this.#at + kpCapacity] !== desc.capacity) {
      panic(
        `physmem: pool at byte ${desc.offset} has capacity ${this.#i32[this.#at + kpCapacity]}`,
      );
    }
    this.#top = Atomics.load(this.#i32, this.#at + kpTop); // load: attach where the last owner stopped
    this.#head = Atomics.load(this.#i32, this.#at + kpGrantHead); // load: same
  }

  // ---- hypervisor side ----

  /**
   * Grant `frames` (already allocated from the FrameAllocator) to this pool's core. Returns 0,
   * -ENOSPC if the pool would then own more than its capacity, -EINVAL on a frame outside memory
   * (nothing is granted then). Hypervisor only.
   */
  grant(frames: ArrayLike<number>): number {
    const n = frames.length;
    for (let i = 0; i < n; i++) if (!this.mem.hasFrame(frames[i])) return -EINVAL;
    const owned = this.#i32[this.#at + kpOwned];
    if (owned + n > this.capacity) return -ENOSPC;
    const i32 = this.#i32;
    let tail = i32[this.#at + kpGrantTail];
    for (let i = 0; i < n; i++, tail = (tail + 1) | 0)
      i32[this.#inbox + (tail & this.#mask)] = frames[i];
    Atomics.store(i32, this.#at + kpOwned, owned + n); // publish: statistics
    Atomics.store(i32, this.#at + kpGrantTail, tail); // publish: the granted frames to the core
    return 0;
  }

  /** Grant the `count` contiguous frames starting at `first` (see {@link grant}). */
  grantRange(first: number, count: number): number {
    const list = new Array<number>(count);
    for (let i = 0; i < count; i++) list[i] = first + i;
    return this.grant(list);
  }

  /** Frames granted and not reclaimed: free in the pool or in use by the core (any thread). */
  get owned(): number {
    return Atomics.load(this.#i32, this.#at + kpOwned); // load: statistics
  }

  /**
   * Take back every frame that is free in the pool (on the stack or still in the inbox) and
   * reset the pool to own nothing. Frames the core still has in use are not returned: the
   * hypervisor finds them in the core's address spaces. Only after the core's thread stopped.
   */
  reclaim(): number[] {
    const i32 = this.#i32;
    const out: number[] = [];
    const top = Atomics.load(i32, this.#at + kpTop); // load: the stopped core's last word
    for (let i = 0; i < top; i++) out.push(i32[this.#stack + i]);
    const tail = i32[this.#at + kpGrantTail];
    const head = Atomics.load(i32, this.#at + kpGrantHead); // load: the stopped core's last word
    for (let h = head; h !== tail; h = (h + 1) | 0) out.push(i32[this.#inbox + (h & this.#mask)]);
    Atomics.store(i32, this.#at + kpTop, 0); // publish: empty stack for the next owner
    Atomics.store(i32, this.#at + kpGrantHead, tail); // publish: inbox drained
    Atomics.store(i32, this.#at + kpOwned, 0); // publish: owns nothing
    this.#top = 0;
    this.#head = tail;
    return out;
  }

  // ---- core side ----

  /** A frame from the pool, or -ENOMEM when the pool and its inbox are empty. Owning core only. */
  alloc(): number {
    let top = this.#top;
    if (top === 0) top = this.#refill();
    if (top === 0) return -ENOMEM;
    top--;
    this.#top = top;
    const i32 = this.#i32;
    Atomics.store(i32, this.#at + kpTop, top); // publish: statistics, and reclaim after a stop
    i32[this.#at + kpAllocs]++;
    return i32[this.#stack + top];
  }

  /** Put a frame this pool handed out back on its stack. Owning core only. */
  free(frame: number): void {
    if (!this.mem.hasFrame(frame)) panic(`physmem: pool free of frame ${frame} outside memory`);
    const top = this.#top;
    if (top >= this.capacity)
      panic(`physmem: pool overflow freeing frame ${frame}: not granted to this pool`);
    const i32 = this.#i32;
    i32[this.#stack + top] = frame;
    this.#top = top + 1;
    Atomics.store(i32, this.#at + kpTop, top + 1); // publish: statistics, and reclaim after a stop
    i32[this.#at + kpFrees]++;
  }

  /** Frames the core can allocate now without waiting for a grant (owning core). */
  available(): number {
    const tail = Atomics.load(this.#i32, this.#at + kpGrantTail); // load: grants published so far
    return this.#top + ((tail - this.#head) | 0);
  }

  /** Move every granted frame from the inbox onto the stack; returns the new stack size. */
  #refill(): number {
    const i32 = this.#i32;
    const tail = Atomics.load(i32, this.#at + kpGrantTail); // consume: grants published before tail
    let head = this.#head;
    let top = this.#top;
    for (; head !== tail; head = (head + 1) | 0) {
      if (top >= this.capacity)
        panic("physmem: pool inbox holds more frames than the pool's capacity");
      i32[this.#stack + top++] = i32[this.#inbox + (head & this.#mask)];
    }
    this.#head = head;
    this.#top = top;
    Atomics.store(i32, this.#at + kpTop, top); // publish: statistics
    Atomics.store(i32, this.#at + kpGrantHead, head); // release: inbox slots back to the hypervisor
    return top;
  }
}
