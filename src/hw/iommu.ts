/**
 * iommu: DMA remapping in the manner of Intel VT-d (legacy mode), in miniature. Every DMA a
 * device model makes names its requester id (RID) and an I/O virtual address (IOVA); the IOMMU
 * finds the RID's context, walks that context's I/O page table, checks the access, and either
 * copies the bytes or blocks the whole access and records a fault.
 *
 * Owns: the root and context tables and the I/O page tables (all in physical-memory frames taken
 * from the FrameSource it is given); the domains (a domain id names one I/O page table, which
 * several RIDs may share); the IOTLB (a private set-associative cache of leaf entries, tagged by
 * domain id and page); the fault recording registers; {@link Iommu}, the machine's
 * {@link DmaPort}.
 *
 * Tables (VT-d §3.4 root-entry / context-entry translation; entries are 128 bits, 4 × int32):
 *
 *   RID (16 bits) = bus (8) · devfn (8), as PCIe forms a requester id
 *   root table: 1 frame, 256 root entries (one per bus)
 *     root entry  w0: bit 0 P · bits 12-31 frame of the bus's context table      w1-w3: 0
 *   context table: 1 frame, 256 context entries (one per devfn)
 *     context entry  w0: bit 0 P · bits 2-3 TT · bits 12-31 frame of the I/O page directory
 *                    w1: bits 0-5 AW (address width in bits, 12…32) · bits 8-23 DID   w2-w3: 0
 *     TT: 0 translate · 2 pass-through (IOVA = physical address) · 3 blocked (exocore's: VT-d
 *         legacy mode reserves 3) · 1 (VT-d's device-TLB translate) is invalid here
 *
 * I/O page tables: the shape of our MMU (src/hw/mmu.ts) — 32-bit IOVA, 4 KiB pages, a directory
 * of 1024 entries, tables of 1024 entries. An entry (VT-d second-level format, 32 bits):
 *    31                               12 11          2    1    0
 *   ┌───────────────────────────────────┬─────────────┬────┬────┐
 *   │ frame number (20 bits)            │ 0           │ W  │ R  │   an entry with neither R nor
 *   └───────────────────────────────────┴─────────────┴────┴────┘   W is not present (VT-d)
 * A directory entry is R|W and its table's frame: the leaf alone decides the rights.
 *
 * Fault reasons (src/hw/dma.ts): root entry absent → FR_ROOT_NOT_PRESENT; context entry absent
 * → FR_CONTEXT_NOT_PRESENT; TT 1 or an AW outside 12…32 → FR_CONTEXT_INVALID; TT blocked →
 * FR_BLOCKED; the last byte at or past 2^AW (pass-through: past the end of memory) →
 * FR_ADDRESS_BEYOND_AW; a table pointer or leaf frame outside memory → FR_PT_ACCESS; a leaf or
 * directory entry with neither R nor W → FR_PTE_NOT_PRESENT for reads AND writes, as dma.ts
 * defines it (VT-d itself would report 5h for a write); a present leaf without W on a write →
 * FR_NO_WRITE, without R on a read → FR_NO_READ.
 *
 * Fault recording (VT-d's Fault Recording Registers and the Primary Fault Overflow bit of the
 * Fault Status Register): a fixed number of records, each RID, IOVA of the access, IOVA of the
 * page that faulted, kind (read or write), reason and a repeat count. A fault whose RID, reason
 * and kind equal those of a record not yet cleared by software is merged into it (count + 1,
 * addresses of the latest). When every record is in use, `overflow` (PFO) is set and the fault
 * is counted in `stats().faultsDropped` but not recorded. Each fault is also delivered at once
 * to the `onFault` listeners with one reused event object.
 *
 * Invariants:
 *   - a DMA is all or nothing: every page it touches is translated and checked before one byte
 *     moves; a blocked DMA reads and writes nothing;
 *   - the IOTLB holds only present leaf entries, and never one that the tables no longer grant:
 *     map (replace), unmap, protect and destroyDomain invalidate what they change before
 *     returning. A hit that lacks the right asked for is re-walked (VT-d lets software skip
 *     invalidation when it only adds rights; the hardware then re-walks);
 *   - there is no context cache: contexts are read from the tables on every DMA (two loads),
 *     so setContext and clearContext need no invalidation. IOTLB entries are tagged by domain
 *     id, so moving a RID to another domain leaves nothing stale either;
 *   - a page table whose last entry is unmapped is freed at once (with its directory slot), so
 *     a domain holds table frames only for what it maps; destroyDomain frees the rest;
 *   - the DMA path allocates nothing in the steady state: the translation uses fields and a
 *     scratch array, faults fill typed-array records and one reused event, and copies avoid
 *     fresh views (see #move for how, and for the one case that still makes one).
 *
 * Concurrency and who may call: everything here runs on the hypervisor thread — the kernel
 * operations (setContext, map, unmap, protect, invalidate…) and the device models' DMAs alike.
 * The tables are written and walked by that one thread, so they are plain typed-array words
 * with no Atomics; other threads never read them. The bytes a DMA copies are made visible to
 * other threads by the device model's own publish (an Atomics store of a completion) after it.
 *
 * Rejected: a context cache (two loads do not need one, and it would need its own
 * invalidations); caching faults in the IOTLB (VT-d does not cache not-present entries, and a
 * negative entry would need invalidating on every map); freeing page tables lazily (a domain
 * that maps and unmaps a moving window would keep every table it ever touched).
 */

import { EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM } from "../abi/errno.js";
import { checkInteger, checkPowerOfTwo, fromErrno, panic } from "../errors.js";
import {
  DMA_OK,
  type DmaPort,
  type DmaStatus,
  FR_ADDRESS_BEYOND_AW,
  FR_BLOCKED,
  FR_CONTEXT_INVALID,
  FR_CONTEXT_NOT_PRESENT,
  FR_NO_READ,
  FR_NO_WRITE,
  FR_PT_ACCESS,
  FR_PTE_NOT_PRESENT,
  FR_ROOT_NOT_PRESENT,
} from "./dma.js";
import {
  type FrameSource,
  PAGE_MASK,
  PAGE_SHIFT,
  PAGE_SIZE,
  PAGE_WORDS,
  type PhysicalMemory,
} from "./physmem.js";

// ---- translation types (context entry TT) ----
/** Translate through the domain's I/O page table. */
export const TT_TRANSLATE = 0;
/** No translation: IOVA = physical address, bounds-checked against memory (VT-d's TT 10b). */
export const TT_PASSTHROUGH = 2;
/** Every DMA faults with FR_BLOCKED (exocore's use of the TT value VT-d legacy mode reserves). */
export const TT_BLOCKED = 3;
export type TranslationType = typeof TT_TRANSLATE | typeof TT_PASSTHROUGH | typeof TT_BLOCKED;

// ---- I/O page-table entry bits ----
export const IOPTE_READ = 1 << 0;
export const IOPTE_WRITE = 1 << 1;
export const IOPTE_RW = IOPTE_READ | IOPTE_WRITE;

/** Largest requester id (16 bits: bus · devfn). */
export const MAX_RID = 0xffff;
/** Largest domain id (16 bits, VT-d's DID). */
export const MAX_DOMAIN_ID = 0xffff;
/** Narrowest and widest address width a context may have, in bits. */
export const MIN_ADDRESS_WIDTH = 12;
export const MAX_ADDRESS_WIDTH = 32;
/** 2^aw for every width, looked up per DMA (Math.pow there was 1.3% of the hypervisor's time). */
const AW_LIMIT: readonly number[] = Array.from({ length: MAX_ADDRESS_WIDTH + 1 }, (_, w) => 2 ** w);

/** Bytes of IOVA space (32-bit addresses). */
const IOVA_TOP = 2 ** 32;
/** Int32 words of a root or context entry (128 bits, as in VT-d). */
const ENTRY_WORDS = 4;
/** Entries of an I/O page directory or table. */
const IO_ENTRIES = PAGE_WORDS;
const IO_DIR_SHIFT = 10; // vpn >>> 10 = directory index

// Root / context entry bits.
const RE_P = 1;
const CE_P = 1;
const CE_TT_SHIFT = 2;
const CE_TT_MASK = 3;
const CE_AW_MASK = 0x3f;
const CE_DID_SHIFT = 8;

/** Copies of at most this many bytes go byte by byte (no view object: queue entries, descriptors). */
const SMALL_COPY = 32;
/** log2 of the entries of the cache of physical-memory views that reads copy from. */
const VIEW_CACHE_BITS = 8;

/** What a context entry holds, as the kernel gives it to {@link Iommu.setContext}. */
export interface IommuContext {
  readonly type: TranslationType;
  /** Domain id: names the I/O page table (TT_TRANSLATE); recorded for the others. */
  readonly domainId: number;
  /** Bits of IOVA the context translates (default 32): a DMA past 2^bits faults. */
  readonly addressWidth?: number;
}

/** One fault recording register, as {@link Iommu.faults} reads it. */
export interface FaultRecord {
  /** Which record (0 … faultRecords-1). */
  readonly index: number;
  /** Requester id of the faulting DMA. */
  readonly rid: number;
  /** IOVA the (latest) faulting DMA started at. */
  readonly iova: number;
  /** IOVA of the page that faulted (page-aligned). */
  readonly page: number;
  /** True for a DMA write (device → memory), false for a read. */
  readonly write: boolean;
  /** VT-d fault reason (FR_* in src/hw/dma.ts). */
  readonly reason: number;
  /** Faults merged into this record (1 for a single fault). */
  readonly count: number;
}

/**
 * What an {@link Iommu.onFault} listener receives: one object, reused for every fault, so copy
 * what you keep. `record` is the fault record it went to, or -1 if it was dropped (overflow).
 */
export interface DmaFaultEvent {
  rid: number;
  iova: number;
  page: number;
  write: boolean;
  reason: number;
  record: number;
  count: number;
}

export type DmaFaultListener = (event: Readonly<DmaFaultEvent>) => void;

export interface IommuOptions {
  /** Fault recording registers (default 16). */
  readonly faultRecords?: number;
  /** IOTLB sets, a power of two (default 64). */
  readonly iotlbSets?: number;
  /** IOTLB ways per set (default 4): 64 × 4 = 256 entries. */
  readonly iotlbWays?: number;
}

/** Counters, as {@link Iommu.stats} returns them. */
export interface IommuStats {
  /** Page translations served by the IOTLB. */
  readonly iotlbHits: number;
  /** Page translations that walked the tables (no entry, or one without the right asked for). */
  readonly iotlbMisses: number;
  /** IOTLB entries dropped by invalidations. */
  readonly iotlbInvalidations: number;
  /** DMAs that completed, and the bytes they moved. */
  readonly reads: number;
  readonly writes: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** DMAs blocked (all faults, recorded or not). */
  readonly faults: number;
  /** Faults not recorded because every record was in use (overflow). */
  readonly faultsDropped: number;
  /** Frames the IOMMU holds now: root, context tables, page directories and tables. */
  readonly tableFrames: number;
  /** Domains that exist. */
  readonly domains: number;
}

/** The name of a fault reason, for messages and describe(). */
export function faultReasonName(reason: number): string {
  switch (reason) {
    case DMA_OK:
      return "ok";
    case FR_ROOT_NOT_PRESENT:
      return "root-not-present";
    case FR_CONTEXT_NOT_PRESENT:
      return "context-not-present";
    case FR_CONTEXT_INVALID:
      return "context-invalid";
    case FR_ADDRESS_BEYOND_AW:
      return "address-beyond-width";
    case FR_NO_WRITE:
      return "no-write";
    case FR_NO_READ:
      return "no-read-or-not-present";
    case FR_PT_ACCESS:
      return "page-table-access";
    case FR_BLOCKED:
      return "blocked";
    default:
      return `reason ${reason}`;
  }
}

/** One I/O page table and its bookkeeping (hypervisor-private, not in shared memory). */
interface Domain {
  /** Frame of the page directory. */
  readonly root: number;
  /** Present leaf entries per directory slot: a table is freed when its count drops to 0. */
  readonly live: Uint16Array;
  /** TT_TRANSLATE contexts that point at this domain (destroyDomain refuses while > 0). */
  contexts: number;
}

/** `iova` as a uint32 if it is a 32-bit address (uint32 or int32 form), else -1. */
function toIova(iova: number): number {
  return iova >>> 0 === iova || (iova | 0) === iova ? iova >>> 0 : -1;
}

/**
 * The machine's IOMMU. One per machine, on the hypervisor thread (see the file header).
 * Kernel operations return 0 or -errno and change nothing on an error; DMAs return DMA_OK or a
 * fault reason.
 */
export class Iommu implements DmaPort {
  readonly mem: PhysicalMemory;
  /** Frame of the root table (VT-d's RTADDR). */
  readonly rootFrame: number;
  /** Fault recording registers. */
  readonly faultRecords: number;
  readonly #frames: FrameSource;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #memFrames: number;
  readonly #domains = new Map<number, Domain>();
  /** Present context entries per bus: a context table is freed when its count drops to 0. */
  readonly #busContexts = new Uint16Array(256);
  #tableFrames = 0;

  // IOTLB: tag (domain id, vpn) → leaf entry. -1 in #tlbDid: empty way.
  readonly #tlbDid: Int32Array;
  readonly #tlbVpn: Int32Array;
  readonly #tlbPte: Int32Array;
  readonly #tlbVictim: Uint8Array;
  readonly #tlbWays: number;
  readonly #tlbSetMask: number;

  // Fault recording registers. #recValid: 1 = holds a fault software has not cleared (VT-d's F).
  readonly #recValid: Uint8Array;
  readonly #recRid: Int32Array;
  readonly #recWrite: Uint8Array;
  readonly #recReason: Int32Array;
  readonly #recCount: Float64Array;
  readonly #recIova: Float64Array;
  readonly #recPage: Float64Array;
  #overflow = false;
  readonly #listeners: DmaFaultListener[] = [];
  readonly #event: DmaFaultEvent = {
    rid: 0,
    iova: 0,
    page: 0,
    write: false,
    reason: 0,
    record: -1,
    count: 0,
  };

  // Scratch of the DMA in progress: the frame of each page it touches, set by #resolve.
  #pages = new Int32Array(64);
  #npages = 0;
  #passthrough = false;
  #faultPage = 0;
  /** Views of physical memory by (address, length), direct-mapped: see #memView. */
  readonly #views: Array<Uint8Array | null> = new Array(1 << VIEW_CACHE_BITS).fill(null);

  // Counters (plain numbers: one thread).
  #hits = 0;
  #misses = 0;
  #invalidated = 0;
  #reads = 0;
  #writes = 0;
  #bytesRead = 0;
  #bytesWritten = 0;
  #faults = 0;
  #faultsDropped = 0;

  /**
   * `frames`: where the root table, context tables and I/O page tables come from (the
   * hypervisor's FrameAllocator). Takes the root table's frame at once; throws a coded error
   * (EXO_ERR_ENOMEM) if none is left, InvalidArgumentError on a bad option.
   */
  constructor(mem: PhysicalMemory, frames: FrameSource, options: IommuOptions = {}) {
    this.faultRecords = checkInteger("iommu faultRecords", options.faultRecords ?? 16, 1, 256);
    const sets = checkPowerOfTwo("iommu iotlbSets", options.iotlbSets ?? 64, 1, 1 << 16);
    const ways = checkInteger("iommu iotlbWays", options.iotlbWays ?? 4, 1, 64);
    this.mem = mem;
    this.#frames = frames;
    this.#i32 = mem.i32;
    this.#u8 = mem.u8;
    this.#memFrames = mem.frames;
    this.#tlbDid = new Int32Array(sets * ways).fill(-1);
    this.#tlbVpn = new Int32Array(sets * ways);
    this.#tlbPte = new Int32Array(sets * ways);
    this.#tlbVictim = new Uint8Array(sets);
    this.#tlbWays = ways;
    this.#tlbSetMask = sets - 1;
    const n = this.faultRecords;
    this.#recValid = new Uint8Array(n);
    this.#recRid = new Int32Array(n);
    this.#recWrite = new Uint8Array(n);
    this.#recReason = new Int32Array(n);
    this.#recCount = new Float64Array(n);
    this.#recIova = new Float64Array(n);
    this.#recPage = new Float64Array(n);
    const root = this.#allocTable();
    if (root < 0) throw fromErrno("iommu: root table", root);
    this.rootFrame = root;
  }

  // ---- contexts (kernel: hypervisor) ----

  /**
   * Write the context entry of `rid`: its translation type, domain id and address width.
   * A TT_TRANSLATE context creates its domain (an empty I/O page table) if it does not exist.
   * Returns 0, -EINVAL on a bad argument, -ENOMEM if a context table or directory frame is
   * needed and none is left. No invalidation is needed (see the file header).
   */
  setContext(rid: number, context: IommuContext): number {
    // decode: every field, then every frame we may need
    if (!isRid(rid)) return -EINVAL;
    const type = context.type;
    if (type !== TT_TRANSLATE && type !== TT_PASSTHROUGH && type !== TT_BLOCKED) return -EINVAL;
    const did = context.domainId;
    if (!isDomainId(did)) return -EINVAL;
    const aw = context.addressWidth ?? MAX_ADDRESS_WIDTH;
    if (!Number.isInteger(aw) || aw < MIN_ADDRESS_WIDTH || aw > MAX_ADDRESS_WIDTH) return -EINVAL;
    const rootAt = this.#rootEntry(rid);
    const i32 = this.#i32;
    let table = (i32[rootAt] & RE_P) !== 0 ? i32[rootAt] >>> PAGE_SHIFT : -1;
    const newTable = table < 0;
    if (newTable) {
      table = this.#allocTable();
      if (table < 0) return table;
    }
    let domain = type === TT_TRANSLATE ? this.#domains.get(did) : undefined;
    if (type === TT_TRANSLATE && domain === undefined) {
      domain = this.#newDomain(did);
      if (domain === undefined) {
        if (newTable) this.#freeTable(table);
        return -ENOMEM;
      }
    }
    // invoke: cannot fail from here
    if (newTable) i32[rootAt] = (table << PAGE_SHIFT) | RE_P;
    const at = table * PAGE_WORDS + (rid & 0xff) * ENTRY_WORDS;
    if ((i32[at] & CE_P) === 0) this.#busContexts[rid >>> 8]++;
    else this.#dropContextRef(at);
    if (domain !== undefined) domain.contexts++;
    const root = domain !== undefined ? domain.root : 0;
    i32[at + 1] = aw | (did << CE_DID_SHIFT);
    i32[at] = (root << PAGE_SHIFT) | (type << CE_TT_SHIFT) | CE_P;
    return 0;
  }

  /**
   * Remove the context entry of `rid` (its DMAs then fault with FR_CONTEXT_NOT_PRESENT); frees
   * the bus's context table when it was the last. Returns 0, -ENOENT if there was none, -EINVAL.
   * The domain stays (see {@link destroyDomain}).
   */
  clearContext(rid: number): number {
    if (!isRid(rid)) return -EINVAL;
    const at = this.contextEntryAddress(rid) / 4;
    const i32 = this.#i32;
    if (at < 0 || (i32[at] & CE_P) === 0) return -ENOENT;
    this.#dropContextRef(at);
    i32[at] = 0;
    i32[at + 1] = 0;
    const bus = rid >>> 8;
    if (--this.#busContexts[bus] === 0) {
      const rootAt = this.#rootEntry(rid);
      const table = i32[rootAt] >>> PAGE_SHIFT;
      i32[rootAt] = 0;
      this.#freeTable(table);
    }
    return 0;
  }

  /** The context of `rid` as the tables hold it, or null if it has none. */
  context(rid: number): IommuContext | null {
    if (!isRid(rid)) return null;
    const at = this.contextEntryAddress(rid) / 4;
    if (at < 0) return null;
    const w0 = this.#i32[at];
    const w1 = this.#i32[at + 1];
    if ((w0 & CE_P) === 0) return null;
    return {
      type: ((w0 >>> CE_TT_SHIFT) & CE_TT_MASK) as TranslationType,
      domainId: (w1 >>> CE_DID_SHIFT) & MAX_DOMAIN_ID,
      addressWidth: w1 & CE_AW_MASK,
    };
  }

  /**
   * Byte address in physical memory of `rid`'s context entry, or -1 if its bus has no context
   * table. For tests and fault injection (a rogue write to the tables).
   */
  contextEntryAddress(rid: number): number {
    if (!isRid(rid)) return -1;
    const re = this.#i32[this.#rootEntry(rid)];
    if ((re & RE_P) === 0) return -1;
    return (re >>> PAGE_SHIFT) * PAGE_SIZE + (rid & 0xff) * ENTRY_WORDS * 4;
  }

  // ---- domains and their I/O page tables (kernel: hypervisor) ----

  /** True if domain `did` exists (has an I/O page table). */
  hasDomain(did: number): boolean {
    return this.#domains.has(did);
  }

  /**
   * Create domain `did` with an empty I/O page table. Returns 0, -EEXIST, -EINVAL, -ENOMEM.
   * (map and setContext also create the domain they name.)
   */
  createDomain(did: number): number {
    if (!isDomainId(did)) return -EINVAL;
    if (this.#domains.has(did)) return -EEXIST;
    return this.#newDomain(did) === undefined ? -ENOMEM : 0;
  }

  /**
   * Free domain `did`'s I/O page table (every mapping in it) and drop its IOTLB entries.
   * Returns 0, -ENOENT if it does not exist, -EBUSY while a translating context points at it.
   */
  destroyDomain(did: number): number {
    const domain = this.#domains.get(did);
    if (domain === undefined) return -ENOENT;
    if (domain.contexts > 0) return -EBUSY;
    this.invalidateDomain(did);
    const dir = domain.root * PAGE_WORDS;
    for (let d = 0; d < IO_ENTRIES; d++) {
      const pde = this.#i32[dir + d];
      if ((pde & IOPTE_RW) !== 0) this.#freeTable(pde >>> PAGE_SHIFT);
    }
    this.#freeTable(domain.root);
    this.#domains.delete(did);
    return 0;
  }

  /** Map one page: {@link mapRange} with a count of 1. */
  map(did: number, iova: number, frame: number, perms: number, replace = false): number {
    return this.mapRange(did, iova, frame, 1, perms, replace);
  }

  /**
   * Map `count` pages from `iova` to frames firstFrame, firstFrame+1, … with `perms` (READ,
   * WRITE or both) in domain `did`, creating the domain if needed. Returns 0, -EINVAL on an
   * unaligned or out-of-range address, frame or count or bad perms, -EEXIST if a page is mapped
   * and `replace` is false, -ENOMEM if a table is needed and no frame is left. All or nothing.
   * Replaced pages are invalidated in the IOTLB before it returns.
   */
  mapRange(
    did: number,
    iova: number,
    firstFrame: number,
    count: number,
    perms: number,
    replace = false,
  ): number {
    // decode: arguments, then existing entries, then every table frame we need
    const a = toIova(iova);
    if (!isDomainId(did) || a < 0 || (a & PAGE_MASK) !== 0) return -EINVAL;
    if (!Number.isInteger(count) || count < 1 || a + count * PAGE_SIZE > IOVA_TOP) return -EINVAL;
    if (!Number.isInteger(firstFrame) || firstFrame < 0 || firstFrame + count > this.#memFrames)
      return -EINVAL;
    if (!isPerms(perms)) return -EINVAL;
    const vpn0 = a >>> PAGE_SHIFT;
    let domain = this.#domains.get(did);
    if (domain !== undefined && !replace) {
      for (let k = 0; k < count; k++) {
        const at = this.#leafAt(domain, vpn0 + k);
        if (at >= 0 && (this.#i32[at] & IOPTE_RW) !== 0) return -EEXIST;
      }
    }
    const created = domain === undefined;
    if (domain === undefined) {
      domain = this.#newDomain(did);
      if (domain === undefined) return -ENOMEM;
    }
    const r = this.#addTables(domain, vpn0, count);
    if (r < 0) {
      if (created) this.destroyDomain(did);
      return r;
    }
    // invoke: write the leaves
    const i32 = this.#i32;
    let replaced = false;
    for (let k = 0; k < count; k++) {
      const vpn = vpn0 + k;
      const at = this.#leafAt(domain, vpn);
      if ((i32[at] & IOPTE_RW) !== 0) replaced = true;
      else domain.live[vpn >>> IO_DIR_SHIFT]++;
      i32[at] = ((firstFrame + k) << PAGE_SHIFT) | perms;
    }
    if (replaced) this.invalidatePages(did, a, count);
    return 0;
  }

  /**
   * Unmap `count` pages from `iova` in domain `did` (pages not mapped are skipped), invalidate
   * them in the IOTLB, then free every page table left empty. Returns the number of pages that
   * were mapped, -EINVAL on a bad range, -ENOENT if the domain does not exist.
   */
  unmap(did: number, iova: number, count: number): number {
    const a = toIova(iova);
    if (!isDomainId(did) || a < 0 || (a & PAGE_MASK) !== 0) return -EINVAL;
    if (!Number.isInteger(count) || count < 1 || a + count * PAGE_SIZE > IOVA_TOP) return -EINVAL;
    const domain = this.#domains.get(did);
    if (domain === undefined) return -ENOENT;
    const i32 = this.#i32;
    const vpn0 = a >>> PAGE_SHIFT;
    let unmapped = 0;
    for (let k = 0; k < count; k++) {
      const at = this.#leafAt(domain, vpn0 + k);
      if (at < 0 || (i32[at] & IOPTE_RW) === 0) continue;
      i32[at] = 0;
      domain.live[(vpn0 + k) >>> IO_DIR_SHIFT]--;
      unmapped++;
    }
    if (unmapped === 0) return 0;
    this.invalidatePages(did, a, count);
    const dir = domain.root * PAGE_WORDS;
    const last = (vpn0 + count - 1) >>> IO_DIR_SHIFT;
    for (let d = vpn0 >>> IO_DIR_SHIFT; d <= last; d++) {
      const pde = i32[dir + d];
      if ((pde & IOPTE_RW) === 0 || domain.live[d] !== 0) continue;
      i32[dir + d] = 0;
      this.#freeTable(pde >>> PAGE_SHIFT);
    }
    return unmapped;
  }

  /**
   * Replace the rights of `count` mapped pages from `iova` with `perms` (READ, WRITE or both),
   * keeping their frames, and invalidate them in the IOTLB. Returns 0, -EINVAL, -ENOENT if the
   * domain does not exist or a page in the range is not mapped (then nothing changes).
   */
  protect(did: number, iova: number, count: number, perms: number): number {
    const a = toIova(iova);
    if (!isDomainId(did) || a < 0 || (a & PAGE_MASK) !== 0) return -EINVAL;
    if (!Number.isInteger(count) || count < 1 || a + count * PAGE_SIZE > IOVA_TOP) return -EINVAL;
    if (!isPerms(perms)) return -EINVAL;
    const domain = this.#domains.get(did);
    if (domain === undefined) return -ENOENT;
    const i32 = this.#i32;
    const vpn0 = a >>> PAGE_SHIFT;
    for (let k = 0; k < count; k++) {
      const at = this.#leafAt(domain, vpn0 + k);
      if (at < 0 || (i32[at] & IOPTE_RW) === 0) return -ENOENT;
    }
    for (let k = 0; k < count; k++) {
      const at = this.#leafAt(domain, vpn0 + k);
      i32[at] = (i32[at] & ~IOPTE_RW) | perms;
    }
    this.invalidatePages(did, a, count);
    return 0;
  }

  /** The leaf entry for `iova` in domain `did` (unsigned; 0 if none). */
  lookup(did: number, iova: number): number {
    const a = toIova(iova);
    const domain = this.#domains.get(did);
    if (a < 0 || domain === undefined) return 0;
    const at = this.#leafAt(domain, a >>> PAGE_SHIFT);
    return at < 0 ? 0 : this.#i32[at] >>> 0;
  }

  // ---- IOTLB invalidation (VT-d: global, domain-selective, page-selective) ----

  /** Drop every IOTLB entry. */
  invalidateGlobal(): void {
    const did = this.#tlbDid;
    for (let i = 0; i < did.length; i++) {
      if (did[i] !== -1) {
        did[i] = -1;
        this.#invalidated++;
      }
    }
  }

  /** Drop every IOTLB entry of domain `did`. */
  invalidateDomain(did: number): void {
    const tags = this.#tlbDid;
    for (let i = 0; i < tags.length; i++) {
      if (tags[i] === did) {
        tags[i] = -1;
        this.#invalidated++;
      }
    }
  }

  /**
   * Drop the IOTLB entries of pages [iova, iova + count × 4 KiB) of domain `did`. A range wider
   * than the IOTLB is done as one sweep of the whole cache (VT-d's address-mask invalidation
   * lets hardware widen the same way).
   */
  invalidatePages(did: number, iova: number, count: number): void {
    const a = toIova(iova);
    if (a < 0 || !Number.isInteger(count) || count < 1) return;
    const vpn0 = a >>> PAGE_SHIFT;
    const tags = this.#tlbDid;
    const vpns = this.#tlbVpn;
    if (count > tags.length / this.#tlbWays) {
      for (let i = 0; i < tags.length; i++) {
        if (tags[i] === did && (vpns[i] - vpn0) >>> 0 < count) {
          tags[i] = -1;
          this.#invalidated++;
        }
      }
      return;
    }
    for (let k = 0; k < count; k++) {
      const vpn = vpn0 + k;
      const base = this.#tlbSet(did, vpn) * this.#tlbWays;
      for (let i = base; i < base + this.#tlbWays; i++) {
        if (tags[i] === did && vpns[i] === vpn) {
          tags[i] = -1;
          this.#invalidated++;
        }
      }
    }
  }

  // ---- DMA (device models) ----

  /** Device reads memory: copy `dst.length` bytes from `iova` into `dst`. All or nothing. */
  read(rid: number, iova: number, dst: Uint8Array): DmaStatus {
    const st = this.#resolve(rid, iova, dst.length, false);
    if (st !== DMA_OK) {
      this.#fault(rid, iova, false, st);
      return st;
    }
    this.#move(toIova(iova), dst, false);
    this.#reads++;
    this.#bytesRead += dst.length;
    return DMA_OK;
  }

  /** Device writes memory: copy `src` to `iova`. All or nothing. */
  write(rid: number, iova: number, src: Uint8Array): DmaStatus {
    const st = this.#resolve(rid, iova, src.length, true);
    if (st !== DMA_OK) {
      this.#fault(rid, iova, true, st);
      return st;
    }
    this.#move(toIova(iova), src, true);
    this.#writes++;
    this.#bytesWritten += src.length;
    return DMA_OK;
  }

  /**
   * The physical address a one-byte DMA by `rid` at `iova` would reach (>= 0), or the fault
   * reason negated (< 0). Goes through the IOTLB like a DMA (and counts hits and misses), but
   * records no fault and calls no listener.
   */
  translate(rid: number, iova: number, write: boolean): number {
    const st = this.#resolve(rid, iova, 1, write);
    if (st !== DMA_OK) return -st;
    const a = toIova(iova);
    return this.#passthrough ? a : this.#pages[0] * PAGE_SIZE + (a & PAGE_MASK);
  }

  // ---- fault recording ----

  /** The fault records that hold a fault (not yet cleared), in record order. */
  faults(): FaultRecord[] {
    const out: FaultRecord[] = [];
    for (let i = 0; i < this.faultRecords; i++) {
      if (this.#recValid[i] === 0) continue;
      out.push({
        index: i,
        rid: this.#recRid[i],
        iova: this.#recIova[i],
        page: this.#recPage[i],
        write: this.#recWrite[i] === 1,
        reason: this.#recReason[i],
        count: this.#recCount[i],
      });
    }
    return out;
  }

  /** Primary fault overflow (VT-d's PFO): a fault found every record in use and was dropped. */
  get overflow(): boolean {
    return this.#overflow;
  }

  /** Clear every fault record and the overflow flag (software has read them). */
  clearFaults(): void {
    this.#recValid.fill(0);
    this.#overflow = false;
  }

  /** Clear one fault record (VT-d: write 1 to its F bit). */
  clearFault(index: number): void {
    checkInteger("fault record", index, 0, this.faultRecords - 1);
    this.#recValid[index] = 0;
  }

  /**
   * Call `listener` synchronously on every blocked DMA, with one reused event object (see
   * {@link DmaFaultEvent}). Returns the function that removes it. A listener that throws
   * throws out of the DMA call, after the fault was recorded.
   */
  onFault(listener: DmaFaultListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Counters since boot. */
  stats(): IommuStats {
    return {
      iotlbHits: this.#hits,
      iotlbMisses: this.#misses,
      iotlbInvalidations: this.#invalidated,
      reads: this.#reads,
      writes: this.#writes,
      bytesRead: this.#bytesRead,
      bytesWritten: this.#bytesWritten,
      faults: this.#faults,
      faultsDropped: this.#faultsDropped,
      tableFrames: this.#tableFrames,
      domains: this.#domains.size,
    };
  }

  /**
   * Give every frame back: contexts, domains and the root table. The IOMMU is unusable after.
   * For teardown (tests, machine shutdown).
   */
  destroy(): void {
    for (let rid = 0; rid <= MAX_RID; rid += 256) {
      const rootAt = this.#rootEntry(rid);
      if ((this.#i32[rootAt] & RE_P) === 0) continue;
      this.#freeTable(this.#i32[rootAt] >>> PAGE_SHIFT);
      this.#i32[rootAt] = 0;
      this.#busContexts[rid >>> 8] = 0;
    }
    for (const domain of this.#domains.values()) domain.contexts = 0;
    for (const did of [...this.#domains.keys()]) this.destroyDomain(did);
    this.#freeTable(this.rootFrame);
    this.invalidateGlobal();
  }

  // ---- internals: the DMA path (allocates nothing) ----

  /**
   * Translate and check every page of the access [iova, iova + len) by `rid`. On DMA_OK the
   * pages' frames are in #pages[0 … #npages) (or #passthrough is set); on a fault, the reason
   * is returned and #faultPage holds the IOVA of the page that faulted.
   */
  #resolve(rid: number, iova: number, len: number, write: boolean): number {
    if (!isRid(rid)) panic(`iommu: DMA with requester id ${rid}, which is not 16 bits`);
    const a = toIova(iova);
    if (a < 0) {
      this.#faultPage = 0;
      return FR_ADDRESS_BEYOND_AW;
    }
    this.#faultPage = (a & ~PAGE_MASK) >>> 0;
    const i32 = this.#i32;
    const re = i32[this.#rootEntry(rid)];
    if ((re & RE_P) === 0) return FR_ROOT_NOT_PRESENT;
    const table = re >>> PAGE_SHIFT;
    if (table >= this.#memFrames) return FR_PT_ACCESS;
    const ce = table * PAGE_WORDS + (rid & 0xff) * ENTRY_WORDS;
    const c0 = i32[ce];
    if ((c0 & CE_P) === 0) return FR_CONTEXT_NOT_PRESENT;
    const tt = (c0 >>> CE_TT_SHIFT) & CE_TT_MASK;
    if (tt === TT_BLOCKED) return FR_BLOCKED;
    if (tt === TT_PASSTHROUGH) {
      if (a + len > this.mem.bytes) {
        if (a < this.mem.bytes) this.#faultPage = this.mem.bytes; // the first page past memory
        return FR_ADDRESS_BEYOND_AW;
      }
      this.#passthrough = true;
      return DMA_OK;
    }
    if (tt !== TT_TRANSLATE) return FR_CONTEXT_INVALID;
    const c1 = i32[ce + 1];
    const aw = c1 & CE_AW_MASK;
    if (aw < MIN_ADDRESS_WIDTH || aw > MAX_ADDRESS_WIDTH) return FR_CONTEXT_INVALID;
    this.#passthrough = false;
    this.#npages = 0;
    if (len === 0) return DMA_OK;
    const limit = AW_LIMIT[aw] as number;
    if (a + len > limit) {
      if (a < limit) this.#faultPage = limit; // the first page past the width
      return FR_ADDRESS_BEYOND_AW;
    }
    const root = c0 >>> PAGE_SHIFT;
    if (root >= this.#memFrames) return FR_PT_ACCESS;
    const did = (c1 >>> CE_DID_SHIFT) & MAX_DOMAIN_ID;
    const first = a >>> PAGE_SHIFT;
    const n = ((a + len - 1) >>> PAGE_SHIFT) - first + 1;
    if (n > this.#pages.length) this.#pages = new Int32Array(Math.max(n, 2 * this.#pages.length));
    const need = write ? IOPTE_WRITE : IOPTE_READ;
    const pages = this.#pages;
    for (let k = 0; k < n; k++) {
      const f = this.#pageFrame(did, root, first + k, need);
      if (f < 0) {
        this.#faultPage = (first + k) * PAGE_SIZE;
        return -f;
      }
      pages[k] = f;
    }
    this.#npages = n;
    return DMA_OK;
  }

  /** The frame of page `vpn` for an access needing `need`, or -reason. IOTLB first. */
  #pageFrame(did: number, root: number, vpn: number, need: number): number {
    const ways = this.#tlbWays;
    const base = this.#tlbSet(did, vpn) * ways;
    for (let i = base; i < base + ways; i++) {
      if (this.#tlbVpn[i] === vpn && this.#tlbDid[i] === did) {
        const pte = this.#tlbPte[i];
        if ((pte & need) !== 0) {
          this.#hits++;
          return pte >>> PAGE_SHIFT;
        }
        break; // cached without the right asked for: re-walk (rights may have been added)
      }
    }
    this.#misses++;
    const i32 = this.#i32;
    const pde = i32[root * PAGE_WORDS + (vpn >>> IO_DIR_SHIFT)];
    if ((pde & IOPTE_RW) === 0) return -FR_PTE_NOT_PRESENT;
    const table = pde >>> PAGE_SHIFT;
    if (table >= this.#memFrames) return -FR_PT_ACCESS;
    const pte = i32[table * PAGE_WORDS + (vpn & (IO_ENTRIES - 1))];
    if ((pte & IOPTE_RW) === 0) return -FR_PTE_NOT_PRESENT;
    const frame = pte >>> PAGE_SHIFT;
    if (frame >= this.#memFrames) return -FR_PT_ACCESS;
    this.#tlbInsert(did, vpn, pte);
    if ((pte & need) === 0) return need === IOPTE_WRITE ? -FR_NO_WRITE : -FR_NO_READ;
    return frame;
  }

  /**
   * Copy between `buf` and the pages #resolve found, one copy per physically contiguous run.
   * TypedArray.set is the only memcpy JavaScript has, and it needs a view of exactly the bytes
   * to copy (a byte loop is ~25× slower per 4 KiB page). So that the steady state allocates
   * nothing: copies of up to SMALL_COPY bytes loop byte by byte; a write whose run is the whole
   * buffer is `u8.set(buf, pa)`; a read copies from a view of the run that #memView caches
   * (drivers DMA from the same buffers over and over). Left allocating: a write split over
   * physically discontiguous frames makes one view of `buf` per run.
   */
  #move(a: number, buf: Uint8Array, write: boolean): void {
    const len = buf.length;
    if (len === 0) return;
    if (this.#passthrough) {
      this.#copy(a, buf, 0, len, write);
      return;
    }
    const pages = this.#pages;
    const n = this.#npages;
    let off = a & PAGE_MASK;
    let done = 0;
    for (let k = 0; k < n; ) {
      let j = k + 1;
      while (j < n && pages[j] === pages[j - 1] + 1) j++;
      const bytes = Math.min(len - done, (j - k) * PAGE_SIZE - off);
      this.#copy(pages[k] * PAGE_SIZE + off, buf, done, bytes, write);
      done += bytes;
      off = 0;
      k = j;
    }
  }

  #copy(pa: number, buf: Uint8Array, at: number, bytes: number, write: boolean): void {
    const u8 = this.#u8;
    if (bytes <= SMALL_COPY) {
      if (write) for (let i = 0; i < bytes; i++) u8[pa + i] = buf[at + i];
      else for (let i = 0; i < bytes; i++) buf[at + i] = u8[pa + i];
    } else if (write) {
      u8.set(at === 0 && bytes === buf.length ? buf : buf.subarray(at, at + bytes), pa);
    } else {
      buf.set(this.#memView(pa, bytes), at);
    }
  }

  /**
   * A view of physical memory [pa, pa + bytes), from a direct-mapped cache keyed by both.
   * Views of a SharedArrayBuffer never go stale (memory does not move or shrink), so a cached
   * view is always right for its key; a miss makes one and keeps it.
   */
  #memView(pa: number, bytes: number): Uint8Array {
    const slot =
      Math.imul(pa ^ Math.imul(bytes, 0x85ebca6b), 0x9e3779b1) >>> (32 - VIEW_CACHE_BITS);
    const v = this.#views[slot];
    if (v !== null && v.byteOffset === pa && v.length === bytes) return v;
    const fresh = this.#u8.subarray(pa, pa + bytes);
    this.#views[slot] = fresh;
    return fresh;
  }

  /** Record a blocked DMA (merge, new record, or overflow) and tell the listeners. */
  #fault(rid: number, iova: number, write: boolean, reason: number): void {
    this.#faults++;
    const a = toIova(iova);
    const at = a < 0 ? iova : a; // a 32-bit address in its uint32 form; anything else as given
    const w = write ? 1 : 0;
    const page = this.#faultPage;
    let rec = -1;
    let free = -1;
    for (let i = 0; i < this.faultRecords; i++) {
      if (this.#recValid[i] === 0) {
        if (free < 0) free = i;
      } else if (
        this.#recRid[i] === rid &&
        this.#recReason[i] === reason &&
        this.#recWrite[i] === w
      ) {
        rec = i;
        break;
      }
    }
    if (rec >= 0) {
      this.#recCount[rec]++;
    } else if (free >= 0) {
      rec = free;
      this.#recValid[rec] = 1;
      this.#recRid[rec] = rid;
      this.#recWrite[rec] = w;
      this.#recReason[rec] = reason;
      this.#recCount[rec] = 1;
    } else {
      this.#overflow = true;
      this.#faultsDropped++;
    }
    if (rec >= 0) {
      this.#recIova[rec] = at;
      this.#recPage[rec] = page;
    }
    const listeners = this.#listeners;
    if (listeners.length === 0) return;
    const e = this.#event;
    e.rid = rid;
    e.iova = at;
    e.page = page;
    e.write = write;
    e.reason = reason;
    e.record = rec;
    e.count = rec >= 0 ? this.#recCount[rec] : 0;
    for (let i = 0; i < listeners.length; i++) listeners[i](e);
  }

  #tlbSet(did: number, vpn: number): number {
    return (vpn ^ (Math.imul(did, 0x9e3779b1) >>> 20)) & this.#tlbSetMask;
  }

  /** Cache the leaf `pte` for (did, vpn), replacing an entry with the same tag if any. */
  #tlbInsert(did: number, vpn: number, pte: number): void {
    const set = this.#tlbSet(did, vpn);
    const ways = this.#tlbWays;
    const base = set * ways;
    let slot = -1;
    for (let i = base; i < base + ways; i++) {
      if (this.#tlbDid[i] === did && this.#tlbVpn[i] === vpn) {
        slot = i;
        break;
      }
      if (slot < 0 && this.#tlbDid[i] === -1) slot = i;
    }
    if (slot < 0) {
      const v = this.#tlbVictim[set];
      slot = base + v;
      this.#tlbVictim[set] = v + 1 === ways ? 0 : v + 1;
    }
    this.#tlbDid[slot] = did;
    this.#tlbVpn[slot] = vpn;
    this.#tlbPte[slot] = pte;
  }

  // ---- internals: tables ----

  /** Int32 index of the root entry for `rid`'s bus. */
  #rootEntry(rid: number): number {
    return this.rootFrame * PAGE_WORDS + (rid >>> 8) * ENTRY_WORDS;
  }

  /** Int32 index of the leaf slot for `vpn` in `domain`, or -1 if its table does not exist. */
  #leafAt(domain: Domain, vpn: number): number {
    const pde = this.#i32[domain.root * PAGE_WORDS + (vpn >>> IO_DIR_SHIFT)];
    if ((pde & IOPTE_RW) === 0) return -1;
    return (pde >>> PAGE_SHIFT) * PAGE_WORDS + (vpn & (IO_ENTRIES - 1));
  }

  /**
   * Install the page tables pages [vpn0, vpn0 + count) need. All or nothing: on -ENOMEM the
   * tables allocated by this call are freed again. Returns 0 or -ENOMEM.
   */
  #addTables(domain: Domain, vpn0: number, count: number): number {
    const dir = domain.root * PAGE_WORDS;
    const first = vpn0 >>> IO_DIR_SHIFT;
    const last = (vpn0 + count - 1) >>> IO_DIR_SHIFT;
    const i32 = this.#i32;
    for (let d = first; d <= last; d++) {
      if ((i32[dir + d] & IOPTE_RW) !== 0) continue;
      const table = this.#allocTable();
      if (table < 0) {
        for (let u = first; u < d; u++) {
          if ((i32[dir + u] & IOPTE_RW) !== 0 && domain.live[u] === 0) {
            this.#freeTable(i32[dir + u] >>> PAGE_SHIFT);
            i32[dir + u] = 0;
          }
        }
        return -ENOMEM;
      }
      i32[dir + d] = (table << PAGE_SHIFT) | IOPTE_RW;
    }
    return 0;
  }

  #newDomain(did: number): Domain | undefined {
    const root = this.#allocTable();
    if (root < 0) return undefined;
    const domain: Domain = { root, live: new Uint16Array(IO_ENTRIES), contexts: 0 };
    this.#domains.set(did, domain);
    return domain;
  }

  /** The context entry at int32 index `at` is going away or changing: drop its domain ref. */
  #dropContextRef(at: number): void {
    const w0 = this.#i32[at];
    if (((w0 >>> CE_TT_SHIFT) & CE_TT_MASK) !== TT_TRANSLATE) return;
    const did = (this.#i32[at + 1] >>> CE_DID_SHIFT) & MAX_DOMAIN_ID;
    const domain = this.#domains.get(did);
    if (domain !== undefined && domain.contexts > 0) domain.contexts--;
  }

  /** A zeroed frame for a table, or -ENOMEM. */
  #allocTable(): number {
    const f = this.#frames.alloc();
    if (f < 0) return -ENOMEM;
    this.mem.zeroFrame(f);
    this.#tableFrames++;
    return f;
  }

  #freeTable(frame: number): void {
    this.#frames.free(frame);
    this.#tableFrames--;
  }
}

function isRid(rid: number): boolean {
  return (rid & MAX_RID) === rid;
}

function isDomainId(did: number): boolean {
  return (did & MAX_DOMAIN_ID) === did;
}

function isPerms(perms: number): boolean {
  return perms === IOPTE_READ || perms === IOPTE_WRITE || perms === IOPTE_RW;
}
