/**
 * sched-model: random mixes of green-thread operations (yield, sleep, syscalls completed some
 * rounds later, mutex sections, channel sends, spawn + join, throw, exit) and random kills from
 * the core, on a random policy and accounting mode (fast-check). After every run:
 *   - no thread is lost: every thread ever spawned has exited, onExit ran exactly once for it,
 *     and the scheduler holds nothing (live, runnable, sleeping all 0);
 *   - no thread is duplicated: a checking policy wrapper refuses a thread enqueued while it
 *     already holds it, or one that is not runnable, and a thread body asserts on every resume
 *     that it is the running thread and (except under round robin) that it did not already run
 *     in this round;
 *   - every thread ends with the status its program implies (or the status it was killed with);
 *   - mutual exclusion held in every mutex section; the channel delivered each value at most
 *     once, only values that were sent, and every value whose send completed.
 */

import assert, { AssertionError } from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  FifoPolicy,
  type Policy,
  PriorityPolicy,
  RoundRobinPolicy,
  type YieldVerdict,
} from "../src/core/policy.js";
import {
  currentThread,
  Scheduler,
  type Thread,
  type ThreadBody,
  Y_SYSCALL,
} from "../src/core/sched.js";
import {
  Channel,
  CLOSED,
  exit,
  join,
  Mutex,
  sleep,
  spawnThread,
  yieldNow,
} from "../src/core/sync.js";

/** Wraps a policy and checks the scheduler's use of it. */
class CheckingPolicy implements Policy {
  readonly held = new Set<Thread>();
  constructor(readonly inner: Policy) {}
  get name(): string {
    return `checked ${this.inner.name}`;
  }
  get size(): number {
    assert.equal(this.inner.size, this.held.size, "policy size agrees with what it holds");
    return this.inner.size;
  }
  enqueue(t: Thread): void {
    assert.ok(!this.held.has(t), `thread ${t.tid} enqueued twice`);
    assert.equal(t.state, "runnable", `thread ${t.tid} enqueued while ${t.state}`);
    this.held.add(t);
    this.inner.enqueue(t);
  }
  pick(): Thread | null {
    const t = this.inner.pick();
    if (t !== null) {
      assert.ok(this.held.delete(t), `picked thread ${t.tid} was not held`);
      assert.equal(t.state, "runnable");
    }
    return t;
  }
  afterYield(t: Thread, ranMs: number): YieldVerdict {
    return this.inner.afterYield(t, ranMs);
  }
  remove(t: Thread): void {
    assert.ok(this.held.delete(t), `removed thread ${t.tid} was not held`);
    this.inner.remove(t);
  }
}

type Inner =
  | { k: "yield" }
  | { k: "sleep"; ms: number }
  | { k: "syscall"; a: number; delay: number };
type Op =
  | Inner
  | { k: "lock"; m: number; body: Inner[] }
  | { k: "send" }
  | { k: "spawn"; n: number }
  | { k: "throw" }
  | { k: "exit"; status: number };

const inner: fc.Arbitrary<Inner> = fc.oneof(
  fc.constant({ k: "yield" as const }),
  fc.record({ k: fc.constant("sleep" as const), ms: fc.integer({ min: 0, max: 4 }) }),
  fc.record({
    k: fc.constant("syscall" as const),
    a: fc.integer({ min: 0, max: 1000 }),
    delay: fc.integer({ min: 0, max: 3 }),
  }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: inner, weight: 6 },
  {
    arbitrary: fc.record({
      k: fc.constant("lock" as const),
      m: fc.integer({ min: 0, max: 1 }),
      body: fc.array(inner, { maxLength: 3 }),
    }),
    weight: 3,
  },
  { arbitrary: fc.constant({ k: "send" as const }), weight: 3 },
  {
    arbitrary: fc.record({ k: fc.constant("spawn" as const), n: fc.integer({ min: 0, max: 3 }) }),
    weight: 1,
  },
  { arbitrary: fc.constant({ k: "throw" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant("exit" as const),
      status: fc.integer({ min: 0, max: 50 }),
    }),
    weight: 1,
  },
);

const scenario = fc.record({
  policy: fc.constantFrom("fifo", "rr", "prio", "prio-aging"),
  accounting: fc.constantFrom("precise" as const, "sampled" as const),
  sampleEvery: fc.integer({ min: 1, max: 8 }),
  capacity: fc.integer({ min: 0, max: 3 }),
  consumers: fc.integer({ min: 1, max: 2 }),
  programs: fc.array(
    fc.record({
      priority: fc.integer({ min: 0, max: 3 }),
      ops: fc.array(op, { maxLength: 10 }),
    }),
    { minLength: 1, maxLength: 10 },
  ),
  kills: fc.array(fc.record({ step: fc.integer({ min: 0, max: 40 }), who: fc.nat() }), {
    maxLength: 4,
  }),
});

function makePolicy(name: string): Policy {
  if (name === "fifo") return new FifoPolicy();
  if (name === "rr") return new RoundRobinPolicy(2);
  if (name === "prio") return new PriorityPolicy(4);
  return new PriorityPolicy(4, { aging: 3 });
}

function* sys(a: number, delay: number): Generator<number, number, number> {
  const t = currentThread();
  t.nr = 1;
  t.a0 = a;
  t.a1 = delay;
  return yield Y_SYSCALL;
}

test("random operation mixes never lose or duplicate a thread, and every thread ends", () => {
  fc.assert(
    fc.property(scenario, (sc) => {
      let clock = 0;
      let step = 0;
      const pending: { t: Thread; due: number }[] = [];
      const exits = new Map<number, number>();
      const spawnedAll: Thread[] = [];
      const policy = new CheckingPolicy(makePolicy(sc.policy));
      const sched = new Scheduler({
        policy,
        now: () => clock,
        accounting: sc.accounting,
        sampleEvery: sc.sampleEvery,
        submit: (t) => pending.push({ t, due: step + t.a1 }),
        onExit: (t) => exits.set(t.tid, (exits.get(t.tid) ?? 0) + 1),
      });
      const rr = sc.policy === "rr";
      const mutexes = [new Mutex(), new Mutex()];
      const holder: (Thread | null)[] = [null, null];
      const ch = new Channel<number>(sc.capacity);
      const attempted = new Set<number>();
      const completed = new Set<number>();
      const received: number[] = [];
      const lastResume = new Map<Thread, [number, number]>(); // switches, round seen

      /** Called in a body after anything that may have yielded: checks this resume. */
      const check = () => {
        const me = currentThread();
        assert.equal(me.state, "running");
        assert.equal(sched.current, me);
        const last = lastResume.get(me);
        if (last === undefined || last[0] !== me.switches) {
          if (!rr && last !== undefined) {
            assert.notEqual(last[1], step, `thread ${me.tid} resumed twice in one round`);
          }
          lastResume.set(me, [me.switches, step]);
        }
      };

      function* runInner(o: Inner): Generator<number, number, number> {
        if (o.k === "yield") yield* yieldNow();
        else if (o.k === "sleep") yield* sleep(o.ms);
        else return yield* sys(o.a, o.delay);
        return 0;
      }

      function* child(n: number): ThreadBody {
        check();
        for (let i = 0; i < n; i++) {
          yield* yieldNow();
          check();
        }
        return n;
      }

      function* program(ops: Op[], idx: number): ThreadBody {
        check();
        let sum = 0;
        for (let i = 0; i < ops.length; i++) {
          const o = ops[i];
          switch (o.k) {
            case "lock": {
              yield* mutexes[o.m].lock();
              check();
              const h = holder[o.m];
              assert.ok(h === null || h.state === "exited", "mutual exclusion");
              holder[o.m] = currentThread();
              for (const x of o.body) {
                sum += yield* runInner(x);
                check();
              }
              holder[o.m] = null;
              mutexes[o.m].unlock();
              break;
            }
            case "send": {
              const v = idx * 1000 + i;
              attempted.add(v);
              yield* ch.send(v);
              completed.add(v);
              break;
            }
            case "spawn": {
              const c = spawnThread(child(o.n));
              spawnedAll.push(c);
              sum += yield* join(c);
              break;
            }
            case "throw":
              throw new Error("planned");
            case "exit":
              yield* exit(o.status);
              break;
            default:
              sum += yield* runInner(o);
          }
          check();
        }
        return sum;
      }

      /** The status a program ends with if nothing kills it. */
      const expected = (ops: Op[]): number => {
        let sum = 0;
        const add = (x: Inner) => {
          if (x.k === "syscall") sum += 2 * x.a;
        };
        for (const o of ops) {
          if (o.k === "throw") return -1;
          if (o.k === "exit") return o.status;
          if (o.k === "lock") o.body.forEach(add);
          else if (o.k === "spawn") sum += o.n;
          else if (o.k !== "send") add(o);
        }
        return sum;
      };

      const producers = sc.programs.map((p, idx) =>
        sched.spawn(program(p.ops, idx), { priority: p.priority }),
      );
      spawnedAll.push(...producers);
      for (let c = 0; c < sc.consumers; c++) {
        spawnedAll.push(
          sched.spawn(function* (): ThreadBody {
            check();
            for (;;) {
              const v = yield* ch.recvOr(CLOSED);
              check();
              if (v === CLOSED) return 0;
              received.push(v);
            }
          }),
        );
      }

      const killedWith = new Map<Thread, number>();
      for (step = 1; sched.live > 0; step++) {
        assert.ok(step < 5000, "the machine stopped making progress");
        for (let i = 0; i < pending.length; ) {
          if (pending[i].due <= step) {
            const { t } = pending.splice(i, 1)[0];
            sched.complete(t, t.a0 * 2);
          } else i++;
        }
        for (const k of sc.kills) {
          if (k.step !== step) continue;
          const victim = producers[k.who % producers.length];
          if (sched.kill(victim, -(100 + (k.who % producers.length)))) {
            killedWith.set(victim, victim.status);
          }
        }
        if (!ch.closed && producers.every((t) => t.state === "exited")) ch.close();
        sched.runRound();
        clock += 1;
      }

      // A failed check inside a body killed only that thread: bring it out.
      for (const t of spawnedAll) if (t.error instanceof AssertionError) throw t.error;

      // Nothing lost, nothing left behind.
      for (const t of spawnedAll) {
        assert.equal(t.state, "exited");
        assert.equal(exits.get(t.tid), 1, `onExit once for thread ${t.tid}`);
      }
      assert.equal(exits.size, spawnedAll.length);
      assert.equal(policy.held.size, 0);
      assert.equal(sched.runnable, 0);
      assert.equal(sched.sleeping, 0);
      const st = sched.stats();
      assert.equal(st.spawned, spawnedAll.length);
      assert.equal(st.exited, spawnedAll.length);
      assert.equal(st.live, 0);

      // Statuses.
      sc.programs.forEach((p, idx) => {
        const t = producers[idx];
        const k = killedWith.get(t);
        assert.equal(t.status, k ?? expected(p.ops), `program ${idx}`);
      });

      // Channel: at most once, only what was sent, everything whose send completed.
      assert.equal(new Set(received).size, received.length, "no value delivered twice");
      for (const v of received) assert.ok(attempted.has(v), `received ${v} never sent`);
      for (const v of completed) assert.ok(received.includes(v), `sent ${v} never received`);
    }),
    { numRuns: 400 },
  );
});
