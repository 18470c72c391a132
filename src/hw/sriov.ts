/**
 * sriov: PCIe SR-IOV in miniature — a device's physical function (PF), the virtual functions
 * (VFs) it creates, each VF's register block and IOMMU context, function-level reset, and the
 * assignment of a VF (with a DMA region) to whoever drives it: a service domain or an XOS core.
 *
 * Owns: the SR-IOV capability registers of a PF (TotalVFs, NumVFs, VF Enable, First VF Offset,
 * VF Stride: PCIe SR-IOV spec §3.3); each VF's 4 KiB register block frame and its common header
 * (src/hw/vf.ts); each VF's IOMMU context and domain; the DMA regions handed out by assign.
 *
 * Vocabulary
 *   RID of VF i   pfRid + firstVfOffset + i × vfStride (SR-IOV §3.3.9–10; i counts from 0 here,
 *                 the spec's VF numbers from 1)
 *   domain id     each VF has its own I/O page table, whose domain id is the VF's RID (unique
 *                 across PFs, since RIDs are)
 *   assigned      the VF has an owner ("domain:storage", "core:1"), a DMA region mapped
 *                 read-write at {@link DMA_IOVA_BASE} in its I/O page table, and a translating
 *                 context; unassigned VFs have a BLOCKED context, so every DMA of theirs faults
 *   FLR           function-level reset (PCIe §6.6.2): the device forgets its queues
 *
 * Device-model hooks — the whole interface between this file and the device models
 * (src/hw/nvme.ts, src/hw/nic.ts). All optional, called synchronously on the hypervisor thread:
 *   onEnable(vf)   the VF exists: its register header is written (status VF_READY) and its
 *                  IOMMU context is blocked. Attach per-VF state here (e.g. model.attachVf(
 *                  vf.descriptor()); the DMA region is empty until assign — a device needs none
 *                  of it, it DMAs to whatever IOVAs the driver programs).
 *   onReset(vf)    an FLR is under way (status VF_RESETTING): drop in-flight commands and every
 *                  queue pointer. After the hook the PF zeroes the device registers, bumps the
 *                  generation and sets VF_READY.
 *   onDisable(vf)  the VF goes away: detach. After the hook its register frame is freed.
 * A device model sees a driver's reset request (VFC_RESET in vrControl) by calling
 * {@link PhysicalFunction.serviceControl} when it is woken (doorbell) or polls; the PF performs
 * the FLR (which calls onReset) and clears the bit, which tells the driver it is done.
 *
 * Register block of a VF (src/hw/vf.ts has the layout): the PF writes the header at enable
 * (magic, index, RID, status, generation 0), the device model writes status and the counters,
 * the driver writes vrControl and vrIrqWord. An FLR zeroes vrControl, vrIrqWord and every
 * device-specific register (byte 256 on), keeps the doorbell wake line (a parked device model
 * sleeps on it) and the counters (cumulative statistics for the supervisor).
 *
 * Choices: disable() refuses (EBUSY) while any VF is assigned — the caller unassigns first,
 * so a VF never vanishes under a running domain; enable() and disable() of an already enabled /
 * disabled PF do nothing (writing the same VF Enable value). assign zeroes the DMA region, so a
 * new owner never sees the last owner's bytes.
 *
 * Who may call: the hypervisor thread only (boot, the supervisor, the device models). Drivers
 * on other threads see only the register block and their DMA region.
 */

import { EBUSY, EINVAL, ENOMEM } from "../abi/errno.js";
import { checkInteger, checkOneOf, ExocoreError, InvalidArgumentError, panic } from "../errors.js";
import type { DmaRegion } from "./dma.js";
import { IOPTE_RW, type Iommu, MAX_RID, TT_BLOCKED, TT_TRANSLATE } from "./iommu.js";
import { type FrameSource, PAGE_SIZE, type PhysicalMemory } from "./physmem.js";
import {
  type DeviceKind,
  VF_DEVICE_REGS,
  VF_DISABLED,
  VF_FAILED,
  VF_MAGIC_NIC,
  VF_MAGIC_NVME,
  VF_READY,
  VF_REG_BYTES,
  VF_RESETTING,
  VFC_RESET,
  type VfDescriptor,
  vrControl,
  vrGeneration,
  vrIndex,
  vrIrqWord,
  vrMagic,
  vrRid,
  vrStatus,
} from "./vf.js";

/** Where assign maps a VF's DMA region in its I/O page table. */
export const DMA_IOVA_BASE = 0x0100_0000;

const DEVICE_KINDS: readonly DeviceKind[] = ["nvme", "nic"];

/** The device-model hooks (see the file header). */
export interface VfHooks {
  onEnable?(vf: VirtualFunction): void;
  onReset?(vf: VirtualFunction): void;
  onDisable?(vf: VirtualFunction): void;
}

/** Frames as the PF needs them: the hypervisor's FrameAllocator. */
export interface ContiguousFrameSource extends FrameSource {
  allocContiguous(count: number, align?: number): number;
  freeRange(first: number, count: number): void;
}

export interface PhysicalFunctionOptions {
  readonly kind: DeviceKind;
  /** The PF's requester id (16 bits). */
  readonly rid: number;
  /** TotalVFs: the most VFs this PF can have. */
  readonly totalVfs: number;
  /** First VF Offset (default 1). */
  readonly firstVfOffset?: number;
  /** VF Stride (default 1). */
  readonly vfStride?: number;
  /** IOVA of the DMA region assign maps (page-aligned; default {@link DMA_IOVA_BASE}). */
  readonly dmaIova?: number;
  readonly hooks?: VfHooks;
}

/** One VF as vfs() and describe() list it (plain data). */
export interface VfInfo {
  readonly index: number;
  readonly rid: number;
  readonly domainId: number;
  /** Byte offset of the register block. */
  readonly regs: number;
  readonly owner: string | null;
  readonly status: "disabled" | "ready" | "resetting" | "failed";
  readonly generation: number;
  readonly dma: DmaRegion | null;
}

export interface PfDescription {
  readonly kind: DeviceKind;
  readonly rid: number;
  readonly totalVfs: number;
  readonly numVfs: number;
  readonly vfEnable: boolean;
  readonly firstVfOffset: number;
  readonly vfStride: number;
  readonly dmaIova: number;
  /** Frames held: register blocks and DMA regions. */
  readonly registerFrames: number;
  readonly dmaFrames: number;
  readonly vfs: readonly VfInfo[];
}

/** What assign set up for a VF (PF-private). */
interface Assignment {
  readonly owner: string;
  readonly firstFrame: number;
  readonly pages: number;
  readonly dma: DmaRegion;
}

const NO_DMA: DmaRegion = { iova: 0, phys: 0, bytes: 0 };

/**
 * An enabled VF: its identity, its register block, and (read through its PF) its assignment.
 * Made by {@link PhysicalFunction.enable}; dead after disable.
 */
export class VirtualFunction {
  readonly pf: PhysicalFunction;
  readonly kind: DeviceKind;
  readonly index: number;
  readonly rid: number;
  /** Domain id of the VF's I/O page table (= rid). */
  readonly domainId: number;
  /** Frame of the register block. */
  readonly regFrame: number;
  /** Byte offset of the register block in physical memory. */
  readonly regs: number;
  readonly #i32: Int32Array;
  readonly #w: number;

  constructor(pf: PhysicalFunction, mem: PhysicalMemory, index: number, regFrame: number) {
    this.pf = pf;
    this.kind = pf.kind;
    this.index = index;
    this.rid = pf.vfRid(index);
    this.domainId = this.rid;
    this.regFrame = regFrame;
    this.regs = mem.frameAddress(regFrame);
    this.#i32 = mem.i32;
    this.#w = this.regs / 4;
  }

  /** The int32 index (in mem.i32) of header word `word` (vr* of src/hw/vf.ts). */
  word(word: number): number {
    return this.#w + word;
  }

  /** VF_* status. */
  get status(): number {
    return Atomics.load(this.#i32, this.#w + vrStatus); // consume: the device's state
  }

  /** Resets so far. */
  get generation(): number {
    return Atomics.load(this.#i32, this.#w + vrGeneration); // consume: bumped by each FLR
  }

  /** The driver's VFC_* bits. */
  get control(): number {
    return Atomics.load(this.#i32, this.#w + vrControl); // consume: written by the driver
  }

  /** The owner given to assign, or null. */
  get owner(): string | null {
    return this.pf.assignmentOf(this.index)?.owner ?? null;
  }

  /** The DMA region given by assign, or null. */
  get dma(): DmaRegion | null {
    return this.pf.assignmentOf(this.index)?.dma ?? null;
  }

  /** The plain-data descriptor a driver attaches with (dma is zero-sized until assigned). */
  descriptor(): VfDescriptor {
    return {
      kind: this.kind,
      index: this.index,
      rid: this.rid,
      regs: this.regs,
      dma: this.dma ?? NO_DMA,
    };
  }
}

/**
 * A device's physical function with its SR-IOV capability. Capability writes that a driver
 * could make as register writes return -errno ({@link writeNumVfs}); the configuration API
 * (setNumVfs, enable, assign, …) throws coded errors: InvalidArgumentError for a bad argument,
 * ExocoreError EXO_ERR_EBUSY / EXO_ERR_ENOMEM for a state or memory problem.
 */
export class PhysicalFunction {
  readonly kind: DeviceKind;
  readonly rid: number;
  readonly totalVfs: number;
  readonly firstVfOffset: number;
  readonly vfStride: number;
  readonly dmaIova: number;
  readonly mem: PhysicalMemory;
  readonly iommu: Iommu;
  readonly #frames: ContiguousFrameSource;
  #hooks: VfHooks;
  #numVfs = 0;
  #vfEnable = false;
  #vfs: VirtualFunction[] = [];
  #assignments: (Assignment | null)[] = [];

  constructor(
    mem: PhysicalMemory,
    frames: ContiguousFrameSource,
    iommu: Iommu,
    options: PhysicalFunctionOptions,
  ) {
    this.kind = checkOneOf("kind", options.kind, DEVICE_KINDS);
    this.rid = checkInteger("PF rid", options.rid, 0, MAX_RID);
    this.firstVfOffset = checkInteger("firstVfOffset", options.firstVfOffset ?? 1, 1, MAX_RID);
    this.vfStride = checkInteger("vfStride", options.vfStride ?? 1, 1, MAX_RID);
    this.totalVfs = checkInteger("totalVfs", options.totalVfs, 0, MAX_RID);
    if (this.totalVfs > 0 && this.vfRid(this.totalVfs - 1) > MAX_RID) {
      throw new InvalidArgumentError(
        `totalVfs ${this.totalVfs} with rid ${this.rid}, firstVfOffset ${this.firstVfOffset} and vfStride ${this.vfStride} puts the last VF at rid ${this.vfRid(this.totalVfs - 1)}, past ${MAX_RID}`,
      );
    }
    const iova = checkInteger("dmaIova", options.dmaIova ?? DMA_IOVA_BASE, 0, 2 ** 32 - PAGE_SIZE);
    if (iova % PAGE_SIZE !== 0) {
      throw new InvalidArgumentError(`dmaIova must be a multiple of ${PAGE_SIZE}, got ${iova}`);
    }
    this.dmaIova = iova;
    this.mem = mem;
    this.#frames = frames;
    this.iommu = iommu;
    this.#hooks = options.hooks ?? {};
  }

  /** RID of VF `index` (0-based): pfRid + firstVfOffset + index × vfStride. */
  vfRid(index: number): number {
    return this.rid + this.firstVfOffset + index * this.vfStride;
  }

  // ---- capability registers ----

  /** NumVFs. */
  get numVfs(): number {
    return this.#numVfs;
  }

  /** VF Enable. */
  get vfEnable(): boolean {
    return this.#vfEnable;
  }

  /**
   * Write NumVFs as a register write: 0, -EINVAL unless an integer in 0 … totalVfs, -EBUSY while
   * VF Enable is set (SR-IOV: NumVFs may change only while VF Enable is clear).
   */
  writeNumVfs(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n > this.totalVfs) return -EINVAL;
    if (this.#vfEnable) return -EBUSY;
    this.#numVfs = n;
    return 0;
  }

  /** Set NumVFs; throws InvalidArgumentError on a bad value, EXO_ERR_EBUSY while enabled. */
  setNumVfs(n: number): void {
    const r = this.writeNumVfs(n);
    if (r === -EINVAL) checkInteger("numVfs", n, 0, this.totalVfs);
    if (r === -EBUSY) throw busy(`${this.#name()}: NumVFs is locked while VF Enable is set`);
  }

  /** Replace the device-model hooks (only while VF Enable is clear: EXO_ERR_EBUSY otherwise). */
  setHooks(hooks: VfHooks): void {
    if (this.#vfEnable) throw busy(`${this.#name()}: hooks change only while VFs are disabled`);
    this.#hooks = hooks;
  }

  /**
   * Set VF Enable: create NumVFs VFs — a zeroed register frame each with its header written,
   * and a BLOCKED context in the IOMMU — then call onEnable for each. All or nothing: throws
   * EXO_ERR_EBUSY if a VF's RID already has an IOMMU context or domain (another function owns
   * it), EXO_ERR_ENOMEM if frames run out. Does nothing if already enabled.
   */
  enable(): void {
    if (this.#vfEnable) return;
    const n = this.#numVfs;
    // decode: every RID free, every frame and context table obtainable
    for (let i = 0; i < n; i++) {
      const rid = this.vfRid(i);
      if (this.iommu.context(rid) !== null || this.iommu.hasDomain(rid)) {
        throw busy(`${this.#name()}: VF ${i}'s rid ${rid} already has an IOMMU context or domain`);
      }
    }
    const frames: number[] = [];
    for (let i = 0; i < n; i++) {
      const f = this.#frames.alloc();
      const r = f < 0 ? f : this.iommu.setContext(this.vfRid(i), blocked(this.vfRid(i)));
      if (f >= 0) frames.push(f);
      if (r < 0) {
        for (let u = 0; u < frames.length; u++) {
          this.iommu.clearContext(this.vfRid(u));
          this.#frames.free(frames[u]);
        }
        throw nomem(`${this.#name()}: no memory for VF ${i}'s register block or context`);
      }
    }
    // invoke: lay out the register blocks, publish them, tell the device model
    const vfs: VirtualFunction[] = [];
    for (let i = 0; i < n; i++) {
      this.mem.zeroFrame(frames[i]);
      const vf = new VirtualFunction(this, this.mem, i, frames[i]);
      const i32 = this.mem.i32;
      i32[vf.word(vrMagic)] = this.kind === "nvme" ? VF_MAGIC_NVME : VF_MAGIC_NIC;
      i32[vf.word(vrIndex)] = i;
      i32[vf.word(vrRid)] = vf.rid;
      Atomics.store(i32, vf.word(vrStatus), VF_READY); // publish: the header is complete
      vfs.push(vf);
    }
    this.#vfs = vfs;
    this.#assignments = vfs.map(() => null);
    this.#vfEnable = true;
    const onEnable = this.#hooks.onEnable;
    if (onEnable !== undefined) for (const vf of vfs) onEnable.call(this.#hooks, vf);
  }

  /**
   * Clear VF Enable: call onDisable for each VF, mark it VF_DISABLED, remove its IOMMU context
   * and free its register frame. Throws EXO_ERR_EBUSY while any VF is assigned (unassign it
   * first). Does nothing if already disabled.
   */
  disable(): void {
    if (!this.#vfEnable) return;
    for (let i = 0; i < this.#vfs.length; i++) {
      const a = this.#assignments[i];
      if (a) throw busy(`${this.#name()}: VF ${i} is assigned to ${a.owner}; unassign it first`);
    }
    const onDisable = this.#hooks.onDisable;
    for (const vf of this.#vfs) {
      if (onDisable !== undefined) onDisable.call(this.#hooks, vf);
      Atomics.store(this.mem.i32, vf.word(vrStatus), VF_DISABLED); // publish: the VF is gone
      if (this.iommu.clearContext(vf.rid) < 0) panic(`sriov: VF rid ${vf.rid} lost its context`);
      this.#frames.free(vf.regFrame);
    }
    this.#vfs = [];
    this.#assignments = [];
    this.#vfEnable = false;
  }

  /** VF `index` (enabled). Throws InvalidArgumentError otherwise. */
  vf(index: number): VirtualFunction {
    checkInteger("VF index", index, 0, this.totalVfs - 1);
    const vf = this.#vfs[index];
    if (vf === undefined) {
      throw new InvalidArgumentError(
        `${this.#name()}: VF ${index} is not enabled (NumVFs ${this.#numVfs}, VF Enable ${this.#vfEnable})`,
      );
    }
    return vf;
  }

  /** The assignment of VF `index`, or null (for VirtualFunction's getters). */
  assignmentOf(index: number): Readonly<Assignment> | null {
    return this.#assignments[index] ?? null;
  }

  // ---- function-level reset ----

  /**
   * Function-level reset of VF `index`: status VF_RESETTING, onReset, zero vrControl, vrIrqWord
   * and the device registers, bump the generation, status VF_READY. The IOMMU context and the
   * assignment are unchanged. Throws InvalidArgumentError on an index that is not enabled.
   */
  reset(index: number): void {
    const vf = this.vf(index);
    const i32 = this.mem.i32;
    Atomics.store(i32, vf.word(vrStatus), VF_RESETTING); // publish: drivers see the reset begin
    const onReset = this.#hooks.onReset;
    if (onReset !== undefined) onReset.call(this.#hooks, vf);
    this.mem.u8.fill(0, vf.regs + VF_DEVICE_REGS, vf.regs + VF_REG_BYTES);
    Atomics.store(i32, vf.word(vrIrqWord), 0); // publish: interrupts off until reconfigured
    Atomics.store(i32, vf.word(vrControl), 0); // publish: VFC_RESET cleared = reset done
    Atomics.add(i32, vf.word(vrGeneration), 1); // publish: the new generation, after the zeroing
    Atomics.store(i32, vf.word(vrStatus), VF_READY); // publish: usable again
  }

  /**
   * For device models: act on the driver's control word of VF `index`. If VFC_RESET is set,
   * perform the FLR (which clears the bit) and return 1; otherwise return 0. -EINVAL if the VF
   * is not enabled. Call it when the VF's doorbell wakes the model.
   */
  serviceControl(index: number): number {
    const vf = this.#vfs[index];
    if (vf === undefined) return -EINVAL;
    if ((vf.control & VFC_RESET) === 0) return 0;
    this.reset(index);
    return 1;
  }

  // ---- assignment ----

  /**
   * Assign VF `index` to `owner`: allocate a contiguous, zeroed DMA region of `dmaBytes`
   * (rounded up to whole pages), map it read-write at dmaIova in the VF's own domain, switch
   * its context to translate, and return the descriptor the driver attaches with. Throws
   * InvalidArgumentError on a bad argument, EXO_ERR_EBUSY if the VF is assigned already,
   * EXO_ERR_ENOMEM if memory runs out (nothing changes then).
   */
  assign(index: number, owner: string, dmaBytes: number): VfDescriptor {
    // decode
    const vf = this.vf(index);
    if (typeof owner !== "string" || owner.length === 0) {
      throw new InvalidArgumentError(`owner must be a non-empty string, got ${typeof owner}`);
    }
    checkInteger("dmaBytes", dmaBytes, 1, 2 ** 32 - this.dmaIova);
    const prior = this.#assignments[index];
    if (prior) throw busy(`${this.#name()}: VF ${index} is assigned to ${prior.owner} already`);
    const pages = Math.ceil(dmaBytes / PAGE_SIZE);
    // invoke, undoing each step if a later one fails
    const first = this.#frames.allocContiguous(pages);
    if (first < 0) throw nomem(`${this.#name()}: no ${pages} contiguous frames for VF ${index}`);
    const phys = this.mem.frameAddress(first);
    this.mem.u8.fill(0, phys, phys + pages * PAGE_SIZE);
    let r = this.iommu.mapRange(vf.domainId, this.dmaIova, first, pages, IOPTE_RW);
    if (r === 0) {
      r = this.iommu.setContext(vf.rid, { type: TT_TRANSLATE, domainId: vf.domainId });
      if (r < 0) this.#dropDomain(vf);
    }
    if (r < 0) {
      this.#frames.freeRange(first, pages);
      throw nomem(`${this.#name()}: no memory for VF ${index}'s I/O page table`);
    }
    const dma: DmaRegion = { iova: this.dmaIova, phys, bytes: pages * PAGE_SIZE };
    this.#assignments[index] = { owner, firstFrame: first, pages, dma };
    return vf.descriptor();
  }

  /**
   * Take VF `index` back: block its context (its DMAs fault from now on), reset it (onReset),
   * unmap and free its DMA region and destroy its domain. Throws InvalidArgumentError if the
   * VF is not enabled or not assigned.
   */
  unassign(index: number): void {
    const vf = this.vf(index);
    const a = this.#assignments[index];
    if (!a) throw new InvalidArgumentError(`${this.#name()}: VF ${index} is not assigned`);
    if (this.iommu.setContext(vf.rid, blocked(vf.rid)) < 0) {
      panic(`sriov: could not block the context of VF rid ${vf.rid}`);
    }
    this.#assignments[index] = null;
    this.reset(index);
    this.#dropDomain(vf);
    this.#frames.freeRange(a.firstFrame, a.pages);
  }

  // ---- inspection ----

  /** Every enabled VF with its owner and state. */
  vfs(): VfInfo[] {
    return this.#vfs.map((vf) => ({
      index: vf.index,
      rid: vf.rid,
      domainId: vf.domainId,
      regs: vf.regs,
      owner: vf.owner,
      status: statusName(vf.status),
      generation: vf.generation,
      dma: vf.dma,
    }));
  }

  /** The PF's registers, the VFs and the frames they hold (memory map, stats). */
  describe(): PfDescription {
    let dmaFrames = 0;
    for (const a of this.#assignments) if (a) dmaFrames += a.pages;
    return {
      kind: this.kind,
      rid: this.rid,
      totalVfs: this.totalVfs,
      numVfs: this.#numVfs,
      vfEnable: this.#vfEnable,
      firstVfOffset: this.firstVfOffset,
      vfStride: this.vfStride,
      dmaIova: this.dmaIova,
      registerFrames: this.#vfs.length,
      dmaFrames,
      vfs: this.vfs(),
    };
  }

  /** Unmap everything in the VF's domain and destroy it (its context must not translate). */
  #dropDomain(vf: VirtualFunction): void {
    if (!this.iommu.hasDomain(vf.domainId)) return;
    if (this.iommu.destroyDomain(vf.domainId) < 0) {
      panic(`sriov: domain ${vf.domainId} of VF rid ${vf.rid} is still in use`);
    }
  }

  #name(): string {
    return `${this.kind} PF ${this.rid}`;
  }
}

function blocked(rid: number) {
  return { type: TT_BLOCKED, domainId: rid } as const;
}

function statusName(status: number): VfInfo["status"] {
  switch (status) {
    case VF_READY:
      return "ready";
    case VF_RESETTING:
      return "resetting";
    case VF_FAILED:
      return "failed";
    default:
      return "disabled";
  }
}

function busy(message: string): ExocoreError {
  return new ExocoreError("EXO_ERR_EBUSY", message, EBUSY);
}

function nomem(message: string): ExocoreError {
  return new ExocoreError("EXO_ERR_ENOMEM", message, ENOMEM);
}
