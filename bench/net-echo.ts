/**
 * net-echo: the conventional server of `exocore bench network` — a plain node:net TCP echo
 * server, run in a worker thread of the benchmark process, so it has an event loop of its own
 * (the load generator is a child process: bench/net-client.ts). Each connection gets
 * TCP_NODELAY, as the NIC's offload engine gives the sockets it accepts, and is echoed with
 * socket.pipe(socket) (back-pressure both ways, half-close ends the echo).
 *
 * Protocol with the parent (bench/network.ts): posts { port } once listening on 127.0.0.1; on
 * the message "stop" it closes the server and every connection, posts { connections } (the
 * number accepted) and exits.
 */

import net from "node:net";
import { parentPort } from "node:worker_threads";

export interface EchoReady {
  readonly port: number;
}

export interface EchoStopped {
  readonly connections: number;
}

const port = parentPort;
if (port === null) throw new Error("net-echo runs in a worker thread");

const open = new Set<net.Socket>();
let accepted = 0;
const server = net.createServer((s) => {
  accepted++;
  open.add(s);
  s.setNoDelay(true);
  s.on("error", () => s.destroy());
  s.on("close", () => open.delete(s));
  s.pipe(s);
});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("net-echo: no TCP address");
  port.postMessage({ port: addr.port } satisfies EchoReady);
});
port.on("message", (m: unknown) => {
  if (m !== "stop") return;
  server.close();
  for (const s of open) s.destroy();
  port.postMessage({ connections: accepted } satisfies EchoStopped);
  port.close();
});
