/**
 * ring-model: SpscRing and MpmcRing, driven single-threaded by random command sequences and
 * checked step by step against a plain array queue (fast-check model-based testing).
 *
 * The model splits the ring's entries into three FIFO groups, in position order:
 *   claimed    taken by the consumer's open peek, not yet released
 *   published  visible to the consumer, not yet claimed
 *   reserved   written by the producer's open batch, not yet published
 * and free = capacity - all three. Every verb must agree with it exactly: reserve(n) returns
 * min(n, free), peek(max) returns min(max, published), a full ring hands out 0 slots (nothing is
 * overwritten), an empty one 0 entries, and every entry comes out once, in order, with all 15
 * of its words intact. Each entry's words are all distinct from the same word of any other
 * entry, so a slot that is handed out twice, read from the wrong place or overwritten shows.
 *
 * Each run picks a capacity (2, 4, 8, 64), a starting counter (often a few steps below the
 * 32-bit wrap or the int32 sign flip, so that the run crosses it) and whether the producer and
 * the consumer are one ring object or two objects attached to the same descriptor, as two
 * threads would hold them.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { PanicError } from "../src/errors.js";
import {
  Arena,
  attachRing,
  kHead,
  kTail,
  layRing,
  PAYLOAD_WORDS,
  RING_HEADER_BYTES,
  type Ring,
  type RingDescriptor,
  type RingKind,
  ringBytes,
  SLOT_SHIFT,
} from "../src/shm/index.js";

/** Runs per ring kind; each run is up to MAX_COMMANDS verbs. */
const NUM_RUNS = 4000;
const MAX_COMMANDS = 200;

// ---- payloads ----

/** One entry as the model knows it: its id, and how many leading words were written (rest 0). */
interface Entry {
  readonly id: number;
  readonly words: number;
}

/** Word `w` of entry `id`: for a fixed w, a bijection of id, so no two entries share a word. */
function payloadWord(id: number, w: number): number {
  return Math.imul(id + 1, 0x9e3779b1) ^ Math.imul(w + 1, 0x85ebca6b);
}

function expectedWord(e: Entry, w: number): number {
  return w < e.words ? payloadWord(e.id, w) : 0;
}

function writePayload(i32: Int32Array, at: number, id: number): void {
  for (let w = 0; w < PAYLOAD_WORDS; w++) i32[at + w] = payloadWord(id, w);
}

/** Assert that the 15 payload words at `at` (in `src`, from index `at`) are exactly entry `e`. */
function assertEntry(src: Int32Array, at: number, e: Entry, where: string): void {
  for (let w = 0; w < PAYLOAD_WORDS; w++) {
    if (src[at + w] !== expectedWord(e, w)) {
      const got = Array.from(src.subarray(at, at + PAYLOAD_WORDS));
      const want = Array.from({ length: PAYLOAD_WORDS }, (_, i) => expectedWord(e, i));
      assert.deepEqual(got, want, `${where}: entry ${e.id} word ${w} wrong`);
    }
  }
}

// ---- model and system under test ----

interface Model {
  readonly kind: RingKind;
  /** MPMC attached with a sole consumer (head is written at release, not at peek). */
  readonly sole: boolean;
  readonly capacity: number;
  readonly initialCounter: number;
  claimed: Entry[];
  published: Entry[];
  reserved: Entry[];
  nextId: number;
  // Totals since the start, for the shared counters.
  reservedTotal: number;
  publishedTotal: number;
  claimedTotal: number;
  releasedTotal: number;
}

interface Real {
  readonly desc: RingDescriptor;
  readonly producer: Ring;
  readonly consumer: Ring;
}

function free(m: Readonly<Model>): number {
  return m.capacity - m.claimed.length - m.published.length - m.reserved.length;
}

/** The raw counter words of the ring header, as another thread would read them. */
function counters(r: Real): { tail: number; head: number } {
  const at = r.desc.offset / 4;
  const i32 = r.producer.i32;
  return { tail: Atomics.load(i32, at + kTail), head: Atomics.load(i32, at + kHead) };
}

type Cmd = fc.Command<Model, Real>;

/** reserve(n), then write a distinct payload into every slot it handed out. */
class Reserve implements Cmd {
  constructor(readonly n: number) {}
  check(): boolean {
    return true; // allowed at any time, including to grow an open batch
  }
  run(m: Model, r: Real): void {
    const before = m.reserved.length;
    const want = Math.min(this.n, free(m));
    const k = r.producer.reserve(this.n);
    assert.equal(k, want, `reserve(${this.n}) with ${free(m)} free, ${before} already reserved`);
    for (let i = 0; i < k; i++) {
      const e: Entry = { id: m.nextId++, words: PAYLOAD_WORDS };
      writePayload(r.producer.i32, r.producer.slot(before + i), e.id);
      m.reserved.push(e);
    }
    m.reservedTotal += k;
  }
  toString(): string {
    return `reserve(${this.n})`;
  }
}

class Publish implements Cmd {
  check(): boolean {
    return true; // publish with nothing reserved is a no-op
  }
  run(m: Model, r: Real): void {
    r.producer.publish();
    m.publishedTotal += m.reserved.length;
    m.published.push(...m.reserved);
    m.reserved = [];
  }
  toString(): string {
    return "publish()";
  }
}

/** peek(max), then read every entry it claimed: FIFO order, all words intact. */
class Peek implements Cmd {
  constructor(readonly max: number) {}
  check(): boolean {
    return true; // allowed at any time, including to grow an open claim
  }
  run(m: Model, r: Real): void {
    const before = m.claimed.length;
    const want = Math.min(this.max, m.published.length);
    const k = r.consumer.peek(this.max);
    assert.equal(
      k,
      want,
      `peek(${this.max}) with ${m.published.length} published, ${before} claimed`,
    );
    for (let i = 0; i < k; i++) {
      const e = m.published.shift()!;
      assertEntry(r.consumer.i32, r.consumer.entry(before + i), e, `peek entry(${before + i})`);
      m.claimed.push(e);
    }
    m.claimedTotal += k;
  }
  toString(): string {
    return `peek(${this.max})`;
  }
}

/** Re-read every claimed entry (the producer must not have touched them), then release. */
class Release implements Cmd {
  check(): boolean {
    return true; // release with nothing claimed is a no-op
  }
  run(m: Model, r: Real): void {
    for (const [i, e] of m.claimed.entries()) {
      assertEntry(r.consumer.i32, r.consumer.entry(i), e, "before release");
    }
    r.consumer.release();
    m.releasedTotal += m.claimed.length;
    m.claimed = [];
  }
  toString(): string {
    return "release()";
  }
}

/** tryPush of a `words`-word entry; the rest of the entry must read as zeros. */
class TryPush implements Cmd {
  constructor(readonly words: number) {}
  check(m: Readonly<Model>): boolean {
    return m.reserved.length === 0;
  }
  run(m: Model, r: Real): void {
    const e: Entry = { id: m.nextId, words: this.words };
    const words = Array.from({ length: this.words }, (_, w) => payloadWord(e.id, w));
    const ok = r.producer.tryPush(words);
    assert.equal(ok, free(m) > 0, `tryPush with ${free(m)} free`);
    if (!ok) return;
    m.nextId++;
    m.published.push(e);
    m.reservedTotal++;
    m.publishedTotal++;
  }
  toString(): string {
    return `tryPush(${this.words} words)`;
  }
}

/** tryPop into a buffer full of garbage: on empty the buffer must be left alone. */
class TryPop implements Cmd {
  check(m: Readonly<Model>): boolean {
    return m.claimed.length === 0;
  }
  run(m: Model, r: Real): void {
    const into = new Int32Array(PAYLOAD_WORDS).fill(0x7eadbeef);
    const ok = r.consumer.tryPop(into);
    assert.equal(ok, m.published.length > 0, `tryPop with ${m.published.length} published`);
    if (!ok) {
      assert.ok(
        into.every((v) => v === 0x7eadbeef),
        "tryPop wrote into the buffer of a failed pop",
      );
      return;
    }
    const e = m.published.shift()!;
    assertEntry(into, 0, e, "tryPop");
    m.claimedTotal++;
    m.releasedTotal++;
  }
  toString(): string {
    return "tryPop()";
  }
}

/** tryPush inside an open batch is a broken invariant: it panics and changes nothing. */
class TryPushInBatch implements Cmd {
  check(m: Readonly<Model>): boolean {
    return m.reserved.length > 0;
  }
  run(_m: Model, r: Real): void {
    assert.throws(() => r.producer.tryPush([1, 2, 3]), isPanic(/tryPush inside an open batch/));
  }
  toString(): string {
    return "tryPush() inside a batch";
  }
}

/** tryPop inside an open claim panics the same way. */
class TryPopInClaim implements Cmd {
  check(m: Readonly<Model>): boolean {
    return m.claimed.length > 0;
  }
  run(_m: Model, r: Real): void {
    const into = new Int32Array(PAYLOAD_WORDS);
    assert.throws(() => r.consumer.tryPop(into), isPanic(/tryPop inside an open claim/));
  }
  toString(): string {
    return "tryPop() inside a claim";
  }
}

/** The wait conditions, size() and the shared counters, against the model. */
class Observe implements Cmd {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    assert.equal(r.producer.hasSpace(), free(m) > 0, `hasSpace with ${free(m)} free`);
    assert.equal(r.consumer.hasEntries(), m.published.length > 0, "hasEntries");
    const size = r.consumer.size();
    assert.equal(r.producer.size(), size, "size() differs between the two objects");
    const { tail, head } = counters(r);
    const start = m.initialCounter;
    if (m.kind === "spsc") {
      // SPSC: tail counts published entries, head released ones; size() is exactly
      // "published and not yet released", as the Ring interface documents.
      assert.equal(size, m.published.length + m.claimed.length, "spsc size()");
      assert.equal(tail, (start + m.publishedTotal) | 0, "spsc tail counter");
      assert.equal(head, (start + m.releasedTotal) | 0, "spsc head counter");
    } else if (m.sole) {
      // MPMC with a sole consumer: tail as below; head is the consumer's local one, written
      // back at release, so it counts released entries, as SPSC's does.
      assert.equal(size, m.reserved.length + m.published.length + m.claimed.length, "sole size()");
      assert.equal(tail, (start + m.reservedTotal) | 0, "mpmc tail counter");
      assert.equal(head, (start + m.releasedTotal) | 0, "sole consumer's head counter");
    } else {
      // MPMC: tail counts claimed positions (reserved, maybe unpublished), head claimed ones
      // (peeked, maybe unreleased), so size() = reserved + published. It equals the documented
      // "published and not yet released" only while no batch or claim is open.
      if (m.reserved.length === 0 && m.claimed.length === 0) {
        assert.equal(size, m.published.length, "mpmc size() with no open batch or claim");
      }
      assert.equal(size, m.reserved.length + m.published.length, "mpmc size() = tail - head");
      assert.equal(tail, (start + m.reservedTotal) | 0, "mpmc tail counter");
      assert.equal(head, (start + m.claimedTotal) | 0, "mpmc head counter");
    }
  }
  toString(): string {
    return "observe()";
  }
}

function isPanic(message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof PanicError, `expected a PanicError, got ${String(e)}`);
    assert.equal(e.code, "EXO_ERR_PANIC");
    assert.match(e.message, message);
    return true;
  };
}

// ---- setup and the property ----

interface Setup {
  readonly capacity: number;
  readonly initialCounter: number;
  /** Producer and consumer are two ring objects on one descriptor (as two threads hold them). */
  readonly split: boolean;
}

const setupArb: fc.Arbitrary<Setup> = fc.record({
  capacity: fc.constantFrom(2, 4, 8, 64),
  initialCounter: fc.oneof(
    // Just below the 32-bit wrap (2^32 - 3), the int32 sign flip (2^31 - 2) and zero (-5).
    fc.constantFrom(2 ** 32 - 3, 2 ** 31 - 2, -5, 0, 2 ** 32 - 1, -(2 ** 31)),
    fc.integer({ min: 2 ** 32 - 150, max: 2 ** 32 - 1 }),
    fc.integer({ min: 2 ** 31 - 150, max: 2 ** 31 + 10 }),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  ),
  split: fc.boolean(),
});

/** Command arbitraries sized for `capacity`: counts from 0 to past a whole ring. */
function commandsFor(capacity: number): fc.Arbitrary<Iterable<Cmd>> {
  const count = fc.oneof(
    fc.integer({ min: 0, max: 3 }),
    fc.integer({ min: 0, max: 2 * capacity + 1 }),
    fc.constantFrom(capacity, capacity + 1, 2 ** 31 - 1),
  );
  return fc.commands(
    [
      count.map((n) => new Reserve(n)),
      fc.constant(new Publish()),
      count.map((n) => new Peek(n)),
      fc.constant(new Release()),
      fc.integer({ min: 1, max: PAYLOAD_WORDS }).map((w) => new TryPush(w)),
      fc.constant(new TryPop()),
      fc.constant(new TryPushInBatch()),
      fc.constant(new TryPopInClaim()),
      fc.constant(new Observe()),
    ],
    { maxCommands: MAX_COMMANDS, size: "max" },
  );
}

/** Bytes of padding laid before the ring, so that its offset is not 0. */
const CACHE_LINE_PAD = 128;

function build(kind: RingKind, s: Setup, sole = false): { model: Model; real: Real } {
  const arena = new Arena(
    new SharedArrayBuffer(CACHE_LINE_PAD + ringBytes(kind, s.capacity) + 256),
  );
  arena.alloc("guard", CACHE_LINE_PAD); // the ring does not start at offset 0
  const desc = layRing(arena, "ring", {
    kind,
    capacity: s.capacity,
    initialCounter: s.initialCounter,
  });
  const producer = attachRing(arena.sab, desc, { soleConsumer: sole && !s.split });
  const consumer = s.split ? attachRing(arena.sab, desc, { soleConsumer: sole }) : producer;
  return {
    model: {
      kind,
      sole,
      capacity: s.capacity,
      initialCounter: s.initialCounter,
      claimed: [],
      published: [],
      reserved: [],
      nextId: 0,
      reservedTotal: 0,
      publishedTotal: 0,
      claimedTotal: 0,
      releasedTotal: 0,
    },
    real: { desc, producer, consumer },
  };
}

/** After a run: close the batch and the claim, then drain; every entry out once, in order. */
function drain(m: Model, r: Real): void {
  new Publish().run(m, r);
  new Release().run(m, r);
  new Observe().run(m, r);
  const into = new Int32Array(PAYLOAD_WORDS);
  while (m.published.length > 0) {
    assert.ok(r.consumer.tryPop(into), `drain: ${m.published.length} entries still expected`);
    assertEntry(into, 0, m.published.shift()!, "drain");
    m.claimedTotal++;
    m.releasedTotal++;
  }
  assert.equal(r.consumer.tryPop(into), false, "drain: an entry the model never produced");
  assert.equal(r.consumer.peek(m.capacity), 0, "drain: peek on an empty ring");
  new Observe().run(m, r);
  assert.equal(r.consumer.size(), 0);
  // An empty ring takes exactly `capacity` entries again, wherever the counters now are.
  assert.equal(r.producer.reserve(m.capacity + 1), m.capacity, "drain: reserve on an empty ring");
  r.producer.publish();
  assert.equal(r.consumer.peek(2 ** 31 - 1), m.capacity);
  r.consumer.release();
}

/** True if the tail counter ran across 2^32 -> 0 or across the int32 sign flip during the run. */
function crossedWrap(m: Model): boolean {
  const end = m.reservedTotal;
  return (m.initialCounter >>> 0) + end >= 2 ** 32 || (m.initialCounter | 0) + end > 2 ** 31 - 1;
}

function checkKind(kind: RingKind, sole = false): void {
  const arb = setupArb.chain((s) => commandsFor(s.capacity).map((cmds) => ({ s, cmds })));
  let runs = 0;
  let wrapped = 0;
  fc.assert(
    fc.property(arb, ({ s, cmds }) => {
      const { model, real } = build(kind, s, sole);
      fc.modelRun(() => ({ model, real }), cmds);
      drain(model, real);
      runs++;
      if (crossedWrap(model)) wrapped++;
    }),
    { numRuns: NUM_RUNS },
  );
  // The generator must keep exercising the wrap, or the property says little about it.
  assert.ok(wrapped >= runs / 10, `only ${wrapped} of ${runs} runs crossed the counter wrap`);
}

describe("ring model: random verb sequences against an array queue", () => {
  test("SpscRing behaves as a bounded FIFO queue", () => checkKind("spsc"));
  test("MpmcRing behaves as a bounded FIFO queue", () => checkKind("mpmc"));
  test("MpmcRing with a sole consumer (local head, no CAS) behaves as a bounded FIFO queue", () =>
    checkKind("mpmc", true));

  // An MPMC producer starts its claim where its own last claim ended, a guess that the CAS
  // checks. A guess left behind by other producers, by a few laps or by half the counter space
  // (where the distance's sign flips), must still find the tail.
  test("an MPMC producer whose tail guess is stale claims at the real tail", () => {
    for (const behind of [3 * 8 + 5, 2 ** 31 + 3]) {
      const arena = new Arena(new SharedArrayBuffer(ringBytes("mpmc", 8) + 256));
      const desc = layRing(arena, "ring", { kind: "mpmc", capacity: 8 });
      const late = attachRing(arena.sab, desc); // guesses tail 0
      const consumer = attachRing(arena.sab, desc, { soleConsumer: true });
      const busy = attachRing(arena.sab, desc);
      const i32 = busy.i32;
      if (behind < 100) {
        // Other producers go round the ring a few laps, the consumer keeping up.
        for (let i = 0; i < behind; i++) {
          assert.ok(busy.tryPush([i]));
          assert.equal(consumer.peek(1), 1);
          consumer.release();
        }
      } else {
        // As if 2^31 + 3 entries had gone through: the counters and every slot's sequence
        // where they would then be (empty ring, each slot free for its next position).
        const at = desc.offset / 4;
        const base = at + RING_HEADER_BYTES / 4;
        i32[at + kTail] = behind | 0;
        i32[at + kHead] = behind | 0;
        for (let j = 0; j < 8; j++) {
          const pos = (behind + j) | 0;
          i32[base + ((pos & 7) << SLOT_SHIFT)] = pos;
        }
      }
      assert.equal(late.reserve(1), 1, `${behind} behind: a free slot is claimed`);
      late.i32[late.slot(0)] = 4242;
      late.publish();
      assert.equal(
        Atomics.load(i32, desc.offset / 4 + kTail),
        (behind + 1) | 0,
        "tail moved by one",
      );
      const fresh = attachRing(arena.sab, desc, { soleConsumer: true });
      assert.equal(fresh.peek(8), 1, "exactly one entry published");
      assert.equal(fresh.i32[fresh.entry(0)], 4242);
    }
  });

  // The property above must be able to fail: a model that is off by one entry is caught.
  test("the model catches a ring that loses an entry", () => {
    const { model, real } = build("spsc", {
      capacity: 4,
      initialCounter: 2 ** 32 - 1,
      split: true,
    });
    new TryPush(PAYLOAD_WORDS).run(model, real);
    new TryPush(PAYLOAD_WORDS).run(model, real);
    const into = new Int32Array(PAYLOAD_WORDS);
    assert.ok(real.consumer.tryPop(into)); // popped behind the model's back
    assert.throws(() => new Peek(1).run(model, real), assert.AssertionError);
  });
});
