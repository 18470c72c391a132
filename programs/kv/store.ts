/**
 * kv/store: the KV server's data, all of it in the process's own address space — the keyspace,
 * keys, values, lists, sets, hashes, sorted sets, expiry times, statistics, the store lock and
 * the AOF log — so every core that serves the process (each a worker thread with its own
 * KvStore object over the same memory) sees one store.
 *
 * Owns: the root block (below), everything reachable from it, and the store lock. A KvStore
 * object caches only what never changes after {@link KvStore.create} (root address, hash seed).
 *
 * ## Concurrency: one lock
 *
 * One lock word in the root (its own cache line) guards the whole store: the engine takes it
 * around each command, or around a whole pipelined batch (commands.ts), and every method here
 * expects it held. It is taken and released with cas32, so the memory's plain load32/store32
 * inside the critical section are ordered by the seq-cst CAS at both ends (the JS memory
 * model's synchronizes-with), as in src/libos/malloc.ts. A command never yields while it holds
 * the lock (commands are synchronous), so hold times are one batch's work: O(1) per command
 * for most, O(n) for KEYS, FLUSHALL, SMEMBERS, HGETALL, LRANGE over a long range — as in Redis,
 * whose single thread has the same cost. The word is a futex-style mutex (Drepper, "Futexes Are
 * Tricky", mutex 2): 0 free, 1 held, 2 held with waiters. A waiter spins {@link SPIN_READS}
 * reads (the holder runs on another core and a batch is short), then marks the word 2 and
 * sleeps on it with the memory's wait32 (Atomics.wait on the word's physical address) until
 * the holder's unlock, which wakes one waiter only when the word said 2. With more threads than
 * cores the holder may be preempted, and spinning longer would only burn the time slice it
 * needs. A memory without wait32 (an unshared ArrayBuffer) naps {@link NAP_MS} ms instead.
 * Lock order: store lock, then malloc's lock (malloc never calls back).
 * Rejected: a lock per hash bucket or per key — multi-key commands (MSET, DEL k1 k2, FLUSHALL)
 * and incremental rehashing would need lock ordering across buckets, and with 2 cores the
 * global lock is not what limits throughput (the network and the parser are).
 *
 * ## Layout (byte offsets; every field an int32 word; addresses are virtual)
 *
 *   root (ROOT_BYTES)
 *     0 magic "KVS1"      4 version           8 hash seed          12 keys with an expiry
 *    16 … 43 keyspace dict (dict.ts)          44 active-expire cursor
 *    48 bytes allocated by the store          52 AOF on (1) / off (0)
 *    56 AOF log: first chunk                  60 AOF log: last chunk
 *    64 lock    68 contended acquisitions    72 naps             (own cache line)
 *   128 commands run       132 keys expired  136 keyspace hits  140 keyspace misses
 *   144 clients connected  148 connections   152 AOF bytes pending  156 last client id
 *   160 changes (dirty)    164 created at (ms, high word)  168 (low word)
 *
 *   key entry (in the keyspace dict)
 *     0 next   4 hash   8 key length   12 type | HAS_EXPIRE   16 value   20 value length
 *    24 expire at, ms (high word)   28 (low word)   32 key bytes
 *
 *   string: value = a block of `value length` bytes (0 when empty)
 *   list:   value = {0 head node, 4 tail node, 8 length};  node = {0 prev, 4 next, 8 length, 12 bytes}
 *   set:    value = a dict;  member entry = {0 next, 4 hash, 8 length, 12 bytes}
 *   hash:   value = {0 … 27 dict, 28 first field, 32 last field} (insertion order, as Redis's
 *           listpack-encoded hashes reply);  field entry = {0 next, 4 hash, 8 field length,
 *           12 value, 16 value length, 20 previous field, 24 next field, 28 field bytes}
 *   zset:   see zset.ts
 *   AOF log chunk = {0 next, 4 bytes used, 8 capacity, 12 bytes}
 *
 * Counters are 32-bit and wrap. A core adds its increments of commands, changes, keyspace hits
 * and misses and allocated bytes to the root when it releases the lock (and before it reads
 * them), not per command. Expiry times are int64 milliseconds, exact up to 2^53.
 *
 * Errors: methods return 0 / false / -ENOMEM when the heap is full, with nothing changed;
 * a broken invariant is a panic. Who calls: the engine (commands.ts), the AOF loader, tests.
 */

import { ENOMEM } from "../../src/abi/errno.js";
import { checkInteger, InvalidArgumentError, panic } from "../../src/errors.js";
import { DICT_BYTES, Dict, type DictHeap, E_HASH, E_KLEN } from "./dict.js";
import {
  align4,
  copyIn,
  copyMem,
  copyOut,
  hashBytes,
  type StoreAllocator,
  type StoreMemory,
} from "./memory.js";
import type { RespWriter } from "./resp.js";
import { ZSets } from "./zset.js";

export const TYPE_NONE = 0;
export const TYPE_STRING = 1;
export const TYPE_LIST = 2;
export const TYPE_SET = 3;
export const TYPE_ZSET = 4;
export const TYPE_HASH = 5;
/** Names as TYPE replies them, indexed by type. */
export const TYPE_NAMES: readonly string[] = ["none", "string", "list", "set", "zset", "hash"];

const MAGIC = 0x3153564b; // "KVS1"
const VERSION = 1;
export const ROOT_BYTES = 192;

const R_MAGIC = 0;
const R_VERSION = 4;
const R_SEED = 8;
const R_EXPIRES = 12;
const R_KEYS = 16;
const R_EXPIRE_CURSOR = 44;
const R_USED = 48;
const R_AOF_ON = 52;
const R_AOF_HEAD = 56;
const R_AOF_TAIL = 60;
const R_LOCK = 64;
const R_CONTENDED = 68;
const R_NAPS = 72;
const R_COMMANDS = 128;
const R_EXPIRED = 132;
const R_HITS = 136;
const R_MISSES = 140;
const R_CLIENTS = 144;
const R_CONNECTIONS = 148;
const R_AOF_BYTES = 152;
const R_CLIENT_ID = 156;
const R_DIRTY = 160;
const R_CREATED_HI = 164;
const R_CREATED_LO = 168;
/** Records appended to the AOF log since the store was made (monotonic, wraps at 2^32). */
const R_AOF_SEQ = 172;

// key entry
const K_TYPE = 12;
const K_VAL = 16;
const K_VLEN = 20;
const K_EXP_HI = 24;
const K_EXP_LO = 28;
export const K_KEY = 32;
const HAS_EXPIRE = 0x100;

// list
const L_HEAD = 0;
const L_TAIL = 4;
const L_LEN = 8;
const LIST_BYTES = 12;
const LN_PREV = 0;
const LN_NEXT = 4;
const LN_LEN = 8;
export const LN_DATA = 12;

// set member
export const SE_KEY = 12;

// hash
const H_FIRST = 28;
const H_LAST = 32;
const HASH_BYTES = 36;
export const HF_VAL = 12;
export const HF_VLEN = 16;
const HF_PREV = 20;
const HF_NEXT = 24;
export const HF_KEY = 28;

// AOF log
const AC_NEXT = 0;
const AC_USED = 4;
const AC_CAP = 8;
const AC_DATA = 12;
const AOF_CHUNK = 64 * 1024;

/** Reads of the lock word a waiter spins before it sleeps. */
const SPIN_READS = 200;
/** Longest sleep of a waiter before it looks again (ms): belt and braces, wakes are precise. */
const WAIT_MS = 2;
/** How long a waiter naps when the memory cannot sleep on a word (ms). */
const NAP_MS = 0.05;
/** Lock word states. */
const UNLOCKED = 0;
const LOCKED = 1;
const CONTENDED = 2;

/** Options of a core's {@link KvStore}. */
export interface KvStoreOptions {
  /** Time source in ms since the epoch (tests inject a fake clock). Default Date.now. */
  readonly clock?: () => number;
}

/** Statistics of the store, as INFO reports them. */
export interface KvStats {
  readonly keys: number;
  readonly expires: number;
  readonly usedBytes: number;
  readonly commands: number;
  readonly expiredKeys: number;
  readonly hits: number;
  readonly misses: number;
  readonly clients: number;
  readonly connections: number;
  readonly aofPendingBytes: number;
  readonly aofEnabled: boolean;
  readonly dirty: number;
  readonly lockContended: number;
  readonly lockNaps: number;
  readonly createdAt: number;
}

const TWO32 = 4294967296;

/** init() of a dict needs no heap. */
const NO_HEAP: DictHeap = {
  alloc: () => 0,
  free: () => panic("kv store: free on the no-heap"),
};

/** One core's handle on the store (see the header). Methods other than lock/unlock expect the lock held. */
export class KvStore implements DictHeap {
  readonly mem: StoreMemory;
  readonly allocator: StoreAllocator;
  readonly root: number;
  readonly seed: number;
  readonly clock: () => number;
  readonly dict: Dict;
  readonly zsets: ZSets;
  /** The time of the command being run (set by the engine before each command). */
  now = 0;
  /** While replaying an AOF: nothing expires and nothing is logged (Redis: server.loading). */
  loading = false;
  readonly #keys: number;
  readonly #nap = new Int32Array(new SharedArrayBuffer(4));
  /**
   * Counts of this core not yet in the root (see #flushCounts): commands, dirty, keyspace hits
   * and misses, bytes allocated. Plain JS numbers: bumping a root word per command costs two
   * translated accesses, and the lock holder is the only writer anyway.
   */
  #dCommands = 0;
  #dDirty = 0;
  #dHits = 0;
  #dMisses = 0;
  #dUsed = 0;
  /** Scratch for a record built by the store itself (DEL of an expired key). */
  #scratch = new Uint8Array(256);

  /**
   * Lay out an empty store in the memory (once per process, before any KvStore is made);
   * returns the root's address, which every core's KvStore is made with.
   */
  static create(
    mem: StoreMemory,
    allocator: StoreAllocator,
    clock: () => number = Date.now,
  ): number {
    const root = allocator.malloc(ROOT_BYTES);
    if (root === 0) throw new InvalidArgumentError("kv store: no memory for the root block");
    for (let i = 0; i < ROOT_BYTES; i += 4) mem.store32(root + i, 0);
    mem.store32(root + R_SEED, (Math.random() * TWO32) | 0);
    new Dict(mem, NO_HEAP).init(root + R_KEYS);
    mem.store32(root + R_USED, ROOT_BYTES);
    const t = clock();
    mem.store32(root + R_CREATED_HI, Math.floor(t / TWO32));
    mem.store32(root + R_CREATED_LO, (t % TWO32) | 0);
    mem.store32(root + R_VERSION, VERSION);
    mem.cas32(root + R_MAGIC, 0, MAGIC); // publish: the store is laid out
    return root;
  }

  constructor(
    mem: StoreMemory,
    allocator: StoreAllocator,
    root: number,
    options: KvStoreOptions = {},
  ) {
    checkInteger("root", root, 1, 2 ** 32 - 1);
    if ((mem.load32(root + R_MAGIC) | 0) !== MAGIC)
      panic(`kv store: no store at 0x${root.toString(16)} (KvStore.create not run)`);
    if (mem.load32(root + R_VERSION) !== VERSION)
      panic(`kv store: the store at 0x${root.toString(16)} has another layout version`);
    this.mem = mem;
    this.allocator = allocator;
    this.root = root >>> 0;
    this.seed = mem.load32(root + R_SEED);
    this.clock = options.clock ?? Date.now;
    this.dict = new Dict(mem, this);
    this.zsets = new ZSets(mem, this, this.dict);
    this.#keys = this.root + R_KEYS;
  }

  // -------------------------------------------------------------------------------------------
  // The lock

  /** Take the store lock (spin, then sleep on the word). Never held across a yield. */
  lock(): void {
    if (this.mem.cas32(this.root + R_LOCK, UNLOCKED, LOCKED) !== UNLOCKED) this.#lockSlow(); // claim: the store
  }

  /** Take the store lock if it is free now (one CAS, no waiting): true if taken. */
  tryLock(): boolean {
    return this.mem.cas32(this.root + R_LOCK, UNLOCKED, LOCKED) === UNLOCKED; // claim: the store
  }

  #lockSlow(): void {
    const mem = this.mem;
    const at = this.root + R_LOCK;
    for (let i = 0; i < SPIN_READS; i++) {
      if (mem.load32(at) === UNLOCKED && mem.cas32(at, UNLOCKED, LOCKED) === UNLOCKED) {
        this.#bump(R_CONTENDED, 1); // claim: the store, after a short spin
        return;
      }
    }
    let naps = 0;
    for (;;) {
      const c = mem.load32(at);
      // claim as CONTENDED: other waiters may sleep on the word, and we cannot tell
      if (c === UNLOCKED && mem.cas32(at, UNLOCKED, CONTENDED) === UNLOCKED) break;
      if (c === LOCKED && mem.cas32(at, LOCKED, CONTENDED) !== LOCKED) continue; // publish: a waiter sleeps
      if (c !== UNLOCKED) {
        if (mem.wait32 !== undefined)
          mem.wait32(at, CONTENDED, WAIT_MS); // park: until unlock wakes us
        else Atomics.wait(this.#nap, 0, 0, NAP_MS); // nap: let a preempted holder run
        naps++;
      }
    }
    this.#bump(R_CONTENDED, 1);
    if (naps > 0) this.#bump(R_NAPS, naps);
  }

  /** Release the store lock, waking one sleeping waiter if the word says there is one. */
  unlock(): void {
    this.#flushCounts();
    const mem = this.mem;
    const at = this.root + R_LOCK;
    const c = mem.cas32(at, LOCKED, UNLOCKED); // release: the critical section's writes
    if (c === LOCKED) return;
    if (c !== CONTENDED || mem.cas32(at, CONTENDED, UNLOCKED) !== CONTENDED)
      panic("kv store: unlock of a free lock"); // release (only the holder moves the word off 2)
    if (mem.wait32 !== undefined) mem.notify32?.(at, 1); // wake: one sleeper
  }

  // -------------------------------------------------------------------------------------------
  // Memory (DictHeap): every block the store holds is counted

  alloc(n: number): number {
    const va = this.allocator.malloc(n);
    if (va !== 0) this.#dUsed += n;
    return va >>> 0;
  }

  free(va: number, n: number): void {
    this.allocator.free(va);
    this.#dUsed -= n;
  }

  #ld(va: number): number {
    return this.mem.load32(va) >>> 0;
  }

  #bump(field: number, by: number): void {
    const at = this.root + field;
    this.mem.store32(at, this.mem.load32(at) + by);
  }

  /** Count a command run; count a change (Redis's dirty counter). */
  countCommand(): void {
    this.#dCommands++;
  }

  addDirty(n: number): void {
    this.#dDirty += n;
  }

  /**
   * Add this core's deferred counts to the root. Runs under the lock: at every unlock, and
   * before anything reads those counters, so a reader (who holds the lock) sees every core's
   * counts exactly — the others flushed theirs before they released the lock.
   */
  #flushCounts(): void {
    if (this.#dCommands !== 0) this.#bump(R_COMMANDS, this.#dCommands);
    if (this.#dDirty !== 0) this.#bump(R_DIRTY, this.#dDirty);
    if (this.#dHits !== 0) this.#bump(R_HITS, this.#dHits);
    if (this.#dMisses !== 0) this.#bump(R_MISSES, this.#dMisses);
    if (this.#dUsed !== 0) this.#bump(R_USED, this.#dUsed);
    this.#dCommands = this.#dDirty = this.#dHits = this.#dMisses = this.#dUsed = 0;
  }

  /** A connection opened (returns its client id) or closed. */
  clientConnected(): number {
    this.#bump(R_CLIENTS, 1);
    this.#bump(R_CONNECTIONS, 1);
    this.#bump(R_CLIENT_ID, 1);
    return this.mem.load32(this.root + R_CLIENT_ID) >>> 0;
  }

  clientDisconnected(): void {
    this.#bump(R_CLIENTS, -1);
  }

  /** Reset the counters CONFIG RESETSTAT resets. */
  resetStats(): void {
    this.#flushCounts();
    for (const f of [R_COMMANDS, R_EXPIRED, R_HITS, R_MISSES, R_CONNECTIONS])
      this.mem.store32(this.root + f, 0);
  }

  stats(): KvStats {
    this.#flushCounts();
    const m = this.mem;
    const r = this.root;
    const u = (f: number): number => m.load32(r + f) >>> 0;
    return {
      keys: this.dbSize(),
      expires: u(R_EXPIRES),
      usedBytes: u(R_USED),
      commands: u(R_COMMANDS),
      expiredKeys: u(R_EXPIRED),
      hits: u(R_HITS),
      misses: u(R_MISSES),
      clients: m.load32(r + R_CLIENTS),
      connections: u(R_CONNECTIONS),
      aofPendingBytes: u(R_AOF_BYTES),
      aofEnabled: m.load32(r + R_AOF_ON) !== 0,
      dirty: u(R_DIRTY),
      lockContended: u(R_CONTENDED),
      lockNaps: u(R_NAPS),
      createdAt: m.load32(r + R_CREATED_HI) * TWO32 + u(R_CREATED_LO),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Keyspace

  /** The hash of b[o … o+n) under the store's seed (keys and members alike). */
  hash(b: Uint8Array, o: number, n: number): number {
    return hashBytes(b, o, n, this.seed);
  }

  dbSize(): number {
    return this.dict.size(this.#keys);
  }

  /** Keys that have an expiry. */
  expiresCount(): number {
    return this.mem.load32(this.root + R_EXPIRES);
  }

  /**
   * The live entry of key b[o … o+n), or 0. An expired key is deleted on the way (lazy expiry;
   * its DEL goes to the AOF). `read` counts a keyspace hit or miss, as Redis's lookupKeyRead.
   */
  lookup(b: Uint8Array, o: number, n: number, read: boolean): number {
    let e = this.dict.find(this.#keys, K_KEY, this.hash(b, o, n), b, o, n);
    if (e !== 0 && this.isExpired(e)) {
      this.expireEntry(e);
      e = 0;
    }
    if (read) {
      if (e === 0) this.#dMisses++;
      else this.#dHits++;
    }
    return e;
  }

  /** Has entry e passed its expiry time (never while loading)? Redis keyIsExpired: now > when. */
  isExpired(e: number): boolean {
    return (
      !this.loading &&
      (this.mem.load32(e + K_TYPE) & HAS_EXPIRE) !== 0 &&
      this.now > this.expireAt(e)
    );
  }

  /** Delete an expired entry: count it, and log a DEL for the AOF (Redis propagateDeletion). */
  expireEntry(e: number): void {
    if (this.aofOn()) {
      const n = this.mem.load32(e + E_KLEN);
      if (this.#scratch.length < n) this.#scratch = new Uint8Array(n);
      copyOut(this.mem, e + K_KEY, this.#scratch, 0, n);
      this.#logDel(this.#scratch, n);
    }
    this.deleteEntry(e);
    this.#bump(R_EXPIRED, 1);
  }

  #logDel(key: Uint8Array, n: number): void {
    const head = `*2\r\n$3\r\nDEL\r\n$${n}\r\n`;
    const rec = new Uint8Array(head.length + n + 2);
    for (let i = 0; i < head.length; i++) rec[i] = head.charCodeAt(i);
    rec.set(key.subarray(0, n), head.length);
    rec[head.length + n] = 13;
    rec[head.length + n + 1] = 10;
    this.aofAppend(rec, 0, rec.length);
  }

  typeOf(e: number): number {
    return this.mem.load32(e + K_TYPE) & 0xff;
  }

  value(e: number): number {
    return this.#ld(e + K_VAL);
  }

  valueLength(e: number): number {
    return this.mem.load32(e + K_VLEN);
  }

  keyLength(e: number): number {
    return this.mem.load32(e + E_KLEN);
  }

  /** Does e have an expiry? Its time (ms) if so, else -1. */
  expireAt(e: number): number {
    const m = this.mem;
    if ((m.load32(e + K_TYPE) & HAS_EXPIRE) === 0) return -1;
    return m.load32(e + K_EXP_HI) * TWO32 + (m.load32(e + K_EXP_LO) >>> 0);
  }

  hasExpire(e: number): boolean {
    return (this.mem.load32(e + K_TYPE) & HAS_EXPIRE) !== 0;
  }

  /** Give e an expiry time (ms since the epoch). */
  setExpire(e: number, when: number): void {
    const m = this.mem;
    const flags = m.load32(e + K_TYPE);
    if ((flags & HAS_EXPIRE) === 0) {
      m.store32(e + K_TYPE, flags | HAS_EXPIRE);
      this.#bump(R_EXPIRES, 1);
    }
    const hi = Math.floor(when / TWO32);
    m.store32(e + K_EXP_HI, hi);
    m.store32(e + K_EXP_LO, (when - hi * TWO32) | 0);
  }

  /** Drop e's expiry; true if it had one. */
  removeExpire(e: number): boolean {
    const m = this.mem;
    const flags = m.load32(e + K_TYPE);
    if ((flags & HAS_EXPIRE) === 0) return false;
    m.store32(e + K_TYPE, flags & ~HAS_EXPIRE);
    this.#bump(R_EXPIRES, -1);
    return true;
  }

  /** Add key b[o … o+n) (absent) with a value of `type`; the entry, or 0 when out of memory. */
  addKey(b: Uint8Array, o: number, n: number, type: number, value: number, vlen: number): number {
    const m = this.mem;
    const e = this.alloc(align4(K_KEY + n));
    if (e === 0) return 0;
    m.store32(e + E_HASH, this.hash(b, o, n));
    m.store32(e + E_KLEN, n);
    m.store32(e + K_TYPE, type);
    m.store32(e + K_VAL, value);
    m.store32(e + K_VLEN, vlen);
    m.store32(e + K_EXP_HI, 0);
    m.store32(e + K_EXP_LO, 0);
    copyIn(m, e + K_KEY, b, o, n);
    if (!this.dict.add(this.#keys, e)) {
      this.free(e, align4(K_KEY + n));
      return 0;
    }
    return e;
  }

  /** Unlink entry e from the keyspace and free it with its value. */
  deleteEntry(e: number): void {
    this.dict.remove(this.#keys, e);
    this.#freeEntry(e);
  }

  #freeEntry(e: number): void {
    if (this.hasExpire(e)) this.#bump(R_EXPIRES, -1);
    this.freeValue(this.typeOf(e), this.value(e), this.valueLength(e));
    this.free(e, align4(K_KEY + this.keyLength(e)));
  }

  /** Delete key b[o … o+n) if it exists (and is not expired); true if it did. */
  deleteKey(b: Uint8Array, o: number, n: number): boolean {
    const e = this.lookup(b, o, n, false);
    if (e === 0) return false;
    this.deleteEntry(e);
    return true;
  }

  /** Replace e's value (freeing the old one) with one of `type`. */
  replaceValue(e: number, type: number, value: number, vlen: number): void {
    const m = this.mem;
    this.freeValue(this.typeOf(e), this.value(e), this.valueLength(e));
    m.store32(e + K_TYPE, (m.load32(e + K_TYPE) & HAS_EXPIRE) | type);
    m.store32(e + K_VAL, value);
    m.store32(e + K_VLEN, vlen);
  }

  /** Free a value of any type. */
  freeValue(type: number, v: number, vlen: number): void {
    switch (type) {
      case TYPE_STRING:
        if (v !== 0) this.free(v, align4(vlen));
        return;
      case TYPE_LIST:
        this.#freeList(v);
        return;
      case TYPE_SET:
        this.dict.clear(v, (x) => this.free(x, align4(SE_KEY + this.mem.load32(x + E_KLEN))));
        this.free(v, DICT_BYTES);
        return;
      case TYPE_HASH:
        this.dict.clear(v, (x) => this.#freeField(x));
        this.free(v, HASH_BYTES);
        return;
      case TYPE_ZSET:
        this.zsets.destroy(v);
        return;
      default:
        panic(`kv store: free of a value of unknown type ${type}`);
    }
  }

  /** Delete every key (FLUSHALL / FLUSHDB). */
  flushAll(): void {
    this.dict.clear(this.#keys, (e) => this.#freeEntry(e));
    this.mem.store32(this.root + R_EXPIRE_CURSOR, 0);
  }

  /** Every live key's entry, in table order (KEYS; allocates the list). */
  keyEntries(): number[] {
    const out: number[] = [];
    for (let e = this.dict.first(this.#keys); e !== 0; e = this.dict.next(this.#keys, e))
      if (!this.isExpired(e)) out.push(e);
    return out;
  }

  /** One SCAN step over the keyspace: calls visit for each entry of the cursor's buckets. */
  scanKeys(cursor: number, visit: (e: number) => void): number {
    return this.dict.scan(this.#keys, cursor, visit);
  }

  /**
   * Active expiry (Redis activeExpireCycle, simplified): walk at most `budget` buckets of the
   * keyspace from where the last call stopped, deleting keys whose time has passed. Returns how
   * many it deleted. Rejected: sampling a separate dict of keys with an expiry, as Redis does —
   * a second index on every EXPIRE for a store whose sweep is already bounded per call.
   */
  expireCycle(budget: number): number {
    if (this.loading || this.expiresCount() === 0 || this.dbSize() === 0) return 0;
    let cursor = this.#ld(this.root + R_EXPIRE_CURSOR);
    const dead: number[] = [];
    const visit = (e: number): void => {
      if (this.isExpired(e)) dead.push(e);
    };
    for (let i = 0; i < budget; i++) {
      cursor = this.scanKeys(cursor, visit);
      if (cursor === 0) break;
    }
    for (const e of dead) this.expireEntry(e);
    this.mem.store32(this.root + R_EXPIRE_CURSOR, cursor);
    return dead.length;
  }

  // -------------------------------------------------------------------------------------------
  // Strings

  /** A string block holding b[o … o+n) (0 for the empty string), or -1 when out of memory. */
  newString(b: Uint8Array, o: number, n: number): number {
    if (n === 0) return 0;
    const v = this.alloc(align4(n));
    if (v === 0) return -1;
    copyIn(this.mem, v, b, o, n);
    return v;
  }

  /**
   * Set key b[o…o+n) to the string v[vo…vo+vn), whatever it held; keep its expiry only if
   * keepTtl. Returns the entry, or 0 when out of memory (nothing changed).
   */
  setString(
    b: Uint8Array,
    o: number,
    n: number,
    v: Uint8Array,
    vo: number,
    vn: number,
    keepTtl: boolean,
  ): number {
    const e = this.lookup(b, o, n, false);
    if (e !== 0) {
      if (!this.setStringValue(e, v, vo, vn)) return 0;
      if (!keepTtl) this.removeExpire(e);
      return e;
    }
    const s = this.newString(v, vo, vn);
    if (s < 0) return 0;
    const ne = this.addKey(b, o, n, TYPE_STRING, s, vn);
    if (ne === 0 && s !== 0) this.free(s, align4(vn));
    return ne;
  }

  /** Make e a string holding v[vo…vo+vn) (reusing its block when the size allows); false when out of memory. */
  setStringValue(e: number, v: Uint8Array, vo: number, vn: number): boolean {
    const m = this.mem;
    if (this.typeOf(e) === TYPE_STRING) {
      const old = this.value(e);
      const olen = this.valueLength(e);
      if (old !== 0 && vn > 0 && align4(olen) === align4(vn)) {
        copyIn(m, old, v, vo, vn);
        m.store32(e + K_VLEN, vn);
        return true;
      }
    }
    const s = this.newString(v, vo, vn);
    if (s < 0) return false;
    this.replaceValue(e, TYPE_STRING, s, vn);
    return true;
  }

  /** Append b[o…o+n) to string entry e; false when out of memory. */
  appendString(e: number, b: Uint8Array, o: number, n: number): boolean {
    if (n === 0) return true;
    const m = this.mem;
    const old = this.value(e);
    const olen = this.valueLength(e);
    const total = olen + n;
    const s = this.alloc(align4(total));
    if (s === 0) return false;
    if (old !== 0) copyMem(m, s, old, align4(olen));
    m.writeBytes(s + olen, b.subarray(o, o + n)); // any alignment: writeBytes copies bytes
    if (old !== 0) this.free(old, align4(olen));
    m.store32(e + K_VAL, s);
    m.store32(e + K_VLEN, total);
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Lists

  /** A new empty list, or 0. */
  newList(): number {
    const l = this.alloc(LIST_BYTES);
    if (l === 0) return 0;
    this.mem.store32(l + L_HEAD, 0);
    this.mem.store32(l + L_TAIL, 0);
    this.mem.store32(l + L_LEN, 0);
    return l;
  }

  listLength(l: number): number {
    return this.mem.load32(l + L_LEN);
  }

  /** Push b[o…o+n) at the head (left) or tail; false when out of memory. */
  listPush(l: number, left: boolean, b: Uint8Array, o: number, n: number): boolean {
    const m = this.mem;
    const x = this.alloc(align4(LN_DATA + n));
    if (x === 0) return false;
    m.store32(x + LN_LEN, n);
    copyIn(m, x + LN_DATA, b, o, n);
    if (left) {
      const h = this.#ld(l + L_HEAD);
      m.store32(x + LN_PREV, 0);
      m.store32(x + LN_NEXT, h);
      if (h !== 0) m.store32(h + LN_PREV, x);
      else m.store32(l + L_TAIL, x);
      m.store32(l + L_HEAD, x);
    } else {
      const t = this.#ld(l + L_TAIL);
      m.store32(x + LN_NEXT, 0);
      m.store32(x + LN_PREV, t);
      if (t !== 0) m.store32(t + LN_NEXT, x);
      else m.store32(l + L_HEAD, x);
      m.store32(l + L_TAIL, x);
    }
    m.store32(l + L_LEN, m.load32(l + L_LEN) + 1);
    return true;
  }

  listHead(l: number): number {
    return this.#ld(l + L_HEAD);
  }

  listTail(l: number): number {
    return this.#ld(l + L_TAIL);
  }

  nodeNext(x: number): number {
    return this.#ld(x + LN_NEXT);
  }

  nodePrev(x: number): number {
    return this.#ld(x + LN_PREV);
  }

  nodeLength(x: number): number {
    return this.mem.load32(x + LN_LEN);
  }

  /** The node at index i (0 ≤ i < length), walking from the nearer end. */
  listIndex(l: number, i: number): number {
    const len = this.listLength(l);
    if (i < len / 2) {
      let x = this.listHead(l);
      for (let k = 0; k < i; k++) x = this.nodeNext(x);
      return x;
    }
    let x = this.listTail(l);
    for (let k = len - 1; k > i; k--) x = this.nodePrev(x);
    return x;
  }

  /** Unlink and free node x. */
  listRemove(l: number, x: number): void {
    const m = this.mem;
    const p = this.nodePrev(x);
    const nx = this.nodeNext(x);
    if (p !== 0) m.store32(p + LN_NEXT, nx);
    else m.store32(l + L_HEAD, nx);
    if (nx !== 0) m.store32(nx + LN_PREV, p);
    else m.store32(l + L_TAIL, p);
    m.store32(l + L_LEN, m.load32(l + L_LEN) - 1);
    this.free(x, align4(LN_DATA + this.nodeLength(x)));
  }

  #freeList(l: number): void {
    let x = this.listHead(l);
    while (x !== 0) {
      const nx = this.nodeNext(x);
      this.free(x, align4(LN_DATA + this.nodeLength(x)));
      x = nx;
    }
    this.free(l, LIST_BYTES);
  }

  // -------------------------------------------------------------------------------------------
  // Sets

  /** A new empty set, or 0. */
  newSet(): number {
    const s = this.alloc(DICT_BYTES);
    if (s !== 0) this.dict.init(s);
    return s;
  }

  /** Add member b[o…o+n): 1 added, 0 already there, -ENOMEM. */
  setAdd(s: number, b: Uint8Array, o: number, n: number): number {
    const h = this.hash(b, o, n);
    if (this.dict.find(s, SE_KEY, h, b, o, n) !== 0) return 0;
    const m = this.mem;
    const e = this.alloc(align4(SE_KEY + n));
    if (e === 0) return -ENOMEM;
    m.store32(e + E_HASH, h);
    m.store32(e + E_KLEN, n);
    copyIn(m, e + SE_KEY, b, o, n);
    if (!this.dict.add(s, e)) {
      this.free(e, align4(SE_KEY + n));
      return -ENOMEM;
    }
    return 1;
  }

  /** The member entry of b[o…o+n), or 0. */
  setFind(s: number, b: Uint8Array, o: number, n: number): number {
    return this.dict.find(s, SE_KEY, this.hash(b, o, n), b, o, n);
  }

  /** Remove member entry e and free it. */
  setRemoveEntry(s: number, e: number): void {
    this.dict.remove(s, e);
    this.free(e, align4(SE_KEY + this.mem.load32(e + E_KLEN)));
  }

  setSize(s: number): number {
    return this.dict.size(s);
  }

  // -------------------------------------------------------------------------------------------
  // Hashes

  /** A new empty hash, or 0. */
  newHash(): number {
    const h = this.alloc(HASH_BYTES);
    if (h === 0) return 0;
    this.dict.init(h);
    this.mem.store32(h + H_FIRST, 0);
    this.mem.store32(h + H_LAST, 0);
    return h;
  }

  /** The field entry of b[o…o+n), or 0. */
  hashFind(hh: number, b: Uint8Array, o: number, n: number): number {
    return this.dict.find(hh, HF_KEY, this.hash(b, o, n), b, o, n);
  }

  /** Set field f to value v: 1 new field, 0 updated, -ENOMEM (nothing changed). */
  hashSet(
    hh: number,
    f: Uint8Array,
    fo: number,
    fn: number,
    v: Uint8Array,
    vo: number,
    vn: number,
  ): number {
    const m = this.mem;
    const h = this.hash(f, fo, fn);
    const old = this.dict.find(hh, HF_KEY, h, f, fo, fn);
    if (old !== 0) {
      const ov = this.#ld(old + HF_VAL);
      const olen = m.load32(old + HF_VLEN);
      if (ov !== 0 && vn > 0 && align4(olen) === align4(vn)) {
        copyIn(m, ov, v, vo, vn);
      } else {
        const s = this.newString(v, vo, vn);
        if (s < 0) return -ENOMEM;
        if (ov !== 0) this.free(ov, align4(olen));
        m.store32(old + HF_VAL, s);
      }
      m.store32(old + HF_VLEN, vn);
      return 0;
    }
    const s = this.newString(v, vo, vn);
    if (s < 0) return -ENOMEM;
    const e = this.alloc(align4(HF_KEY + fn));
    if (e === 0) {
      if (s !== 0) this.free(s, align4(vn));
      return -ENOMEM;
    }
    m.store32(e + E_HASH, h);
    m.store32(e + E_KLEN, fn);
    m.store32(e + HF_VAL, s);
    m.store32(e + HF_VLEN, vn);
    copyIn(m, e + HF_KEY, f, fo, fn);
    if (!this.dict.add(hh, e)) {
      if (s !== 0) this.free(s, align4(vn));
      this.free(e, align4(HF_KEY + fn));
      return -ENOMEM;
    }
    const last = this.#ld(hh + H_LAST);
    m.store32(e + HF_PREV, last);
    m.store32(e + HF_NEXT, 0);
    if (last !== 0) m.store32(last + HF_NEXT, e);
    else m.store32(hh + H_FIRST, e);
    m.store32(hh + H_LAST, e);
    return 1;
  }

  /** Remove field entry e and free it. */
  hashRemoveEntry(hh: number, e: number): void {
    const m = this.mem;
    const p = this.#ld(e + HF_PREV);
    const nx = this.#ld(e + HF_NEXT);
    if (p !== 0) m.store32(p + HF_NEXT, nx);
    else m.store32(hh + H_FIRST, nx);
    if (nx !== 0) m.store32(nx + HF_PREV, p);
    else m.store32(hh + H_LAST, p);
    this.dict.remove(hh, e);
    this.#freeField(e);
  }

  #freeField(e: number): void {
    const m = this.mem;
    const v = this.#ld(e + HF_VAL);
    if (v !== 0) this.free(v, align4(m.load32(e + HF_VLEN)));
    this.free(e, align4(HF_KEY + m.load32(e + E_KLEN)));
  }

  hashSize(hh: number): number {
    return this.dict.size(hh);
  }

  /** The first field in insertion order, or 0; then {@link hashNextField}. */
  hashFirstField(hh: number): number {
    return this.#ld(hh + H_FIRST);
  }

  hashNextField(e: number): number {
    return this.#ld(e + HF_NEXT);
  }

  // -------------------------------------------------------------------------------------------
  // The AOF log (shared, in execution order)

  aofOn(): boolean {
    return !this.loading && this.mem.load32(this.root + R_AOF_ON) !== 0;
  }

  /** Turn logging of changes on or off (off drops what is pending). */
  setAof(on: boolean): void {
    this.mem.store32(this.root + R_AOF_ON, on ? 1 : 0);
    if (!on) this.#dropAof();
  }

  /** Append one record's bytes to the log; false when out of memory (the record is lost). */
  aofAppend(b: Uint8Array, o: number, n: number): boolean {
    const m = this.mem;
    let tail = this.#ld(this.root + R_AOF_TAIL);
    let done = 0;
    while (done < n) {
      if (tail === 0 || m.load32(tail + AC_USED) === m.load32(tail + AC_CAP)) {
        const cap = Math.max(AOF_CHUNK, align4(n - done));
        const c = this.alloc(AC_DATA + cap);
        if (c === 0) return false;
        m.store32(c + AC_NEXT, 0);
        m.store32(c + AC_USED, 0);
        m.store32(c + AC_CAP, cap);
        if (tail !== 0) m.store32(tail + AC_NEXT, c);
        else m.store32(this.root + R_AOF_HEAD, c);
        m.store32(this.root + R_AOF_TAIL, c);
        tail = c;
      }
      const used = m.load32(tail + AC_USED);
      const k = Math.min(n - done, m.load32(tail + AC_CAP) - used);
      m.writeBytes(tail + AC_DATA + used, b.subarray(o + done, o + done + k));
      m.store32(tail + AC_USED, used + k);
      done += k;
    }
    this.#bump(R_AOF_BYTES, n);
    this.#bump(R_AOF_SEQ, 1);
    return true;
  }

  /** The sequence number of the last record appended (compare with wrapping subtraction). */
  aofSeq(): number {
    return this.mem.load32(this.root + R_AOF_SEQ);
  }

  /** Move every pending log byte into `out` (in order) and free the chunks; returns the bytes moved. */
  aofDrain(out: RespWriter): number {
    const m = this.mem;
    let total = 0;
    let c = this.#ld(this.root + R_AOF_HEAD);
    while (c !== 0) {
      const used = m.load32(c + AC_USED);
      out.ensure(used);
      copyOut(m, c + AC_DATA, out.buf, out.length, used);
      out.length += used;
      total += used;
      const next = this.#ld(c + AC_NEXT);
      this.free(c, AC_DATA + m.load32(c + AC_CAP));
      c = next;
    }
    m.store32(this.root + R_AOF_HEAD, 0);
    m.store32(this.root + R_AOF_TAIL, 0);
    m.store32(this.root + R_AOF_BYTES, 0);
    return total;
  }

  #dropAof(): void {
    const m = this.mem;
    let c = this.#ld(this.root + R_AOF_HEAD);
    while (c !== 0) {
      const next = this.#ld(c + AC_NEXT);
      this.free(c, AC_DATA + m.load32(c + AC_CAP));
      c = next;
    }
    m.store32(this.root + R_AOF_HEAD, 0);
    m.store32(this.root + R_AOF_TAIL, 0);
    m.store32(this.root + R_AOF_BYTES, 0);
  }
}
