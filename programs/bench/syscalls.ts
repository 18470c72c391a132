/**
 * bench/syscalls: the in-machine half of `exocore bench syscalls` (the XOS table). Measures,
 * from a green thread on core 0, the cost of each operation and prints one JSON line:
 *
 *   null1     a null system call with one outstanding (round trip to the system domain):
 *             after a warm-up, the median of 21 timed chunks (see main)
 *   gettsc    the local cycle-counter stand-in (no crossing)
 *   nullN     null calls kept outstanding by `threads` green threads (FlexSC batching):
 *             rounds of `threads` threads making iterations/threads calls each, ns per call of
 *             the median round after two untimed ones
 *   switch    a green-thread switch (two threads yielding to each other)
 *   malloc    a malloc(64) + free pair in the process heap (served in the libOS)
 *   fault     a demand-zero page fault: first touch of a heap page (pager on this core)
 *
 *   exocore run programs/bench/syscalls.js [iterations] [threads]
 */

import {
  free,
  type Green,
  gettsc,
  join,
  malloc,
  memory,
  nullcall,
  print,
  spawn,
  yieldNow,
} from "../../src/libos/index.js";

/** Milliseconds of calls before timing starts. */
const WARM_MS = 300;
/** Timed chunks per one-outstanding measurement, at least; the median chunk is reported. */
const CHUNKS = 21;
/** Milliseconds of timed calls per one-outstanding measurement, at least. */
const TIMED_MS = 300;
/** Timed rounds of the many-outstanding measurement; the median round is reported. */
const N_ROUNDS = 9;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] ?? Number.NaN;
}

function* caller(n: number): Green {
  for (let i = 0; i < n; i++) yield* nullcall();
  return 0;
}

function* yielder(n: number): Green {
  for (let i = 0; i < n; i++) yield* yieldNow();
  return 0;
}

export function* main(args: readonly string[]): Green {
  const n = Number(args[0] ?? 20000);
  const threads = Number(args[1] ?? 64);
  const out: Record<string, number> = {};

  // Warm up until the JITs of this core and of the domain are done with the path (by time:
  // a count that suffices on a quiet machine is too short on a busy one), then time at least
  // CHUNKS chunks and at least TIMED_MS of calls, and report the median chunk's mean: a chunk
  // that a preemption or a GC of this 2-vCPU machine lands in is an outlier, not the cost of a
  // call (21 chunks alone were 15 ms here, and the median of so short a window moved between
  // 0.62 and 0.79 µs from boot to boot). The conventional paths in bench/syscalls.ts are
  // measured the same way.
  const warmUntil = performance.now() + WARM_MS;
  while (performance.now() < warmUntil) for (let i = 0; i < 1000; i++) yield* nullcall();
  const chunk = Math.max(1, Math.ceil(n / CHUNKS));
  const means: number[] = [];
  for (
    const until = performance.now() + TIMED_MS;
    means.length < CHUNKS || performance.now() < until;
  ) {
    const c0 = performance.now();
    for (let i = 0; i < chunk; i++) yield* nullcall();
    means.push(((performance.now() - c0) * 1e6) / chunk);
  }
  out.null1 = median(means);

  let t0 = performance.now();
  let x = 0;
  for (let i = 0; i < n; i++) x += gettsc() & 1;
  out.gettsc = ((performance.now() - t0) * 1e6) / n + x * 0;

  // Batched: rounds of `threads` threads, each keeping one call outstanding; the median round
  // after two untimed ones (a single round was mostly the JIT's first look at the path).
  const per = Math.ceil(n / threads);
  const rounds: number[] = [];
  for (let r = 0; r < N_ROUNDS + 2; r++) {
    const r0 = performance.now();
    const ts = [];
    for (let k = 0; k < threads; k++) ts.push(spawn(caller(per), { name: `caller${k}` }));
    for (const t of ts) yield* join(t);
    if (r >= 2) rounds.push(((performance.now() - r0) * 1e6) / (per * threads));
  }
  out.nullN = median(rounds);
  out.threads = threads;

  // Switches are cheap: warm the path up, then time enough of them to see past the JIT.
  const sw = Math.max(n, 500_000);
  yield* join(spawn(yielder(sw / 10), { name: "warm" }));
  t0 = performance.now();
  const a = spawn(yielder(sw), { name: "a" });
  const b = spawn(yielder(sw), { name: "b" });
  yield* join(a);
  yield* join(b);
  out.switch = ((performance.now() - t0) * 1e6) / (2 * sw);

  for (let i = 0; i < 1000; i++) free(malloc(64)); // lay out the heap, warm up
  t0 = performance.now();
  for (let i = 0; i < n; i++) free(malloc(64));
  out.malloc = ((performance.now() - t0) * 1e6) / n;

  const vm = memory();
  const pages = Math.min(2048, n);
  const base = vm.sbrk(pages * 4096);
  if (base < 0) return 1;
  t0 = performance.now();
  for (let p = 0; p < pages; p++) vm.store32(base + p * 4096, p); // each first touch faults
  out.fault = ((performance.now() - t0) * 1e6) / pages;

  out.iterations = n;
  yield* print(`${JSON.stringify(out)}\n`);
  return 0;
}
