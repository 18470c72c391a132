/**
 * sched: the per-core green-thread scheduler of src/core/sched.ts and the policies of
 * src/core/policy.ts, single-threaded. The clock is a fake (`now: () => clock`) that the tests
 * and thread bodies advance by hand, so nothing depends on real timing: run times, slices, long
 * runs and sleeps are all exact.
 *
 * Syscalls go to a fake core: `submit` files the thread in a pending list and the driver
 * completes it a few rounds later with a value derived from its arguments.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { EFAULT } from "../src/abi/errno.js";
import {
  FifoPolicy,
  type Policy,
  PriorityPolicy,
  RingQueue,
  RoundRobinPolicy,
} from "../src/core/policy.js";
import {
  activeScheduler,
  currentThread,
  GreenThreadError,
  Scheduler,
  type SchedulerOptions,
  type Thread,
  type ThreadBody,
  Y_BLOCK,
  Y_SLEEP,
  Y_SYSCALL,
  Y_YIELD,
} from "../src/core/sched.js";
import { ExocoreError, InvalidArgumentError, PanicError, panic } from "../src/errors.js";

/** A fake core: a fake clock, and syscalls completed `delay` rounds after submission. */
class FakeCore {
  clock = 0;
  round = 0;
  readonly pending: { t: Thread; due: number }[] = [];
  readonly exits: Thread[] = [];
  readonly longRuns: [Thread, number][] = [];
  readonly sched: Scheduler;
  /** Rounds from submit to complete. */
  delay = 2;

  constructor(policy: Policy, opts: Partial<SchedulerOptions> = {}) {
    this.sched = new Scheduler({
      policy,
      now: () => this.clock,
      submit: (t) => this.pending.push({ t, due: this.round + this.delay }),
      onExit: (t) => this.exits.push(t),
      onLongRun: (t, ms) => this.longRuns.push([t, ms]),
      ...opts,
    });
  }

  /** One turn of the core loop: complete due syscalls, run a round. */
  step(): number {
    this.round++;
    for (let i = 0; i < this.pending.length; ) {
      const p = this.pending[i];
      if (p.due <= this.round) {
        this.pending.splice(i, 1);
        // The "domain" answers nr 1 with a0 * 2, anything else with -ENOSYS-like -38.
        this.sched.complete(p.t, p.t.nr === 1 ? p.t.a0 * 2 : -38);
      } else i++;
    }
    return this.sched.runRound();
  }

  /** Step until nothing is live (or fail after `max` steps); advances the clock 1 ms a step. */
  runToEnd(max = 100_000): void {
    for (let i = 0; i < max; i++) {
      if (this.sched.live === 0) return;
      this.step();
      this.clock += 1;
    }
    assert.fail(`threads still live after ${max} steps: ${this.sched.live}`);
  }
}

/** The syscall stub shape: stage nr and a0 in the running thread, yield Y_SYSCALL. */
function* syscall(nr: number, a0: number): Generator<number, number, number> {
  const t = currentThread();
  t.nr = nr;
  t.a0 = a0;
  return yield Y_SYSCALL;
}

/** A body that records `tag` in `log` and yields, `n` times. */
function* looper(log: string[], tag: string, n: number): ThreadBody {
  for (let i = 0; i < n; i++) {
    log.push(tag);
    yield Y_YIELD;
  }
  return 0;
}

test("FIFO: arrival order, a yield goes to the back, one resume per thread per round", () => {
  const core = new FakeCore(new FifoPolicy());
  const log: string[] = [];
  core.sched.spawn(looper(log, "A", 3));
  core.sched.spawn(looper(log, "B", 3));
  core.sched.spawn(looper(log, "C", 3));
  assert.equal(core.sched.runRound(), 3);
  assert.deepEqual(log, ["A", "B", "C"]);
  core.runToEnd();
  assert.deepEqual(log.join(""), "ABCABCABC");
});

test("FIFO: a lone thread that yields runs once per round, not forever", () => {
  const core = new FakeCore(new FifoPolicy());
  const log: string[] = [];
  core.sched.spawn(looper(log, "A", 5));
  assert.equal(core.sched.runRound(), 1);
  assert.equal(core.sched.runRound(), 1);
  assert.equal(log.length, 2);
  assert.equal(core.sched.runnable, 1);
});

test("RR: a thread keeps the core across yields until its slice is spent", () => {
  // Precise accounting: each resume is charged exactly what the body added to the clock.
  const core = new FakeCore(new RoundRobinPolicy(3), { accounting: "precise" });
  const log: string[] = [];
  function* worker(tag: string): ThreadBody {
    for (let i = 0; i < 6; i++) {
      log.push(tag);
      core.clock += 1; // 1 ms of "work" per step
      yield Y_YIELD;
    }
    return 0;
  }
  core.sched.spawn(worker("A"));
  core.sched.spawn(worker("B"));
  core.sched.runRound();
  assert.equal(log.join(""), "AAABBB");
  core.sched.runRound();
  assert.equal(log.join(""), "AAABBBAAABBB");
  core.runToEnd(); // each returns on its 7th resume
  assert.equal(log.length, 12);
});

test("RR: blocking gives up the rest of the slice", () => {
  const core = new FakeCore(new RoundRobinPolicy(10), { accounting: "precise" });
  const log: string[] = [];
  core.sched.spawn(function* (): ThreadBody {
    log.push("A1");
    core.clock += 1;
    yield Y_YIELD; // 1 ms of 10 used: continue
    log.push("A2");
    yield* syscall(1, 5); // leaves the core
    log.push("A3");
    return 0;
  });
  core.sched.spawn(looper(log, "B", 1));
  core.sched.runRound();
  assert.deepEqual(log, ["A1", "A2", "B"]);
});

test("priority: higher levels first, FIFO within a level, priority clamped to the levels", () => {
  const core = new FakeCore(new PriorityPolicy(3));
  const log: string[] = [];
  core.sched.spawn(looper(log, "low1", 1), { priority: 0 });
  core.sched.spawn(looper(log, "high1", 1), { priority: 2 });
  core.sched.spawn(looper(log, "mid", 1), { priority: 1 });
  core.sched.spawn(looper(log, "high2", 1), { priority: 99 });
  core.sched.spawn(looper(log, "low2", 1), { priority: -5 });
  core.sched.runRound();
  assert.deepEqual(log, ["high1", "high2", "mid", "low1", "low2"]);
});

test("priority with aging: a passed-over low level is served after `aging` picks", () => {
  const strict: string[] = [];
  const aged: string[] = [];
  for (const [policy, log] of [
    [new PriorityPolicy(2), strict],
    [new PriorityPolicy(2, { aging: 2 }), aged],
  ] as const) {
    const core = new FakeCore(policy);
    core.sched.spawn(looper(log, "L", 1), { priority: 0 });
    for (let i = 0; i < 5; i++) core.sched.spawn(looper(log, `H${i}`, 1), { priority: 1 });
    core.sched.runRound();
  }
  assert.deepEqual(strict, ["H0", "H1", "H2", "H3", "H4", "L"]);
  assert.deepEqual(aged, ["H0", "H1", "L", "H2", "H3", "H4"]);
});

test("policies reject bad settings with precise messages", () => {
  assert.throws(() => new RoundRobinPolicy(0), /sliceMs must be a positive finite number/);
  assert.throws(() => new PriorityPolicy(0), /levels must be an integer from 1 to 32, got 0/);
  assert.throws(() => new PriorityPolicy(40), InvalidArgumentError);
  assert.throws(() => new PriorityPolicy(4, { aging: -1 }), /aging must be an integer/);
});

test("scheduler options are checked", () => {
  const submit = () => {};
  const policy = new FifoPolicy();
  assert.throws(
    () => new Scheduler({ policy, submit, accounting: "exact" as "precise" }),
    /accounting must be one of precise, sampled, got "exact"/,
  );
  assert.throws(() => new Scheduler({ policy, submit, longRunMs: 0 }), /longRunMs must be/);
  assert.throws(() => new Scheduler({ policy, submit, sampleEvery: 0 }), /sampleEvery/);
  assert.throws(() => new Scheduler({ policy: {} as Policy, submit }), /policy must be a Policy/);
  const s = new Scheduler({ policy, submit });
  assert.throws(() => s.spawn(42 as unknown as ThreadBody), /body must be a generator/);
});

test("RingQueue: FIFO across growth and wrap, remove keeps order", () => {
  const q = new RingQueue<number>(2);
  const model: number[] = [];
  let next = 0;
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < (round % 7) + 1; i++) {
      q.push(next);
      model.push(next++);
    }
    for (let i = 0; i < (round % 5) + 1 && model.length > 0; i++) {
      assert.equal(q.shift(), model.shift());
    }
    if (round % 11 === 0 && model.length > 2) {
      const v = model[1];
      assert.ok(q.remove(v));
      model.splice(1, 1);
    }
    assert.equal(q.size, model.length);
    assert.equal(q.peek(), model[0]);
  }
  assert.equal(q.remove(-1), false);
});

test("1,000 green threads with mixed yields, sleeps and syscalls all finish with the right results", () => {
  for (const policy of [
    new FifoPolicy(),
    new RoundRobinPolicy(2),
    new PriorityPolicy(4, { aging: 8 }),
  ]) {
    for (const accounting of ["precise", "sampled"] as const) {
      const core = new FakeCore(policy, { accounting });
      const N = 1200;
      const threads: Thread[] = [];
      for (let i = 0; i < N; i++) {
        threads.push(
          core.sched.spawn(
            function* (): ThreadBody {
              let sum = 0;
              for (let j = 0; j < 6; j++) {
                const k = (i + j) % 4;
                if (k === 0)
                  sum += yield Y_YIELD; // 0
                else if (k === 1) {
                  const t = currentThread();
                  t.wakeAt = core.clock + ((i * 7 + j) % 5);
                  sum += yield Y_SLEEP; // 0
                } else sum += yield* syscall(1, i + j); // 2 (i + j)
              }
              return sum;
            },
            { priority: i % 4 },
          ),
        );
      }
      core.delay = 3;
      core.runToEnd();
      for (let i = 0; i < N; i++) {
        let want = 0;
        for (let j = 0; j < 6; j++) if ((i + j) % 4 >= 2) want += 2 * (i + j);
        assert.equal(threads[i].state, "exited");
        assert.equal(threads[i].status, want, `thread ${i} under ${policy.name}`);
      }
      assert.equal(core.exits.length, N);
      const st = core.sched.stats();
      assert.equal(st.spawned, N);
      assert.equal(st.exited, N);
      assert.equal(st.live, 0);
      assert.equal(st.threads.length, 0);
      assert.equal(
        st.totals.syscalls,
        threads.reduce((a, t) => a + t.syscalls, 0),
      );
      assert.equal(st.totals.switches, st.resumes);
      assert.ok(core.sched.idle());
    }
  }
});

test("a throwing thread dies alone: status, error recorded, neighbours finish", () => {
  const core = new FakeCore(new FifoPolicy());
  const log: string[] = [];
  const a = core.sched.spawn(looper(log, "A", 3));
  const bad = core.sched.spawn(function* (): ThreadBody {
    yield Y_YIELD;
    throw new Error("boom");
  });
  const coded = core.sched.spawn(function* (): ThreadBody {
    yield Y_YIELD;
    throw new ExocoreError("EXO_ERR_TEST", "bad pointer", EFAULT);
  });
  const b = core.sched.spawn(looper(log, "B", 3));
  core.runToEnd();
  assert.equal(bad.state, "exited");
  assert.equal(bad.status, -1);
  assert.match(String(bad.error), /boom/);
  assert.equal(coded.status, -EFAULT);
  assert.equal(a.status, 0);
  assert.equal(b.status, 0);
  assert.equal(log.join(""), "ABABAB");
});

test("a thread that throws before its first yield, or returns at once, is handled", () => {
  const core = new FakeCore(new FifoPolicy());
  const t1 = core.sched.spawn(function* (): ThreadBody {
    if (core.clock >= 0) throw new TypeError("early");
    yield Y_YIELD;
    return 0;
  });
  // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
  const t2 = core.sched.spawn(function* (): ThreadBody {
    return 7;
  });
  assert.equal(core.sched.runRound(), 2);
  assert.equal(t1.status, -1);
  assert.ok(t1.error instanceof TypeError);
  assert.equal(t2.status, 7);
  assert.equal(core.sched.live, 0);
});

test("a panic inside a green thread is not swallowed: it stops the core", () => {
  const core = new FakeCore(new FifoPolicy());
  const t = core.sched.spawn(function* (): ThreadBody {
    yield Y_YIELD;
    panic("libos: broken invariant");
  });
  core.sched.runRound();
  assert.throws(() => core.sched.runRound(), PanicError);
  assert.equal(t.state, "exited");
  assert.equal(activeScheduler(), null);
  assert.equal(core.sched.current, null);
});

test("a callback that throws mid-round strands no thread", () => {
  let fail = true;
  const s = new Scheduler({
    policy: new FifoPolicy(),
    submit: () => {
      if (fail) throw new Error("ring broke");
    },
  });
  const log: string[] = [];
  s.spawn(looper(log, "A", 3));
  s.spawn(function* (): ThreadBody {
    yield* syscall(1, 1);
    return 0;
  });
  s.spawn(looper(log, "C", 3));
  assert.throws(() => s.runRound(), /ring broke/);
  assert.equal(s.runnable, 2); // A (deferred when the round broke) and C (never picked)
  fail = false;
  for (let i = 0; i < 5; i++) s.runRound();
  assert.equal(log.join(""), "ACACAC");
});

test("a thread that yields a bad token is killed with EXO_ERR_BAD_TOKEN", () => {
  const core = new FakeCore(new FifoPolicy());
  const t = core.sched.spawn(function* (): ThreadBody {
    yield 42;
    return 0;
  });
  core.sched.runRound();
  assert.equal(t.state, "exited");
  assert.ok(t.error instanceof GreenThreadError);
  assert.equal((t.error as GreenThreadError).code, "EXO_ERR_BAD_TOKEN");
  assert.ok(t.status < 0);
});

test("syscalls: submit sees the staged call, complete resumes with the return value", () => {
  const seen: number[][] = [];
  const s = new Scheduler({
    policy: new FifoPolicy(),
    submit: (t) => seen.push([t.nr, t.a0, t.a1, t.a5, t.reqId]),
  });
  let got = 0;
  const t = s.spawn(function* (): ThreadBody {
    const me = currentThread();
    me.nr = 9;
    me.a0 = 1;
    me.a1 = 2;
    me.a5 = 6;
    got = yield Y_SYSCALL;
    return got;
  });
  s.runRound();
  assert.equal(t.state, "syscall");
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].slice(0, 4), [9, 1, 2, 6]);
  assert.ok(seen[0][4] > 0);
  assert.ok(s.idle());
  assert.equal(s.runRound(), 0);
  assert.equal(s.complete(t, 123), true);
  assert.equal(t.state, "runnable");
  s.runRound();
  assert.equal(t.status, 123);
  assert.equal(t.syscalls, 1);
});

test("a syscall completed inside submit (served locally) runs again next round, not twice", () => {
  let sched: Scheduler | null = null;
  const s = new Scheduler({
    policy: new FifoPolicy(),
    submit: (t) => sched?.complete(t, t.a0 + 1),
  });
  sched = s;
  const values: number[] = [];
  s.spawn(function* (): ThreadBody {
    for (let i = 0; i < 3; i++) values.push(yield* syscall(5, i * 10));
    return 0;
  });
  assert.equal(s.runRound(), 1);
  assert.deepEqual(values, []);
  assert.equal(s.runRound(), 1);
  assert.deepEqual(values, [1]);
  while (s.live > 0) s.runRound();
  assert.deepEqual(values, [1, 11, 21]);
});

test("complete and wake refuse a thread in the wrong state; a dead thread is ignored", () => {
  const core = new FakeCore(new FifoPolicy());
  const t = core.sched.spawn(looper([], "A", 2));
  assert.throws(
    () => core.sched.complete(t, 0),
    (e: unknown) => e instanceof GreenThreadError && e.code === "EXO_ERR_THREAD_STATE",
  );
  assert.throws(() => core.sched.wake(t, 0), /not blocked or sleeping/);
  core.sched.kill(t, 9);
  assert.equal(core.sched.complete(t, 0), false);
  assert.equal(core.sched.wake(t, 0), false);
  assert.equal(core.sched.kill(t, 1), false);
  assert.equal(t.status, 9);
});

test("sleepers wake in wakeAt order (FIFO on ties); nextWakeAt is the park timeout", () => {
  const core = new FakeCore(new FifoPolicy());
  const order: string[] = [];
  const sleeper = (tag: string, ms: number) =>
    core.sched.spawn(function* (): ThreadBody {
      currentThread().wakeAt = core.clock + ms;
      yield Y_SLEEP;
      order.push(tag);
      return 0;
    });
  sleeper("c30", 30);
  sleeper("a10", 10);
  sleeper("b20", 20);
  sleeper("a10bis", 10);
  sleeper("now", 0);
  assert.equal(core.sched.nextWakeAt(), Number.POSITIVE_INFINITY);
  core.sched.runRound();
  assert.equal(core.sched.sleeping, 5);
  assert.equal(core.sched.nextWakeAt(), 0);
  assert.ok(core.sched.idle());
  core.clock = 15;
  assert.equal(core.sched.tick(), 3);
  assert.equal(core.sched.nextWakeAt(), 20);
  core.sched.runRound();
  assert.deepEqual(order, ["now", "a10", "a10bis"]);
  core.clock = 100;
  core.sched.runRound(); // runRound ticks by itself
  assert.deepEqual(order, ["now", "a10", "a10bis", "b20", "c30"]);
  assert.equal(core.sched.nextWakeAt(), Number.POSITIVE_INFINITY);
});

test("kill: runnable, sleeping, blocked and in-syscall threads; joiners and onExit see it", () => {
  const core = new FakeCore(new PriorityPolicy(2));
  const runnable = core.sched.spawn(looper([], "R", 10), { priority: 1 });
  const sleeping = core.sched.spawn(function* (): ThreadBody {
    currentThread().wakeAt = 1e9;
    yield Y_SLEEP;
    return 0;
  });
  const blocked = core.sched.spawn(function* (): ThreadBody {
    yield Y_BLOCK;
    return 0;
  });
  const insys = core.sched.spawn(function* (): ThreadBody {
    yield* syscall(1, 1);
    return 0;
  });
  core.sched.runRound();
  assert.equal(runnable.state, "runnable");
  assert.equal(sleeping.state, "sleeping");
  assert.equal(blocked.state, "blocked");
  assert.equal(insys.state, "syscall");
  for (const [t, st] of [
    [runnable, 11],
    [sleeping, 12],
    [blocked, 13],
    [insys, 14],
  ] as const) {
    assert.equal(core.sched.kill(t, st), true);
    assert.equal(t.state, "exited");
    assert.equal(t.status, st);
  }
  assert.equal(core.sched.runnable, 0);
  assert.equal(core.sched.sleeping, 0);
  assert.equal(core.sched.live, 0);
  assert.deepEqual(
    core.exits.map((t) => t.status),
    [11, 12, 13, 14],
  );
  core.step();
  core.step();
  core.step(); // the syscall's late completion is ignored
  assert.equal(core.pending.length, 0);
});

test("kill of a thread deferred in the running round, and a thread killing itself", () => {
  const core = new FakeCore(new FifoPolicy());
  const log: string[] = [];
  const victim = core.sched.spawn(looper(log, "V", 10));
  core.sched.spawn(function* (): ThreadBody {
    log.push("K");
    core.sched.kill(victim, 5); // victim already ran this round: it sits in the deferred queue
    core.sched.kill(currentThread(), 6); // takes effect when this resume returns
    log.push("after");
    yield Y_YIELD;
    log.push("never");
    return 0;
  });
  core.sched.runRound();
  assert.deepEqual(log, ["V", "K", "after"]);
  assert.equal(victim.status, 5);
  assert.equal(core.sched.live, 0);
  assert.equal(core.sched.runnable, 0);
  assert.equal(core.exits.length, 2);
  assert.equal(core.exits[1].status, 6);
});

test("long runs are reported: precise per resume; sampled at once for a lone resume", () => {
  for (const accounting of ["precise", "sampled"] as const) {
    const core = new FakeCore(new FifoPolicy(), { accounting, longRunMs: 50 });
    const hog = core.sched.spawn(function* (): ThreadBody {
      core.clock += 10;
      yield Y_YIELD;
      core.clock += 80; // runs 80 ms without yielding
      yield Y_YIELD;
      return 0;
    });
    core.sched.runRound();
    assert.equal(core.longRuns.length, 0);
    core.sched.runRound();
    assert.equal(core.longRuns.length, 1, accounting);
    assert.equal(core.longRuns[0][0], hog);
    assert.equal(core.longRuns[0][1], 80);
    assert.equal(hog.longRuns, 1);
    assert.equal(hog.maxSliceNs, 80e6);
  }
});

test("sampled: a long window of many resumes switches to precise and names the hog next time", () => {
  const core = new FakeCore(new FifoPolicy(), { accounting: "sampled", longRunMs: 50 });
  const hog = { n: 0 };
  const quiet: Thread[] = [];
  for (let i = 0; i < 3; i++) quiet.push(core.sched.spawn(looper([], `q${i}`, 20)));
  const h = core.sched.spawn(function* (): ThreadBody {
    for (let i = 0; i < 5; i++) {
      core.clock += 80;
      hog.n++;
      yield Y_YIELD;
    }
    return 0;
  });
  core.sched.runRound(); // one window of 4 resumes, 80 ms: cannot say whose
  assert.equal(core.longRuns.length, 0);
  core.sched.runRound(); // precise now
  assert.equal(core.longRuns.length, 1);
  assert.equal(core.longRuns[0][0], h);
  assert.ok(quiet.every((t) => t.longRuns === 0));
});

test("accounting: precise charges each resume its own time; stats add up", () => {
  const core = new FakeCore(new FifoPolicy(), { accounting: "precise" });
  const a = core.sched.spawn(function* (): ThreadBody {
    for (let i = 0; i < 3; i++) {
      core.clock += 2;
      yield Y_YIELD;
    }
    return 0;
  });
  const b = core.sched.spawn(function* (): ThreadBody {
    core.clock += 5;
    yield* syscall(1, 0);
    return 0;
  });
  core.sched.runRound();
  const mid = core.sched.stats();
  assert.equal(mid.live, 2);
  assert.equal(mid.syscall, 1);
  assert.equal(mid.runnable, 1);
  const sa = mid.threads.find((t) => t.tid === a.tid);
  assert.equal(sa?.runNs, 2e6);
  assert.equal(sa?.switches, 1);
  core.runToEnd();
  assert.equal(a.runNs, 6e6);
  assert.equal(a.switches, 4);
  assert.equal(b.runNs, 5e6);
  assert.equal(b.syscalls, 1);
  const st = core.sched.stats();
  assert.equal(st.totals.runNs, 11e6);
  assert.equal(st.totals.switches, a.switches + b.switches);
  assert.equal(st.totals.syscalls, 1);
  assert.equal(st.policy, "fifo");
  assert.equal(st.accounting, "precise");
});

test("accounting: sampled apportions each window's time over its resumes", () => {
  const core = new FakeCore(new FifoPolicy(), { accounting: "sampled", sampleEvery: 4 });
  const threads: Thread[] = [];
  for (let i = 0; i < 4; i++) {
    threads.push(
      core.sched.spawn(function* (): ThreadBody {
        core.clock += i === 0 ? 8 : 0; // the window holds 8 ms; each of 4 resumes gets 2
        yield Y_YIELD;
        return 0;
      }),
    );
  }
  core.sched.runRound();
  for (const t of threads) assert.equal(t.runNs, 2e6);
  core.runToEnd(); // the clock moves 1 ms between rounds: time outside rounds is not charged
  assert.equal(core.sched.stats().totals.runNs, 8e6);
});

test("current and the active scheduler are set only while a thread runs", () => {
  const s = new Scheduler({ policy: new FifoPolicy(), submit: () => {} });
  let inside: Thread | null = null;
  const t = s.spawn(function* (): ThreadBody {
    inside = s.current;
    assert.equal(activeScheduler(), s);
    assert.equal(currentThread(), inside);
    yield Y_YIELD;
    return 0;
  });
  assert.equal(s.current, null);
  assert.throws(
    () => currentThread(),
    (e: unknown) => e instanceof GreenThreadError && e.code === "EXO_ERR_NOT_GREEN_THREAD",
  );
  s.runRound();
  assert.equal(inside, t);
  assert.equal(t.error, undefined); // the asserts inside the body held
  assert.equal(s.current, null);
  assert.equal(activeScheduler(), null);
});

test("runRound from inside a green thread is refused (that thread dies)", () => {
  const s = new Scheduler({ policy: new FifoPolicy(), submit: () => {} });
  // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
  const t = s.spawn(function* (): ThreadBody {
    s.runRound();
    return 0;
  });
  s.runRound();
  assert.equal((t.error as GreenThreadError).code, "EXO_ERR_SCHED_REENTRY");
});

test("setPolicy moves the runnable threads over, in order, even mid-round", () => {
  const core = new FakeCore(new FifoPolicy());
  const log: string[] = [];
  for (const tag of ["A", "B", "C"]) core.sched.spawn(looper(log, tag, 3), { priority: 0 });
  core.sched.spawn(looper(log, "H", 3), { priority: 1 });
  core.sched.runRound();
  assert.equal(log.join(""), "ABCH");
  core.sched.setPolicy(new PriorityPolicy(2));
  assert.equal(core.sched.policy.name, "prio(2)");
  assert.equal(core.sched.runnable, 4);
  core.sched.runRound();
  assert.equal(log.join(""), "ABCHHABC");
});

test("spawn: tids unique, options kept, pid inherited from the spawning thread", () => {
  let next = 100;
  const s = new Scheduler({
    policy: new FifoPolicy(),
    submit: () => {},
    allocTid: () => next++,
    coreId: 1,
  });
  const parent = s.spawn(
    // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
    function* (): ThreadBody {
      const child = s.spawn(looper([], "c", 1));
      return child.pid;
    },
    { pid: 7, name: "main", affinity: 1 },
  );
  assert.equal(parent.tid, 100);
  assert.equal(parent.name, "main");
  assert.equal(parent.affinity, 1);
  assert.equal(parent.scheduler, s);
  s.runRound();
  assert.equal(parent.status, 7);
  assert.equal(s.thread(101)?.pid, 7);
  assert.throws(() => s.spawn(looper([], "x", 1), { tid: 101 }), /tid 101 is already live/);
  const other = new Scheduler({ policy: new FifoPolicy(), submit: () => {}, coreId: 0 });
  assert.throws(
    () => other.kill(s.thread(101) as Thread, 0),
    (e: unknown) => e instanceof GreenThreadError && e.code === "EXO_ERR_FOREIGN_THREAD",
  );
  assert.equal(s.stats().coreId, 1);
});
