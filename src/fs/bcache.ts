/**
 * bcache: the buffer cache of the filesystem — a bounded set of 4 KiB block buffers over a
 * BlockDevice (xv6 kernel/bio.c, with the log's pinning), with a replacement policy that a
 * stream of blocks read once does not thrash.
 *
 * Owns: every buffer (one pool of `capacity` × 4096 bytes, allocated once, with a DataView per
 * buffer made once), the block → buffer index, the two LRU lists, and the hit/miss counters.
 *
 * Replacement: two lists, as 2Q (Johnson & Shasha, VLDB 1994) and Linux's inactive / active
 * page lists. A block comes in on the *inactive* list; the second access that finds it cached
 * moves it to the *active* list (Linux's mark_page_accessed: a first access sets "referenced",
 * a second activates). Eviction takes the least recently used inactive buffer first, and an
 * active one only when no inactive buffer can go. The active list holds at most half the cache:
 * beyond that its oldest buffer goes back to the inactive list (one more access brings it back).
 * So metadata and the files a server reads again and again stay cached, while a large file read
 * once, with its read-ahead, cycles through the inactive list only. A block read ahead counts
 * no access until a read uses it; the file read path (src/fs/fs.ts) does not count the same
 * block twice for one open file reading on through it in small pieces.
 *
 * Invariants:
 *   - A block has at most one buffer; a cached buffer holds the block's latest contents (what
 *     the running transaction wrote, or else what the device holds at the home location).
 *   - A *pinned* buffer — logged in the running transaction (`inTxn`), or ordered data not yet
 *     written home (`ordered`), both set by src/fs/log.ts through pin/unpin — is on no list and
 *     never evicted: its contents exist nowhere else yet (xv6's bpin). A buffer `held` by a long
 *     loop stays on its list but is not evicted either.
 *   - The cache keeps at least {@link MIN_EVICTABLE} buffers that are neither, so a Buf the
 *     caller just got stays valid while it touches fewer than that many other blocks; code that
 *     touches more while keeping a Buf holds it (hold/release); a fill touches every block it
 *     reads. A fill takes at most `maxFill` buffers, which the owner sizes to leave that many
 *     evictable; they are on no list until their read completes, so a fill never evicts its own
 *     blocks.
 *
 * Who calls: only src/fs/fs.ts, src/fs/inode.ts and src/fs/log.ts, on the one thread that owns
 * the filesystem. Allocates nothing after construction except index entries for newly cached
 * blocks.
 */

import { panic } from "../errors.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";

/** Buffers that must stay evictable beyond the largest transaction (see the header). */
export const MIN_EVICTABLE = 64;

/** Buf.list: spare or pinned (on no list), or which list it is on. */
const OFF = 0;
const INACTIVE = 1;
const ACTIVE = 2;

/** One cached block. */
export class Buf {
  /** The block this buffer holds, or -1. */
  blockno = -1;
  readonly data: Uint8Array;
  readonly dv: DataView;
  /** Dirty in the running transaction: pinned until commit (written by src/fs/log.ts). */
  inTxn = false;
  /** Ordered data not yet written home: pinned until written (written by src/fs/log.ts). */
  ordered = false;
  /** Hold count: a caller keeping this buffer across many other cache calls. */
  held = 0;
  /** Accesses since it came in or was demoted, up to 2 (2: it belongs on the active list). */
  refs = 0;
  /** OFF, INACTIVE or ACTIVE. */
  list = OFF;
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
  /** Buffers moved to the active list (second access). */
  activations: number;
}

/** One LRU list: oldest and newest ends, and its length. */
class Lru {
  oldest: Buf | null = null;
  newest: Buf | null = null;
  length = 0;
}

export class BufferCache {
  readonly capacity: number;
  /** Most buffers one fill() may take. */
  readonly maxFill: number;
  readonly stats: CacheStats = {
    hits: 0,
    misses: 0,
    evictions: 0,
    deviceReads: 0,
    deviceReadBlocks: 0,
    activations: 0,
  };
  readonly #dev: BlockDevice;
  readonly #index = new Map<number, Buf>();
  readonly #spare: Buf[] = [];
  readonly #inactive = new Lru();
  readonly #active = new Lru();
  /** The active list's share: at most this many buffers. */
  readonly #activeMax: number;
  /** The data views of a fill's buffers, for the device's scattered read. */
  readonly #vec: Uint8Array[];

  /** `maxFill`: the most blocks one fill() reads (at least 1, at most capacity / 4). */
  constructor(dev: BlockDevice, capacity: number, maxFill: number) {
    this.#dev = dev;
    this.capacity = capacity;
    this.maxFill = Math.max(1, Math.min(maxFill, capacity >> 2));
    this.#activeMax = capacity >> 1;
    const pool = new Uint8Array(capacity * BLOCK_SIZE);
    for (let i = capacity - 1; i >= 0; i--) {
      this.#spare.push(new Buf(pool.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)));
    }
    this.#vec = new Array<Uint8Array>(this.maxFill).fill(pool.subarray(0, 0));
  }

  /** The buffer of `blockno` with its contents, read from the device on a miss (xv6 bread). */
  read(blockno: number): Buf {
    const hit = this.#index.get(blockno);
    if (hit !== undefined) {
      this.stats.hits++;
      this.#access(hit);
      return hit;
    }
    this.stats.misses++;
    const b = this.#take(blockno);
    try {
      this.readDevice(blockno, 1, b.data);
    } catch (err) {
      this.#forget(b); // the device failed: forget the block rather than cache garbage
      throw err;
    }
    this.#access(b);
    return b;
  }

  /**
   * The cached buffer of `blockno`, or undefined (nothing read). A hit counts; with `access`
   * it also counts as an access of the block (see the header), else it only refreshes its age.
   */
  lookup(blockno: number, access: boolean): Buf | undefined {
    const b = this.#index.get(blockno);
    if (b === undefined) return undefined;
    this.stats.hits++;
    if (access) this.#access(b);
    else this.#refresh(b);
    return b;
  }

  /**
   * The buffer of `blockno` without reading it: for a block the caller overwrites whole (a
   * freshly allocated block, a full-block write). Its contents are unspecified until then.
   */
  claim(blockno: number): Buf {
    const hit = this.#index.get(blockno);
    if (hit !== undefined) {
      this.#access(hit);
      return hit;
    }
    return this.#take(blockno);
  }

  /**
   * Read `count` ≤ maxFill uncached blocks from `lba` into new buffers with one scattered device
   * read (read-ahead and read misses of file data). They come in unaccessed, on the inactive
   * list. Counted as misses. On a device error none of them stays cached.
   */
  fill(lba: number, count: number): void {
    if (count < 1 || count > this.maxFill) panic(`bcache: a fill of ${count} blocks`);
    const vec = this.#vec;
    for (let i = 0; i < count; i++) {
      if (this.#index.has(lba + i)) panic(`bcache: fill over cached block ${lba + i}`);
      // Off the lists until the read is done: a later take of this fill cannot evict it.
      const b = this.#take(lba + i);
      this.#unlink(b);
      vec[i] = b.data;
    }
    this.stats.misses += count;
    this.stats.deviceReads++;
    this.stats.deviceReadBlocks += count;
    try {
      this.#dev.readv(lba, count, vec);
    } catch (err) {
      for (let i = 0; i < count; i++) this.#forget(this.#index.get(lba + i) as Buf);
      throw err;
    }
    for (let i = 0; i < count; i++) this.#push(this.#index.get(lba + i) as Buf, INACTIVE);
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

  /** Take `b` off the lists: the log set inTxn or ordered on it. */
  pin(b: Buf): void {
    if (b.list !== OFF) this.#unlink(b);
  }

  /** Put `b` back on a list once neither inTxn nor ordered holds it (the log cleared them). */
  unpin(b: Buf): void {
    if (b.inTxn || b.ordered || b.list !== OFF || b.blockno < 0) return;
    this.#push(b, b.refs >= 2 ? ACTIVE : INACTIVE);
  }

  /**
   * Read `count` blocks at `lba` straight from the device into `dst`, bypassing the cache: for
   * large reads of uncached file data (one device read for the run). Counted as misses by the
   * caller (countMisses).
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

  /** Buffers on the active list (the rest of the cached ones are inactive or pinned). */
  get active(): number {
    return this.#active.length;
  }

  /** A buffer for `blockno`: a spare one, else the least recently used evictable one. */
  #take(blockno: number): Buf {
    const b = this.#spare.pop() ?? this.#evict();
    b.blockno = blockno;
    b.refs = 0;
    this.#index.set(blockno, b);
    this.#push(b, INACTIVE);
    return b;
  }

  /** Drop `b`'s block from the cache (a failed read) and make it spare. */
  #forget(b: Buf): void {
    if (b.list !== OFF) this.#unlink(b);
    this.#index.delete(b.blockno);
    b.blockno = -1;
    this.#spare.push(b);
  }

  /** Unhook the least recently used evictable buffer: inactive ones first. */
  #evict(): Buf {
    let b = this.#inactive.oldest;
    while (b !== null && b.held > 0) b = b.newer;
    if (b === null) {
      b = this.#active.oldest;
      while (b !== null && b.held > 0) b = b.newer;
    }
    if (b === null) panic("bcache: every buffer is pinned by the transaction or held");
    this.#unlink(b);
    this.#index.delete(b.blockno);
    this.stats.evictions++;
    return b;
  }

  /** One access of a cached block: counted, and the second one activates it. */
  #access(b: Buf): void {
    if (b.refs < 2) b.refs++;
    if (b.list === INACTIVE && b.refs >= 2) {
      this.#unlink(b);
      this.#push(b, ACTIVE);
      this.stats.activations++;
      if (this.#active.length > this.#activeMax) this.#demote();
    } else {
      this.#refresh(b);
    }
  }

  /** Make `b` the most recently used of its list (pinned buffers are on none). */
  #refresh(b: Buf): void {
    const list = b.list;
    if (list === OFF) return;
    if ((list === ACTIVE ? this.#active : this.#inactive).newest === b) return;
    this.#unlink(b);
    this.#push(b, list);
  }

  /** The active list is over its share: its oldest buffer goes back to the inactive list. */
  #demote(): void {
    const b = this.#active.oldest as Buf;
    this.#unlink(b);
    b.refs = 1;
    this.#push(b, INACTIVE);
  }

  #unlink(b: Buf): void {
    const l = b.list === ACTIVE ? this.#active : this.#inactive;
    if (b.older) b.older.newer = b.newer;
    else l.oldest = b.newer;
    if (b.newer) b.newer.older = b.older;
    else l.newest = b.older;
    b.older = b.newer = null;
    b.list = OFF;
    l.length--;
  }

  #push(b: Buf, list: number): void {
    const l = list === ACTIVE ? this.#active : this.#inactive;
    b.list = list;
    b.older = l.newest;
    b.newer = null;
    if (l.newest) l.newest.newer = b;
    else l.oldest = b;
    l.newest = b;
    l.length++;
  }
}
