/**
 * resp: the built-in Redis-protocol load generator — N connections, each sending pipelined
 * batches of SET, GET and INCR and waiting for every reply of a batch before sending the next
 * (redis-benchmark's -P: one write of P commands, then P replies). A reply's latency is the
 * time from its batch's write to the arrival of the chunk that completed it, as
 * redis-benchmark measures it.
 *
 * Owns: the connections, the prebuilt request batches, and {@link RespReplyCounter}, a
 * streaming framer that counts complete top-level RESP2 replies (and error replies) in chunks
 * split anywhere. Hot path (a chunk arrives): the framer walks the bytes with integer state
 * and the batch is written from a buffer made at start; nothing is allocated per request.
 *
 * Runs in a load-generator child process (bench/load/child.ts), never on a machine's
 * hypervisor thread; tests may run it in-process against a server of their own.
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import { checkInteger, InvalidArgumentError } from "../../src/errors.js";
import { LatencyHistogram } from "./histogram.js";

export interface RespLoadOptions {
  readonly host: string;
  readonly port: number;
  /** Connections (default {@link RESP_DEFAULT_CONNECTIONS}). */
  readonly connections?: number;
  /** Commands per batch (default {@link RESP_DEFAULT_PIPELINE}). */
  readonly pipeline?: number;
  /** Distinct keys for SET/GET and for INCR (default 10,000). */
  readonly keyspace?: number;
  /** Bytes of each SET value (default 64). */
  readonly valueSize?: number;
}

/** Defaults: connections and commands per batch. */
export const RESP_DEFAULT_CONNECTIONS = 32;
export const RESP_DEFAULT_PIPELINE = 16;

/** Cumulative counters of a running generator. */
export interface LoadCounters {
  readonly completed: number;
  readonly errors: number;
  /** Connections that closed or failed under load (each is reopened). */
  readonly reconnects: number;
}

/** Framer states. */
const S_TYPE = 0; // at the first byte of a reply or element
const S_LINE = 1; // inside a +, -, :, $ or * line, before CR
const S_LF = 2; // saw the line's CR, expecting LF
const S_BULK = 3; // skipping a bulk string's payload and its CRLF
const MAX_DEPTH = 16;

/**
 * Counts complete top-level RESP2 replies in a byte stream fed in arbitrary chunks. Arrays
 * are followed to any depth up to {@link MAX_DEPTH} (a reply is complete when its last
 * element is). Malformed input (a type byte that is not one of + - : $ *) throws: the server
 * broke the protocol, and the connection's counts would be meaningless.
 */
export class RespReplyCounter {
  /** Complete top-level replies seen. */
  replies = 0;
  /** Of them, error replies (`-ERR …`). */
  errors = 0;
  #state = S_TYPE;
  #type = 0;
  #neg = false;
  #num = 0;
  #bulkLeft = 0;
  /** Elements still expected at each open array level. */
  readonly #pending = new Int32Array(MAX_DEPTH);
  #depth = 0;

  /** Forget a reply cut short (the connection closed mid-reply); the totals stay. */
  reset(): void {
    this.#state = S_TYPE;
    this.#depth = 0;
    this.#bulkLeft = 0;
  }

  /** Feed bytes; returns the replies completed by them. */
  feed(b: Uint8Array, start = 0, end = b.length): number {
    const before = this.replies;
    for (let i = start; i < end; i++) {
      const c = b[i] as number;
      switch (this.#state) {
        case S_TYPE:
          if (c !== 43 && c !== 45 && c !== 58 && c !== 36 && c !== 42) {
            throw new InvalidArgumentError(`resp: bad reply type byte ${c}`);
          }
          this.#type = c;
          this.#neg = false;
          this.#num = 0;
          this.#state = S_LINE;
          break;
        case S_LINE:
          if (c === 13) this.#state = S_LF;
          else if (this.#type === 36 || this.#type === 42) {
            if (c === 45) this.#neg = true;
            else this.#num = this.#num * 10 + (c - 48);
          }
          break;
        case S_LF:
          this.#endLine();
          break;
        case S_BULK: {
          const take = Math.min(this.#bulkLeft, end - i);
          this.#bulkLeft -= take;
          i += take - 1;
          if (this.#bulkLeft === 0) this.#element();
          break;
        }
      }
    }
    return this.replies - before;
  }

  #endLine(): void {
    const t = this.#type;
    if (t === 36 && !this.#neg) {
      this.#bulkLeft = this.#num + 2; // the payload and its CRLF
      this.#state = this.#bulkLeft > 0 ? S_BULK : S_TYPE;
      return;
    }
    if (t === 42 && !this.#neg && this.#num > 0) {
      if (this.#depth === MAX_DEPTH) throw new InvalidArgumentError("resp: arrays nest too deep");
      this.#pending[this.#depth++] = this.#num;
      this.#state = S_TYPE;
      return;
    }
    if (t === 45 && this.#depth === 0) this.errors++;
    this.#element();
  }

  /** One element (or a whole top-level reply) is complete. */
  #element(): void {
    this.#state = S_TYPE;
    while (this.#depth > 0) {
      const left = --this.#pending[this.#depth - 1];
      if (left > 0) return;
      this.#depth--;
    }
    this.replies++;
  }
}

/** One RESP command as bytes. */
export function encodeCommand(args: readonly string[]): Buffer {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return Buffer.from(s);
}

/** A small deterministic PRNG (mulberry32) so every run sends the same keys. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Batches prebuilt at start; connections take them in turn. */
const BATCHES = 64;

/**
 * Build `BATCHES` request batches of `pipeline` commands each: SET, GET and INCR in turn over
 * random keys of the keyspace (so a GET mostly finds a key a SET wrote).
 */
export function buildRespBatches(pipeline: number, keyspace: number, valueSize: number): Buffer[] {
  const rand = mulberry32(0x5eed);
  const value = "x".repeat(valueSize);
  const out: Buffer[] = [];
  let n = 0;
  for (let b = 0; b < BATCHES; b++) {
    const cmds: Buffer[] = [];
    for (let i = 0; i < pipeline; i++, n++) {
      const key = Math.floor(rand() * keyspace);
      const op = n % 3;
      if (op === 0) cmds.push(encodeCommand(["SET", `key:${key}`, value]));
      else if (op === 1) cmds.push(encodeCommand(["GET", `key:${key}`]));
      else cmds.push(encodeCommand(["INCR", `counter:${key}`]));
    }
    out.push(Buffer.concat(cmds));
  }
  return out;
}

interface Conn {
  socket: net.Socket | null;
  readonly counter: RespReplyCounter;
  /** Replies still expected for the batch in flight. */
  inflight: number;
  /** performance.now() when the batch in flight was written. */
  sentAt: number;
  next: number;
}

/** The RESP load generator; see the file header. */
export class RespLoad {
  readonly histogram = new LatencyHistogram();
  readonly #opts: Required<RespLoadOptions>;
  readonly #batches: Buffer[];
  readonly #conns: Conn[] = [];
  #running = false;
  #completed = 0;
  #errors = 0;
  #reconnects = 0;

  constructor(opts: RespLoadOptions) {
    const o: Required<RespLoadOptions> = {
      host: opts.host,
      port: checkInteger("port", opts.port, 1, 65535),
      connections: checkInteger(
        "connections",
        opts.connections ?? RESP_DEFAULT_CONNECTIONS,
        1,
        10_000,
      ),
      pipeline: checkInteger("pipeline", opts.pipeline ?? RESP_DEFAULT_PIPELINE, 1, 1024),
      keyspace: checkInteger("keyspace", opts.keyspace ?? 10_000, 1, 1 << 30),
      valueSize: checkInteger("valueSize", opts.valueSize ?? 64, 0, 1 << 20),
    };
    this.#opts = o;
    this.#batches = buildRespBatches(o.pipeline, o.keyspace, o.valueSize);
  }

  /** Open every connection; resolves once all are connected (rejects if one cannot). */
  async start(): Promise<void> {
    this.#running = true;
    const opened: Promise<void>[] = [];
    for (let i = 0; i < this.#opts.connections; i++) {
      const c: Conn = {
        socket: null,
        counter: new RespReplyCounter(),
        inflight: 0,
        sentAt: 0,
        next: i % BATCHES,
      };
      this.#conns.push(c);
      opened.push(this.#open(c));
    }
    await Promise.all(opened);
  }

  counters(): LoadCounters {
    return { completed: this.#completed, errors: this.#errors, reconnects: this.#reconnects };
  }

  /** Stop sending; close every connection. Replies still in flight are not counted. */
  stop(): void {
    this.#running = false;
    for (const c of this.#conns) c.socket?.destroy();
  }

  #open(c: Conn): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: this.#opts.host, port: this.#opts.port, noDelay: true });
      c.socket = s;
      let up = false;
      s.once("connect", () => {
        up = true;
        resolve();
        this.#send(c);
      });
      s.on("data", (chunk: Buffer) => this.#onData(c, chunk));
      s.on("error", (err) => {
        if (!up) reject(err);
      });
      s.on("close", () => {
        if (!up || !this.#running) return;
        this.#reconnects++;
        this.#errors += c.inflight; // a batch cut short: its replies never came
        c.inflight = 0;
        c.counter.reset();
        setTimeout(() => {
          if (this.#running) this.#open(c).catch(() => {});
        }, 50);
      });
    });
  }

  #send(c: Conn): void {
    if (!this.#running || c.socket === null) return;
    const batch = this.#batches[c.next] as Buffer;
    c.next = (c.next + 1) % BATCHES;
    c.inflight = this.#opts.pipeline;
    c.sentAt = performance.now();
    c.socket.write(batch);
  }

  #onData(c: Conn, chunk: Buffer): void {
    const errorsBefore = c.counter.errors;
    const n = c.counter.feed(chunk);
    if (n === 0) return;
    const us = (performance.now() - c.sentAt) * 1000;
    this.histogram.recordMany(us, n);
    this.#completed += n;
    this.#errors += c.counter.errors - errorsBefore;
    c.inflight -= n;
    if (c.inflight <= 0) {
      c.inflight = 0;
      this.#send(c);
    }
  }
}
