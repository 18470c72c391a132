/**
 * layout: the memory map of a booted machine — where every shared structure lives in physical
 * memory — laid out once at boot by the hypervisor and handed to every worker as plain data.
 *
 *   0x0000  machine line        magic, state, cores, domains, supervisor tick
 *           worker status       two lines per core and per domain: counters (int32) and the
 *                               waiter's counters (float64), written by that worker only
 *           channel modes       one word per core × domain: spin / hybrid / park / trap
 *           wake words          one per core (its ready queue) and one per domain (all its
 *                               request rings and its VF's interrupts share it: a domain
 *                               parks on one word)
 *           request rings       SPSC, one per core × domain (core → domain)
 *           ready queues        MPMC, one per core (every domain → that core)
 *           shootdown board     one TLB mailbox per core (src/hw/tlb.ts)
 *           kernel rings        SPSC, one per core → the hypervisor (mmap, munmap)
 *           spawn queue         MPMC, unstarted green threads that any idle core may take
 *           pinned queue × C    MPMC, unstarted threads with an affinity, for core c alone
 *           console ring        SPSC, system domain → hypervisor: bytes written to fd 1 and 2
 *           frame refs          extra mappings of each frame (shared and copy-on-write pages)
 *           process table       64 processes × 16 words: state, page-table root, exit status,
 *                               spawn serial
 *           descriptor tables   64 processes × 4096 words: fd → (domain, handle) (src/libos/fd.ts)
 *           frame allocator     bitmap of physical frames (src/hw/physmem.ts)
 *           frames              4 KiB each: page tables and process memory
 *
 * Invariant: the map is fixed at boot; workers never allocate shared memory, they attach to
 * the offsets named here. Every region starts on a 64-byte line (src/shm/layout.ts).
 */

import { checkInteger, checkOneOf } from "../errors.js";
import {
  type FrameAllocatorDescriptor,
  type FramePoolDescriptor,
  firstFrameAfter,
  layFrameAllocator,
  layFramePool,
  PAGE_SIZE,
} from "../hw/physmem.js";
import { layShootdownBoard, type ShootdownDescriptor } from "../hw/tlb.js";
import {
  Arena,
  CACHE_LINE,
  initWakeWord,
  layRing,
  type RingDescriptor,
  WAKE_WORD_BYTES,
} from "../shm/index.js";

/** How a core waits for the answers of one channel (DESIGN.md, Channels). */
export type ChannelMode = "spin" | "hybrid" | "park" | "trap";
export const CHANNEL_MODES: readonly ChannelMode[] = ["spin", "hybrid", "park", "trap"];
export const MODE_NUMBER: Readonly<Record<ChannelMode, number>> = {
  spin: 0,
  hybrid: 1,
  park: 2,
  trap: 3,
};

/**
 * The service domains this machine knows, in channel order. The system domain is always there;
 * storage runs when the machine has a disk, network when it has a NIC (boot options).
 */
export const DOMAINS = ["system", "storage", "network"] as const;
export type DomainName = (typeof DOMAINS)[number];

// Machine line (word indexes).
export const kMagic = 0;
export const kState = 1; // MACHINE_*: written by the hypervisor
export const kCores = 2;
export const kDomains = 3;
/**
 * Process-exit epoch: bumped (Atomics.add) by the hypervisor after each process exits, then the
 * domains are woken; a domain that sees it move frees what dead processes held (files, sockets).
 */
export const kMachineEpoch = 4;
/**
 * Longest spin, in polls, of a core's or a domain's hybrid wait before it parks (the Waiter's
 * maxSpin), set at boot: see BootOptions.spinMax.
 */
export const kSpinMax = 5;
export const MACHINE_MAGIC = 0x45584f43; // "EXOC"
export const MACHINE_RUNNING = 1;
export const MACHINE_STOPPING = 2;

// Worker status line (int32 words), written by its worker only; read by the supervisor.
export const kwState = 0; // WORKER_*
export const kwHeartbeat = 1; // bumped every loop turn
export const kwServed = 2; // syscalls served (domain) or issued (core)
export const kwRounds = 3; // scheduler rounds (core) or drain rounds (domain)
export const kwThreads = 4; // live green threads (core)
export const kwQueue = 5; // entries taken in the last round (a queue-depth sample)
export const kwBatchMax = 6; // the largest batch seen
/**
 * Control doorbell: bumped (Atomics.add) by the hypervisor after it posts the worker a message,
 * then the worker's wake word is notified. The one word of this line the worker does not own.
 */
export const kwDoorbell = 7;
/**
 * Grants answered: bumped by the hypervisor after it grants frames to this core's pool (or
 * finds none to give), then notified; the core waits on it during a pool-dry page fault.
 */
export const kwGranted = 8;
/** Copy-on-write breaks answered: bumped by the hypervisor after it served one for this core. */
export const kwCow = 9;
export const WORKER_BOOTING = 0;
export const WORKER_RUNNING = 1;
export const WORKER_PARKED = 2;
export const WORKER_STOPPED = 3;
export const WORKER_STATES = ["booting", "running", "parked", "stopped"] as const;

// Process table entry (int32 words).
export const MAX_PROCS = 64;
export const PROC_WORDS = 16;
export const kpState = 0; // PROC_*
export const kpRoot = 1; // page-directory frame of its address space
export const kpExit = 2; // exit status once PROC_EXITED
export const kpBrk = 4; // the heap's break: bumped with CAS by sbrk on any core
export const kpHeap = 5; // HEAP_*: malloc's header, laid once by the first core that mallocs
export const kpMmap = 6; // next free address of the mmap window (the kernel's bump pointer)
/** Spawn serial of this incarnation of the pid (pids are reused, serials never): set at spawn. */
export const kpSerial = 7;

/**
 * Descriptor tables: one per process, MAX_FDS int32 words, in shared memory so that a process's
 * threads on every core see one table (the libOS's fd table, DESIGN.md). Entry: 0 free,
 * FD_RESERVED while an open is in flight, else fdEntry(domain, handle). Written by the libOS
 * of any core with CAS (claim) and store (publish); cleared by the hypervisor at exit.
 */
export const MAX_FDS = 4096;
export const FD_RESERVED = -1;
/** A descriptor: the domain that holds the object (index in layout.domains) and its handle. */
export function fdEntry(domain: number, handle: number): number {
  return ((domain + 1) << 24) | (handle & 0xffffff);
}
export function fdDomain(entry: number): number {
  return (entry >>> 24) - 1;
}
export function fdHandle(entry: number): number {
  return entry & 0xffffff;
}
export const HEAP_NONE = 0;
export const HEAP_INIT = 1;
export const HEAP_READY = 2;
export const PROC_FREE = 0;
export const PROC_RUNNING = 1;
export const PROC_EXITED = 2;

/** Process memory the hypervisor maps at process creation (a pager replaces this later). */
export const USER_BASE = 0x0040_0000;
export const USER_PAGES = 256;
/**
 * The heap window: demand-zero memory that malloc grows into with sbrk. Its page tables exist
 * from process creation (so the pager, on any core, only ever fills an empty PTE); its pages
 * are mapped on first touch by the pager on the core that touches them (XOS).
 */
export const HEAP_BASE = 0x1000_0000;
export const HEAP_MAX = 64 * 1024 * 1024;
/** The mmap window: anonymous regions the kernel reserves lazily (SYS_mmap). */
export const MMAP_BASE = 0x4000_0000;
export const MMAP_MAX = 256 * 1024 * 1024;
/** Frames granted to each core's pool at boot, for the pager (XOS spatial partitioning). */
export const POOL_FRAMES = 2048;
/**
 * Frames a core's pool can hold over its life: boot grant plus run-time grants (a pool counts
 * frames it handed to processes as its own until they are reclaimed). 32 Ki frames = 128 MiB.
 */
export const POOL_CAPACITY = 1 << 15;
/** Each core's scratch window inside it, for the libOS's syscall buffers. */
export const SCRATCH_BYTES_PER_CORE = 64 * 1024;

export interface WorkerSlot {
  /** Byte offset of the worker's status line (int32 counters). */
  readonly status: number;
  /** Byte offset of the worker's waiter counters (float64 × 8). */
  readonly waitStats: number;
  /** Byte offset of the worker's wake word. */
  readonly wake: number;
}

/** Everything a worker needs to attach to the machine: plain data, sent in workerData. */
export interface MachineLayout {
  readonly memoryBytes: number;
  readonly cores: number;
  readonly domains: readonly DomainName[];
  readonly machine: number;
  readonly coreSlots: readonly WorkerSlot[];
  readonly domainSlots: readonly WorkerSlot[];
  /** Int32 word index of the mode of channel (core c, domain d): modes + c * domains + d. */
  readonly modes: number;
  /** requests[c][d]: core c → domain d. */
  readonly requests: readonly (readonly RingDescriptor[])[];
  /** ready[c]: completions for core c, from every domain. */
  readonly ready: readonly RingDescriptor[];
  /** The TLB shootdown board: one mailbox per core (participant index = core id). */
  readonly shootdown: ShootdownDescriptor;
  /** kernel[c]: core c → the hypervisor, for the calls only the kernel serves (mmap, munmap). */
  readonly kernel: readonly RingDescriptor[];
  /** The wake word the hypervisor parks on for kernel calls (park mode: it never spins). */
  readonly kernelWake: number;
  /** Unstarted threads any idle core may take (M:N: work stealing of unstarted threads). */
  readonly spawn: RingDescriptor;
  /** pinned[c]: unstarted threads with an affinity that chose core c; only core c takes them. */
  readonly pinned: readonly RingDescriptor[];
  /** Console device: the system domain → the hypervisor (bytes of write/log). */
  readonly console: RingDescriptor;
  readonly procs: number;
  /** Byte offset of the descriptor tables: fds + ((pid - 1) * MAX_FDS + fd) * 4. */
  readonly fds: number;
  /** pools[c]: frames granted to core c, for its pager. */
  readonly pools: readonly FramePoolDescriptor[];
  /**
   * Int32 word index of the frame reference table: refs + frame holds how many EXTRA mappings
   * share that frame (0: one owner). Written by the kernel (share, COW break, unmap).
   */
  readonly refs: number;
  readonly frames: FrameAllocatorDescriptor;
  /** First frame past the map: where allocatable frames begin. */
  readonly firstFrame: number;
  /** The arena's map as text, for `exocore run --memory-map`. */
  readonly map: string;
}

/** The hybrid spin bounds a core's or a domain's Waiter takes from the machine line. */
export function hybridSpin(
  i32: Int32Array,
  layout: MachineLayout,
): { readonly maxSpin: number; readonly spinBudget: number; readonly minSpin: number } {
  const maxSpin = i32[layout.machine / 4 + kSpinMax] || 2048;
  return { maxSpin, spinBudget: Math.min(256, maxSpin), minSpin: Math.min(16, maxSpin) };
}

export interface LayoutOptions {
  readonly cores: number;
  /** Hybrid waits spin at most this many polls (default 2048, ≈ 90 µs). */
  readonly spinMax?: number;
  readonly memoryBytes: number;
  readonly channel: ChannelMode;
  /** The domains to run; default: all of DOMAINS. "system" must be first. */
  readonly domains?: readonly DomainName[];
  readonly requestCapacity?: number;
  readonly readyCapacity?: number;
}

/** Lay out a fresh machine in `sab` and initialise every shared structure in it. */
export function layMachine(sab: SharedArrayBuffer, o: LayoutOptions): MachineLayout {
  const cores = checkInteger("cores", o.cores, 1, 64);
  const channel = checkOneOf("channel", o.channel, CHANNEL_MODES);
  const arena = new Arena(sab);
  const i32 = new Int32Array(sab);
  const domains: DomainName[] = [...(o.domains ?? DOMAINS)];
  if (domains[0] !== "system") throw new Error("layMachine: the system domain comes first");
  const machine = arena.alloc("machine", CACHE_LINE).offset;
  const slot = (name: string): WorkerSlot => {
    const status = arena.alloc(`${name}.status`, CACHE_LINE).offset;
    const waitStats = arena.alloc(`${name}.waitStats`, CACHE_LINE).offset;
    const wake = arena.alloc(`${name}.wake`, WAKE_WORD_BYTES).offset;
    // A trap channel still has its serving side wait in hybrid: "trap" is what the core does.
    initWakeWord(sab, wake, channel === "trap" ? "hybrid" : channel);
    return { status, waitStats, wake };
  };
  const coreSlots = Array.from({ length: cores }, (_, c) => slot(`core${c}`));
  const domainSlots = domains.map((d) => slot(`domain.${d}`));
  const modes = arena.alloc("channel.modes", cores * domains.length * 4).offset / 4;
  for (let w = 0; w < cores * domains.length; w++) i32[modes + w] = MODE_NUMBER[channel];
  const requests = coreSlots.map((_, c) =>
    domains.map((d, di) =>
      layRing(arena, `core${c}->${d}`, {
        kind: "spsc",
        capacity: o.requestCapacity ?? 256,
        notEmptyWord: (domainSlots[di] as WorkerSlot).wake,
      }),
    ),
  );
  const ready = coreSlots.map((s, c) =>
    layRing(arena, `core${c}.ready`, {
      kind: "mpmc",
      capacity: o.readyCapacity ?? 1024,
      notEmptyWord: s.wake,
    }),
  );
  // Cores park on their own words; a spawner wakes the others itself, so no word here.
  const spawn = layRing(arena, "spawn", { kind: "mpmc", capacity: 1024, notEmpty: false });
  // Any core may spawn onto core c, and the publish wakes core c on its own word.
  const pinned = coreSlots.map((s, c) =>
    layRing(arena, `core${c}.pinned`, { kind: "mpmc", capacity: 256, notEmptyWord: s.wake }),
  );
  // The hypervisor never spins: it parks on the console ring's word (waitAsync).
  const console = layRing(arena, "console", {
    kind: "spsc",
    capacity: 1024,
    mode: "park",
    notFull: true,
  });
  const shootdown = layShootdownBoard(arena, cores, 64);
  const kernelWake = arena.alloc("kernel.wake", WAKE_WORD_BYTES).offset;
  initWakeWord(sab, kernelWake, "park");
  const kernel = coreSlots.map((_, c) =>
    layRing(arena, `core${c}->kernel`, { kind: "spsc", capacity: 64, notEmptyWord: kernelWake }),
  );
  const procs = arena.alloc("procs", MAX_PROCS * PROC_WORDS * 4).offset;
  const fds = arena.alloc("fds", MAX_PROCS * MAX_FDS * 4).offset;
  const pools = coreSlots.map((_, c) => layFramePool(arena, `core${c}.pool`, POOL_CAPACITY));
  const refs = arena.alloc("frame.refs", Math.floor(o.memoryBytes / PAGE_SIZE) * 4).offset / 4;
  const frames = layFrameAllocator(arena, Math.floor(o.memoryBytes / PAGE_SIZE));
  i32[machine / 4 + kCores] = cores;
  i32[machine / 4 + kDomains] = domains.length;
  i32[machine / 4 + kSpinMax] = checkInteger("spinMax", o.spinMax ?? 2048, 16, 1 << 20);
  i32[machine / 4 + kState] = MACHINE_RUNNING;
  Atomics.store(i32, machine / 4 + kMagic, MACHINE_MAGIC); // publish: the map is complete
  return {
    memoryBytes: o.memoryBytes,
    cores,
    domains,
    machine,
    coreSlots,
    domainSlots,
    modes,
    requests,
    ready,
    kernel,
    kernelWake,
    shootdown,
    spawn,
    pinned,
    console,
    procs,
    fds,
    pools,
    refs,
    frames,
    firstFrame: firstFrameAfter(arena),
    map: arena.describe(),
  };
}
