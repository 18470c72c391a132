/**
 * mmu: the machine's page tables — 32-bit virtual addresses, two levels of 4 KiB tables stored
 * in physical memory frames (x86-32 style) — and access to user memory through them.
 *
 * Owns: the PTE format; address spaces (an address space *is* the frame number of its page
 * directory, its "root"); the kernel's page-table operations (create, map, unmap, protect,
 * destroy); the hardware walk that translates an access and sets the accessed and dirty bits;
 * {@link UserMemory}: copyin/copyout and typed reads and writes of user memory that fail with
 * -EFAULT and never throw.
 *
 * Virtual address:                          Walk:
 *    31          22 21          12 11     0   root frame (page directory, 1024 PDEs)
 *   ┌──────────────┬──────────────┬────────┐     └─ PDE[dir] ──► page table frame (1024 PTEs)
 *   │  dir (10)    │  table (10)  │ off(12)│                        └─ PTE[table] ──► frame
 *   └──────────────┴──────────────┴────────┘   physical address = frame × 4096 + off
 *
 * PTE (one int32 word in a page table; a PDE has the same shape):
 *    31                                12  11   10    9    8    7    6    5    4    3    2    1    0
 *   ┌────────────────────────────────────┬────┬────┬────┬────┬────┬────┬────┬────┬────┬────┬────┬────┐
 *   │ frame number (20 bits: 4 GiB)      │SW2 │SW1 │COW │ NX │ 0  │ D  │ A  │ 0  │ 0  │ U  │ W  │ P  │
 *   └────────────────────────────────────┴────┴────┴────┴────┴────┴────┴────┴────┴────┴────┴────┴────┘
 *
 *   bit  name  meaning                                       set by
 *    0   P     present: the rest of the entry is valid        kernel (map / unmap)
 *    1   W     writable                                       kernel (map / protect)
 *    2   U     user: reachable from user mode and copyin/out  kernel (map / protect)
 *    5   A     accessed: translated since mapped              hardware walk (CAS), any core
 *    6   D     dirty: written since mapped                    hardware walk (CAS), any core
 *    8   NX    no-execute                                     kernel (map / protect)
 *    9   COW   software: copy-on-write (mapped read-only)     kernel, for the libOS pager
 *   10   SW1   software, free for the libOS                   kernel, for the libOS pager
 *   11   SW2   software, free for the libOS                   kernel, for the libOS pager
 *   3,4,7      reserved, always 0
 * A PDE is always P|W|U: the directory is permissive and the PTE alone decides the rights (a
 * simplification of x86, where the rights of both levels are ANDed).
 *
 * In the API a PTE is handed out as an unsigned number (`pte >>> 0`, never negative), so a
 * result < 0 is always an -errno or a fault code. Virtual addresses are accepted as uint32 or as
 * int32 (how a syscall entry carries them); anything else is not an address.
 *
 * Invariants: page-table frames are reachable only from their root; a PTE's frame is a frame
 * of this memory. Concurrency: the kernel operations (create, map, unmap, protect, destroy) run
 * on ONE thread, the hypervisor; every PTE change is a single Atomics store / exchange / CAS, so
 * a core walking concurrently sees either the old or the new entry, never half of one. The
 * hardware walk (translate) runs on any thread and writes only the A and D bits, with a CAS on
 * a present entry: a plain Atomics.or could land after an unmap and leave stray bits in an empty
 * slot. After unmap or a protect that takes rights away, the caller must shoot down the TLBs
 * (src/hw/tlb.ts) before it reuses the frame.
 *
 * Who may call: the kernel (hypervisor) for the page-table operations, with a FrameSource for
 * table frames; anyone for translate / lookup / probe and for {@link UserMemory}.
 */

import { EEXIST, EFAULT, EINVAL, ENAMETOOLONG, ENOENT, ENOMEM } from "../abi/errno.js";
import { panic } from "../errors.js";
import {
  type FrameSource,
  PAGE_MASK,
  PAGE_SHIFT,
  PAGE_SIZE,
  PAGE_WORDS,
  type PhysicalMemory,
} from "./physmem.js";

// ---- PTE bits ----
export const PTE_P = 1 << 0;
export const PTE_W = 1 << 1;
export const PTE_U = 1 << 2;
export const PTE_A = 1 << 5;
export const PTE_D = 1 << 6;
export const PTE_NX = 1 << 8;
export const PTE_COW = 1 << 9;
export const PTE_SW1 = 1 << 10;
/**
 * A reserved, demand-zero page: a PTE that is NOT present, has no frame, and carries this
 * software bit and the rights the page will have. The kernel writes it at mmap; the libOS pager
 * of whichever core touches the page first fills it (mapIfAbsent with the lazy PTE expected).
 */
export const PTE_LAZY = PTE_SW1;
export const PTE_SW2 = 1 << 11;
/** The flag bits of an entry (the low 12). */
export const PTE_FLAGS = PAGE_MASK;
/** Flags a caller may give to map/protect; P is implied, A and D belong to the hardware. */
export const PTE_MAP_FLAGS = PTE_W | PTE_U | PTE_NX | PTE_COW | PTE_SW1 | PTE_SW2;
/** What every PDE holds besides its table's frame. */
const PDE_FLAGS = PTE_P | PTE_W | PTE_U;

/** Page-directory entries per directory, page-table entries per table. */
export const ENTRIES = PAGE_WORDS;
const DIR_SHIFT = 22;

// ---- accesses ----
export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_EXEC = 2;
export type Access = typeof ACCESS_READ | typeof ACCESS_WRITE | typeof ACCESS_EXEC;

// ---- fault codes (what translate returns instead of an address; not errnos) ----
/** No valid PTE: an empty directory slot or a PTE without P. Demand paging starts here. */
export const FAULT_NOT_PRESENT = -1001;
/** A write to a present page without W. Copy-on-write starts here (see PTE_COW). */
export const FAULT_PROT_WRITE = -1002;
/** A user access to a page without U. */
export const FAULT_PROT_USER = -1003;
/** An instruction fetch from a page with NX. */
export const FAULT_NX = -1004;
/** Not a 32-bit address, or not an address space of this memory. */
export const FAULT_BAD_ADDRESS = -1005;

/** True if a translate result is a fault code rather than a physical address. */
export function isFault(r: number): boolean {
  return r <= FAULT_NOT_PRESENT && r >= FAULT_BAD_ADDRESS;
}

/** The name of a fault code, for messages. */
export function faultName(code: number): string {
  switch (code) {
    case FAULT_NOT_PRESENT:
      return "not-present";
    case FAULT_PROT_WRITE:
      return "protection-write";
    case FAULT_PROT_USER:
      return "protection-user";
    case FAULT_NX:
      return "no-execute";
    case FAULT_BAD_ADDRESS:
      return "bad-address";
    default:
      return `fault ${code}`;
  }
}

/** The frame number a PTE points at. */
export function pteFrame(pte: number): number {
  return pte >>> PAGE_SHIFT;
}

/** A present PTE for `frame` with `flags`, as an unsigned number. */
export function makePte(frame: number, flags: number): number {
  return ((frame << PAGE_SHIFT) | (flags & PTE_FLAGS) | PTE_P) >>> 0;
}

/**
 * Why `pte` does not allow `access` (a fault code), or 0 if it does. Shared by the page walk and
 * the TLB, which checks the rights of its cached copy the same way.
 */
export function checkAccess(pte: number, access: Access, user: boolean): number {
  if ((pte & PTE_P) === 0) return FAULT_NOT_PRESENT;
  if (user && (pte & PTE_U) === 0) return FAULT_PROT_USER;
  if (access === ACCESS_WRITE) {
    if ((pte & PTE_W) === 0) return FAULT_PROT_WRITE;
  } else if (access === ACCESS_EXEC && (pte & PTE_NX) !== 0) {
    return FAULT_NX;
  }
  return 0;
}

/** `va` as a uint32 if it is a 32-bit address (uint32 or int32 form), else -1. */
export function toVa(va: number): number {
  return va >>> 0 === va || (va | 0) === va ? va >>> 0 : -1;
}

/**
 * What translates an access: the bare page walk ({@link Mmu}) or a core's TLB in front of it
 * (src/hw/tlb.ts `Translator`). {@link UserMemory} runs over either.
 */
export interface AddressTranslation {
  /**
   * The physical address `va` maps to for `access`, or a fault code (< 0). Sets A (and D on a
   * write) in the PTE, as the hardware does. Allocates nothing.
   */
  translate(as: number, va: number, access: Access, user: boolean): number;
  /** The same checks and result as translate, with no side effect on the PTE. */
  probe(as: number, va: number, access: Access, user: boolean): number;
  /**
   * Present only on a translation with a TLB (src/hw/tlb.ts `Translator.stamp`): catch up on
   * shootdowns, then a number that changes whenever a translation handed out earlier may have
   * gone stale. A translation without one (the bare walk) gives no such promise, so nothing may
   * cache its results.
   */
  stamp?(): number;
}

/**
 * The page tables of the machine. One per thread: the hypervisor's has a FrameSource for table
 * frames and may change tables; the others only walk them.
 */
export class Mmu implements AddressTranslation {
  readonly mem: PhysicalMemory;
  /** copyin/copyout and typed access to user memory through bare page walks. */
  readonly user: UserMemory;
  readonly #i32: Int32Array;
  readonly #frames: number;
  readonly #tables: FrameSource | null;

  /** `tables`: where page directories and tables come from (the kernel's); omit to only walk. */
  constructor(mem: PhysicalMemory, tables?: FrameSource) {
    this.mem = mem;
    this.#i32 = mem.i32;
    this.#frames = mem.frames;
    this.#tables = tables ?? null;
    this.user = new UserMemory(mem, this);
  }

  // ---- kernel operations (hypervisor) ----

  /** A new, empty address space: its root frame number, or -ENOMEM. */
  createAddressSpace(): number {
    const root = this.#tableSource("createAddressSpace").alloc();
    if (root < 0) return -ENOMEM;
    this.mem.zeroFrame(root);
    return root;
  }

  /**
   * Free every page-table frame of `as` and its root; returns 0 or -EINVAL. `onPage` is called
   * with (va, pte) for every non-empty PTE first, so that the caller can free or return the
   * mapped frames (the MMU does not own them). The caller must have shot down `as` on every TLB
   * and stopped every thread that runs in it: afterwards its frames are someone else's.
   */
  destroyAddressSpace(as: number, onPage?: (va: number, pte: number) => void): number {
    if (!this.#isFrame(as)) return -EINVAL;
    const tables = this.#tableSource("destroyAddressSpace");
    const i32 = this.#i32;
    const dir = as * PAGE_WORDS;
    for (let d = 0; d < ENTRIES; d++) {
      const pde = Atomics.load(i32, dir + d); // load: the directory slot
      if ((pde & PTE_P) === 0) continue;
      const table = pde >>> PAGE_SHIFT;
      if (onPage !== undefined) this.#visitTable(d, table, onPage);
      Atomics.store(i32, dir + d, 0); // publish: the table is gone before its frame is reused
      tables.free(table);
    }
    tables.free(as);
    return 0;
  }

  /**
   * Map the page at `va` to `frame` with `flags` (of {@link PTE_MAP_FLAGS}; P is implied).
   * Returns the PTE it replaced (0 if the slot was empty), -EINVAL on an unaligned or non-32-bit
   * `va`, a frame outside memory or unknown flags, -EEXIST if `va` is mapped and `replace` is
   * false, -ENOMEM if a page table is needed and no frame is left. Nothing changes on an error.
   * After a replace the caller must shoot down `va` (the old translation may be cached).
   */
  map(as: number, va: number, frame: number, flags: number, replace = false): number {
    // decode: every argument, the existing entry, and the table frame we may need
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !this.#isFrame(as) || !this.#isFrame(frame))
      return -EINVAL;
    if (!Number.isInteger(flags) || (flags & ~PTE_MAP_FLAGS) !== 0) return -EINVAL;
    let at = this.walk(as, a);
    if (at >= 0) {
      const old = Atomics.load(this.#i32, at); // load: the entry we would replace
      if ((old & PTE_P) !== 0 && !replace) return -EEXIST;
    } else {
      at = this.#addTable(as, a);
      if (at < 0) return at;
    }
    // invoke: one exchange, which also returns any A/D bits a core set meanwhile
    const old = Atomics.exchange(this.#i32, at, makePte(frame, flags) | 0); // publish: the new mapping
    return old >>> 0;
  }

  /**
   * Map `frame` at `va` only if nothing is mapped there, with one CAS on the empty PTE: safe
   * for several cores paging in the same address space at once (the libOS pager's demand-zero
   * path). The page table must exist already (-ENOENT otherwise: tables are installed by the
   * kernel, on one thread). Returns 0, -EEXIST if another mapping won, or -EINVAL.
   */
  mapIfAbsent(as: number, va: number, frame: number, flags: number, expect = 0): number {
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !this.#isFrame(as) || !this.#isFrame(frame))
      return -EINVAL;
    if (!Number.isInteger(flags) || (flags & ~PTE_MAP_FLAGS) !== 0) return -EINVAL;
    const at = this.walk(as, a);
    if (at < 0) return -ENOENT;
    // claim: the entry we saw (empty, or lazy), or lose to whoever changed it first
    return Atomics.compareExchange(this.#i32, at, expect | 0, makePte(frame, flags) | 0) ===
      (expect | 0)
      ? 0
      : -EEXIST;
  }

  /**
   * Reserve the page at `va` as lazy (demand-zero, see {@link PTE_LAZY}) with the rights in
   * `flags`, if nothing is there: the kernel's mmap. The page table must exist. 0 or -EEXIST.
   */
  reserveLazy(as: number, va: number, flags: number): number {
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !this.#isFrame(as)) return -EINVAL;
    if (!Number.isInteger(flags) || (flags & ~PTE_MAP_FLAGS) !== 0) return -EINVAL;
    const at = this.walk(as, a);
    if (at < 0) return -ENOENT;
    return Atomics.compareExchange(this.#i32, at, 0, (flags | PTE_LAZY) & ~PTE_P) === 0
      ? 0
      : -EEXIST; // claim
  }

  /**
   * Install the page table covering `va` (the kernel, ahead of time), so that later maps in
   * that 4 MiB range never allocate. Returns 0 or -ENOMEM.
   */
  ensureTable(as: number, va: number): number {
    const a = toVa(va);
    if (a < 0 || !this.#isFrame(as)) return -EINVAL;
    if (this.walk(as, a & ~PAGE_MASK) >= 0) return 0;
    const at = this.#addTable(as, a);
    return at < 0 ? at : 0;
  }

  /**
   * Remove the mapping of the page at `va`; returns the PTE that was there (with the A and D
   * bits the hardware set; 0 if nothing was mapped) or -EINVAL. The caller must shoot down `va`
   * on every TLB that may cache it before it frees or reuses the frame.
   */
  unmap(as: number, va: number): number {
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !this.#isFrame(as)) return -EINVAL;
    const at = this.walk(as, a);
    if (at < 0) return 0;
    return Atomics.exchange(this.#i32, at, 0) >>> 0; // claim: take the entry, A/D bits included
  }

  /**
   * Replace the rights and software bits of the mapped page at `va` with `flags` (of
   * {@link PTE_MAP_FLAGS}), keeping its frame and its A and D bits. Returns the old PTE,
   * -EINVAL on bad arguments, -ENOENT if `va` is not mapped. The caller must shoot down `va`
   * if rights were taken away.
   */
  protect(as: number, va: number, flags: number): number {
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !this.#isFrame(as)) return -EINVAL;
    if (!Number.isInteger(flags) || (flags & ~PTE_MAP_FLAGS) !== 0) return -EINVAL;
    const at = this.walk(as, a);
    if (at < 0) return -ENOENT;
    const i32 = this.#i32;
    for (;;) {
      const old = Atomics.load(i32, at); // load: the entry, which a core may be updating
      if ((old & PTE_P) === 0) return -ENOENT;
      const pte = (old & ~PTE_FLAGS) | PTE_P | (old & (PTE_A | PTE_D)) | flags;
      if (Atomics.compareExchange(i32, at, old, pte) === old) return old >>> 0; // publish, unless a core set A/D meanwhile
    }
  }

  // ---- walks (any thread) ----

  /** The int32 index in `mem.i32` of the PTE slot for `va`, or -1 if there is no table for it. */
  walk(as: number, va: number): number {
    const a = toVa(va);
    if (a < 0 || !this.#isFrame(as)) return -1;
    const pde = Atomics.load(this.#i32, as * PAGE_WORDS + (a >>> DIR_SHIFT)); // load: the directory slot
    if ((pde & PTE_P) === 0) return -1;
    return (pde >>> PAGE_SHIFT) * PAGE_WORDS + ((a >>> PAGE_SHIFT) & (ENTRIES - 1));
  }

  /** The PTE for `va` (unsigned; possibly not present), or 0 if there is none. */
  lookup(as: number, va: number): number {
    const at = this.walk(as, va);
    return at < 0 ? 0 : Atomics.load(this.#i32, at) >>> 0; // load: the entry
  }

  translate(as: number, va: number, access: Access, user: boolean): number {
    const a = toVa(va);
    if (a < 0) return FAULT_BAD_ADDRESS;
    const pte = this.access(as, a, access, user, true);
    return pte < 0 ? pte : (pte >>> PAGE_SHIFT) * PAGE_SIZE + (a & PAGE_MASK);
  }

  probe(as: number, va: number, access: Access, user: boolean): number {
    const a = toVa(va);
    if (a < 0) return FAULT_BAD_ADDRESS;
    const pte = this.access(as, a, access, user, false);
    return pte < 0 ? pte : (pte >>> PAGE_SHIFT) * PAGE_SIZE + (a & PAGE_MASK);
  }

  /**
   * The hardware walk: the PTE (unsigned, as it is after the access) that allows `access` to
   * the uint32 address `a`, or a fault code. With `setBits`, sets A (and D on a write) by CAS,
   * retrying if the entry changed under it. The TLB fills itself from this. Allocates nothing.
   */
  access(as: number, a: number, access: Access, user: boolean, setBits: boolean): number {
    if (!this.#isFrame(as)) return FAULT_BAD_ADDRESS;
    const i32 = this.#i32;
    const pde = Atomics.load(i32, as * PAGE_WORDS + (a >>> DIR_SHIFT)); // load: the directory slot
    if ((pde & PTE_P) === 0) return FAULT_NOT_PRESENT;
    const at = (pde >>> PAGE_SHIFT) * PAGE_WORDS + ((a >>> PAGE_SHIFT) & (ENTRIES - 1));
    for (;;) {
      const pte = Atomics.load(i32, at); // load: the kernel may change it under us
      const fault = checkAccess(pte, access, user);
      if (fault !== 0) return fault;
      const want = setBits ? pte | PTE_A | (access === ACCESS_WRITE ? PTE_D : 0) : pte;
      if (want === pte) return pte >>> 0;
      if (Atomics.compareExchange(i32, at, pte, want) === pte) return want >>> 0; // claim: set A/D on the entry we checked
    }
  }

  // ---- user memory through page walks (see UserMemory) ----

  copyin(as: number, va: number, dst: Uint8Array): number {
    return this.user.copyin(as, va, dst);
  }

  copyout(as: number, va: number, src: Uint8Array): number {
    return this.user.copyout(as, va, src);
  }

  readU32(as: number, va: number): number {
    return this.user.readU32(as, va);
  }

  writeU32(as: number, va: number, value: number): number {
    return this.user.writeU32(as, va, value);
  }

  readString(as: number, va: number, len: number): string | number {
    return this.user.readString(as, va, len);
  }

  // ---- internals ----

  #isFrame(frame: number): boolean {
    return frame >>> 0 === frame && frame < this.#frames;
  }

  #tableSource(op: string): FrameSource {
    return this.#tables ?? panic(`mmu: ${op} on a thread without a page-table frame source`);
  }

  /** Allocate, zero and install the page table for `a`; the PTE slot index, or -ENOMEM. */
  #addTable(as: number, a: number): number {
    const table = this.#tableSource("map").alloc();
    if (table < 0) return -ENOMEM;
    this.mem.zeroFrame(table);
    const pde = (table << PAGE_SHIFT) | PDE_FLAGS | 0;
    Atomics.store(this.#i32, as * PAGE_WORDS + (a >>> DIR_SHIFT), pde); // publish: the zeroed table
    return table * PAGE_WORDS + ((a >>> PAGE_SHIFT) & (ENTRIES - 1));
  }

  #visitTable(d: number, table: number, onPage: (va: number, pte: number) => void): void {
    const at = table * PAGE_WORDS;
    for (let t = 0; t < ENTRIES; t++) {
      const pte = Atomics.load(this.#i32, at + t); // load: the entry, with the A/D bits cores set
      if (pte !== 0) onPage(((d << DIR_SHIFT) | (t << PAGE_SHIFT)) >>> 0, pte >>> 0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// UserMemory

const TOP = 2 ** 32;

/**
 * Access to a user address space's memory from outside it: a domain serving a syscall, the
 * libOS on behalf of a program. Every access is a user access (the page needs U) and goes
 * through an {@link AddressTranslation}, so a bad pointer gives -EFAULT and never an
 * exception. A copy checks its whole range first and touches nothing if any page of it would
 * fault. (A concurrent unmap between the check and the copy may still cut a copy short with
 * -EFAULT, as on any OS: that is a race in the program, not in the domain.)
 */
export class UserMemory {
  readonly #mem: PhysicalMemory;
  readonly #x: AddressTranslation;
  readonly #scratch = new Uint8Array(4);
  readonly #scratchView = new DataView(this.#scratch.buffer);
  static readonly #decoder = new TextDecoder();
  static readonly #encoder = new TextEncoder();

  constructor(mem: PhysicalMemory, translation: AddressTranslation) {
    this.#mem = mem;
    this.#x = translation;
  }

  /** Copy `dst.length` bytes from user address `va` into `dst`: 0 or -EFAULT. */
  copyin(as: number, va: number, dst: Uint8Array): number {
    const a = this.#range(as, va, dst.length, ACCESS_READ);
    if (a < 0) return a;
    const u8 = this.#mem.u8;
    for (let done = 0; done < dst.length; ) {
      const cur = a + done;
      const n = Math.min(dst.length - done, PAGE_SIZE - (cur & PAGE_MASK));
      const pa = this.#x.translate(as, cur, ACCESS_READ, true);
      if (pa < 0) return -EFAULT;
      dst.set(u8.subarray(pa, pa + n), done);
      done += n;
    }
    return 0;
  }

  /** Copy `src` to user address `va` (the pages must be user-writable): 0 or -EFAULT. */
  copyout(as: number, va: number, src: Uint8Array): number {
    const a = this.#range(as, va, src.length, ACCESS_WRITE);
    if (a < 0) return a;
    const u8 = this.#mem.u8;
    for (let done = 0; done < src.length; ) {
      const cur = a + done;
      const n = Math.min(src.length - done, PAGE_SIZE - (cur & PAGE_MASK));
      const pa = this.#x.translate(as, cur, ACCESS_WRITE, true);
      if (pa < 0) return -EFAULT;
      u8.set(src.subarray(done, done + n), pa);
      done += n;
    }
    return 0;
  }

  /** The little-endian uint32 at `va` (>= 0), or -EFAULT. */
  readU32(as: number, va: number): number {
    const a = toVa(va);
    if (a < 0) return -EFAULT;
    if ((a & PAGE_MASK) <= PAGE_SIZE - 4) {
      const pa = this.#x.translate(as, a, ACCESS_READ, true);
      return pa < 0 ? -EFAULT : this.#mem.dv.getUint32(pa, true);
    }
    const r = this.copyin(as, a, this.#scratch);
    return r < 0 ? r : this.#scratchView.getUint32(0, true);
  }

  /** Store `value` (as uint32, little-endian) at `va`: 0 or -EFAULT. */
  writeU32(as: number, va: number, value: number): number {
    const a = toVa(va);
    if (a < 0) return -EFAULT;
    if ((a & PAGE_MASK) <= PAGE_SIZE - 4) {
      const pa = this.#x.translate(as, a, ACCESS_WRITE, true);
      if (pa < 0) return -EFAULT;
      this.#mem.dv.setUint32(pa, value >>> 0, true);
      return 0;
    }
    this.#scratchView.setUint32(0, value >>> 0, true);
    return this.copyout(as, a, this.#scratch);
  }

  /** The `len` bytes at `va` decoded as UTF-8, or -EFAULT (-EINVAL on a bad length). */
  readString(as: number, va: number, len: number): string | number {
    if (!Number.isInteger(len) || len < 0 || len > TOP) return -EINVAL;
    const buf = new Uint8Array(len);
    const r = this.copyin(as, va, buf);
    return r < 0 ? r : UserMemory.#decoder.decode(buf);
  }

  /**
   * The NUL-terminated UTF-8 string at `va` (without the NUL), or -EFAULT if a page before the
   * NUL faults, -ENAMETOOLONG if no NUL comes within `max` bytes.
   */
  readCString(as: number, va: number, max: number): string | number {
    const a = toVa(va);
    if (a < 0) return -EFAULT;
    const u8 = this.#mem.u8;
    let len = 0;
    while (len < max) {
      const cur = a + len;
      if (cur >= TOP) return -EFAULT;
      const n = Math.min(max - len, PAGE_SIZE - (cur & PAGE_MASK));
      const pa = this.#x.translate(as, cur, ACCESS_READ, true);
      if (pa < 0) return -EFAULT;
      const nul = u8.subarray(pa, pa + n).indexOf(0);
      if (nul >= 0) return this.readString(as, a, len + nul);
      len += n;
    }
    return -ENAMETOOLONG;
  }

  /** Write `s` as UTF-8 (no NUL) at `va`: the number of bytes written, or -EFAULT. */
  writeString(as: number, va: number, s: string): number {
    const bytes = UserMemory.#encoder.encode(s);
    const r = this.copyout(as, va, bytes);
    return r < 0 ? r : bytes.length;
  }

  /**
   * Check that every page of [va, va+len) allows `access` from user mode, touching nothing.
   * Returns `va` as uint32, or -EFAULT.
   */
  #range(as: number, va: number, len: number, access: Access): number {
    const a = toVa(va);
    if (a < 0 || a + len > TOP) return -EFAULT;
    if (len === 0) return a;
    const last = (a + len - 1) >>> PAGE_SHIFT;
    for (let page = a >>> PAGE_SHIFT; page <= last; page++) {
      if (this.#x.probe(as, page * PAGE_SIZE, access, true) < 0) return -EFAULT;
    }
    return a;
  }
}
