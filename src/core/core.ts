/**
 * core: an XOS core — a worker thread that runs green threads of user programs with an M:N
 * scheduler (src/core/sched.ts) and makes their system calls exception-less (FlexSC).
 *
 * One turn of the loop:
 *   1. take completions from this core's ready queue; each makes its thread runnable
 *   2. move due sleepers to runnable; run one scheduling round: every runnable thread runs
 *      until it yields; a thread that yields Y_SYSCALL has its call written, in place, into the
 *      request ring of the domain that serves it
 *   3. publish each request ring touched in the round with one tail update (batching)
 *   4. nothing runnable: wait on this core's wake word (spin, then park with waitAsync so the
 *      event loop can deliver control messages) until a completion, a timer or a message
 * A channel in "trap" mode instead publishes each call at once and blocks the whole core until
 * its answer is back — what a classic system call does to its thread, for comparison.
 *
 * Control plane (rare: load a program, stop): postMessage from the hypervisor. Data plane (every
 * call): rings in shared memory only.
 */

import { parentPort, workerData } from "node:worker_threads";
import {
  kA0,
  kA1,
  kA2,
  kA3,
  kA4,
  kA5,
  kCore,
  kErrno,
  kNr,
  kPid,
  kReqId,
  kRet,
  ksArgc,
  ksArgs,
  ksCore,
  ksFn,
  ksPid,
  ksReqId,
  kTid,
  MAX_SPAWN_ARGS,
  NR_JOINED,
  syscallInfo,
} from "../abi/syscall.js";
import { NicDriver } from "../drivers/nic.js";
import {
  type DomainName,
  HEAP_BASE,
  HEAP_INIT,
  HEAP_NONE,
  HEAP_READY,
  hybridSpin,
  kpHeap,
  kpRoot,
  kpState,
  kState,
  kwCow,
  kwDoorbell,
  kwGranted,
  kwHeartbeat,
  kwQueue,
  kwRounds,
  kwServed,
  kwState,
  kwThreads,
  MACHINE_RUNNING,
  type MachineLayout,
  MODE_NUMBER,
  POOL_FRAMES,
  PROC_RUNNING,
  PROC_WORDS,
  SCRATCH_BYTES_PER_CORE,
  USER_BASE,
  WORKER_PARKED,
  WORKER_RUNNING,
  WORKER_STOPPED,
} from "../hv/layout.js";
import { Mmu, UserMemory } from "../hw/mmu.js";
import { FramePool, type FramePoolDescriptor, PhysicalMemory } from "../hw/physmem.js";
import { ShootdownMailbox, Tlb, Translator } from "../hw/tlb.js";
import type { VfDescriptor } from "../hw/vf.js";
import { bindCore } from "../libos/context.js";
import { Malloc } from "../libos/malloc.js";
import { ProcessMemory, SegmentationFault } from "../libos/vm.js";
import {
  attachRing,
  Notifier,
  type Ring,
  type RingDescriptor,
  WAITER_STATS,
  Waiter,
} from "../shm/index.js";
import { FifoPolicy, type Policy, PriorityPolicy, RoundRobinPolicy } from "./policy.js";
import { Scheduler, type Thread } from "./sched.js";

export interface CoreData {
  readonly sab: SharedArrayBuffer;
  readonly layout: MachineLayout;
  readonly coreId: number;
  readonly policy: "fifo" | "rr" | "priority";
  /** A NIC VF this core drives itself (XOS kernel bypass), if the machine gave it one. */
  readonly vf?: VfDescriptor | undefined;
}

/** Hypervisor → core. */
export type CoreCommand =
  | { type: "load"; pid: number; url: string; args: readonly string[]; main: boolean }
  | { type: "reap"; pid: number };

/** Core → hypervisor. */
export type CoreEvent =
  | { type: "ready"; coreId: number }
  | { type: "exit"; pid: number; status: number; coreId: number }
  | { type: "killed"; pid: number; tid: number; name: string; error: string; coreId: number }
  | { type: "long-run"; pid: number; tid: number; name: string; ms: number; coreId: number }
  | { type: "error"; pid: number; error: string; coreId: number }
  | { type: "grant"; coreId: number; frames: number }
  | { type: "loaded"; pid: number; coreId: number }
  | { type: "reaped"; pid: number; coreId: number }
  | { type: "cow"; pid: number; va: number; coreId: number };

/** `performance` read once: the global is a lazy accessor that costs ≈ 200 instructions a read. */
const perf = performance;
const port = parentPort;
if (!port) throw new Error("a core runs in a worker thread");
const data = workerData as CoreData;
const { sab, layout, coreId } = data;
const mem = new PhysicalMemory(sab);
const mmu = new Mmu(mem);
const user = new UserMemory(mem, mmu);
const pool = new FramePool(mem, layout.pools[coreId] as FramePoolDescriptor);
/** This core's TLB, kept honest by the shootdown board (the hypervisor posts, we acknowledge). */
const tlb = new Tlb();
const mailbox = new ShootdownMailbox(sab, layout.shootdown, coreId, tlb);
const translator = new Translator(mmu, tlb, mailbox);
mailbox.leaveIdle(); // ACTIVE: from here on the hypervisor waits for our acknowledgements
const i32 = mem.i32;
const slot = layout.coreSlots[coreId];
if (!slot) throw new Error(`no core slot ${coreId}`);
const st = slot.status / 4;
const machineState = layout.machine / 4 + kState;
const ndomains = layout.domains.length;
const requests: Ring[] = (layout.requests[coreId] ?? []).map((r) => attachRing(sab, r));
/** This core's ready queue: domains (and the kernel, other cores) produce; this core alone takes. */
const ready = attachRing(sab, layout.ready[coreId] as NonNullable<(typeof layout.ready)[number]>, {
  soleConsumer: true,
});
const waiter = new Waiter(sab, slot.wake, {
  stats: new Float64Array(sab, slot.waitStats, WAITER_STATS),
  ...hybridSpin(mem.i32, layout),
});
const TRAP = MODE_NUMBER.trap;
/** The machine's spawn queue, and a producer on every core's ready queue (to report exits). */
const spawnRing = attachRing(sab, layout.spawn);
const readyOf: Ring[] = layout.ready.map((r) => attachRing(sab, r));
/** Pinned spawn queues: any core writes into pinned[c]; only core c takes from its own. */
const pinnedOf: Ring[] = layout.pinned.map((r) => attachRing(sab, r));
const pinned = attachRing(sab, layout.pinned[coreId] as RingDescriptor, { soleConsumer: true });
/** Other cores' wake words: a spawner wakes idle cores to come and take work. */
const peers: Notifier[] = layout.coreSlots
  .filter((_, c) => c !== coreId)
  .map((p) => new Notifier(sab, p.wake));

// ---- threads and calls in flight ----

/** Calls in flight from this core, by request id: a completion finds its thread here. */
// A slot table, not a Map: the request id carries its slot in the low 16 bits (and a wrapping
// serial above them), so a completion finds its thread with one array load and no hashing.
// A slot is freed when its answer comes or its thread is gone; 65,536 calls in flight per core
// at most (a thread has one at a time), beyond which calls wait in `overflow` like a full ring.
const SLOT_BITS = 16;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const inflight: (Thread | null)[] = [];
const freeSlots: number[] = [];
let reqSerial = 0;
/** Slots in use: calls this core has sent and not yet seen answered. */
let inflightCount = 0;
/** A slot for t's call and its request id, or 0 when every slot is taken. */
function claimSlot(t: Thread): number {
  let slot = freeSlots.pop();
  if (slot === undefined) {
    if (inflight.length > SLOT_MASK) return 0;
    slot = inflight.length;
    inflight.push(null);
  }
  inflight[slot] = t;
  inflightCount++;
  reqSerial = (reqSerial + 1) & 0x3fff || 1;
  return (reqSerial << SLOT_BITS) | slot;
}
function freeSlot(reqId: number): void {
  const slot = reqId & SLOT_MASK;
  inflight[slot] = null;
  inflightCount--;
  freeSlots.push(slot);
}
const mainThreads = new Map<number, number>(); // pid → tid of its main thread here
let nextTid = 1;
/** Thread ids are unique machine-wide: the core id sits in the high bits. */
const allocTid = () => ((coreId << 20) | nextTid++) >>> 0;
let nextReq = 1;
let touched = 0; // bit d: request ring d has unpublished entries this round
/** Entries written into each request ring's open batch this round: slot(i) indexes the batch. */
const batchLen = new Int32Array(ndomains + 1); // + the kernel channel
const overflow: Thread[] = []; // calls that found their ring full; retried next round

// ---- M:N: threads that may start on any core ----

type ProgramModule = Readonly<Record<string, unknown>>;
/** Program modules by pid, imported on every core (the hypervisor attaches them). */
const modules = new Map<number, ProgramModule>();
const exportNames = new Map<number, readonly string[]>();
/** Threads this core took from the spawn queue: where and under what id to report the exit. */
const startedHere = new Map<number, { core: number; reqId: number }>();
/** Joiners waiting for a shared spawn's exit, and exits that came before anyone joined. */
const joiners = new Map<number, Thread>();
const exitedEarly = new Map<number, number>();
/** Taken spawns whose program module is still being imported here. */
const awaitingModule: Int32Array[] = [];
/** Word of a taken spawn (after the entry's own) that says it came from our pinned queue. */
const kTakenPinned = ksArgs + MAX_SPAWN_ARGS;
/** Exit reports that found the spawner's ready queue full; retried every turn. */
const outbox: { core: number; reqId: number; status: number }[] = [];

function policyOf(name: CoreData["policy"]): Policy {
  if (name === "rr") return new RoundRobinPolicy(2);
  if (name === "priority") return new PriorityPolicy(4);
  return new FifoPolicy();
}

const sched = new Scheduler({
  policy: policyOf(data.policy),
  coreId,
  submit,
  onExit,
  allocTid,
  longRunMs: 50,
  onLongRun: (t, ms) => {
    // A trap-mode call blocks the core inside the thread's resume: that wait is the channel's
    // doing, not the thread running without yielding.
    const own = ms - trapMs;
    trapMs = 0;
    if (own > 50) post({ type: "long-run", pid: t.pid, tid: t.tid, name: t.name, ms: own, coreId });
  },
});

function post(e: CoreEvent): void {
  port?.postMessage(e);
}

function rootOf(pid: number): number {
  const at = layout.procs / 4 + (pid - 1) * PROC_WORDS;
  if (pid < 1 || pid > 64 || Atomics.load(i32, at + kpState) !== PROC_RUNNING) return 0; // load
  return i32[at + kpRoot];
}

/**
 * The channel that serves each call number: a domain's index, KERNEL, or -1 when the serving
 * domain is not in this machine (no disk: no storage domain) — such calls get ENOSYS.
 * Unknown numbers go to the system domain, which answers ENOSYS the way a kernel does.
 */
const route = new Int8Array(256);
function domainOf(nr: number): number {
  return nr >= 0 && nr < 256 ? route[nr] : 0;
}

/** Channel index of the kernel (the hypervisor), after the service domains. */
const KERNEL = ndomains;
for (let nr = 0; nr < 256; nr++) {
  const server = syscallInfo(nr)?.server;
  if (server === "kernel") route[nr] = KERNEL;
  else if (server === "storage" || server === "network")
    route[nr] = layout.domains.indexOf(server as DomainName);
}
/** This core's ring to the kernel, as one more channel beside the domains'. */
const channels: Ring[] = [...requests, attachRing(sab, layout.kernel[coreId] as RingDescriptor)];

/**
 * Calls per published slice of a round's batch. A round runs every runnable thread once, and
 * its calls used to go out together when it ended: with 50 connections' threads that held the
 * first reply back for the whole round while the network domain and the device models sat
 * idle, then left the core idle while they worked (a convoy). Slices of 8 keep FlexSC's
 * batching (one ring publish, at most one wake-up, per 8 calls) and let the stages overlap.
 * Measured (1 core, park, 2 vCPUs): redis-benchmark -P 16 -c 50 0.94 → 1.03 M req/s, wrk
 * /api/stats 94 → 96–98 k req/s, 64 threads of null calls 220 → 150 ns per call; slices of 4
 * cost more in publishes and wake-ups than they gained, 12–16 gained less.
 */
const FLUSH_EVERY = 8;

/** Write thread t's staged call into its domain's request ring (Scheduler hook). */
function submit(t: Thread): void {
  const d = domainOf(t.nr);
  if (d < 0) {
    sched.complete(t, -38); // ENOSYS: no domain serves it here; never sent
    return;
  }
  const ring = channels[d] as Ring;
  const reqId = claimSlot(t);
  if (reqId === 0 || ring.reserve(1) === 0) {
    if (reqId !== 0) freeSlot(reqId);
    overflow.push(t); // ring full (or every slot in flight): back-pressure, retried next turn
    return;
  }
  const at = ring.slot(batchLen[d]++);
  const w = ring.i32;
  t.reqId = reqId;
  w[at + kNr] = t.nr;
  w[at + kPid] = t.pid;
  w[at + kTid] = t.tid;
  w[at + kReqId] = t.reqId;
  w[at + kA0] = t.a0;
  w[at + kA1] = t.a1;
  w[at + kA2] = t.a2;
  w[at + kA3] = t.a3;
  w[at + kA4] = t.a4;
  w[at + kA5] = t.a5;
  w[at + kRet] = 0;
  w[at + kCore] = coreId;
  i32[st + kwServed]++;
  if ((trapMask & (1 << d)) !== 0) {
    ring.publish();
    batchLen[d] = 0;
    touched &= ~(1 << d);
    trapWait(t);
  } else if (batchLen[d] >= FLUSH_EVERY) {
    ring.publish(); // a long round's calls go out in slices: the domain starts on them meanwhile
    batchLen[d] = 0;
    touched &= ~(1 << d);
  } else {
    touched |= 1 << d;
  }
}

/**
 * Bit d: the channel to domain d is in trap mode. Read from the mode words at start and again
 * whenever the doorbell rings (the hypervisor rings it after it switches modes), so a call
 * costs no load of its channel's mode word; so is whether this core's wake word says park.
 */
let trapMask = 0;
let parkMode = false;
function readChannelModes(): void {
  let m = 0;
  for (let d = 0; d < ndomains; d++) {
    if (Atomics.load(i32, layout.modes + coreId * ndomains + d) === TRAP) m |= 1 << d; // load
  }
  trapMask = m;
  parkMode = waiter.parking;
}
readChannelModes();

/** Time spent blocked in trap-mode calls since the last long-run report (ms). */
let trapMs = 0;

/** Trap mode: the whole core waits until `t`'s answer is back (nothing else runs meanwhile). */
function trapWait(t: Thread): void {
  const back = () => ready.hasEntries();
  const t0 = perf.now();
  while (t.state === "syscall") {
    waiter.wait(back);
    takeCompletions();
  }
  trapMs += perf.now() - t0;
}

/** Step 1: completions from the ready queue make their threads runnable. */
function takeCompletions(): number {
  const n = ready.peek(ready.capacity);
  if (n === 0) return 0;
  const w = ready.i32;
  for (let i = 0; i < n; i++) {
    const at = ready.entry(i);
    const req = w[at + kReqId];
    if (w[at + kNr] === NR_JOINED) {
      const t = joiners.get(req);
      if (t === undefined) exitedEarly.set(req, w[at + kRet]);
      else {
        joiners.delete(req);
        sched.wake(t, w[at + kRet]);
      }
      continue;
    }
    const slot = req & SLOT_MASK;
    const t = inflight[slot];
    if (t !== undefined && t !== null && t.reqId === req && t.tid === w[at + kTid]) {
      freeSlot(req);
      if (t.state === "syscall") sched.complete(t, w[at + kRet]);
    }
  }
  ready.release();
  return n;
}

/** Tell the spawner's core that the thread it shared has exited (a completion entry). */
function report(core: number, reqId: number, status: number): boolean {
  const ring = readyOf[core] as Ring;
  if (ring.reserve(1) === 0) {
    outbox.push({ core, reqId, status });
    return false;
  }
  const at = ring.slot(0);
  const w = ring.i32;
  w[at + kNr] = NR_JOINED;
  w[at + kReqId] = reqId;
  w[at + kTid] = 0;
  w[at + kRet] = status;
  w[at + kErrno] = status < 0 ? -status : 0;
  ring.publish(); // wakes that core if it parked
  return true;
}

/**
 * Put an unstarted thread on the machine's spawn queue, or, with an affinity (a bit mask of
 * cores that is not every core), on the pinned queue of one core of the mask, round robin over
 * the mask (pickCore). Masks name cores 0–30 (spawnOn refuses others); on a machine of more
 * cores, a mask of all of 0–30 means any core. Returns the spawn's id, -EAGAIN if the queue is
 * full, -EINVAL if the mask names no core of this machine.
 */
function spawnShared(pid: number, fn: number, args: readonly number[], mask = ALL_CORES): number {
  const m = mask & ALL_CORES;
  if (m === 0) return -22;
  const target = m === ALL_CORES ? -1 : pickCore(m);
  const ring = target < 0 ? spawnRing : (pinnedOf[target] as Ring);
  if (ring.reserve(1) === 0) return -11;
  const at = ring.slot(0);
  const w = ring.i32;
  nextReq = (nextReq + 1) & 0x3fffffff || 1;
  const reqId = nextReq;
  w[at + ksPid] = pid;
  w[at + ksFn] = fn;
  w[at + ksCore] = coreId;
  w[at + ksReqId] = reqId;
  w[at + ksArgc] = args.length;
  for (let k = 0; k < args.length; k++) w[at + ksArgs + k] = args[k] as number;
  ring.publish(); // a pinned ring's publish wakes its core (its wake word is the ring's)
  if (target < 0) for (const p of peers) p.notify(); // an idle core comes and takes it
  return reqId;
}

/** Every core of this machine, as an affinity mask. */
const ALL_CORES = layout.cores >= 31 ? 0x7fffffff : (1 << layout.cores) - 1;
let lastPick = -1;
/**
 * The next core of mask `m` after the last one picked (round robin over the allowed set): a
 * spawner that starts a batch of threads with one affinity spreads them evenly. Load figures
 * would be stale here (cores report theirs every 256 turns), and a batch would all go to the
 * core that looked least busy.
 */
function pickCore(m: number): number {
  for (let k = 1; k <= layout.cores; k++) {
    const c = (lastPick + k) % layout.cores;
    if ((m & (1 << c)) !== 0) return (lastPick = c);
  }
  return -1;
}

/** Join a shared spawn: its status if it has exited, else null after registering `t`. */
function joinShared(reqId: number, t: Thread): number | null {
  const early = exitedEarly.get(reqId);
  if (early !== undefined) {
    exitedEarly.delete(reqId);
    return early;
  }
  joiners.set(reqId, t);
  return null;
}

/** Work stealing of unstarted threads: an under-busy core takes a few from the spawn queue. */
function takeSpawns(ring: Ring, max: number): void {
  const n = ring.peek(max);
  if (n === 0) return;
  const w = ring.i32;
  for (let i = 0; i < n; i++) {
    const at = ring.entry(i);
    const e = new Int32Array(kTakenPinned + 1);
    e.set(w.subarray(at, at + ksArgs + MAX_SPAWN_ARGS));
    e[kTakenPinned] = ring === pinned ? 1 : 0;
    awaitingModule.push(e);
  }
  ring.release();
  startTaken();
}

/** Start the taken spawns whose program is loaded here. */
function startTaken(): void {
  for (let i = 0; i < awaitingModule.length; ) {
    const e = awaitingModule[i] as Int32Array;
    const pid = e[ksPid] as number;
    const mod = modules.get(pid);
    if (mod === undefined) {
      i++;
      continue;
    }
    awaitingModule.splice(i, 1);
    const name = exportNames.get(pid)?.[e[ksFn] as number];
    const fn = name === undefined ? undefined : mod[name];
    const args = Array.from(e.subarray(ksArgs, ksArgs + (e[ksArgc] as number)));
    if (typeof fn !== "function") {
      report(e[ksCore] as number, e[ksReqId] as number, -22); // EINVAL: no such function
      continue;
    }
    const body = (fn as (...a: number[]) => Thread["gen"])(...args);
    const t = sched.spawn(body, { pid, name: name as string });
    startedHere.set(t.tid, { core: e[ksCore] as number, reqId: e[ksReqId] as number });
  }
}

/** Step 3: one tail update per ring touched this round. */
function publishTouched(): void {
  for (let d = 0; touched !== 0 && d <= ndomains; d++) {
    if ((touched & (1 << d)) !== 0) (channels[d] as Ring).publish();
    batchLen[d] = 0;
  }
  touched = 0;
}

function onExit(t: Thread): void {
  // Killed in a call: its slot is free now; a late answer finds another id there and is dropped.
  if (t.reqId !== 0 && inflight[t.reqId & SLOT_MASK] === t) freeSlot(t.reqId);
  const from = startedHere.get(t.tid);
  if (from !== undefined) {
    startedHere.delete(t.tid);
    report(from.core, from.reqId, t.error === undefined ? t.status : -1);
  }
  if (t.error !== undefined) {
    const error = t.error instanceof Error ? t.error.message : String(t.error);
    post({ type: "killed", pid: t.pid, tid: t.tid, name: t.name, error, coreId });
  }
  if (mainThreads.get(t.pid) === t.tid) {
    mainThreads.delete(t.pid);
    post({ type: "exit", pid: t.pid, status: t.status, coreId });
  }
}

// ---- the libOS binding: process memory, heaps, scratch buffers ----

const memories = new Map<number, ProcessMemory>();

/**
 * A write hit a copy-on-write page: the kernel breaks the sharing (other cores may hold the old
 * translation, and only the hypervisor posts shootdowns). This core waits marked idle, so the
 * kernel's shootdown does not wait for our acknowledgement while we wait for its answer.
 */
function cowBreak(pid: number, va: number): boolean {
  const word = st + kwCow;
  const before = Atomics.load(i32, word); // load: breaks answered so far
  post({ type: "cow", pid, va, coreId });
  mailbox.enterIdle();
  const deadline = perf.now() + 2000;
  while (Atomics.load(i32, word) === before && perf.now() < deadline) {
    Atomics.wait(i32, word, before, 50); // park: the kernel answers on its event loop
  }
  mailbox.leaveIdle(); // drop the stale translation before retrying
  return Atomics.load(i32, word) !== before;
}

/**
 * The pool ran dry in a page fault: ask the kernel to grant more frames and wait for its answer
 * (the fault cannot finish without a frame). True if frames came.
 */
function refillPool(): boolean {
  const word = st + kwGranted;
  const before = Atomics.load(i32, word); // load: grants answered so far
  const owned = pool.owned;
  post({ type: "grant", coreId, frames: POOL_FRAMES / 4 });
  const deadline = perf.now() + 2000;
  while (Atomics.load(i32, word) === before && perf.now() < deadline) {
    Atomics.wait(i32, word, before, 50); // park: the hypervisor answers on its event loop
  }
  return pool.owned > owned;
}
const heaps = new Map<number, Malloc>();

function memoryOf(pid: number): ProcessMemory {
  let m = memories.get(pid);
  if (m === undefined) {
    const root = rootOf(pid);
    if (root === 0) throw new SegmentationFault(0, `no process ${pid}`);
    m = new ProcessMemory(
      mem,
      mmu,
      translator,
      pool,
      pid,
      root,
      layout.procs / 4 + (pid - 1) * PROC_WORDS,
      refillPool,
      (va) => cowBreak(pid, va),
    );
    memories.set(pid, m);
  }
  return m;
}

/** The process's malloc on this core; the first core to get here lays the heap out. */
function heapOf(pid: number): Malloc {
  let h = heaps.get(pid);
  if (h !== undefined) return h;
  const vm = memoryOf(pid);
  const state = layout.procs / 4 + (pid - 1) * PROC_WORDS + kpHeap;
  if (Atomics.compareExchange(i32, state, HEAP_NONE, HEAP_INIT) === HEAP_NONE) {
    // claim: this core lays out the heap header
    Malloc.init(vm, HEAP_BASE);
    Atomics.store(i32, state, HEAP_READY); // publish: the heap is usable
  } else {
    // Another core is laying it out: a few page faults' worth of work, never a park.
    while (Atomics.load(i32, state) !== HEAP_READY); // load: wait for the header
  }
  h = new Malloc(vm, HEAP_BASE);
  heaps.set(pid, h);
  return h;
}

const CHUNK = 1024;
const chunks = new Uint8Array(SCRATCH_BYTES_PER_CORE / CHUNK); // run lengths of taken chunks
const scratchBase = USER_BASE + coreId * SCRATCH_BYTES_PER_CORE;

/**
 * Next fit from where the last allocation ended: pieces are freed in roughly the order they
 * were taken (a call's staging lives until its answer), so the chunks after the last one are
 * usually free and the search ends at once, where first fit walked every held chunk first.
 */
let scratchNext = 0;
function scratchAlloc(bytes: number): number {
  const need = Math.max(1, Math.ceil(bytes / CHUNK));
  const n = chunks.length;
  if (need > n) return 0;
  for (let pass = 0; pass < 2; pass++) {
    const from = pass === 0 ? scratchNext : 0;
    const to = pass === 0 ? n : Math.min(scratchNext + need - 1, n);
    for (let i = from; i + need <= to; ) {
      let j = i;
      while (j < i + need && chunks[j] === 0) j++;
      if (j === i + need) {
        chunks[i] = need;
        for (let k = i + 1; k < i + need; k++) chunks[k] = 255;
        scratchNext = i + need === n ? 0 : i + need;
        return scratchBase + i * CHUNK;
      }
      i = j + 1;
    }
  }
  return 0;
}

function scratchFree(va: number): void {
  const i = (va - scratchBase) / CHUNK;
  const need = chunks[i] ?? 0;
  for (let k = i; k < i + need; k++) chunks[k] = 0;
}

bindCore({
  coreId,
  cores: layout.cores,
  sched,
  user,
  layout,
  i32,
  root: rootOf,
  scratchAlloc,
  scratchFree,
  exportIndex: (pid, name) => exportNames.get(pid)?.indexOf(name) ?? -1,
  spawnShared,
  joinShared,
  memory: memoryOf,
  heap: heapOf,
  nic: () => nicOf(),
  waitNic,
});

// ---- control plane ----

const inbox: CoreCommand[] = [];
port.on("message", (m: CoreCommand) => {
  inbox.push(m);
});

/**
 * The process is gone: kill its threads on this core and forget its memory, before the
 * hypervisor frees its address space (a thread left running would write into freed frames).
 */
function reap(pid: number): void {
  for (const ts of sched.stats().threads) {
    const t = ts.pid === pid ? sched.thread(ts.tid) : undefined;
    if (t !== undefined) sched.kill(t, -9);
  }
  for (let i = awaitingModule.length - 1; i >= 0; i--) {
    if ((awaitingModule[i] as Int32Array)[ksPid] === pid) awaitingModule.splice(i, 1);
  }
  const vm = memories.get(pid);
  if (vm !== undefined) tlb.invalidateAsid(vm.root); // its root frame may become another's asid
  memories.delete(pid);
  heaps.delete(pid);
  modules.delete(pid);
  exportNames.delete(pid);
  mainThreads.delete(pid);
  post({ type: "reaped", pid, coreId });
}

async function handle(cmd: CoreCommand): Promise<void> {
  if (cmd.type === "reap") {
    reap(cmd.pid);
    return;
  }
  try {
    const mod = (await import(cmd.url)) as ProgramModule;
    // A pid may be a reused slot: forget what this core knew of its previous owner.
    memories.delete(cmd.pid);
    heaps.delete(cmd.pid);
    modules.set(cmd.pid, mod);
    exportNames.set(cmd.pid, Object.keys(mod).sort());
    startTaken(); // spawns taken before the module was here
    if (!cmd.main) {
      post({ type: "loaded", pid: cmd.pid, coreId });
      return;
    }
    const main = mod.main;
    if (typeof main !== "function") throw new Error(`${cmd.url} exports no main()`);
    const body = (main as (args: readonly string[]) => Thread["gen"])(cmd.args);
    const t = sched.spawn(body, { name: "main", pid: cmd.pid });
    mainThreads.set(cmd.pid, t.tid);
  } catch (e) {
    post({
      type: "error",
      pid: cmd.pid,
      error: e instanceof Error ? e.message : String(e),
      coreId,
    });
    if (cmd.main) post({ type: "exit", pid: cmd.pid, status: 127, coreId });
    else post({ type: "loaded", pid: cmd.pid, coreId }); // answered: main need not wait for us
  }
}

// ---- XOS kernel bypass: this core's own NIC VF, driven here with no domain in the path ----

/** The driver of this core's VF (made on first use); its interrupts ring this core's wake word. */
let nic: NicDriver | null = null;
/** Green threads blocked until the VF has work (received frames, events, TX completions). */
const nicWaiters: Thread[] = [];

function nicOf(): NicDriver | null {
  if (nic === null && data.vf !== undefined)
    nic = new NicDriver(mem, data.vf, { irqWord: slot.wake });
  return nic;
}

/** Block `t` until the VF has work; null when it has some already (no wait needed). */
function waitNic(t: Thread): number | null {
  if (nic === null || nic.hasWork()) return 0;
  nicWaiters.push(t);
  return null;
}

function wakeNicWaiters(): void {
  if (nicWaiters.length === 0 || !(nic as NicDriver).hasWork()) return;
  for (const t of nicWaiters.splice(0)) sched.wake(t, 0);
}

// ---- the loop ----

let bellSeen = 0;
const bell = st + kwDoorbell;
const hasWork = () =>
  ready.hasEntries() ||
  (nicWaiters.length > 0 && (nic as NicDriver).hasWork()) ||
  spawnRing.hasEntries() ||
  pinned.hasEntries() ||
  Atomics.load(i32, bell) !== bellSeen || // load: the hypervisor posted a message
  Atomics.load(i32, machineState) !== MACHINE_RUNNING;

/**
 * Polls of the ready queue alone before a core with calls in flight goes idle: 24 polls of
 * ≈ 45 ns apart is ≈ 1 µs, about two round trips of a null call on a spinning channel. Not in
 * park mode, where waiting in place is what the channel was told not to do.
 *
 * The pause between two polls is a clock read. Polling a line the other side is writing more
 * often than every ~40 ns slows the round trip down (the line bounces mid-write; measured: a
 * 10 ns pause cost 20–40 ns per call), so the poll must idle that long anyway, and the reading
 * it leaves behind opens the next burst's accounting window (runRounds' openedAt) at most one
 * poll before the answer was seen: the burst then reads no clock on the answer's critical path.
 */
const QUICK_POLLS = 24;
/** The clock read by the poll that found the answer (NaN when the last wait did not poll). */
let polledAt = Number.NaN;
function quickPoll(): boolean {
  if (parkMode) return false;
  for (let i = 0; i < QUICK_POLLS; i++) {
    const now = perf.now();
    if (ready.hasEntries()) {
      polledAt = now;
      return true;
    }
  }
  return false;
}

let turns = 0;
/** A burst of rounds ends when a round submitted calls (publish them now) or answers came in. */
const endBurst = (): boolean => touched !== 0 || ready.hasEntries();
function turn(): void {
  takeCompletions();
  wakeNicWaiters();
  for (let n = overflow.length; n > 0; n--) submit(overflow.shift() as Thread);
  for (let n = outbox.length; n > 0; n--) {
    const o = outbox.shift() as (typeof outbox)[number];
    report(o.core, o.reqId, o.status);
  }
  // New threads: a core that has threads of its own looks every 8th turn (the spawn queues'
  // loads are a tenth of a null call's turn), a core with none on every turn. An idle core
  // still wakes at once for a spawn: both queues are in its wait predicate.
  if ((turns & 7) === 0 || sched.live === 0) {
    if (pinned.hasEntries()) takeSpawns(pinned, 64); // ours alone: take them all
    if (sched.runnable < 2) takeSpawns(spawnRing, 4); // work stealing: only when under-busy
  }
  // Several rounds per turn while threads only compute and yield (a round ticks the sleepers
  // itself); the first round that submits calls ends the burst so they are published at once.
  sched.runRounds(16, endBurst, publishTouched, polledAt);
  polledAt = Number.NaN;
  publishTouched(); // (a no-op unless the burst ended by a throw before its flush)
  i32[st + kwHeartbeat]++;
  i32[st + kwRounds]++;
  if ((++turns & 255) === 0) {
    i32[st + kwThreads] = sched.live;
    i32[st + kwQueue] = ready.size();
  }
}

/** Go to the event loop for control messages, then act on them. */
async function readMessages(): Promise<void> {
  polledAt = Number.NaN; // the next burst opens after the messages, with its own clock read
  bellSeen = Atomics.load(i32, bell); // load: before reading, so a later ring is not missed
  readChannelModes(); // a mode switch rings the bell too
  await new Promise((r) => setImmediate(r));
  while (inbox.length > 0) await handle(inbox.shift() as CoreCommand);
}

/**
 * The doorbell rang (a message, a channel-mode switch, or the stop: the hypervisor stores the
 * machine's state before it rings): true if the machine is stopping. The loop reads the bell
 * alone on every turn and the machine's state only when it rang.
 */
function stopping(): boolean {
  return Atomics.load(i32, machineState) !== MACHINE_RUNNING; // load: published before the ring
}

async function main(): Promise<void> {
  Atomics.store(i32, st + kwState, WORKER_RUNNING); // publish: up
  post({ type: "ready", coreId });
  let sinceLoop = 0;
  for (;;) {
    if (Atomics.load(i32, bell) !== bellSeen) {
      // load: the hypervisor rang
      if (stopping()) break;
      await readMessages();
    } else if (inbox.length > 0) await readMessages();
    turn();
    if (!sched.idle()) {
      // Busy: now and then give the event loop a turn anyway (belt and braces for messages).
      if (++sinceLoop === 4096) {
        sinceLoop = 0;
        await new Promise((r) => setImmediate(r));
      }
      continue;
    }
    // Calls in flight and a channel that spins: the answer is likely a few hundred ns away
    // (FlexSC's one-outstanding case). Poll the ready queue alone for a moment before the idle
    // protocol below (state words, lazy-TLB mailbox, clock, the full wait predicate): on a
    // spinning channel that protocol is a third of a round trip.
    if (inflightCount > 0 && quickPoll()) continue;
    // Idle: wait in place — spin, hybrid or park as the wake word says — for a completion, a
    // doorbell, a stop, or the next sleeper. No promise machinery on this path.
    const next = sched.nextWakeAt();
    const timeout =
      next === Number.POSITIVE_INFINITY ? 100 : Math.max(0, Math.min(next - perf.now(), 100));
    Atomics.store(i32, st + kwState, WORKER_PARKED); // publish: waiting
    mailbox.enterIdle(); // lazy TLB: a parked core is never woken just to acknowledge
    waiter.wait(hasWork, timeout);
    mailbox.leaveIdle(); // catch up on shootdowns before the first translation
    Atomics.store(i32, st + kwState, WORKER_RUNNING);
  }
  mailbox.detach(); // OFFLINE: nobody waits for this core's acknowledgements any more
  Atomics.store(i32, st + kwState, WORKER_STOPPED); // publish: gone
  port?.close();
}

void main();
