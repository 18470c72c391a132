/**
 * log: the write-ahead log that makes every filesystem operation atomic across a crash — a
 * physical redo log of whole blocks, in the manner of xv6's kernel/log.c, with group commit.
 *
 * Owns: the running transaction (the buffers it dirtied, pinned in the cache), the log region
 * (header block + capacity blocks, see src/fs/layout.ts), the commit protocol and recovery.
 *
 * Vocabulary: an *operation* is one filesystem call; it first reserves the most blocks it may
 * dirty (begin), then marks each buffer it changes (write, xv6's log_write). Operations join the
 * *running transaction*, which commits when the owner asks (sync, commit, unmount), or when the
 * next operation's reservation would not fit in the log (group commit, as xv6's begin_op waits
 * for room). A buffer written twice in one transaction is logged once (absorption).
 *
 * Commit, under the device contract of src/fs/blockdev.ts (between two flushes the device may
 * persist any subset of the writes, in any order):
 *   1. write the transaction's blocks, sorted by home, into log blocks 0..n-1 (one device write)
 *   2. flush                        — the copies are durable before anything names them
 *   3. write the header: n, the home and a CRC-32 of each copy, sequence + 1, header CRC-32
 *   4. flush                        — the COMMIT POINT: from here recovery installs the copies
 *   5. install: write each copy to its home (runs of consecutive homes as one write)
 *   6. flush                        — homes durable; the log may be reused from here
 *   7. clear the header (n = 0); made durable by the next flush (the next commit's step 2)
 *
 * The CRC-32s make step 2 a second line of defence rather than a necessity: a header that
 * reached the media without all its copies fails their checks and is not installed (jbd2's
 * async-commit idea). Step 2 stays because the log must not depend on a 32-bit checksum never
 * colliding; the crash tests therefore cannot tell it is there, while they do catch the loss of
 * step 4 or step 6.
 *
 * Recovery at mount (recover): a header with n = 0 needs nothing. A header with n > 0 whose
 * copies all match their CRCs is installed again (idempotent: it writes the same bytes) and
 * then cleared. A copy that does not match its CRC can only have been overwritten by the next
 * transaction's step 1, which starts after step 6 — so this transaction is already home, and
 * recovery only clears the header. A header that fails its own CRC or magic is damage, not a
 * crash (a block is written whole), and mount refuses it rather than guess.
 *
 * Rejected: a circular log of several transactions (ext3/jbd2): more throughput, but replay
 * must order transactions and the checkpoint protocol doubles the code; one transaction with
 * group commit already batches the many small operations of one sync interval.
 *
 * Who calls: src/fs/fs.ts only, on the thread that owns the filesystem (one call at a time).
 * Hot paths (begin, write) allocate nothing; commit allocates one typed-array view.
 */

import { EIO } from "../abi/errno.js";
import { IoError, panic } from "../errors.js";
import type { Buf } from "./bcache.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";
import { crc32 } from "./crc32.js";
import {
  LH_COUNT,
  LH_CRC,
  LH_ENTRIES,
  LH_ENTRY_BYTES,
  LH_MAGIC,
  LH_SEQ,
  LOG_MAGIC,
  type Superblock,
} from "./layout.js";

export interface LogStats {
  /** Transactions committed. */
  transactions: number;
  /** Blocks written into the log region (step 1), over all commits. */
  logBlocksWritten: number;
  /** Blocks written to their homes (step 5), over all commits. */
  installedBlocks: number;
  /** Device flushes issued by the log. */
  flushes: number;
  /** Device write calls issued by the log. */
  deviceWrites: number;
}

export class WriteAheadLog {
  /** Most blocks one transaction may hold. */
  readonly capacity: number;
  readonly stats: LogStats = {
    transactions: 0,
    logBlocksWritten: 0,
    installedBlocks: 0,
    flushes: 0,
    deviceWrites: 0,
  };
  readonly #dev: BlockDevice;
  readonly #logStart: number;
  /** The running transaction's buffers, [0, #n). */
  readonly #txn: (Buf | null)[];
  #n = 0;
  /** The running operation may grow the transaction up to this many blocks. */
  #limit = 0;
  #seq: number;
  /** Writes were issued since the last flush (a flush with none is skipped). */
  #unflushed = false;
  readonly #staging: Uint8Array;
  readonly #header = new Uint8Array(BLOCK_SIZE);
  readonly #hdv = new DataView(this.#header.buffer);

  /** `seq` is the sequence number recovery found on the device. */
  constructor(dev: BlockDevice, sb: Superblock, seq: number) {
    this.#dev = dev;
    this.#logStart = sb.logStart;
    this.capacity = sb.logBlocks;
    this.#txn = new Array<Buf | null>(sb.logBlocks).fill(null);
    this.#staging = new Uint8Array(sb.logBlocks * BLOCK_SIZE);
    this.#seq = seq;
  }

  /** Blocks in the running transaction. */
  get used(): number {
    return this.#n;
  }

  /**
   * Start an operation that dirties at most `blocks` distinct blocks: commit the running
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
    this.#txn[this.#n++] = b;
  }

  /** Commit the running transaction (steps 1–7 of the header); durable when it returns. */
  commit(): void {
    const n = this.#n;
    if (n === 0) return;
    this.#sortByHome(n);
    const h = this.#hdv;
    this.#header.fill(0);
    for (let i = 0; i < n; i++) {
      const b = this.#txn[i]!;
      this.#staging.set(b.data, i * BLOCK_SIZE);
      h.setUint32(LH_ENTRIES + i * LH_ENTRY_BYTES, b.blockno, true);
      h.setUint32(LH_ENTRIES + i * LH_ENTRY_BYTES + 4, crc32(b.data), true);
    }
    this.#write(this.#logStart + 1, n, this.#staging.subarray(0, n * BLOCK_SIZE)); // 1
    this.stats.logBlocksWritten += n;
    this.#flush(); // 2
    this.#seq = (this.#seq + 1) >>> 0;
    this.#sealHeader(n);
    this.#write(this.#logStart, 1, this.#header); // 3
    this.#flush(); // 4: commit point
    this.#unflushed = true;
    installRuns(this.#dev, this.#header, this.#staging, n, this.stats); // 5
    this.#flush(); // 6
    this.#header.fill(0, LH_ENTRIES);
    this.#sealHeader(0);
    this.#write(this.#logStart, 1, this.#header); // 7: durable with the next flush
    for (let i = 0; i < n; i++) {
      this.#txn[i]!.inTxn = false;
      this.#txn[i] = null;
    }
    this.#n = 0;
    this.#limit = 0;
    this.stats.transactions++;
  }

  /**
   * Flush the device if this log wrote anything since its last flush (for sync and unmount:
   * makes step 7 durable). With nothing written there is nothing to make durable, and a clean
   * read-only image can be mounted and unmounted without a flush.
   */
  flush(): void {
    if (this.#unflushed) this.#flush();
  }

  #sealHeader(n: number): void {
    const h = this.#hdv;
    h.setUint32(LH_MAGIC, LOG_MAGIC, true);
    h.setUint32(LH_COUNT, n, true);
    h.setUint32(LH_SEQ, this.#seq, true);
    h.setUint32(LH_CRC, headerCrc(this.#header), true);
  }

  /** Insertion sort of the transaction by home block (n ≤ 510; allocation-free). */
  #sortByHome(n: number): void {
    const t = this.#txn;
    for (let i = 1; i < n; i++) {
      const b = t[i]!;
      let j = i - 1;
      while (j >= 0 && t[j]!.blockno > b.blockno) {
        t[j + 1] = t[j];
        j--;
      }
      t[j + 1] = b;
    }
  }

  #write(lba: number, count: number, src: Uint8Array): void {
    this.stats.deviceWrites++;
    this.#unflushed = true;
    this.#dev.write(lba, count, src);
  }

  #flush(): void {
    this.stats.flushes++;
    this.#dev.flush();
    this.#unflushed = false;
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
   * the header, flush. Returns the sequence number found and the blocks installed. Throws
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
    const n = h.getUint32(LH_COUNT, true);
    if (n === 0) return { seq, replayed: 0 };
    if (n > sb.logBlocks) {
      throw new IoError(`log header lists ${n} blocks, the log holds ${sb.logBlocks}`, EIO);
    }
    for (let i = 0; i < n; i++) {
      const home = h.getUint32(LH_ENTRIES + i * LH_ENTRY_BYTES, true);
      if (home < sb.inodeStart || home >= sb.totalBlocks) {
        throw new IoError(`log header names home block ${home}, outside the image`, EIO);
      }
    }
    const copies = new Uint8Array(n * BLOCK_SIZE);
    dev.read(sb.logStart + 1, n, copies);
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
    h.setUint32(LH_COUNT, 0, true);
    h.setUint32(LH_CRC, headerCrc(header), true);
    dev.write(sb.logStart, 1, header);
    dev.flush();
    return { seq, replayed: intact ? n : 0 };
  }
}

/** CRC-32 of a header block, its own CRC field left out. */
function headerCrc(header: Uint8Array): number {
  return crc32(header, LH_ENTRIES, BLOCK_SIZE, crc32(header, 0, LH_CRC));
}

/** Step 5: write copy i to the home the header lists for it, one device write per run. */
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
