/**
 * dma: how a device model reaches physical memory. Every access a device makes — queue entries,
 * descriptors, data buffers — goes through a {@link DmaPort}, which the IOMMU implements
 * (src/hw/iommu.ts): the requester id (the VF's RID) selects a context and an I/O page table,
 * the I/O virtual address (IOVA) is translated and checked, and a blocked access reads or writes
 * nothing and returns a fault reason (Intel VT-d's fault reasons, below).
 *
 * Device models never touch PhysicalMemory directly for guest data; drivers (domains) reach
 * their own DMA regions by physical address, as a kernel reaches memory it owns.
 */

/** Result of one DMA: {@link DMA_OK}, or a VT-d fault reason (positive). */
export type DmaStatus = number;

export const DMA_OK = 0;

// Fault reasons, numbered as in the Intel VT-d specification (non-recoverable faults, §7.2.x).
/** The root entry for the requester's bus is not present. */
export const FR_ROOT_NOT_PRESENT = 0x1;
/** The context entry for the requester is not present. */
export const FR_CONTEXT_NOT_PRESENT = 0x2;
/** The context entry is invalid (e.g. a reserved translation type). */
export const FR_CONTEXT_INVALID = 0x3;
/** The address is beyond what the context's address width can translate. */
export const FR_ADDRESS_BEYOND_AW = 0x4;
/** A write through an entry without write permission. */
export const FR_NO_WRITE = 0x5;
/** A read through an entry without read permission (absent entry: see {@link FR_PTE_NOT_PRESENT}). */
export const FR_NO_READ = 0x6;
/** A paging-structure entry on the walk could not be read (bad table address). */
export const FR_PT_ACCESS = 0x7;
/** Blocked by the context's translation type ("blocked"). Not a VT-d number: exocore's own. */
export const FR_BLOCKED = 0x80;
/** The walk reached an entry with neither read nor write: the page is not mapped. */
export const FR_PTE_NOT_PRESENT = FR_NO_READ;

export interface DmaPort {
  /** Copy `dst.length` bytes from `iova` (device reads memory). All or nothing. */
  read(rid: number, iova: number, dst: Uint8Array): DmaStatus;
  /** Copy `src` to `iova` (device writes memory). All or nothing. */
  write(rid: number, iova: number, src: Uint8Array): DmaStatus;
}

/**
 * A contiguous DMA region handed to a driver at boot: the kernel allocated `bytes` of physical
 * memory at byte address `phys` and mapped it read-write at `iova` in the VF's I/O page table.
 * The driver addresses the memory as phys + k and gives the device iova + k.
 */
export interface DmaRegion {
  readonly iova: number;
  readonly phys: number;
  readonly bytes: number;
}
