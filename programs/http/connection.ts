/**
 * connection: the HTTP/1.1 engine of one connection — bytes in, bytes out, transport-agnostic.
 * The server program runs one per accepted socket, inside that connection's green thread:
 *
 *   const conn = engine.connection();
 *   for (;;) {
 *     while (conn.pending) {                      // else pull would return null: skip it
 *       const out = yield* conn.pull();
 *       if (out === null) break;
 *       send(out);
 *     }
 *     if (conn.done) break;                       // close the socket
 *     const bytes = recv();                       // at end of stream: conn.end()
 *     conn.feed(bytes);                           // or conn.feedFromMemory(mem, va, n)
 *   }
 *
 * (serveConnection below is that loop over a {@link Transport}.) `pull` is a generator of the
 * green-thread protocol: it runs route handlers and StaticFiles calls with `yield*`, so their
 * syscalls park only this green thread. Each chunk it returns is a view of the connection's
 * output buffer, valid until the next pull: send or copy it first.
 *
 * Vocabulary: a *request* is parsed (programs/http/parser.ts) and answered by a *response*:
 * a head written into the output buffer and a *body stream* (a file range, bytes, or a
 * producer of pieces) that pull drains a chunk at a time, so a large file never sits in
 * memory. Responses leave in request order; small ones of a pipeline share one chunk.
 *
 * Invariants:
 * - The parser runs only when no body stream is open, so responses cannot interleave.
 * - After a response that must close (Connection: close, HTTP/1.0 without keep-alive, a parse
 *   error, a close-delimited body, a file that shrank under us) the connection takes no more
 *   input: `feed` drops bytes, pull flushes what is staged and then reports `done`.
 * - Memory is bounded by the limits: one partial line or body in the parser, the unparsed
 *   bytes of one recv, and one output chunk (bufferedBytes reports the total).
 * - Errors a handler or a StaticFiles call throws become a 500 and the connection goes on;
 *   a PanicError (a broken invariant of the machine) is never caught (src/errors.ts).
 *
 * Per request, what repeats is not redone: a target equal to the last one reuses its decoded
 * path and query; the head's status line, Server, Date and fields are encoded once per change
 * (Date: once a second) and copied; a frozen headers object (jsonNow's) is checked and rendered
 * once; a string body is encoded straight into the output buffer; a route whose handler is a
 * plain function is answered with no generator of the engine's. `pending` tells the server
 * when a pull would only return null, so it goes straight to recv.
 *
 * Rejected: parsing eagerly in `feed` (a pipeline would queue unbounded parsed requests) and
 * callbacks for file reads (a callback cannot park a green thread on a syscall).
 */

import { Buffer } from "node:buffer";
import { checkInteger, InvalidArgumentError, PanicError } from "../../src/errors.js";
import { ByteQueue, OutputBuffer } from "./bytes.js";
import { DateCache } from "./date.js";
import type { BodyProducer, Green, HandlerResponse, HttpRequest, StaticFiles } from "./message.js";
import {
  type HttpLimits,
  P_HEAD,
  P_MESSAGE,
  P_NEED_MORE,
  type ParsedRequest,
  RequestParser,
} from "./parser.js";
import { Routes } from "./routes.js";
import { planStatic, type StaticReply } from "./static.js";
import { errorPage, reasonPhrase } from "./status.js";
import { decodePath, targetPath, targetQuery } from "./target.js";

/** Where {@link HttpConnection.feedFromMemory} copies from: a process's memory (the libOS's). */
export interface MemoryReader {
  /** Copy `len` bytes at `va` into dst[off…]. */
  readInto(va: number, dst: Uint8Array, off: number, len: number): void;
}

/** Options of an {@link HttpEngine}; every limit is checked when the engine is made. */
export interface HttpOptions {
  /** Where static files come from. */
  readonly files: StaticFiles;
  /** Dynamic routes; paths without one are static files. */
  readonly routes?: Routes;
  /** Request line + header fields, in bytes (default 8 KiB; over it: 431). */
  readonly maxHeadBytes?: number;
  /** Header field lines (default 100; over it: 431). */
  readonly maxHeaders?: number;
  /** Request body, in bytes (default 1 MiB; over it: 413). */
  readonly maxBodyBytes?: number;
  /** Request-target, in bytes (default 8 KiB; over it: 414). */
  readonly maxUriBytes?: number;
  /** Preferred size of an output chunk and of a file read (default 64 KiB). */
  readonly outputBytes?: number;
  /** The clock for Date and the weak-ETag rule, in ms since the epoch (default Date.now). */
  readonly now?: () => number;
  /** Told of every error that became a 500 (the server may log it). */
  readonly onError?: (error: unknown, request: HttpRequest) => void;
}

export const DEFAULT_LIMITS: HttpLimits = {
  maxHeadBytes: 8 * 1024,
  maxHeaders: 100,
  maxBodyBytes: 1024 * 1024,
  maxUriBytes: 8 * 1024,
};
export const DEFAULT_OUTPUT_BYTES = 64 * 1024;

/** The settings every connection of one server shares; make it once, before accepting. */
export class HttpEngine {
  readonly files: StaticFiles;
  readonly routes: Routes;
  readonly limits: HttpLimits;
  readonly outputBytes: number;
  readonly date: DateCache;
  readonly onError: ((error: unknown, request: HttpRequest) => void) | null;

  constructor(options: HttpOptions) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("http options must be an object");
    }
    const files = options.files as Partial<StaticFiles> | undefined;
    if (typeof files?.stat !== "function" || typeof files.read !== "function") {
      throw new InvalidArgumentError("files must be a StaticFiles with stat and read generators");
    }
    if (options.routes !== undefined && !(options.routes instanceof Routes)) {
      throw new InvalidArgumentError("routes must be a Routes");
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new InvalidArgumentError("now must be a function returning ms since the epoch");
    }
    if (options.onError !== undefined && typeof options.onError !== "function") {
      throw new InvalidArgumentError("onError must be a function");
    }
    const d = DEFAULT_LIMITS;
    this.limits = {
      maxHeadBytes: checkInteger(
        "maxHeadBytes",
        options.maxHeadBytes ?? d.maxHeadBytes,
        64,
        1 << 20,
      ),
      maxHeaders: checkInteger("maxHeaders", options.maxHeaders ?? d.maxHeaders, 1, 10_000),
      maxBodyBytes: checkInteger(
        "maxBodyBytes",
        options.maxBodyBytes ?? d.maxBodyBytes,
        0,
        1 << 30,
      ),
      maxUriBytes: checkInteger("maxUriBytes", options.maxUriBytes ?? d.maxUriBytes, 1, 1 << 20),
    };
    this.outputBytes = checkInteger(
      "outputBytes",
      options.outputBytes ?? DEFAULT_OUTPUT_BYTES,
      1024,
      1 << 24,
    );
    this.files = files as StaticFiles;
    this.routes = options.routes ?? new Routes();
    this.date = new DateCache(options.now ?? Date.now);
    this.onError = options.onError ?? null;
  }

  /** A new connection's engine. */
  connection(): HttpConnection {
    return new HttpConnection(this);
  }
}

/** Bytes in and out of one connection, for {@link serveConnection}. */
export interface Transport {
  /** The next bytes from the peer (non-empty), 0 at the end of its stream, or -errno. */
  recv(): Green<Uint8Array | number>;
  /** Send all of `bytes` (valid only during the call): 0, or -errno. */
  send(bytes: Uint8Array): Green<number>;
}

/**
 * Serve one connection to the end: the loop of the header comment. Returns the number of
 * responses sent, or the -errno of the transport call that failed. The caller closes the socket.
 */
export function* serveConnection(conn: HttpConnection, io: Transport): Green<number> {
  for (;;) {
    while (conn.pending) {
      const out = yield* conn.pull();
      if (out === null) break;
      const r = yield* io.send(out);
      if (r < 0) return r;
    }
    if (conn.done) return conn.served;
    const got = yield* io.recv();
    if (typeof got !== "number") conn.feed(got);
    else if (got < 0) return got;
    else conn.end();
  }
}

// Body stream kinds.
const B_NONE = 0;
const B_FILE = 1;
const B_BYTES = 2;
const B_PRODUCER = 3;

const EMPTY = new Uint8Array(0);
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
/** Header fields a handler may not set: the engine frames the message (RFC 9112 §6). */
const ENGINE_FIELDS = new Set(["content-length", "transfer-encoding", "connection"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value the engine can send: no CR, LF, NUL or other control but HTAB; latin1. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A validated handler response, ready to write. */
interface Rendered {
  readonly status: number;
  readonly fields: string;
  /** A string body is kept as a string and encoded (UTF-8) straight into the output buffer. */
  readonly body: Uint8Array | string | BodyProducer | null;
}

export class HttpConnection {
  readonly #engine: HttpEngine;
  readonly #input: ByteQueue;
  readonly #parser: RequestParser;
  readonly #out: OutputBuffer;
  /** No more requests: finish the open body, flush, then done. */
  #closing = false;
  /** The peer ended its stream. */
  #ended = false;
  #done = false;
  #served = 0;

  // The open body stream (B_NONE when none) and where it stands.
  #body = B_NONE;
  #bodyPath = "";
  #bodyBytes: Uint8Array = EMPTY;
  #bodyPos = 0;
  #bodyEnd = 0;
  #producer: BodyProducer | null = null;
  #chunked = false;
  /** Close once the open body is complete. */
  #closeAfter = false;

  /**
   * The last valid request-target and what it decoded to: the parser hands the same string
   * back while the client repeats its target (programs/http/parser.ts), so it is decoded once.
   */
  #target = "";
  #rawPath = "";
  #path = "";
  #query = "";

  /** The last status-line-to-fields prefix of a head, as bytes, and what it was made of. */
  #headStatus = 0;
  #headDate = "";
  #headFields = "";
  #headBytes: Uint8Array = EMPTY;

  constructor(engine: HttpEngine) {
    this.#engine = engine;
    this.#input = new ByteQueue(4096);
    this.#parser = new RequestParser(engine.limits);
    this.#out = new OutputBuffer(engine.outputBytes);
  }

  /** True once the connection is finished: the server closes the socket. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Would {@link pull} have anything to do now? False means it would return null (nothing to
   * send until more input arrives): the server may go straight to recv without a pull.
   */
  get pending(): boolean {
    return (
      this.#body !== B_NONE ||
      this.#closing ||
      this.#ended ||
      this.#out.length > 0 ||
      this.#input.length > 0
    );
  }

  /** Responses started so far. */
  get served(): number {
    return this.#served;
  }

  /** Bytes held for this connection: unparsed input, a partial body, staged output. */
  get bufferedBytes(): number {
    return this.#input.length + this.#parser.heldBytes + this.#out.length;
  }

  /** Bytes received from the peer (copied). Dropped once the connection is closing. */
  feed(bytes: Uint8Array): void {
    if (!this.#closing) this.#input.push(bytes);
  }

  /**
   * `len` bytes received from the peer into a process's memory at `va` (recv's buffer), copied
   * straight into the input queue. Dropped once the connection is closing.
   */
  feedFromMemory(mem: MemoryReader, va: number, len: number): void {
    if (this.#closing || len <= 0) return;
    const at = this.#input.reserve(len);
    mem.readInto(va, this.#input.buf, at, len);
    this.#input.commit(len);
  }

  /** The peer ended its stream: answer the complete requests received, then be done. */
  end(): void {
    this.#ended = true;
  }

  /**
   * The next bytes to send, or null when there is nothing to send until more input arrives
   * (or, if `done`, ever). The bytes are valid until the next call.
   */
  *pull(): Green<Uint8Array | null> {
    const out = this.#out;
    for (;;) {
      if (this.#body !== B_NONE) {
        const chunk = yield* this.#pump();
        if (chunk !== null) return chunk;
      } else if (this.#closing) {
        const rest = out.take();
        if (rest === null) {
          this.#done = true;
          this.#input.clear();
        }
        return rest;
      } else {
        const event = this.#parser.parse(this.#input);
        if (event === P_NEED_MORE) {
          if (!this.#ended) return out.take();
          this.#closing = true; // end of stream: an incomplete request is dropped
        } else if (event === P_HEAD) {
          // RFC 9110 §10.1.1: the client waits for this before it sends the body.
          if (this.#parser.expectContinue) out.writeLatin1(CONTINUE);
        } else if (event === P_MESSAGE) {
          const pending = this.#respond(this.#parser.take());
          if (pending !== null) yield* pending;
        } else {
          this.#error(1, this.#parser.errorStatus, false, false, "");
        }
      }
      if (out.length >= out.capacity) return out.take();
    }
  }

  /**
   * Answer one complete request: a route, or a static file. What needs no system call (a
   * route whose handler is a plain function, every error) is answered here and now; what does
   * (a generator handler, a static file) comes back as the generator that finishes the answer,
   * so a JSON route costs no generator of ours at all.
   */
  #respond(p: ParsedRequest): Green<void> | null {
    this.#served++;
    const { method, minor, keepAlive } = p;
    const headOnly = method === "HEAD";
    const target = p.target;
    if (target !== this.#target) {
      // A target we cannot use is a malformed request (400, close); ".." is refused (403).
      const raw = targetPath(target);
      if (typeof raw === "number") {
        this.#error(minor, raw, headOnly, false, "");
        return null;
      }
      const decoded = decodePath(raw);
      if (typeof decoded === "number") {
        this.#error(minor, decoded, headOnly, keepAlive && decoded !== 400, "");
        return null;
      }
      this.#target = target;
      this.#rawPath = raw;
      this.#path = decoded;
      this.#query = targetQuery(target);
    }
    const rawPath = this.#rawPath;
    const path = this.#path;
    const route = this.#engine.routes.find(path);
    if (method !== "GET" && method !== "HEAD" && method !== "POST") {
      this.#error(minor, 405, false, keepAlive, allow(route?.allow ?? "GET, HEAD"));
      return null;
    }
    const request: HttpRequest = {
      method,
      target: p.target,
      path,
      query: this.#query,
      minor,
      headers: p.headers,
      body: p.body,
    };
    if (route !== undefined) {
      const handler = method === "POST" ? route.post : route.get;
      if (handler === null) {
        this.#error(minor, 405, headOnly, keepAlive, allow(route.allow));
        return null;
      }
      let res: HandlerResponse | Green<HandlerResponse>;
      try {
        res = handler(request);
      } catch (error) {
        this.#internalError(error, request, keepAlive);
        return null;
      }
      if (isGreen(res)) return this.#finishRoute(res, request, keepAlive);
      this.#answerRoute(res, request, keepAlive);
      return null;
    }
    if (method === "POST") {
      this.#error(minor, 405, false, keepAlive, allow("GET, HEAD"));
      return null;
    }
    return this.#serveStatic(request, rawPath, keepAlive);
  }

  /** The rest of a route whose handler is a generator: run it, then answer. */
  *#finishRoute(g: Green<HandlerResponse>, request: HttpRequest, keepAlive: boolean): Green<void> {
    let res: HandlerResponse;
    try {
      res = yield* g;
    } catch (error) {
      return this.#internalError(error, request, keepAlive);
    }
    this.#answerRoute(res, request, keepAlive);
  }

  /** Check and write a handler's response (an invalid one is a 500). */
  #answerRoute(res: HandlerResponse, request: HttpRequest, keepAlive: boolean): void {
    let rendered: Rendered;
    try {
      rendered = render(res);
    } catch (error) {
      this.#internalError(error, request, keepAlive);
      return;
    }
    this.#writeRendered(rendered, request.minor, request.method === "HEAD", keepAlive);
  }

  /** A static file (or its error): the plan needs stat calls, so this is a generator. */
  *#serveStatic(request: HttpRequest, rawPath: string, keepAlive: boolean): Green<void> {
    const { method, path, query, headers, minor } = request;
    let reply: StaticReply;
    try {
      const at = { method, path, rawPath, query, headers };
      reply = yield* planStatic(this.#engine.files, at, this.#engine.date.nowMs());
    } catch (error) {
      return this.#internalError(error, request, keepAlive);
    }
    this.#writeStatic(reply, minor, method === "HEAD", keepAlive);
  }

  #writeStatic(reply: StaticReply, minor: number, headOnly: boolean, keepAlive: boolean): void {
    const { status, fields } = reply;
    if (status >= 400) {
      this.#error(minor, status, headOnly, keepAlive, fields);
      return;
    }
    const length = status === 304 ? "" : `Content-Length: ${reply.length}\r\n`;
    this.#head(status, fields, length, keepAlive, minor);
    if (reply.path !== null && reply.length > 0 && !headOnly) {
      this.#body = B_FILE;
      this.#bodyPath = reply.path;
      this.#bodyPos = reply.start;
      this.#bodyEnd = reply.start + reply.length;
      this.#closeAfter = !keepAlive;
    } else if (!keepAlive) {
      this.#closing = true;
    }
  }

  #writeRendered(r: Rendered, minor: number, headOnly: boolean, keepAlive: boolean): void {
    const body = r.body;
    if (body === null) {
      const framing = r.status === 204 || r.status === 304 ? "" : "Content-Length: 0\r\n";
      this.#head(r.status, r.fields, framing, keepAlive, minor);
      if (!keepAlive) this.#closing = true;
      return;
    }
    if (typeof body === "function") {
      // Unknown length: chunked for HTTP/1.1 (RFC 9112 §7.1), close-delimited for 1.0 (§6.3).
      const chunked = minor === 1;
      const persist = keepAlive && chunked;
      const framing = chunked ? "Transfer-Encoding: chunked\r\n" : "";
      this.#head(r.status, r.fields, framing, persist, minor);
      if (headOnly) {
        if (!persist) this.#closing = true;
        return;
      }
      this.#body = B_PRODUCER;
      this.#producer = body;
      this.#chunked = chunked;
      this.#closeAfter = !persist;
      return;
    }
    const text = typeof body === "string";
    const length = text ? Buffer.byteLength(body, "utf8") : body.length;
    this.#head(r.status, r.fields, `Content-Length: ${length}\r\n`, keepAlive, minor);
    if (headOnly || length === 0) {
      if (!keepAlive) this.#closing = true;
    } else if (length <= this.#out.room) {
      if (text) this.#out.writeUtf8(body, length);
      else this.#out.writeBytes(body);
      if (!keepAlive) this.#closing = true;
    } else {
      this.#body = B_BYTES;
      this.#bodyBytes = text ? Buffer.from(body, "utf8") : body;
      this.#bodyPos = 0;
      this.#bodyEnd = length;
      this.#closeAfter = !keepAlive;
    }
  }

  /** Stage a status line and the head: engine fields, `fields`, framing, persistence. */
  #head(status: number, fields: string, framing: string, keepAlive: boolean, minor: number): void {
    const connection = !keepAlive
      ? "Connection: close\r\n"
      : minor === 0
        ? "Connection: keep-alive\r\n" // HTTP/1.0 persists only when both sides say so
        : "";
    // Status line, Server, Date and the fields: the same bytes response after response (Date
    // changes once a second), so they are encoded once and copied.
    const date = this.#engine.date.get();
    if (status !== this.#headStatus || date !== this.#headDate || fields !== this.#headFields) {
      this.#headBytes = Buffer.from(
        `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\nServer: exocore\r\nDate: ${date}\r\n${fields}`,
        "latin1",
      );
      this.#headStatus = status;
      this.#headDate = date;
      this.#headFields = fields;
    }
    const out = this.#out;
    out.writeBytes(this.#headBytes);
    out.writeLatin1(framing);
    out.writeLatin1(connection);
    out.writeLatin1("\r\n");
  }

  /** An error response with the small HTML page (no page for HEAD); closes unless keepAlive. */
  #error(minor: number, status: number, headOnly: boolean, keepAlive: boolean, fields: string) {
    const page = errorPage(status);
    this.#head(
      status,
      `Content-Type: text/html; charset=utf-8\r\n${fields}`,
      `Content-Length: ${page.length}\r\n`,
      keepAlive,
      minor,
    );
    if (!headOnly) this.#out.writeLatin1(page);
    if (!keepAlive) {
      this.#closing = true;
      this.#input.clear();
    }
  }

  #internalError(error: unknown, request: HttpRequest, keepAlive: boolean): void {
    if (error instanceof PanicError) throw error;
    this.#engine.onError?.(error, request);
    this.#error(request.minor, 500, request.method === "HEAD", keepAlive, "");
  }

  /**
   * Move the open body stream on by one step: a file read, a copy, a producer piece. Returns a
   * chunk to send now (file bytes as read, straight from the read, when nothing is staged; the
   * staged bytes after each producer piece, so a slow producer's pieces are not held back), or
   * null to go on.
   */
  *#pump(): Green<Uint8Array | null> {
    const out = this.#out;
    if (this.#body === B_BYTES) {
      const n = Math.min(this.#bodyEnd - this.#bodyPos, out.room);
      out.writeBytes(this.#bodyBytes.subarray(this.#bodyPos, this.#bodyPos + n));
      this.#bodyPos += n;
      if (this.#bodyPos === this.#bodyEnd) this.#endBody();
      return null;
    }
    if (this.#body === B_FILE) {
      const rest = this.#bodyEnd - this.#bodyPos;
      if (out.room < rest && out.room < out.capacity / 4) return out.take(); // read big, not small
      const len = Math.min(rest, out.room);
      let data: Uint8Array | null;
      try {
        data = yield* this.#engine.files.read(this.#bodyPath, this.#bodyPos, len);
      } catch (error) {
        if (error instanceof PanicError) throw error;
        data = null;
      }
      // The head promised Content-Length: a failed or short-at-EOF read can only end the
      // connection, so the client sees a truncated response rather than a wrong one.
      if (data === null || data.length === 0) return this.#abort();
      const n = Math.min(data.length, len);
      this.#bodyPos += n;
      if (this.#bodyPos === this.#bodyEnd) this.#endBody();
      if (out.length === 0) return n === data.length ? data : data.subarray(0, n);
      out.writeBytes(n === data.length ? data : data.subarray(0, n));
      return null;
    }
    let piece: Uint8Array | null;
    try {
      piece = yield* this.#producer!();
    } catch (error) {
      if (error instanceof PanicError) throw error;
      return this.#abort(); // the head has gone: all we can do is not end the body properly
    }
    if (piece === null) {
      if (this.#chunked) out.writeLatin1("0\r\n\r\n"); // last-chunk, no trailers
      this.#endBody();
    } else if (piece.length > 0) {
      if (this.#chunked) out.writeLatin1(`${piece.length.toString(16)}\r\n`);
      out.writeBytes(piece);
      if (this.#chunked) out.writeLatin1("\r\n");
    }
    return out.take();
  }

  #endBody(): void {
    this.#body = B_NONE;
    this.#bodyBytes = EMPTY;
    this.#producer = null;
    if (this.#closeAfter) this.#closing = true;
    this.#closeAfter = false;
  }

  /** Give up on the open body: send what is staged, then close. */
  #abort(): Uint8Array | null {
    this.#endBody();
    this.#closing = true;
    this.#input.clear();
    return this.#out.take();
  }
}

function allow(methods: string): string {
  return `Allow: ${methods}\r\n`;
}

function isGreen(r: HandlerResponse | Green<HandlerResponse>): r is Green<HandlerResponse> {
  return typeof (r as Partial<Green<HandlerResponse>>).next === "function";
}

/**
 * The rendering of the last frozen headers object: a handler that answers with one constant,
 * frozen headers object (jsonNow does) has it checked once, not per request. Only a frozen
 * object is remembered — its fields cannot change after it was checked.
 */
let lastHeaders: object | null = null;
let lastFields = "";
let lastHasType = false;

/** Check a handler's header fields and render them into lastFields / lastHasType. */
function renderFields(headers: Readonly<Record<string, string>>): void {
  if (headers === lastHeaders) return;
  let fields = "";
  let hasType = false;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!TOKEN.test(name) || ENGINE_FIELDS.has(lower)) {
      throw new InvalidArgumentError(
        `a handler may not set the header field ${JSON.stringify(name)}`,
      );
    }
    if (typeof value !== "string" || !FIELD_VALUE.test(value)) {
      throw new InvalidArgumentError(`header field ${name} has a value that cannot be sent`);
    }
    if (lower === "content-type") hasType = true;
    fields += `${name}: ${value}\r\n`;
  }
  lastHeaders = Object.isFrozen(headers) ? headers : null;
  lastFields = fields;
  lastHasType = hasType;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** Check a handler's response and render its fields; throws InvalidArgumentError (→ 500). */
function render(res: HandlerResponse): Rendered {
  if (typeof res !== "object" || res === null) {
    throw new InvalidArgumentError("a handler must return { status, headers?, body? }");
  }
  const status = checkInteger("handler status", res.status, 200, 599);
  renderFields(res.headers ?? NO_HEADERS);
  let fields = lastFields;
  let body: Uint8Array | string | BodyProducer | null;
  const b = res.body;
  if (b === undefined) body = null;
  else if (typeof b === "string" || b instanceof Uint8Array || typeof b === "function") body = b;
  else throw new InvalidArgumentError("a handler's body must be a string, bytes or a producer");
  if (
    (status === 204 || status === 304) &&
    body !== null &&
    !(typeof body !== "function" && body.length === 0)
  ) {
    throw new InvalidArgumentError(`a ${status} response has no body`);
  }
  if (status === 204 || status === 304) body = null;
  if (body !== null && !lastHasType) {
    const type = typeof b === "string" ? "text/plain; charset=utf-8" : "application/octet-stream";
    fields += `Content-Type: ${type}\r\n`;
  }
  return { status, fields, body };
}
