/**
 * toe-quiet: quiet SENDs (CF_QUIET, the inverse of a NIC's Report Status bit) — with the
 * driver's quietSends option a SENT raises no interrupt of its own while buffers are plentiful,
 * the SENDs that take the last quarter of the send buffers do interrupt, quiet SENTs interrupt
 * once they fill half of the EV ring, and every SENT still reaches the driver's pollEvents.
 * Without the option every SENT interrupts, as before.
 *
 * The device runs on this thread and the driver is driven from it too (it never blocks); a real
 * node:net client on loopback is the peer. "Interrupt" is the device's own count of notifies of
 * the driver's irq word (NicDevice.stats: interrupts). No assertion is about time.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { NicDriver, type NicDriverOptions, type ToeEvent } from "../src/drivers/nic.js";
import { NicDevice } from "../src/hw/nic.js";
import { IdentityDma, layNicMachine, until } from "./fixtures/nic-machine.js";

const DMA_BYTES = 1 << 20;

interface Rig {
  readonly nic: NicDevice;
  readonly drv: NicDriver;
  readonly client: net.Socket;
  readonly conn: number;
  /** Bytes the client has received. */
  received(): number;
  /** Poll the driver's events (SENT, …) into `events`. */
  poll(): void;
  readonly events: ToeEvent["type"][];
  close(): Promise<void>;
}

/** A device, a driver with `opts` (irq word set), a listener, and one accepted client. */
async function rig(opts: NicDriverOptions): Promise<Rig> {
  const m = layNicMachine(1, DMA_BYTES);
  const nic = new NicDevice(m.mem, new IdentityDma(m.mem, m.vfs));
  nic.attachVf(m.vfs[0]!);
  const drv = new NicDriver(m.mem, m.vfs[0]!, { irqWord: m.irqWords[0]!, ...opts });
  const events: ToeEvent["type"][] = [];
  let port = 0;
  let conn = 0;
  const poll = (): void => {
    drv.pollEvents((e) => {
      events.push(e.type);
      if (e.type === "listening") port = e.port;
      if (e.type === "accepted") conn = e.conn;
    });
    drv.flush();
  };
  assert.ok(drv.listen(0, 16) > 0);
  drv.flush();
  await until(() => {
    poll();
    return port !== 0;
  }, "the listener is up");
  const client = net.connect({ port, host: "127.0.0.1" });
  let got = 0;
  client.on("data", (b: Buffer) => {
    got += b.length;
  });
  await until(() => {
    poll();
    return conn !== 0;
  }, "the connection is accepted");
  events.length = 0;
  return {
    nic,
    drv,
    client,
    conn,
    received: () => got,
    poll,
    events,
    async close() {
      client.destroy();
      await nic.close();
    },
  };
}

/** Send `count` one-buffer messages of `bytes` bytes, publish them, and wait until every SENT is written. */
async function sendAndSettle(r: Rig, count: number, bytes: number): Promise<void> {
  const before = r.nic.stats(0).events;
  const sentBefore = r.received();
  for (let i = 0; i < count; i++) {
    assert.equal(r.drv.send(r.conn, new Uint8Array(bytes).fill(65 + i)), bytes);
  }
  r.drv.flush();
  await until(() => r.nic.stats(0).events === before + count, `${count} SENT events are written`);
  await until(() => r.received() === sentBefore + count * bytes, "the client has every byte");
  // Let the moderation point and a few more turns of the event loop run.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

test("quiet SENDs: no interrupt while buffers are plentiful, and the SENTs still reach pollEvents", async () => {
  const r = await rig({ quietSends: true, toeTxBuffers: 16 });
  try {
    const irq = r.nic.stats(0).interrupts;
    await sendAndSettle(r, 3, 100); // 13 of 16 buffers stay free: quiet
    assert.equal(r.nic.stats(0).interrupts, irq, "three quiet SENTs raised no interrupt");
    r.poll();
    assert.deepEqual(r.events, ["sent", "sent", "sent"], "the driver finds them when it polls");
    assert.equal(r.drv.sendRoom, 16 * 4096, "every send buffer came back");
  } finally {
    await r.close();
  }
});

test("the SENDs that take the last quarter of the send buffers interrupt", async () => {
  const r = await rig({ quietSends: true, toeTxBuffers: 16 });
  try {
    const irq = r.nic.stats(0).interrupts;
    // Free after each: 15 … 4 quiet (more than a quarter, 4, stays free), then 3, 2 loud.
    await sendAndSettle(r, 14, 200);
    assert.ok(r.nic.stats(0).interrupts > irq, "the low-buffer SENDs interrupted the driver");
    r.poll();
    assert.equal(r.events.filter((t) => t === "sent").length, 14);
    assert.equal(r.drv.sendRoom, 16 * 4096);
  } finally {
    await r.close();
  }
});

test("quiet SENTs interrupt once they fill half of the EV ring", async () => {
  const r = await rig({ quietSends: true, toeTxBuffers: 64, eventRing: 8 });
  try {
    const irq = r.nic.stats(0).interrupts;
    await sendAndSettle(r, 3, 100); // 3 unread events of 8: below half
    assert.equal(r.nic.stats(0).interrupts, irq, "three unread quiet SENTs: no interrupt");
    await sendAndSettle(r, 2, 100); // 5 unread of 8: half full
    assert.ok(r.nic.stats(0).interrupts > irq, "half the EV ring unread: an interrupt");
    r.poll();
    assert.equal(r.events.filter((t) => t === "sent").length, 5);
  } finally {
    await r.close();
  }
});

test("without quietSends every SENT interrupts", async () => {
  const r = await rig({ toeTxBuffers: 16 });
  try {
    const irq = r.nic.stats(0).interrupts;
    await sendAndSettle(r, 1, 100);
    assert.ok(r.nic.stats(0).interrupts > irq, "a lone SENT interrupted the driver");
    r.poll();
    assert.deepEqual(r.events, ["sent"]);
  } finally {
    await r.close();
  }
});
