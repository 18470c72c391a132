/**
 * toe: the NIC's TCP offload engine (src/hw/toe.ts) with real node:net peers on loopback — the
 * device on this (main) thread, the driver (src/drivers/nic.ts) in a worker thread.
 *
 *   - a host client reaches a LISTEN port and gets its bytes echoed by a driver-side loop
 *   - 250 concurrent connections, each with its own bytes, every byte echoed in order
 *   - machine → host, 16 MiB to a slow reader: no loss, writes held for 'drain', bounded
 *     device memory; a stalled reader holds back only its own connection's SENDs
 *   - host → machine, 16 MiB from a fast writer to a slow program: no loss, host sockets paused,
 *     TCP flow control seen by the writer, bounded device memory
 *   - PAUSE/RESUME: a paused connection gets no byte in RB buffers posted after the PAUSE, its
 *     host socket stops reading, other connections go on, and RESUME delivers the rest in order;
 *     on a listener or a stale handle they answer ERROR
 *   - a receive buffer outside the VF's window: DATA with EFAULT, that connection reset, the
 *     device goes on
 *   - CONNECT out to a node:net server on the host, half-closes both ways
 *   - ECONNREFUSED and EADDRINUSE; a host reset (ECONNRESET); the device's FLR closes the
 *     host's connections
 *
 * "Bounded device memory" is the device's own count of TCP bytes it holds (received and not
 * yet delivered, plus accepted and not yet written to the kernel): its peak must stay far below
 * the bytes that went through. No assertion is about time.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { EADDRINUSE, EBADF, ECONNREFUSED, ECONNRESET, EFAULT, ENOTCONN } from "../src/abi/errno.js";
import { nicDmaLayout } from "../src/drivers/nic.js";
import { NicDevice } from "../src/hw/nic.js";
import {
  IdentityDma,
  kResume,
  layNicMachine,
  type NicMachine,
  startNicWorker,
  streamByte,
  streamBytes,
  until,
} from "./fixtures/nic-machine.js";

const DMA_BYTES = 1 << 20;
const MiB = 1 << 20;

function machine(): { m: NicMachine; nic: NicDevice } {
  const { m, nic } = machineWithDma();
  return { m, nic };
}

function machineWithDma(): { m: NicMachine; nic: NicDevice; dma: IdentityDma } {
  const m = layNicMachine(1, DMA_BYTES);
  const dma = new IdentityDma(m.mem, m.vfs);
  const nic = new NicDevice(m.mem, dma);
  nic.attachVf(m.vfs[0]!);
  return { m, nic, dma };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Write `data` in `pieces` writes, end, and collect everything echoed until the peer's FIN. */
async function echoThrough(port: number, data: Uint8Array, pieces: number): Promise<Buffer> {
  const s = await connect(port);
  const got: Buffer[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    s.on("data", (b: Buffer) => got.push(b));
    s.on("end", resolve);
    s.on("error", reject);
  });
  const step = Math.ceil(data.length / pieces);
  for (let off = 0; off < data.length; off += step) s.write(data.subarray(off, off + step));
  s.end();
  await ended;
  s.destroy();
  return Buffer.concat(got);
}

test("a host client reaches a LISTEN port and its bytes come back from a driver-side echo", async () => {
  const { m, nic } = machine();
  const echo = startNicWorker(m, 0, "tcp-echo");
  try {
    const port = (await echo.message("listening")).port as number;
    const data = streamBytes(1, 0, 100_000);
    const back = await echoThrough(port, data, 7);
    assert.equal(back.length, data.length);
    assert.ok(back.equals(data), "every byte echoed, in order");
    await until(() => nic.stats(0).handles === 1, "the connection's handle is released");
    const s = nic.stats(0);
    assert.equal(s.connections, 1);
    assert.equal(s.toeRxBytes, 100_000);
    assert.equal(s.toeTxBytes, 100_000);
    assert.equal(s.heldBytes, 0, "the device holds nothing once the connection is closed");
    const r = await echo.stop();
    assert.equal(r.accepted, 1);
    assert.equal(r.closed, 1, "EOF reached the program, and its close reached the device");
  } finally {
    await echo.worker.terminate();
    await nic.close();
  }
});

test("250 concurrent connections each get their own bytes back, in order", async (t) => {
  const { m, nic } = machine();
  const echo = startNicWorker(m, 0, "tcp-echo");
  const N = 250;
  try {
    const port = (await echo.message("listening")).port as number;
    const inputs = Array.from({ length: N }, (_, i) => streamBytes(1000 + i, 0, 4096 + 97 * i));
    const outputs = await Promise.all(inputs.map((d, i) => echoThrough(port, d, 1 + (i % 5))));
    for (let i = 0; i < N; i++) {
      assert.ok(outputs[i]!.equals(inputs[i]!), `connection ${i} got exactly its own bytes`);
    }
    await until(() => nic.stats(0).handles === 1, "every connection's handle is released");
    const total = inputs.reduce((n, d) => n + d.length, 0);
    const s = nic.stats(0);
    t.diagnostic(
      `${s.events} events, ${s.interrupts} interrupts, ${s.irqWakes} of them woke the driver; ` +
        `${s.commands} commands in ${s.txWrites} host writes, ${s.doorbellWakes} doorbells woke the device`,
    );
    assert.ok(s.interrupts < s.events, "interrupts are moderated: one covers several events");
    assert.ok(s.irqWakes <= s.interrupts, "an interrupt to a driver that is awake notifies nobody");
    assert.equal(s.connections, N);
    assert.equal(s.refused, 0);
    assert.equal(s.toeRxBytes, total);
    assert.equal(s.toeTxBytes, total);
    const r = await echo.stop();
    assert.equal(r.accepted, N);
    assert.equal(r.closed, N);
  } finally {
    await echo.worker.terminate();
    await nic.close();
  }
});

test("machine → host: 16 MiB to a slow reader, nothing lost, device memory bounded", async (t) => {
  const { m, nic } = machine();
  const total = 16 * MiB;
  const src = startNicWorker(m, 0, "tcp-source", { total, seed: 7 });
  try {
    const port = (await src.message("listening")).port as number;
    const s = await connect(port);
    let received = 0;
    let mismatches = 0;
    await new Promise<void>((resolve, reject) => {
      s.on("data", (b: Buffer) => {
        for (let k = 0; k < b.length; k++) if (b[k] !== streamByte(7, received + k)) mismatches++;
        received += b.length;
        s.pause(); // a slow reader: one chunk, then a pause
        setTimeout(() => s.resume(), 2);
      });
      s.on("end", resolve);
      s.on("error", reject);
    });
    s.destroy();
    const r = await src.done(15_000);
    assert.equal(r.sent, total);
    assert.equal(received, total, "every byte arrived");
    assert.equal(mismatches, 0, "in order");
    const st = nic.stats(0);
    t.diagnostic(
      `held for drain ${st.txBlocked} times, peak device memory ${st.peakHeldBytes} bytes, ` +
        `program stalls ${r.stalls}, ${st.commands} commands in ${st.txWrites} host writes`,
    );
    assert.ok(st.txBlocked > 0, "the host socket pushed back: SENDs were held for 'drain'");
    assert.ok(
      st.txWrites * 2 < st.commands,
      `the SENDs of a batch went to the socket together (${st.txWrites} writes)`,
    );
    assert.ok(
      st.peakHeldBytes < MiB,
      `the device held at most ${st.peakHeldBytes} bytes of a ${total}-byte transfer`,
    );
  } finally {
    await src.worker.terminate();
    await nic.close();
  }
});

test("a connection whose host reader stalls holds back only its own SENDs", async (t) => {
  const { m, nic } = machine();
  const total = 8 * MiB;
  const fan = startNicWorker(m, 0, "tcp-fanout", { conns: 2, total, limit: 64 * 1024 });
  try {
    const port = (await fan.message("listening")).port as number;
    const read = (
      s: net.Socket,
    ): { bytes: () => number; bad: () => number; end: Promise<void> } => {
      let n = 0;
      let bad = 0;
      const seed = s.localPort as number;
      const end = new Promise<void>((resolve, reject) => {
        s.on("data", (b: Buffer) => {
          for (let k = 0; k < b.length; k++) if (b[k] !== streamByte(seed, n + k)) bad++;
          n += b.length;
        });
        s.on("end", resolve);
        s.on("error", reject);
      });
      return { bytes: () => n, bad: () => bad, end };
    };
    const a = await connect(port);
    a.pause(); // A reads nothing: its host socket fills and pushes back
    const ra = read(a);
    const b = await connect(port);
    const rb = read(b);
    await until(() => nic.stats(0).txBlocked > 0, "A's SENDs are held for 'drain'");
    await rb.end; // B gets everything while A is stalled
    assert.equal(rb.bytes(), total);
    assert.equal(rb.bad(), 0);
    assert.equal(ra.bytes(), 0, "A has not read a byte yet");
    a.resume();
    await ra.end;
    assert.equal(ra.bytes(), total, "A's bytes were held, not lost");
    assert.equal(ra.bad(), 0);
    assert.equal((await fan.done()).closed, 2);
    const st = nic.stats(0);
    t.diagnostic(`held for drain ${st.txBlocked} times, peak ${st.peakHeldBytes} bytes`);
    assert.ok(st.peakHeldBytes < MiB, `device memory stays bounded (${st.peakHeldBytes} bytes)`);
    a.destroy();
    b.destroy();
  } finally {
    await fan.worker.terminate();
    await nic.close();
  }
});

test("host → machine: 16 MiB from a fast writer to a slow program, TCP flow control, no loss", async (t) => {
  const { m, nic } = machine();
  const total = 16 * MiB;
  const sink = startNicWorker(m, 0, "tcp-sink", { total, seed: 11, delayMs: 3 });
  try {
    const port = (await sink.message("listening")).port as number;
    const data = streamBytes(11, 0, total);
    const s = await connect(port);
    let pushedBack = 0;
    for (let off = 0; off < total; off += 64 * 1024) {
      if (!s.write(data.subarray(off, off + 64 * 1024))) {
        pushedBack++;
        await new Promise((r) => s.once("drain", r));
      }
    }
    s.end();
    const r = await sink.done(15_000);
    s.destroy();
    assert.equal(r.received, total, "every byte reached the program");
    assert.equal(r.mismatches, 0, "in order");
    assert.ok(pushedBack > 0, "the writer saw TCP flow control (write() returned false)");
    const st = nic.stats(0);
    t.diagnostic(
      `host socket paused ${st.rxPaused} times, writer pushed back ${pushedBack} times, ` +
        `peak device memory ${st.peakHeldBytes} bytes`,
    );
    assert.ok(st.rxPaused > 0, "the device paused the host socket while the program lagged");
    assert.ok(
      st.peakHeldBytes < MiB,
      `the device held at most ${st.peakHeldBytes} bytes of a ${total}-byte transfer`,
    );
  } finally {
    await sink.worker.terminate();
    await nic.close();
  }
});

test("PAUSE holds one connection at the host's TCP window while others go on; RESUME delivers the rest in order", async (t) => {
  const { m, nic } = machine();
  const total = 32 * MiB;
  const pauseAt = 256 * 1024;
  const w = startNicWorker(m, 0, "tcp-pause", { seed: 13, pauseAt });
  try {
    const port = (await w.message("listening")).port as number;
    const data = streamBytes(13, 0, total);
    const a = await connect(port);
    const written = (async (): Promise<void> => {
      for (let off = 0; off < total; off += 64 * 1024) {
        if (!a.write(data.subarray(off, off + 64 * 1024))) {
          await new Promise((r) => a.once("drain", r));
        }
      }
      a.end();
    })();
    await w.message("paused");
    // While A is paused another connection is served in full.
    const other = streamBytes(99, 0, MiB);
    const back = await echoThrough(port, other, 16);
    assert.ok(back.equals(other), "the other connection got its bytes back while A was paused");
    const during = nic.stats(0);
    assert.equal(during.pauses, 1);
    assert.equal(during.resumes, 0);
    assert.ok(during.toeRxBytes < total, "A's bytes stopped flowing into the machine");
    w.signal(kResume);
    await written;
    const r = await w.done(60_000);
    a.destroy();
    const st = nic.stats(0);
    const layout = nicDmaLayout();
    const ring = layout.sizes.toeRxBuffers * layout.sizes.toeBufferBytes;
    t.diagnostic(
      `bytes of A after its PAUSE: ${r.late} (bound: one RB ring, ${ring}); ` +
        `device peak ${st.peakHeldBytes} bytes`,
    );
    assert.equal(r.received, total, "every byte of A arrived after RESUME");
    assert.equal(r.mismatches, 0, "in order");
    assert.equal(r.resumed, 1);
    assert.ok(
      (r.late as number) <= ring,
      `after the PAUSE, A got only buffers posted before it (${r.late} bytes)`,
    );
    assert.equal(st.pauses, 1);
    assert.equal(st.resumes, 1);
    assert.ok(st.peakHeldBytes < MiB, `device memory stays bounded (${st.peakHeldBytes} bytes)`);
  } finally {
    await w.worker.terminate();
    await nic.close();
  }
});

test("PAUSE and RESUME on a listener or an unknown handle answer ERROR, and change nothing", async () => {
  const { m, nic } = machine();
  const w = startNicWorker(m, 0, "tcp-pause-errors");
  try {
    const r = await w.done();
    assert.equal(r.listenerPause, ENOTCONN);
    assert.equal(r.listenerResume, ENOTCONN);
    assert.equal(r.unknownPause, EBADF);
    assert.equal(r.unknownResume, EBADF);
    assert.equal(nic.stats(0).pauses, 0);
    assert.equal(nic.stats(0).resumes, 0);
  } finally {
    await w.worker.terminate();
    await nic.close();
  }
});

test("a receive buffer outside the VF's window: DATA with EFAULT, that connection is reset, the next one is served", async () => {
  const { m, nic, dma } = machineWithDma();
  const echo = startNicWorker(m, 0, "tcp-rogue-rb");
  try {
    const port = (await echo.message("listening")).port as number;
    const a = await connect(port);
    const aEnded = new Promise<number>((resolve) => {
      let got = 0;
      a.on("data", (b: Buffer) => {
        got += b.length;
      });
      a.on("close", () => resolve(got));
      a.on("error", () => {}); // a reset is what is expected
    });
    a.write("into the rogue buffer");
    const err = await echo.message("error");
    assert.equal(err.errno, EFAULT, "the driver learns why the connection failed");
    assert.equal(err.token, 0, "a connection failure, not a command's");
    assert.equal(await aEnded, 0, "no byte of the refused buffer came back");
    const data = streamBytes(5, 0, 50_000);
    const back = await echoThrough(port, data, 3);
    assert.ok(back.equals(data), "the device goes on with the next connection and buffer");
    const st = nic.stats(0);
    assert.equal(st.dmaFaults, 1, "exactly the one DMA into the rogue buffer was refused");
    assert.equal(dma.faults.length, 1);
    assert.equal(dma.faults[0]?.iova, 0x1000);
    assert.equal(dma.faults[0]?.write, true);
  } finally {
    await echo.worker.terminate();
    await nic.close();
  }
});

test("CONNECT out to a host server: bytes both ways, FIN both ways", async () => {
  const { m, nic } = machine();
  let heard = "";
  let sawEnd = false;
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    c.on("data", (b: Buffer) => {
      heard += b.toString();
    });
    c.on("end", () => {
      sawEnd = true; // the machine's shutdown reached us; we may still write
      c.end(heard.toUpperCase());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const client = startNicWorker(m, 0, "tcp-client", { port });
  try {
    const r = await client.done();
    assert.equal(heard, "hello from the machine");
    assert.ok(sawEnd, "the machine's FIN reached the host");
    assert.equal(r.reply, "HELLO FROM THE MACHINE");
    assert.equal(r.eof, 1, "the host's FIN reached the machine");
    assert.equal(r.errno, 0);
    await until(() => nic.stats(0).handles === 0, "the connection's handle is released");
  } finally {
    await client.worker.terminate();
    await nic.close();
    server.close();
  }
});

test("ECONNREFUSED for a closed port, EADDRINUSE for a busy one", async () => {
  const { m, nic } = machine();
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const refusedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  const busyPort = (busy.address() as net.AddressInfo).port;
  const w = startNicWorker(m, 0, "tcp-errors", { refusedPort, busyPort });
  try {
    const r = await w.done();
    assert.equal(r.connectErrno, ECONNREFUSED);
    assert.equal(r.listenErrno, EADDRINUSE);
    assert.equal(r.other, 0, "no other event");
    await until(() => nic.stats(0).handles === 0, "failed handles are released");
  } finally {
    await w.worker.terminate();
    await nic.close();
    busy.close();
  }
});

test("a host reset reaches the program as ECONNRESET; the device's FLR closes host connections", async () => {
  const { m, nic } = machine();
  const echo = startNicWorker(m, 0, "tcp-echo");
  try {
    const port = (await echo.message("listening")).port as number;
    // Reset from the host: the program sees ECONNRESET on that connection (token 0).
    const a = await connect(port);
    const echoed = new Promise<void>((r) => a.once("data", () => r()));
    a.write("ping");
    await echoed;
    a.resetAndDestroy();
    const e = await echo.message("error", (x) => x.errno === ECONNRESET);
    assert.equal(e.token, 0, "a connection error answers no command");
    await until(() => nic.stats(0).handles === 1, "the program closed the reset connection");

    // The device's function-level reset: every host connection of the VF is closed.
    const b = await connect(port);
    const bEcho = new Promise<void>((r) => b.once("data", () => r()));
    b.write("ping");
    await bEcho;
    const closed = new Promise<void>((r) => b.once("close", () => r()));
    b.on("error", () => {}); // a reset may surface as ECONNRESET on the host side
    nic.resetVf(0);
    await closed;
    await echo.message("reset");
    const s = nic.stats(0);
    assert.equal(s.handles, 0);
    await assert.rejects(connect(port), { code: "ECONNREFUSED" }, "the listener is gone too");
  } finally {
    await echo.worker.terminate();
    await nic.close();
  }
});
