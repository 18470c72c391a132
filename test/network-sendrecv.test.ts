/**
 * network-sendrecv: SYS_sendrecv (send in full, then receive, in one crossing to the network
 * domain) on a real machine against a node:net client (test/fixtures/programs/sendrecv.ts):
 * bad buffers give EFAULT for that call and lose no byte; a send far larger than the send
 * buffers goes out whole and in order before the receive; the end of the stream is 0.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EFAULT } from "../src/abi/errno.js";
import { startListening } from "./fixtures/listening.js";
import { BIG, bigByte } from "./fixtures/programs/sendrecv.js";

const program = fileURLToPath(new URL("./fixtures/programs/sendrecv.js", import.meta.url));

test("sendrecv: EFAULT on either buffer loses nothing; 4 MiB go out whole before the receive", {
  timeout: 60_000,
}, async () => {
  const { m, port, status, out } = await startListening(program, [], {
    cores: 1,
    memoryMiB: 64,
  });
  try {
    const seen = await new Promise<{ head: string; bad: number; tail: string }>(
      (resolve, reject) => {
        const chunks: Buffer[] = [];
        let got = 0;
        let answered = false;
        const c = net.connect(port, "127.0.0.1", () => c.write("first\n"));
        c.on("data", (d: Buffer) => {
          chunks.push(d);
          got += d.length;
          if (!answered && got >= 6 + BIG) {
            answered = true;
            c.write("ok"); // every byte of the big send is here: let the program's receive end
          }
          if (got >= 6 + BIG + 4) c.end();
        });
        c.on("end", () => {
          const all = Buffer.concat(chunks);
          let bad = -1;
          for (let i = 0; i < BIG; i++) {
            if (all[6 + i] !== bigByte(i)) {
              bad = i;
              break;
            }
          }
          resolve({
            head: all.subarray(0, 6).toString(),
            bad,
            tail: all.subarray(6 + BIG).toString(),
          });
        });
        c.on("error", reject);
      },
    );
    assert.equal(await status, 0, out());
    assert.equal(seen.head, "hello\n", "the send part of a call whose receive failed went out");
    assert.equal(seen.bad, -1, "the big send arrived whole and in order");
    assert.equal(seen.tail, "bye\n");
    assert.match(
      out(),
      new RegExp(`bad-send ${-EFAULT} bad-recv ${-EFAULT} first "first\\\\n" big 2 ok ok end 0\\n`),
    );
  } finally {
    await m.shutdown();
  }
});
