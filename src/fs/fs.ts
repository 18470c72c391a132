/**
 * fs: exofs, the filesystem of the storage domain — files and directories on a BlockDevice,
 * crash-consistent through a write-ahead log with ordered data (src/fs/log.ts), read through a
 * buffer cache (src/fs/bcache.ts) with read-ahead. The on-disk format is drawn in
 * src/fs/layout.ts.
 *
 * Owns: the FileSystem class — mkfs, mount (log replay, orphan cleanup), path operations
 * (lookup, create, mkdir, unlink, rmdir, rename, stat, readdir), directories (entries, lookup,
 * growth), inode operations (read, write, truncate, statIno, readdirIno), open-file pins,
 * sync/commit, stats and fsck. Where a file's blocks live (inode fields, block maps, the free
 * bitmap) is src/fs/inode.ts; the checker is src/fs/fsck.ts.
 *
 * Who calls: the storage domain (one call at a time, on its own thread: every method is
 * synchronous and none is re-entrant) and the mkfs / fs / fsck commands (src/cli/fs.ts).
 *
 * Errors: every operation returns a number ≥ 0 (or a result object) or `-errno`, which the
 * storage domain returns to the caller as is. A device error (IoError from the BlockDevice)
 * makes the call return -EIO and fails the filesystem: every later call returns -EIO too, and
 * the owner must mount again (the log then decides what survived). mkfs, mount and unmount are
 * the public entry points and throw coded errors instead (IoError, InvalidArgumentError).
 *
 * Atomicity: each call is one operation, entirely inside one transaction (decode every argument
 * and check for space first, then reserve log room, then invoke: the invoke step cannot fail
 * half-way). A write larger than a transaction is split into chunks of whole blocks that each
 * fit the log; each chunk is atomic, the write as a whole is not (as in xv6's filewrite): after
 * a crash a prefix of the chunks may be present. Every operation is visible to every later call
 * at once (through the cache), durable after the next sync()/commit() returns.
 *
 * What a crash leaves: exactly the state of a commit point — the last commit() or sync() that
 * returned, or the one in flight — metadata and file data alike. Data written into blocks the
 * running transaction allocated (appends, new files, filled holes) is not logged but written
 * home before the commit record (ordered data, src/fs/log.ts): until that commit those blocks
 * are free, so a crash cannot show them; an overwrite of data the committed state holds is
 * logged. So a write costs its data once on the device (plus metadata), not twice.
 *
 * Reading: file data goes through the cache, and reads that go on where the last one of the
 * same open file ended (a {@link ReadAhead} the caller keeps per open file, Linux's
 * file_ra_state) read ahead: a missing block is read together with the blocks after it, up to
 * a window that starts at 4× a small request and doubles with each sequential read up to
 * {@link RA_MAX_BLOCKS}, and is dropped by a seek (mm/readahead.c's on-demand read-ahead,
 * synchronous here: the domain serves one call at a time). The blocks after a missing one are
 * read as far as they are consecutive on the device, not cached and in the window, with one
 * scattered device read (one command per MDTS, behind one doorbell). A request of
 * {@link DIRECT_MIN_BLOCKS} blocks or more of a file larger than a quarter of the cache reads
 * its missing runs straight into the caller's buffer instead (it is its own read-ahead, and a
 * file that size would only churn the cache); a smaller file is cached however it is read.
 * Read-ahead blocks come into the cache's inactive list, so a stream does not push out what is
 * used again (src/fs/bcache.ts).
 *
 * Lookups: a path that lookup() or stat() resolved is remembered (path → inode, Linux's dcache
 * in its simplest form: whole paths, positive entries only). A name goes away only by unlink,
 * rmdir or rename, and each of them forgets every remembered path; create and mkdir add names,
 * which no remembered path can be.
 *
 * Semantics worth knowing:
 *   - Paths are absolute; empty components and trailing slashes are ignored; "." and ".." are
 *     followed while walking, but an operation that names "." or ".." as its last component
 *     (create, unlink, rmdir, rename) gets -EINVAL. A name is 1–255 bytes of UTF-8
 *     (-ENAMETOOLONG past that), a path at most 4096 characters.
 *   - There are no hard links: a file's nlink is 1, or 0 once unlinked while pinned. A
 *     directory's nlink is 2 + its subdirectories.
 *   - Open files: the storage domain pins an inode while a descriptor refers to it. unlink and
 *     rmdir drop the name at once; the inode and its blocks are freed at the last unpin. An
 *     inode left with nlink 0 by a crash is an orphan, freed at the next mount (ext4's orphan
 *     cleanup, found by scanning the inode table instead of keeping a list).
 *   - Every inode has a generation, bumped each time it is allocated: an (ino, gen) handle of a
 *     freed or reused inode gets -ESTALE.
 *   - Holes read as zeros; the bytes of the last block past the size are kept zero.
 *   - mtime/ctime are milliseconds from the clock given at mount (Date.now by default).
 *
 * Allocation: read and write create no objects per block beyond the typed-array views that
 * copies of partial blocks between the caller's buffer and cached blocks need, and the set
 * entries that track the running transaction's allocations; path operations allocate the
 * strings of path components; stat and readdir return new objects.
 */

import {
  EBADF,
  EBUSY,
  EEXIST,
  EFBIG,
  EINVAL,
  EIO,
  EISDIR,
  EMLINK,
  ENAMETOOLONG,
  ENOENT,
  ENOSPC,
  ENOTDIR,
  ENOTEMPTY,
} from "../abi/errno.js";
import { checkInteger, IoError } from "../errors.js";
import { type Buf, BufferCache, MIN_EVICTABLE } from "./bcache.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";
import { checkFileSystem, type FsckReport } from "./fsck.js";
import { corrupt, InodeStore } from "./inode.js";
import {
  BITS_PER_BITMAP_BLOCK,
  DE_INO,
  DE_NAME,
  DE_NAMELEN,
  DE_TYPE,
  DIRENT_BYTES,
  DIRENTS_PER_BLOCK,
  decodeSuperblock,
  encodeSuperblock,
  I_BLOCKS,
  I_CTIME,
  I_GEN,
  I_MTIME,
  I_NLINK,
  I_PARENT,
  I_TYPE,
  inodeBlock,
  inodeOffset,
  inodeSize,
  type LayoutOptions,
  LOG_MAX_BLOCKS,
  MAX_BLOCKS,
  MAX_FILE_SIZE,
  META_OP_BLOCKS,
  minLogBlocks,
  NAME_MAX,
  NLINK_MAX,
  PATH_MAX,
  planLayout,
  ROOT_INO,
  type Superblock,
  T_DIR,
  T_FILE,
  T_FREE,
} from "./layout.js";
import { WriteAheadLog } from "./log.js";

/** Stale file handle (Linux's number; src/abi/errno.ts has no entry for it yet). */
export const ESTALE = 116;

/** The largest read-ahead window, in blocks (1 MiB). */
export const RA_MAX_BLOCKS = 256;
/** A request of this many blocks or more, of a large file, reads past the cache (256 KiB). */
export const DIRECT_MIN_BLOCKS = 64;
/** Most ordered data blocks that wait in the cache before they are written home (2 MiB). */
const ORDERED_MAX_BLOCKS = 512;
/** Most paths the lookup cache remembers; it starts over when full. */
const NAME_CACHE_MAX = 1024;

/**
 * The read-ahead state of one open file (Linux's file_ra_state): the caller keeps one per open
 * file and passes it to every read of that file. Fields are the filesystem's.
 */
export class ReadAhead {
  /** Byte offset where the last read ended: a read starting here is sequential. */
  next = 0;
  /** Current window, in blocks; 0 after a seek. */
  window = 0;
  /** File block the last read ended in, -1 for none (reading on through it is not an access). */
  lastBlock = -1;
}

export type FileType = "file" | "dir";

export interface FsStat {
  readonly ino: number;
  /** Generation: with `ino`, a handle that -ESTALE detects once the inode is freed. */
  readonly gen: number;
  readonly type: FileType;
  readonly size: number;
  readonly nlink: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** 4096-byte blocks held: data and indirect blocks. */
  readonly blocks: number;
}

/** The name the storage domain knows FsStat by. */
export type InodeStat = FsStat;

/** A stat result that statInto fills in place. */
export class StatRecord implements FsStat {
  ino = 0;
  gen = 0;
  type: FileType = "file";
  size = 0;
  nlink = 0;
  mtimeMs = 0;
  ctimeMs = 0;
  blocks = 0;
}

export interface DirEntry {
  readonly name: string;
  readonly ino: number;
  readonly type: FileType;
}

export interface CreateOptions {
  readonly mode: FileType;
  /** Fail with -EEXIST when the name exists (O_EXCL); else an existing entry of the same type is returned. */
  readonly exclusive: boolean;
}

export interface MkfsOptions extends LayoutOptions {
  /** Clock for the root's timestamps, ms. */
  readonly now?: () => number;
}

export interface MountOptions {
  /** Buffer-cache size in blocks; at least the log capacity + 72. Default max(2048, that). */
  readonly cacheBlocks?: number;
  /** Clock for mtime/ctime, ms. */
  readonly now?: () => number;
}

export interface FsStats {
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly cacheEvictions: number;
  readonly cachedBlocks: number;
  readonly cacheCapacity: number;
  readonly deviceReads: number;
  readonly deviceReadBlocks: number;
  readonly transactions: number;
  readonly logBlocksWritten: number;
  readonly installedBlocks: number;
  readonly flushes: number;
  readonly runningTxnBlocks: number;
  readonly logCapacity: number;
  /** Ordered data blocks written home, and those waiting to be. */
  readonly orderedBlocks: number;
  readonly orderedWaiting: number;
  /** FUA writes (commit records). */
  readonly fuaWrites: number;
  /** Blocks read past the end of a request (read-ahead), and cache buffers on the active list. */
  readonly readAheadBlocks: number;
  readonly cacheActive: number;
  /** Blocks installed from the log at mount, and orphan inodes freed at mount. */
  readonly replayedBlocks: number;
  readonly orphansFreed: number;
  readonly freeBlocks: number;
  readonly freeInodes: number;
  readonly totalBlocks: number;
  readonly dataBlocks: number;
}

const TYPE_NAMES: readonly (FileType | undefined)[] = [undefined, "file", "dir"];
const decoder = new TextDecoder();
const encoder = new TextEncoder();

export class FileSystem {
  readonly sb: Superblock;
  readonly #cache: BufferCache;
  readonly #log: WriteAheadLog;
  /** Inode fields, block maps, the free bitmap (src/fs/inode.ts). */
  readonly #inodes: InodeStore;
  readonly #now: () => number;
  /** Open-file pins: ino → count. */
  readonly #pins = new Map<number, number>();
  /** Paths resolved by lookup and stat: path → inode (see the header). */
  readonly #names = new Map<string, number>();
  /** Largest chunk of one write, in blocks, whose reservation fits the log. */
  readonly #chunkBlocks: number;
  #failure: Error | null = null;
  #replayed = 0;
  #orphansFreed = 0;
  #readAheadBlocks = 0;

  // Scratch of the path walk and directory search (one call at a time, so one set suffices).
  /** The encoded name being looked up, [0, #nameLen). */
  readonly #name = new Uint8Array(NAME_MAX + 1);
  #nameLen = 0;
  /** The last component of the path #resolve(…, true) walked ("" for "/"). */
  #leaf = "";
  /** What #dirFind found: the entry's inode and type, its block and slot. */
  #hitIno = 0;
  #hitType = 0;
  #hitBlock = 0;
  #hitSlot = 0;
  /** The first empty slot #dirFind passed (block 0 = none: the directory must grow). */
  #slotBlock = 0;
  #slotIndex = 0;

  private constructor(
    dev: BlockDevice,
    sb: Superblock,
    seq: number,
    cacheBlocks: number,
    opts: MountOptions,
  ) {
    this.sb = sb;
    this.#now = opts.now ?? Date.now;
    // Pinned buffers: the transaction's (≤ log capacity) and ordered data; a fill takes at most
    // half of what is left; MIN_EVICTABLE always stays evictable (see src/fs/bcache.ts).
    const spare = cacheBlocks - sb.logBlocks - MIN_EVICTABLE;
    const ordered = Math.max(1, Math.min(ORDERED_MAX_BLOCKS, Math.floor(spare / 2)));
    const fill = Math.max(1, Math.min(RA_MAX_BLOCKS, Math.floor((spare - ordered) / 2)));
    this.#cache = new BufferCache(dev, cacheBlocks, fill);
    this.#log = new WriteAheadLog(dev, this.#cache, sb, seq, ordered);
    this.#inodes = new InodeStore(sb, this.#cache, this.#log);
    this.#log.onCommit = () => this.#inodes.endTxn();
    let k = sb.logBlocks;
    while (k > 1 && this.#inodes.chunkCost(k) > sb.logBlocks) k--;
    this.#chunkBlocks = k;
  }

  // ---- mkfs, mount, unmount -----------------------------------------------------------------

  /**
   * Make an empty filesystem on `dev` (its first 32 GiB). Crash-safe: the old superblock is
   * erased first and the new one written last, so a half-made image never mounts.
   * Throws InvalidArgumentError (bad option) or IoError (device too small, device error).
   */
  static mkfs(dev: BlockDevice, opts: MkfsOptions = {}): void {
    if (opts.inodes !== undefined) checkInteger("inodes", opts.inodes, 16, 1 << 20);
    if (opts.logBlocks !== undefined) {
      const used = Math.min(dev.blocks, MAX_BLOCKS);
      const min = minLogBlocks(Math.ceil(used / BITS_PER_BITMAP_BLOCK));
      checkInteger("logBlocks", opts.logBlocks, min, LOG_MAX_BLOCKS);
    }
    const now = opts.now ?? Date.now;
    const sb = planLayout(dev.blocks, opts, now());
    const block = new Uint8Array(BLOCK_SIZE);
    dev.write(0, 1, block); // erase the old superblock
    dev.flush();
    WriteAheadLog.format(dev, sb);
    writeZeros(dev, sb.inodeStart, sb.inodeBlocks);
    // The root directory: empty, its own parent.
    const dv = new DataView(block.buffer);
    const off = inodeOffset(ROOT_INO);
    dv.setUint16(off + I_TYPE, T_DIR, true);
    dv.setUint16(off + I_NLINK, 2, true);
    dv.setUint32(off + I_GEN, 1, true);
    dv.setFloat64(off + I_MTIME, sb.createdMs, true);
    dv.setFloat64(off + I_CTIME, sb.createdMs, true);
    dv.setUint32(off + I_PARENT, ROOT_INO, true);
    dev.write(inodeBlock(sb, ROOT_INO), 1, block);
    // The bitmap: the metadata blocks and the padding past the end are used, for good.
    const bitmap = new Uint8Array(sb.bitmapBlocks * BLOCK_SIZE);
    for (let b = 0; b < sb.dataStart; b++) bitmap[b >> 3] |= 1 << (b & 7);
    for (let b = sb.totalBlocks; b < sb.bitmapBlocks * BITS_PER_BITMAP_BLOCK; b++) {
      bitmap[b >> 3] |= 1 << (b & 7);
    }
    dev.write(sb.bitmapStart, sb.bitmapBlocks, bitmap);
    dev.flush();
    encodeSuperblock(sb, block);
    dev.write(0, 1, block);
    dev.flush();
  }

  /**
   * Mount the filesystem on `dev`: check the superblock (IoError on a foreign, damaged or
   * truncated image), replay a committed log, count free blocks and inodes, free orphans.
   */
  static mount(dev: BlockDevice, opts: MountOptions = {}): FileSystem {
    if (dev.blocks < 1) {
      throw new IoError("not an exofs image: the device is smaller than one block", EINVAL);
    }
    const block = new Uint8Array(BLOCK_SIZE);
    dev.read(0, 1, block);
    const sb = decodeSuperblock(block, dev.blocks);
    const minCache = sb.logBlocks + MIN_EVICTABLE + 8;
    const cacheBlocks =
      opts.cacheBlocks === undefined
        ? Math.max(2048, minCache)
        : checkInteger("cacheBlocks", opts.cacheBlocks, minCache, 1 << 20);
    const { seq, replayed } = WriteAheadLog.recover(dev, sb);
    const fs = new FileSystem(dev, sb, seq, cacheBlocks, opts);
    fs.#replayed = replayed;
    const orphans = fs.#inodes.scan();
    for (const ino of orphans) {
      fs.#log.begin(META_OP_BLOCKS + fs.#inodes.freeCost(ino));
      fs.#inodes.freeInode(ino);
    }
    fs.#orphansFreed = orphans.length;
    fs.#log.commit();
    return fs;
  }

  /** Commit the running transaction and flush. Throws IoError. The object is dead after. */
  unmount(): void {
    if (this.#failure) {
      throw new IoError(`unmount: ${this.#failure.message}`);
    }
    try {
      this.#log.commit();
      this.#log.checkpoint();
    } catch (err) {
      this.#fault(err);
      throw err;
    }
    this.#failure = new IoError("the filesystem is unmounted", EIO);
  }

  // ---- path operations ----------------------------------------------------------------------

  /** The inode `path` names, or -errno. */
  lookup(path: string): number {
    if (this.#failure) return -EIO;
    try {
      return this.#lookup(path);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Create a file or directory (see CreateOptions); returns its inode or -errno. */
  create(path: string, opts: CreateOptions): number {
    if (this.#failure) return -EIO;
    try {
      return this.#create(path, opts.mode, opts.exclusive);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Make a directory: 0 or -errno (-EEXIST when the name exists). */
  mkdir(path: string): number {
    const r = this.create(path, { mode: "dir", exclusive: true });
    return Math.min(r, 0);
  }

  /** Remove a file's name: 0 or -errno (-EISDIR for a directory). */
  unlink(path: string): number {
    if (this.#failure) return -EIO;
    try {
      return this.#forgetNames(this.#unlink(path));
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Remove an empty directory: 0 or -errno. */
  rmdir(path: string): number {
    if (this.#failure) return -EIO;
    try {
      return this.#forgetNames(this.#rmdir(path));
    } catch (err) {
      return this.#fault(err);
    }
  }

  /**
   * Rename `from` to `to` (POSIX rename): replaces a file by a file, an empty directory by a
   * directory; -EISDIR / -ENOTDIR on a type clash, -ENOTEMPTY, -EINVAL to move a directory
   * into itself, -EBUSY for "/". Renaming a name onto itself does nothing.
   */
  rename(from: string, to: string): number {
    if (this.#failure) return -EIO;
    try {
      return this.#forgetNames(this.#rename(from, to));
    } catch (err) {
      return this.#fault(err);
    }
  }

  stat(path: string): FsStat | number {
    if (this.#failure) return -EIO;
    try {
      const ino = this.#lookup(path);
      return ino < 0 ? ino : this.#stat(ino);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** The entries of a directory, "." and ".." left out, in slot order; or -errno. */
  readdir(path: string): DirEntry[] | number {
    if (this.#failure) return -EIO;
    try {
      const ino = this.#resolve(path, false);
      if (ino < 0) return ino;
      if (this.#inodes.type(ino) !== T_DIR) return -ENOTDIR;
      return this.#readdir(ino);
    } catch (err) {
      return this.#fault(err);
    }
  }

  // ---- inode operations ---------------------------------------------------------------------

  /** The entries of directory inode `ino` (an open directory's handle), or -errno. */
  readdirIno(ino: number, gen = -1): DirEntry[] | number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      if (this.#inodes.type(ino) !== T_DIR) return -ENOTDIR;
      return this.#readdir(ino);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Stat an inode; with `gen` ≥ 0, -ESTALE unless it is still that generation. */
  statIno(ino: number, gen = -1): FsStat | number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      return bad < 0 ? bad : this.#stat(ino);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** statIno into `out` (a record the caller reuses: nothing allocated). 0 or -errno. */
  statInto(ino: number, gen: number, out: StatRecord): number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      this.#fillStat(ino, out);
      return 0;
    } catch (err) {
      return this.#fault(err);
    }
  }

  /**
   * Read up to dst.length bytes at `offset`: bytes read (0 at or past the end) or -errno. With
   * `ra`, the open file's read-ahead state, sequential reads read ahead (see the header).
   */
  read(ino: number, offset: number, dst: Uint8Array, gen = -1, ra?: ReadAhead): number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      if (this.#inodes.type(ino) !== T_FILE) return -EISDIR;
      if (!Number.isSafeInteger(offset) || offset < 0) return -EINVAL;
      return this.#read(ino, offset, dst, ra);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /**
   * Write `src` at `offset` (growing the file; a gap becomes a hole): bytes written or -errno.
   * Short when the disk fills (-ENOSPC only if nothing was written) or at the 4 GiB limit
   * (-EFBIG at or past it). Chunks of the log's size are each atomic (see the header).
   */
  write(ino: number, offset: number, src: Uint8Array, gen = -1): number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      if (this.#inodes.type(ino) !== T_FILE) return -EISDIR;
      if (!Number.isSafeInteger(offset) || offset < 0) return -EINVAL;
      if (src.length === 0) return 0;
      if (offset >= MAX_FILE_SIZE) return -EFBIG;
      return this.#write(ino, offset, src);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Set a file's size: freeing the blocks past it, or growing it with a hole. 0 or -errno. */
  truncate(ino: number, size: number, gen = -1): number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      if (this.#inodes.type(ino) !== T_FILE) return -EISDIR;
      if (!Number.isSafeInteger(size) || size < 0) return -EINVAL;
      if (size > MAX_FILE_SIZE) return -EFBIG;
      return this.#truncate(ino, size);
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Keep inode `ino` alive while an open file refers to it (see the header). 0 or -errno. */
  pin(ino: number, gen = -1): number {
    if (this.#failure) return -EIO;
    try {
      const bad = this.#checkHandle(ino, gen);
      if (bad < 0) return bad;
      this.#pins.set(ino, (this.#pins.get(ino) ?? 0) + 1);
      return 0;
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Drop one pin; the last one frees an inode whose nlink is 0. 0, or -EINVAL if not pinned. */
  unpin(ino: number): number {
    if (this.#failure) return -EIO;
    try {
      const n = this.#pins.get(ino);
      if (n === undefined) return -EINVAL;
      if (n > 1) {
        this.#pins.set(ino, n - 1);
        return 0;
      }
      this.#pins.delete(ino);
      if (this.#inodes.nlink(ino) === 0 && this.#inodes.type(ino) !== T_FREE) {
        this.#log.begin(META_OP_BLOCKS + this.#inodes.freeCost(ino));
        this.#inodes.freeInode(ino);
      }
      return 0;
    } catch (err) {
      return this.#fault(err);
    }
  }

  // ---- durability, statistics, checking -----------------------------------------------------

  /**
   * Commit the running transaction: everything done so far is durable. With nothing to commit
   * it already is (every commit is durable when it returns), and no device call is made.
   * 0 or -EIO.
   */
  sync(): number {
    if (this.#failure) return -EIO;
    try {
      this.#log.commit();
      return 0;
    } catch (err) {
      return this.#fault(err);
    }
  }

  /** Commit the running transaction (durable on return): the same as sync(). 0 or -EIO. */
  commit(): number {
    return this.sync();
  }

  stats(): FsStats {
    const c = this.#cache.stats;
    const l = this.#log.stats;
    return {
      cacheHits: c.hits,
      cacheMisses: c.misses,
      cacheEvictions: c.evictions,
      cachedBlocks: this.#cache.cached,
      cacheCapacity: this.#cache.capacity,
      deviceReads: c.deviceReads,
      deviceReadBlocks: c.deviceReadBlocks,
      transactions: l.transactions,
      logBlocksWritten: l.logBlocksWritten,
      installedBlocks: l.installedBlocks,
      flushes: l.flushes,
      runningTxnBlocks: this.#log.used,
      logCapacity: this.#log.capacity,
      orderedBlocks: l.orderedBlocks,
      orderedWaiting: this.#log.orderedWaiting,
      fuaWrites: l.fuaWrites,
      readAheadBlocks: this.#readAheadBlocks,
      cacheActive: this.#cache.active,
      replayedBlocks: this.#replayed,
      orphansFreed: this.#orphansFreed,
      freeBlocks: this.#inodes.freeBlocks,
      freeInodes: this.#inodes.freeInodes,
      totalBlocks: this.sb.totalBlocks,
      dataBlocks: this.sb.totalBlocks - this.sb.dataStart,
    };
  }

  /**
   * Check the whole filesystem as this instance sees it (committed or not): the tree, link
   * counts, sizes, directory entries, and the bitmap against the blocks inodes hold. Reports
   * every problem; changes nothing. Throws IoError if the device fails.
   */
  fsck(): FsckReport {
    if (this.#failure) throw new IoError(`fsck: ${this.#failure.message}`);
    try {
      return checkFileSystem({
        sb: this.sb,
        readBlock: (b) => this.#cache.read(b).data.slice(),
        readBlocks: (lba, count) => this.#readThrough(lba, count),
        pinned: (ino) => this.#pins.has(ino),
        freeBlocks: this.#inodes.freeBlocks,
        freeInodes: this.#inodes.freeInodes,
      });
    } catch (err) {
      this.#fault(err);
      throw err;
    }
  }

  /**
   * A copy of `count` blocks at `lba` as this filesystem sees them: cached blocks from the
   * cache, runs of uncached ones with one device read each (fsck's bulk reads).
   */
  #readThrough(lba: number, count: number): Uint8Array {
    const dst = new Uint8Array(count * BLOCK_SIZE);
    let run = 0;
    for (let i = 0; i <= count; i++) {
      if (i < count && !this.#cache.has(lba + i)) {
        run++;
        continue;
      }
      if (run > 0) {
        const at = (i - run) * BLOCK_SIZE;
        this.#cache.readDevice(lba + i - run, run, dst.subarray(at, at + run * BLOCK_SIZE));
        run = 0;
      }
      if (i < count) dst.set(this.#cache.read(lba + i).data, i * BLOCK_SIZE);
    }
    return dst;
  }

  // ---- operations (decode, then invoke) -----------------------------------------------------

  #create(path: string, mode: FileType, exclusive: boolean): number {
    if (mode !== "file" && mode !== "dir") return -EINVAL;
    const type = mode === "dir" ? T_DIR : T_FILE;
    const parent = this.#resolve(path, true);
    if (parent < 0) return parent;
    const leaf = this.#leaf;
    if (leaf === "") return exclusive ? -EEXIST : mode === "dir" ? ROOT_INO : -EISDIR;
    if (leaf === "." || leaf === "..") return -EINVAL;
    const bad = this.#encodeName(leaf);
    if (bad < 0) return bad;
    if (this.#dirFind(parent)) {
      if (exclusive) return -EEXIST;
      if (this.#hitType !== type) return type === T_FILE ? -EISDIR : -ENOTDIR;
      return this.#hitIno;
    }
    if (this.#inodes.freeInodes === 0) return -ENOSPC;
    if (type === T_DIR && this.#inodes.nlink(parent) >= NLINK_MAX) return -EMLINK;
    if (this.#slotBlock === 0 && this.#growthCost(parent) > this.#inodes.freeBlocks) return -ENOSPC;
    // invoke
    this.#log.begin(META_OP_BLOCKS);
    const now = this.#now();
    const ino = this.#inodes.allocInode(type, now);
    if (type === T_DIR) {
      this.#inodes.setU16(ino, I_NLINK, 2);
      this.#inodes.setU32(ino, I_PARENT, parent);
      this.#inodes.setU16(parent, I_NLINK, this.#inodes.nlink(parent) + 1);
    } else {
      this.#inodes.setU16(ino, I_NLINK, 1);
    }
    this.#addEntry(parent, ino, type);
    this.#inodes.touch(parent, now);
    return ino;
  }

  /**
   * Find the entry `path` names in its parent directory (unlink, rmdir): the parent's inode,
   * with #hitIno/#hitBlock/#hitSlot set to the entry, or -errno. `rootErr` answers a path with
   * no last component (the root).
   */
  #findEntry(path: string, rootErr: number): number {
    const parent = this.#resolve(path, true);
    if (parent < 0) return parent;
    const leaf = this.#leaf;
    if (leaf === "") return -rootErr;
    if (leaf === "." || leaf === "..") return -EINVAL;
    const bad = this.#encodeName(leaf);
    if (bad < 0) return bad;
    return this.#dirFind(parent) ? parent : -ENOENT;
  }

  #unlink(path: string): number {
    const parent = this.#findEntry(path, EISDIR);
    if (parent < 0) return parent;
    const ino = this.#hitIno;
    const blk = this.#hitBlock;
    const slot = this.#hitSlot;
    if (this.#inodes.type(ino) === T_DIR) return -EISDIR;
    // invoke
    this.#log.begin(META_OP_BLOCKS + this.#inodes.freeCost(ino));
    const now = this.#now();
    this.#clearEntry(blk, slot);
    this.#inodes.touch(parent, now);
    this.#dropFile(ino, now);
    return 0;
  }

  #rmdir(path: string): number {
    const parent = this.#findEntry(path, EBUSY);
    if (parent < 0) return parent;
    const ino = this.#hitIno;
    const blk = this.#hitBlock;
    const slot = this.#hitSlot;
    if (this.#inodes.type(ino) !== T_DIR) return -ENOTDIR;
    if (!this.#dirEmpty(ino)) return -ENOTEMPTY;
    // invoke
    this.#log.begin(META_OP_BLOCKS + this.#inodes.freeCost(ino));
    const now = this.#now();
    this.#clearEntry(blk, slot);
    this.#inodes.setU16(parent, I_NLINK, this.#inodes.nlink(parent) - 1);
    this.#inodes.touch(parent, now);
    this.#dropDir(ino, now);
    return 0;
  }

  #rename(from: string, to: string): number {
    // decode the source
    const fromParent = this.#resolve(from, true);
    if (fromParent < 0) return fromParent;
    const fromLeaf = this.#leaf;
    if (fromLeaf === "") return -EBUSY;
    if (fromLeaf === "." || fromLeaf === "..") return -EINVAL;
    let bad = this.#encodeName(fromLeaf);
    if (bad < 0) return bad;
    if (!this.#dirFind(fromParent)) return -ENOENT;
    const src = this.#hitIno;
    const srcBlock = this.#hitBlock;
    const srcSlot = this.#hitSlot;
    const srcType = this.#inodes.type(src);
    // decode the target
    const toParent = this.#resolve(to, true);
    if (toParent < 0) return toParent;
    const toLeaf = this.#leaf;
    if (toLeaf === "") return -EBUSY;
    if (toLeaf === "." || toLeaf === "..") return -EINVAL;
    bad = this.#encodeName(toLeaf);
    if (bad < 0) return bad;
    const exists = this.#dirFind(toParent);
    const dst = exists ? this.#hitIno : 0;
    const dstBlock = this.#hitBlock;
    const dstSlot = this.#hitSlot;
    if (dst === src) return 0;
    const moves = fromParent !== toParent;
    if (srcType === T_DIR) {
      if (this.#isAncestor(src, toParent)) return -EINVAL;
      if (dst !== 0 && this.#inodes.type(dst) !== T_DIR) return -ENOTDIR;
      if (dst !== 0 && !this.#dirEmpty(dst)) return -ENOTEMPTY;
      if (moves && dst === 0 && this.#inodes.nlink(toParent) >= NLINK_MAX) return -EMLINK;
    } else if (dst !== 0 && this.#inodes.type(dst) === T_DIR) {
      return -EISDIR;
    }
    const needSlot = dst === 0 && moves;
    if (needSlot && this.#slotBlock === 0 && this.#growthCost(toParent) > this.#inodes.freeBlocks) {
      return -ENOSPC;
    }
    // invoke
    this.#log.begin(META_OP_BLOCKS + (dst !== 0 ? this.#inodes.freeCost(dst) : 0));
    const now = this.#now();
    if (dst !== 0) {
      this.#setEntryIno(dstBlock, dstSlot, src, srcType);
      this.#clearEntry(srcBlock, srcSlot);
    } else if (moves) {
      this.#addEntry(toParent, src, srcType);
      this.#clearEntry(srcBlock, srcSlot);
    } else {
      this.#setEntryName(srcBlock, srcSlot); // same directory: rename in place
    }
    if (srcType === T_DIR && moves) {
      this.#inodes.setU32(src, I_PARENT, toParent);
      this.#inodes.setU16(fromParent, I_NLINK, this.#inodes.nlink(fromParent) - 1);
      this.#inodes.setU16(toParent, I_NLINK, this.#inodes.nlink(toParent) + 1);
    }
    if (dst !== 0) {
      if (srcType === T_DIR) {
        this.#inodes.setU16(toParent, I_NLINK, this.#inodes.nlink(toParent) - 1);
        this.#dropDir(dst, now);
      } else {
        this.#dropFile(dst, now);
      }
    }
    this.#inodes.setF64(src, I_CTIME, now);
    this.#inodes.touch(fromParent, now);
    if (moves) this.#inodes.touch(toParent, now);
    return 0;
  }

  #read(ino: number, offset: number, dst: Uint8Array, ra: ReadAhead | undefined): number {
    const size = this.#inodes.size(ino);
    if (offset >= size || dst.length === 0) return 0;
    const n = Math.min(dst.length, size - offset);
    const end = offset + n;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((end - 1) / BLOCK_SIZE);
    const blocks = last - first + 1;
    const fileBlocks = Math.ceil(size / BLOCK_SIZE);
    if (blocks >= DIRECT_MIN_BLOCKS && fileBlocks > this.#cache.capacity >> 2) {
      if (ra !== undefined) this.#advance(ra, offset, end, 0);
      return this.#readDirect(ino, offset, dst, n);
    }
    let ahead = 0;
    let lastSeen = -1;
    if (ra !== undefined) {
      lastSeen = ra.lastBlock;
      ahead = this.#advance(ra, offset, end, blocks);
    }
    const limit = Math.min(fileBlocks - 1, last + ahead);
    for (let pos = offset; pos < end; ) {
      const fbn = Math.floor(pos / BLOCK_SIZE);
      const from = pos - fbn * BLOCK_SIZE;
      const len = Math.min(BLOCK_SIZE - from, end - pos);
      const at = pos - offset;
      pos += len;
      const phys = this.#inodes.bmap(ino, fbn);
      if (phys === 0) {
        dst.fill(0, at, at + len);
        continue;
      }
      // Reading on through the block the last read of this open file ended in is not a new
      // access of it (see src/fs/bcache.ts).
      const access = fbn !== lastSeen;
      let b = this.#cache.lookup(phys, access);
      if (b === undefined) {
        const run = this.#inodes.contiguous(
          ino,
          fbn,
          phys,
          Math.min(this.#cache.maxFill, limit - fbn + 1),
        );
        let count = 1;
        while (count < run && !this.#cache.has(phys + count)) count++;
        this.#cache.fill(phys, count);
        if (fbn + count - 1 > last) this.#readAheadBlocks += fbn + count - 1 - last;
        b = this.#cache.lookup(phys, access) as Buf;
      }
      dst.set(len === BLOCK_SIZE ? b.data : b.data.subarray(from, from + len), at);
    }
    return n;
  }

  /**
   * Update an open file's read-ahead state for a read of [offset, end) spanning `blocks`
   * blocks; returns how many blocks past the request to read where one is missing.
   */
  #advance(ra: ReadAhead, offset: number, end: number, blocks: number): number {
    if (offset !== ra.next || blocks === 0) ra.window = 0;
    else if (ra.window === 0) ra.window = initialWindow(blocks);
    else ra.window = Math.min(RA_MAX_BLOCKS, ra.window * 2);
    ra.next = end;
    ra.lastBlock = Math.floor((end - 1) / BLOCK_SIZE);
    return ra.window;
  }

  /**
   * A large read: cached blocks from the cache, each run of uncached, physically consecutive
   * full blocks with one device read straight into `dst`.
   */
  #readDirect(ino: number, offset: number, dst: Uint8Array, n: number): number {
    const end = offset + n;
    let runLba = 0;
    let runLen = 0;
    let runAt = 0;
    let pos = offset;
    while (pos < end) {
      const fbn = Math.floor(pos / BLOCK_SIZE);
      const from = pos % BLOCK_SIZE;
      const len = Math.min(BLOCK_SIZE - from, end - pos);
      const at = pos - offset;
      const phys = this.#inodes.bmap(ino, fbn);
      if (phys !== 0 && len === BLOCK_SIZE && !this.#cache.has(phys)) {
        if (runLen > 0 && phys === runLba + runLen) {
          runLen++;
        } else {
          if (runLen > 0) this.#readRun(runLba, runLen, dst, runAt);
          runLba = phys;
          runLen = 1;
          runAt = at;
        }
      } else {
        if (runLen > 0) this.#readRun(runLba, runLen, dst, runAt);
        runLen = 0;
        if (phys === 0) dst.fill(0, at, at + len);
        else {
          const b = this.#cache.read(phys);
          dst.set(len === BLOCK_SIZE ? b.data : b.data.subarray(from, from + len), at);
        }
      }
      pos += len;
    }
    if (runLen > 0) this.#readRun(runLba, runLen, dst, runAt);
    return n;
  }

  #readRun(lba: number, count: number, dst: Uint8Array, at: number): void {
    this.#cache.countMisses(count);
    this.#cache.readDevice(lba, count, dst.subarray(at, at + count * BLOCK_SIZE));
  }

  #write(ino: number, offset: number, src: Uint8Array): number {
    const len = Math.min(src.length, MAX_FILE_SIZE - offset);
    const lastBlock = Math.ceil((offset + len) / BLOCK_SIZE);
    let done = 0;
    while (done < len) {
      const pos = offset + done;
      const chunkEnd = Math.min(
        offset + len,
        Math.min(Math.floor(pos / BLOCK_SIZE) + this.#chunkBlocks, lastBlock) * BLOCK_SIZE,
      );
      const n = this.#writeChunk(ino, pos, src, done, chunkEnd - pos);
      done += n;
      if (n < chunkEnd - pos) break; // the disk is full: a short write
    }
    return done > 0 ? done : -ENOSPC;
  }

  /**
   * One atomic chunk of a write: `len` bytes of src[at…] at file offset `pos`. Bytes written.
   * Blocks the running transaction allocates are ordered data, the rest logged (see the
   * header); the reservation counts as logged every block the file may already hold (a hole
   * filled finds no room for ordered data perhaps), every new block beyond the room for ordered
   * data, and as many as the transaction freed (a block allocated again from those is logged).
   */
  #writeChunk(ino: number, pos: number, src: Uint8Array, at: number, len: number): number {
    const first = Math.floor(pos / BLOCK_SIZE);
    const last = Math.floor((pos + len - 1) / BLOCK_SIZE);
    const k = last - first + 1;
    const log = this.#log;
    // Blocks the file may hold already (holes included), and those past its end: all new.
    const end = Math.ceil(this.#inodes.size(ino) / BLOCK_SIZE);
    const held = Math.max(0, Math.min(last, end - 1) - first + 1);
    const fresh = k - held;
    if (log.orderedWaiting + fresh > log.orderedCapacity) log.writeBack();
    const unordered = Math.max(0, fresh - log.orderedCapacity) + this.#inodes.freedInTxn;
    log.begin(this.#inodes.chunkMetaCost(k) + Math.min(k, held + unordered));
    let written = 0;
    for (let fbn = first; fbn <= last; fbn++) {
      if (this.#inodes.blocksNeeded(ino, fbn) > this.#inodes.freeBlocks) break;
      const phys = this.#inodes.bmapAlloc(ino, fbn);
      const from = fbn === first ? pos % BLOCK_SIZE : 0;
      const n = Math.min(BLOCK_SIZE - from, len - written);
      let b: Buf;
      if (n === BLOCK_SIZE) {
        b = this.#cache.claim(phys);
      } else if (this.#inodes.fresh) {
        b = this.#cache.claim(phys);
        b.data.fill(0);
      } else {
        b = this.#cache.read(phys);
      }
      b.data.set(src.subarray(at + written, at + written + n), from);
      if (
        !b.inTxn &&
        this.#inodes.isNew(phys) &&
        (b.ordered || log.orderedWaiting < log.orderedCapacity)
      ) {
        log.ordered(b);
      } else {
        log.write(b);
      }
      written += n;
    }
    if (written > 0) {
      if (pos + written > this.#inodes.size(ino)) this.#inodes.setSize(ino, pos + written);
      this.#inodes.touch(ino, this.#now());
    }
    return written;
  }

  #truncate(ino: number, size: number): number {
    const old = this.#inodes.size(ino);
    if (size === old) return 0;
    if (size > old) {
      this.#log.begin(1);
      this.#inodes.setSize(ino, size);
    } else {
      this.#log.begin(4 + this.#inodes.freeCost(ino));
      const tail = size % BLOCK_SIZE;
      if (tail !== 0) {
        const phys = this.#inodes.bmap(ino, Math.floor(size / BLOCK_SIZE));
        if (phys !== 0) {
          const b = this.#cache.read(phys);
          b.data.fill(0, tail);
          this.#log.write(b);
        }
      }
      this.#inodes.freeFrom(ino, Math.ceil(size / BLOCK_SIZE));
      this.#inodes.setSize(ino, size);
    }
    this.#inodes.touch(ino, this.#now());
    return 0;
  }

  #stat(ino: number): FsStat {
    return this.#fillStat(ino, new StatRecord());
  }

  #fillStat(ino: number, out: StatRecord): StatRecord {
    const b = this.#cache.read(inodeBlock(this.sb, ino));
    const o = inodeOffset(ino);
    out.ino = ino;
    out.gen = b.dv.getUint32(o + I_GEN, true);
    out.type = TYPE_NAMES[b.dv.getUint16(o + I_TYPE, true)] ?? "file";
    out.size = inodeSize(b.dv, o);
    out.nlink = b.dv.getUint16(o + I_NLINK, true);
    out.mtimeMs = b.dv.getFloat64(o + I_MTIME, true);
    out.ctimeMs = b.dv.getFloat64(o + I_CTIME, true);
    out.blocks = b.dv.getUint32(o + I_BLOCKS, true);
    return out;
  }

  #readdir(dir: number): DirEntry[] {
    const out: DirEntry[] = [];
    const nb = this.#inodes.size(dir) / BLOCK_SIZE;
    for (let fbn = 0; fbn < nb; fbn++) {
      const b = this.#cache.read(this.#dirBlock(dir, fbn));
      for (let s = 0; s < DIRENTS_PER_BLOCK; s++) {
        const o = s * DIRENT_BYTES;
        const ino = b.dv.getUint32(o + DE_INO, true);
        if (ino === 0) continue;
        const len = b.data[o + DE_NAMELEN];
        out.push({
          name: decoder.decode(b.data.subarray(o + DE_NAME, o + DE_NAME + len)),
          ino,
          type: b.data[o + DE_TYPE] === T_DIR ? "dir" : "file",
        });
      }
    }
    return out;
  }

  // ---- paths and directories ----------------------------------------------------------------

  /** The inode `path` names (remembered, see the header), or -errno. */
  #lookup(path: string): number {
    const known = this.#names.get(path);
    if (known !== undefined) return known;
    const ino = this.#resolve(path, false);
    if (ino > 0) {
      if (this.#names.size >= NAME_CACHE_MAX) this.#names.clear();
      this.#names.set(path, ino);
    }
    return ino;
  }

  /** After a call that may have removed a name (`r` its result): forget every path. */
  #forgetNames(r: number): number {
    if (r === 0) this.#names.clear();
    return r;
  }

  /**
   * Walk `path` from the root. Returns the inode it names, or with `parentOnly` the directory
   * holding its last component (left in #leaf, "" for "/"); or -errno.
   */
  #resolve(path: string, parentOnly: boolean): number {
    if (typeof path !== "string" || path.length === 0) return -ENOENT;
    if (path.charCodeAt(0) !== 0x2f) return -EINVAL;
    if (path.length > PATH_MAX) return -ENAMETOOLONG;
    let end = path.length;
    while (end > 1 && path.charCodeAt(end - 1) === 0x2f) end--;
    let walkEnd = end;
    if (parentOnly) {
      const slash = path.lastIndexOf("/", end - 1);
      this.#leaf = path.slice(slash + 1, end);
      walkEnd = slash;
    }
    let cur = ROOT_INO;
    let i = 1;
    while (i < walkEnd) {
      let j = path.indexOf("/", i);
      if (j < 0 || j > walkEnd) j = walkEnd;
      if (j > i) {
        if (this.#inodes.type(cur) !== T_DIR) return -ENOTDIR;
        const comp = path.slice(i, j);
        if (comp === "..") {
          cur = this.#inodes.u32(cur, I_PARENT);
        } else if (comp !== ".") {
          const bad = this.#encodeName(comp);
          if (bad < 0) return bad;
          if (!this.#dirFind(cur)) return -ENOENT;
          cur = this.#hitIno;
        }
      }
      i = j + 1;
    }
    if (parentOnly && this.#inodes.type(cur) !== T_DIR) return -ENOTDIR;
    return cur;
  }

  /** Encode a name into #name: 0, or -ENAMETOOLONG / -EINVAL (a NUL). */
  #encodeName(name: string): number {
    const r = encoder.encodeInto(name, this.#name);
    if (r.read < name.length || r.written > NAME_MAX) return -ENAMETOOLONG;
    if (name.includes("\0")) return -EINVAL;
    this.#nameLen = r.written;
    return 0;
  }

  /**
   * Look #name up in directory `dir`. On a hit, fills #hit*; on a miss, #slotBlock/#slotIndex
   * name the first empty slot (#slotBlock 0: none, the directory must grow).
   */
  #dirFind(dir: number): boolean {
    const nb = this.#inodes.size(dir) / BLOCK_SIZE;
    const len = this.#nameLen;
    const name = this.#name;
    this.#slotBlock = 0;
    for (let fbn = 0; fbn < nb; fbn++) {
      const phys = this.#dirBlock(dir, fbn);
      const b = this.#cache.read(phys);
      const d = b.data;
      for (let s = 0; s < DIRENTS_PER_BLOCK; s++) {
        const o = s * DIRENT_BYTES;
        const ino = b.dv.getUint32(o + DE_INO, true);
        if (ino === 0) {
          if (this.#slotBlock === 0) {
            this.#slotBlock = phys;
            this.#slotIndex = s;
          }
          continue;
        }
        if (d[o + DE_NAMELEN] !== len) continue;
        let k = 0;
        while (k < len && d[o + DE_NAME + k] === name[k]) k++;
        if (k < len) continue;
        if (ino >= this.sb.ninodes) corrupt(`directory ${dir} names inode ${ino}`);
        this.#hitIno = ino;
        this.#hitType = d[o + DE_TYPE];
        this.#hitBlock = phys;
        this.#hitSlot = s;
        return true;
      }
    }
    return false;
  }

  #dirEmpty(dir: number): boolean {
    const nb = this.#inodes.size(dir) / BLOCK_SIZE;
    for (let fbn = 0; fbn < nb; fbn++) {
      const b = this.#cache.read(this.#dirBlock(dir, fbn));
      for (let s = 0; s < DIRENTS_PER_BLOCK; s++) {
        if (b.dv.getUint32(s * DIRENT_BYTES + DE_INO, true) !== 0) return false;
      }
    }
    return true;
  }

  /** Block `fbn` of directory `dir`; directories have no holes. */
  #dirBlock(dir: number, fbn: number): number {
    const phys = this.#inodes.bmap(dir, fbn);
    if (phys === 0) corrupt(`directory ${dir} has a hole at block ${fbn}`);
    return phys;
  }

  /** Blocks a directory needs to grow by one block. */
  #growthCost(dir: number): number {
    return this.#inodes.blocksNeeded(dir, this.#inodes.size(dir) / BLOCK_SIZE);
  }

  /** Put (#name → ino) into the slot #dirFind left, growing the directory if it left none. */
  #addEntry(dir: number, ino: number, type: number): void {
    let phys = this.#slotBlock;
    let slot = this.#slotIndex;
    if (phys === 0) {
      const size = this.#inodes.size(dir);
      phys = this.#inodes.bmapAlloc(dir, size / BLOCK_SIZE);
      const z = this.#cache.claim(phys);
      z.data.fill(0);
      this.#log.write(z);
      this.#inodes.setSize(dir, size + BLOCK_SIZE);
      slot = 0;
    }
    const b = this.#cache.read(phys);
    const o = slot * DIRENT_BYTES;
    b.dv.setUint32(o + DE_INO, ino, true);
    b.data[o + DE_TYPE] = type;
    this.#writeName(b, o);
    this.#log.write(b);
  }

  #writeName(b: Buf, o: number): void {
    b.data[o + DE_NAMELEN] = this.#nameLen;
    b.data.fill(0, o + DE_NAME, o + DIRENT_BYTES);
    b.data.set(this.#name.subarray(0, this.#nameLen), o + DE_NAME);
  }

  #clearEntry(blk: number, slot: number): void {
    const b = this.#cache.read(blk);
    b.data.fill(0, slot * DIRENT_BYTES, (slot + 1) * DIRENT_BYTES);
    this.#log.write(b);
  }

  #setEntryIno(blk: number, slot: number, ino: number, type: number): void {
    const b = this.#cache.read(blk);
    b.dv.setUint32(slot * DIRENT_BYTES + DE_INO, ino, true);
    b.data[slot * DIRENT_BYTES + DE_TYPE] = type;
    this.#log.write(b);
  }

  /** Give the entry at (blk, slot) the name in #name. */
  #setEntryName(blk: number, slot: number): void {
    const b = this.#cache.read(blk);
    this.#writeName(b, slot * DIRENT_BYTES);
    this.#log.write(b);
  }

  /** Whether directory `a` is `d` or one of its ancestors. */
  #isAncestor(a: number, d: number): boolean {
    for (let hops = 0; hops < this.sb.ninodes; hops++) {
      if (d === a) return true;
      if (d === ROOT_INO) return false;
      d = this.#inodes.u32(d, I_PARENT);
    }
    return corrupt(`the parents of directory ${d} form a cycle`);
  }

  // ---- inodes -------------------------------------------------------------------------------

  /** 0 if (ino, gen) names a live inode (gen < 0: any generation), else -EBADF / -ESTALE. */
  #checkHandle(ino: number, gen: number): number {
    if (!Number.isInteger(ino) || ino < ROOT_INO || ino >= this.sb.ninodes) return -EBADF;
    const b = this.#cache.read(inodeBlock(this.sb, ino));
    const o = inodeOffset(ino);
    if (b.dv.getUint16(o + I_TYPE, true) === T_FREE) return -ESTALE;
    if (gen >= 0 && b.dv.getUint32(o + I_GEN, true) !== gen) return -ESTALE;
    return 0;
  }

  /** A file lost its name: free it unless an open file pins it. */
  #dropFile(ino: number, now: number): void {
    const nlink = this.#inodes.nlink(ino) - 1;
    this.#inodes.setU16(ino, I_NLINK, Math.max(0, nlink));
    this.#inodes.setF64(ino, I_CTIME, now);
    if (nlink <= 0 && !this.#pins.has(ino)) this.#inodes.freeInode(ino);
  }

  /** A directory was removed: nlink 0, freed unless pinned. */
  #dropDir(ino: number, now: number): void {
    this.#inodes.setU16(ino, I_NLINK, 0);
    this.#inodes.setF64(ino, I_CTIME, now);
    if (!this.#pins.has(ino)) this.#inodes.freeInode(ino);
  }

  /** A device or image error inside a call: fail the filesystem and return -EIO. */
  #fault(err: unknown): number {
    if (err instanceof IoError) {
      this.#failure ??= err;
      return -EIO;
    }
    throw err;
  }
}

/**
 * The first read-ahead window for a sequential read of `blocks` blocks (mm/readahead.c's
 * get_init_ra_size): 4× a small request, 2× a medium one, else the largest window.
 */
function initialWindow(blocks: number): number {
  let w = 1;
  while (w < blocks) w *= 2;
  if (w <= RA_MAX_BLOCKS / 32) return w * 4;
  if (w <= RA_MAX_BLOCKS / 4) return w * 2;
  return RA_MAX_BLOCKS;
}

/** Write `count` zero blocks at `lba` (mkfs), 256 at a time. */
function writeZeros(dev: BlockDevice, lba: number, count: number): void {
  const chunk = Math.min(256, count);
  const zeros = new Uint8Array(chunk * BLOCK_SIZE);
  for (let done = 0; done < count; done += chunk) {
    const n = Math.min(chunk, count - done);
    dev.write(lba + done, n, n === chunk ? zeros : zeros.subarray(0, n * BLOCK_SIZE));
  }
}
