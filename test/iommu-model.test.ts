/**
 * The IOMMU against a model (property test). Random sequences of setContext / clearContext,
 * map, mapRange, unmap, protect, destroyDomain, DMA reads and writes and clearFaults, over three
 * RIDs on two buses and two domains, run on the real IOMMU (with a tiny IOTLB, so entries are
 * evicted and refilled all the time) and on a plain model: Map<rid, context>,
 * Map<domain id, Map<vpn, {frame, perms}>>, the bytes of the data frames, and the fault records.
 *
 * After every step: each kernel call returned what the model says; each DMA returned the
 * model's status, moved exactly the model's bytes (a read's buffer, the data frames' contents)
 * and nothing on a fault; the fault records and the overflow flag equal the model's. A stale
 * IOTLB entry would show up as a DMA that succeeds where the model faults, or bytes landing in
 * an old frame.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { EBUSY, EEXIST, EINVAL, ENOENT } from "../src/abi/errno.js";
import {
  DMA_OK,
  FR_ADDRESS_BEYOND_AW,
  FR_BLOCKED,
  FR_CONTEXT_NOT_PRESENT,
  FR_NO_READ,
  FR_NO_WRITE,
  FR_PTE_NOT_PRESENT,
  FR_ROOT_NOT_PRESENT,
} from "../src/hw/dma.js";
import {
  type FaultRecord,
  IOPTE_READ,
  IOPTE_RW,
  IOPTE_WRITE,
  Iommu,
  type TranslationType,
  TT_BLOCKED,
  TT_PASSTHROUGH,
  TT_TRANSLATE,
} from "../src/hw/iommu.js";
import {
  FrameAllocator,
  firstFrameAfter,
  initFrameAllocator,
  layFrameAllocator,
  PAGE_SIZE,
  PhysicalMemory,
} from "../src/hw/physmem.js";
import { Arena } from "../src/shm/layout.js";

const RIDS = [0x0100, 0x0101, 0x0200] as const;
const DIDS = [1, 2] as const;
/** Data frames that may be mapped; after them, GUARD frames that only pass-through DMAs that
 *  run past the last data page reach (a DMA is at most PAGE_SIZE + 200 bytes). */
const DATA_FRAMES = 4;
const GUARD = 2;
const RECORDS = 4;
const MEM_FRAMES = 64;

type Perms = typeof IOPTE_READ | typeof IOPTE_WRITE | typeof IOPTE_RW;
type CtxKind = TranslationType | "clear";

type Op =
  | { k: "ctx"; r: number; kind: CtxKind; d: number; aw: number }
  | { k: "map"; d: number; v: number; f: number; count: number; perms: Perms; replace: boolean }
  | { k: "unmap"; d: number; v: number; count: number }
  | { k: "protect"; d: number; v: number; count: number; perms: Perms }
  | { k: "destroy"; d: number }
  | { k: "dma"; r: number; v: number; off: number; len: number; write: boolean; seed: number }
  | { k: "clear" };

const permsArb = fc.constantFrom<Perms>(IOPTE_READ, IOPTE_WRITE, IOPTE_RW, IOPTE_RW);
const ridArb = fc.integer({ min: 0, max: RIDS.length - 1 });
const didArb = fc.integer({ min: 0, max: DIDS.length - 1 });
// IOVA pages, by index into the harness's page list (data pages, a directory boundary, the top)
const vArb = fc.integer({ min: 0, max: 7 });
const countArb = fc.integer({ min: 1, max: 3 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("ctx" as const),
      r: ridArb,
      kind: fc.constantFrom<CtxKind>(
        TT_TRANSLATE,
        TT_TRANSLATE,
        TT_PASSTHROUGH,
        TT_BLOCKED,
        "clear",
      ),
      d: didArb,
      aw: fc.constantFrom(32, 32, 22),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("map" as const),
      d: didArb,
      v: vArb,
      f: fc.integer({ min: 0, max: DATA_FRAMES - 1 }),
      count: countArb,
      perms: permsArb,
      replace: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant("unmap" as const), d: didArb, v: vArb, count: countArb }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("protect" as const),
      d: didArb,
      v: vArb,
      count: countArb,
      perms: permsArb,
    }),
  },
  fc.record({ k: fc.constant("destroy" as const), d: didArb }),
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant("dma" as const),
      r: ridArb,
      v: vArb,
      off: fc.oneof(
        fc.integer({ min: 0, max: PAGE_SIZE - 1 }),
        fc.integer({ min: PAGE_SIZE - 48, max: PAGE_SIZE - 1 }),
      ),
      len: fc.oneof(fc.integer({ min: 1, max: 96 }), fc.integer({ min: 1, max: PAGE_SIZE + 200 })),
      write: fc.boolean(),
      seed: fc.integer({ min: 0, max: 255 }),
    }),
  },
  fc.constant({ k: "clear" as const }),
);

interface ModelCtx {
  type: TranslationType;
  did: number;
  aw: number;
}
interface ModelRecord {
  rid: number;
  iova: number;
  page: number;
  write: boolean;
  reason: number;
  count: number;
}

class Harness {
  readonly mem = PhysicalMemory.create(MEM_FRAMES * PAGE_SIZE);
  readonly alloc: FrameAllocator;
  readonly iommu: Iommu;
  /** First data frame; data frames are d0 … d0+DATA_FRAMES-1, the guard frames after them. */
  readonly d0: number;
  /** IOVA page numbers the ops name: the data frames' own page numbers (so pass-through DMAs
   *  reach data frames), neighbours across a directory boundary, and the last page of 4 GiB. */
  readonly pages: number[];
  // The model.
  readonly contexts = new Map<number, ModelCtx>();
  readonly domains = new Map<number, Map<number, { frame: number; perms: number }>>();
  readonly bytes: Uint8Array;
  records: (ModelRecord | null)[] = new Array(RECORDS).fill(null);
  overflow = false;

  constructor() {
    const arena = new Arena(this.mem.sab);
    const fa = layFrameAllocator(arena, this.mem.frames);
    initFrameAllocator(this.mem, fa, firstFrameAfter(arena));
    this.alloc = new FrameAllocator(this.mem, fa);
    this.d0 = this.alloc.allocContiguous(DATA_FRAMES + GUARD);
    assert.ok(this.d0 >= 0);
    this.bytes = new Uint8Array((DATA_FRAMES + GUARD) * PAGE_SIZE);
    for (let k = 0; k < this.bytes.length; k++) this.bytes[k] = (k * 13) & 0xff;
    this.mem.u8.set(this.bytes, this.d0 * PAGE_SIZE);
    this.iommu = new Iommu(this.mem, this.alloc, {
      faultRecords: RECORDS,
      iotlbSets: 2,
      iotlbWays: 2,
    });
    const d = this.d0;
    this.pages = [d, d + 1, d + 2, d + 3, 1023, 1024, 1025, 0xfffff];
  }

  run(op: Op): void {
    const did = "d" in op ? DIDS[op.d] : 0;
    switch (op.k) {
      case "ctx":
        this.ctx(RIDS[op.r], op.kind, DIDS[op.d], op.aw);
        break;
      case "map": {
        const count = Math.min(op.count, DATA_FRAMES - op.f); // never maps a guard frame
        const vpn = this.pages[op.v];
        const frame = this.d0 + op.f;
        assert.equal(
          this.iommu.mapRange(did, vpn * PAGE_SIZE, frame, count, op.perms, op.replace),
          this.modelMap(did, vpn, frame, count, op.perms, op.replace),
          "mapRange",
        );
        break;
      }
      case "unmap": {
        const vpn = this.pages[op.v];
        assert.equal(
          this.iommu.unmap(did, vpn * PAGE_SIZE, op.count),
          this.modelUnmap(did, vpn, op.count),
          "unmap",
        );
        break;
      }
      case "protect": {
        const vpn = this.pages[op.v];
        assert.equal(
          this.iommu.protect(did, vpn * PAGE_SIZE, op.count, op.perms),
          this.modelProtect(did, vpn, op.count, op.perms),
          "protect",
        );
        break;
      }
      case "destroy":
        assert.equal(this.iommu.destroyDomain(did), this.modelDestroy(did), "destroyDomain");
        break;
      case "dma":
        this.dma(RIDS[op.r], this.pages[op.v] * PAGE_SIZE + op.off, op.len, op.write, op.seed);
        break;
      case "clear":
        this.iommu.clearFaults();
        this.records.fill(null);
        this.overflow = false;
        break;
    }
  }

  ctx(rid: number, kind: CtxKind, did: number, aw: number): void {
    if (kind === "clear") {
      const had = this.contexts.delete(rid);
      assert.equal(this.iommu.clearContext(rid), had ? 0 : -ENOENT, "clearContext");
      return;
    }
    assert.equal(
      this.iommu.setContext(rid, { type: kind, domainId: did, addressWidth: aw }),
      0,
      "setContext",
    );
    this.contexts.set(rid, { type: kind, did, aw });
    if (kind === TT_TRANSLATE && !this.domains.has(did)) this.domains.set(did, new Map());
  }

  modelMap(
    did: number,
    vpn: number,
    frame: number,
    count: number,
    perms: number,
    replace: boolean,
  ): number {
    if (vpn + count > 0x100000) return -EINVAL;
    const dom = this.domains.get(did);
    if (dom && !replace) for (let k = 0; k < count; k++) if (dom.has(vpn + k)) return -EEXIST;
    const d = dom ?? new Map();
    this.domains.set(did, d);
    for (let k = 0; k < count; k++) d.set(vpn + k, { frame: frame + k, perms });
    return 0;
  }

  modelUnmap(did: number, vpn: number, count: number): number {
    if (vpn + count > 0x100000) return -EINVAL;
    const dom = this.domains.get(did);
    if (!dom) return -ENOENT;
    let n = 0;
    for (let k = 0; k < count; k++) if (dom.delete(vpn + k)) n++;
    return n;
  }

  modelProtect(did: number, vpn: number, count: number, perms: number): number {
    if (vpn + count > 0x100000) return -EINVAL;
    const dom = this.domains.get(did);
    if (!dom) return -ENOENT;
    for (let k = 0; k < count; k++) if (!dom.has(vpn + k)) return -ENOENT;
    for (let k = 0; k < count; k++) {
      const e = dom.get(vpn + k);
      if (e) e.perms = perms;
    }
    return 0;
  }

  modelDestroy(did: number): number {
    if (!this.domains.has(did)) return -ENOENT;
    for (const c of this.contexts.values())
      if (c.type === TT_TRANSLATE && c.did === did) return -EBUSY;
    this.domains.delete(did);
    return 0;
  }

  /** The model's answer for a DMA: [status, page that faulted, physical address of each byte]. */
  modelResolve(rid: number, a: number, len: number, write: boolean): [number, number, number[]] {
    const page0 = a - (a % PAGE_SIZE);
    const c = this.contexts.get(rid);
    if (!c) {
      const busUsed = [...this.contexts.keys()].some((r) => r >>> 8 === rid >>> 8);
      return [busUsed ? FR_CONTEXT_NOT_PRESENT : FR_ROOT_NOT_PRESENT, page0, []];
    }
    if (c.type === TT_BLOCKED) return [FR_BLOCKED, page0, []];
    const limit = c.type === TT_PASSTHROUGH ? this.mem.bytes : 2 ** c.aw;
    if (a + len > limit) return [FR_ADDRESS_BEYOND_AW, a < limit ? limit : page0, []];
    const phys: number[] = [];
    if (c.type === TT_PASSTHROUGH) {
      for (let k = 0; k < len; k++) phys.push(a + k);
      return [DMA_OK, 0, phys];
    }
    const dom = this.domains.get(c.did) ?? new Map();
    const first = Math.floor(a / PAGE_SIZE);
    const last = Math.floor((a + len - 1) / PAGE_SIZE);
    for (let vpn = first; vpn <= last; vpn++) {
      const e = dom.get(vpn);
      if (!e) return [FR_PTE_NOT_PRESENT, vpn * PAGE_SIZE, []];
      if (write && (e.perms & IOPTE_WRITE) === 0) return [FR_NO_WRITE, vpn * PAGE_SIZE, []];
      if (!write && (e.perms & IOPTE_READ) === 0) return [FR_NO_READ, vpn * PAGE_SIZE, []];
    }
    for (let k = 0; k < len; k++) {
      const x = a + k;
      const e = dom.get(Math.floor(x / PAGE_SIZE));
      if (e) phys.push(e.frame * PAGE_SIZE + (x % PAGE_SIZE));
    }
    return [DMA_OK, 0, phys];
  }

  modelFault(rid: number, iova: number, page: number, write: boolean, reason: number): void {
    const same = this.records.find(
      (r) => r !== null && r.rid === rid && r.reason === reason && r.write === write,
    );
    if (same) {
      same.count++;
      same.iova = iova;
      same.page = page;
      return;
    }
    const free = this.records.indexOf(null);
    if (free < 0) this.overflow = true;
    else this.records[free] = { rid, iova, page, write, reason, count: 1 };
  }

  dma(rid: number, a: number, len: number, write: boolean, seed: number): void {
    const [status, page, phys] = this.modelResolve(rid, a, len, write);
    const base = this.d0 * PAGE_SIZE;
    const buf = new Uint8Array(len);
    for (let k = 0; k < len; k++) buf[k] = (seed + k * 7) & 0xff;
    const sent = buf.slice();
    const got = write ? this.iommu.write(rid, a, buf) : this.iommu.read(rid, a, buf);
    assert.equal(got, status, `${write ? "write" : "read"} rid ${rid} at ${a.toString(16)}+${len}`);
    if (status !== DMA_OK) {
      assert.deepEqual(buf, sent, "a blocked DMA leaves the buffer alone");
      this.modelFault(rid, a, page, write, status);
    } else if (write) {
      for (let k = 0; k < len; k++) {
        const at = phys[k] - base;
        assert.ok(at >= 0 && at < this.bytes.length, "a model write outside the data frames");
        this.bytes[at] = buf[k];
      }
    } else {
      for (let k = 0; k < len; k++) assert.equal(buf[k], this.bytes[phys[k] - base], `byte ${k}`);
    }
  }

  check(): void {
    const base = this.d0 * PAGE_SIZE;
    assert.deepEqual(
      this.mem.u8.subarray(base, base + this.bytes.length),
      this.bytes,
      "data frames",
    );
    const want: FaultRecord[] = [];
    this.records.forEach((r, index) => {
      if (r) want.push({ index, ...r });
    });
    assert.deepEqual(this.iommu.faults(), want, "fault records");
    assert.equal(this.iommu.overflow, this.overflow, "overflow");
  }
}

test("random map / unmap / protect / context changes and DMAs agree with a model", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 150, size: "max" }), (ops) => {
      const h = new Harness();
      for (const op of ops) {
        h.run(op);
        h.check();
      }
    }),
    { numRuns: 400 },
  );
});

test("every page-table frame comes back after random use and destroy", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: "max" }), (ops) => {
      const h = new Harness();
      const free = h.alloc.freeFrames;
      for (const op of ops) h.run(op);
      h.iommu.destroy();
      assert.equal(h.alloc.freeFrames, free + 1, "tables and the root table are all free");
    }),
    { numRuns: 150 },
  );
});
