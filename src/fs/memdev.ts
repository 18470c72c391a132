/**
 * memdev: a BlockDevice in memory that can lose power — for tests of the filesystem and of
 * anything that must survive a crash.
 *
 * Owns two images of the device: `view`, what reads see (every completed write), and `media`,
 * what a power cut keeps (everything before the last flush). Writes since the last flush are
 * kept, block by block and in order, as the *pending* list. That is the durability contract of
 * src/fs/blockdev.ts (NVMe with a volatile write cache): between two flushes the device may
 * persist any subset of the writes, in any order.
 *
 *   cutPowerAfter(n)  the device completes n more block writes, then the power goes: the write
 *                     that would be the (n+1)th block (even part-way through a multi-block
 *                     write), and every call after, throws IoError.
 *   crash(choice)     the image after a power cut: `media` plus the pending blocks that `choice`
 *                     keeps ("none", "all", a predicate, or a random subset), applied in order;
 *                     returned as a new, powered device. Works whether or not power was cut.
 *
 * A block is the unit of atomicity (NVMe's atomic write unit): a block is persisted whole or
 * not at all; a multi-block write is as many independent block writes. A FUA write reaches the
 * media before it returns, block by block (a cut part-way keeps the blocks before it), and
 * supersedes the pending writes of its blocks; it makes no other write durable. Writes complete
 * at once, so plug() and unplug() do nothing.
 *
 * Who calls: tests (test/fs-*.test.ts). Not thread-safe; one caller at a time.
 */

import { IoError } from "../errors.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";

/** Which unflushed block writes reach the media in a crash. */
export type CrashChoice =
  | "none"
  | "all"
  | ((index: number, lba: number) => boolean)
  | { readonly rng: () => number; readonly keep?: number };

export interface MemoryDeviceStats {
  /** Read calls and blocks read. */
  reads: number;
  readBlocks: number;
  /** Write calls and blocks written. */
  writes: number;
  writeBlocks: number;
  /** FUA write calls (counted in writes too). */
  fuaWrites: number;
  flushes: number;
}

export class MemoryBlockDevice implements BlockDevice {
  readonly blocks: number;
  readonly stats: MemoryDeviceStats = {
    reads: 0,
    readBlocks: 0,
    writes: 0,
    writeBlocks: 0,
    fuaWrites: 0,
    flushes: 0,
  };
  readonly #view: Uint8Array;
  readonly #media: Uint8Array;
  /** Unflushed block writes, oldest first: the block number and a copy of what was written. */
  #pending: { lba: number; data: Uint8Array }[] = [];
  /** Block writes left before the power cut (Infinity: none armed). */
  #budget = Number.POSITIVE_INFINITY;
  #off = false;

  /** A device of `blocks` zero blocks, or over a copy of `image` (whose length sets the size). */
  constructor(blocks: number, image?: Uint8Array) {
    if (image !== undefined) blocks = Math.floor(image.length / BLOCK_SIZE);
    this.blocks = blocks;
    this.#view = new Uint8Array(blocks * BLOCK_SIZE);
    if (image !== undefined) this.#view.set(image.subarray(0, this.#view.length));
    this.#media = this.#view.slice();
  }

  read(lba: number, count: number, dst: Uint8Array): void {
    this.#check("read", lba, count, dst);
    this.stats.reads++;
    this.stats.readBlocks += count;
    dst.set(this.#view.subarray(lba * BLOCK_SIZE, (lba + count) * BLOCK_SIZE));
  }

  readv(lba: number, count: number, dst: readonly Uint8Array[]): void {
    this.#check("read", lba, count, null);
    if (dst.length < count) this.#short("read", count, dst.length);
    this.stats.reads++;
    this.stats.readBlocks += count;
    for (let i = 0; i < count; i++) {
      const at = (lba + i) * BLOCK_SIZE;
      (dst[i] as Uint8Array).set(this.#view.subarray(at, at + BLOCK_SIZE));
    }
  }

  write(lba: number, count: number, src: Uint8Array, fua = false): void {
    this.#check("write", lba, count, src);
    this.stats.writes++;
    if (fua) this.stats.fuaWrites++;
    for (let i = 0; i < count; i++) {
      if (this.#budget <= 0) this.#powerFails();
      this.#budget--;
      const data = src.slice(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
      this.#view.set(data, (lba + i) * BLOCK_SIZE);
      this.stats.writeBlocks++;
      if (!fua) {
        this.#pending.push({ lba: lba + i, data });
        continue;
      }
      // On the media now; an older unflushed write of this block can no longer land over it.
      this.#media.set(data, (lba + i) * BLOCK_SIZE);
      this.#pending = this.#pending.filter((w) => w.lba !== lba + i);
    }
  }

  plug(): void {}

  unplug(): void {}

  flush(): void {
    if (this.#off || this.#budget <= 0) this.#powerFails();
    this.stats.flushes++;
    for (const w of this.#pending) this.#media.set(w.data, w.lba * BLOCK_SIZE);
    this.#pending = [];
  }

  /** Arm a power cut after `writes` more block writes (see the header). */
  cutPowerAfter(writes: number): void {
    this.#budget = writes;
  }

  /** Whether the power has gone (a call found the budget spent). */
  get powerCut(): boolean {
    return this.#off;
  }

  /** Block writes not yet flushed. */
  get unflushed(): number {
    return this.#pending.length;
  }

  /** A copy of what reads see now. */
  image(): Uint8Array {
    return this.#view.slice();
  }

  /** The device after a power cut that kept the unflushed writes `choice` picks. */
  crash(choice: CrashChoice = "none"): MemoryBlockDevice {
    const out = this.#media.slice();
    this.#pending.forEach((w, i) => {
      let keep: boolean;
      if (choice === "none") keep = false;
      else if (choice === "all") keep = true;
      else if (typeof choice === "function") keep = choice(i, w.lba);
      else keep = choice.rng() < (choice.keep ?? 0.5);
      if (keep) out.set(w.data, w.lba * BLOCK_SIZE);
    });
    return new MemoryBlockDevice(this.blocks, out);
  }

  #powerFails(): never {
    this.#off = true;
    throw new IoError("memory device: power cut");
  }

  #short(op: string, count: number, have: number): never {
    throw new IoError(`memory device: ${op} of ${count} blocks got ${have} buffers`);
  }

  #check(op: string, lba: number, count: number, buf: Uint8Array | null): void {
    if (this.#off || (op === "read" && this.#budget <= 0)) this.#powerFails();
    if (
      !Number.isInteger(lba) ||
      !Number.isInteger(count) ||
      lba < 0 ||
      count < 0 ||
      lba + count > this.blocks
    ) {
      throw new IoError(
        `memory device: ${op} of ${count} blocks at ${lba} is outside the device (${this.blocks} blocks)`,
      );
    }
    if (buf !== null && buf.length < count * BLOCK_SIZE) {
      throw new IoError(
        `memory device: ${op} of ${count} blocks needs ${count * BLOCK_SIZE} bytes, the buffer has ${buf.length}`,
      );
    }
  }
}
