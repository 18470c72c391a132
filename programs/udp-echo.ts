/**
 * udp-echo: a UDP echo server through the network domain. Binds a port (the NIC's UDP uplink
 * opens it on the host's loopback), prints "listening on PORT", and sends every datagram back
 * where it came from. With COUNT it exits after echoing that many.
 *
 *   exocore run programs/udp-echo.js [PORT] [COUNT] --net
 */

import {
  bind,
  close,
  type Green,
  getsockname,
  malloc,
  print,
  recvfrom,
  SOCK_DGRAM,
  sendto,
  socket,
} from "../src/libos/index.js";

export function* main(args: readonly string[]): Green {
  const port = Number(args[0] ?? 0);
  const count = Number(args[1] ?? 0);
  const s = yield* socket(SOCK_DGRAM);
  if (s < 0) return 1;
  const r = yield* bind(s, port);
  if (r < 0) {
    yield* print(`udp-echo: cannot bind ${port}: error ${-r}\n`, 2);
    return 1;
  }
  yield* print(`listening on ${yield* getsockname(s)}\n`);
  const buf = malloc(2048);
  const from = { ip: 0, port: 0 };
  for (let n = 0; count === 0 || n < count; n++) {
    const got = yield* recvfrom(s, buf, 2048, from);
    if (got < 0) return 1;
    const sent = yield* sendto(s, buf, got, from);
    if (sent < 0) yield* print(`udp-echo: sendto: error ${-sent}\n`, 2);
  }
  yield* close(s);
  return 0;
}
