/**
 * blockdev: the block-device interface the filesystem is written against, so one filesystem
 * runs over the storage domain's NVMe driver (domains/storage), over a host file (the mkfs, fs
 * and fsck commands) and over memory (tests, crash simulation).
 *
 * Blocks are {@link BLOCK_SIZE} bytes. Calls are synchronous: the storage domain serves one call
 * at a time, as xv6's file system does per process, and waits for its device in Atomics.wait.
 *
 * Durability contract (NVMe's, with a volatile write cache): a write is durable only after a
 * later flush() returns, or when it returns if it was a FUA write (NVMe's Force Unit Access:
 * that write alone is on the media, nothing else is ordered by it). Between writes with no
 * flush in between, the device may persist any subset, in any order; a power cut loses exactly
 * the writes not yet flushed.
 *
 * Plugging (Linux's blk_plug): between plug() and unplug(), write() may return before its
 * write completes, so that a device with queues sends many writes behind one doorbell;
 * unplug() returns once every one of them completed (throwing the first failure) — or, told not
 * to wait, sends them and returns: they complete in the background, and the next read, flush,
 * FUA write or plug() waits for them first (and throws their failure). Either way the caller may
 * reuse its buffers as soon as write() returns, and a read always sees every write before it.
 * A read, flush or FUA write inside a plug first waits for the plugged writes. A device that
 * completes every write at once (memory, a host file) makes both calls no-ops.
 */

export const BLOCK_SIZE = 4096;

export interface BlockDevice {
  /** Number of blocks. */
  readonly blocks: number;
  /** Read `count` blocks from `lba` into `dst` (dst.length ≥ count × BLOCK_SIZE). Throws IoError. */
  read(lba: number, count: number, dst: Uint8Array): void;
  /**
   * Read `count` blocks from `lba`, block lba + i into dst[i] (each at least BLOCK_SIZE bytes):
   * a scattered read, for the buffer cache. Throws IoError.
   */
  readv(lba: number, count: number, dst: readonly Uint8Array[]): void;
  /** Write `count` blocks from `src` at `lba`; with `fua`, durable when it returns. Throws IoError. */
  write(lba: number, count: number, src: Uint8Array, fua?: boolean): void;
  /** Make every completed write durable. Throws IoError. */
  flush(): void;
  /** Let the writes that follow be sent together (see the header). */
  plug(): void;
  /** Send every write since plug(), and with `wait` (default true) wait for them. Throws IoError. */
  unplug(wait?: boolean): void;
}
