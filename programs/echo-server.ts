/**
 * echo-server: a TCP echo server. Main listens on a port the network domain's TCP offload engine
 * opens on the host's loopback, prints "listening on PORT", and accepts; each connection gets a
 * green thread from the machine's spawn queue, so connections spread over every core (M:N). A
 * thread echoes what it receives until the client closes. recv and accept park only the green
 * thread; a full send queue makes send wait, so no byte is dropped.
 *
 *   exocore run programs/echo-server.js [PORT] [MAX_CONNECTIONS] --net
 *
 * PORT 0 (the default) takes any free port. With MAX_CONNECTIONS the server exits after serving
 * that many connections (tests and benchmarks use it).
 */

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
  print,
  recv,
  type SharedThread,
  send,
  socket,
  spawnShared,
} from "../src/libos/index.js";

const BUFFER = 16 * 1024;

/** Echo one connection until the peer closes it; returns the bytes echoed (or -errno). */
export function* serve(fd: number): Green {
  const buf = malloc(BUFFER);
  if (buf === 0) return -12;
  let total = 0;
  try {
    for (;;) {
      const n = yield* recv(fd, buf, BUFFER);
      if (n <= 0) return n < 0 ? n : total;
      for (let done = 0; done < n; ) {
        const w = yield* send(fd, buf + done, n - done);
        if (w < 0) return w;
        done += w;
      }
      total += n;
    }
  } finally {
    free(buf);
    yield* close(fd);
  }
}

export function* main(args: readonly string[]): Green {
  const port = Number(args[0] ?? 0);
  const max = Number(args[1] ?? 0);
  const s = yield* socket();
  if (s < 0) return s;
  let r = yield* bind(s, port);
  if (r >= 0) r = yield* listen(s, 1024);
  if (r < 0) {
    yield* print(`echo-server: cannot listen on ${port}: error ${-r}\n`, 2);
    return 1;
  }
  yield* print(`listening on ${yield* getsockname(s)}\n`);
  const threads: SharedThread[] = [];
  for (let served = 0; max === 0 || served < max; served++) {
    const c = yield* accept(s);
    if (c < 0) {
      yield* print(`echo-server: accept: error ${-c}\n`, 2);
      return 1;
    }
    const t = yield* spawnShared(serve, c);
    if (max > 0) threads.push(t); // a server that runs for ever does not keep every handle
  }
  let failed = 0;
  for (const t of threads) if ((yield* joinShared(t)) < 0) failed++;
  yield* close(s);
  return failed === 0 ? 0 : 1;
}
