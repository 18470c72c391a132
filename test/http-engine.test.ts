/**
 * http-engine: what the HTTP engine answers, driven with no machine — a trivial runner over
 * in-memory StaticFiles whose every call is a (fake) syscall yield, so the tests also check
 * that the engine passes the green-thread protocol through.
 *
 * Static files (ETag and Last-Modified with 304 and 412, ranges 206/416, HEAD, content types,
 * index files and directory redirects, traversal, large files streamed in chunks), routes
 * (chunked POST echo, 100-continue, JSON from a generator, streamed bodies, handler errors),
 * persistence (keep-alive, close, HTTP/1.0), pipelining order, options, serveConnection.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, test } from "node:test";
import {
  echo,
  formatHttpDate,
  type Green,
  type HandlerResponse,
  HttpEngine,
  type HttpOptions,
  json,
  parseHttpDate,
  Routes,
  serveConnection,
} from "../programs/http/index.js";
import { InvalidArgumentError, PanicError } from "../src/errors.js";
import {
  exchange,
  header,
  MemFiles,
  parseResponses,
  type Response,
  request,
  run,
  syscall,
} from "./fixtures/http-helpers.js";

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);
const MTIME = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
const ALPHA = "abcdefghijklmnopqrstuvwxyz";

function files(): MemFiles {
  return new MemFiles()
    .put("/index.html", "<h1>home</h1>", MTIME)
    .put("/a.txt", ALPHA, MTIME)
    .put("/docs/index.html", "docs", MTIME)
    .put("/hello world.txt", "spaced", MTIME)
    .put("/caf\u00e9.txt", "utf8 name", MTIME)
    .put("/empty.txt", "", MTIME)
    .put("/fresh.txt", "new", NOW - 500);
}

function engine(options: Partial<HttpOptions> = {}, fs = files()): HttpEngine {
  const routes = new Routes().post("/api/echo", echo);
  return new HttpEngine({ files: fs, routes, now: () => NOW, ...options });
}

/** Send requests on one connection; the responses, read knowing the methods. */
function ask(e: HttpEngine, ...requests: Buffer[]): Response[] {
  const methods = requests.map((r) => r.toString("latin1").split(" ")[0]!);
  return parseResponses(exchange(e.connection(), [Buffer.concat(requests)]).output, methods);
}

function one(e: HttpEngine, req: Buffer): Response {
  const [r] = ask(e, req);
  assert.ok(r);
  return r;
}

const ETAG = `"${(101).toString(16)}-${(26).toString(16)}-${Math.floor(MTIME).toString(16)}"`;
const LAST_MODIFIED = formatHttpDate(MTIME);

describe("static files", () => {
  test("200 with Date, Server, Content-Length, Content-Type, Last-Modified, ETag", () => {
    const r = one(engine(), request("GET", "/a.txt"));
    assert.equal(r.version, "HTTP/1.1");
    assert.equal(r.status, 200);
    assert.equal(r.reason, "OK");
    assert.equal(r.body.toString(), ALPHA);
    assert.equal(header(r, "date"), "Sat, 01 Jun 2024 12:00:00 GMT");
    assert.equal(header(r, "server"), "exocore");
    assert.equal(header(r, "content-length"), "26");
    assert.equal(header(r, "content-type"), "text/plain; charset=utf-8");
    assert.equal(header(r, "last-modified"), "Tue, 02 Jan 2024 03:04:05 GMT");
    assert.equal(header(r, "etag"), ETAG);
    assert.equal(header(r, "accept-ranges"), "bytes");
    assert.equal(header(r, "connection"), undefined);
  });

  test("/ and /dir/ serve index.html; /dir redirects to /dir/ keeping the query", () => {
    const e = engine();
    assert.equal(one(e, request("GET", "/")).body.toString(), "<h1>home</h1>");
    assert.equal(one(e, request("GET", "/docs/")).body.toString(), "docs");
    const r = one(e, request("GET", "/docs?x=1"));
    assert.equal(r.status, 301);
    assert.equal(header(r, "location"), "/docs/?x=1");
    assert.equal(header(r, "content-length"), "0");
  });

  test("404 with a small HTML page; HEAD gets the head only", () => {
    const e = engine();
    const r = one(e, request("GET", "/nope.html"));
    assert.equal(r.status, 404);
    assert.equal(header(r, "content-type"), "text/html; charset=utf-8");
    assert.match(r.body.toString(), /<h1>404 Not Found<\/h1>/);
    assert.equal(header(r, "content-length"), String(r.body.length));
    const h = one(e, request("HEAD", "/nope.html"));
    assert.equal(h.status, 404);
    assert.equal(header(h, "content-length"), String(r.body.length));
    assert.equal(h.body.length, 0);
  });

  test("HEAD has exactly GET's head and no body, even pipelined before a GET", () => {
    const e = engine();
    const [h, g] = ask(e, request("HEAD", "/a.txt"), request("GET", "/a.txt"));
    assert.deepEqual(h!.fields, g!.fields);
    assert.equal(h!.body.length, 0);
    assert.equal(g!.body.toString(), ALPHA);
  });

  test("Content-Type by extension", () => {
    const types: [string, string][] = [
      ["/x.html", "text/html; charset=utf-8"],
      ["/x.css", "text/css; charset=utf-8"],
      ["/x.js", "text/javascript; charset=utf-8"],
      ["/x.json", "application/json"],
      ["/x.txt", "text/plain; charset=utf-8"],
      ["/x.svg", "image/svg+xml"],
      ["/x.png", "image/png"],
      ["/x.jpg", "image/jpeg"],
      ["/x.JPEG", "image/jpeg"],
      ["/x.gif", "image/gif"],
      ["/x.ico", "image/x-icon"],
      ["/x.wasm", "application/wasm"],
      ["/x.pdf", "application/pdf"],
      ["/x.bin", "application/octet-stream"],
      ["/noext", "application/octet-stream"],
      ["/.hidden", "application/octet-stream"],
    ];
    const fs = new MemFiles();
    for (const [p] of types) fs.put(p, "x");
    const e = engine({}, fs);
    for (const [p, type] of types)
      assert.equal(header(one(e, request("GET", p)), "content-type"), type, p);
  });

  test("paths: percent-decoding, query ignored, absolute-form, dot segments", () => {
    const e = engine();
    assert.equal(one(e, request("GET", "/hello%20world.txt")).body.toString(), "spaced");
    assert.equal(one(e, request("GET", "/caf%C3%A9.txt")).body.toString(), "utf8 name");
    assert.equal(one(e, request("GET", "/a.txt?v=2&x=%zz")).body.toString(), ALPHA);
    assert.equal(one(e, request("GET", "http://example.test/a.txt")).body.toString(), ALPHA);
    assert.equal(one(e, request("GET", "//./a.txt")).body.toString(), ALPHA);
  });

  test("traversal is refused with 403 however it is spelled, and never reaches the files", () => {
    const fs = files();
    const seen: string[] = [];
    const stat = fs.stat.bind(fs);
    fs.stat = (p: string) => {
      seen.push(p);
      return stat(p);
    };
    const e = engine({}, fs);
    for (const t of [
      "/../etc/passwd",
      "/docs/../../x",
      "/%2e%2e/x",
      "/docs/%2E%2E%2F%2e%2e/x",
      "/a/..",
      "/..",
    ]) {
      const r = one(e, request("GET", t));
      assert.equal(r.status, 403, t);
    }
    assert.deepEqual(seen, []);
    // A ".." that only looks like one is a name like any other.
    assert.equal(one(e, request("GET", "/..a.txt")).status, 404);
  });

  test("If-None-Match: 304 on a match (weak comparison, lists, *), 200 otherwise", () => {
    const e = engine();
    for (const inm of [ETAG, `W/${ETAG}`, `"zzz", ${ETAG}`, "*"]) {
      const r = one(e, request("GET", "/a.txt", { "If-None-Match": inm }));
      assert.equal(r.status, 304, inm);
      assert.equal(header(r, "etag"), ETAG);
      assert.equal(r.body.length, 0);
      assert.equal(header(r, "content-length"), undefined);
    }
    for (const inm of ['"zzz"', "garbage", `W/"other"`]) {
      assert.equal(one(e, request("GET", "/a.txt", { "If-None-Match": inm })).status, 200, inm);
    }
  });

  test("If-Modified-Since: 304 unless modified after it; all three date formats; INM wins", () => {
    const e = engine();
    const later = [
      LAST_MODIFIED,
      "Wed, 03 Jan 2024 00:00:00 GMT",
      "Wednesday, 03-Jan-24 00:00:00 GMT",
      "Wed Jan  3 00:00:00 2024",
    ];
    for (const ims of later) {
      assert.equal(one(e, request("GET", "/a.txt", { "If-Modified-Since": ims })).status, 304, ims);
    }
    for (const ims of [
      "Mon, 01 Jan 2024 00:00:00 GMT",
      "not a date",
      "Tue, 31 Feb 2024 00:00:00 GMT",
    ]) {
      assert.equal(one(e, request("GET", "/a.txt", { "If-Modified-Since": ims })).status, 200, ims);
    }
    const both = { "If-None-Match": '"zzz"', "If-Modified-Since": LAST_MODIFIED };
    assert.equal(one(e, request("GET", "/a.txt", both)).status, 200);
  });

  test("If-Match and If-Unmodified-Since: 412 when they fail", () => {
    const e = engine();
    assert.equal(one(e, request("GET", "/a.txt", { "If-Match": '"zzz"' })).status, 412);
    assert.equal(one(e, request("GET", "/a.txt", { "If-Match": ETAG })).status, 200);
    assert.equal(one(e, request("GET", "/a.txt", { "If-Match": `W/${ETAG}` })).status, 412);
    const before = "Mon, 01 Jan 2024 00:00:00 GMT";
    assert.equal(one(e, request("GET", "/a.txt", { "If-Unmodified-Since": before })).status, 412);
    assert.equal(
      one(e, request("GET", "/a.txt", { "If-Unmodified-Since": LAST_MODIFIED })).status,
      200,
    );
  });

  test("a file changed less than a second ago has a weak ETag", () => {
    const r = one(engine(), request("GET", "/fresh.txt"));
    assert.match(header(r, "etag")!, /^W\/"[0-9a-f]+-3-[0-9a-f]+"$/);
    assert.match(header(one(engine(), request("GET", "/a.txt")), "etag")!, /^"/);
  });

  test("Range: one range → 206 with Content-Range", () => {
    const e = engine();
    const cases: [string, number, number][] = [
      ["bytes=0-4", 0, 4],
      ["bytes=5-", 5, 25],
      ["bytes=-3", 23, 25],
      ["bytes=20-1000", 20, 25],
      ["bytes=-100", 0, 25],
      ["BYTES = 2-2", 2, 2],
      ["bytes=0-1, ", 0, 1],
    ];
    for (const [range, a, b] of cases) {
      const r = one(e, request("GET", "/a.txt", { Range: range }));
      assert.equal(r.status, 206, range);
      assert.equal(header(r, "content-range"), `bytes ${a}-${b}/26`, range);
      assert.equal(header(r, "content-length"), String(b - a + 1));
      assert.equal(r.body.toString(), ALPHA.slice(a, b + 1));
      assert.equal(header(r, "content-type"), "text/plain; charset=utf-8");
    }
  });

  test("Range: nothing satisfiable → 416 bytes */size; the connection goes on", () => {
    const e = engine();
    for (const range of ["bytes=26-", "bytes=100-200", "bytes=-0", "bytes=30-40, 50-"]) {
      const [r, next] = ask(
        e,
        request("GET", "/a.txt", { Range: range }),
        request("GET", "/a.txt"),
      );
      assert.equal(r!.status, 416, range);
      assert.equal(header(r!, "content-range"), "bytes */26");
      assert.equal(next!.status, 200);
    }
    const empty = one(e, request("GET", "/empty.txt", { Range: "bytes=0-" }));
    assert.equal(empty.status, 416);
    assert.equal(header(empty, "content-range"), "bytes */0");
  });

  test("Range: several ranges, bad syntax, another unit, HEAD, failed If-Range → 200 whole", () => {
    const e = engine();
    const cases: [Record<string, string>, string][] = [
      [{ Range: "bytes=0-1,3-4" }, "GET"],
      [{ Range: "bytes=5-2" }, "GET"],
      [{ Range: "bytes=x-y" }, "GET"],
      [{ Range: "bytes=" }, "GET"],
      [{ Range: "items=0-1" }, "GET"],
      [{ Range: "bytes=0-1" }, "HEAD"],
      [{ Range: "bytes=0-1", "If-Range": '"zzz"' }, "GET"],
      [{ Range: "bytes=0-1", "If-Range": `W/${ETAG}` }, "GET"],
      [{ Range: "bytes=0-1", "If-Range": "Mon, 01 Jan 2024 00:00:00 GMT" }, "GET"],
    ];
    for (const [h, method] of cases) {
      const r = one(e, request(method, "/a.txt", h));
      assert.equal(r.status, 200, JSON.stringify(h));
      assert.equal(header(r, "content-length"), "26");
      assert.equal(header(r, "content-range"), undefined);
    }
    for (const ifRange of [ETAG, LAST_MODIFIED]) {
      const r = one(e, request("GET", "/a.txt", { Range: "bytes=0-1", "If-Range": ifRange }));
      assert.equal(r.status, 206, ifRange);
    }
  });

  test("a large file is streamed in reads of at most one chunk, and arrives whole", () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff;
    const fs = files().put("/big.bin", big);
    const e = engine({ outputBytes: 16 * 1024 }, fs);
    const conn = e.connection();
    conn.feed(request("GET", "/big.bin"));
    const chunks: Buffer[] = [];
    for (let o = run(conn.pull()); o !== null; o = run(conn.pull())) {
      assert.ok(o.length <= 16 * 1024);
      assert.ok(conn.bufferedBytes <= 16 * 1024);
      chunks.push(Buffer.from(o));
    }
    assert.ok(chunks.length >= 300_000 / 16384);
    const [r] = parseResponses(Buffer.concat(chunks));
    assert.deepEqual(r!.body, big);
    assert.ok(fs.reads.every(([, , len]) => len <= 16 * 1024));
    assert.equal(conn.done, false);
  });

  test("a file that shrinks under a response ends the connection (the length was promised)", () => {
    const fs = files().put("/big.bin", Buffer.alloc(200_000, 1));
    const e = engine({ outputBytes: 16 * 1024 }, fs);
    const conn = e.connection();
    conn.feed(Buffer.concat([request("GET", "/big.bin"), request("GET", "/a.txt")]));
    const first = run(conn.pull());
    assert.ok(first !== null);
    fs.files.delete("/big.bin"); // read() now fails
    let total = first.length;
    for (let o = run(conn.pull()); o !== null; o = run(conn.pull())) total += o.length;
    assert.ok(total < 200_000);
    assert.ok(conn.done);
  });
});

describe("routes", () => {
  test("chunked POST echo, extensions and trailers dropped, Content-Type kept", () => {
    const body =
      "4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n";
    const r = one(
      engine(),
      request(
        "POST",
        "/api/echo",
        { "Transfer-Encoding": "chunked", "Content-Type": "text/x-demo" },
        body,
      ),
    );
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), "Wikipedia in \r\n\r\nchunks.");
    assert.equal(header(r, "content-type"), "text/x-demo");
    assert.equal(header(r, "content-length"), String(r.body.length));
  });

  test("Expect: 100-continue gets 100 Continue before the body is sent", () => {
    const conn = engine().connection();
    const head =
      "POST /api/echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    conn.feed(Buffer.from(head));
    const interim = run(conn.pull());
    assert.equal(Buffer.from(interim!).toString(), "HTTP/1.1 100 Continue\r\n\r\n");
    assert.equal(run(conn.pull()), null);
    conn.feed(Buffer.from("hello"));
    const [r] = parseResponses(Buffer.from(run(conn.pull())!), ["POST"]);
    assert.equal(r!.status, 200);
    assert.equal(r!.body.toString(), "hello");
  });

  test("no 100 Continue for HTTP/1.0 or for a request without a body", () => {
    const rs = ask(
      engine(),
      request("POST", "/api/echo", { Expect: "100-continue" }, "x", "HTTP/1.0"),
      request("POST", "/api/echo", { Expect: "100-continue", "Content-Length": "0" }),
    );
    assert.deepEqual(
      rs.map((r) => r.status),
      [200],
    ); // the 1.0 request closes the connection
    const r2 = ask(
      engine(),
      request("POST", "/api/echo", { Expect: "100-continue", "Content-Length": "0" }),
    );
    assert.deepEqual(
      r2.map((r) => r.status),
      [200],
    );
  });

  test("GET /api/stats: JSON from a generator that makes syscalls; HEAD answered too", () => {
    let calls = 0;
    const routes = new Routes().get(
      "/api/stats",
      json(function* () {
        yield* syscall();
        calls++;
        return { cores: 2, keys: calls };
      }),
    );
    const e = new HttpEngine({ files: files(), routes, now: () => NOW });
    const [g, h] = ask(e, request("GET", "/api/stats?verbose=1"), request("HEAD", "/api/stats"));
    assert.equal(g!.status, 200);
    assert.equal(header(g!, "content-type"), "application/json");
    assert.deepEqual(JSON.parse(g!.body.toString()), { cores: 2, keys: 1 });
    assert.equal(h!.status, 200);
    assert.equal(h!.body.length, 0);
    assert.equal(header(h!, "content-length"), String('{"cores":2,"keys":2}'.length));
  });

  test("a handler sees method, path, query, version, headers and body", () => {
    let seen: unknown;
    const routes = new Routes().post("/api/x y", (req) => {
      seen = [
        req.method,
        req.path,
        req.query,
        req.minor,
        req.headers.get("X-A"),
        Buffer.from(req.body).toString(),
      ];
      return { status: 201, headers: { "X-Reply": "yes" }, body: "made" };
    });
    const e = new HttpEngine({ files: files(), routes, now: () => NOW });
    const r = one(e, request("POST", "/api/x%20y?q=1", { "X-A": "1", "x-a": "2" }, "payload"));
    assert.deepEqual(seen, ["POST", "/api/x y", "q=1", 1, "1, 2", "payload"]);
    assert.equal(r.status, 201);
    assert.equal(r.reason, "Created");
    assert.equal(header(r, "x-reply"), "yes");
    assert.equal(header(r, "content-type"), "text/plain; charset=utf-8");
    assert.equal(r.body.toString(), "made");
  });

  test("a thrown handler is a 500, reported, and the connection stays usable", () => {
    const errors: unknown[] = [];
    const routes = new Routes()
      .get("/boom", function* () {
        yield* syscall();
        throw new Error("handler bug");
      })
      .get("/bad-field", () => ({ status: 200, headers: { "Content-Length": "3" }, body: "abc" }))
      .get("/split", () => ({ status: 200, headers: { "X-A": "a\r\nSet-Cookie: x" } }))
      .get("/status", () => ({ status: 99 }))
      .get("/no-body-allowed", () => ({ status: 204, body: "x" }));
    const e = new HttpEngine({
      files: files(),
      routes,
      now: () => NOW,
      onError: (err) => errors.push(err),
    });
    const rs = ask(
      e,
      request("GET", "/boom"),
      request("GET", "/bad-field"),
      request("GET", "/split"),
      request("GET", "/status"),
      request("GET", "/no-body-allowed"),
      request("GET", "/a.txt"),
    );
    assert.deepEqual(
      rs.map((r) => r.status),
      [500, 500, 500, 500, 500, 200],
    );
    assert.equal(errors.length, 5);
    assert.equal((errors[0] as Error).message, "handler bug");
    assert.ok(errors.slice(1).every((x) => x instanceof InvalidArgumentError));
    assert.equal(rs[5]!.body.toString(), ALPHA);
  });

  test("a PanicError from a handler is not swallowed", () => {
    const routes = new Routes().get("/panic", () => {
      throw new PanicError("test: broken invariant");
    });
    const conn = new HttpEngine({ files: files(), routes }).connection();
    conn.feed(request("GET", "/panic"));
    assert.throws(() => run(conn.pull()), PanicError);
  });

  test("204 has no body and no Content-Length", () => {
    const routes = new Routes().post("/nothing", () => ({ status: 204 }));
    const e = new HttpEngine({ files: files(), routes, now: () => NOW });
    const [r, next] = ask(e, request("POST", "/nothing", {}, "x"), request("GET", "/a.txt"));
    assert.equal(r!.status, 204);
    assert.equal(header(r!, "content-length"), undefined);
    assert.equal(next!.body.toString(), ALPHA);
  });

  describe("a body of unknown length", () => {
    function streaming(pieces: readonly string[], failAt = -1): Routes {
      return new Routes().get("/stream", (): HandlerResponse => {
        let i = 0;
        return {
          status: 200,
          body: function* (): Green<Uint8Array | null> {
            yield* syscall();
            if (i === failAt) throw new Error("producer failed");
            return i < pieces.length ? Buffer.from(pieces[i++]!) : null;
          },
        };
      });
    }

    test("is sent chunked to HTTP/1.1 and the connection goes on", () => {
      const e = new HttpEngine({
        files: files(),
        routes: streaming(["ab", "", "cde"]),
        now: () => NOW,
      });
      const conn = e.connection();
      const out = exchange(
        conn,
        [Buffer.concat([request("GET", "/stream"), request("GET", "/a.txt")])],
        false,
      );
      const [r, next] = parseResponses(out.output);
      assert.equal(header(r!, "transfer-encoding"), "chunked");
      assert.equal(header(r!, "content-length"), undefined);
      assert.ok(r!.chunked);
      assert.equal(r!.body.toString(), "abcde");
      assert.equal(next!.body.toString(), ALPHA);
      assert.equal(out.done, false);
    });

    test("is sent close-delimited to HTTP/1.0, even when it asks for keep-alive", () => {
      const e = new HttpEngine({
        files: files(),
        routes: streaming(["ab", "cde"]),
        now: () => NOW,
      });
      const out = exchange(
        e.connection(),
        [request("GET", "/stream", { Connection: "keep-alive" }, undefined, "HTTP/1.0")],
        false,
      );
      const [r] = parseResponses(out.output);
      assert.equal(header(r!, "connection"), "close");
      assert.equal(header(r!, "transfer-encoding"), undefined);
      assert.equal(r!.body.toString(), "abcde");
      assert.ok(out.done);
    });

    test("a producer that throws ends the connection without the last chunk", () => {
      const e = new HttpEngine({
        files: files(),
        routes: streaming(["ab", "cd"], 1),
        now: () => NOW,
      });
      const out = exchange(
        e.connection(),
        [Buffer.concat([request("GET", "/stream"), request("GET", "/a.txt")])],
        false,
      );
      assert.ok(out.done);
      assert.ok(out.output.toString().endsWith("2\r\nab\r\n"));
      assert.throws(() => parseResponses(out.output));
    });
  });
});

describe("persistence and pipelining", () => {
  test("HTTP/1.1 persists by default; Connection: close closes after the response", () => {
    const conn = engine().connection();
    const a = exchange(conn, [request("GET", "/a.txt")], false);
    assert.equal(a.done, false);
    const b = exchange(
      conn,
      [request("GET", "/a.txt", { Connection: "close" }), request("GET", "/a.txt")],
      false,
    );
    const rs = parseResponses(b.output);
    assert.equal(rs.length, 1);
    assert.equal(header(rs[0]!, "connection"), "close");
    assert.ok(b.done);
  });

  test("HTTP/1.0 closes unless it asks for keep-alive, which is then confirmed", () => {
    const plain = exchange(
      engine().connection(),
      [request("GET", "/a.txt", {}, undefined, "HTTP/1.0")],
      false,
    );
    assert.equal(header(parseResponses(plain.output)[0]!, "connection"), "close");
    assert.ok(plain.done);
    const conn = engine().connection();
    const ka = exchange(
      conn,
      [request("GET", "/a.txt", { Connection: "Keep-Alive" }, undefined, "HTTP/1.0")],
      false,
    );
    const r = parseResponses(ka.output)[0]!;
    assert.equal(r.version, "HTTP/1.1");
    assert.equal(header(r, "connection"), "keep-alive");
    assert.equal(header(r, "content-length"), "26");
    assert.equal(ka.done, false);
  });

  test("pipelined requests are answered in order, slow handlers included, small ones in one chunk", () => {
    const routes = new Routes()
      .get("/slow", function* () {
        for (let i = 0; i < 50; i++) yield* syscall();
        return { status: 200, body: "slow" };
      })
      .post("/api/echo", echo);
    const e = new HttpEngine({ files: files(), routes, now: () => NOW });
    const conn = e.connection();
    conn.feed(
      Buffer.concat([
        request("GET", "/slow"),
        request("GET", "/a.txt"),
        request("POST", "/api/echo", {}, "third"),
        request("GET", "/missing"),
        request("GET", "/slow"),
      ]),
    );
    const chunk = run(conn.pull());
    assert.equal(run(conn.pull()), null);
    const rs = parseResponses(Buffer.from(chunk!));
    assert.deepEqual(
      rs.map((r) => [r.status, r.body.toString().slice(0, 5)]),
      [
        [200, "slow"],
        [200, "abcde"],
        [200, "third"],
        [404, "<!DOC"],
        [200, "slow"],
      ],
    );
  });

  test("end of stream: complete requests are answered, a partial one dropped, then done", () => {
    const conn = engine().connection();
    conn.feed(Buffer.concat([request("GET", "/a.txt"), Buffer.from("GET /a.txt HTTP/1.1\r\nHo")]));
    conn.end();
    const out: Buffer[] = [];
    for (let o = run(conn.pull()); o !== null; o = run(conn.pull())) out.push(Buffer.from(o));
    assert.equal(parseResponses(Buffer.concat(out)).length, 1);
    assert.ok(conn.done);
  });
});

describe("serveConnection over a transport", () => {
  test("runs the server loop: recv, feed, pull, send, until done", () => {
    const incoming = [
      request("GET", "/a.txt"),
      Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n"),
      Buffer.from("Connection: close\r\n\r\n"),
    ];
    const sent: Buffer[] = [];
    const io = {
      *recv(): Green<Uint8Array | number> {
        yield* syscall();
        return incoming.shift() ?? 0;
      },
      *send(bytes: Uint8Array): Green<number> {
        yield* syscall();
        sent.push(Buffer.from(bytes));
        return 0;
      },
    };
    const served = run(serveConnection(engine().connection(), io));
    assert.equal(served, 2);
    const rs = parseResponses(Buffer.concat(sent));
    assert.deepEqual(
      rs.map((r) => r.body.toString()),
      [ALPHA, "<h1>home</h1>"],
    );
  });

  test("returns the transport's -errno", () => {
    const io = {
      *recv(): Green<Uint8Array | number> {
        yield* syscall();
        return request("GET", "/a.txt");
      },
      *send(): Green<number> {
        yield* syscall();
        return -32;
      },
    };
    assert.equal(run(serveConnection(engine().connection(), io)), -32);
  });

  test("a peer that closes at once: 0 responses", () => {
    const io = {
      *recv(): Green<Uint8Array | number> {
        yield* syscall();
        return 0;
      },
      *send(): Green<number> {
        yield* syscall();
        return 0;
      },
    };
    assert.equal(run(serveConnection(engine().connection(), io)), 0);
  });
});

describe("options and routes are checked", () => {
  const fs = files();
  const cases: [Partial<HttpOptions>, RegExp][] = [
    [{ files: {} as never }, /files must be a StaticFiles/],
    [{ maxHeadBytes: 10 }, /maxHeadBytes must be an integer from 64 to 1048576, got 10/],
    [{ maxHeaders: 0 }, /maxHeaders must be an integer from 1/],
    [{ maxBodyBytes: -1 }, /maxBodyBytes must be an integer from 0/],
    [{ maxUriBytes: 1.5 }, /maxUriBytes must be an integer/],
    [{ outputBytes: 100 }, /outputBytes must be an integer from 1024/],
    [{ routes: {} as never }, /routes must be a Routes/],
    [{ now: 5 as never }, /now must be a function/],
    [{ onError: "x" as never }, /onError must be a function/],
  ];
  for (const [bad, message] of cases) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(
        () => new HttpEngine({ files: fs, ...bad }),
        (err: unknown) => {
          assert.ok(err instanceof InvalidArgumentError);
          assert.equal(err.code, "EXO_ERR_INVALID_ARG");
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  test("routes: normalised paths only, one handler per method and path", () => {
    const routes = new Routes().get("/a", echo);
    assert.throws(() => routes.get("/a", echo), /already registered/);
    assert.throws(() => routes.get("a", echo), /must be absolute and normalised/);
    assert.throws(() => routes.get("/x/../a", echo), /must be absolute and normalised/);
    assert.throws(() => routes.get("/b", 5 as never), /must be a function/);
    routes.post("/a", echo);
    assert.equal(routes.find("/a")!.allow, "GET, HEAD, POST");
  });
});

describe("HTTP-date", () => {
  test("formats IMF-fixdate and parses all three formats to the same time", () => {
    const t = Date.UTC(1994, 10, 6, 8, 49, 37);
    assert.equal(formatHttpDate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), t);
    assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", NOW), t);
    assert.equal(parseHttpDate("Sun Nov  6 08:49:37 1994"), t);
    for (const bad of [
      "",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 25:00:00 GMT",
      "yesterday",
    ]) {
      assert.ok(Number.isNaN(parseHttpDate(bad)), bad);
    }
  });
});
