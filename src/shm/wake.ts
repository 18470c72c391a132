/**
 * wake: the park/wake protocol between a producer and a consumer that share memory.
 *
 * Vocabulary
 *   wake word  one 64-byte line in shared memory: the needWakeup flag (also the futex word that
 *              a parked consumer sleeps on) and the channel's wait mode.
 *   waiter     the consumer side, one per thread: it waits until a `ready()` check comes true,
 *              first by spinning, then by parking.
 *   notifier   the producer side, one per thread: after it publishes, it wakes a parked waiter,
 *              and only when the flag says one may be parked.
 *
 * Design (io_uring SQPOLL's IORING_SQ_NEED_WAKEUP, FlexSC's syscall threads):
 *   Waiter                                   Notifier
 *   1. spin on ready() for a budget          1. publish (store-release of the ring's tail)
 *   2. store needWakeup = 1                  2. load needWakeup
 *   3. re-check ready(); if true, return     3. if it is 1: exchange it to 0, and if the old
 *      (the flag is left set)                   value was 1, Atomics.notify every waiter
 *   4. Atomics.wait(word, 1)
 *   All four Atomics here are sequentially consistent, so steps W2/W3 and N1/N2 form a Dekker
 *   pair: either the waiter's re-check sees the publish, or the notifier sees the flag. The wait
 *   in W4 compares against 1, so a notifier that cleared the flag between W3 and W4 makes the
 *   wait return at once ("not-equal") instead of sleeping through the wake-up: no lost wake-ups,
 *   and no notify (a syscall) while the consumer is awake.
 *   Several waiters may share one word (the consumers of an MPMC ring, its producers on
 *   notFull, a domain's rings). The flag then stands for all of them, so two rules keep a sleeper
 *   from being stranded with the flag down and nobody left to raise it: a waiter never lowers
 *   the flag (W3 and a timeout leave it set: it may be another sleeper's announcement; a stale 1
 *   costs one needless notify), and a notifier that lowers it wakes every sleeper — or, with a
 *   smaller wakeCount, raises it again when it woke that many, so the next publish wakes the rest.
 *
 * Modes (per wake word, stored in the word's line so any thread may switch them while running):
 *   spin    never park: step 1 runs until ready() (a core that owns a CPU, SQPOLL style)
 *   hybrid  spin for an adaptive budget, then park (the default)
 *   park    park at once (the cheapest on CPU, the slowest to wake)
 * The hybrid budget adapts, as competitive two-phase waiting does: a spin that paid off late
 * doubles the budget, a park that was woken soon after it slept (spinning longer would have
 * caught it) doubles it too, and a long park halves it. An idle consumer therefore drifts to
 * the minimum budget and sleeps in the kernel using no CPU.
 *
 * Rejected: a separate futex counter bumped on every publish (one atomic RMW per publish even
 * when nobody sleeps); notifying on every publish (a syscall per entry); a timed park poll
 * (latency and CPU both worse). A pending `Atomics.waitAsync` does not keep Node's event loop
 * alive, so {@link Waiter.waitAsync} holds a timer for as long as it is parked.
 *
 * Owner notes: the flag is written by waiters (store 1 only) and notifiers (exchange to 0, and
 * store 1 when a wakeCount notify may have left sleepers);
 * the mode by anyone (store); each waiter's and notifier's counters by that object's thread
 * only (plain stores; readers on other threads may see a slightly stale value).
 */

import { checkInteger, checkOneOf, InvalidArgumentError } from "../errors.js";
import { CACHE_LINE } from "./layout.js";

/** Bytes of one wake word (a whole cache line, so the flag shares it with nothing hot). */
export const WAKE_WORD_BYTES = CACHE_LINE;

// Word indexes inside the wake word's line.
const kFlag = 0; // needWakeup: 1 = a waiter is parked or about to park
const kMode = 1; // WakeMode as a number

export type WakeMode = "spin" | "hybrid" | "park";
export const WAKE_MODES: readonly WakeMode[] = ["spin", "hybrid", "park"];
const MODE_SPIN = 0;
const MODE_HYBRID = 1;
const MODE_PARK = 2;

function modeNumber(mode: WakeMode): number {
  return mode === "spin" ? MODE_SPIN : mode === "hybrid" ? MODE_HYBRID : MODE_PARK;
}

/** Lay out a fresh wake word at `offset` (no waiter, the given mode). Boot-time only. */
export function initWakeWord(
  sab: SharedArrayBuffer,
  offset: number,
  mode: WakeMode = "hybrid",
): void {
  checkWordOffset(sab, offset);
  const i32 = new Int32Array(sab, offset, WAKE_WORD_BYTES / 4);
  i32.fill(0);
  i32[kMode] = modeNumber(checkOneOf("mode", mode, WAKE_MODES));
}

function checkWordOffset(sab: SharedArrayBuffer, offset: number): void {
  checkInteger("wake word offset", offset, 0, sab.byteLength - WAKE_WORD_BYTES);
  if (offset % CACHE_LINE !== 0) {
    throw new InvalidArgumentError(
      `wake word offset must be a multiple of ${CACHE_LINE}, got ${offset}`,
    );
  }
}

/** Read or switch the mode of the wake word at `offset`, from any thread, while running. */
export function getWakeMode(sab: SharedArrayBuffer, offset: number): WakeMode {
  const m = Atomics.load(new Int32Array(sab, offset, 2), kMode); // load: mode is set by anyone
  return m === MODE_SPIN ? "spin" : m === MODE_HYBRID ? "hybrid" : "park";
}

export function setWakeMode(sab: SharedArrayBuffer, offset: number, mode: WakeMode): void {
  checkWordOffset(sab, offset);
  const i32 = new Int32Array(sab, offset, 2);
  Atomics.store(i32, kMode, modeNumber(checkOneOf("mode", mode, WAKE_MODES))); // publish: new mode
  // A parked waiter that is now told to spin should learn it: wake it (it re-reads the mode).
  if (Atomics.exchange(i32, kFlag, 0) === 1) Atomics.notify(i32, kFlag); // wake: mode changed
}

/** Counters of one waiter (named slots of its stats array). */
export const kSpins = 0; // spin iterations, in total
export const kSpinWins = 1; // waits that ended while spinning
export const kParks = 2; // times this waiter went to sleep in the kernel
export const kWakeups = 3; // times it came back from sleep
export const kTimeouts = 4; // waits that ended by their timeout
export const kBudget = 5; // the current hybrid spin budget (iterations)
export const kWaits = 6; // waits that did not find ready() true at once
export const WAITER_STATS = 8;

/** Counters of one notifier. */
export const kNotifies = 0; // Atomics.notify calls made (each one a wake-up syscall)
export const kNotifyChecks = 1; // publishes after which the flag was checked
export const NOTIFIER_STATS = 2;

export interface WaiterStats {
  readonly spins: number;
  readonly spinWins: number;
  readonly parks: number;
  readonly wakeups: number;
  readonly timeouts: number;
  readonly budget: number;
  readonly waits: number;
}

export interface WaiterOptions {
  /**
   * First hybrid spin budget, in polls of ready() (each ≈ 45 ns with the default pause): 256 ≈
   * 11 µs. It adapts between minSpin (16 ≈ 0.7 µs) and maxSpin (2048 ≈ 90 µs, about one park and
   * wake-up: spinning longer than a park costs is never worth it, the 2-competitive rule).
   */
  readonly spinBudget?: number;
  readonly minSpin?: number;
  readonly maxSpin?: number;
  /**
   * A park shorter than this (in ms) counts as "spinning longer would have caught it" and
   * doubles the budget; a longer one halves it. Defaults to 0.2 ms: about three park/wake
   * round trips on Linux.
   */
  readonly shortParkMs?: number;
  /** Iterations of local work between two polls while spinning (a software PAUSE); default 128. */
  readonly pause?: number;
  /** Where the counters live: a Float64Array of {@link WAITER_STATS} slots, e.g. in shared memory. */
  readonly stats?: Float64Array;
}

/** A check-every-N-iterations mask for the spin loop: the clock and the mode are read this often. */
const SPIN_CHECK_MASK = 1023;

/**
 * Relax between two polls of a spin loop: JavaScript has no PAUSE instruction, so a short run of
 * local arithmetic stands in for it. Polling back-to-back makes the waiter re-read the line the
 * producer is still writing, bouncing it between cores mid-write; a pause lets the write finish.
 */
let relaxSink = 0;
/**
 * Measured on the 2-core machine (bench/queue.ts, ping-pong of 64-byte entries): no pause ≈ 560 ns
 * per round trip, 48 ≈ 510 ns, 96–256 ≈ 490 ns. One poll plus 128 iterations costs ≈ 45 ns, which
 * is what the spin budgets below are counted in.
 */
const DEFAULT_PAUSE = 128;
/** `performance` read once: the global is a lazy accessor that costs ≈ 200 instructions a read. */
const perf = performance;
function relax(iterations: number): void {
  let x = relaxSink;
  for (let i = 0; i < iterations; i++) x = (x + i) | 0;
  relaxSink = x;
}

/**
 * The consumer side of a wake word. One per thread that waits; not shared between threads.
 */
export class Waiter {
  readonly #i32: Int32Array;
  readonly #stats: Float64Array;
  readonly #minSpin: number;
  readonly #maxSpin: number;
  readonly #shortParkMs: number;
  readonly #pause: number;
  #budget: number;
  /** The running wait's deadline (perf.now() ms), NaN until first needed; see #dueAt. */
  #deadline = Number.POSITIVE_INFINITY;
  #timeoutMs = Number.POSITIVE_INFINITY;

  constructor(sab: SharedArrayBuffer, offset: number, options: WaiterOptions = {}) {
    checkWordOffset(sab, offset);
    this.#i32 = new Int32Array(sab, offset, WAKE_WORD_BYTES / 4);
    this.#minSpin = checkInteger("minSpin", options.minSpin ?? 16, 0, 2 ** 30);
    this.#maxSpin = checkInteger("maxSpin", options.maxSpin ?? 2048, this.#minSpin, 2 ** 30);
    this.#budget = checkInteger(
      "spinBudget",
      options.spinBudget ?? 256,
      this.#minSpin,
      this.#maxSpin,
    );
    this.#shortParkMs = options.shortParkMs ?? 0.2;
    this.#pause = checkInteger("pause", options.pause ?? DEFAULT_PAUSE, 0, 4096);
    if (!(this.#shortParkMs >= 0)) {
      throw new InvalidArgumentError(`shortParkMs must be a number >= 0, got ${this.#shortParkMs}`);
    }
    if (options.stats && options.stats.length < WAITER_STATS) {
      throw new InvalidArgumentError(`stats must have at least ${WAITER_STATS} slots`);
    }
    this.#stats = options.stats ?? new Float64Array(WAITER_STATS);
    this.#stats[kBudget] = this.#budget;
  }

  get mode(): WakeMode {
    const m = Atomics.load(this.#i32, kMode); // load: the mode may be switched by anyone
    return m === MODE_SPIN ? "spin" : m === MODE_HYBRID ? "hybrid" : "park";
  }

  set mode(mode: WakeMode) {
    Atomics.store(this.#i32, kMode, modeNumber(checkOneOf("mode", mode, WAKE_MODES))); // publish
  }

  /** True when the word's mode is park (a cheap check for callers that spin on their own). */
  get parking(): boolean {
    return Atomics.load(this.#i32, kMode) === MODE_PARK; // load: the mode may be switched by anyone
  }

  /** The current hybrid spin budget, in iterations. */
  get budget(): number {
    return this.#budget;
  }

  /** The raw counters (see k* slot names); live, not a copy. */
  get counters(): Float64Array {
    return this.#stats;
  }

  stats(): WaiterStats {
    const s = this.#stats;
    return {
      spins: s[kSpins],
      spinWins: s[kSpinWins],
      parks: s[kParks],
      wakeups: s[kWakeups],
      timeouts: s[kTimeouts],
      budget: s[kBudget],
      waits: s[kWaits],
    };
  }

  /**
   * Block this thread until `ready()` returns true (→ true) or `timeoutMs` passes (→ false).
   * `ready` must be cheap and side-effect free; it is called many times.
   */
  wait(ready: () => boolean, timeoutMs = Number.POSITIVE_INFINITY): boolean {
    if (ready()) return true;
    const s = this.#stats;
    s[kWaits]++;
    // The deadline is read off the clock lazily (see #spin): a wait that a spin wins, the
    // common case on a busy channel, reads no clock at all.
    this.#deadline = timeoutMs === Number.POSITIVE_INFINITY ? timeoutMs : Number.NaN;
    this.#timeoutMs = timeoutMs;
    if (this.#spin(ready)) return true;
    for (;;) {
      if (perf.now() >= this.#dueAt()) return this.#timedOut();
      if (Atomics.load(this.#i32, kMode) === MODE_SPIN) {
        if (this.#spin(ready)) return true;
        continue;
      }
      Atomics.store(this.#i32, kFlag, 1); // announce: need wake-up (pairs with the notifier's load)
      if (ready()) return true;
      const t0 = perf.now();
      const left = this.#deadline - t0;
      const r = Atomics.wait(
        this.#i32,
        kFlag,
        1,
        left === Number.POSITIVE_INFINITY ? undefined : left,
      ); // park
      if (r !== "not-equal") {
        // "not-equal": a notifier cleared the flag before we slept; that was no park.
        s[kParks]++;
        s[kWakeups]++;
        this.#adaptAfterPark(perf.now() - t0);
      }
      if (ready()) return true;
      if (r === "timed-out") return this.#timedOut(); // the park's own timer ended the wait
    }
  }

  /**
   * The same wait for a thread that runs an event loop: spins (unless the mode is park), then
   * parks with Atomics.waitAsync and lets the loop run meanwhile.
   */
  async waitAsync(ready: () => boolean, timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (ready()) return true;
    const s = this.#stats;
    s[kWaits]++;
    this.#deadline = timeoutMs === Number.POSITIVE_INFINITY ? timeoutMs : Number.NaN;
    this.#timeoutMs = timeoutMs;
    if (this.#spin(ready)) return true;
    const deadline = this.#dueAt();
    for (;;) {
      if (perf.now() >= deadline) return this.#timedOut();
      Atomics.store(this.#i32, kFlag, 1); // announce: need wake-up
      if (ready()) return true;
      const t0 = perf.now();
      const left = deadline - t0;
      const r = Atomics.waitAsync(
        this.#i32,
        kFlag,
        1,
        left === Number.POSITIVE_INFINITY ? undefined : left,
      ); // park
      if (r.async) {
        s[kParks]++;
        holdLoop();
        let outcome: string;
        try {
          outcome = await r.value;
        } finally {
          releaseLoop();
        }
        s[kWakeups]++;
        this.#adaptAfterPark(perf.now() - t0);
        if (ready()) return true;
        // The kernel's timer ended it: done, even if our clock is a hair short of the deadline.
        if (outcome === "timed-out") return this.#timedOut();
      } else if (ready()) return true;
      else if (r.value === "timed-out") return this.#timedOut();
    }
  }

  /**
   * The wait's deadline on the clock. It is taken at the first look rather than when the wait
   * starts, so a spin that is won reads no clock (a read costs as much as a quarter of a
   * round trip on a spinning channel). A wait may therefore end up to one check interval of
   * spinning (SPIN_CHECK_MASK + 1 polls, ≈ 46 µs) later than `timeoutMs` after it began; its
   * callers (a core's next sleeper, a domain's poll timeout) are "at least" deadlines.
   */
  #dueAt(): number {
    if (Number.isNaN(this.#deadline)) this.#deadline = perf.now() + this.#timeoutMs;
    return this.#deadline;
  }

  /** Spin phase: true if ready() came true within the budget (spin mode: until the deadline). */
  #spin(ready: () => boolean): boolean {
    const mode = Atomics.load(this.#i32, kMode); // load: mode may change while we run
    if (mode === MODE_PARK) return false;
    const s = this.#stats;
    const budget = mode === MODE_SPIN ? Number.POSITIVE_INFINITY : this.#budget;
    for (let i = 1; i <= budget; i++) {
      if (ready()) {
        s[kSpins] += i;
        s[kSpinWins]++;
        if (mode === MODE_HYBRID && i > budget / 2) this.#setBudget(this.#budget * 2);
        return true;
      }
      relax(this.#pause);
      if ((i & SPIN_CHECK_MASK) === 0) {
        if (perf.now() >= this.#dueAt()) {
          s[kSpins] += i;
          return false;
        }
        // Spin mode learns of a switch to hybrid or park here.
        if (mode === MODE_SPIN && Atomics.load(this.#i32, kMode) !== MODE_SPIN) {
          s[kSpins] += i;
          return false;
        }
      }
    }
    s[kSpins] += budget;
    return false;
  }

  #adaptAfterPark(parkedMs: number): void {
    if (parkedMs < this.#shortParkMs) this.#setBudget(this.#budget * 2);
    else this.#setBudget(this.#budget >> 1);
  }

  #setBudget(b: number): void {
    this.#budget = Math.min(this.#maxSpin, Math.max(this.#minSpin, b));
    this.#stats[kBudget] = this.#budget;
  }

  #timedOut(): false {
    // The flag stays up: another waiter on this word may be asleep behind it.
    this.#stats[kTimeouts]++;
    return false;
  }
}

/**
 * The producer side of a wake word. One per thread that publishes; not shared between threads.
 */
export class Notifier {
  readonly #i32: Int32Array;
  readonly #stats: Float64Array;
  /** Waiters one notify wakes; +Infinity (the default) wakes them all. */
  readonly #count: number;

  /**
   * @param wakeCount how many parked waiters one notify wakes; default all of them. A smaller
   *   count suits only waiters that wait for the same thing (any one of them can take the work):
   *   the rest stay asleep until a later publish (see the design note on shared words).
   */
  constructor(
    sab: SharedArrayBuffer,
    offset: number,
    options: { wakeCount?: number; stats?: Float64Array } = {},
  ) {
    checkWordOffset(sab, offset);
    this.#i32 = new Int32Array(sab, offset, WAKE_WORD_BYTES / 4);
    this.#count =
      options.wakeCount === undefined
        ? Number.POSITIVE_INFINITY
        : checkInteger("wakeCount", options.wakeCount, 1, 2 ** 30);
    if (options.stats && options.stats.length < NOTIFIER_STATS) {
      throw new InvalidArgumentError(`stats must have at least ${NOTIFIER_STATS} slots`);
    }
    this.#stats = options.stats ?? new Float64Array(NOTIFIER_STATS);
  }

  /** Call after publishing: wakes a parked waiter if, and only if, one announced it may park. */
  notify(): void {
    this.#stats[kNotifyChecks]++;
    // load first: the common case (consumer awake) costs one plain load and no RMW.
    if (Atomics.load(this.#i32, kFlag) === 0) return; // load: pairs with the waiter's store of 1
    if (Atomics.exchange(this.#i32, kFlag, 0) === 1) {
      // claim: one notifier takes the flag down and does the waking
      this.#stats[kNotifies]++;
      const woken = Atomics.notify(this.#i32, kFlag, this.#count); // wake
      // The exchange took down every sleeper's announcement; if the count ran out, some may
      // still sleep: put the flag back up so that the next publish wakes them.
      if (woken === this.#count) Atomics.store(this.#i32, kFlag, 1); // announce: sleepers remain
    }
  }

  /** Wake every parked waiter regardless of the flag (shutdown, mode switch, supervisor). */
  wakeAll(): void {
    Atomics.store(this.#i32, kFlag, 0); // retract: waiters re-check after waking
    this.#stats[kNotifies]++;
    Atomics.notify(this.#i32, kFlag); // wake all
  }

  get notifies(): number {
    return this.#stats[kNotifies];
  }

  get counters(): Float64Array {
    return this.#stats;
  }
}

function noop(): void {}

// A pending waitAsync does not keep the event loop alive; one timer does, for as long as any
// waiter of this thread is parked in waitAsync. It is made and cleared only when that count
// leaves and reaches 0: a timer per park was a handle made and destroyed at every park of the
// device models (thousands a second on the hypervisor thread under load).
let asyncParked = 0;
let keepAlive: ReturnType<typeof setInterval> | null = null;
function holdLoop(): void {
  if (asyncParked++ === 0) keepAlive = setInterval(noop, 1 << 30);
}
function releaseLoop(): void {
  if (--asyncParked === 0 && keepAlive !== null) {
    clearInterval(keepAlive);
    keepAlive = null;
  }
}
