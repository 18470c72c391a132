/**
 * layout: the on-disk format of exofs — the one place where block numbers, byte offsets and
 * sizes of the filesystem are declared. Everything else (the log, the buffer cache, the
 * filesystem, the checker, the tests that break images on purpose) uses these names.
 *
 * Owns: the region map, the superblock (encode, and decode that refuses a bad image), the inode,
 * directory-entry and log-header records, and the file geometry (direct / indirect / double
 * indirect). Pure data and functions: no I/O. Called by src/fs/fs.ts, log.ts, fsck.ts and tests.
 *
 * All integers are little-endian. Blocks are 4096 bytes (src/fs/blockdev.ts).
 *
 *   block 0            1        2 … 1+L      I … I+IB-1      B … B+BB-1      D … total-1
 *   ┌────────────┬────────────┬────────────┬───────────────┬───────────────┬──────────────────┐
 *   │ superblock │ log header │ log blocks │ inode table   │ free bitmap   │ data blocks      │
 *   │ magic, crc │ seq, n,    │ L copies   │ 32 inodes of  │ 1 bit/block,  │ file data, dir   │
 *   │ regions    │ homes+crcs │ (≤ 510)    │ 128 B a block │ 32768 a block │ entries, indirect│
 *   └────────────┴────────────┴────────────┴───────────────┴───────────────┴──────────────────┘
 *   L = log capacity, I = 2 + L, IB = ninodes / 32, B = I + IB, BB = ceil(total / 32768), D = B + BB
 *
 *   superblock (block 0)                  log header (block 1), the commit record
 *     0  magic "EXOFS001"    8 bytes        0  LOG_MAGIC "XLOG"   u32
 *     8  version             u32            4  n: blocks logged   u16   (0 = nothing to replay)
 *    12  block size (4096)   u32            6  first copy's slot  u16   (copy i: slot (first+i) % L)
 *    16  total blocks        u32            8  sequence number    u32   (+1 per commit)
 *    20  log start (1)       u32           12  crc32 of [0,12)+[16,4096)
 *                                          16  n × { home block u32, crc32 of the logged copy u32 }
 *    24  log capacity L      u32
 *    28  inode start I       u32          inode (128 bytes; inode 0 is never used, 1 is the root)
 *    32  inode blocks IB     u32            0  type u16 (0 free, 1 file, 2 dir)
 *    36  inode count         u32            2  nlink u16   (file: entries; dir: 2 + subdirs)
 *    40  bitmap start B      u32            4  generation u32 (bumped at each allocation)
 *    44  bitmap blocks BB    u32            8  size lo u32, 12 size hi u32
 *    48  data start D        u32           16  mtime ms f64,  24 ctime ms f64
 *    52  root inode (1)      u32           32  parent u32 (dirs: the directory holding it)
 *    56  created ms          f64           36  blocks u32 (data + indirect blocks it holds)
 *  4092  crc32 of [0,4092)   u32           40  direct[12] u32,  88 indirect u32,  92 dindirect u32
 *
 *   directory entry (264 bytes, 15 per block; a directory is whole blocks, never holes)
 *     0  inode u32 (0 = empty slot)   4  type u8 (as the inode's)   5  name length u8   6  name
 *   Names are 1–255 bytes of UTF-8 without "/" or NUL; "." and ".." are never stored (the parent
 *   is kept in the inode).
 *
 * Geometry: 12 direct + 1024 indirect + 1024² double-indirect blocks = 4 GiB + 4 MiB + 48 KiB.
 */

import { EINVAL, EIO } from "../abi/errno.js";
import { IoError } from "../errors.js";
import { BLOCK_SIZE } from "./blockdev.js";
import { crc32 } from "./crc32.js";

// ---- superblock ---------------------------------------------------------------------------

export const FS_MAGIC = "EXOFS001";
export const FS_VERSION = 1;
export const SB_BLOCK = 0;
export const SB_MAGIC = 0;
export const SB_VERSION = 8;
export const SB_BLOCK_SIZE = 12;
export const SB_TOTAL = 16;
export const SB_LOG_START = 20;
export const SB_LOG_BLOCKS = 24;
export const SB_INODE_START = 28;
export const SB_INODE_BLOCKS = 32;
export const SB_NINODES = 36;
export const SB_BITMAP_START = 40;
export const SB_BITMAP_BLOCKS = 44;
export const SB_DATA_START = 48;
export const SB_ROOT = 52;
export const SB_CREATED = 56;
export const SB_CRC = BLOCK_SIZE - 4;

/** The decoded superblock: where each region starts and how big it is. */
export interface Superblock {
  readonly version: number;
  readonly totalBlocks: number;
  readonly logStart: number;
  /** Log capacity: the most blocks one transaction may hold (the header is extra). */
  readonly logBlocks: number;
  readonly inodeStart: number;
  readonly inodeBlocks: number;
  readonly ninodes: number;
  readonly bitmapStart: number;
  readonly bitmapBlocks: number;
  readonly dataStart: number;
  readonly rootIno: number;
  readonly createdMs: number;
}

// ---- log header ---------------------------------------------------------------------------

export const LOG_MAGIC = 0x474f4c58; // "XLOG"
export const LH_MAGIC = 0;
/** u16. (Images of the first log format held n as a u32 ≤ 510, so their LH_START reads 0.) */
export const LH_COUNT = 4;
/** u16: the log slot of the first copy; slot k is block logStart + 1 + k. */
export const LH_START = 6;
export const LH_SEQ = 8;
export const LH_CRC = 12;
export const LH_ENTRIES = 16;
export const LH_ENTRY_BYTES = 8;
/** The most blocks one header can list. */
export const LOG_MAX_BLOCKS = (BLOCK_SIZE - LH_ENTRIES) / LH_ENTRY_BYTES; // 510

// ---- inodes -------------------------------------------------------------------------------

export const INODE_BYTES = 128;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_BYTES; // 32
export const T_FREE = 0;
export const T_FILE = 1;
export const T_DIR = 2;
export const ROOT_INO = 1;
export const I_TYPE = 0;
export const I_NLINK = 2;
export const I_GEN = 4;
export const I_SIZE_LO = 8;
export const I_SIZE_HI = 12;
export const I_MTIME = 16;
export const I_CTIME = 24;
export const I_PARENT = 32;
export const I_BLOCKS = 36;
export const I_DIRECT = 40;
export const I_INDIRECT = 88;
export const I_DINDIRECT = 92;
export const NLINK_MAX = 0xffff;

export const NDIRECT = 12;
export const NINDIRECT = BLOCK_SIZE / 4; // 1024 block numbers per indirect block
export const MAX_FILE_BLOCKS = NDIRECT + NINDIRECT + NINDIRECT * NINDIRECT;
export const MAX_FILE_SIZE = MAX_FILE_BLOCKS * BLOCK_SIZE;

/** Inode `ino`'s block and byte offset in it. */
export function inodeBlock(sb: Superblock, ino: number): number {
  return sb.inodeStart + Math.floor(ino / INODES_PER_BLOCK);
}
export function inodeOffset(ino: number): number {
  return (ino % INODES_PER_BLOCK) * INODE_BYTES;
}
export function inodeSize(dv: DataView, off: number): number {
  return dv.getUint32(off + I_SIZE_LO, true) + dv.getUint32(off + I_SIZE_HI, true) * 2 ** 32;
}
export function setInodeSize(dv: DataView, off: number, size: number): void {
  dv.setUint32(off + I_SIZE_LO, size % 2 ** 32, true);
  dv.setUint32(off + I_SIZE_HI, Math.floor(size / 2 ** 32), true);
}

// ---- directory entries --------------------------------------------------------------------

export const DIRENT_BYTES = 264;
export const DIRENTS_PER_BLOCK = Math.floor(BLOCK_SIZE / DIRENT_BYTES); // 15
export const DE_INO = 0;
export const DE_TYPE = 4;
export const DE_NAMELEN = 5;
export const DE_NAME = 6;
export const NAME_MAX = 255;
export const PATH_MAX = 4096;

// ---- free bitmap --------------------------------------------------------------------------

export const BITS_PER_BITMAP_BLOCK = BLOCK_SIZE * 8; // 32768

// ---- sizing -------------------------------------------------------------------------------

/** The smallest image mkfs makes: 512 KiB. */
export const MIN_BLOCKS = 128;
/** The largest filesystem: 32 GiB (a bigger device is used up to this). */
export const MAX_BLOCKS = 2 ** 23;
/** Blocks every metadata operation may dirty besides freeing a file's blocks (see fs.ts). */
export const META_OP_BLOCKS = 16;
/** Data blocks left after the metadata regions, at least. */
const MIN_DATA_BLOCKS = 16;

/** The smallest log that holds any one operation on an image with `bitmapBlocks`. */
export function minLogBlocks(bitmapBlocks: number): number {
  return META_OP_BLOCKS * 2 + bitmapBlocks;
}

/** What mkfs may be told; everything has a default derived from the device size. */
export interface LayoutOptions {
  /** Usable inodes, at least (the table is whole blocks of 32 slots; slot 0 is never used). */
  readonly inodes?: number;
  /** Log capacity in blocks (the largest transaction). */
  readonly logBlocks?: number;
}

/**
 * The region map mkfs writes for a device of `deviceBlocks` blocks. Throws InvalidArgumentError
 * (through the caller's checks) or IoError(EINVAL) when the device is too small.
 */
export function planLayout(
  deviceBlocks: number,
  opts: LayoutOptions,
  createdMs: number,
): Superblock {
  const total = Math.min(deviceBlocks, MAX_BLOCKS);
  if (total < MIN_BLOCKS) {
    throw new IoError(
      `the device has ${deviceBlocks} blocks of ${BLOCK_SIZE} bytes; a filesystem needs at least ${MIN_BLOCKS} (${(MIN_BLOCKS * BLOCK_SIZE) / 1024} KiB)`,
      EINVAL,
    );
  }
  const bitmapBlocks = Math.ceil(total / BITS_PER_BITMAP_BLOCK);
  const logBlocks =
    opts.logBlocks ??
    Math.max(minLogBlocks(bitmapBlocks), Math.min(LOG_MAX_BLOCKS, Math.max(64, total >> 6)));
  // Slot 0 is never used: `inodes` usable inodes need inodes + 1 slots. The default, one per
  // 32 KiB, fills whole blocks: 64 to 65536 slots.
  const slots =
    opts.inodes !== undefined
      ? opts.inodes + 1
      : Math.min(65536, Math.max(64, Math.ceil(total / 8 / INODES_PER_BLOCK) * INODES_PER_BLOCK));
  const inodeBlocks = Math.ceil(slots / INODES_PER_BLOCK);
  const inodeStart = 2 + logBlocks;
  const bitmapStart = inodeStart + inodeBlocks;
  const dataStart = bitmapStart + bitmapBlocks;
  if (total - dataStart < MIN_DATA_BLOCKS) {
    throw new IoError(
      `the device has ${total} blocks; the log (${logBlocks}), the inode table (${inodeBlocks}) and the bitmap (${bitmapBlocks}) leave fewer than ${MIN_DATA_BLOCKS} data blocks`,
      EINVAL,
    );
  }
  return {
    version: FS_VERSION,
    totalBlocks: total,
    logStart: 1,
    logBlocks,
    inodeStart,
    inodeBlocks,
    ninodes: inodeBlocks * INODES_PER_BLOCK,
    bitmapStart,
    bitmapBlocks,
    dataStart,
    rootIno: ROOT_INO,
    createdMs,
  };
}

/** Write `sb` into the 4096-byte `block` (zeroed first) with its checksum. */
export function encodeSuperblock(sb: Superblock, block: Uint8Array): void {
  block.fill(0);
  const dv = new DataView(block.buffer, block.byteOffset, BLOCK_SIZE);
  for (let i = 0; i < FS_MAGIC.length; i++) block[SB_MAGIC + i] = FS_MAGIC.charCodeAt(i);
  dv.setUint32(SB_VERSION, sb.version, true);
  dv.setUint32(SB_BLOCK_SIZE, BLOCK_SIZE, true);
  dv.setUint32(SB_TOTAL, sb.totalBlocks, true);
  dv.setUint32(SB_LOG_START, sb.logStart, true);
  dv.setUint32(SB_LOG_BLOCKS, sb.logBlocks, true);
  dv.setUint32(SB_INODE_START, sb.inodeStart, true);
  dv.setUint32(SB_INODE_BLOCKS, sb.inodeBlocks, true);
  dv.setUint32(SB_NINODES, sb.ninodes, true);
  dv.setUint32(SB_BITMAP_START, sb.bitmapStart, true);
  dv.setUint32(SB_BITMAP_BLOCKS, sb.bitmapBlocks, true);
  dv.setUint32(SB_DATA_START, sb.dataStart, true);
  dv.setUint32(SB_ROOT, sb.rootIno, true);
  dv.setFloat64(SB_CREATED, sb.createdMs, true);
  sealSuperblock(block);
}

/** Recompute the superblock checksum in place (also what a test uses to forge a header). */
export function sealSuperblock(block: Uint8Array): void {
  const dv = new DataView(block.buffer, block.byteOffset, BLOCK_SIZE);
  dv.setUint32(SB_CRC, crc32(block, 0, SB_CRC), true);
}

/**
 * Decode and check block 0 of a device of `deviceBlocks` blocks. Refuses — never repairs — a
 * foreign image (bad magic), another version, a bad checksum, or regions that do not fit:
 * IoError with errno EINVAL for "not ours / not this version", EIO for a damaged image.
 */
export function decodeSuperblock(block: Uint8Array, deviceBlocks: number): Superblock {
  const dv = new DataView(block.buffer, block.byteOffset, BLOCK_SIZE);
  let magic = "";
  for (let i = 0; i < FS_MAGIC.length; i++) magic += String.fromCharCode(block[SB_MAGIC + i]);
  if (magic !== FS_MAGIC) {
    throw new IoError(
      `not an exofs image: bad magic ${JSON.stringify(magic.replace(/[^\x20-\x7e]/g, "."))} in block 0 (expected "${FS_MAGIC}")`,
      EINVAL,
    );
  }
  const version = dv.getUint32(SB_VERSION, true);
  if (version !== FS_VERSION) {
    throw new IoError(
      `unsupported exofs version ${version} (this build reads version ${FS_VERSION})`,
      EINVAL,
    );
  }
  const want = dv.getUint32(SB_CRC, true);
  const got = crc32(block, 0, SB_CRC);
  if (want !== got) {
    throw new IoError(
      `superblock checksum mismatch (stored 0x${hex(want)}, computed 0x${hex(got)}): the image is damaged`,
      EIO,
    );
  }
  const u = (off: number) => dv.getUint32(off, true);
  const sb: Superblock = {
    version,
    totalBlocks: u(SB_TOTAL),
    logStart: u(SB_LOG_START),
    logBlocks: u(SB_LOG_BLOCKS),
    inodeStart: u(SB_INODE_START),
    inodeBlocks: u(SB_INODE_BLOCKS),
    ninodes: u(SB_NINODES),
    bitmapStart: u(SB_BITMAP_START),
    bitmapBlocks: u(SB_BITMAP_BLOCKS),
    dataStart: u(SB_DATA_START),
    rootIno: u(SB_ROOT),
    createdMs: dv.getFloat64(SB_CREATED, true),
  };
  const why = regionProblem(sb, u(SB_BLOCK_SIZE));
  if (why) throw new IoError(`superblock regions do not fit: ${why}`, EIO);
  if (sb.totalBlocks > deviceBlocks) {
    throw new IoError(
      `the image is truncated: its superblock says ${sb.totalBlocks} blocks, the device has ${deviceBlocks}`,
      EIO,
    );
  }
  return sb;
}

/** Why the region numbers of `sb` cannot be a filesystem mkfs made, or undefined. */
function regionProblem(sb: Superblock, blockSize: number): string | undefined {
  if (blockSize !== BLOCK_SIZE) return `block size ${blockSize}, expected ${BLOCK_SIZE}`;
  if (sb.totalBlocks < MIN_BLOCKS || sb.totalBlocks > MAX_BLOCKS) {
    return `total ${sb.totalBlocks} blocks is outside ${MIN_BLOCKS}..${MAX_BLOCKS}`;
  }
  if (sb.logStart !== 1) return `log starts at ${sb.logStart}, expected 1`;
  const bitmapBlocks = Math.ceil(sb.totalBlocks / BITS_PER_BITMAP_BLOCK);
  if (sb.bitmapBlocks !== bitmapBlocks) {
    return `bitmap of ${sb.bitmapBlocks} blocks for ${sb.totalBlocks} blocks (needs ${bitmapBlocks})`;
  }
  if (sb.logBlocks < minLogBlocks(bitmapBlocks) || sb.logBlocks > LOG_MAX_BLOCKS) {
    return `log capacity ${sb.logBlocks} is outside ${minLogBlocks(bitmapBlocks)}..${LOG_MAX_BLOCKS}`;
  }
  if (sb.inodeStart !== sb.logStart + 1 + sb.logBlocks) {
    return `inode table at ${sb.inodeStart}, expected ${sb.logStart + 1 + sb.logBlocks}`;
  }
  if (sb.inodeBlocks < 1 || sb.ninodes !== sb.inodeBlocks * INODES_PER_BLOCK) {
    return `${sb.ninodes} inodes in ${sb.inodeBlocks} blocks`;
  }
  if (sb.bitmapStart !== sb.inodeStart + sb.inodeBlocks) {
    return `bitmap at ${sb.bitmapStart}, expected ${sb.inodeStart + sb.inodeBlocks}`;
  }
  if (sb.dataStart !== sb.bitmapStart + sb.bitmapBlocks || sb.dataStart >= sb.totalBlocks) {
    return `data region at ${sb.dataStart} (bitmap ends at ${sb.bitmapStart + sb.bitmapBlocks}, image at ${sb.totalBlocks})`;
  }
  if (sb.rootIno !== ROOT_INO) return `root inode ${sb.rootIno}, expected ${ROOT_INO}`;
  return undefined;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
