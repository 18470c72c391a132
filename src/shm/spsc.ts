/**
 * spsc: the single-producer single-consumer ring, the cheapest correct ring for an edge with one
 * writer thread and one reader thread (a core's request ring to one domain).
 *
 * Design (Lamport's queue with cached indexes, as rigtorp's SPSCQueue, plus FastForward's
 * in-slot signalling): the producer alone writes `tail`, the consumer alone writes `head`, each
 * once per batch. The consumer does not poll `tail`: it polls the sequence word of the next
 * slot, which lives in the same cache line as the entry it is about to read, so a round trip
 * moves one line each way instead of two (the entry and a counter). The producer reads `head`
 * only when its cached copy says the ring is full. `tail` is kept for monitors (queue depth)
 * and for a producer that attaches later; nobody synchronises on it, so it is a plain store.
 *
 * A batch of n entries is published with one Atomics.store, not n (see {@link publishSeqs}): on
 * this Node every Atomics operation is a call into the engine (≈ 8–10 ns, not inlined).
 *
 *   slot sequence   (position + 1) once the producer has published that position; anything
 *                   else (e.g. position + 1 − capacity, left from the lap before) means "not yet"
 *
 * Owner notes: tail (plain store) and every slot's sequence word — producer thread only;
 * head — consumer thread only (Atomics.store). Payload words of positions [head, tail) belong to
 * the consumer, the rest to the producer. A slot's sequence store publishes the payload written
 * before it (Atomics are sequentially consistent: plain writes of the payload happen-before a
 * consumer's Atomics.load that sees the new sequence).
 */

import { InvalidArgumentError, panic } from "../errors.js";
import { PAYLOAD_WORDS, SLOT_SHIFT } from "./layout.js";
import {
  checkDescriptor,
  checkHeader,
  kHead,
  kTail,
  RING_HEADER_BYTES,
  type Ring,
  type RingDescriptor,
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
  /** Int32 index of slot 0's sequence word; slot s starts at #base + s * 32 (SLOT_SHIFT). */
  readonly #base: number;
  readonly #notEmpty: Notifier | null;
  readonly #notFull: Notifier | null;

  // Producer-local state.
  #tail: number;
  #cachedHead: number;
  #pending = 0;
  // Consumer-local state.
  #head: number;
  #claimed = 0;

  constructor(sab: SharedArrayBuffer, desc: RingDescriptor) {
    if (desc.kind !== "spsc") {
      throw new InvalidArgumentError(`SpscRing needs an spsc descriptor, got ${desc.kind}`);
    }
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
    this.#notEmpty = desc.notEmpty !== undefined ? new Notifier(sab, desc.notEmpty) : null;
    this.#notFull = desc.notFull !== undefined ? new Notifier(sab, desc.notFull) : null;
  }

  /** Int32 index of the sequence word of the slot that holds `pos`. */
  #seqAt(pos: number): number {
    return this.#base + ((pos & this.#mask) << SLOT_SHIFT);
  }

  // ---- producer ----

  reserve(n: number): number {
    let free = this.capacity - ((this.#tail + this.#pending - this.#cachedHead) | 0);
    if (free < n) {
      this.#cachedHead = Atomics.load(this.i32, this.#headAt); // load-acquire: slots given back
      free = this.capacity - ((this.#tail + this.#pending - this.#cachedHead) | 0);
    }
    if (free < 0) panic(`spsc@${this.descriptor.offset}: more in flight than capacity`);
    const k = Math.max(0, Math.min(n, free));
    this.#pending += k;
    return k;
  }

  slot(i: number): number {
    return this.#seqAt((this.#tail + i) | 0) + 1;
  }

  publish(): void {
    const n = this.#pending;
    if (n === 0) return;
    const i32 = this.i32;
    const first = this.#tail;
    publishSeqs(i32, this.#base, this.#mask, first, n, 1);
    this.#tail = (first + n) | 0;
    this.#pending = 0;
    i32[this.#tailAt] = this.#tail; // plain: tail is read by monitors only (see the design note)
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
    const k = publishedRun(this.i32, this.#base, this.#mask, (this.#head + this.#claimed) | 0, max);
    this.#claimed += k;
    return k;
  }

  entry(i: number): number {
    return this.#seqAt((this.#head + i) | 0) + 1;
  }

  release(n: number = this.#claimed): void {
    const k = n < this.#claimed ? (n > 0 ? n : 0) : this.#claimed;
    if (k === 0) return;
    this.#head = (this.#head + k) | 0;
    this.#claimed -= k;
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
    const pos = (this.#head + this.#claimed) | 0;
    return Atomics.load(this.i32, this.#seqAt(pos)) === ((pos + 1) | 0); // load-acquire
  }

  size(): number {
    // load: a snapshot of both counters, for monitors
    return (Atomics.load(this.i32, this.#tailAt) - Atomics.load(this.i32, this.#headAt)) | 0;
  }
}

/** Copy up to 15 payload words to the entry whose payload starts at `at` (the rest zeroed). */
export function writeEntry(i32: Int32Array, at: number, words: ArrayLike<number>): void {
  const n = checkEntryWords(words);
  for (let w = 0; w < n; w++) i32[at + w] = words[w];
  for (let w = n; w < PAYLOAD_WORDS; w++) i32[at + w] = 0;
}

/** The number of words in `words`; throws if they do not fit in one entry's payload. */
export function checkEntryWords(words: ArrayLike<number>): number {
  const n = words.length;
  if (n > PAYLOAD_WORDS) {
    throw new InvalidArgumentError(`an entry carries ${PAYLOAD_WORDS} payload words, got ${n}`);
  }
  return n;
}

/** Copy the 15 payload words of the entry whose payload starts at `at` into `into`. */
export function readEntry(i32: Int32Array, at: number, into: Int32Array): void {
  if (into.length < PAYLOAD_WORDS) {
    throw new InvalidArgumentError(
      `tryPop needs room for ${PAYLOAD_WORDS} words, got ${into.length}`,
    );
  }
  for (let w = 0; w < PAYLOAD_WORDS; w++) into[w] = i32[at + w];
}

/**
 * How many of the slots at positions start, start + 1, … (at most `max`) are published, in an
 * unbroken run: a single consumer's claim (it needs no CAS: nobody else takes entries).
 */
export function publishedRun(
  i32: Int32Array,
  base: number,
  mask: number,
  start: number,
  max: number,
): number {
  let k = 0;
  while (k < max) {
    const pos = (start + k) | 0;
    if (Atomics.load(i32, base + ((pos & mask) << SLOT_SHIFT)) !== ((pos + 1) | 0)) break; // load-acquire: published?
    k++;
  }
  return k;
}

/**
 * Store the sequence words of the n slots at positions [first, first + n) — each `pos + add`
 * (1 to publish entries, capacity to free slots) — with ONE sequentially consistent store: the
 * later slots' words are written plainly and first, in reverse order, and the first slot's word
 * last, with Atomics.store. Readers scan slots in position order and never look at a slot before
 * they have seen every earlier one published, so the one that sees the first slot's word
 * synchronises with that store and then sees every plain write made before it (the JS memory
 * model's happens-before through a seq-cst pair; on x86 stores are not reordered either). A batch
 * thus costs one engine call however long it is.
 */
export function publishSeqs(
  i32: Int32Array,
  base: number,
  mask: number,
  first: number,
  n: number,
  add: number,
): void {
  for (let i = n - 1; i > 0; i--) {
    const pos = (first + i) | 0;
    i32[base + ((pos & mask) << SLOT_SHIFT)] = (pos + add) | 0; // plain: published by the store below
  }
  Atomics.store(i32, base + ((first & mask) << SLOT_SHIFT), (first + add) | 0); // publish: the whole batch
}
