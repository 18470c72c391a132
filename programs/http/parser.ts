/**
 * parser: the incremental HTTP/1.1 request parser (RFC 9112). It reads the connection's
 * ByteQueue in place, consumes what it has parsed, and stops at every point the connection
 * must act on:
 *
 *   parse(q) → P_NEED_MORE   nothing complete yet; all bytes seen are accounted for
 *            → P_HEAD        the head of a request with a body is complete (time for a
 *                            "100 Continue"); call parse again to read the body
 *            → P_MESSAGE     a whole request is ready: take() it, then parse the next one
 *            → P_ERROR       the request is malformed or over a limit: `errorStatus` says
 *                            which status to answer; the connection must close (the framing
 *                            of whatever follows is unknown)
 *
 * Chunk boundaries do not matter: the parser keeps how far it has scanned the current line, so
 * bytes fed one at a time cost the same as bytes fed at once, and the result is the same for
 * every split of the stream (test/http-parse.test.ts checks that with fast-check).
 *
 * Bounded memory, whatever the peer sends: a line is consumed as soon as it is complete, the
 * request line plus the header fields may not exceed `maxHeadBytes` (431; 414 when it is the
 * request-target that runs over, or the target alone exceeds `maxUriBytes`), there are at most
 * `maxHeaders` field lines (431), the body is at most `maxBodyBytes` (413, decided from
 * Content-Length or the chunk size before the bytes arrive), a chunk-size line at most
 * MAX_CHUNK_LINE bytes (400). So a connection holds at most one partial line and one body.
 *
 * Strictness, where RFC 9112 lets a server choose: a bare LF ends a start or field line (§2.2)
 * but not a chunk-size line nor chunk data (which must end in CRLF, §7.1 — lenient chunk
 * framing is the classic request-smuggling hole); whitespace before a field's colon and obs-fold
 * are 400 (§5.1, §5.2); Content-Length and Transfer-Encoding together are 400 (stricter than
 * §6.3, which allows dropping Content-Length); a Transfer-Encoding whose final coding is not
 * chunked is 400 (§6.3), other codings before chunked 501 (§6.1); an HTTP/1.1 request without
 * exactly one Host is 400 (§3.2); an expectation other than 100-continue is 417 (RFC 9110
 * §10.1.1); a well-formed version other than 1.x is 505. Chunk extensions and trailer fields are
 * checked for syntax and dropped (§7.1.1, §7.1.2).
 *
 * A keep-alive client repeats itself: the method, target and field strings of the previous
 * request are handed out again when the bytes at hand spell them (names in any case), compared
 * in place instead of made anew (test/http-reuse.test.ts).
 *
 * Owned by one connection (programs/http/connection.ts); tests drive it directly.
 */

import type { ByteQueue } from "./bytes.js";
import { HttpHeaders } from "./message.js";

export const P_NEED_MORE = 0;
export const P_HEAD = 1;
export const P_MESSAGE = 2;
export const P_ERROR = 3;

/** Longest chunk-size line, extensions included (RFC 9112 §7.1.1 lets a server bound them). */
export const MAX_CHUNK_LINE = 4096;

/** The limits a parser enforces; see the header comment for the status of each. */
export interface HttpLimits {
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  readonly maxBodyBytes: number;
  readonly maxUriBytes: number;
}

/** A complete request as the parser hands it over. */
export interface ParsedRequest {
  readonly method: string;
  readonly target: string;
  /** HTTP/1.minor: 1 for any 1.x with x >= 1, else 0. */
  readonly minor: number;
  readonly headers: HttpHeaders;
  readonly body: Uint8Array;
  /** The connection may stay open after the response (RFC 9112 §9.3). */
  readonly keepAlive: boolean;
}

// Parser states. The line states keep `#scan`: bytes of the current line already searched.
const S_START_LINE = 0;
const S_FIELDS = 1;
const S_BODY = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_DATA = 4;
const S_CHUNK_END = 5;
const S_TRAILERS = 6;
const S_DONE = 7;
const S_FAILED = 8;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;

/** tchar (RFC 9110 §5.6.2): the bytes of a token. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** A field-value byte (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text; no other control. */
function fieldByte(c: number): boolean {
  return c === HTAB || (c >= SP && c !== 0x7f);
}

/** The value of a hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

const EMPTY = new Uint8Array(0);
/** Body scratch kept between requests; a larger one is given back after its request. */
const SCRATCH_KEEP = 64 * 1024;

export class RequestParser {
  /** The status to answer after P_ERROR. */
  errorStatus = 0;
  /** After P_HEAD: the client waits for "100 Continue" before it sends the body. */
  expectContinue = false;

  readonly #limits: HttpLimits;
  #state = S_START_LINE;
  #scan = 0;
  #headBytes = 0;
  #fieldCount = 0;

  // The head being parsed.
  #method = "";
  #target = "";
  #minor = 1;
  #fields: string[] = [];
  /**
   * The previous request's method, target and fields (read only: the fields array belongs to
   * that request's HttpHeaders now): a string equal to the bytes at hand is reused, not made.
   */
  #lastMethod = "";
  #lastTarget = "";
  #lastFields: readonly string[] = [];
  #hosts = 0;
  #contentLength = -1;
  #teCodings = 0;
  #teChunked = 0;
  #teLastChunked = false;
  #connectionClose = false;
  #connectionKeepAlive = false;
  #expect100 = false;
  #expectOther = false;
  #keepAlive = true;

  // The body being read.
  #remaining = 0;
  #body: Uint8Array = EMPTY;
  #bodyLength = 0;

  constructor(limits: HttpLimits) {
    this.#limits = limits;
  }

  /** Body bytes held (the partial body of the request being read). */
  get heldBytes(): number {
    return this.#body.length;
  }

  /** True between requests: no byte of the next request has been consumed. */
  get idle(): boolean {
    return this.#state === S_START_LINE && this.#headBytes === 0 && this.#scan === 0;
  }

  /** Parse as far as the bytes in `q` go; see the header comment for the results. */
  parse(q: ByteQueue): number {
    for (;;) {
      switch (this.#state) {
        case S_START_LINE:
        case S_FIELDS:
        case S_TRAILERS: {
          const r = this.#line(q);
          if (r !== -1) return r;
          break;
        }
        case S_BODY:
          if (!this.#copyBody(q)) return P_NEED_MORE;
          this.#state = S_DONE;
          return P_MESSAGE;
        case S_CHUNK_SIZE: {
          const r = this.#chunkSize(q);
          if (r !== -1) return r;
          break;
        }
        case S_CHUNK_DATA:
          if (!this.#copyBody(q)) return P_NEED_MORE;
          this.#state = S_CHUNK_END;
          break;
        case S_CHUNK_END: {
          if (q.length < 2) {
            if (q.length === 1 && q.buf[q.start] !== CR) return this.#fail(400);
            return P_NEED_MORE;
          }
          if (q.buf[q.start] !== CR || q.buf[q.start + 1] !== LF) return this.#fail(400);
          q.consume(2);
          this.#state = S_CHUNK_SIZE;
          break;
        }
        case S_DONE:
          return P_MESSAGE;
        default:
          return P_ERROR;
      }
    }
  }

  /** After P_MESSAGE: the request; the parser is then ready for the next one. */
  take(): ParsedRequest {
    const body = this.#bodyLength === 0 ? EMPTY : this.#body.slice(0, this.#bodyLength);
    const request: ParsedRequest = {
      method: this.#method,
      target: this.#target,
      minor: this.#minor,
      headers: new HttpHeaders(this.#fields),
      body,
      keepAlive: this.#keepAlive,
    };
    if (this.#body.length > SCRATCH_KEEP) this.#body = EMPTY;
    this.#lastFields = this.#fields;
    this.#startMessage();
    return request;
  }

  /** Read one line of the head or the trailers; -1 to go on, else a P_ result. */
  #line(q: ByteQueue): number {
    const lf = q.indexOf(LF, this.#scan);
    const max = this.#limits.maxHeadBytes;
    if (lf < 0) {
      this.#scan = q.length;
      if (this.#headBytes + q.length <= max) return P_NEED_MORE;
      return this.#fail(this.#state === S_START_LINE ? this.#startLineOverflow(q, q.length) : 431);
    }
    this.#headBytes += lf + 1;
    if (this.#headBytes > max) {
      return this.#fail(this.#state === S_START_LINE ? this.#startLineOverflow(q, lf) : 431);
    }
    const end = lf > 0 && q.buf[q.start + lf - 1] === CR ? lf - 1 : lf;
    let r: number;
    if (this.#state === S_START_LINE) {
      r = end === 0 ? -1 : this.#requestLine(q, end); // empty lines before a request: skipped (§2.2)
    } else if (end === 0) {
      r = this.#state === S_FIELDS ? this.#endOfHead() : this.#endOfTrailers();
    } else {
      r = this.#fieldLine(q, end);
    }
    if (this.#state !== S_FAILED) {
      q.consume(lf + 1);
      this.#scan = 0;
    }
    return r;
  }

  /**
   * Which status a request line that runs past the head limit gets (`len` bytes of it so far):
   * 414 if it is the target that is too long or still running, 400 for an absurd method or
   * version, else 431.
   */
  #startLineOverflow(q: ByteQueue, len: number): number {
    const sp1 = q.indexOf(SP, 0);
    if (sp1 < 0 || sp1 >= len) return 400;
    const sp2 = q.indexOf(SP, sp1 + 1);
    if (sp2 < 0 || sp2 >= len || sp2 - sp1 - 1 > this.#limits.maxUriBytes) return 414;
    return len - sp2 - 1 > 9 ? 400 : 431; // "HTTP/1.1" and perhaps a CR
  }

  /** method SP request-target SP HTTP-version (RFC 9112 §3). */
  #requestLine(q: ByteQueue, end: number): number {
    const b = q.buf;
    const s = q.start;
    let i = 0;
    while (i < end && TCHAR[b[s + i]!] === 1) i++;
    if (i === 0 || i >= end || b[s + i] !== SP) return this.#fail(400);
    const methodEnd = i++;
    const targetStart = i;
    while (i < end && b[s + i]! > SP && b[s + i]! < 0x7f) i++;
    if (i - targetStart > this.#limits.maxUriBytes) return this.#fail(414);
    if (i === targetStart || i >= end || b[s + i] !== SP) return this.#fail(400);
    const targetEnd = i++;
    // HTTP-version = "HTTP/" DIGIT "." DIGIT (§2.3), exactly.
    if (
      end - i !== 8 ||
      b[s + i] !== 0x48 ||
      b[s + i + 1] !== 0x54 ||
      b[s + i + 2] !== 0x54 ||
      b[s + i + 3] !== 0x50 ||
      b[s + i + 4] !== 0x2f ||
      b[s + i + 6] !== 0x2e
    ) {
      return this.#fail(400);
    }
    const major = b[s + i + 5]! - 0x30;
    const minor = b[s + i + 7]! - 0x30;
    if (major < 0 || major > 9 || minor < 0 || minor > 9) return this.#fail(400);
    if (major !== 1) return this.#fail(505);
    this.#method = q.latin1Same(0, methodEnd, this.#lastMethod);
    this.#target = q.latin1Same(targetStart, targetEnd, this.#lastTarget);
    this.#lastMethod = this.#method;
    this.#lastTarget = this.#target;
    this.#minor = minor === 0 ? 0 : 1; // HTTP/1.2 and up are answered as 1.1 (RFC 9110 §6.2)
    this.#state = S_FIELDS;
    return -1;
  }

  /** field-name ":" OWS field-value OWS (RFC 9112 §5); kept in the head, dropped in trailers. */
  #fieldLine(q: ByteQueue, end: number): number {
    const b = q.buf;
    const s = q.start;
    if (++this.#fieldCount > this.#limits.maxHeaders) return this.#fail(431);
    let i = 0;
    while (i < end && TCHAR[b[s + i]!] === 1) i++;
    // Also refuses obs-fold (a line that starts with SP/HTAB) and "Name :" (§5.1, §5.2).
    if (i === 0 || i >= end || b[s + i] !== COLON) return this.#fail(400);
    const nameEnd = i++;
    while (i < end && (b[s + i] === SP || b[s + i] === HTAB)) i++;
    let ve = end;
    while (ve > i && (b[s + ve - 1] === SP || b[s + ve - 1] === HTAB)) ve--;
    for (let k = i; k < ve; k++) if (!fieldByte(b[s + k]!)) return this.#fail(400);
    if (this.#state === S_TRAILERS) return -1;
    // The previous request's field line at the same place, if any: most often the same bytes.
    const k = this.#fields.length;
    const last = this.#lastFields;
    const name =
      k < last.length ? q.lowerSame(0, nameEnd, last[k]!) : q.latin1(0, nameEnd).toLowerCase();
    const value = k < last.length ? q.latin1Same(i, ve, last[k + 1]!) : q.latin1(i, ve);
    this.#fields.push(name, value);
    return this.#noteField(name, value);
  }

  /** Record the fields that decide framing and persistence; -1, or a P_ERROR. */
  #noteField(name: string, value: string): number {
    switch (name) {
      case "host":
        this.#hosts++;
        break;
      case "content-length":
        // 1*DIGIT; a list of identical values ("5, 5") is one length (RFC 9110 §8.6).
        for (const member of value.split(",")) {
          const v = member.trim();
          if (!/^\d{1,16}$/.test(v)) return this.#fail(400);
          const n = Number(v);
          if (this.#contentLength >= 0 && this.#contentLength !== n) return this.#fail(400);
          this.#contentLength = n;
        }
        break;
      case "transfer-encoding":
        for (const member of value.split(",")) {
          const coding = member.trim().toLowerCase();
          if (coding === "") continue;
          this.#teCodings++;
          this.#teLastChunked = coding === "chunked";
          if (this.#teLastChunked) this.#teChunked++;
        }
        break;
      case "connection":
        for (const member of value.split(",")) {
          const option = member.trim().toLowerCase();
          if (option === "close") this.#connectionClose = true;
          else if (option === "keep-alive") this.#connectionKeepAlive = true;
        }
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") this.#expect100 = true;
        else this.#expectOther = true;
        break;
    }
    return -1;
  }

  /** The empty line after the fields: decide framing (RFC 9112 §6.3) and persistence (§9.3). */
  #endOfHead(): number {
    const minor = this.#minor;
    if (this.#hosts > 1 || (minor === 1 && this.#hosts === 0)) return this.#fail(400);
    const chunked = this.#teCodings > 0;
    if (chunked) {
      if (this.#contentLength >= 0) return this.#fail(400);
      if (!this.#teLastChunked || this.#teChunked !== 1) return this.#fail(400);
      if (this.#teCodings > 1) return this.#fail(501); // gzip, chunked: not implemented here
    }
    if (this.#contentLength > this.#limits.maxBodyBytes) return this.#fail(413);
    if (this.#expectOther) return this.#fail(417);
    // HTTP/1.1 persists unless "close"; 1.0 only if asked; a 1.0 chunked body is suspect (§6.1).
    this.#keepAlive =
      !this.#connectionClose &&
      (minor === 1 ? true : this.#connectionKeepAlive) &&
      !(chunked && minor === 0);
    const hasBody = chunked || this.#contentLength > 0;
    // A 100-continue expectation in HTTP/1.0 is ignored (RFC 9110 §10.1.1).
    this.expectContinue = hasBody && this.#expect100 && minor === 1;
    if (chunked) {
      this.#state = S_CHUNK_SIZE;
      return P_HEAD;
    }
    if (this.#contentLength > 0) {
      this.#remaining = this.#contentLength;
      this.#state = S_BODY;
      return P_HEAD;
    }
    this.#state = S_DONE;
    return P_MESSAGE;
  }

  /** The empty line after the trailer fields: the chunked message is complete. */
  #endOfTrailers(): number {
    this.#state = S_DONE;
    return P_MESSAGE;
  }

  /** chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1); -1 to go on, else a P_ result. */
  #chunkSize(q: ByteQueue): number {
    const lf = q.indexOf(LF, this.#scan);
    if (lf < 0) {
      this.#scan = q.length;
      return q.length > MAX_CHUNK_LINE ? this.#fail(400) : P_NEED_MORE;
    }
    const b = q.buf;
    const s = q.start;
    if (lf > MAX_CHUNK_LINE || lf === 0 || b[s + lf - 1] !== CR) return this.#fail(400);
    const end = lf - 1;
    const room = this.#limits.maxBodyBytes - this.#bodyLength;
    let size = 0;
    let i = 0;
    for (; i < end; i++) {
      const v = hexValue(b[s + i]!);
      if (v < 0) break;
      size = size * 16 + v;
      if (size > room) return this.#fail(413);
    }
    if (i === 0) return this.#fail(400);
    while (i < end && (b[s + i] === SP || b[s + i] === HTAB)) i++; // BWS before ";"
    if (i < end && b[s + i] !== SEMI) return this.#fail(400);
    for (; i < end; i++) if (!fieldByte(b[s + i]!)) return this.#fail(400); // extensions: dropped
    q.consume(lf + 1);
    this.#scan = 0;
    if (size === 0) {
      // last-chunk: the trailer section follows, bounded like the head.
      this.#state = S_TRAILERS;
      this.#headBytes = 0;
      this.#fieldCount = 0;
    } else {
      this.#remaining = size;
      this.#state = S_CHUNK_DATA;
    }
    return -1;
  }

  /** Move body bytes from `q` into the body; true once `#remaining` reaches 0. */
  #copyBody(q: ByteQueue): boolean {
    const n = Math.min(this.#remaining, q.length);
    if (n > 0) {
      const need = this.#bodyLength + n;
      if (need > this.#body.length) {
        // Grow by doubling, never past the limit (the framing checks keep need <= limit).
        let size = Math.max(this.#body.length * 2, 4096);
        while (size < need) size *= 2;
        const grown = new Uint8Array(Math.min(size, this.#limits.maxBodyBytes));
        grown.set(this.#body.subarray(0, this.#bodyLength));
        this.#body = grown;
      }
      q.buf.copy(this.#body, this.#bodyLength, q.start, q.start + n);
      this.#bodyLength = need;
      this.#remaining -= n;
      q.consume(n);
    }
    return this.#remaining === 0;
  }

  #fail(status: number): number {
    this.errorStatus = status;
    this.#state = S_FAILED;
    this.#body = EMPTY;
    return P_ERROR;
  }

  #startMessage(): void {
    this.#state = S_START_LINE;
    this.#scan = 0;
    this.#headBytes = 0;
    this.#fieldCount = 0;
    this.#method = "";
    this.#target = "";
    this.#minor = 1;
    this.#fields = [];
    this.#hosts = 0;
    this.#contentLength = -1;
    this.#teCodings = 0;
    this.#teChunked = 0;
    this.#teLastChunked = false;
    this.#connectionClose = false;
    this.#connectionKeepAlive = false;
    this.#expect100 = false;
    this.#expectOther = false;
    this.#keepAlive = true;
    this.expectContinue = false;
    this.#remaining = 0;
    this.#bodyLength = 0;
  }
}
