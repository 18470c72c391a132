/**
 * kv/resp: the Redis protocol (RESP2) — an incremental parser of client input and an encoder of
 * replies into a growable output buffer.
 *
 * Owns: {@link RespParser} (one per connection), {@link RespWriter} (one per connection, and
 * scratch ones in the engine), {@link Argv} (a command's arguments as offsets into a byte buffer)
 * and {@link ArgvBuilder} (an Argv made from strings, for tests, the AOF and tools).
 *
 * Parser (Redis 7.0 networking.c, processInlineBuffer / processMultibulkBuffer):
 *   - a request that starts with '*' is a multibulk array of bulk strings ("*N\r\n$len\r\n…\r\n");
 *     anything else is an inline command: one line split like sdssplitargs (spaces, "double
 *     quotes" with \n \r \t \b \a \\ \" \xHH escapes, 'single quotes' with \'), ended by "\n" or
 *     "\r\n". An empty line and "*0" / "*-1" are skipped, as Redis skips them.
 *   - state survives chunk boundaries (multibulk count left, current bulk length), so bytes may
 *     arrive split anywhere and several commands may come in one chunk (pipelining).
 *   - a multibulk request that is wholly buffered and plain (the usual case: a pipeline arrives
 *     whole) is parsed in one pass; anything else — cut short, malformed, over a limit — goes
 *     through the state machine from the request's start, which gives Redis's exact answer.
 *   - limits: a bulk longer than `protoMaxBulkLen` (default 64 MiB; Redis's is 512 MiB — the
 *     process heap here is smaller than that), a multibulk count above `maxMultibulkLength`
 *     (1024 × 1024), a line with no end after 64 KiB (inline requests and count lines, Redis's
 *     PROTO_INLINE_MAX_SIZE) are protocol errors; so is more than `maxQueryBuffer` bytes pending.
 *     An error stops the parser for good: reply {@link RespParser.error} (e.g.
 *     "ERR Protocol error: invalid bulk length") and close the connection after it, as Redis does.
 *     Commands parsed before the bad bytes are returned (and run) first.
 *   - the arguments of the command returned by next() point into the parser's buffer and stay
 *     valid until the next call of next() or feed(). Inline arguments are unescaped in place
 *     (the unescaped form is never longer than the line).
 *   - with `inline: false` (the AOF loader) only multibulk requests are accepted.
 *
 * Writer: every reply type of RESP2 — simple string, error, integer, bulk (and the null bulk
 * "$-1"), array header (and the null array "*-1") — written straight into one Uint8Array that
 * doubles when full; integers and ASCII text are written byte by byte, so a reply allocates
 * nothing. Errors have "\r" and "\n" turned into spaces, as addReplyErrorLength does.
 *
 * Who calls: the KV server program (one parser and one writer per connection), the engine
 * (commands.ts), the AOF (aof.ts), tests.
 */

import { checkInteger } from "../../src/errors.js";
import { copyOut, type StoreMemory } from "./memory.js";
import { formatInt, isSpace, parseLL } from "./numbers.js";

/** A command's arguments: argument i is buf[argOff[i] … argOff[i] + argLen[i]). */
export interface Argv {
  readonly argc: number;
  readonly buf: Uint8Array;
  readonly argOff: Int32Array;
  readonly argLen: Int32Array;
}

/** next(): no complete command is buffered yet; feed more bytes. */
export const RESP_NEED_MORE = 0;
/** next(): a command is ready in the parser's argv. */
export const RESP_COMMAND = 1;
/** next(): a protocol error; reply `error` and close the connection. */
export const RESP_ERROR = -1;

/** Redis's PROTO_INLINE_MAX_SIZE: longest line (inline request, count) without its end. */
export const PROTO_INLINE_MAX_SIZE = 64 * 1024;
/** Default longest bulk string (Redis: proto-max-bulk-len, 512 MiB there). */
export const DEFAULT_PROTO_MAX_BULK_LEN = 64 * 1024 * 1024;
/** Most arguments of one multibulk request. */
export const DEFAULT_MAX_MULTIBULK = 1024 * 1024;

export interface RespParserOptions {
  /** Longest bulk string accepted (bytes). Default 64 MiB. */
  readonly protoMaxBulkLen?: number;
  /** Most arguments in one multibulk request. Default 1024 × 1024. */
  readonly maxMultibulkLength?: number;
  /** Most bytes buffered at once (one request and what follows it). Default 2 × protoMaxBulkLen + 1 MiB. */
  readonly maxQueryBuffer?: number;
  /** Accept inline commands (default true; the AOF loader says false). */
  readonly inline?: boolean;
}

// parser states
const S_IDLE = 0;
const S_COUNT = 1; // reading "*N\r\n"
const S_BULKLEN = 2; // reading "$len\r\n"
const S_BULK = 3; // reading the bulk's bytes and "\r\n"
const S_DEAD = 4;

const CR = 13;
const LF = 10;
const STAR = 42;
const DOLLAR = 36;
const C0 = 48;
const C9 = 57;

/** The incremental RESP2 request parser of one connection (see the header). */
export class RespParser implements Argv {
  argc = 0;
  buf: Uint8Array;
  argOff: Int32Array;
  argLen: Int32Array;
  /** After RESP_ERROR: the error reply's text (without "-" and CRLF), e.g. "ERR Protocol error: invalid bulk length". */
  error = "";
  readonly protoMaxBulkLen: number;
  readonly maxMultibulkLength: number;
  readonly maxQueryBuffer: number;
  readonly inline: boolean;
  /** Start of the bytes not yet consumed, and end of the bytes buffered. */
  #r = 0;
  #w = 0;
  /** Bytes dropped from the front of the buffer since creation (so offsets stay absolute). */
  #shifted = 0;
  /** Start of the request being parsed (absolute offset = #shifted + #start). */
  #start = 0;
  #state = S_IDLE;
  #left = 0; // bulks still to read of the current multibulk
  #bulk = -1; // length of the bulk being read
  /** Where the search for the line end resumes (so a line that arrives byte by byte is scanned once). */
  #scan = 0;

  constructor(options: RespParserOptions = {}) {
    this.protoMaxBulkLen = checkInteger(
      "protoMaxBulkLen",
      options.protoMaxBulkLen ?? DEFAULT_PROTO_MAX_BULK_LEN,
      1,
      2 ** 30,
    );
    this.maxMultibulkLength = checkInteger(
      "maxMultibulkLength",
      options.maxMultibulkLength ?? DEFAULT_MAX_MULTIBULK,
      1,
      2 ** 26,
    );
    this.maxQueryBuffer = checkInteger(
      "maxQueryBuffer",
      options.maxQueryBuffer ?? 2 * this.protoMaxBulkLen + 1024 * 1024,
      PROTO_INLINE_MAX_SIZE + 2,
      2 ** 31 - 1,
    );
    this.inline = options.inline ?? true;
    this.buf = new Uint8Array(16 * 1024);
    this.argOff = new Int32Array(16);
    this.argLen = new Int32Array(16);
  }

  /** Bytes buffered and not yet consumed by a returned command. */
  get pending(): number {
    return this.#w - this.#r;
  }

  /** Bytes consumed by returned (or skipped) requests since the parser was made. */
  get consumed(): number {
    return this.#shifted + this.#r;
  }

  /** Is part of a request buffered (a command cut short at the end of the input so far)? */
  get midRequest(): boolean {
    return this.#w > this.#r || (this.#state !== S_IDLE && this.#state !== S_DEAD);
  }

  /** Has the parser stopped on a protocol error? */
  get failed(): boolean {
    return this.#state === S_DEAD;
  }

  /** Where the request now being parsed started (absolute byte offset in the input). */
  get requestStart(): number {
    return this.#shifted + (this.#state === S_IDLE ? this.#r : this.#start);
  }

  /** Where the command last returned by next() started (absolute byte offset in the input). */
  get commandStart(): number {
    return this.#shifted + this.#start;
  }

  /** Append input bytes. Invalidates the argv of the last command. */
  feed(chunk: Uint8Array, off = 0, len = chunk.length - off): void {
    if (len <= 0 || !this.#room(len)) return;
    this.buf.set(
      off === 0 && len === chunk.length ? chunk : chunk.subarray(off, off + len),
      this.#w,
    );
    this.#w += len;
  }

  /** Append `len` input bytes that sit at `va` in a process's memory (recv's buffer). */
  feedFromMemory(mem: StoreMemory, va: number, len: number): void {
    if (len <= 0 || !this.#room(len)) return;
    if ((va & 3) === 0) copyOut(mem, va, this.buf, this.#w, len);
    else this.buf.set(mem.readBytes(va, len), this.#w);
    this.#w += len;
  }

  /** Parse on: RESP_COMMAND (argv holds it), RESP_NEED_MORE, or RESP_ERROR (see `error`). */
  next(): number {
    for (;;) {
      switch (this.#state) {
        case S_IDLE: {
          this.argc = 0;
          if (this.#r === this.#w) {
            this.#shifted += this.#w; // offsets stay absolute
            this.#r = this.#w = 0; // nothing pending: start the buffer over
            this.#scan = 0;
            return RESP_NEED_MORE;
          }
          this.#start = this.#r;
          if (this.#scan < this.#r) this.#scan = this.#r;
          if (this.buf[this.#r] === STAR) {
            if (this.#wholeRequest()) return RESP_COMMAND;
            this.#state = S_COUNT;
          } else {
            const r = this.#inlineRequest();
            if (r !== RESP_COMMAND || this.argc > 0) return r;
          }
          break;
        }
        case S_COUNT: {
          const cr = this.#findCR();
          if (cr < 0) return this.#noLineEnd("too big mbulk count string");
          if (cr > this.#w - 2) return RESP_NEED_MORE; // the byte after "\r" has not come yet
          const n = parseLL(this.buf, this.#r + 1, cr - this.#r - 1);
          if (n === null || n > this.maxMultibulkLength)
            return this.#fail("invalid multibulk length");
          this.#r = cr + 2;
          this.#scan = this.#r;
          if (n <= 0) {
            this.#state = S_IDLE; // "*0" and "*-1": an empty request, skipped
            break;
          }
          this.#left = n as number;
          if (this.argOff.length < this.#left) this.#growArgv(this.#left);
          this.#state = S_BULKLEN;
          break;
        }
        case S_BULKLEN: {
          const cr = this.#findCR();
          if (cr < 0) return this.#noLineEnd("too big bulk count string");
          if (cr > this.#w - 2) return RESP_NEED_MORE;
          const c = this.buf[this.#r];
          if (c !== DOLLAR) {
            const shown = c === CR || c === LF ? " " : String.fromCharCode(c);
            return this.#fail(`expected '$', got '${shown}'`);
          }
          const n = parseLL(this.buf, this.#r + 1, cr - this.#r - 1);
          if (n === null || n < 0 || n > this.protoMaxBulkLen)
            return this.#fail("invalid bulk length");
          this.#r = cr + 2;
          this.#bulk = n as number;
          this.#state = S_BULK;
          if (this.#w - this.#r < this.#bulk + 2) this.#room(this.#bulk + 2 - (this.#w - this.#r));
          break;
        }
        case S_BULK: {
          if (this.#w - this.#r < this.#bulk + 2) return RESP_NEED_MORE;
          this.argOff[this.argc] = this.#r;
          this.argLen[this.argc] = this.#bulk;
          this.argc++;
          this.#r += this.#bulk + 2; // Redis skips the two bytes after a bulk unchecked
          this.#scan = this.#r;
          this.#bulk = -1;
          if (--this.#left === 0) {
            this.#state = S_IDLE;
            return RESP_COMMAND;
          }
          this.#state = S_BULKLEN;
          break;
        }
        default:
          return RESP_ERROR;
      }
    }
  }

  /**
   * The fast path of next(): a multibulk request at #r that is wholly buffered and plain — counts
   * and lengths of digits only with no leading zero, a count of at least 1, every '$' where it
   * belongs, every bulk complete — parsed in one pass. True with argv set and the request
   * consumed; false, with nothing changed, for anything else (cut short, malformed, over a
   * limit), which the state machine then parses from the start and answers as Redis does.
   */
  #wholeRequest(): boolean {
    const b = this.buf;
    const w = this.#w;
    let p = this.#r + 1;
    let n = 0;
    const digits = p;
    for (; p < w && b[p] >= C0 && b[p] <= C9; p++) n = n * 10 + (b[p] - C0);
    if (p === digits || p - digits > 7 || b[digits] === C0 || p > w - 2 || b[p] !== CR)
      return false;
    if (n > this.maxMultibulkLength) return false;
    p += 2; // "\r" and the byte after it, unchecked (as the state machine and Redis do)
    if (this.argOff.length < n) this.#growArgv(n);
    const argOff = this.argOff;
    const argLen = this.argLen;
    for (let i = 0; i < n; i++) {
      if (p >= w || b[p] !== DOLLAR) return false;
      const from = ++p;
      let len = 0;
      for (; p < w && b[p] >= C0 && b[p] <= C9; p++) len = len * 10 + (b[p] - C0);
      const nd = p - from;
      if (nd === 0 || nd > 10 || (nd > 1 && b[from] === C0) || p > w - 2 || b[p] !== CR)
        return false;
      if (len > this.protoMaxBulkLen) return false;
      p += 2;
      if (w - p < len + 2) return false;
      argOff[i] = p;
      argLen[i] = len;
      p += len + 2; // the two bytes after a bulk, unchecked
    }
    this.argc = n;
    this.#start = this.#r;
    this.#r = p;
    this.#scan = p;
    return true;
  }

  /** One inline request at #r: RESP_COMMAND (argc may be 0: an empty line), NEED_MORE or ERROR. */
  #inlineRequest(): number {
    if (!this.inline) {
      const c = this.buf[this.#r];
      return this.#fail(
        `expected '*', got '${c === CR || c === LF ? " " : String.fromCharCode(c)}'`,
      );
    }
    const buf = this.buf;
    let nl = -1;
    for (let i = this.#scan; i < this.#w; i++) {
      if (buf[i] === LF) {
        nl = i;
        break;
      }
    }
    if (nl < 0) {
      this.#scan = this.#w;
      return this.#noLineEnd("too big inline request");
    }
    let end = nl;
    if (end > this.#r && buf[end - 1] === CR) end--;
    if (!this.#splitArgs(this.#r, end)) return this.#fail("unbalanced quotes in request");
    this.#r = nl + 1;
    this.#scan = this.#r;
    return RESP_COMMAND;
  }

  /**
   * sdssplitargs over buf[p … end), unescaping in place: argument bytes are written at w ≤ p.
   * A NUL ends the line (sdssplitargs reads a C string). False on unbalanced quotes.
   */
  #splitArgs(p: number, end: number): boolean {
    const b = this.buf;
    for (let i = p; i < end; i++) {
      if (b[i] === 0) {
        end = i;
        break;
      }
    }
    let w = p;
    this.argc = 0;
    for (;;) {
      while (p < end && isSpace(b[p])) p++;
      if (p >= end) return true;
      let inq = false;
      let insq = false;
      const start = w;
      for (let done = false; !done; ) {
        const c = this.#ch(p, end);
        if (inq) {
          if (
            c === 92 &&
            this.#ch(p + 1, end) === 120 &&
            isHex(this.#ch(p + 2, end)) &&
            isHex(this.#ch(p + 3, end))
          ) {
            b[w++] = hexVal(this.#ch(p + 2, end)) * 16 + hexVal(this.#ch(p + 3, end));
            p += 3;
          } else if (c === 92 && this.#ch(p + 1, end) !== 0) {
            p++;
            const e = b[p];
            b[w++] =
              e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 98 ? 8 : e === 97 ? 7 : e;
          } else if (c === 34) {
            if (this.#ch(p + 1, end) !== 0 && !isSpace(this.#ch(p + 1, end))) return false; // closing quote + junk
            done = true;
          } else if (c === 0) {
            return false; // unterminated quotes
          } else b[w++] = c;
        } else if (insq) {
          if (c === 92 && this.#ch(p + 1, end) === 39) {
            p++;
            b[w++] = 39;
          } else if (c === 39) {
            if (this.#ch(p + 1, end) !== 0 && !isSpace(this.#ch(p + 1, end))) return false;
            done = true;
          } else if (c === 0) {
            return false;
          } else b[w++] = c;
        } else if (c === 32 || c === LF || c === CR || c === 9 || c === 0) {
          done = true;
        } else if (c === 34) {
          inq = true;
        } else if (c === 39) {
          insq = true;
        } else b[w++] = c;
        if (c !== 0) p++;
      }
      if (this.argc === this.argOff.length) this.#growArgv(this.argc + 1);
      this.argOff[this.argc] = start;
      this.argLen[this.argc] = w - start;
      this.argc++;
    }
  }

  /** Byte i of the line, or 0 at and past its end (sdssplitargs sees a C string). */
  #ch(i: number, end: number): number {
    return i < end ? this.buf[i] : 0;
  }

  #findCR(): number {
    const b = this.buf;
    for (let i = this.#scan; i < this.#w; i++) if (b[i] === CR) return i;
    this.#scan = this.#w;
    return -1;
  }

  /** No line end in what is buffered: wait for more, unless the line is already too long. */
  #noLineEnd(what: string): number {
    return this.#w - this.#r > PROTO_INLINE_MAX_SIZE ? this.#fail(what) : RESP_NEED_MORE;
  }

  #fail(what: string): number {
    this.error = `ERR Protocol error: ${what}`;
    this.#state = S_DEAD;
    this.argc = 0;
    return RESP_ERROR;
  }

  #growArgv(n: number): void {
    let cap = this.argOff.length;
    while (cap < n) cap *= 2;
    const off = new Int32Array(cap);
    const len = new Int32Array(cap);
    off.set(this.argOff.subarray(0, this.argc));
    len.set(this.argLen.subarray(0, this.argc));
    this.argOff = off;
    this.argLen = len;
  }

  /** Make room for `extra` more bytes past #w: drop consumed bytes, then grow. False: over the limit (the parser is dead). */
  #room(extra: number): boolean {
    if (this.#state === S_DEAD) return false;
    const keep = this.#state === S_IDLE ? this.#r : this.#start;
    if (this.#w - keep + extra > this.maxQueryBuffer) {
      this.#fail("query buffer limit exceeded");
      this.#r = this.#w = this.#start = this.#scan = 0;
      return false;
    }
    if (this.#w + extra <= this.buf.length) return true;
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.#w);
      for (let i = 0; i < this.argc; i++) this.argOff[i] -= keep;
      this.#r -= keep;
      this.#w -= keep;
      this.#start -= keep;
      this.#scan -= keep;
      this.#shifted += keep;
    }
    if (this.#w + extra <= this.buf.length) return true;
    let cap = this.buf.length;
    while (cap < this.#w + extra) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.#w));
    this.buf = nb;
    return true;
  }
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

function hexVal(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}

// ---------------------------------------------------------------------------------------------
// Argv from strings

const utf8 = new TextEncoder();
/** Scratch for an integer's digits (bulkInt). */
const DIGITS = new Uint8Array(24);

/** An Argv built from strings or byte arrays (strings are UTF-8). */
export class ArgvBuilder implements Argv {
  argc = 0;
  buf: Uint8Array;
  argOff: Int32Array;
  argLen: Int32Array;

  constructor(args: ReadonlyArray<string | Uint8Array> = []) {
    this.buf = new Uint8Array(256);
    this.argOff = new Int32Array(8);
    this.argLen = new Int32Array(8);
    this.set(args);
  }

  /** Replace the arguments. */
  set(args: ReadonlyArray<string | Uint8Array>): this {
    const parts = args.map((a) => (typeof a === "string" ? utf8.encode(a) : a));
    const total = parts.reduce((s, p) => s + p.length, 0);
    if (this.buf.length < total) this.buf = new Uint8Array(total);
    if (this.argOff.length < parts.length) {
      this.argOff = new Int32Array(parts.length);
      this.argLen = new Int32Array(parts.length);
    }
    let o = 0;
    parts.forEach((p, i) => {
      this.buf.set(p, o);
      this.argOff[i] = o;
      this.argLen[i] = p.length;
      o += p.length;
    });
    this.argc = parts.length;
    return this;
  }
}

/** Argument i of an Argv as a fresh byte array (tests and slow paths). */
export function argBytes(a: Argv, i: number): Uint8Array {
  return a.buf.slice(a.argOff[i], a.argOff[i] + a.argLen[i]);
}

/** Argument i as a latin1 string (one char per byte; tests and slow paths). */
export function argString(a: Argv, i: number): string {
  let s = "";
  const o = a.argOff[i];
  for (let k = 0; k < a.argLen[i]; k++) s += String.fromCharCode(a.buf[o + k]);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Writer

/** A growable output buffer that RESP2 replies are encoded into (see the header). */
export class RespWriter {
  buf: Uint8Array;
  length = 0;

  constructor(initialBytes = 16 * 1024) {
    this.buf = new Uint8Array(checkInteger("initialBytes", initialBytes, 16, 2 ** 30));
  }

  /** The encoded bytes (a view; valid until the next write or reset). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /** Forget what was written (keeps the buffer, unless it grew past `keep` bytes). */
  reset(keep = 1024 * 1024): void {
    this.length = 0;
    if (this.buf.length > keep) this.buf = new Uint8Array(keep);
  }

  /** Make room for n more bytes. */
  ensure(n: number): void {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.length));
    this.buf = nb;
  }

  /** Raw bytes, unframed. */
  raw(b: Uint8Array, off = 0, len = b.length - off): void {
    this.ensure(len);
    this.#copy(b, off, len);
  }

  /** Copy b[off … off+len) to the end (room made); short strings byte by byte, so no view is made. */
  #copy(b: Uint8Array, off: number, len: number): void {
    const d = this.buf;
    const at = this.length;
    if (len <= 64) for (let i = 0; i < len; i++) d[at + i] = b[off + i];
    else d.set(len === b.length && off === 0 ? b : b.subarray(off, off + len), at);
    this.length = at + len;
  }

  /** Raw ASCII text (one byte per char code; callers pass ASCII or latin1). */
  ascii(s: string): void {
    this.ensure(s.length);
    const b = this.buf;
    let p = this.length;
    for (let i = 0; i < s.length; i++) b[p++] = s.charCodeAt(i);
    this.length = p;
  }

  #crlf(): void {
    this.ensure(2);
    this.buf[this.length++] = CR;
    this.buf[this.length++] = LF;
  }

  #int(n: number | bigint): void {
    this.ensure(21);
    this.length += formatInt(n, this.buf, this.length);
  }

  /** "+text\r\n". */
  simple(s: string): void {
    this.ensure(s.length + 3);
    this.buf[this.length++] = 43;
    this.ascii(s);
    this.#crlf();
  }

  /** "-text\r\n" ("\r" and "\n" inside become spaces). Text is latin1. */
  error(s: string): void {
    this.ensure(s.length + 3);
    const b = this.buf;
    let p = this.length;
    b[p++] = 45;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      b[p++] = c === CR || c === LF ? 32 : c;
    }
    this.length = p;
    this.#crlf();
  }

  /** ":n\r\n" (an int64: a safe integer or a bigint). */
  integer(n: number | bigint): void {
    this.ensure(24);
    this.buf[this.length++] = 58;
    this.#int(n);
    this.#crlf();
  }

  /** "$len\r\n" + b[off … off+len) + "\r\n". */
  bulk(b: Uint8Array, off: number, len: number): void {
    this.ensure(len + 16);
    this.buf[this.length++] = DOLLAR;
    this.#int(len);
    this.#crlf();
    this.#copy(b, off, len);
    this.#crlf();
  }

  /** A bulk string of ASCII / latin1 text. */
  bulkAscii(s: string): void {
    this.ensure(s.length + 16);
    this.buf[this.length++] = DOLLAR;
    this.#int(s.length);
    this.#crlf();
    this.ascii(s);
    this.#crlf();
  }

  /** A bulk string of UTF-8 text. */
  bulkText(s: string): void {
    const b = utf8.encode(s);
    this.bulk(b, 0, b.length);
  }

  /** A bulk string of the decimal form of an integer. */
  bulkInt(n: number | bigint): void {
    const len = formatInt(n, DIGITS, 0);
    this.bulk(DIGITS, 0, len);
  }

  /** A bulk string copied straight from a process's memory (va 4-aligned). */
  bulkFromMemory(mem: StoreMemory, va: number, len: number): void {
    this.ensure(len + 16);
    this.buf[this.length++] = DOLLAR;
    this.#int(len);
    this.#crlf();
    copyOut(mem, va, this.buf, this.length, len);
    this.length += len;
    this.#crlf();
  }

  /** "$-1\r\n". */
  nullBulk(): void {
    this.ascii("$-1\r\n");
  }

  /** "*n\r\n". */
  array(n: number): void {
    this.ensure(24);
    this.buf[this.length++] = STAR;
    this.#int(n);
    this.#crlf();
  }

  /** "*-1\r\n". */
  nullArray(): void {
    this.ascii("*-1\r\n");
  }

  /** A whole command as a multibulk request (the AOF's form): "*argc" and one bulk per argument. */
  command(a: Argv, from = 0, to = a.argc): void {
    this.array(to - from);
    for (let i = from; i < to; i++) this.bulk(a.buf, a.argOff[i], a.argLen[i]);
  }
}
