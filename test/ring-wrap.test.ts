/**
 * ring-wrap: deterministic edge cases of SpscRing and MpmcRing — many laps across the 32-bit
 * counter wrap and the int32 sign flip, producer and consumer as separate objects on one
 * descriptor (as two threads hold them), and the errors of the layout and attach paths:
 * InvalidArgumentError (EXO_ERR_INVALID_ARG) for a bad descriptor or a full arena, PanicError
 * (EXO_ERR_PANIC) for memory that holds no ring or another ring.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ExocoreError, InvalidArgumentError, PanicError } from "../src/errors.js";
import {
  Arena,
  attachRing,
  kHead,
  kTail,
  LINE_PAIR,
  layRing,
  MpmcRing,
  PAYLOAD_WORDS,
  type Ring,
  type RingDescriptor,
  type RingKind,
  ringBytes,
  SpscRing,
} from "../src/shm/index.js";

const KINDS: readonly RingKind[] = ["spsc", "mpmc"];
const CAPACITY = 8;
/** What the arena hands a 64-byte wake word: a whole pair of lines. */
const WAKE_WORD_BYTES_ALLOCATED = LINE_PAIR;
/** Counters start 10 steps below 2^32 (int32 -10), or 10 below the int32 sign flip. */
const NEAR_WRAP = 2 ** 32 - 10;
const NEAR_SIGN_FLIP = 2 ** 31 - 10;

interface Laid {
  readonly sab: SharedArrayBuffer;
  readonly desc: RingDescriptor;
}

function lay(kind: RingKind, capacity: number, initialCounter = 0): Laid {
  const arena = new Arena(
    new SharedArrayBuffer(LINE_PAIR + ringBytes(kind, capacity) + WAKE_WORD_BYTES_ALLOCATED),
  );
  arena.alloc("guard", LINE_PAIR); // the ring does not start at offset 0
  const desc = layRing(arena, "ring", { kind, capacity, initialCounter });
  return { sab: arena.sab, desc };
}

function counters(l: Laid): { tail: number; head: number } {
  const i32 = new Int32Array(l.sab);
  const at = l.desc.offset / 4;
  return { tail: Atomics.load(i32, at + kTail), head: Atomics.load(i32, at + kHead) };
}

/** Word w of the entry with sequence number `seq`: distinct per seq in every word. */
function word(seq: number, w: number): number {
  return Math.imul(seq + 1, 0x9e3779b1) ^ (w << 24);
}

function writeEntryFor(i32: Int32Array, at: number, seq: number): void {
  for (let w = 0; w < PAYLOAD_WORDS; w++) i32[at + w] = word(seq, w);
}

function assertEntryFor(i32: Int32Array, at: number, seq: number): void {
  for (let w = 0; w < PAYLOAD_WORDS; w++) {
    if (i32[at + w] !== word(seq, w)) {
      assert.fail(`entry ${seq}: word ${w} is ${i32[at + w]}, expected ${word(seq, w)}`);
    }
  }
}

function assertInvalidArg(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
    assert.equal(e.code, "EXO_ERR_INVALID_ARG");
    assert.match(e.message, message);
    return true;
  });
}

function assertPanic(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PanicError, `expected PanicError, got ${String(e)}`);
    assert.ok(e instanceof ExocoreError);
    assert.equal(e.code, "EXO_ERR_PANIC");
    assert.match(e.message, /^panic: /);
    assert.match(e.message, message);
    return true;
  });
}

/**
 * Push `total` entries in batches of `batch` (reserve/slot/publish) and pop them in batches of
 * `batch` (peek/entry/release), the consumer draining only every other round so the ring fills
 * up. Every count must be exact and every entry must come out once, in order.
 */
function runLaps(l: Laid, batch: number, total: number): void {
  const producer = attachRing(l.sab, l.desc);
  const consumer = attachRing(l.sab, l.desc);
  const cap = l.desc.capacity;
  let produced = 0;
  let consumed = 0;
  let sawFull = false;
  for (let round = 0; consumed < total; round++) {
    if (produced < total) {
      const want = Math.min(batch, total - produced);
      const k = producer.reserve(want);
      assert.equal(k, Math.min(want, cap - (produced - consumed)), `round ${round}: reserve`);
      if (k === 0) sawFull = true;
      for (let i = 0; i < k; i++) writeEntryFor(producer.i32, producer.slot(i), produced + i);
      producer.publish();
      produced += k;
      assert.equal(producer.hasSpace(), produced - consumed < cap, `round ${round}: hasSpace`);
    }
    if (round % 2 === 1 || produced === total) {
      const k = consumer.peek(batch);
      assert.equal(k, Math.min(batch, produced - consumed), `round ${round}: peek`);
      for (let i = 0; i < k; i++) assertEntryFor(consumer.i32, consumer.entry(i), consumed + i);
      consumer.release();
      consumed += k;
      assert.equal(consumer.hasEntries(), produced > consumed, `round ${round}: hasEntries`);
      assert.equal(consumer.size(), produced - consumed, `round ${round}: size`);
    }
  }
  assert.ok(batch === 1 || sawFull, "the schedule never filled the ring");
  assert.equal(consumer.peek(batch), 0, "an empty ring must peek 0");
  assert.equal(consumer.hasEntries(), false);
}

describe("counters across the wrap", () => {
  for (const kind of KINDS) {
    for (const start of [NEAR_WRAP, NEAR_SIGN_FLIP]) {
      for (const batch of [1, 3, CAPACITY]) {
        test(`${kind}: batches of ${batch} for 50 laps from counter ${start}`, () => {
          const l = lay(kind, CAPACITY, start);
          const before = counters(l);
          assert.deepEqual(before, { tail: start | 0, head: start | 0 });
          const total = 50 * CAPACITY;
          runLaps(l, batch, total);
          const after = counters(l);
          // Both counters ran through the wrap (or the sign flip) and stopped exactly there.
          assert.deepEqual(after, { tail: (start + total) | 0, head: (start + total) | 0 });
          assert.notEqual(after.tail < 0, before.tail < 0, "the counters changed sign");
        });
      }
    }

    test(`${kind}: tryPush/tryPop fill and empty the ring, lap after lap, across the wrap`, () => {
      const l = lay(kind, CAPACITY, NEAR_WRAP);
      const producer = attachRing(l.sab, l.desc);
      const consumer = attachRing(l.sab, l.desc);
      const into = new Int32Array(PAYLOAD_WORDS);
      let seq = 0;
      for (let lap = 0; lap < 6; lap++) {
        const first = seq;
        while (producer.tryPush(Array.from({ length: PAYLOAD_WORDS }, (_, w) => word(seq, w))))
          seq++;
        assert.equal(seq - first, CAPACITY, `lap ${lap}: a full ring holds exactly capacity`);
        assert.equal(producer.hasSpace(), false);
        assert.equal(producer.reserve(1), 0, "a full ring reserves 0");
        assert.equal(consumer.size(), CAPACITY);
        for (let s = first; s < seq; s++) {
          assert.ok(consumer.tryPop(into), `lap ${lap}: pop ${s}`);
          assertEntryFor(into, 0, s);
        }
        assert.equal(consumer.tryPop(into), false, "an empty ring pops nothing");
        assert.equal(consumer.hasEntries(), false);
      }
      assert.deepEqual(counters(l), {
        tail: (NEAR_WRAP + 6 * CAPACITY) | 0,
        head: (NEAR_WRAP + 6 * CAPACITY) | 0,
      });
    });

    test(`${kind}: a full ring overwrites nothing across the wrap`, () => {
      const l = lay(kind, 4, 2 ** 32 - 2);
      const ring = attachRing(l.sab, l.desc);
      for (let s = 0; s < 4; s++) assert.ok(ring.tryPush([s, s, s]));
      assert.equal(ring.tryPush([99, 99, 99]), false);
      assert.equal(ring.reserve(4), 0);
      const into = new Int32Array(PAYLOAD_WORDS);
      for (let s = 0; s < 4; s++) {
        assert.ok(ring.tryPop(into));
        assert.deepEqual(Array.from(into.subarray(0, 4)), [s, s, s, 0]);
      }
    });
  }
});

describe("two ring objects on one descriptor (producer thread, consumer thread)", () => {
  for (const kind of KINDS) {
    test(`${kind}: each sees the other's entries and released slots`, () => {
      const l = lay(kind, 4, NEAR_WRAP);
      const producer = attachRing(l.sab, l.desc);
      const consumer = attachRing(l.sab, l.desc);
      assert.notEqual(producer, consumer);
      assert.equal(consumer.hasEntries(), false);
      assert.equal(producer.reserve(3), 3);
      for (let i = 0; i < 3; i++) writeEntryFor(producer.i32, producer.slot(i), i);
      assert.equal(consumer.hasEntries(), false, "reserved but unpublished entries are invisible");
      assert.equal(consumer.peek(4), 0);
      producer.publish();
      assert.equal(consumer.hasEntries(), true);
      assert.equal(consumer.peek(4), 3);
      for (let i = 0; i < 3; i++) assertEntryFor(consumer.i32, consumer.entry(i), i);
      // The producer fills the ring; the slots the consumer holds are not free until released.
      assert.equal(producer.reserve(4), 1);
      writeEntryFor(producer.i32, producer.slot(0), 3);
      producer.publish();
      assert.equal(producer.hasSpace(), false);
      consumer.release();
      assert.equal(producer.hasSpace(), true, "the producer sees the consumer's release");
      assert.equal(producer.reserve(4), 3);
      for (let i = 0; i < 3; i++) writeEntryFor(producer.i32, producer.slot(i), 4 + i);
      producer.publish();
      const into = new Int32Array(PAYLOAD_WORDS);
      for (let s = 3; s < 7; s++) {
        assert.ok(consumer.tryPop(into));
        assertEntryFor(into, 0, s);
      }
      assert.equal(consumer.tryPop(into), false);
    });

    test(`${kind}: an object attached later starts where the others stopped`, () => {
      const l = lay(kind, 4, NEAR_WRAP);
      const first = attachRing(l.sab, l.desc);
      for (let s = 0; s < 6; s++) {
        assert.ok(first.tryPush([s]));
        if (s % 2 === 1) assert.ok(first.tryPop(new Int32Array(PAYLOAD_WORDS)));
      }
      // Entries 3, 4 and 5 are left; a new producer and a new consumer take over.
      const producer = attachRing(l.sab, l.desc);
      const consumer = attachRing(l.sab, l.desc);
      assert.equal(consumer.size(), 3);
      assert.equal(producer.reserve(4), 1, "the new producer sees the entries in the ring");
      producer.i32.fill(0, producer.slot(0), producer.slot(0) + PAYLOAD_WORDS);
      producer.i32[producer.slot(0)] = 6;
      producer.publish();
      const into = new Int32Array(PAYLOAD_WORDS);
      for (let s = 3; s < 7; s++) {
        assert.ok(consumer.tryPop(into));
        assert.equal(into[0], s);
      }
      assert.equal(consumer.tryPop(into), false);
    });
  }
});

describe("verbs at their limits", () => {
  for (const kind of KINDS) {
    test(`${kind}: reserve(0) and peek(0) return 0 and claim nothing`, () => {
      const l = lay(kind, 4);
      const ring = attachRing(l.sab, l.desc);
      assert.equal(ring.reserve(0), 0);
      assert.equal(ring.peek(0), 0);
      assert.ok(ring.tryPush([1]));
      assert.equal(ring.peek(0), 0);
      assert.equal(ring.reserve(0), 0);
      assert.equal(ring.reserve(8), 3);
      ring.publish();
      assert.equal(ring.peek(0), 0);
      assert.equal(ring.peek(8), 4);
      assert.equal(ring.peek(0), 0, "growing an open claim by 0");
      ring.release();
      assert.equal(ring.size(), 0);
    });

    test(`${kind}: an entry of more than 15 payload words is refused before a slot is claimed`, () => {
      const l = lay(kind, 2);
      const producer = attachRing(l.sab, l.desc);
      const consumer = attachRing(l.sab, l.desc);
      assertInvalidArg(
        () => producer.tryPush(new Array(PAYLOAD_WORDS + 1).fill(7)),
        /entry carries 15 payload words, got 16/,
      );
      // The ring is untouched: nothing claimed, nothing visible, both slots still free.
      assert.equal(consumer.size(), 0);
      assert.equal(consumer.hasEntries(), false);
      assert.ok(producer.tryPush([1]));
      assert.ok(producer.tryPush([2]));
      const into = new Int32Array(PAYLOAD_WORDS);
      assert.ok(consumer.tryPop(into));
      assert.equal(into[0], 1);
    });

    test(`${kind}: tryPush inside a batch and tryPop inside a claim panic`, () => {
      const l = lay(kind, 4);
      const ring = attachRing(l.sab, l.desc);
      assert.equal(ring.reserve(1), 1);
      assertPanic(() => ring.tryPush([1]), new RegExp(`${kind}@${l.desc.offset}: tryPush inside`));
      ring.publish();
      assert.equal(ring.peek(1), 1);
      assertPanic(() => ring.tryPop(new Int32Array(PAYLOAD_WORDS)), /tryPop inside an open claim/);
    });
  }
});

describe("descriptor validation", () => {
  const l = lay("spsc", CAPACITY);
  const m = lay("mpmc", CAPACITY);
  const ctor = {
    spsc: (sab: SharedArrayBuffer, d: RingDescriptor): Ring => new SpscRing(sab, d),
    mpmc: (sab: SharedArrayBuffer, d: RingDescriptor): Ring => new MpmcRing(sab, d),
  };

  for (const kind of KINDS) {
    const at = kind === "spsc" ? l : m;
    const make = ctor[kind];
    test(`${kind}: capacity must be a power of two from 2 to 2^24`, () => {
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, capacity: 6 }),
        /^capacity must be a power of two, got 6$/,
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, capacity: 1 }),
        /^capacity must be an integer from 2 to 16777216, got 1$/,
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, capacity: 2 ** 25 }),
        /^capacity must be an integer .* got 33554432$/,
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, capacity: 2.5 }),
        /^capacity must be an integer/,
      );
    });

    test(`${kind}: offset must be 64-aligned and inside the buffer`, () => {
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, offset: 32 }),
        /^ring offset must be a multiple of 64, got 32$/,
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, offset: -64 }),
        /^ring offset must be an integer from 0 to \d+, got -64$/,
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, offset: at.sab.byteLength + 64 }),
        /^ring offset must be an integer from 0 to \d+/,
      );
    });

    test(`${kind}: a ring that overruns the buffer is refused`, () => {
      // The header fits, the entries do not.
      const offset = at.sab.byteLength - 256;
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, offset }),
        new RegExp(`^ring at ${offset} of capacity ${CAPACITY} overruns the buffer$`),
      );
      assertInvalidArg(
        () => make(at.sab, { ...at.desc, capacity: 1 << 10 }),
        /ring at \d+ of capacity 1024 overruns the buffer/,
      );
    });
  }

  test("a descriptor of the other kind is refused by the constructor", () => {
    assertInvalidArg(
      () => new SpscRing(m.sab, m.desc),
      /^SpscRing needs an spsc descriptor, got mpmc$/,
    );
    assertInvalidArg(
      () => new MpmcRing(l.sab, l.desc),
      /^MpmcRing needs an mpmc descriptor, got spsc$/,
    );
    const bogus = { ...l.desc, kind: "bogus" } as unknown as RingDescriptor;
    assertInvalidArg(() => new SpscRing(l.sab, bogus), /got bogus/);
    assertInvalidArg(() => attachRing(l.sab, bogus), /^unknown ring kind bogus$/);
  });

  test("layRing checks kind, capacity and initialCounter", () => {
    const arena = new Arena(new SharedArrayBuffer(1 << 16));
    const bogus = "bogus" as unknown as RingKind;
    assertInvalidArg(
      () => layRing(arena, "a", { kind: bogus, capacity: 4 }),
      /^kind must be one of spsc, mpmc, got "bogus"$/,
    );
    assertInvalidArg(
      () => layRing(arena, "b", { kind: "spsc", capacity: 12 }),
      /^capacity must be a power of two, got 12$/,
    );
    assertInvalidArg(
      () => layRing(arena, "c", { kind: "mpmc", capacity: 4, initialCounter: 2 ** 32 }),
      /^initialCounter must be an integer from -2147483648 to 4294967295, got 4294967296$/,
    );
    assertInvalidArg(
      () => layRing(arena, "d", { kind: "spsc", capacity: 4, initialCounter: 0.5 }),
      /^initialCounter must be an integer/,
    );
  });
});

describe("memory that holds no ring, or another ring", () => {
  for (const kind of KINDS) {
    test(`${kind}: attaching to zeroed memory panics`, () => {
      const sab = new SharedArrayBuffer(64 * 1024);
      const desc: RingDescriptor = { kind, offset: 4096, capacity: CAPACITY };
      assertPanic(() => attachRing(sab, desc), /^panic: ring@4096: no ring header$/);
      assertPanic(
        () => (kind === "spsc" ? new SpscRing(sab, desc) : new MpmcRing(sab, desc)),
        /no ring header/,
      );
    });
  }

  test("a descriptor that disagrees with the header panics", () => {
    const arena = new Arena(new SharedArrayBuffer(1 << 16));
    const desc = layRing(arena, "r", { kind: "spsc", capacity: CAPACITY });
    const sab = arena.sab;
    assertPanic(
      () => attachRing(sab, { ...desc, kind: "mpmc" }),
      new RegExp(`ring@${desc.offset}: header says kind 1 capacity ${CAPACITY}`),
    );
    assertPanic(() => attachRing(sab, { ...desc, capacity: 4 }), /header says kind 1 capacity 8/);
    assertPanic(() => attachRing(sab, { ...desc, offset: desc.offset + 64 }), /no ring header/);
  });
});

describe("Arena", () => {
  test("hands out 128-aligned (a pair of lines), non-overlapping regions up to the exact end", () => {
    const arena = new Arena(new SharedArrayBuffer(1024));
    const a = arena.alloc("a", 1);
    const b = arena.alloc("b", 200);
    const c = arena.alloc("c", 64, 512);
    assert.deepEqual(
      [a, b, c].map((r) => [r.offset, r.bytes]),
      [
        [0, 128],
        [128, 256],
        [512, 128],
      ],
    );
    const rest = arena.alloc("rest", 1024 - 640);
    assert.equal(rest.offset + rest.bytes, 1024);
    assert.equal(arena.used, 1024);
    assert.match(arena.describe(), /0x00000280\.\.0x00000400 {2}rest/);
  });

  test("a full arena throws and hands out nothing", () => {
    const arena = new Arena(new SharedArrayBuffer(1024));
    arena.alloc("a", 512);
    assertInvalidArg(
      () => arena.alloc("big", 513),
      /^shared memory too small: region big needs 640 bytes at 512, arena ends at 1024$/,
    );
    assert.equal(arena.used, 512);
    assert.equal(arena.regions.length, 1);
    arena.alloc("fits", 512);
    assertInvalidArg(() => arena.alloc("one more", 1), /region one more needs 128 bytes at 1024/);
  });

  test("layRing in an arena without room for the ring or its wake word throws", () => {
    const small = new Arena(new SharedArrayBuffer(ringBytes("mpmc", 8) - 64));
    assertInvalidArg(() => layRing(small, "q", { kind: "mpmc", capacity: 8 }), /region q needs/);
    const noWake = new Arena(new SharedArrayBuffer(ringBytes("spsc", 8)));
    assertInvalidArg(
      () => layRing(noWake, "q", { kind: "spsc", capacity: 8 }),
      /region q\.notEmpty needs 128 bytes/,
    );
  });

  test("bad bounds and sizes are refused with the field named", () => {
    const sab = new SharedArrayBuffer(1024);
    assertInvalidArg(() => new Arena(sab, 32), /^arena start must be a multiple of 64, got 32$/);
    assertInvalidArg(
      () => new Arena(sab, 0, 2048),
      /^arena end 2048 lies outside the buffer \(1024 bytes\)$/,
    );
    assertInvalidArg(() => new Arena(sab, 512, 256), /^arena end 256 lies outside the buffer/);
    assertInvalidArg(
      () => new Arena(sab).alloc("z", 0),
      /^size of region z must be an integer from 1 to 2147483648, got 0$/,
    );
  });
});

for (const kind of ["spsc", "mpmc"] as const) {
  test(`${kind}: release(n) gives back the first n claimed entries and keeps the rest claimed`, () => {
    const arena = new Arena(new SharedArrayBuffer(1 << 16));
    const desc = layRing(arena, "r", { kind, capacity: 8, initialCounter: 2 ** 32 - 3 });
    const producer = attachRing(arena.sab, desc);
    const consumer = attachRing(arena.sab, desc);
    for (let v = 1; v <= 8; v++) assert.ok(producer.tryPush([v]));
    assert.equal(producer.hasSpace(), false);
    assert.equal(consumer.peek(8), 8);
    consumer.release(3);
    assert.equal(consumer.i32[consumer.entry(0)], 4, "entry(0) is the first entry still claimed");
    assert.equal(producer.hasSpace(), true);
    assert.equal(producer.reserve(8), 3, "exactly the released slots are free again");
    for (let i = 0; i < 3; i++) producer.i32[producer.slot(i)] = 9 + i;
    producer.publish();
    assert.equal(consumer.peek(8), 3, "a further peek extends the claim with the new entries");
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) seen.push(consumer.i32[consumer.entry(i)] as number);
    assert.deepEqual(seen, [4, 5, 6, 7, 8, 9, 10, 11]);
    consumer.release(0);
    assert.equal(consumer.i32[consumer.entry(0)], 4, "release(0) releases nothing");
    consumer.release();
    assert.equal(consumer.hasEntries(), false);
    assert.equal(producer.reserve(8), 8);
  });
}
