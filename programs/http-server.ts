/**
 * http-server: an HTTP/1.1 server on the machine. Static files come from the filesystem image
 * through the storage domain (open, fstat, pread: every byte crosses into this process's memory
 * and out again through the network domain); `GET /api/stats` answers JSON computed here and
 * `POST /api/echo` echoes the request body. One green thread per connection, from the machine's
 * spawn queue, so connections spread over every core (M:N). The protocol engine is
 * programs/http (keep-alive, pipelining, chunked bodies, ranges, conditional requests, limits).
 *
 *   exocore run programs/http-server.js [PORT] [DOCROOT] [MAX_CONNECTIONS] --disk IMAGE --net
 *
 * PORT 0 (the default) takes any free port; DOCROOT defaults to /site. Prints
 * "listening on PORT" once it accepts.
 */

import { ENAMETOOLONG, ENOENT, ENOTDIR } from "../src/abi/errno.js";
import { SyscallError } from "../src/errors.js";
import {
  accept,
  bind,
  close,
  free,
  fstat,
  type Green,
  getcore,
  getsockname,
  joinShared,
  listen,
  malloc,
  memory,
  O_RDONLY,
  open,
  pread,
  print,
  recv,
  type SharedThread,
  send,
  socket,
  spawnShared,
} from "../src/libos/index.js";
import { echo, type FileStat, HttpEngine, json, Routes, type StaticFiles } from "./http/index.js";

const BUFFER = 64 * 1024;
let docroot = "/site";
let served = 0;
const started = Date.now();

/**
 * Files under the docroot, read with the storage domain's calls into a buffer of ours. Only
 * "there is no such file" is a 404 (null); any other failure (-EIO from a failed disk, -ENOMEM
 * when the call cannot be staged) throws, and the engine answers 500 and keeps the connection:
 * a site must not look empty because its storage failed.
 */
class ImageFiles implements StaticFiles {
  readonly #buf: number;
  constructor(buf: number) {
    this.#buf = buf;
  }
  *stat(path: string): Green<FileStat | null> {
    const fd = yield* open(docroot + path, O_RDONLY);
    if (fd === -ENOENT || fd === -ENOTDIR || fd === -ENAMETOOLONG) return null;
    if (fd < 0) throw new SyscallError("open", fd);
    const st = yield* fstat(fd);
    yield* close(fd);
    if (typeof st === "number") throw new SyscallError("fstat", st);
    return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, type: st.type };
  }
  *read(path: string, offset: number, length: number): Green<Uint8Array | null> {
    const fd = yield* open(docroot + path, O_RDONLY);
    if (fd < 0) return null;
    const n = yield* pread(fd, this.#buf, Math.min(length, BUFFER), offset);
    yield* close(fd);
    return n < 0 ? null : memory().readBytes(this.#buf, n);
  }
}

const routes = new Routes()
  .get(
    "/api/stats",
    json(function* () {
      const core = yield* getcore();
      return { server: "exocore", core, served, uptimeMs: Date.now() - started };
    }),
  )
  .post("/api/echo", echo);

/**
 * Serve one connection until it closes; returns the responses sent (or -errno). The docroot
 * comes as (address, length) of its bytes in process memory: this thread may run on a core
 * whose copy of this module never ran main.
 */
export function* serve(fd: number, rootVa: number, rootLen: number): Green {
  docroot = new TextDecoder().decode(memory().readBytes(rootVa, rootLen));
  const inBuf = malloc(BUFFER);
  const outBuf = malloc(BUFFER);
  const fileBuf = malloc(BUFFER);
  if (inBuf === 0 || outBuf === 0 || fileBuf === 0) return -12;
  const conn = new HttpEngine({ files: new ImageFiles(fileBuf), routes }).connection();
  const mem = memory();
  try {
    for (;;) {
      for (let out = yield* conn.pull(); out !== null; out = yield* conn.pull()) {
        for (let at = 0; at < out.length; ) {
          const n = Math.min(out.length - at, BUFFER);
          mem.writeBytes(outBuf, out.subarray(at, at + n));
          for (let done = 0; done < n; ) {
            const w = yield* send(fd, outBuf + done, n - done);
            if (w < 0) return w;
            done += w;
          }
          at += n;
        }
      }
      if (conn.done) return conn.served;
      const got = yield* recv(fd, inBuf, BUFFER);
      if (got < 0) return got;
      if (got === 0) conn.end();
      else conn.feed(mem.readBytes(inBuf, got));
    }
  } finally {
    served += conn.served;
    free(inBuf);
    free(outBuf);
    free(fileBuf);
    yield* close(fd);
  }
}

export function* main(args: readonly string[]): Green {
  const port = Number(args[0] ?? 0);
  docroot = (args[1] ?? "/site").replace(/\/$/, "");
  const max = Number(args[2] ?? 0);
  const s = yield* socket();
  if (s < 0) return s;
  let r = yield* bind(s, port);
  if (r >= 0) r = yield* listen(s, 1024);
  if (r < 0) {
    yield* print(`http-server: cannot listen on ${port}: error ${-r}\n`, 2);
    return 1;
  }
  const root = new TextEncoder().encode(docroot);
  const rootVa = malloc(Math.max(1, root.length));
  memory().writeBytes(rootVa, root);
  yield* print(`listening on ${yield* getsockname(s)}\n`);
  const threads: SharedThread[] = [];
  for (let n = 0; max === 0 || n < max; n++) {
    const c = yield* accept(s);
    if (c < 0) {
      yield* print(`http-server: accept: error ${-c}\n`, 2);
      return 1;
    }
    const t = yield* spawnShared(serve, c, rootVa, root.length);
    if (max > 0) threads.push(t);
  }
  for (const t of threads) yield* joinShared(t);
  yield* close(s);
  return 0;
}
