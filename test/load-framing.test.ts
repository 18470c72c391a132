/**
 * load-framing: the built-in load generators count replies right. The RESP and HTTP framers
 * (bench/load/resp.ts, bench/load/http.ts) are fed random streams of replies / responses cut
 * at random places (fast-check) and must count exactly the messages that were sent; then each
 * generator runs against a real server on loopback — the KV engine behind node:net, and
 * node:http — and its counts agree with what the server saw.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import { HttpLoad, HttpResponseCounter } from "../bench/load/http.js";
import { buildRespBatches, RespLoad, RespReplyCounter } from "../bench/load/resp.js";
import { dumpStore, makeEngine, serveEngine } from "./fixtures/kv-client.js";

// ---- RESP ----

type Resp =
  | { t: "+" | "-" | ":"; v: string }
  | { t: "$"; v: Uint8Array | null }
  | { t: "*"; v: Resp[] | null };

const line = fc.stringMatching(/^[A-Za-z0-9 ._-]{0,12}$/);
const respLeaf: fc.Arbitrary<Resp> = fc.oneof(
  fc.record({ t: fc.constantFrom("+" as const, "-" as const), v: line }),
  fc.record({ t: fc.constant(":" as const), v: fc.integer().map(String) }),
  // Bulk payloads may hold CR, LF and '*' or '$': only the length frames them.
  fc.record({
    t: fc.constant("$" as const),
    v: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null }),
  }),
);
const resp: fc.Arbitrary<Resp> = fc.letrec<{ r: Resp }>((tie) => ({
  r: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    respLeaf,
    fc.record({
      t: fc.constant("*" as const),
      v: fc.option(fc.array(tie("r"), { maxLength: 4 }), { nil: null }),
    }),
  ),
})).r;

function encodeResp(r: Resp): Buffer {
  switch (r.t) {
    case "+":
    case "-":
    case ":":
      return Buffer.from(`${r.t}${r.v}\r\n`);
    case "$":
      return r.v === null
        ? Buffer.from("$-1\r\n")
        : Buffer.concat([Buffer.from(`$${r.v.length}\r\n`), r.v, Buffer.from("\r\n")]);
    case "*":
      return r.v === null
        ? Buffer.from("*-1\r\n")
        : Buffer.concat([Buffer.from(`*${r.v.length}\r\n`), ...r.v.map(encodeResp)]);
  }
}

/** Feed `bytes` cut at the given points (any order, duplicates allowed). */
function feedInPieces(
  feed: (b: Uint8Array, start: number, end: number) => number,
  bytes: Uint8Array,
  cuts: number[],
): number {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  let n = 0;
  for (const p of [...points, bytes.length]) {
    n += feed(bytes, at, p);
    at = p;
  }
  return n;
}

test("the RESP framer counts every top-level reply and error, however the stream is cut", () => {
  fc.assert(
    fc.property(
      fc.array(resp, { maxLength: 30 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (replies, cuts) => {
        const bytes = Buffer.concat(replies.map(encodeResp));
        const c = new RespReplyCounter();
        const n = feedInPieces((b, s, e) => c.feed(b, s, e), bytes, cuts);
        assert.equal(n, replies.length);
        assert.equal(c.replies, replies.length);
        assert.equal(c.errors, replies.filter((r) => r.t === "-").length);
      },
    ),
    { numRuns: 300 },
  );
});

test("the RESP framer refuses a stream that is not RESP", () => {
  assert.throws(
    () => new RespReplyCounter().feed(Buffer.from("HTTP/1.1 200 OK\r\n")),
    /bad reply type/,
  );
});

test("request batches hold the pipeline depth of SET, GET and INCR commands in turn", () => {
  const batches = buildRespBatches(4, 100, 8);
  assert.equal(batches.length, 64);
  const first = (batches[0] as Buffer).toString("latin1");
  assert.equal(first.match(/\*\d\r\n/g)?.length, 4);
  assert.match(
    first,
    /^\*3\r\n\$3\r\nSET\r\n\$\d+\r\nkey:\d+\r\n\$8\r\nxxxxxxxx\r\n\*2\r\n\$3\r\nGET\r\n/,
  );
  assert.match(first, /\$4\r\nINCR\r\n\$\d+\r\ncounter:\d+\r\n/);
});

test("RespLoad against the KV engine: every reply counted, latencies recorded, data stored", async () => {
  const { engine } = makeEngine(16 * 1024 * 1024);
  const server = await serveEngine(engine);
  const port = (server.address() as AddressInfo).port;
  const load = new RespLoad({ host: "127.0.0.1", port, connections: 4, pipeline: 8, keyspace: 50 });
  try {
    await load.start();
    while (load.counters().completed < 2000) await new Promise((r) => setTimeout(r, 5));
  } finally {
    load.stop();
    server.close();
  }
  const c = load.counters();
  assert.equal(c.errors, 0);
  assert.equal(c.reconnects, 0);
  assert.equal(load.histogram.count, c.completed, "one latency per reply");
  const dump = dumpStore(engine);
  const keys = dump.filter((d) => d.startsWith('"key:'));
  const counters = dump.filter((d) => d.startsWith('"counter:'));
  assert.ok(keys.length > 0 && keys.length <= 50, `SETs landed in the key space: ${keys.length}`);
  assert.ok(counters.length > 0 && counters.length <= 50, "INCRs landed in the key space");
});

// ---- HTTP ----

interface Res {
  status: number;
  body: Uint8Array;
  framing: "length" | "chunked";
  chunks: number[];
  trailer: boolean;
  close: boolean;
}

const httpRes: fc.Arbitrary<Res> = fc.record({
  status: fc.constantFrom(200, 201, 204, 206, 301, 304, 404, 413, 500),
  body: fc.uint8Array({ maxLength: 300 }),
  framing: fc.constantFrom("length" as const, "chunked" as const),
  chunks: fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 5 }),
  trailer: fc.boolean(),
  close: fc.boolean(),
});

function encodeRes(r: Res): Buffer {
  const head = [`HTTP/1.1 ${r.status} X`, "Server: t", "Content-Type: text/plain"];
  if (r.close) head.push("Connection: close");
  const bodiless = r.status === 204 || r.status === 304;
  if (bodiless) return Buffer.from(`${head.join("\r\n")}\r\n\r\n`);
  if (r.framing === "length") {
    head.push(`content-LENGTH: ${r.body.length}`);
    return Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`), r.body]);
  }
  head.push("Transfer-Encoding: chunked");
  const parts: Buffer[] = [Buffer.from(`${head.join("\r\n")}\r\n\r\n`)];
  let at = 0;
  for (let i = 0; at < r.body.length; i++) {
    const n = Math.min(r.chunks[i % r.chunks.length] as number, r.body.length - at);
    parts.push(
      Buffer.from(`${n.toString(16)};ext=1\r\n`),
      Buffer.from(r.body.subarray(at, at + n)),
      Buffer.from("\r\n"),
    );
    at += n;
  }
  parts.push(Buffer.from(r.trailer ? "0\r\nX-Trailer: yes\r\n\r\n" : "0\r\n\r\n"));
  return Buffer.concat(parts);
}

test("the HTTP framer counts every response and its status class, however the stream is cut", () => {
  fc.assert(
    fc.property(
      fc.array(httpRes, { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (list, cuts) => {
        const bytes = Buffer.concat(list.map(encodeRes));
        const c = new HttpResponseCounter();
        const n = feedInPieces((b, s, e) => c.feed(b, s, e), bytes, cuts);
        assert.equal(n, list.length);
        const classes = [0, 0, 0, 0, 0];
        for (const r of list) classes[Math.floor(r.status / 100) - 1]++;
        assert.deepEqual(Array.from(c.byClass), classes);
        if (list.length > 0) assert.equal(c.closeAfter, (list[list.length - 1] as Res).close);
      },
    ),
    { numRuns: 300 },
  );
});

test("a body delimited by the connection's end completes at end(); an interim 100 is not a response", () => {
  const c = new HttpResponseCounter();
  assert.equal(
    c.feed(Buffer.from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nsome bytes")),
    0,
  );
  assert.equal(c.feed(Buffer.from(" and more")), 0);
  assert.equal(c.end(), 1);
  assert.equal(c.responses, 1);
  assert.equal(c.byClass[1], 1);
  assert.equal(c.byClass[0], 0);
});

async function withServer(
  handler: http.RequestListener,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    await body((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test("HttpLoad against node:http: every response counted once, on keep-alive connections", async () => {
  let served = 0;
  const seen = new Set<string>();
  await withServer(
    (req, res) => {
      served++;
      seen.add(req.url ?? "");
      res.end(req.url === "/a" ? "x".repeat(3000) : "short");
    },
    async (port) => {
      const load = new HttpLoad({ host: "127.0.0.1", port, paths: ["/a", "/b"], connections: 3 });
      await load.start();
      while (load.counters().completed < 500) await new Promise((r) => setTimeout(r, 5));
      load.stop();
      const c = load.counters();
      assert.equal(c.errors, 0);
      assert.equal(c.reconnects, 0);
      assert.ok(
        served >= c.completed && served <= c.completed + 3,
        `${served} served, ${c.completed} counted`,
      );
      assert.deepEqual([...seen].sort(), ["/a", "/b"]);
      assert.equal(load.statusClasses()[1], c.completed);
      assert.equal(load.histogram.count, c.completed);
    },
  );
});

test("HttpLoad counts 4xx/5xx as errors and follows a server that closes after each response", async () => {
  await withServer(
    (req, res) => {
      res.writeHead(req.url === "/missing" ? 404 : 200, { Connection: "close" }).end("bye");
    },
    async (port) => {
      const load = new HttpLoad({
        host: "127.0.0.1",
        port,
        paths: ["/missing", "/ok"],
        connections: 2,
      });
      await load.start();
      while (load.counters().completed < 100) await new Promise((r) => setTimeout(r, 5));
      load.stop();
      const c = load.counters();
      const classes = load.statusClasses();
      assert.equal(c.reconnects, 0, "a close the server announced is not a failure");
      assert.equal(classes[3], c.errors, "every 404 is an error");
      assert.ok(classes[3] > 0 && classes[1] > 0);
    },
  );
});

test("the load generators refuse bad options with precise messages", () => {
  assert.throws(
    () => new RespLoad({ host: "127.0.0.1", port: 0 }),
    /port must be an integer from 1 to 65535, got 0/,
  );
  assert.throws(
    () => new RespLoad({ host: "127.0.0.1", port: 1, pipeline: 0 }),
    /pipeline must be an integer from 1 to 1024, got 0/,
  );
  assert.throws(
    () => new HttpLoad({ host: "127.0.0.1", port: 1, paths: ["nope"] }),
    /paths must be/,
  );
  assert.throws(() => new HttpLoad({ host: "127.0.0.1", port: 1, paths: [] }), /paths must be/);
});
