/**
 * kv/dict: a chained hash table that lives entirely in a process's memory — the keyspace, and
 * the members of every set, hash and sorted set.
 *
 * Design (Redis dict.c): buckets are a power-of-two array of entry pointers; entries chain
 * through their first word. A table grows when it holds as many entries as buckets (load 1)
 * and shrinks when it is less than 10% full; either way the move is *incremental*: a second
 * table is allocated and each later operation on the dict moves one bucket (visiting at most
 * ten empty ones), so no command pays for a whole rehash. While rehashing, buckets of table 0
 * below `rehashidx` are empty, lookups try both tables and inserts go to table 1. An empty dict
 * owns no table at all (so a store whose keys were all deleted holds no bucket memory).
 * SCAN uses Redis's reverse-binary cursor (Pieter Noordhuis's dictScan), which visits every
 * entry present for the whole scan at least once even if the table grows or shrinks between
 * calls.
 *
 * Layout (byte offsets; every field one int32 word):
 *
 *   dict header (DICT_BYTES, embedded in its owner's struct at d)
 *     0 table 0 (va of its bucket array, 0 if none)   4 buckets of table 0 (0 or 2^k)
 *     8 entries in table 0                            12 table 1      16 buckets of table 1
 *    20 entries in table 1                            24 rehashidx (-1: not rehashing)
 *
 *   entry (allocated by the owner; the dict only links it)
 *     0 next in bucket   4 hash   8 key length   … owner's words …   keyOff: key bytes
 *
 * Entries keep their 32-bit hash, so a rehash never reads a key. Who calls: the store (store.ts,
 * zset.ts) with its lock held; nothing here is thread-safe on its own.
 */

import { panic } from "../../src/errors.js";
import { equalBytes, type StoreMemory, zeroFill } from "./memory.js";

export const DICT_BYTES = 28;
const D_T0 = 0;
const D_S0 = 4;
const D_U0 = 8;
const D_T1 = 12;
const D_S1 = 16;
const D_U1 = 20;
const D_REHASH = 24;

/** Entry words every dict entry starts with. */
export const E_NEXT = 0;
export const E_HASH = 4;
export const E_KLEN = 8;

/** Buckets of a dict's first table. */
const INITIAL_SIZE = 4;
/** Empty buckets one rehash step may skip. */
const EMPTY_VISITS = 10;

/** Where the dict gets (and returns) its bucket arrays; the store counts the bytes. */
export interface DictHeap {
  /** A block of n bytes (n a multiple of 4), or 0 when out of memory. */
  alloc(n: number): number;
  free(va: number, n: number): void;
}

function reverse32(v: number): number {
  v = ((v >>> 1) & 0x55555555) | ((v & 0x55555555) << 1);
  v = ((v >>> 2) & 0x33333333) | ((v & 0x33333333) << 2);
  v = ((v >>> 4) & 0x0f0f0f0f) | ((v & 0x0f0f0f0f) << 4);
  v = ((v >>> 8) & 0x00ff00ff) | ((v & 0x00ff00ff) << 8);
  return ((v >>> 16) | (v << 16)) >>> 0;
}

function nextPow2(n: number): number {
  let s = INITIAL_SIZE;
  while (s < n) s *= 2;
  return s;
}

/** The dict operations, over one memory; stateless apart from the memory and heap it uses. */
export class Dict {
  readonly mem: StoreMemory;
  readonly heap: DictHeap;

  constructor(mem: StoreMemory, heap: DictHeap) {
    this.mem = mem;
    this.heap = heap;
  }

  #ld(va: number): number {
    return this.mem.load32(va) >>> 0;
  }

  /** Lay out an empty dict at d. */
  init(d: number): void {
    const m = this.mem;
    for (let i = 0; i < DICT_BYTES; i += 4) m.store32(d + i, 0);
    m.store32(d + D_REHASH, -1);
  }

  /** Entries in the dict. */
  size(d: number): number {
    return this.mem.load32(d + D_U0) + this.mem.load32(d + D_U1);
  }

  /** The entry whose key is b[o … o+n) (hash h), or 0. Moves one bucket if rehashing. */
  find(d: number, keyOff: number, h: number, b: Uint8Array, o: number, n: number): number {
    const m = this.mem;
    // rehashidx is read once (twice while rehashing): table 1 exists only while rehashing.
    let rehashing = m.load32(d + D_REHASH) !== -1;
    if (rehashing) {
      this.rehashStep(d);
      rehashing = m.load32(d + D_REHASH) !== -1;
    }
    for (let t = 0; t <= 12; t += 12) {
      const size = m.load32(d + D_S0 + t);
      if (size !== 0) {
        let e = this.#ld(this.#ld(d + D_T0 + t) + 4 * (h & (size - 1)));
        while (e !== 0) {
          if (
            m.load32(e + E_HASH) === h &&
            m.load32(e + E_KLEN) === n &&
            equalBytes(m, e + keyOff, b, o, n)
          )
            return e;
          e = this.#ld(e + E_NEXT);
        }
      }
      if (!rehashing) break;
    }
    return 0;
  }

  /**
   * Link entry e (its hash and key set) into the dict; the caller made sure the key is absent.
   * False only when the dict has no table and none could be allocated (out of memory).
   */
  add(d: number, e: number): boolean {
    const m = this.mem;
    if (m.load32(d + D_REHASH) !== -1) this.rehashStep(d);
    else {
      const size = m.load32(d + D_S0);
      const used = m.load32(d + D_U0);
      if (size === 0) {
        if (!this.#resize(d, INITIAL_SIZE)) return false;
      } else if (used >= size) this.#resize(d, nextPow2(used + 1)); // a failed grow only overloads
    }
    const t = m.load32(d + D_REHASH) !== -1 ? 12 : 0;
    const h = m.load32(e + E_HASH);
    const slot = this.#ld(d + D_T0 + t) + 4 * (h & (m.load32(d + D_S0 + t) - 1));
    m.store32(e + E_NEXT, m.load32(slot));
    m.store32(slot, e);
    m.store32(d + D_U0 + t, m.load32(d + D_U0 + t) + 1);
    return true;
  }

  /** Unlink entry e (the caller frees it). Shrinks, or releases the tables when it was the last. */
  remove(d: number, e: number): void {
    const m = this.mem;
    const h = m.load32(e + E_HASH);
    for (let t = 0; t <= 12; t += 12) {
      const size = m.load32(d + D_S0 + t);
      if (size === 0) continue;
      let slot = this.#ld(d + D_T0 + t) + 4 * (h & (size - 1));
      for (let x = this.#ld(slot); x !== 0; x = this.#ld(x + E_NEXT)) {
        if (x === e) {
          m.store32(slot, m.load32(e + E_NEXT));
          m.store32(d + D_U0 + t, m.load32(d + D_U0 + t) - 1);
          this.#afterRemove(d);
          return;
        }
        slot = x + E_NEXT;
      }
    }
    panic(`kv dict: remove of an entry that is not in the dict (0x${e.toString(16)})`);
  }

  #afterRemove(d: number): void {
    const m = this.mem;
    if (this.size(d) === 0) {
      this.#releaseTables(d);
      return;
    }
    if (m.load32(d + D_REHASH) !== -1) {
      this.rehashStep(d);
      return;
    }
    const size = m.load32(d + D_S0);
    const used = m.load32(d + D_U0);
    if (size > INITIAL_SIZE && used * 10 < size) this.#resize(d, nextPow2(used));
  }

  #releaseTables(d: number): void {
    const m = this.mem;
    for (let t = 0; t <= 12; t += 12) {
      const size = m.load32(d + D_S0 + t);
      if (size !== 0) this.heap.free(this.#ld(d + D_T0 + t), 4 * size);
    }
    this.init(d);
  }

  /** Start moving to a table of `size` buckets (or just make table 0 if there is none). */
  #resize(d: number, size: number): boolean {
    const m = this.mem;
    const t = this.heap.alloc(4 * size);
    if (t === 0) return false;
    zeroFill(m, t, 4 * size);
    if (m.load32(d + D_S0) === 0) {
      m.store32(d + D_T0, t);
      m.store32(d + D_S0, size);
      return true;
    }
    m.store32(d + D_T1, t);
    m.store32(d + D_S1, size);
    m.store32(d + D_U1, 0);
    m.store32(d + D_REHASH, 0);
    return true;
  }

  /** Move one bucket of table 0 to table 1 (skipping at most ten empty ones); finish when done. */
  rehashStep(d: number): void {
    const m = this.mem;
    let idx = m.load32(d + D_REHASH);
    if (idx === -1) return;
    const t0 = this.#ld(d + D_T0);
    const s0 = m.load32(d + D_S0);
    const t1 = this.#ld(d + D_T1);
    const mask1 = m.load32(d + D_S1) - 1;
    let empty = EMPTY_VISITS;
    while (m.load32(d + D_U0) !== 0 && idx < s0) {
      let e = this.#ld(t0 + 4 * idx);
      if (e === 0) {
        idx++;
        if (--empty === 0) break;
        continue;
      }
      let moved = 0;
      while (e !== 0) {
        const next = this.#ld(e + E_NEXT);
        const slot = t1 + 4 * (m.load32(e + E_HASH) & mask1);
        m.store32(e + E_NEXT, m.load32(slot));
        m.store32(slot, e);
        moved++;
        e = next;
      }
      m.store32(t0 + 4 * idx, 0);
      m.store32(d + D_U0, m.load32(d + D_U0) - moved);
      m.store32(d + D_U1, m.load32(d + D_U1) + moved);
      idx++;
      break;
    }
    if (m.load32(d + D_U0) === 0) {
      this.heap.free(t0, 4 * s0);
      m.store32(d + D_T0, t1);
      m.store32(d + D_S0, mask1 + 1);
      m.store32(d + D_U0, m.load32(d + D_U1));
      m.store32(d + D_T1, 0);
      m.store32(d + D_S1, 0);
      m.store32(d + D_U1, 0);
      m.store32(d + D_REHASH, -1);
      return;
    }
    m.store32(d + D_REHASH, idx);
  }

  /** The first entry in table order, or 0 (with {@link next}: a walk that must not modify the dict). */
  first(d: number): number {
    return this.#from(d, 0, 0);
  }

  /** The entry after e in table order, or 0. */
  next(d: number, e: number): number {
    const n = this.#ld(e + E_NEXT);
    if (n !== 0) return n;
    const m = this.mem;
    const h = m.load32(e + E_HASH);
    const rehash = m.load32(d + D_REHASH);
    const i0 = h & (m.load32(d + D_S0) - 1);
    if (rehash === -1) return this.#from(d, 0, i0 + 1);
    // While rehashing, an entry whose table-0 bucket is not yet moved may still be in table 1:
    // add() puts new entries there. Ask the chain, not the bucket number, which table holds e.
    if (i0 >= rehash) {
      for (let x = this.#ld(this.#ld(d + D_T0) + 4 * i0); x !== 0; x = this.#ld(x + E_NEXT))
        if (x === e) return this.#from(d, 0, i0 + 1); // e is in table 0
    }
    return this.#from(d, 12, (h & (m.load32(d + D_S1) - 1)) + 1);
  }

  #from(d: number, t: number, idx: number): number {
    const m = this.mem;
    for (; t <= 12; t += 12, idx = 0) {
      const size = m.load32(d + D_S0 + t);
      const tab = this.#ld(d + D_T0 + t);
      for (let i = idx; i < size; i++) {
        const e = this.#ld(tab + 4 * i);
        if (e !== 0) return e;
      }
    }
    return 0;
  }

  /** A random entry (Redis dictGetRandomKey: a random non-empty bucket, then a random chain link), or 0 if empty. */
  random(d: number): number {
    const m = this.mem;
    if (this.size(d) === 0) return 0;
    if (m.load32(d + D_REHASH) !== -1) this.rehashStep(d);
    const s0 = m.load32(d + D_S0);
    const s1 = m.load32(d + D_S1);
    const rehash = m.load32(d + D_REHASH);
    let head = 0;
    while (head === 0) {
      if (rehash !== -1) {
        const i = rehash + Math.floor(Math.random() * (s0 + s1 - rehash));
        head =
          i >= s0
            ? this.#ld(this.#ld(d + D_T1) + 4 * (i - s0))
            : this.#ld(this.#ld(d + D_T0) + 4 * i);
      } else head = this.#ld(this.#ld(d + D_T0) + 4 * Math.floor(Math.random() * s0));
    }
    let len = 0;
    for (let e = head; e !== 0; e = this.#ld(e + E_NEXT)) len++;
    let k = Math.floor(Math.random() * len);
    let e = head;
    while (k-- > 0) e = this.#ld(e + E_NEXT);
    return e;
  }

  /**
   * One step of SCAN from `cursor`: calls visit(entry) for every entry of the bucket(s) the cursor
   * names and returns the next cursor (0 when the scan is complete). visit must not modify the dict.
   */
  scan(d: number, cursor: number, visit: (e: number) => void): number {
    const m = this.mem;
    if (this.size(d) === 0) return 0;
    let v = cursor >>> 0;
    const emit = (tab: number, i: number): void => {
      for (let e = this.#ld(tab + 4 * i); e !== 0; ) {
        const next = this.#ld(e + E_NEXT);
        visit(e);
        e = next;
      }
    };
    if (m.load32(d + D_REHASH) === -1) {
      const m0 = m.load32(d + D_S0) - 1;
      emit(this.#ld(d + D_T0), v & m0);
      v = (v | ~m0) >>> 0;
      return reverse32((reverse32(v) + 1) >>> 0);
    }
    let ta = this.#ld(d + D_T0);
    let tb = this.#ld(d + D_T1);
    let m0 = m.load32(d + D_S0) - 1;
    let m1 = m.load32(d + D_S1) - 1;
    if (m0 > m1) {
      [ta, tb] = [tb, ta];
      [m0, m1] = [m1, m0];
    }
    emit(ta, v & m0);
    do {
      emit(tb, v & m1);
      v = (v | ~m1) >>> 0;
      v = reverse32((reverse32(v) + 1) >>> 0);
    } while ((v & (m0 ^ m1)) !== 0);
    return v;
  }

  /** Unlink and hand every entry to freeEntry, release the tables: an empty dict. */
  clear(d: number, freeEntry: (e: number) => void): void {
    const m = this.mem;
    for (let t = 0; t <= 12; t += 12) {
      const size = m.load32(d + D_S0 + t);
      const tab = this.#ld(d + D_T0 + t);
      for (let i = 0; i < size; i++) {
        let e = this.#ld(tab + 4 * i);
        while (e !== 0) {
          const next = this.#ld(e + E_NEXT);
          freeEntry(e);
          e = next;
        }
      }
    }
    this.#releaseTables(d);
  }
}
