/**
 * system: the system service domain — a worker thread that serves the calls that need no device
 * (null, getpid, gettid, getcore, time, write/log to the console) for every core, through the
 * rings (FlexSC, VirtuOS).
 *
 * The serving loop is domains/runtime.ts's (drain every core's ring, answer, publish once per
 * core per round); every call here answers at once. Console bytes go to the hypervisor through
 * the console ring, published at the end of each round before the completions.
 *
 * Holds no state that cannot be rebuilt: rings and process table live in shared memory, so a
 * new system domain started on the same layout carries on where this one stopped.
 */

import { EBADF, EINVAL, ENOSYS, ESRCH } from "../src/abi/errno.js";
import {
  kA0,
  kA1,
  kA2,
  kNr,
  kPid,
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
import { kpRoot, kState, MACHINE_RUNNING, PROC_WORDS } from "../src/hv/layout.js";
import { Mmu, UserMemory } from "../src/hw/mmu.js";
import { PhysicalMemory } from "../src/hw/physmem.js";
import { attachRing, Waiter } from "../src/shm/index.js";
import { DomainRuntime } from "./runtime.js";

const rt = new DomainRuntime();
const { sab, layout } = rt;
const mem = new PhysicalMemory(sab);
const user = new UserMemory(mem, new Mmu(mem));
const i32 = mem.i32;
const machineState = layout.machine / 4 + kState;
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

/** The page-table root of a running process, or -ESRCH. */
function rootOf(pid: number): number {
  if (!rt.procs.running(pid)) return -ESRCH;
  return i32[layout.procs / 4 + (pid - 1) * PROC_WORDS + kpRoot];
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
function serve(i32: Int32Array, at: number, core: number): number {
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

rt.run({
  serve,
  // Console bytes first: a program that sees its write complete and exits must find its output
  // already on the console.
  endRound() {
    consoleRing.publish();
    consoleBatch.n = 0;
  },
});
