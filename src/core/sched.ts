/**
 * sched: the per-core green-thread scheduler (the "M" side of M:N). Single-threaded and pure: it
 * touches no shared memory and no worker API. The core worker (src/core/core.ts) embeds one
 * Scheduler, feeds it completions and the clock, and turns its Y_SYSCALL threads into ring
 * entries; the primitives in src/core/sync.ts build on it.
 *
 * Vocabulary
 *   green thread  a generator `Generator<number, number, number>` plus its {@link Thread} record
 *                 (the TCB). It runs only between a `gen.next(v)` and its next `yield`.
 *   token         the small integer a thread yields to say why it stopped: Y_YIELD (give up the
 *                 slice), Y_SYSCALL (a syscall is staged in my Thread: nr, a0..a5), Y_BLOCK (a
 *                 primitive queued me and will wake me), Y_SLEEP (until t.wakeAt). Numbers, so
 *                 a switch allocates nothing beyond the iterator result V8 makes for any resume.
 *   resume        one `gen.next(t.resumeValue)`: the context switch. The value passed in is the
 *                 syscall's return, a primitive's wake value, or 0.
 *   round         pick and resume runnable threads until the policy has none left; a thread runs
 *                 at most once per round unless the policy says "continue" (round robin inside
 *                 its slice). The core publishes the syscalls a round staged as one batch
 *                 (FlexSC), so a round is also the unit of batching.
 *   burst         one call of runRounds() (or runRound(), a burst of one): rounds back to back,
 *                 and the span of the accounting (see Bursts below).
 *   policy        who runs next (src/core/policy.ts); the scheduler owns everything else.
 *
 * States (Thread.state) and who moves a thread into each:
 *   runnable  scheduler: spawn, complete(), wake(), tick(), or a requeued Y_YIELD. The thread is
 *             in the policy (queued = Q_POLICY), or, if it already ran this round, in the round's
 *             deferred queue (Q_DEFERRED) which is handed to the policy when the round ends.
 *   running   scheduler, in a burst, for the length of one resume; `current` is the thread (and
 *             stays so until the scheduler next calls code outside itself and its policy).
 *   syscall   scheduler, on Y_SYSCALL, just before it calls options.submit(t); left only by
 *             complete(t, ret), which the core calls when the reply reaches its ready queue.
 *   blocked   scheduler, on Y_BLOCK; the primitive that queued the thread owns it until it
 *             calls wake(t, v). The scheduler keeps no list of blocked threads.
 *   sleeping  scheduler, on Y_SLEEP; the thread is in the sleep heap (min wakeAt, then FIFO)
 *             until tick() passes its wakeAt (or wake() takes it early).
 *   exited    scheduler: the body returned (status = its value), threw (status = -errno of an
 *             ExocoreError, else -1; `error` keeps what was thrown), yielded a bad token, or
 *             was killed (status given to kill). Terminal. Joiners are woken with the status,
 *             mutexes it held are released (robust), onExit runs.
 *
 * Killing. kill(t) of a runnable or sleeping thread takes it out of the policy or heap at once;
 * of a blocked or syscall thread it just marks it exited, and the primitive's queue skips dead
 * threads when it wakes (lazy removal), as complete() ignores a reply for a dead thread. kill of
 * the running thread (exit(), or a thread killing itself) takes effect when its resume returns.
 * A killed thread's `finally` blocks do not run (as with a killed process); its generator is
 * dropped. This keeps kill synchronous and free of re-entrant user code.
 *
 * Bursts. runRounds(n, stop) runs up to n rounds back to back (the core runs several rounds a
 * turn while its threads only compute and yield, and ends the burst at the first round that
 * staged syscalls, so they are published at once). runRound() is a burst of one round. A burst
 * is the accounting span: the time between two bursts (the core polling, publishing, parked) is
 * charged to nobody, everything from a burst's start to its last clock read to some resume.
 *
 * Accounting. The clock is read when a burst starts and then once per *window* of resumes: the
 * time since the last read is split equally among the window's resumes (chained reads: the
 * scheduler's own time between resumes, and between the rounds of a burst, is charged to the
 * next window). A window stays open across the rounds of a burst and is closed when the burst
 * ends, before a thread exits, and when it holds `sampleEvery` resumes.
 *   precise  a window of 1: one clock read per resume, exact run time per resume.
 *   sampled  a window of `sampleEvery` resumes (or less at the end of a burst); the default.
 * Error bound (sampled). Totals are exact: each of a window's k resumes gets W/k of its W ms.
 * A thread with c resumes in a window is charged cW/k: off by at most (k - c)W/k (it ran all of
 * W) or cW/k (it ran none of it), so never by more than W, and a window longer than longRunMs
 * switches to precise windows; threads of similar slices cancel out. maxSliceNs is the largest
 * share, which is the largest resume only when its window held one resume; the `ranMs` a policy
 * sees in afterYield is the last window's share.
 * Sleepers. A burst's first round wakes the due sleepers; a later round reads the clock for them
 * only if one may be due, judged from the last read plus the open window's resumes at the last
 * window's rate, so a sleeper is woken at most one window late.
 * Long runs. A resume longer than `longRunMs` is reported through onLongRun. A window longer than
 * longRunMs is reported at once if it held one resume; if it held several, the scheduler cannot
 * tell whose it was, so it drops to windows of 1 (precise) for the next few rounds, which names
 * the thread at its next long run (in a burst, usually the same burst).
 *
 * Cost (issue 3: a switch close to a bare generator resume). Measured with bench/switch.ts on
 * this machine (Node 20.20, 2 vCPUs shared with other work; one thread; every thread is
 * `for (;;) yield Y_YIELD`; instructions per switch under callgrind, steady state; ns from
 * tinybench; × bare = the same over a bare `gen.next(0)` loop on the same generators):
 *                                            before (16 runRound)        now (runRounds(16))
 *     2 threads, FIFO, sampled               1186 instr  63 ns  5.6×     659 instr  31 ns  2.7×
 *     1,000 threads, FIFO, sampled            696 instr  34 ns  2.8×     564 instr  26 ns  2.1×
 *     1,000 threads of 8 generator functions  774 instr  34 ns  2.3×     570 instr  26 ns  1.8×
 *     1,000 threads, FIFO, precise           1072 instr  65 ns  5.4×     788 instr  58 ns  4.7×
 *     bare resume                             270–360 instr, 11–15 ns
 * Where the time went, and what was done about it:
 *   - the clock: one read is ≈ 150 instructions and 25–30 ns here (performance.now through the
 *     `performance` global was ≈ 360: the global is a lazy accessor; it is now read once). A
 *     round used to read it twice, so a round of 2 threads paid a read per switch; a burst
 *     reads it twice in all plus once per sampleEvery resumes;
 *   - the resume: `gen.next` looked up `next` on generators whose map differs per generator
 *     function (megamorphic on a real core); the built-in is now called directly;
 *   - the hot path (#run) was too big for V8 to inline into the round loop: cold exits moved
 *     out (#left, #threw); the deferred queue is a plain array emptied whole, not a ring;
 *     exported constants read from module cells with TDZ checks were replaced by local twins;
 *     `current` is cleared only before code outside the scheduler runs, not after every resume;
 *     no per-switch resume counter (stats().resumes is the sum of Thread.switches).
 *   - the verbs: `yield* yieldNow()` made a generator per call (≈ 30 ns, as much as the switch):
 *     one-token verbs (yieldNow, sleep, the syscall stubs) now return the gate (yieldToken
 *     below), a reusable iterator: rounds(16)/2+stub went from 60 to 40 ns;
 * What is left per switch: the policy's pick and enqueue, the window entry and its share, and
 * V8's own costs: the generator resume, map checks, Smi tagging, and a write barrier on each
 * object stored (state, current, window, deferred list).
 *
 * Rejected:
 *   - async functions / promises as green threads: every switch goes through the microtask
 *     queue and allocates a promise; a core could not run a round to completion synchronously.
 *   - yielding objects (`yield { op: "read", fd }`): one allocation per switch; the staging
 *     fields on Thread carry the arguments instead, as FlexSC's syscall page does.
 *   - an array of arguments per syscall (same reason): nr and a0..a5 are plain number fields.
 *   - one global run queue shared by cores: generators cannot leave their isolate, so threads
 *     are per core; M:N balance comes from the core's shared spawn queue of unstarted threads.
 *   - re-running a yielded thread in the same round (strict priority, or FIFO with one thread):
 *     a round that never ends would starve the core's completion polling and batch publishing.
 *   - running `finally` blocks on kill via gen.return(): user code would run inside kill(),
 *     could yield or throw there, and kill of the running thread could not be done at all.
 *   - an accounting window left open from one runRound() call to the next: the time between
 *     calls (the core publishing, polling, parked) would be charged to the threads and reported
 *     as long runs. A burst makes the span explicit instead.
 *   - a cheaper clock: Date.now() costs as much and counts whole ms; process.hrtime() and
 *     hrtime.bigint() allocate. Reading less often is what helps.
 *   - Thread.state as a small integer: two write barriers less per switch (≈ 3% of the
 *     instructions), but the primitives, the core and the tests read it as a string.
 *   - FIFO without the deferred list (requeue at once, end the round at the first thread that
 *     already ran): a thread woken behind it would wait a round, and under priorities a
 *     yielding high-priority thread would end every round before the lower levels ran.
 */

import { EDEADLK, EINVAL } from "../abi/errno.js";
import {
  checkInteger,
  checkOneOf,
  ExocoreError,
  InvalidArgumentError,
  PanicError,
} from "../errors.js";
import type { Policy } from "./policy.js";

// ---- tokens: what a green thread yields ------------------------------------------------------
// Each token and queue mark is declared twice: the exported name is the API, and the scheduler's
// own code reads the module-local twin, which V8 folds to a constant; an exported `const` is
// read from its module cell with a TDZ check at every use, several times per switch.

const YIELD = 0;
const SYSCALL = 1;
const BLOCK = 2;
const SLEEP = 3;
const QNONE = 0;
const QPOLICY = 1;
const QDEFERRED = 2;

/** Give up the rest of my slice; resume value 0. */
export const Y_YIELD = YIELD;
/** I staged a syscall in my Thread (nr, a0..a5): block until complete(t, ret); resume with ret. */
export const Y_SYSCALL = SYSCALL;
/** A local primitive queued me; it will call wake(t, value); resume with value. */
export const Y_BLOCK = BLOCK;
/** Sleep until t.wakeAt (scheduler clock, ms); resume with 0. */
export const Y_SLEEP = SLEEP;

/** The body of a green thread: yields tokens, receives return/wake values, returns its status. */
export type ThreadBody = Generator<number, number, number>;

export type ThreadState = "runnable" | "running" | "syscall" | "blocked" | "sleeping" | "exited";

/** Where a runnable thread sits (Thread.queued). */
export const Q_NONE = QNONE;
export const Q_POLICY = QPOLICY;
export const Q_DEFERRED = QDEFERRED;

/**
 * Something a thread can hold that must be released if the thread dies holding it (a Mutex).
 * Threads keep what they hold in an intrusive list through `nextHeld`: no allocation per lock.
 */
export interface Releasable {
  nextHeld: Releasable | null;
  /** The holder `t` has exited without releasing: hand the resource on. */
  ownerDied(t: Thread): void;
}

/** Errors the scheduler and the primitives throw into a misbehaving green thread (or caller). */
export class GreenThreadError extends ExocoreError {}

/**
 * The thread control block. Every field is initialised in the constructor (one hidden class).
 * Owner notes: all fields belong to the core's one JS thread; "scheduler" below means
 * Scheduler methods, "stub" the syscall stub running inside the thread, "core" the core worker.
 */
export class Thread {
  /** The scheduler (core) that owns this thread; primitives wake it through this. */
  readonly scheduler: Scheduler;
  /** Thread id (unique in the machine when the core passes a machine-wide allocTid). */
  readonly tid: number;
  /** Process (address space) the thread belongs to. */
  pid: number;
  name: string;
  /** Policy input: for PriorityPolicy, larger runs first; 0 is the default and the lowest. */
  priority: number;
  /** Core id the thread should run on, or -1 for any (read by the core's spawn queue). */
  affinity: number;
  /** See the state table at the top of this file. Written by the scheduler only. */
  state: ThreadState = "runnable";
  /** The body (a hand-written iterator is wrapped at spawn in a generator that delegates to it). */
  gen: ThreadBody;
  /** Value passed to the next gen.next(): syscall return, wake value, or 0. Scheduler. */
  resumeValue = 0;

  // Syscall staging: written by the stub before it yields Y_SYSCALL, read by the core's submit.
  nr = 0;
  a0 = 0;
  a1 = 0;
  a2 = 0;
  a3 = 0;
  a4 = 0;
  a5 = 0;
  /** Request id of the syscall in flight; the scheduler numbers it, the core may overwrite it. */
  reqId = 0;

  /** Sleep deadline (scheduler clock, ms); set by sleep() before Y_SLEEP. */
  wakeAt = 0;
  /** Exit status once exited (also the pending status of a kill of the running thread). */
  status = 0;
  /** What the body threw, or the error that killed it; undefined otherwise. */
  error: unknown = undefined;

  // Accounting (scheduler).
  /** Run time, ns (apportioned under sampled accounting). */
  runNs = 0;
  /** Resumes: times the core switched into this thread. */
  switches = 0;
  /** Syscalls yielded. */
  syscalls = 0;
  /** Longest single resume seen, ns (an apportioned share under sampled accounting). */
  maxSliceNs = 0;
  /** Resumes reported through onLongRun. */
  longRuns = 0;

  /** Threads blocked in join() on this one (allocated on first join). Written by join(). */
  joiners: Thread[] | null = null;
  /** Head of the intrusive list of Releasables this thread holds. Written by the primitives. */
  held: Releasable | null = null;
  /** Mailbox for primitives (a channel's value in flight, as Go's sudog.elem). */
  slot: unknown = undefined;

  // Scheduler and policy internals.
  /** Q_NONE / Q_POLICY / Q_DEFERRED while runnable. Scheduler. */
  queued = QNONE;
  /** Round of the last resume (a thread runs once per round). Scheduler. */
  ranRound = 0;
  /** Index in the sleep heap, -1 when not sleeping. Scheduler. */
  heapIndex = -1;
  /** Tie-break for equal wakeAt: order of sleeping. Scheduler. */
  sleepSeq = 0;
  /** Set by kill() of the running thread; acted on when the resume returns. Scheduler. */
  killPending = false;
  /** Run time in the current slice, ms (for slice budgets). Policy. */
  sliceUsedMs = 0;
  /** Free for the policy's own per-thread state (PriorityPolicy: the level). Policy. */
  policyWord = 0;

  constructor(
    scheduler: Scheduler,
    tid: number,
    pid: number,
    name: string,
    priority: number,
    affinity: number,
    gen: ThreadBody,
  ) {
    this.scheduler = scheduler;
    this.tid = tid;
    this.pid = pid;
    this.name = name;
    this.priority = priority;
    this.affinity = affinity;
    this.gen = gen;
  }
}

/**
 * The gate: a reusable `yield*` target that yields one token and then returns the value the
 * thread is resumed with. `yield* someGenerator()` allocates a generator object (and its
 * context) per call, ≈ 30 ns here, as much again as the switch it wraps; the verbs that only
 * stage fields and yield one token (yieldNow, sleep, the syscall stubs) return
 * `yieldToken(token)` instead, so such a verb costs one iterator-protocol step and allocates
 * nothing. Sync `yield*` hands the inner result object to the resumer unchanged, so the two
 * result objects are reused as well: the scheduler reads them at once and keeps neither.
 * One gate serves every thread of this JS thread: `yield*` calls next() right after the verb
 * returned the armed gate, with no code in between, which consumes the token; the thread is
 * then suspended and others may arm the gate; its resume is a next(v) on a disarmed gate,
 * which returns v. So the only state that outlives a call is "disarmed". (A verb's result must
 * be consumed by `yield*` at once: keeping it for later is not supported.)
 */
class Gate implements Generator<number, number, number> {
  readonly #yielded: { value: number; done: false } = { value: 0, done: false };
  readonly #returned: { value: number; done: true } = { value: 0, done: true };
  #armed = false;

  arm(token: number): this {
    this.#yielded.value = token;
    this.#armed = true;
    return this;
  }

  next(v: number): IteratorResult<number, number> {
    if (this.#armed) {
      this.#armed = false;
      return this.#yielded;
    }
    this.#returned.value = v;
    return this.#returned;
  }

  return(v: number): IteratorResult<number, number> {
    this.#armed = false;
    return { value: v, done: true };
  }

  throw(e: unknown): IteratorResult<number, number> {
    this.#armed = false;
    throw e;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

const gate = new Gate();

/** `yield* yieldToken(Y_…)` yields the token once and returns the resume value (see Gate). */
export function yieldToken(token: number): Generator<number, number, number> {
  return gate.arm(token);
}

export interface SpawnOptions {
  name?: string;
  priority?: number;
  /** Default: the spawning thread's pid, else 0. */
  pid?: number;
  /** Core id or -1 (default). */
  affinity?: number;
  /** A tid chosen by the caller (a thread taken from the machine's spawn queue). */
  tid?: number;
}

export interface SchedulerOptions {
  policy: Policy;
  /** Called when a thread yields Y_SYSCALL: the core writes t's syscall into its request ring. */
  submit: (t: Thread) => void;
  /** Clock in ms (default performance.now). */
  now?: () => number;
  /** A resume that runs longer than this without yielding is reported (default 50 ms). */
  longRunMs?: number;
  onLongRun?: (t: Thread, ms: number) => void;
  /** Called once for every thread that exits, after its joiners are woken. */
  onExit?: (t: Thread) => void;
  coreId?: number;
  /** Default "sampled" (see the accounting note above). */
  accounting?: "precise" | "sampled";
  /** Resumes per clock read under sampled accounting (default 32). */
  sampleEvery?: number;
  /** Thread id allocator (default: a counter from 1, local to this scheduler). */
  allocTid?: () => number;
}

export interface ThreadStats {
  tid: number;
  pid: number;
  name: string;
  state: ThreadState;
  priority: number;
  runNs: number;
  switches: number;
  syscalls: number;
  maxSliceNs: number;
  longRuns: number;
}

export interface SchedulerStats {
  coreId: number;
  policy: string;
  accounting: "precise" | "sampled";
  rounds: number;
  resumes: number;
  spawned: number;
  exited: number;
  live: number;
  runnable: number;
  blocked: number;
  sleeping: number;
  syscall: number;
  /** Sums over every thread this scheduler ran, the exited ones included. */
  totals: { runNs: number; switches: number; syscalls: number; longRuns: number };
  /** The live threads. */
  threads: ThreadStats[];
}

/** Rounds of precise windows after an unattributable long window under sampled accounting. */
const SUSPECT_ROUNDS = 4;
const ACCOUNTING = ["precise", "sampled"] as const;

/**
 * %GeneratorPrototype%.next, the built-in every generator object inherits. `gen.next(v)` must
 * first look `next` up on the generator, whose map differs for every generator function: on a
 * core running many programs that lookup is megamorphic (a stub-cache probe per switch).
 * Calling the built-in itself skips it; V8 turns `resumeNative.call(gen, v)` into a direct call.
 * A body whose `next` is not this built-in (a hand-written iterator) is wrapped at spawn in a
 * generator that delegates to it with `yield*`, so every Thread.gen can be resumed this way.
 */
const resumeNative = (Object.getPrototypeOf(function* () {}) as { prototype: ThreadBody }).prototype
  .next as (this: ThreadBody, value: number) => IteratorResult<number, number>;

function* delegate(body: ThreadBody): ThreadBody {
  return yield* body;
}

/**
 * The default clock. `performance` is read once here: on Node the global is a lazy accessor
 * whose every read costs a global IC miss and a hasOwnProperty (≈ 200 instructions).
 */
const perf = performance;
const defaultClock = (): number => perf.now();

/** The scheduler whose round is running right now (primitives find their scheduler here). */
let active: Scheduler | null = null;

/** The scheduler running a round on this JS thread, or null outside any green thread. */
export function activeScheduler(): Scheduler | null {
  return active;
}

/** The green thread being resumed now; throws when called outside one. */
export function currentThread(): Thread {
  const t = active?.current ?? null;
  if (t === null) {
    throw new GreenThreadError(
      "EXO_ERR_NOT_GREEN_THREAD",
      "this call must be made from a green thread while its scheduler is running it",
      EINVAL,
    );
  }
  return t;
}

export class Scheduler {
  readonly coreId: number;
  readonly accounting: "precise" | "sampled";
  readonly longRunMs: number;
  #policy: Policy;
  readonly #submit: (t: Thread) => void;
  readonly #clock: () => number;
  readonly #onLongRun: ((t: Thread, ms: number) => void) | null;
  readonly #onExit: ((t: Thread) => void) | null;
  readonly #allocTid: () => number;

  #current: Thread | null = null;
  #inRound = false;
  #round = 0;
  /**
   * Threads that ran this round and were made runnable again, in order: back to the policy at
   * round end. A plain array and a count (slots past the count are null): cheaper than a ring,
   * since it is always emptied whole.
   */
  #deferred: (Thread | null)[] = new Array<Thread | null>(64).fill(null);
  #nDeferred = 0;
  readonly #live = new Map<number, Thread>();
  #nextTid = 1;
  #nextReq = 1;

  // Sleep heap: min wakeAt, then sleepSeq.
  #heap: Thread[] = [];
  #sleepSeq = 0;

  // Accounting window.
  readonly #sampleEvery: number;
  /** Resumes per window by the accounting setting: 1 (precise) or sampleEvery. */
  readonly #baseWin: number;
  /** Resumes per window now: #baseWin, or 1 for SUSPECT_ROUNDS rounds after a long window. */
  #winSize: number;
  readonly #win: (Thread | null)[];
  #k = 0;
  /** Clock at the last read (ms). */
  #last = 0;
  /** Estimated run time of one resume, ms (the last window's share). */
  #estMs = 0;
  #suspectUntil = 0;

  // Totals.
  #rounds = 0;
  #spawned = 0;
  #exited = 0;
  #retiredRunNs = 0;
  #retiredSwitches = 0;
  #retiredSyscalls = 0;
  #retiredLongRuns = 0;

  constructor(options: SchedulerOptions) {
    if (options == null || typeof options !== "object") {
      throw new InvalidArgumentError("Scheduler options must be an object");
    }
    const { policy, submit } = options;
    if (policy == null || typeof policy.pick !== "function") {
      throw new InvalidArgumentError("policy must be a Policy (enqueue, pick, afterYield, remove)");
    }
    if (typeof submit !== "function") {
      throw new InvalidArgumentError("submit must be a function (t: Thread) => void");
    }
    this.#policy = policy;
    this.#submit = submit;
    this.#clock = options.now ?? defaultClock;
    const longRunMs = options.longRunMs ?? 50;
    if (typeof longRunMs !== "number" || !(longRunMs > 0)) {
      throw new InvalidArgumentError(
        `longRunMs must be a positive number of milliseconds, got ${String(longRunMs)}`,
      );
    }
    this.longRunMs = longRunMs;
    this.#onLongRun = options.onLongRun ?? null;
    this.#onExit = options.onExit ?? null;
    this.coreId = checkInteger("coreId", options.coreId ?? 0, 0, 0xffff);
    this.accounting = checkOneOf("accounting", options.accounting ?? "sampled", ACCOUNTING);
    this.#sampleEvery = checkInteger("sampleEvery", options.sampleEvery ?? 32, 1, 1 << 16);
    this.#baseWin = this.accounting === "precise" ? 1 : this.#sampleEvery;
    this.#winSize = this.#baseWin;
    this.#win = new Array<Thread | null>(this.#sampleEvery).fill(null);
    this.#allocTid = options.allocTid ?? (() => this.#nextTid++);
  }

  /** The thread being resumed right now (syscall stubs stage their arguments in it), or null. */
  get current(): Thread | null {
    return this.#current;
  }

  get policy(): Policy {
    return this.#policy;
  }

  /** Runnable threads (in the policy, plus those deferred to the end of the running round). */
  get runnable(): number {
    return this.#policy.size + this.#nDeferred;
  }

  /** Threads not exited. */
  get live(): number {
    return this.#live.size;
  }

  /** Sleeping threads. */
  get sleeping(): number {
    return this.#heap.length;
  }

  /** Nothing is runnable (the core may park until a completion or nextWakeAt()). */
  idle(): boolean {
    return this.#policy.size + this.#nDeferred === 0;
  }

  /** The scheduler's clock, ms. */
  now(): number {
    return this.#clock();
  }

  /** A live thread by tid. */
  thread(tid: number): Thread | undefined {
    return this.#live.get(tid);
  }

  /** Install another policy, moving every runnable thread over in the old policy's order. */
  setPolicy(policy: Policy): void {
    if (policy == null || typeof policy.pick !== "function") {
      throw new InvalidArgumentError("policy must be a Policy (enqueue, pick, afterYield, remove)");
    }
    const old = this.#policy;
    this.#policy = policy;
    for (let t = old.pick(); t !== null; t = old.pick()) policy.enqueue(t);
  }

  /** Create a runnable green thread. `body` is a generator or a function that returns one. */
  spawn(body: ThreadBody | (() => ThreadBody), opts: SpawnOptions = {}): Thread {
    const made = typeof body === "function" ? body() : body;
    if (made == null || typeof (made as ThreadBody).next !== "function") {
      throw new InvalidArgumentError("spawn: body must be a generator or a generator function");
    }
    const gen = made.next === resumeNative ? made : delegate(made);
    const tid = opts.tid ?? this.#allocTid();
    if (this.#live.has(tid)) throw new InvalidArgumentError(`spawn: tid ${tid} is already live`);
    const t = new Thread(
      this,
      tid,
      opts.pid ?? this.#current?.pid ?? 0,
      opts.name ?? `t${tid}`,
      opts.priority ?? 0,
      opts.affinity ?? -1,
      gen,
    );
    this.#live.set(tid, t);
    this.#spawned++;
    this.#makeRunnable(t, 0);
    return t;
  }

  /**
   * One scheduling round: tick the sleepers, then pick and resume runnable threads until the
   * policy holds none that has not run this round. Returns the number of resumes.
   * The same as runRounds(1): the clock is read when the round starts and when it ends.
   */
  runRound(): number {
    return this.runRounds(1);
  }

  /**
   * A burst: up to `maxRounds` rounds back to back, stopping early when nothing is runnable or
   * when `stop()` (asked after each round but the last) returns true. One accounting window is
   * held open across the burst, so the clock is read when it starts, every `sampleEvery`
   * resumes, and when it ends, however short its rounds are; the time between its rounds (the
   * hand-back of the round's yielders, `stop()`) is charged to the threads like the scheduler's
   * own time between resumes. Time between bursts is charged to nobody. Returns the resumes.
   * `flush()`, if given, runs once after the last round and before the window's closing clock
   * read: the core publishes the burst's syscalls there, so they are on their way to the
   * domains while the clock is read (≈ 30 ns less on a one-outstanding call's round trip); its
   * time is charged to the burst's threads, as a kernel charges syscall entry to the caller.
   * `openedAt`, if given, is a clock reading the caller took just before (a core that polled for
   * an answer read the clock in its poll loop, in the shadow of the wait): the window opens
   * there and the burst reads no clock at its start, which is on the answer's critical path.
   * The caller's work since that reading is charged to the burst's threads.
   */
  runRounds(
    maxRounds: number,
    stop?: () => boolean,
    flush?: () => void,
    openedAt = Number.NaN,
  ): number {
    if (!Number.isInteger(maxRounds) || maxRounds < 1) {
      throw new InvalidArgumentError(
        `runRounds: maxRounds must be an integer ≥ 1, got ${String(maxRounds)}`,
      );
    }
    if (this.#inRound) {
      throw new GreenThreadError(
        "EXO_ERR_SCHED_REENTRY",
        "runRound: this scheduler is already running a round (called from a green thread?)",
        EDEADLK,
      );
    }
    this.#inRound = true;
    const prev = active;
    active = this;
    let resumes = 0;
    try {
      this.#beginBurst(openedAt);
      for (let i = 1; ; i++) {
        resumes += this.#runOneRound();
        if (i >= maxRounds || this.#policy.size === 0) break;
        if (stop?.() === true) break;
        this.#roundStart();
      }
      flush?.();
    } finally {
      // Also when a callback (submit, onExit, onLongRun, stop) or a panic ends the burst early:
      // the deferred threads must not be stranded outside the policy, nor the window left open.
      this.#current = null;
      active = prev;
      this.#inRound = false;
      if (this.#nDeferred > 0) this.#handBack();
      if (this.#k > 0) this.#closeWindow(this.#clock());
    }
    return resumes;
  }

  /** First round of a burst: open the window (one clock read) and wake the due sleepers. */
  #beginBurst(openedAt: number): void {
    this.#nextRound();
    const now = Number.isNaN(openedAt) ? this.#clock() : openedAt;
    this.#last = now;
    if (this.#heap.length > 0) this.#tickAt(now);
  }

  /**
   * A later round of a burst. The clock is read only if a sleeper may be due: its wakeAt is at
   * or before the clock estimated from the last read plus the open window's resumes at the last
   * window's rate. The read closes the open window (it is a window boundary like any other).
   */
  #roundStart(): void {
    this.#nextRound();
    const h = this.#heap;
    if (h.length === 0 || h[0].wakeAt > this.#last + this.#k * this.#estMs) return;
    const now = this.#clock();
    if (this.#k > 0) this.#closeWindow(now);
    else this.#last = now;
    this.#tickAt(now);
  }

  #nextRound(): void {
    this.#round++;
    this.#rounds++;
    if (this.#winSize !== this.#baseWin && this.#round >= this.#suspectUntil) {
      this.#winSize = this.#baseWin;
    }
  }

  /** Pick and resume until the policy has nobody left who has not run in this round; resumes. */
  #runOneRound(): number {
    const round = this.#round;
    // setPolicy() during the round empties this one, which ends the round; the deferred
    // threads then go to the new policy.
    const policy = this.#policy;
    let n = 0;
    for (let t = policy.pick(); t !== null; t = policy.pick()) {
      if (t.ranRound === round) {
        this.#defer(t);
        continue;
      }
      t.queued = QNONE;
      t.ranRound = round;
      n += this.#run(t);
    }
    this.#current = null;
    if (this.#nDeferred > 0) this.#handBack();
    return n;
  }

  /** `t` ran this round and is runnable again: it waits for the round's end. */
  #defer(t: Thread): void {
    t.state = "runnable";
    t.queued = QDEFERRED;
    const d = this.#deferred;
    const n = this.#nDeferred;
    if (n === d.length) d.push(t);
    else d[n] = t;
    this.#nDeferred = n + 1;
  }

  /** Round end: the threads that ran and stayed runnable go back to the policy, in order. */
  #handBack(): void {
    const d = this.#deferred;
    const n = this.#nDeferred;
    let i = 0;
    try {
      for (; i < n; i++) {
        const t = d[i] as Thread;
        d[i] = null;
        t.queued = QPOLICY;
        this.#policy.enqueue(t);
      }
    } finally {
      // A policy whose enqueue threw: keep the threads not handed back yet, in order.
      let k = 0;
      for (let j = i + 1; j < n; j++) {
        d[k++] = d[j];
        d[j] = null;
      }
      this.#nDeferred = k;
    }
  }

  /** Take a killed thread out of the deferred list, keeping the order of the rest. O(n). */
  #undefer(t: Thread): void {
    const d = this.#deferred;
    const n = this.#nDeferred;
    const i = d.indexOf(t);
    if (i < 0 || i >= n) return;
    for (let j = i; j < n - 1; j++) d[j] = d[j + 1];
    d[n - 1] = null;
    this.#nDeferred = n - 1;
  }

  /**
   * Resume `t` until it leaves the core (more than once when the policy says "continue"). The
   * hot path: a Y_YIELD that is requeued costs one resume, the window entry and the deferral.
   * `#current` is left pointing at `t` after the resume: it is cleared before anything that can
   * run code outside the scheduler and its policy (#left, onLongRun, the round's end). Returns
   * the number of resumes.
   */
  #run(t: Thread): number {
    let n = 0;
    for (;;) {
      t.state = "running";
      this.#current = t;
      let r: IteratorResult<number, number>;
      try {
        r = resumeNative.call(t.gen, t.resumeValue);
      } catch (err) {
        this.#threw(t, err);
        return n + 1;
      }
      n++;
      t.switches++;
      const k = this.#k;
      this.#win[k] = t;
      this.#k = k + 1;
      if (k + 1 >= this.#winSize) this.#closeWindow(this.#clock());
      if (r.done === true || r.value !== YIELD || t.killPending) {
        this.#left(t, r);
        return n;
      }
      t.resumeValue = 0;
      if (this.#policy.afterYield(t, this.#estMs) !== "continue") {
        this.#defer(t);
        return n;
      }
    }
  }

  /** The body threw out of its resume: account the resume, then the thread dies alone. */
  #threw(t: Thread, err: unknown): void {
    this.#current = null;
    t.switches++;
    this.#win[this.#k++] = t;
    this.#closeWindow(this.#clock());
    this.#die(t, err);
  }

  /** `t` left the core other than by a plain Y_YIELD: killed, returned, blocked or misbehaved. */
  #left(t: Thread, r: IteratorResult<number, number>): void {
    this.#current = null;
    if (t.killPending) {
      if (this.#k > 0) this.#closeWindow(this.#clock());
      this.#retire(t, t.status, t.error);
      return;
    }
    if (r.done === true) {
      if (this.#k > 0) this.#closeWindow(this.#clock());
      this.#retire(t, typeof r.value === "number" ? r.value : 0, undefined);
      return;
    }
    switch (r.value) {
      case SYSCALL:
        t.state = "syscall";
        t.syscalls++;
        t.reqId = this.#nextReq;
        this.#nextReq = (this.#nextReq + 1) & 0x7fffffff || 1;
        this.#submit(t);
        return;
      case BLOCK:
        t.state = "blocked";
        return;
      case SLEEP:
        t.state = "sleeping";
        this.#heapPush(t);
        return;
      default:
        if (this.#k > 0) this.#closeWindow(this.#clock());
        this.#die(
          t,
          new GreenThreadError(
            "EXO_ERR_BAD_TOKEN",
            `thread ${t.tid} (${t.name}) yielded ${String(r.value)}, not a scheduler token ` +
              "(Y_YIELD, Y_SYSCALL, Y_BLOCK, Y_SLEEP): use the stubs with yield*",
            EINVAL,
          ),
        );
    }
  }

  /** Share the time from the last read to `now` among the window's resumes; returns the share. */
  #closeWindow(now: number): number {
    const k = this.#k;
    const ms = now - this.#last;
    this.#last = now;
    this.#k = 0;
    const share = ms / k;
    const ns = share * 1e6;
    const win = this.#win;
    const first = win[0] as Thread;
    for (let i = 0; i < k; i++) {
      const t = win[i] as Thread;
      win[i] = null;
      t.runNs += ns;
      if (ns > t.maxSliceNs) t.maxSliceNs = ns;
      if (t.state === "exited") this.#retiredRunNs += ns;
    }
    this.#estMs = share;
    if (ms > this.longRunMs) this.#longWindow(first, k, ms);
    return share;
  }

  /** A window ran longer than longRunMs: report its thread, or go precise to find it. */
  #longWindow(t: Thread, k: number, ms: number): void {
    if (k > 1) {
      this.#winSize = 1;
      this.#suspectUntil = this.#round + SUSPECT_ROUNDS;
      return;
    }
    t.longRuns++;
    if (t.state === "exited") this.#retiredLongRuns++;
    this.#current = null;
    this.#onLongRun?.(t, ms);
  }

  /** Syscall done: `t` becomes runnable and resumes with `ret`. False if `t` has exited. */
  complete(t: Thread, ret: number): boolean {
    if (t.scheduler !== this) this.#foreign("complete", t);
    if (t.state === "exited") return false;
    if (t.state !== "syscall") {
      throw new GreenThreadError(
        "EXO_ERR_THREAD_STATE",
        `complete: thread ${t.tid} (${t.name}) is ${t.state}, not in a syscall`,
        EINVAL,
      );
    }
    this.#makeRunnable(t, ret);
    return true;
  }

  /** Wake a thread a primitive blocked (or a sleeper, early): it resumes with `value`. */
  wake(t: Thread, value: number): boolean {
    if (t.scheduler !== this) this.#foreign("wake", t);
    if (t.state === "exited") return false;
    if (t.state === "sleeping") {
      this.#heapRemove(t);
    } else if (t.state !== "blocked") {
      throw new GreenThreadError(
        "EXO_ERR_THREAD_STATE",
        `wake: thread ${t.tid} (${t.name}) is ${t.state}, not blocked or sleeping`,
        EINVAL,
      );
    }
    this.#makeRunnable(t, value);
    return true;
  }

  /** Make every sleeper whose wakeAt has passed runnable; returns how many. */
  tick(now: number = this.#clock()): number {
    return this.#heap.length === 0 ? 0 : this.#tickAt(now);
  }

  /** Earliest wakeAt of a sleeper (ms, scheduler clock), +Infinity if none: the park timeout. */
  nextWakeAt(): number {
    return this.#heap.length === 0 ? Number.POSITIVE_INFINITY : this.#heap[0].wakeAt;
  }

  /**
   * End a thread with `status`. A thread that is running (it killed itself) ends when its resume
   * returns. Returns false if it had already exited.
   */
  kill(t: Thread, status: number, error?: unknown): boolean {
    if (t.scheduler !== this) this.#foreign("kill", t);
    if (t.state === "exited") return false;
    // "running" from the resume until the scheduler has decided where the thread goes: a kill
    // from inside it, or from a callback in between (onLongRun), takes effect at that point.
    if (t.state === "running") {
      t.killPending = true;
      t.status = status;
      if (error !== undefined) t.error = error;
      return true;
    }
    if (t.state === "runnable") {
      if (t.queued === QPOLICY) this.#policy.remove(t);
      else if (t.queued === QDEFERRED) this.#undefer(t);
      t.queued = QNONE;
    } else if (t.state === "sleeping") {
      this.#heapRemove(t);
    }
    this.#retire(t, status, error);
    return true;
  }

  /** Per-thread accounting of the live threads and totals over all threads. */
  stats(): SchedulerStats {
    const threads: ThreadStats[] = [];
    let runNs = this.#retiredRunNs;
    let switches = this.#retiredSwitches;
    let syscalls = this.#retiredSyscalls;
    let longRuns = this.#retiredLongRuns;
    let blocked = 0;
    let syscall = 0;
    for (const t of this.#live.values()) {
      runNs += t.runNs;
      switches += t.switches;
      syscalls += t.syscalls;
      longRuns += t.longRuns;
      if (t.state === "blocked") blocked++;
      else if (t.state === "syscall") syscall++;
      threads.push({
        tid: t.tid,
        pid: t.pid,
        name: t.name,
        state: t.state,
        priority: t.priority,
        runNs: t.runNs,
        switches: t.switches,
        syscalls: t.syscalls,
        maxSliceNs: t.maxSliceNs,
        longRuns: t.longRuns,
      });
    }
    return {
      coreId: this.coreId,
      policy: this.#policy.name,
      accounting: this.accounting,
      rounds: this.#rounds,
      resumes: switches,
      spawned: this.#spawned,
      exited: this.#exited,
      live: this.#live.size,
      runnable: this.runnable,
      blocked,
      sleeping: this.#heap.length,
      syscall,
      totals: { runNs, switches, syscalls, longRuns },
      threads,
    };
  }

  // ---- internals -----------------------------------------------------------------------------

  #foreign(verb: string, t: Thread): never {
    throw new GreenThreadError(
      "EXO_ERR_FOREIGN_THREAD",
      `${verb}: thread ${t.tid} (${t.name}) belongs to core ${t.scheduler.coreId}, not core ${this.coreId}`,
      EINVAL,
    );
  }

  #makeRunnable(t: Thread, value: number): void {
    t.state = "runnable";
    t.resumeValue = value;
    t.queued = QPOLICY;
    this.#policy.enqueue(t);
  }

  /** The body threw (or yielded a bad token): the thread dies alone; a panic goes on up. */
  #die(t: Thread, err: unknown): void {
    const status = err instanceof ExocoreError && err.errno > 0 ? -err.errno : -1;
    this.#retire(t, status, err);
    if (err instanceof PanicError) throw err;
  }

  /** Make `t` exited: release what it holds, wake its joiners, count it, tell the core. */
  #retire(t: Thread, status: number, error: unknown): void {
    t.state = "exited";
    t.status = status;
    t.error = error;
    t.killPending = false;
    t.queued = QNONE;
    t.slot = undefined;
    for (let r = t.held; r !== null; ) {
      const next = r.nextHeld;
      r.nextHeld = null;
      r.ownerDied(t);
      r = next;
    }
    t.held = null;
    const joiners = t.joiners;
    t.joiners = null;
    if (joiners !== null) {
      for (const j of joiners) if (j.state === "blocked") this.wake(j, status);
    }
    this.#live.delete(t.tid);
    this.#exited++;
    this.#retiredRunNs += t.runNs;
    this.#retiredSwitches += t.switches;
    this.#retiredSyscalls += t.syscalls;
    this.#retiredLongRuns += t.longRuns;
    this.#onExit?.(t);
  }

  #tickAt(now: number): number {
    const h = this.#heap;
    let n = 0;
    while (h.length > 0 && h[0].wakeAt <= now) {
      const t = h[0];
      this.#heapRemove(t);
      this.#makeRunnable(t, 0);
      n++;
    }
    return n;
  }

  #before(a: Thread, b: Thread): boolean {
    return a.wakeAt < b.wakeAt || (a.wakeAt === b.wakeAt && a.sleepSeq < b.sleepSeq);
  }

  #heapPush(t: Thread): void {
    t.sleepSeq = ++this.#sleepSeq;
    const h = this.#heap;
    t.heapIndex = h.length;
    h.push(t);
    this.#siftUp(t.heapIndex);
  }

  #heapRemove(t: Thread): void {
    const h = this.#heap;
    const i = t.heapIndex;
    t.heapIndex = -1;
    const last = h.pop() as Thread;
    if (last === t) return;
    h[i] = last;
    last.heapIndex = i;
    this.#siftDown(this.#siftUp(i));
  }

  #siftUp(i: number): number {
    const h = this.#heap;
    const t = h[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(t, h[p])) break;
      h[i] = h[p];
      h[i].heapIndex = i;
      i = p;
    }
    h[i] = t;
    t.heapIndex = i;
    return i;
  }

  #siftDown(i: number): void {
    const h = this.#heap;
    const n = h.length;
    const t = h[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.#before(h[c + 1], h[c])) c++;
      if (!this.#before(h[c], t)) break;
      h[i] = h[c];
      h[i].heapIndex = i;
      i = c;
    }
    h[i] = t;
    t.heapIndex = i;
  }
}
