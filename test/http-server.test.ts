/**
 * http-server on the machine: programs/http-server.js runs on a booted exocore machine (two
 * XOS cores, the storage domain over an NVMe VF on a disk image holding the sample site of
 * test/fixtures/site/ under /site, the network domain over a NIC VF with the TCP offload engine)
 * and real clients on the host's loopback talk to it:
 *
 * - curl: GET / byte-exact with its Content-Type; two URLs on one keep-alive connection;
 *   --range → 206 with Content-Range and the exact bytes (also across the server's 64 KiB read
 *   buffer); -I; If-None-Match with the ETag → 304; a chunked upload to POST /api/echo echoed
 *   byte-exact; 404; a folder → 301; GET /api/stats is JSON.
 * - a raw node:net socket: three pipelined requests in one write answered in order; a malformed
 *   request line → 400 and close; > 8 KiB of header → 431; a 2 MiB body → 413; PUT → 405 with
 *   Allow; HTTP/1.0 without keep-alive → the response, then close.
 * - ab -k and wrk under load: no failed request, no error (each skips if not installed).
 * - the ~200 KB binary file byte-exact (sha256), alone and on 8 connections at once: every byte
 *   crosses the storage domain, the server's process memory and the network domain.
 * - last, a power cut fails the disk: a file is then a 500 (not a 404: the site must not look
 *   empty because its storage failed) and the same connection still gets GET /api/stats.
 *
 * The image is built before boot (synchronous file I/O); once the machine runs, the main thread
 * hosts its device models, so every client runs as an async child process or a node:net socket.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { header, parseResponses, request } from "./fixtures/http-helpers.js";
import {
  buildSiteImage,
  installed,
  type RunningServer,
  runAsync,
  siteDir,
  startHttpServer,
} from "./fixtures/http-server-machine.js";

// Which clients this host has: asked before boot, and asynchronously anyway.
const missing = async (cmd: string) => ((await installed(cmd)) ? false : `${cmd} is not installed`);
const noCurl = await missing("curl");
const noAb = await missing("ab");
const noWrk = await missing("wrk");

// Every file of the sample site, read now: once the machine runs, its main thread is not ours
// to block, not even for a small synchronous read.
const SITE = new Map<string, Buffer>();
(function load(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) load(path);
    else SITE.set(relative(siteDir, path), readFileSync(path));
  }
})(siteDir);
function fixture(path: string): Buffer {
  const b = SITE.get(path);
  if (b === undefined) throw new Error(`no ${path} in ${siteDir}`);
  return b;
}
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const INDEX = fixture("index.html");
const BLOB = fixture("assets/blob.bin");

let work = "";
let server: RunningServer;
let url = "";

before(async () => {
  work = mkdtempSync(join(tmpdir(), "exocore-http-server-"));
  const image = join(work, "site.img");
  const counts = buildSiteImage(image);
  assert.equal(counts.files, SITE.size, "every file of the sample site is in the image");
  server = await startHttpServer(image, ["0", "/site"]);
  url = `http://127.0.0.1:${server.port}`;
});

after(async () => {
  await server?.m.shutdown();
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

// ---- curl ----

interface Fetched {
  readonly status: number;
  readonly fields: Map<string, string>;
  readonly body: Buffer;
}

/** `curl -sS -D - ARGS`: the last response's status, fields (lower-case names) and body. */
async function curl(...args: string[]): Promise<Fetched> {
  const r = await runAsync("curl", ["-sS", "-D", "-", ...args]);
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  // -D - puts every head (a 100 Continue, a redirect's) before the body; take the last one.
  let at = 0;
  let head = "";
  while (r.stdout.subarray(at, at + 5).toString("latin1") === "HTTP/") {
    const end = r.stdout.indexOf("\r\n\r\n", at);
    assert.ok(end > 0, "a complete head");
    head = r.stdout.subarray(at, end).toString("latin1");
    at = end + 4;
  }
  const [statusLine = "", ...lines] = head.split("\r\n");
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
  assert.ok(status !== null, `a status line, got ${JSON.stringify(statusLine)}`);
  const fields = new Map<string, string>();
  for (const l of lines) {
    const c = l.indexOf(":");
    fields.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  return { status: Number(status[1]), fields, body: r.stdout.subarray(at) };
}

describe("curl", { skip: noCurl }, () => {
  test("GET / is index.html, byte for byte, as text/html", async () => {
    const r = await curl(`${url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.fields.get("content-type"), "text/html; charset=utf-8");
    assert.equal(r.fields.get("content-length"), String(INDEX.length));
    assert.equal(r.fields.get("server"), "exocore");
    assert.deepEqual(r.body, INDEX);
  });

  test("every file of the site comes back exact, with its type", async () => {
    const files: [string, string][] = [
      ["/style.css", "text/css; charset=utf-8"],
      ["/app.js", "text/javascript; charset=utf-8"],
      ["/logo.svg", "image/svg+xml"],
      ["/assets/pixel.png", "image/png"],
      ["/docs/guide.txt", "text/plain; charset=utf-8"],
      ["/docs/", "text/html; charset=utf-8"],
    ];
    for (const [path, type] of files) {
      const r = await curl(`${url}${path}`);
      assert.equal(r.status, 200, path);
      assert.equal(r.fields.get("content-type"), type, path);
      const file = path.endsWith("/") ? `${path}index.html` : path;
      assert.deepEqual(r.body, fixture(file.slice(1)), path);
    }
  });

  test("two URLs on one command reuse one keep-alive connection", async () => {
    const r = await runAsync("curl", [
      "-sS",
      "-v",
      "-o",
      "/dev/null",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{num_connects}\n",
      `${url}/style.css`,
      `${url}/logo.svg`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    // One new TCP connection for the first transfer, none for the second.
    assert.equal(r.stdout.toString(), "200 1\n200 0\n");
    assert.match(r.stderr, /Re-using existing connection/);
    assert.doesNotMatch(r.stderr, /Connection: close/i);
  });

  test("--range 0-99 is a 206 with Content-Range and exactly those bytes", async () => {
    const r = await curl("--range", "0-99", `${url}/assets/blob.bin`);
    assert.equal(r.status, 206);
    assert.equal(r.fields.get("content-range"), `bytes 0-99/${BLOB.length}`);
    assert.equal(r.fields.get("content-length"), "100");
    assert.deepEqual(r.body, BLOB.subarray(0, 100));
  });

  test("ranges across the server's 64 KiB read buffer, and a suffix range, are exact", async () => {
    const mid = await curl("--range", "65000-140000", `${url}/assets/blob.bin`);
    assert.equal(mid.status, 206);
    assert.equal(mid.fields.get("content-range"), `bytes 65000-140000/${BLOB.length}`);
    assert.deepEqual(mid.body, BLOB.subarray(65000, 140001));
    const tail = await curl("--range", "-1000", `${url}/assets/blob.bin`);
    assert.equal(tail.status, 206);
    assert.deepEqual(tail.body, BLOB.subarray(BLOB.length - 1000));
    const past = await curl("--range", `${BLOB.length}-`, `${url}/assets/blob.bin`);
    assert.equal(past.status, 416);
    assert.equal(past.fields.get("content-range"), `bytes */${BLOB.length}`);
  });

  test("-I sends HEAD: GET's head, no body", async () => {
    const r = await runAsync("curl", ["-sS", "-I", `${url}/index.html`]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString("latin1");
    assert.ok(text.startsWith("HTTP/1.1 200 OK\r\n"), text);
    assert.ok(text.endsWith("\r\n\r\n"), "the head and nothing after it");
    assert.match(text, new RegExp(`\r\nContent-Length: ${INDEX.length}\r\n`, "i"));
    assert.match(text, /\r\nContent-Type: text\/html; charset=utf-8\r\n/i);
    assert.match(text, /\r\nETag: (W\/)?"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"\r\n/i);
    assert.match(text, /\r\nLast-Modified: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n/i);
  });

  test("a GET with If-None-Match: the ETag is a 304 with no body; another tag is a 200", async () => {
    const first = await curl(`${url}/style.css`);
    const etag = first.fields.get("etag");
    assert.ok(etag !== undefined, "an ETag");
    const same = await curl("-H", `If-None-Match: ${etag}`, `${url}/style.css`);
    assert.equal(same.status, 304);
    assert.equal(same.fields.get("etag"), etag);
    assert.equal(same.body.length, 0);
    const other = await curl("-H", 'If-None-Match: "not-this-one"', `${url}/style.css`);
    assert.equal(other.status, 200);
    assert.deepEqual(other.body, fixture("style.css"));
  });

  test("a chunked upload to POST /api/echo comes back byte for byte", async () => {
    const r = await runAsync("curl", [
      "-sS",
      "-v",
      "-H",
      "Transfer-Encoding: chunked",
      "-H",
      "Content-Type: application/x-exocore-test",
      "--data-binary",
      `@${join(siteDir, "assets", "blob.bin")}`,
      `${url}/api/echo`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /> Transfer-Encoding: chunked/);
    assert.match(r.stderr, /< HTTP\/1.1 200 OK/);
    assert.match(r.stderr, /< Content-Type: application\/x-exocore-test/i);
    assert.equal(r.stdout.length, BLOB.length);
    assert.equal(sha256(r.stdout), sha256(BLOB));
  });

  test("a missing file is a 404 page; a folder without its slash is a 301 to it", async () => {
    const lost = await curl(`${url}/no/such/file.html`);
    assert.equal(lost.status, 404);
    assert.match(lost.body.toString(), /<h1>404 Not Found<\/h1>/);
    const folder = await curl(`${url}/docs`);
    assert.equal(folder.status, 301);
    assert.equal(folder.fields.get("location"), "/docs/");
    const followed = await curl("-L", `${url}/docs`);
    assert.equal(followed.status, 200);
    assert.deepEqual(followed.body, fixture("docs/index.html"));
  });

  test("GET /api/stats is JSON from the server program", async () => {
    const r = await curl(`${url}/api/stats`);
    assert.equal(r.status, 200);
    assert.equal(r.fields.get("content-type"), "application/json");
    const stats = JSON.parse(r.body.toString()) as Record<string, unknown>;
    assert.equal(stats.server, "exocore");
    assert.ok(stats.core === 0 || stats.core === 1, `core ${String(stats.core)} of 2`);
    assert.equal(typeof stats.served, "number");
    assert.equal(typeof stats.uptimeMs, "number");
    assert.ok((stats.uptimeMs as number) >= 0);
  });

  test("the 200 KB binary file is byte-exact (sha256)", async () => {
    const r = await curl(`${url}/assets/blob.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.fields.get("content-type"), "application/octet-stream");
    assert.equal(r.fields.get("content-length"), String(BLOB.length));
    assert.equal(sha256(r.body), sha256(BLOB));
  });
});

// ---- the binary file on many connections at once (node:http) ----

test("the 200 KB binary file on 8 connections at once: every copy byte-exact", async () => {
  const agent = new http.Agent({ keepAlive: false });
  const one = () =>
    new Promise<Buffer>((resolve, reject) => {
      http
        .get(`${url}/assets/blob.bin`, { agent }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (b: Buffer) => parts.push(b));
          res.on("end", () =>
            res.statusCode === 200
              ? resolve(Buffer.concat(parts))
              : reject(new Error(`status ${res.statusCode}`)),
          );
          res.on("error", reject);
        })
        .on("error", reject);
    });
  const copies = await Promise.all(Array.from({ length: 8 }, one));
  agent.destroy();
  const want = sha256(BLOB);
  for (const [i, c] of copies.entries()) assert.equal(sha256(c), want, `copy ${i}`);
});

// ---- a raw socket ----

interface RawResult {
  readonly received: Buffer;
  /** The server ended or reset the connection (rather than the client hanging up). */
  readonly closedByServer: boolean;
}

/**
 * Write `bytes` on a new connection and read until `enough(received)` or the server closes.
 * A reset after the server's answer (a close with our unread bytes in its buffer) counts as a
 * close: what arrived before it is kept.
 */
function raw(
  bytes: Buffer,
  enough: (received: Buffer) => boolean = () => false,
): Promise<RawResult> {
  const socket = net.connect(server.port, "127.0.0.1");
  const parts: Buffer[] = [];
  return new Promise((resolve) => {
    let settled = false;
    const finish = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ received: Buffer.concat(parts), closedByServer });
    };
    socket.on("data", (b: Buffer) => {
      parts.push(b);
      if (enough(Buffer.concat(parts))) finish(false);
    });
    socket.on("end", () => finish(true));
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
    socket.write(bytes);
  });
}

/** Do `received` hold `n` complete responses to `methods`? */
function has(received: Buffer, methods: readonly string[], n: number): boolean {
  try {
    return parseResponses(received, methods).length >= n;
  } catch {
    return false;
  }
}

describe("raw socket", () => {
  test("three pipelined requests in one write are answered in order, the connection kept", async () => {
    const methods = ["GET", "HEAD", "POST"];
    const { received, closedByServer } = await raw(
      Buffer.concat([
        request("GET", "/docs/guide.txt"),
        request("HEAD", "/assets/pixel.png"),
        request("POST", "/api/echo", { "Content-Type": "text/plain" }, "third"),
      ]),
      (r) => has(r, methods, 3),
    );
    assert.equal(closedByServer, false);
    const rs = parseResponses(received, methods);
    assert.deepEqual(
      rs.map((r) => r.status),
      [200, 200, 200],
    );
    assert.deepEqual(rs[0]!.body, fixture("docs/guide.txt"));
    assert.equal(header(rs[1]!, "content-type"), "image/png");
    assert.equal(header(rs[1]!, "content-length"), String(fixture("assets/pixel.png").length));
    assert.equal(rs[1]!.body.length, 0);
    assert.equal(rs[2]!.body.toString(), "third");
  });

  test("a malformed request line gets 400 and the server closes", async () => {
    const { received, closedByServer } = await raw(Buffer.from("GET /index.html\r\n\r\n"));
    assert.ok(closedByServer);
    const rs = parseResponses(received);
    assert.equal(rs.length, 1);
    assert.equal(rs[0]!.status, 400);
    assert.equal(header(rs[0]!, "connection"), "close");
  });

  test("more than 8 KiB of header fields get 431 and the server closes", async () => {
    const big = request("GET", "/index.html", { "X-Filler": "x".repeat(9000) });
    const { received, closedByServer } = await raw(big);
    assert.ok(closedByServer);
    const [r] = parseResponses(received);
    assert.equal(r!.status, 431);
  });

  test("a 2 MiB body gets 413, decided from Content-Length or the chunk size", async () => {
    const body = Buffer.alloc(2 << 20, 0x61);
    const sized = await raw(request("POST", "/api/echo", {}, body));
    assert.ok(sized.closedByServer);
    assert.equal(parseResponses(sized.received)[0]!.status, 413);
    const chunk = Buffer.concat([
      Buffer.from(`${body.length.toString(16)}\r\n`),
      body,
      Buffer.from("\r\n0\r\n\r\n"),
    ]);
    const chunked = await raw(
      request("POST", "/api/echo", { "Transfer-Encoding": "chunked" }, chunk),
    );
    assert.ok(chunked.closedByServer);
    assert.equal(parseResponses(chunked.received)[0]!.status, 413);
  });

  test("PUT gets 405 with Allow, and the connection stays open", async () => {
    const methods = ["PUT", "PUT", "GET"];
    const { received, closedByServer } = await raw(
      Buffer.concat([
        request("PUT", "/index.html", {}, "new page"),
        request("PUT", "/api/echo", {}, "x"),
        request("GET", "/style.css"),
      ]),
      (r) => has(r, methods, 3),
    );
    assert.equal(closedByServer, false);
    const rs = parseResponses(received, methods);
    assert.equal(rs[0]!.status, 405);
    assert.equal(header(rs[0]!, "allow"), "GET, HEAD");
    assert.equal(rs[1]!.status, 405);
    assert.equal(header(rs[1]!, "allow"), "POST");
    assert.equal(rs[2]!.status, 200);
    assert.deepEqual(rs[2]!.body, fixture("style.css"));
  });

  test("HTTP/1.0 without keep-alive: the response, then the server closes", async () => {
    const { received, closedByServer } = await raw(
      request("GET", "/docs/guide.txt", {}, undefined, "HTTP/1.0"),
    );
    assert.ok(closedByServer);
    const rs = parseResponses(received);
    assert.equal(rs.length, 1);
    assert.equal(rs[0]!.status, 200);
    assert.equal(header(rs[0]!, "connection"), "close");
    assert.deepEqual(rs[0]!.body, fixture("docs/guide.txt"));
  });

  test("HTTP/1.0 with Connection: keep-alive stays open for a second request", async () => {
    const methods = ["GET", "GET"];
    const ka = { Connection: "keep-alive" };
    const { received, closedByServer } = await raw(
      Buffer.concat([
        request("GET", "/logo.svg", ka, undefined, "HTTP/1.0"),
        request("GET", "/app.js", ka, undefined, "HTTP/1.0"),
      ]),
      (r) => has(r, methods, 2),
    );
    assert.equal(closedByServer, false);
    const rs = parseResponses(received, methods);
    assert.equal(header(rs[0]!, "connection"), "keep-alive");
    assert.deepEqual(rs[0]!.body, fixture("logo.svg"));
    assert.deepEqual(rs[1]!.body, fixture("app.js"));
  });
});

// ---- load generators ----

test("ab -k -n 500 -c 8: every request completes, none fails", { skip: noAb }, async (t) => {
  const r = await runAsync("ab", ["-k", "-n", "500", "-c", "8", `${url}/`]);
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `${out}${r.stderr}`);
  assert.match(out, /Complete requests:\s+500\n/);
  assert.match(out, /Failed requests:\s+0\n/);
  assert.match(out, /Keep-Alive requests:\s+500\n/);
  assert.doesNotMatch(out, /Non-2xx responses/);
  assert.match(out, new RegExp(`Document Length:\\s+${INDEX.length} bytes`));
  t.diagnostic(`ab: ${/Requests per second:\s+([\d.]+)/.exec(out)?.[1]} requests/s`);
});

test("wrk -t1 -c8 -d1s: requests served, no errors", { skip: noWrk }, async (t) => {
  const r = await runAsync("wrk", ["-t1", "-c8", "-d1s", `${url}/index.html`]);
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `${out}${r.stderr}`);
  const done = /(\d+) requests in/.exec(out);
  assert.ok(done !== null && Number(done[1]) > 0, out);
  assert.doesNotMatch(out, /Socket errors/);
  assert.doesNotMatch(out, /Non-2xx or 3xx responses/);
  t.diagnostic(`wrk: ${/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]} requests/s`);
});

// ---- afterwards ----

test("after all that the machine is sound: no worker died, no thread was killed, still serving", async () => {
  // "hung" and "long-run" are timing reports (a starved host can raise them): not failures.
  const bad = server.events.filter((e) => e.type !== "hung" && e.type !== "long-run");
  assert.deepEqual(bad, []);
  assert.doesNotMatch(server.output(), /http-server:/);
  const { received } = await raw(request("GET", "/", { Connection: "close" }));
  const [r] = parseResponses(received);
  assert.equal(r!.status, 200);
  assert.deepEqual(r!.body, INDEX);
});

// Last: this breaks the disk for good.
test("when the disk fails a file is a 500, not a 404, and the server goes on answering", async () => {
  const devices = server.m.devices;
  assert.ok(devices !== null, "the machine has devices");
  devices.powerCut(); // every NVMe VF fails until reset: reads now give -EIO
  // Nothing has read /archive yet, so looking it up must reach the failed disk.
  const methods = ["GET", "GET"];
  const { received, closedByServer } = await raw(
    Buffer.concat([request("GET", "/archive/"), request("GET", "/api/stats")]),
    (r) => has(r, methods, 2),
  );
  assert.equal(closedByServer, false);
  const [file, stats] = parseResponses(received, methods);
  assert.equal(file!.status, 500);
  assert.match(file!.body.toString(), /<h1>500 Internal Server Error<\/h1>/);
  assert.equal(stats!.status, 200);
  assert.equal((JSON.parse(stats!.body.toString()) as { server: string }).server, "exocore");
});
