/**
 * nvme-regs: what the NVMe device model (src/hw/nvme.ts, hypervisor thread) and the NVMe VF
 * driver (src/drivers/nvme.ts, a domain's worker) share — the device-specific part of a VF's
 * register block, the layout of a submission and a completion queue entry, the opcodes and the
 * completion status values. Declared once here; neither side uses a raw offset.
 *
 * Register block of an NVMe VF (one 4 KiB frame; the common header is src/hw/vf.ts's):
 *
 *   byte    0  line 0   identity and control (vr* of vf.ts)
 *   byte   64  line 1   doorbell wake word (the device parks on it; drivers notify it)
 *   byte  128  line 2   device-written counters: vs* of vf.ts, then the NVMe ones below
 *   byte  256  line N   namespace and controller identity, ready/failed state   device-written
 *   byte  320  lines Q  queue pair q's configuration, q = 0 … 3, 64 bytes each    driver-written
 *   byte  576  lines D  queue pair q's doorbells (SQ tail, CQ head), 64 each     driver-written
 *   byte  832  …        unused
 *
 * Simplification (say it once): NVMe creates I/O queues with admin commands (CREATE I/O SQ/CQ,
 * NVMe base spec §5) on an admin queue pair; here the driver writes each pair's base IOVA and
 * size into its configuration line before it sets VFC_ENABLE, as it writes the admin queue's
 * AQA/ASQ/ACQ registers before CC.EN on a real controller. nrReady plays CSTS.RDY (1) and
 * CSTS.CFS (-1); nrNsBlocks/nrMaxTransfer play Identify's NSZE and MDTS.
 *
 * Owner notes: line N and line 2 are written by the device only (Atomics.store); lines Q are
 * written by the driver before VFC_ENABLE and read by the device once, at enable; lines D are
 * written by the driver (Atomics.store: publish) and read by the device (Atomics.load: consume).
 * A driver that moves a CQ head must notify the doorbell wake word too: the device may be parked
 * waiting for room in that CQ.
 *
 * Queue entries (little-endian, NVMe base spec §4.2 and §4.6):
 *
 *   submission queue entry, 64 bytes          completion queue entry, 16 bytes
 *     0  u8   opcode                           0  u32  command specific (0)
 *     1  u8   FUSE (bits 1:0), PSDT (7:6)      4  u32  reserved
 *     2  u16  command id (CID)                 8  u16  SQ head pointer
 *     4  u32  namespace id (NSID)             10  u16  SQ id
 *    24  u64  PRP1: IOVA of the data          12  u16  command id
 *    32  u64  PRP2 (unused, see below)        14  u16  bit 0 phase tag, bits 15:1 status field
 *    40  u64  starting LBA
 *    48  u32  CDW12: NLB (15:0, 0-based), FUA (bit 30)
 *
 * One PRP to a contiguous IOVA range replaces PRP lists: PRP1 names the first byte of a transfer
 * that runs on, contiguous in the VF's I/O address space, for (NLB+1) × 4096 bytes; PRP2 is
 * ignored. The IOMMU still checks every byte of it (src/hw/dma.ts).
 */

import { VF_DEVICE_REGS, VF_STATS } from "./vf.js";

/** Bytes of one logical block (LBA format 0 of every namespace). */
export const NVME_LBA_BYTES = 4096;
/** Queue pairs a VF may configure (I/O queues 1 … 4 in NVMe's numbering: SQ id = q + 1). */
export const NVME_MAX_QUEUE_PAIRS = 4;
/** Fewest entries in a queue (NVMe: a queue of 1 entry could never hold a command). */
export const NVME_MIN_QUEUE_ENTRIES = 2;
/** Most entries in a queue (CAP.MQES + 1); NVMe allows 65536, one frame of CQEs is 256. */
export const NVME_MAX_QUEUE_ENTRIES = 4096;
/** Queue bases must be page aligned (NVMe: a physically contiguous queue starts on a page). */
export const NVME_QUEUE_ALIGN = 4096;
export const NVME_SQE_BYTES = 64;
export const NVME_CQE_BYTES = 16;

// ---- line N: identity and state, int32 word indexes from the start of the block ----
const N = VF_DEVICE_REGS / 4;
/** Blocks in this VF's namespace (Identify Namespace NSZE). */
export const nrNsBlocks = N + 0;
/** Bytes per block: always {@link NVME_LBA_BYTES}. */
export const nrLbaBytes = N + 1;
/** Queue pairs the device offers: {@link NVME_MAX_QUEUE_PAIRS}. */
export const nrQueuePairs = N + 2;
/** Most entries per queue (CAP.MQES + 1). */
export const nrQueueEntries = N + 3;
/** Most blocks one command may move (Identify Controller MDTS, in blocks). */
export const nrMaxTransfer = N + 4;
/** 0 = queues not enabled, 1 = enabled (CSTS.RDY), -1 = the VF failed (CSTS.CFS). Notified. */
export const nrReady = N + 5;
/** Positive errno saying why the VF failed: EINVAL bad queue configuration, EFAULT a queue DMA
 * faulted, EIO power loss. 0 while it has not. */
export const nrFailReason = N + 6;

// ---- lines Q: queue pair configuration ----
/** Byte offset (in the block) of queue pair 0's configuration line. */
export const NVME_QUEUE_CONFIG = VF_DEVICE_REGS + 64;
export const nqSqBaseLo = 0; // IOVA of the SQ, low 32 bits
export const nqSqBaseHi = 1; // … high bits
export const nqSqEntries = 2; // entries in the SQ; 0 = pair not in use
export const nqCqBaseLo = 3; // IOVA of the CQ, low 32 bits
export const nqCqBaseHi = 4;
export const nqCqEntries = 5; // entries in the CQ

/** Int32 word index (from the start of the block) of field `field` of queue pair `q`'s config. */
export function queueConfigWord(q: number, field: number): number {
  return (NVME_QUEUE_CONFIG + 64 * q) / 4 + field;
}

// ---- lines D: doorbells ----
/** Byte offset (in the block) of queue pair 0's doorbell line. */
export const NVME_DOORBELLS = NVME_QUEUE_CONFIG + 64 * NVME_MAX_QUEUE_PAIRS;
/** One past the last byte of the NVMe registers. */
export const NVME_REGS_END = NVME_DOORBELLS + 64 * NVME_MAX_QUEUE_PAIRS;

/** Word index of queue pair `q`'s SQ tail doorbell (driver: next free slot, published). */
export function sqTailDoorbell(q: number): number {
  return (NVME_DOORBELLS + 64 * q) / 4;
}
/** Word index of queue pair `q`'s CQ head doorbell (driver: next entry it will consume). */
export function cqHeadDoorbell(q: number): number {
  return (NVME_DOORBELLS + 64 * q) / 4 + 1;
}

// ---- line 2: NVMe counters after vf.ts's common ones (device-written, int32, wrap) ----
const S = VF_STATS / 4;
export const vsReads = S + 5; // READ commands
export const vsWrites = S + 6; // WRITE commands
export const vsFlushes = S + 7; // FLUSH commands
export const vsCacheHits = S + 8; // blocks read from the write cache
export const vsWriteBacks = S + 9; // blocks written back to make room in the cache

// ---- submission queue entry ----
export const SQE_OPCODE = 0;
export const SQE_FLAGS = 1;
export const SQE_CID = 2;
export const SQE_NSID = 4;
export const SQE_PRP1 = 24;
export const SQE_PRP2 = 32;
export const SQE_SLBA = 40;
export const SQE_CDW12 = 48;
/** CDW12 bit 30: Force Unit Access — the write is durable when it completes. */
export const CDW12_FUA = 1 << 30;
/** SQE byte 1: FUSE (bits 1:0) and PSDT (bits 7:6); both must be 0 here (no fusing, PRPs). */
export const SQE_FLAGS_FUSE = 0x03;
export const SQE_FLAGS_PSDT = 0xc0;

// ---- completion queue entry ----
export const CQE_DW0 = 0;
export const CQE_SQHD = 8;
export const CQE_SQID = 10;
export const CQE_CID = 12;
/** The status half-word: bit 0 is the phase tag, bits 15:1 the status field. */
export const CQE_STATUS = 14;
/** Byte offset of the CQE's dword 3 (CID + phase + status), the word a driver polls. */
export const CQE_DW3 = 12;

// ---- opcodes (NVM command set) ----
export const NVME_CMD_FLUSH = 0x00;
export const NVME_CMD_WRITE = 0x01;
export const NVME_CMD_READ = 0x02;

/** NSID of the one namespace of each VF. */
export const NVME_NSID = 1;
/** NSID meaning "every namespace" (FLUSH accepts it). */
export const NVME_NSID_ALL = 0xffffffff;

// ---- status field (NVMe base spec §4.6.1: SC bits 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14) ----
export const SCT_GENERIC = 0;
export const SCT_MEDIA = 2;
/** Do Not Retry: the same command would fail again. */
export const STATUS_DNR = 1 << 14;

/** A status field from its type, code and DNR bit. */
export function nvmeStatus(sct: number, sc: number, dnr: boolean): number {
  return (sc & 0xff) | ((sct & 7) << 8) | (dnr ? STATUS_DNR : 0);
}
export function statusCode(status: number): number {
  return status & 0xff;
}
export function statusType(status: number): number {
  return (status >>> 8) & 7;
}

// Generic command status values (NVMe base spec, "Generic Command Status Values").
export const NVME_SC_SUCCESS = 0;
export const NVME_SC_INVALID_OPCODE = nvmeStatus(SCT_GENERIC, 0x01, true);
export const NVME_SC_INVALID_FIELD = nvmeStatus(SCT_GENERIC, 0x02, true);
export const NVME_SC_DATA_TRANSFER_ERROR = nvmeStatus(SCT_GENERIC, 0x04, false);
export const NVME_SC_INTERNAL_ERROR = nvmeStatus(SCT_GENERIC, 0x06, false);
export const NVME_SC_INVALID_NAMESPACE = nvmeStatus(SCT_GENERIC, 0x0b, true);
export const NVME_SC_PRP_OFFSET_INVALID = nvmeStatus(SCT_GENERIC, 0x13, true);
export const NVME_SC_LBA_OUT_OF_RANGE = nvmeStatus(SCT_GENERIC, 0x80, true);
export const NVME_SC_NAMESPACE_NOT_READY = nvmeStatus(SCT_GENERIC, 0x82, false);
// Media and data integrity errors.
export const NVME_SC_WRITE_FAULT = nvmeStatus(SCT_MEDIA, 0x80, false);
export const NVME_SC_UNRECOVERED_READ = nvmeStatus(SCT_MEDIA, 0x81, false);

const NAMES: ReadonlyArray<readonly [number, string]> = [
  [NVME_SC_SUCCESS, "Successful Completion"],
  [NVME_SC_INVALID_OPCODE, "Invalid Command Opcode"],
  [NVME_SC_INVALID_FIELD, "Invalid Field in Command"],
  [NVME_SC_DATA_TRANSFER_ERROR, "Data Transfer Error"],
  [NVME_SC_INTERNAL_ERROR, "Internal Error"],
  [NVME_SC_INVALID_NAMESPACE, "Invalid Namespace or Format"],
  [NVME_SC_PRP_OFFSET_INVALID, "PRP Offset Invalid"],
  [NVME_SC_LBA_OUT_OF_RANGE, "LBA Out of Range"],
  [NVME_SC_NAMESPACE_NOT_READY, "Namespace Not Ready"],
  [NVME_SC_WRITE_FAULT, "Write Fault"],
  [NVME_SC_UNRECOVERED_READ, "Unrecovered Read Error"],
];

/** "LBA Out of Range (SCT 0x0 SC 0x80)": a status for messages. The DNR bit is not compared. */
export function describeStatus(status: number): string {
  const key = status & ~STATUS_DNR;
  const hit = NAMES.find(([s]) => (s & ~STATUS_DNR) === key);
  const codes = `SCT 0x${statusType(status).toString(16)} SC 0x${statusCode(status).toString(16)}`;
  return hit ? `${hit[1]} (${codes})` : `status ${codes}`;
}
