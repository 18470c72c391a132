/**
 * syscalls: the XOS table (`exocore bench syscalls`). Cost of a null system call (one
 * outstanding, and kept outstanding by 64 green threads), of gettsc and of a green-thread
 * switch, measured inside the machine for every channel mode, side by side with the same null
 * call served the conventional ways: a one-worker piscina pool (atomics sync and async) and a
 * worker answering postMessage, driven from the main thread.
 */

import { once } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { Piscina } from "piscina";
import { CHANNEL_MODES, type ChannelMode } from "../src/hv/layout.js";
import { boot } from "../src/hv/machine.js";

export interface SyscallBenchOptions {
  iterations: number;
  threads: number;
  quick: boolean;
  out?: string;
}

export interface Row {
  /** null1, nullN, gettsc, switch */
  op: string;
  /** ns per operation, by method (spin, hybrid, park, trap, piscina-sync, …). */
  ns: Record<string, number>;
}

export interface SyscallBenchReport {
  date: string;
  node: string;
  cpus: number;
  layout: string[];
  iterations: number;
  threads: number;
  rows: Row[];
  targets: { name: string; ok: boolean; detail: string }[];
  files: string[];
}

const PROGRAM = fileURLToPath(new URL("../programs/bench/syscalls.js", import.meta.url));
const PISCINA_TASK = fileURLToPath(new URL("./piscina-echo.js", import.meta.url));
const QUEUE_WORKER = new URL("./queue-worker.js", import.meta.url);

async function inMachine(
  mode: ChannelMode,
  iterations: number,
  threads: number,
): Promise<Record<string, number>> {
  let out = "";
  const m = await boot({
    cores: 1,
    memoryMiB: 32,
    channel: mode,
    stdout: (s) => {
      out += s;
    },
    onEvent: () => {},
  });
  try {
    const status = await m.run(PROGRAM, [String(iterations), String(threads)]);
    if (status !== 0) throw new Error(`bench program exited ${status} in ${mode} mode`);
  } finally {
    await m.shutdown();
  }
  return JSON.parse(out.trim()) as Record<string, number>;
}

/** Milliseconds of calls before timing starts (as in the machine). */
const WARM_MS = 300;
/** Timed chunks per one-outstanding measurement, at least; the median chunk is reported. */
const CHUNKS = 21;
/** Milliseconds of timed calls per one-outstanding measurement, at least (as in the machine). */
const TIMED_MS = 300;
/** Timed rounds of the many-outstanding measurement (as in the machine); the median is reported. */
const N_ROUNDS = 9;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] ?? Number.NaN;
}

/** ns per call: sequential (one outstanding) and with `threads` outstanding at once. */
async function conventional(
  call: () => Promise<unknown>,
  iterations: number,
  threads: number,
): Promise<[number, number]> {
  // As in the machine (programs/bench/syscalls.ts): warm up by time, then the median of
  // CHUNKS timed chunks, so that both sides of a ratio are measured the same way.
  const warmUntil = performance.now() + WARM_MS;
  while (performance.now() < warmUntil) for (let i = 0; i < 100; i++) await call();
  const chunk = Math.max(1, Math.ceil(iterations / CHUNKS));
  const means: number[] = [];
  for (
    const until = performance.now() + TIMED_MS;
    means.length < CHUNKS || performance.now() < until;
  ) {
    const c0 = performance.now();
    for (let i = 0; i < chunk; i++) await call();
    means.push(((performance.now() - c0) * 1e6) / chunk);
  }
  const one = median(means);
  // Many outstanding: rounds as in the machine, the median of N_ROUNDS after two untimed ones;
  // a round is batches of `threads` calls at once, a tenth of the machine's round in calls
  // (a pool call costs ~100× a machine call: the whole measurement stays a few seconds).
  const batches = Math.ceil(iterations / 10 / threads);
  const rounds: number[] = [];
  for (let r = 0; r < N_ROUNDS + 2; r++) {
    const r0 = performance.now();
    for (let b = 0; b < batches; b++) await Promise.all(Array.from({ length: threads }, call));
    if (r >= 2) rounds.push(((performance.now() - r0) * 1e6) / (batches * threads));
  }
  return [one, median(rounds)];
}

async function piscina(
  atomics: "sync" | "async",
  iterations: number,
  threads: number,
): Promise<[number, number]> {
  const pool = new Piscina({
    filename: PISCINA_TASK,
    minThreads: 1,
    maxThreads: 1,
    atomics,
    idleTimeout: 60_000,
  });
  const payload = new Int32Array(1);
  try {
    return await conventional(() => pool.run(payload), iterations, threads);
  } finally {
    await pool.destroy();
  }
}

async function postMessage(iterations: number, threads: number): Promise<[number, number]> {
  const worker = new Worker(QUEUE_WORKER, { workerData: { role: "post-message" } });
  await once(worker, "message");
  const waiting: ((v: unknown) => void)[] = [];
  worker.on("message", (m) => waiting.shift()?.(m));
  const payload = new Int32Array(1);
  const call = () =>
    new Promise((resolve) => {
      waiting.push(resolve);
      worker.postMessage(payload);
    });
  try {
    return await conventional(call, iterations, threads);
  } finally {
    const exited = once(worker, "exit");
    worker.postMessage("stop");
    await exited;
  }
}

export async function runSyscallBench(
  opts: SyscallBenchOptions,
  onProgress?: (p: { phase: string; done: number; total: number }) => void,
): Promise<SyscallBenchReport> {
  const iterations = opts.quick ? Math.min(opts.iterations, 5000) : opts.iterations;
  const total = CHANNEL_MODES.length + 3;
  let done = 0;
  const step = (phase: string) => onProgress?.({ phase, done: done++, total });
  const ops = ["null1", "nullN", "gettsc", "switch", "malloc", "fault"];
  const rows: Row[] = ops.map((op) => ({ op, ns: {} }));
  const put = (op: string, method: string, v: number | undefined) => {
    const row = rows.find((r) => r.op === op);
    if (row && v !== undefined) row.ns[method] = v;
  };
  for (const mode of CHANNEL_MODES) {
    step(`in the machine, channel ${mode}`);
    const r = await inMachine(mode, iterations, opts.threads);
    for (const op of ops) put(op, mode, r[op]);
  }
  for (const atomics of ["sync", "async"] as const) {
    step(`piscina (atomics ${atomics})`);
    const [one, many] = await piscina(atomics, iterations, opts.threads);
    put("null1", `piscina-${atomics}`, one);
    put("nullN", `piscina-${atomics}`, many);
  }
  step("postMessage");
  const [one, many] = await postMessage(iterations, opts.threads);
  put("null1", "postMessage", one);
  put("nullN", "postMessage", many);
  step("done");

  const report: SyscallBenchReport = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.availableParallelism(),
    layout: [
      `cpus: ${os.availableParallelism()}; load average at start: ${os.loadavg()[0]?.toFixed(2)}`,
      "exocore: hypervisor (main thread, idle while measuring) + 1 XOS core + the system domain; the program runs on core 0",
      "piscina / postMessage: main thread + 1 worker; the same null call, awaited one at a time, then 64 at once",
    ],
    iterations,
    threads: opts.threads,
    rows,
    targets: [],
    files: [],
  };
  const n1 = rows[0]?.ns ?? {};
  const nN = rows[1]?.ns ?? {};
  const bestPiscina = Math.min(
    n1["piscina-sync"] ?? Number.POSITIVE_INFINITY,
    n1["piscina-async"] ?? Number.POSITIVE_INFINITY,
  );
  if (n1.hybrid !== undefined) {
    const ratio = bestPiscina / n1.hybrid;
    report.targets.push({
      name: "null call (hybrid, one outstanding) ≥ 100× faster than piscina",
      ok: ratio >= 100,
      detail: `${fmt(n1.hybrid)} vs ${fmt(bestPiscina)} = ${ratio.toFixed(0)}×`,
    });
  }
  if (nN.hybrid !== undefined) {
    report.targets.push({
      name: `under 2 µs per call with ${opts.threads} threads outstanding (hybrid)`,
      ok: nN.hybrid < 2000,
      detail: fmt(nN.hybrid),
    });
  }
  const out = opts.out ?? "bench/results";
  mkdirSync(out, { recursive: true });
  const path = join(out, opts.quick ? "syscalls-quick.json" : "syscalls.json");
  report.files.push(path);
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

function fmt(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

export function formatSyscallReport(r: SyscallBenchReport): string {
  const methods = [
    "spin",
    "hybrid",
    "park",
    "trap",
    "piscina-sync",
    "piscina-async",
    "postMessage",
  ];
  const labels: Record<string, string> = {
    null1: "null syscall, 1 outstanding",
    nullN: `null syscall, ${r.threads} outstanding`,
    gettsc: "gettsc (local)",
    switch: "green-thread switch",
    malloc: "malloc(64) + free (local)",
    fault: "page fault, demand-zero (local)",
  };
  const lines = [
    `exocore syscall table (XOS) — Node ${r.node}, ${r.iterations} iterations`,
    ...r.layout.map((l) => `  ${l}`),
    "",
  ];
  lines.push(
    `  ${"operation".padEnd(30)}${methods.map((m) => m.padStart(14)).join("")}${"piscina/hybrid".padStart(16)}`,
  );
  for (const row of r.rows) {
    const best = Math.min(
      row.ns["piscina-sync"] ?? Number.POSITIVE_INFINITY,
      row.ns["piscina-async"] ?? Number.POSITIVE_INFINITY,
    );
    const ratio =
      row.ns.hybrid !== undefined && Number.isFinite(best)
        ? `${(best / row.ns.hybrid).toFixed(0)}×`
        : "-";
    lines.push(
      `  ${(labels[row.op] ?? row.op).padEnd(30)}${methods.map((m) => fmt(row.ns[m] ?? Number.NaN).padStart(14)).join("")}${ratio.padStart(16)}`,
    );
  }
  lines.push("", "Aims");
  for (const t of r.targets) lines.push(`  ${t.ok ? "met   " : "MISSED"}  ${t.name}: ${t.detail}`);
  lines.push("", `Written: ${r.files.join(", ")}`);
  return lines.join("\n");
}
