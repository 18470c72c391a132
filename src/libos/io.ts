/**
 * io: the libOS's file and socket calls. Each stub looks the fd up in the process's descriptor
 * table (src/libos/fd.ts), picks the call of the domain that holds the object — the storage
 * domain for files, the network domain for sockets, the system domain for the console — and
 * stages it with the domain's handle. read/write/close work on any kind of fd, as in Unix.
 *
 * Buffers are virtual addresses in the process's memory (from malloc); paths and small records
 * (stat, socket addresses) travel through this core's scratch window in the process's memory
 * (or the heap when the window is full), so a domain reaches every byte through the caller's
 * page tables (copyin/copyout). The libOS itself copies them in and out through the process's
 * memory on this core (its translation cache), and stages them with plain calls around the
 * syscall rather than a generator wrapper, so an answer resumes the thread through few frames.
 * The byte-moving stubs (read, write, recv, send, pread, pwrite) are plain functions that
 * return the scheduler's gate: `yield*` them as any stub; they make no generator per call.
 *
 *   const fd = yield* open("/notes.txt", O_RDONLY);
 *   const buf = malloc(4096);
 *   const n = yield* read(fd, buf, 4096);
 */

import {
  EBADF,
  EFAULT,
  EINVAL,
  ENAMETOOLONG,
  ENOMEM,
  ENOSYS,
  ENOTSOCK,
  ESPIPE,
} from "../abi/errno.js";
import {
  DIRENT_HEADER,
  O_RDONLY,
  POLLFD_BYTES,
  POLLIN,
  POLLOUT,
  SOCK_STREAM,
  STAT_BYTES,
  SYS_accept,
  SYS_bind,
  SYS_close,
  SYS_connect,
  SYS_fstat,
  SYS_fsync,
  SYS_ftruncate,
  SYS_fwrite,
  SYS_getsockname,
  SYS_listen,
  SYS_lseek,
  SYS_mkdir,
  SYS_open,
  SYS_poll,
  SYS_pread,
  SYS_pwrite,
  SYS_read,
  SYS_readdir,
  SYS_recv,
  SYS_recvfrom,
  SYS_rename,
  SYS_rmdir,
  SYS_sclose,
  SYS_send,
  SYS_sendrecv,
  SYS_sendto,
  SYS_shutdown,
  SYS_socket,
  SYS_stat,
  SYS_sync,
  SYS_unlink,
  SYS_write,
} from "../abi/syscall.js";
import { fdEntry } from "../hv/layout.js";
import { ACCESS_READ, ACCESS_WRITE } from "../hw/mmu.js";
import { core, self } from "./context.js";
import {
  domainIndex,
  fdCancel,
  fdDomain,
  fdHandle,
  fdLookup,
  fdPublish,
  fdReserve,
  fdTake,
} from "./fd.js";
import type { Green } from "./index.js";
import { syscall } from "./index.js";
import { SegmentationFault } from "./vm.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** The most of a buffer a call pages in first: a domain moves at most 1 MiB per call. */
const MAX_PREFAULT = 1 << 20;
/** Linux's PATH_MAX: it counts the terminating NUL, so the longest path is PATH_MAX - 1 bytes. */
export const PATH_MAX = 4096;

/** What fstat and stat return. */
export interface Stat {
  readonly ino: number;
  readonly type: "file" | "dir";
  readonly nlink: number;
  readonly blocks: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export interface DirEntry {
  readonly name: string;
  readonly ino: number;
  readonly type: "file" | "dir";
}

/** A socket address: IPv4 as a host-order number (127.0.0.1 = 0x7f000001) and a port. */
export interface SockAddr {
  readonly ip: number;
  readonly port: number;
}

/** One fd to poll; `revents` is filled in. */
export interface PollFd {
  readonly fd: number;
  readonly events: number;
  revents: number;
}

/**
 * Staging areas that came from the heap because the scratch window was full, as
 * pid × 2^32 + address (two processes' heaps may hand out the same address).
 */
const heapStaged = new Set<number>();
const PID_KEY = 2 ** 32;

/**
 * `bytes` of staging memory in the process's memory for one call: a piece of this core's
 * scratch window. A call holds its piece until it is answered, so when many green threads of
 * one core are in calls at once the window runs out: the bytes then come from the process's
 * heap instead, paged in first (a domain cannot fault them in). Returns the address, or
 * -ENOMEM when both are out (-EFAULT if the heap cannot be paged in). Give it back with
 * {@link unstage} once the call is answered. These are plain functions rather than a generator
 * wrapper around the call: a call's answer then resumes the thread through fewer frames.
 */
function stage(bytes: number): number {
  const ctx = core();
  const va = ctx.scratchAlloc(bytes);
  if (va !== 0) return va;
  const heap = ctx.heap(self().pid);
  const hva = heap.malloc(Math.max(1, bytes));
  if (hva === 0) return -ENOMEM;
  const f = prefault(hva, bytes, true);
  if (f < 0) {
    heap.free(hva);
    return f;
  }
  heapStaged.add(self().pid * PID_KEY + hva);
  return hva;
}

/**
 * Stage `bytes` for a call that reads them from the caller's memory (print, log): the staging
 * address with the bytes copied there, or -errno. Give it back with {@link unstage}.
 */
export function stageBytes(bytes: Uint8Array): number {
  const va = stage(bytes.length);
  if (va < 0) return va;
  const r = copyout(va, bytes);
  if (r < 0) {
    unstage(va);
    return r;
  }
  return va;
}

/** Give back what {@link stage} or {@link stageBytes} returned. */
export function unstage(va: number): void {
  const ctx = core();
  const pid = self().pid;
  if (heapStaged.delete(pid * PID_KEY + va)) ctx.heap(pid).free(va);
  else ctx.scratchFree(va);
}

/** Scratch bytes in the process's memory for one call (see {@link stage}); freed when `body` returns. */
function* withScratch<T>(bytes: number, body: (va: number) => Generator<number, T, number>) {
  const va = stage(bytes);
  if (va < 0) return va;
  try {
    return yield* body(va);
  } finally {
    unstage(va);
  }
}

/** This core's buffer for a path's UTF-8 bytes, filled and copied out before the call yields. */
const pathBytes = new Uint8Array(PATH_MAX);

/** Encode `path` into {@link pathBytes}: its length, or -ENAMETOOLONG (PATH_MAX counts the NUL). */
function encodePath(path: string): number {
  const { read, written } = encoder.encodeInto(path, pathBytes);
  return read < path.length || written >= PATH_MAX ? -ENAMETOOLONG : written;
}

/** This core's buffer for a stat record, copied in and decoded before the thread yields again. */
const statBytes = new Uint8Array(STAT_BYTES);
const statView = new DataView(statBytes.buffer);

/**
 * Copy src[off … off+len) into the calling process's memory at `va` (a staging area of this
 * library: scratch, or heap it paged in): 0, or -EFAULT. Through the process's memory on this
 * core, so its translation cache and TLB serve it (one translation per page, no page walk on
 * a hit).
 */
function copyoutFrom(va: number, src: Uint8Array, off: number, len: number): number {
  try {
    core().memory(self().pid).writeFrom(va, src, off, len);
    return 0;
  } catch (e) {
    if (e instanceof SegmentationFault) return -EFAULT;
    throw e;
  }
}

function copyout(va: number, bytes: Uint8Array): number {
  return copyoutFrom(va, bytes, 0, bytes.length);
}

/** Copy `into.length` bytes at `va` of the calling process's memory into `into`: 0, or -EFAULT. */
function copyin(va: number, into: Uint8Array): number {
  try {
    core().memory(self().pid).readInto(va, into, 0, into.length);
    return 0;
  } catch (e) {
    if (e instanceof SegmentationFault) return -EFAULT;
    throw e;
  }
}

/** Stage a call that takes a path in scratch memory. */
function* pathCall(nr: number, path: string, a2 = 0, a3 = 0): Green {
  const n = encodePath(path);
  if (n < 0) return n;
  const va = stage(n);
  if (va < 0) return va;
  try {
    const r = copyoutFrom(va, pathBytes, 0, n);
    return r < 0 ? r : yield* syscall(nr, va, n, a2, a3);
  } finally {
    unstage(va);
  }
}

/**
 * Page in [va, va + len) for the access a domain will make there. A domain reaches user memory
 * only through the page tables (copyin/copyout) and cannot run this core's pager, so a buffer
 * on a page never touched yet (demand-zero heap, an mmap region) is paged in here first, as
 * Linux's get_user_pages does for a device: 0, or -EFAULT for an address no pager can back.
 */
function prefault(va: number, len: number, write: boolean): number {
  if (len <= 0) return 0;
  const vm = core().memory(self().pid);
  const access = write ? ACCESS_WRITE : ACCESS_READ;
  try {
    for (let p = va & ~0xfff; p < va + len; p += 4096) vm.phys(p >>> 0, access);
  } catch (e) {
    if (e instanceof SegmentationFault) return -EFAULT;
    throw e;
  }
  return 0;
}

/**
 * A reusable `yield*` target that yields nothing and returns a number at once: what the plain
 * (non-generator) stubs below return on an error found before the call. Like the scheduler's
 * gate (src/core/sched.ts), it must be consumed by `yield*` as soon as the stub returns it, and
 * one instance serves every thread of this core.
 */
class Answer implements Generator<number, number, number> {
  readonly #result: { value: number; done: true } = { value: 0, done: true };

  set(v: number): this {
    this.#result.value = v;
    return this;
  }

  next(): IteratorResult<number, number> {
    return this.#result;
  }

  return(v: number): IteratorResult<number, number> {
    return { value: v, done: true };
  }

  throw(e: unknown): IteratorResult<number, number> {
    throw e;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

const answer = new Answer();

/**
 * A call that moves bytes to (write = true: the domain writes) or from a user buffer. A plain
 * function, as the stubs that use it most (read, write, recv, send, pread, pwrite): the call is
 * staged here and the scheduler's gate returned, so a call makes no generator object.
 */
function bufCall(
  nr: number,
  h: number,
  va: number,
  len: number,
  write: boolean,
  a3 = 0,
  a4 = 0,
): Green {
  const f = prefault(va, Math.min(len, MAX_PREFAULT), write);
  if (f < 0) return answer.set(f);
  return syscall(nr, h, va, len, a3, a4);
}

/** The (domain, handle) of an fd; -EBADF when it is not open. */
function objectOf(fd: number): number {
  return fdLookup(self().pid, fd);
}

// ---- any fd ----

/** Read up to `len` bytes into user memory at `va`: the count (0 at end), or -errno. */
export function read(fd: number, va: number, len: number): Green {
  const e = objectOf(fd);
  if (e < 0) return answer.set(e);
  const d = fdDomain(e);
  if (d === domainIndex("storage")) return bufCall(SYS_read, fdHandle(e), va, len, true);
  if (d === domainIndex("network")) return bufCall(SYS_recv, fdHandle(e), va, len, true);
  return answer.set(fdHandle(e) === 0 ? 0 : -EBADF); // the console has no input: stdin is at its end
}

/** Write `len` bytes from user memory at `va`: the count written, or -errno. */
export function write(fd: number, va: number, len: number): Green {
  const e = objectOf(fd);
  if (e < 0) return answer.set(e);
  const d = fdDomain(e);
  if (d === domainIndex("storage")) return bufCall(SYS_fwrite, fdHandle(e), va, len, false);
  if (d === domainIndex("network")) return bufCall(SYS_send, fdHandle(e), va, len, false);
  return bufCall(SYS_write, fdHandle(e), va, len, false);
}

/** Close an fd of any kind: 0, or -errno. */
export function* close(fd: number): Green {
  const e = fdTake(self().pid, fd);
  if (e < 0) return e;
  const d = fdDomain(e);
  if (d === domainIndex("storage")) return yield* syscall(SYS_close, fdHandle(e));
  if (d === domainIndex("network")) return yield* syscall(SYS_sclose, fdHandle(e));
  return 0; // the console: nothing to tell anyone
}

/** Publish a new object from domain `dom` as an fd (or undo the reservation on failure). */
function* openAs(dom: number, call: () => Green): Green {
  if (dom < 0) return -ENOSYS;
  const pid = self().pid;
  const fd = fdReserve(pid);
  if (fd < 0) return fd;
  const h = yield* call();
  if (h < 0) {
    fdCancel(pid, fd);
    return h;
  }
  fdPublish(pid, fd, fdEntry(dom, h));
  return fd;
}

// ---- files (the storage domain) ----

/**
 * The handle of a file fd, or -errno: EBADF, or `notFile` for an open fd that is no file (a
 * socket, the console) — ESPIPE for the calls that need an offset (as Linux's for a pipe or a
 * socket), EINVAL for the others.
 */
function fileHandle(fd: number, notFile = -EINVAL): number {
  const e = objectOf(fd);
  if (e < 0) return e;
  return fdDomain(e) === domainIndex("storage") ? fdHandle(e) : notFile;
}

/** Open (and with O_CREAT create) a file: an fd, or -errno. Flags as Linux's (O_*). */
export function* open(path: string, flags = O_RDONLY, mode = 0o644): Green {
  return yield* openAs(domainIndex("storage"), () => pathCall(SYS_open, path, flags, mode));
}

export function pread(fd: number, va: number, len: number, offset: number): Green {
  const h = fileHandle(fd, -ESPIPE);
  return h < 0 ? answer.set(h) : bufCall(SYS_pread, h, va, len, true, offset);
}

export function pwrite(fd: number, va: number, len: number, offset: number): Green {
  const h = fileHandle(fd, -ESPIPE);
  return h < 0 ? answer.set(h) : bufCall(SYS_pwrite, h, va, len, false, offset);
}

/** Move the offset (SEEK_SET, SEEK_CUR, SEEK_END): the new offset, or -errno. */
export function* lseek(fd: number, offset: number, whence: number): Green {
  const h = fileHandle(fd, -ESPIPE);
  return h < 0 ? h : yield* syscall(SYS_lseek, h, offset, whence);
}

/** Returns once the file's data and metadata are durable: 0, or -errno. */
export function* fsync(fd: number): Green {
  const h = fileHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_fsync, h);
}

export function* ftruncate(fd: number, size: number): Green {
  const h = fileHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_ftruncate, h, size);
}

/** The stat record in {@link statBytes}, decoded. */
function decodeStat(): Stat {
  const v = statView;
  return {
    ino: v.getUint32(0, true),
    type: v.getUint32(4, true) === 2 ? "dir" : "file",
    nlink: v.getUint32(8, true),
    blocks: v.getUint32(12, true),
    size: v.getFloat64(16, true),
    mtimeMs: v.getFloat64(24, true),
    ctimeMs: v.getFloat64(32, true),
  };
}

/** A file's status by fd: a Stat, or -errno. */
export function* fstat(fd: number): Generator<number, Stat | number, number> {
  const h = fileHandle(fd);
  if (h < 0) return h;
  const va = stage(STAT_BYTES);
  if (va < 0) return va;
  try {
    let r = yield* syscall(SYS_fstat, h, va);
    if (r >= 0) r = copyin(va, statBytes);
    return r < 0 ? r : decodeStat();
  } finally {
    unstage(va);
  }
}

/** A file's status by path: a Stat, or -errno. One staging area holds the record, then the path. */
export function* stat(path: string): Generator<number, Stat | number, number> {
  const n = encodePath(path);
  if (n < 0) return n;
  const va = stage(STAT_BYTES + n);
  if (va < 0) return va;
  try {
    let r = copyoutFrom(va + STAT_BYTES, pathBytes, 0, n);
    if (r >= 0) r = yield* syscall(SYS_stat, va + STAT_BYTES, n, va);
    if (r >= 0) r = copyin(va, statBytes);
    return r < 0 ? r : decodeStat();
  } finally {
    unstage(va);
  }
}

export function* unlink(path: string): Green {
  return yield* pathCall(SYS_unlink, path);
}

export function* mkdir(path: string): Green {
  return yield* pathCall(SYS_mkdir, path);
}

export function* rmdir(path: string): Green {
  return yield* pathCall(SYS_rmdir, path);
}

export function* rename(from: string, to: string): Green {
  const a = encoder.encode(from);
  const b = encoder.encode(to);
  if (a.length >= PATH_MAX || b.length >= PATH_MAX) return -ENAMETOOLONG;
  return yield* withScratch(a.length + b.length, function* (va) {
    let r = copyout(va, a);
    if (r >= 0) r = copyout(va + a.length, b);
    if (r < 0) return r;
    return yield* syscall(SYS_rename, va, a.length, va + a.length, b.length);
  });
}

/** Commit and flush the whole filesystem. */
export function* sync(): Green {
  return yield* syscall(SYS_sync);
}

/** The entries of a directory (without "." and ".."): a list, or -errno. */
export function* readdir(path: string): Generator<number, DirEntry[] | number, number> {
  const fd = yield* open(path, 0x10000); // O_DIRECTORY
  if (fd < 0) return fd;
  const h = fileHandle(fd);
  const out: DirEntry[] = [];
  const chunk = 4096;
  const buf = new Uint8Array(chunk);
  let err = 0;
  for (;;) {
    const n = yield* withScratch(chunk, function* (va) {
      const n = yield* syscall(SYS_readdir, h, va, chunk);
      if (n <= 0) return n;
      const r = copyin(va, buf.subarray(0, n));
      return r < 0 ? r : n;
    });
    if (n <= 0) {
      err = n;
      break;
    }
    const v = new DataView(buf.buffer, 0, n);
    for (let at = 0; at + DIRENT_HEADER <= n; ) {
      const len = v.getUint8(at + 5);
      const name = decoder.decode(buf.subarray(at + DIRENT_HEADER, at + DIRENT_HEADER + len));
      out.push({
        name,
        ino: v.getUint32(at, true),
        type: v.getUint8(at + 4) === 2 ? "dir" : "file",
      });
      at += DIRENT_HEADER + len;
    }
  }
  yield* close(fd);
  return err < 0 ? err : out;
}

// ---- sockets (the network domain) ----

function socketHandle(fd: number): number {
  const e = objectOf(fd);
  if (e < 0) return e;
  return fdDomain(e) === domainIndex("network") ? fdHandle(e) : -ENOTSOCK;
}

/** A new socket (SOCK_STREAM or SOCK_DGRAM): an fd, or -errno. */
export function* socket(type = SOCK_STREAM): Green {
  return yield* openAs(domainIndex("network"), () => syscall(SYS_socket, type));
}

/** Bind to a port (0: any) on an address (0: any; the machine's host side is 127.0.0.1). */
export function* bind(fd: number, port: number, ip = 0): Green {
  const h = socketHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_bind, h, ip, port);
}

export function* listen(fd: number, backlog = 511): Green {
  const h = socketHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_listen, h, backlog);
}

/** Wait for a connection (only this green thread waits): a new fd, or -errno. */
export function* accept(fd: number, flags = 0): Green {
  const h = socketHandle(fd);
  if (h < 0) return h;
  return yield* openAs(domainIndex("network"), () => syscall(SYS_accept, h, 0, flags));
}

export function* connect(fd: number, ip: number, port: number): Green {
  const h = socketHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_connect, h, ip, port);
}

/** Receive up to `len` bytes: the count, 0 at end of stream, or -errno (EAGAIN with MSG_DONTWAIT). */
export function recv(fd: number, va: number, len: number, flags = 0): Green {
  const h = socketHandle(fd);
  return h < 0 ? answer.set(h) : bufCall(SYS_recv, h, va, len, true, flags);
}

/** Send bytes; waits while the send queue is full (or EAGAIN with MSG_DONTWAIT). */
export function send(fd: number, va: number, len: number, flags = 0): Green {
  const h = socketHandle(fd);
  return h < 0 ? answer.set(h) : bufCall(SYS_send, h, va, len, false, flags);
}

/** Send all `len` bytes at `va`, in as many sends as it takes: 0, or -errno. */
export function* sendAll(fd: number, va: number, len: number): Green {
  for (let done = 0; done < len; ) {
    const w = yield* send(fd, va + done, len - done);
    if (w < 0) return w;
    done += w;
  }
  return 0;
}

/**
 * Send all `slen` bytes at `sva`, then receive up to `rlen` bytes into `rva`: the count
 * received, 0 at end of stream, or -errno (the send's, if it failed). One crossing to the
 * network domain where send + recv take two: what a server does after each request, with its
 * reply and its wait for the next. A send that finds the queue full waits, as send does.
 */
export function sendrecv(fd: number, sva: number, slen: number, rva: number, rlen: number): Green {
  const h = socketHandle(fd);
  if (h < 0) return answer.set(h);
  let f = prefault(sva, Math.min(slen, MAX_PREFAULT), false);
  if (f === 0) f = prefault(rva, Math.min(rlen, MAX_PREFAULT), true);
  return f < 0 ? answer.set(f) : syscall(SYS_sendrecv, h, sva, slen, rva, rlen);
}

export function* shutdown(fd: number, how: number): Green {
  const h = socketHandle(fd);
  return h < 0 ? h : yield* syscall(SYS_shutdown, h, how);
}

export function* sendto(fd: number, va: number, len: number, to: SockAddr): Green {
  const h = socketHandle(fd);
  if (h < 0) return h;
  const f = prefault(va, len, false);
  return f < 0 ? f : yield* syscall(SYS_sendto, h, va, len, to.ip, to.port);
}

/** Receive one datagram: its length, and where it came from in `from`. */
export function* recvfrom(
  fd: number,
  va: number,
  len: number,
  from?: { ip: number; port: number },
  flags = 0,
): Green {
  const h = socketHandle(fd);
  if (h < 0) return h;
  const addr = new Uint8Array(8);
  const f = prefault(va, Math.min(len, MAX_PREFAULT), true);
  if (f < 0) return f;
  return yield* withScratch(8, function* (ava) {
    const n = yield* syscall(SYS_recvfrom, h, va, len, ava, flags);
    if (n >= 0 && from !== undefined) {
      const r = copyin(ava, addr);
      if (r < 0) return r;
      const v = new DataView(addr.buffer);
      from.ip = v.getUint32(0, true);
      from.port = v.getUint32(4, true);
    }
    return n;
  });
}

/** The local port of a bound or listening socket, or -errno. */
export function* getsockname(fd: number): Green {
  const h = socketHandle(fd);
  if (h < 0) return h;
  const addr = new Uint8Array(8);
  return yield* withScratch(8, function* (va) {
    const r = yield* syscall(SYS_getsockname, h, va);
    if (r < 0) return r;
    const c = copyin(va, addr);
    return c < 0 ? c : new DataView(addr.buffer).getUint32(4, true);
  });
}

/**
 * Wait until one of `fds` is ready (POLLIN, POLLOUT), or `timeoutMs` passes (-1: no limit):
 * the number of ready fds, their revents filled in. Files and the console are always ready.
 */
export function* poll(fds: PollFd[], timeoutMs = -1): Green {
  let always = 0;
  const sockets: PollFd[] = [];
  const handles: number[] = [];
  for (const p of fds) {
    p.revents = 0;
    const e = objectOf(p.fd);
    if (e < 0) {
      p.revents = 0x20; // POLLNVAL
      always++;
    } else if (fdDomain(e) === domainIndex("network")) {
      sockets.push(p);
      handles.push(fdHandle(e));
    } else {
      p.revents = p.events & (POLLIN | POLLOUT);
      if (p.revents !== 0) always++;
    }
  }
  if (sockets.length === 0) return always;
  const bytes = sockets.length * POLLFD_BYTES;
  const rec = new Uint8Array(bytes);
  const v = new DataView(rec.buffer);
  sockets.forEach((p, i) => {
    v.setInt32(i * POLLFD_BYTES, handles[i] as number, true);
    v.setInt16(i * POLLFD_BYTES + 4, p.events, true);
  });
  const n = yield* withScratch(bytes, function* (va) {
    const r = copyout(va, rec);
    if (r < 0) return r;
    const n = yield* syscall(SYS_poll, va, sockets.length, always > 0 ? 0 : timeoutMs);
    if (n < 0) return n;
    const c = copyin(va, rec);
    return c < 0 ? c : n;
  });
  if (n < 0) return n;
  sockets.forEach((p, i) => {
    p.revents = v.getInt16(i * POLLFD_BYTES + 6, true);
  });
  return n + always;
}
