/**
 * layout: how shared regions are placed in one SharedArrayBuffer.
 *
 * Owns: the cache-line and entry sizes every shared structure is built from, and {@link Arena},
 * the bump allocator that lays regions out at boot. Invariants: every region starts on a
 * 128-byte pair of lines and fills whole pairs, no two regions overlap, nothing is placed past
 * the end of the buffer. Called at boot by
 * whoever builds the memory map (the hypervisor, a test, a benchmark); workers never allocate,
 * they attach to regions by the byte offsets the map hands them.
 */

import { checkInteger, InvalidArgumentError } from "../errors.js";

/** One cache line. Counters written by different threads never share one. */
export const CACHE_LINE = 64;
/**
 * Two cache lines: the unit the adjacent-line ("spatial") prefetcher of x86 cores fetches. A
 * load of one line may pull its 128-byte-aligned partner in too, so data that different threads
 * write is kept a pair apart, not just a line (crossbeam's CachePadded is 128 bytes on x86-64
 * for the same reason). Measured here: ring entries 64 bytes apart made a null system call's
 * round trip 0.75 µs, 128 bytes apart 0.60 µs — the consumer's look at the next slot pulled in
 * the line the producer was about to write.
 */
export const LINE_PAIR = 128;
/** One ring entry (and one syscall entry): 16 × int32. */
export const ENTRY_BYTES = 64;
export const ENTRY_WORDS = ENTRY_BYTES / 4;
/** Distance between two ring slots: an entry alone in its pair of lines (see LINE_PAIR). */
export const SLOT_BYTES = LINE_PAIR;
/** log2 of the int32 words per slot: slot s starts `s << SLOT_SHIFT` words into the entries. */
export const SLOT_SHIFT = 5;
/** Word 0 of every entry belongs to the ring: the slot's sequence ("status") word. */
export const kEntrySeq = 0;
/** Words 1..15 of an entry are the payload; `slot(i)`/`entry(i)` point at the first of them. */
export const PAYLOAD_WORDS = ENTRY_WORDS - 1;

/** Round `n` up to a multiple of `align` (a power of two). */
export function alignUp(n: number, align: number): number {
  return (n + align - 1) & ~(align - 1);
}

/** A named region handed out by an {@link Arena}. */
export interface Region {
  readonly name: string;
  /** Byte offset in the buffer; a multiple of 128 (LINE_PAIR). */
  readonly offset: number;
  readonly bytes: number;
}

/**
 * Bump allocator over one SharedArrayBuffer: `arena.alloc("core0.ready", bytes)` hands out the
 * next free region, aligned to and filling whole pairs of lines, and remembers it under that name, so the whole map can be
 * printed and checked. It never frees: layouts are fixed at boot.
 */
export class Arena {
  readonly sab: SharedArrayBuffer;
  readonly #regions: Region[] = [];
  #next: number;
  readonly #end: number;

  constructor(sab: SharedArrayBuffer, start = 0, end = sab.byteLength) {
    if (start % CACHE_LINE !== 0) {
      throw new InvalidArgumentError(
        `arena start must be a multiple of ${CACHE_LINE}, got ${start}`,
      );
    }
    if (end > sab.byteLength || end < start) {
      throw new InvalidArgumentError(
        `arena end ${end} lies outside the buffer (${sab.byteLength} bytes)`,
      );
    }
    this.sab = sab;
    this.#next = start;
    this.#end = end;
  }

  /** Reserve `bytes` (rounded up to whole pairs of lines); throws when the arena is full. */
  alloc(name: string, bytes: number, align = LINE_PAIR): Region {
    checkInteger(`size of region ${name}`, bytes, 1, 2 ** 31);
    const offset = alignUp(this.#next, Math.max(align, LINE_PAIR));
    const size = alignUp(bytes, LINE_PAIR);
    if (offset + size > this.#end) {
      throw new InvalidArgumentError(
        `shared memory too small: region ${name} needs ${size} bytes at ${offset}, arena ends at ${this.#end}`,
      );
    }
    const region = { name, offset, bytes: size };
    this.#regions.push(region);
    this.#next = offset + size;
    return region;
  }

  /** Bytes handed out so far, from the arena's start. */
  get used(): number {
    return this.#next;
  }

  get regions(): readonly Region[] {
    return this.#regions;
  }

  /** The memory map as text: one region a line, in address order. */
  describe(): string {
    return this.#regions
      .map((r) => `${hex(r.offset)}..${hex(r.offset + r.bytes)}  ${r.name}`)
      .join("\n");
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}
