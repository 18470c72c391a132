/**
 * storage: the storage service domain (VirtuOS) — a worker thread that drives the machine's
 * NVMe VF (src/drivers/nvme.ts) and runs the logged filesystem (src/fs) on its namespace, and
 * serves the file calls of every process through the rings (domains/runtime.ts).
 *
 * Open files: the domain keeps one open-file description per handle (inode, generation,
 * offset, access mode, owner pid and the owner's spawn serial); the process's descriptor table
 * in shared memory maps fds to handles (src/libos/fd.ts). A handle is good only for the process
 * that opened it; a process's handles are closed when it exits (the exit epoch).
 *
 * Durability: every call's changes join the filesystem's running transaction at once (later
 * calls see them). fsync is *group-committed*: the fsyncs that arrive in one round are deferred,
 * and at the end of the round one sync() makes all of them durable before any is answered
 * (FlexSC batching applied to the log). A running transaction also commits on its own after
 * {@link COMMIT_MS} of age, so work that is never fsynced is not held in memory forever.
 *
 * Reads: each open file carries its read-ahead state (src/fs/fs.ts), so a file read on in
 * order is read from the device a window at a time, and a small file read whole (the HTTP
 * server's open, fstat, pread, close) costs one scattered device read the first time and none
 * after, while it stays in the buffer cache.
 *
 * Decode, then invoke: each call checks its handle, access mode and user buffers first.
 * Per call, the open/fstat/pread/close path allocates the path string, the open file and views
 * of the transfer buffer, and nothing else: stat results go through one reusable record, a
 * path's inode comes from the filesystem's lookup cache, and no call makes a closure.
 */

import {
  EBADF,
  EINVAL,
  EIO,
  EISDIR,
  ENAMETOOLONG,
  ENOENT,
  ENOTDIR,
  ESRCH,
} from "../src/abi/errno.js";
import {
  DIRENT_HEADER,
  kA0,
  kA1,
  kA2,
  kA3,
  kNr,
  kPid,
  O_ACCMODE,
  O_APPEND,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDONLY,
  O_TRUNC,
  O_WRONLY,
  S_DIR,
  S_FILE,
  SEEK_CUR,
  SEEK_END,
  SEEK_SET,
  STAT_BYTES,
  SYS_close,
  SYS_fstat,
  SYS_fsync,
  SYS_ftruncate,
  SYS_fwrite,
  SYS_lseek,
  SYS_mkdir,
  SYS_open,
  SYS_pread,
  SYS_pwrite,
  SYS_read,
  SYS_readdir,
  SYS_rename,
  SYS_rmdir,
  SYS_stat,
  SYS_sync,
  SYS_unlink,
} from "../src/abi/syscall.js";
import { NvmeDriver } from "../src/drivers/nvme.js";
import { FileSystem, type InodeStat, ReadAhead, StatRecord } from "../src/fs/fs.js";
import { hybridSpin, kMachineEpoch, kpRoot, PROC_WORDS } from "../src/hv/layout.js";
import { Mmu, UserMemory } from "../src/hw/mmu.js";
import { PhysicalMemory } from "../src/hw/physmem.js";
import { DomainRuntime, PENDING, type Pending } from "./runtime.js";

/** Largest transfer one read or write call moves; more is a short count, as POSIX allows. */
const MAX_XFER = 1 << 20;
/** Age at which a running transaction commits without anyone asking (ms). */
const COMMIT_MS = 100;
const PATH_MAX = 4096;

/** An open-file description; it is its own read-ahead state (src/fs/fs.ts). */
class OpenFile extends ReadAhead {
  readonly pid: number;
  readonly serial: number;
  readonly ino: number;
  readonly gen: number;
  readonly flags: number;
  readonly dir: boolean;
  /** Byte offset; for a directory, the index of the next entry readdir returns. */
  offset = 0;

  constructor(pid: number, serial: number, ino: number, gen: number, flags: number, dir: boolean) {
    super();
    this.pid = pid;
    this.serial = serial;
    this.ino = ino;
    this.gen = gen;
    this.flags = flags;
    this.dir = dir;
  }
}

const rt = new DomainRuntime();
const mem = new PhysicalMemory(rt.sab);
const user = new UserMemory(mem, new Mmu(mem));
const vf = rt.data.vf;
if (vf === undefined) throw new Error("storage domain: no NVMe VF assigned");
// The driver waits for completions on the domain's wake word, with the machine's spin bounds: on
// a host with fewer vCPUs than busy threads a long spin holds the vCPU the device model needs.
const dev = new NvmeDriver(mem, vf, {
  irqWord: rt.wakeWord,
  waiter: hybridSpin(rt.i32, rt.layout),
});
const fs = FileSystem.mount(dev);

const files = new Map<number, OpenFile>();
let nextHandle = 1;
const io = new Uint8Array(MAX_XFER);
const pathBuf = new Uint8Array(PATH_MAX);
const statBuf = new Uint8Array(STAT_BYTES);
const statView = new DataView(statBuf.buffer);
/** The one stat record every call fills (one call at a time). */
const st = new StatRecord();
const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** fsyncs of this round, answered after one group commit. */
const syncs: Pending[] = [];
let txnSince = 0; // when the running transaction got its first change (0: none)
let sweptEpoch = -1; // the exit epoch whose gone processes' files were last closed

function rootOf(pid: number): number {
  if (!rt.procs.running(pid)) return -ESRCH;
  return rt.i32[rt.layout.procs / 4 + (pid - 1) * PROC_WORDS + kpRoot];
}

/**
 * A path from the caller's memory, or -errno. As Linux's getname: an empty path names nothing
 * (ENOENT), and PATH_MAX counts the terminating NUL, so a path has at most PATH_MAX - 1 bytes.
 */
function readPath(pid: number, va: number, len: number): string | number {
  if (len < 0) return -EINVAL;
  if (len === 0) return -ENOENT;
  if (len >= PATH_MAX) return -ENAMETOOLONG;
  const root = rootOf(pid);
  if (root < 0) return root;
  const r = user.copyin(root, va, pathBuf.subarray(0, len));
  if (r < 0) return r;
  const path = decoder.decode(pathBuf.subarray(0, len));
  return path.startsWith("/") ? path : `/${path}`;
}

/** Whether the process incarnation that opened `f` still runs. */
function ownerRuns(f: OpenFile): boolean {
  return rt.procs.running(f.pid) && rt.procs.serial(f.pid) === f.serial;
}

/** The open file behind a handle, if `pid` (this incarnation of it) owns it. */
function fileOf(pid: number, h: number): OpenFile | undefined {
  const f = files.get(h);
  if (f === undefined || f.pid !== pid || f.serial !== rt.procs.serial(pid)) return undefined;
  return f;
}

function changed(): void {
  if (txnSince === 0) txnSince = performance.now();
}

/** A call that may have changed the tree returned `r`: note the running transaction has work. */
function changedIf(r: number): number {
  if (r >= 0) changed();
  return r;
}

/** Run `stop` or `endRound`'s filesystem work, turning an unexpected throw into -EIO. */
function guard(call: () => number): number {
  try {
    return call();
  } catch (e) {
    rt.log(`storage: ${e instanceof Error ? e.message : String(e)}`);
    return -EIO;
  }
}

function writeStat(pid: number, va: number, s: InodeStat): number {
  statView.setUint32(0, s.ino, true);
  statView.setUint32(4, s.type === "dir" ? S_DIR : S_FILE, true);
  statView.setUint32(8, s.nlink, true);
  statView.setUint32(12, s.blocks, true);
  statView.setFloat64(16, s.size, true);
  statView.setFloat64(24, s.mtimeMs, true);
  statView.setFloat64(32, s.ctimeMs, true);
  const root = rootOf(pid);
  return root < 0 ? root : user.copyout(root, va, statBuf);
}

/** stat(path): look it up and copy its stat record out to `va`. */
function statPath(pid: number, path: string, va: number): number {
  const ino = fs.lookup(path);
  if (ino < 0) return ino;
  const r = fs.statInto(ino, -1, st);
  return r < 0 ? r : writeStat(pid, va, st);
}

function open(pid: number, path: string, flags: number): number {
  const acc = flags & O_ACCMODE;
  if (acc === O_ACCMODE) return -EINVAL;
  // With O_CREAT, create() alone: it returns the file that exists (-EEXIST with O_EXCL,
  // -EISDIR for a directory), so a new name costs one search of its directory, not two.
  let ino: number;
  if ((flags & O_CREAT) !== 0) {
    ino = fs.create(path, { mode: "file", exclusive: (flags & O_EXCL) !== 0 });
    if (ino < 0) return ino;
    changed();
  } else {
    ino = fs.lookup(path);
    if (ino < 0) return ino;
  }
  const r = fs.statInto(ino, -1, st);
  if (r < 0) return r;
  const dir = st.type === "dir";
  // Linux's open: a directory is opened read-only, and never with O_CREAT (namei.c do_open).
  if (dir && (acc !== O_RDONLY || (flags & O_CREAT) !== 0)) return -EISDIR;
  if (!dir && (flags & O_DIRECTORY) !== 0) return -ENOTDIR;
  if (!dir && (flags & O_TRUNC) !== 0 && acc !== O_RDONLY) {
    const r = fs.truncate(ino, 0);
    if (r < 0) return r;
    changed();
  }
  const h = nextHandle;
  nextHandle = (nextHandle % 0xfffffe) + 1;
  fs.pin(ino);
  files.set(h, new OpenFile(pid, rt.procs.serial(pid), ino, st.gen, flags, dir));
  return h;
}

function close(h: number): number {
  const f = files.get(h);
  if (f === undefined) return -EBADF;
  files.delete(h);
  fs.unpin(f.ino);
  return 0;
}

/** Read from a file into the caller's memory at `va`: bytes read, or -errno. */
function readAt(pid: number, f: OpenFile, va: number, len: number, off: number): number {
  if (f.dir) return -EISDIR;
  if ((f.flags & O_ACCMODE) === O_WRONLY) return -EBADF;
  if (len < 0 || off < 0) return -EINVAL;
  const n = Math.min(len, MAX_XFER);
  const got = fs.read(f.ino, off, io.subarray(0, n), f.gen, f);
  if (got <= 0) return got;
  const root = rootOf(pid);
  if (root < 0) return root;
  const r = user.copyout(root, va, io.subarray(0, got));
  return r < 0 ? r : got;
}

/** Write the caller's bytes at `va` into a file: bytes written, or -errno. */
function writeAt(pid: number, f: OpenFile, va: number, len: number, off: number): number {
  if ((f.flags & O_ACCMODE) === O_RDONLY) return -EBADF;
  if (len < 0 || off < 0) return -EINVAL;
  const n = Math.min(len, MAX_XFER);
  const root = rootOf(pid);
  if (root < 0) return root;
  const r = user.copyin(root, va, io.subarray(0, n));
  if (r < 0) return r;
  const put = fs.write(f.ino, off, io.subarray(0, n), f.gen);
  if (put > 0) changed();
  return put;
}

/** Directory records from entry index f.offset into the caller's buffer: bytes, or -errno. */
function readdir(pid: number, f: OpenFile, va: number, len: number): number {
  if (!f.dir) return -ENOTDIR;
  const entries = fs.readdirIno(f.ino, f.gen);
  if (typeof entries === "number") return entries;
  let at = 0;
  const cap = Math.min(len, MAX_XFER);
  for (; f.offset < entries.length; f.offset++) {
    const e = entries[f.offset] as { name: string; ino: number; type: "file" | "dir" };
    const name = encoder.encode(e.name).subarray(0, 255);
    if (at + DIRENT_HEADER + name.length > cap) break;
    io[at] = e.ino & 0xff;
    io[at + 1] = (e.ino >>> 8) & 0xff;
    io[at + 2] = (e.ino >>> 16) & 0xff;
    io[at + 3] = (e.ino >>> 24) & 0xff;
    io[at + 4] = e.type === "dir" ? S_DIR : S_FILE;
    io[at + 5] = name.length;
    io.set(name, at + DIRENT_HEADER);
    at += DIRENT_HEADER + name.length;
  }
  if (at === 0 && f.offset < entries.length) return -EINVAL; // buffer too small for one record
  const root = rootOf(pid);
  if (root < 0) return root;
  const r = user.copyout(root, va, io.subarray(0, at));
  return r < 0 ? r : at;
}

function seek(f: OpenFile, off: number, whence: number): number {
  let base: number;
  if (whence === SEEK_SET) base = 0;
  else if (whence === SEEK_CUR) base = f.offset;
  else if (whence === SEEK_END) {
    const r = fs.statInto(f.ino, f.gen, st);
    if (r < 0) return r;
    base = st.size;
  } else return -EINVAL;
  const to = base + off;
  if (to < 0 || to > 0x7fffffff) return -EINVAL;
  f.offset = to;
  return to;
}

/**
 * Serve one call. The filesystem turns device failures into -EIO itself; anything else that
 * throws is a bug in a call's path, answered -EIO (and logged) rather than killing the domain.
 */
function serve(w: Int32Array, at: number, core: number): number {
  try {
    return dispatch(w, at, core);
  } catch (e) {
    rt.log(`storage: ${e instanceof Error ? e.message : String(e)}`);
    return -EIO;
  }
}

function dispatch(w: Int32Array, at: number, core: number): number {
  const nr = w[at + kNr];
  const pid = w[at + kPid];
  const a0 = w[at + kA0];
  const a1 = w[at + kA1];
  const a2 = w[at + kA2];
  const a3 = w[at + kA3];
  switch (nr) {
    case SYS_open: {
      const p = readPath(pid, a0, a1);
      return typeof p === "number" ? p : open(pid, p, a2);
    }
    case SYS_stat: {
      const p = readPath(pid, a0, a1);
      return typeof p === "number" ? p : statPath(pid, p, a2);
    }
    case SYS_unlink: {
      const p = readPath(pid, a0, a1);
      return typeof p === "number" ? p : changedIf(fs.unlink(p));
    }
    case SYS_mkdir: {
      const p = readPath(pid, a0, a1);
      return typeof p === "number" ? p : changedIf(fs.mkdir(p));
    }
    case SYS_rmdir: {
      const p = readPath(pid, a0, a1);
      return typeof p === "number" ? p : changedIf(fs.rmdir(p));
    }
    case SYS_rename: {
      const from = readPath(pid, a0, a1);
      if (typeof from === "number") return from;
      const to = readPath(pid, a2, a3);
      if (typeof to === "number") return to;
      return changedIf(fs.rename(from, to));
    }
    case SYS_sync:
      syncs.push(rt.defer(w, at, core));
      return PENDING;
  }
  const f = fileOf(pid, a0);
  if (f === undefined) return -EBADF;
  switch (nr) {
    case SYS_close:
      return close(a0);
    case SYS_read: {
      const n = readAt(pid, f, a1, a2, f.offset);
      if (n > 0) f.offset += n;
      return n;
    }
    case SYS_fwrite: {
      if ((f.flags & O_APPEND) !== 0) {
        const r = fs.statInto(f.ino, f.gen, st);
        if (r < 0) return r;
        f.offset = st.size;
      }
      const n = writeAt(pid, f, a1, a2, f.offset);
      if (n > 0) f.offset += n;
      return n;
    }
    case SYS_pread:
      return readAt(pid, f, a1, a2, a3);
    case SYS_pwrite:
      return writeAt(pid, f, a1, a2, a3);
    case SYS_lseek:
      return f.dir ? -EISDIR : seek(f, a1, a2);
    case SYS_fstat: {
      const r = fs.statInto(f.ino, f.gen, st);
      return r < 0 ? r : writeStat(pid, a1, st);
    }
    case SYS_fsync:
      syncs.push(rt.defer(w, at, core));
      return PENDING;
    case SYS_ftruncate:
      // Linux's ftruncate: EINVAL unless a regular file open for writing.
      if (f.dir || (f.flags & O_ACCMODE) === O_RDONLY) return -EINVAL;
      return changedIf(fs.truncate(f.ino, a1, f.gen));
    case SYS_readdir:
      return readdir(pid, f, a1, a2);
    default:
      return -EINVAL;
  }
}

/** One group commit for every fsync of the round, then answer them all. */
function endRound(): void {
  if (syncs.length > 0) {
    // fs.sync returns -EIO (it does not throw) when the commit fails: that is every fsync's answer.
    const r = guard(() => fs.sync());
    txnSince = 0;
    for (const p of syncs.splice(0)) rt.complete(p, r);
    return;
  }
  if (txnSince !== 0 && performance.now() - txnSince >= COMMIT_MS) {
    guard(() => {
      fs.commit();
      return 0;
    });
    txnSince = 0;
  }
}

rt.run({
  serve,
  endRound,
  nextDeadline: () =>
    txnSince === 0
      ? Number.POSITIVE_INFINITY
      : Math.max(1, COMMIT_MS - (performance.now() - txnSince)),
  processGone() {
    // The runtime names only pids that are not running when it looks; by then an exited pid may
    // run again (a new incarnation), and its old files would stay open for good. So close every
    // file whose opener is gone, by spawn serial, once per exit epoch.
    const epoch = Atomics.load(rt.i32, rt.layout.machine / 4 + kMachineEpoch); // load: exits so far
    if (epoch === sweptEpoch) return;
    sweptEpoch = epoch;
    for (const [h, f] of files) if (!ownerRuns(f)) close(h);
  },
  stop() {
    guard(() => {
      fs.unmount();
      return 0;
    });
  },
});
