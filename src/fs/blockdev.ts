/**
 * blockdev: the block-device interface the filesystem is written against, so one filesystem
 * runs over the storage domain's NVMe driver (domains/storage), over a host file (the mkfs, fs
 * and fsck commands) and over memory (tests, crash simulation).
 *
 * Blocks are {@link BLOCK_SIZE} bytes. Calls are synchronous: the storage domain serves one call
 * at a time, as xv6's file system does per process, and waits for its device in Atomics.wait.
 *
 * Durability contract (NVMe's, with a volatile write cache): a write is durable only after a
 * later flush() returns. Between writes with no flush in between, the device may persist any
 * subset, in any order; a power cut loses exactly the writes not yet flushed.
 */

export const BLOCK_SIZE = 4096;

export interface BlockDevice {
  /** Number of blocks. */
  readonly blocks: number;
  /** Read `count` blocks from `lba` into `dst` (dst.length ≥ count × BLOCK_SIZE). Throws IoError. */
  read(lba: number, count: number, dst: Uint8Array): void;
  /** Write `count` blocks from `src` at `lba`. Throws IoError. */
  write(lba: number, count: number, src: Uint8Array): void;
  /** Make every completed write durable. Throws IoError. */
  flush(): void;
}
