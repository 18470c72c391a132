/**
 * prodcons: producers and consumers of one bounded channel, all green threads. A full channel
 * parks its producers and an empty one its consumers — only those green threads, never the core —
 * while the main thread waits for all of them with join. Each consumer reports what it summed
 * through a system call.
 *
 *   exocore run programs/prodcons.js [producers] [consumers] [items per producer]
 */

import { Channel, CLOSED, type Green, join, print, spawn } from "../src/libos/index.js";

function* producer(ch: Channel<number>, id: number, items: number): Green {
  for (let i = 1; i <= items; i++) yield* ch.send(id * 1_000_000 + i);
  return 0;
}

function* consumer(ch: Channel<number>, out: number[], k: number): Green {
  let sum = 0;
  let n = 0;
  for (;;) {
    const v = yield* ch.recvOr(CLOSED);
    if (v === CLOSED) break;
    sum += v;
    n++;
  }
  out[k] = sum;
  return n;
}

export function* main(args: readonly string[]): Green {
  const producers = Number(args[0] ?? 4);
  const consumers = Number(args[1] ?? 3);
  const items = Number(args[2] ?? 1000);
  const ch = new Channel<number>(16);
  const sums: number[] = new Array(consumers).fill(0);
  const ps = Array.from({ length: producers }, (_, id) =>
    spawn(producer(ch, id, items), { name: `producer${id}` }),
  );
  const cs = Array.from({ length: consumers }, (_, k) =>
    spawn(consumer(ch, sums, k), { name: `consumer${k}` }),
  );
  for (const p of ps) yield* join(p);
  ch.close();
  let received = 0;
  for (const c of cs) received += yield* join(c);
  let want = 0;
  for (let id = 0; id < producers; id++) want += id * 1_000_000 * items + (items * (items + 1)) / 2;
  const got = sums.reduce((a, b) => a + b, 0);
  yield* print(
    `prodcons: ${received} items from ${producers} producers to ${consumers} consumers, sum ${got === want ? "ok" : `WRONG (${got} != ${want})`}\n`,
  );
  return got === want && received === producers * items ? 0 : 1;
}
