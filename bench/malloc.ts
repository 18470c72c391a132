/**
 * malloc: a micro-benchmark of the libOS allocator (src/libos/malloc.ts). Run it with
 * `node dist/bench/malloc.js [--quick]` after a build.
 *
 * Measures nanoseconds per malloc+free pair of small sizes (and one large size) in four
 * settings, side by side in one run:
 *   lock-free   one thread, `locking: false`, plain Int32Array memory: the allocator alone
 *   locked      one thread, the heap lock taken and released around each call, plain memory
 *   shared      one thread, the lock, and every access an Atomics op on a SharedArrayBuffer
 *               (what a heap shared by the cores of a process costs with no contention)
 *   contended   as shared, while 1 (or 2) background worker threads run malloc+free pairs on
 *               the same heap without pause: the lock bounces between threads
 * Each tinybench sample is a batch of BATCH pairs (one pair is shorter than the timer's
 * resolution); the figure is the mean of the samples / BATCH. The memory is an ArrayHeapMemory,
 * so these figures are the allocator's own cost: over the MMU each access is also a translation.
 *
 * Thread layout (printed): the main thread measures; background workers only add contention.
 * This machine has 2 cores: "contended ×1" is 2 busy threads on 2 cores, "contended ×2" is 3
 * busy threads on 2 cores, where a lock holder is sometimes preempted and the waiters nap.
 */

import os from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { Bench } from "tinybench";
import { ArrayHeapMemory, Malloc } from "../src/libos/malloc.js";

const BASE = 0x2000_0000;
const HEAP_BYTES = 64 * 1024 * 1024;
const BATCH = 1000;
const SIZES = [16, 64, 256, 1024, 16384] as const;

interface BgData {
  readonly kind: "malloc-bench-bg";
  readonly heap: SharedArrayBuffer;
  readonly ctrl: SharedArrayBuffer;
  readonly size: number;
}
/** Control words: 0 stop (main), 1 + i pairs done by background worker i. */
const kStop = 0;

function background(d: BgData, index: number): void {
  const ctrl = new Int32Array(d.ctrl);
  const m = new Malloc(new ArrayHeapMemory(new Int32Array(d.heap), BASE, { atomic: true }), BASE);
  Atomics.add(ctrl, 1 + index, 0); // publish: started
  parentPort?.postMessage("ready");
  let pairs = 0;
  while (Atomics.load(ctrl, kStop) === 0) {
    // load: stop flag
    for (let i = 0; i < 100; i++) m.free(m.malloc(d.size));
    pairs += 100;
  }
  Atomics.store(ctrl, 1 + index, pairs); // publish: pairs done
}

const bg = workerData as (BgData & { index: number }) | null;
if (!isMainThread && bg?.kind === "malloc-bench-bg") background(bg, bg.index);

interface Row {
  readonly setting: string;
  readonly threads: number;
  readonly size: number;
  readonly ns: number;
  readonly rme: number;
}

function heapOf(shared: boolean): { sab: SharedArrayBuffer | null; mem: ArrayHeapMemory } {
  const i32 = ArrayHeapMemory.create(HEAP_BYTES, shared);
  const mem = new ArrayHeapMemory(i32, BASE, { atomic: shared });
  Malloc.init(mem, BASE, { maxHeapBytes: HEAP_BYTES });
  return { sab: shared ? (i32.buffer as SharedArrayBuffer) : null, mem };
}

async function measure(
  setting: string,
  size: number,
  m: Malloc,
  time: number,
  threads: number,
): Promise<Row> {
  const bench = new Bench({ time, warmup: true, warmupTime: time / 4 });
  // warm: the slab (or large block) exists before timing
  m.free(m.malloc(size));
  bench.add(setting, () => {
    for (let i = 0; i < BATCH; i++) m.free(m.malloc(size));
  });
  await bench.run();
  const r = bench.tasks[0].result;
  if (r === undefined || !("latency" in r)) throw new Error(`${setting}: no result`);
  return { setting, threads, size, ns: (r.latency.mean * 1e6) / BATCH, rme: r.latency.rme };
}

async function contended(size: number, workers: number, time: number): Promise<Row> {
  const { sab, mem } = heapOf(true);
  const ctrl = new SharedArrayBuffer(4 * 16);
  const ws: Worker[] = [];
  for (let i = 0; i < workers; i++) {
    const w = new Worker(new URL(import.meta.url), {
      workerData: { kind: "malloc-bench-bg", heap: sab, ctrl, size, index: i },
    });
    await new Promise((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", reject);
    });
    ws.push(w);
  }
  const m = new Malloc(mem, BASE);
  try {
    const row = await measure(`contended ×${workers}`, size, m, time, 1 + workers);
    const st = m.stats();
    contention.push(
      `contended ×${workers}, ${size} B: ${st.lockContended} contended acquisitions, ${st.lockNaps} naps`,
    );
    return row;
  } finally {
    Atomics.store(new Int32Array(ctrl), kStop, 1); // publish: stop
    await Promise.all(ws.map((w) => new Promise((r) => w.once("exit", r))));
  }
}

const contention: string[] = [];

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const time = quick ? 150 : 600;
  const cpus = os.availableParallelism();
  console.log("malloc micro-benchmark: ns per malloc+free pair");
  console.log(`  node ${process.version}; cpus: ${cpus} (${os.cpus()[0]?.model ?? "unknown"})`);
  console.log("  thread layout: main thread measures; lock-free/locked/shared: 1 busy thread;");
  console.log(
    `  contended ×1: main + 1 background worker (2 busy threads on ${cpus} cores); contended ×2: main + 2 (3 busy threads)`,
  );
  console.log(`  each sample = ${BATCH} pairs; memory: ArrayHeapMemory (no MMU translation)\n`);

  const rows: Row[] = [];
  for (const size of SIZES) {
    const plain = heapOf(false);
    rows.push(
      await measure("lock-free", size, new Malloc(plain.mem, BASE, { locking: false }), time, 1),
    );
    rows.push(await measure("locked", size, new Malloc(plain.mem, BASE), time, 1));
    const shared = heapOf(true);
    rows.push(await measure("shared", size, new Malloc(shared.mem, BASE), time, 1));
    rows.push(await contended(size, 1, time));
    rows.push(await contended(size, 2, time));
  }

  const base = new Map(rows.filter((r) => r.setting === "lock-free").map((r) => [r.size, r.ns]));
  console.log(
    `${"setting".padEnd(14)}${"threads".padStart(8)}${"size".padStart(8)}${"ns/pair".padStart(10)}${"±%".padStart(7)}${"× lock-free".padStart(13)}`,
  );
  for (const r of rows) {
    const ratio = r.ns / (base.get(r.size) ?? r.ns);
    console.log(
      `${r.setting.padEnd(14)}${String(r.threads).padStart(8)}${String(r.size).padStart(8)}${r.ns.toFixed(1).padStart(10)}${r.rme.toFixed(1).padStart(7)}${ratio.toFixed(2).padStart(13)}`,
    );
  }
  console.log("");
  for (const c of contention) console.log(`  ${c}`);
}

if (isMainThread) await main();
