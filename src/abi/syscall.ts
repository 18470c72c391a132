/**
 * syscall: the system-call ABI of the machine — numbers, the table of calls with their argument
 * kinds and where each is served, and the layout of a syscall entry in a ring.
 *
 * A syscall entry is one 64-byte ring slot (FlexSC's syscall page entry). Word 0 is the ring's
 * sequence word — the entry's "status": free, or submitted for position p (src/shm/ring.ts) —
 * and the 15 payload words are:
 *
 *   payload word   0    1    2    3      4 … 9       10    11     12     13 … 14
 *                ┌────┬────┬────┬──────┬──────────┬─────┬──────┬──────┬─────────┐
 *                │ nr │pid │tid │reqId │ a0 … a5  │ ret │errno │ core │ reserved│
 *                └────┴────┴────┴──────┴──────────┴─────┴──────┴──────┴─────────┘
 *
 * A core writes nr, pid, tid, reqId, the arguments and its own core id into a request ring; the
 * serving domain copies the entry into that core's ready queue with ret (≥ 0, or -errno) and
 * errno (positive, or 0) filled in. Buffers are virtual addresses of the caller's address space;
 * domains reach them only with copyin/copyout through the caller's page tables.
 */

export const kNr = 0;
export const kPid = 1;
export const kTid = 2;
export const kReqId = 3;
export const kA0 = 4;
export const kA1 = 5;
export const kA2 = 6;
export const kA3 = 7;
export const kA4 = 8;
export const kA5 = 9;
export const kRet = 10;
export const kErrno = 11;
export const kCore = 12;

/** Where a call is served. */
export type Server = "system" | "kernel" | "local";

/** What an argument is, for decoding and for tracing. */
export type ArgKind = "int" | "fd" | "ptr" | "len" | "flags";

export interface SyscallInfo {
  readonly nr: number;
  readonly name: string;
  readonly server: Server;
  readonly args: readonly ArgKind[];
  readonly summary: string;
}

export const SYS_null = 0;
export const SYS_getpid = 1;
export const SYS_gettid = 2;
export const SYS_time = 3;
export const SYS_write = 4;
export const SYS_log = 5;
export const SYS_getcore = 6;
export const SYS_mmap = 8;
export const SYS_munmap = 9;
export const SYS_mshare = 10;
export const SYS_gettsc = 64;

/** Largest single write or log the system domain accepts, in bytes (more gives EINVAL). */
export const MAX_IO = 1 << 16;

export const SYSCALLS: readonly SyscallInfo[] = [
  { nr: SYS_null, name: "null", server: "system", args: [], summary: "does nothing; returns 0" },
  {
    nr: SYS_getpid,
    name: "getpid",
    server: "system",
    args: [],
    summary: "the caller's process id",
  },
  { nr: SYS_gettid, name: "gettid", server: "system", args: [], summary: "the caller's thread id" },
  {
    nr: SYS_time,
    name: "time",
    server: "system",
    args: ["ptr"],
    summary: "seconds since the epoch; with a0 ≠ 0 also writes ms as a float64 there",
  },
  {
    nr: SYS_write,
    name: "write",
    server: "system",
    args: ["fd", "ptr", "len"],
    summary: "write bytes to the console (fd 1 stdout, fd 2 stderr); returns bytes written",
  },
  {
    nr: SYS_log,
    name: "log",
    server: "system",
    args: ["int", "ptr", "len"],
    summary: "one line to the hypervisor's log at a level (0 debug … 3 error)",
  },
  { nr: SYS_getcore, name: "getcore", server: "system", args: [], summary: "the calling core" },
  {
    nr: SYS_mmap,
    name: "mmap",
    server: "kernel",
    args: ["len", "flags"],
    summary:
      "reserve an anonymous, demand-zero region of len bytes (a0); a1 = 1 for read-only; returns its address",
  },
  {
    nr: SYS_mshare,
    name: "mshare",
    server: "kernel",
    args: ["ptr", "len", "flags", "int"],
    summary:
      "map the touched pages of [a0, a0 + a1) again in process a3's mmap window (0: the caller); a2 = 1 for copy-on-write; returns the new address",
  },
  {
    nr: SYS_munmap,
    name: "munmap",
    server: "kernel",
    args: ["ptr", "len"],
    summary: "take back the pages of [a0, a0 + a1) and free their frames",
  },
  {
    nr: SYS_gettsc,
    name: "gettsc",
    server: "local",
    args: [],
    summary: "a cycle-counter stand-in, served in the libOS with no crossing",
  },
];

const BY_NR = new Map<number, SyscallInfo>(SYSCALLS.map((s) => [s.nr, s]));

/** The table entry of a call, or undefined for a number the machine does not know. */
export function syscallInfo(nr: number): SyscallInfo | undefined {
  return BY_NR.get(nr);
}

export function syscallName(nr: number): string {
  return BY_NR.get(nr)?.name ?? `sys_${nr}`;
}

/**
 * A completion that is not the answer of a system call but the exit of a thread this core's
 * thread started elsewhere (joinShared): posted by the core that ran it, into the spawner core's
 * ready queue, with kTid = the joiner's tid, kReqId = the spawn's id, kRet = the exit status.
 */
export const NR_JOINED = -1;

/** Spawn-queue entry payload (src/core/core.ts): an unstarted thread any core may start. */
export const ksPid = 0;
export const ksFn = 1; // index of the generator function in the program's sorted exports
export const ksCore = 2; // the spawner's core: where the exit is reported
export const ksReqId = 3; // the spawn's id on the spawner's core
export const ksArgc = 4;
export const ksArgs = 5; // up to MAX_SPAWN_ARGS int32 arguments
export const MAX_SPAWN_ARGS = 10;
