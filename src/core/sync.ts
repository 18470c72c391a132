/**
 * sync: green-thread primitives that never block the core. Each blocking verb is a generator
 * used with `yield*` from a green thread (`yield* m.lock()`, `const v = yield* ch.recv()`); to
 * wait, it queues the running thread in the primitive and yields Y_BLOCK, and whoever ends the
 * wait calls Scheduler.wake(t, value). Non-blocking verbs (unlock, signal, close) are plain calls.
 * The caller is found through the running thread (currentThread), and a waiter is woken
 * through its own scheduler (Thread.scheduler), so non-blocking verbs also work from the core's
 * own code outside a round. Primitives are plain objects, not shared memory: they serve the
 * threads of one core (threads on two cores talk through the rings of src/shm).
 *
 * Invariants:
 *   - A thread waits in at most one queue. Wait queues may hold dead threads (killed while
 *     blocked): every dequeue skips threads whose state is not "blocked" (lazy removal).
 *   - Mutex: FIFO handoff. unlock() gives the mutex straight to the oldest live waiter before
 *     waking it, so a thread that arrives later cannot barge in and no waiter starves. A thread
 *     that dies holding a mutex releases it the same way (robust mutex, without EOWNERDEAD).
 *   - CondVar: Mesa semantics (a woken waiter re-locks and must re-check its condition).
 *   - Channel: bounded FIFO; capacity 0 is a rendezvous (send waits for a receiver).
 *     Closing: send on a closed channel, or a sender blocked when it closes, throws
 *     ChannelClosedError; receivers drain what is buffered, then recv() throws
 *     ChannelClosedError and recvOr(d) returns d (use `recvOr(CLOSED)` for a loop that ends
 *     on close without exceptions).
 * Misuse (unlock by a non-owner, double unlock, relock, waiting on a condvar without its mutex,
 * join of oneself, double close) throws a GreenThreadError with a stable code into the thread
 * that made it, which kills that thread only (unless it catches).
 */

import { EDEADLK, EPERM, EPIPE } from "../abi/errno.js";
import { InvalidArgumentError } from "../errors.js";
import { RingQueue } from "./policy.js";
import {
  currentThread,
  GreenThreadError,
  type Releasable,
  type Scheduler,
  type SpawnOptions,
  type Thread,
  type ThreadBody,
  Y_BLOCK,
  Y_SLEEP,
  Y_YIELD,
  yieldToken,
} from "./sched.js";

/** The scheduler running the current green thread (throws outside one). */
function sched(): Scheduler {
  return currentThread().scheduler;
}

/** The running green thread. */
export function self(): Thread {
  return currentThread();
}

/** Sleep at least `ms` milliseconds of the scheduler's clock (0 or less: until the next round). */
export function sleep(ms: number): Generator<number, number, number> {
  const t = currentThread();
  t.wakeAt = t.scheduler.now() + (Number.isNaN(ms) ? 0 : Math.max(ms, 0));
  return yieldToken(Y_SLEEP);
}

/** Give up the rest of the slice (through the gate: no generator per call). */
export function yieldNow(): Generator<number, number, number> {
  return yieldToken(Y_YIELD);
}

/** Start a green thread on the current core (pid and priority inherited unless given). */
export function spawnThread(
  body: ThreadBody | (() => ThreadBody),
  opts: SpawnOptions = {},
): Thread {
  const s = sched();
  const me = s.current as Thread;
  return s.spawn(body, {
    ...opts,
    pid: opts.pid ?? me.pid,
    priority: opts.priority ?? me.priority,
  });
}

/** Wait for `t` to exit; returns its exit status. */
export function* join(t: Thread): Generator<number, number, number> {
  const me = currentThread();
  if (t === me) {
    throw new GreenThreadError(
      "EXO_ERR_JOIN_SELF",
      `join: thread ${me.tid} joined itself`,
      EDEADLK,
    );
  }
  if (t.state === "exited") return t.status;
  if (t.joiners === null) t.joiners = [];
  t.joiners.push(me);
  return yield Y_BLOCK;
}

/**
 * End the running thread now with `status`. Like _exit: `finally` blocks do not run; mutexes it
 * holds are released to their next waiters.
 */
export function* exit(status: number): Generator<number, never, number> {
  const s = sched();
  s.kill(s.current as Thread, status);
  yield Y_YIELD;
  throw new GreenThreadError("EXO_ERR_THREAD_STATE", "exit: thread resumed after exit", EPERM);
}

/** Take the oldest waiter that is still blocked (skipping threads killed while waiting). */
function nextLive(q: RingQueue<Thread>): Thread | undefined {
  for (let t = q.shift(); t !== undefined; t = q.shift()) {
    if (t.state === "blocked") return t;
  }
  return undefined;
}

/** A green-thread mutex: FIFO handoff, robust against owner death. */
export class Mutex implements Releasable {
  #owner: Thread | null = null;
  readonly #waiters = new RingQueue<Thread>(8);
  /** Intrusive link in the owner's list of held resources. */
  nextHeld: Releasable | null = null;

  /** The owning thread, or null. */
  get owner(): Thread | null {
    return this.#owner;
  }

  /** Threads queued for the mutex (dead ones not yet skipped included). */
  get waiting(): number {
    return this.#waiters.size;
  }

  *lock(): Generator<number, void, number> {
    const me = currentThread();
    if (this.#owner === null) {
      this.#acquire(me);
      return;
    }
    if (this.#owner === me) {
      throw new GreenThreadError(
        "EXO_ERR_MUTEX_RELOCK",
        `Mutex.lock: thread ${me.tid} already holds this mutex`,
        EDEADLK,
      );
    }
    this.#waiters.push(me);
    yield Y_BLOCK; // unlock() made us the owner before waking us
  }

  /** Take the mutex if it is free; never waits. (Free implies no live waiter: FIFO handoff.) */
  tryLock(): boolean {
    const me = currentThread();
    if (this.#owner !== null) return false;
    this.#acquire(me);
    return true;
  }

  unlock(): void {
    const me = currentThread();
    if (this.#owner !== me) {
      throw new GreenThreadError(
        this.#owner === null ? "EXO_ERR_MUTEX_NOT_LOCKED" : "EXO_ERR_MUTEX_NOT_OWNER",
        this.#owner === null
          ? `Mutex.unlock: thread ${me.tid} unlocked a mutex that is not locked`
          : `Mutex.unlock: thread ${me.tid} does not own this mutex (thread ${this.#owner.tid} does)`,
        EPERM,
      );
    }
    this.#unlink(me);
    this.#handOff();
  }

  ownerDied(_t: Thread): void {
    this.#owner = null;
    this.#handOff();
  }

  #acquire(t: Thread): void {
    this.#owner = t;
    this.nextHeld = t.held;
    t.held = this;
  }

  /** Give the (released) mutex to the oldest live waiter and wake it. */
  #handOff(): void {
    this.#owner = null;
    const next = nextLive(this.#waiters);
    if (next === undefined) return;
    this.#acquire(next);
    next.scheduler.wake(next, 0);
  }

  /** Remove this mutex from `t`'s held list. */
  #unlink(t: Thread): void {
    if (t.held === this) {
      t.held = this.nextHeld;
    } else {
      let r = t.held;
      while (r !== null && r.nextHeld !== this) r = r.nextHeld;
      if (r !== null) r.nextHeld = this.nextHeld;
    }
    this.nextHeld = null;
  }
}

/** A condition variable over a {@link Mutex} (Mesa semantics). */
export class CondVar {
  readonly #waiters = new RingQueue<Thread>(8);

  /** Release `m`, wait for signal/broadcast, re-lock `m`. The caller must hold `m`. */
  *wait(m: Mutex): Generator<number, void, number> {
    const me = currentThread();
    if (m.owner !== me) {
      throw new GreenThreadError(
        "EXO_ERR_MUTEX_NOT_OWNER",
        `CondVar.wait: thread ${me.tid} does not hold the mutex`,
        EPERM,
      );
    }
    this.#waiters.push(me);
    m.unlock();
    yield Y_BLOCK;
    yield* m.lock();
  }

  /** Wake the oldest waiter, if any. Returns whether one was woken. */
  signal(): boolean {
    const t = nextLive(this.#waiters);
    if (t === undefined) return false;
    t.scheduler.wake(t, 0);
    return true;
  }

  /** Wake every waiter; returns how many. */
  broadcast(): number {
    let n = 0;
    while (this.signal()) n++;
    return n;
  }
}

/** Thrown by Channel.send on a closed channel and by Channel.recv on a closed, empty one. */
export class ChannelClosedError extends GreenThreadError {
  constructor(message: string) {
    super("EXO_ERR_CHANNEL_CLOSED", message, EPIPE);
  }
}

/** A sentinel for {@link Channel.recvOr}: `for (let v; (v = yield* ch.recvOr(CLOSED)) !== CLOSED;)`. */
export const CLOSED: unique symbol = Symbol("exocore.channel.closed");

// Wake values a channel passes to a blocked thread.
const W_VALUE = 1; // a value is in t.slot (receiver) / the value was taken (sender)
const W_CLOSED = 2; // the channel closed

/** A bounded FIFO channel between green threads of one core. capacity 0 = rendezvous. */
export class Channel<T> {
  readonly capacity: number;
  readonly #buf: RingQueue<T>;
  readonly #senders = new RingQueue<Thread>(8);
  readonly #receivers = new RingQueue<Thread>(8);
  #closed = false;

  constructor(capacity: number) {
    if (typeof capacity !== "number" || !Number.isInteger(capacity) || capacity < 0) {
      throw new InvalidArgumentError(
        `capacity must be an integer of 0 or more, got ${String(capacity)}`,
      );
    }
    this.capacity = capacity;
    this.#buf = new RingQueue<T>(Math.max(2, Math.min(capacity, 1024)));
  }

  /** Values buffered. */
  get length(): number {
    return this.#buf.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Send `v`, waiting while the channel is full (or, unbuffered, until a receiver takes it). */
  *send(v: T): Generator<number, void, number> {
    const me = currentThread();
    if (this.#offer(v)) return;
    me.slot = v;
    this.#senders.push(me);
    const w = yield Y_BLOCK;
    if (w === W_CLOSED) throw new ChannelClosedError("Channel.send: the channel was closed");
  }

  /** Send without waiting: false if the value could not be taken now. */
  trySend(v: T): boolean {
    return this.#offer(v);
  }

  /** Receive the oldest value, waiting while empty; throws ChannelClosedError once closed and drained. */
  *recv(): Generator<number, T, number> {
    const v = yield* this.recvOr(CLOSED);
    if (v === CLOSED) throw new ChannelClosedError("Channel.recv: the channel is closed and empty");
    return v;
  }

  /** As recv, but returns `dflt` instead of throwing when the channel is closed and drained. */
  *recvOr<D>(dflt: D): Generator<number, T | D, number> {
    const me = currentThread();
    if (this.#buf.size > 0) {
      const v = this.#buf.shift() as T;
      const s = nextLive(this.#senders);
      if (s !== undefined) this.#takeFrom(s, true);
      return v;
    }
    const s = nextLive(this.#senders);
    if (s !== undefined) return this.#takeFrom(s, false);
    if (this.#closed) return dflt;
    this.#receivers.push(me);
    const w = yield Y_BLOCK;
    if (w === W_CLOSED) return dflt;
    const v = me.slot as T;
    me.slot = undefined;
    return v;
  }

  /**
   * Close: no more sends. Blocked receivers get the closed result, blocked senders a
   * ChannelClosedError; buffered values can still be received. Closing twice throws.
   */
  close(): void {
    if (this.#closed) {
      throw new ChannelClosedError("Channel.close: the channel is already closed");
    }
    this.#closed = true;
    for (let t = nextLive(this.#receivers); t !== undefined; t = nextLive(this.#receivers)) {
      t.scheduler.wake(t, W_CLOSED);
    }
    for (let t = nextLive(this.#senders); t !== undefined; t = nextLive(this.#senders)) {
      t.slot = undefined;
      t.scheduler.wake(t, W_CLOSED);
    }
  }

  /** Hand `v` to a waiting receiver or the buffer; false if it must wait. Throws if closed. */
  #offer(v: T): boolean {
    if (this.#closed) throw new ChannelClosedError("Channel.send: the channel is closed");
    const r = nextLive(this.#receivers);
    if (r !== undefined) {
      r.slot = v;
      r.scheduler.wake(r, W_VALUE);
      return true;
    }
    if (this.#buf.size < this.capacity) {
      this.#buf.push(v);
      return true;
    }
    return false;
  }

  /** Take blocked sender `s`'s value: into the buffer (toBuffer) or returned; wake `s`. */
  #takeFrom(s: Thread, toBuffer: boolean): T {
    const v = s.slot as T;
    s.slot = undefined;
    if (toBuffer) this.#buf.push(v);
    s.scheduler.wake(s, W_VALUE);
    return v;
  }
}
