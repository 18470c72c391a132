/**
 * mpmc: the multi-producer multi-consumer ring, for edges with several writers or readers (a
 * core's ready queue, which every domain posts completions to; a shared spawn queue).
 *
 * Design (Dmitry Vyukov's bounded MPMC queue): each slot carries a sequence number.
 *   seq == pos        the slot is free for the producer of position `pos`
 *   seq == pos + 1    the slot holds the entry of `pos`, ready for its consumer
 *   seq == pos + cap  the consumer of `pos` is done; the slot is free for position pos + cap
 * A producer claims positions with one CAS on `tail` and publishes each slot by storing its
 * sequence; a consumer claims with one CAS on `head` and frees each slot the same way. Producers
 * never wait for each other and consumers never wait for each other: a stalled producer delays
 * only the consumer of its own slot, which sees "empty" and may park.
 *
 * Batches: reserve(n) checks the sequences of the next n slots and claims the free prefix with a
 * single CAS (one tail update for the batch); a slot found free cannot be taken by anyone else
 * before that CAS, because taking it needs tail to move first. peek(n) does the same on head.
 * Publishing and releasing store each slot's sequence — no further CAS, and one seq-cst store
 * per batch (spsc.ts publishSeqs: a claimant scans slots in order, so the batch's first slot
 * publishes the rest).
 *
 * The sequence word is word 0 of the slot's own 64-byte entry (Vyukov's cell holds sequence and
 * data together; FlexSC's syscall entry opens with its status word), so checking a slot and
 * reading its entry touch one cache line.
 *
 * A sole consumer (a core's ready queue and pinned spawn queue have one: the core) attaches with
 * `{ soleConsumer: true }` and skips the consumer side's shared counter: it keeps head in a local,
 * so hasEntries is one acquire load (the slot's sequence) and peek claims with no CAS. On this
 * Node every Atomics operation is a call into the engine (≈ 8–10 ns, not inlined by the JIT), and
 * on a core's hot path the ready queue is polled and taken once per answered call: that is three
 * of them fewer per call. Producers never read head (the slot sequences tell them all), so the
 * sole consumer still writes it, as a plain store, only for monitors (size) and for a consumer
 * that attaches later.
 *
 * Owner notes: tail — any producer, by CAS; head — any consumer, by CAS (a sole consumer: that
 * thread, plain store); a slot's sequence word — the thread that claimed that slot's position;
 * the payload words — the claimant between its claim and its sequence store.
 */

import { InvalidArgumentError, panic } from "../errors.js";
import { SLOT_SHIFT } from "./layout.js";
import {
  checkDescriptor,
  checkHeader,
  kHead,
  kTail,
  RING_HEADER_BYTES,
  type Ring,
  type RingDescriptor,
} from "./ring.js";
import { checkEntryWords, publishedRun, publishSeqs, readEntry, writeEntry } from "./spsc.js";
import { Notifier } from "./wake.js";

export interface MpmcOptions {
  /**
   * This thread is the ring's only consumer for as long as it is attached (no other thread may
   * peek or pop): head is kept locally and claims need no CAS.
   */
  readonly soleConsumer?: boolean;
}

export class MpmcRing implements Ring {
  readonly kind = "mpmc" as const;
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

  // Producer-local: the claimed batch [#claimPos, #claimPos + #pending), and where the last
  // claim ended (the next tail, unless another producer has claimed since).
  #claimPos = 0;
  #pending = 0;
  #tailGuess: number;
  // Consumer-local: the claimed batch [#takePos, #takePos + #taken).
  #takePos = 0;
  #taken = 0;
  /** Sole consumer: the next position to consume, kept here (see the design note). */
  readonly #sole: boolean;
  #head = 0;

  constructor(sab: SharedArrayBuffer, desc: RingDescriptor, options: MpmcOptions = {}) {
    if (desc.kind !== "mpmc")
      throw new InvalidArgumentError(`MpmcRing needs an mpmc descriptor, got ${desc.kind}`);
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
    this.#notEmpty = desc.notEmpty !== undefined ? new Notifier(sab, desc.notEmpty) : null;
    this.#notFull = desc.notFull !== undefined ? new Notifier(sab, desc.notFull) : null;
    this.#tailGuess = Atomics.load(this.i32, this.#tailAt); // load: the first guess
    this.#sole = options.soleConsumer === true;
    this.#head = Atomics.load(this.i32, this.#headAt); // load: attach where the last consumer stopped
  }

  /** Int32 index of the sequence word of the slot that holds `pos`. */
  #seqAt(pos: number): number {
    return this.#base + ((pos & this.#mask) << SLOT_SHIFT);
  }

  // ---- producer ----

  reserve(n: number): number {
    const i32 = this.i32;
    const extending = this.#pending > 0;
    // Extending a batch must continue right after it. Otherwise start where this producer's
    // last claim ended: on a ring with one busy producer that is the tail, and the CAS checks
    // it (a failed CAS returns the tail it found), so the common claim reads no counter.
    let t = extending ? (this.#claimPos + this.#pending) | 0 : this.#tailGuess;
    let exact = extending; // t is known to be the tail (not a guess that may be stale)
    for (;;) {
      let k = 0;
      let diff = 0;
      while (k < n) {
        const pos = (t + k) | 0;
        diff = (Atomics.load(i32, this.#seqAt(pos)) - pos) | 0; // load-acquire: slot state
        if (diff !== 0) break;
        k++;
      }
      if (k === 0) {
        // diff == 0: n <= 0, nothing asked; an extension that cannot grow gets nothing.
        if (diff === 0 || extending) return 0;
        // diff < 0 at the tail: full, the slot still holds last lap's entry.
        if (diff < 0 && exact) return 0;
        // diff > 0: another producer took t (or the guess is stale): read the tail.
        t = Atomics.load(i32, this.#tailAt); // load
        exact = true;
        continue;
      }
      const seen = Atomics.compareExchange(i32, this.#tailAt, t, (t + k) | 0);
      if (seen === t) {
        // claim: positions [t, t+k) are ours
        if (!extending) this.#claimPos = t;
        this.#pending += k;
        this.#tailGuess = (t + k) | 0;
        return k;
      }
      if (extending) return 0;
      t = seen; // another producer moved the tail: try from where it is
      exact = true;
    }
  }

  slot(i: number): number {
    return this.#seqAt((this.#claimPos + i) | 0) + 1;
  }

  publish(): void {
    const n = this.#pending;
    if (n === 0) return;
    publishSeqs(this.i32, this.#base, this.#mask, this.#claimPos, n, 1); // publish: the batch
    this.#pending = 0;
    this.#notEmpty?.notify();
  }

  tryPush(words: ArrayLike<number>): boolean {
    if (this.#pending !== 0) panic(`mpmc@${this.descriptor.offset}: tryPush inside an open batch`);
    checkEntryWords(words); // decode first: a slot claimed, never published, stalls all consumers
    if (this.reserve(1) === 0) return false;
    writeEntry(this.i32, this.slot(0), words);
    this.publish();
    return true;
  }

  hasSpace(): boolean {
    const t = Atomics.load(this.i32, this.#tailAt); // load
    const seq = Atomics.load(this.i32, this.#seqAt(t)); // load
    return ((seq - t) | 0) >= 0;
  }

  // ---- consumer ----

  peek(max: number): number {
    if (this.#sole) return this.#peekSole(max);
    const i32 = this.i32;
    const extending = this.#taken > 0;
    for (;;) {
      const h = extending ? (this.#takePos + this.#taken) | 0 : Atomics.load(i32, this.#headAt); // load
      let k = 0;
      let diff = 0;
      while (k < max) {
        const pos = (h + k) | 0;
        diff = (Atomics.load(i32, this.#seqAt(pos)) - ((pos + 1) | 0)) | 0; // load-acquire
        if (diff !== 0) break;
        k++;
      }
      if (k === 0) {
        // diff < 0: empty, not yet published; diff == 0: max <= 0, nothing asked.
        if (diff <= 0 || extending) return 0;
        continue; // another consumer took h; reload head
      }
      if (Atomics.compareExchange(i32, this.#headAt, h, (h + k) | 0) === h) {
        // claim: positions [h, h+k) are ours to read
        if (!extending) this.#takePos = h;
        this.#taken += k;
        return k;
      }
      if (extending) return 0;
    }
  }

  /** peek for a sole consumer: the published prefix after head, claimed with no CAS. */
  #peekSole(max: number): number {
    const h = (this.#head + this.#taken) | 0;
    const k = publishedRun(this.i32, this.#base, this.#mask, h, max);
    if (this.#taken === 0) this.#takePos = h;
    this.#taken += k;
    return k;
  }

  entry(i: number): number {
    return this.#seqAt((this.#takePos + i) | 0) + 1;
  }

  release(count: number = this.#taken): void {
    const n = count < this.#taken ? (count > 0 ? count : 0) : this.#taken;
    if (n === 0) return;
    // publish: the slots free for their next lap
    publishSeqs(this.i32, this.#base, this.#mask, this.#takePos, n, this.capacity);
    this.#takePos = (this.#takePos + n) | 0;
    this.#taken -= n;
    if (this.#sole) {
      this.#head = this.#takePos;
      this.i32[this.#headAt] = this.#head; // plain: for monitors and a later consumer only
    }
    this.#notFull?.notify();
  }

  tryPop(into: Int32Array): boolean {
    if (this.#taken !== 0) panic(`mpmc@${this.descriptor.offset}: tryPop inside an open claim`);
    if (this.peek(1) === 0) return false;
    readEntry(this.i32, this.entry(0), into);
    this.release();
    return true;
  }

  hasEntries(): boolean {
    if (this.#sole) {
      const pos = (this.#head + this.#taken) | 0;
      return Atomics.load(this.i32, this.#seqAt(pos)) === ((pos + 1) | 0); // load-acquire
    }
    const h =
      this.#taken > 0 ? (this.#takePos + this.#taken) | 0 : Atomics.load(this.i32, this.#headAt); // load
    const seq = Atomics.load(this.i32, this.#seqAt(h)); // load
    return ((seq - ((h + 1) | 0)) | 0) >= 0;
  }

  size(): number {
    return (Atomics.load(this.i32, this.#tailAt) - Atomics.load(this.i32, this.#headAt)) | 0; // load: snapshot
  }
}
