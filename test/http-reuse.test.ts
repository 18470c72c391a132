/**
 * http-reuse: what the engine remembers from one request to the next on a connection must
 * never leak into an answer. The parser hands back the previous request's method, target and
 * field strings when the bytes spell them again (in any case, for names); the connection
 * decodes a repeated target once, copies the encoded head prefix while status, Date and fields
 * are the same, and renders a frozen headers object once; `pending` says when a pull would
 * only return null. Each test changes exactly what such a cache keys on and checks the answer
 * follows, and a fast-check property drives random keep-alive sequences drawn from small sets
 * (so repeats and near-repeats are the common case) against a handler that echoes what it saw.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { test } from "node:test";
import fc from "fast-check";
import {
  type HandlerResponse,
  HttpEngine,
  type HttpRequest,
  jsonNow,
  Routes,
} from "../programs/http/index.js";
import {
  exchange,
  header,
  MemFiles,
  parseResponses,
  request,
  run,
} from "./fixtures/http-helpers.js";

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);

/** What a request looked like to its handler, as JSON. */
function seen(req: HttpRequest): string {
  return JSON.stringify({
    method: req.method,
    target: req.target,
    path: req.path,
    query: req.query,
    headers: [...req.headers.entries()],
  });
}

function echoEngine(now: () => number = () => NOW): HttpEngine {
  const show = (req: HttpRequest): HandlerResponse => ({ status: 200, body: seen(req) });
  const routes = new Routes();
  for (const p of ["/a", "/b", "/a/b", "/caf\u00e9"]) routes.get(p, show).post(p, show);
  return new HttpEngine({ files: new MemFiles(), routes, now });
}

/** Requests sent one at a time on one connection (each answered before the next is fed). */
function oneByOne(e: HttpEngine, reqs: Buffer[]): string[] {
  const conn = e.connection();
  const bodies: string[] = [];
  for (const r of reqs) {
    conn.feed(r);
    const out: Buffer[] = [];
    for (let o = run(conn.pull()); o !== null; o = run(conn.pull())) out.push(Buffer.from(o));
    const methods = [r.toString("latin1").split(" ")[0]!];
    for (const res of parseResponses(Buffer.concat(out), methods)) bodies.push(res.body.toString());
  }
  return bodies;
}

test("a repeated field line in another case, or with another value, is seen as sent", () => {
  const bodies = oneByOne(echoEngine(), [
    request("GET", "/a", { Host: "h1", "X-Thing": "one" }),
    request("GET", "/a", { HOST: "h1", "x-thing": "one" }),
    request("GET", "/a", { Host: "h2", "X-Thing": "onE" }),
    request("GET", "/a", { Host: "h2" }),
    request("GET", "/a", { Host: "h2", "X-Other": "one", "X-Thing": "one" }),
  ]);
  const headers = bodies.map((b) => JSON.parse(b).headers);
  assert.deepEqual(headers, [
    [
      ["host", "h1"],
      ["x-thing", "one"],
    ],
    [
      ["host", "h1"],
      ["x-thing", "one"],
    ],
    [
      ["host", "h2"],
      ["x-thing", "onE"],
    ],
    [["host", "h2"]],
    [
      ["host", "h2"],
      ["x-other", "one"],
      ["x-thing", "one"],
    ],
  ]);
});

test("a method or target that differs by one byte from the last is decoded afresh", () => {
  const bodies = oneByOne(echoEngine(), [
    request("GET", "/a?x=1"),
    request("GET", "/a?x=2"),
    request("GET", "/b?x=2"),
    request("POST", "/b?x=2", {}, ""),
    request("GET", "/a%2Fb"),
    request("GET", "/caf%C3%A9"),
    request("GET", "/caf%C3%A9"),
  ]);
  const got = bodies.map((b) => {
    const v = JSON.parse(b);
    return [v.method, v.path, v.query];
  });
  assert.deepEqual(got, [
    ["GET", "/a", "x=1"],
    ["GET", "/a", "x=2"],
    ["GET", "/b", "x=2"],
    ["POST", "/b", "x=2"],
    ["GET", "/a/b", ""],
    ["GET", "/caf\u00e9", ""],
    ["GET", "/caf\u00e9", ""],
  ]);
});

test("a bad target after a good one is still refused, and a good one after it served", () => {
  const e = echoEngine();
  const out = exchange(e.connection(), [
    Buffer.concat([request("GET", "/a"), request("GET", "/a/../etc"), request("GET", "/a")]),
  ]).output;
  assert.deepEqual(
    parseResponses(out).map((r) => r.status),
    [200, 403, 200],
  );
});

test("a headers object that is not frozen is checked and rendered every time", () => {
  const fields: Record<string, string> = { "X-Count": "0" };
  let n = 0;
  const routes = new Routes().get("/n", () => {
    fields["X-Count"] = String(++n);
    if (n === 3) fields["Content-Length"] = "1"; // now invalid: a 500, not a stale answer
    return { status: 200, headers: fields, body: "x" };
  });
  const e = new HttpEngine({ files: new MemFiles(), routes, now: () => NOW });
  const rs = parseResponses(
    exchange(e.connection(), [Buffer.concat([1, 2, 3].map(() => request("GET", "/n")))]).output,
  );
  assert.deepEqual(
    rs.map((r) => [r.status, header(r, "x-count")]),
    [
      [200, "1"],
      [200, "2"],
      [500, undefined],
    ],
  );
});

test("frozen headers are rendered once per object; another frozen object gets its own fields", () => {
  const a = Object.freeze({ "x-kind": "a", "content-type": "text/a" });
  const b = Object.freeze({ "x-kind": "b" });
  const bad = Object.freeze({ Connection: "close" });
  const routes = new Routes()
    .get("/a", () => ({ status: 200, headers: a, body: "A" }))
    .get("/b", () => ({ status: 201, headers: b, body: "B" }))
    .get("/bad", () => ({ status: 200, headers: bad, body: "!" }));
  const e = new HttpEngine({ files: new MemFiles(), routes, now: () => NOW });
  const order = ["/a", "/a", "/b", "/bad", "/a", "/bad", "/b"];
  const rs = parseResponses(
    exchange(e.connection(), [Buffer.concat(order.map((p) => request("GET", p)))]).output,
  );
  assert.deepEqual(
    rs.map((r) => [r.status, header(r, "x-kind"), header(r, "content-type")]),
    [
      [200, "a", "text/a"],
      [200, "a", "text/a"],
      [201, "b", "text/plain; charset=utf-8"],
      [500, undefined, "text/html; charset=utf-8"],
      [200, "a", "text/a"],
      [500, undefined, "text/html; charset=utf-8"],
      [201, "b", "text/plain; charset=utf-8"],
    ],
  );
});

test("the head follows the Date: a new second gives a new Date field", () => {
  let now = NOW;
  const e = new HttpEngine({
    files: new MemFiles(),
    routes: new Routes().get(
      "/j",
      jsonNow(() => ({ ok: true })),
    ),
    now: () => now,
  });
  const conn = e.connection();
  const dates: (string | undefined)[] = [];
  for (const step of [0, 400, 700, 1000, 0]) {
    now += step;
    conn.feed(request("GET", "/j"));
    const out: Buffer[] = [];
    for (let o = run(conn.pull()); o !== null; o = run(conn.pull())) out.push(Buffer.from(o));
    dates.push(header(parseResponses(Buffer.concat(out))[0]!, "date"));
  }
  const fmt = (ms: number) => new Date(ms).toUTCString();
  assert.deepEqual(dates, [fmt(NOW), fmt(NOW), fmt(NOW + 1000), fmt(NOW + 2000), fmt(NOW + 2000)]);
});

test("a string body is sent as UTF-8 with its byte length, small or larger than a chunk", () => {
  const small = "h\u00e9llo \u20ac \u{1f600}";
  const large = `${"\u00e9".repeat(3000)}end`; // 6003 bytes: more than a 4 KiB output chunk
  const routes = new Routes()
    .get("/s", () => ({ status: 200, body: small }))
    .get("/l", () => ({ status: 200, body: large }))
    .get("/e", () => ({ status: 204, body: "" }));
  const e = new HttpEngine({ files: new MemFiles(), routes, now: () => NOW, outputBytes: 4096 });
  const rs = parseResponses(
    exchange(e.connection(), [
      Buffer.concat([
        request("GET", "/s"),
        request("HEAD", "/l"),
        request("GET", "/l"),
        request("GET", "/e"),
      ]),
    ]).output,
    ["GET", "HEAD", "GET", "GET"],
  );
  assert.equal(rs[0]!.body.toString("utf8"), small);
  assert.equal(header(rs[0]!, "content-length"), String(Buffer.byteLength(small)));
  assert.equal(header(rs[1]!, "content-length"), String(Buffer.byteLength(large)));
  assert.equal(rs[2]!.body.toString("utf8"), large);
  assert.equal(rs[3]!.status, 204);
  assert.equal(header(rs[3]!, "content-length"), undefined);
});

test("pending: false only when a pull would return null, true whenever one has work", () => {
  const e = echoEngine();
  const conn = e.connection();
  const check = (): Uint8Array | null => {
    const before = conn.pending;
    const out = run(conn.pull());
    if (!before) assert.equal(out, null, "pending was false, yet pull had bytes");
    return out;
  };
  assert.equal(conn.pending, false);
  assert.equal(check(), null);
  const req = request("GET", "/a");
  conn.feed(req.subarray(0, 7)); // a partial request: bytes to parse, no answer yet
  assert.equal(conn.pending, true);
  assert.equal(check(), null);
  conn.feed(req.subarray(7));
  assert.equal(conn.pending, true);
  assert.notEqual(check(), null);
  assert.equal(conn.pending, false); // answered, nothing left: recv next
  assert.equal(check(), null);
  conn.end();
  assert.equal(conn.pending, true); // the end of the stream is news: pull says done
  assert.equal(check(), null);
  assert.equal(conn.done, true);
});

test("property: a keep-alive sequence of near-repeats is answered as each was sent", () => {
  const name = fc.constantFrom("Host", "HOST", "host", "X-A", "x-a", "X-B");
  const value = fc.constantFrom("v", "V", "v2", "", "a b");
  const req = fc.record({
    method: fc.constantFrom("GET", "POST"),
    target: fc.constantFrom("/a", "/b", "/a?q", "/a?Q", "/a%2Fb", "/caf%C3%A9"),
    extra: fc.array(fc.tuple(name, value), { maxLength: 3 }),
  });
  fc.assert(
    fc.property(fc.array(req, { minLength: 1, maxLength: 12 }), fc.boolean(), (reqs, split) => {
      const wire = reqs.map(({ method, target, extra }) => {
        const lines = [`${method} ${target} HTTP/1.1`, "Host: h"];
        for (const [n, v] of extra) if (n.toLowerCase() !== "host") lines.push(`${n}: ${v}`);
        if (method === "POST") lines.push("Content-Length: 0");
        return Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
      });
      const bodies = split
        ? oneByOne(echoEngine(), wire)
        : parseResponses(
            exchange(echoEngine().connection(), [Buffer.concat(wire)]).output,
            reqs.map((r) => r.method),
          ).map((r) => r.body.toString());
      assert.equal(bodies.length, reqs.length);
      reqs.forEach(({ method, target, extra }, i) => {
        const v = JSON.parse(bodies[i]!);
        assert.equal(v.method, method);
        assert.equal(v.target, target);
        const want: [string, string][] = [["host", "h"]];
        for (const [n, val] of extra)
          if (n.toLowerCase() !== "host") want.push([n.toLowerCase(), val]);
        if (method === "POST") want.push(["content-length", "0"]);
        assert.deepEqual(v.headers, want);
      });
    }),
    { numRuns: 300 },
  );
});
