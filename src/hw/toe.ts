/**
 * toe: the TCP offload engine of one NIC virtual function — connection-level queues in the VF's
 * DMA memory (commands in, events and received bytes out) backed by real node:net sockets on the
 * host, so that real TCP clients on loopback reach programs behind the network domain.
 *
 * Vocabulary
 *   command   a 32-byte CMD ring entry (LISTEN, CONNECT, SEND, SHUTDOWN_WR, CLOSE, PAUSE, RESUME,
 *             UDP_BIND, UDP_CLOSE); the `tag` the driver puts in it comes back in the events it
 *             causes
 *   event     a 32-byte EV ring entry (LISTENING, ACCEPTED, CONNECTED, DATA, EOF, SENT, CLOSED,
 *             ERROR, UDP_BOUND)
 *   handle    names a listener or a connection: slot | sequence << 12 (src/hw/nic-regs.ts)
 *   outbox    events answering commands that did not fit in the EV ring yet (LISTENING, SENT, …)
 *   conn queue a connection's own ordered backlog: ACCEPTED/CONNECTED, received chunks, EOF,
 *             ERROR, CLOSED — in the order the host produced them, so DATA never overtakes
 *             the ACCEPTED before it nor the EOF after it
 *
 * Design (in the spirit of Chelsio/Broadcom TOEs and of the NVMe SQ/CQ pairs):
 *   - Data enters and leaves only by DMA through the DmaPort: SEND's bytes are DMA-read from the
 *     driver's buffer, received bytes DMA-written into RB buffers the driver posted, one DATA
 *     event per filled buffer.
 *   - Ring entries move in bursts, as a NIC's descriptor prefetch and write-back do: the
 *     commands waiting (up to the ring's wrap) are read with one DMA, the RB descriptors posted
 *     likewise, and the events and descriptor write-backs of a pump are staged in shadow copies
 *     and written with one DMA per contiguous run just before the cursors are published. A small
 *     request and its answer cost two data DMAs and a share of four ring DMAs, not seven DMAs.
 *   - Host callbacks do not pump: they queue, and ask the NIC for a pump at its moderation point
 *     (src/hw/nic.ts: one per turn of the event loop), so the connections that were readable in
 *     one turn share one pump, one set of ring DMAs and one interrupt.
 *   - Back-pressure, never loss, both ways. Host → machine: a connection whose queue still holds
 *     bytes after a pump (no RB buffer posted, or no EV slot), or that delivers a second chunk
 *     before the pump took the first, has its host socket paused, and resumed when the queue
 *     drains, so a fast sender sees TCP flow control; the device holds at most two chunks in hand
 *     per connection. The driver closes a connection's window itself with
 *     PAUSE (its socket layer holds as much as it wants to for a program that does not read):
 *     the host socket stays paused and the connection's queued bytes wait, until RESUME; other
 *     connections go on. Commands are taken before RB buffers are filled, every pump: a driver
 *     that publishes PAUSE before it re-posts buffers gets no byte of that connection in them.
 *     Machine → host: when socket.write() returns false the connection's later
 *     SEND/SHUTDOWN_WR/CLOSE commands are set aside (their buffers untouched, no SENT) until
 *     'drain'; other connections' commands go on. The driver runs out of SEND buffers and send()
 *     returns 0: flow control reaches the program.
 *   - One host write per connection per batch: the SENDs of one connection taken in one pump are
 *     handed to its socket together (cork/uncork: one writev), so a 64 KiB send of the program —
 *     sixteen 4 KiB SENDs — costs one system call, not sixteen. A lone SEND is written as it is.
 *     A socket left above its high-water mark by the batch holds the connection's later
 *     commands for 'drain', as above.
 *   - The device never overwrites an unconsumed event; with the EV ring full it stops taking
 *     commands (their answers would have nowhere to go) and holds host events in the queues.
 *   - Fairness: connections with queued work are served round-robin, one event per turn.
 *
 * Rejected: one DATA event per host chunk with a device-chosen buffer (the driver then cannot
 * bound its memory); dropping received bytes when no buffer is posted (that is UDP's contract,
 * not TCP's); blocking the whole command ring behind one slow connection.
 *
 * Invariants: a handle is released exactly when its CLOSED event (or a failed CONNECT's or
 * LISTEN's ERROR) is written; every SEND is answered by exactly one SENT or ERROR (so the driver gets each buffer
 * back); EV slots in [head, tail) are never written.
 * Who calls: src/hw/nic.ts creates one ToeFunction per enabled VF and calls service()/ready()
 * from its doorbell loop and service() from its moderation point, on the hypervisor thread;
 * host socket callbacks run on the same thread and call ToeHost.schedule().
 */

import net from "node:net";
import {
  EACCES,
  EADDRINUSE,
  EADDRNOTAVAIL,
  EBADF,
  ECONNABORTED,
  ECONNREFUSED,
  ECONNRESET,
  EFAULT,
  EHOSTUNREACH,
  EINVAL,
  EIO,
  EMFILE,
  ENETUNREACH,
  ENFILE,
  ENOTCONN,
  EPIPE,
  ETIMEDOUT,
} from "../abi/errno.js";
import { DMA_OK, type DmaPort } from "./dma.js";
import { ipv4ToString, parseIpv4 } from "./net-headers.js";
import {
  CMD_BYTES,
  CMD_CLOSE,
  CMD_CONNECT,
  CMD_LISTEN,
  CMD_PAUSE,
  CMD_RESUME,
  CMD_SEND,
  CMD_SHUTDOWN_WR,
  CMD_UDP_BIND,
  CMD_UDP_CLOSE,
  cA,
  cB,
  cC,
  cHandle,
  cOp,
  cTag,
  DESC_BYTES,
  DF_DONE,
  DF_ERR,
  dFlags,
  dIovaHi,
  dIovaLo,
  dLength,
  EV_ACCEPTED,
  EV_BYTES,
  EV_CLOSED,
  EV_CONNECTED,
  EV_DATA,
  EV_EOF,
  EV_ERROR,
  EV_LISTENING,
  EV_SENT,
  eA,
  eB,
  eC,
  eHandle,
  eTag,
  eType,
  HANDLE_SLOT_BITS,
  kCommands,
  kConnections,
  kDmaFaults,
  kErrors,
  kEvents,
  kHeldBytes,
  kPauses,
  kPeakHeldBytes,
  kRefused,
  kResumes,
  kRxPaused,
  kToeRxBytes,
  kToeTxBytes,
  kTxBlocked,
  kTxWrites,
  nrCmdHead,
  nrCmdTail,
  nrEvHead,
  nrEvTail,
  nrHolding,
  nrRbHead,
  nrRbTail,
} from "./nic-regs.js";

/** Largest SEND, in bytes: one driver buffer is far smaller; this bounds a rogue length. */
export const MAX_SEND = 1 << 20;
/** Commands taken per service() call before the doorbell loop lets host callbacks run. */
const CMD_BATCH = 256;
const TWO_32 = 2 ** 32;
const SLOT_MASK = (1 << HANDLE_SLOT_BITS) - 1;
const SEQ_LIMIT = 1 << (31 - HANDLE_SLOT_BITS);

/** Where the TOE's three rings are, latched from the registers when the VF was enabled. */
export interface ToeRings {
  readonly cmdBase: number;
  readonly cmdSize: number;
  readonly evBase: number;
  readonly evSize: number;
  readonly rbBase: number;
  readonly rbSize: number;
}

/** What the VF around the TOE provides (src/hw/nic.ts). */
export interface ToeHost {
  /**
   * A host callback queued work: call service() at the next moderation point, and interrupt the
   * driver (publish counters, notify its irq wake word: a message-signalled interrupt) if it
   * wrote events.
   */
  schedule(): void;
  /** A ring the device cannot reach or a broken ring protocol: the VF stops (VF_FAILED). */
  fail(why: string): void;
  /** UDP_BIND and UDP_CLOSE belong to the UDP uplink; the TOE only decodes them. */
  udpBind(tag: number, port: number): void;
  udpClose(tag: number, port: number): void;
}

export interface ToeOptions {
  /** Host address servers listen on. */
  readonly bindAddress: string;
  /** Most handles (listeners + connections) at once, ≤ MAX_HANDLES. */
  readonly maxHandles: number;
}

/** Map a host socket error to the errno the driver sees. */
export function hostErrno(err: unknown): number {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ECONNREFUSED":
      return ECONNREFUSED;
    case "ECONNRESET":
      return ECONNRESET;
    case "EADDRINUSE":
      return EADDRINUSE;
    case "EADDRNOTAVAIL":
      return EADDRNOTAVAIL;
    case "EACCES":
      return EACCES;
    case "EPIPE":
      return EPIPE;
    case "ETIMEDOUT":
      return ETIMEDOUT;
    case "EHOSTUNREACH":
      return EHOSTUNREACH;
    case "ENETUNREACH":
      return ENETUNREACH;
    case "ECONNABORTED":
      return ECONNABORTED;
    case "EMFILE":
      return EMFILE;
    case "ENFILE":
      return ENFILE;
    default:
      return EIO;
  }
}

// Markers in a connection's queue (a Buffer there is received bytes).
const M_ACCEPTED = 1;
const M_CONNECTED = 2;
const M_EOF = 3;
const M_ERROR = 4;
const M_CLOSED = 5;
const M_CONNECT_FAILED = 6;
type QueueItem = Buffer | number;

// A command set aside while its connection waits for 'drain': op, tag, a, b, c.
const DEFERRED_WORDS = 5;

class Listener {
  readonly kind = "listener";
  freed = false;
  listening = false;
  constructor(
    readonly handle: number,
    readonly server: net.Server,
  ) {}
}

class Conn {
  readonly kind = "conn";
  /** CONNECT's tag (0 for an accepted connection). */
  readonly tag: number;
  /** True once the TCP handshake is done (accepted, or 'connect'). */
  connected: boolean;
  listener = 0;
  remoteIp = 0;
  remotePort = 0;
  localPort = 0;
  /** Ordered backlog toward the driver (see the header). */
  readonly q: QueueItem[] = [];
  /** Bytes of q[0] (a Buffer) already delivered. */
  qOff = 0;
  /** Received bytes in q not yet delivered. */
  qBytes = 0;
  /** On the round-robin list of connections with queued work. */
  queued = false;
  /** q holds bytes no RB buffer or EV slot took: the host socket must not read. */
  paused = false;
  /** The driver sent PAUSE: the host socket must not read, and q's bytes wait for RESUME. */
  rxStopped = false;
  /** What the host socket is now: socket.pause() was called last (see #syncReading). */
  socketPaused = false;
  /** This batch's first SEND, not yet written: a second one corks the socket (see #send). */
  txFirst: Buffer | null = null;
  /** The socket is corked for this batch's SENDs: uncork when the batch ends. */
  txCorked = false;
  /** On the list of connections with SENDs of this batch to hand to the socket. */
  txListed = false;
  /** socket.write() returned false: commands wait for 'drain'. */
  blocked = false;
  /** Commands set aside while blocked, DEFERRED_WORDS numbers each, from dHead. */
  readonly deferred: number[] = [];
  dHead = 0;
  writeShut = false;
  /** CLOSE was taken (perhaps set aside until 'drain'): received bytes are dropped from now. */
  closeRequested = false;
  /** CLOSE ran: CLOSED follows the socket's 'close'. */
  closing = false;
  /** The CLOSED marker is queued. */
  closedQueued = false;
  closeTag = 0;
  /** The host socket has closed. */
  dead = false;
  /** The handle is released: every callback ignores this connection. */
  freed = false;
  /** Why the connection failed (errno), 0 while it has not. */
  errno = 0;
  /** socket.writableLength when last sampled: bytes the device holds toward the host. */
  txHeld = 0;

  constructor(
    readonly handle: number,
    readonly socket: net.Socket,
    tag: number,
    connected: boolean,
  ) {
    this.tag = tag;
    this.connected = connected;
  }
}

type HandleEntry = Listener | Conn;

/** A FIFO of 6-int event records (type, tag, handle, a, b, c), growing by doubling. */
class EventFifo {
  #buf = new Int32Array(6 * 16);
  #head = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(type: number, tag: number, handle: number, a: number, b: number, c: number): void {
    const cap = this.#buf.length / 6;
    if (this.#size === cap) this.#grow();
    const at = ((this.#head + this.#size) % (this.#buf.length / 6)) * 6;
    const w = this.#buf;
    w[at] = type;
    w[at + 1] = tag;
    w[at + 2] = handle;
    w[at + 3] = a;
    w[at + 4] = b;
    w[at + 5] = c;
    this.#size++;
  }

  /** Word k (0..5) of the oldest record. */
  peek(k: number): number {
    return this.#buf[this.#head * 6 + k];
  }

  shift(): void {
    this.#head = (this.#head + 1) % (this.#buf.length / 6);
    this.#size--;
  }

  clear(): void {
    this.#head = 0;
    this.#size = 0;
  }

  #grow(): void {
    const cap = this.#buf.length / 6;
    const next = new Int32Array(this.#buf.length * 2);
    for (let i = 0; i < this.#size; i++) {
      const from = ((this.#head + i) % cap) * 6;
      next.set(this.#buf.subarray(from, from + 6), i * 6);
    }
    this.#buf = next;
    this.#head = 0;
  }
}

/**
 * The TOE of one enabled VF: consumes its CMD ring, produces its EV ring, fills its RB ring, and
 * owns its host servers and sockets. Hypervisor thread only.
 */
export class ToeFunction {
  readonly #dma: DmaPort;
  readonly #rid: number;
  readonly #i32: Int32Array;
  /** Word index of the VF's register block in #i32. */
  readonly #regs: number;
  readonly #rings: ToeRings;
  readonly #counters: Float64Array;
  readonly #host: ToeHost;
  readonly #opts: ToeOptions;

  // Device cursors (free-running, published to nr*Head / nrEvTail).
  #cmdHead = 0;
  /** The command tail the last #takeCommands loaded. */
  #cmdSeen = 0;
  #evTail = 0;
  #rbHead = 0;
  // What the last pump saw: a change means room came back (see ready()).
  #seenEvHead = 0;
  #seenRbTail = 0;

  readonly #outbox = new EventFifo();
  /** Round-robin list of connections whose queue holds work. */
  readonly #ready: Conn[] = [];
  /** Connections with SENDs of the current batch not yet handed to their socket. */
  readonly #txList: Conn[] = [];
  readonly #slots: (HandleEntry | undefined)[];
  readonly #seq: Int32Array;
  readonly #freeSlots: number[] = [];
  #rxHeld = 0;
  #txHeld = 0;
  #closed = false;

  // Shadow copies of the three rings (see the header), made once; entry i of a ring is at
  // i × its entry size. #evFlushed and #rbFlushed: entries before them are in guest memory;
  // #rbFetched: RB descriptors before it are in the shadow.
  readonly #cmdShadow: Uint8Array;
  readonly #cmdDv: DataView;
  readonly #evShadow: Uint8Array;
  readonly #evDv: DataView;
  readonly #rbShadow: Uint8Array;
  readonly #rbDv: DataView;
  #evFlushed = 0;
  #rbFetched = 0;
  #rbFlushed = 0;

  constructor(
    dma: DmaPort,
    rid: number,
    i32: Int32Array,
    regsWord: number,
    rings: ToeRings,
    counters: Float64Array,
    host: ToeHost,
    opts: ToeOptions,
  ) {
    this.#dma = dma;
    this.#rid = rid;
    this.#i32 = i32;
    this.#regs = regsWord;
    this.#rings = rings;
    this.#counters = counters;
    this.#host = host;
    this.#opts = opts;
    this.#slots = new Array(opts.maxHandles + 1);
    this.#seq = new Int32Array(opts.maxHandles + 1).fill(1);
    this.#cmdShadow = new Uint8Array(rings.cmdSize * CMD_BYTES);
    this.#cmdDv = new DataView(this.#cmdShadow.buffer);
    this.#evShadow = new Uint8Array(rings.evSize * EV_BYTES);
    this.#evDv = new DataView(this.#evShadow.buffer);
    this.#rbShadow = new Uint8Array(rings.rbSize * DESC_BYTES);
    this.#rbDv = new DataView(this.#rbShadow.buffer);
    for (let s = opts.maxHandles; s >= 1; s--) this.#freeSlots.push(s);
  }

  /** Open handles (listeners and connections). */
  get handles(): number {
    return this.#opts.maxHandles - this.#freeSlots.length;
  }

  /**
   * True when service() can make progress: commands wait and answers have room, or held work
   * waits and the driver freed EV slots or posted RB buffers since the last pump. Cheap: called
   * as the doorbell wait's predicate.
   */
  ready(): boolean {
    const i32 = this.#i32;
    const r = this.#regs;
    if (this.#outbox.size === 0 && Atomics.load(i32, r + nrCmdTail) !== this.#cmdHead) return true; // load: new commands
    if (this.#outbox.size > 0 || this.#ready.length > 0) {
      if (Atomics.load(i32, r + nrEvHead) !== this.#seenEvHead) return true; // load: EV slots freed
      if (Atomics.load(i32, r + nrRbTail) !== this.#seenRbTail) return true; // load: RB buffers posted
    }
    return false;
  }

  /** Take commands (up to a batch) and write what events fit. Returns the events written. */
  service(): number {
    return this.#pump();
  }

  /** Queue an event answering a command (the UDP uplink's UDP_BOUND and ERROR use it too). */
  post(type: number, tag: number, handle: number, a: number, b: number, c: number): void {
    if (!this.#closed) this.#outbox.push(type, tag, handle, a, b, c);
  }

  /** Host callbacks (and the UDP uplink) queued work: pump at the NIC's moderation point. */
  flush(): void {
    if (!this.#closed) this.#host.schedule();
  }

  /** Close every host server and socket and forget all queued work (reset, disable, close). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let s = 1; s < this.#slots.length; s++) {
      const e = this.#slots[s];
      if (!e) continue;
      e.freed = true;
      if (e.kind === "listener") e.server.close();
      else e.socket.destroy();
      this.#slots[s] = undefined;
    }
    this.#outbox.clear();
    this.#ready.length = 0;
    this.#txList.length = 0;
    this.#rxHeld = 0;
    this.#txHeld = 0;
    this.#noteHeld();
  }

  // ---- commands: decode, then invoke ----

  #execute(op: number, tag: number, handle: number, a: number, b: number, c: number): void {
    switch (op) {
      case CMD_LISTEN:
        this.#listen(tag, a, b);
        return;
      case CMD_CONNECT:
        this.#connect(tag, a, b);
        return;
      case CMD_SEND:
      case CMD_SHUTDOWN_WR:
      case CMD_CLOSE: {
        const e = this.#lookup(handle);
        if (!e) {
          this.#error(tag, handle, EBADF, op);
        } else if (e.kind === "listener") {
          if (op === CMD_CLOSE) this.#closeListener(e, tag);
          else this.#error(tag, handle, ENOTCONN, op);
        } else if (e.closing) {
          this.#error(tag, handle, EBADF, op); // after CLOSE the handle takes nothing more
        } else if (e.blocked || e.dHead < e.deferred.length) {
          if (op === CMD_CLOSE) {
            e.closeRequested = true; // the driver wants no more bytes
            this.#dropReceived(e);
          }
          e.deferred.push(op, tag, a, b, c);
        } else {
          this.#connCommand(e, op, tag, a, b, c);
        }
        return;
      }
      case CMD_PAUSE:
      case CMD_RESUME: {
        // The receive side: acts at once, even while the connection's SENDs wait for 'drain'.
        const e = this.#lookup(handle);
        if (!e) this.#error(tag, handle, EBADF, op);
        else if (e.kind === "listener") this.#error(tag, handle, ENOTCONN, op);
        else if (e.closing || e.closeRequested) this.#error(tag, handle, EBADF, op);
        else if (op === CMD_PAUSE) this.#stopReceiving(e);
        else this.#startReceiving(e);
        return;
      }
      case CMD_UDP_BIND:
        this.#host.udpBind(tag, a);
        return;
      case CMD_UDP_CLOSE:
        this.#host.udpClose(tag, a);
        return;
      default:
        this.#counters[kErrors]++;
        this.#error(tag, handle, EINVAL, op);
        return;
    }
  }

  /** A SEND, SHUTDOWN_WR or CLOSE on a connection that is not waiting for 'drain'. */
  #connCommand(conn: Conn, op: number, tag: number, a: number, b: number, c: number): void {
    if (op === CMD_SEND) this.#send(conn, tag, c * TWO_32 + a, b);
    else if (op === CMD_SHUTDOWN_WR) this.#shutdown(conn, tag);
    else this.#close(conn, tag);
  }

  #listen(tag: number, port: number, backlog: number): void {
    if (port > 0xffff || backlog > 0xffff) {
      this.#error(tag, 0, EINVAL, CMD_LISTEN);
      return;
    }
    const handle = this.#allocHandle();
    if (handle < 0) {
      this.#error(tag, 0, EMFILE, CMD_LISTEN);
      return;
    }
    const server = net.createServer({ allowHalfOpen: true });
    const l = new Listener(handle, server);
    this.#slots[handle & SLOT_MASK] = l;
    server.on("connection", (socket: net.Socket) => this.#accept(l, socket));
    server.on("error", (err: Error) => {
      if (l.freed) return;
      if (!l.listening) {
        this.#release(l);
        server.close();
        this.post(EV_ERROR, tag, 0, hostErrno(err), CMD_LISTEN, 0);
      } else {
        this.#counters[kErrors]++;
      }
      this.flush();
    });
    server.on("listening", () => {
      if (l.freed) return;
      l.listening = true;
      const addr = server.address();
      const bound = typeof addr === "object" && addr !== null ? addr.port : port;
      this.post(EV_LISTENING, tag, handle, bound, 0, 0);
      this.flush();
    });
    server.listen({ port, host: this.#opts.bindAddress, backlog: backlog || 511 });
  }

  #accept(l: Listener, socket: net.Socket): void {
    if (l.freed || this.#closed) {
      socket.destroy();
      return;
    }
    const handle = this.#allocHandle();
    if (handle < 0) {
      this.#counters[kRefused]++;
      socket.destroy();
      return;
    }
    const conn = new Conn(handle, socket, 0, true);
    conn.listener = l.handle;
    conn.remoteIp = Math.max(0, parseIpv4(socket.remoteAddress ?? ""));
    conn.remotePort = socket.remotePort ?? 0;
    conn.localPort = socket.localPort ?? 0;
    this.#slots[handle & SLOT_MASK] = conn;
    this.#counters[kConnections]++;
    this.#wire(conn);
    this.#enqueue(conn, M_ACCEPTED);
    this.flush();
  }

  #connect(tag: number, ip: number, port: number): void {
    if (port < 1 || port > 0xffff) {
      this.#error(tag, 0, EINVAL, CMD_CONNECT);
      return;
    }
    const handle = this.#allocHandle();
    if (handle < 0) {
      this.#error(tag, 0, EMFILE, CMD_CONNECT);
      return;
    }
    const socket = net.connect({ host: ipv4ToString(ip), port, allowHalfOpen: true });
    const conn = new Conn(handle, socket, tag, false);
    this.#slots[handle & SLOT_MASK] = conn;
    this.#wire(conn);
    socket.on("connect", () => {
      if (conn.freed) return;
      conn.connected = true;
      conn.localPort = socket.localPort ?? 0;
      this.#counters[kConnections]++;
      this.#enqueue(conn, M_CONNECTED);
      this.flush();
    });
  }

  /** The host socket's events, for accepted and connected connections alike. */
  #wire(conn: Conn): void {
    const s = conn.socket;
    s.setNoDelay(true);
    s.on("data", (chunk: Buffer) => {
      if (conn.freed || conn.closeRequested) return;
      this.#rxHeld += chunk.length;
      this.#noteHeld();
      this.#enqueue(conn, chunk);
      conn.qBytes += chunk.length;
      // A second chunk before the pump took the first: stop reading (TCP's window closes).
      if (conn.qBytes > chunk.length) this.#holdBack(conn);
      this.#host.schedule();
    });
    s.on("end", () => {
      if (conn.freed || conn.closeRequested) return;
      this.#enqueue(conn, M_EOF);
      this.flush();
    });
    s.on("error", (err: Error) => {
      if (conn.freed) return;
      conn.errno = hostErrno(err);
      if (!conn.connected) this.#enqueue(conn, M_CONNECT_FAILED);
      else if (!conn.closeRequested) this.#enqueue(conn, M_ERROR);
      this.flush();
    });
    s.on("drain", () => {
      if (conn.freed) return;
      this.#sampleTx(conn);
      conn.blocked = false;
      this.#runDeferred(conn);
      this.flush();
    });
    s.on("close", () => {
      if (conn.freed) return;
      conn.dead = true;
      this.#sampleTx(conn);
      // Commands set aside for 'drain' will never get it: answer them now (ERRORs, CLOSED).
      conn.blocked = false;
      this.#runDeferred(conn);
      if (conn.closing) this.#queueClosed(conn);
      this.flush();
    });
  }

  #send(conn: Conn, tag: number, iova: number, len: number): void {
    const h = conn.handle;
    if (!conn.connected) {
      this.#error(tag, h, ENOTCONN, CMD_SEND);
      return;
    }
    if (conn.dead || conn.errno !== 0) {
      this.#error(tag, h, conn.errno || EPIPE, CMD_SEND);
      return;
    }
    if (conn.writeShut) {
      this.#error(tag, h, EPIPE, CMD_SEND);
      return;
    }
    if (len < 1 || len > MAX_SEND) {
      this.#error(tag, h, EINVAL, CMD_SEND);
      return;
    }
    // The socket keeps the buffer until it is written: it must be the device's own copy.
    const buf = Buffer.allocUnsafe(len);
    if (!this.#dmaRead(iova, buf)) {
      this.#error(tag, h, EFAULT, CMD_SEND);
      return;
    }
    this.#counters[kToeTxBytes] += len;
    this.post(EV_SENT, tag, h, 0, len, 0);
    if (!conn.txListed) {
      conn.txListed = true;
      this.#txList.push(conn);
    }
    if (conn.txFirst === null && !conn.txCorked) {
      conn.txFirst = buf; // written when the batch ends, alone or with the SENDs after it
      return;
    }
    if (!conn.txCorked) {
      conn.txCorked = true;
      conn.socket.cork();
      conn.socket.write(conn.txFirst as Buffer);
      conn.txFirst = null;
    }
    // Corked: it leaves with the batch's writev at uncork, where a full socket marks the
    // connection blocked. The batch is bounded by the driver's SEND buffers.
    conn.socket.write(buf);
  }

  /** socket.write(), noting when the socket's buffer is full (later commands wait for 'drain'). */
  #write(conn: Conn, buf: Buffer): void {
    if (!conn.socket.write(buf) && !conn.blocked) {
      conn.blocked = true;
      this.#counters[kTxBlocked]++;
    }
  }

  /** Hand a connection's SENDs of this batch to its socket: one write, or one uncork (writev). */
  #flushTx(conn: Conn): void {
    if (!conn.txListed) return;
    conn.txListed = false;
    if (conn.dead) {
      conn.txFirst = null; // reset by the device meanwhile (#abort): nothing goes out
      conn.txCorked = false;
      return;
    }
    const first = conn.txFirst;
    if (first !== null) {
      conn.txFirst = null;
      this.#write(conn, first);
    } else if (conn.txCorked) {
      conn.txCorked = false;
      conn.socket.uncork();
      if (conn.socket.writableNeedDrain && !conn.blocked) {
        conn.blocked = true; // later commands wait for 'drain'
        this.#counters[kTxBlocked]++;
      }
    }
    this.#counters[kTxWrites]++;
    this.#sampleTx(conn);
  }

  #flushTxList(): void {
    const list = this.#txList;
    for (let i = 0; i < list.length; i++) this.#flushTx(list[i]);
    list.length = 0;
  }

  #shutdown(conn: Conn, tag: number): void {
    if (!conn.connected) {
      this.#error(tag, conn.handle, ENOTCONN, CMD_SHUTDOWN_WR);
      return;
    }
    if (conn.dead) {
      this.#error(tag, conn.handle, conn.errno || ENOTCONN, CMD_SHUTDOWN_WR);
      return;
    }
    if (conn.writeShut) return;
    conn.writeShut = true;
    this.#flushTx(conn);
    conn.socket.end(); // FIN after everything written so far
  }

  /** CLOSE: drop what the driver no longer wants, flush what it sent, then CLOSED. */
  #close(conn: Conn, tag: number): void {
    conn.closeRequested = true;
    this.#dropReceived(conn);
    conn.closing = true;
    conn.closeTag = tag;
    this.#flushTx(conn);
    if (conn.dead || !conn.connected) {
      this.#queueClosed(conn);
      if (!conn.connected) conn.socket.destroy();
      return;
    }
    // Read and drop, rather than leave the peer stalled on a full window.
    conn.paused = false;
    conn.rxStopped = false;
    this.#syncReading(conn);
    conn.socket.destroySoon(); // end() and destroy once every written byte is out
  }

  /** PAUSE: stop reading the host socket; queued bytes wait (see #deliverQueued). */
  #stopReceiving(conn: Conn): void {
    if (conn.rxStopped) return;
    conn.rxStopped = true;
    this.#counters[kPauses]++;
    this.#syncReading(conn);
  }

  /** RESUME: queued bytes move again, and the socket reads once they are delivered. */
  #startReceiving(conn: Conn): void {
    if (!conn.rxStopped) return;
    conn.rxStopped = false;
    this.#counters[kResumes]++;
    if (conn.q.length > 0 && !conn.queued) {
      conn.queued = true;
      this.#ready.push(conn);
    }
    this.#syncReading(conn);
  }

  /** Pause or resume the host socket: it reads only while neither the device nor the driver holds it. */
  #syncReading(conn: Conn): void {
    const stop = conn.paused || conn.rxStopped;
    if (stop === conn.socketPaused || conn.dead || conn.freed) return;
    conn.socketPaused = stop;
    if (stop) conn.socket.pause();
    else conn.socket.resume();
  }

  #closeListener(l: Listener, tag: number): void {
    this.#release(l);
    l.server.close(); // stops accepting at once; accepted connections live on
    this.post(EV_CLOSED, tag, l.handle, 0, 0, 0);
  }

  #queueClosed(conn: Conn): void {
    if (conn.closedQueued) return;
    conn.closedQueued = true;
    this.#enqueue(conn, M_CLOSED);
  }

  /** Run the commands a connection set aside while it waited for 'drain', until it blocks again. */
  #runDeferred(conn: Conn): void {
    const d = conn.deferred;
    let i = conn.dHead;
    while (i < d.length && !conn.blocked && !conn.freed) {
      const op = d[i];
      const tag = d[i + 1];
      const a = d[i + 2];
      const b = d[i + 3];
      const c = d[i + 4];
      i += DEFERRED_WORDS;
      if (conn.closing) this.#error(tag, conn.handle, EBADF, op);
      else this.#connCommand(conn, op, tag, a, b, c);
    }
    this.#flushTxList();
    if (i >= d.length) {
      d.length = 0;
      conn.dHead = 0;
    } else {
      conn.dHead = i;
    }
  }

  /** Forget received bytes and host events the driver will not read (it is closing). */
  #dropReceived(conn: Conn): void {
    const q = conn.q;
    for (let i = 0; i < q.length; i++) {
      const item = q[i];
      if (typeof item !== "number") this.#rxHeld -= item.length - (i === 0 ? conn.qOff : 0);
    }
    q.length = 0;
    conn.qOff = 0;
    conn.qBytes = 0;
    this.#noteHeld();
  }

  #error(tag: number, handle: number, errno: number, op: number): void {
    this.post(EV_ERROR, tag, handle, errno, op, 0);
  }

  // ---- events: the pump ----

  #enqueue(conn: Conn, item: QueueItem): void {
    conn.q.push(item);
    if (!conn.queued) {
      conn.queued = true;
      this.#ready.push(conn);
    }
  }

  /**
   * One pass of the device: write the outbox (answers to commands, in order), take the commands
   * that wait (up to a batch), then write one event per connection in turn, filling RB buffers.
   * Publishes RB head, EV tail and the holding flag. Returns the events written.
   *
   * The RB tail is loaded before the command tail, and no buffer is filled while a command
   * published before that command tail is still untaken: a PAUSE the driver published before
   * re-posting buffers always acts before those buffers are filled (JS atomics are sequentially
   * consistent, so seeing the buffers means seeing the command).
   */
  #pump(): number {
    if (this.#closed) return 0;
    const i32 = this.#i32;
    const r = this.#regs;
    const rbTail = Atomics.load(i32, r + nrRbTail); // consume: RB buffers posted before tail
    this.#seenRbTail = rbTail;
    let written = this.#writeOutbox();
    if (this.#outbox.size === 0 && !this.#closed) written += this.#takeCommands();
    if (this.#closed) return written;
    if (this.#outbox.size === 0 && this.#cmdHead === this.#cmdSeen) {
      written += this.#deliverQueued(rbTail);
      if (this.#closed) return written;
    }
    if (!this.#flushShadows()) return written;
    Atomics.store(i32, r + nrRbHead, this.#rbHead); // publish: buffers filled
    Atomics.store(i32, r + nrEvTail, this.#evTail); // publish: events written (after their data)
    this.#publishHolding();
    this.#counters[kEvents] += written;
    return written;
  }

  /**
   * Write the staged events and RB write-backs into guest memory, one DMA per contiguous run
   * (two at a ring's wrap). False if the ring is unwritable (the VF failed).
   */
  #flushShadows(): boolean {
    const rings = this.#rings;
    if (this.#rbFlushed !== this.#rbHead) {
      const ok = this.#writeRun(
        this.#rbShadow,
        rings.rbBase,
        rings.rbSize,
        DESC_BYTES,
        this.#rbFlushed,
        this.#rbHead,
      );
      if (!ok) {
        this.#host.fail(`toe: receive-buffer ring unwritable at IOVA ${rings.rbBase}`);
        return false;
      }
      this.#rbFlushed = this.#rbHead;
    }
    if (this.#evFlushed !== this.#evTail) {
      const ok = this.#writeRun(
        this.#evShadow,
        rings.evBase,
        rings.evSize,
        EV_BYTES,
        this.#evFlushed,
        this.#evTail,
      );
      if (!ok) {
        this.#host.fail(`toe: event ring unwritable at IOVA ${rings.evBase}`);
        return false;
      }
      this.#evFlushed = this.#evTail;
    }
    return true;
  }

  /** DMA entries [from, to) (free-running) of a ring from its shadow: ≤ 2 runs. */
  #writeRun(
    shadow: Uint8Array,
    base: number,
    size: number,
    bytes: number,
    from: number,
    to: number,
  ): boolean {
    let i = from;
    while (i !== to) {
      const slot = i & (size - 1);
      const n = Math.min((to - i) >>> 0, size - slot);
      const at = slot * bytes;
      if (!this.#dmaWrite(base + at, shadow.subarray(at, at + n * bytes))) return false;
      i = (i + n) | 0;
    }
    return true;
  }

  /** Free EV slots now, or -1 if the driver's head is out of bounds (the VF failed). */
  #evRoom(): number {
    const evHead = Atomics.load(this.#i32, this.#regs + nrEvHead); // consume: slots the driver freed
    this.#seenEvHead = evHead;
    const used = (this.#evTail - evHead) >>> 0;
    if (used > this.#rings.evSize) {
      this.#host.fail(`toe: event head ${evHead} ran past tail ${this.#evTail}`);
      return -1;
    }
    return this.#rings.evSize - used;
  }

  /** Write what fits of the outbox into the EV ring (not yet published). */
  #writeOutbox(): number {
    const out = this.#outbox;
    if (out.size === 0) return 0;
    let room = this.#evRoom();
    let written = 0;
    while (out.size > 0 && room > 0) {
      this.#writeEvent(
        out.peek(0),
        out.peek(1),
        out.peek(2),
        out.peek(3),
        out.peek(4),
        out.peek(5),
      );
      out.shift();
      room--;
      written++;
    }
    return written;
  }

  /**
   * Take the commands published so far, up to a batch, while their answers have room; then hand
   * the batch's SENDs to the host sockets. Returns the events written meanwhile.
   */
  #takeCommands(): number {
    const i32 = this.#i32;
    const r = this.#regs;
    const tail = Atomics.load(i32, r + nrCmdTail); // consume: commands published before tail
    this.#cmdSeen = tail;
    if (tail === this.#cmdHead) return 0;
    if ((tail - this.#cmdHead) >>> 0 > this.#rings.cmdSize) {
      this.#host.fail(`toe: command tail ${tail} ran past head ${this.#cmdHead} by over the ring`);
      return 0;
    }
    const rings = this.#rings;
    const dv = this.#cmdDv;
    let n = 0;
    let fetched = this.#cmdHead; // commands before it are in the shadow
    let written = 0;
    while (this.#cmdHead !== tail && this.#outbox.size === 0 && n < CMD_BATCH && !this.#closed) {
      const slot = this.#cmdHead & (rings.cmdSize - 1);
      if (this.#cmdHead === fetched) {
        // Read what waits up to the ring's wrap (or the batch's end) with one DMA.
        const k = Math.min((tail - fetched) >>> 0, rings.cmdSize - slot, CMD_BATCH - n);
        const at = slot * CMD_BYTES;
        if (!this.#dmaRead(rings.cmdBase + at, this.#cmdShadow.subarray(at, at + k * CMD_BYTES))) {
          this.#host.fail(`toe: command ring unreadable at IOVA ${rings.cmdBase + at}`);
          return written;
        }
        fetched = (fetched + k) | 0;
      }
      this.#cmdHead = (this.#cmdHead + 1) | 0;
      n++;
      this.#counters[kCommands]++;
      const e = slot * CMD_BYTES;
      this.#execute(
        dv.getUint32(e + cOp, true),
        dv.getInt32(e + cTag, true),
        dv.getInt32(e + cHandle, true),
        dv.getUint32(e + cA, true),
        dv.getUint32(e + cB, true),
        dv.getUint32(e + cC, true),
      );
      if (this.#outbox.size > 0) written += this.#writeOutbox();
    }
    if (this.#closed) return written;
    Atomics.store(i32, r + nrCmdHead, this.#cmdHead); // publish: slots free
    this.#flushTxList();
    return written;
  }

  /** Write the connections' queued work, one event per connection in turn (round-robin). */
  #deliverQueued(rbTail: number): number {
    if ((rbTail - this.#rbHead) >>> 0 > this.#rings.rbSize) {
      this.#host.fail(`toe: receive-buffer tail ${rbTail} ran past head ${this.#rbHead}`);
      return 0;
    }
    const list = this.#ready;
    if (list.length === 0) return 0;
    let room = this.#evRoom();
    let written = 0;
    while (list.length > 0 && room > 0 && !this.#closed) {
      const conn = list[0];
      const item = conn.q[0];
      if (conn.freed || item === undefined) {
        list.shift();
        conn.queued = false;
        continue;
      }
      if (typeof item === "number") {
        this.#writeMarker(conn, item);
        conn.q.shift();
      } else if (conn.rxStopped) {
        list.shift(); // PAUSE: its bytes (and what follows them) wait for RESUME
        conn.queued = false;
        continue;
      } else {
        if (this.#rbHead === rbTail) break; // no buffer posted: everything waits for RB tail
        if (!this.#deliver(conn, item, rbTail)) return written;
      }
      room--;
      written++;
      list.shift();
      if (conn.q.length > 0 && !conn.freed) {
        list.push(conn); // round-robin: one event per connection per turn
      } else {
        conn.queued = false;
        if (conn.paused && !conn.freed) {
          conn.paused = false; // its bytes are all delivered: let TCP's window open again
          this.#syncReading(conn);
        }
      }
    }
    // Bytes still queued (no buffer or no event slot): stop reading those sockets.
    for (let i = 0; i < list.length; i++) if (list[i].qBytes > 0) this.#holdBack(list[i]);
    return written;
  }

  /** The device holds bytes of `conn` it cannot deliver yet: pause its host socket. */
  #holdBack(conn: Conn): void {
    if (conn.paused || conn.freed) return;
    conn.paused = true;
    this.#counters[kRxPaused]++;
    this.#syncReading(conn);
  }

  /** Tell the driver whether freed EV slots or posted RB buffers would let held work move. */
  #publishHolding(): void {
    const holding = this.#outbox.size > 0 || this.#ready.length > 0 ? 1 : 0;
    Atomics.store(this.#i32, this.#regs + nrHolding, holding); // publish: before the device parks
  }

  #writeMarker(conn: Conn, m: number): void {
    const h = conn.handle;
    switch (m) {
      case M_ACCEPTED:
        this.#writeEvent(EV_ACCEPTED, 0, h, conn.remoteIp, conn.remotePort, conn.listener);
        return;
      case M_CONNECTED:
        this.#writeEvent(EV_CONNECTED, conn.tag, h, conn.localPort, 0, 0);
        return;
      case M_EOF:
        this.#writeEvent(EV_EOF, 0, h, 0, 0, 0);
        return;
      case M_ERROR:
        this.#writeEvent(EV_ERROR, 0, h, conn.errno, 0, 0);
        return;
      case M_CLOSED:
        this.#release(conn);
        this.#writeEvent(EV_CLOSED, conn.closeTag, h, 0, 0, 0);
        return;
      default:
        // M_CONNECT_FAILED: the driver never learnt the handle; it is released here.
        this.#release(conn);
        conn.socket.destroy();
        this.#writeEvent(EV_ERROR, conn.tag, h, conn.errno, CMD_CONNECT, 0);
        return;
    }
  }

  /**
   * Fill the next RB buffer with the connection's next bytes and report it with a DATA event.
   * A buffer the IOMMU refuses is reported (DATA with errno EFAULT) and aborts the connection:
   * TCP bytes are never silently lost, so the stream fails instead.
   */
  #deliver(conn: Conn, chunk: Buffer, rbTail: number): boolean {
    const rings = this.#rings;
    const slot = this.#rbHead & (rings.rbSize - 1);
    if (this.#rbHead === this.#rbFetched) {
      // Read the posted descriptors up to the ring's wrap with one DMA.
      const k = Math.min((rbTail - this.#rbHead) >>> 0, rings.rbSize - slot);
      const at = slot * DESC_BYTES;
      if (!this.#dmaRead(rings.rbBase + at, this.#rbShadow.subarray(at, at + k * DESC_BYTES))) {
        this.#host.fail(`toe: receive-buffer ring unreadable at IOVA ${rings.rbBase + at}`);
        return false;
      }
      this.#rbFetched = (this.#rbFetched + k) | 0;
    }
    const dv = this.#rbDv;
    const d = slot * DESC_BYTES;
    const iova = dv.getUint32(d + dIovaHi, true) * TWO_32 + dv.getUint32(d + dIovaLo, true);
    const cap = dv.getUint32(d + dLength, true);
    const n = Math.min(cap, chunk.length - conn.qOff);
    let errno = 0;
    if (n === 0) errno = EINVAL;
    else if (!this.#dmaWrite(iova, chunk.subarray(conn.qOff, conn.qOff + n))) errno = EFAULT;
    // Write-back into the shadow: #flushShadows writes it before RB head is published.
    dv.setUint32(d + dLength, errno === 0 ? n : 0, true);
    dv.setUint32(d + dFlags, errno === 0 ? DF_DONE : DF_DONE | DF_ERR, true);
    this.#rbHead = (this.#rbHead + 1) | 0;
    const len = errno === 0 ? n : 0;
    this.#writeEvent(EV_DATA, 0, conn.handle, slot, len, errno);
    if (errno !== 0) {
      this.#counters[kErrors]++;
      this.#abort(conn, errno);
      return true;
    }
    this.#counters[kToeRxBytes] += n;
    this.#rxHeld -= n;
    conn.qBytes -= n;
    this.#noteHeld();
    conn.qOff += n;
    if (conn.qOff === chunk.length) {
      conn.q.shift();
      conn.qOff = 0;
    }
    return true;
  }

  /** Fail a connection from the device side: drop its queue, reset the host socket. */
  #abort(conn: Conn, errno: number): void {
    this.#dropReceived(conn);
    conn.errno = errno;
    conn.dead = true;
    conn.socket.destroy();
  }

  /** Stage an event in the shadow EV ring (#flushShadows writes it); the caller checked room. */
  #writeEvent(type: number, tag: number, handle: number, a: number, b: number, c: number): void {
    const dv = this.#evDv;
    const at = (this.#evTail & (this.#rings.evSize - 1)) * EV_BYTES;
    dv.setUint32(at + eType, type, true);
    dv.setInt32(at + eTag, tag, true);
    dv.setInt32(at + eHandle, handle, true);
    dv.setUint32(at + eA, a >>> 0, true);
    dv.setUint32(at + eB, b >>> 0, true);
    dv.setUint32(at + eC, c >>> 0, true);
    this.#evTail = (this.#evTail + 1) | 0;
  }

  #dmaRead(iova: number, dst: Uint8Array): boolean {
    if (this.#dma.read(this.#rid, iova, dst) === DMA_OK) return true;
    this.#counters[kDmaFaults]++;
    this.#counters[kErrors]++;
    return false;
  }

  #dmaWrite(iova: number, src: Uint8Array): boolean {
    if (this.#dma.write(this.#rid, iova, src) === DMA_OK) return true;
    this.#counters[kDmaFaults]++;
    this.#counters[kErrors]++;
    return false;
  }

  // ---- handles ----

  #allocHandle(): number {
    const slot = this.#freeSlots.pop();
    if (slot === undefined) return -1;
    return slot | (this.#seq[slot] << HANDLE_SLOT_BITS);
  }

  #lookup(handle: number): HandleEntry | undefined {
    if (handle <= 0) return undefined;
    const e = this.#slots[handle & SLOT_MASK];
    return e && e.handle === handle && !e.freed ? e : undefined;
  }

  #release(e: HandleEntry): void {
    if (e.freed) return;
    e.freed = true;
    const slot = e.handle & SLOT_MASK;
    this.#slots[slot] = undefined;
    const next = this.#seq[slot] + 1;
    this.#seq[slot] = next >= SEQ_LIMIT ? 1 : next;
    this.#freeSlots.push(slot);
    if (e.kind === "conn") {
      this.#txHeld -= e.txHeld;
      e.txHeld = 0;
      this.#noteHeld();
    }
  }

  // ---- held bytes (the device's memory use) ----

  #sampleTx(conn: Conn): void {
    const now = conn.dead ? 0 : conn.socket.writableLength;
    this.#txHeld += now - conn.txHeld;
    conn.txHeld = now;
    this.#noteHeld();
  }

  #noteHeld(): void {
    const held = this.#rxHeld + this.#txHeld;
    const c = this.#counters;
    c[kHeldBytes] = held;
    if (held > c[kPeakHeldBytes]) c[kPeakHeldBytes] = held;
  }
}
