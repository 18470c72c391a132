/**
 * SR-IOV physical and virtual functions: the NumVFs register (bounds, locked while VF Enable is
 * set), VF RIDs by First VF Offset and VF Stride, the register block a VF gets at enable, the
 * function-level reset (by the hypervisor and by a driver's VFC_RESET), assignment of a DMA
 * region that DMAs through the IOMMU reach and unassign revokes, the device-model hooks, and
 * that enable is all or nothing and disable gives every frame back.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { EBUSY, EINVAL } from "../src/abi/errno.js";
import { ExocoreError, InvalidArgumentError } from "../src/errors.js";
import { DMA_OK, FR_BLOCKED, FR_PTE_NOT_PRESENT } from "../src/hw/dma.js";
import { Iommu, TT_BLOCKED, TT_TRANSLATE } from "../src/hw/iommu.js";
import {
  FrameAllocator,
  firstFrameAfter,
  initFrameAllocator,
  layFrameAllocator,
  PAGE_SIZE,
  PhysicalMemory,
} from "../src/hw/physmem.js";
import {
  DMA_IOVA_BASE,
  PhysicalFunction,
  type PhysicalFunctionOptions,
  type VfHooks,
  type VirtualFunction,
} from "../src/hw/sriov.js";
import {
  VF_DEVICE_REGS,
  VF_DISABLED,
  VF_MAGIC_NIC,
  VF_MAGIC_NVME,
  VF_READY,
  VF_REG_BYTES,
  VF_RESETTING,
  VFC_ENABLE,
  VFC_RESET,
  vrControl,
  vrGeneration,
  vrIndex,
  vrIrqWord,
  vrMagic,
  vrRid,
  vrStatus,
  vsCommands,
} from "../src/hw/vf.js";
import { Arena } from "../src/shm/layout.js";

const PF_RID = 0x0100;

function machine(frames = 96) {
  const mem = PhysicalMemory.create(frames * PAGE_SIZE);
  const arena = new Arena(mem.sab);
  const fa = layFrameAllocator(arena, mem.frames);
  initFrameAllocator(mem, fa, firstFrameAfter(arena));
  const alloc = new FrameAllocator(mem, fa);
  const iommu = new Iommu(mem, alloc);
  return { mem, alloc, iommu };
}

type Machine = ReturnType<typeof machine>;

function pf(m: Machine, options: Partial<PhysicalFunctionOptions> = {}): PhysicalFunction {
  return new PhysicalFunction(m.mem, m.alloc, m.iommu, {
    kind: "nvme",
    rid: PF_RID,
    totalVfs: 4,
    firstVfOffset: 8,
    vfStride: 2,
    ...options,
  });
}

function word(m: Machine, vf: VirtualFunction, w: number): number {
  return Atomics.load(m.mem.i32, vf.regs / 4 + w);
}

function isCode(code: string, re?: RegExp) {
  return (e: unknown) =>
    e instanceof ExocoreError && e.code === code && (!re || re.test(e.message));
}

test("NumVFs accepts 0 … TotalVFs and rejects negatives, non-integers and too many", () => {
  const m = machine();
  const p = pf(m);
  for (const bad of [5, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.equal(p.writeNumVfs(bad), -EINVAL, `writeNumVfs(${bad})`);
    assert.throws(() => p.setNumVfs(bad), InvalidArgumentError, `setNumVfs(${bad})`);
  }
  assert.throws(() => p.setNumVfs(5), /numVfs must be an integer from 0 to 4, got 5/);
  assert.equal(p.numVfs, 0);
  assert.equal(p.writeNumVfs(4), 0);
  assert.equal(p.numVfs, 4);
  p.setNumVfs(0);
  assert.equal(p.numVfs, 0);
});

test("options are checked: kind, a last VF RID past 16 bits, an unaligned DMA IOVA", () => {
  const m = machine();
  assert.throws(() => pf(m, { kind: "gpu" as "nvme" }), /kind must be one of nvme, nic/);
  assert.throws(() => pf(m, { rid: 0xfff0, totalVfs: 8 }), /past 65535/);
  assert.throws(() => pf(m, { dmaIova: 0x1234 }), /dmaIova must be a multiple of 4096/);
  assert.throws(() => pf(m, { vfStride: 0 }), /vfStride/);
  assert.doesNotThrow(() => pf(m, { rid: 0xfff0, totalVfs: 3, firstVfOffset: 1, vfStride: 5 }));
});

test("NumVFs is locked while VF Enable is set", () => {
  const m = machine();
  const p = pf(m);
  p.setNumVfs(2);
  p.enable();
  assert.equal(p.vfEnable, true);
  assert.equal(p.writeNumVfs(3), -EBUSY);
  assert.throws(() => p.setNumVfs(3), isCode("EXO_ERR_EBUSY", /locked/));
  assert.equal(p.numVfs, 2);
  assert.equal(p.vfs().length, 2);
  p.enable(); // enabling again changes nothing
  assert.equal(p.vfs().length, 2);
  p.disable();
  assert.equal(p.writeNumVfs(3), 0);
  p.enable();
  assert.equal(p.vfs().length, 3);
});

test("VF RIDs follow First VF Offset and VF Stride; each VF gets a blocked IOMMU context", () => {
  const m = machine();
  const p = pf(m);
  p.setNumVfs(4);
  p.enable();
  assert.deepEqual(
    p.vfs().map((v) => v.rid),
    [0x0108, 0x010a, 0x010c, 0x010e],
  );
  for (let i = 0; i < 4; i++) {
    const vf = p.vf(i);
    assert.equal(vf.rid, p.vfRid(i));
    assert.equal(vf.domainId, vf.rid);
    assert.deepEqual(m.iommu.context(vf.rid), {
      type: TT_BLOCKED,
      domainId: vf.rid,
      addressWidth: 32,
    });
    assert.equal(m.iommu.read(vf.rid, DMA_IOVA_BASE, new Uint8Array(4)), FR_BLOCKED);
  }
  assert.equal(m.iommu.context(PF_RID), null, "the PF itself does no DMA");
  assert.throws(() => p.vf(4), /VF index must be an integer from 0 to 3/);
});

test("enable lays out each VF's register block with the common header", () => {
  for (const [kind, magic] of [
    ["nvme", VF_MAGIC_NVME],
    ["nic", VF_MAGIC_NIC],
  ] as const) {
    const m = machine();
    // dirty the frames the VFs will get, so the test sees that the PF clears them
    const dirty = Array.from({ length: 8 }, () => m.alloc.alloc());
    for (const f of dirty) m.mem.frameBytes(f).fill(0xcd);
    for (const f of dirty) m.alloc.free(f);
    const p = pf(m, { kind });
    p.setNumVfs(3);
    p.enable();
    const regs = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const vf = p.vf(i);
      assert.equal(vf.regs % VF_REG_BYTES, 0);
      regs.add(vf.regs);
      assert.equal(word(m, vf, vrMagic), magic | 0);
      assert.equal(word(m, vf, vrIndex), i);
      assert.equal(word(m, vf, vrRid), vf.rid);
      assert.equal(word(m, vf, vrStatus), VF_READY);
      assert.equal(word(m, vf, vrGeneration), 0);
      assert.equal(word(m, vf, vrControl), 0);
      assert.equal(word(m, vf, vrIrqWord), 0);
      const block = m.mem.u8.subarray(vf.regs + 32, vf.regs + VF_REG_BYTES);
      assert.ok(
        block.every((b) => b === 0),
        "the rest of the block is zero",
      );
      assert.deepEqual(vf.descriptor(), {
        kind,
        index: i,
        rid: vf.rid,
        regs: vf.regs,
        dma: { iova: 0, phys: 0, bytes: 0 },
      });
    }
    assert.equal(regs.size, 3, "each VF has its own block");
  }
});

test("a function-level reset bumps the generation and clears the device registers", () => {
  const m = machine();
  const seen: Array<[number, number]> = [];
  const p = pf(m, {
    hooks: { onReset: (vf) => seen.push([vf.index, vf.status]) },
  });
  p.setNumVfs(2);
  p.enable();
  const vf = p.vf(1);
  const i32 = m.mem.i32;
  m.mem.u8.fill(0x5a, vf.regs + VF_DEVICE_REGS, vf.regs + VF_REG_BYTES);
  Atomics.store(i32, vf.regs / 4 + vrControl, VFC_ENABLE);
  Atomics.store(i32, vf.regs / 4 + vrIrqWord, 0x4000);
  Atomics.store(i32, vf.regs / 4 + vsCommands, 17);
  const other = p.vf(0);
  m.mem.u8.fill(0x33, other.regs + VF_DEVICE_REGS, other.regs + VF_REG_BYTES);

  p.reset(1);
  assert.deepEqual(seen, [[1, VF_RESETTING]], "the hook runs while the VF is resetting");
  assert.equal(vf.generation, 1);
  assert.equal(vf.status, VF_READY);
  assert.equal(word(m, vf, vrControl), 0);
  assert.equal(word(m, vf, vrIrqWord), 0);
  assert.equal(word(m, vf, vsCommands), 17, "the counters survive");
  assert.ok(
    m.mem.u8.subarray(vf.regs + VF_DEVICE_REGS, vf.regs + VF_REG_BYTES).every((b) => b === 0),
  );
  assert.ok(
    m.mem.u8
      .subarray(other.regs + VF_DEVICE_REGS, other.regs + VF_REG_BYTES)
      .every((b) => b === 0x33),
    "the other VF is untouched",
  );
  p.reset(1);
  assert.equal(vf.generation, 2);
});

test("a driver's VFC_RESET is served by serviceControl, which clears it when done", () => {
  const m = machine();
  let resets = 0;
  const p = pf(m, { hooks: { onReset: () => resets++ } });
  p.setNumVfs(1);
  p.enable();
  const vf = p.vf(0);
  const ctl = vf.regs / 4 + vrControl;
  Atomics.store(m.mem.i32, ctl, VFC_ENABLE);
  assert.equal(p.serviceControl(0), 0, "no reset asked for");
  assert.equal(vf.generation, 0);
  Atomics.or(m.mem.i32, ctl, VFC_RESET); // what the driver does
  assert.equal(p.serviceControl(0), 1);
  assert.equal(resets, 1);
  assert.equal(vf.generation, 1);
  assert.equal(Atomics.load(m.mem.i32, ctl) & VFC_RESET, 0);
  assert.equal(p.serviceControl(0), 0, "served once");
  assert.equal(p.serviceControl(3), -EINVAL);
});

test("assign maps a zeroed DMA region that the VF's DMAs reach; unassign revokes it", () => {
  const m = machine();
  const p = pf(m);
  p.setNumVfs(2);
  p.enable();
  const free = m.alloc.freeFrames;
  const desc = p.assign(1, "domain:storage", 10_000);
  const vf = p.vf(1);
  assert.equal(desc.kind, "nvme");
  assert.equal(desc.index, 1);
  assert.equal(desc.rid, vf.rid);
  assert.equal(desc.regs, vf.regs);
  assert.deepEqual(
    { iova: desc.dma.iova, bytes: desc.dma.bytes },
    { iova: DMA_IOVA_BASE, bytes: 3 * PAGE_SIZE },
  );
  assert.ok(m.mem.u8.subarray(desc.dma.phys, desc.dma.phys + desc.dma.bytes).every((b) => b === 0));
  assert.deepEqual(m.iommu.context(vf.rid), {
    type: TT_TRANSLATE,
    domainId: vf.rid,
    addressWidth: 32,
  });
  assert.equal(vf.owner, "domain:storage");
  assert.deepEqual(p.vfs()[1].owner, "domain:storage");
  assert.equal(p.vfs()[0].owner, null);

  // the device writes at iova + k, the driver finds it at phys + k; and the other way round
  const msg = new TextEncoder().encode("completion entry, spanning a page boundary");
  assert.equal(m.iommu.write(vf.rid, desc.dma.iova + PAGE_SIZE - 10, msg), DMA_OK);
  assert.deepEqual(
    m.mem.u8.subarray(desc.dma.phys + PAGE_SIZE - 10, desc.dma.phys + PAGE_SIZE - 10 + msg.length),
    msg,
  );
  m.mem.u8.set([1, 2, 3, 4], desc.dma.phys + 2 * PAGE_SIZE);
  const got = new Uint8Array(4);
  assert.equal(m.iommu.read(vf.rid, desc.dma.iova + 2 * PAGE_SIZE, got), DMA_OK);
  assert.deepEqual([...got], [1, 2, 3, 4]);
  // past the region, and from the other (unassigned) VF: blocked
  assert.equal(m.iommu.read(vf.rid, desc.dma.iova + desc.dma.bytes, got), FR_PTE_NOT_PRESENT);
  assert.equal(m.iommu.read(p.vf(0).rid, desc.dma.iova, got), FR_BLOCKED);

  assert.throws(() => p.assign(1, "core:1", 4096), isCode("EXO_ERR_EBUSY", /domain:storage/));
  assert.throws(() => p.assign(0, "", 4096), /owner must be a non-empty string/);
  assert.throws(() => p.assign(0, "core:1", 0), /dmaBytes must be an integer/);
  assert.throws(() => p.disable(), isCode("EXO_ERR_EBUSY", /VF 1 is assigned to domain:storage/));

  const gen = vf.generation;
  p.unassign(1);
  assert.equal(m.iommu.read(vf.rid, desc.dma.iova, got), FR_BLOCKED, "revoked");
  assert.equal(m.iommu.write(vf.rid, desc.dma.iova, msg), FR_BLOCKED);
  assert.equal(vf.owner, null);
  assert.equal(vf.generation, gen + 1, "unassign resets the VF");
  assert.equal(m.iommu.hasDomain(vf.domainId), false);
  assert.equal(m.alloc.freeFrames, free, "region and I/O page tables are freed");
  assert.throws(() => p.unassign(1), /VF 1 is not assigned/);

  // and it can be assigned again, with fresh zeroed memory
  const again = p.assign(1, "core:1", 4096);
  assert.equal(again.dma.bytes, PAGE_SIZE);
  assert.ok(m.mem.u8.subarray(again.dma.phys, again.dma.phys + PAGE_SIZE).every((b) => b === 0));
  assert.equal(p.describe().dmaFrames, 1);
});

test("hooks are called on enable, reset and disable; disable gives every frame back", () => {
  const m = machine();
  const calls: string[] = [];
  const hooks: VfHooks = {
    onEnable: (vf) => calls.push(`enable ${vf.index} ${vf.status === VF_READY}`),
    onReset: (vf) => calls.push(`reset ${vf.index}`),
    onDisable: (vf) => calls.push(`disable ${vf.index}`),
  };
  const free = m.alloc.freeFrames;
  const p = pf(m, { hooks });
  p.setNumVfs(2);
  p.enable();
  p.assign(0, "core:0", 3 * PAGE_SIZE);
  p.unassign(0);
  const vf1 = p.vf(1);
  p.disable();
  assert.deepEqual(calls, ["enable 0 true", "enable 1 true", "reset 0", "disable 0", "disable 1"]);
  assert.equal(word(m, vf1, vrStatus), VF_DISABLED);
  assert.equal(p.vfEnable, false);
  assert.deepEqual(p.vfs(), []);
  assert.equal(m.iommu.context(vf1.rid), null);
  assert.equal(m.alloc.freeFrames, free, "register blocks and context tables are freed");
  assert.throws(() => p.vf(0), /VF 0 is not enabled/);
});

test("enable is all or nothing when memory runs out, and refuses RIDs another PF uses", () => {
  const m = machine(48);
  const p = pf(m);
  p.setNumVfs(4);
  const hog: number[] = [];
  while (m.alloc.freeFrames > 3) hog.push(m.alloc.alloc());
  const free = m.alloc.freeFrames;
  assert.throws(() => p.enable(), isCode("EXO_ERR_ENOMEM"));
  assert.equal(p.vfEnable, false);
  assert.equal(m.alloc.freeFrames, free);
  for (let i = 0; i < 4; i++) assert.equal(m.iommu.context(p.vfRid(i)), null);
  for (const h of hog) m.alloc.free(h);
  p.enable();

  // a second PF whose VF RIDs overlap the first's
  const q = pf(m, { kind: "nic", rid: 0x010a, firstVfOffset: 2, vfStride: 2 });
  q.setNumVfs(1); // rid 0x010c: VF 2 of the first PF
  assert.throws(() => q.enable(), isCode("EXO_ERR_EBUSY", /rid 268/));
  assert.equal(q.vfEnable, false);
  // hooks can change only while disabled
  assert.throws(() => p.setHooks({}), isCode("EXO_ERR_EBUSY"));
  p.disable();
  p.setHooks({});
});

test("describe reports the capability registers, the VFs and the frames they hold", () => {
  const m = machine();
  const p = pf(m, { kind: "nic" });
  p.setNumVfs(2);
  p.enable();
  p.assign(0, "domain:network", 2 * PAGE_SIZE);
  const d = p.describe();
  assert.deepEqual(
    {
      ...d,
      vfs: d.vfs.map((v) => [v.index, v.rid, v.owner, v.status, v.generation, v.dma?.bytes ?? 0]),
    },
    {
      kind: "nic",
      rid: PF_RID,
      totalVfs: 4,
      numVfs: 2,
      vfEnable: true,
      firstVfOffset: 8,
      vfStride: 2,
      dmaIova: DMA_IOVA_BASE,
      registerFrames: 2,
      dmaFrames: 2,
      vfs: [
        [0, 0x0108, "domain:network", "ready", 0, 2 * PAGE_SIZE],
        [1, 0x010a, null, "ready", 0, 0],
      ],
    },
  );
});
