/**
 * kv-concurrent: several cores on one store. Worker threads (more of them than this machine's
 * two cores, so a lock holder is preempted now and then), each with its own Malloc, KvStore
 * and engine over one SharedArrayBuffer-backed FlatMemory, run pipelined INCR, LPUSH, SADD,
 * HSET, ZADD and SET/DEL churn at the same time — taking the store lock per command, and per
 * pipelined batch as the KV server does. Afterwards every total is exact, every INCR
 * and LPUSH reply was handed out exactly once, the heap is sound, and the shared AOF log —
 * written by every worker in lock order — replays into a store equal to the live one.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { loadAof } from "../programs/kv/aof.js";
import { KvEngine, KvSession } from "../programs/kv/commands.js";
import { FlatMemory } from "../programs/kv/memory.js";
import { ArgvBuilder, RespWriter } from "../programs/kv/resp.js";
import { KvStore } from "../programs/kv/store.js";
import { Malloc } from "../src/libos/malloc.js";
import { dumpStore, makeEngine } from "./fixtures/kv-client.js";
import { type KvWorkerData, type KvWorkerReport, kArrived, kGo } from "./fixtures/kv-worker.js";

const HEAP = 48 * 1024 * 1024;

function run(engine: KvEngine, ...args: string[]): string {
  const out = new RespWriter();
  engine.execute(new KvSession(0), new ArgvBuilder(args), out);
  return Buffer.from(out.bytes()).toString("latin1");
}

async function runWorkers(workers: number, rounds: number, hold = false) {
  const mem = FlatMemory.create(HEAP, true);
  Malloc.init(mem, mem.base, { maxHeapBytes: HEAP });
  const malloc = new Malloc(mem, mem.base);
  const root = KvStore.create(mem, malloc);
  const engine = new KvEngine(new KvStore(mem, malloc, root));
  engine.setAppendOnly(true);
  const ctrl = new Int32Array(new SharedArrayBuffer(64));
  const done = Array.from({ length: workers }, (_, id) => {
    const data: KvWorkerData = {
      kind: "kv-worker",
      heap: mem.buffer as SharedArrayBuffer,
      ctrl: ctrl.buffer as SharedArrayBuffer,
      root,
      id,
      rounds,
      hold,
    };
    const w = new Worker(new URL("./fixtures/kv-worker.js", import.meta.url), { workerData: data });
    return new Promise<KvWorkerReport>((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", reject);
    });
  });
  while (Atomics.load(ctrl, kArrived) < workers) await new Promise((r) => setTimeout(r, 5)); // consume: arrivals
  Atomics.store(ctrl, kGo, 1); // publish: go
  Atomics.notify(ctrl, kGo); // wake: every worker
  const reports = await Promise.all(done);
  return { engine, malloc, reports };
}

async function everyTotalExact(hold: boolean): Promise<void> {
  const WORKERS = 3;
  const ROUNDS = 3000;
  const { engine, malloc, reports } = await runWorkers(WORKERS, ROUNDS, hold);
  for (const r of reports) assert.deepEqual(r.errors, []);
  // every core's deferred counts reached the root when it released the lock
  assert.equal(engine.store.stats().commands, WORKERS * ROUNDS * 7, "commands processed");
  const total = WORKERS * ROUNDS;
  assert.equal(run(engine, "GET", "counter"), `$${String(total).length}\r\n${total}\r\n`);
  assert.equal(run(engine, "LLEN", "list"), `:${total}\r\n`);
  assert.equal(run(engine, "ZCARD", "zset"), `:${total}\r\n`);
  assert.equal(run(engine, "SCARD", "shared"), ":500\r\n");
  for (let id = 0; id < WORKERS; id++)
    assert.equal(run(engine, "SCARD", `own${id}`), `:${ROUNDS}\r\n`);
  assert.equal(run(engine, "HLEN", "hash"), `:${WORKERS * 100}\r\n`);
  // each INCR and each LPUSH saw a different count: 1 … total, each exactly once
  for (const field of ["incr", "lpush"] as const) {
    const all = reports.flatMap((r) => r[field]).sort((a, b) => a - b);
    assert.equal(all.length, total);
    for (let i = 0; i < all.length; i++) assert.equal(all[i], i + 1, `${field} reply ${i + 1}`);
    for (const r of reports) {
      const mine = r[field];
      for (let i = 1; i < mine.length; i++)
        assert.ok(mine[i] > mine[i - 1], "one worker's replies only grow");
    }
  }
  assert.deepEqual(malloc.check(), []);
  assert.equal(engine.store.stats().clients, 0);
  // the shared log has every change in lock order: replaying it rebuilds the same store
  const log = new RespWriter();
  engine.drainAof(log);
  const copy = makeEngine(HEAP).engine;
  loadAof(copy, log.bytes());
  assert.deepEqual(dumpStore(copy), dumpStore(engine));
}

test("three workers on two cores run commands on one store at once: every total is exact", () =>
  everyTotalExact(false));

test("the same with the store lock held per pipelined batch (as the KV server runs)", () =>
  everyTotalExact(true));

test("a waiter sleeps on the lock word while another thread holds it; the unlock wakes it", async () => {
  const mem = FlatMemory.create(8 * 1024 * 1024, true);
  Malloc.init(mem, mem.base, { maxHeapBytes: 8 * 1024 * 1024 });
  const malloc = new Malloc(mem, mem.base);
  const root = KvStore.create(mem, malloc);
  const store = new KvStore(mem, malloc, root);
  const ctrl = new Int32Array(new SharedArrayBuffer(64));
  const data: KvWorkerData = {
    kind: "kv-worker",
    heap: mem.buffer as SharedArrayBuffer,
    ctrl: ctrl.buffer as SharedArrayBuffer,
    root,
    id: 0,
    rounds: 1,
  };
  const w = new Worker(new URL("./fixtures/kv-worker.js", import.meta.url), { workerData: data });
  let finished = false;
  const done = new Promise<KvWorkerReport>((resolve, reject) => {
    w.once("message", (r: KvWorkerReport) => {
      finished = true;
      resolve(r);
    });
    w.once("error", reject);
  });
  while (Atomics.load(ctrl, kArrived) < 1) await new Promise((r) => setTimeout(r, 5)); // consume: connected
  store.lock(); // this thread holds the store: the worker's first command must wait
  Atomics.store(ctrl, kGo, 1); // publish: go
  Atomics.notify(ctrl, kGo); // wake: the worker
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(finished, false, "no command ran while the lock was held");
  const before = store.stats();
  store.unlock(); // wakes the sleeper
  const report = await done;
  assert.deepEqual(report.errors, []);
  assert.deepEqual(report.incr, [1]);
  const after = new KvStore(mem, malloc, root);
  after.lock();
  const st = after.stats();
  after.unlock();
  assert.ok(st.lockContended > before.lockContended, "the worker's acquisition was contended");
  assert.ok(st.lockNaps > before.lockNaps, "it slept on the word rather than spinning");
  assert.equal(st.commands, 7);
});
