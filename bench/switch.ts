/**
 * switch: a micro-benchmark of the green-thread switch of src/core/sched.ts alone (no machine,
 * no rings, no workers), side by side with a bare generator resume loop over the same number of
 * generators as the baseline (issue 3: "context switch cost close to a bare generator resume").
 * Run it after a build:
 *
 *   node dist/bench/switch.js [--quick]                   tinybench, a table of ns and ratios
 *   node dist/bench/switch.js --iterations N [--case C]   N switches of case C (default all),
 *                                                         no tinybench: a fixed workload for
 *                                                         instruction counts (callgrind)
 *
 * Every green thread is `for (;;) yield Y_YIELD` (the rr case blocks after a burst of yields
 * so that a round ends). One switch is one resume; the baseline's resume also reads `done` and
 * `value`, as any dispatcher must. Cases, named `case/threads`, for 2 threads (the machine's
 * switch benchmark: two yielders) and for 1,000 threads:
 *   bare         gen.next(0) round the generators: the floor, and the × bare of its group
 *   round        Scheduler + FifoPolicy, sampled accounting, one runRound() per call
 *   rounds(16)   the same, runRounds(16): one burst of up to 16 rounds per call, one accounting
 *                window across them (the core's loop runs up to 16 rounds a turn)
 *   precise      round, with precise accounting (a clock read per resume)
 *   prio(4)      round, PriorityPolicy(4), the threads spread over the 4 levels
 *   …/1000x8     1,000 threads made by 8 generator functions (a megamorphic resume site)
 *   …/2+stub     bodies that yield through the libOS verb, `yield* yieldNow()`, as programs do
 *   rr-continue  one thread, RoundRobinPolicy: the policy says "continue" 1,000 times a round
 *
 * Instruction counts: run one case twice under callgrind, N1 and N2 switches, and divide the
 * difference of the totals by N2 - N1 (start-up, warm-up and JIT compiling cancel out), e.g.
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/a.cg node --no-concurrent-recompilation \
 *     dist/bench/switch.js --iterations 400000 --case 'rounds(16)/2'
 * and again with 1200000; `--no-concurrent-recompilation` makes V8 compile at the same point of
 * every run. The counts are V8's code under valgrind, whose inlining can differ from a native
 * run's; compare builds by counts, and read the ns beside them.
 *
 * Thread layout: one thread. The main thread runs the scheduler, its green threads and the
 * baseline loop; nothing else runs in the process (a 2-core machine may still be busy with other
 * processes, which is why the ratios to the baseline, measured in the same run, are the figure).
 */

import os from "node:os";
import { Bench } from "tinybench";
import { FifoPolicy, type Policy, PriorityPolicy, RoundRobinPolicy } from "../src/core/policy.js";
import { Scheduler, type Thread, type ThreadBody, Y_BLOCK, Y_YIELD } from "../src/core/sched.js";
import { yieldNow } from "../src/core/sync.js";

/** Switches per tinybench sample (one switch is far below the timer's resolution). */
const BATCH = 16_384;
/** Y_YIELDs per round of the rr-continue thread before it blocks. */
const RR_BURST = 1000;

/**
 * `kinds` distinct generator functions with the same body. Each closure has its own prototype,
 * so generators made by different ones have different maps: with more than 4 the resume site
 * `gen.next` is megamorphic, as on a core that runs many programs. With `stub` the body yields
 * through the libOS verb, `yield* yieldNow()`, as programs do, instead of the bare token.
 */
function spinners(kinds: number, stub: boolean): (() => ThreadBody)[] {
  const out: (() => ThreadBody)[] = [];
  for (let i = 0; i < kinds; i++) {
    out.push(
      stub
        ? function* (): ThreadBody {
            for (;;) yield* yieldNow();
          }
        : function* (): ThreadBody {
            for (;;) yield Y_YIELD;
          },
    );
  }
  return out;
}

/** A workload: run(n) does at least `n` switches and returns how many it did. */
interface Workload {
  run(n: number): number;
}

/** A case: what it runs, with how many threads made by how many generator functions. */
interface Case {
  readonly name: string;
  readonly threads: number;
  readonly kinds: number;
  readonly stub: boolean;
  make(): Workload;
}

function id(c: Case): string {
  return `${c.name}/${c.threads}${c.kinds > 1 ? `x${c.kinds}` : ""}${c.stub ? "+stub" : ""}`;
}

/**
 * Run every path of `w.run` a few times with small counts before a long run: V8 compiles a long
 * loop on-stack (OSR) in the middle of its first call, and code after the loop that had not run
 * yet has no type feedback, which deoptimises at every exit (a steady state we do not measure).
 */
function warm(w: Workload): void {
  for (let i = 0; i < 32; i++) w.run(8);
}

function bare(n: number, kinds: number, stub = false): Workload {
  const make = spinners(kinds, stub);
  const gens: ThreadBody[] = [];
  for (let i = 0; i < n; i++) gens.push(make[i % kinds]());
  let j = 0;
  let sink = 0;
  return {
    run(count) {
      for (let i = 0; i < count; i++) {
        const r = gens[j].next(0);
        if (r.done === true) throw new Error("bare: a spinner returned");
        sink += r.value;
        j = j + 1 === n ? 0 : j + 1;
      }
      return count + sink;
    },
  };
}

function scheduler(policy: Policy, accounting: "precise" | "sampled"): Scheduler {
  return new Scheduler({
    policy,
    accounting,
    submit: () => {
      throw new Error("switch bench: no thread makes syscalls");
    },
  });
}

interface RoundsOptions {
  readonly policy?: Policy;
  readonly precise?: boolean;
  /** runRounds(burst) per call; 0: runRound(). */
  readonly burst?: number;
  readonly stub?: boolean;
}

function rounds(n: number, kinds: number, o: RoundsOptions): Workload {
  const s = scheduler(o.policy ?? new FifoPolicy(), o.precise === true ? "precise" : "sampled");
  const make = spinners(kinds, o.stub === true);
  for (let i = 0; i < n; i++) s.spawn(make[i % kinds](), { priority: i % 4 });
  const burst = o.burst ?? 0;
  return {
    run(count) {
      let done = 0;
      if (burst > 0) while (done < count) done += s.runRounds(burst);
      else while (done < count) done += s.runRound();
      return done;
    },
  };
}

function rrContinue(): Workload {
  const s = scheduler(new RoundRobinPolicy(60_000), "sampled");
  const t: Thread = s.spawn(function* (): ThreadBody {
    for (;;) {
      for (let i = 0; i < RR_BURST; i++) yield Y_YIELD;
      yield Y_BLOCK;
    }
  });
  return {
    run(count) {
      let done = 0;
      while (done < count) {
        done += s.runRound();
        s.wake(t, 0);
      }
      return done;
    },
  };
}

/** Every case, in the order printed; each is made only when it runs (1,000 threads each). */
function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, threads: number, kinds: number, make: () => Workload, stub = false) =>
    out.push({ name, threads, kinds, stub, make });
  for (const n of [2, 1000]) {
    add("bare", n, 1, () => bare(n, 1));
    add("round", n, 1, () => rounds(n, 1, {}));
    add("rounds(16)", n, 1, () => rounds(n, 1, { burst: 16 }));
    add("precise", n, 1, () => rounds(n, 1, { precise: true }));
    add("prio(4)", n, 1, () => rounds(n, 1, { policy: new PriorityPolicy(4) }));
  }
  add("bare", 1000, 8, () => bare(1000, 8));
  add("rounds(16)", 1000, 8, () => rounds(1000, 8, { burst: 16 }));
  add("bare", 2, 1, () => bare(2, 1, true), true);
  add("rounds(16)", 2, 1, () => rounds(2, 1, { burst: 16, stub: true }), true);
  add("bare", 1, 1, () => bare(1, 1));
  add("rr-continue", 1, 1, rrContinue);
  return out;
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** Fixed work, no timing: for callgrind. */
function counted(iterations: number, only: string | undefined): void {
  const all = cases();
  const chosen = all.filter((c) => only === undefined || id(c) === only);
  if (chosen.length === 0) {
    throw new Error(`--case ${only}: no such case (${all.map(id).join(", ")})`);
  }
  for (const c of chosen) {
    const w = c.make();
    warm(w);
    console.log(`${id(c)}: ${w.run(iterations)} switches`);
  }
}

interface Row {
  readonly c: Case;
  readonly ns: number;
  readonly rme: number;
}

async function timed(quick: boolean): Promise<void> {
  const time = quick ? 200 : 1000;
  console.log("green-thread switch micro-benchmark: ns per switch (one resume)");
  console.log(
    `  node ${process.version}; cpus: ${os.availableParallelism()} (${os.cpus()[0]?.model ?? "?"})`,
  );
  console.log(
    "  thread layout: one thread (main runs the scheduler, its green threads and the bare loop)",
  );
  console.log(
    `  each sample = ${BATCH} switches; every thread: for (;;) yield Y_YIELD ` +
      "(+stub: yield* yieldNow()); /1000x8: 1,000 threads of 8 generator functions\n",
  );
  const rows: Row[] = [];
  for (const c of cases()) {
    const w = c.make();
    warm(w);
    const bench = new Bench({ time, warmup: true, warmupTime: time / 2 });
    let switches = 0;
    let calls = 0;
    bench.add(id(c), () => {
      switches += w.run(BATCH);
      calls++;
    });
    await bench.run();
    const r = bench.tasks[0].result;
    if (r === undefined || !("latency" in r)) throw new Error(`${id(c)}: no result`);
    const per = calls > 0 ? switches / calls : BATCH;
    rows.push({ c, ns: (r.latency.mean * 1e6) / per, rme: r.latency.rme });
  }
  const bareNs = (c: Case) =>
    rows.find(
      (r) =>
        r.c.name === "bare" &&
        r.c.threads === c.threads &&
        r.c.kinds === c.kinds &&
        r.c.stub === c.stub,
    )?.ns ?? Number.NaN;
  const line = (cells: string[]) =>
    console.log(
      cells[0].padEnd(18) +
        cells
          .slice(1)
          .map((c, i) => c.padStart([8, 7, 9][i]))
          .join(""),
    );
  line(["case", "ns", "±%", "× bare"]);
  for (const r of rows) {
    line([id(r.c), r.ns.toFixed(1), r.rme.toFixed(1), (r.ns / bareNs(r.c)).toFixed(2)]);
  }
}

const iterations = flag("--iterations");
if (iterations !== undefined) {
  const n = Number(iterations);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`--iterations must be a positive integer, got ${iterations}`);
  }
  counted(n, flag("--case"));
} else {
  await timed(process.argv.includes("--quick"));
}
