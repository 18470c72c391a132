/**
 * bcache: the buffer cache of the filesystem — a bounded set of 4 KiB block buffers over a
 * BlockDevice, least-recently-used first out (xv6 kernel/bio.c, with the log's pinning).
 *
 * Owns: every buffer (one pool of `capacity` × 4096 bytes, allocated once, with a DataView per
 * buffer made once), the block → buffer index, the LRU list, and the hit/miss counters.
 *
 * Invariants:
 *   - A block has at most one buffer; a cached buffer holds the block's latest contents (what
 *     the running transaction wrote, or else what the device holds at the home location).
 *   - A buffer in the running transaction (`inTxn`, set by src/fs/log.ts) is never evicted: its
 *     contents exist nowhere else until commit (xv6's bpin). A buffer `held` by a long loop is
 *     not evicted either.
 *   - The cache keeps at least {@link MIN_EVICTABLE} buffers that are neither, so a Buf the
 *     caller just got stays valid while it touches fewer than that many other blocks; code that
 *     touches more while keeping a Buf holds it (hold/release).
 *
 * Who calls: only src/fs/fs.ts and src/fs/log.ts, on the one thread that owns the filesystem.
 * Allocates nothing after construction except index entries for newly cached blocks.
 */

import { panic } from "../errors.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";

/** Buffers that must stay evictable beyond the largest transaction (see the header). */
export const MIN_EVICTABLE = 64;

/** One cached block. */
export class Buf {
  /** The block this buffer holds, or -1. */
  blockno = -1;
  readonly data: Uint8Array;
  readonly dv: DataView;
  /** Dirty in the running transaction: pinned until commit (written by src/fs/log.ts). */
  inTxn = false;
  /** Hold count: a caller keeping this buffer across many other cache calls. */
  held = 0;
  /** LRU links: toward the least recently used (older) and the most recently used (newer). */
  older: Buf | null = null;
  newer: Buf | null = null;

  constructor(data: Uint8Array) {
    this.data = data;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
}

export interface CacheStats {
  hits: number;
  misses: number;
  evictions: number;
  /** Device read calls, and blocks read by them. */
  deviceReads: number;
  deviceReadBlocks: number;
}

export class BufferCache {
  readonly capacity: number;
  readonly stats: CacheStats = {
    hits: 0,
    misses: 0,
    evictions: 0,
    deviceReads: 0,
    deviceReadBlocks: 0,
  };
  readonly #dev: BlockDevice;
  readonly #index = new Map<number, Buf>();
  readonly #spare: Buf[] = [];
  /** Least recently used end of the list, and most recently used end. */
  #oldest: Buf | null = null;
  #newest: Buf | null = null;

  constructor(dev: BlockDevice, capacity: number) {
    this.#dev = dev;
    this.capacity = capacity;
    const pool = new Uint8Array(capacity * BLOCK_SIZE);
    for (let i = capacity - 1; i >= 0; i--) {
      this.#spare.push(new Buf(pool.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)));
    }
  }

  /** The buffer of `blockno` with its contents, read from the device on a miss (xv6 bread). */
  read(blockno: number): Buf {
    const hit = this.#index.get(blockno);
    if (hit !== undefined) {
      this.stats.hits++;
      this.#touch(hit);
      return hit;
    }
    this.stats.misses++;
    const b = this.#take(blockno);
    try {
      this.readDevice(blockno, 1, b.data);
    } catch (err) {
      this.#unlink(b); // the device failed: forget the block rather than cache garbage
      this.#index.delete(blockno);
      b.blockno = -1;
      this.#spare.push(b);
      throw err;
    }
    return b;
  }

  /**
   * The buffer of `blockno` without reading it: for a block the caller overwrites whole (a
   * freshly allocated block, a full-block write). Its contents are unspecified until then.
   */
  claim(blockno: number): Buf {
    const hit = this.#index.get(blockno);
    if (hit !== undefined) {
      this.#touch(hit);
      return hit;
    }
    return this.#take(blockno);
  }

  /** Whether `blockno` is cached (no LRU effect, no counting). */
  has(blockno: number): boolean {
    return this.#index.has(blockno);
  }

  /** Keep `b` cached until {@link release} (for loops that touch many other blocks). */
  hold(b: Buf): void {
    b.held++;
  }
  release(b: Buf): void {
    if (b.held <= 0) panic(`bcache: release of block ${b.blockno} that is not held`);
    b.held--;
  }

  /**
   * Read `count` blocks at `lba` straight from the device into `dst`, bypassing the cache: for
   * runs of uncached data blocks (one device read for the run). Counted as misses.
   */
  readDevice(lba: number, count: number, dst: Uint8Array): void {
    this.stats.deviceReads++;
    this.stats.deviceReadBlocks += count;
    this.#dev.read(lba, count, dst);
  }

  /** Count `n` blocks served without the cache's help (the bypass path's misses). */
  countMisses(n: number): void {
    this.stats.misses += n;
  }

  /** Number of buffers holding a block. */
  get cached(): number {
    return this.#index.size;
  }

  /** A buffer for `blockno`: a spare one, else the least recently used evictable one. */
  #take(blockno: number): Buf {
    const b = this.#spare.pop() ?? this.#evict();
    b.blockno = blockno;
    this.#index.set(blockno, b);
    this.#pushNewest(b);
    return b;
  }

  /** Unhook the least recently used buffer that is neither pinned nor held. */
  #evict(): Buf {
    let b = this.#oldest;
    while (b !== null && (b.inTxn || b.held > 0)) b = b.newer;
    if (b === null) panic("bcache: every buffer is pinned by the transaction or held");
    this.#unlink(b);
    this.#index.delete(b.blockno);
    this.stats.evictions++;
    return b;
  }

  #touch(b: Buf): void {
    if (b === this.#newest) return;
    this.#unlink(b);
    this.#pushNewest(b);
  }

  #unlink(b: Buf): void {
    if (b.older) b.older.newer = b.newer;
    else this.#oldest = b.newer;
    if (b.newer) b.newer.older = b.older;
    else this.#newest = b.older;
    b.older = b.newer = null;
  }

  #pushNewest(b: Buf): void {
    b.older = this.#newest;
    b.newer = null;
    if (this.#newest) this.#newest.newer = b;
    else this.#oldest = b;
    this.#newest = b;
  }
}
