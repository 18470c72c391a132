/**
 * external: the real clients the demo and the servers benchmark drive — redis-benchmark
 * (Redis 7) and wrk — run as asynchronous child processes, and the parsers of what they print.
 *
 * Owns: finding a client on PATH, running it with an abort signal, and turning its output into
 * numbers:
 *   redis-benchmark --csv   one row per test: rps and avg/min/p50/p95/p99/max latency (ms)
 *   redis-benchmark -q      live lines `SET: rps=… (overall: …) avg_msec=…` separated by CR,
 *                           and at the end of each test `SET: 1234.56 requests per second,
 *                           p50=0.351 msec`
 *   wrk --latency           `Requests/sec:`, the latency distribution (50/75/90/99%), errors
 * Nothing here blocks: a process that hosts a machine must keep its event loop turning, so no
 * spawnSync / execSync. Called by bench/servers.ts and src/cli/commands/demo.ts.
 */

import { spawn } from "node:child_process";
import { ExocoreError } from "../../src/errors.js";

/** Output of a finished client. */
export interface Collected {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SpawnOptions {
  /** Aborting sends `abortSignal` (default SIGINT) to the client. */
  readonly signal?: AbortSignal;
  readonly abortSignal?: NodeJS.Signals;
  /** Each chunk of stdout as it comes. */
  readonly onStdout?: (text: string) => void;
  /** Called with the pid once started. */
  readonly onSpawn?: (pid: number) => void;
}

/** Run `cmd args` to its end; resolves with its output (a missing binary rejects). */
export function collect(cmd: string, args: readonly string[], o: SpawnOptions = {}) {
  return new Promise<Collected>((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8");
    p.stderr.setEncoding("utf8");
    p.stdout.on("data", (d: string) => {
      stdout += d;
      o.onStdout?.(d);
    });
    p.stderr.on("data", (d: string) => {
      stderr += d;
    });
    const abort = () => p.kill(o.abortSignal ?? "SIGINT");
    if (o.signal?.aborted) abort();
    o.signal?.addEventListener("abort", abort, { once: true });
    p.once("spawn", () => o.onSpawn?.(p.pid ?? 0));
    p.once("error", (err) => {
      o.signal?.removeEventListener("abort", abort);
      reject(err);
    });
    p.once("close", (code, signal) => {
      o.signal?.removeEventListener("abort", abort);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Is `cmd` on PATH? (asynchronous: `command -v` in a shell). */
export async function hasCommand(cmd: string): Promise<boolean> {
  if (!/^[A-Za-z0-9._-]+$/.test(cmd)) return false;
  try {
    const r = await collect("sh", ["-c", `command -v ${cmd}`]);
    return r.code === 0;
  } catch {
    return false;
  }
}

// ---- redis-benchmark ----------------------------------------------------------------------

/** One test's row of `redis-benchmark --csv`. */
export interface RedisBenchRow {
  readonly test: string;
  readonly rps: number;
  readonly avgMs: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const CSV_HEADER = [
  "test",
  "rps",
  "avg_latency_ms",
  "min_latency_ms",
  "p50_latency_ms",
  "p95_latency_ms",
  "p99_latency_ms",
  "max_latency_ms",
];

/** Split one CSV line of double-quoted fields. */
function csvFields(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"]|"")*)"(?:,|$)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) out.push(m[1].replace(/""/g, '"'));
  return out;
}

/**
 * Parse `redis-benchmark --csv` (Redis 7: a header row, then one row per test). Throws if
 * the header is not the one this parser knows (an older redis-benchmark prints only rps).
 */
export function parseRedisBenchmarkCsv(text: string): RedisBenchRow[] {
  const lines = text.split(/\r?\n/).filter((l) => l.startsWith('"'));
  const head = lines.shift();
  if (head === undefined) throw new ExocoreError("EXO_ERR_PARSE", "redis-benchmark: no CSV");
  const cols = csvFields(head);
  if (CSV_HEADER.some((c, i) => cols[i] !== c)) {
    throw new ExocoreError(
      "EXO_ERR_PARSE",
      `redis-benchmark: unknown CSV header ${JSON.stringify(head)} (Redis 7 prints ${CSV_HEADER.join(",")})`,
    );
  }
  return lines.map((l) => {
    const f = csvFields(l);
    // "inf": the test ended within one tick of redis-benchmark's millisecond clock.
    const n = (i: number) => (f[i] === "inf" ? Number.NaN : Number(f[i]));
    return {
      test: f[0] ?? "",
      rps: n(1),
      avgMs: n(2),
      minMs: n(3),
      p50Ms: n(4),
      p95Ms: n(5),
      p99Ms: n(6),
      maxMs: n(7),
    };
  });
}

export interface RedisBenchmarkOptions {
  readonly port: number;
  readonly host?: string;
  readonly tests: readonly string[];
  readonly clients: number;
  readonly requests: number;
  readonly pipeline: number;
  /** Key space for random keys (`-r`); none: redis-benchmark's fixed keys. */
  readonly keyspace?: number;
}

function redisBenchmarkArgs(o: RedisBenchmarkOptions): string[] {
  const args = ["-h", o.host ?? "127.0.0.1", "-p", String(o.port), "-t", o.tests.join(",")];
  args.push("-c", String(o.clients), "-n", String(o.requests), "-P", String(o.pipeline));
  if (o.keyspace !== undefined) args.push("-r", String(o.keyspace));
  return args;
}

/** Run redis-benchmark to its end with --csv; one row per test. */
export async function runRedisBenchmark(
  o: RedisBenchmarkOptions,
  signal?: AbortSignal,
): Promise<RedisBenchRow[]> {
  const r = await collect("redis-benchmark", [...redisBenchmarkArgs(o), "--csv"], { signal });
  if (signal?.aborted) return [];
  if (r.code !== 0) {
    throw new ExocoreError(
      "EXO_ERR_CLIENT",
      `redis-benchmark exited with ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return parseRedisBenchmarkCsv(r.stdout);
}

/** What the live (-q) output has said so far, per test. */
export interface RedisLiveTest {
  readonly test: string;
  /** The last "overall" rate, or the final one once the test ended. */
  rps: number;
  /** The last instantaneous rate (the progress line's own `rps=`). */
  instantRps: number;
  /** p50 in ms once the test ended (the -q summary line), else NaN. */
  p50Ms: number;
  done: boolean;
}

/**
 * A parser for `redis-benchmark -q` output fed in chunks: CR- and LF-separated progress and
 * summary lines. `tests` lists them in the order they ran.
 */
export class RedisLiveParser {
  readonly tests: RedisLiveTest[] = [];
  #rest = "";

  feed(chunk: string): void {
    const text = this.#rest + chunk;
    const parts = text.split(/[\r\n]/);
    this.#rest = parts.pop() ?? "";
    for (const raw of parts) this.#line(raw.trim());
  }

  /** The test running now (or last run). */
  get current(): RedisLiveTest | undefined {
    return this.tests[this.tests.length - 1];
  }

  #test(name: string): RedisLiveTest {
    let t = this.tests.find((x) => x.test === name);
    if (t === undefined) {
      t = { test: name, rps: 0, instantRps: 0, p50Ms: Number.NaN, done: false };
      this.tests.push(t);
    }
    return t;
  }

  #line(line: string): void {
    const done = /^(.+?): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?/.exec(line);
    if (done) {
      const t = this.#test(done[1]);
      t.rps = Number(done[2]);
      t.p50Ms = done[3] === undefined ? Number.NaN : Number(done[3]);
      t.done = true;
      return;
    }
    const live = /^(.+?): rps=([\d.]+) \(overall: ([^)]+)\)/.exec(line);
    if (live) {
      const t = this.#test(live[1]);
      t.instantRps = Number(live[2]);
      const overall = Number(live[3]);
      if (Number.isFinite(overall)) t.rps = overall;
    }
  }
}

/**
 * Start `redis-benchmark -q -l` (loop until stopped) and parse its live output; `stop` ends it.
 * For the demo, where the run lasts a set time rather than a set number of requests.
 */
export function startRedisBenchmarkLive(
  o: Omit<RedisBenchmarkOptions, "requests"> & { readonly requests?: number },
  signal: AbortSignal,
  onSpawn?: (pid: number) => void,
): { readonly parser: RedisLiveParser; readonly done: Promise<Collected> } {
  const parser = new RedisLiveParser();
  const args = [...redisBenchmarkArgs({ ...o, requests: o.requests ?? 100_000 }), "-q", "-l"];
  const done = collect("redis-benchmark", args, {
    signal,
    abortSignal: "SIGTERM",
    onStdout: (d) => parser.feed(d),
    onSpawn,
  });
  return { parser, done };
}

// ---- wrk ----------------------------------------------------------------------------------

export interface WrkResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p75Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** Non-2xx/3xx responses plus socket errors (connect, read, write, timeout). */
  readonly errors: number;
}

/** `7.26ms`, `812.00us`, `1.02s`, `2.00m` → milliseconds. */
export function wrkDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const scale: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return Number(m[1]) * (scale[m[2]] as number);
}

/** Parse what `wrk --latency` prints. Throws if there is no `Requests/sec:` line. */
export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!rps)
    throw new ExocoreError("EXO_ERR_PARSE", `wrk: no Requests/sec in ${JSON.stringify(text)}`);
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(text);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m").exec(text);
    return m ? wrkDurationMs(m[1]) : Number.NaN;
  };
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  if (non2xx) errors += Number(non2xx[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (sock) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  return {
    requests: total ? Number(total[1]) : 0,
    durationS: total ? wrkDurationMs(`${total[2]}${total[3]}`) / 1000 : 0,
    rps: Number(rps[1]),
    p50Ms: pct("50"),
    p75Ms: pct("75"),
    p90Ms: pct("90"),
    p99Ms: pct("99"),
    errors,
  };
}

export interface WrkOptions {
  readonly url: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
}

/** Run wrk with --latency; an abort stops it early (SIGINT: wrk still prints its results). */
export async function runWrk(
  o: WrkOptions,
  signal?: AbortSignal,
  onSpawn?: (pid: number) => void,
): Promise<WrkResult> {
  const args = ["-t", String(o.threads), "-c", String(o.connections)];
  args.push("-d", `${o.durationS}s`, "--latency", o.url);
  const r = await collect("wrk", args, { signal, onSpawn });
  if (r.code !== 0 && !signal?.aborted) {
    throw new ExocoreError(
      "EXO_ERR_CLIENT",
      `wrk exited with ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return parseWrk(r.stdout);
}
