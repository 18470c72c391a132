/**
 * devices: the machine's hardware as the hypervisor sets it up at boot — the IOMMU, and each
 * device as an SR-IOV physical function whose virtual functions are handed out by
 * configuration (DESIGN.md, Memory and devices):
 *
 *   NVMe PF (rid 01:00.0)   VF 0 → the storage domain; its namespace is the whole disk image
 *   NIC PF  (rid 02:00.0)   VF 0 → the network domain; VF 1 + k → core k when the machine is
 *                           booted with that core given a VF of its own (XOS kernel bypass)
 *
 * Every DMA the device models make goes through the IOMMU, where each VF has its own context
 * and I/O page table holding exactly its DMA region. A blocked DMA is recorded by the IOMMU and
 * reported here as a supervisor event.
 *
 * Owns: the IOMMU, the PFs and the device models, from boot until close(). Hypervisor thread only.
 */

import { statSync } from "node:fs";
import { NIC_DMA_BYTES } from "../drivers/nic.js";
import { ExocoreError, InvalidArgumentError } from "../errors.js";
import { faultReasonName, Iommu } from "../hw/iommu.js";
import { NicDevice, type NicVfStats } from "../hw/nic.js";
import { NvmeController, type NvmeStats } from "../hw/nvme.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/physmem.js";
import { type PfDescription, PhysicalFunction } from "../hw/sriov.js";
import type { VfDescriptor } from "../hw/vf.js";

/** DMA memory each VF gets: queues, bounce buffers, packet buffers. */
const NVME_DMA_BYTES = 4 * 1024 * 1024;
const NVME_PF_RID = 0x0100;
const NIC_PF_RID = 0x0200;
const LBA_BYTES = 4096;

export interface DeviceOptions {
  /** Disk image for the NVMe device; none: no NVMe device. */
  readonly disk?: string;
  /** Give the machine a NIC. */
  readonly network?: boolean;
  /** Cores that get a NIC VF of their own (kernel bypass). */
  readonly bypassCores?: readonly number[];
}

export interface DmaFaultReport {
  readonly rid: number;
  readonly iova: number;
  readonly write: boolean;
  readonly reason: string;
  readonly owner: string;
}

export interface DeviceStats {
  readonly iommu: ReturnType<Iommu["stats"]>;
  readonly nvme: NvmeStats | null;
  /** Per NIC VF (index → counters). */
  readonly nic: Readonly<Record<number, NicVfStats>> | null;
  readonly pfs: readonly PfDescription[];
}

export class Devices {
  readonly iommu: Iommu;
  readonly nvme: NvmeController | null;
  readonly nic: NicDevice | null;
  readonly #pfs: PhysicalFunction[];
  /** The VF each domain drives, by domain name. */
  readonly storageVf: VfDescriptor | undefined;
  readonly networkVf: VfDescriptor | undefined;
  /** coreVfs[c]: the NIC VF core c drives itself, if any. */
  readonly coreVfs: readonly (VfDescriptor | undefined)[];

  private constructor(
    iommu: Iommu,
    nvme: NvmeController | null,
    nic: NicDevice | null,
    pfs: PhysicalFunction[],
    vfs: { storage?: VfDescriptor; network?: VfDescriptor; cores: (VfDescriptor | undefined)[] },
  ) {
    this.iommu = iommu;
    this.nvme = nvme;
    this.nic = nic;
    this.#pfs = pfs;
    this.storageVf = vfs.storage;
    this.networkVf = vfs.network;
    this.coreVfs = vfs.cores;
  }

  /** Build the machine's devices; `onFault` hears of every blocked DMA. */
  static async create(
    mem: PhysicalMemory,
    frames: FrameAllocator,
    cores: number,
    o: DeviceOptions,
    onFault: (f: DmaFaultReport) => void,
  ): Promise<Devices> {
    const iommu = new Iommu(mem, frames);
    const pfs: PhysicalFunction[] = [];
    const owners = new Map<number, string>();
    iommu.onFault((e) => {
      onFault({
        rid: e.rid,
        iova: e.iova,
        write: e.write,
        reason: faultReasonName(e.reason),
        owner: owners.get(e.rid) ?? "unassigned",
      });
    });
    const vfs: {
      storage?: VfDescriptor;
      network?: VfDescriptor;
      cores: (VfDescriptor | undefined)[];
    } = { cores: new Array<VfDescriptor | undefined>(cores).fill(undefined) };
    let nvme: NvmeController | null = null;
    let nic: NicDevice | null = null;
    try {
      if (o.disk !== undefined) {
        let bytes: number;
        try {
          bytes = statSync(o.disk).size;
        } catch (e) {
          throw new ExocoreError(
            "EXO_ERR_ENOENT",
            `disk image ${o.disk}: ${(e as Error).message}`,
            2,
          );
        }
        if (bytes < 16 * LBA_BYTES || bytes % LBA_BYTES !== 0) {
          throw new InvalidArgumentError(
            `disk image ${o.disk}: ${bytes} bytes is not a whole number of 4096-byte blocks (at least 16); make one with exocore mkfs`,
          );
        }
        const ctl = await NvmeController.open({
          mem,
          dma: iommu,
          image: o.disk,
          namespaces: [{ lbaOffset: 0, blocks: bytes / LBA_BYTES }],
        });
        nvme = ctl;
        const pf = new PhysicalFunction(mem, frames, iommu, {
          kind: "nvme",
          rid: NVME_PF_RID,
          totalVfs: 4,
          hooks: {
            onEnable: (vf) => ctl.attachVf(vf.descriptor()),
            onReset: (vf) => ctl.resetVf(vf.index),
            onDisable: (vf) => ctl.detachVf(vf.index),
          },
        });
        pfs.push(pf);
        pf.setNumVfs(1);
        pf.enable();
        vfs.storage = pf.assign(0, "domain:storage", NVME_DMA_BYTES);
        owners.set(vfs.storage.rid, "domain:storage");
      }
      const bypass = o.bypassCores ?? [];
      if (o.network === true || bypass.length > 0) {
        let nicPf: PhysicalFunction | null = null;
        // A driver's VFC_RESET goes through the PF, which performs the FLR (and calls onReset).
        const dev = new NicDevice(mem, iommu, { resetRequest: (i) => nicPf?.serviceControl(i) });
        nic = dev;
        const pf = new PhysicalFunction(mem, frames, iommu, {
          kind: "nic",
          rid: NIC_PF_RID,
          totalVfs: 1 + cores,
          hooks: {
            onEnable: (vf) => dev.attachVf(vf.descriptor()),
            onReset: (vf) => dev.resetVf(vf.index),
            onDisable: (vf) => dev.detachVf(vf.index),
          },
        });
        nicPf = pf;
        pfs.push(pf);
        pf.setNumVfs(1 + cores);
        pf.enable();
        if (o.network === true) {
          vfs.network = pf.assign(0, "domain:network", NIC_DMA_BYTES);
          owners.set(vfs.network.rid, "domain:network");
        }
        for (const c of bypass) {
          if (!Number.isInteger(c) || c < 0 || c >= cores) {
            throw new InvalidArgumentError(
              `bypass core ${c} is not a core of this machine (0…${cores - 1})`,
            );
          }
          const d = pf.assign(1 + c, `core:${c}`, NIC_DMA_BYTES);
          vfs.cores[c] = d;
          owners.set(d.rid, `core:${c}`);
        }
      }
    } catch (e) {
      await nvme?.close();
      await nic?.close();
      throw e;
    }
    return new Devices(iommu, nvme, nic, pfs, vfs);
  }

  /** Pull the plug on the disk: its volatile write cache is lost (a fault to inject). */
  powerCut(): void {
    this.nvme?.powerCut();
  }

  stats(): DeviceStats {
    return {
      iommu: this.iommu.stats(),
      nvme: this.nvme?.stats() ?? null,
      nic:
        this.nic === null
          ? null
          : Object.fromEntries(this.nic.attached.map((i) => [i, (this.nic as NicDevice).stats(i)])),
      pfs: this.#pfs.map((pf) => pf.describe()),
    };
  }

  /** Stop the device models (after the domains have left: the storage domain flushes first). */
  async close(): Promise<void> {
    await this.nvme?.close();
    await this.nic?.close();
  }
}
