/**
 * servers-node: the conventional Node.js HTTP servers that `exocore bench servers` measures
 * exocore's http-server against, each in a child process of its own (forked by
 * bench/servers.ts, so a machine's hypervisor thread never serves them):
 *
 *   plain     node:http on one thread; static files from a host folder with fs/promises
 *             (stat, then readFile: the libuv thread pool does the reads), the JSON route
 *             computed inline
 *   piscina   the same static files; the JSON route handed to a piscina pool of
 *             {@link POOL_THREADS} workers (bench/servers-stats-task.ts) — the conventional
 *             "offload to a worker pool" dispatch that exception-less calls are set against
 *
 * Both serve what programs/http-server.ts serves: GET of a file under the root (a folder
 * gives its index.html) with Content-Type, Last-Modified and a weak ETag, 304 on a matching
 * If-None-Match, 404, 405 for other methods; GET /api/stats answers a small JSON object.
 * The same file cache as exocore's server (programs/http/cache.ts, the same class and limits):
 * every request stats the file, and the contents are reused while the stat shows the same
 * inode, size, mtime and ctime; otherwise it reads the file.
 *
 *   fork(servers-node.js, [plain|piscina, ROOT])   → IPC {type: "listening", port}; SIGTERM ends it
 */

import { readFile, stat } from "node:fs/promises";
import http from "node:http";
import { extname, join, normalize } from "node:path";
import { Piscina } from "piscina";
import { FileCache } from "../programs/http/cache.js";

/** As in programs/http-server.ts: one cache per serving thread, default limits. */
const cache = new FileCache();

/** Workers in the piscina pool: one per vCPU of this machine (2). */
export const POOL_THREADS = 2;

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

export type NodeServerKind = "plain" | "piscina";

export interface NodeServerMessage {
  readonly type: "listening";
  readonly port: number;
}

/** Serve one static file request; the path is already decoded and normalised. */
async function serveFile(
  root: string,
  path: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  let file = join(root, path);
  try {
    let st = await stat(file);
    if (st.isDirectory()) {
      file = join(file, "index.html");
      st = await stat(file);
    }
    const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers = {
      "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
      "Last-Modified": new Date(st.mtimeMs).toUTCString(),
      ETag: etag,
    };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    const version = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    let body = cache.get(file, version);
    if (body === null) {
      body = await readFile(file);
      cache.put(file, version, body, Date.now());
    }
    res.writeHead(200, { ...headers, "Content-Length": body.length }).end(body);
  } catch {
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
  }
}

function main(kind: NodeServerKind, root: string): void {
  const started = Date.now();
  let served = 0;
  const pool =
    kind === "piscina"
      ? new Piscina({
          filename: new URL("./servers-stats-task.js", import.meta.url).href,
          minThreads: POOL_THREADS,
          maxThreads: POOL_THREADS,
        })
      : null;
  const server = http.createServer((req, res) => {
    served++;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    const url = req.url ?? "/";
    let path: string;
    try {
      path = normalize(decodeURIComponent(url.split("?")[0] ?? "/"));
    } catch {
      res.writeHead(400).end(); // a malformed %-escape
      return;
    }
    if (path === "/api/stats") {
      const send = (body: string) =>
        res.writeHead(200, { "Content-Type": "application/json" }).end(body);
      if (pool === null) {
        send(
          JSON.stringify({
            server: "node:http",
            pid: process.pid,
            served,
            uptimeMs: Date.now() - started,
          }),
        );
      } else {
        pool.run({ served, started }).then(send, () => res.writeHead(500).end());
      }
      return;
    }
    // normalize() of an absolute path resolves every "..": the file stays under the root.
    if (!path.startsWith("/") || path.includes("\0")) {
      res.writeHead(400).end();
      return;
    }
    void serveFile(root, path, req, res);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    const addr = server.address();
    const port = typeof addr === "object" && addr !== null ? addr.port : 0;
    process.send?.({ type: "listening", port } satisfies NodeServerMessage);
  });
  const stop = () => {
    server.closeAllConnections();
    server.close();
    void pool?.destroy().finally(() => process.exit(0));
    if (pool === null) process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("disconnect", stop);
}

const [kind, root] = process.argv.slice(2);
if ((kind === "plain" || kind === "piscina") && root !== undefined && process.send) {
  main(kind, root);
} else {
  process.stderr.write("usage: fork(servers-node.js, [plain|piscina, ROOT]) with an IPC channel\n");
  process.exitCode = 2;
}
