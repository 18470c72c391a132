/**
 * http-server: an HTTP/1.1 server on the machine. Static files come from the filesystem image
 * through the storage domain (stat, then open, pread, close: every byte crosses into this
 * process's memory and out again through the network domain); small files are kept per core
 * while a stat shows them unchanged (FileCache below); `GET /api/stats` answers JSON computed here and
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
  type Green,
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
  type Stat,
  sendAll,
  sendrecv,
  socket,
  spawnShared,
  stat,
  thisCore,
} from "../src/libos/index.js";
import {
  echo,
  FileCache,
  type FileStat,
  HttpEngine,
  jsonNow,
  Routes,
  type StaticFiles,
} from "./http/index.js";

const BUFFER = 64 * 1024;
/**
 * What one recv asks for unless the last one filled its buffer: the libOS pages in the whole
 * buffer it hands the network domain, so a request-sized read touches fewer pages.
 */
const RECV_SMALL = 16 * 1024;
let docroot = "/site";
let served = 0;
const started = Date.now();

/**
 * This core's copies of small files (each core has its own copy of this module): every request
 * still stats its file, a hit skips open, pread and close.
 */
const cache = new FileCache({ maxBytes: 4 * 1024 * 1024, maxFileBytes: BUFFER });

/**
 * Files under the docroot, read with the storage domain's calls into a buffer of ours, through
 * this core's {@link FileCache}. Only "there is no such file" is a 404 (null); any other failure
 * (-EIO from a failed disk, -ENOMEM when the call cannot be staged) throws, and the engine
 * answers 500 and keeps the connection: a site must not look empty because its storage failed.
 */
class ImageFiles implements StaticFiles {
  readonly #buf: number;
  /** The last stat of this connection (the engine reads a file right after stating it). */
  #statPath = "";
  #stat: Stat | null = null;
  constructor(buf: number) {
    this.#buf = buf;
  }
  *stat(path: string): Green<FileStat | null> {
    const st = yield* stat(docroot + path);
    if (st === -ENOENT || st === -ENOTDIR || st === -ENAMETOOLONG) return null;
    if (typeof st === "number") throw new SyscallError("stat", st);
    this.#statPath = path;
    this.#stat = st;
    return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, type: st.type };
  }
  *read(path: string, offset: number, length: number): Green<Uint8Array | null> {
    const st = path === this.#statPath ? this.#stat : null;
    const hit = st === null ? null : cache.get(path, st);
    if (hit !== null) return hit.subarray(offset, Math.min(offset + length, hit.length));
    const fd = yield* open(docroot + path, O_RDONLY);
    if (fd < 0) return null;
    const n = yield* pread(fd, this.#buf, Math.min(length, BUFFER), offset);
    yield* close(fd);
    if (n < 0) return null;
    const bytes = memory().readBytes(this.#buf, n);
    if (st !== null && offset === 0) cache.put(path, st, bytes, Date.now());
    return bytes;
  }
}

const routes = new Routes()
  .get(
    "/api/stats",
    // Computed here with no crossing (the core id is the libOS's to know), as node:http
    // computes its own: a dynamic page, not a syscall benchmark.
    jsonNow(() => ({
      server: "exocore",
      core: thisCore(),
      served,
      uptimeMs: Date.now() - started,
    })),
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
  let want = RECV_SMALL;
  let held = 0; // response bytes in outBuf not sent yet: they go with the next recv (sendrecv)
  try {
    for (;;) {
      // A pull with nothing pending would only return null: straight to recv instead.
      while (conn.pending) {
        const out = yield* conn.pull();
        if (out === null) break;
        for (let at = 0; at < out.length; ) {
          if (held > 0) {
            const w = yield* sendAll(fd, outBuf, held); // outBuf is needed again
            if (w < 0) return w;
          }
          held = Math.min(out.length - at, BUFFER);
          mem.writeFrom(outBuf, out, at, held);
          at += held;
        }
      }
      if (conn.done) {
        const w = held > 0 ? yield* sendAll(fd, outBuf, held) : 0;
        return w < 0 ? w : conn.served;
      }
      // The last buffer of the responses leaves with the wait for the next request: one
      // crossing to the network domain instead of two.
      const got =
        held > 0 ? yield* sendrecv(fd, outBuf, held, inBuf, want) : yield* recv(fd, inBuf, want);
      held = 0;
      want = got === want ? BUFFER : RECV_SMALL; // a full read: more is likely waiting
      if (got < 0) return got;
      if (got === 0) conn.end();
      else conn.feedFromMemory(mem, inBuf, got);
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
