/**
 * vf: what every SR-IOV virtual function shares, whatever the device — the common header of its
 * register block, and the plain-data descriptor a driver receives to attach to it.
 *
 * A VF's register block is one 4 KiB frame of physical memory (int32 words). The first lines are
 * common to every device; device-specific registers (NVMe queue doorbells, NIC rings) start at
 * byte {@link VF_DEVICE_REGS}.
 *
 *   byte   0  line 0: identity and control (word indexes vr*)
 *   byte  64  line 1: the DOORBELL wake word — the device model parks on it (Atomics.waitAsync on
 *                     the hypervisor thread); a driver that rang a doorbell notifies it with
 *                     src/shm/wake.ts's Notifier, which calls into the kernel only when the
 *                     device announced it sleeps (NEED_WAKEUP: NVMe's event index, io_uring's
 *                     SQPOLL flag)
 *   byte 128  line 2: device-written status counters (commands, bytes, errors)
 *   byte 256  device-specific registers
 *
 * Interrupts are message-signalled (MSI-X in spirit): the driver writes into vrIrqWord the
 * physical byte offset of a wake word of ITS choosing (a domain gives its own wake word, so it
 * parks on one word for syscalls and device completions alike); the device notifies that word
 * after posting completions. 0 means no interrupts (the driver polls).
 */

export const VF_REG_BYTES = 4096;
export const VF_DOORBELL_WAKE = 64;
export const VF_STATS = 128;
export const VF_DEVICE_REGS = 256;

// Line 0, int32 word indexes from the start of the block.
export const vrMagic = 0; // VF_MAGIC_NVME or VF_MAGIC_NIC, written by the PF when the VF is enabled
export const vrIndex = 1; // the VF's index under its PF
export const vrRid = 2; // requester id carried by every DMA of this VF
export const vrStatus = 3; // VF_* state, written by the device
export const vrControl = 4; // driver → device: VFC_* bits
export const vrIrqWord = 5; // physical byte offset of the wake word to notify on completion; 0 = none
export const vrGeneration = 6; // bumped by the device on every reset (drivers detect a reset)

export const VF_MAGIC_NVME = 0x4e564d45; // "NVME"
export const VF_MAGIC_NIC = 0x4e494321; // "NIC!"

export const VF_DISABLED = 0;
export const VF_READY = 1;
export const VF_RESETTING = 2;
export const VF_FAILED = 3;

/** Control bits. */
export const VFC_ENABLE = 1; // the driver has configured its queues: the device may process them
export const VFC_RESET = 2; // request a function-level reset; the device clears it when done

// Line 2 (device-written counters), int32 word indexes from the start of the block.
export const vsCommands = VF_STATS / 4 + 0;
export const vsBytes = VF_STATS / 4 + 1; // low 32 bits, wraps
export const vsErrors = VF_STATS / 4 + 2;
export const vsDmaFaults = VF_STATS / 4 + 3;
export const vsInterrupts = VF_STATS / 4 + 4;

export type DeviceKind = "nvme" | "nic";

/** What a driver needs to attach to a VF: plain data, passed to a worker in workerData. */
export interface VfDescriptor {
  readonly kind: DeviceKind;
  /** Index of the VF under its PF. */
  readonly index: number;
  /** Requester id: every DMA of this VF's queues carries it. */
  readonly rid: number;
  /** Byte offset of the VF's register block in physical memory. */
  readonly regs: number;
  /** The VF's DMA region, mapped in its I/O page table (src/hw/dma.ts). */
  readonly dma: { readonly iova: number; readonly phys: number; readonly bytes: number };
}
