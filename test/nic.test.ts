/**
 * nic: the NIC device model (src/hw/nic.ts) and its driver (src/drivers/nic.ts) moving frames —
 * the device on this (main) thread, drivers in worker threads over one SharedArrayBuffer, every
 * device access through a DmaPort that refuses what lies outside each VF's window.
 *
 *   - frames between two VFs through the internal switch, echoed byte for byte
 *   - a frame for a VF with no RX buffer posted is dropped and counted; the first ones land
 *   - UDP: a host node:dgram client exchanges datagrams with a driver-side echo loop
 *   - rogue descriptors: a TX buffer or an RX buffer outside the VF's window is refused and
 *     counted, nothing is read or written, and the VF keeps working
 *   - reset: the device's FLR and a driver-requested one are seen (vrGeneration); reattach works
 *   - IPv4/UDP header build and parse round-trip (fast-check), and a corrupted header is refused
 *
 * No assertion is about time; every wait has a deadline that fails the test instead of hanging.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { test } from "node:test";
import fc from "fast-check";
import { NicDriver } from "../src/drivers/nic.js";
import {
  parseUdpFrame,
  UDP_FRAME_OVERHEAD,
  udpFrameInfo,
  writeEthernet,
  writeUdpHeaders,
} from "../src/hw/net-headers.js";
import { NicDevice } from "../src/hw/nic.js";
import { DF_DONE, DF_ERR, dFlags, dIovaHi, dIovaLo, vfMac } from "../src/hw/nic-regs.js";
import {
  VF_DEVICE_REGS,
  VF_READY,
  VF_RESETTING,
  vrControl,
  vrGeneration,
  vrIrqWord,
  vrStatus,
} from "../src/hw/vf.js";
import {
  DMA_IOVA,
  IdentityDma,
  layNicMachine,
  type NicMachine,
  startNicWorker,
  streamBytes,
  until,
} from "./fixtures/nic-machine.js";

const DMA_BYTES = 1 << 20;

function machine(count: number): { m: NicMachine; dma: IdentityDma; nic: NicDevice } {
  const m = layNicMachine(count, DMA_BYTES);
  const dma = new IdentityDma(m.mem, m.vfs);
  const nic = new NicDevice(m.mem, dma);
  for (const vf of m.vfs) nic.attachVf(vf);
  return { m, dma, nic };
}

/** The frame the worker's frame scenarios send: header, seq, stream bytes of seq. */
function testFrame(dst: number, src: number, seq: number): Uint8Array {
  const len = 18 + (seq % 1000) + 50;
  const f = new Uint8Array(len);
  const dv = new DataView(f.buffer);
  writeEthernet(dv, 0, dst, src, 0x88b5);
  dv.setUint32(14, seq);
  f.set(streamBytes(seq, 0, len - 18), 18);
  return f;
}

test("frames cross the internal switch between two VFs, echoed byte for byte", async () => {
  const { m, nic } = machine(2);
  const echo = startNicWorker(m, 1, "frame-echo");
  await echo.message("attached"); // frames for a VF nobody enabled yet would be dropped
  const ping = startNicWorker(m, 0, "frame-ping", { peer: 1, count: 500, window: 32 });
  try {
    const r = await ping.done(15_000);
    assert.equal(r.received, 500);
    assert.equal(r.bad, 0, "every echoed frame is the frame sent");
    const e = await echo.stop();
    assert.equal(e.echoed, 500);
    const s0 = nic.stats(0);
    const s1 = nic.stats(1);
    assert.equal(s0.txFrames, 500);
    assert.equal(s1.rxFrames, 500);
    assert.equal(s1.txFrames, 500);
    assert.equal(s0.rxFrames, 500);
    assert.equal(s0.rxDropped + s1.rxDropped, 0, "a window below the ring size drops nothing");
    assert.ok(s0.interrupts > 0 && s1.interrupts > 0, "the device interrupted both drivers");
  } finally {
    await Promise.all([echo.worker.terminate(), ping.worker.terminate()]);
    await nic.close();
  }
});

test("a frame for a VF with no RX buffer posted is dropped and counted", async () => {
  const { m, nic } = machine(2);
  // VF 1's driver posts its 64 RX buffers and then never takes a frame.
  const passive = new NicDriver(m.mem, m.vfs[1]!, {});
  const blast = startNicWorker(m, 0, "frame-blast", { peer: 1, count: 200 });
  try {
    assert.equal((await blast.done()).sent, 200);
    await until(() => nic.stats(0).txFrames === 200, "the device sends all 200 frames");
    const s1 = nic.stats(1);
    assert.equal(s1.rxFrames, 64, "one frame per posted buffer");
    assert.equal(s1.rxDropped, 136, "the rest are dropped, and counted");
    const seqs: number[] = [];
    const got = passive.receiveFrames((f) => {
      const seq = new DataView(f.buffer, f.byteOffset, f.length).getUint32(14);
      seqs.push(seq);
      assert.deepEqual(f, testFrame(vfMac(1), vfMac(0), seq));
    });
    assert.equal(got, 64);
    assert.deepEqual(
      seqs,
      Array.from({ length: 64 }, (_, i) => i),
      "the first 64, in order",
    );
  } finally {
    await blast.worker.terminate();
    await nic.close();
  }
});

test("UDP: a host dgram client exchanges datagrams with a driver-side echo loop", async () => {
  const { m, nic } = machine(1);
  const echo = startNicWorker(m, 0, "udp-echo", { port: 0 });
  const client = dgram.createSocket("udp4");
  try {
    const port = (await echo.message("bound")).port as number;
    assert.ok(port > 0, "an ephemeral port was bound on the host");
    await new Promise<void>((r) => client.bind(0, "127.0.0.1", r));
    const replies: { msg: Buffer; port: number }[] = [];
    client.on("message", (msg, rinfo) => replies.push({ msg, port: rinfo.port }));
    const sizes = [1, 2, 17, 100, 512, 1000, 1400, 1458];
    for (let i = 0; i < 100; i++) {
      const payload = randomBytes(Math.max(1, sizes[i % sizes.length]! - (i % 3)));
      client.send(payload, port, "127.0.0.1");
      await until(() => replies.length === i + 1, `echo of datagram ${i}`);
      const r = replies[i]!;
      assert.equal(r.port, port, "the reply comes from the bound port");
      assert.deepEqual(r.msg, payload, `datagram ${i} echoed exactly`);
    }
    const s = nic.stats(0);
    assert.equal(s.udpRx, 100);
    assert.equal(s.udpTx, 100);
    assert.equal(s.udpBindings, 1);
  } finally {
    client.close();
    await echo.stop().catch(() => {});
    await echo.worker.terminate();
    await nic.close();
  }
});

test("a rogue descriptor outside the VF's window is refused and counted, nothing moves", async () => {
  const { m, dma, nic } = machine(2);
  const d0 = new NicDriver(m.mem, m.vfs[0]!, {});
  const d1 = new NicDriver(m.mem, m.vfs[1]!, {});
  const outside = DMA_IOVA + DMA_BYTES; // one byte past VF 1's window: physically, the guard area
  const dv = m.mem.dv;
  const setIova = (desc: number, iova: number): void => {
    dv.setUint32(desc + dIovaLo, iova, true);
    dv.setUint32(desc + dIovaHi, 0, true);
  };
  try {
    // TX: VF 0 queues a frame for VF 1, then points the descriptor outside its window.
    assert.ok(d0.sendFrame(testFrame(vfMac(1), vfMac(0), 7)));
    const tx0 = m.vfs[0]!.dma.phys + d0.layout.txRing;
    setIova(tx0, outside);
    d0.flush();
    await until(() => nic.stats(0).txDropped === 1, "the rogue TX descriptor is refused");
    assert.equal(nic.stats(0).txFrames, 0);
    assert.equal(nic.stats(0).dmaFaults, 1);
    assert.equal(dv.getUint32(tx0 + dFlags, true), DF_DONE | DF_ERR, "written back as failed");
    assert.ok(dma.faults.some((f) => f.rid === m.vfs[0]!.rid && f.iova === outside && !f.write));
    assert.equal(
      d1.receiveFrames(() => assert.fail("nothing reaches VF 1")),
      0,
    );
    d0.receiveFrames(() => {});
    assert.equal(d0.stats().txErrors, 1, "the driver sees the failed descriptor");

    // RX: VF 1's first posted buffer points outside its window; a good frame arrives for it.
    const rx1 = m.vfs[1]!.dma.phys + d1.layout.rxRing;
    setIova(rx1, outside);
    const guardBefore = m.mem.u8.slice(m.guard, m.guard + 4096);
    assert.ok(d0.sendFrame(testFrame(vfMac(1), vfMac(0), 8)));
    d0.flush();
    await until(() => nic.stats(1).rxDropped === 1, "the rogue RX descriptor is refused");
    assert.equal(nic.stats(1).dmaFaults, 1);
    assert.ok(dma.faults.some((f) => f.rid === m.vfs[1]!.rid && f.iova === outside && f.write));
    assert.deepEqual(m.mem.u8.slice(m.guard, m.guard + 4096), guardBefore, "nothing written");
    assert.equal(dv.getUint32(rx1 + dFlags, true), DF_DONE | DF_ERR);
    assert.equal(
      d1.receiveFrames(() => assert.fail("the refused frame is not delivered")),
      0,
    );
    assert.equal(d1.stats().rxErrors, 1);

    // Both VFs keep working: the next frame lands in VF 1's next buffer.
    const good = testFrame(vfMac(1), vfMac(0), 9);
    assert.ok(d0.sendFrame(good));
    d0.flush();
    await until(() => nic.stats(1).rxFrames === 1, "a good frame after the faults");
    const got: Uint8Array[] = [];
    d1.receiveFrames((f) => got.push(f.slice()));
    assert.deepEqual(got, [good]);
    assert.equal(dma.faults.length, 2, "exactly the two rogue accesses faulted");
  } finally {
    await nic.close();
  }
});

test("reset: the driver sees the device's FLR and its own request, and reattaches", async () => {
  const { m, nic } = machine(2);
  const d0 = new NicDriver(m.mem, m.vfs[0]!, {});
  const d1 = new NicDriver(m.mem, m.vfs[1]!, {});
  const exchange = async (seq: number): Promise<void> => {
    const before = nic.stats(1).rxFrames;
    assert.ok(d0.sendFrame(testFrame(vfMac(1), vfMac(0), seq)));
    d0.flush();
    await until(() => nic.stats(1).rxFrames === before + 1, `frame ${seq} arrives`);
    let n = 0;
    d1.receiveFrames((f) => {
      assert.deepEqual(f, testFrame(vfMac(1), vfMac(0), seq));
      n++;
    });
    assert.equal(n, 1);
  };
  try {
    await exchange(1);
    const gen = Atomics.load(m.mem.i32, m.vfs[1]!.regs / 4 + vrGeneration);
    nic.resetVf(1); // the supervisor's FLR
    assert.ok(d1.resetDetected);
    assert.ok(d1.hasWork(), "a waiting driver loop wakes up for a reset");
    assert.equal(Atomics.load(m.mem.i32, m.vfs[1]!.regs / 4 + vrGeneration), gen + 1);
    assert.equal(
      d1.receiveFrames(() => {}),
      0,
      "a reset driver does nothing",
    );
    d1.reattach();
    assert.ok(!d1.resetDetected);
    await exchange(2);

    d1.requestReset(); // the driver's own request (VFC_RESET)
    await until(() => d1.resetDetected, "the device performs the requested reset");
    assert.equal(Atomics.load(m.mem.i32, m.vfs[1]!.regs / 4 + vrStatus), VF_READY);
    d1.reattach();
    await exchange(3);
    assert.throws(() => new NicDriver(m.mem, m.vfs[1]!, {}), { code: "EXO_ERR_IO" });
  } finally {
    await nic.close();
  }
});

test("under a PF: VFC_RESET goes to the PF's FLR, whose onReset hook is resetVf", async () => {
  const m = layNicMachine(2, DMA_BYTES);
  const i32 = m.mem.i32;
  const flrs: number[] = [];
  // What src/hw/sriov.ts's PhysicalFunction.reset does around its onReset hook.
  const pfReset = (i: number): void => {
    flrs.push(i);
    const w = m.vfs[i]!.regs / 4;
    Atomics.store(i32, w + vrStatus, VF_RESETTING); // publish: FLR under way
    nic.resetVf(i); // the onReset hook
    m.mem.u8.fill(0, m.vfs[i]!.regs + VF_DEVICE_REGS, m.vfs[i]!.regs + 4096);
    Atomics.store(i32, w + vrIrqWord, 0); // publish: interrupts off
    Atomics.store(i32, w + vrControl, 0); // publish: VFC_RESET cleared
    Atomics.add(i32, w + vrGeneration, 1); // publish: the new generation
    Atomics.store(i32, w + vrStatus, VF_READY); // publish: usable again
  };
  const nic = new NicDevice(m.mem, new IdentityDma(m.mem, m.vfs), { resetRequest: pfReset });
  for (const vf of m.vfs) nic.attachVf(vf);
  try {
    const d0 = new NicDriver(m.mem, m.vfs[0]!, {});
    const d1 = new NicDriver(m.mem, m.vfs[1]!, {});
    const gen = Atomics.load(i32, m.vfs[1]!.regs / 4 + vrGeneration);
    d1.requestReset();
    await until(() => d1.resetDetected, "the PF's FLR completes");
    assert.deepEqual(flrs, [1]);
    assert.equal(Atomics.load(i32, m.vfs[1]!.regs / 4 + vrGeneration), gen + 1, "bumped once");
    d1.reattach();
    const frame = testFrame(vfMac(1), vfMac(0), 4);
    assert.ok(d0.sendFrame(frame));
    d0.flush();
    await until(() => nic.stats(1).rxFrames === 1, "frames flow after the reattach");
    const got: Uint8Array[] = [];
    d1.receiveFrames((f) => got.push(f.slice()));
    assert.deepEqual(got, [frame]);
  } finally {
    await nic.close();
  }
});

test("options are checked with precise messages", () => {
  const { m, nic } = machine(1);
  try {
    assert.throws(() => new NicDriver(m.mem, m.vfs[0]!, { txRing: 48 }), /txRing must be a power/);
    assert.throws(
      () => new NicDriver(m.mem, { ...m.vfs[0]!, dma: { ...m.vfs[0]!.dma, bytes: 4096 } }, {}),
      /DMA region has 4096 bytes/,
    );
    assert.throws(() => new NicDriver(m.mem, m.vfs[0]!, { irqWord: 100 }), /irqWord must be/);
    assert.throws(() => nic.attachVf(m.vfs[0]!), /already attached/);
    assert.throws(() => nic.attachVf({ ...m.vfs[0]!, kind: "nvme", index: 5 }), /kind must be/);
    assert.throws(() => nic.stats(9), /not attached/);
    const d = new NicDriver(m.mem, m.vfs[0]!, {});
    assert.throws(() => d.sendFrame(new Uint8Array(10)), /frame must be 14 to 2048 bytes/);
    assert.throws(() => d.listen(70000, 1), /port must be an integer/);
  } finally {
    void nic.close();
  }
});

test("IPv4/UDP headers round-trip, and a corrupted IPv4 header is refused", () => {
  const buf = new Uint8Array(2048);
  const dv = new DataView(buf.buffer);
  const u = udpFrameInfo();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 2048 - UDP_FRAME_OVERHEAD }),
      fc.integer({ min: 14, max: 33 }),
      (dstMac, srcMac, srcIp, dstIp, sp, dp, n, flip) => {
        const len = writeUdpHeaders(dv, 0, dstMac, srcMac, srcIp, dstIp, sp, dp, n);
        assert.equal(len, UDP_FRAME_OVERHEAD + n);
        assert.ok(parseUdpFrame(dv, 0, len, u));
        assert.deepEqual(
          [u.dstMac, u.srcMac, u.srcIp, u.dstIp, u.srcPort, u.dstPort],
          [dstMac, srcMac, srcIp, dstIp, sp, dp],
        );
        assert.equal(u.payloadOffset, UDP_FRAME_OVERHEAD);
        assert.equal(u.payloadLength, n);
        buf[flip] = (buf[flip] as number) ^ 0x5a; // any IPv4 header byte: checksum or checks fail
        assert.equal(parseUdpFrame(dv, 0, len, u), false);
      },
    ),
  );
});
