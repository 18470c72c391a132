/**
 * system: the system service domain — a worker thread that serves the calls that need no device
 * (null, getpid, gettid, getcore, time, write/log to the console) for every core, through the
 * rings (FlexSC, VirtuOS).
 *
 * Loop: wait on the domain's one wake word until some core's request ring has entries; drain
 * every request ring it finds (FlexSC: take all, then answer all); write each completion in
 * place into the caller core's ready queue and publish once per core per round. Console output
 * of a round goes to the hypervisor in one message.
 *
 * Holds no state that cannot be rebuilt: rings and process table live in shared memory, so a
 * new system domain started on the same layout carries on where this one stopped.
 */

import { parentPort, workerData } from "node:worker_threads";
import { EBADF, EINVAL, ENOSYS, ESRCH } from "../src/abi/errno.js";
import {
  kA0,
  kA1,
  kA2,
  kErrno,
  kNr,
  kPid,
  kRet,
  kTid,
  MAX_IO,
  SYS_getcore,
  SYS_getpid,
  SYS_gettid,
  SYS_log,
  SYS_null,
  SYS_time,
  SYS_write,
} from "../src/abi/syscall.js";
import { consoleWrite } from "../src/hv/console.js";
import {
  kpRoot,
  kpState,
  kState,
  kwBatchMax,
  kwHeartbeat,
  kwQueue,
  kwRounds,
  kwServed,
  kwState,
  MACHINE_RUNNING,
  type MachineLayout,
  PROC_RUNNING,
  PROC_WORDS,
  WORKER_PARKED,
  WORKER_RUNNING,
  WORKER_STOPPED,
} from "../src/hv/layout.js";
import { Mmu, UserMemory } from "../src/hw/mmu.js";
import { PhysicalMemory } from "../src/hw/physmem.js";
import { attachRing, PAYLOAD_WORDS, type Ring, WAITER_STATS, Waiter } from "../src/shm/index.js";

export interface DomainData {
  readonly sab: SharedArrayBuffer;
  readonly layout: MachineLayout;
  /** This domain's index in layout.domains. */
  readonly index: number;
}

/** What the domain tells the hypervisor by message (only that it is up; output goes by the console ring). */
export type DomainMessage = { type: "ready" };

const port = parentPort;
if (!port) throw new Error("the system domain runs in a worker thread");
const { sab, layout, index } = workerData as DomainData;

const mem = new PhysicalMemory(sab);
const user = new UserMemory(mem, new Mmu(mem));
const i32 = mem.i32;
const slot = layout.domainSlots[index];
if (!slot) throw new Error(`no domain slot ${index}`);
const st = slot.status / 4;
const machineState = layout.machine / 4 + kState;
const requests: Ring[] = layout.requests.map((perCore, c) => {
  const desc = perCore[index];
  if (!desc) throw new Error(`no request ring from core ${c} to domain ${index}`);
  return attachRing(sab, desc);
});
const ready: Ring[] = layout.ready.map((r) => attachRing(sab, r));
/** Entries claimed from each request ring and not yet answered (ready queue was full). */
const held = new Int32Array(layout.cores);
const waiter = new Waiter(sab, slot.wake, {
  stats: new Float64Array(sab, slot.waitStats, WAITER_STATS),
});
const io = new Uint8Array(MAX_IO);
const ioView = new DataView(io.buffer);
const decoder = new TextDecoder();
const consoleRing = attachRing(sab, layout.console);
const consoleBatch = { n: 0 };
const consoleScratch = new DataView(new ArrayBuffer(4));
const consoleFull = new Waiter(sab, layout.console.notFull as number);
const encoder = new TextEncoder();

/** Console full: publish what is pending and wait for the hypervisor to take some. */
function waitForConsole(): void {
  consoleRing.publish();
  consoleFull.wait(
    () => consoleRing.hasSpace() || Atomics.load(i32, machineState) !== MACHINE_RUNNING,
  );
}

function consoleBytes(fd: number, bytes: Uint8Array): void {
  consoleWrite(consoleRing, fd, bytes, consoleScratch, consoleBatch, waitForConsole);
}

function hasWork(): boolean {
  if (Atomics.load(i32, machineState) !== MACHINE_RUNNING) return true; // load: stop request
  for (let c = 0; c < requests.length; c++) {
    if (held[c] !== 0 || (requests[c] as Ring).hasEntries()) return true;
  }
  return false;
}

/** The page-table root of a running process, or -ESRCH. */
function rootOf(pid: number): number {
  if (pid < 1 || pid > 64) return -ESRCH;
  const at = layout.procs / 4 + (pid - 1) * PROC_WORDS;
  if (Atomics.load(i32, at + kpState) !== PROC_RUNNING) return -ESRCH; // load: process table
  return i32[at + kpRoot];
}

/** Copy `len` bytes of the caller's memory into `io`: 0, or a -errno. */
function copyinUser(pid: number, va: number, len: number): number {
  if (len < 0 || len > MAX_IO) return -EINVAL;
  const root = rootOf(pid);
  if (root < 0) return root;
  return user.copyin(root, va, io.subarray(0, len));
}

/** Copy `len` bytes of the caller's memory and decode them: text, or a -errno. */
function readUser(pid: number, va: number, len: number): string | number {
  const r = copyinUser(pid, va, len);
  return r < 0 ? r : decoder.decode(io.subarray(0, len));
}

const LEVELS = ["debug", "info", "warn", "error"] as const;

/** Serve the call in the entry at `at` (payload words); decode, then invoke. Returns ret. */
function serve(core: number, at: number): number {
  const nr = i32[at + kNr];
  const pid = i32[at + kPid];
  switch (nr) {
    case SYS_null:
      return 0;
    case SYS_getpid:
      return pid;
    case SYS_gettid:
      return i32[at + kTid];
    case SYS_getcore:
      return core;
    case SYS_time: {
      const ms = Date.now();
      const va = i32[at + kA0];
      if (va !== 0) {
        const root = rootOf(pid);
        if (root < 0) return root;
        ioView.setFloat64(0, ms, true);
        const r = user.copyout(root, va, io.subarray(0, 8));
        if (r < 0) return r;
      }
      return Math.floor(ms / 1000);
    }
    case SYS_write: {
      const fd = i32[at + kA0];
      if (fd !== 1 && fd !== 2) return -EBADF;
      const len = i32[at + kA2];
      const r = copyinUser(pid, i32[at + kA1], len);
      if (r < 0) return r;
      consoleBytes(fd, io.subarray(0, len)); // the bytes as written: no decode on this path
      return len;
    }
    case SYS_log: {
      const level = i32[at + kA0];
      if (level < 0 || level > 3) return -EINVAL;
      const len = i32[at + kA2];
      const text = readUser(pid, i32[at + kA1], len);
      if (typeof text === "number") return text;
      consoleBytes(2, encoder.encode(`[log ${LEVELS[level]} pid ${pid}] ${text}\n`));
      return 0;
    }
    default:
      return -ENOSYS;
  }
}

/** Answer what core `c` asked: as many as its ready queue has room for. */
function drain(c: number): number {
  const req = requests[c] as Ring;
  const out = ready[c] as Ring;
  const total = held[c] + req.peek(req.capacity - held[c]);
  if (total === 0) return 0;
  const k = out.reserve(total);
  const words = req.i32;
  for (let i = 0; i < k; i++) {
    const src = req.entry(i);
    const dst = out.slot(i);
    for (let w = 0; w < PAYLOAD_WORDS; w++) words[dst + w] = words[src + w];
    const ret = serve(c, src);
    words[dst + kRet] = ret;
    words[dst + kErrno] = ret < 0 ? -ret : 0;
  }
  // Console bytes first: a program that sees its write complete and exits must find its output
  // already on the console.
  consoleRing.publish();
  consoleBatch.n = 0;
  out.publish(); // one publish per core per round: wakes the core if it parked
  req.release(k);
  held[c] = total - k;
  return k;
}

Atomics.store(i32, st + kwState, WORKER_RUNNING); // publish: serving
port.postMessage({ type: "ready" } satisfies DomainMessage);
for (;;) {
  Atomics.store(i32, st + kwState, WORKER_PARKED); // publish: waiting (spinning or parked)
  waiter.wait(hasWork);
  Atomics.store(i32, st + kwState, WORKER_RUNNING);
  if (Atomics.load(i32, machineState) !== MACHINE_RUNNING) break; // load: stop request
  let served = 0;
  for (let c = 0; c < requests.length; c++) served += drain(c);
  i32[st + kwHeartbeat]++;
  i32[st + kwRounds]++;
  i32[st + kwServed] += served;
  i32[st + kwQueue] = served;
  if (served > i32[st + kwBatchMax]) i32[st + kwBatchMax] = served;
}
Atomics.store(i32, st + kwState, WORKER_STOPPED); // publish: gone
