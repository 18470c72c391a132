/**
 * sync: the green-thread primitives of src/core/sync.ts (sleep, yieldNow, join, exit,
 * spawnThread, Mutex, CondVar, Channel) on one Scheduler with a fake clock. Nothing here
 * depends on real time: the driver advances the clock by hand between rounds.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { FifoPolicy, type Policy, RoundRobinPolicy } from "../src/core/policy.js";
import { GreenThreadError, Scheduler, type Thread, type ThreadBody } from "../src/core/sched.js";
import {
  Channel,
  ChannelClosedError,
  CLOSED,
  CondVar,
  exit,
  join,
  Mutex,
  self,
  sleep,
  spawnThread,
  yieldNow,
} from "../src/core/sync.js";

/** A scheduler on a fake clock, and a driver that runs rounds until nothing is live. */
function machine(policy: Policy = new FifoPolicy()) {
  const m = {
    clock: 0,
    sched: null as unknown as Scheduler,
    /** Run rounds (clock +1 ms each) until nothing is live or nothing can progress. */
    run(max = 10_000): void {
      for (let i = 0; i < max; i++) {
        if (m.sched.live === 0) return;
        if (m.sched.idle() && m.sched.sleeping === 0) return; // all blocked: the test checks
        m.sched.runRound();
        m.clock += 1;
      }
      assert.fail("still running after max rounds");
    },
  };
  m.sched = new Scheduler({ policy, submit: () => {}, now: () => m.clock });
  return m;
}

/** The code a thread died of (GreenThreadError), or "" if it did not die of one. */
function codeOf(t: Thread): string {
  return t.error instanceof GreenThreadError ? t.error.code : "";
}

test("mutex: mutual exclusion across yields, every increment kept", () => {
  for (const policy of [new FifoPolicy(), new RoundRobinPolicy(5)]) {
    const m = machine(policy);
    const mu = new Mutex();
    let inside = 0;
    let maxInside = 0;
    let counter = 0;
    for (let i = 0; i < 50; i++) {
      m.sched.spawn(function* (): ThreadBody {
        for (let j = 0; j < 20; j++) {
          yield* mu.lock();
          inside++;
          maxInside = Math.max(maxInside, inside);
          const v = counter;
          yield* yieldNow(); // others run while we hold the mutex
          counter = v + 1;
          inside--;
          mu.unlock();
          if (j % 3 === 0) yield* yieldNow();
        }
        return 0;
      });
    }
    m.run();
    assert.equal(m.sched.live, 0);
    assert.equal(maxInside, 1);
    assert.equal(counter, 50 * 20);
    assert.equal(mu.owner, null);
  }
});

test("mutex: FIFO handoff — waiters get it in arrival order, no barging by the unlocker", () => {
  const m = machine();
  const mu = new Mutex();
  const order: string[] = [];
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("A");
    yield* yieldNow(); // B, C, D queue up meanwhile
    mu.unlock();
    // Relock at once: must queue behind B, C, D although the mutex "looks" free to barge.
    yield* mu.lock();
    order.push("A again");
    mu.unlock();
    return 0;
  });
  for (const tag of ["B", "C", "D"]) {
    m.sched.spawn(function* (): ThreadBody {
      yield* mu.lock();
      order.push(tag);
      mu.unlock();
      return 0;
    });
  }
  m.run();
  assert.deepEqual(order, ["A", "B", "C", "D", "A again"]);
});

test("mutex: tryLock never waits", () => {
  const m = machine();
  const mu = new Mutex();
  const got: boolean[] = [];
  m.sched.spawn(function* (): ThreadBody {
    got.push(mu.tryLock());
    yield* yieldNow();
    mu.unlock();
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    got.push(mu.tryLock());
    yield* yieldNow();
    got.push(mu.tryLock());
    mu.unlock();
    return 0;
  });
  m.run();
  assert.deepEqual(got, [true, false, true]);
});

test("mutex misuse kills only the offending thread with a clear code", () => {
  const m = machine();
  const mu = new Mutex();
  const owner = m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    yield* yieldNow();
    yield* yieldNow();
    mu.unlock();
    return 1;
  });
  // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
  const thief = m.sched.spawn(function* (): ThreadBody {
    mu.unlock();
    return 0;
  });
  const relock = m.sched.spawn(function* (): ThreadBody {
    const other = new Mutex();
    yield* other.lock();
    yield* other.lock();
    return 0;
  });
  const doubleUnlock = m.sched.spawn(function* (): ThreadBody {
    const other = new Mutex();
    yield* other.lock();
    other.unlock();
    other.unlock();
    return 0;
  });
  m.run();
  assert.equal(owner.status, 1);
  assert.equal(codeOf(thief), "EXO_ERR_MUTEX_NOT_OWNER");
  assert.equal(codeOf(relock), "EXO_ERR_MUTEX_RELOCK");
  assert.equal(codeOf(doubleUnlock), "EXO_ERR_MUTEX_NOT_LOCKED");
  assert.ok(thief.status < 0);
  assert.throws(
    () => mu.unlock(),
    (e: unknown) => e instanceof GreenThreadError && e.code === "EXO_ERR_NOT_GREEN_THREAD",
  );
});

test("mutex is robust: an owner that dies (killed, exit, throw) hands it to the next waiter", () => {
  const m = machine();
  const mu = new Mutex();
  const order: string[] = [];
  const victim = m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("victim");
    yield* sleep(1000);
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("exiter");
    yield* exit(3); // dies holding it
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("thrower");
    throw new Error("dies holding it");
  });
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("last");
    mu.unlock();
    return 0;
  });
  m.sched.runRound();
  m.sched.kill(victim, 9);
  m.run();
  assert.deepEqual(order, ["victim", "exiter", "thrower", "last"]);
  assert.equal(m.sched.live, 0);
  assert.equal(mu.owner, null);
});

test("mutex: a waiter killed while queued is skipped", () => {
  const m = machine();
  const mu = new Mutex();
  const order: string[] = [];
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    yield* yieldNow();
    mu.unlock();
    return 0;
  });
  const doomed = m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("doomed");
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    yield* mu.lock();
    order.push("survivor");
    mu.unlock();
    return 0;
  });
  m.sched.runRound();
  assert.equal(doomed.state, "blocked");
  m.sched.kill(doomed, 1);
  m.run();
  assert.deepEqual(order, ["survivor"]);
});

test("condvar: signal wakes one waiter in FIFO order, broadcast wakes all", () => {
  const m = machine();
  const mu = new Mutex();
  const cv = new CondVar();
  let ready = 0;
  const woke: string[] = [];
  for (const tag of ["w1", "w2", "w3", "w4"]) {
    m.sched.spawn(function* (): ThreadBody {
      yield* mu.lock();
      while (ready === 0) yield* cv.wait(mu);
      ready--;
      woke.push(tag);
      mu.unlock();
      return 0;
    });
  }
  let signalled = -1;
  let broadcasted = -1;
  m.sched.spawn(function* (): ThreadBody {
    yield* yieldNow(); // let every waiter wait
    yield* mu.lock();
    ready = 1;
    signalled = cv.signal() ? 1 : 0;
    mu.unlock();
    for (let i = 0; i < 3; i++) yield* yieldNow();
    yield* mu.lock();
    ready = 3;
    broadcasted = cv.broadcast();
    mu.unlock();
    return 0;
  });
  m.run();
  assert.equal(signalled, 1);
  assert.equal(broadcasted, 3);
  assert.deepEqual(woke, ["w1", "w2", "w3", "w4"]);
  assert.equal(m.sched.live, 0);
});

test("condvar: signal with no waiter is a no-op; wait without the mutex is refused", () => {
  const m = machine();
  const cv = new CondVar();
  assert.equal(cv.signal(), false);
  assert.equal(cv.broadcast(), 0);
  const t = m.sched.spawn(function* (): ThreadBody {
    yield* cv.wait(new Mutex());
    return 0;
  });
  m.run();
  assert.equal(codeOf(t), "EXO_ERR_MUTEX_NOT_OWNER");
});

test("channel: FIFO order from one sender, every value once across many senders/receivers", () => {
  for (const capacity of [0, 1, 4, 64]) {
    const m = machine();
    const ch = new Channel<number>(capacity);
    const got: number[] = [];
    m.sched.spawn(function* (): ThreadBody {
      for (let i = 0; i < 100; i++) yield* ch.send(i);
      return 0;
    });
    m.sched.spawn(function* (): ThreadBody {
      for (let i = 0; i < 100; i++) got.push(yield* ch.recv());
      return 0;
    });
    m.run();
    assert.deepEqual(
      got,
      Array.from({ length: 100 }, (_, i) => i),
      `capacity ${capacity}`,
    );

    const m2 = machine();
    const ch2 = new Channel<number>(capacity);
    const received: number[] = [];
    const perConsumer: number[][] = [[], [], []];
    const senders: Thread[] = [];
    for (let p = 0; p < 5; p++) {
      senders.push(
        m2.sched.spawn(function* (): ThreadBody {
          for (let i = 0; i < 40; i++) {
            yield* ch2.send(p * 1000 + i);
            if (i % 7 === p) yield* yieldNow();
          }
          return 0;
        }),
      );
    }
    for (let c = 0; c < 3; c++) {
      m2.sched.spawn(function* (): ThreadBody {
        for (let v = yield* ch2.recvOr(CLOSED); v !== CLOSED; v = yield* ch2.recvOr(CLOSED)) {
          received.push(v);
          perConsumer[c].push(v);
        }
        return 0;
      });
    }
    m2.sched.spawn(function* (): ThreadBody {
      for (const s of senders) yield* join(s);
      ch2.close();
      return 0;
    });
    m2.run();
    assert.equal(m2.sched.live, 0);
    assert.equal(received.length, 200);
    assert.deepEqual(
      [...received].sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, k) => Math.floor(k / 40) * 1000 + (k % 40)),
    );
    // Values are handed out in channel order, so each consumer sees each sender's values in
    // order (the merged `received` need not: a woken consumer records after one that ran first).
    for (const seen of perConsumer) {
      for (let p = 0; p < 5; p++) {
        const mine = seen.filter((v) => Math.floor(v / 1000) === p);
        assert.deepEqual(
          mine,
          [...mine].sort((a, b) => a - b),
          "per-sender order kept",
        );
      }
    }
  }
});

test("channel back-pressure: a full channel blocks the sender until a receiver takes", () => {
  const m = machine();
  const ch = new Channel<string>(2);
  let sent = 0;
  const sender = m.sched.spawn(function* (): ThreadBody {
    for (const v of ["a", "b", "c", "d"]) {
      yield* ch.send(v);
      sent++;
    }
    return 0;
  });
  m.sched.runRound();
  m.sched.runRound();
  assert.equal(sent, 2);
  assert.equal(ch.length, 2);
  assert.equal(sender.state, "blocked");
  assert.equal(ch.trySend("x"), false);
  const got: string[] = [];
  m.sched.spawn(function* (): ThreadBody {
    got.push(yield* ch.recv());
    return 0;
  });
  // The receiver takes "a"; "c" moves from the blocked sender into the buffer and the sender is
  // woken; it runs later in the same round and blocks again on "d".
  m.sched.runRound();
  assert.deepEqual(got, ["a"]);
  assert.equal(ch.length, 2);
  assert.equal(sent, 3);
  assert.equal(sender.state, "blocked");
});

test("channel capacity 0 is a rendezvous: send waits for a receiver", () => {
  const m = machine();
  const ch = new Channel<number>(0);
  const events: string[] = [];
  m.sched.spawn(function* (): ThreadBody {
    events.push("send start");
    yield* ch.send(42);
    events.push("send done");
    return 0;
  });
  for (let i = 0; i < 3; i++) m.sched.runRound();
  assert.deepEqual(events, ["send start"]);
  assert.equal(ch.trySend(1), false);
  m.sched.spawn(function* (): ThreadBody {
    events.push(`recv ${yield* ch.recv()}`);
    return 0;
  });
  m.run();
  assert.deepEqual(events, ["send start", "recv 42", "send done"]);
});

test("channel close: buffered values drain, then recv throws and recvOr returns the default", () => {
  const m = machine();
  const ch = new Channel<number>(4);
  const got: (number | symbol)[] = [];
  let recvErr: unknown;
  let sendErr: unknown;
  m.sched.spawn(function* (): ThreadBody {
    yield* ch.send(1);
    yield* ch.send(2);
    ch.close();
    try {
      yield* ch.send(3);
    } catch (e) {
      sendErr = e;
    }
    return 0;
  });
  const closer = m.sched.spawn(function* (): ThreadBody {
    yield* yieldNow();
    ch.close(); // second close
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    got.push(yield* ch.recv());
    got.push(yield* ch.recvOr(CLOSED));
    got.push(yield* ch.recvOr(CLOSED));
    try {
      yield* ch.recv();
    } catch (e) {
      recvErr = e;
    }
    return 0;
  });
  m.run();
  assert.deepEqual(got, [1, 2, CLOSED]);
  assert.ok(recvErr instanceof ChannelClosedError);
  assert.equal(recvErr.code, "EXO_ERR_CHANNEL_CLOSED");
  assert.ok(sendErr instanceof ChannelClosedError);
  assert.equal(codeOf(closer), "EXO_ERR_CHANNEL_CLOSED");
  assert.ok(ch.closed);
});

test("channel close wakes blocked receivers (closed) and blocked senders (error)", () => {
  const m = machine();
  const empty = new Channel<number>(0);
  const full = new Channel<number>(1);
  const results: string[] = [];
  m.sched.spawn(function* (): ThreadBody {
    const v = yield* empty.recvOr(-1);
    results.push(`recv ${v}`);
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    yield* full.send(1);
    try {
      yield* full.send(2);
    } catch (e) {
      results.push(e instanceof ChannelClosedError ? "send closed" : "other");
    }
    return 0;
  });
  m.sched.runRound();
  assert.equal(m.sched.idle(), true);
  // Close from outside any green thread (the core's own code): waiters are woken all the same.
  empty.close();
  full.close();
  m.run();
  assert.deepEqual(results.sort(), ["recv -1", "send closed"]);
  assert.equal(full.length, 1); // the buffered value stays receivable
});

test("channel: a receiver killed while waiting is skipped; a killed sender's value is dropped", () => {
  const m = machine();
  const ch = new Channel<number>(0);
  const deadRecv = m.sched.spawn(function* (): ThreadBody {
    yield* ch.recv();
    return 0;
  });
  m.sched.runRound();
  m.sched.kill(deadRecv, 1);
  const got: number[] = [];
  const deadSend = m.sched.spawn(function* (): ThreadBody {
    yield* ch.send(99);
    return 0;
  });
  m.sched.runRound();
  assert.equal(deadSend.state, "blocked"); // the dead receiver was skipped
  m.sched.kill(deadSend, 1);
  m.sched.spawn(function* (): ThreadBody {
    yield* ch.send(7);
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    got.push(yield* ch.recv());
    return 0;
  });
  m.run();
  assert.deepEqual(got, [7]);
  assert.throws(() => new Channel(-1), /capacity must be an integer of 0 or more, got -1/);
});

test("join returns the exit status; joining an exited thread returns at once; self-join refused", () => {
  const m = machine();
  const results: number[] = [];
  const worker = m.sched.spawn(function* (): ThreadBody {
    yield* sleep(5);
    return 17;
  });
  // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
  const quick = m.sched.spawn(function* (): ThreadBody {
    return 4;
  });
  const killed = m.sched.spawn(function* (): ThreadBody {
    yield* sleep(1000);
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    results.push(yield* join(worker));
    results.push(yield* join(quick));
    results.push(yield* join(killed));
    return 0;
  });
  m.sched.spawn(function* (): ThreadBody {
    results.push(yield* join(worker)); // two joiners on one thread
    return 0;
  });
  const selfJoin = m.sched.spawn(function* (): ThreadBody {
    return yield* join(self());
  });
  m.sched.runRound();
  m.sched.kill(killed, -99);
  m.run();
  // The first joiner goes on through its other joins (already exited) in the same resume.
  assert.deepEqual(results, [17, 4, -99, 17]);
  assert.equal(codeOf(selfJoin), "EXO_ERR_JOIN_SELF");
});

test("sleep: threads wake in deadline order; sleep(0) waits for the next round", () => {
  const m = machine();
  const order: number[] = [];
  for (const ms of [30, 5, 20, 0, 10, 5]) {
    m.sched.spawn(function* (): ThreadBody {
      yield* sleep(ms);
      order.push(ms);
      return 0;
    });
  }
  m.sched.runRound();
  assert.deepEqual(order, []);
  assert.equal(m.sched.nextWakeAt(), 0);
  m.run();
  assert.deepEqual(order, [0, 5, 5, 10, 20, 30]);
});

test("spawnThread starts a thread on the current core, inheriting pid and priority", () => {
  const m = machine();
  let child: Thread | null = null;
  m.sched.spawn(
    function* (): ThreadBody {
      child = spawnThread(function* (): ThreadBody {
        yield* yieldNow();
        return self().pid * 10;
      });
      return yield* join(child);
    },
    { pid: 3, priority: 2 },
  );
  m.run();
  const c = child as unknown as Thread;
  assert.equal(c.pid, 3);
  assert.equal(c.priority, 2);
  assert.equal(c.status, 30);
  assert.throws(
    () =>
      // biome-ignore lint/correctness/useYield: a thread that ends before its first yield
      spawnThread(function* (): ThreadBody {
        return 0;
      }),
    GreenThreadError,
  );
});

test("exit ends the thread at once with its status; finally blocks do not run", () => {
  const m = machine();
  const log: string[] = [];
  const t = m.sched.spawn(function* (): ThreadBody {
    try {
      log.push("before");
      yield* exit(12);
      log.push("after");
    } finally {
      log.push("finally");
    }
    return 0;
  });
  m.run();
  assert.equal(t.status, 12);
  assert.deepEqual(log, ["before"]);
});
