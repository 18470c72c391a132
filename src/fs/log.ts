/**
 * log: the write-ahead log that makes every filesystem operation atomic across a crash — a
 * physical redo log of whole metadata blocks, in the manner of xv6's kernel/log.c, with group
 * commit, and ordered data in the manner of ext3's data=ordered.
 *
 * Owns: the running transaction (the buffers it logged, pinned in the cache), its ordered data
 * (new file blocks to write home before it commits, pinned until written), the log region
 * (header block + capacity slots, see src/fs/layout.ts), the commit protocol and recovery.
 *
 * Vocabulary: an *operation* is one filesystem call; it first reserves the most blocks it may
 * log (begin), then marks each buffer it changes (write, xv6's log_write). Operations join the
 * *running transaction*, which commits when the owner asks (sync, commit, unmount), or when the
 * next operation's reservation would not fit in the log (group commit, as xv6's begin_op waits
 * for room). A buffer written twice in one transaction is logged once (absorption).
 *
 * Ordered data (ext3's data=ordered, with one restriction that keeps every crash a commit
 * point): a file data block that the running transaction allocated — free in the committed
 * state — is not logged: it is written once, at its home, before the transaction's commit
 * record (ordered). A crash before the commit point leaves it unreferenced (it is free in the
 * state recovery finds), after it, the flush before the commit record made it durable. Every
 * other block — metadata, and file data that the committed state already holds (an overwrite)
 * — is logged, so an overwrite is exactly as atomic as before. fs.ts decides which is which
 * (inode.ts never hands out a block freed by the running transaction before it commits).
 * Ordered data also goes home early, without a flush, when more than the owner's limit waits
 * (writeBack): writing a block that no committed state references is always safe.
 *
 * Commit, under the device contract of src/fs/blockdev.ts (between two flushes the device may
 * persist any subset of the writes, in any order; a FUA write is durable when it completes):
 *   1. write the ordered data home, and the logged blocks, sorted by home, into n log slots
 *      after the last transaction's (one plugged batch of device writes)
 *   2. flush                          — data and copies are durable before anything names them
 *   3. write the header with FUA: n, the first slot, the home and a CRC-32 of each copy,
 *      sequence + 1, header CRC-32   — the COMMIT POINT: from here recovery installs the copies
 *   4. install: write each copy to its home (runs of consecutive homes; one plugged batch, not
 *      waited for: the device has the data, and whatever touches those blocks next — a read,
 *      the next batch, a flush — waits for the writes first; src/fs/blockdev.ts)
 * The homes are not flushed, and the header is not cleared: the next commit's step 2 makes the
 * homes durable before its own commit point, and until then the header names this transaction,
 * whose copies stay intact: a transaction's slots never overlap the previous one's (a ring of
 * slots), unless a flush made the previous one's homes durable first (only when the two do not
 * fit in the log together). So any crash finds a header naming the last committed transaction
 * with its copies intact, and every earlier transaction durable at home. An fsync costs two
 * durable points (a FLUSH and a FUA write), not three; the image is left clean (homes flushed,
 * header cleared) only by unmount (checkpoint) and by recovery.
 *
 * The CRC-32s make step 2 a second line of defence rather than a necessity for the copies: a
 * header that reached the media without all its copies fails their checks and is not
 * installed (jbd2's async-commit idea). Step 2 stays because the log must not depend on a 32-bit
 * checksum never colliding, and because ordered data has no checksum in the header at all; the
 * crash tests catch the loss of step 2 through the ordered data, and of the FUA of step 3.
 *
 * Recovery at mount (recover): a header with n = 0 needs nothing. A header with n > 0 whose
 * copies all match their CRCs is installed again (idempotent: the transaction's blocks hold
 * those bytes in the committed state, and no later write reached them in place — in-place
 * writes go only to blocks free in it) and then cleared. A copy that does not match its CRC can
 * only have been overwritten by a later transaction's step 1, which reuses these slots only
 * after a flush made this transaction's homes durable — so it is already home, and recovery
 * only clears the header. A header that fails its own CRC or magic is damage, not a crash (a
 * block is written whole), and mount refuses it rather than guess.
 *
 * Rejected: a circular log of several transactions replayed in order (ext3/jbd2): more
 * throughput, but replay must order transactions and the checkpoint protocol doubles the code;
 * one transaction with group commit already batches the many small operations of one sync
 * interval, and the ring of slots already spares the flush after install. Logging all data
 * (data=journal, the first design here): every byte written twice and the log filling with
 * data. Writing ordered data over blocks the committed state holds (ext3 proper): a crash could
 * then show part of an overwrite.
 *
 * Who calls: src/fs/fs.ts only, on the thread that owns the filesystem (one call at a time).
 * Hot paths (begin, write, ordered) allocate nothing; commit allocates one typed-array view.
 */

import { EIO } from "../abi/errno.js";
import { IoError, panic } from "../errors.js";
import type { Buf, BufferCache } from "./bcache.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";
import { crc32 } from "./crc32.js";
import {
  LH_COUNT,
  LH_CRC,
  LH_ENTRIES,
  LH_ENTRY_BYTES,
  LH_MAGIC,
  LH_SEQ,
  LH_START,
  LOG_MAGIC,
  type Superblock,
} from "./layout.js";

export interface LogStats {
  /** Transactions committed. */
  transactions: number;
  /** Blocks written into the log region (step 1), over all commits. */
  logBlocksWritten: number;
  /** Blocks written to their homes (step 4), over all commits. */
  installedBlocks: number;
  /** Ordered data blocks written home (at commit and by writeBack). */
  orderedBlocks: number;
  /** Device flushes issued by the log. */
  flushes: number;
  /** FUA writes issued by the log (commit records and cleared headers). */
  fuaWrites: number;
  /** Device write calls issued by the log. */
  deviceWrites: number;
}

export class WriteAheadLog {
  /** Most blocks one transaction may log. */
  readonly capacity: number;
  /** Most ordered data blocks that may wait to be written home. */
  readonly orderedCapacity: number;
  readonly stats: LogStats = {
    transactions: 0,
    logBlocksWritten: 0,
    installedBlocks: 0,
    orderedBlocks: 0,
    flushes: 0,
    fuaWrites: 0,
    deviceWrites: 0,
  };
  /** Called after each commit (the owner's transaction-scoped state ends with it). */
  onCommit: () => void = () => {};
  readonly #dev: BlockDevice;
  readonly #cache: BufferCache;
  readonly #logStart: number;
  /** The running transaction's logged buffers, [0, #n). */
  readonly #txn: (Buf | null)[];
  #n = 0;
  /** The running transaction's ordered data not yet written home, [0, #on). */
  readonly #ordered: (Buf | null)[];
  #on = 0;
  /** The running operation may grow the transaction up to this many blocks. */
  #limit = 0;
  #seq: number;
  /** The slots of the transaction the header names (#lastCount 0: none). */
  #lastStart = 0;
  #lastCount = 0;
  /** Installs were written since the last flush: the homes are not durable yet. */
  #homesPending = false;
  readonly #staging: Uint8Array;
  readonly #header = new Uint8Array(BLOCK_SIZE);
  readonly #hdv = new DataView(this.#header.buffer);

  /** `seq` is the sequence number recovery found on the device (it left the header clear). */
  constructor(
    dev: BlockDevice,
    cache: BufferCache,
    sb: Superblock,
    seq: number,
    orderedCapacity: number,
  ) {
    this.#dev = dev;
    this.#cache = cache;
    this.#logStart = sb.logStart;
    this.capacity = sb.logBlocks;
    this.orderedCapacity = orderedCapacity;
    this.#txn = new Array<Buf | null>(sb.logBlocks).fill(null);
    this.#ordered = new Array<Buf | null>(orderedCapacity).fill(null);
    this.#staging = new Uint8Array(Math.max(sb.logBlocks, orderedCapacity) * BLOCK_SIZE);
    this.#seq = seq;
  }

  /** Blocks logged in the running transaction. */
  get used(): number {
    return this.#n;
  }

  /** Ordered data blocks waiting to be written home. */
  get orderedWaiting(): number {
    return this.#on;
  }

  /**
   * Start an operation that logs at most `blocks` distinct blocks: commit the running
   * transaction first if they might not fit (xv6 begin_op). May throw IoError (the commit).
   */
  begin(blocks: number): void {
    if (blocks > this.capacity) {
      panic(`log: an operation reserved ${blocks} blocks, the log holds ${this.capacity}`);
    }
    if (this.#n + blocks > this.capacity) this.commit();
    this.#limit = this.#n + blocks;
  }

  /** Record that `b` changed in the running transaction and pin it (xv6 log_write). */
  write(b: Buf): void {
    if (b.inTxn) return; // absorbed: already logged in this transaction
    if (this.#n >= this.#limit) {
      panic(`log: an operation dirtied more blocks than it reserved (block ${b.blockno})`);
    }
    b.inTxn = true;
    this.#cache.pin(b);
    this.#txn[this.#n++] = b;
  }

  /**
   * Record that `b`, a file data block allocated by the running transaction, changed: it goes
   * home before the commit record, unlogged (see the header). The caller checked orderedRoom.
   */
  ordered(b: Buf): void {
    if (b.ordered) return;
    if (this.#on >= this.orderedCapacity) {
      panic(`log: more than ${this.orderedCapacity} ordered blocks (block ${b.blockno})`);
    }
    b.ordered = true;
    this.#cache.pin(b);
    this.#ordered[this.#on++] = b;
  }

  /**
   * Send every waiting ordered block home now (no flush, no wait: the device has the data, and
   * the next commit's flush waits for the writes): room for more. Throws IoError.
   */
  writeBack(): void {
    if (this.#on === 0) return;
    this.#dev.plug();
    this.#writeOrdered();
    this.#dev.unplug(false);
    this.#releaseOrdered();
  }

  /** Commit the running transaction (steps 1–4 of the header); durable when it returns. */
  commit(): void {
    const n = this.#n;
    if (n === 0) {
      this.writeBack(); // (ordered data always comes with logged metadata; this is for safety)
      return;
    }
    this.#sortByHome(this.#txn, n);
    const h = this.#hdv;
    this.#header.fill(0);
    const cap = this.capacity;
    // Step 1 may not overwrite the slots the durable header names before their homes are.
    if (this.#lastCount > 0 && this.#homesPending && n > cap - this.#lastCount) this.#flush();
    const start = (this.#lastStart + this.#lastCount) % cap;
    this.#dev.plug();
    this.#writeOrdered(); // 1: ordered data (staged first: the copies reuse the staging)
    for (let i = 0; i < n; i++) {
      const b = this.#txn[i] as Buf;
      this.#staging.set(b.data, i * BLOCK_SIZE);
      h.setUint32(LH_ENTRIES + i * LH_ENTRY_BYTES, b.blockno, true);
      h.setUint32(LH_ENTRIES + i * LH_ENTRY_BYTES + 4, crc32(b.data), true);
    }
    const first = Math.min(n, cap - start); // 1: the copies, in at most two runs of slots
    this.#write(this.#logStart + 1 + start, first, this.#staging.subarray(0, first * BLOCK_SIZE));
    if (first < n) {
      this.#write(
        this.#logStart + 1,
        n - first,
        this.#staging.subarray(first * BLOCK_SIZE, n * BLOCK_SIZE),
      );
    }
    this.#dev.unplug(false); // the flush waits for them
    this.stats.logBlocksWritten += n;
    this.#flush(); // 2
    this.#seq = (this.#seq + 1) >>> 0;
    this.#sealHeader(n, start);
    this.#writeHeader(); // 3: the commit point
    this.#dev.plug();
    installRuns(this.#dev, this.#header, this.#staging, n, this.stats); // 4
    this.#dev.unplug(false); // durability does not wait for the homes (see the header)
    this.#homesPending = true;
    this.#lastStart = start;
    this.#lastCount = n;
    this.#releaseOrdered();
    for (let i = 0; i < n; i++) {
      const b = this.#txn[i] as Buf;
      b.inTxn = false;
      this.#cache.unpin(b);
      this.#txn[i] = null;
    }
    this.#n = 0;
    this.#limit = 0;
    this.stats.transactions++;
    this.onCommit();
  }

  /**
   * Leave the image clean (for unmount; the running transaction must be committed): flush the
   * homes of the last commit if they may not be durable, then clear the header with a FUA
   * write. With nothing committed since the last checkpoint there is nothing to do, so a clean
   * image can be mounted and unmounted without a write.
   */
  checkpoint(): void {
    if (this.#n > 0) panic("log: checkpoint with a running transaction");
    if (this.#homesPending) this.#flush();
    if (this.#lastCount === 0) return;
    this.#header.fill(0, LH_ENTRIES);
    this.#sealHeader(0, 0);
    this.#writeHeader();
    this.#lastStart = this.#lastCount = 0;
  }

  #sealHeader(n: number, start: number): void {
    const h = this.#hdv;
    h.setUint32(LH_MAGIC, LOG_MAGIC, true);
    h.setUint16(LH_COUNT, n, true);
    h.setUint16(LH_START, start, true);
    h.setUint32(LH_SEQ, this.#seq, true);
    h.setUint32(LH_CRC, headerCrc(this.#header), true);
  }

  /** Write the ordered data home, sorted, runs of consecutive blocks as one write (plugged). */
  #writeOrdered(): void {
    const on = this.#on;
    if (on === 0) return;
    const list = this.#ordered;
    this.#sortByHome(list, on);
    for (let i = 0; i < on; i++) this.#staging.set((list[i] as Buf).data, i * BLOCK_SIZE);
    let start = 0;
    for (let i = 1; i <= on; i++) {
      if (i < on && (list[i] as Buf).blockno === (list[i - 1] as Buf).blockno + 1) continue;
      const home = (list[start] as Buf).blockno;
      this.#write(home, i - start, this.#staging.subarray(start * BLOCK_SIZE, i * BLOCK_SIZE));
      start = i;
    }
    this.stats.orderedBlocks += on;
  }

  /** The ordered data is home: unpin it. */
  #releaseOrdered(): void {
    for (let i = 0; i < this.#on; i++) {
      const b = this.#ordered[i] as Buf;
      b.ordered = false;
      this.#cache.unpin(b);
      this.#ordered[i] = null;
    }
    this.#on = 0;
  }

  /** Insertion sort of list[0, n) by home block (allocation-free; runs come in nearly sorted). */
  #sortByHome(t: (Buf | null)[], n: number): void {
    for (let i = 1; i < n; i++) {
      const b = t[i] as Buf;
      let j = i - 1;
      while (j >= 0 && (t[j] as Buf).blockno > b.blockno) {
        t[j + 1] = t[j];
        j--;
      }
      t[j + 1] = b;
    }
  }

  #write(lba: number, count: number, src: Uint8Array): void {
    this.stats.deviceWrites++;
    this.#dev.write(lba, count, src);
  }

  /** The header block, with FUA: durable when this returns. */
  #writeHeader(): void {
    this.stats.deviceWrites++;
    this.stats.fuaWrites++;
    this.#dev.write(this.#logStart, 1, this.#header, true);
  }

  #flush(): void {
    this.stats.flushes++;
    this.#dev.flush();
    this.#homesPending = false;
  }

  /** Write an empty, sealed log header at `sb.logStart` (mkfs). */
  static format(dev: BlockDevice, sb: Superblock): void {
    const header = new Uint8Array(BLOCK_SIZE);
    const h = new DataView(header.buffer);
    h.setUint32(LH_MAGIC, LOG_MAGIC, true);
    h.setUint32(LH_CRC, headerCrc(header), true);
    dev.write(sb.logStart, 1, header);
  }

  /**
   * Recovery (see the header): install a committed transaction if it is not home yet, clear
   * the header (durably). Returns the sequence number found and the blocks installed. Throws
   * IoError on a damaged header.
   */
  static recover(dev: BlockDevice, sb: Superblock): { seq: number; replayed: number } {
    const header = new Uint8Array(BLOCK_SIZE);
    const h = new DataView(header.buffer);
    dev.read(sb.logStart, 1, header);
    if (h.getUint32(LH_MAGIC, true) !== LOG_MAGIC) {
      throw new IoError(`log header (block ${sb.logStart}) is damaged: bad magic`, EIO);
    }
    if (h.getUint32(LH_CRC, true) !== headerCrc(header)) {
      throw new IoError(`log header (block ${sb.logStart}) is damaged: checksum mismatch`, EIO);
    }
    const seq = h.getUint32(LH_SEQ, true);
    const n = h.getUint16(LH_COUNT, true);
    const start = h.getUint16(LH_START, true);
    if (n === 0) return { seq, replayed: 0 };
    if (n > sb.logBlocks || start >= sb.logBlocks) {
      throw new IoError(
        `log header lists ${n} blocks from slot ${start}, the log holds ${sb.logBlocks}`,
        EIO,
      );
    }
    for (let i = 0; i < n; i++) {
      const home = h.getUint32(LH_ENTRIES + i * LH_ENTRY_BYTES, true);
      if (home < sb.inodeStart || home >= sb.totalBlocks) {
        throw new IoError(`log header names home block ${home}, outside the image`, EIO);
      }
    }
    const copies = new Uint8Array(n * BLOCK_SIZE);
    const first = Math.min(n, sb.logBlocks - start);
    dev.read(sb.logStart + 1 + start, first, copies);
    if (first < n) dev.read(sb.logStart + 1, n - first, copies.subarray(first * BLOCK_SIZE));
    let intact = true;
    for (let i = 0; i < n && intact; i++) {
      const want = h.getUint32(LH_ENTRIES + i * LH_ENTRY_BYTES + 4, true);
      intact = crc32(copies, i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE) === want;
    }
    const stats = { installedBlocks: 0, deviceWrites: 0 };
    if (intact) {
      installRuns(dev, header, copies, n, stats);
      dev.flush();
    }
    header.fill(0, LH_ENTRIES);
    h.setUint16(LH_COUNT, 0, true);
    h.setUint16(LH_START, 0, true);
    h.setUint32(LH_CRC, headerCrc(header), true);
    dev.write(sb.logStart, 1, header, true);
    return { seq, replayed: intact ? n : 0 };
  }
}

/** CRC-32 of a header block, its own CRC field left out. */
function headerCrc(header: Uint8Array): number {
  return crc32(header, LH_ENTRIES, BLOCK_SIZE, crc32(header, 0, LH_CRC));
}

/** Step 4: write copy i to the home the header lists for it, one device write per run. */
function installRuns(
  dev: BlockDevice,
  header: Uint8Array,
  copies: Uint8Array,
  n: number,
  stats: { installedBlocks: number; deviceWrites: number },
): void {
  const h = new DataView(header.buffer, header.byteOffset, BLOCK_SIZE);
  const home = (i: number) => h.getUint32(LH_ENTRIES + i * LH_ENTRY_BYTES, true);
  let start = 0;
  for (let i = 1; i <= n; i++) {
    if (i < n && home(i) === home(i - 1) + 1) continue;
    dev.write(home(start), i - start, copies.subarray(start * BLOCK_SIZE, i * BLOCK_SIZE));
    stats.deviceWrites++;
    stats.installedBlocks += i - start;
    start = i;
  }
}
