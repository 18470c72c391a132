/**
 * crc32: the CRC-32 of the filesystem's checksums (IEEE 802.3 polynomial, reflected, as zlib and
 * gzip compute it: crc32("123456789") = 0xcbf43926).
 *
 * Owns: the choice of implementation, made once at load — node:zlib's crc32 where this Node has
 * it (from 20.15: native, ≈ 0.8 µs a 4 KiB block here), else a 256-entry table, byte at a time
 * (≈ 8.6 µs a block). Both give the same numbers. Used by src/fs/layout.ts (superblock) and
 * src/fs/log.ts (log header, and every logged block at each commit). Pure functions; allocate
 * nothing per call, but one view when zlib sums a part of a buffer.
 */

import zlib from "node:zlib";

const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c >>> 0;
}

type NativeCrc = (data: Uint8Array, value?: number) => number;
const native: NativeCrc | undefined = (zlib as { crc32?: NativeCrc }).crc32;

/**
 * CRC-32 of `bytes[start, end)`. `seed` continues an earlier CRC, so a region with a hole (the
 * checksum field itself) is summed as crc32(b, c, d, crc32(b, 0, a)).
 */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length, seed = 0): number {
  if (native !== undefined) {
    const part = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
    return native(part, seed) >>> 0;
  }
  return crc32Table(bytes, start, end, seed);
}

/** The table version (exported so a test can hold it against zlib's). */
export function crc32Table(bytes: Uint8Array, start = 0, end = bytes.length, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = start; i < end; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
