/**
 * bytes: the two byte buffers of one HTTP connection.
 *
 * - {@link ByteQueue} holds the bytes received and not yet parsed. `push` appends (compacting
 *   first, growing only when the unparsed bytes do not fit), or `reserve` makes room that a
 *   reader fills in place and `commit` appends; the parser reads `buf[start..end)`
 *   in place and `consume`s what it has parsed. Invariant: 0 <= start <= end <= buf.length.
 * - {@link OutputBuffer} stages the bytes of the responses being produced, so that a pipeline
 *   of small responses leaves in one send. `take` hands out a view of the staging memory that
 *   stays valid only until the next write: the caller sends (or copies) it first. The buffer is
 *   reused from one chunk to the next, so producing output allocates nothing (but the first
 *   time, and after one write larger than the preferred chunk size).
 *
 * Both are private to one connection: the connection (programs/http/connection.ts) owns them and
 * the parser (programs/http/parser.ts) reads the queue in place; no other thread sees them. Buffers are node Buffers for their native latin1 encode/decode and
 * memchr-backed indexOf; outside this file they are Uint8Arrays.
 */

import { Buffer } from "node:buffer";

/** Longest string {@link ByteQueue.latin1Same} compares before it makes a new one. */
const SAME_MAX = 256;
/** ASCII lower case of a byte (other bytes unchanged), as String.prototype.toLowerCase does. */
const LOWER = new Uint8Array(256).map((_, c) => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c));

/** Bytes received from the peer and not yet parsed, in one contiguous window. */
export class ByteQueue {
  /** Backing memory; the unparsed bytes are `buf[start..end)`. Read by the parser in place. */
  buf: Buffer;
  /** First unparsed byte. */
  start = 0;
  /** One past the last received byte. */
  end = 0;
  readonly #initial: number;

  constructor(initialBytes: number) {
    this.#initial = initialBytes;
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Unparsed bytes held. */
  get length(): number {
    return this.end - this.start;
  }

  /** Bytes of backing memory held (for the connection's bufferedBytes accounting). */
  get capacity(): number {
    return this.buf.length;
  }

  /** Append a copy of `bytes`. */
  push(bytes: Uint8Array): void {
    const n = bytes.length;
    if (n === 0) return;
    if (this.end + n > this.buf.length) this.#makeRoom(n);
    this.buf.set(bytes, this.end);
    this.end += n;
  }

  /** Make room for `n` bytes past the end; returns where they go in `buf` (then {@link commit}). */
  reserve(n: number): number {
    if (this.end + n > this.buf.length) this.#makeRoom(n);
    return this.end;
  }

  /** Append the `n` bytes written at the offset {@link reserve} returned. */
  commit(n: number): void {
    this.end += n;
  }

  /** Drop the first `n` unparsed bytes. */
  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) this.#reset();
  }

  /** Drop everything (after a fatal error or at close), returning to the initial size. */
  clear(): void {
    this.start = this.end = 0;
    if (this.buf.length > this.#initial) this.buf = Buffer.allocUnsafe(this.#initial);
  }

  /** Index (relative to start) of the first `byte` at or after relative `from`, or -1. */
  indexOf(byte: number, from: number): number {
    const at = this.buf.indexOf(byte, this.start + from);
    return at < 0 || at >= this.end ? -1 : at - this.start;
  }

  /**
   * The bytes [from, to) (relative to start) as a latin1 string: `same` itself when the bytes
   * spell it (a keep-alive client sends the same method, target and fields request after
   * request, and a compare in place is cheaper than making the string again).
   */
  latin1Same(from: number, to: number, same: string): string {
    const n = to - from;
    if (same.length !== n || n > SAME_MAX) return this.latin1(from, to);
    const b = this.buf;
    const at = this.start + from;
    for (let i = 0; i < n; i++) if (b[at + i] !== same.charCodeAt(i)) return this.latin1(from, to);
    return same;
  }

  /**
   * The bytes [from, to) as a lower-case latin1 string (ASCII letters folded): `same` (lower
   * case) itself when the bytes spell it in any case, as {@link latin1Same}.
   */
  lowerSame(from: number, to: number, same: string): string {
    const n = to - from;
    if (same.length === n && n <= SAME_MAX) {
      const b = this.buf;
      const at = this.start + from;
      let i = 0;
      while (i < n && LOWER[b[at + i]] === same.charCodeAt(i)) i++;
      if (i === n) return same;
    }
    return this.latin1(from, to).toLowerCase();
  }

  /** The bytes [from, to) (relative to start) as a latin1 string. */
  latin1(from: number, to: number): string {
    return this.buf.toString("latin1", this.start + from, this.start + to);
  }

  #reset(): void {
    this.start = this.end = 0;
    // A burst (a large body, a long pipeline) may have grown the buffer: give it back.
    if (this.buf.length > 4 * this.#initial) this.buf = Buffer.allocUnsafe(this.#initial);
  }

  #makeRoom(n: number): void {
    const live = this.end - this.start;
    if (live + n <= this.buf.length) {
      this.buf.copy(this.buf, 0, this.start, this.end); // compact: slide the live bytes down
    } else {
      let size = this.buf.length * 2;
      while (size < live + n) size *= 2;
      const grown = Buffer.allocUnsafe(size);
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
    }
    this.start = 0;
    this.end = live;
  }
}

const NO_BYTES = Buffer.alloc(0);
/** Strings up to this long are staged by a loop of stores rather than one Buffer.write. */
const SHORT_WRITE = 64;

/** Staging memory for response bytes; handed out in chunks by {@link take}. */
export class OutputBuffer {
  #buf: Buffer;
  #length = 0;
  /** Preferred chunk size: the connection flushes once this many bytes are staged. */
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#buf = NO_BYTES; // allocated at the first write: an idle connection holds no output memory
  }

  /** Bytes staged. */
  get length(): number {
    return this.#length;
  }

  /** Bytes that still fit before the preferred chunk size is reached. */
  get room(): number {
    return Math.max(0, this.capacity - this.#length);
  }

  /**
   * Stage a latin1 string (response heads are latin1 by construction). A short one is stored
   * char by char: cheaper than the call into Buffer.write for a field line.
   */
  writeLatin1(text: string): void {
    const n = text.length;
    this.#ensure(n);
    if (n <= SHORT_WRITE) {
      const b = this.#buf;
      const at = this.#length;
      for (let i = 0; i < n; i++) b[at + i] = text.charCodeAt(i);
      this.#length = at + n;
    } else this.#length += this.#buf.write(text, this.#length, "latin1");
  }

  /** Stage `text` encoded as UTF-8, whose encoded length the caller knows (`bytes`). */
  writeUtf8(text: string, bytes: number): void {
    this.#ensure(bytes);
    this.#length += this.#buf.write(text, this.#length, "utf8");
  }

  /** Stage a copy of `bytes`. */
  writeBytes(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /**
   * The staged bytes, or null if none; the buffer is empty afterwards. The view stays valid
   * until the next write into this buffer.
   */
  take(): Uint8Array | null {
    if (this.#length === 0) return null;
    const out = this.#buf.subarray(0, this.#length);
    this.#length = 0;
    // One oversized write grew the buffer: the view keeps the big one, we go back to normal.
    if (this.#buf.length > this.capacity) this.#buf = Buffer.allocUnsafe(this.capacity);
    return out;
  }

  #ensure(n: number): void {
    if (this.#length + n <= this.#buf.length) return;
    const size = Math.max(this.capacity, this.#buf.length * 2, this.#length + n);
    const grown = Buffer.allocUnsafe(size);
    this.#buf.copy(grown, 0, 0, this.#length);
    this.#buf = grown;
  }
}
