/**
 * ring: what every exocore ring shares — the header layout in shared memory, the descriptor that
 * names a ring across threads, and the producer/consumer verbs both ring kinds implement.
 *
 * A ring is a bounded queue of fixed 64-byte entries laid out in one region of the machine's
 * SharedArrayBuffer. Word 0 of every entry is the ring's own sequence word for that slot (the
 * "status" of a FlexSC syscall entry: free, or published for position p); words 1..15 are the
 * payload (60 bytes). Entries are written and read in place through `i32` (an Int32Array over
 * the whole buffer): `reserve` hands out slots, `slot(i)` gives the int32 index of slot i's first
 * payload word, `publish` makes the whole batch visible with one counter update; `peek`,
 * `entry(i)`, `release` are the consumer's mirror. Nothing is allocated per entry.
 *
 * Memory map of a ring at byte offset `off` (a line is 64 bytes; each part has a 128-byte pair of
 * lines to itself, see LINE_PAIR in layout.ts):
 *
 *   off +   0  line P   tail: next position to produce      written by producers
 *   off + 128  line C   head: next position to consume      written by consumers
 *   off + 256  line M   magic, kind, capacity, entry words   written once at init, then read-only
 *   off + 384  slots    capacity × 128 bytes, each a 64-byte entry and an unused line:
 *                       [ seq | payload word 0 … payload word 14 ] [ padding ]
 *
 * Counters are free-running 32-bit integers that wrap; a position maps to slot `pos & mask`, and
 * distances are taken as `(a - b) | 0`, which is right across the wrap while capacity < 2^31.
 * Full and empty are reported by returning 0 from reserve/peek; nothing is overwritten and
 * nothing blocks: waiting is the caller's choice, through src/shm/wake.ts.
 */

import {
  checkInteger,
  checkOneOf,
  checkPowerOfTwo,
  InvalidArgumentError,
  panic,
} from "../errors.js";
import {
  type Arena,
  CACHE_LINE,
  ENTRY_WORDS,
  kEntrySeq,
  LINE_PAIR,
  SLOT_BYTES,
  SLOT_SHIFT,
} from "./layout.js";
import { initWakeWord, WAKE_WORD_BYTES, type WakeMode } from "./wake.js";

export type RingKind = "spsc" | "mpmc";
export const RING_KINDS: readonly RingKind[] = ["spsc", "mpmc"];

/** Word offsets (int32 index relative to the ring's first word) of the header fields. */
export const kTail = 0;
export const kHead = LINE_PAIR / 4;
const kMagic = (2 * LINE_PAIR) / 4;
const kKind = kMagic + 1;
const kCapacity = kMagic + 2;
const kEntryWords = kMagic + 3;
export const RING_HEADER_BYTES = 3 * LINE_PAIR;
const RING_MAGIC = 0x52494e47; // "RING"

export const MIN_CAPACITY = 2;
export const MAX_CAPACITY = 1 << 24;

/**
 * Names a ring across threads: plain data, safe to send in workerData. Each thread attaches its
 * own ring object (which keeps that thread's cached counters) with {@link attachRing}.
 */
export interface RingDescriptor {
  readonly kind: RingKind;
  /** Byte offset of the ring's header in the buffer. */
  readonly offset: number;
  readonly capacity: number;
  /** Byte offset of the wake word consumers park on when the ring is empty, if any. */
  readonly notEmpty?: number;
  /** Byte offset of the wake word producers park on when the ring is full, if any. */
  readonly notFull?: number;
}

/** The producer's verbs. One producer object per thread; SPSC allows one producing thread. */
export interface RingProducer {
  readonly i32: Int32Array;
  readonly capacity: number;
  /**
   * Claim up to `n` more free slots for this thread's current batch; returns how many it got
   * (0 when the ring is full). May be called again before publish to grow the batch; on an
   * MPMC ring a second call returns 0 if another producer has claimed in between.
   */
  reserve(n: number): number;
  /** Int32 index in `i32` of the first payload word of slot `i` (0-based) of the current batch. */
  slot(i: number): number;
  /** Make the whole batch visible to consumers: one tail update, then wake a parked consumer. */
  publish(): void;
  /** Reserve, copy, publish one entry of up to 15 payload words; false when the ring is full. */
  tryPush(words: ArrayLike<number>): boolean;
  /** True if a reserve(1) would succeed now: the producer's wait condition. */
  hasSpace(): boolean;
}

/** The consumer's verbs. One consumer object per thread; SPSC allows one consuming thread. */
export interface RingConsumer {
  readonly i32: Int32Array;
  readonly capacity: number;
  /** Claim up to `max` more published entries; returns how many (0 when the ring is empty). */
  peek(max: number): number;
  /** Int32 index in `i32` of the first payload word of entry `i` (0-based) of the current claim. */
  entry(i: number): number;
  /**
   * Give the first `n` claimed slots (default: all) back to producers — one head update, then
   * wake a parked producer. Entries not released stay claimed: entry(0) is then the first of them.
   */
  release(n?: number): void;
  /** Copy one entry's 15 payload words into `into` and release it; false when the ring is empty. */
  tryPop(into: Int32Array): boolean;
  /** True if a peek(1) would find an entry now: the consumer's wait condition. */
  hasEntries(): boolean;
}

export interface Ring extends RingProducer, RingConsumer {
  readonly kind: RingKind;
  readonly descriptor: RingDescriptor;
  /** Entries published and not yet released, as seen now from this thread (approximate). */
  size(): number;
}

/** Bytes a ring of this kind and capacity occupies (header and entries; both kinds alike). */
export function ringBytes(_kind: RingKind, capacity: number): number {
  return RING_HEADER_BYTES + capacity * SLOT_BYTES;
}

export interface RingOptions {
  readonly kind: RingKind;
  readonly capacity: number;
  /** Lay out a wake word for consumers to park on (default true). */
  readonly notEmpty?: boolean;
  /** Lay out a wake word for producers to park on when full (default false). */
  readonly notFull?: boolean;
  /** Use this existing wake word for consumers (several rings may share one, e.g. a domain's). */
  readonly notEmptyWord?: number;
  readonly mode?: WakeMode;
  /** Start both counters here (tests use values just below 2^32 to cross the wrap). */
  readonly initialCounter?: number;
}

/** Allocate, initialise and describe a ring (and its wake words) in `arena`. Boot-time only. */
export function layRing(arena: Arena, name: string, options: RingOptions): RingDescriptor {
  const kind = checkOneOf("kind", options.kind, RING_KINDS);
  const capacity = checkPowerOfTwo("capacity", options.capacity, MIN_CAPACITY, MAX_CAPACITY);
  const region = arena.alloc(name, ringBytes(kind, capacity));
  let notEmpty = options.notEmptyWord;
  if (notEmpty === undefined && options.notEmpty !== false) {
    notEmpty = arena.alloc(`${name}.notEmpty`, WAKE_WORD_BYTES).offset;
    initWakeWord(arena.sab, notEmpty, options.mode ?? "hybrid");
  }
  let notFull: number | undefined;
  if (options.notFull) {
    notFull = arena.alloc(`${name}.notFull`, WAKE_WORD_BYTES).offset;
    initWakeWord(arena.sab, notFull, options.mode ?? "hybrid");
  }
  const desc: RingDescriptor = {
    kind,
    offset: region.offset,
    capacity,
    ...(notEmpty !== undefined ? { notEmpty } : {}),
    ...(notFull !== undefined ? { notFull } : {}),
  };
  initRing(arena.sab, desc, options.initialCounter ?? 0);
  return desc;
}

/** Write a fresh ring header (and, for MPMC, the slot sequences) at desc.offset. */
export function initRing(sab: SharedArrayBuffer, desc: RingDescriptor, initialCounter = 0): void {
  checkDescriptor(sab, desc);
  checkInteger("initialCounter", initialCounter, -(2 ** 31), 2 ** 32 - 1);
  const first = initialCounter | 0;
  const w = new Int32Array(sab, desc.offset, ringBytes(desc.kind, desc.capacity) / 4);
  w.fill(0);
  w[kTail] = first;
  w[kHead] = first;
  w[kMagic] = RING_MAGIC;
  w[kKind] = desc.kind === "spsc" ? 1 : 2;
  w[kCapacity] = desc.capacity;
  w[kEntryWords] = ENTRY_WORDS;
  // Each slot's sequence word, for the first lap's position p of that slot:
  //   mpmc (Vyukov): p, "free for the producer of p";
  //   spsc: p + 1 - capacity, "published one lap ago", which no consumer of p mistakes for p + 1.
  const mask = desc.capacity - 1;
  for (let j = 0; j < desc.capacity; j++) {
    const p = (first + j) | 0;
    const seq = desc.kind === "mpmc" ? p : (p + 1 - desc.capacity) | 0;
    w[RING_HEADER_BYTES / 4 + ((p & mask) << SLOT_SHIFT) + kEntrySeq] = seq;
  }
  Atomics.store(w, kMagic, RING_MAGIC); // publish: the header is complete
}

/** Check a descriptor against the buffer before anything is written or read through it. */
export function checkDescriptor(sab: SharedArrayBuffer, desc: RingDescriptor): void {
  checkOneOf("kind", desc.kind, RING_KINDS);
  checkPowerOfTwo("capacity", desc.capacity, MIN_CAPACITY, MAX_CAPACITY);
  checkInteger("ring offset", desc.offset, 0, sab.byteLength);
  if (desc.offset % CACHE_LINE !== 0) {
    throw new InvalidArgumentError(
      `ring offset must be a multiple of ${CACHE_LINE}, got ${desc.offset}`,
    );
  }
  if (desc.offset + ringBytes(desc.kind, desc.capacity) > sab.byteLength) {
    throw new InvalidArgumentError(
      `ring at ${desc.offset} of capacity ${desc.capacity} overruns the buffer`,
    );
  }
}

/** Verify that the memory at desc.offset holds the ring the descriptor names. */
export function checkHeader(i32: Int32Array, desc: RingDescriptor): void {
  const at = desc.offset / 4;
  const kind = desc.kind === "spsc" ? 1 : 2;
  if (Atomics.load(i32, at + kMagic) !== RING_MAGIC) panic(`ring@${desc.offset}: no ring header`); // load: header published at init
  if (i32[at + kKind] !== kind || i32[at + kCapacity] !== desc.capacity) {
    panic(
      `ring@${desc.offset}: header says kind ${i32[at + kKind]} capacity ${i32[at + kCapacity]}`,
    );
  }
}
