/**
 * http-real: the HTTP engine behind a real node:net server, hit by real clients — curl
 * (keep-alive reuse, --range, -I, a chunked upload that waits for 100 Continue), ApacheBench
 * (-k, HTTP/1.0 keep-alive), wrk (HTTP/1.1 keep-alive under load) and a raw socket
 * (pipelining, malformed requests, oversized heads).
 *
 * Each connection runs serveConnection — the loop the machine's server runs in a green thread
 * — under a small async runner: the transport's recv and send yield tokens that the runner
 * turns into waits on the socket, and StaticFiles calls (node:fs over a tmp dir) yield fake
 * syscall tokens it answers at once. A client that is not installed skips its test, saying so.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  echo,
  type Green,
  HttpEngine,
  json,
  Routes,
  serveConnection,
  type Transport,
} from "../programs/http/index.js";
import {
  header,
  NodeFiles,
  parseResponses,
  request,
  SYSCALL,
  SYSCALL_RESULT,
  syscall,
} from "./fixtures/http-helpers.js";

const run = promisify(execFile);

function installed(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}
const skipUnless = (cmd: string) => (installed(cmd) ? false : `${cmd} is not installed`);

// ---- a node:net server around the engine ----

const WAIT_RECV = 1001;
const WAIT_DRAIN = 1002;
const EPIPE = 32;

/** A socket as a Transport: recv and send yield WAIT_* tokens when they must wait. */
class SocketTransport implements Transport {
  readonly #socket: net.Socket;
  readonly #queue: Buffer[] = [];
  #ended = false;
  #wake: (() => void) | null = null;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (b: Buffer) => {
      this.#queue.push(b);
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", () => {
      this.#ended = true; // a client that resets (wrk at the end of its run) just ends
      this.#notify();
    });
    socket.on("drain", () => this.#notify());
  }

  *recv(): Green<Uint8Array | number> {
    for (;;) {
      const b = this.#queue.shift();
      if (b !== undefined) return b;
      if (this.#ended) return 0;
      yield WAIT_RECV;
    }
  }

  *send(bytes: Uint8Array): Green<number> {
    if (this.#socket.destroyed) return -EPIPE;
    // The engine reuses its output buffer: hand the socket a copy.
    if (!this.#socket.write(Buffer.from(bytes))) yield WAIT_DRAIN;
    return 0;
  }

  /** A promise that settles at the next socket event. */
  event(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

/** Drive a green-thread generator on the event loop. */
async function drive<T>(g: Green<T>, io: SocketTransport): Promise<T> {
  let r = g.next(0);
  while (!r.done) {
    if (r.value === WAIT_RECV || r.value === WAIT_DRAIN) {
      await io.event();
      r = g.next(0);
    } else {
      r = g.next(r.value === SYSCALL ? SYSCALL_RESULT : 0);
    }
  }
  return r.value;
}

interface Served {
  readonly server: net.Server;
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far. */
  connections: number;
  /** Connection loops that ended with an exception (must stay 0). */
  crashes: unknown[];
}

async function listen(engine: HttpEngine): Promise<Served> {
  const served: Served = {
    server: net.createServer(),
    port: 0,
    url: "",
    connections: 0,
    crashes: [],
  };
  served.server.on("connection", (socket) => {
    served.connections++;
    const io = new SocketTransport(socket);
    drive(serveConnection(engine.connection(), io), io).then(
      () => socket.end(),
      (err: unknown) => {
        served.crashes.push(err);
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve) => served.server.listen(0, "127.0.0.1", resolve));
  const port = (served.server.address() as net.AddressInfo).port;
  return Object.assign(served, { port, url: `http://127.0.0.1:${port}` });
}

// ---- the site ----

let root = "";
let site: Served;
const UPLOAD = randomBytes(200_000);
const INDEX = `<!DOCTYPE html><html><body>${"exocore ".repeat(200)}</body></html>\n`;
const ALPHA = "abcdefghijklmnopqrstuvwxyz";

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "exocore-http-"));
  fs.writeFileSync(path.join(root, "index.html"), INDEX);
  fs.writeFileSync(path.join(root, "a.txt"), ALPHA);
  fs.writeFileSync(path.join(root, "b.json"), '{"b":true}');
  fs.writeFileSync(path.join(root, "upload.bin"), UPLOAD);
  // Old enough for a strong ETag.
  for (const f of ["index.html", "a.txt", "b.json"]) {
    fs.utimesSync(
      path.join(root, f),
      new Date(Date.UTC(2024, 0, 1)),
      new Date(Date.UTC(2024, 0, 1)),
    );
  }
  const routes = new Routes().post("/api/echo", echo).get(
    "/api/stats",
    json(function* () {
      yield* syscall();
      return { connections: site.connections };
    }),
  );
  site = await listen(new HttpEngine({ files: new NodeFiles(root), routes }));
});

after(async () => {
  await new Promise<void>((resolve) => site.server.close(() => resolve()));
  fs.rmSync(root, { recursive: true, force: true });
  assert.deepEqual(site.crashes, []);
});

// ---- curl ----

describe("curl", { skip: skipUnless("curl") }, () => {
  test("two URLs on one command reuse one keep-alive connection", async () => {
    const before = site.connections;
    const { stdout } = await run("curl", ["-sS", `${site.url}/a.txt`, `${site.url}/b.json`]);
    assert.equal(stdout, `${ALPHA}{"b":true}`);
    assert.equal(site.connections - before, 1);
  });

  test("--range gets 206 and the bytes asked for", async () => {
    const { stdout } = await run("curl", [
      "-sS",
      "--range",
      "3-9",
      "-w",
      "\n%{http_code}",
      `${site.url}/a.txt`,
    ]);
    assert.equal(stdout, `${ALPHA.slice(3, 10)}\n206`);
    const { stdout: suffix } = await run("curl", ["-sS", "--range", "-4", `${site.url}/a.txt`]);
    assert.equal(suffix, ALPHA.slice(-4));
  });

  test("-I sends HEAD and gets GET's head", async () => {
    const { stdout } = await run("curl", ["-sS", "-I", `${site.url}/index.html`]);
    const lines = stdout.split("\r\n");
    assert.equal(lines[0], "HTTP/1.1 200 OK");
    const fields = new Map(
      lines
        .slice(1)
        .filter((l) => l.includes(":"))
        .map((l) => {
          const c = l.indexOf(":");
          return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()] as const;
        }),
    );
    assert.equal(fields.get("content-length"), String(Buffer.byteLength(INDEX)));
    assert.equal(fields.get("content-type"), "text/html; charset=utf-8");
    assert.equal(fields.get("last-modified"), "Mon, 01 Jan 2024 00:00:00 GMT");
    assert.match(fields.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    assert.equal(fields.get("server"), "exocore");
  });

  test("a conditional GET with the ETag gets 304", async () => {
    const { stdout: head } = await run("curl", ["-sS", "-I", `${site.url}/a.txt`]);
    const etag = /etag: (.*)\r\n/i.exec(head)![1]!;
    const { stdout } = await run("curl", [
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      `If-None-Match: ${etag}`,
      `${site.url}/a.txt`,
    ]);
    assert.equal(stdout, "304");
  });

  /** curl's verbose log and output for a chunked upload of upload.bin to /api/echo. */
  async function upload(...extra: string[]): Promise<{ log: string; body: Buffer }> {
    const file = `@${path.join(root, "upload.bin")}`;
    const { stdout, stderr } = await run(
      "curl",
      ["-sS", "-v", "-H", "Transfer-Encoding: chunked", "--data-binary", file, ...extra],
      { encoding: "buffer", maxBuffer: 4 << 20 },
    );
    return { log: stderr.toString(), body: stdout };
  }

  test("a chunked upload comes back whole", async () => {
    const { log, body } = await upload(
      "-H",
      "Content-Type: application/x-demo",
      `${site.url}/api/echo`,
    );
    assert.match(log, /> Transfer-Encoding: chunked/);
    assert.match(log, /< HTTP\/1.1 200 OK/);
    assert.match(log, /< content-type: application\/x-demo/i);
    assert.deepEqual(body, UPLOAD);
  });

  test("a chunked upload that expects 100-continue gets it before it sends the body", async () => {
    const { log, body } = await upload("-H", "Expect: 100-continue", `${site.url}/api/echo`);
    assert.match(log, /> Expect: 100-continue/);
    assert.match(log, /< HTTP\/1.1 100 Continue/);
    assert.match(log, /< HTTP\/1.1 200 OK/);
    assert.deepEqual(body, UPLOAD);
  });

  test("a missing file is a 404 page; a route gives JSON", async () => {
    const { stdout } = await run("curl", ["-sS", "-w", "\n%{http_code}", `${site.url}/nope`]);
    assert.match(stdout, /<h1>404 Not Found<\/h1>[\s\S]*\n404$/);
    const { stdout: stats } = await run("curl", ["-sS", `${site.url}/api/stats`]);
    assert.ok(JSON.parse(stats).connections >= 1);
  });
});

// ---- load generators ----

test("ab -k -n 200 -c 8: every request completes, none fails", {
  skip: skipUnless("ab"),
}, async () => {
  const { stdout } = await run("ab", ["-k", "-n", "200", "-c", "8", `${site.url}/index.html`]);
  assert.match(stdout, /Complete requests:\s+200\n/);
  assert.match(stdout, /Failed requests:\s+0\n/);
  assert.match(stdout, /Keep-Alive requests:\s+200\n/);
  assert.doesNotMatch(stdout, /Non-2xx responses/);
  assert.match(stdout, new RegExp(`Document Length:\\s+${Buffer.byteLength(INDEX)} bytes`));
});

test("wrk -t1 -c8 -d1s: requests served, no errors", { skip: skipUnless("wrk") }, async () => {
  const { stdout } = await run("wrk", ["-t1", "-c8", "-d1s", `${site.url}/index.html`]);
  const done = /(\d+) requests in/.exec(stdout);
  assert.ok(done !== null && Number(done[1]) > 0, stdout);
  assert.doesNotMatch(stdout, /Socket errors/);
  assert.doesNotMatch(stdout, /Non-2xx or 3xx responses/);
});

// ---- a raw socket ----

/** Write `bytes` on a new connection; read until `enough` says so or the server closes. */
async function raw(
  bytes: Buffer,
  enough: (received: Buffer) => boolean = () => false,
): Promise<{ received: Buffer; closedByServer: boolean }> {
  const socket = net.connect(site.port, "127.0.0.1");
  const parts: Buffer[] = [];
  return new Promise((resolve, reject) => {
    socket.on("error", reject);
    socket.on("data", (b: Buffer) => {
      parts.push(b);
      if (enough(Buffer.concat(parts))) {
        socket.destroy();
        resolve({ received: Buffer.concat(parts), closedByServer: false });
      }
    });
    socket.on("end", () => {
      socket.end();
      resolve({ received: Buffer.concat(parts), closedByServer: true });
    });
    socket.write(bytes);
  });
}

function count(received: Buffer, methods: string[], n: number): boolean {
  try {
    return parseResponses(received, methods).length >= n;
  } catch {
    return false;
  }
}

describe("raw socket", () => {
  test("three pipelined requests in one write are answered in order on the open connection", async () => {
    const methods = ["GET", "HEAD", "POST"];
    const { received, closedByServer } = await raw(
      Buffer.concat([
        request("GET", "/a.txt"),
        request("HEAD", "/b.json"),
        request("POST", "/api/echo", { "Transfer-Encoding": "chunked" }, "3\r\nabc\r\n0\r\n\r\n"),
      ]),
      (r) => count(r, methods, 3),
    );
    assert.equal(closedByServer, false);
    const rs = parseResponses(received, methods);
    assert.deepEqual(
      rs.map((r) => [r.status, r.body.toString()]),
      [
        [200, ALPHA],
        [200, ""],
        [200, "abc"],
      ],
    );
    assert.equal(header(rs[1]!, "content-type"), "application/json");
  });

  test("a malformed request gets 400 and the server closes", async () => {
    const { received, closedByServer } = await raw(
      Buffer.from("GET / HTTP/1.1\r\nHost: a\r\nNo-Colon\r\n\r\n"),
    );
    assert.ok(closedByServer);
    const [r] = parseResponses(received);
    assert.equal(r!.status, 400);
    assert.equal(header(r!, "connection"), "close");
  });

  test("oversized headers get 431 and the server closes", async () => {
    const big = request("GET", "/a.txt", { "X-Big": "x".repeat(20_000) });
    const { received, closedByServer } = await raw(big);
    assert.ok(closedByServer);
    const [r] = parseResponses(received);
    assert.equal(r!.status, 431);
  });

  test("a long URI gets 414; HTTP/2 on a request line 505", async () => {
    const long = await raw(request("GET", `/${"u".repeat(9000)}`));
    assert.equal(parseResponses(long.received)[0]!.status, 414);
    const v2 = await raw(Buffer.from("GET / HTTP/2.0\r\nHost: a\r\n\r\n"));
    assert.equal(parseResponses(v2.received)[0]!.status, 505);
  });

  test("HTTP/1.0 without keep-alive: the response, then the server closes", async () => {
    const { received, closedByServer } = await raw(
      request("GET", "/a.txt", {}, undefined, "HTTP/1.0"),
    );
    assert.ok(closedByServer);
    assert.equal(parseResponses(received)[0]!.body.toString(), ALPHA);
  });
});
