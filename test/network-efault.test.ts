/**
 * network-efault: a bad buffer on a TCP socket is -EFAULT for that call and nothing else — the
 * received bytes stay in the network domain's receive ring for the next recv, and a send from
 * a bad buffer queues nothing (test/fixtures/programs/network-efault.ts on a real machine, a
 * node:net client).
 */

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EFAULT } from "../src/abi/errno.js";
import { startListening } from "./fixtures/listening.js";

const program = fileURLToPath(new URL("./fixtures/programs/network-efault.js", import.meta.url));

test("recv into and send from an unmapped buffer give EFAULT; no byte is lost or sent", async () => {
  const { m, port, status, out } = await startListening(program, [], {
    cores: 1,
    memoryMiB: 32,
  });
  try {
    const sent = Buffer.from("every byte of this line comes back, none twice\n");
    const back = await new Promise<Buffer>((resolve, reject) => {
      const got: Buffer[] = [];
      const c = net.connect(port, "127.0.0.1", () => c.end(sent));
      c.on("data", (d: Buffer) => got.push(d));
      c.on("end", () => resolve(Buffer.concat(got)));
      c.on("error", reject);
    });
    assert.equal(await status, 0);
    assert.match(
      out(),
      new RegExp(`recv-bad ${-EFAULT} send-bad ${-EFAULT} got ${sent.length}\\n`),
    );
    assert.deepEqual(back, sent, "the bytes a bad recv could not take came back, and only they");
  } finally {
    await m.shutdown();
  }
});
