/**
 * http: the built-in HTTP/1.1 load generator — N keep-alive connections, each sending GETs
 * for a list of paths in turn and waiting for the response (or, with a pipeline depth P > 1,
 * for the P responses of one write) before sending again: wrk's closed loop. A response's
 * latency is the time from its write to the chunk that completed it.
 *
 * Owns: the connections, the prebuilt requests, and {@link HttpResponseCounter}, a streaming
 * framer (RFC 9112 §6: message body length) that counts complete responses in chunks split
 * anywhere — Content-Length bodies, chunked bodies with trailers, bodiless statuses (1xx, 204,
 * 304), and bodies delimited by the connection's close. Hot path: integer states over the
 * bytes, header lines matched in a fixed buffer; nothing is allocated per request.
 *
 * Runs in a load-generator child process (bench/load/child.ts); tests may run it in-process.
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import { checkInteger, InvalidArgumentError } from "../../src/errors.js";
import { LatencyHistogram } from "./histogram.js";
import type { LoadCounters } from "./resp.js";

export interface HttpLoadOptions {
  readonly host: string;
  readonly port: number;
  /** Paths requested in turn (default ["/"]). */
  readonly paths?: readonly string[];
  /** Connections (default {@link HTTP_DEFAULT_CONNECTIONS}). */
  readonly connections?: number;
  /** Requests per write (default 1: one request in flight per connection). */
  readonly pipeline?: number;
}

/** Default connections; one request in flight on each. */
export const HTTP_DEFAULT_CONNECTIONS = 32;

const H_LINE = 0; // reading a status or header line
const H_BODY = 1; // skipping a Content-Length body
const H_CHUNK_SIZE = 2; // reading a chunk-size line
const H_CHUNK_DATA = 3; // skipping chunk data and its CRLF
const H_TRAILER = 4; // reading trailer lines until the empty one
const H_UNTIL_CLOSE = 5; // a body delimited by the end of the connection

/** Bytes of a header line kept for matching; longer lines are matched on their start. */
const LINE_MAX = 256;
const CONTENT_LENGTH = Buffer.from("content-length:");
const TRANSFER_ENCODING = Buffer.from("transfer-encoding:");
const CONNECTION = Buffer.from("connection:");
const CHUNKED = Buffer.from("chunked");
const CLOSE = Buffer.from("close");

/** Counts complete HTTP/1.1 responses in a byte stream fed in arbitrary chunks. */
export class HttpResponseCounter {
  /** Complete responses seen. */
  responses = 0;
  /** Responses by status class: [1xx, 2xx, 3xx, 4xx, 5xx]. */
  readonly byClass = new Float64Array(5);
  /** The last complete response asked to close the connection. */
  closeAfter = false;
  #state = H_LINE;
  readonly #line = new Uint8Array(LINE_MAX);
  #lineLen = 0;
  #sawCr = false;
  #firstLine = true;
  #status = 0;
  #length = -1;
  #chunked = false;
  #close = false;
  #left = 0;

  /** Feed bytes; returns the responses completed by them. */
  feed(b: Uint8Array, start = 0, end = b.length): number {
    const before = this.responses;
    for (let i = start; i < end; i++) {
      const st = this.#state;
      if (st === H_BODY || st === H_CHUNK_DATA) {
        const take = Math.min(this.#left, end - i);
        this.#left -= take;
        i += take - 1;
        if (this.#left === 0) {
          if (st === H_BODY) this.#complete();
          else this.#state = H_CHUNK_SIZE;
        }
        continue;
      }
      if (st === H_UNTIL_CLOSE) return this.responses - before;
      const c = b[i] as number;
      if (c === 10) {
        this.#endLine();
        continue;
      }
      if (this.#sawCr) {
        // A bare CR inside a line: keep it as data.
        this.#push(13);
        this.#sawCr = false;
      }
      if (c === 13) this.#sawCr = true;
      else this.#push(c);
    }
    return this.responses - before;
  }

  /** The connection ended: a body delimited by the close is complete. */
  end(): number {
    if (this.#state !== H_UNTIL_CLOSE) return 0;
    this.#complete();
    return 1;
  }

  /** Forget a response cut short (the connection closed mid-response); the totals stay. */
  reset(): void {
    this.#state = H_LINE;
    this.#lineLen = 0;
    this.#sawCr = false;
    this.#firstLine = true;
    this.#length = -1;
    this.#chunked = false;
    this.#close = false;
  }

  #push(c: number): void {
    if (this.#lineLen < LINE_MAX) this.#line[this.#lineLen] = c;
    this.#lineLen++;
  }

  #endLine(): void {
    const len = Math.min(this.#lineLen, LINE_MAX);
    this.#lineLen = 0;
    this.#sawCr = false;
    if (this.#state === H_CHUNK_SIZE) {
      this.#left = this.#hex(len);
      if (this.#left === 0) this.#state = H_TRAILER;
      else {
        this.#left += 2; // the data's CRLF
        this.#state = H_CHUNK_DATA;
      }
      return;
    }
    if (this.#state === H_TRAILER) {
      if (len === 0) this.#complete();
      return;
    }
    if (this.#firstLine) {
      // "HTTP/1.1 200 OK": the status is the three digits after the first space.
      if (len < 12 || this.#line[8] !== 32) {
        throw new InvalidArgumentError("http: malformed status line");
      }
      this.#status =
        (this.#line[9] - 48) * 100 + (this.#line[10] - 48) * 10 + (this.#line[11] - 48);
      this.#firstLine = false;
      return;
    }
    if (len > 0) {
      this.#header(len);
      return;
    }
    this.#endHead();
  }

  #header(len: number): void {
    if (this.#startsWith(CONTENT_LENGTH, len)) {
      let n = 0;
      for (let i = CONTENT_LENGTH.length; i < len; i++) {
        const d = this.#line[i] as number;
        if (d >= 48 && d <= 57) n = n * 10 + (d - 48);
      }
      this.#length = n;
    } else if (this.#startsWith(TRANSFER_ENCODING, len)) {
      this.#chunked = this.#contains(CHUNKED, TRANSFER_ENCODING.length, len);
    } else if (this.#startsWith(CONNECTION, len)) {
      this.#close = this.#contains(CLOSE, CONNECTION.length, len);
    }
  }

  #endHead(): void {
    const s = this.#status;
    if ((s >= 100 && s < 200) || s === 204 || s === 304) {
      if (s < 200) {
        // An interim response: the final one follows on the same stream.
        this.#firstLine = true;
        return;
      }
      this.#complete();
    } else if (this.#chunked) this.#state = H_CHUNK_SIZE;
    else if (this.#length > 0) {
      this.#left = this.#length;
      this.#state = H_BODY;
    } else if (this.#length === 0) this.#complete();
    else this.#state = H_UNTIL_CLOSE;
  }

  #complete(): void {
    const cls = Math.floor(this.#status / 100) - 1;
    if (cls >= 0 && cls < 5) this.byClass[cls]++;
    this.responses++;
    this.closeAfter = this.#close;
    this.reset();
  }

  #startsWith(prefix: Uint8Array, len: number): boolean {
    if (len < prefix.length) return false;
    for (let i = 0; i < prefix.length; i++) {
      if (((this.#line[i] as number) | 0x20) !== prefix[i]) return false; // ASCII lower case
    }
    return true;
  }

  #contains(word: Uint8Array, from: number, len: number): boolean {
    outer: for (let i = from; i + word.length <= len; i++) {
      for (let k = 0; k < word.length; k++) {
        if (((this.#line[i + k] as number) | 0x20) !== word[k]) continue outer;
      }
      return true;
    }
    return false;
  }

  #hex(len: number): number {
    let n = 0;
    for (let i = 0; i < len; i++) {
      const c = (this.#line[i] as number) | 0x20;
      if (c >= 48 && c <= 57) n = n * 16 + (c - 48);
      else if (c >= 97 && c <= 102) n = n * 16 + (c - 87);
      else break; // ";" starts a chunk extension
    }
    return n;
  }
}

/** Batches prebuilt at start; connections take them in turn. */
const BATCHES = 64;

/** One GET request with the headers a browser-less client sends. */
export function encodeGet(host: string, port: number, path: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: exocore-load\r\nAccept: */*\r\n\r\n`,
  );
}

interface Conn {
  socket: net.Socket | null;
  readonly counter: HttpResponseCounter;
  inflight: number;
  sentAt: number;
  next: number;
}

/** The HTTP load generator; see the file header. */
export class HttpLoad {
  readonly histogram = new LatencyHistogram();
  readonly #opts: Required<HttpLoadOptions>;
  readonly #batches: Buffer[] = [];
  readonly #conns: Conn[] = [];
  #running = false;
  #completed = 0;
  #errors = 0;
  #reconnects = 0;

  constructor(opts: HttpLoadOptions) {
    const paths = opts.paths ?? ["/"];
    if (paths.length === 0 || paths.some((p) => !p.startsWith("/") || /\s/.test(p))) {
      throw new InvalidArgumentError(
        `paths must be a non-empty list of paths starting with "/" and without spaces, got ${JSON.stringify(paths)}`,
      );
    }
    this.#opts = {
      host: opts.host,
      port: checkInteger("port", opts.port, 1, 65535),
      paths,
      connections: checkInteger(
        "connections",
        opts.connections ?? HTTP_DEFAULT_CONNECTIONS,
        1,
        10_000,
      ),
      pipeline: checkInteger("pipeline", opts.pipeline ?? 1, 1, 256),
    };
    const reqs = paths.map((p) => encodeGet(this.#opts.host, this.#opts.port, p));
    const p = this.#opts.pipeline;
    for (let b = 0; b < BATCHES; b++) {
      const parts: Buffer[] = [];
      for (let i = 0; i < p; i++) parts.push(reqs[(b * p + i) % reqs.length] as Buffer);
      this.#batches.push(Buffer.concat(parts));
    }
  }

  /** Open every connection; resolves once all are connected (rejects if one cannot). */
  async start(): Promise<void> {
    this.#running = true;
    const opened: Promise<void>[] = [];
    for (let i = 0; i < this.#opts.connections; i++) {
      const c: Conn = {
        socket: null,
        counter: new HttpResponseCounter(),
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

  /** Responses by status class [1xx … 5xx], over every connection. */
  statusClasses(): number[] {
    const sum = [0, 0, 0, 0, 0];
    for (const c of this.#conns) for (let k = 0; k < 5; k++) sum[k] += c.counter.byClass[k];
    return sum;
  }

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
      s.on("end", () => {
        if (c.counter.end() > 0) this.#done(c, 1, 0);
      });
      s.on("error", (err) => {
        if (!up) reject(err);
      });
      s.on("close", () => {
        if (!up || !this.#running) return;
        // A server that closes after a response (Connection: close) is not an error.
        const asked = c.inflight === 0 && c.counter.closeAfter;
        this.#errors += c.inflight;
        if (!asked) this.#reconnects++;
        c.inflight = 0;
        c.counter.reset();
        c.counter.closeAfter = false;
        setTimeout(
          () => {
            if (this.#running) this.#open(c).catch(() => {});
          },
          asked ? 0 : 50,
        );
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
    const before = c.counter.byClass[3] + c.counter.byClass[4];
    const n = c.counter.feed(chunk);
    if (n > 0) this.#done(c, n, c.counter.byClass[3] + c.counter.byClass[4] - before);
  }

  #done(c: Conn, n: number, failed: number): void {
    const us = (performance.now() - c.sentAt) * 1000;
    this.histogram.recordMany(us, n);
    this.#completed += n;
    this.#errors += failed;
    c.inflight -= n;
    if (c.inflight <= 0) {
      c.inflight = 0;
      if (!c.counter.closeAfter) this.#send(c);
    }
  }
}
