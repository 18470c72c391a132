/**
 * net-client: the load generator of `exocore bench network` (bench/network.ts), run as a child
 * process so that it has its own event loop and never competes with the hypervisor's (the main
 * thread of the benchmark process runs the NIC model and its host sockets).
 *
 * It is the same client for every server measured. Given a {@link ClientPlan} as JSON in
 * argv[2], it connects to 127.0.0.1:port and runs:
 *
 *   latency     one connection, TCP_NODELAY, `messages` ping-pongs of `size` bytes after
 *               `warmup` untimed ones: send a message, wait until all of it is echoed (each
 *               echo is checked byte for byte), one sample per round trip (performance.now()).
 *   throughput  for each entry: `connections` connections, each writing `chunk`-byte buffers as
 *               fast as its socket drains, but never more than `window` bytes ahead of what
 *               came back (a sender that runs further ahead measures how much the server can
 *               buffer, not how fast it echoes), and reading everything echoed back. After
 *               `warmup` s, the bytes written and read in a window of `seconds` s give MB/s both
 *               ways. Then every connection half-closes and the run waits until each got back
 *               every byte it sent (`echoedAll`).
 *
 * It prints one {@link ClientResult} as JSON on stdout and exits 0; on any socket error or a
 * missed deadline it prints the error on stderr and exits 1. The plan's connections are made
 * one after the other: 1 for latency, then each throughput entry's.
 */

import net from "node:net";

export interface ClientPlan {
  readonly port: number;
  readonly latency: { readonly messages: number; readonly warmup: number; readonly size: number };
  readonly throughput: readonly {
    readonly connections: number;
    readonly seconds: number;
    readonly warmup: number;
    readonly chunk: number;
    /** Most bytes a connection may have written and not yet had echoed. */
    readonly window: number;
  }[];
}

export interface ThroughputSample {
  connections: number;
  chunk: number;
  /** Most bytes in flight per connection (written, not yet echoed). */
  window: number;
  /** Length of the measuring window, s (measured). */
  seconds: number;
  /** Bytes written / read by the client in the window, all connections. */
  sentBytes: number;
  receivedBytes: number;
  sentMBps: number;
  receivedMBps: number;
  /** Every connection got back every byte it wrote, once it half-closed. */
  echoedAll: boolean;
}

export interface ClientResult {
  /** One sample per timed round trip, ns, in the order taken. */
  latencyNs: number[];
  size: number;
  throughput: ThroughputSample[];
  /** Connections made in all. */
  connections: number;
}

const HOST = "127.0.0.1";
/** Longest a connection may take to finish echoing after it half-closed (ms). */
const DRAIN_DEADLINE_MS = 60_000;

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST);
    s.once("connect", () => {
      s.off("error", reject);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once("error", reject);
  });
}

function patterned(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

async function latency(port: number, plan: ClientPlan["latency"]): Promise<number[]> {
  const s = await connect(port);
  const msg = patterned(plan.size, 7);
  const echo = Buffer.alloc(plan.size);
  let have = 0;
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  s.on("data", (d: Buffer) => {
    if (have + d.length > plan.size) {
      failure = new Error(
        `latency: ${have + d.length} bytes echoed for a ${plan.size}-byte message`,
      );
    } else {
      d.copy(echo, have);
      have += d.length;
    }
    if ((have === plan.size || failure) && wake) wake();
  });
  const gone = new Promise<never>((_, reject) => {
    s.once("error", reject);
    s.once("end", () => reject(new Error("latency: the server closed the connection")));
  });
  const samples: number[] = [];
  for (let i = -plan.warmup; i < plan.messages; i++) {
    have = 0;
    const back = new Promise<void>((r) => {
      wake = r;
    });
    const t0 = performance.now();
    s.write(msg);
    await Promise.race([back, gone]);
    const ns = (performance.now() - t0) * 1e6;
    wake = null;
    if (failure) throw failure;
    if (!echo.equals(msg)) throw new Error(`latency: round trip ${i} echoed different bytes`);
    if (i >= 0) samples.push(ns);
  }
  gone.catch(() => {}); // the end we cause below is expected
  await new Promise<void>((resolve) => {
    s.once("close", () => resolve());
    s.end();
  });
  return samples;
}

async function stream(
  port: number,
  t: ClientPlan["throughput"][number],
): Promise<ThroughputSample> {
  const chunk = patterned(t.chunk, 3);
  const socks = await Promise.all(Array.from({ length: t.connections }, () => connect(port)));
  let running = true;
  const finished = socks.map(
    (s) =>
      new Promise<boolean>((resolve, reject) => {
        // Write while the socket takes more and the echo is at most `window` bytes behind.
        const pump = () => {
          while (running && !s.writableNeedDrain && s.bytesWritten - s.bytesRead < t.window)
            s.write(chunk);
        };
        s.on("drain", pump);
        s.on("data", pump);
        s.once("error", reject);
        s.once("end", () => resolve(s.bytesRead === s.bytesWritten));
        pump();
      }),
  );
  const total = () => {
    let w = 0;
    let r = 0;
    for (const s of socks) {
      w += s.bytesWritten;
      r += s.bytesRead;
    }
    return [w, r] as const;
  };
  await sleep(t.warmup * 1000);
  const [w0, r0] = total();
  const t0 = performance.now();
  await sleep(t.seconds * 1000);
  const [w1, r1] = total();
  const seconds = (performance.now() - t0) / 1000;
  running = false;
  for (const s of socks) s.end();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`throughput: echo not finished ${DRAIN_DEADLINE_MS} ms after close`)),
      DRAIN_DEADLINE_MS,
    );
  });
  const all = await Promise.race([Promise.all(finished), deadline]);
  clearTimeout(timer);
  for (const s of socks) s.destroy();
  return {
    connections: t.connections,
    chunk: t.chunk,
    window: t.window,
    seconds,
    sentBytes: w1 - w0,
    receivedBytes: r1 - r0,
    sentMBps: (w1 - w0) / seconds / 1e6,
    receivedMBps: (r1 - r0) / seconds / 1e6,
    echoedAll: all.every(Boolean),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function main(): Promise<void> {
  const plan = JSON.parse(process.argv[2] ?? "") as ClientPlan;
  const latencyNs = await latency(plan.port, plan.latency);
  const throughput: ThroughputSample[] = [];
  for (const t of plan.throughput) throughput.push(await stream(plan.port, t));
  const connections = 1 + plan.throughput.reduce((n, t) => n + t.connections, 0);
  const result: ClientResult = { latencyNs, size: plan.latency.size, throughput, connections };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`net-client: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
