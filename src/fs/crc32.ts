/**
 * crc32: the CRC-32 of the filesystem's checksums (IEEE 802.3 polynomial, reflected, as zlib and
 * gzip compute it: crc32("123456789") = 0xcbf43926).
 *
 * Owns: one 256-entry table built at load. Used by src/fs/layout.ts (superblock) and
 * src/fs/log.ts (log header and logged blocks). Pure functions; allocates nothing per call.
 * Written here rather than taken from node:zlib because zlib.crc32 only exists from Node 20.15.
 */

const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c >>> 0;
}

/**
 * CRC-32 of `bytes[start, end)`. `seed` continues an earlier CRC, so a region with a hole (the
 * checksum field itself) is summed as crc32(b, c, d, crc32(b, 0, a)).
 */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = start; i < end; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
