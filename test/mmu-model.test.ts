/**
 * Page tables and TLBs against a model (property test). Random sequences of map, unmap,
 * protect, translate, copyin and copyout over two address spaces are run on the real MMU — by
 * bare page walks and through two TLBs with shootdowns — and on a plain model:
 * Map<vpn, {frame, flags, accessed, dirty}> per address space plus the bytes of each data frame.
 *
 * After every step: every PTE the model knows equals the PTE in memory (A and D bits
 * included); every data frame holds the model's bytes. At a "check" step both TLBs process
 * their mailboxes, and then no TLB entry may grant more than the page table does — a stale
 * entry is never used once its invalidation is processed. Mutations that take rights away are
 * always shot down (by page, by a range around it, by asid or by flush-all, at random); adding rights is shot down
 * only sometimes, since the TLB must re-walk on a hit that would fault. Mailboxes hold only 2
 * requests, so runs of changes without a translation exercise the flush-all fallback.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { EEXIST, EFAULT, ENOENT } from "../src/abi/errno.js";
import {
  ACCESS_EXEC,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  type AddressTranslation,
  FAULT_NOT_PRESENT,
  FAULT_NX,
  FAULT_PROT_USER,
  FAULT_PROT_WRITE,
  Mmu,
  makePte,
  PTE_A,
  PTE_COW,
  PTE_D,
  PTE_NX,
  PTE_U,
  PTE_W,
  pteFrame,
} from "../src/hw/mmu.js";
import {
  FrameAllocator,
  firstFrameAfter,
  initFrameAllocator,
  layFrameAllocator,
  PAGE_SIZE,
  PhysicalMemory,
} from "../src/hw/physmem.js";
import { layShootdownBoard, Shootdown, ShootdownMailbox, Tlb, Translator } from "../src/hw/tlb.js";
import { Arena } from "../src/shm/layout.js";

/** Pages the test uses: neighbours across table and directory boundaries, and the top page. */
const VPNS = [0, 1, 2, 1023, 1024, 1025, 0x7ffff, 0x80000, 0xffffe, 0xfffff] as const;
const DATA_FRAMES = 4;

interface Entry {
  frame: number; // index into the data frames
  flags: number;
  accessed: boolean;
  dirty: boolean;
}

/** How a change is shot down: the page, a range of pages around it, its asid, or everything. */
interface Shoot {
  how: "page" | "range" | "asid" | "all";
  /** For "range": pages before and after the changed one. */
  before: number;
  after: number;
}
/** Which translation: TLB 0, TLB 1, or the bare walk. */
type Via = 0 | 1 | 2;

type Op =
  | { k: "map"; s: number; v: number; f: number; flags: number; replace: boolean; shoot: Shoot }
  | { k: "unmap"; s: number; v: number; shoot: Shoot }
  | { k: "protect"; s: number; v: number; flags: number; shoot: Shoot; lazy: boolean }
  | { k: "translate"; s: number; v: number; off: number; access: Access; user: boolean; via: Via }
  | { k: "copyin"; s: number; v: number; off: number; len: number; via: Via }
  | { k: "copyout"; s: number; v: number; off: number; bytes: Uint8Array; via: Via }
  | { k: "check" };

const space = fc.integer({ min: 0, max: 1 });
const vpnIndex = fc.integer({ min: 0, max: VPNS.length - 1 });
/** True three times in four: most pages are user-writable, so most copies get through. */
const likely = fc.integer({ min: 0, max: 3 }).map((x) => x !== 0);
const flagsArb = fc
  .record({ w: likely, u: likely, nx: fc.boolean(), cow: fc.boolean() })
  .map(
    ({ w, u, nx, cow }) =>
      (w ? PTE_W : 0) | (u ? PTE_U : 0) | (nx ? PTE_NX : 0) | (cow ? PTE_COW : 0),
  );
const shootArb: fc.Arbitrary<Shoot> = fc.record({
  how: fc.constantFrom<Shoot["how"]>("page", "range", "asid", "all"),
  before: fc.integer({ min: 0, max: 2 }),
  after: fc.integer({ min: 0, max: 2 }),
});
const viaArb = fc.constantFrom<Via>(0, 1, 2);
const offArb = fc.integer({ min: 0, max: PAGE_SIZE - 1 });

/** Offsets near the ends of a page more often, so that copies cross page boundaries. */
const copyOffArb = fc.oneof(offArb, fc.integer({ min: PAGE_SIZE - 64, max: PAGE_SIZE - 1 }));
const copyLenArb = fc.oneof(
  fc.integer({ min: 0, max: 128 }),
  fc.integer({ min: 0, max: 2 * PAGE_SIZE + 16 }),
);

const mapArb = fc.record({
  k: fc.constant("map" as const),
  s: space,
  v: vpnIndex,
  f: fc.integer({ min: 0, max: DATA_FRAMES - 1 }),
  flags: flagsArb,
  replace: fc.boolean(),
  shoot: shootArb,
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: mapArb },
  fc.record({ k: fc.constant("unmap" as const), s: space, v: vpnIndex, shoot: shootArb }),
  fc.record({
    k: fc.constant("protect" as const),
    s: space,
    v: vpnIndex,
    flags: flagsArb,
    shoot: shootArb,
    lazy: fc.boolean(),
  }),
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("translate" as const),
      s: space,
      v: vpnIndex,
      off: offArb,
      access: fc.constantFrom<Access>(ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC),
      user: fc.boolean(),
      via: viaArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("copyin" as const),
      s: space,
      v: vpnIndex,
      off: copyOffArb,
      len: copyLenArb,
      via: viaArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("copyout" as const),
      s: space,
      v: vpnIndex,
      off: copyOffArb,
      bytes: copyLenArb.chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
      via: viaArb,
    }),
  },
  fc.constant({ k: "check" as const }),
);

/** The rights a PTE's flags grant, as "more is more" bits: W, U, and X (= not NX). */
function rights(flags: number): number {
  return (flags & (PTE_W | PTE_U)) | ((flags & PTE_NX) === 0 ? 1 : 0);
}

class Harness {
  readonly mem = PhysicalMemory.create(96 * PAGE_SIZE);
  readonly alloc: FrameAllocator;
  readonly mmu: Mmu;
  readonly hv: Shootdown;
  readonly tlbs: Tlb[] = [];
  readonly boxes: ShootdownMailbox[] = [];
  readonly xlate: AddressTranslation[];
  readonly users: Mmu["user"][];
  readonly spaces: number[];
  readonly frames: number[] = [];
  readonly startFree: number;
  // The model.
  readonly model: Array<Map<number, Entry>> = [new Map(), new Map()];
  readonly bytes: Uint8Array[] = [];

  constructor() {
    const arena = new Arena(this.mem.sab);
    const fa = layFrameAllocator(arena, this.mem.frames);
    const board = layShootdownBoard(arena, 2, 2); // tiny mailboxes: overflow to flush-all happens
    initFrameAllocator(this.mem, fa, firstFrameAfter(arena));
    this.alloc = new FrameAllocator(this.mem, fa);
    this.startFree = this.alloc.freeFrames;
    this.mmu = new Mmu(this.mem, this.alloc);
    this.hv = new Shootdown(this.mem.sab, board);
    const translators: Translator[] = [];
    for (let p = 0; p < 2; p++) {
      // Small, so conflicts and evictions happen; TLB 1 is fully associative, so entries of both
      // address spaces for one page meet in one set and the asid tag must tell them apart.
      const tlb = new Tlb(p === 0 ? { sets: 4, ways: 2 } : { sets: 1, ways: 8 });
      const box = new ShootdownMailbox(this.mem.sab, board, p, tlb);
      this.tlbs.push(tlb);
      this.boxes.push(box);
      translators.push(new Translator(this.mmu, tlb, box));
    }
    this.xlate = [translators[0]!, translators[1]!, this.mmu];
    this.users = [translators[0]!.user, translators[1]!.user, this.mmu.user];
    this.spaces = [this.mmu.createAddressSpace(), this.mmu.createAddressSpace()];
    for (let i = 0; i < DATA_FRAMES; i++) {
      const f = this.alloc.allocZeroed();
      this.frames.push(f);
      this.bytes.push(new Uint8Array(PAGE_SIZE));
    }
  }

  expectedPte(e: Entry): number {
    return makePte(
      this.frames[e.frame]!,
      e.flags | (e.accessed ? PTE_A : 0) | (e.dirty ? PTE_D : 0),
    );
  }

  shoot(s: number, vpn: number, shoot: Shoot): void {
    const as = this.spaces[s]!;
    if (shoot.how === "page") {
      this.hv.invalidatePages(as, vpn * PAGE_SIZE);
    } else if (shoot.how === "range") {
      const first = Math.max(0, vpn - shoot.before);
      const end = Math.min(2 ** 20, vpn + 1 + shoot.after);
      this.hv.invalidatePages(as, first * PAGE_SIZE, end - first);
    } else if (shoot.how === "asid") {
      this.hv.invalidateAsid(as);
    } else {
      this.hv.invalidateAll();
    }
  }

  /** What the model says translate returns, updating A/D as the hardware would. */
  translateModel(s: number, vpn: number, off: number, access: Access, user: boolean): number {
    const e = this.model[s]!.get(vpn);
    if (e === undefined) return FAULT_NOT_PRESENT;
    if (user && (e.flags & PTE_U) === 0) return FAULT_PROT_USER;
    if (access === ACCESS_WRITE && (e.flags & PTE_W) === 0) return FAULT_PROT_WRITE;
    if (access === ACCESS_EXEC && (e.flags & PTE_NX) !== 0) return FAULT_NX;
    e.accessed = true;
    if (access === ACCESS_WRITE) e.dirty = true;
    return this.frames[e.frame]! * PAGE_SIZE + off;
  }

  /** The model's pages for [va, va+len), or null if any would fault for a user `access`. */
  rangeModel(s: number, va: number, len: number, access: Access): Entry[] | null {
    if (va + len > 2 ** 32) return null;
    const out: Entry[] = [];
    if (len === 0) return out;
    for (
      let vpn = Math.floor(va / PAGE_SIZE);
      vpn <= Math.floor((va + len - 1) / PAGE_SIZE);
      vpn++
    ) {
      const e = this.model[s]!.get(vpn);
      if (e === undefined || (e.flags & PTE_U) === 0) return null;
      if (access === ACCESS_WRITE && (e.flags & PTE_W) === 0) return null;
      out.push(e);
    }
    return out;
  }

  run(op: Op): void {
    switch (op.k) {
      case "map":
        this.map(op);
        break;
      case "unmap":
        this.unmap(op);
        break;
      case "protect":
        this.protect(op);
        break;
      case "translate":
        this.translate(op);
        break;
      case "copyin":
        this.copyin(op);
        break;
      case "copyout":
        this.copyout(op);
        break;
      case "check":
        this.checkTlbs();
        break;
    }
  }

  map(op: Extract<Op, { k: "map" }>): void {
    const vpn = VPNS[op.v];
    const m = this.model[op.s]!;
    const old = m.get(vpn);
    const r = this.mmu.map(
      this.spaces[op.s]!,
      vpn * PAGE_SIZE,
      this.frames[op.f]!,
      op.flags,
      op.replace,
    );
    if (old !== undefined && !op.replace) {
      assert.equal(r, -EEXIST);
      return;
    }
    assert.equal(r, old === undefined ? 0 : this.expectedPte(old));
    m.set(vpn, { frame: op.f, flags: op.flags, accessed: false, dirty: false });
    if (old !== undefined) this.shoot(op.s, vpn, op.shoot);
  }

  unmap(op: Extract<Op, { k: "unmap" }>): void {
    const vpn = VPNS[op.v];
    const m = this.model[op.s]!;
    const old = m.get(vpn);
    assert.equal(
      this.mmu.unmap(this.spaces[op.s]!, vpn * PAGE_SIZE),
      old === undefined ? 0 : this.expectedPte(old),
    );
    m.delete(vpn);
    this.shoot(op.s, vpn, op.shoot);
  }

  protect(op: Extract<Op, { k: "protect" }>): void {
    const vpn = VPNS[op.v];
    const e = this.model[op.s]!.get(vpn);
    const r = this.mmu.protect(this.spaces[op.s]!, vpn * PAGE_SIZE, op.flags);
    if (e === undefined) {
      assert.equal(r, -ENOENT);
      return;
    }
    assert.equal(r, this.expectedPte(e));
    const grows = (rights(op.flags) & rights(e.flags)) === rights(e.flags);
    e.flags = op.flags;
    if (!(grows && op.lazy)) this.shoot(op.s, vpn, op.shoot);
  }

  translate(op: Extract<Op, { k: "translate" }>): void {
    const vpn = VPNS[op.v];
    const va = vpn * PAGE_SIZE + op.off;
    const got = this.xlate[op.via]!.translate(this.spaces[op.s]!, va, op.access, op.user);
    assert.equal(
      got,
      this.translateModel(op.s, vpn, op.off, op.access, op.user),
      `translate ${va.toString(16)}`,
    );
  }

  copyin(op: Extract<Op, { k: "copyin" }>): void {
    const va = VPNS[op.v] * PAGE_SIZE + op.off;
    const dst = new Uint8Array(op.len).fill(0xa5);
    const r = this.users[op.via]!.copyin(this.spaces[op.s]!, va, dst);
    const pages = this.rangeModel(op.s, va, op.len, ACCESS_READ);
    if (pages === null) {
      assert.equal(r, -EFAULT);
      assert.ok(
        dst.every((b) => b === 0xa5),
        "destination untouched",
      );
      return;
    }
    assert.equal(r, 0);
    for (let i = 0; i < op.len; i++) {
      const at = va + i;
      const e = pages[Math.floor(at / PAGE_SIZE) - Math.floor(va / PAGE_SIZE)]!;
      if (dst[i] !== this.bytes[e.frame]![at % PAGE_SIZE])
        assert.fail(`copyin byte ${i} at ${at.toString(16)}`);
    }
    for (const e of pages) e.accessed = true;
  }

  copyout(op: Extract<Op, { k: "copyout" }>): void {
    const va = VPNS[op.v] * PAGE_SIZE + op.off;
    const r = this.users[op.via]!.copyout(this.spaces[op.s]!, va, op.bytes);
    const pages = this.rangeModel(op.s, va, op.bytes.length, ACCESS_WRITE);
    if (pages === null) {
      assert.equal(r, -EFAULT);
      return; // checkMemory shows nothing was written
    }
    assert.equal(r, 0);
    for (let i = 0; i < op.bytes.length; i++) {
      const at = va + i;
      const e = pages[Math.floor(at / PAGE_SIZE) - Math.floor(va / PAGE_SIZE)]!;
      this.bytes[e.frame]![at % PAGE_SIZE] = op.bytes[i]!;
    }
    for (const e of pages) {
      e.accessed = true;
      e.dirty = true;
    }
  }

  /** Every PTE and every data frame as the model says. */
  checkMemory(): void {
    for (let s = 0; s < 2; s++) {
      for (const vpn of VPNS) {
        const e = this.model[s]!.get(vpn);
        assert.equal(
          this.mmu.lookup(this.spaces[s]!, vpn * PAGE_SIZE),
          e === undefined ? 0 : this.expectedPte(e),
          `pte ${s}:${vpn}`,
        );
      }
    }
    for (let i = 0; i < DATA_FRAMES; i++) {
      assert.ok(
        Buffer.from(this.mem.frameBytes(this.frames[i]!)).equals(this.bytes[i]!),
        `frame ${i} bytes`,
      );
    }
  }

  /** Process both mailboxes; then no TLB entry grants more than the page table. */
  checkTlbs(): void {
    for (const box of this.boxes) box.poll();
    assert.equal(this.hv.pending(), 0);
    for (const tlb of this.tlbs) {
      for (let s = 0; s < 2; s++) {
        for (const vpn of VPNS) {
          const cached = tlb.lookup(this.spaces[s]!, vpn);
          if (cached === 0) continue;
          const e = this.model[s]!.get(vpn);
          assert.ok(e !== undefined, `stale TLB entry for unmapped page ${s}:${vpn}`);
          assert.equal(pteFrame(cached), this.frames[e.frame], `TLB frame of ${s}:${vpn}`);
          const extra = rights(cached) & ~rights(e.flags);
          assert.equal(extra, 0, `TLB entry of ${s}:${vpn} grants more than the PTE`);
        }
      }
    }
  }

  /** Tear down: every frame goes back, the allocator's free count returns to the start. */
  destroy(): void {
    for (const as of this.spaces) {
      this.hv.invalidateAsid(as);
      assert.equal(this.mmu.destroyAddressSpace(as), 0);
    }
    for (const f of this.frames) this.alloc.free(f);
    assert.equal(this.alloc.freeFrames, this.startFree);
  }
}

/** A run: a burst of maps that populates both address spaces, then anything. */
function runArb(maxLength: number): fc.Arbitrary<Op[]> {
  return fc
    .tuple(
      fc.array(mapArb, { minLength: 8, maxLength: 24 }),
      fc.array(opArb, { minLength: 1, maxLength, size: "max" }),
    )
    .map(([populate, ops]) => [...populate, ...ops]);
}

test("page tables, TLBs and copyin/copyout agree with the model", () => {
  fc.assert(
    fc.property(runArb(120), (ops) => {
      const h = new Harness();
      for (const op of ops) {
        h.run(op);
        h.checkMemory();
      }
      h.checkTlbs();
      h.destroy();
    }),
    { numRuns: 300 },
  );
});

test("a TLB in front of the walk translates exactly like the walk when every change is shot down", () => {
  // Same machine, translations only through TLB 0, with a check after every step.
  fc.assert(
    fc.property(runArb(80), (ops) => {
      const h = new Harness();
      for (const op of ops) {
        const o = "via" in op ? { ...op, via: 0 as const } : op;
        h.run(o);
        h.checkMemory();
        h.checkTlbs();
      }
      h.destroy();
    }),
    { numRuns: 150 },
  );
});
