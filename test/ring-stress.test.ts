/**
 * ring-stress: P producer threads and C consumer threads on one ring, in each wake mode, with a
 * ring small enough (64 entries) that it is full and empty all the time, so producers and
 * consumers keep parking on notFull / notEmpty and waking each other.
 *
 * Every entry carries (producer id, sequence number, checksum of both, 12 more words derived from
 * the checksum). Consumers check each entry and mark it in a shared bitmap (one bit per entry of
 * each producer); the main thread then asserts that every entry was delivered exactly once, whole,
 * and in order: for SPSC the consumer sees 0, 1, 2, ...; for MPMC the entries of one producer
 * are spread over the consumers, so each consumer checks that the sequence numbers of each
 * producer that IT receives strictly increase.
 *
 * Thread layout (this machine has 2 cores): SPSC 1 producer + 1 consumer; MPMC 3 + 3, so six
 * threads share two cores, which is the slow case in spin mode, where every waiting thread burns
 * its time slice. Workers wait at a start barrier so they begin together, and each one stalls or
 * sleeps at random now and then (randomised scheduling, seeds in the report), so full and empty
 * happen at varied moments. A watchdog terminates the workers and fails the case if a run hangs:
 * no wait has a timeout, so a lost wake-up shows as a hang, with a report of where each side
 * stopped. (Before the fix in wake.ts, producers parked on one notFull word were stranded this
 * way in the MPMC hybrid and park cases.)
 *
 * Notifier counts: the ring keeps its own notifiers' counters private, so most cases attach the
 * ring without wake words and notify through a Notifier of their own right after publish and
 * release, exactly as the ring does, with counters in shared memory. The wrap case uses the
 * ring's own notifiers, so that path is stressed too.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import {
  Arena,
  kBudget,
  kHead,
  kNotifies,
  kNotifyChecks,
  kParks,
  kSpins,
  kSpinWins,
  kTail,
  kTimeouts,
  kWaits,
  kWakeups,
  layRing,
  NOTIFIER_STATS,
  type RingDescriptor,
  type RingKind,
  ringBytes,
  WAITER_STATS,
  type WakeMode,
} from "../src/shm/index.js";
import {
  bitmapWords,
  CONTROL_WORDS,
  kArrived,
  kBadChecksum,
  kBadOrder,
  kBadRange,
  kDupes,
  kGo,
  kProducersDone,
  kProgress,
  kReceived,
  type StressWorkerData,
} from "./fixtures/ring-stress-worker.js";

const WORKER = new URL("./fixtures/ring-stress-worker.js", import.meta.url);
const CAPACITY = 64;
/** Entries of the one SPSC producer, per mode. */
const SPSC_ENTRIES = 2_000_000;
/** Entries of each of the 3 MPMC producers, per mode. */
const MPMC_PER_PRODUCER = 400_000;
/** Entries of each MPMC producer in the wrap case. */
const WRAP_PER_PRODUCER = 100_000;
/** A case that takes this long has hung; normal ones take a second or two (see the report). */
const WATCHDOG_MS = 40_000;

interface StressCase {
  readonly kind: RingKind;
  readonly producers: number;
  readonly consumers: number;
  readonly perProducer: number;
  readonly mode: WakeMode;
  readonly initialCounter?: number;
  /** Notify through our own Notifiers (counters visible) instead of the ring's own. */
  readonly ownNotifiers: boolean;
  /** The one consumer attaches as the sole consumer (MPMC only: a core's ready queue). */
  readonly soleConsumer?: boolean;
}

interface Totals {
  spins: number;
  spinWins: number;
  parks: number;
  wakeups: number;
  timeouts: number;
  waits: number;
  notifies: number;
  notifyChecks: number;
}

interface Outcome {
  readonly ms: number;
  readonly producers: Totals;
  readonly consumers: Totals;
  readonly budgets: number[];
}

const MODES: readonly WakeMode[] = ["spin", "hybrid", "park"];

for (const mode of MODES) {
  test(`spsc 1x1, ${mode}: ${count(SPSC_ENTRIES)} entries arrive once each, whole and in order`, async (t) => {
    const c: StressCase = {
      kind: "spsc",
      producers: 1,
      consumers: 1,
      perProducer: SPSC_ENTRIES,
      mode,
      ownNotifiers: true,
    };
    checkOutcome(c, await runCase(c, (s) => t.diagnostic(s)));
  });
}

for (const mode of MODES) {
  test(`mpmc 3x3, ${mode}: 3 x ${count(MPMC_PER_PRODUCER)} entries arrive once each, whole, in order per consumer`, async (t) => {
    const c: StressCase = {
      kind: "mpmc",
      producers: 3,
      consumers: 3,
      perProducer: MPMC_PER_PRODUCER,
      mode,
      ownNotifiers: true,
    };
    checkOutcome(c, await runCase(c, (s) => t.diagnostic(s)));
  });
}

// A core's ready queue: every domain produces, the core alone consumes (attached as the sole
// consumer: a local head and no CAS). Producers publish batches with one seq-cst store each.
for (const mode of MODES) {
  test(`mpmc 3x1, sole consumer, ${mode}: 3 x ${count(MPMC_PER_PRODUCER)} entries arrive once each, whole, in order`, async (t) => {
    const c: StressCase = {
      kind: "mpmc",
      producers: 3,
      consumers: 1,
      perProducer: MPMC_PER_PRODUCER,
      mode,
      ownNotifiers: mode !== "hybrid", // hybrid: the ring's own notifiers, as in a machine
      soleConsumer: true,
    };
    checkOutcome(c, await runCase(c, (s) => t.diagnostic(s)));
  });
}

test("mpmc 3x3, hybrid, counters starting just below 2^32: the run crosses the wrap", async (t) => {
  const c: StressCase = {
    kind: "mpmc",
    producers: 3,
    consumers: 3,
    perProducer: WRAP_PER_PRODUCER,
    mode: "hybrid",
    initialCounter: 2 ** 32 - 1000,
    ownNotifiers: false,
  };
  checkOutcome(c, await runCase(c, (s) => t.diagnostic(s)));
});

function count(n: number): string {
  return n.toLocaleString("en-US");
}

// ---- one run ----

interface Layout {
  readonly sab: SharedArrayBuffer;
  readonly ring: RingDescriptor;
  readonly control: number;
  readonly seen: number;
  readonly waiterStats: number;
  readonly notifierStats: number;
}

/** Lay out the ring, the control block, the bitmap and the counters in one buffer. */
function layOut(c: StressCase): Layout {
  const workers = c.producers + c.consumers;
  const seenBytes = c.producers * bitmapWords(c.perProducer) * 4;
  const bytes =
    ringBytes(c.kind, CAPACITY) +
    2 * 64 +
    CONTROL_WORDS * 4 +
    seenBytes +
    workers * (WAITER_STATS + NOTIFIER_STATS) * 8 +
    8 * 64;
  const sab = new SharedArrayBuffer(bytes);
  const arena = new Arena(sab);
  const ring = layRing(arena, "stress.ring", {
    kind: c.kind,
    capacity: CAPACITY,
    mode: c.mode,
    notFull: true,
    ...(c.initialCounter !== undefined ? { initialCounter: c.initialCounter } : {}),
  });
  return {
    sab,
    ring,
    control: arena.alloc("stress.control", CONTROL_WORDS * 4).offset,
    seen: arena.alloc("stress.seen", seenBytes).offset,
    waiterStats: arena.alloc("stress.waiterStats", workers * WAITER_STATS * 8).offset,
    notifierStats: arena.alloc("stress.notifierStats", workers * NOTIFIER_STATS * 8).offset,
  };
}

async function runCase(c: StressCase, log: (s: string) => void): Promise<Outcome> {
  const lay = layOut(c);
  const ctl = new Int32Array(lay.sab, lay.control, CONTROL_WORDS);
  const workers: Worker[] = [];
  const seeds: number[] = [];
  for (let index = 0; index < c.producers + c.consumers; index++) {
    const producer = index < c.producers;
    const seed = (Math.random() * 2 ** 31) | 1;
    seeds.push(seed);
    const data: StressWorkerData = {
      sab: lay.sab,
      ring: lay.ring,
      role: producer ? "producer" : "consumer",
      id: producer ? index : index - c.producers,
      index,
      producers: c.producers,
      perProducer: c.perProducer,
      control: lay.control,
      seen: lay.seen,
      waiterStats: lay.waiterStats,
      notifierStats: c.ownNotifiers ? lay.notifierStats : -1,
      seed,
      soleConsumer: c.soleConsumer === true,
    };
    workers.push(new Worker(WORKER, { workerData: data }));
  }
  log(`seeds ${seeds.join(",")}`);

  const watchdog = new Watchdog(workers, WATCHDOG_MS, () => hangReport(c, lay, ctl));
  const ready = Promise.all(workers.map((w) => once(w, "ready")));
  const exited = Promise.all(workers.map((w) => exitCleanly(w)));
  exited.catch(() => {}); // observed below; a failure before "go" must not go unhandled
  try {
    await Promise.race([ready, watchdog.fired, exited]);
    assert.equal(Atomics.load(ctl, kArrived), workers.length, "every worker at the barrier");
    const t0 = performance.now();
    Atomics.store(ctl, kGo, 1); // publish: start
    Atomics.notify(ctl, kGo); // wake: the whole barrier
    await Promise.race([exited, watchdog.fired]);
    const ms = performance.now() - t0;
    const outcome = collect(c, lay, ms);
    for (const line of report(c, outcome)) log(line);
    checkDelivery(c, lay, ctl);
    return outcome;
  } finally {
    watchdog.stop();
  }
}

// ---- checks ----

/** Every entry of every producer delivered exactly once, whole, in order. */
function checkDelivery(c: StressCase, lay: Layout, ctl: Int32Array): void {
  const total = c.producers * c.perProducer;
  assert.equal(Atomics.load(ctl, kBadRange), 0, "entries with an id or sequence out of range");
  assert.equal(
    Atomics.load(ctl, kBadChecksum),
    0,
    "entries with wrong checksum words (torn or misplaced)",
  );
  assert.equal(Atomics.load(ctl, kBadOrder), 0, "entries out of per-producer order");
  assert.equal(Atomics.load(ctl, kDupes), 0, "entries delivered twice");
  assert.equal(Atomics.load(ctl, kReceived), total, "entries consumed in total");
  // Every position was produced and consumed once: both counters moved by exactly `total`.
  const i32 = new Int32Array(lay.sab);
  const end = ((c.initialCounter ?? 0) + total) | 0;
  assert.equal(Atomics.load(i32, lay.ring.offset / 4 + kTail), end, "tail after the run");
  assert.equal(Atomics.load(i32, lay.ring.offset / 4 + kHead), end, "head after the run");
  if (c.initialCounter !== undefined) {
    assert.ok(end >>> 0 < c.initialCounter, "the counters wrapped past 2^32");
  }
  const wordsPer = bitmapWords(c.perProducer);
  const seen = new Int32Array(lay.sab, lay.seen, c.producers * wordsPer);
  for (let p = 0; p < c.producers; p++) {
    let missing = 0;
    let firstMissing = -1;
    for (let s = 0; s < c.perProducer; s++) {
      if ((seen[p * wordsPer + (s >>> 5)] & (1 << (s & 31))) === 0) {
        missing++;
        if (firstMissing < 0) firstMissing = s;
      }
    }
    assert.equal(
      missing,
      0,
      `producer ${p}: ${missing} entries never arrived (first: seq ${firstMissing})`,
    );
  }
}

/** What the wake protocol must have done in each mode. */
function checkOutcome(c: StressCase, o: Outcome): void {
  const all = [o.producers, o.consumers];
  assert.ok(o.producers.waits + o.consumers.waits > 0, "a 64-entry ring was never full nor empty");
  for (const s of all) assert.equal(s.timeouts, 0, "no wait has a timeout");
  if (c.mode === "spin") {
    for (const s of all) {
      assert.equal(s.parks, 0, "spin mode never parks");
      if (c.ownNotifiers)
        assert.equal(s.notifies, 0, "spin mode: nobody parked, so nobody notified");
    }
  }
  if (c.mode === "park") {
    for (const s of all) assert.equal(s.spinWins, 0, "park mode never spins");
    assert.ok(o.producers.parks + o.consumers.parks > 0, "park mode parks");
    if (c.ownNotifiers)
      assert.ok(o.producers.notifies + o.consumers.notifies > 0, "park mode notifies");
  }
}

// ---- counters and reports ----

function collect(c: StressCase, lay: Layout, ms: number): Outcome {
  const n = c.producers + c.consumers;
  const w = new Float64Array(lay.sab, lay.waiterStats, n * WAITER_STATS);
  const nf = new Float64Array(lay.sab, lay.notifierStats, n * NOTIFIER_STATS);
  const sum = (from: number, to: number): Totals => {
    const t: Totals = {
      spins: 0,
      spinWins: 0,
      parks: 0,
      wakeups: 0,
      timeouts: 0,
      waits: 0,
      notifies: 0,
      notifyChecks: 0,
    };
    for (let i = from; i < to; i++) {
      const s = i * WAITER_STATS;
      t.spins += w[s + kSpins];
      t.spinWins += w[s + kSpinWins];
      t.parks += w[s + kParks];
      t.wakeups += w[s + kWakeups];
      t.timeouts += w[s + kTimeouts];
      t.waits += w[s + kWaits];
      t.notifies += nf[i * NOTIFIER_STATS + kNotifies];
      t.notifyChecks += nf[i * NOTIFIER_STATS + kNotifyChecks];
    }
    return t;
  };
  const budgets: number[] = [];
  for (let i = 0; i < n; i++) budgets.push(w[i * WAITER_STATS + kBudget]);
  return { ms, producers: sum(0, c.producers), consumers: sum(c.producers, n), budgets };
}

function report(c: StressCase, o: Outcome): string[] {
  const line = (role: string, t: Totals) =>
    `${role}: waits ${t.waits} spins ${t.spins} spinWins ${t.spinWins} parks ${t.parks} ` +
    `wakeups ${t.wakeups} timeouts ${t.timeouts}` +
    (c.ownNotifiers ? ` | their notifier: checks ${t.notifyChecks} notifies ${t.notifies}` : "");
  return [
    `${c.kind} ${c.producers}x${c.consumers} ${c.mode}: ${c.producers * c.perProducer} entries in ${o.ms.toFixed(0)} ms`,
    line("producers (wait on notFull)", o.producers),
    line("consumers (wait on notEmpty)", o.consumers),
    `hybrid budgets at exit: ${o.budgets.join(" ")}`,
  ];
}

/** What the shared memory says when the watchdog fires: where each side stopped. */
function hangReport(c: StressCase, lay: Layout, ctl: Int32Array): string {
  const i32 = new Int32Array(lay.sab);
  const at = lay.ring.offset / 4;
  const word = (off: number | undefined) =>
    off === undefined
      ? "-"
      : `flag ${Atomics.load(i32, off / 4)} mode ${Atomics.load(i32, off / 4 + 1)}`;
  const progress: number[] = [];
  for (let i = 0; i < c.producers + c.consumers; i++)
    progress.push(Atomics.load(ctl, kProgress + i));
  return (
    `${c.kind} ${c.producers}x${c.consumers} ${c.mode} hung after ${WATCHDOG_MS} ms: ` +
    `arrived ${Atomics.load(ctl, kArrived)}, producersDone ${Atomics.load(ctl, kProducersDone)}, ` +
    `tail ${Atomics.load(i32, at + kTail)} head ${Atomics.load(i32, at + kHead)}, ` +
    `notEmpty [${word(lay.ring.notEmpty)}] notFull [${word(lay.ring.notFull)}], ` +
    `progress (producers, then consumers) ${progress.join(" ")}`
  );
}

// ---- worker plumbing ----

/** Fails the run after `ms`: terminates every worker and rejects `fired` with a report. */
class Watchdog {
  readonly fired: Promise<never>;
  readonly #timer: NodeJS.Timeout;

  constructor(workers: Worker[], ms: number, describe: () => string) {
    let fail: (e: Error) => void = () => {};
    this.fired = new Promise<never>((_, reject) => {
      fail = reject;
    });
    this.fired.catch(() => {}); // observed by whoever races it
    this.#timer = setTimeout(() => {
      const why = describe();
      for (const w of workers) void w.terminate();
      fail(new Error(why));
    }, ms);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}

function once(w: Worker, kind: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (m: { kind: string }) => {
      if (m.kind === kind) {
        w.off("message", on);
        resolve();
      }
    };
    w.on("message", on);
  });
}

/** Resolves when the worker has finished its work and exited with code 0. */
function exitCleanly(w: Worker): Promise<void> {
  let done = false;
  w.on("message", (m: { kind: string }) => {
    if (m.kind === "done") done = true;
  });
  return new Promise((resolve, reject) => {
    w.once("error", reject);
    w.once("exit", (code) => {
      if (code === 0 && done) resolve();
      else reject(new Error(`worker ${w.threadId} exited with code ${code} before finishing`));
    });
  });
}
