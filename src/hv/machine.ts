/**
 * machine: the hypervisor — boot, the processes it creates, the console it prints, the
 * supervisor that watches every worker, and shutdown. Runs on the main thread and never spins:
 * it hears from workers through messages and reads their status lines in shared memory.
 *
 * boot() lays out physical memory (src/hv/layout.ts), starts the service domains and N XOS
 * cores as worker threads, waits until each says ready, and returns a Machine. run() creates a
 * process — an address space with its memory mapped — and loads the program's main() as the
 * first green thread of that process on core 0. shutdown() stops every worker and leaves
 * nothing running.
 *
 * The kernel (XOmB's calls: create an address space, map, unmap, share, grant) is the
 * page-table code of src/hw/mmu.ts driven from here; nothing else is privileged.
 */

import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { DomainData, DomainMessage } from "../../domains/runtime.js";
import { EFAULT, EINVAL, ENOMEM, ENOSYS, ESRCH } from "../abi/errno.js";
import {
  kA0,
  kA1,
  kA2,
  kA3,
  kErrno,
  kNr,
  kPid,
  kRet,
  SYS_mmap,
  SYS_mshare,
  SYS_munmap,
} from "../abi/syscall.js";
import type { CoreCommand, CoreData, CoreEvent } from "../core/core.js";
import { checkInteger, checkOneOf, ExocoreError, InvalidArgumentError } from "../errors.js";
import { Mmu, PTE_COW, PTE_P, PTE_U, PTE_W } from "../hw/mmu.js";
import {
  FrameAllocator,
  FramePool,
  initFrameAllocator,
  PAGE_SIZE,
  PhysicalMemory,
} from "../hw/physmem.js";
import { Shootdown } from "../hw/tlb.js";
import {
  attachRing,
  Notifier,
  PAYLOAD_WORDS,
  setWakeMode,
  WAITER_STATS,
  Waiter,
  type WakeMode,
} from "../shm/index.js";
import { ConsoleReader } from "./console.js";
import { type DeviceOptions, Devices, type DmaFaultReport } from "./devices.js";
import {
  CHANNEL_MODES,
  type ChannelMode,
  type DomainName,
  fdEntry,
  HEAP_BASE,
  HEAP_MAX,
  HEAP_NONE,
  kMachineEpoch,
  kpBrk,
  kpExit,
  kpHeap,
  kpMmap,
  kpRoot,
  kpSerial,
  kpState,
  kState,
  kwBatchMax,
  kwCow,
  kwDoorbell,
  kwGranted,
  kwHeartbeat,
  kwQueue,
  kwRounds,
  kwServed,
  kwState,
  kwThreads,
  layMachine,
  MACHINE_STOPPING,
  MAX_FDS,
  MAX_PROCS,
  type MachineLayout,
  MMAP_BASE,
  MMAP_MAX,
  MODE_NUMBER,
  POOL_FRAMES,
  PROC_EXITED,
  PROC_FREE,
  PROC_RUNNING,
  PROC_WORDS,
  USER_BASE,
  USER_PAGES,
  WORKER_RUNNING,
  WORKER_STATES,
} from "./layout.js";

export interface BootOptions {
  /** XOS cores (worker threads running green threads). Default 2. */
  readonly cores?: number;
  /** Physical memory in MiB. Default 64. */
  readonly memoryMiB?: number;
  /** Channel mode of every core ↔ domain channel at boot. Default hybrid. */
  readonly channel?: ChannelMode;
  /**
   * Longest hybrid spin of a core or domain before it parks, in polls (≈ 45 ns each). Default
   * 2048 (≈ 90 µs, about one park and wake-up: the 2-competitive bound). A host with fewer
   * vCPUs than busy threads may prefer less: a spinner holds a vCPU the thread it waits for
   * needs. Measured on 2 vCPUs (6 threads + the load generator): 64 (≈ 3 µs) served HTTP
   * static files ~17% faster, but batches of 64 calls (1.0 → 1.8 µs a call) and trap mode
   * (0.8 → 4.5 µs) outran it and parked; so the default stays, and park mode remains the
   * better choice for servers on such a host (bench servers).
   */
  readonly spinMax?: number;
  /** Scheduling policy of every core. Default fifo. */
  readonly policy?: "fifo" | "rr" | "priority";
  /** Console sinks (default: process.stdout / process.stderr). */
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
  /** Supervisor events: worker deaths, hangs, killed threads, long runs. Default: stderr. */
  readonly onEvent?: (e: SupervisorEvent) => void;
  /** How often the supervisor reads heartbeats, ms. Default 250. */
  readonly heartbeatMs?: number;
  /**
   * A disk image (made by `exocore mkfs`): the machine gets an NVMe device whose first VF,
   * a namespace over the whole image, goes to the storage domain. Without it, no storage domain.
   */
  readonly disk?: string;
  /** Give the machine a NIC whose first VF goes to the network domain. Default false. */
  readonly network?: boolean;
  /** Cores given a NIC VF of their own, driven by programs with no domain in the path (XOS). */
  readonly bypassCores?: readonly number[];
}

export type SupervisorEvent =
  | { type: "worker-exit"; worker: string; code: number }
  | { type: "worker-error"; worker: string; error: string }
  | { type: "hung"; worker: string; ms: number }
  | { type: "thread-killed"; pid: number; tid: number; name: string; error: string }
  | { type: "long-run"; pid: number; tid: number; name: string; ms: number }
  | { type: "load-error"; pid: number; error: string }
  | ({ type: "dma-fault" } & DmaFaultReport);

export interface WorkerStats {
  readonly name: string;
  readonly state: string;
  readonly heartbeat: number;
  /** Calls served (domains) or issued (cores). */
  readonly calls: number;
  readonly rounds: number;
  readonly threads: number;
  readonly queue: number;
  readonly batchMax: number;
  readonly spins: number;
  readonly parks: number;
  readonly wakeups: number;
}

const CORE_URL = new URL("../core/core.js", import.meta.url);
const DOMAIN_URL = (name: string) => new URL(`../../domains/${name}.js`, import.meta.url);

interface Proc {
  readonly pid: number;
  readonly root: number;
  readonly frames: number[];
  readonly exited: Promise<number>;
  resolve(status: number): void;
}

/** Boot a machine; resolves once every domain and core is ready. */
export async function boot(options: BootOptions = {}): Promise<Machine> {
  const cores = checkInteger("cores", options.cores ?? 2, 1, 64);
  const memoryMiB = checkInteger("memoryMiB", options.memoryMiB ?? 64, 4, 4096);
  const channel = checkOneOf("channel", options.channel ?? "hybrid", CHANNEL_MODES);
  const policy = checkOneOf("policy", options.policy ?? "fifo", [
    "fifo",
    "rr",
    "priority",
  ] as const);
  const sab = new SharedArrayBuffer(memoryMiB * 1024 * 1024);
  const domains: DomainName[] = ["system"];
  if (options.disk !== undefined) domains.push("storage");
  if (options.network === true) domains.push("network");
  const spinMax = checkInteger("spinMax", options.spinMax ?? 2048, 16, 1 << 20);
  const layout = layMachine(sab, {
    cores,
    memoryBytes: sab.byteLength,
    channel,
    domains,
    spinMax,
  });
  const m = new Machine(sab, layout, options);
  try {
    await m.attachDevices({
      disk: options.disk,
      network: options.network,
      bypassCores: options.bypassCores,
    });
  } catch (e) {
    await m.devices?.close();
    throw e;
  }
  await m.start(policy);
  return m;
}

export class Machine {
  readonly sab: SharedArrayBuffer;
  readonly layout: MachineLayout;
  readonly mem: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly mmu: Mmu;
  readonly #i32: Int32Array;
  readonly #options: BootOptions;
  readonly #workers: {
    name: string;
    worker: Worker;
    status: number;
    waitStats: number;
    exited: Promise<void>;
  }[] = [];
  readonly #procs = new Map<number, Proc>();
  /** Cores that have imported a program, awaited before its main starts: "pid/core" → resolve. */
  readonly #loaded = new Map<string, () => void>();
  /** Cores that have killed an exited process's threads: "pid/core" → resolve. */
  readonly #reaped = new Map<string, () => void>();
  #supervisor: NodeJS.Timeout | null = null;
  readonly #console: ConsoleReader;
  readonly #consoleWaiter: Waiter;
  #consoleLoop: Promise<void> = Promise.resolve();
  #kernelLoop: Promise<void> = Promise.resolve();
  readonly #shootdown: Shootdown;
  /** The IOMMU and the devices (NVMe, NIC), once attached at boot. */
  devices: Devices | null = null;
  /** munmaps whose TLB shootdown completed. */
  shootdowns = 0;
  #stopping = false;
  /** Spawn serial of the last process created (kpSerial). */
  #serial = 0;
  #channel: ChannelMode;

  constructor(sab: SharedArrayBuffer, layout: MachineLayout, options: BootOptions) {
    this.sab = sab;
    this.layout = layout;
    this.#options = options;
    this.mem = new PhysicalMemory(sab);
    initFrameAllocator(this.mem, layout.frames, layout.firstFrame);
    this.frames = new FrameAllocator(this.mem, layout.frames);
    this.mmu = new Mmu(this.mem, this.frames);
    this.#i32 = this.mem.i32;
    this.#channel = options.channel ?? "hybrid";
    // XOS spatial partitioning: each core gets a pool of frames its pager allocates from
    // with no lock and no crossing. A quarter of free memory at most, shared by the cores.
    const perCore = Math.min(POOL_FRAMES, Math.floor(this.frames.freeFrames / (4 * layout.cores)));
    layout.pools.forEach((desc) => {
      const grant: number[] = [];
      for (let i = 0; i < perCore; i++) {
        const f = this.frames.alloc();
        if (f < 0) break;
        grant.push(f);
      }
      new FramePool(this.mem, desc).grant(grant);
    });
    this.#shootdown = new Shootdown(sab, layout.shootdown);
    this.#console = new ConsoleReader(attachRing(sab, layout.console));
    this.#consoleWaiter = new Waiter(sab, layout.console.notEmpty as number);
  }

  /** Print what the console ring holds. */
  #drainConsole(): void {
    this.#console.drain((fd, text) => {
      if (fd === 2) (this.#options.stderr ?? ((t) => process.stderr.write(t)))(text);
      else (this.#options.stdout ?? ((t) => process.stdout.write(t)))(text);
    });
  }

  /** The console device's interrupt handler: parked (never spinning) until output arrives. */
  async #runConsole(): Promise<void> {
    const ready = () => this.#console.hasEntries() || this.#stopping;
    while (!this.#stopping) {
      await this.#consoleWaiter.waitAsync(ready);
      this.#drainConsole();
    }
  }

  /** Set up the IOMMU and the devices the options ask for (before any worker starts). */
  async attachDevices(o: DeviceOptions): Promise<void> {
    this.devices = await Devices.create(this.mem, this.frames, this.layout.cores, o, (f) =>
      this.#event({ type: "dma-fault", ...f }),
    );
  }

  /** Start the domains, then the cores; resolves when all have reported ready. */
  async start(policy: CoreData["policy"]): Promise<void> {
    const ready: Promise<void>[] = [];
    this.layout.domains.forEach((name, index) => {
      const s = this.layout.domainSlots[index];
      if (!s) throw new Error(`no slot for domain ${name}`);
      const worker = new Worker(DOMAIN_URL(name), {
        workerData: {
          sab: this.sab,
          layout: this.layout,
          index,
          vf:
            name === "storage"
              ? this.devices?.storageVf
              : name === "network"
                ? this.devices?.networkVf
                : undefined,
        } satisfies DomainData,
        name: `domain.${name}`,
      });
      ready.push(this.#watch(`domain.${name}`, worker, s.status, s.waitStats));
    });
    for (let coreId = 0; coreId < this.layout.cores; coreId++) {
      const s = this.layout.coreSlots[coreId];
      if (!s) throw new Error(`no slot for core ${coreId}`);
      const vf = this.devices?.coreVfs[coreId];
      const data: CoreData = { sab: this.sab, layout: this.layout, coreId, policy, vf };
      const worker = new Worker(CORE_URL, { workerData: data, name: `core${coreId}` });
      ready.push(this.#watch(`core${coreId}`, worker, s.status, s.waitStats));
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await this.shutdown();
      throw e;
    }
    this.#startSupervisor();
    this.#consoleLoop = this.#runConsole();
    this.#kernelLoop = this.#runKernel();
  }

  /**
   * The kernel's exception-less calls (XOmB's page-table calls, FlexSC's way): cores write mmap
   * and munmap into their kernel rings; the hypervisor, parked (never spinning) until one comes,
   * serves them on its own thread — the one thread that changes page tables' structure — and
   * answers into the caller core's ready queue.
   */
  async #runKernel(): Promise<void> {
    const rings = this.layout.kernel.map((r) => attachRing(this.sab, r));
    const answers = this.layout.ready.map((r) => attachRing(this.sab, r));
    const waiter = new Waiter(this.sab, this.layout.kernelWake);
    const ready = () => this.#stopping || rings.some((r) => r.hasEntries());
    while (!this.#stopping) {
      await waiter.waitAsync(ready);
      for (let c = 0; c < rings.length; c++) {
        const req = rings[c] as (typeof rings)[number];
        const out = answers[c] as (typeof answers)[number];
        const n = req.peek(req.capacity);
        if (n === 0) continue;
        const rets: number[] = [];
        for (let i = 0; i < n; i++) {
          const src = req.entry(i);
          const w = req.i32;
          rets.push(await this.#kernelCall(w, src));
        }
        const k = out.reserve(n); // the rest stays claimed for the next turn
        const w = req.i32;
        for (let i = 0; i < k; i++) {
          const src = req.entry(i);
          const dst = out.slot(i);
          for (let x = 0; x < PAYLOAD_WORDS; x++) w[dst + x] = w[src + x] as number;
          const ret = rets[i] as number;
          w[dst + kRet] = ret;
          w[dst + kErrno] = ret < 0 ? -ret : 0;
        }
        out.publish();
        req.release(k);
      }
    }
  }

  /** Drop one mapping of `frame`: true if it was the last (the frame may be freed). */
  #unref(frame: number): boolean {
    const at = this.layout.refs + frame;
    if (Atomics.load(this.#i32, at) === 0) return true; // load: no other mapping
    Atomics.sub(this.#i32, at, 1); // release: one mapping fewer
    return false;
  }

  /**
   * The kernel's "share a region between address spaces" (XOmB): map the present pages of
   * [va, va + len) of `root` again in the mmap window of process `dstPid`. With `cow`, both
   * sides become read-only copy-on-write: the first write on either side breaks the sharing
   * (the pager asks the kernel: #cowBreak). Returns the new address.
   */
  async #share(
    root: number,
    va: number,
    len: number,
    cow: number,
    dstPid: number,
  ): Promise<number> {
    if ((va & (PAGE_SIZE - 1)) !== 0 || len === 0 || len > MMAP_MAX || (cow !== 0 && cow !== 1)) {
      return -EINVAL;
    }
    if (dstPid < 1 || dstPid > MAX_PROCS) return -ESRCH;
    const dstAt = this.layout.procs / 4 + (dstPid - 1) * PROC_WORDS;
    if (Atomics.load(this.#i32, dstAt + kpState) !== PROC_RUNNING) return -ESRCH; // load
    const dstRoot = this.#i32[dstAt + kpRoot] as number;
    const pages = Math.ceil(len / PAGE_SIZE);
    const ptes: number[] = [];
    for (let p = 0; p < pages; p++) {
      const pte = this.mmu.lookup(root, va + p * PAGE_SIZE);
      if ((pte & PTE_P) === 0) return -EFAULT; // share what has been touched
      ptes.push(pte);
    }
    const dst = this.#i32[dstAt + kpMmap] as number;
    if (dst + pages * PAGE_SIZE > MMAP_BASE + MMAP_MAX) return -ENOMEM;
    for (let t = dst & ~((1 << 22) - 1); t < dst + pages * PAGE_SIZE; t += 1 << 22) {
      if (this.mmu.ensureTable(dstRoot, t) < 0) return -ENOMEM;
    }
    this.#i32[dstAt + kpMmap] = dst + pages * PAGE_SIZE;
    for (let p = 0; p < pages; p++) {
      const pte = ptes[p] as number;
      let flags = pte & (PTE_U | PTE_W | PTE_COW);
      if (cow === 1) {
        flags = (flags & ~PTE_W) | PTE_COW;
        this.mmu.protect(root, va + p * PAGE_SIZE, flags); // the source loses W too
      }
      Atomics.add(this.#i32, this.layout.refs + (pte >>> 12), 1); // claim: one more mapping
      this.mmu.map(dstRoot, dst + p * PAGE_SIZE, pte >>> 12, flags, true);
    }
    if (cow === 1) {
      // Rights were taken from the source: cores drop writable translations before we answer.
      this.#shootdown.invalidatePages(root, va, pages);
      await this.#shootdown.waitAcks();
    }
    return dst;
  }

  /**
   * Break copy-on-write for the page at `va` of process `pid`, asked by a core whose thread
   * wrote to it. The last mapping of a frame just gets W back; otherwise the page is copied into
   * a fresh frame. Every core drops the old translation before the core is answered.
   */
  async #cowBreak(coreId: number, pid: number, va: number): Promise<void> {
    const at = this.layout.procs / 4 + (pid - 1) * PROC_WORDS;
    const s = this.layout.coreSlots[coreId];
    if (
      s &&
      pid >= 1 &&
      pid <= MAX_PROCS &&
      Atomics.load(this.#i32, at + kpState) === PROC_RUNNING
    ) {
      const root = this.#i32[at + kpRoot] as number;
      const page = va & ~(PAGE_SIZE - 1);
      const pte = this.mmu.lookup(root, page);
      if ((pte & PTE_P) !== 0 && (pte & PTE_COW) !== 0) {
        const frame = pte >>> 12;
        const flags = ((pte & (PTE_U | PTE_W | PTE_COW)) | PTE_W) & ~PTE_COW;
        if (Atomics.load(this.#i32, this.layout.refs + frame) === 0) {
          this.mmu.protect(root, page, flags); // sole owner: raising a right needs no shootdown
        } else {
          const copy = this.frames.alloc();
          if (copy >= 0) {
            this.mem.copyFrame(copy, frame);
            this.mmu.map(root, page, copy, flags, true);
            this.#shootdown.invalidatePages(root, page, 1);
            await this.#shootdown.waitAcks();
            Atomics.sub(this.#i32, this.layout.refs + frame, 1); // release: one mapping fewer
          }
        }
      }
    }
    if (s) {
      Atomics.add(this.#i32, s.status / 4 + kwCow, 1); // publish: answered
      Atomics.notify(this.#i32, s.status / 4 + kwCow); // wake the faulting core
    }
  }

  /** Decode, then invoke: mmap, mshare and munmap for process `pid`. */
  async #kernelCall(w: Int32Array, src: number): Promise<number> {
    const nr = w[src + kNr] as number;
    const pid = w[src + kPid] as number;
    const a0 = w[src + kA0] as number;
    const a1 = w[src + kA1] as number;
    const at = this.layout.procs / 4 + (pid - 1) * PROC_WORDS;
    if (pid < 1 || pid > MAX_PROCS || Atomics.load(this.#i32, at + kpState) !== PROC_RUNNING)
      return -ESRCH; // load
    const root = this.#i32[at + kpRoot] as number;
    if (nr === SYS_mmap) {
      const len = a0 >>> 0;
      if (len === 0 || len > MMAP_MAX || (a1 !== 0 && a1 !== 1)) return -EINVAL;
      const bytes = (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
      const va = this.#i32[at + kpMmap] as number;
      if (va + bytes > MMAP_BASE + MMAP_MAX) return -ENOMEM;
      for (let t = va & ~((1 << 22) - 1); t < va + bytes; t += 1 << 22) {
        if (this.mmu.ensureTable(root, t) < 0) return -ENOMEM;
      }
      const flags = a1 === 1 ? PTE_U : PTE_U | PTE_W;
      for (let p = va; p < va + bytes; p += PAGE_SIZE) this.mmu.reserveLazy(root, p, flags);
      this.#i32[at + kpMmap] = va + bytes;
      return va;
    }
    if (nr === SYS_mshare) {
      const dstPid = (w[src + kA3] as number) === 0 ? pid : (w[src + kA3] as number);
      return this.#share(root, a0 >>> 0, a1 >>> 0, w[src + kA2] as number, dstPid);
    }
    if (nr === SYS_munmap) {
      const va = a0 >>> 0;
      const len = a1 >>> 0;
      if (
        (va & (PAGE_SIZE - 1)) !== 0 ||
        len === 0 ||
        va < MMAP_BASE ||
        va + len > MMAP_BASE + MMAP_MAX
      )
        return -EINVAL;
      const pages = Math.ceil(len / PAGE_SIZE);
      const freed: number[] = [];
      for (let p = 0; p < pages; p++) {
        const old = this.mmu.unmap(root, va + p * PAGE_SIZE);
        if (old > 0 && (old & PTE_P) !== 0 && this.#unref(old >>> 12)) freed.push(old >>> 12);
      }
      // Shootdown (src/hw/tlb.ts H2-H4): every active core drops the pages from its TLB and
      // acknowledges before a frame is reused; parked cores catch up when they wake.
      this.#shootdown.invalidatePages(root, va, pages);
      await this.#shootdown.waitAcks();
      for (const f of freed) this.frames.free(f);
      this.shootdowns++;
      return 0;
    }
    return -ENOSYS;
  }

  /** Wire a worker's messages and fate; resolves on its first "ready". */
  #watch(name: string, worker: Worker, status: number, waitStats: number): Promise<void> {
    // The exit is recorded from the start: it may happen before anyone waits for it.
    const exited = new Promise<void>((r) => worker.once("exit", () => r()));
    this.#workers.push({ name, worker, status, waitStats, exited });
    return new Promise<void>((resolve, reject) => {
      let up = false;
      worker.on("message", (m: CoreEvent | DomainMessage) => {
        if (m.type === "ready") {
          up = true;
          resolve();
        } else this.#onMessage(m);
      });
      worker.on("error", (e) => {
        this.#event({ type: "worker-error", worker: name, error: e.message });
        if (!up) reject(new ExocoreError("EXO_ERR_BOOT", `${name} failed to start: ${e.message}`));
      });
      worker.on("exit", (code) => {
        // A core that is gone holds no translations: nobody may wait for its acknowledgement.
        const core = /^core(\d+)$/.exec(name);
        if (core) this.#shootdown.markOffline(Number(core[1]));
        if (!this.#stopping) this.#event({ type: "worker-exit", worker: name, code });
        if (!up)
          reject(new ExocoreError("EXO_ERR_BOOT", `${name} exited with code ${code} during boot`));
      });
    });
  }

  #onMessage(m: CoreEvent | DomainMessage): void {
    switch (m.type) {
      case "log":
        (this.#options.stderr ?? ((t) => process.stderr.write(t)))(`${m.text}\n`);
        return;
      case "failed":
        this.#event({ type: "worker-error", worker: "domain", error: m.error });
        return;
      case "exit":
        this.#exit(m.pid, m.status);
        return;
      case "killed":
        this.#event({
          type: "thread-killed",
          pid: m.pid,
          tid: m.tid,
          name: m.name,
          error: m.error,
        });
        return;
      case "long-run":
        this.#event({ type: "long-run", pid: m.pid, tid: m.tid, name: m.name, ms: m.ms });
        return;
      case "error":
        this.#event({ type: "load-error", pid: m.pid, error: m.error });
        return;
      case "grant":
        this.#grant(m.coreId, m.frames);
        return;
      case "cow":
        void this.#cowBreak(m.coreId, m.pid, m.va);
        return;
      case "reaped":
        this.#reaped.get(`${m.pid}/${m.coreId}`)?.();
        this.#reaped.delete(`${m.pid}/${m.coreId}`);
        return;
      case "loaded":
        this.#loaded.get(`${m.pid}/${m.coreId}`)?.();
        this.#loaded.delete(`${m.pid}/${m.coreId}`);
        return;
      case "ready":
        return;
    }
  }

  /** The kernel's "grant frames to a core" (XOmB), at run time: a core's pool ran dry. */
  #grant(coreId: number, want: number): void {
    const desc = this.layout.pools[coreId];
    const s = this.layout.coreSlots[coreId];
    if (!desc || !s) return;
    const frames: number[] = [];
    const n = Math.min(want, Math.floor(this.frames.freeFrames / 2));
    for (let i = 0; i < n; i++) {
      const f = this.frames.alloc();
      if (f < 0) break;
      frames.push(f);
    }
    if (frames.length > 0 && new FramePool(this.mem, desc).grant(frames) < 0) {
      for (const f of frames) this.frames.free(f); // the pool is full of frames already
    }
    Atomics.add(this.#i32, s.status / 4 + kwGranted, 1); // publish: answered (frames or none)
    Atomics.notify(this.#i32, s.status / 4 + kwGranted); // wake the faulting core
  }

  #event(e: SupervisorEvent): void {
    if (this.#options.onEvent) this.#options.onEvent(e);
    else process.stderr.write(`exocore: ${describeEvent(e)}\n`);
  }

  /** The supervisor: a worker that says it runs but whose heartbeat stands still is hung. */
  #startSupervisor(): void {
    const every = this.#options.heartbeatMs ?? 250;
    const last = this.#workers.map(() => ({ beat: -1, since: performance.now(), told: false }));
    this.#supervisor = setInterval(() => {
      this.#workers.forEach((w, k) => {
        const s = w.status / 4;
        const beat = Atomics.load(this.#i32, s + kwHeartbeat); // load: written by the worker
        const state = Atomics.load(this.#i32, s + kwState);
        const seen = last[k] as { beat: number; since: number; told: boolean };
        const now = performance.now();
        if (beat !== seen.beat || state !== WORKER_RUNNING) {
          seen.beat = beat;
          seen.since = now;
          seen.told = false;
        } else if (!seen.told && now - seen.since > 4 * every) {
          seen.told = true;
          this.#event({ type: "hung", worker: w.name, ms: Math.round(now - seen.since) });
        }
      });
    }, every);
    this.#supervisor.unref();
  }

  /**
   * Create a process and run `program`'s main(args) as its first green thread on core 0.
   * Resolves with the exit status (main's return value; 127 if the program cannot be loaded).
   */
  async run(program: string, args: readonly string[] = []): Promise<number> {
    const proc = this.spawnProcess();
    const url = program.startsWith("file:") ? program : pathToFileURL(program).href;
    // Every core imports the program (any of them may start its shared threads) before core 0
    // runs main: otherwise main's first shared threads would find the other cores still loading.
    const loaded: Promise<void>[] = [];
    for (let c = 1; c < this.layout.cores; c++) {
      loaded.push(new Promise<void>((r) => this.#loaded.set(`${proc.pid}/${c}`, r)));
      this.#send(c, { type: "load", pid: proc.pid, url, args, main: false });
    }
    await Promise.race([Promise.all(loaded), new Promise((r) => setTimeout(r, 5000).unref())]);
    this.#send(0, { type: "load", pid: proc.pid, url, args, main: true });
    return proc.exited;
  }

  /** The kernel's "create an address space" plus the memory a process starts with. */
  spawnProcess(): Proc {
    const base = this.layout.procs / 4;
    let pid = 0;
    for (let p = 1; p <= MAX_PROCS; p++) {
      if (Atomics.load(this.#i32, base + (p - 1) * PROC_WORDS + kpState) === PROC_FREE) {
        pid = p;
        break;
      }
    }
    if (pid === 0) throw new ExocoreError("EXO_ERR_EAGAIN", "process table full", 11);
    const root = this.mmu.createAddressSpace();
    if (root < 0) throw new ExocoreError("EXO_ERR_ENOMEM", "no memory for an address space", 12);
    const frames: number[] = [];
    for (let i = 0; i < USER_PAGES; i++) {
      const f = this.frames.alloc();
      if (f < 0) {
        this.#release(root, frames);
        throw new ExocoreError("EXO_ERR_ENOMEM", "no memory for the process", 12);
      }
      this.mem.zeroFrame(f);
      frames.push(f);
      const r = this.mmu.map(root, USER_BASE + i * PAGE_SIZE, f, PTE_W | PTE_U);
      if (r < 0) throw new ExocoreError("EXO_ERR_PANIC", `map failed: ${r}`);
    }
    // The heap window's page tables, ahead of time: pagers on any core then only fill PTEs.
    for (let va = HEAP_BASE; va < HEAP_BASE + HEAP_MAX; va += 1 << 22) {
      if (this.mmu.ensureTable(root, va) < 0) {
        this.#release(root, frames);
        throw new ExocoreError("EXO_ERR_ENOMEM", "no memory for the heap's page tables", 12);
      }
    }
    const at = base + (pid - 1) * PROC_WORDS;
    this.#i32[at + kpRoot] = root;
    this.#i32[at + kpExit] = 0;
    this.#i32[at + kpBrk] = HEAP_BASE;
    this.#i32[at + kpHeap] = HEAP_NONE;
    this.#i32[at + kpMmap] = MMAP_BASE;
    this.#i32[at + kpSerial] = ++this.#serial;
    // Descriptors 0, 1, 2: the console, held by the system domain (its handle is the fd).
    const fds = this.layout.fds / 4 + (pid - 1) * MAX_FDS;
    this.#i32.fill(0, fds, fds + MAX_FDS);
    for (let fd = 0; fd < 3; fd++) this.#i32[fds + fd] = fdEntry(0, fd);
    Atomics.store(this.#i32, at + kpState, PROC_RUNNING); // publish: the process exists
    let resolve: (s: number) => void = () => {};
    const exited = new Promise<number>((r) => {
      resolve = r;
    });
    const proc: Proc = { pid, root, frames, exited, resolve };
    this.#procs.set(pid, proc);
    return proc;
  }

  #exit(pid: number, status: number): void {
    const proc = this.#procs.get(pid);
    if (!proc) return;
    this.#procs.delete(pid);
    // Everything the process wrote is on the console ring before its last write completed.
    this.#drainConsole();
    const at = this.layout.procs / 4 + (pid - 1) * PROC_WORDS;
    this.#i32[at + kpExit] = status;
    Atomics.store(this.#i32, at + kpState, PROC_EXITED); // publish: calls for it now get ESRCH
    // Domains free what the process held (open files, sockets) when they see the epoch move.
    Atomics.add(this.#i32, this.layout.machine / 4 + kMachineEpoch, 1); // publish: an exit
    for (const s of this.layout.domainSlots) new Notifier(this.sab, s.wake).notify(); // wake
    void this.#reap(proc, at, status);
  }

  /** Kill the process's threads on every core, then free its memory and its slot. */
  async #reap(proc: Proc, at: number, status: number): Promise<void> {
    const acks: Promise<void>[] = [];
    for (let c = 0; c < this.layout.cores; c++) {
      acks.push(new Promise<void>((r) => this.#reaped.set(`${proc.pid}/${c}`, r)));
      this.#send(c, { type: "reap", pid: proc.pid });
    }
    const all = Promise.all(acks).then(() => true);
    const late = new Promise<boolean>((r) => setTimeout(() => r(false), 2000).unref());
    if (await Promise.race([all, late])) {
      this.#release(proc.root, proc.frames);
      Atomics.store(this.#i32, at + kpState, PROC_FREE); // publish: the slot may be reused
    } else {
      // A core did not answer (stuck in a thread that never yields): keep the memory rather
      // than free frames it may still write. The slot stays EXITED.
      this.#event({ type: "hung", worker: "reap", ms: 2000 });
    }
    this.#drainConsole();
    proc.resolve(status);
  }

  #release(root: number, frames: number[]): void {
    // No core caches translations of process memory yet (UserMemory walks), so no shootdown.
    // Heap pages came from core pools through the pagers; they go back to free memory.
    this.mmu.destroyAddressSpace(root, (va, pte) => {
      // Only present pages own a frame: a lazy (mmap'd, never touched) entry has none.
      if (va >= HEAP_BASE && (pte & PTE_P) !== 0 && this.#unref(pte >>> 12))
        this.frames.free(pte >>> 12);
    });
    for (const f of frames) this.frames.free(f);
  }

  #send(coreId: number, cmd: CoreCommand): void {
    const w = this.#workers.find((x) => x.name === `core${coreId}`);
    const s = this.layout.coreSlots[coreId];
    if (!w || !s) throw new InvalidArgumentError(`no core ${coreId}`);
    w.worker.postMessage(cmd);
    // Ring the doorbell: a core waiting in place (not in its event loop) sees it and goes to
    // read its messages.
    Atomics.add(this.#i32, s.status / 4 + kwDoorbell, 1); // publish: a message is waiting
    new Notifier(this.sab, s.wake).wakeAll();
  }

  /** Switch every core ↔ domain channel to `mode`, while running (xOS: dynamic switch). */
  setChannel(mode: ChannelMode): void {
    checkOneOf("channel", mode, CHANNEL_MODES);
    const n = this.layout.cores * this.layout.domains.length;
    for (let w = 0; w < n; w++) Atomics.store(this.#i32, this.layout.modes + w, MODE_NUMBER[mode]); // publish
    const wake: WakeMode = mode === "trap" ? "hybrid" : mode;
    for (const s of [...this.layout.coreSlots, ...this.layout.domainSlots])
      setWakeMode(this.sab, s.wake, wake);
    this.#ringDoorbells(); // cores re-read their channels' and wake words' modes when it rings
    this.#channel = mode;
  }

  /**
   * Ring every core's doorbell. A core reads its bell on every turn and, only when it rang, the
   * machine's state, its channels' modes and its messages: whatever those changed is stored
   * before the ring.
   */
  #ringDoorbells(): void {
    for (const s of this.layout.coreSlots) Atomics.add(this.#i32, s.status / 4 + kwDoorbell, 1); // publish
  }

  get channel(): ChannelMode {
    return this.#channel;
  }

  /** A snapshot of every worker's counters (read from shared memory; never stops anyone). */
  stats(): WorkerStats[] {
    return this.#workers.map((w) => {
      const s = w.status / 4;
      const f = new Float64Array(this.sab, w.waitStats, WAITER_STATS);
      return {
        name: w.name,
        state: WORKER_STATES[Atomics.load(this.#i32, s + kwState)] ?? "unknown",
        heartbeat: this.#i32[s + kwHeartbeat],
        calls: this.#i32[s + kwServed],
        rounds: this.#i32[s + kwRounds],
        threads: this.#i32[s + kwThreads],
        queue: this.#i32[s + kwQueue],
        batchMax: this.#i32[s + kwBatchMax],
        spins: f[0],
        parks: f[2],
        wakeups: f[3],
      };
    });
  }

  /** Stop every worker; resolves when all have exited. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#supervisor) clearInterval(this.#supervisor);
    Atomics.store(this.#i32, this.layout.machine / 4 + kState, MACHINE_STOPPING); // publish: stop
    this.#ringDoorbells(); // the cores read the state when the bell rings
    for (const s of [...this.layout.coreSlots, ...this.layout.domainSlots]) {
      new Notifier(this.sab, s.wake).wakeAll();
    }
    new Notifier(this.sab, this.layout.console.notEmpty as number).wakeAll();
    new Notifier(this.sab, this.layout.kernelWake).wakeAll();
    new Notifier(this.sab, this.layout.console.notFull as number).wakeAll();
    await Promise.all(
      this.#workers.map(async ({ worker, exited }) => {
        // Domains get longer: the storage domain commits its log and flushes its disk on the way out.
        const timer = setTimeout(() => void worker.terminate(), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    await this.#consoleLoop;
    await this.#kernelLoop;
    await this.devices?.close(); // after the domains: the storage domain flushed on its way out
    this.#drainConsole();
    for (const p of this.#procs.values()) p.resolve(-1);
    this.#procs.clear();
  }
}

export function describeEvent(e: SupervisorEvent): string {
  switch (e.type) {
    case "worker-exit":
      return `${e.worker} exited (code ${e.code})`;
    case "worker-error":
      return `${e.worker} failed: ${e.error}`;
    case "hung":
      return `${e.worker} is hung: no heartbeat for ${e.ms} ms`;
    case "thread-killed":
      return `pid ${e.pid} thread ${e.tid} (${e.name}) killed: ${e.error}`;
    case "long-run":
      return `pid ${e.pid} thread ${e.tid} (${e.name}) ran ${e.ms.toFixed(0)} ms without yielding`;
    case "load-error":
      return `pid ${e.pid}: ${e.error}`;
    case "dma-fault":
      return `DMA blocked: ${e.owner} (rid ${e.rid.toString(16)}) ${e.write ? "write" : "read"} at ${e.iova.toString(16)}: ${e.reason}`;
  }
}
