/**
 * spsc: the single-producer single-consumer ring, the cheapest correct ring for an edge with one
 * writer thread and one reader thread (a core's request ring to one domain).
 *
 * Design (Lamport's queue with cached indexes, as in rigtorp's SPSCQueue and the io_uring SQ):
 * the producer alone writes `tail`, the consumer alone writes `head`. Each side keeps its own
 * counter in a local field and a cached copy of the other side's, and reads the shared line of
 * the other side only when the cache says full (producer) or empty (consumer). So in steady
 * state a batch costs one store-release of the own counter and no read of the other's line.
 *
 * Owner notes: tail — producer thread only (Atomics.store); head — consumer thread only
 * (Atomics.store); entries of positions [head, tail) belong to the consumer, the rest to the
 * producer. The store of tail publishes the entries written before it (Atomics are seq-cst, so
 * plain writes to the entry happen-before a consumer's Atomics.load of the new tail).
 */

import { InvalidArgumentError, panic } from "../errors.js";
import { ENTRY_WORDS } from "./layout.js";
import {
  RING_HEADER_BYTES,
  type Ring,
  type RingDescriptor,
  checkDescriptor,
  checkHeader,
  kHead,
  kTail,
} from "./ring.js";
import { Notifier } from "./wake.js";

export class SpscRing implements Ring {
  readonly kind = "spsc" as const;
  readonly descriptor: RingDescriptor;
  readonly i32: Int32Array;
  readonly capacity: number;
  readonly #mask: number;
  readonly #tailAt: number;
  readonly #headAt: number;
  readonly #base: number;
  readonly #notEmpty: Notifier | null;
  readonly #notFull: Notifier | null;

  // Producer-local state.
  #tail: number;
  #cachedHead: number;
  #pending = 0;
  // Consumer-local state.
  #head: number;
  #cachedTail: number;
  #claimed = 0;

  constructor(sab: SharedArrayBuffer, desc: RingDescriptor) {
    if (desc.kind !== "spsc") throw new InvalidArgumentError(`SpscRing needs an spsc descriptor, got ${desc.kind}`);
    checkDescriptor(sab, desc);
    this.descriptor = desc;
    this.i32 = new Int32Array(sab);
    checkHeader(this.i32, desc);
    this.capacity = desc.capacity;
    this.#mask = desc.capacity - 1;
    const at = desc.offset / 4;
    this.#tailAt = at + kTail;
    this.#headAt = at + kHead;
    this.#base = at + RING_HEADER_BYTES / 4;
    this.#tail = Atomics.load(this.i32, this.#tailAt); // load: attach where the last producer stopped
    this.#head = Atomics.load(this.i32, this.#headAt); // load: attach where the last consumer stopped
    this.#cachedHead = this.#head;
    this.#cachedTail = this.#tail;
    this.#notEmpty = desc.notEmpty !== undefined ? new Notifier(sab, desc.notEmpty) : null;
    this.#notFull = desc.notFull !== undefined ? new Notifier(sab, desc.notFull) : null;
  }

  // ---- producer ----

  reserve(n: number): number {
    const used = (this.#tail + this.#pending - this.#cachedHead) | 0;
    let free = this.capacity - used;
    if (free < n) {
      this.#cachedHead = Atomics.load(this.i32, this.#headAt); // load-acquire: slots the consumer gave back
      free = this.capacity - ((this.#tail + this.#pending - this.#cachedHead) | 0);
    }
    const k = n < free ? n : free;
    if (k < 0) panic(`spsc@${this.descriptor.offset}: more in flight than capacity`);
    this.#pending += k;
    return k;
  }

  slot(i: number): number {
    return this.#base + (((this.#tail + i) & this.#mask) << 4);
  }

  publish(): void {
    if (this.#pending === 0) return;
    this.#tail = (this.#tail + this.#pending) | 0;
    this.#pending = 0;
    Atomics.store(this.i32, this.#tailAt, this.#tail); // publish: store-release of the batch
    this.#notEmpty?.notify();
  }

  tryPush(words: ArrayLike<number>): boolean {
    if (this.#pending !== 0) panic(`spsc@${this.descriptor.offset}: tryPush inside an open batch`);
    checkEntryWords(words); // decode first: a refused entry must not leave a slot claimed
    if (this.reserve(1) === 0) return false;
    writeEntry(this.i32, this.slot(0), words);
    this.publish();
    return true;
  }

  hasSpace(): boolean {
    if (((this.#tail + this.#pending - this.#cachedHead) | 0) < this.capacity) return true;
    this.#cachedHead = Atomics.load(this.i32, this.#headAt); // load-acquire
    return ((this.#tail + this.#pending - this.#cachedHead) | 0) < this.capacity;
  }

  // ---- consumer ----

  peek(max: number): number {
    let avail = (this.#cachedTail - this.#head - this.#claimed) | 0;
    if (avail < max) {
      this.#cachedTail = Atomics.load(this.i32, this.#tailAt); // load-acquire: newly published entries
      avail = (this.#cachedTail - this.#head - this.#claimed) | 0;
    }
    const k = max < avail ? max : avail;
    if (k < 0) panic(`spsc@${this.descriptor.offset}: head passed tail`);
    this.#claimed += k;
    return k;
  }

  entry(i: number): number {
    return this.#base + (((this.#head + i) & this.#mask) << 4);
  }

  release(): void {
    if (this.#claimed === 0) return;
    this.#head = (this.#head + this.#claimed) | 0;
    this.#claimed = 0;
    Atomics.store(this.i32, this.#headAt, this.#head); // publish: slots back to the producer
    this.#notFull?.notify();
  }

  tryPop(into: Int32Array): boolean {
    if (this.#claimed !== 0) panic(`spsc@${this.descriptor.offset}: tryPop inside an open claim`);
    if (this.peek(1) === 0) return false;
    readEntry(this.i32, this.entry(0), into);
    this.release();
    return true;
  }

  hasEntries(): boolean {
    if (this.#cachedTail !== ((this.#head + this.#claimed) | 0)) return true;
    this.#cachedTail = Atomics.load(this.i32, this.#tailAt); // load-acquire
    return this.#cachedTail !== ((this.#head + this.#claimed) | 0);
  }

  size(): number {
    return (Atomics.load(this.i32, this.#tailAt) - Atomics.load(this.i32, this.#headAt)) | 0; // load: a snapshot
  }
}

/** Copy up to 16 words into the entry at `at` (the rest of the entry is zeroed). */
export function writeEntry(i32: Int32Array, at: number, words: ArrayLike<number>): void {
  const n = checkEntryWords(words);
  for (let w = 0; w < n; w++) i32[at + w] = words[w];
  for (let w = n; w < ENTRY_WORDS; w++) i32[at + w] = 0;
}

/** The number of words in `words`; throws if they do not fit in one entry. */
export function checkEntryWords(words: ArrayLike<number>): number {
  const n = words.length;
  if (n > ENTRY_WORDS) throw new InvalidArgumentError(`an entry holds ${ENTRY_WORDS} words, got ${n}`);
  return n;
}

/** Copy the 16 words of the entry at `at` into `into`. */
export function readEntry(i32: Int32Array, at: number, into: Int32Array): void {
  for (let w = 0; w < ENTRY_WORDS; w++) into[w] = i32[at + w];
}
