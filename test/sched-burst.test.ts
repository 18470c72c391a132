/**
 * sched-burst: bursts of rounds (Scheduler.runRounds) and the cheap switch path of
 * src/core/sched.ts. The clock is a fake that counts its reads, so the tests can say how often
 * the scheduler reads it, and thread bodies advance it by hand, so run times are exact:
 *   - a burst runs the same schedule as the same number of runRound() calls, stops when nothing
 *     is runnable or stop() says so, and checks its arguments;
 *   - a burst reads the clock at its start, every `sampleEvery` resumes and at its end, however
 *     many rounds it holds; every millisecond inside a burst is charged, none between bursts;
 *   - a long run inside a burst is still reported, and the report may kill the thread;
 *   - a sleeper that falls due inside a burst is woken inside it, within one window;
 *   - callbacks run with no current thread, so a kill from one acts at once;
 *   - a body that is a hand-written iterator (not a generator) runs like any other;
 *   - random mixes of yields and syscalls (fast-check): runRounds(n, stop) and n runRound()
 *     calls give the same resume order, statuses and total run time;
 *   - random mixes with sleeps, a mutex, a channel, exits, throws and kills (some from stop(),
 *     in the middle of a burst), in random bursts: no thread is lost or run twice in a round,
 *     every thread ends once with the status its program implies, the mutex excludes.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { FifoPolicy, type Policy, PriorityPolicy, RoundRobinPolicy } from "../src/core/policy.js";
import {
  activeScheduler,
  currentThread,
  Scheduler,
  type SchedulerOptions,
  type Thread,
  type ThreadBody,
  Y_SLEEP,
  Y_SYSCALL,
  Y_YIELD,
} from "../src/core/sched.js";
import { Channel, CLOSED, exit, Mutex, sleep, yieldNow } from "../src/core/sync.js";
import { InvalidArgumentError } from "../src/errors.js";

/** A fake clock that counts how often it is read. */
class Clock {
  ms = 0;
  reads = 0;
  readonly now = (): number => {
    this.reads++;
    return this.ms;
  };
}

function make(policy: Policy, clock: Clock, opts: Partial<SchedulerOptions> = {}): Scheduler {
  return new Scheduler({ policy, now: clock.now, submit: () => {}, ...opts });
}

/** A body that logs `tag`, spends `ms` of fake time, and yields, `n` times. */
function* worker(clock: Clock, log: string[], tag: string, n: number, ms = 0): ThreadBody {
  for (let i = 0; i < n; i++) {
    log.push(tag);
    clock.ms += ms;
    yield Y_YIELD;
  }
  return 0;
}

test("a burst runs the schedule of as many runRound calls, and returns its resumes", () => {
  for (const policy of [() => new FifoPolicy(), () => new PriorityPolicy(3)]) {
    const logs: string[][] = [];
    const counts: number[] = [];
    for (const burst of [false, true]) {
      const clock = new Clock();
      const s = make(policy(), clock);
      const log: string[] = [];
      for (const [tag, n, prio] of [
        ["A", 5, 0],
        ["B", 2, 2],
        ["C", 7, 1],
      ] as const) {
        s.spawn(worker(clock, log, tag, n), { priority: prio });
      }
      let resumes = 0;
      if (burst) resumes = s.runRounds(4);
      else for (let i = 0; i < 4; i++) resumes += s.runRound();
      logs.push(log);
      counts.push(resumes);
      assert.equal(s.stats().rounds, 4);
    }
    assert.deepEqual(logs[1], logs[0]);
    assert.equal(counts[1], counts[0]);
    assert.equal(counts[0], 4 + 3 + 4); // one resume a round each; B returns in round 3
  }
});

test("a burst ends early when nothing is runnable or when stop() says so", () => {
  const clock = new Clock();
  const s = make(new FifoPolicy(), clock);
  const log: string[] = [];
  s.spawn(worker(clock, log, "A", 3));
  // 3 yields + the resume that returns: 4 rounds, then nothing is left to run.
  assert.equal(s.runRounds(100), 4);
  assert.equal(s.stats().rounds, 4);

  s.spawn(worker(clock, log, "B", 50));
  let asked = 0;
  const ran = s.runRounds(10, () => ++asked === 3);
  assert.equal(asked, 3, "stop() is asked after each round but the last");
  assert.equal(ran, 3);
  let never = 0;
  s.runRounds(1, () => {
    never++;
    return false;
  });
  assert.equal(never, 0, "a burst of one round does not ask");
});

test("runRounds checks maxRounds", () => {
  const s = make(new FifoPolicy(), new Clock());
  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(
      () => s.runRounds(bad),
      (e: unknown) =>
        e instanceof InvalidArgumentError &&
        e.message === `runRounds: maxRounds must be an integer ≥ 1, got ${String(bad)}`,
    );
  }
});

test("a burst reads the clock at its start, once per window and at its end", () => {
  const clock = new Clock();
  const s = make(new FifoPolicy(), clock, { sampleEvery: 32 });
  for (let i = 0; i < 2; i++) s.spawn(worker(clock, [], `t${i}`, 1000));
  clock.reads = 0;
  assert.equal(s.runRounds(16), 32);
  assert.equal(clock.reads, 2, "32 resumes in one window: the start and the end");
  clock.reads = 0;
  assert.equal(s.runRounds(40), 80);
  assert.equal(clock.reads, 4, "80 resumes: start, after 32, after 64, end");
  clock.reads = 0;
  for (let i = 0; i < 16; i++) s.runRound();
  assert.equal(clock.reads, 32, "a round alone reads at its start and its end");

  const p = make(new FifoPolicy(), clock, { accounting: "precise" });
  for (let i = 0; i < 2; i++) p.spawn(worker(clock, [], `p${i}`, 1000));
  clock.reads = 0;
  p.runRounds(16);
  assert.equal(clock.reads, 33, "precise: the start, then one read per resume");
});

test("a burst given openedAt reads no clock at its start and charges from that reading", () => {
  const clock = new Clock();
  const s = make(new FifoPolicy(), clock, { sampleEvery: 32 });
  const t = s.spawn(worker(clock, [], "t", 1000, 1));
  s.runRounds(1); // the spawn's first resume, timed the ordinary way
  const before = t.runNs;
  clock.ms = 1000;
  clock.reads = 0;
  // The caller read 997 (say, in a poll loop) and did 3 ms of work since: those 3 ms and the
  // resume's own 1 ms are the burst's.
  assert.equal(s.runRounds(1, undefined, undefined, 997), 1);
  assert.equal(clock.reads, 1, "only the closing read");
  assert.equal(t.runNs - before, 4e6);
  // NaN (what a core passes when it did not poll) means: read the clock as usual.
  clock.reads = 0;
  s.runRounds(1, undefined, undefined, Number.NaN);
  assert.equal(clock.reads, 2);
});

test("every millisecond inside a burst is charged, none between bursts", () => {
  for (const accounting of ["sampled", "precise"] as const) {
    const clock = new Clock();
    const s = make(new FifoPolicy(), clock, { accounting, sampleEvery: 5 });
    const threads: Thread[] = [];
    for (let i = 0; i < 3; i++) threads.push(s.spawn(worker(clock, [], `t${i}`, 40, i + 1)));
    let inside = 0;
    while (s.live > 0) {
      const before = clock.ms;
      // stop() runs between rounds, inside the burst: its time is charged too.
      s.runRounds(7, () => {
        clock.ms += 0.5;
        return false;
      });
      inside += clock.ms - before;
      clock.ms += 100; // between bursts: nobody's
    }
    const total = s.stats().totals.runNs;
    assert.ok(Math.abs(total - inside * 1e6) < 1e-3, `${accounting}: ${total} vs ${inside * 1e6}`);
    if (accounting === "precise") {
      // Each resume of t_i spends i+1 ms; the 0.5 ms of a stop() goes to the next resume.
      assert.ok(threads[0].runNs >= 40e6 && threads[0].runNs <= 60e6);
    }
    for (const t of threads) assert.equal(t.switches, 41);
  }
});

test("a long run inside a burst is reported, and named even when its window held others", () => {
  const clock = new Clock();
  const longRuns: [Thread, number][] = [];
  const s = make(new FifoPolicy(), clock, {
    longRunMs: 50,
    sampleEvery: 8,
    onLongRun: (t, ms) => {
      assert.equal(s.current, null, "onLongRun runs with no current thread");
      longRuns.push([t, ms]);
    },
  });
  const quiet: Thread[] = [];
  for (let i = 0; i < 3; i++) quiet.push(s.spawn(worker(clock, [], `q${i}`, 100)));
  const hog = s.spawn(function* (): ThreadBody {
    for (;;) {
      clock.ms += 80; // runs 80 ms without yielding, every time
      yield Y_YIELD;
    }
  });
  s.runRounds(2); // one window of 8 resumes, 160 ms: whose? go precise for a few rounds
  assert.equal(longRuns.length, 0);
  s.runRounds(4);
  assert.ok(longRuns.length >= 1);
  assert.ok(longRuns.every(([t, ms]) => t === hog && ms === 80));
  assert.ok(quiet.every((t) => t.longRuns === 0));
  s.kill(hog, 0);

  // Alone in a burst of one round, the hog's window holds its one resume: reported at once.
  const lone = make(new FifoPolicy(), clock, {
    longRunMs: 50,
    onLongRun: (t, ms) => longRuns.push([t, ms]),
  });
  longRuns.length = 0;
  const h = lone.spawn(worker(clock, [], "h", 3, 70));
  lone.runRound();
  assert.deepEqual(longRuns, [[h, 70]]);
});

test("onLongRun may kill the thread it reports: it ends there, not requeued", () => {
  const clock = new Clock();
  const exits: Thread[] = [];
  // Precise: the report comes straight after the hog's resume, before it is requeued.
  const s = make(new FifoPolicy(), clock, {
    accounting: "precise",
    longRunMs: 50,
    onLongRun: (t) => s.kill(t, 99),
    onExit: (t) => exits.push(t),
  });
  const hog = s.spawn(worker(clock, [], "h", 10, 70));
  const other = s.spawn(worker(clock, [], "o", 10));
  s.runRounds(1);
  assert.equal(hog.state, "exited");
  assert.equal(hog.status, 99);
  assert.deepEqual(exits, [hog]);
  assert.equal(s.runnable, 1); // `other` only
  assert.equal(s.live, 1);
  s.runRounds(3);
  assert.equal(hog.switches, 1);
  assert.equal(other.switches, 4);
});

test("a sleeper that falls due inside a burst is woken inside it, within one window", () => {
  const clock = new Clock();
  const s = make(new FifoPolicy(), clock, { sampleEvery: 4 });
  const log: string[] = [];
  s.spawn(worker(clock, log, "w", 100, 1)); // 1 ms per resume
  let wokeAt = -1;
  let due = -1;
  s.spawn(function* (): ThreadBody {
    due = clock.ms + 10;
    currentThread().wakeAt = due;
    yield Y_SLEEP;
    wokeAt = clock.ms;
    log.push("S");
    return 0;
  });
  s.runRounds(40);
  assert.ok(wokeAt >= due, "not before its time");
  // Windows of 4 resumes of 1 ms: the sleeper is late by less than one window.
  assert.ok(wokeAt < due + 4, `due at ${due}, woke at ${wokeAt}`);
  assert.equal(s.sleeping, 0);
  assert.ok(log.indexOf("S") < 40, "inside the burst");
});

test("callbacks run with no current thread: a kill from one takes effect at once", () => {
  const clock = new Clock();
  let victim: Thread | null = null;
  const seen: (Thread | null)[] = [];
  const s = make(new FifoPolicy(), clock, {
    submit: () => {
      seen.push(s.current);
      assert.equal(activeScheduler(), s);
      if (victim !== null) s.kill(victim, 44); // victim ran just before: not "running" now
    },
  });
  victim = s.spawn(worker(clock, [], "v", 10));
  s.spawn(worker(clock, [], "x", 10)); // keeps the burst going
  s.spawn(function* (): ThreadBody {
    currentThread().nr = 1;
    yield Y_SYSCALL;
    return 0;
  });
  s.runRounds(2, () => {
    seen.push(s.current);
    return false;
  });
  assert.deepEqual(seen, [null, null]);
  assert.equal(victim.state, "exited");
  assert.equal(victim.status, 44);
  assert.equal(victim.switches, 1);
});

test("a hand-written iterator body runs like a generator", () => {
  const s = make(new FifoPolicy(), new Clock(), {
    submit: (t) => s.complete(t, t.a0 * 3),
  });
  const got: number[] = [];
  let step = 0;
  const body = {
    next(v: number): IteratorResult<number, number> {
      got.push(v);
      step++;
      if (step === 1) return { done: false, value: Y_YIELD };
      if (step === 2) {
        currentThread().a0 = 7;
        return { done: false, value: Y_SYSCALL };
      }
      return { done: true, value: v + 1 };
    },
    return(v: number): IteratorResult<number, number> {
      return { done: true, value: v };
    },
    throw(e: unknown): IteratorResult<number, number> {
      throw e;
    },
    [Symbol.iterator]() {
      return this;
    },
  } as unknown as ThreadBody;
  const t = s.spawn(body);
  while (s.live > 0) s.runRound();
  assert.equal(t.status, 22);
  assert.deepEqual(got.slice(1), [0, 21]); // the first next() only starts it
});

type Op = { k: "yield"; ms: number } | { k: "syscall"; a: number; delay: number };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("yield" as const), ms: fc.integer({ min: 0, max: 3 }) }),
  fc.record({
    k: fc.constant("syscall" as const),
    a: fc.integer({ min: 0, max: 100 }),
    delay: fc.integer({ min: 0, max: 2 }),
  }),
);

test("random mixes: runRounds(n, stop) and n runRound calls agree", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("fifo", "rr", "prio"),
      fc.constantFrom("sampled" as const, "precise" as const),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 9 }),
      fc.array(
        fc.record({ prio: fc.integer({ min: 0, max: 3 }), ops: fc.array(op, { maxLength: 8 }) }),
        { minLength: 1, maxLength: 8 },
      ),
      (policyName, mode, burst, sampleEvery, programs) => {
        // Round robin spends slices by run time: sampled windows differ between the two ways
        // of running rounds, so only precise run times give both the same slices.
        const accounting = policyName === "rr" ? "precise" : mode;
        const runs = [false, true].map((bursts) => {
          const clock = new Clock();
          const pending: { t: Thread; due: number }[] = [];
          let submitted = 0;
          const policy =
            policyName === "fifo"
              ? new FifoPolicy()
              : policyName === "rr"
                ? new RoundRobinPolicy(2)
                : new PriorityPolicy(4);
          const s = new Scheduler({
            policy,
            accounting,
            sampleEvery,
            now: clock.now,
            submit: (t) => {
              submitted++;
              pending.push({ t, due: step + t.a1 });
            },
          });
          const log: string[] = [];
          let step = 0;
          const threads = programs.map((p, i) =>
            s.spawn(
              function* (): ThreadBody {
                let sum = 0;
                for (const o of p.ops) {
                  log.push(`${i}`);
                  if (o.k === "yield") {
                    clock.ms += o.ms;
                    yield Y_YIELD;
                  } else {
                    const me = currentThread();
                    me.a0 = o.a;
                    me.a1 = o.delay;
                    sum += yield Y_SYSCALL;
                  }
                }
                return sum;
              },
              { priority: p.prio },
            ),
          );
          // The core's loop: complete what is due, then a burst that ends at the first round
          // that submitted a call (so it is published at once).
          const stop = () => submitted > 0;
          for (step = 1; s.live > 0; step++) {
            assert.ok(step < 2000, "no progress");
            for (let i = 0; i < pending.length; ) {
              const p = pending[i];
              if (p.due <= step) {
                pending.splice(i, 1);
                s.complete(p.t, p.t.a0 * 2);
              } else i++;
            }
            submitted = 0;
            if (bursts) s.runRounds(burst, stop);
            else {
              for (let r = 0; r < burst; r++) {
                s.runRound();
                if (r + 1 === burst || s.idle() || stop()) break;
              }
            }
            clock.ms += 1; // between bursts
          }
          return { log, threads, clock, s };
        });
        const [a, b] = runs;
        assert.deepEqual(b.log, a.log);
        assert.deepEqual(
          b.threads.map((t) => [t.status, t.switches, t.syscalls]),
          a.threads.map((t) => [t.status, t.switches, t.syscalls]),
        );
        const spent = programs.reduce(
          (n, p) => n + p.ops.reduce((m, o) => m + (o.k === "yield" ? o.ms : 0), 0),
          0,
        );
        for (const r of runs) {
          assert.ok(Math.abs(r.s.stats().totals.runNs - spent * 1e6) < 1e-3);
          assert.equal(r.s.stats().resumes, r.s.stats().totals.switches);
        }
      },
    ),
    { numRuns: 300 },
  );
});

/** Wraps a policy and refuses a thread enqueued twice, or picked or removed while not held. */
class CheckingPolicy implements Policy {
  readonly held = new Set<Thread>();
  constructor(readonly inner: Policy) {}
  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  enqueue(t: Thread): void {
    assert.ok(!this.held.has(t), `thread ${t.tid} enqueued twice`);
    assert.equal(t.state, "runnable");
    this.held.add(t);
    this.inner.enqueue(t);
  }
  pick(): Thread | null {
    const t = this.inner.pick();
    if (t !== null) assert.ok(this.held.delete(t), `picked thread ${t.tid} was not held`);
    return t;
  }
  afterYield(t: Thread, ranMs: number) {
    return this.inner.afterYield(t, ranMs);
  }
  remove(t: Thread): void {
    assert.ok(this.held.delete(t), `removed thread ${t.tid} was not held`);
    this.inner.remove(t);
  }
}

type Step =
  | { k: "yield"; ms: number }
  | { k: "sleep"; ms: number }
  | { k: "syscall"; a: number; delay: number }
  | { k: "locked"; ms: number }
  | { k: "send" }
  | { k: "exit"; status: number }
  | { k: "throw" };
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({ k: fc.constant("yield" as const), ms: fc.integer({ min: 0, max: 3 }) }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ k: fc.constant("sleep" as const), ms: fc.integer({ min: 0, max: 6 }) }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("syscall" as const),
      a: fc.integer({ min: 0, max: 100 }),
      delay: fc.integer({ min: 0, max: 2 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ k: fc.constant("locked" as const), ms: fc.integer({ min: 0, max: 2 }) }),
    weight: 2,
  },
  { arbitrary: fc.constant({ k: "send" as const }), weight: 2 },
  {
    arbitrary: fc.record({
      k: fc.constant("exit" as const),
      status: fc.integer({ min: 0, max: 50 }),
    }),
    weight: 1,
  },
  { arbitrary: fc.constant({ k: "throw" as const }), weight: 1 },
);

test("random mixes in random bursts: nothing lost, nothing run twice a round, every thread ends once", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("fifo", "rr", "prio"),
      fc.constantFrom("sampled" as const, "precise" as const),
      fc.integer({ min: 1, max: 8 }),
      fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.array(step, { maxLength: 8 }), { minLength: 1, maxLength: 8 }),
      fc.array(
        fc.record({ at: fc.integer({ min: 0, max: 60 }), who: fc.nat(), mid: fc.boolean() }),
        {
          maxLength: 4,
        },
      ),
      (policyName, accounting, sampleEvery, bursts, programs, kills) => {
        const clock = new Clock();
        const pending: { t: Thread; due: number }[] = [];
        const exits = new Map<Thread, number>();
        const policy = new CheckingPolicy(
          policyName === "fifo"
            ? new FifoPolicy()
            : policyName === "rr"
              ? new RoundRobinPolicy(2)
              : new PriorityPolicy(4, { aging: 3 }),
        );
        let turn = 0;
        const s = new Scheduler({
          policy,
          accounting,
          sampleEvery,
          now: clock.now,
          submit: (t) => pending.push({ t, due: turn + t.a1 }),
          onExit: (t) => exits.set(t, (exits.get(t) ?? 0) + 1),
        });
        const mutex = new Mutex();
        let holder: Thread | null = null;
        const ch = new Channel<number>(1);
        const received: number[] = [];
        /** Per thread: the resume (switch count) last checked, and its round. */
        const last = new Map<Thread, [number, number]>();
        /** Called after anything that may have yielded: checks each resume once. */
        const check = () => {
          const me = currentThread();
          assert.equal(me.state, "running");
          const seen = last.get(me);
          if (seen !== undefined && seen[0] === me.switches) return; // same resume
          if (policyName !== "rr" && seen !== undefined) {
            assert.notEqual(seen[1], me.ranRound, `thread ${me.tid} ran twice in a round`);
          }
          last.set(me, [me.switches, me.ranRound]);
        };
        const expected = (steps: Step[]): number => {
          let sum = 0;
          for (const o of steps) {
            if (o.k === "exit") return o.status;
            if (o.k === "throw") return -1;
            if (o.k === "syscall") sum += o.a * 2;
          }
          return sum;
        };
        const threads = programs.map((steps, i) =>
          s.spawn(
            function* (): ThreadBody {
              check();
              let sum = 0;
              for (const o of steps) {
                if (o.k === "yield") {
                  clock.ms += o.ms;
                  yield* yieldNow();
                } else if (o.k === "sleep") {
                  yield* sleep(o.ms);
                } else if (o.k === "syscall") {
                  const me = currentThread();
                  me.a0 = o.a;
                  me.a1 = o.delay;
                  sum += yield Y_SYSCALL;
                } else if (o.k === "locked") {
                  yield* mutex.lock();
                  check();
                  assert.ok(holder === null || holder.state === "exited", "mutual exclusion");
                  holder = currentThread();
                  clock.ms += o.ms;
                  yield* yieldNow();
                  check();
                  holder = null;
                  mutex.unlock();
                } else if (o.k === "send") {
                  yield* ch.send(i);
                } else if (o.k === "exit") {
                  yield* exit(o.status);
                } else {
                  throw new Error("planned");
                }
                check();
              }
              return sum;
            },
            { priority: i % 4 },
          ),
        );
        const consumer = s.spawn(function* (): ThreadBody {
          for (;;) {
            const v = yield* ch.recvOr(CLOSED);
            check();
            if (v === CLOSED) return 0;
            received.push(v);
          }
        });
        const killed = new Map<Thread, number>();
        let stops = 0;
        const killAt = (now: number, mid: boolean) => {
          for (const k of kills) {
            if (k.at !== now || k.mid !== mid) continue;
            const victim = threads[k.who % threads.length];
            if (s.kill(victim, -(100 + k.who))) killed.set(victim, -(100 + k.who));
          }
        };
        for (turn = 1; s.live > 0; turn++) {
          assert.ok(turn < 3000, "no progress");
          for (let i = 0; i < pending.length; ) {
            const p = pending[i];
            if (p.due <= turn) {
              pending.splice(i, 1);
              s.complete(p.t, p.t.a0 * 2);
            } else i++;
          }
          killAt(turn, false);
          if (!ch.closed && threads.every((t) => t.state === "exited")) ch.close();
          s.runRounds(bursts[turn % bursts.length], () => {
            killAt(++stops, true); // kills from the core between two rounds of a burst
            return false;
          });
          clock.ms += 1;
        }
        for (const t of [...threads, consumer]) {
          if (t.error instanceof assert.AssertionError) throw t.error;
          assert.equal(t.state, "exited");
          assert.equal(exits.get(t), 1, `onExit once for thread ${t.tid}`);
        }
        assert.equal(policy.held.size, 0);
        assert.equal(s.runnable, 0);
        assert.equal(s.sleeping, 0);
        threads.forEach((t, i) => {
          assert.equal(t.status, killed.get(t) ?? expected(programs[i]), `program ${i}`);
        });
        const sends = programs.reduce((n, p) => n + p.filter((o) => o.k === "send").length, 0);
        assert.ok(received.length <= sends);
        for (const v of received) assert.ok(v >= 0 && v < threads.length, `received ${v}`);
        assert.equal(s.stats().resumes, s.stats().totals.switches);
      },
    ),
    { numRuns: 300 },
  );
});
