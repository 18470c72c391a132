/**
 * http-parse: the HTTP/1.1 request parser and the connection's handling of what it finds.
 *
 * - fast-check: a random pipeline of valid requests (both versions, CRLF or bare LF, optional
 *   whitespace around values, Content-Length and chunked bodies with extensions and trailers)
 *   parses to exactly the requests that were written, whatever the chunk boundaries; and a
 *   connection answers any split of a pipeline with the same bytes.
 * - Malformed and oversized requests get their status (400, 405, 413, 414, 417, 431, 501,
 *   505), with "Connection: close" and the end of the connection where the framing is lost.
 * - Memory stays bounded whatever the peer sends: random bytes, an endless head, an endless
 *   body, a long pipeline.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ByteQueue } from "../programs/http/bytes.js";
import { echo, HttpEngine, type HttpOptions, Routes } from "../programs/http/index.js";
import {
  type HttpLimits,
  MAX_CHUNK_LINE,
  P_ERROR,
  P_HEAD,
  P_MESSAGE,
  type ParsedRequest,
  RequestParser,
} from "../programs/http/parser.js";
import { exchange, header, MemFiles, parseResponses, request } from "./fixtures/http-helpers.js";

const LIMITS: HttpLimits = {
  maxHeadBytes: 8192,
  maxHeaders: 100,
  maxBodyBytes: 1 << 20,
  maxUriBytes: 8192,
};

// ---- a model of valid requests, and how to write them ----

interface Model {
  method: string;
  target: string;
  minor: number;
  lead: boolean;
  fields: [string, string][];
  /** How each field line is written: spaces before/after the value, bare LF. */
  style: { before: string; after: string; lf: boolean }[];
  connection: "" | "close" | "keep-alive";
  body: Buffer;
  framing: "none" | "length" | "chunked";
  chunks: number[];
  extensions: string[];
  trailers: [string, string][];
}

const tokenChar = fc.constantFrom(
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
);
const token = fc.string({ unit: tokenChar, minLength: 1, maxLength: 12 });
const reserved = /^(host|content-length|transfer-encoding|connection|expect)$/i;
const fieldName = token.filter((t) => !reserved.test(t));
const valueChar = fc.constantFrom(...'abcXYZ019 -_/.,;:="()<>@[]{}?\t\u00e9\u00ff');
const fieldValue = fc
  .string({ unit: valueChar, maxLength: 24 })
  .map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ""));
const ows = fc.constantFrom("", " ", "  ", "\t", " \t");
const pathChar = fc.constantFrom(..."abcxyz019-._~%!$&'()*+,;=:@");
const target = fc
  .tuple(
    fc.array(fc.string({ unit: pathChar, maxLength: 8 }), { minLength: 1, maxLength: 4 }),
    fc.option(fc.string({ unit: fc.constantFrom(..."a=1&b/?"), maxLength: 10 }), {
      nil: undefined,
    }),
  )
  .map(([segs, q]) => `/${segs.join("/")}${q === undefined ? "" : `?${q}`}`);

const model: fc.Arbitrary<Model> = fc
  .record({
    method: fc.constantFrom("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"),
    target,
    minor: fc.constantFrom(0, 1),
    lead: fc.boolean(),
    fields: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 8 }),
    styles: fc.array(fc.record({ before: ows, after: ows, lf: fc.boolean() }), {
      minLength: 12,
      maxLength: 12,
    }),
    connection: fc.constantFrom("", "close", "keep-alive"),
    body: fc.uint8Array({ maxLength: 300 }),
    framing: fc.constantFrom("none", "length", "chunked"),
    cuts: fc.array(fc.nat(300), { maxLength: 6 }),
    extensions: fc.array(fc.constantFrom("", ";a=1", " ;x", ';n="q v"', ";k"), {
      minLength: 8,
      maxLength: 8,
    }),
    trailers: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 3 }),
  })
  .map((r) => {
    const body = r.framing === "none" ? Buffer.alloc(0) : Buffer.from(r.body);
    const cuts = [...new Set(r.cuts.filter((c) => c > 0 && c < body.length))].sort((a, b) => a - b);
    const chunks: number[] = [];
    let prev = 0;
    for (const c of [...cuts, body.length]) {
      if (c > prev) chunks.push(c - prev);
      prev = c;
    }
    return {
      method: r.method,
      target: r.target,
      minor: r.minor,
      lead: r.lead,
      fields: r.fields,
      style: r.styles,
      connection: r.connection as Model["connection"],
      body,
      framing: r.framing as Model["framing"],
      chunks,
      extensions: r.extensions,
      trailers: r.trailers,
    };
  });

function write(m: Model): Buffer {
  const parts: Buffer[] = [];
  const eol = (i: number) => (m.style[i % m.style.length]!.lf ? "\n" : "\r\n");
  let head = m.lead ? "\r\n" : "";
  head += `${m.method} ${m.target} HTTP/1.${m.minor}${eol(0)}`;
  const all = expectedFields(m);
  all.forEach(([n, v], i) => {
    const s = m.style[(i + 1) % m.style.length]!;
    head += `${n}:${s.before}${v}${s.after}${eol(i + 1)}`;
  });
  head += eol(11);
  parts.push(Buffer.from(head, "latin1"));
  if (m.framing === "length") parts.push(m.body);
  if (m.framing === "chunked") {
    let at = 0;
    m.chunks.forEach((n, i) => {
      const size = i % 2 === 0 ? n.toString(16) : n.toString(16).toUpperCase();
      parts.push(Buffer.from(`${size}${m.extensions[i % 8]}\r\n`, "latin1"));
      parts.push(m.body.subarray(at, at + n));
      parts.push(Buffer.from("\r\n"));
      at += n;
    });
    let end = `0${m.extensions[7]}\r\n`;
    for (const [n, v] of m.trailers) end += `${n}: ${v}\r\n`;
    parts.push(Buffer.from(`${end}\r\n`, "latin1"));
  }
  return Buffer.concat(parts);
}

/** The field lines of a model as written (and as the parser must give them back). */
function expectedFields(m: Model): [string, string][] {
  const all: [string, string][] = [["Host", "example.test"], ...m.fields];
  if (m.connection !== "") all.push(["Connection", m.connection]);
  if (m.framing === "length") all.push(["Content-Length", String(m.body.length)]);
  if (m.framing === "chunked") all.push(["Transfer-Encoding", "chunked"]);
  return all;
}

function keepAlive(m: Model): boolean {
  if (m.connection === "close") return false;
  if (m.framing === "chunked" && m.minor === 0) return false;
  return m.minor === 1 || m.connection === "keep-alive";
}

/** Parse a stream fed in `chunks`; every message, and the bytes left unparsed. */
function parseAll(chunks: readonly Uint8Array[], limits = LIMITS) {
  const q = new ByteQueue(64);
  const p = new RequestParser(limits);
  const got: ParsedRequest[] = [];
  let error = 0;
  for (const c of chunks) {
    q.push(c);
    for (;;) {
      const e = p.parse(q);
      if (e === P_MESSAGE) got.push(p.take());
      else if (e === P_HEAD) continue;
      else {
        if (e === P_ERROR) error = p.errorStatus;
        break;
      }
    }
    if (error !== 0) break;
  }
  return { got, error, left: q.length, idle: p.idle };
}

/** Split `bytes` at the given cut points. */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

describe("parser: any split of a valid pipeline gives the requests written", () => {
  test("fast-check over random pipelines and splits", () => {
    fc.assert(
      fc.property(
        fc.array(model, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.boolean(),
        (models, cuts, bytewise) => {
          const stream = Buffer.concat(models.map(write));
          const chunks = bytewise ? [...stream].map((b) => Uint8Array.of(b)) : split(stream, cuts);
          const { got, error, left, idle } = parseAll(chunks);
          assert.equal(error, 0);
          assert.equal(left, 0);
          assert.ok(idle);
          assert.equal(got.length, models.length);
          models.forEach((m, i) => {
            const r = got[i]!;
            assert.equal(r.method, m.method);
            assert.equal(r.target, m.target);
            assert.equal(r.minor, m.minor);
            assert.equal(r.keepAlive, keepAlive(m));
            assert.deepEqual(
              [...r.headers.entries()],
              expectedFields(m).map(([n, v]) => [n.toLowerCase(), v]),
            );
            assert.deepEqual(Buffer.from(r.body), m.body);
          });
        },
      ),
      { numRuns: 400 },
    );
  });

  test("HTTP/1.2 is read as 1.1; a 1.0 request persists only with keep-alive", () => {
    const { got } = parseAll([
      Buffer.from("GET / HTTP/1.2\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\n\r\n"),
      Buffer.from("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
    ]);
    assert.deepEqual(
      got.map((r) => [r.minor, r.keepAlive]),
      [
        [1, true],
        [0, false],
        [0, true],
      ],
    );
  });
});

// ---- the connection over the parser ----

function engine(options: Partial<HttpOptions> = {}): HttpEngine {
  const files = new MemFiles().put("/index.html", "<h1>home</h1>").put("/a.txt", "alpha");
  const routes = new Routes().post("/api/echo", echo);
  return new HttpEngine({ files, routes, now: () => Date.UTC(2024, 5, 1), ...options });
}

describe("connection: any split of a pipeline gives the same response bytes", () => {
  test("fast-check over splits of a mixed pipeline", () => {
    const stream = Buffer.concat([
      request("GET", "/"),
      request("HEAD", "/a.txt"),
      request(
        "POST",
        "/api/echo",
        { "Transfer-Encoding": "chunked" },
        "5;x=1\r\nhello\r\n0\r\n\r\n",
      ),
      request("GET", "/missing"),
      request("POST", "/api/echo", { "Content-Type": "text/plain" }, "abc"),
      request("GET", "/a.txt", { Range: "bytes=1-3" }),
      request("GET", "/a.txt", { Connection: "close" }),
      request("GET", "/never-answered"),
    ]);
    const whole = exchange(engine().connection(), [stream]);
    const responses = parseResponses(whole.output, [
      "GET",
      "HEAD",
      "POST",
      "GET",
      "POST",
      "GET",
      "GET",
    ]);
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 200, 200, 404, 200, 206, 200],
    );
    assert.equal(responses[2]!.body.toString(), "hello");
    assert.ok(whole.done);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 30 }), (cuts) => {
        const r = exchange(engine().connection(), split(stream, cuts));
        assert.ok(r.done);
        assert.deepEqual(r.output, whole.output);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- malformed and oversized requests ----

interface Bad {
  readonly name: string;
  readonly bytes: string;
  readonly status: number;
}

const BAD: readonly Bad[] = [
  {
    name: "no colon in a field line",
    bytes: "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
    status: 400,
  },
  { name: "space before the colon", bytes: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400 },
  { name: "obs-fold", bytes: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", status: 400 },
  {
    name: "two spaces in the request line",
    bytes: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    status: 400,
  },
  { name: "no version (HTTP/0.9)", bytes: "GET /\r\n\r\n", status: 400 },
  { name: "malformed version", bytes: "GET / HTTX/1.1\r\nHost: a\r\n\r\n", status: 400 },
  { name: "short version", bytes: "GET / HTTP/1\r\nHost: a\r\n\r\n", status: 400 },
  { name: "HTTP/2.0 on a request line", bytes: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505 },
  {
    name: "control byte in the target",
    bytes: "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
    status: 400,
  },
  { name: "bare CR in a field value", bytes: "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", status: 400 },
  { name: "NUL in a field value", bytes: "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n", status: 400 },
  { name: "HTTP/1.1 without Host", bytes: "GET / HTTP/1.1\r\nX: y\r\n\r\n", status: 400 },
  { name: "two Hosts", bytes: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400 },
  { name: "asterisk target for GET", bytes: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400 },
  { name: "bad percent escape", bytes: "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", status: 400 },
  {
    name: "Content-Length and Transfer-Encoding",
    bytes:
      "POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    status: 400,
  },
  {
    name: "Content-Length not a number",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
    status: 400,
  },
  {
    name: "negative Content-Length",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    status: 400,
  },
  {
    name: "two different Content-Lengths",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
    status: 400,
  },
  {
    name: "Transfer-Encoding not ending in chunked",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    status: 400,
  },
  {
    name: "chunked twice",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    status: 400,
  },
  {
    name: "a coding we cannot undo",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    status: 501,
  },
  {
    name: "bad chunk size",
    bytes: "POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    status: 400,
  },
  {
    name: "chunk size ended by a bare LF",
    bytes:
      "POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    status: 400,
  },
  {
    name: "chunk data not followed by CRLF",
    bytes:
      "POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
    status: 400,
  },
  {
    name: "Content-Length over the body limit",
    bytes: `POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${(1 << 20) + 1}\r\n\r\n`,
    status: 413,
  },
  {
    name: "a chunk over the body limit",
    bytes: `POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${((1 << 20) + 1).toString(16)}\r\nab`,
    status: 413,
  },
  {
    name: "an unknown expectation",
    bytes: "POST /api/echo HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx",
    status: 417,
  },
  {
    name: "a URI over 8 KiB",
    bytes: `GET /${"u".repeat(8200)} HTTP/1.1\r\nHost: a\r\n\r\n`,
    status: 414,
  },
  { name: "an endless URI", bytes: `GET /${"u".repeat(9000)}`, status: 414 },
  {
    name: "a head over 8 KiB",
    bytes: `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(8200)}\r\n\r\n`,
    status: 431,
  },
  {
    name: "more than 100 field lines",
    bytes: `GET / HTTP/1.1\r\nHost: a\r\n${"X-N: 1\r\n".repeat(100)}\r\n`,
    status: 431,
  },
];

describe("malformed requests: the right status, Connection: close, and the end", () => {
  for (const bad of BAD) {
    test(`${bad.status} for ${bad.name}`, () => {
      const follow = request("GET", "/a.txt");
      // Whole, then one byte at a time: the verdict must not depend on the split.
      for (const bytewise of [false, true]) {
        const stream = Buffer.concat([Buffer.from(bad.bytes, "latin1"), follow]);
        const chunks = bytewise ? [...stream].map((b) => Uint8Array.of(b)) : [stream];
        const r = exchange(engine().connection(), chunks, false);
        const responses = parseResponses(r.output);
        assert.equal(responses.length, 1, "nothing after the error is answered");
        assert.equal(responses[0]!.status, bad.status);
        assert.equal(header(responses[0]!, "connection"), "close");
        assert.ok(r.done, "the connection is finished");
        assert.equal(r.buffered.at(-1), 0, "nothing is held after the error");
      }
    });
  }

  test("405 with Allow for a method we do not serve; the framing holds, so the connection goes on", () => {
    const r = exchange(engine().connection(), [
      Buffer.concat([
        request("PUT", "/a.txt", {}, "data"),
        request("DELETE", "/api/echo"),
        request("GET", "/api/echo"),
        request("POST", "/a.txt", {}, "x"),
        request("GET", "/a.txt"),
      ]),
    ]);
    const responses = parseResponses(r.output);
    assert.deepEqual(
      responses.map((x) => [x.status, header(x, "allow")]),
      [
        [405, "GET, HEAD"],
        [405, "POST"],
        [405, "POST"],
        [405, "GET, HEAD"],
        [200, undefined],
      ],
    );
    assert.equal(responses[4]!.body.toString(), "alpha");
    assert.ok(responses.slice(0, 4).every((x) => header(x, "connection") === undefined));
  });

  test("limits are configurable", () => {
    const small = engine({ maxHeadBytes: 256, maxHeaders: 3, maxBodyBytes: 10, maxUriBytes: 20 });
    const cases: [Buffer, number][] = [
      [request("GET", `/${"a".repeat(25)}`), 414],
      [request("GET", "/", { "X-A": "1", "X-B": "2", "X-C": "3" }), 431],
      [request("GET", "/", { "X-A": "a".repeat(300) }), 431],
      [request("POST", "/api/echo", {}, "x".repeat(11)), 413],
    ];
    for (const [bytes, status] of cases) {
      const r = exchange(small.connection(), [bytes]);
      assert.equal(parseResponses(r.output)[0]!.status, status);
    }
    const ok = exchange(small.connection(), [request("POST", "/api/echo", {}, "x".repeat(10))]);
    assert.equal(parseResponses(ok.output, ["POST"])[0]!.body.toString(), "x".repeat(10));
  });
});

// ---- bounded memory ----

describe("no unbounded buffering", () => {
  const limits = { maxHeadBytes: 512, maxHeaders: 10, maxBodyBytes: 2048, maxUriBytes: 256 };
  const bound = limits.maxBodyBytes + Math.max(limits.maxHeadBytes, MAX_CHUNK_LINE);

  test("fast-check: random bytes and fragments of requests, fed in random pieces", () => {
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      fc
        .constantFrom(
          "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
          "POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
          "POST /api/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n",
          "400\r\n",
          "\r\n",
          "X-Field: value\r\n",
          "a".repeat(700),
        )
        .map((s) => Buffer.from(s)),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), (pieces) => {
        const r = exchange(engine(limits).connection(), pieces, false);
        for (const b of r.buffered) assert.ok(b <= bound, `held ${b} bytes > ${bound}`);
        parseResponses(r.output); // whatever came back is well-formed HTTP
      }),
      { numRuns: 300 },
    );
  });

  test("an endless head ends in 431 after at most the limit, and the rest is dropped", () => {
    const conn = engine().connection();
    const chunks = [Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n")];
    for (let i = 0; i < 200; i++) chunks.push(Buffer.from(`X-${i}: ${"v".repeat(1000)}\r\n`));
    const r = exchange(conn, chunks, false);
    assert.equal(parseResponses(r.output)[0]!.status, 431);
    assert.ok(r.done);
    assert.ok(Math.max(...r.buffered) <= 8192);
    conn.feed(Buffer.alloc(1 << 20));
    assert.equal(conn.bufferedBytes, 0);
  });

  test("an endless chunked body ends in 413 once it passes the limit", () => {
    const chunks = [request("POST", "/api/echo", { "Transfer-Encoding": "chunked" }, "")];
    for (let i = 0; i < 100; i++) chunks.push(Buffer.from(`4000\r\n${"z".repeat(0x4000)}\r\n`));
    const r = exchange(engine().connection(), chunks, false);
    assert.equal(parseResponses(r.output)[0]!.status, 413);
    assert.ok(Math.max(...r.buffered) <= (1 << 20) + MAX_CHUNK_LINE);
  });

  test("a long pipeline fed the way the server feeds it holds at most one piece", () => {
    const one = request("GET", "/a.txt");
    const stream = Buffer.concat(Array.from({ length: 3000 }, () => one));
    const pieces = split(
      stream,
      Array.from({ length: 100 }, (_, i) => (i + 1) * 16384),
    );
    const r = exchange(engine().connection(), pieces);
    assert.equal(parseResponses(r.output).length, 3000);
    assert.ok(Math.max(...r.buffered) < one.length, `held ${Math.max(...r.buffered)}`);
  });
});
