/**
 * network-window: the network domain's receive window, end to end — a real node:net client
 * writes 64 MiB as fast as it can to a program that does not read it for a while
 * (test/fixtures/programs/network-stall.ts), and the domain must pause that connection at the
 * offload engine instead of buffering without limit:
 *
 *   - the bytes the domain holds for one connection never pass RX_WINDOW_HIGH plus one RB ring
 *     (the driver's bound), as its own peak figure reports (NIC stats: sockRxPeak)
 *   - the connection was paused, then resumed once the program read it
 *   - other connections are served while it is stalled
 *   - every byte of the stalled connection comes back once the program reads, in order (sha256)
 *
 * The program leaves the first connection unread until every other client is done, so what is
 * asserted does not depend on timing.
 */

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { nicDmaLayout, RX_WINDOW_HIGH } from "../src/drivers/nic.js";
import type { Machine } from "../src/hv/machine.js";
import type { NicVfStats } from "../src/hw/nic.js";
import { startListening } from "./fixtures/listening.js";

const MiB = 1 << 20;
const program = fileURLToPath(new URL("./fixtures/programs/network-stall.js", import.meta.url));

function nicStats(m: Machine): NicVfStats {
  const nic = m.devices?.nic;
  const vf = m.devices?.networkVf;
  if (!nic || vf === undefined) throw new Error("the machine has no network VF");
  return nic.stats(vf.index);
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One connection: write `data` (half-close after), hash everything echoed until the peer's FIN. */
function echoHashed(
  port: number,
  data: Buffer,
): { socket: net.Socket; done: Promise<{ bytes: number; sha256: string }> } {
  const socket = net.connect(port, "127.0.0.1", () => socket.end(data));
  const hash = createHash("sha256");
  let bytes = 0;
  const done = new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    socket.on("data", (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    socket.on("end", () => resolve({ bytes, sha256: hash.digest("hex") }));
    socket.on("error", reject);
  });
  return { socket, done };
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

test("a fast sender to a program that does not read is held to the receive window; nothing is lost", async (t) => {
  const FAST = 5;
  const { m, port, status, out } = await startListening(program, [String(FAST)]);
  try {
    const flood = randomBytes(64 * MiB);
    const stalled = echoHashed(port, flood);
    await until(() => nicStats(m).pauses > 0, "the domain to pause the stalled connection");
    const atPause = nicStats(m);
    assert.ok(
      atPause.sockRxHeld > RX_WINDOW_HIGH,
      `the window filled before the pause (${atPause.sockRxHeld} bytes held)`,
    );
    assert.equal(atPause.resumes, 0, "nothing was read yet, so nothing was resumed");

    // Others are served while the first connection is stalled (the program reads it only after).
    const others = Array.from({ length: FAST }, (_, i) => randomBytes(4096 + i * 50_000));
    const echoed = await Promise.all(others.map((d) => echoHashed(port, d).done));
    for (const [i, e] of echoed.entries()) {
      assert.equal(e.bytes, others[i]?.length, `client ${i} got all its bytes back`);
      assert.equal(e.sha256, sha256(others[i] as Buffer), `client ${i} got its own bytes`);
    }

    const back = await stalled.done;
    stalled.socket.destroy();
    assert.equal(back.bytes, flood.length, "every byte of the stalled connection came back");
    assert.equal(back.sha256, sha256(flood), "in order");
    assert.equal(await status, 0);
    assert.match(out(), new RegExp(`echoed ${flood.length} bytes of the stalled connection`));

    const st = nicStats(m);
    const layout = nicDmaLayout();
    const bound = RX_WINDOW_HIGH + layout.sizes.toeRxBuffers * layout.sizes.toeBufferBytes;
    t.diagnostic(
      `domain peak ${st.sockRxPeak} bytes for one connection (bound ${bound}); ` +
        `PAUSE ${st.pauses}, RESUME ${st.resumes}; device peak ${st.peakHeldBytes} bytes, ` +
        `host socket paused by the device ${st.rxPaused} times`,
    );
    assert.ok(st.pauses >= 1 && st.resumes >= 1, "paused, then resumed once the program read");
    assert.ok(
      st.sockRxPeak <= bound,
      `the domain held ${st.sockRxPeak} bytes of one connection: at most the window plus one RB ring (${bound})`,
    );
    assert.ok(st.sockRxPeak > RX_WINDOW_HIGH, "the window was used before the pause");
    await until(() => nicStats(m).sockRxHeld === 0, "the domain to report its rings empty");
  } finally {
    await m.shutdown();
  }
});
