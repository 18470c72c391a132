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
export type Server = "system" | "storage" | "network" | "kernel" | "local";

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

// Storage domain: the filesystem. Handles are the domain's open-file descriptions; the libOS's
// descriptor table (src/libos/fd.ts) maps a process's fds to them.
export const SYS_open = 20;
export const SYS_close = 21;
export const SYS_read = 22;
export const SYS_fwrite = 23;
export const SYS_pread = 24;
export const SYS_pwrite = 25;
export const SYS_lseek = 26;
export const SYS_fstat = 27;
export const SYS_stat = 28;
export const SYS_fsync = 29;
export const SYS_unlink = 30;
export const SYS_rename = 31;
export const SYS_mkdir = 32;
export const SYS_rmdir = 33;
export const SYS_readdir = 34;
export const SYS_ftruncate = 35;
export const SYS_sync = 36;

// Network domain: sockets.
export const SYS_socket = 40;
export const SYS_bind = 41;
export const SYS_listen = 42;
export const SYS_accept = 43;
export const SYS_connect = 44;
export const SYS_recv = 45;
export const SYS_send = 46;
export const SYS_shutdown = 47;
export const SYS_sclose = 48;
export const SYS_sendto = 49;
export const SYS_recvfrom = 50;
export const SYS_poll = 51;
export const SYS_getsockname = 52;
/** send in full, then recv: a server's reply and its wait for the next request in one crossing. */
export const SYS_sendrecv = 53;

// Flags, with Linux's values.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_CREAT = 0x40;
export const O_EXCL = 0x80;
export const O_TRUNC = 0x200;
export const O_APPEND = 0x400;
export const O_DIRECTORY = 0x10000;
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const MSG_DONTWAIT = 0x40;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
/** Bytes of one pollfd in user memory: handle (int32), events (int16), revents (int16). */
export const POLLFD_BYTES = 8;
/** 127.0.0.1 as a host-order int32. */
export const INADDR_LOOPBACK = 0x7f000001;

/**
 * struct stat in user memory (little-endian), written by fstat/stat:
 *   0 ino u32 · 4 type u32 (1 file, 2 directory) · 8 nlink u32 · 12 blocks u32
 *   16 size f64 · 24 mtimeMs f64 · 32 ctimeMs f64
 */
export const STAT_BYTES = 40;
export const S_FILE = 1;
export const S_DIR = 2;
/** A readdir record: ino u32 · type u8 · name length u8 · name bytes (UTF-8). */
export const DIRENT_HEADER = 6;

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
  ...(
    [
      [SYS_open, "open", ["ptr", "len", "flags", "int"], "open or create a file: a handle"],
      [SYS_close, "close", ["fd"], "close a file handle"],
      [SYS_read, "read", ["fd", "ptr", "len"], "read at the handle's offset"],
      [SYS_fwrite, "fwrite", ["fd", "ptr", "len"], "write at the offset (end with O_APPEND)"],
      [SYS_pread, "pread", ["fd", "ptr", "len", "int"], "read at an offset"],
      [SYS_pwrite, "pwrite", ["fd", "ptr", "len", "int"], "write at an offset"],
      [SYS_lseek, "lseek", ["fd", "int", "int"], "move the offset: the new offset"],
      [SYS_fstat, "fstat", ["fd", "ptr"], "struct stat of a handle"],
      [SYS_stat, "stat", ["ptr", "len", "ptr"], "struct stat of a path"],
      [SYS_fsync, "fsync", ["fd"], "returns once the file's data and metadata are durable"],
      [SYS_unlink, "unlink", ["ptr", "len"], "remove a name"],
      [SYS_rename, "rename", ["ptr", "len", "ptr", "len"], "rename, replacing the target"],
      [SYS_mkdir, "mkdir", ["ptr", "len"], "make a directory"],
      [SYS_rmdir, "rmdir", ["ptr", "len"], "remove an empty directory"],
      [SYS_readdir, "readdir", ["fd", "ptr", "len"], "directory records from the offset"],
      [SYS_ftruncate, "ftruncate", ["fd", "int"], "set a file's size"],
      [SYS_sync, "sync", [], "commit and flush everything"],
    ] as const
  ).map(([nr, name, args, summary]) => ({ nr, name, server: "storage" as const, args, summary })),
  ...(
    [
      [SYS_socket, "socket", ["int"], "a socket: SOCK_STREAM or SOCK_DGRAM"],
      [SYS_bind, "bind", ["fd", "int", "int"], "bind to an address and port"],
      [SYS_listen, "listen", ["fd", "int"], "listen with a backlog"],
      [SYS_accept, "accept", ["fd", "ptr", "flags"], "wait for a connection: a new socket"],
      [SYS_connect, "connect", ["fd", "int", "int"], "connect to an address and port"],
      [SYS_recv, "recv", ["fd", "ptr", "len", "flags"], "receive bytes; 0 at end of stream"],
      [
        SYS_send,
        "send",
        ["fd", "ptr", "len", "flags"],
        "send bytes; waits while the queue is full",
      ],
      [SYS_shutdown, "shutdown", ["fd", "int"], "shut down reading, writing or both"],
      [SYS_sclose, "sclose", ["fd"], "close a socket"],
      [SYS_sendto, "sendto", ["fd", "ptr", "len", "int", "int"], "send a datagram"],
      [SYS_recvfrom, "recvfrom", ["fd", "ptr", "len", "ptr", "flags"], "receive a datagram"],
      [SYS_poll, "poll", ["ptr", "len", "int"], "wait until one of many sockets is ready"],
      [SYS_getsockname, "getsockname", ["fd", "ptr"], "the local address and port"],
      [
        SYS_sendrecv,
        "sendrecv",
        ["fd", "ptr", "len", "ptr", "len"],
        "send all the bytes, then receive: the count received, 0 at end of stream",
      ],
    ] as const
  ).map(([nr, name, args, summary]) => ({ nr, name, server: "network" as const, args, summary })),
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
