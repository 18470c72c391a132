/**
 * policy: who runs next on a core. A {@link Policy} holds the runnable green threads of one
 * {@link Scheduler} and hands them out one at a time; the scheduler owns everything else (states,
 * sleep, syscalls, accounting). Policies are plain single-threaded objects: no shared memory.
 *
 * Built in:
 *   FifoPolicy         arrival order; a thread that yields goes to the back.
 *   RoundRobinPolicy   arrival order, but a thread keeps the core across Y_YIELDs until it has
 *                      used `sliceMs` of run time, then goes to the back (a budget per slice).
 *   PriorityPolicy     `levels` FIFO queues, the highest non-empty level first (a larger
 *                      `Thread.priority` runs first; 0 is the lowest and the default). With
 *                      `aging = n`, a non-empty lower level that has been passed over for n picks
 *                      is served next, so no level starves for more than about n + levels picks.
 *
 * Application-defined policies (XOS, ghOSt). A program brings its own scheduling by writing a
 * class that implements {@link Policy} and installing it on its core, either at construction
 * (`new Scheduler({ policy })`) or while running (`scheduler.setPolicy(p)`, which moves every
 * runnable thread into the new policy in the old one's order). The contract:
 *   - enqueue(t) is called only for a runnable thread that is not already in the policy;
 *     pick() returns one of them (and forgets it) or null when it holds none; remove(t) forgets a
 *     thread that is in the policy (the scheduler calls it when such a thread is killed).
 *   - afterYield(t, ranMs) is asked when a thread yields Y_YIELD: "continue" resumes it again
 *     at once (it keeps the core), "requeue" sends it back; the scheduler calls enqueue later,
 *     after the current round (one resume per thread per round unless the policy says continue).
 *     `ranMs` is the run time of that resume (an apportioned estimate under sampled accounting).
 *   - A policy never calls back into the scheduler, and should be O(1) or O(levels): pick runs
 *     once per context switch. `Thread.policyWord` is a number field reserved for the policy's
 *     own per-thread state (PriorityPolicy keeps the thread's level there); `Thread.sliceUsedMs`
 *     is for slice budgets.
 *   - {@link RingQueue} is the building block: a growable ring buffer, no shift() on arrays.
 */

import { checkInteger, InvalidArgumentError } from "../errors.js";
import type { Thread } from "./sched.js";

/** What a policy says about a thread that yielded Y_YIELD. */
export type YieldVerdict = "continue" | "requeue";

export interface Policy {
  /** Add a runnable thread (not already held). */
  enqueue(t: Thread): void;
  /** Take the next thread to run, or null when none is held. */
  pick(): Thread | null;
  /** The thread yielded after running `ranMs`: keep running it, or send it back. */
  afterYield(t: Thread, ranMs: number): YieldVerdict;
  /** Forget a held thread (it was killed while runnable). */
  remove(t: Thread): void;
  /** Threads held. */
  readonly size: number;
  /** Short name for stats and logs: "fifo", "rr(10ms)", "prio(4)". */
  readonly name: string;
}

/**
 * A FIFO ring buffer that grows by doubling (power-of-two capacity, masked index). push and
 * shift are O(1) and allocate nothing until the buffer has to grow; remove is O(n) (rare: kills).
 */
export class RingQueue<T> {
  #buf: (T | undefined)[];
  #mask: number;
  #head = 0;
  #size = 0;

  constructor(initialCapacity = 16) {
    let cap = 2;
    while (cap < initialCapacity) cap *= 2;
    this.#buf = new Array<T | undefined>(cap).fill(undefined);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }

  push(v: T): void {
    if (this.#size > this.#mask) this.#grow();
    this.#buf[(this.#head + this.#size) & this.#mask] = v;
    this.#size++;
  }

  /** Take the oldest element, or undefined when empty. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const i = this.#head;
    const v = this.#buf[i];
    this.#buf[i] = undefined;
    this.#head = (i + 1) & this.#mask;
    this.#size--;
    return v;
  }

  /** The oldest element without taking it. */
  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#buf[this.#head];
  }

  /** The i-th oldest element (0 = head), for iteration without taking. */
  at(i: number): T | undefined {
    return i >= 0 && i < this.#size ? this.#buf[(this.#head + i) & this.#mask] : undefined;
  }

  /** Remove the first occurrence of `v`, keeping the order of the rest. O(n). */
  remove(v: T): boolean {
    const mask = this.#mask;
    for (let i = 0; i < this.#size; i++) {
      if (this.#buf[(this.#head + i) & mask] !== v) continue;
      for (let j = i; j < this.#size - 1; j++) {
        this.#buf[(this.#head + j) & mask] = this.#buf[(this.#head + j + 1) & mask];
      }
      this.#buf[(this.#head + this.#size - 1) & mask] = undefined;
      this.#size--;
      return true;
    }
    return false;
  }

  #grow(): void {
    const old = this.#buf;
    const cap = old.length * 2;
    const buf = new Array<T | undefined>(cap).fill(undefined);
    for (let i = 0; i < this.#size; i++) buf[i] = old[(this.#head + i) & this.#mask];
    this.#buf = buf;
    this.#mask = cap - 1;
    this.#head = 0;
  }
}

/** Arrival order; a thread that yields goes to the back. */
export class FifoPolicy implements Policy {
  readonly name = "fifo";
  readonly #q = new RingQueue<Thread>(64);

  get size(): number {
    return this.#q.size;
  }
  enqueue(t: Thread): void {
    this.#q.push(t);
  }
  pick(): Thread | null {
    return this.#q.shift() ?? null;
  }
  afterYield(_t: Thread, _ranMs: number): YieldVerdict {
    return "requeue";
  }
  remove(t: Thread): void {
    this.#q.remove(t);
  }
}

/**
 * Round robin with a budget per slice: a picked thread starts a fresh slice; across Y_YIELDs it
 * keeps the core until it has run `sliceMs` in total, then goes to the back. A thread that blocks
 * (syscall, sleep, a primitive) gives up the rest of its slice.
 */
export class RoundRobinPolicy implements Policy {
  readonly name: string;
  readonly sliceMs: number;
  readonly #q = new RingQueue<Thread>(64);

  constructor(sliceMs: number) {
    if (typeof sliceMs !== "number" || !(sliceMs > 0) || !Number.isFinite(sliceMs)) {
      throw new InvalidArgumentError(
        `sliceMs must be a positive finite number of milliseconds, got ${String(sliceMs)}`,
      );
    }
    this.sliceMs = sliceMs;
    this.name = `rr(${sliceMs}ms)`;
  }

  get size(): number {
    return this.#q.size;
  }
  enqueue(t: Thread): void {
    this.#q.push(t);
  }
  pick(): Thread | null {
    const t = this.#q.shift();
    if (t === undefined) return null;
    t.sliceUsedMs = 0;
    return t;
  }
  afterYield(t: Thread, ranMs: number): YieldVerdict {
    t.sliceUsedMs += ranMs;
    return t.sliceUsedMs < this.sliceMs ? "continue" : "requeue";
  }
  remove(t: Thread): void {
    this.#q.remove(t);
  }
}

export interface PriorityPolicyOptions {
  /**
   * Serve a non-empty lower level after it has been passed over for this many picks
   * (0 = strict priority: lower levels wait while any higher level has a thread).
   */
  aging?: number;
}

/**
 * Strict priority levels with optional aging. `Thread.priority` is clamped to 0 … levels-1 at
 * enqueue; the level a thread sits in is kept in `t.policyWord` so a later change of
 * `t.priority` takes effect at its next enqueue. The highest non-empty level is found with one
 * `Math.clz32` over a bitmask of non-empty levels (levels ≤ 32).
 */
export class PriorityPolicy implements Policy {
  readonly name: string;
  readonly levels: number;
  readonly aging: number;
  readonly #q: RingQueue<Thread>[];
  /** Bit l set ⇔ level l is non-empty. */
  #mask = 0;
  #size = 0;
  /** Picks so far; a level's `#since` is the pick count when it was last served or filled. */
  #picks = 0;
  readonly #since: number[];

  constructor(levels: number, options: PriorityPolicyOptions = {}) {
    this.levels = checkInteger("levels", levels, 1, 32);
    this.aging = checkInteger("aging", options.aging ?? 0, 0, 0x3fffffff);
    this.#q = Array.from({ length: levels }, () => new RingQueue<Thread>(16));
    this.#since = new Array<number>(levels).fill(0);
    this.name = this.aging > 0 ? `prio(${levels},aging=${this.aging})` : `prio(${levels})`;
  }

  get size(): number {
    return this.#size;
  }

  enqueue(t: Thread): void {
    const p = t.priority;
    const l = p <= 0 ? 0 : p >= this.levels ? this.levels - 1 : p | 0;
    t.policyWord = l;
    if (this.#q[l].size === 0) {
      this.#mask |= 1 << l;
      this.#since[l] = this.#picks;
    }
    this.#q[l].push(t);
    this.#size++;
  }

  pick(): Thread | null {
    if (this.#size === 0) return null;
    let l = 31 - Math.clz32(this.#mask);
    if (this.aging > 0) l = this.#starved(l);
    this.#picks++;
    this.#since[l] = this.#picks;
    const q = this.#q[l];
    const t = q.shift() as Thread;
    if (q.size === 0) this.#mask &= ~(1 << l);
    this.#size--;
    return t;
  }

  /** The most starved non-empty level below `top` that has waited `aging` picks, else `top`. */
  #starved(top: number): number {
    let best = top;
    let oldest = Number.POSITIVE_INFINITY;
    for (let l = 0; l < top; l++) {
      if ((this.#mask & (1 << l)) === 0) continue;
      const since = this.#since[l];
      if (this.#picks - since >= this.aging && since < oldest) {
        oldest = since;
        best = l;
      }
    }
    return best;
  }

  afterYield(_t: Thread, _ranMs: number): YieldVerdict {
    return "requeue";
  }

  remove(t: Thread): void {
    const l = t.policyWord;
    if (l < 0 || l >= this.levels || !this.#q[l].remove(t)) return;
    this.#size--;
    if (this.#q[l].size === 0) this.#mask &= ~(1 << l);
  }
}
