/**
 * histogram: the latency histogram of the built-in load generators — a fixed array of counts
 * over log-linear buckets (HdrHistogram's layout, with 5 bits of sub-bucket precision), so
 * recording a latency is a few integer operations and never allocates, and two histograms
 * (two connections, two processes) merge by adding counts.
 *
 * Values are whole microseconds from 0 to {@link MAX_US} (larger ones are clamped and counted
 * in the last bucket). Buckets:
 *
 *   value v            bucket                           width
 *   0 … 63             v                                1 µs (exact)
 *   64 … 2^31-1        64 + (k-1)·32 + ((v >> k) - 32)  2^k, with k = msb(v) - 5
 *
 * so every bucket at or above 64 µs is at most 1/32 (≈3%) of its value wide, and a percentile
 * read back is within that of the exact one. Owned by whoever records into it; bench/load/resp.ts
 * and bench/load/http.ts record, bench/load/child.ts ships the counts to the parent process,
 * which merges and reads percentiles.
 */

import { InvalidArgumentError } from "../../src/errors.js";

/** Exact buckets below this value. */
const LINEAR = 64;
/** Sub-buckets per power of two above LINEAR (5 bits). */
const SUB = 32;
/** The largest value recorded as itself (≈ 35 minutes in µs). */
export const MAX_US = 2 ** 31 - 1;
/** Buckets in all: LINEAR exact ones, then SUB per power of two from 2^6 to 2^30. */
export const BUCKETS = LINEAR + (31 - 6) * SUB;

/** The bucket of a value in µs (clamped to [0, MAX_US]). */
export function bucketOf(us: number): number {
  const v = us <= 0 ? 0 : Math.min(us, MAX_US) | 0;
  if (v < LINEAR) return v;
  const k = 31 - Math.clz32(v) - 5; // v >> k lands in [32, 63]
  return LINEAR + (k - 1) * SUB + ((v >>> k) - SUB);
}

/** The smallest value that falls in bucket `b`. */
export function bucketLow(b: number): number {
  if (b < LINEAR) return b;
  const k = Math.floor((b - LINEAR) / SUB) + 1;
  return (((b - LINEAR) % SUB) + SUB) * 2 ** k;
}

/** The largest value that falls in bucket `b`. */
export function bucketHigh(b: number): number {
  if (b < LINEAR) return b;
  const k = Math.floor((b - LINEAR) / SUB) + 1;
  return bucketLow(b) + 2 ** k - 1;
}

/** Percentiles of one histogram, in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export class LatencyHistogram {
  /** Count per bucket. */
  readonly counts: Float64Array;
  #count = 0;
  #sumUs = 0;
  #maxUs = 0;

  constructor(counts?: ArrayLike<number>) {
    this.counts = new Float64Array(BUCKETS);
    if (counts !== undefined) this.add(counts);
  }

  /** Record one latency of `us` microseconds (the hot path: no allocation). */
  record(us: number): void {
    const v = us <= 0 ? 0 : Math.min(us, MAX_US);
    this.counts[bucketOf(v)]++;
    this.#count++;
    this.#sumUs += v;
    if (v > this.#maxUs) this.#maxUs = v;
  }

  /** Record `n` latencies of the same value (a pipelined batch whose replies came together). */
  recordMany(us: number, n: number): void {
    const v = us <= 0 ? 0 : Math.min(us, MAX_US);
    this.counts[bucketOf(v)] += n;
    this.#count += n;
    this.#sumUs += v * n;
    if (v > this.#maxUs) this.#maxUs = v;
  }

  /** Add another histogram's counts (as shipped between processes: a plain array). */
  add(counts: ArrayLike<number>): void {
    if (counts.length !== BUCKETS) {
      throw new InvalidArgumentError(
        `a latency histogram has ${BUCKETS} buckets, got ${counts.length}`,
      );
    }
    for (let b = 0; b < BUCKETS; b++) {
      const c = counts[b] as number;
      if (c === 0) continue;
      this.counts[b] += c;
      this.#count += c;
      this.#sumUs += c * ((bucketLow(b) + bucketHigh(b)) / 2);
      if (bucketHigh(b) > this.#maxUs) this.#maxUs = bucketHigh(b);
    }
  }

  get count(): number {
    return this.#count;
  }

  /**
   * The value at percentile `p` (0 < p ≤ 100) by nearest rank, in µs: the middle of the bucket
   * that holds the ⌈p/100·n⌉-th smallest value (never above the largest recorded). 0 when empty.
   */
  percentile(p: number): number {
    if (!(p > 0 && p <= 100)) {
      throw new InvalidArgumentError(`percentile must be in (0, 100], got ${p}`);
    }
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b] as number;
      if (seen >= rank) {
        const mid = b < LINEAR ? b : (bucketLow(b) + bucketHigh(b)) / 2;
        return Math.min(mid, this.#maxUs);
      }
    }
    return this.#maxUs;
  }

  summary(): LatencySummary {
    const ms = (us: number) => us / 1000;
    return {
      count: this.#count,
      meanMs: this.#count === 0 ? 0 : ms(this.#sumUs / this.#count),
      p50Ms: ms(this.percentile(50)),
      p90Ms: ms(this.percentile(90)),
      p99Ms: ms(this.percentile(99)),
      p999Ms: ms(this.percentile(99.9)),
      maxMs: ms(this.#maxUs),
    };
  }

  /** The counts as a plain array, to send to another process. */
  toJSON(): number[] {
    return Array.from(this.counts);
  }
}
