/**
 * kv/zset: sorted sets in a process's memory — a dict from member to entry for O(1) ZSCORE, and
 * a skiplist ordered by (score, member bytes) with spans for O(log n) rank lookups (Pugh 1990,
 * as Redis's t_zset.c keeps it: levels with p = 1/4, at most 32, a backward link on level 0).
 *
 * Layout (byte offsets; int32 words; scores are float64 in two words, little-endian):
 *
 *   zset header (ZSET_BYTES)
 *     0 … 27  dict of members (dict.ts)
 *    28 skiplist head node     32 tail node     36 length     40 level in use
 *
 *   member entry (in the dict): 0 next  4 hash  8 member length  12 skiplist node  16 member bytes
 *
 *   skiplist node: 0 member entry (0 in the head)  4 score (low word)  8 score (high word)
 *                  12 backward  16 levels  then per level i: 20+8i forward, 24+8i span
 *
 * The member bytes live once, in the dict entry; the node points at it. Who calls: the store
 * (store.ts), with its lock held.
 */

import { type Dict, type DictHeap, E_HASH, E_KLEN } from "./dict.js";
import { align4, compareMem, copyIn, type StoreMemory } from "./memory.js";

export const ZSET_BYTES = 48;
const Z_HEAD = 28;
const Z_TAIL = 32;
const Z_LEN = 36;
const Z_LEVEL = 40;

/** Member entry fields. */
export const ZE_NODE = 12;
export const ZE_KEY = 16;

const N_ENTRY = 0;
const N_SCORE = 4;
const N_BACK = 12;
const N_LEVELS = 16;
const N_LVL = 20;

const MAX_LEVEL = 32;

const f64 = new Float64Array(1);
const w32 = new Int32Array(f64.buffer);

function nodeBytes(levels: number): number {
  return N_LVL + 8 * levels;
}

/** Sorted-set operations over one memory (see the header). */
export class ZSets {
  readonly mem: StoreMemory;
  readonly heap: DictHeap;
  readonly dict: Dict;
  /** Scratch of one insert or delete: the last node before the spot on each level, and ranks. */
  readonly #update = new Int32Array(MAX_LEVEL);
  readonly #rank = new Float64Array(MAX_LEVEL);

  constructor(mem: StoreMemory, heap: DictHeap, dict: Dict) {
    this.mem = mem;
    this.heap = heap;
    this.dict = dict;
  }

  #ld(va: number): number {
    return this.mem.load32(va) >>> 0;
  }

  /** The score stored at va (two words). */
  score(va: number): number {
    w32[0] = this.mem.load32(va);
    w32[1] = this.mem.load32(va + 4);
    return f64[0];
  }

  #setScore(va: number, s: number): void {
    f64[0] = s;
    this.mem.store32(va, w32[0]);
    this.mem.store32(va + 4, w32[1]);
  }

  /** A new empty sorted set, or 0 when out of memory. */
  create(): number {
    const z = this.heap.alloc(ZSET_BYTES);
    if (z === 0) return 0;
    const head = this.heap.alloc(nodeBytes(MAX_LEVEL));
    if (head === 0) {
      this.heap.free(z, ZSET_BYTES);
      return 0;
    }
    const m = this.mem;
    for (let i = 0; i < nodeBytes(MAX_LEVEL); i += 4) m.store32(head + i, 0);
    m.store32(head + N_LEVELS, MAX_LEVEL);
    this.dict.init(z);
    m.store32(z + Z_HEAD, head);
    m.store32(z + Z_TAIL, 0);
    m.store32(z + Z_LEN, 0);
    m.store32(z + Z_LEVEL, 1);
    return z;
  }

  length(z: number): number {
    return this.mem.load32(z + Z_LEN);
  }

  /** Free every member and node and the set itself. */
  destroy(z: number): void {
    const m = this.mem;
    const head = this.#ld(z + Z_HEAD);
    let x = this.#ld(head + N_LVL);
    while (x !== 0) {
      const next = this.#ld(x + N_LVL);
      this.heap.free(x, nodeBytes(m.load32(x + N_LEVELS)));
      x = next;
    }
    this.dict.clear(z, (e) => this.heap.free(e, align4(ZE_KEY + m.load32(e + E_KLEN))));
    this.heap.free(head, nodeBytes(MAX_LEVEL));
    this.heap.free(z, ZSET_BYTES);
  }

  /** The member entry of b[o … o+n) (hash h), or 0. */
  find(z: number, h: number, b: Uint8Array, o: number, n: number): number {
    return this.dict.find(z, ZE_KEY, h, b, o, n);
  }

  /** The score of a member entry. */
  entryScore(e: number): number {
    return this.score(this.#ld(e + ZE_NODE) + N_SCORE);
  }

  /** Is node x before (score, member entry me) in set order? */
  #beforeEntry(x: number, s: number, me: number): boolean {
    const xs = this.score(x + N_SCORE);
    if (xs !== s) return xs < s;
    const e = this.#ld(x + N_ENTRY);
    const m = this.mem;
    return compareMem(m, e + ZE_KEY, m.load32(e + E_KLEN), me + ZE_KEY, m.load32(me + E_KLEN)) < 0;
  }

  /**
   * Add member b[o … o+n) (hash h, absent) with score s; returns its entry or 0 (out of memory,
   * nothing changed).
   */
  add(z: number, h: number, b: Uint8Array, o: number, n: number, s: number): number {
    const m = this.mem;
    const e = this.heap.alloc(align4(ZE_KEY + n));
    if (e === 0) return 0;
    m.store32(e + E_HASH, h);
    m.store32(e + E_KLEN, n);
    copyIn(m, e + ZE_KEY, b, o, n);
    const x = this.#insert(z, s, e);
    if (x === 0 || !this.dict.add(z, e)) {
      if (x !== 0) this.#unlinkNode(z, x, s, e);
      this.heap.free(e, align4(ZE_KEY + n));
      return 0;
    }
    m.store32(e + ZE_NODE, x);
    return e;
  }

  /** Give member entry e the score s (not NaN); false when out of memory (then unchanged). */
  update(z: number, e: number, s: number): boolean {
    const old = this.#ld(e + ZE_NODE);
    const cur = this.score(old + N_SCORE);
    if (cur === s) return true;
    const m = this.mem;
    // Still between its neighbours: rewrite the score in place (Redis zslUpdateScore's fast path).
    const back = this.#ld(old + N_BACK);
    const fwd = this.#ld(old + N_LVL);
    if (
      (back === 0 || this.score(back + N_SCORE) < s) &&
      (fwd === 0 || this.score(fwd + N_SCORE) > s)
    ) {
      this.#setScore(old + N_SCORE, s);
      return true;
    }
    const x = this.#insert(z, s, e);
    if (x === 0) return false;
    this.#unlinkNode(z, old, cur, e);
    m.store32(e + ZE_NODE, x);
    return true;
  }

  /** Remove member entry e (unlink from the list and the dict, free both). */
  remove(z: number, e: number): void {
    const m = this.mem;
    const x = this.#ld(e + ZE_NODE);
    this.#unlinkNode(z, x, this.score(x + N_SCORE), e);
    this.dict.remove(z, e);
    this.heap.free(e, align4(ZE_KEY + m.load32(e + E_KLEN)));
  }

  /** Node of rank r (0-based), or 0. */
  byRank(z: number, r: number): number {
    const m = this.mem;
    const want = r + 1;
    let x = this.#ld(z + Z_HEAD);
    let traversed = 0;
    for (let i = m.load32(z + Z_LEVEL) - 1; i >= 0; i--) {
      for (;;) {
        const f = this.#ld(x + N_LVL + 8 * i);
        const span = m.load32(x + N_LVL + 8 * i + 4);
        if (f === 0 || traversed + span > want) break;
        traversed += span;
        x = f;
      }
      if (traversed === want) return x;
    }
    return 0;
  }

  /** The node after x (level 0), or 0. */
  nextNode(x: number): number {
    return this.#ld(x + N_LVL);
  }

  /** The node before x, or 0. */
  prevNode(x: number): number {
    return this.#ld(x + N_BACK);
  }

  /** The first node, or 0. */
  firstNode(z: number): number {
    return this.#ld(this.#ld(z + Z_HEAD) + N_LVL);
  }

  /** The last node, or 0. */
  lastNode(z: number): number {
    return this.#ld(z + Z_TAIL);
  }

  nodeScore(x: number): number {
    return this.score(x + N_SCORE);
  }

  /** The member entry of node x. */
  nodeEntry(x: number): number {
    return this.#ld(x + N_ENTRY);
  }

  /** Link a new node for (s, entry e) into the skiplist; returns it, or 0 when out of memory. */
  #insert(z: number, s: number, e: number): number {
    const m = this.mem;
    const update = this.#update;
    const rank = this.#rank;
    const level = m.load32(z + Z_LEVEL);
    const klen = m.load32(e + E_KLEN);
    let x = this.#ld(z + Z_HEAD);
    for (let i = level - 1; i >= 0; i--) {
      rank[i] = i === level - 1 ? 0 : rank[i + 1];
      for (;;) {
        const f = this.#ld(x + N_LVL + 8 * i);
        if (f === 0) break;
        const fs = this.score(f + N_SCORE);
        if (!(fs < s || (fs === s && this.#cmpEntry(f, e, klen) < 0))) break;
        rank[i] += m.load32(x + N_LVL + 8 * i + 4);
        x = f;
      }
      update[i] = x;
    }
    let lv = 1;
    while (lv < MAX_LEVEL && Math.random() < 0.25) lv++;
    const node = this.heap.alloc(nodeBytes(lv));
    if (node === 0) return 0;
    const head = this.#ld(z + Z_HEAD);
    const len = m.load32(z + Z_LEN);
    if (lv > level) {
      for (let i = level; i < lv; i++) {
        rank[i] = 0;
        update[i] = head;
        m.store32(head + N_LVL + 8 * i + 4, len);
      }
      m.store32(z + Z_LEVEL, lv);
    }
    m.store32(node + N_ENTRY, e);
    this.#setScore(node + N_SCORE, s);
    m.store32(node + N_LEVELS, lv);
    for (let i = 0; i < lv; i++) {
      const u = update[i] >>> 0;
      const uspan = m.load32(u + N_LVL + 8 * i + 4);
      m.store32(node + N_LVL + 8 * i, m.load32(u + N_LVL + 8 * i));
      m.store32(u + N_LVL + 8 * i, node);
      m.store32(node + N_LVL + 8 * i + 4, uspan - (rank[0] - rank[i]));
      m.store32(u + N_LVL + 8 * i + 4, rank[0] - rank[i] + 1);
    }
    const top = Math.max(level, lv);
    for (let i = lv; i < top; i++) {
      const u = update[i] >>> 0;
      m.store32(u + N_LVL + 8 * i + 4, m.load32(u + N_LVL + 8 * i + 4) + 1);
    }
    const u0 = update[0] >>> 0;
    m.store32(node + N_BACK, u0 === head ? 0 : u0);
    const f0 = this.#ld(node + N_LVL);
    if (f0 !== 0) m.store32(f0 + N_BACK, node);
    else m.store32(z + Z_TAIL, node);
    m.store32(z + Z_LEN, len + 1);
    return node;
  }

  #cmpEntry(x: number, e: number, klen: number): number {
    const xe = this.#ld(x + N_ENTRY);
    const m = this.mem;
    return compareMem(m, xe + ZE_KEY, m.load32(xe + E_KLEN), e + ZE_KEY, klen);
  }

  /** Unlink node x (score s, member entry e) and free it. */
  #unlinkNode(z: number, x: number, s: number, e: number): void {
    const m = this.mem;
    const update = this.#update;
    const level = m.load32(z + Z_LEVEL);
    let p = this.#ld(z + Z_HEAD);
    for (let i = level - 1; i >= 0; i--) {
      for (;;) {
        const f = this.#ld(p + N_LVL + 8 * i);
        if (f === 0 || f === x || !this.#beforeEntry(f, s, e)) break;
        p = f;
      }
      update[i] = p;
    }
    for (let i = 0; i < level; i++) {
      const u = update[i] >>> 0;
      const at = u + N_LVL + 8 * i;
      if (this.#ld(at) === x) {
        m.store32(at + 4, m.load32(at + 4) + m.load32(x + N_LVL + 8 * i + 4) - 1);
        m.store32(at, m.load32(x + N_LVL + 8 * i));
      } else {
        m.store32(at + 4, m.load32(at + 4) - 1);
      }
    }
    const f0 = this.#ld(x + N_LVL);
    if (f0 !== 0) m.store32(f0 + N_BACK, m.load32(x + N_BACK));
    else m.store32(z + Z_TAIL, m.load32(x + N_BACK));
    const head = this.#ld(z + Z_HEAD);
    let lv = level;
    while (lv > 1 && this.#ld(head + N_LVL + 8 * (lv - 1)) === 0) lv--;
    m.store32(z + Z_LEVEL, lv);
    m.store32(z + Z_LEN, m.load32(z + Z_LEN) - 1);
    this.heap.free(x, nodeBytes(m.load32(x + N_LEVELS)));
  }
}
