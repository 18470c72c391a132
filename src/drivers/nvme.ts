/**
 * drivers/nvme: the NVMe VF driver — what the storage domain (a worker thread) runs to use its
 * virtual function of the NVMe device model (src/hw/nvme.ts). It is the filesystem's
 * {@link BlockDevice}, and it also offers a non-blocking submit / poll API (liburing's shape)
 * so the domain can keep several commands in flight.
 *
 * Owns: the VF's queue pair 0 (SQ and CQ), its bounce buffers and, by default, its interrupt
 * wake word — all inside the VF's DMA region, which the driver reaches at desc.dma.phys + k and
 * names to the device as desc.dma.iova + k. Who calls: one thread (the storage domain, or a
 * test's worker); it blocks in Atomics.wait, so never the hypervisor's thread.
 *
 * DMA region layout (chosen here, at attach):
 *
 *   + 0            SQ: entries × 64 bytes                              driver writes, device reads
 *   + ↑4096        CQ: entries × 16 bytes                              device writes, driver reads
 *   + ↑4096        interrupt wake word, 64 bytes (unless the caller gave its own)
 *   + ↑4096        bounce buffers: slots × blocksPerCommand × 4096     both (one per command)
 *
 * Commands. A command id (CID) is the index of a slot; a slot owns one bounce buffer and is in
 * flight from submission to its completion, so at most `slots` ≤ entries - 1 commands are
 * outstanding and neither queue can overflow. One PRP to a contiguous IOVA range (the bounce
 * buffer) replaces PRP lists: a command moves at most blocksPerCommand blocks (≤ the device's
 * MDTS); a longer read or write is split into as many commands as that takes.
 *
 * Batching (FlexSC): a blocking call prepares as many commands as there are free slots, then
 * rings the SQ tail doorbell once (store-release of the tail, then Notifier.notify(), which calls
 * into the kernel only if the device sleeps), then waits for completions. Between plug() and
 * unplug() (Linux's blk_plug) writes are only prepared: unplug() rings once for all of them and
 * waits — or, with wait = false, returns at once and lets them complete in the background (the
 * data is in the bounce buffers already). Running out of slots rings early and waits for some.
 * Plugged writes that nobody waited for yet are *pending*: a read, flush, FUA write, raw command
 * or the next plug() first waits for them (and throws their failure) — a read must see them, a
 * FLUSH covers only completed commands (NVMe base spec, Flush command), and two writes of one
 * block are never in flight together, since NVMe does not order commands. Inside an open plug
 * such a call runs after that wait and the plug stays open.
 *
 * Scattered reads (readv): a command's blocks are copied from its bounce buffer into one
 * caller buffer each — the buffer cache's blocks — through views of the bounce buffer's blocks
 * made at attach.
 *
 * FUA (write with fua): CDW12 bit 30, Force Unit Access — the command completes only once its
 * blocks are on the media (NVMe base spec, Write command, CDW12.FUA).
 *
 * Completions: a CQE is new when its phase tag equals the phase the driver expects; the driver
 * starts at phase 1 over a zeroed CQ and inverts its expectation every time its head wraps
 * (NVMe base spec §4.6). It consumes every new CQE, then stores the CQ head doorbell and
 * notifies the device (which may be waiting for CQ room). Waiting is Waiter.wait on the
 * interrupt word (hybrid: spin a little, then park); the device notifies that word after it
 * posts completions. The domain may pass its own wake word so that it parks on one word for
 * syscalls and completions alike.
 *
 * Errors: an NVMe error status becomes an {@link NvmeStatusError} (an IoError, errno EIO, with
 * the status) from the blocking calls, and -EIO from the non-blocking ones (`nvmeErrno`). A
 * reset, a power loss or a detach of the VF (vrGeneration changed, or vrStatus not VF_READY)
 * makes every call fail with IoError until reattach() reprograms the queues; so does a wait that
 * outlasts ioTimeoutMs (Linux's nvme io_timeout, 30 s by default), after which the queues'
 * state is unknown. Bad arguments are InvalidArgumentError (blocking) or -EINVAL (non-blocking).
 *
 * Allocation: the blocking paths allocate nothing but one view per partial chunk copied to or
 * from a caller's buffer (a TypedArray copy needs a view of the exact range); readv allocates
 * nothing.
 */

import { EAGAIN, EINVAL, EIO, ENODEV, ETIMEDOUT, errnoName } from "../abi/errno.js";
import { checkInteger, InvalidArgumentError, IoError } from "../errors.js";
import { BLOCK_SIZE, type BlockDevice } from "../fs/blockdev.js";
import {
  CDW12_FUA,
  CQE_DW3,
  cqHeadDoorbell,
  describeStatus,
  NVME_CMD_FLUSH,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CQE_BYTES,
  NVME_MAX_QUEUE_PAIRS,
  NVME_MIN_QUEUE_ENTRIES,
  NVME_NSID,
  NVME_QUEUE_ALIGN,
  NVME_SC_SUCCESS,
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
  nrReady,
  queueConfigWord,
  SQE_CDW12,
  SQE_CID,
  SQE_FLAGS,
  SQE_NSID,
  SQE_OPCODE,
  SQE_PRP1,
  SQE_SLBA,
  sqTailDoorbell,
} from "../hw/nvme-regs.js";
import type { PhysicalMemory } from "../hw/physmem.js";
import {
  VF_DISABLED,
  VF_DOORBELL_WAKE,
  VF_FAILED,
  VF_MAGIC_NVME,
  VF_READY,
  VF_RESETTING,
  VFC_ENABLE,
  VFC_RESET,
  type VfDescriptor,
  vrControl,
  vrGeneration,
  vrIrqWord,
  vrMagic,
  vrStatus,
} from "../hw/vf.js";
import {
  initWakeWord,
  Notifier,
  WAKE_WORD_BYTES,
  Waiter,
  type WaiterOptions,
} from "../shm/wake.js";

export interface NvmeDriverOptions {
  /** Entries of the SQ and of the CQ; default 64, at most what the device offers. */
  readonly queueEntries?: number;
  /** Blocks per command (the size of each bounce buffer); default the device's MDTS. */
  readonly blocksPerCommand?: number;
  /**
   * Physical byte offset of a wake word (laid out by the caller) that the device notifies on
   * completion — the domain's own; default a word inside the DMA region, in hybrid mode.
   */
  readonly irqWord?: number;
  /** Longest wait for a completion, a reset or an enable, in ms; default 30 000 (Linux's). */
  readonly ioTimeoutMs?: number;
  /** Options of the completion waiter (spin budget, counters). */
  readonly waiter?: WaiterOptions;
}

/** A raw command (NVMe passthrough, as Linux's NVME_IOCTL_IO_CMD): any opcode and fields. */
export interface NvmePassthrough {
  readonly opcode: number;
  /** Default the VF's namespace (1). */
  readonly nsid?: number;
  /** Default 0. */
  readonly slba?: number;
  /** Blocks (NLB + 1); default 1. */
  readonly blocks?: number;
  /**
   * IOVA of the data; default the command's bounce buffer, which holds blocksPerCommand blocks
   * (a raw command may name more: the device checks MDTS, the driver does not).
   */
  readonly prp1?: number;
  /** Bits ORed into CDW12 besides NLB (FUA is bit 30). */
  readonly cdw12?: number;
  /** SQE byte 1 (FUSE, PSDT). Default 0. */
  readonly flags?: number;
}

export interface NvmeDriverStats {
  /** Commands submitted and completions consumed. */
  readonly submitted: number;
  readonly completed: number;
  /** Completions with an error status. */
  readonly errors: number;
  /** SQ tail doorbell writes (each one covers a batch) and CQ head doorbell writes. */
  readonly sqDoorbells: number;
  readonly cqDoorbells: number;
  /** Times the driver waited for completions without finding one at once. */
  readonly waits: number;
  /** Times the CQ head wrapped (and the expected phase flipped). */
  readonly cqWraps: number;
  /** Function-level resets this driver requested. */
  readonly resets: number;
}

/** Called by poll() for each completed non-blocking command: its CID and NVMe status (0 = ok). */
export type NvmeCompletionHandler = (cid: number, status: number) => void;

/** An NVMe command failed: an IoError (errno EIO) that carries the NVMe status field. */
export class NvmeStatusError extends IoError {
  /** The status field of the CQE (SC bits 7:0, SCT bits 10:8, DNR bit 14). */
  readonly status: number;
  constructor(message: string, status: number) {
    super(message, EIO);
    this.status = status;
  }
}

/** The errno an NVMe status stands for inside the machine: 0, or -EIO. */
export function nvmeErrno(status: number): number {
  return status === NVME_SC_SUCCESS ? 0 : -EIO;
}

/** Linux's nvme io_timeout. */
const DEFAULT_IO_TIMEOUT_MS = 30_000;
const DEFAULT_QUEUE_ENTRIES = 64;

const SLOT_FREE = 0;
const SLOT_INFLIGHT = 1;
const SLOT_DONE = 2; // a non-blocking command's completion, not yet handed to poll()

export class NvmeDriver implements BlockDevice {
  /** Blocks in the VF's namespace. */
  readonly blocks: number;
  /** Most blocks one command moves (the bounce buffer size). */
  readonly blocksPerCommand: number;
  /** Commands that may be in flight at once. */
  readonly slots: number;
  /** Entries of the SQ and of the CQ. */
  readonly queueEntries: number;
  readonly #desc: VfDescriptor;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  /** Int32 index of the register block's first word. */
  readonly #base: number;
  readonly #timeoutMs: number;
  readonly #doorbell: Notifier;
  readonly #waiter: Waiter;
  readonly #irqWord: number;
  // Layout in the DMA region (offsets from its start).
  readonly #sqOff = 0;
  readonly #cqOff: number;
  readonly #bounceOff: number;
  /** Int32 index of dword 3 of CQE 0. */
  readonly #cqWord: number;
  /** Per slot: a view of its whole bounce buffer. */
  readonly #bounce: Uint8Array[] = [];
  /** Block b of slot s's bounce buffer at [s × blocksPerCommand + b] (views made once). */
  readonly #bounceBlocks: Uint8Array[] = [];
  // Queue state (this thread only).
  #sqTail = 0;
  #cqHead = 0;
  #phase = 1;
  #unpublished = 0;
  #generation = 0;
  /** Why the driver must be reattached; "" while it is usable. */
  #broken = "";
  /** The errno that reason stands for (ETIMEDOUT after a timeout, else EIO). */
  #brokenErrno = EIO;
  // Slots.
  readonly #state: Uint8Array;
  readonly #op: Uint8Array;
  readonly #lba: Float64Array;
  readonly #count: Int32Array;
  readonly #status: Int32Array;
  readonly #sync: Uint8Array;
  readonly #user: (Uint8Array | null)[];
  readonly #userOff: Float64Array;
  /** A scattered read's buffers, and the index of the slot's first block in them. */
  readonly #vec: (readonly Uint8Array[] | null)[];
  readonly #vecAt: Int32Array;
  readonly #free: Int32Array;
  #freeCount = 0;
  #asyncDone = 0;
  // The blocking call in progress.
  #syncOutstanding = 0;
  #syncStatus = 0;
  #syncLba = 0;
  /** Writes are being plugged (see the header). */
  #plugged = false;
  /** The blocking counters hold plugged writes nobody waited for yet (see the header). */
  #pending = false;
  readonly #ready: () => boolean;
  readonly #hasAsync: () => boolean;
  #submitted = 0;
  #completed = 0;
  #errors = 0;
  #sqDoorbells = 0;
  #cqDoorbells = 0;
  #waits = 0;
  #cqWraps = 0;
  #resets = 0;

  /**
   * Attach to the VF `desc` in `mem`: reset it if a previous driver left it configured, lay out
   * the queues and bounce buffers in its DMA region, program the queue registers and the
   * interrupt word, set VFC_ENABLE and wait until the device reports ready.
   */
  constructor(mem: PhysicalMemory, desc: VfDescriptor, options: NvmeDriverOptions = {}) {
    if (desc.kind !== "nvme") {
      throw new InvalidArgumentError(`NvmeDriver: VF ${desc.index} is a ${desc.kind}, not an nvme`);
    }
    checkInteger("VF register block", desc.regs, 0, mem.bytes - 4096);
    checkInteger("DMA region phys", desc.dma.phys, 0, mem.bytes - 1);
    checkInteger("DMA region bytes", desc.dma.bytes, 1, mem.bytes - desc.dma.phys);
    checkInteger("DMA region iova", desc.dma.iova, 0, Number.MAX_SAFE_INTEGER);
    if (desc.dma.phys % NVME_QUEUE_ALIGN !== 0 || desc.dma.iova % NVME_QUEUE_ALIGN !== 0) {
      throw new InvalidArgumentError(
        `NvmeDriver: the DMA region must be ${NVME_QUEUE_ALIGN}-aligned (phys ${desc.dma.phys}, iova ${desc.dma.iova})`,
      );
    }
    this.#desc = desc;
    this.#i32 = mem.i32;
    this.#u8 = mem.u8;
    this.#dv = mem.dv;
    this.#base = desc.regs / 4;
    this.#timeoutMs = checkTimeout(options.ioTimeoutMs ?? DEFAULT_IO_TIMEOUT_MS);
    this.#doorbell = new Notifier(mem.sab, desc.regs + VF_DOORBELL_WAKE);

    this.#claimDevice();
    const i32 = this.#i32;
    const b = this.#base;
    const lbaBytes = Atomics.load(i32, b + nrLbaBytes); // consume: identity
    if (lbaBytes !== BLOCK_SIZE) {
      throw new IoError(`nvme: VF ${desc.index} has ${lbaBytes}-byte blocks, not ${BLOCK_SIZE}`);
    }
    this.blocks = Atomics.load(i32, b + nrNsBlocks); // consume: identity
    const mdts = Atomics.load(i32, b + nrMaxTransfer); // consume
    const maxEntries = Atomics.load(i32, b + nrQueueEntries); // consume
    this.queueEntries = checkInteger(
      "queueEntries",
      options.queueEntries ?? Math.min(DEFAULT_QUEUE_ENTRIES, maxEntries),
      NVME_MIN_QUEUE_ENTRIES,
      maxEntries,
    );
    this.blocksPerCommand = checkInteger(
      "blocksPerCommand",
      options.blocksPerCommand ?? mdts,
      1,
      mdts,
    );

    // Layout.
    const page = NVME_QUEUE_ALIGN;
    this.#cqOff = roundUp(this.queueEntries * NVME_SQE_BYTES, page);
    const irqOff = this.#cqOff + roundUp(this.queueEntries * NVME_CQE_BYTES, page);
    this.#bounceOff = options.irqWord === undefined ? irqOff + page : irqOff;
    const bounceBytes = this.blocksPerCommand * BLOCK_SIZE;
    const fit = Math.floor((desc.dma.bytes - this.#bounceOff) / bounceBytes);
    this.slots = Math.min(this.queueEntries - 1, fit);
    if (this.slots < 1) {
      throw new InvalidArgumentError(
        `NvmeDriver: a DMA region of ${desc.dma.bytes} bytes cannot hold ${this.queueEntries}-entry queues and one ${bounceBytes}-byte bounce buffer`,
      );
    }
    if (options.irqWord === undefined) {
      this.#irqWord = desc.dma.phys + irqOff;
      initWakeWord(mem.sab, this.#irqWord, "hybrid");
    } else {
      this.#irqWord = checkInteger("irqWord", options.irqWord, 1, mem.bytes - WAKE_WORD_BYTES);
      if (this.#irqWord % WAKE_WORD_BYTES !== 0) {
        throw new InvalidArgumentError(
          `irqWord must be a multiple of ${WAKE_WORD_BYTES}, got ${this.#irqWord}`,
        );
      }
    }
    this.#waiter = new Waiter(mem.sab, this.#irqWord, options.waiter);
    this.#cqWord = (desc.dma.phys + this.#cqOff + CQE_DW3) / 4;
    for (let s = 0; s < this.slots; s++) {
      const at = desc.dma.phys + this.#bounceOff + s * bounceBytes;
      this.#bounce.push(this.#u8.subarray(at, at + bounceBytes));
      for (let k = 0; k < this.blocksPerCommand; k++) {
        this.#bounceBlocks.push(this.#u8.subarray(at + k * BLOCK_SIZE, at + (k + 1) * BLOCK_SIZE));
      }
    }
    this.#state = new Uint8Array(this.slots);
    this.#op = new Uint8Array(this.slots);
    this.#lba = new Float64Array(this.slots);
    this.#count = new Int32Array(this.slots);
    this.#status = new Int32Array(this.slots);
    this.#sync = new Uint8Array(this.slots);
    this.#user = new Array<Uint8Array | null>(this.slots).fill(null);
    this.#userOff = new Float64Array(this.slots);
    this.#vec = new Array<readonly Uint8Array[] | null>(this.slots).fill(null);
    this.#vecAt = new Int32Array(this.slots);
    this.#free = new Int32Array(this.slots);
    this.#ready = () => this.#cqReady() || this.#deviceChanged();
    this.#hasAsync = () => this.#asyncDone > 0 || this.#cqReady() || this.#deviceChanged();
    this.#program();
  }

  // ---- BlockDevice ----

  /** Read `count` blocks from `lba` into `dst`. Throws NvmeStatusError / IoError. */
  read(lba: number, count: number, dst: Uint8Array): void {
    this.#checkBuffer("read", count, dst);
    this.#transfer(NVME_CMD_READ, lba, count, dst, null, 0);
  }

  /** Read `count` blocks from `lba`, block lba + i into dst[i]. Throws NvmeStatusError / IoError. */
  readv(lba: number, count: number, dst: readonly Uint8Array[]): void {
    checkInteger("readv count", count, 0, Number.MAX_SAFE_INTEGER);
    if (!Array.isArray(dst) || dst.length < count) {
      throw new InvalidArgumentError(`readv: ${count} blocks need as many buffers`);
    }
    for (let i = 0; i < count; i++) {
      const d = dst[i];
      if (!(d instanceof Uint8Array) || d.length < BLOCK_SIZE) {
        throw new InvalidArgumentError(
          `readv: buffer ${i} must be a Uint8Array of ${BLOCK_SIZE} bytes`,
        );
      }
    }
    this.#transfer(NVME_CMD_READ, lba, count, null, dst, 0);
  }

  /**
   * Write `count` blocks from `src` at `lba`: durable after a later flush(), or with `fua` when
   * it returns. Inside a plug (and without fua) it may return before the write completes.
   */
  write(lba: number, count: number, src: Uint8Array, fua = false): void {
    this.#checkBuffer("write", count, src);
    this.#transfer(NVME_CMD_WRITE, lba, count, src, null, fua ? CDW12_FUA : 0);
  }

  /** Plug writes (see the header) until unplug(); pending writes complete first. */
  plug(): void {
    if (this.#plugged) return;
    this.#settle();
    this.#syncBegin();
    this.#plugged = true;
    this.#pending = true;
  }

  /**
   * Ring for every plugged write; with `wait` (the default) wait for them, else leave them
   * pending (see the header). Throws NvmeStatusError / IoError.
   */
  unplug(wait = true): void {
    if (!this.#plugged) return;
    this.#plugged = false;
    this.#ring();
    if (!wait) return;
    this.#pending = false;
    this.#syncEnd("plugged writes");
  }

  /** Make every completed write durable (NVMe FLUSH). */
  flush(): void {
    this.#checkDevice();
    this.#settle();
    this.#syncBegin();
    this.#needSlot();
    this.#prepare(this.#take(), NVME_CMD_FLUSH, NVME_NSID, 0, 0, 0, 0, 0, true);
    this.#ring();
    this.#syncEnd("flush");
  }

  /**
   * Run one raw command and wait for it; returns its NVMe status (0 = success). Data moves
   * between the device and the command's bounce buffer, or wherever `cmd.prp1` points.
   */
  execute(cmd: NvmePassthrough): number {
    if (!validPassthrough(cmd)) {
      throw new InvalidArgumentError(
        `execute: opcode must be an integer from 0 to 255 and blocks from 1 to 65536, got ${cmd.opcode} and ${cmd.blocks}`,
      );
    }
    this.#checkDevice();
    this.#settle();
    this.#syncBegin();
    this.#needSlot();
    this.#submitRaw(this.#take(), cmd, true);
    this.#ring();
    while (this.#syncOutstanding > 0) this.#awaitCompletions();
    return this.#syncStatus;
  }

  // ---- non-blocking API (inside the machine: -errno returns) ----

  /**
   * Queue a read of `count` ≤ blocksPerCommand blocks from `lba`; its data is copied into
   * `dst` at `dstOffset` when poll() reaps it. Returns the CID, -EAGAIN when every slot is in
   * flight, -EINVAL on bad arguments, -EIO when the VF must be reattached. Call ring() (or
   * poll()) to hand queued commands to the device.
   */
  submitRead(lba: number, count: number, dst: Uint8Array, dstOffset = 0): number {
    const err = this.#checkSubmit(lba, count, dst, dstOffset);
    if (err < 0) return err;
    const s = this.#take();
    this.#prepare(s, NVME_CMD_READ, NVME_NSID, lba, count, this.#bounceIova(s), 0, 0, false);
    this.#user[s] = dst;
    this.#userOff[s] = dstOffset;
    return s;
  }

  /** Queue a write of `count` ≤ blocksPerCommand blocks from `src` (copied now) at `lba`. */
  submitWrite(lba: number, count: number, src: Uint8Array, srcOffset = 0): number {
    const err = this.#checkSubmit(lba, count, src, srcOffset);
    if (err < 0) return err;
    const s = this.#take();
    this.#fillBounce(s, src, srcOffset, count);
    this.#prepare(s, NVME_CMD_WRITE, NVME_NSID, lba, count, this.#bounceIova(s), 0, 0, false);
    return s;
  }

  /** Queue a FLUSH. Returns the CID or -errno. */
  submitFlush(): number {
    if (this.#unusable()) return -EIO;
    if (this.#freeCount === 0) return -EAGAIN;
    const s = this.#take();
    this.#prepare(s, NVME_CMD_FLUSH, NVME_NSID, 0, 0, 0, 0, 0, false);
    return s;
  }

  /** Queue a raw command (see {@link NvmePassthrough}). Returns the CID or -errno. */
  submitPassthrough(cmd: NvmePassthrough): number {
    if (this.#unusable()) return -EIO;
    if (!validPassthrough(cmd)) return -EINVAL;
    if (this.#freeCount === 0) return -EAGAIN;
    const s = this.#take();
    this.#submitRaw(s, cmd, false);
    return s;
  }

  /** Ring the SQ tail doorbell for every command queued since the last ring. */
  ring(): void {
    this.#ring();
  }

  /**
   * Ring, consume every new completion, and hand each completed non-blocking command to
   * `onComplete(cid, status)` (its slot is free again before the call). Returns how many were
   * handed over, or -EIO when the VF was reset or failed (call reattach()).
   */
  poll(onComplete: NvmeCompletionHandler): number {
    if (this.#unusable()) return -EIO;
    this.#ring();
    this.#reap();
    if (this.#asyncDone === 0) return 0;
    let n = 0;
    for (let s = 0; s < this.slots; s++) {
      if (this.#state[s] !== SLOT_DONE) continue;
      const status = this.#status[s];
      this.#release(s);
      this.#asyncDone--;
      n++;
      onComplete(s, status);
    }
    return n;
  }

  /**
   * Block until a non-blocking command has completed (then poll() hands it over) or
   * `timeoutMs` passes. Returns the number of completions waiting for poll() (0 on timeout),
   * or -EIO when the VF was reset or failed.
   */
  wait(timeoutMs = this.#timeoutMs): number {
    if (this.#unusable()) return -EIO;
    this.#ring();
    this.#reap();
    if (this.#asyncDone === 0) {
      this.#waits++;
      this.#waiter.wait(this.#hasAsync, timeoutMs);
      if (this.#unusable()) return -EIO;
      this.#reap();
    }
    return this.#asyncDone;
  }

  // ---- reset and reattach ----

  /**
   * Take the VF back after a reset, a power loss (VF_FAILED) or a timeout: reset it if it is
   * not cleanly reset already, reprogram the queues, forget every command in flight. A
   * restarted domain calls this; so does one that caught an IoError about its device.
   */
  reattach(): void {
    this.#claimDevice();
    this.#checkIdentity();
    this.#program();
  }

  /** Request a function-level reset of the VF (VFC_RESET), then reprogram the queues. */
  reset(): void {
    this.#waitAttached();
    this.#resetDevice();
    this.#checkIdentity();
    this.#program();
  }

  /** The VF's generation this driver programmed its queues under. */
  get generation(): number {
    return this.#generation;
  }

  /** Byte offset of the wake word the device notifies on completions. */
  get irqWord(): number {
    return this.#irqWord;
  }

  stats(): NvmeDriverStats {
    return {
      submitted: this.#submitted,
      completed: this.#completed,
      errors: this.#errors,
      sqDoorbells: this.#sqDoorbells,
      cqDoorbells: this.#cqDoorbells,
      waits: this.#waits,
      cqWraps: this.#cqWraps,
      resets: this.#resets,
    };
  }

  // ---- blocking transfers ----

  #checkBuffer(what: string, count: number, buf: Uint8Array | undefined): void {
    checkInteger(`${what} count`, count, 0, Number.MAX_SAFE_INTEGER);
    if (!(buf instanceof Uint8Array) || buf.length < count * BLOCK_SIZE) {
      throw new InvalidArgumentError(
        `${what}: the buffer must be a Uint8Array of at least ${count * BLOCK_SIZE} bytes`,
      );
    }
  }

  /**
   * Move `count` blocks between the device and `buf` (contiguous) or `vec` (one block each).
   * A plain WRITE inside a plug is only queued; anything else waits for its completions.
   */
  #transfer(
    op: number,
    lba: number,
    count: number,
    buf: Uint8Array | null,
    vec: readonly Uint8Array[] | null,
    cdw12: number,
  ): void {
    const what = op === NVME_CMD_READ ? "read" : "write";
    checkInteger(`${what} lba`, lba, 0, Number.MAX_SAFE_INTEGER);
    if (count === 0) return;
    this.#checkDevice();
    const queued = this.#plugged && op === NVME_CMD_WRITE && cdw12 === 0;
    if (!queued) {
      this.#settle();
      this.#syncBegin();
    }
    const per = this.blocksPerCommand;
    let next = 0;
    while (next < count && this.#syncStatus === NVME_SC_SUCCESS) {
      if (this.#freeCount === 0) {
        this.#ring(); // out of slots: what is prepared goes now, and some of it must complete
        this.#needSlot();
        continue;
      }
      // Prepare as many commands as there are slots (none after an error), then ring once.
      const n = Math.min(per, count - next);
      const s = this.#take();
      if (op === NVME_CMD_WRITE) this.#fillBounce(s, buf as Uint8Array, next * BLOCK_SIZE, n);
      else if (vec !== null) {
        this.#vec[s] = vec;
        this.#vecAt[s] = next;
      } else {
        this.#user[s] = buf;
        this.#userOff[s] = next * BLOCK_SIZE;
      }
      this.#prepare(s, op, NVME_NSID, lba + next, n, this.#bounceIova(s), cdw12, 0, true);
      next += n;
    }
    if (queued) return; // unplug() rings
    this.#ring();
    this.#syncEnd(`${what} of ${count} blocks at ${lba}`);
  }

  /** Wait for the pending plugged writes, if any (an open plug stays open). */
  #settle(): void {
    if (!this.#pending) return;
    this.#ring();
    this.#pending = this.#plugged;
    this.#syncEnd("plugged writes");
  }

  #syncBegin(): void {
    this.#syncOutstanding = 0;
    this.#syncStatus = NVME_SC_SUCCESS;
    this.#syncLba = 0;
  }

  /** Wait for the blocking call's commands; throw if one failed. */
  #syncEnd(what: string): void {
    while (this.#syncOutstanding > 0) this.#awaitCompletions();
    const st = this.#syncStatus;
    if (st !== NVME_SC_SUCCESS) {
      throw new NvmeStatusError(
        `nvme: ${what} failed at block ${this.#syncLba}: ${describeStatus(st)}`,
        st,
      );
    }
  }

  /**
   * Make sure a blocking call can take a slot: wait for its own commands in flight (a long
   * transfer or a plug that used every slot), or for non-blocking ones if they hold every slot.
   * Slots whose completions wait for poll() stay taken: if they are all that is left, the call
   * cannot run (IoError, EAGAIN).
   */
  #needSlot(): void {
    while (this.#freeCount === 0) {
      // Only a blocking command's completion frees a slot; with none in flight, wait for the
      // non-blocking ones, and give up once they all wait for poll().
      if (this.#syncOutstanding === 0 && this.#asyncDone === this.slots) {
        throw new IoError(
          `nvme: every command slot holds a completion that poll() has not taken yet`,
          EAGAIN,
        );
      }
      this.#awaitCompletions();
    }
  }

  /** Consume completions; if there were none, wait for one (or for a device change). */
  #awaitCompletions(): void {
    if (this.#reap() > 0) return;
    this.#waits++;
    const woke = this.#waiter.wait(this.#ready, this.#timeoutMs);
    this.#checkDevice();
    if (!woke) {
      this.#broken = `no completion in ${this.#timeoutMs} ms`;
      this.#brokenErrno = ETIMEDOUT;
      throw new IoError(`nvme: VF ${this.#desc.index}: ${this.#broken}`, ETIMEDOUT);
    }
    this.#reap();
  }

  // ---- queues ----

  /** Write the SQE for slot `s` at the SQ tail (not yet published: see #ring). */
  #prepare(
    s: number,
    opcode: number,
    nsid: number,
    lba: number,
    blocks: number,
    prp: number,
    cdw12: number,
    flags: number,
    sync: boolean,
  ): void {
    const at = this.#desc.dma.phys + this.#sqOff + this.#sqTail * NVME_SQE_BYTES;
    const dv = this.#dv;
    this.#u8.fill(0, at, at + NVME_SQE_BYTES);
    dv.setUint8(at + SQE_OPCODE, opcode);
    dv.setUint8(at + SQE_FLAGS, flags);
    dv.setUint16(at + SQE_CID, s, true);
    dv.setUint32(at + SQE_NSID, nsid, true);
    dv.setUint32(at + SQE_PRP1, prp % 2 ** 32, true);
    dv.setUint32(at + SQE_PRP1 + 4, Math.floor(prp / 2 ** 32), true);
    dv.setUint32(at + SQE_SLBA, lba % 2 ** 32, true);
    dv.setUint32(at + SQE_SLBA + 4, Math.floor(lba / 2 ** 32), true);
    dv.setUint32(at + SQE_CDW12, (blocks === 0 ? 0 : (blocks - 1) & 0xffff) | cdw12, true);
    this.#sqTail = this.#sqTail + 1 === this.queueEntries ? 0 : this.#sqTail + 1;
    this.#unpublished++;
    this.#state[s] = SLOT_INFLIGHT;
    this.#op[s] = opcode;
    this.#lba[s] = lba;
    this.#count[s] = blocks;
    this.#sync[s] = sync ? 1 : 0;
    if (sync) this.#syncOutstanding++;
    this.#submitted++;
  }

  #submitRaw(s: number, cmd: NvmePassthrough, sync: boolean): void {
    const blocks = cmd.blocks ?? 1;
    this.#prepare(
      s,
      cmd.opcode,
      cmd.nsid ?? NVME_NSID,
      cmd.slba ?? 0,
      blocks,
      cmd.prp1 ?? this.#bounceIova(s),
      (cmd.cdw12 ?? 0) & ~0xffff,
      cmd.flags ?? 0,
      sync,
    );
  }

  /** Publish every prepared SQE with one doorbell write, and wake the device if it sleeps. */
  #ring(): void {
    if (this.#unpublished === 0) return;
    this.#unpublished = 0;
    Atomics.store(this.#i32, this.#base + sqTailDoorbell(0), this.#sqTail); // publish: SQEs above
    this.#doorbell.notify(); // wake: the device, only if it announced it sleeps
    this.#sqDoorbells++;
  }

  #cqReady(): boolean {
    const dw3 = Atomics.load(this.#i32, this.#cqWord + (this.#cqHead * NVME_CQE_BYTES) / 4); // consume
    return ((dw3 >>> 16) & 1) === this.#phase;
  }

  /** Consume every new CQE; then move the CQ head doorbell. Returns how many. */
  #reap(): number {
    const i32 = this.#i32;
    let n = 0;
    for (;;) {
      // consume: the phase tag publishes the entry (and the data DMA'd before it)
      const dw3 = Atomics.load(i32, this.#cqWord + (this.#cqHead * NVME_CQE_BYTES) / 4);
      if (((dw3 >>> 16) & 1) !== this.#phase) break;
      this.#complete(dw3 & 0xffff, dw3 >>> 17);
      if (++this.#cqHead === this.queueEntries) {
        this.#cqHead = 0;
        this.#phase ^= 1; // the device's next pass writes the other phase
        this.#cqWraps++;
      }
      n++;
    }
    if (n > 0) {
      Atomics.store(i32, this.#base + cqHeadDoorbell(0), this.#cqHead); // publish: CQ room
      this.#doorbell.notify(); // wake: a device waiting for CQ room
      this.#cqDoorbells++;
    }
    return n;
  }

  /** One completion for CID `s`. */
  #complete(s: number, status: number): void {
    if (s >= this.slots || this.#state[s] !== SLOT_INFLIGHT) {
      this.#broken = `a completion for command ${s}, which is not in flight`;
      throw new IoError(`nvme: VF ${this.#desc.index}: ${this.#broken}`);
    }
    this.#completed++;
    if (status !== NVME_SC_SUCCESS) this.#errors++;
    if (status === NVME_SC_SUCCESS && this.#op[s] === NVME_CMD_READ) this.#copyRead(s);
    if (this.#sync[s] === 1) {
      this.#syncOutstanding--;
      if (status !== NVME_SC_SUCCESS && this.#syncStatus === NVME_SC_SUCCESS) {
        this.#syncStatus = status;
        this.#syncLba = this.#lba[s];
      }
      this.#release(s);
    } else {
      this.#state[s] = SLOT_DONE;
      this.#status[s] = status;
      this.#asyncDone++;
    }
  }

  /** A READ's data, from its bounce buffer to the caller's buffer or buffers. */
  #copyRead(s: number): void {
    const n = this.#count[s];
    const user = this.#user[s];
    if (user !== null) {
      const bounce = this.#bounce[s];
      const bytes = n * BLOCK_SIZE;
      user.set(bytes === bounce.length ? bounce : bounce.subarray(0, bytes), this.#userOff[s]);
      return;
    }
    const vec = this.#vec[s];
    if (vec === null) return;
    const first = s * this.blocksPerCommand;
    const at = this.#vecAt[s];
    for (let k = 0; k < n; k++) (vec[at + k] as Uint8Array).set(this.#bounceBlocks[first + k]);
  }

  #take(): number {
    return this.#free[--this.#freeCount];
  }

  #release(s: number): void {
    this.#state[s] = SLOT_FREE;
    this.#user[s] = null;
    this.#vec[s] = null;
    this.#free[this.#freeCount++] = s;
  }

  #bounceIova(s: number): number {
    return this.#desc.dma.iova + this.#bounceOff + s * this.blocksPerCommand * BLOCK_SIZE;
  }

  #fillBounce(s: number, src: Uint8Array, from: number, blocks: number): void {
    const bytes = blocks * BLOCK_SIZE;
    const whole = from === 0 && src.length === bytes;
    this.#bounce[s].set(whole ? src : src.subarray(from, from + bytes));
  }

  #checkSubmit(lba: number, count: number, buf: Uint8Array, off: number): number {
    if (this.#unusable()) return -EIO;
    if (
      !Number.isInteger(lba) ||
      lba < 0 ||
      !Number.isInteger(count) ||
      count < 1 ||
      count > this.blocksPerCommand ||
      !Number.isInteger(off) ||
      off < 0 ||
      off + count * BLOCK_SIZE > buf.length
    ) {
      return -EINVAL;
    }
    return this.#freeCount === 0 ? -EAGAIN : 0;
  }

  // ---- device state ----

  /** True if the VF was reset, failed or went away since the queues were programmed. */
  #deviceChanged(): boolean {
    const i32 = this.#i32;
    return (
      Atomics.load(i32, this.#base + vrGeneration) !== this.#generation || // consume
      Atomics.load(i32, this.#base + vrStatus) !== VF_READY // consume
    );
  }

  #unusable(): boolean {
    if (this.#broken !== "") return true;
    if (!this.#deviceChanged()) return false;
    this.#broken = this.#describeChange();
    this.#brokenErrno = EIO;
    return true;
  }

  /** Throw IoError if the queues can no longer be used. */
  #checkDevice(): void {
    if (this.#unusable()) {
      throw new IoError(
        `nvme: VF ${this.#desc.index}: ${this.#broken}; call reattach()`,
        this.#brokenErrno,
      );
    }
  }

  #describeChange(): string {
    const i32 = this.#i32;
    const gen = Atomics.load(i32, this.#base + vrGeneration); // consume
    const st = Atomics.load(i32, this.#base + vrStatus); // consume
    if (st === VF_FAILED) {
      const reason = Atomics.load(i32, this.#base + nrFailReason); // consume
      return `the device failed (${reason > 0 ? errnoName(reason) : "no reason"})`;
    }
    if (st === VF_DISABLED) return "the VF was disabled";
    if (st === VF_RESETTING || gen !== this.#generation) {
      return `the VF was reset (generation ${this.#generation} → ${gen})`;
    }
    return "the VF changed state";
  }

  /**
   * Make the VF ours with nothing configured: wait while it is detached, and reset it unless a
   * reset already left it clean (VF_READY, control 0).
   */
  #claimDevice(): void {
    const i32 = this.#i32;
    const b = this.#base;
    // consume: the magic is written when the VF is enabled
    if (Atomics.load(i32, b + vrMagic) !== VF_MAGIC_NVME) {
      throw new IoError(
        `nvme: no NVMe VF at register block ${this.#desc.regs} (VF ${this.#desc.index})`,
        ENODEV,
      );
    }
    this.#waitAttached();
    if (
      Atomics.load(i32, b + vrStatus) !== VF_READY || // consume
      Atomics.load(i32, b + vrControl) !== 0 // consume: a previous driver's queues
    ) {
      this.#resetDevice();
    }
  }

  /** Wait (up to the timeout) while the VF is VF_DISABLED: its device may be re-attaching. */
  #waitAttached(): void {
    const i32 = this.#i32;
    const at = this.#base + vrGeneration;
    const deadline = performance.now() + this.#timeoutMs;
    for (;;) {
      const gen = Atomics.load(i32, at); // consume
      if (Atomics.load(i32, this.#base + vrStatus) !== VF_DISABLED) return; // consume
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new IoError(`nvme: VF ${this.#desc.index} is disabled`, ENODEV);
      }
      Atomics.wait(i32, at, gen, left); // park: attachVf bumps the generation and notifies
    }
  }

  /** VFC_RESET, then wait for the device to bump the generation (its last step). */
  #resetDevice(): void {
    const i32 = this.#i32;
    const at = this.#base + vrGeneration;
    const g0 = Atomics.load(i32, at); // consume
    Atomics.or(i32, this.#base + vrControl, VFC_RESET); // publish: request a function-level reset
    this.#doorbell.notify(); // wake: the device
    this.#resets++;
    const deadline = performance.now() + this.#timeoutMs;
    // consume: the generation, bumped last by the reset
    while (Atomics.load(i32, at) === g0) {
      const left = deadline - performance.now();
      if (left <= 0) {
        this.#broken = `the device did not reset in ${this.#timeoutMs} ms`;
        this.#brokenErrno = ETIMEDOUT;
        throw new IoError(`nvme: VF ${this.#desc.index}: ${this.#broken}`, ETIMEDOUT);
      }
      Atomics.wait(i32, at, g0, left); // park: the device notifies the generation word
    }
  }

  /** After a reset the namespace must be the one the filesystem was built on. */
  #checkIdentity(): void {
    const i32 = this.#i32;
    const blocks = Atomics.load(i32, this.#base + nrNsBlocks); // consume
    const mdts = Atomics.load(i32, this.#base + nrMaxTransfer); // consume
    if (blocks !== this.blocks || mdts < this.blocksPerCommand) {
      throw new IoError(
        `nvme: VF ${this.#desc.index} changed identity: ${blocks} blocks (was ${this.blocks}), MDTS ${mdts}`,
      );
    }
  }

  /** Zero the queues, program the registers, set VFC_ENABLE and wait for the device's ready. */
  #program(): void {
    const i32 = this.#i32;
    const b = this.#base;
    const desc = this.#desc;
    this.#generation = Atomics.load(i32, b + vrGeneration); // consume
    const cqBytes = this.queueEntries * NVME_CQE_BYTES;
    this.#u8.fill(0, desc.dma.phys + this.#sqOff, desc.dma.phys + this.#cqOff + cqBytes);
    this.#sqTail = this.#cqHead = this.#unpublished = 0;
    this.#phase = 1;
    this.#freeCount = 0;
    for (let s = this.slots - 1; s >= 0; s--) this.#release(s);
    this.#asyncDone = this.#syncOutstanding = 0;
    this.#syncStatus = NVME_SC_SUCCESS;
    this.#plugged = this.#pending = false;
    const sq = desc.dma.iova + this.#sqOff;
    const cq = desc.dma.iova + this.#cqOff;
    const cfg = (field: number, v: number) => Atomics.store(i32, b + queueConfigWord(0, field), v); // publish: read by the device at enable
    cfg(nqSqBaseLo, sq % 2 ** 32);
    cfg(nqSqBaseHi, Math.floor(sq / 2 ** 32));
    cfg(nqSqEntries, this.queueEntries);
    cfg(nqCqBaseLo, cq % 2 ** 32);
    cfg(nqCqBaseHi, Math.floor(cq / 2 ** 32));
    cfg(nqCqEntries, this.queueEntries);
    for (let q = 1; q < NVME_MAX_QUEUE_PAIRS; q++) {
      Atomics.store(i32, b + queueConfigWord(q, nqSqEntries), 0); // publish: pair unused
    }
    Atomics.store(i32, b + sqTailDoorbell(0), 0); // publish
    Atomics.store(i32, b + cqHeadDoorbell(0), 0); // publish
    Atomics.store(i32, b + vrIrqWord, this.#irqWord); // publish: the interrupt target
    Atomics.store(i32, b + vrControl, VFC_ENABLE); // publish: the queues are configured (CC.EN)
    this.#doorbell.notify(); // wake: the device takes the control change
    const deadline = performance.now() + this.#timeoutMs;
    for (;;) {
      const ready = Atomics.load(i32, b + nrReady); // consume: CSTS.RDY / CFS
      if (ready === 1) break;
      // consume: a reset (generation) while we waited also ends the wait
      if (ready === -1 || Atomics.load(i32, b + vrGeneration) !== this.#generation) {
        this.#broken = this.#describeChange();
        throw new IoError(`nvme: VF ${desc.index} refused its queues: ${this.#broken}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.#broken = `the device did not become ready in ${this.#timeoutMs} ms`;
        this.#brokenErrno = ETIMEDOUT;
        throw new IoError(`nvme: VF ${desc.index}: ${this.#broken}`, ETIMEDOUT);
      }
      Atomics.wait(i32, b + nrReady, 0, left); // park: the device notifies nrReady
    }
    this.#broken = "";
    this.#brokenErrno = EIO;
  }
}

function validPassthrough(cmd: NvmePassthrough): boolean {
  const blocks = cmd.blocks ?? 1;
  return (
    Number.isInteger(cmd.opcode) &&
    cmd.opcode >= 0 &&
    cmd.opcode <= 255 &&
    Number.isInteger(blocks) &&
    blocks >= 1 &&
    blocks <= 65536
  );
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function checkTimeout(ms: number): number {
  if (!(typeof ms === "number" && ms > 0)) {
    throw new InvalidArgumentError(`ioTimeoutMs must be a number > 0, got ${String(ms)}`);
  }
  return ms;
}
