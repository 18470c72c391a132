/**
 * parallel: a computation over many green threads on all cores (M:N). Main splits a range into
 * chunks and puts one thread per chunk on the machine's spawn queue; idle cores take them (work
 * stealing of unstarted threads). Each thread counts the primes in its chunk, asks the system
 * domain which core it runs on, and returns count × 64 + core; main joins them all, checks the
 * total against a count done here, and prints how the threads spread over the cores.
 *
 *   exocore run programs/parallel.js [threads] [upTo] --cores 2
 */

import { type Green, getcore, joinShared, print, spawnShared } from "../src/libos/index.js";

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** Count the primes in [from, to); returns count × 64 + the core that ran it. */
export function* chunk(from: number, to: number): Green {
  let count = 0;
  for (let n = from; n < to; n++) if (isPrime(n)) count++;
  const core = yield* getcore();
  return count * 64 + core;
}

export function* main(args: readonly string[]): Green {
  const threads = Number(args[0] ?? 200);
  const upTo = Number(args[1] ?? 200_000);
  const step = Math.ceil(upTo / threads);
  const handles = [];
  for (let from = 0; from < upTo; from += step) {
    handles.push(yield* spawnShared(chunk, from, Math.min(upTo, from + step)));
  }
  let total = 0;
  const perCore = new Map<number, number>();
  for (const h of handles) {
    const r = yield* joinShared(h);
    if (r < 0) return 1;
    total += Math.floor(r / 64);
    perCore.set(r % 64, (perCore.get(r % 64) ?? 0) + 1);
  }
  let want = 0;
  for (let n = 0; n < upTo; n++) if (isPrime(n)) want++;
  const spread = [...perCore.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([c, k]) => `core ${c}: ${k}`)
    .join(", ");
  yield* print(
    `parallel: ${total} primes below ${upTo} (${total === want ? "ok" : `WRONG, want ${want}`}) by ${handles.length} threads; ${spread}\n`,
  );
  return total === want ? 0 : 1;
}
