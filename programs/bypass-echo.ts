/**
 * bypass-echo: a UDP echo server on a core's own NIC VF (XOS kernel bypass). No service domain
 * is in the path: the program asks its VF's offload engine to bind a host UDP port, then takes
 * datagram events straight from the VF's rings and sends the replies straight into them. Run it
 * on a machine that gave core 0 (where main runs) a VF:
 *
 *   exocore run programs/bypass-echo.js [PORT] [COUNT] --bypass 0
 *
 * Prints "listening on PORT"; with COUNT it exits after echoing that many datagrams.
 */

import { type Green, ownNic, print, waitNic } from "../src/libos/index.js";

export function* main(args: readonly string[]): Green {
  const nic = ownNic();
  if (nic === null) {
    yield* print("bypass-echo: this core has no NIC VF of its own (boot with --bypass 0)\n", 2);
    return 1;
  }
  const want = Number(args[0] ?? 0);
  const count = Number(args[1] ?? 0);
  const token = nic.udpBind(want);
  nic.flush();
  let port = -1;
  let failed = 0;
  while (port < 0 && failed === 0) {
    yield* waitNic();
    nic.pollEvents((e) => {
      if (e.type === "udp-bound" && e.token === token) port = e.port;
      else if (e.type === "error" && e.token === token) failed = e.errno;
    });
  }
  if (failed !== 0) {
    yield* print(`bypass-echo: cannot bind ${want}: error ${failed}\n`, 2);
    return 1;
  }
  yield* print(`listening on ${port}\n`);
  let echoed = 0;
  while (count === 0 || echoed < count) {
    yield* waitNic();
    nic.pollEvents((e) => {
      if (e.type !== "datagram" || e.dstPort !== port) return;
      if (nic.sendDatagram(port, e.srcIp, e.srcPort, e.payload)) echoed++;
    });
    nic.flush(); // one doorbell for the round's replies
  }
  nic.udpClose(port);
  nic.flush();
  return 0;
}
