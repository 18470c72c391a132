/**
 * network: the network service domain (VirtuOS) — a worker thread that drives the machine's NIC
 * VF (src/drivers/nic.ts) and keeps the sockets of every process: TCP through the NIC's TCP
 * offload engine (connection-level queues; real clients on the host's loopback), UDP as IPv4
 * datagrams in frames that the NIC's uplink carries to and from the host.
 *
 * Blocking calls park only the green thread: accept, recv, recvfrom, connect, poll and a send
 * that finds the transmit buffers full are *deferred* (domains/runtime.ts) and answered when
 * the device reports what they wait for. The core that made the call runs other threads.
 *
 * Back-pressure, never loss: send copies from the program's memory straight into the driver's
 * transmit buffers (sendFilled: no staging copy) only as many bytes as fit and returns that
 * count (a short send, as a non-blocking socket gives); with none free it waits (or returns
 * EAGAIN with MSG_DONTWAIT) until the device reports bytes sent. Received bytes wait in the
 * socket's receive ring, in order, until recv takes them.
 *
 * Receive window (TCP's, kept by the domain): a connection whose unread bytes pass
 * RX_WINDOW_HIGH (256 KiB, src/drivers/nic.ts says why) is paused at the offload engine — its
 * host socket stops reading and TCP flow control pushes back on the peer — and resumed once the
 * program has read it down to RX_WINDOW_LOW. The pause leaves in the pollEvents that crossed
 * the mark, ahead of the re-posted receive buffers, so a connection holds at most the window
 * plus one RB ring (64 × 4 KiB; a command ring found full delays the PAUSE to that connection's
 * next DATA event). Without it a fast sender to a program that does not read grew this domain
 * without limit (1 GB in 3 s). The held bytes and the largest per-connection figure go to the
 * NIC's statistics (sockRxHeld, sockRxPeak).
 *
 * Received bytes are copied once into the socket's ring (grown by doubling, dropped when it
 * empties if it grew past 64 KiB) and once out of it by recv; readers are answered after the
 * whole batch of device events, so a recv gets every byte that arrived in the round, not one
 * 4 KiB buffer's worth.
 *
 * Sockets belong to the process (and the incarnation of its pid) that made them; a process's
 * sockets are closed when it exits.
 */

import {
  EADDRINUSE,
  EAGAIN,
  EBADF,
  ECONNREFUSED,
  EINVAL,
  EISCONN,
  EMSGSIZE,
  ENOTCONN,
  EOPNOTSUPP,
  EPIPE,
  ESRCH,
} from "../src/abi/errno.js";
import {
  INADDR_LOOPBACK,
  kA0,
  kA1,
  kA2,
  kA3,
  kA4,
  kNr,
  kPid,
  MSG_DONTWAIT,
  POLLERR,
  POLLFD_BYTES,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  SHUT_RD,
  SHUT_RDWR,
  SHUT_WR,
  SOCK_DGRAM,
  SOCK_STREAM,
  SYS_accept,
  SYS_bind,
  SYS_connect,
  SYS_getsockname,
  SYS_listen,
  SYS_poll,
  SYS_recv,
  SYS_recvfrom,
  SYS_sclose,
  SYS_send,
  SYS_sendrecv,
  SYS_sendto,
  SYS_shutdown,
  SYS_socket,
} from "../src/abi/syscall.js";
import { NicDriver, RX_WINDOW_HIGH, RX_WINDOW_LOW, type ToeEvent } from "../src/drivers/nic.js";
import { kpRoot, PROC_WORDS } from "../src/hv/layout.js";
import { Mmu, UserMemory } from "../src/hw/mmu.js";
import { PhysicalMemory } from "../src/hw/physmem.js";
import { DomainRuntime, PENDING, type Pending } from "./runtime.js";

/** Largest transfer of one send or recv. */
const MAX_XFER = 256 * 1024;
/** Largest UDP payload (IPv4, no fragmentation over our frames). */
const MAX_DGRAM = 1472;
/** Datagrams kept per UDP socket before new ones are dropped (UDP may drop; TCP never does). */
const DGRAM_QUEUE = 256;
/** Smallest receive ring (one device buffer); it doubles as needed. */
const RX_RING_MIN = 4096;
/** A receive ring larger than this is dropped when it empties (the window may have grown it). */
const RX_RING_KEEP = 64 * 1024;
const NO_BYTES = new Uint8Array(0);

type State = "new" | "bound" | "listening" | "connecting" | "connected" | "closed";

interface Reader {
  readonly p: Pending;
  /** Where the bytes go or come from; a sendrecv's send part moves on as pieces go out. */
  va: number;
  len: number;
}

interface Datagram {
  readonly ip: number;
  readonly port: number;
  readonly data: Uint8Array;
}

interface Sock {
  h: number;
  pid: number;
  serial: number;
  readonly type: "stream" | "dgram";
  state: State;
  port: number;
  /** The offload engine's connection id (stream) once connected or accepted; -1 before. */
  conn: number;
  /** The engine's listener handle while listening; -1 otherwise. */
  listener: number;
  remoteIp: number;
  remotePort: number;
  /** Receive ring: rxBytes unread bytes from rxHead, wrapping at rxRing.length. */
  rxRing: Uint8Array;
  rxHead: number;
  rxBytes: number;
  /** The offload engine was told to stop reading this connection (the window is full). */
  rxPaused: boolean;
  /** On the `readable` list: bytes or an end arrived in this round; readers are answered after it. */
  rxListed: boolean;
  eof: boolean;
  /** A pending error (positive errno) to report once, or 0. */
  err: number;
  rdShut: boolean;
  wrShut: boolean;
  /** Connections accepted by the device and not yet by the program (listener only). */
  readonly backlog: Sock[];
  /** Deferred recv / accept / recvfrom calls, answered in order. */
  readonly readers: Reader[];
  /** Deferred sends waiting for transmit buffers. */
  readonly writers: Reader[];
  /** A deferred bind / listen / connect waiting for the device's answer. */
  op: Pending | null;
  readonly dgrams: Datagram[];
}

interface Poller {
  readonly p: Pending;
  readonly va: number;
  readonly n: number;
  readonly deadline: number;
}

const rt = new DomainRuntime();
const mem = new PhysicalMemory(rt.sab);
const user = new UserMemory(mem, new Mmu(mem));
const vf = rt.data.vf;
if (vf === undefined) throw new Error("network domain: no NIC VF assigned");
const nic = new NicDriver(mem, vf, { irqWord: rt.wakeWord });

const socks = new Map<number, Sock>();
/** Offload-engine connection id → socket. */
const byConn = new Map<number, Sock>();
/** Listening port → socket; UDP port → socket. */
const listeners = new Map<number, Sock>();
const udpPorts = new Map<number, Sock>();
/** Device command token → the socket that waits for its answer. */
const byToken = new Map<number, Sock>();
const pollers: Poller[] = [];
/**
 * Sockets with sends waiting for transmit buffers. The buffers are the VF's, shared by every
 * connection, so bytes sent on ANY connection may free room for these: each SENT event retries
 * them all, in the order they started waiting.
 */
const blocked = new Set<Sock>();
/** Sockets that received bytes in this round's device events: their readers are answered after. */
const readable: Sock[] = [];
/** Paused sockets whose RESUME found the command ring full: retried at the end of each round. */
const resumeLater = new Set<Sock>();
/** Received bytes held in every socket's ring, and the most one connection held at once. */
let rxHeld = 0;
let rxPeak = 0;
let rxReported = false;
let nextHandle = 1;
/** A datagram on its way to the driver (sendto). */
const io = new Uint8Array(MAX_DGRAM);
const rec = new Uint8Array(8);
const recView = new DataView(rec.buffer);
let pollBuf = new Uint8Array(64 * POLLFD_BYTES);

function rootOf(pid: number): number {
  if (!rt.procs.running(pid)) return -ESRCH;
  return rt.i32[rt.layout.procs / 4 + (pid - 1) * PROC_WORDS + kpRoot];
}

function newSock(type: "stream" | "dgram", pid: number): Sock {
  return {
    h: 0,
    pid,
    serial: pid > 0 ? rt.procs.serial(pid) : 0,
    type,
    state: "new",
    port: 0,
    conn: -1,
    listener: -1,
    remoteIp: 0,
    remotePort: 0,
    rxRing: NO_BYTES,
    rxHead: 0,
    rxBytes: 0,
    rxPaused: false,
    rxListed: false,
    eof: false,
    err: 0,
    rdShut: false,
    wrShut: false,
    backlog: [],
    readers: [],
    writers: [],
    op: null,
    dgrams: [],
  };
}

/** Give a socket a handle in the table; the handle, the syscall's answer. */
function install(s: Sock, pid: number): number {
  s.h = nextHandle;
  s.pid = pid;
  s.serial = rt.procs.serial(pid);
  nextHandle = (nextHandle % 0xfffffe) + 1;
  socks.set(s.h, s);
  return s.h;
}

function sockOf(pid: number, h: number): Sock | undefined {
  const s = socks.get(h);
  if (s === undefined || s.pid !== pid || s.serial !== rt.procs.serial(pid)) return undefined;
  return s;
}

// ---- moving bytes between sockets and user memory ----

/** Copy up to `len` received bytes of `s` to the caller's `va`: the count, or -errno. */
function takeRx(s: Sock, pid: number, va: number, len: number): number {
  const want = Math.min(len, s.rxBytes, MAX_XFER);
  const root = rootOf(pid);
  if (root < 0) return root;
  // Take only once the copyout succeeded: a bad buffer loses no bytes.
  const ring = s.rxRing;
  const first = Math.min(want, ring.length - s.rxHead);
  let r = user.copyout(root, va, ring.subarray(s.rxHead, s.rxHead + first));
  if (r >= 0 && first < want) r = user.copyout(root, va + first, ring.subarray(0, want - first));
  if (r < 0) return r;
  consumeRx(s, want);
  return want;
}

/** Append received bytes to `s`'s ring (growing it); pause the connection past the window. */
function appendRx(s: Sock, bytes: Uint8Array): void {
  const n = bytes.length;
  if (s.rxBytes + n > s.rxRing.length) growRx(s, s.rxBytes + n);
  const ring = s.rxRing;
  const at = (s.rxHead + s.rxBytes) % ring.length;
  const first = Math.min(n, ring.length - at);
  ring.set(first === n ? bytes : bytes.subarray(0, first), at);
  if (first < n) ring.set(bytes.subarray(first), 0);
  s.rxBytes += n;
  rxHeld += n;
  rxReported = false;
  if (s.rxBytes > rxPeak) rxPeak = s.rxBytes;
  if (!s.rxPaused && s.rxBytes > RX_WINDOW_HIGH && s.conn >= 0) {
    // The command leaves with this pollEvents, ahead of the buffers it re-posts (the bound).
    // A full command ring (-EAGAIN) defers it to the connection's next DATA event.
    if (nic.pauseReceive(s.conn) > 0) s.rxPaused = true;
  }
}

/** Give `s` a ring of at least `need` bytes (a power of two), its bytes moved to the front. */
function growRx(s: Sock, need: number): void {
  let cap = Math.max(RX_RING_MIN, s.rxRing.length);
  while (cap < need) cap *= 2;
  const next = new Uint8Array(cap);
  const old = s.rxRing;
  const first = Math.min(s.rxBytes, old.length - s.rxHead);
  next.set(old.subarray(s.rxHead, s.rxHead + first), 0);
  if (first < s.rxBytes) next.set(old.subarray(0, s.rxBytes - first), first);
  s.rxRing = next;
  s.rxHead = 0;
}

/** `n` bytes of `s` were read: advance, and resume a paused connection below the low mark. */
function consumeRx(s: Sock, n: number): void {
  s.rxBytes -= n;
  rxHeld -= n;
  rxReported = false;
  if (s.rxBytes === 0) {
    s.rxHead = 0;
    if (s.rxRing.length > RX_RING_KEEP) s.rxRing = NO_BYTES; // the window grew it: let it go
  } else {
    s.rxHead = (s.rxHead + n) % s.rxRing.length;
  }
  if (s.rxPaused && s.rxBytes <= RX_WINDOW_LOW) resumeRx(s);
}

function resumeRx(s: Sock): void {
  if (s.conn < 0) {
    s.rxPaused = false;
    resumeLater.delete(s);
    return;
  }
  if (nic.resumeReceive(s.conn) > 0) {
    s.rxPaused = false;
    resumeLater.delete(s);
  } else {
    resumeLater.add(s); // the command ring is full: the end of the round retries
  }
}

/** Drop what `s` holds unread (it is closing). */
function dropRx(s: Sock): void {
  rxHeld -= s.rxBytes;
  rxReported = false;
  s.rxBytes = 0;
  s.rxHead = 0;
  s.rxRing = NO_BYTES;
  s.rxPaused = false;
  resumeLater.delete(s);
}

/** Answer the readers of every socket that received bytes (or an end) in this round. */
function wakeReadable(): void {
  for (let i = 0; i < readable.length; i++) {
    const s = readable[i] as Sock;
    s.rxListed = false;
    wakeReaders(s);
  }
  readable.length = 0;
}

function markReadable(s: Sock): void {
  if (s.rxListed) return;
  s.rxListed = true;
  readable.push(s);
}

/** What a recv finds now: bytes, 0 at end of stream, -errno, or null (nothing yet: wait). */
function tryRecv(s: Sock, pid: number, va: number, len: number): number | null {
  if (s.rxBytes > 0 && len > 0) return takeRx(s, pid, va, len);
  if (s.err !== 0) {
    const e = s.err;
    s.err = 0;
    return -e;
  }
  if (s.eof || s.rdShut || s.state === "closed" || len === 0) return 0;
  if (s.state !== "connected") return -ENOTCONN;
  return null;
}

// The source of the send being filled (sendFilled calls fillFromUser; no closure per call).
let fillRoot = 0;
let fillVa = 0;

/** Copy the sender's bytes [offset, offset + dst.length) into a send buffer: 0 or -EFAULT. */
function fillFromUser(dst: Uint8Array, offset: number): number {
  return user.copyin(fillRoot, fillVa + offset, dst);
}

/** Try to hand `len` bytes at `va` to the device: the count taken, -errno, or null (no room). */
function trySend(s: Sock, pid: number, va: number, len: number): number | null {
  if (s.err !== 0) {
    const e = s.err;
    s.err = 0;
    return -e;
  }
  if (s.wrShut || s.state === "closed") return -EPIPE;
  if (s.state !== "connected") return -ENOTCONN;
  if (len === 0) return 0;
  const root = rootOf(pid);
  if (root < 0) return root;
  fillRoot = root;
  fillVa = va;
  // Straight from the program's memory into the driver's send buffers: one copy, and only
  // of what fits (a send that waits for room copies nothing meanwhile).
  const took = nic.sendFilled(s.conn, Math.min(len, MAX_XFER), fillFromUser);
  return took !== 0 ? took : null;
}

/** Answer the waiting readers of `s` with what it has now. */
function wakeReaders(s: Sock): void {
  while (s.readers.length > 0) {
    const r = s.readers[0] as Reader;
    if (r.p.done) {
      s.readers.shift();
      continue;
    }
    const got = readerAnswer(s, r);
    if (got === null) return;
    s.readers.shift();
    rt.complete(r.p, got);
  }
}

function readerAnswer(s: Sock, r: Reader): number | null {
  const nr = r.p.nr;
  if (nr === SYS_accept) return tryAccept(s, r.p.pid);
  if (nr === SYS_recvfrom) return tryRecvfrom(s, r.p.pid, r.va, r.len, r.p.args[3]);
  return tryRecv(s, r.p.pid, r.va, r.len);
}

function wakeWriters(s: Sock): void {
  while (s.writers.length > 0) {
    const w = s.writers[0] as Reader;
    if (w.p.done) {
      s.writers.shift();
      continue;
    }
    const got = trySend(s, w.p.pid, w.va, w.len);
    if (got === null) return;
    if (w.p.nr === SYS_sendrecv && got >= 0) {
      w.va += got;
      w.len -= got;
      if (w.len > 0) continue; // more room may have come with the same event: try again
      s.writers.shift();
      const r = receiveAfterSend(s, w.p);
      if (r !== null) rt.complete(w.p, r);
      continue;
    }
    s.writers.shift();
    rt.complete(w.p, got);
  }
}

/**
 * sendrecv's second half, once every byte of its send part is queued: a recv into (a3, a4).
 * The answer, or null when the call now waits as a reader of `s`.
 */
function receiveAfterSend(s: Sock, p: Pending): number | null {
  const va = p.args[3];
  const len = p.args[4];
  const got = s.readers.length === 0 ? tryRecv(s, p.pid, va, len) : null;
  if (got !== null) return got;
  s.readers.push({ p, va, len });
  return null;
}

// ---- accept, datagrams ----

function tryAccept(s: Sock, pid: number): number | null {
  if (s.state !== "listening") return -EINVAL;
  const c = s.backlog.shift();
  if (c === undefined) return null;
  return install(c, pid);
}

function tryRecvfrom(s: Sock, pid: number, va: number, len: number, addrVa: number): number | null {
  const d = s.dgrams[0];
  if (d === undefined) return s.state === "closed" ? 0 : null;
  const n = Math.min(len, d.data.length);
  const root = rootOf(pid);
  if (root < 0) return root;
  let r = user.copyout(root, va, d.data.subarray(0, n));
  if (r >= 0 && addrVa !== 0) {
    recView.setUint32(0, d.ip, true);
    recView.setUint32(4, d.port, true);
    r = user.copyout(root, addrVa, rec);
  }
  if (r < 0) return r;
  s.dgrams.shift(); // taken only once delivered
  return n;
}

// ---- poll ----

function readiness(s: Sock | undefined, events: number): number {
  if (s === undefined) return POLLNVAL;
  let r = 0;
  if (s.state === "listening") {
    if (s.backlog.length > 0) r |= POLLIN;
  } else if (s.type === "dgram") {
    if (s.dgrams.length > 0) r |= POLLIN;
    if (s.state === "bound") r |= POLLOUT;
  } else {
    if (s.rxBytes > 0 || s.eof || s.rdShut) r |= POLLIN;
    if (s.state === "connected" && s.writers.length === 0 && !s.wrShut) r |= POLLOUT;
    if (s.eof && s.wrShut) r |= POLLHUP;
  }
  if (s.err !== 0) r |= POLLERR;
  if (s.state === "closed") r |= POLLHUP;
  return r & (events | POLLERR | POLLHUP | POLLNVAL);
}

/** Evaluate a poll: the number of ready entries (written back), 0 if none, or -errno. */
function pollOnce(pid: number, va: number, n: number): number {
  const bytes = n * POLLFD_BYTES;
  if (pollBuf.length < bytes) pollBuf = new Uint8Array(bytes);
  const buf = pollBuf.subarray(0, bytes);
  const root = rootOf(pid);
  if (root < 0) return root;
  let r = user.copyin(root, va, buf);
  if (r < 0) return r;
  const v = new DataView(buf.buffer, buf.byteOffset, bytes);
  let ready = 0;
  for (let i = 0; i < n; i++) {
    const at = i * POLLFD_BYTES;
    const got = readiness(sockOf(pid, v.getInt32(at, true)), v.getInt16(at + 4, true));
    v.setInt16(at + 6, got, true);
    if (got !== 0) ready++;
  }
  if (ready === 0) return 0;
  r = user.copyout(root, va, buf);
  return r < 0 ? r : ready;
}

function checkPollers(): void {
  const now = performance.now();
  for (let i = 0; i < pollers.length; ) {
    const q = pollers[i] as Poller;
    const got = q.p.done ? 0 : pollOnce(q.p.pid, q.va, q.n);
    if (q.p.done || got !== 0 || now >= q.deadline) {
      rt.complete(q.p, got);
      pollers.splice(i, 1);
    } else i++;
  }
}

// ---- closing ----

function closeSock(s: Sock): void {
  if (s.state === "closed" && s.h === 0) return;
  if (s.conn >= 0) {
    nic.close(s.conn);
    byConn.delete(s.conn);
    s.conn = -1;
  }
  if (s.state === "listening") {
    listeners.delete(s.port);
    if (s.listener >= 0) nic.close(s.listener);
    s.listener = -1;
    for (const c of s.backlog.splice(0)) closeSock(c);
  }
  if (s.type === "dgram" && s.port !== 0 && udpPorts.get(s.port) === s) {
    udpPorts.delete(s.port);
    nic.udpClose(s.port);
  }
  s.state = "closed";
  blocked.delete(s);
  dropRx(s);
  for (const r of [...s.readers.splice(0), ...s.writers.splice(0)]) rt.complete(r.p, -EBADF);
  if (s.op !== null) rt.complete(s.op, -EBADF);
  s.op = null;
  socks.delete(s.h);
  s.h = 0;
}

// ---- the device's events ----

function onEvent(e: ToeEvent): void {
  switch (e.type) {
    case "listening": {
      const s = byToken.get(e.token);
      byToken.delete(e.token);
      if (s === undefined || s.op === null) return;
      s.state = "listening";
      s.port = e.port;
      s.listener = e.listener;
      listeners.set(e.port, s);
      rt.complete(s.op, 0);
      s.op = null;
      return;
    }
    case "udp-bound": {
      const s = byToken.get(e.token);
      byToken.delete(e.token);
      if (s === undefined || s.op === null) return;
      s.state = "bound";
      s.port = e.port;
      udpPorts.set(e.port, s);
      rt.complete(s.op, 0);
      s.op = null;
      return;
    }
    case "accepted": {
      const l = listeners.get(e.port);
      if (l === undefined) {
        nic.close(e.conn);
        return;
      }
      const c = newSock("stream", 0);
      c.state = "connected";
      c.conn = e.conn;
      c.port = e.port;
      c.remoteIp = e.remoteIp;
      c.remotePort = e.remotePort;
      byConn.set(e.conn, c);
      l.backlog.push(c);
      wakeReaders(l);
      return;
    }
    case "connected": {
      const s = byToken.get(e.token);
      byToken.delete(e.token);
      if (s === undefined || s.op === null) {
        nic.close(e.conn);
        return;
      }
      s.state = "connected";
      s.conn = e.conn;
      byConn.set(e.conn, s);
      rt.complete(s.op, 0);
      s.op = null;
      return;
    }
    case "data": {
      const s = byConn.get(e.conn);
      if (s === undefined || s.state === "closed") return;
      appendRx(s, e.bytes);
      markReadable(s);
      return;
    }
    case "eof": {
      const s = byConn.get(e.conn);
      if (s === undefined) return;
      s.eof = true;
      markReadable(s); // after the bytes before it
      return;
    }
    case "sent":
      if (blocked.size === 0) return;
      for (const s of blocked) {
        wakeWriters(s);
        if (s.writers.length === 0) blocked.delete(s);
        else break; // still no room: later sockets would find none either
      }
      return;
    case "closed":
      return; // the answer to our own close: the socket is gone already
    case "frame":
      return; // raw switch traffic: no socket takes it
    case "error": {
      const s = e.token > 0 ? byToken.get(e.token) : byConn.get(e.conn);
      if (e.token > 0) byToken.delete(e.token);
      if (s === undefined) return;
      if (s.op !== null) {
        rt.complete(s.op, -e.errno);
        s.op = null;
        if (s.state === "connecting") s.state = "new";
        return;
      }
      // The connection failed (reset by the peer, a refused DMA): it is over for both sides.
      s.err = e.errno;
      s.eof = true;
      s.wrShut = true;
      if (s.conn >= 0) byConn.delete(s.conn);
      wakeReaders(s);
      for (const w of s.writers.splice(0)) rt.complete(w.p, -e.errno);
      return;
    }
    case "datagram": {
      const s = udpPorts.get(e.dstPort);
      if (s === undefined || s.dgrams.length >= DGRAM_QUEUE) return; // UDP: dropped
      s.dgrams.push({ ip: e.srcIp, port: e.srcPort, data: e.payload.slice() });
      wakeReaders(s);
      return;
    }
  }
}

// ---- serving calls ----

/** Defer the call at `at` on `list` (answered when the device reports what it waits for). */
function wait(
  list: Reader[],
  w: Int32Array,
  at: number,
  core: number,
  va: number,
  len: number,
): number {
  list.push({ p: rt.defer(w, at, core), va, len });
  return PENDING;
}

function serve(w: Int32Array, at: number, core: number): number {
  const nr = w[at + kNr];
  const pid = w[at + kPid];
  const a0 = w[at + kA0];
  const a1 = w[at + kA1];
  const a2 = w[at + kA2];
  const a3 = w[at + kA3];
  if (nr === SYS_socket) {
    if (a0 !== SOCK_STREAM && a0 !== SOCK_DGRAM) return -EINVAL;
    return install(newSock(a0 === SOCK_STREAM ? "stream" : "dgram", pid), pid);
  }
  if (nr === SYS_poll) {
    if (a1 < 0 || a1 > 65536) return -EINVAL;
    const got = pollOnce(pid, a0, a1);
    if (got !== 0 || a2 === 0) return got;
    const deadline = a2 < 0 ? Number.POSITIVE_INFINITY : performance.now() + a2;
    pollers.push({ p: rt.defer(w, at, core), va: a0, n: a1, deadline });
    return PENDING;
  }
  const s = sockOf(pid, a0);
  if (s === undefined) return -EBADF;
  switch (nr) {
    case SYS_bind: {
      if (s.state !== "new") return -EINVAL;
      if (a1 !== 0 && a1 !== INADDR_LOOPBACK) return -EINVAL; // the machine has one address
      if (a2 < 0 || a2 > 65535) return -EINVAL;
      if (s.type === "stream") {
        if (a2 !== 0 && listeners.has(a2)) return -EADDRINUSE;
        s.port = a2;
        s.state = "bound";
        return 0;
      }
      if (a2 !== 0 && udpPorts.has(a2)) return -EADDRINUSE;
      s.op = rt.defer(w, at, core);
      const token = nic.udpBind(a2);
      if (token < 0) {
        s.op = null;
        return token; // the engine's command ring is full: EAGAIN
      }
      byToken.set(token, s);
      return PENDING;
    }
    case SYS_listen: {
      if (s.type !== "stream") return -EOPNOTSUPP;
      if (s.state === "listening") return 0;
      if (s.state !== "new" && s.state !== "bound") return -EINVAL;
      s.op = rt.defer(w, at, core);
      const token = nic.listen(s.port, Math.max(1, Math.min(a1, 4096)));
      if (token < 0) {
        s.op = null;
        return token; // the engine's command ring is full: EAGAIN
      }
      byToken.set(token, s);
      return PENDING;
    }
    case SYS_accept: {
      const got = tryAccept(s, pid);
      if (got !== null) return got;
      if ((a2 & MSG_DONTWAIT) !== 0) return -EAGAIN;
      return wait(s.readers, w, at, core, 0, 0);
    }
    case SYS_connect: {
      if (s.type !== "stream") return -EOPNOTSUPP;
      if (s.state === "connected") return -EISCONN;
      if (s.state !== "new" && s.state !== "bound") return -EINVAL;
      if (a2 <= 0 || a2 > 65535) return -EINVAL;
      if (a1 !== INADDR_LOOPBACK) return -ECONNREFUSED; // only the host's loopback is reachable
      s.state = "connecting";
      s.op = rt.defer(w, at, core);
      const token = nic.connect(a1, a2);
      if (token < 0) {
        s.op = null;
        s.state = "new";
        return token; // the engine's command ring is full: EAGAIN
      }
      byToken.set(token, s);
      return PENDING;
    }
    case SYS_recv: {
      if (s.type !== "stream") return -EOPNOTSUPP;
      if (a2 < 0) return -EINVAL;
      const got = s.readers.length === 0 ? tryRecv(s, pid, a1, a2) : null;
      if (got !== null) return got;
      if ((a3 & MSG_DONTWAIT) !== 0) return -EAGAIN;
      return wait(s.readers, w, at, core, a1, a2);
    }
    case SYS_send: {
      if (s.type !== "stream") return -EOPNOTSUPP;
      if (a2 < 0) return -EINVAL;
      const got = s.writers.length === 0 ? trySend(s, pid, a1, a2) : null;
      if (got !== null) return got;
      if ((a3 & MSG_DONTWAIT) !== 0) return -EAGAIN;
      blocked.add(s);
      return wait(s.writers, w, at, core, a1, a2);
    }
    case SYS_sendrecv: {
      // send(a1, a2) in full, then recv(a3, a4): one crossing for a server's reply and its
      // wait for the next request (io_uring's linked SQEs; FlexSC batches calls, this chains
      // two). Answers the recv's count, 0 at end of stream, or the first -errno of either.
      if (s.type !== "stream") return -EOPNOTSUPP;
      const rlen = w[at + kA4];
      if (a2 < 0 || rlen < 0) return -EINVAL;
      let sent = 0;
      if (s.writers.length === 0) {
        while (sent < a2) {
          const got = trySend(s, pid, a1 + sent, a2 - sent);
          if (got === null) break;
          if (got < 0) return got;
          sent += got;
        }
      }
      if (sent === a2) {
        const got = s.readers.length === 0 ? tryRecv(s, pid, a3, rlen) : null;
        return got !== null ? got : wait(s.readers, w, at, core, a3, rlen);
      }
      blocked.add(s);
      return wait(s.writers, w, at, core, a1 + sent, a2 - sent);
    }
    case SYS_shutdown:
      if (s.state !== "connected") return -ENOTCONN;
      if (a1 !== SHUT_RD && a1 !== SHUT_WR && a1 !== SHUT_RDWR) return -EINVAL;
      if (a1 !== SHUT_WR) {
        s.rdShut = true;
        wakeReaders(s);
      }
      if (a1 !== SHUT_RD && !s.wrShut) {
        s.wrShut = true;
        nic.shutdown(s.conn);
      }
      return 0;
    case SYS_sclose:
      closeSock(s);
      return 0;
    case SYS_sendto: {
      if (s.type !== "dgram") return -EOPNOTSUPP;
      if (s.state !== "bound") return -EINVAL; // bind first: the uplink sends from a bound port
      if (a2 < 0 || a2 > MAX_DGRAM) return -EMSGSIZE;
      const root = rootOf(pid);
      if (root < 0) return root;
      const r = user.copyin(root, a1, io.subarray(0, a2));
      if (r < 0) return r;
      const ip = a3 === 0 ? INADDR_LOOPBACK : a3;
      return nic.sendDatagram(s.port, ip, w[at + kA4], io.subarray(0, a2)) ? a2 : -EAGAIN;
    }
    case SYS_recvfrom: {
      if (s.type !== "dgram") return -EOPNOTSUPP;
      if (s.state !== "bound") return -EINVAL;
      const got = s.readers.length === 0 ? tryRecvfrom(s, pid, a1, a2, a3) : null;
      if (got !== null) return got;
      if ((w[at + kA4] & MSG_DONTWAIT) !== 0) return -EAGAIN;
      return wait(s.readers, w, at, core, a1, a2);
    }
    case SYS_getsockname: {
      const root = rootOf(pid);
      if (root < 0) return root;
      recView.setUint32(0, INADDR_LOOPBACK, true);
      recView.setUint32(4, s.port, true);
      return user.copyout(root, a1, rec);
    }
    default:
      return -EINVAL;
  }
}

rt.run({
  serve,
  hasWork: () => nic.hasWork(),
  poll() {
    nic.pollEvents(onEvent);
    if (readable.length > 0) wakeReadable();
  },
  endRound() {
    if (resumeLater.size > 0) for (const s of resumeLater) resumeRx(s);
    if (pollers.length > 0) checkPollers();
    if (!rxReported) {
      nic.reportReceiveWindow(rxHeld, rxPeak);
      rxReported = true;
    }
    nic.flush(); // one doorbell for every command of the round
  },
  nextDeadline() {
    let soonest = Number.POSITIVE_INFINITY;
    for (const q of pollers) soonest = Math.min(soonest, q.deadline);
    return soonest === Number.POSITIVE_INFINITY
      ? soonest
      : Math.max(0, soonest - performance.now());
  },
  processGone(pid) {
    for (const s of [...socks.values()]) if (s.pid === pid) closeSock(s);
  },
  stop() {
    for (const s of [...socks.values()]) closeSock(s);
    nic.flush();
  },
});
