/**
 * kv/memory: the memory the KV store lives in, and the byte helpers every other kv module uses.
 *
 * Owns: the two interfaces the store is written against — {@link StoreMemory} (a process's
 * virtual memory: in the machine it is `ProcessMemory` from src/libos/vm.ts, which translates
 * every access through the MMU) and {@link StoreAllocator} (the libOS `Malloc`) — plus
 * {@link FlatMemory}, an ArrayBuffer/SharedArrayBuffer-backed memory that is both a StoreMemory
 * and a `HeapMemory` (it has `sbrk`), so tests and tools run the store on the real allocator.
 *
 * Invariants the helpers rely on (the store keeps them):
 *   - every address handed to a helper is 4-byte aligned (malloc returns 16-aligned blocks and
 *     every byte string sits at a 4-aligned offset of its block);
 *   - every allocation is rounded up to a multiple of 4 ({@link align4}), so the word that holds
 *     the last byte of a string lies inside the string's block: helpers read and write whole
 *     words and never touch a neighbour's bytes;
 *   - words are little-endian (checked at load): byte i of the word at va is byte va + i.
 *
 * The helpers allocate nothing: keys are hashed and compared in place (word loads against the
 * caller's bytes), values are copied with {@link copyOut}/{@link copyIn} straight into or out of
 * a caller's buffer. A memory that has `readInto` / `writeFrom` (FlatMemory, and ProcessMemory,
 * one translation per page) copies in one call, and one that has `equalBytes` (ProcessMemory)
 * compares a key in one call; one that has not is read and written word by
 * word for short strings and with `readBytes` / `writeBytes` for long ones. A memory shared
 * between threads may offer `wait32` / `notify32` (a futex on a word) for the store lock.
 *
 * Who calls: the store (store.ts, dict.ts, zset.ts), the encoder (resp.ts) and tests.
 */

import { EINVAL, ENOMEM } from "../../src/abi/errno.js";
import { checkInteger, InvalidArgumentError, panic } from "../../src/errors.js";
import type { HeapMemory } from "../../src/libos/malloc.js";

/** A process's memory as the store sees it: every access by virtual address. */
export interface StoreMemory {
  /** Aligned int32 read. */
  load32(va: number): number;
  /** Aligned int32 write. */
  store32(va: number, v: number): void;
  /** Atomic compare-and-swap of an aligned int32; returns the old value. */
  cas32(va: number, expect: number, v: number): number;
  /** Copy `len` bytes out (allocates the result). */
  readBytes(va: number, len: number): Uint8Array;
  /** Copy bytes in. */
  writeBytes(va: number, bytes: Uint8Array): void;
  /** Optional fast path: copy `len` bytes at `va` into `dst[off…]` without allocating. */
  readInto?(va: number, dst: Uint8Array, off: number, len: number): void;
  /**
   * Optional fast path: do the `len` bytes at `va` equal src[off … off+len)? (One translation
   * per page instead of one per word.)
   */
  equalBytes?(va: number, src: Uint8Array, off: number, len: number): boolean;
  /** Optional fast path: copy src[off … off+len) to `va` in one call (no copy of `src` made). */
  writeFrom?(va: number, src: Uint8Array, off: number, len: number): void;
  /**
   * Optional (a memory shared between threads): sleep while the aligned int32 at `va` holds
   * `expect`, at most `timeoutMs` (Atomics.wait). With {@link notify32}; the store lock uses them.
   */
  wait32?(va: number, expect: number, timeoutMs: number): void;
  /** Wake up to `count` threads sleeping in wait32 on `va` (Atomics.notify). */
  notify32?(va: number, count: number): void;
}

/** The allocator the store takes its memory from (the libOS malloc). */
export interface StoreAllocator {
  /** A block of at least n bytes, 16-byte aligned, or 0 when out of memory. */
  malloc(n: number): number;
  free(va: number): void;
}

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1)
  panic("kv memory: the store's in-place byte helpers assume a little-endian host");

/** n rounded up to a multiple of 4 (every store allocation is, see the header). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Strings up to this long are moved word by word; longer ones with one bulk call. */
const WORDWISE_MAX = 64;

/** The little-endian word made of src[o … o+3], with bytes past `end` as zero. */
function wordOf(src: Uint8Array, o: number, end: number): number {
  if (o + 4 <= end) return src[o] | (src[o + 1] << 8) | (src[o + 2] << 16) | (src[o + 3] << 24);
  let w = 0;
  for (let i = 0; o + i < end; i++) w |= src[o + i] << (8 * i);
  return w;
}

/** Copy `len` bytes at va into dst[off…] (va 4-aligned). Allocates nothing unless the memory lacks readInto and len > 64. */
export function copyOut(
  mem: StoreMemory,
  va: number,
  dst: Uint8Array,
  off: number,
  len: number,
): void {
  if (len <= 0) return;
  if (mem.readInto !== undefined) {
    mem.readInto(va, dst, off, len);
    return;
  }
  if (len > WORDWISE_MAX) {
    dst.set(mem.readBytes(va, len), off);
    return;
  }
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const w = mem.load32(va + i);
    dst[off + i] = w;
    dst[off + i + 1] = w >>> 8;
    dst[off + i + 2] = w >>> 16;
    dst[off + i + 3] = w >>> 24;
  }
  if (i < len) {
    const w = mem.load32(va + i);
    for (let k = 0; i + k < len; k++) dst[off + i + k] = w >>> (8 * k);
  }
}

/** Copy src[off … off+len) to va (4-aligned; the block is rounded to 4, see the header). */
export function copyIn(
  mem: StoreMemory,
  va: number,
  src: Uint8Array,
  off: number,
  len: number,
): void {
  if (len <= 0) return;
  if (mem.writeFrom !== undefined) {
    const whole = len & ~3; // the last partial word goes in whole, its padding zero
    mem.writeFrom(va, src, off, whole);
    if (whole < len) mem.store32(va + whole, wordOf(src, off + whole, off + len));
    return;
  }
  if (len > WORDWISE_MAX) {
    mem.writeBytes(va, src.subarray(off, off + len));
    return;
  }
  const end = off + len;
  for (let i = 0; i < len; i += 4) mem.store32(va + i, wordOf(src, off + i, end));
}

/** Copy `len` bytes from one place of the memory to another (both 4-aligned, no overlap). */
export function copyMem(mem: StoreMemory, dst: number, src: number, len: number): void {
  for (let i = 0; i < len; i += 4) mem.store32(dst + i, mem.load32(src + i));
}

/**
 * Do the `len` bytes at va equal src[off … off+len)? The memory's own compare if it has one
 * (one translation per page), else word compares; no allocation.
 */
export function equalBytes(
  mem: StoreMemory,
  va: number,
  src: Uint8Array,
  off: number,
  len: number,
): boolean {
  if (mem.equalBytes !== undefined) return mem.equalBytes(va, src, off, len);
  const end = off + len;
  let i = 0;
  for (; i + 4 <= len; i += 4) if (mem.load32(va + i) !== wordOf(src, off + i, end)) return false;
  if (i < len) {
    const mask = (1 << (8 * (len - i))) - 1;
    if ((mem.load32(va + i) & mask) !== wordOf(src, off + i, end)) return false;
  }
  return true;
}

/** memcmp order of two in-memory strings (a, alen) and (b, blen): <0, 0, >0. */
export function compareMem(
  mem: StoreMemory,
  a: number,
  alen: number,
  b: number,
  blen: number,
): number {
  const n = Math.min(alen, blen);
  for (let i = 0; i < n; i += 4) {
    const x = mem.load32(a + i);
    const y = mem.load32(b + i);
    if (x === y) continue;
    for (let k = 0; k < 4 && i + k < n; k++) {
      const d = ((x >>> (8 * k)) & 255) - ((y >>> (8 * k)) & 255);
      if (d !== 0) return d;
    }
  }
  return alen - blen;
}

/** memcmp order of the in-memory string (va, vlen) against src[off … off+len). */
export function compareBytes(
  mem: StoreMemory,
  va: number,
  vlen: number,
  src: Uint8Array,
  off: number,
  len: number,
): number {
  const n = Math.min(vlen, len);
  for (let i = 0; i < n; i += 4) {
    const x = mem.load32(va + i);
    for (let k = 0; k < 4 && i + k < n; k++) {
      const d = ((x >>> (8 * k)) & 255) - src[off + i + k];
      if (d !== 0) return d;
    }
  }
  return vlen - len;
}

const ZERO_PAGE = new Uint8Array(4096);

/** Zero `len` bytes at va (4-aligned, len a multiple of 4). */
export function zeroFill(mem: StoreMemory, va: number, len: number): void {
  if (len <= WORDWISE_MAX) {
    for (let i = 0; i < len; i += 4) mem.store32(va + i, 0);
    return;
  }
  for (let done = 0; done < len; done += ZERO_PAGE.length) {
    const n = Math.min(ZERO_PAGE.length, len - done);
    mem.writeBytes(va + done, n === ZERO_PAGE.length ? ZERO_PAGE : ZERO_PAGE.subarray(0, n));
  }
}

/**
 * MurmurHash3 (x86, 32-bit; Appleby) of src[off … off+len) with a seed. The keyspace's seed is
 * random per store, as Redis seeds siphash, so a client cannot aim keys at one bucket.
 */
export function hashBytes(src: Uint8Array, off: number, len: number, seed: number): number {
  let h = seed | 0;
  const end = off + len;
  let i = off;
  for (; i + 4 <= end; i += 4) {
    let k = src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = end - i;
  if (rest > 0) {
    let k = src[i];
    if (rest > 1) k ^= src[i + 1] << 8;
    if (rest > 2) k ^= src[i + 2] << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

// ---------------------------------------------------------------------------------------------
// FlatMemory

/** Bytes of FlatMemory's control page (word 0: the break, in bytes past `base`). */
const CONTROL = 4096;
/** Default virtual address of a FlatMemory's first heap byte (the libOS HEAP_BASE). */
export const FLAT_BASE = 0x1000_0000;

/**
 * A StoreMemory and HeapMemory over one ArrayBuffer or SharedArrayBuffer, with no MMU: virtual
 * address `base` is byte 4096 of the buffer. Word 0 of the buffer holds the break, so every
 * FlatMemory over one SharedArrayBuffer (one per worker) shares one heap. An access outside
 * [base, break) or misaligned panics, so a store that strays is caught at once.
 *
 * load32/store32 are plain accesses; cas32 is always Atomics.compareExchange, which is what the
 * store's and malloc's locks need (their seq-cst CAS at acquire and release orders the plain
 * accesses of the critical section, as in src/libos/malloc.ts).
 */
export class FlatMemory implements StoreMemory, HeapMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly base: number;
  /** Bytes the heap can grow to. */
  readonly capacity: number;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  /** This thread's copy of the break (it only grows, so a stale copy is only too small). */
  #brk = 0;

  constructor(buffer: ArrayBuffer | SharedArrayBuffer, base = FLAT_BASE) {
    checkInteger("base", base, 0, 2 ** 32 - CONTROL);
    if (base % CONTROL !== 0)
      throw new InvalidArgumentError(`base must be page-aligned, got 0x${base.toString(16)}`);
    if (buffer.byteLength < 2 * CONTROL || buffer.byteLength % CONTROL !== 0)
      throw new InvalidArgumentError(
        `buffer must be whole pages and at least 8192 bytes, got ${buffer.byteLength}`,
      );
    this.buffer = buffer;
    this.base = base;
    this.capacity = buffer.byteLength - CONTROL;
    this.#i32 = new Int32Array(buffer);
    this.#u8 = new Uint8Array(buffer);
  }

  /** A fresh memory with room for `heapBytes` of heap, over shared memory if `shared`. */
  static create(heapBytes: number, shared = false, base = FLAT_BASE): FlatMemory {
    checkInteger("heapBytes", heapBytes, CONTROL, 2 ** 31);
    const n = CONTROL + Math.ceil(heapBytes / CONTROL) * CONTROL;
    return new FlatMemory(shared ? new SharedArrayBuffer(n) : new ArrayBuffer(n), base);
  }

  /** The current break, as a virtual address. */
  get brk(): number {
    return this.base + Atomics.load(this.#i32, 0); // load: the shared break
  }

  load32(va: number): number {
    return this.#i32[this.#word(va)];
  }

  store32(va: number, v: number): void {
    this.#i32[this.#word(va)] = v;
  }

  cas32(va: number, expect: number, v: number): number {
    return Atomics.compareExchange(this.#i32, this.#word(va), expect, v); // claim: lock or word
  }

  /** malloc's sbrk: grow the break by whole pages (CAS, so workers may race); old break or -ENOMEM. */
  sbrk(bytes: number): number {
    if (bytes < 0 || bytes % CONTROL !== 0) return -EINVAL;
    for (;;) {
      const old = Atomics.load(this.#i32, 0); // load: the shared break
      if (old + bytes > this.capacity) return -ENOMEM;
      if (Atomics.compareExchange(this.#i32, 0, old, old + bytes) === old) {
        // claim: pages past the break were never handed out, so they are still zero
        this.#brk = old + bytes;
        return this.base + old;
      }
    }
  }

  readBytes(va: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(va, out, 0, len);
    return out;
  }

  readInto(va: number, dst: Uint8Array, off: number, len: number): void {
    if (len <= 0) return;
    const p = this.#range(va, len);
    dst.set(this.#u8.subarray(p, p + len), off);
  }

  writeBytes(va: number, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#u8.set(bytes, this.#range(va, bytes.length));
  }

  writeFrom(va: number, src: Uint8Array, off: number, len: number): void {
    if (len <= 0) return;
    this.#u8.set(src.subarray(off, off + len), this.#range(va, len));
  }

  /** Atomics.wait on the word (a memory over an unshared ArrayBuffer has no other thread: returns at once). */
  wait32(va: number, expect: number, timeoutMs: number): void {
    if (this.buffer instanceof SharedArrayBuffer)
      Atomics.wait(this.#i32, this.#word(va), expect, timeoutMs); // park: until notify32
  }

  notify32(va: number, count: number): void {
    if (this.buffer instanceof SharedArrayBuffer) Atomics.notify(this.#i32, this.#word(va), count); // wake
  }

  #word(va: number): number {
    const off = (va >>> 0) - this.base;
    if (off < 0 || (off & 3) !== 0 || off + 4 > this.#brk) this.#check(va, 4);
    return (CONTROL + off) >>> 2;
  }

  #range(va: number, len: number): number {
    const off = (va >>> 0) - this.base;
    if (off < 0 || off + len > this.#brk) this.#check(va, len);
    return CONTROL + off;
  }

  #check(va: number, len: number): void {
    const off = (va >>> 0) - this.base;
    this.#brk = Atomics.load(this.#i32, 0); // load: the shared break (it may have grown)
    if (off >= 0 && off + len <= this.#brk && (len !== 4 || (off & 3) === 0)) return;
    panic(
      `flat memory: access of ${len} bytes at 0x${(va >>> 0).toString(16)} outside the heap or misaligned`,
    );
  }
}
