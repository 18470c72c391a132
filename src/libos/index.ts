/**
 * libos: what user programs import. System calls are exception-less (FlexSC): a stub stages the
 * call in the running green thread's record and yields; the core writes it into a request ring,
 * runs other threads, and resumes this one with the result when the completion arrives.
 *
 *   const pid: number = yield* getpid();
 *   yield* print(`hello from ${pid}\n`);
 *
 * Calls return -errno on failure (the machine's convention); the `*OrThrow` helpers turn that
 * into a SyscallError for programs that prefer exceptions. Served locally with no crossing:
 * gettsc (a cycle-counter stand-in) and the scheduler primitives.
 */

import { EAGAIN } from "../abi/errno.js";
import {
  MAX_SPAWN_ARGS,
  SYS_getcore,
  SYS_getpid,
  SYS_gettid,
  SYS_log,
  SYS_mmap,
  SYS_mshare,
  SYS_munmap,
  SYS_null,
  SYS_time,
} from "../abi/syscall.js";
import { Y_BLOCK, Y_SYSCALL, yieldToken } from "../core/sched.js";
import { yieldNow } from "../core/sync.js";
import { fromErrno, InvalidArgumentError } from "../errors.js";
import { core, self } from "./context.js";
import { stageBytes, unstage, write } from "./io.js";
import type { FaultHandler, ProcessMemory } from "./vm.js";

export * from "../abi/syscall.js";
export {
  Channel,
  ChannelClosedError,
  CLOSED,
  CondVar,
  exit,
  join,
  Mutex,
  sleep,
  spawnThread as spawn,
  yieldNow,
} from "../core/sync.js";
export * from "./bypass.js";
export * from "./io.js";

/** A green thread: yields scheduler tokens, receives results, returns its exit status. */
export type Green<T = number> = Generator<number, T, number>;

/** Stage syscall `nr` in the running thread and wait for its result (≥ 0, or -errno). */
// (A stub stages the call in the thread and returns yieldToken(Y_SYSCALL), the scheduler's gate:
// `yield*` on it yields the token once and returns the reply, with no generator made per call.)
export function syscall(nr: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): Green {
  const t = self();
  t.nr = nr;
  t.a0 = a0;
  t.a1 = a1;
  t.a2 = a2;
  t.a3 = a3;
  t.a4 = a4;
  t.a5 = a5;
  return yieldToken(Y_SYSCALL);
}

/** The null system call: a full round trip through the system domain that does nothing. */
export function nullcall(): Green {
  return syscall(SYS_null);
}

export function getpid(): Green {
  return syscall(SYS_getpid);
}

export function gettid(): Green {
  return syscall(SYS_gettid);
}

/** The core that serves the calling thread, as the system domain saw it. */
export function getcore(): Green {
  return syscall(SYS_getcore);
}

/** The core this thread runs on, as the libOS knows it: no crossing (cf. getcore). */
export function thisCore(): number {
  return core().coreId;
}

/** Seconds since the epoch (from the system domain). */
export function time(): Green {
  return syscall(SYS_time);
}

/** A cycle-counter stand-in, served in the libOS with no crossing (XOS's gettsc). */
export function gettsc(): number {
  return Math.floor(perf.now() * 1e6);
}
/** `performance` read once: the global is a lazy accessor that costs ≈ 200 instructions a read. */
const perf = performance;

const encoder = new TextEncoder();

/**
 * Put `text` into staging memory of the process (this core's scratch window, or the heap when
 * the window is held by other calls in flight), then write(fd) it: the bytes really travel
 * through user memory and the system domain's copyin.
 */
export function* print(text: string, fd = 1): Green {
  const bytes = encoder.encode(text);
  const va = stageBytes(bytes);
  if (va < 0) return va;
  try {
    return yield* write(fd, va, bytes.length);
  } finally {
    unstage(va);
  }
}

/** A line in the hypervisor's log at a level (0 debug, 1 info, 2 warn, 3 error). */
export function* log(level: number, text: string): Green {
  const bytes = encoder.encode(text);
  const va = stageBytes(bytes);
  if (va < 0) return va;
  try {
    return yield* syscall(SYS_log, level, va, bytes.length);
  } finally {
    unstage(va);
  }
}

/** A thread started through the machine's spawn queue, to be joined with joinShared. */
export interface SharedThread {
  readonly id: number;
  readonly name: string;
}

/**
 * Start `fn(...args)` as a new green thread that ANY core may run (M:N): it goes on the
 * machine's spawn queue and an idle core takes it. `fn` must be a generator function exported
 * by the program (every core imports the program); args are up to 10 int32 numbers. Threads
 * that need to share more than numbers use process memory. Returns a handle for joinShared.
 */
export function spawnShared(
  fn: (...args: number[]) => Green,
  ...args: number[]
): Generator<number, SharedThread, number> {
  return spawnQueued(-1, fn, args);
}

/**
 * spawnShared with an affinity: the thread runs on one of `cores` (core ids of this machine;
 * successive spawns go round the set), never elsewhere. Each core has its own pinned queue, and
 * a spawn onto it wakes that core. An empty set, or an id that is not a core here, is an
 * InvalidArgumentError. Join it with joinShared.
 */
export function spawnOn(
  cores: number | readonly number[],
  fn: (...args: number[]) => Green,
  ...args: number[]
): Generator<number, SharedThread, number> {
  const ctx = core();
  const list = typeof cores === "number" ? [cores] : cores;
  let mask = 0;
  for (const c of list) {
    if (!Number.isInteger(c) || c < 0 || c >= ctx.cores || c > 30) {
      throw new InvalidArgumentError(
        `spawnOn: ${String(c)} is not a core of this machine (0..${ctx.cores - 1})`,
      );
    }
    mask |= 1 << c;
  }
  if (mask === 0) throw new InvalidArgumentError("spawnOn: the set of cores is empty");
  return spawnQueued(mask, fn, args);
}

function* spawnQueued(
  mask: number,
  fn: (...args: number[]) => Green,
  args: readonly number[],
): Generator<number, SharedThread, number> {
  const ctx = core();
  const t = self();
  const index = ctx.exportIndex(t.pid, fn.name);
  if (index < 0) {
    throw new InvalidArgumentError(
      `spawnShared: ${fn.name || "the function"} is not exported by the program`,
    );
  }
  if (args.length > MAX_SPAWN_ARGS || args.some((a) => !Number.isInteger(a) || a !== (a | 0))) {
    throw new InvalidArgumentError(`spawnShared: at most ${MAX_SPAWN_ARGS} int32 arguments`);
  }
  for (;;) {
    const id =
      mask < 0 ? ctx.spawnShared(t.pid, index, args) : ctx.spawnShared(t.pid, index, args, mask);
    if (id > 0) return { id, name: fn.name };
    if (id !== -EAGAIN) throw new InvalidArgumentError(`spawnShared: refused (errno ${-id})`);
    yield* yieldNow(); // the spawn queue is full: let the others drain it
  }
}

/** Wait for a shared thread to exit, wherever it ran; returns its exit status (-1 if killed). */
export function* joinShared(h: SharedThread): Green {
  const t = self();
  const done = core().joinShared(h.id, t);
  if (done !== null) return done;
  return yield Y_BLOCK;
}

// ---- memory calls the kernel serves (through the kernel ring to the hypervisor) ----

/** Reserve an anonymous region of `len` bytes, pages zero-filled on first touch: its address, or -errno. */
export function* mmap(len: number, readOnly = false): Green {
  return yield* syscall(SYS_mmap, len, readOnly ? 1 : 0);
}

/**
 * Map the (touched) pages of [va, va + len) again at a new address, in this process (pid 0) or
 * another: shared, or copy-on-write (`cow`: the first write on either side gets its own copy).
 * Returns the new address, or -errno. The kernel's "share" call (XOmB).
 */
export function* mshare(va: number, len: number, cow: boolean, pid = 0): Green {
  return yield* syscall(SYS_mshare, va, len, cow ? 1 : 0, pid);
}

/** Take back the pages of [va, va + len) and free their frames: 0, or -errno. */
export function* munmap(va: number, len: number): Green {
  return yield* syscall(SYS_munmap, va, len);
}

// ---- memory: the process's heap and typed access (served in the libOS, no crossing) ----

export { type FaultHandler, ProcessMemory, SegmentationFault } from "./vm.js";

/** Allocate `n` bytes of the process's heap (16-byte aligned); 0 when out of memory. */
export function malloc(n: number): number {
  return core().heap(self().pid).malloc(n);
}

export function free(va: number): void {
  core().heap(self().pid).free(va);
}

export function calloc(n: number, size: number): number {
  return core().heap(self().pid).calloc(n, size);
}

export function realloc(va: number, n: number): number {
  return core().heap(self().pid).realloc(va, n);
}

/** The calling process's memory: load32/store32/readBytes/writeBytes through its page tables. */
export function memory(): ProcessMemory {
  return core().memory(self().pid);
}

/**
 * Install this process's page-fault handler on the calling core (XOS: faults are the libOS's).
 * It sees every fault first and returns true if it made the address accessible.
 */
export function setFaultHandler(handler: FaultHandler | null): void {
  memory().handler = handler;
}

/** Run a call and throw a SyscallError if it returned -errno. */
export function* orThrow(name: string, call: Green): Green {
  const r = yield* call;
  if (r < 0) throw fromErrno(name, r);
  return r;
}
