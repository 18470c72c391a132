/**
 * inode: the inode table, the block maps and the free bitmap of exofs — everything about where
 * a file's bytes live, below names and directories (src/fs/fs.ts) and above the buffer cache
 * and the log (src/fs/bcache.ts, src/fs/log.ts).
 *
 * Owns: reading and writing inode fields in their cached blocks (no in-memory inode copies:
 * the cached block is the inode), mapping file block numbers through the direct, indirect and
 * double-indirect pointers (xv6's bmap, one level deeper), allocating and freeing blocks (next
 * fit over the bitmap) and inodes (generation bumped at each allocation), the free counts, the
 * mount-time scan that counts them and finds orphans, and which blocks the running transaction
 * allocated (free in the committed state: their data may be written home unlogged, see
 * src/fs/log.ts) or freed (held in the committed state: a data block reused from them is
 * logged).
 *
 * Invariants: every change goes through the running transaction (log.write after each change
 * to a cached block); the caller reserved log room first (see chunkCost / freeCost) and checked
 * freeBlocks / freeInodes, so an allocation here never fails half-way; a block pointer outside
 * the data region, a block freed twice or a count that disagrees with the bitmap is a damaged
 * image: an IoError (`corrupt`), which fails the filesystem rather than the thread.
 *
 * Who calls: FileSystem only, on its thread, one call at a time.
 */

import { EIO } from "../abi/errno.js";
import { IoError } from "../errors.js";
import type { Buf, BufferCache } from "./bcache.js";
import { BLOCK_SIZE } from "./blockdev.js";
import {
  BITS_PER_BITMAP_BLOCK,
  I_BLOCKS,
  I_CTIME,
  I_DINDIRECT,
  I_DIRECT,
  I_GEN,
  I_INDIRECT,
  I_MTIME,
  I_NLINK,
  I_TYPE,
  INODE_BYTES,
  INODES_PER_BLOCK,
  inodeBlock,
  inodeOffset,
  inodeSize,
  NDIRECT,
  NINDIRECT,
  ROOT_INO,
  type Superblock,
  setInodeSize,
  T_DIR,
  T_FREE,
} from "./layout.js";
import type { WriteAheadLog } from "./log.js";

export class InodeStore {
  readonly sb: Superblock;
  /** Set by bmapAlloc when it allocated the data block itself (contents undefined). */
  fresh = false;
  readonly #cache: BufferCache;
  readonly #log: WriteAheadLog;
  #freeBlocks = 0;
  #freeInodes = 0;
  /** Next-fit hints: where the last block and inode allocations ended. */
  #blockHint: number;
  #inodeHint = ROOT_INO + 1;
  /** Blocks the running transaction allocated that the committed state has free. */
  readonly #txnNew = new Set<number>();
  /** Blocks the running transaction freed that the committed state holds. */
  readonly #txnFreed = new Set<number>();

  constructor(sb: Superblock, cache: BufferCache, log: WriteAheadLog) {
    this.sb = sb;
    this.#cache = cache;
    this.#log = log;
    this.#blockHint = sb.dataStart;
  }

  /** Whether the running transaction allocated `blk` and the committed state has it free. */
  isNew(blk: number): boolean {
    return this.#txnNew.has(blk);
  }

  /** Blocks the running transaction freed (an allocation may hand them out again). */
  get freedInTxn(): number {
    return this.#txnFreed.size;
  }

  /** The running transaction committed: what it allocated and freed is the committed state. */
  endTxn(): void {
    this.#txnNew.clear();
    this.#txnFreed.clear();
  }

  /** Free data blocks and free inodes (counted at mount, kept up to date). */
  get freeBlocks(): number {
    return this.#freeBlocks;
  }
  get freeInodes(): number {
    return this.#freeInodes;
  }

  ibuf(ino: number): Buf {
    return this.#cache.read(inodeBlock(this.sb, ino));
  }
  type(ino: number): number {
    return this.ibuf(ino).dv.getUint16(inodeOffset(ino) + I_TYPE, true);
  }
  nlink(ino: number): number {
    return this.ibuf(ino).dv.getUint16(inodeOffset(ino) + I_NLINK, true);
  }
  size(ino: number): number {
    return inodeSize(this.ibuf(ino).dv, inodeOffset(ino));
  }
  u32(ino: number, field: number): number {
    return this.ibuf(ino).dv.getUint32(inodeOffset(ino) + field, true);
  }
  setU16(ino: number, field: number, v: number): void {
    const b = this.ibuf(ino);
    b.dv.setUint16(inodeOffset(ino) + field, v, true);
    this.#log.write(b);
  }
  setU32(ino: number, field: number, v: number): void {
    const b = this.ibuf(ino);
    b.dv.setUint32(inodeOffset(ino) + field, v, true);
    this.#log.write(b);
  }
  setF64(ino: number, field: number, v: number): void {
    const b = this.ibuf(ino);
    b.dv.setFloat64(inodeOffset(ino) + field, v, true);
    this.#log.write(b);
  }
  setSize(ino: number, size: number): void {
    const b = this.ibuf(ino);
    setInodeSize(b.dv, inodeOffset(ino), size);
    this.#log.write(b);
  }
  /** mtime = ctime = now. */
  touch(ino: number, now: number): void {
    const b = this.ibuf(ino);
    b.dv.setFloat64(inodeOffset(ino) + I_MTIME, now, true);
    b.dv.setFloat64(inodeOffset(ino) + I_CTIME, now, true);
    this.#log.write(b);
  }

  /** Take a free inode (next fit from the hint), initialised empty, its generation bumped. */
  allocInode(type: number, now: number): number {
    const n = this.sb.ninodes;
    for (let k = 0; k < n; k++) {
      const ino = ((this.#inodeHint - 2 + k) % (n - 2)) + 2;
      const b = this.ibuf(ino);
      const o = inodeOffset(ino);
      if (b.dv.getUint16(o + I_TYPE, true) !== T_FREE) continue;
      const gen = (b.dv.getUint32(o + I_GEN, true) + 1) >>> 0;
      b.data.fill(0, o, o + INODE_BYTES);
      b.dv.setUint16(o + I_TYPE, type, true);
      b.dv.setUint32(o + I_GEN, gen, true);
      b.dv.setFloat64(o + I_MTIME, now, true);
      b.dv.setFloat64(o + I_CTIME, now, true);
      this.#log.write(b);
      this.#freeInodes--;
      this.#inodeHint = ino + 1;
      return ino;
    }
    return corrupt(`no free inode, although ${this.#freeInodes} were counted`);
  }

  /** Free inode `ino` and all its blocks; its generation stays (the next owner bumps it). */
  freeInode(ino: number): void {
    this.freeFrom(ino, 0);
    const b = this.ibuf(ino);
    const o = inodeOffset(ino);
    const gen = b.dv.getUint32(o + I_GEN, true);
    b.data.fill(0, o, o + INODE_BYTES);
    b.dv.setUint32(o + I_GEN, gen, true);
    this.#log.write(b);
    this.#freeInodes++;
  }

  /** Log blocks that freeing all of `ino`'s blocks may dirty: its inode and bitmap blocks. */
  freeCost(ino: number): number {
    return 1 + Math.min(this.sb.bitmapBlocks, this.u32(ino, I_BLOCKS));
  }

  /**
   * Log blocks a write of k consecutive blocks may dirty: the data, the inode, the indirect
   * block, the double-indirect block and the second-level blocks the range spans, and the
   * bitmap blocks of everything it may allocate.
   */
  chunkCost(k: number): number {
    return k + this.chunkMetaCost(k);
  }

  /** The part of chunkCost(k) that is not the k data blocks themselves. */
  chunkMetaCost(k: number): number {
    const tables = 2 + Math.floor(k / NINDIRECT) + 2;
    return 1 + tables + Math.min(this.sb.bitmapBlocks, k + tables);
  }

  // ---- mount-time scan ----------------------------------------------------------------------

  /**
   * Count free blocks (bitmap) and free inodes (inode table) with a few large device reads,
   * check the root, and return the orphans: inodes in use with nlink 0.
   */
  scan(): number[] {
    const sb = this.sb;
    const bitmap = new Uint8Array(sb.bitmapBlocks * BLOCK_SIZE);
    this.#cache.readDevice(sb.bitmapStart, sb.bitmapBlocks, bitmap);
    let free = 0;
    for (let blk = sb.dataStart; blk < sb.totalBlocks; blk++) {
      if ((bitmap[blk >> 3] & (1 << (blk & 7))) === 0) free++;
    }
    this.#freeBlocks = free;
    const orphans: number[] = [];
    const chunk = Math.min(256, sb.inodeBlocks);
    const table = new Uint8Array(chunk * BLOCK_SIZE);
    const dv = new DataView(table.buffer);
    let freeInodes = 0;
    for (let first = 0; first < sb.inodeBlocks; first += chunk) {
      const n = Math.min(chunk, sb.inodeBlocks - first);
      this.#cache.readDevice(sb.inodeStart + first, n, table);
      for (let i = 0; i < n * INODES_PER_BLOCK; i++) {
        const ino = first * INODES_PER_BLOCK + i;
        if (ino <= ROOT_INO) continue;
        const type = dv.getUint16(i * INODE_BYTES + I_TYPE, true);
        if (type === T_FREE) freeInodes++;
        else if (dv.getUint16(i * INODE_BYTES + I_NLINK, true) === 0) orphans.push(ino);
      }
    }
    this.#freeInodes = freeInodes;
    if (this.type(ROOT_INO) !== T_DIR) {
      throw new IoError("the root inode is not a directory: the image is damaged", EIO);
    }
    return orphans;
  }

  // ---- block map ----------------------------------------------------------------------------

  /** The block holding file block `fbn` of `ino`, or 0 for a hole. */
  bmap(ino: number, fbn: number): number {
    const ib = this.ibuf(ino);
    const o = inodeOffset(ino);
    if (fbn < NDIRECT) return this.#ptr(ib, o + I_DIRECT + 4 * fbn);
    fbn -= NDIRECT;
    if (fbn < NINDIRECT) {
      const ind = this.#ptr(ib, o + I_INDIRECT);
      return ind === 0 ? 0 : this.#ptr(this.#cache.read(ind), 4 * fbn);
    }
    fbn -= NINDIRECT;
    const top = this.#ptr(ib, o + I_DINDIRECT);
    if (top === 0) return 0;
    const l2 = this.#ptr(this.#cache.read(top), 4 * Math.floor(fbn / NINDIRECT));
    return l2 === 0 ? 0 : this.#ptr(this.#cache.read(l2), 4 * (fbn % NINDIRECT));
  }

  /**
   * How many file blocks from `fbn` on (at most `max`) map to consecutive blocks `phys`,
   * phys + 1, …, where `phys` is the block of `fbn`: one table read for the whole run (it ends
   * at a table's end). For read-ahead, which reads such a run with one device command.
   */
  contiguous(ino: number, fbn: number, phys: number, max: number): number {
    let n = 1;
    if (fbn < NDIRECT) {
      const ib = this.ibuf(ino);
      const o = inodeOffset(ino) + I_DIRECT;
      while (n < max && fbn + n < NDIRECT && this.#ptr(ib, o + 4 * (fbn + n)) === phys + n) n++;
      return n;
    }
    const rel = fbn - NDIRECT;
    let table: number;
    let slot: number;
    if (rel < NINDIRECT) {
      table = this.#ptr(this.ibuf(ino), inodeOffset(ino) + I_INDIRECT);
      slot = rel;
    } else {
      const top = this.#ptr(this.ibuf(ino), inodeOffset(ino) + I_DINDIRECT);
      if (top === 0) return 1;
      const d = rel - NINDIRECT;
      table = this.#ptr(this.#cache.read(top), 4 * Math.floor(d / NINDIRECT));
      slot = d % NINDIRECT;
    }
    if (table === 0) return 1;
    const t = this.#cache.read(table);
    while (n < max && slot + n < NINDIRECT && this.#ptr(t, 4 * (slot + n)) === phys + n) n++;
    return n;
  }

  /** Blocks that mapping file block `fbn` would allocate: the data block and missing tables. */
  blocksNeeded(ino: number, fbn: number): number {
    const ib = this.ibuf(ino);
    const o = inodeOffset(ino);
    if (fbn < NDIRECT) return this.#ptr(ib, o + I_DIRECT + 4 * fbn) === 0 ? 1 : 0;
    fbn -= NDIRECT;
    if (fbn < NINDIRECT) {
      const ind = this.#ptr(ib, o + I_INDIRECT);
      if (ind === 0) return 2;
      return this.#ptr(this.#cache.read(ind), 4 * fbn) === 0 ? 1 : 0;
    }
    fbn -= NINDIRECT;
    const top = this.#ptr(ib, o + I_DINDIRECT);
    if (top === 0) return 3;
    const l2 = this.#ptr(this.#cache.read(top), 4 * Math.floor(fbn / NINDIRECT));
    if (l2 === 0) return 2;
    return this.#ptr(this.#cache.read(l2), 4 * (fbn % NINDIRECT)) === 0 ? 1 : 0;
  }

  /**
   * The block of file block `fbn`, allocating it and any missing table (zeroed). #fresh says
   * whether the data block itself is new (its contents then undefined: the caller fills it).
   * The caller checked #blocksNeeded against the free count, so allocation cannot fail.
   */
  bmapAlloc(ino: number, fbn: number): number {
    this.fresh = false;
    const ib = this.ibuf(ino);
    const o = inodeOffset(ino);
    if (fbn < NDIRECT) return this.#slot(ino, ib, o + I_DIRECT + 4 * fbn, true);
    fbn -= NDIRECT;
    if (fbn < NINDIRECT) {
      const ind = this.#slot(ino, ib, o + I_INDIRECT, false);
      return this.#slot(ino, this.#cache.read(ind), 4 * fbn, true);
    }
    fbn -= NINDIRECT;
    const top = this.#slot(ino, ib, o + I_DINDIRECT, false);
    const l2 = this.#slot(ino, this.#cache.read(top), 4 * Math.floor(fbn / NINDIRECT), false);
    return this.#slot(ino, this.#cache.read(l2), 4 * (fbn % NINDIRECT), true);
  }

  /** The block number at `holder[pos]`, allocated (and recorded there) if 0. */
  #slot(ino: number, holder: Buf, pos: number, data: boolean): number {
    const p = this.#ptr(holder, pos);
    if (p !== 0) return p;
    const blk = this.#allocBlock();
    if (data) {
      this.fresh = true;
    } else {
      const z = this.#cache.claim(blk);
      z.data.fill(0);
      this.#log.write(z);
    }
    holder.dv.setUint32(pos, blk, true);
    this.#log.write(holder);
    this.setU32(ino, I_BLOCKS, this.u32(ino, I_BLOCKS) + 1);
    return blk;
  }

  /** A block pointer, checked to lie in the data region (a damaged image is an IoError). */
  #ptr(b: Buf, pos: number): number {
    const p = b.dv.getUint32(pos, true);
    if (p !== 0 && (p < this.sb.dataStart || p >= this.sb.totalBlocks)) {
      corrupt(`block ${b.blockno} points to block ${p}, outside the data region`);
    }
    return p;
  }

  /** Free file blocks `from`… of `ino` and the tables left empty. */
  freeFrom(ino: number, from: number): void {
    const o = inodeOffset(ino);
    let freed = 0;
    for (let fbn = from; fbn < NDIRECT; fbn++) {
      const p = this.#ptr(this.ibuf(ino), o + I_DIRECT + 4 * fbn);
      if (p === 0) continue;
      this.#freeBlock(p);
      this.setU32(ino, I_DIRECT + 4 * fbn, 0);
      freed++;
    }
    const ind = this.#ptr(this.ibuf(ino), o + I_INDIRECT);
    if (ind !== 0) {
      const start = Math.max(0, from - NDIRECT);
      if (start < NINDIRECT) freed += this.#freeTable(ind, start);
      if (start === 0) {
        this.#freeBlock(ind);
        this.setU32(ino, I_INDIRECT, 0);
        freed++;
      }
    }
    const top = this.#ptr(this.ibuf(ino), o + I_DINDIRECT);
    if (top !== 0) {
      const start = Math.max(0, from - NDIRECT - NINDIRECT);
      const t = this.#cache.read(top);
      this.#cache.hold(t);
      for (let i = Math.floor(start / NINDIRECT); i < NINDIRECT; i++) {
        const l2 = this.#ptr(t, 4 * i);
        if (l2 === 0) continue;
        const s = Math.max(0, start - i * NINDIRECT);
        freed += this.#freeTable(l2, s);
        if (s === 0) {
          this.#freeBlock(l2);
          freed++;
          if (start > 0) {
            t.dv.setUint32(4 * i, 0, true);
            this.#log.write(t);
          }
        }
      }
      this.#cache.release(t);
      if (start === 0) {
        this.#freeBlock(top);
        this.setU32(ino, I_DINDIRECT, 0);
        freed++;
      }
    }
    if (freed > 0) this.setU32(ino, I_BLOCKS, this.u32(ino, I_BLOCKS) - freed);
  }

  /** Free the blocks a table lists from entry `start` on; entries are cleared if start > 0. */
  #freeTable(table: number, start: number): number {
    const t = this.#cache.read(table);
    this.#cache.hold(t);
    let freed = 0;
    for (let j = start; j < NINDIRECT; j++) {
      const p = this.#ptr(t, 4 * j);
      if (p === 0) continue;
      this.#freeBlock(p);
      freed++;
      if (start > 0) t.dv.setUint32(4 * j, 0, true);
    }
    if (start > 0 && freed > 0) this.#log.write(t);
    this.#cache.release(t);
    return freed;
  }

  // ---- free bitmap --------------------------------------------------------------------------

  /** Take a free data block (next fit from the hint). The caller checked #freeBlocks > 0. */
  #allocBlock(): number {
    const { bitmapStart, bitmapBlocks, dataStart, totalBlocks } = this.sb;
    const start = this.#blockHint;
    const first = Math.floor(start / BITS_PER_BITMAP_BLOCK);
    for (let k = 0; k <= bitmapBlocks; k++) {
      const bi = (first + k) % bitmapBlocks;
      const b = this.#cache.read(bitmapStart + bi);
      const d = b.data;
      for (
        let byte = k === 0 ? (start % BITS_PER_BITMAP_BLOCK) >> 3 : 0;
        byte < BLOCK_SIZE;
        byte++
      ) {
        const v = d[byte];
        if (v === 0xff) continue;
        for (let bit = 0; bit < 8; bit++) {
          if (v & (1 << bit)) continue;
          const blk = bi * BITS_PER_BITMAP_BLOCK + byte * 8 + bit;
          if (blk < dataStart || blk >= totalBlocks) continue;
          d[byte] = v | (1 << bit);
          this.#log.write(b);
          this.#freeBlocks--;
          if (!this.#txnFreed.has(blk)) this.#txnNew.add(blk);
          this.#blockHint = blk + 1 < totalBlocks ? blk + 1 : dataStart;
          return blk;
        }
      }
    }
    return corrupt(`no free block, although ${this.#freeBlocks} were counted`);
  }

  #freeBlock(blk: number): void {
    const b = this.#cache.read(this.sb.bitmapStart + Math.floor(blk / BITS_PER_BITMAP_BLOCK));
    const i = (blk % BITS_PER_BITMAP_BLOCK) >> 3;
    const m = 1 << (blk & 7);
    if ((b.data[i] & m) === 0) corrupt(`block ${blk} is freed twice`);
    b.data[i] &= ~m;
    this.#log.write(b);
    this.#freeBlocks++;
    if (!this.#txnNew.delete(blk)) this.#txnFreed.add(blk);
  }
}

/** A damaged image met during an operation: an IoError, which fails the filesystem. */
export function corrupt(why: string): never {
  throw new IoError(`exofs: the image is damaged: ${why}`, EIO);
}
