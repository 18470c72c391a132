/**
 * nvme: the NVMe device model — an SR-IOV controller whose virtual functions each own queue
 * pairs, one namespace carved from a disk-image file on the host, and a share of a volatile
 * write cache. It runs on the hypervisor (main) thread as hardware does, concurrently with every
 * domain, and talks to the host through Node's event loop. It never spins and never blocks.
 *
 * Owns: the per-VF device state (queue heads and tails, phase tags, in-flight commands), the
 * write cache, the command contexts, the file handle of the image, and the NVMe registers of
 * every attached VF (layout in src/hw/nvme-regs.ts). Who calls: the hypervisor — open(), then
 * attachVf / resetVf / detachVf (the SR-IOV PF's onEnable / onReset / onDisable hooks),
 * powerCut() (fault injection), stats(), close(). Drivers talk to it only through registers,
 * doorbells and queues in shared memory; every byte the device reads or writes in a VF's memory
 * (queue entries, data) goes through the {@link DmaPort}, with the VF's requester id.
 *
 * Vocabulary
 *   queue pair  an SQ (64-byte commands, driver → device) and its CQ (16-byte completions,
 *               device → driver) in the VF's DMA memory. The driver publishes new commands by
 *               writing the SQ tail doorbell; the device consumes completions' room from the CQ
 *               head doorbell. Configured by registers, not by CREATE I/O SQ/CQ admin commands:
 *               an allowed simplification (see nvme-regs.ts).
 *   phase tag   bit 0 of a CQE's status half-word. The device writes 1 on its first pass over
 *               a CQ, 0 on the second, and so on (it inverts its phase on every wrap); a driver
 *               knows an entry is new when the tag differs from what it last saw there
 *               (NVMe base spec §4.6, "Phase Tag").
 *   context     a pre-allocated command slot with its own data buffer: a command holds one from
 *               fetch to completion, so the hot path allocates nothing.
 *   epoch       per VF, bumped by reset, failure, detach and power loss: a completion whose
 *               context carries an older epoch belongs to abandoned queues and is dropped.
 *
 * Doorbells and sleeping (NVMe's event index / shadow doorbells, io_uring's NEED_WAKEUP): each
 * VF's service loop parks with Waiter.waitAsync on the VF's doorbell wake word, laid out in park
 * mode (re-asserted before every wait, so a driver cannot make the hypervisor spin). A driver
 * rings by storing its SQ tail and calling Notifier.notify(), which makes a kernel call only if
 * the device announced that it sleeps. When work is already there after a round, the loop yields
 * to the event loop once (setImmediate) before the next round, so file I/O callbacks and other
 * VFs are never starved by a driver that keeps its SQ full.
 *
 * Commands (decode, then invoke): READ, WRITE, FLUSH with NVMe's opcodes; every check (opcode,
 * FUSE/PSDT, NSID, MDTS, LBA range, PRP alignment) happens before any work, and a failed check
 * completes the command with NVMe's generic status. A DMA that the DmaPort blocks completes the
 * command with Data Transfer Error; a WRITE's data is fetched into the command's own buffer
 * before anything reaches the cache, so a blocked WRITE changes nothing.
 *
 * Write cache (volatile, controller-wide, in the model's own memory):
 *   - WRITE copies its blocks into cache slots (dirty) and completes: the data is not durable.
 *   - READ takes cached blocks first, then reads the rest from the file (fs/promises, async).
 *     A block absent from the cache has no write-back in flight (only clean slots are evicted,
 *     and a slot turns clean only after its write landed), so file reads never race file writes
 *     of the same block: a READ fetched after a WRITE completed always sees that WRITE.
 *   - FLUSH writes every block of its namespace that was dirty when the flush started, then
 *     datasyncs the file, then completes. A block re-written during the flush is written again
 *     by a later flush; a flush therefore always ends, even under a steady stream of writes.
 *   - FUA writes (CDW12 bit 30) are cached, then flushed like a FLUSH limited to their blocks.
 *   - When a WRITE finds no room, it waits (FIFO, so writes are cached in arrival order) while
 *     the oldest dirty blocks are written back to the file — not synced.
 *   All file writes go through one serial writer (write-back and flush jobs, one at a time; a
 *   job writes its runs of consecutive blocks concurrently, and they are distinct blocks), so
 *   two writes of one block are never in flight together. A job copies its blocks into a
 *   staging buffer first, so a WRITE landing in a slot meanwhile cannot tear the file write;
 *   a slot turns clean only if nobody wrote it since it was staged.
 *
 * Power loss (powerCut): the cache is dropped — exactly the writes not flushed are lost, except
 * that blocks already written back (not yet fsynced) sit in the host's page cache and survive,
 * since the host process does not crash; the durability contract of src/fs/blockdev.ts allows
 * it (unflushed writes may persist in any subset). In-flight commands are abandoned (their
 * completions are never posted) and every VF goes VF_FAILED until it is reset.
 *
 * Function-level reset (a driver sets VFC_RESET and rings, clears VFC_ENABLE, or the hypervisor
 * calls resetVf — NVMe: CC.EN 1 → 0 resets the controller): its queues are abandoned, its NVMe
 * registers and interrupt word are cleared, vrGeneration is bumped and the VF is VF_READY
 * again. The cache keeps its blocks: reset is not power loss.
 *
 * Interrupts (MSI-X in spirit): after posting completions the device notifies the wake word
 * whose physical offset the driver wrote into vrIrqWord, once per batch, and counts
 * vsInterrupts. That word is written with the Notifier's protocol only (it lowers a raised
 * flag and wakes sleepers); interrupt remapping (VT-d chapter 5) is not modelled.
 *
 * Completion ordering: a CQE is written in two DMAs — dwords 0-2, then dword 3 with the CID,
 * phase and status — as PCIe posted writes arrive in order, so a driver that sees the new phase
 * (Atomics.load) sees the rest of the entry and the data DMA'd before it.
 *
 * close() stops the service loops, waits for file I/O in flight to settle, and closes the file.
 * It flushes nothing: dirty blocks still in the cache are lost, as at a power cut.
 *
 * Rejected: a thread for the device (the hypervisor already runs an event loop, and the
 * device's work is DMA copies and async file I/O); synchronous fs calls (they would stall every
 * other device model); a per-namespace cache (one budget shared by all VFs, like the DRAM of
 * one controller); writing back from the slots themselves (a concurrent WRITE would tear it).
 */

import { type FileHandle, open } from "node:fs/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import { EFAULT, EINVAL, EIO } from "../abi/errno.js";
import { checkInteger, InvalidArgumentError, panic } from "../errors.js";
import { initWakeWord, Notifier, WAKE_WORD_BYTES, Waiter } from "../shm/wake.js";
import { DMA_OK, type DmaPort } from "./dma.js";
import {
  CDW12_FUA,
  cqHeadDoorbell,
  NVME_CMD_FLUSH,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CQE_BYTES,
  NVME_LBA_BYTES,
  NVME_MAX_QUEUE_ENTRIES,
  NVME_MAX_QUEUE_PAIRS,
  NVME_MIN_QUEUE_ENTRIES,
  NVME_NSID,
  NVME_NSID_ALL,
  NVME_QUEUE_ALIGN,
  NVME_REGS_END,
  NVME_SC_DATA_TRANSFER_ERROR,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_NAMESPACE,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_OUT_OF_RANGE,
  NVME_SC_PRP_OFFSET_INVALID,
  NVME_SC_SUCCESS,
  NVME_SC_UNRECOVERED_READ,
  NVME_SC_WRITE_FAULT,
  NVME_SQE_BYTES,
  nqCqBaseHi,
  nqCqBaseLo,
  nqCqEntries,
  nqSqBaseHi,
  nqSqBaseLo,
  nqSqEntries,
  nrFailReason,
  nrLbaBytes,
  nrMaxTransfer,
  nrNsBlocks,
  nrQueueEntries,
  nrQueuePairs,
  nrReady,
  queueConfigWord,
  SQE_CDW12,
  SQE_CID,
  SQE_FLAGS,
  SQE_FLAGS_FUSE,
  SQE_FLAGS_PSDT,
  SQE_NSID,
  SQE_OPCODE,
  SQE_PRP1,
  SQE_SLBA,
  sqTailDoorbell,
  vsCacheHits,
  vsFlushes,
  vsReads,
  vsWriteBacks,
  vsWrites,
} from "./nvme-regs.js";
import type { PhysicalMemory } from "./physmem.js";
import {
  VF_DEVICE_REGS,
  VF_DISABLED,
  VF_DOORBELL_WAKE,
  VF_FAILED,
  VF_MAGIC_NVME,
  VF_READY,
  VF_REG_BYTES,
  VF_RESETTING,
  VF_STATS,
  VFC_ENABLE,
  VFC_RESET,
  type VfDescriptor,
  vrControl,
  vrGeneration,
  vrIndex,
  vrIrqWord,
  vrMagic,
  vrRid,
  vrStatus,
  vsBytes,
  vsCommands,
  vsDmaFaults,
  vsErrors,
  vsInterrupts,
} from "./vf.js";

const LBA = NVME_LBA_BYTES;

/** The part of the image file that one VF's namespace occupies. */
export interface NvmeNamespaceConfig {
  /** First block of the namespace in the image file (in {@link NVME_LBA_BYTES} units). */
  readonly lbaOffset: number;
  /** Blocks in the namespace. */
  readonly blocks: number;
}

export interface NvmeControllerOptions {
  /** The machine's memory: the device reaches VF register blocks in it (not guest data). */
  readonly mem: PhysicalMemory;
  /** Every access to a VF's DMA memory goes through this port (the IOMMU in a machine). */
  readonly dma: DmaPort;
  /** Path of the disk-image file on the host. It must exist; it is grown to hold every namespace. */
  readonly image: string;
  /** Namespace of VF k at index k; namespaces may not overlap in the file. */
  readonly namespaces: readonly NvmeNamespaceConfig[];
  /**
   * Blocks in the volatile write cache, shared by every VF; default 1024 (4 MiB), enough for a
   * filesystem's log transaction plus its home-location writes, small enough that a burst of
   * writes exercises write-back. At least maxTransferBlocks.
   */
  readonly cacheBlocks?: number;
  /**
   * Most blocks one command may move (MDTS); default 32 = 128 KiB, MDTS = 5 with 4 KiB pages,
   * what many NVMe controllers report. At most 65536 (NLB is 16 bits).
   */
  readonly maxTransferBlocks?: number;
  /** Command contexts: commands in flight across all VFs; default 64. */
  readonly maxInflight?: number;
  /** Blocks one write-back (or one step of a flush) writes; default 64 (256 KiB). */
  readonly writeBackBlocks?: number;
}

/** Controller-wide counters (each VF's own are in its register block, line 2). */
export interface NvmeStats {
  readonly commands: number;
  readonly reads: number;
  readonly writes: number;
  readonly flushes: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** Blocks READ found in the cache. */
  readonly cacheHits: number;
  /** Blocks READ had to take from the file. */
  readonly cacheMisses: number;
  /** Blocks written back (not synced) to make room in the cache. */
  readonly writeBacks: number;
  /** Blocks written by FLUSH (and FUA) commands. */
  readonly flushedBlocks: number;
  /** Commands completed with a status other than success. */
  readonly errors: number;
  readonly dmaFaults: number;
  readonly interrupts: number;
  /** Blocks in the cache now, and how many of them are dirty. */
  readonly cachedBlocks: number;
  readonly dirtyBlocks: number;
  /** Commands fetched and not yet completed or abandoned. */
  readonly inflight: number;
  /** Power cuts so far. */
  readonly powerCuts: number;
}

const DEFAULT_CACHE_BLOCKS = 1024;
const DEFAULT_MAX_TRANSFER = 32;
const DEFAULT_MAX_INFLIGHT = 64;
const DEFAULT_WRITEBACK_BLOCKS = 64;
/** Largest queue base an IOVA may name: bases are kept as exact JS numbers (2^53). */
const MAX_IOVA_HI = 2 ** 21;

// ---------------------------------------------------------------------------------------------
// Intrusive slot lists and id queues: typed arrays, no allocation after construction.

/** Doubly linked lists over slot numbers; a slot is on at most one list at a time. */
class SlotList {
  head = -1;
  tail = -1;
  length = 0;
  constructor(
    readonly prev: Int32Array,
    readonly next: Int32Array,
  ) {}

  push(s: number): void {
    this.prev[s] = this.tail;
    this.next[s] = -1;
    if (this.tail >= 0) this.next[this.tail] = s;
    else this.head = s;
    this.tail = s;
    this.length++;
  }

  remove(s: number): void {
    const p = this.prev[s];
    const n = this.next[s];
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.length--;
  }

  shift(): number {
    const s = this.head;
    if (s >= 0) this.remove(s);
    return s;
  }

  clear(): void {
    this.head = this.tail = -1;
    this.length = 0;
  }
}

/** A FIFO of context ids (each id is in at most one queue at a time). */
class IdQueue {
  readonly #ids: Int32Array;
  #head = 0;
  length = 0;
  constructor(capacity: number) {
    this.#ids = new Int32Array(capacity);
  }
  push(id: number): void {
    if (this.length === this.#ids.length) panic("nvme: id queue overflow");
    this.#ids[(this.#head + this.length) % this.#ids.length] = id;
    this.length++;
  }
  peek(): number {
    return this.length === 0 ? -1 : this.#ids[this.#head];
  }
  shift(): number {
    if (this.length === 0) return -1;
    const id = this.#ids[this.#head];
    this.#head = (this.#head + 1) % this.#ids.length;
    this.length--;
    return id;
  }
}

// ---------------------------------------------------------------------------------------------
// WriteCache

const SLOT_FREE = 0;
const SLOT_CLEAN = 1;
const SLOT_DIRTY = 2;

/**
 * The volatile write cache: `capacity` slots of one block each, inside the model's buffer from
 * byte `base`. A cached block is CLEAN (the file holds the same bytes) or DIRTY (it does not);
 * clean slots are kept in LRU order and are the only ones evicted, dirty ones in the order they
 * became dirty (`seq`). Keys are file block numbers (namespace offset + LBA).
 */
class WriteCache {
  readonly capacity: number;
  readonly base: number;
  readonly block: Float64Array;
  readonly owner: Int32Array; // VF index that wrote the block (per-VF counters)
  readonly state: Uint8Array;
  readonly version: Uint32Array; // bumped by every write into the slot
  readonly seq: Float64Array; // when the block became dirty (cache clock)
  readonly free: SlotList;
  readonly clean: SlotList;
  readonly dirty: SlotList;
  readonly #index = new Map<number, number>();
  #clock = 0;

  constructor(capacity: number, base: number) {
    this.capacity = capacity;
    this.base = base;
    this.block = new Float64Array(capacity);
    this.owner = new Int32Array(capacity);
    this.state = new Uint8Array(capacity);
    this.version = new Uint32Array(capacity);
    this.seq = new Float64Array(capacity);
    const prev = new Int32Array(capacity);
    const next = new Int32Array(capacity);
    this.free = new SlotList(prev, next);
    this.clean = new SlotList(prev, next);
    this.dirty = new SlotList(prev, next);
    this.drop();
  }

  /** The cache clock: every block that became dirty before it has a smaller seq. */
  get clock(): number {
    return this.#clock;
  }

  /** Slot holding file block `b`, or -1. */
  find(b: number): number {
    return this.#index.get(b) ?? -1;
  }

  /** Byte offset (in the model's buffer) of slot `s`. */
  at(s: number): number {
    return this.base + s * LBA;
  }

  /** A read used slot `s`: a clean slot moves to the young end of the LRU. */
  touch(s: number): void {
    if (this.state[s] === SLOT_CLEAN) {
      this.clean.remove(s);
      this.clean.push(s);
    }
  }

  /** True if blocks [first, first+n) can be cached now without waiting for a write-back. */
  fits(first: number, n: number): boolean {
    let need = 0;
    let cleanInRange = 0;
    for (let i = 0; i < n; i++) {
      const s = this.find(first + i);
      if (s < 0) need++;
      else if (this.state[s] === SLOT_CLEAN) cleanInRange++;
    }
    return need <= this.free.length + this.clean.length - cleanInRange;
  }

  /**
   * Cache n blocks from `buf` at byte `from` as file blocks [first, first+n), dirty. Call only
   * after fits() said yes. Cached blocks of the range are dirtied first, so evicting a clean
   * slot for a new block never evicts one of this same write.
   */
  put(buf: Uint8Array, from: number, first: number, n: number, owner: number): void {
    for (let i = 0; i < n; i++) {
      const s = this.find(first + i);
      if (s >= 0) this.#store(buf, from + i * LBA, s, owner);
    }
    for (let i = 0; i < n; i++) {
      const b = first + i;
      if (this.find(b) >= 0) continue;
      let s = this.free.shift();
      if (s < 0) {
        s = this.clean.shift();
        if (s < 0) panic("nvme: cache put without room");
        this.#index.delete(this.block[s]);
        this.state[s] = SLOT_FREE;
      }
      this.block[s] = b;
      this.#index.set(b, s);
      this.#store(buf, from + i * LBA, s, owner);
    }
  }

  #store(buf: Uint8Array, from: number, s: number, owner: number): void {
    buf.copyWithin(this.at(s), from, from + LBA);
    this.owner[s] = owner;
    this.version[s] = (this.version[s] + 1) >>> 0;
    if (this.state[s] !== SLOT_DIRTY) {
      if (this.state[s] === SLOT_CLEAN) this.clean.remove(s);
      this.state[s] = SLOT_DIRTY;
      this.seq[s] = this.#clock++;
      this.dirty.push(s);
    }
  }

  /** Up to out.length of the oldest dirty slots, into `out`; returns how many. */
  oldestDirty(out: Int32Array): number {
    let n = 0;
    for (let s = this.dirty.head; s >= 0 && n < out.length; s = this.dirty.next[s]) out[n++] = s;
    return n;
  }

  /**
   * Up to out.length dirty slots whose blocks lie in [first, end) and that became dirty before
   * `limit` (the clock when a flush started); returns how many.
   */
  dirtyIn(first: number, end: number, limit: number, out: Int32Array): number {
    let n = 0;
    for (let s = this.dirty.head; s >= 0 && n < out.length; s = this.dirty.next[s]) {
      if (this.seq[s] >= limit) break; // the dirty list is in seq order
      const b = this.block[s];
      if (b >= first && b < end) out[n++] = s;
    }
    return n;
  }

  /**
   * Slot `s` was written to the file with the bytes of its version `v`: it is clean if nobody
   * wrote it since; otherwise it is dirty anew (younger than any flush in progress).
   */
  settle(s: number, v: number): void {
    if (this.state[s] !== SLOT_DIRTY) return;
    this.dirty.remove(s);
    if (this.version[s] === v) {
      this.state[s] = SLOT_CLEAN;
      this.clean.push(s);
    } else {
      this.seq[s] = this.#clock++;
      this.dirty.push(s);
    }
  }

  /** Forget everything (power loss; also the initial state). */
  drop(): void {
    this.#index.clear();
    this.free.clear();
    this.clean.clear();
    this.dirty.clear();
    this.state.fill(SLOT_FREE);
    for (let s = 0; s < this.capacity; s++) this.free.push(s);
  }

  get cached(): number {
    return this.capacity - this.free.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Device state

/** One queue pair of a VF, as the device sees it. Device thread only. */
class QueuePair {
  active = false;
  sqBase = 0;
  sqEntries = 0;
  /** Next SQ slot the device will fetch (NVMe's SQ head pointer, reported in every CQE). */
  sqHead = 0;
  cqBase = 0;
  cqEntries = 0;
  /** Next CQ slot the device will write. */
  cqTail = 0;
  /** Phase tag of the device's current pass over the CQ: 1 on the first. */
  phase = 1;
  /** Commands fetched from this SQ and not yet completed: each has a CQ slot reserved. */
  inflight = 0;
  constructor(
    /** Queue pair index (SQ id = q + 1 in CQEs). */
    readonly q: number,
    /** Absolute int32 index of the SQ tail doorbell. */
    readonly sqTailWord: number,
    /** Absolute int32 index of the CQ head doorbell. */
    readonly cqHeadWord: number,
  ) {}

  reset(): void {
    this.active = false;
    this.sqHead = this.cqTail = this.inflight = 0;
    this.phase = 1;
  }
}

/** One attached VF. Device thread only. */
class VfState {
  readonly index: number;
  readonly rid: number;
  /** Int32 index of the first word of the register block. */
  readonly base: number;
  /** First file block of the namespace, and its size in blocks. */
  readonly nsFirst: number;
  readonly nsBlocks: number;
  readonly waiter: Waiter;
  readonly doorbell: Notifier;
  readonly queues: QueuePair[] = [];
  attached = true;
  enabled = false;
  epoch = 0;
  /** vrControl as of the last service round. */
  lastControl = 0;
  /** vrIrqWord the notifier below was made for. */
  irqOffset = 0;
  irq: Notifier | null = null;
  /** Completions were posted since the last interrupt. */
  irqPending = false;
  /** Work check for the service loop (bound once: cheap, no side effects). */
  ready: () => boolean = () => false;
  loop: Promise<void> = Promise.resolve();

  constructor(desc: VfDescriptor, ns: NvmeNamespaceConfig, sab: SharedArrayBuffer) {
    this.index = desc.index;
    this.rid = desc.rid;
    this.base = desc.regs / 4;
    this.nsFirst = ns.lbaOffset;
    this.nsBlocks = ns.blocks;
    const word = desc.regs + VF_DOORBELL_WAKE;
    this.waiter = new Waiter(sab, word);
    this.doorbell = new Notifier(sab, word);
    for (let q = 0; q < NVME_MAX_QUEUE_PAIRS; q++) {
      this.queues.push(
        new QueuePair(q, this.base + sqTailDoorbell(q), this.base + cqHeadDoorbell(q)),
      );
    }
  }
}

/** A command in flight: pre-allocated, with a data buffer of maxTransferBlocks blocks. */
class Command {
  vf: VfState | null = null;
  queue: QueuePair | null = null;
  epoch = 0;
  cid = 0;
  opcode = 0;
  /** First file block and block count of a READ or WRITE. */
  block = 0;
  blocks = 0;
  /** IOVA of the data (PRP1). */
  prp = 0;
  fua = false;
  /** File blocks [rangeFirst, rangeEnd) a FLUSH (or FUA write) must make durable. */
  rangeFirst = 0;
  rangeEnd = 0;
  /** File reads still outstanding, and whether one of them failed. */
  pending = 0;
  ioError = false;
  /** Which blocks of a READ must come from the file. */
  readonly miss: Uint8Array;
  /** File-read callbacks, bound once. */
  onRead: () => void = () => {};
  onReadError: () => void = () => {};

  constructor(
    readonly id: number,
    /** Byte offset of its buffer in the model's memory. */
    readonly at: number,
    /** views[n]: the first n blocks of its buffer (made once: DMA takes a Uint8Array). */
    readonly views: readonly Uint8Array[],
  ) {
    this.miss = new Uint8Array(views.length);
  }
}

// ---------------------------------------------------------------------------------------------
// NvmeController

export class NvmeController {
  readonly maxTransferBlocks: number;
  readonly cacheBlocks: number;
  readonly #mem: PhysicalMemory;
  readonly #i32: Int32Array;
  readonly #dma: DmaPort;
  readonly #fh: FileHandle;
  readonly #namespaces: readonly NvmeNamespaceConfig[];
  readonly #vfs = new Map<number, VfState>();
  /** The model's own memory: cache slots, staging, command buffers. Not shared. */
  readonly #buf: Uint8Array;
  readonly #cache: WriteCache;
  readonly #cmds: Command[] = [];
  readonly #freeCmds: Int32Array;
  #freeCount: number;
  /** Commands waiting for room in the cache (FIFO). */
  readonly #roomWait: IdQueue;
  /** FLUSH and FUA commands waiting for the writer. */
  readonly #jobs: IdQueue;
  // Staging for the writer: byte offset, and per staged block its slot and version.
  readonly #stagingAt: number;
  readonly #stageSlot: Int32Array;
  readonly #stageVersion: Uint32Array;
  readonly #stageBlock: Float64Array;
  // Scratch for one SQE and one CQE, with the views DMA needs.
  readonly #sqe = new Uint8Array(NVME_SQE_BYTES);
  readonly #sqeView = new DataView(this.#sqe.buffer);
  readonly #cqe = new Uint8Array(NVME_CQE_BYTES);
  readonly #cqeView = new DataView(this.#cqe.buffer);
  readonly #cqeHead = this.#cqe.subarray(0, 12);
  readonly #cqeTail = this.#cqe.subarray(12, 16);
  #writerBusy = false;
  #writeBackWanted = false;
  /** A file write landed since the last datasync began. */
  #unsynced = false;
  #powerEpoch = 0;
  #starved = false;
  #closed = false;
  /** File reads in flight, and the resolver close() waits on. */
  #io = 0;
  #settled: (() => void) | null = null;
  readonly #totals = {
    commands: 0,
    reads: 0,
    writes: 0,
    flushes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    cacheHits: 0,
    cacheMisses: 0,
    writeBacks: 0,
    flushedBlocks: 0,
    errors: 0,
    dmaFaults: 0,
    interrupts: 0,
    powerCuts: 0,
  };

  /** Open the image and build a controller; see {@link NvmeControllerOptions}. */
  static async open(options: NvmeControllerOptions): Promise<NvmeController> {
    const cfg = checkOptions(options);
    const fh = await open(options.image, "r+");
    try {
      const end = options.namespaces.reduce((m, ns) => Math.max(m, ns.lbaOffset + ns.blocks), 0);
      const { size } = await fh.stat();
      if (size < end * LBA) await fh.truncate(end * LBA);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new NvmeController(options, cfg, fh);
  }

  private constructor(options: NvmeControllerOptions, cfg: Sizes, fh: FileHandle) {
    this.#mem = options.mem;
    this.#i32 = options.mem.i32;
    this.#dma = options.dma;
    this.#fh = fh;
    this.#namespaces = options.namespaces.map((ns) => ({ ...ns }));
    this.maxTransferBlocks = cfg.maxTransfer;
    this.cacheBlocks = cfg.cacheBlocks;
    const cmdBytes = cfg.maxTransfer * LBA;
    this.#stagingAt = cfg.cacheBlocks * LBA;
    const cmdsAt = this.#stagingAt + cfg.writeBack * LBA;
    this.#buf = new Uint8Array(cmdsAt + cfg.maxInflight * cmdBytes);
    this.#cache = new WriteCache(cfg.cacheBlocks, 0);
    this.#stageSlot = new Int32Array(cfg.writeBack);
    this.#stageVersion = new Uint32Array(cfg.writeBack);
    this.#stageBlock = new Float64Array(cfg.writeBack);
    this.#freeCmds = new Int32Array(cfg.maxInflight);
    for (let id = 0; id < cfg.maxInflight; id++) {
      const at = cmdsAt + id * cmdBytes;
      const views: Uint8Array[] = [new Uint8Array(0)];
      for (let n = 1; n <= cfg.maxTransfer; n++) views.push(this.#buf.subarray(at, at + n * LBA));
      const cmd = new Command(id, at, views);
      cmd.onRead = () => this.#readDone(cmd, false);
      cmd.onReadError = () => this.#readDone(cmd, true);
      this.#cmds.push(cmd);
      this.#freeCmds[id] = id;
    }
    this.#freeCount = cfg.maxInflight;
    this.#roomWait = new IdQueue(cfg.maxInflight);
    this.#jobs = new IdQueue(cfg.maxInflight);
  }

  // ---- the hypervisor's side: VF life cycle ----

  /**
   * Bring up VF `desc.index` (SR-IOV onEnable): write its identity registers, lay out its
   * doorbell wake word in park mode, bump its generation, set VF_READY and start serving it.
   */
  attachVf(desc: VfDescriptor): void {
    this.#checkOpen();
    if (desc.kind !== "nvme") {
      throw new InvalidArgumentError(`attachVf: VF ${desc.index} is a ${desc.kind}, not an nvme`);
    }
    const ns = this.#namespaces[checkInteger("VF index", desc.index, 0, 65535)];
    if (!ns) {
      throw new InvalidArgumentError(
        `attachVf: no namespace configured for VF ${desc.index} (${this.#namespaces.length} namespaces)`,
      );
    }
    checkInteger("VF rid", desc.rid, 0, 0xffff);
    checkInteger("VF register block", desc.regs, 0, this.#mem.bytes - VF_REG_BYTES);
    if (desc.regs % VF_REG_BYTES !== 0) {
      throw new InvalidArgumentError(
        `attachVf: register block at ${desc.regs} is not ${VF_REG_BYTES}-aligned`,
      );
    }
    if (this.#vfs.has(desc.index)) {
      throw new InvalidArgumentError(`attachVf: VF ${desc.index} is already attached`);
    }
    const vf = new VfState(desc, ns, this.#mem.sab);
    const i32 = this.#i32;
    const b = vf.base;
    i32.fill(0, b + VF_STATS / 4, b + NVME_REGS_END / 4); // counters and NVMe registers
    initWakeWord(this.#mem.sab, desc.regs + VF_DOORBELL_WAKE, "park");
    this.#writeIdentity(vf);
    Atomics.store(i32, b + vrMagic, VF_MAGIC_NVME); // publish: identity
    Atomics.store(i32, b + vrIndex, desc.index); // publish
    Atomics.store(i32, b + vrRid, desc.rid); // publish
    Atomics.store(i32, b + vrControl, 0); // publish: no driver yet
    Atomics.store(i32, b + vrIrqWord, 0); // publish
    Atomics.store(i32, b + vrStatus, VF_READY); // publish: the VF may be configured
    Atomics.add(i32, b + vrGeneration, 1); // publish: a new device instance (last)
    Atomics.notify(i32, b + vrGeneration); // wake: a driver waiting for its VF to come back
    vf.ready = () => this.#hasWork(vf);
    this.#vfs.set(desc.index, vf);
    vf.loop = this.#serve(vf);
  }

  /** Function-level reset of VF `index` (SR-IOV onReset, or the supervisor). */
  resetVf(index: number): void {
    this.#checkOpen();
    this.#reset(this.#vf(index));
    this.#raiseInterrupts();
  }

  /**
   * Stop serving VF `index` (SR-IOV onDisable): its queues are abandoned and it reads
   * VF_DISABLED. Cached blocks of its namespace stay in the cache (dirty ones too).
   */
  detachVf(index: number): void {
    this.#checkOpen();
    this.#disable(this.#vf(index));
    this.#vfs.delete(index);
    this.#raiseInterrupts();
  }

  /**
   * Power loss: drop the cache, abandon every command in flight, and fail every VF until it is
   * reset. What was written back but not synced survives in the host's page cache (see header).
   */
  powerCut(): void {
    this.#checkOpen();
    this.#totals.powerCuts++;
    this.#powerEpoch++;
    this.#cache.drop();
    this.#writeBackWanted = false;
    for (let id = this.#roomWait.shift(); id >= 0; id = this.#roomWait.shift()) {
      this.#release(this.#cmds[id]);
    }
    for (let id = this.#jobs.shift(); id >= 0; id = this.#jobs.shift()) {
      this.#release(this.#cmds[id]);
    }
    for (const vf of this.#vfs.values()) this.#fail(vf, EIO);
    this.#raiseInterrupts();
  }

  /** Controller-wide counters. */
  stats(): NvmeStats {
    return {
      ...this.#totals,
      cachedBlocks: this.#cache.cached,
      dirtyBlocks: this.#cache.dirty.length,
      inflight: this.#cmds.length - this.#freeCount,
    };
  }

  /**
   * Stop serving every VF (they read VF_DISABLED), let file I/O in flight settle, close the
   * image. Nothing is flushed: dirty cached blocks are lost, as at a power cut.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const loops: Promise<void>[] = [];
    for (const vf of this.#vfs.values()) {
      this.#disable(vf);
      loops.push(vf.loop);
    }
    this.#vfs.clear();
    await Promise.all(loops);
    if (this.#io > 0 || this.#writerBusy) {
      await new Promise<void>((resolve) => {
        this.#settled = resolve;
      });
    }
    await this.#fh.close();
  }

  // ---- service loop ----

  /** Serve VF `vf` until it is detached or the controller closes. */
  async #serve(vf: VfState): Promise<void> {
    while (!this.#closed && vf.attached) {
      if (vf.ready()) {
        await nextTurn(); // work came during the last round: let I/O callbacks run first
      } else {
        if (vf.waiter.mode !== "park") vf.waiter.mode = "park"; // the hypervisor never spins
        await vf.waiter.waitAsync(vf.ready);
      }
      if (this.#closed || !vf.attached) return;
      this.#service(vf);
    }
  }

  /** True if a service round would do something. Called many times: no side effects. */
  #hasWork(vf: VfState): boolean {
    if (this.#closed || !vf.attached) return true;
    const i32 = this.#i32;
    if (Atomics.load(i32, vf.base + vrControl) !== vf.lastControl) return true; // consume
    if (!vf.enabled || this.#freeCount === 0) return false;
    for (let q = 0; q < NVME_MAX_QUEUE_PAIRS; q++) {
      const qp = vf.queues[q];
      if (!qp.active) continue;
      const tail = Atomics.load(i32, qp.sqTailWord); // consume: published commands
      if (tail !== qp.sqHead && this.#credits(qp) > 0) return true;
    }
    return false;
  }

  /**
   * CQ slots the device may still reserve for new commands on `qp`; a doorbell value out of
   * range counts as room, so that the round that fetches sees it and fails the VF.
   */
  #credits(qp: QueuePair): number {
    const head = Atomics.load(this.#i32, qp.cqHeadWord); // consume: CQ entries the driver took
    if (head < 0 || head >= qp.cqEntries) return 1;
    const used = (qp.cqTail - head + qp.cqEntries) % qp.cqEntries;
    return qp.cqEntries - 1 - used - qp.inflight;
  }

  /** One round: control changes, then every command the SQs hold (as far as CQ room allows). */
  #service(vf: VfState): void {
    const i32 = this.#i32;
    const ctl = Atomics.load(i32, vf.base + vrControl); // consume: the driver's control bits
    if (ctl !== vf.lastControl) {
      vf.lastControl = ctl;
      if ((ctl & VFC_RESET) !== 0) this.#reset(vf);
      else if ((ctl & VFC_ENABLE) === 0) {
        if (vf.enabled) this.#reset(vf); // NVMe: CC.EN 1 → 0 resets the controller
      } else if (!vf.enabled && Atomics.load(i32, vf.base + vrStatus) === VF_READY) {
        // load: our own status word (a failed VF takes no enable until it is reset)
        this.#enable(vf);
      }
    }
    for (let q = 0; q < NVME_MAX_QUEUE_PAIRS && vf.enabled; q++) {
      if (vf.queues[q].active) this.#fetch(vf, vf.queues[q]);
    }
    this.#raiseInterrupts();
  }

  /** VFC_ENABLE: take the queue configuration (NVMe: CREATE I/O SQ/CQ), then report ready. */
  #enable(vf: VfState): void {
    const i32 = this.#i32;
    for (let q = 0; q < NVME_MAX_QUEUE_PAIRS; q++) {
      const qp = vf.queues[q];
      qp.reset();
      const w = (field: number) => Atomics.load(i32, vf.base + queueConfigWord(q, field)); // consume
      const sqEntries = w(nqSqEntries);
      if (sqEntries === 0 && q > 0) continue;
      const cqEntries = w(nqCqEntries);
      const sqHi = w(nqSqBaseHi) >>> 0;
      const cqHi = w(nqCqBaseHi) >>> 0;
      const sqBase = (w(nqSqBaseLo) >>> 0) + sqHi * 2 ** 32;
      const cqBase = (w(nqCqBaseLo) >>> 0) + cqHi * 2 ** 32;
      const max = NVME_MAX_QUEUE_ENTRIES;
      if (
        sqEntries < NVME_MIN_QUEUE_ENTRIES ||
        sqEntries > max ||
        cqEntries < NVME_MIN_QUEUE_ENTRIES ||
        cqEntries > max ||
        sqHi >= MAX_IOVA_HI ||
        cqHi >= MAX_IOVA_HI ||
        sqBase % NVME_QUEUE_ALIGN !== 0 ||
        cqBase % NVME_QUEUE_ALIGN !== 0
      ) {
        this.#fail(vf, EINVAL);
        return;
      }
      qp.sqBase = sqBase;
      qp.sqEntries = sqEntries;
      qp.cqBase = cqBase;
      qp.cqEntries = cqEntries;
      qp.active = true;
    }
    vf.enabled = true;
    Atomics.store(i32, vf.base + nrReady, 1); // publish: CSTS.RDY
    Atomics.notify(i32, vf.base + nrReady); // wake: the driver waiting for ready
  }

  /** Fetch and start every command published on `qp` that has a CQ slot and a context. */
  #fetch(vf: VfState, qp: QueuePair): void {
    const i32 = this.#i32;
    while (vf.enabled) {
      const tail = Atomics.load(i32, qp.sqTailWord); // consume: commands published up to tail
      if (tail === qp.sqHead) return;
      const head = Atomics.load(i32, qp.cqHeadWord); // consume: CQ entries the driver took
      if (tail < 0 || tail >= qp.sqEntries || head < 0 || head >= qp.cqEntries) {
        this.#fail(vf, EINVAL); // NVMe: an invalid doorbell write
        return;
      }
      if (this.#credits(qp) <= 0) return; // the driver notifies after it moves the CQ head
      if (this.#freeCount === 0) {
        this.#starved = true; // a released context wakes the loops again
        return;
      }
      if (this.#dma.read(vf.rid, qp.sqBase + qp.sqHead * NVME_SQE_BYTES, this.#sqe) !== DMA_OK) {
        this.#dmaFault(vf);
        this.#fail(vf, EFAULT); // NVMe: a failed SQ fetch is a controller fatal status
        return;
      }
      qp.sqHead = qp.sqHead + 1 === qp.sqEntries ? 0 : qp.sqHead + 1;
      qp.inflight++;
      const cmd = this.#cmds[this.#freeCmds[--this.#freeCount]];
      cmd.vf = vf;
      cmd.queue = qp;
      cmd.epoch = vf.epoch;
      this.#start(cmd);
    }
  }

  // ---- commands: decode, then invoke ----

  #start(cmd: Command): void {
    const vf = cmd.vf as VfState;
    const d = this.#sqeView;
    cmd.cid = d.getUint16(SQE_CID, true);
    cmd.opcode = d.getUint8(SQE_OPCODE);
    this.#totals.commands++;
    this.#bump(vf, vsCommands, 1);
    const status = this.#decode(vf, cmd);
    if (status !== NVME_SC_SUCCESS) {
      this.#finish(cmd, status);
      return;
    }
    if (cmd.opcode === NVME_CMD_READ) this.#read(cmd);
    else if (cmd.opcode === NVME_CMD_WRITE) this.#write(cmd);
    else this.#flush(cmd);
  }

  /** Check every field of the SQE in scratch; fill `cmd`. Returns a status; changes nothing else. */
  #decode(vf: VfState, cmd: Command): number {
    const d = this.#sqeView;
    const op = cmd.opcode;
    if (op !== NVME_CMD_READ && op !== NVME_CMD_WRITE && op !== NVME_CMD_FLUSH) {
      return NVME_SC_INVALID_OPCODE;
    }
    const counter = op === NVME_CMD_READ ? vsReads : op === NVME_CMD_WRITE ? vsWrites : vsFlushes;
    this.#bump(vf, counter, 1);
    if (op === NVME_CMD_READ) this.#totals.reads++;
    else if (op === NVME_CMD_WRITE) this.#totals.writes++;
    else this.#totals.flushes++;
    if ((d.getUint8(SQE_FLAGS) & (SQE_FLAGS_FUSE | SQE_FLAGS_PSDT)) !== 0) {
      return NVME_SC_INVALID_FIELD; // fused commands and SGLs are not supported
    }
    const nsid = d.getUint32(SQE_NSID, true);
    if (op === NVME_CMD_FLUSH) {
      if (nsid !== NVME_NSID && nsid !== NVME_NSID_ALL) return NVME_SC_INVALID_NAMESPACE;
      cmd.rangeFirst = vf.nsFirst;
      cmd.rangeEnd = vf.nsFirst + vf.nsBlocks;
      return NVME_SC_SUCCESS;
    }
    if (nsid !== NVME_NSID) return NVME_SC_INVALID_NAMESPACE;
    const cdw12 = d.getUint32(SQE_CDW12, true);
    const blocks = (cdw12 & 0xffff) + 1;
    if (blocks > this.maxTransferBlocks) return NVME_SC_INVALID_FIELD; // beyond MDTS
    const slba = d.getUint32(SQE_SLBA, true);
    if (d.getUint32(SQE_SLBA + 4, true) !== 0 || slba + blocks > vf.nsBlocks) {
      return NVME_SC_LBA_OUT_OF_RANGE;
    }
    const prpLo = d.getUint32(SQE_PRP1, true);
    if ((prpLo & 3) !== 0) return NVME_SC_PRP_OFFSET_INVALID; // PRPs are dword aligned
    cmd.prp = prpLo + d.getUint32(SQE_PRP1 + 4, true) * 2 ** 32;
    cmd.block = vf.nsFirst + slba;
    cmd.blocks = blocks;
    cmd.fua = op === NVME_CMD_WRITE && (cdw12 & CDW12_FUA) !== 0;
    cmd.rangeFirst = cmd.block;
    cmd.rangeEnd = cmd.block + blocks;
    return NVME_SC_SUCCESS;
  }

  /** READ: cached blocks now, the others from the file; then one DMA to the driver. */
  #read(cmd: Command): void {
    const vf = cmd.vf as VfState;
    const c = this.#cache;
    const buf = this.#buf;
    let missing = 0;
    for (let i = 0; i < cmd.blocks; i++) {
      const s = c.find(cmd.block + i);
      if (s >= 0) {
        buf.copyWithin(cmd.at + i * LBA, c.at(s), c.at(s) + LBA);
        c.touch(s);
        cmd.miss[i] = 0;
      } else {
        cmd.miss[i] = 1;
        missing++;
      }
    }
    const hits = cmd.blocks - missing;
    this.#totals.cacheHits += hits;
    this.#totals.cacheMisses += missing;
    if (hits > 0) this.#bump(vf, vsCacheHits, hits);
    if (missing === 0) {
      this.#deliverRead(cmd);
      return;
    }
    cmd.pending = 0;
    cmd.ioError = false;
    for (let i = 0; i < cmd.blocks; ) {
      if (cmd.miss[i] === 0) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < cmd.blocks && cmd.miss[j] === 1) j++;
      const from = cmd.at + i * LBA;
      buf.fill(0, from, cmd.at + j * LBA); // a short read (past the end) reads zeros
      cmd.pending++;
      this.#io++;
      this.#fh
        .read(buf, from, (j - i) * LBA, (cmd.block + i) * LBA)
        .then(cmd.onRead, cmd.onReadError);
      i = j;
    }
  }

  #readDone(cmd: Command, failed: boolean): void {
    this.#io--;
    if (failed) cmd.ioError = true;
    if (--cmd.pending === 0) {
      if (cmd.ioError) this.#finish(cmd, NVME_SC_UNRECOVERED_READ);
      else this.#deliverRead(cmd);
      this.#raiseInterrupts();
    }
    this.#checkSettled();
  }

  #deliverRead(cmd: Command): void {
    const vf = cmd.vf as VfState;
    if (!this.#current(cmd)) {
      this.#release(cmd); // abandoned: DMA nothing into a reset VF's memory
      return;
    }
    if (this.#dma.write(vf.rid, cmd.prp, cmd.views[cmd.blocks]) !== DMA_OK) {
      this.#dmaFault(vf);
      this.#finish(cmd, NVME_SC_DATA_TRANSFER_ERROR);
      return;
    }
    this.#totals.bytesRead += cmd.blocks * LBA;
    this.#bump(vf, vsBytes, cmd.blocks * LBA);
    this.#finish(cmd, NVME_SC_SUCCESS);
  }

  /** WRITE: fetch the data (all or nothing), then cache it, waiting for room if need be. */
  #write(cmd: Command): void {
    const vf = cmd.vf as VfState;
    if (this.#dma.read(vf.rid, cmd.prp, cmd.views[cmd.blocks]) !== DMA_OK) {
      this.#dmaFault(vf);
      this.#finish(cmd, NVME_SC_DATA_TRANSFER_ERROR); // nothing reached the cache
      return;
    }
    if (this.#roomWait.length === 0 && this.#cache.fits(cmd.block, cmd.blocks)) {
      this.#commit(cmd);
    } else {
      this.#roomWait.push(cmd.id);
      this.#wantWriteBack();
    }
  }

  #commit(cmd: Command): void {
    const vf = cmd.vf as VfState;
    this.#cache.put(this.#buf, cmd.at, cmd.block, cmd.blocks, vf.index);
    this.#totals.bytesWritten += cmd.blocks * LBA;
    this.#bump(vf, vsBytes, cmd.blocks * LBA);
    if (cmd.fua) {
      this.#jobs.push(cmd.id); // durable before it completes
      this.#startWriter();
    } else {
      this.#finish(cmd, NVME_SC_SUCCESS);
    }
  }

  /** Admit waiting writes, in order, while the cache has room for the first of them. */
  #admitWaiters(): void {
    for (let id = this.#roomWait.peek(); id >= 0; id = this.#roomWait.peek()) {
      const cmd = this.#cmds[id];
      if (!this.#current(cmd)) {
        this.#roomWait.shift();
        this.#release(cmd);
      } else if (this.#cache.fits(cmd.block, cmd.blocks)) {
        this.#roomWait.shift();
        this.#commit(cmd);
      } else {
        this.#wantWriteBack();
        return;
      }
    }
  }

  #flush(cmd: Command): void {
    this.#jobs.push(cmd.id);
    this.#startWriter();
  }

  // ---- the writer: write-back and flush jobs, one at a time ----

  #wantWriteBack(): void {
    this.#writeBackWanted = true;
    this.#startWriter();
  }

  #startWriter(): void {
    if (this.#writerBusy || this.#closed) return;
    this.#writerBusy = true;
    this.#writer().then(
      () => {
        this.#writerBusy = false;
        this.#checkSettled();
      },
      (err: unknown) => panic(`nvme: writer: ${err instanceof Error ? err.stack : String(err)}`),
    );
  }

  async #writer(): Promise<void> {
    while (!this.#closed) {
      if (this.#writeBackWanted) {
        this.#writeBackWanted = false;
        await this.#writeBack();
        continue;
      }
      const id = this.#jobs.shift();
      if (id < 0) return;
      await this.#flushJob(this.#cmds[id]);
    }
  }

  /** Write back the oldest dirty blocks (no sync) so that waiting writes find room. */
  async #writeBack(): Promise<void> {
    const power = this.#powerEpoch;
    const n = this.#cache.oldestDirty(this.#stageSlot);
    const ok = n === 0 || (await this.#writeStaged(n));
    if (power !== this.#powerEpoch || this.#closed) return;
    if (ok) {
      this.#totals.writeBacks += n;
      for (let k = 0; k < n; k++) {
        const s = this.#stageSlot[k];
        const vf = this.#vfs.get(this.#cache.owner[s]);
        if (vf) this.#bump(vf, vsWriteBacks, 1);
        this.#cache.settle(s, this.#stageVersion[k]);
      }
    } else {
      // The oldest dirty blocks cannot reach the file: fail the write that waits for them.
      const id = this.#roomWait.shift();
      if (id >= 0) this.#finish(this.#cmds[id], NVME_SC_WRITE_FAULT);
    }
    this.#admitWaiters();
    this.#raiseInterrupts();
  }

  /** FLUSH (or FUA WRITE): write the range's blocks dirty at the start, datasync, complete. */
  async #flushJob(cmd: Command): Promise<void> {
    const power = this.#powerEpoch;
    const limit = this.#cache.clock;
    let status = NVME_SC_SUCCESS;
    for (;;) {
      const n = this.#cache.dirtyIn(cmd.rangeFirst, cmd.rangeEnd, limit, this.#stageSlot);
      if (n === 0) break;
      const ok = await this.#writeStaged(n);
      if (power !== this.#powerEpoch || this.#closed) {
        this.#release(cmd); // abandoned by the power cut (or close) while it wrote
        return;
      }
      if (!ok) {
        status = NVME_SC_WRITE_FAULT;
        break;
      }
      this.#totals.flushedBlocks += n;
      for (let k = 0; k < n; k++) this.#cache.settle(this.#stageSlot[k], this.#stageVersion[k]);
    }
    if (status === NVME_SC_SUCCESS && this.#unsynced) {
      this.#unsynced = false; // writes landing from now on need a later sync
      try {
        await this.#fh.datasync();
      } catch {
        this.#unsynced = true;
        status = NVME_SC_WRITE_FAULT;
      }
      if (power !== this.#powerEpoch || this.#closed) {
        this.#release(cmd);
        return;
      }
    }
    this.#finish(cmd, status);
    this.#admitWaiters(); // flushed blocks are clean now: room for waiting writes
    this.#raiseInterrupts();
  }

  /**
   * Copy the n slots in #stageSlot into staging (sorted by file block, so neighbours go out in
   * one write), remember their versions, and write them to the file, every run at once. True
   * if all landed (and no power cut came meanwhile).
   */
  async #writeStaged(n: number): Promise<boolean> {
    const slots = this.#stageSlot;
    const c = this.#cache;
    for (let k = 1; k < n; k++) {
      const s = slots[k];
      let j = k - 1;
      for (; j >= 0 && c.block[slots[j]] > c.block[s]; j--) slots[j + 1] = slots[j];
      slots[j + 1] = s;
    }
    const at = this.#stagingAt;
    const blocks = this.#stageBlock;
    for (let k = 0; k < n; k++) {
      const s = slots[k];
      this.#buf.copyWithin(at + k * LBA, c.at(s), c.at(s) + LBA);
      this.#stageVersion[k] = c.version[s];
      blocks[k] = c.block[s]; // taken now: a power cut may reuse the slot while we wait
    }
    const power = this.#powerEpoch;
    // Every run goes to the file at once (libuv's pool runs up to four writes together): a job
    // of scattered blocks, such as a commit's, waits about one write, not one per run.
    const writes: Promise<boolean>[] = [];
    for (let k = 0; k < n; ) {
      let j = k + 1;
      while (j < n && blocks[j] === blocks[j - 1] + 1) j++;
      writes.push(this.#writeFile(at + k * LBA, (j - k) * LBA, blocks[k] * LBA));
      k = j;
    }
    const landed = await Promise.all(writes);
    return power === this.#powerEpoch && !this.#closed && landed.every(Boolean);
  }

  async #writeFile(from: number, bytes: number, position: number): Promise<boolean> {
    try {
      for (let done = 0; done < bytes; ) {
        const { bytesWritten } = await this.#fh.write(
          this.#buf,
          from + done,
          bytes - done,
          position + done,
        );
        this.#unsynced = true;
        done += bytesWritten;
      }
      return true;
    } catch {
      return false;
    }
  }

  // ---- completions and interrupts ----

  /** True if `cmd` still belongs to its VF's current queues. */
  #current(cmd: Command): boolean {
    const vf = cmd.vf as VfState;
    return vf.attached && vf.enabled && cmd.epoch === vf.epoch;
  }

  /** Complete `cmd` with `status` (post its CQE unless it was abandoned) and free its context. */
  #finish(cmd: Command, status: number): void {
    const vf = cmd.vf as VfState;
    const qp = cmd.queue as QueuePair;
    if (this.#current(cmd)) {
      qp.inflight--;
      if (status !== NVME_SC_SUCCESS) {
        this.#totals.errors++;
        this.#bump(vf, vsErrors, 1);
      }
      this.#post(vf, qp, cmd.cid, status);
    }
    this.#release(cmd);
  }

  /** Write one CQE: dwords 0-2, then dword 3 (CID, phase, status), which publishes it. */
  #post(vf: VfState, qp: QueuePair, cid: number, status: number): void {
    const d = this.#cqeView;
    d.setUint32(0, 0, true);
    d.setUint32(4, 0, true);
    d.setUint16(8, qp.sqHead, true);
    d.setUint16(10, qp.q + 1, true);
    d.setUint16(12, cid, true);
    d.setUint16(14, qp.phase | (status << 1), true);
    const at = qp.cqBase + qp.cqTail * NVME_CQE_BYTES;
    if (
      this.#dma.write(vf.rid, at, this.#cqeHead) !== DMA_OK ||
      this.#dma.write(vf.rid, at + 12, this.#cqeTail) !== DMA_OK
    ) {
      this.#dmaFault(vf);
      this.#fail(vf, EFAULT); // a CQ the device cannot write: controller fatal status
      return;
    }
    if (++qp.cqTail === qp.cqEntries) {
      qp.cqTail = 0;
      qp.phase ^= 1; // a new pass over the CQ: invert the phase tag
    }
    vf.irqPending = true;
  }

  /** Notify the interrupt word of every VF that has new completions (or news), once each. */
  #raiseInterrupts(): void {
    for (const vf of this.#vfs.values()) {
      if (!vf.irqPending) continue;
      vf.irqPending = false;
      this.#interrupt(vf, this.#irq(vf));
    }
  }

  #interrupt(vf: VfState, irq: Notifier | null): void {
    if (!irq) return;
    irq.notify(); // wake: the driver parked on its wake word
    this.#totals.interrupts++;
    this.#bump(vf, vsInterrupts, 1);
  }

  /** The notifier for the word the driver named in vrIrqWord (remade when it changes). */
  #irq(vf: VfState): Notifier | null {
    const w = Atomics.load(this.#i32, vf.base + vrIrqWord); // consume: the driver's choice
    if (w !== vf.irqOffset) {
      vf.irqOffset = w;
      const valid = w > 0 && w % WAKE_WORD_BYTES === 0 && w + WAKE_WORD_BYTES <= this.#mem.bytes;
      vf.irq = valid ? new Notifier(this.#mem.sab, w) : null;
    }
    return vf.irq;
  }

  // ---- VF state changes ----

  /** Drop `vf`'s queues: in-flight commands complete nowhere; its waiting writes go away. */
  #abandon(vf: VfState): void {
    vf.epoch++;
    vf.enabled = false;
    for (const qp of vf.queues) qp.reset();
    vf.irqPending = true; // a driver waiting for completions must wake and look
    this.#admitWaiters(); // releases abandoned waiters at the head of the queue
  }

  #setStatus(vf: VfState, status: number, reason: number): void {
    const i32 = this.#i32;
    Atomics.store(i32, vf.base + nrFailReason, reason); // publish
    Atomics.store(i32, vf.base + nrReady, status === VF_FAILED ? -1 : 0); // publish: CSTS
    Atomics.store(i32, vf.base + vrStatus, status); // publish: the VF's state
    Atomics.notify(i32, vf.base + nrReady); // wake: a driver waiting for ready
  }

  /** Stop serving `vf` for good (detach, close): VF_DISABLED, its driver and loop woken. */
  #disable(vf: VfState): void {
    this.#abandon(vf);
    this.#setStatus(vf, VF_DISABLED, 0);
    vf.attached = false;
    vf.irqPending = false;
    this.#interrupt(vf, this.#irq(vf)); // a driver waiting for completions sees DISABLED
    vf.doorbell.wakeAll(); // wake: the VF's service loop ends
  }

  /** The VF can no longer run its queues (bad configuration, queue DMA fault, power loss). */
  #fail(vf: VfState, reason: number): void {
    this.#abandon(vf);
    this.#setStatus(vf, VF_FAILED, reason);
  }

  /** Function-level reset (see header); the caller raises interrupts afterwards. */
  #reset(vf: VfState): void {
    const i32 = this.#i32;
    const b = vf.base;
    Atomics.store(i32, b + vrStatus, VF_RESETTING); // publish: drivers stop trusting the queues
    this.#abandon(vf);
    const irq = this.#irq(vf); // the old interrupt word, told once more after the reset
    vf.irqPending = false;
    i32.fill(0, b + VF_DEVICE_REGS / 4, b + NVME_REGS_END / 4); // no driver reads while RESETTING
    this.#writeIdentity(vf);
    Atomics.store(i32, b + vrIrqWord, 0); // publish: interrupts unconfigured
    Atomics.store(i32, b + vrControl, 0); // publish: VFC_RESET done, VFC_ENABLE clear
    vf.lastControl = 0;
    Atomics.store(i32, b + vrStatus, VF_READY); // publish
    Atomics.add(i32, b + vrGeneration, 1); // publish: the reset is complete (last)
    Atomics.notify(i32, b + vrGeneration); // wake: a driver waiting for its reset
    this.#interrupt(vf, irq); // a driver waiting for completions sees the new generation
    vf.irq = null;
    vf.irqOffset = 0;
  }

  #writeIdentity(vf: VfState): void {
    const i32 = this.#i32;
    const b = vf.base;
    Atomics.store(i32, b + nrNsBlocks, vf.nsBlocks); // publish: identity
    Atomics.store(i32, b + nrLbaBytes, LBA); // publish
    Atomics.store(i32, b + nrQueuePairs, NVME_MAX_QUEUE_PAIRS); // publish
    Atomics.store(i32, b + nrQueueEntries, NVME_MAX_QUEUE_ENTRIES); // publish
    Atomics.store(i32, b + nrMaxTransfer, this.maxTransferBlocks); // publish
  }

  // ---- small helpers ----

  #release(cmd: Command): void {
    cmd.vf = null;
    cmd.queue = null;
    this.#freeCmds[this.#freeCount++] = cmd.id;
    if (this.#starved) {
      this.#starved = false;
      for (const vf of this.#vfs.values()) vf.doorbell.wakeAll(); // wake: contexts are free again
    }
  }

  #dmaFault(vf: VfState): void {
    this.#totals.dmaFaults++;
    this.#bump(vf, vsDmaFaults, 1);
  }

  /** Add `n` to a device-written counter of `vf` (int32, wraps). */
  #bump(vf: VfState, word: number, n: number): void {
    const at = vf.base + word;
    Atomics.store(this.#i32, at, (this.#i32[at] + n) | 0); // publish: statistics for readers
  }

  #checkSettled(): void {
    if (this.#settled && this.#io === 0 && !this.#writerBusy) {
      const done = this.#settled;
      this.#settled = null;
      done();
    }
  }

  #vf(index: number): VfState {
    const vf = this.#vfs.get(index);
    if (!vf) throw new InvalidArgumentError(`VF ${index} is not attached`);
    return vf;
  }

  #checkOpen(): void {
    if (this.#closed) throw new InvalidArgumentError("the NVMe controller is closed");
  }
}

// ---------------------------------------------------------------------------------------------
// Option checks

interface Sizes {
  readonly cacheBlocks: number;
  readonly maxTransfer: number;
  readonly maxInflight: number;
  readonly writeBack: number;
}

function checkOptions(o: NvmeControllerOptions): Sizes {
  if (typeof o.image !== "string" || o.image === "") {
    throw new InvalidArgumentError("image must be the path of a disk-image file");
  }
  if (!Array.isArray(o.namespaces) || o.namespaces.length === 0) {
    throw new InvalidArgumentError("namespaces must list at least one namespace");
  }
  const spans = o.namespaces.map((ns, k) => {
    const first = checkInteger(`namespaces[${k}].lbaOffset`, ns.lbaOffset, 0, 2 ** 40);
    const blocks = checkInteger(`namespaces[${k}].blocks`, ns.blocks, 1, 2 ** 31 - 1);
    return { k, first, end: first + blocks };
  });
  spans.sort((a, b) => a.first - b.first);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].first < spans[i - 1].end) {
      throw new InvalidArgumentError(
        `namespaces[${spans[i].k}] overlaps namespaces[${spans[i - 1].k}] in the image`,
      );
    }
  }
  const maxTransfer = checkInteger(
    "maxTransferBlocks",
    o.maxTransferBlocks ?? DEFAULT_MAX_TRANSFER,
    1,
    65536,
  );
  const cacheBlocks = checkInteger(
    "cacheBlocks",
    o.cacheBlocks ?? Math.max(DEFAULT_CACHE_BLOCKS, maxTransfer),
    maxTransfer,
    2 ** 20,
  );
  const maxInflight = checkInteger("maxInflight", o.maxInflight ?? DEFAULT_MAX_INFLIGHT, 1, 65536);
  const writeBack = checkInteger(
    "writeBackBlocks",
    o.writeBackBlocks ?? Math.min(DEFAULT_WRITEBACK_BLOCKS, cacheBlocks),
    1,
    cacheBlocks,
  );
  return { cacheBlocks, maxTransfer, maxInflight, writeBack };
}
