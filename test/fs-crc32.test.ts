/**
 * crc32: the filesystem's checksum is the IEEE CRC-32 (zlib's), whichever implementation this
 * Node runs — node:zlib's where it has one, the table otherwise: the check value, continuation
 * through a seed (how a region with a hole is summed), and agreement on random buffers and
 * ranges.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { crc32, crc32Table } from "../src/fs/crc32.js";

const CHECK = new TextEncoder().encode("123456789");

test("the check value of CRC-32/ISO-HDLC, from both implementations", () => {
  assert.equal(crc32(CHECK), 0xcbf43926);
  assert.equal(crc32Table(CHECK), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

test("a seed continues a CRC: two halves sum as the whole", () => {
  const a = crc32(CHECK, 0, 4);
  assert.equal(crc32(CHECK, 4, 9, a), 0xcbf43926);
  assert.equal(crc32Table(CHECK, 4, 9, crc32Table(CHECK, 0, 4)), 0xcbf43926);
});

test("both implementations agree on any buffer and range", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 5000 }),
      fc.nat(),
      fc.nat(),
      fc.nat({ max: 0xffffffff }),
      (b, x, y, seed) => {
        const start = b.length === 0 ? 0 : x % b.length;
        const end = start + (b.length === 0 ? 0 : y % (b.length - start + 1));
        assert.equal(crc32(b, start, end, seed), crc32Table(b, start, end, seed));
        assert.equal(crc32(b), crc32Table(b));
      },
    ),
    { numRuns: 300 },
  );
});
