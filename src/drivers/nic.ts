/**
 * nic driver: drives one NIC virtual function (src/hw/nic.ts) from a worker thread — the network
 * domain, or an XOS core given its own VF for kernel bypass. It lays its rings and buffer pools
 * in the VF's DMA region, programs the registers, and offers frames (TX/RX rings), UDP datagrams
 * (frames to the gateway) and TCP through the offload engine (command and event queues).
 *
 * Non-blocking: no call here waits. The caller's loop parks on its own wake word, which it names
 * in `irqWord` (the device notifies it after posting work: an MSI-X message in spirit), with
 * {@link NicDriver.hasWork} as the predicate; each round it calls pollEvents (and/or
 * receiveFrames), queues what it wants to send, and ends with one flush() — a single doorbell
 * for everything queued in the round (FlexSC's batching).
 *
 * DMA region layout (offsets from dma.phys for the driver, from dma.iova for the device; every
 * area line-aligned, sizes from {@link NicDriverOptions}):
 *
 *   ┌─────────┬─────────┬─────────┬──────────┬──────────┬──────────────┬──────────────┬──────────────┬──────────────┐
 *   │ TX ring │ RX ring │ RB ring │ CMD ring │ EV ring  │ TX frame     │ RX frame     │ TOE send     │ TOE receive  │
 *   │ 16 B ×T │ 16 B ×R │ 16 B ×B │ 32 B ×C  │ 32 B ×E  │ 2 KiB × T    │ 2 KiB × R    │ buf × S      │ buf × B      │
 *   └─────────┴─────────┴─────────┴──────────┴──────────┴──────────────┴──────────────┴──────────────┴──────────────┘
 *
 * Buffer ownership: TX descriptor slot i always carries TX frame buffer i, RX slot i RX frame
 * buffer i, RB slot i TOE receive buffer i — the rings complete in order, so a slot's buffer is
 * free exactly when its slot is. TOE send buffers are a free stack: a SEND command carries the
 * buffer's index as its tag, and the SENT (or ERROR) that answers it gives the buffer back.
 *
 * Views handed to callbacks (frames, datagram payloads, received TCP bytes) point into the DMA
 * region and are valid only during the callback; the buffer is re-posted to the device after.
 * Event objects are reused (one per type): copy what must outlive the callback.
 *
 * Receive window: the caller keeps what it copies out of DATA events, so it bounds its own
 * memory with pauseReceive(conn) (the device stops reading that host socket: TCP's window
 * closes on the peer) and resumeReceive(conn). Commands queued during pollEvents are published
 * before its re-posted receive buffers, and the device takes commands before it fills buffers,
 * so after a pause the connection gets at most the buffers that were posted before it: a caller
 * that pauses at RX_WINDOW_HIGH holds at most RX_WINDOW_HIGH + (RB ring × buffer) bytes of it.
 *
 * Reset: the device bumps vrGeneration on every function-level reset (the supervisor's, a PF's,
 * or {@link NicDriver.requestReset}); from then on the driver does nothing until reattach().
 * Who calls: one thread per VF; not re-entrant (do not call pollEvents from its callback).
 */

import { EAGAIN } from "../abi/errno.js";
import { checkInteger, InvalidArgumentError, IoError, panic } from "../errors.js";
import {
  parseUdpFrame,
  UDP_FRAME_OVERHEAD,
  type UdpFrameInfo,
  udpFrameInfo,
  writeUdpHeaders,
} from "../hw/net-headers.js";
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
  DF_EOP,
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
  EV_UDP_BOUND,
  eA,
  eB,
  eC,
  eHandle,
  eTag,
  eType,
  GATEWAY_MAC,
  MAX_FRAME,
  MAX_RING,
  MIN_FRAME,
  nrCmdBaseHi,
  nrCmdBaseLo,
  nrCmdHead,
  nrCmdSize,
  nrCmdTail,
  nrDoorbellWakes,
  nrEvBaseHi,
  nrEvBaseLo,
  nrEvHead,
  nrEvSize,
  nrEvTail,
  nrHolding,
  nrRbBaseHi,
  nrRbBaseLo,
  nrRbSize,
  nrRbTail,
  nrRxBaseHi,
  nrRxBaseLo,
  nrRxHead,
  nrRxSize,
  nrRxTail,
  nrSockRxHeld,
  nrSockRxPeak,
  nrTxBaseHi,
  nrTxBaseLo,
  nrTxHead,
  nrTxSize,
  nrTxTail,
  vfIpv4,
  vfMac,
} from "../hw/nic-regs.js";
import type { PhysicalMemory } from "../hw/physmem.js";
import {
  VF_DOORBELL_WAKE,
  VF_FAILED,
  VF_MAGIC_NIC,
  VF_READY,
  VFC_ENABLE,
  VFC_RESET,
  type VfDescriptor,
  vrControl,
  vrGeneration,
  vrIrqWord,
  vrMagic,
  vrStatus,
} from "../hw/vf.js";
import { CACHE_LINE } from "../shm/layout.js";
import { Notifier, WAKE_WORD_BYTES } from "../shm/wake.js";

const TWO_32 = 2 ** 32;
/** Bytes of one TX or RX frame buffer. */
export const FRAME_BUFFER_BYTES = MAX_FRAME;
/** Largest UDP payload sendDatagram takes: what fits in one frame. */
export const MAX_DATAGRAM = MAX_FRAME - UDP_FRAME_OVERHEAD;

/**
 * The receive window of a socket layer over this driver (domains/network.ts): received bytes it
 * holds for one connection before it pauses it. 256 KiB: twice Linux's default receive buffer
 * (tcp_rmem 128 KiB), and more than a connection receives in the ≈ 100 µs it takes to wake a
 * parked program even at 1 GB/s, ten times what an echo through this machine sustains
 * (≈ 100 MiB/s each way) — a program that keeps reading never sees a pause — while 1,000
 * stalled connections hold about a quarter of a GB, not without limit.
 */
export const RX_WINDOW_HIGH = 256 * 1024;
/**
 * Resume a paused connection once the program has drained it below this: a quarter of the
 * window, so a reader taking small pieces does not make every recv a PAUSE or RESUME (hysteresis).
 */
export const RX_WINDOW_LOW = 64 * 1024;

export interface NicDriverOptions {
  /** Physical byte offset of the wake word the device notifies (line-aligned); 0: none (poll). */
  readonly irqWord?: number;
  /** TX frame descriptors (and frame buffers); a power of two. Default 64. */
  readonly txRing?: number;
  /** RX frame descriptors (and frame buffers); a power of two. Default 64. */
  readonly rxRing?: number;
  /** TOE command entries; a power of two. Default 256. */
  readonly cmdRing?: number;
  /** TOE event entries; a power of two. Default 512. */
  readonly eventRing?: number;
  /** TOE receive buffers (the RB ring); a power of two. Default 64. */
  readonly toeRxBuffers?: number;
  /** TOE send buffers. Default 64. */
  readonly toeTxBuffers?: number;
  /** Bytes of each TOE buffer, a multiple of 64. Default 4096. */
  readonly toeBufferBytes?: number;
}

/** Where each area lies, as byte offsets from the start of the DMA region. */
export interface NicDmaLayout {
  readonly txRing: number;
  readonly rxRing: number;
  readonly rbRing: number;
  readonly cmdRing: number;
  readonly eventRing: number;
  readonly txFrames: number;
  readonly rxFrames: number;
  readonly toeTx: number;
  readonly toeRx: number;
  /** Bytes the layout needs in all. */
  readonly bytes: number;
  readonly sizes: Required<Omit<NicDriverOptions, "irqWord">>;
}

const DEFAULTS: Required<Omit<NicDriverOptions, "irqWord">> = {
  txRing: 64,
  rxRing: 64,
  cmdRing: 256,
  eventRing: 512,
  toeRxBuffers: 64,
  toeTxBuffers: 64,
  toeBufferBytes: 4096,
};

function ringSize(name: string, v: number | undefined, dflt: number): number {
  const n = checkInteger(name, v ?? dflt, 1, MAX_RING);
  if ((n & (n - 1)) !== 0)
    throw new InvalidArgumentError(`${name} must be a power of two, got ${n}`);
  return n;
}

/** The DMA layout `opts` asks for (throws InvalidArgumentError on a bad option). */
export function nicDmaLayout(opts: NicDriverOptions = {}): NicDmaLayout {
  const sizes = {
    txRing: ringSize("txRing", opts.txRing, DEFAULTS.txRing),
    rxRing: ringSize("rxRing", opts.rxRing, DEFAULTS.rxRing),
    cmdRing: ringSize("cmdRing", opts.cmdRing, DEFAULTS.cmdRing),
    eventRing: ringSize("eventRing", opts.eventRing, DEFAULTS.eventRing),
    toeRxBuffers: ringSize("toeRxBuffers", opts.toeRxBuffers, DEFAULTS.toeRxBuffers),
    toeTxBuffers: checkInteger(
      "toeTxBuffers",
      opts.toeTxBuffers ?? DEFAULTS.toeTxBuffers,
      1,
      65536,
    ),
    toeBufferBytes: checkInteger(
      "toeBufferBytes",
      opts.toeBufferBytes ?? DEFAULTS.toeBufferBytes,
      CACHE_LINE,
      1 << 20,
    ),
  };
  if (sizes.toeBufferBytes % CACHE_LINE !== 0) {
    throw new InvalidArgumentError(
      `toeBufferBytes must be a multiple of ${CACHE_LINE}, got ${sizes.toeBufferBytes}`,
    );
  }
  let at = 0;
  const take = (bytes: number): number => {
    const off = at;
    at += Math.ceil(bytes / CACHE_LINE) * CACHE_LINE;
    return off;
  };
  const txRing = take(sizes.txRing * DESC_BYTES);
  const rxRing = take(sizes.rxRing * DESC_BYTES);
  const rbRing = take(sizes.toeRxBuffers * DESC_BYTES);
  const cmdRing = take(sizes.cmdRing * CMD_BYTES);
  const eventRing = take(sizes.eventRing * EV_BYTES);
  const txFrames = take(sizes.txRing * FRAME_BUFFER_BYTES);
  const rxFrames = take(sizes.rxRing * FRAME_BUFFER_BYTES);
  const toeTx = take(sizes.toeTxBuffers * sizes.toeBufferBytes);
  const toeRx = take(sizes.toeRxBuffers * sizes.toeBufferBytes);
  return {
    txRing,
    rxRing,
    rbRing,
    cmdRing,
    eventRing,
    txFrames,
    rxFrames,
    toeTx,
    toeRx,
    bytes: at,
    sizes,
  };
}

/** Bytes of DMA region the default driver layout needs. */
export const NIC_DMA_BYTES = nicDmaLayout().bytes;

// ---- events ----

/** A listener is up: `listener` is its handle (close(listener) stops it), `port` its port. */
export interface ListeningEvent {
  readonly type: "listening";
  readonly token: number;
  readonly listener: number;
  readonly port: number;
}
/** A host client connected to a listener. */
export interface AcceptedEvent {
  readonly type: "accepted";
  readonly listener: number;
  /** The listener's port. */
  readonly port: number;
  readonly conn: number;
  readonly remoteIp: number;
  readonly remotePort: number;
}
export interface ConnectedEvent {
  readonly type: "connected";
  readonly token: number;
  readonly conn: number;
  readonly localPort: number;
}
/** Received bytes, in order; the view is valid only during the callback. */
export interface DataEvent {
  readonly type: "data";
  readonly conn: number;
  readonly bytes: Uint8Array;
}
/** The peer sent FIN: no bytes follow. */
export interface EofEvent {
  readonly type: "eof";
  readonly conn: number;
}
/** `length` bytes of the connection left the machine: send() may take more. */
export interface SentEvent {
  readonly type: "sent";
  readonly conn: number;
  readonly length: number;
}
/** The answer to close(handle): the handle (connection or listener) is gone. */
export interface ClosedEvent {
  readonly type: "closed";
  readonly token: number;
  readonly conn: number;
}
/**
 * A command failed (`token` > 0: the token it returned; `conn` may be 0) or a connection failed
 * (`token` 0: ECONNRESET, EFAULT, … or a send's EPIPE). `errno` is positive.
 */
export interface ErrorEvent {
  readonly type: "error";
  readonly token: number;
  readonly conn: number;
  readonly errno: number;
}
export interface UdpBoundEvent {
  readonly type: "udp-bound";
  readonly token: number;
  readonly port: number;
}
/** A UDP datagram for this VF; the payload view is valid only during the callback. */
export interface DatagramEvent {
  readonly type: "datagram";
  readonly srcIp: number;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
}
/** Any other frame the RX ring received (switch traffic); valid only during the callback. */
export interface FrameEvent {
  readonly type: "frame";
  readonly frame: Uint8Array;
}

export type ToeEvent =
  | ListeningEvent
  | AcceptedEvent
  | ConnectedEvent
  | DataEvent
  | EofEvent
  | SentEvent
  | ClosedEvent
  | ErrorEvent
  | UdpBoundEvent
  | DatagramEvent
  | FrameEvent;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Counters the driver keeps (its own thread's view). */
export interface NicDriverStats {
  readonly framesSent: number;
  readonly framesReceived: number;
  /** TX descriptors the device wrote back with ERR. */
  readonly txErrors: number;
  /** RX descriptors the device wrote back with ERR (frame not delivered). */
  readonly rxErrors: number;
  readonly events: number;
  readonly doorbells: number;
  /** Doorbells that found the device parked (an Atomics.notify each), since construction. */
  readonly doorbellWakes: number;
  /** pauseReceive / resumeReceive commands queued. */
  readonly pauses: number;
  readonly resumes: number;
}

/**
 * The driver of one NIC VF. Construct it on the thread that will drive the VF; the VF must be
 * enabled by its PF (status VF_READY) and not configured by another driver.
 */
export class NicDriver {
  readonly vf: VfDescriptor;
  /** This VF's MAC address (48-bit number) and IPv4 address, derived from its index. */
  readonly mac: number;
  readonly ipv4: number;
  readonly layout: NicDmaLayout;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #dv: DataView;
  /** Word index of the register block. */
  readonly #r: number;
  readonly #irqWord: number;
  readonly #bell: Notifier;
  readonly #udp: UdpFrameInfo = udpFrameInfo();
  // Physical and IOVA bases of the region.
  readonly #phys: number;
  readonly #iova: number;
  // Ring masks and sizes.
  readonly #txSize: number;
  readonly #rxSize: number;
  readonly #cmdSize: number;
  readonly #evSize: number;
  readonly #rbSize: number;
  readonly #bufBytes: number;

  // Driver cursors (free-running u32 as int32).
  #generation = 0;
  #txTail = 0;
  #txPublished = 0;
  #txClean = 0;
  #rxNext = 0;
  #cmdTail = 0;
  #cmdPublished = 0;
  #cmdHeadSeen = 0;
  #evNext = 0;
  #rbTail = 0;
  /** Freed EV slots or posted RB buffers not yet rung for. */
  #roomPending = false;
  /** Commands published by pollEvents (ahead of its re-posted buffers), not yet rung for. */
  #bellPending = false;
  /** The doorbell's notify count when the driver last attached (the register counts from it). */
  #bellBase = 0;
  #nextToken = 1;
  /** TOE send buffers free now: a stack of indexes. */
  readonly #txFree: Int32Array;
  #txFreeTop = 0;
  /** Listener handle → port, for AcceptedEvent.port. */
  readonly #listenerPorts = new Map<number, number>();
  readonly #stats = {
    framesSent: 0,
    framesReceived: 0,
    txErrors: 0,
    rxErrors: 0,
    events: 0,
    doorbells: 0,
    doorbellWakes: 0,
    pauses: 0,
    resumes: 0,
  };

  // One event object per type, reused (hot paths allocate nothing).
  readonly #evListening: Mutable<ListeningEvent> = {
    type: "listening",
    token: 0,
    listener: 0,
    port: 0,
  };
  readonly #evAccepted: Mutable<AcceptedEvent> = {
    type: "accepted",
    listener: 0,
    port: 0,
    conn: 0,
    remoteIp: 0,
    remotePort: 0,
  };
  readonly #evConnected: Mutable<ConnectedEvent> = {
    type: "connected",
    token: 0,
    conn: 0,
    localPort: 0,
  };
  readonly #evData: Mutable<DataEvent> = { type: "data", conn: 0, bytes: new Uint8Array(0) };
  readonly #evEof: Mutable<EofEvent> = { type: "eof", conn: 0 };
  readonly #evSent: Mutable<SentEvent> = { type: "sent", conn: 0, length: 0 };
  readonly #evClosed: Mutable<ClosedEvent> = { type: "closed", token: 0, conn: 0 };
  readonly #evError: Mutable<ErrorEvent> = { type: "error", token: 0, conn: 0, errno: 0 };
  readonly #evUdpBound: Mutable<UdpBoundEvent> = { type: "udp-bound", token: 0, port: 0 };
  readonly #evDatagram: Mutable<DatagramEvent> = {
    type: "datagram",
    srcIp: 0,
    srcPort: 0,
    dstPort: 0,
    payload: new Uint8Array(0),
  };
  readonly #evFrame: Mutable<FrameEvent> = { type: "frame", frame: new Uint8Array(0) };
  /** Whole-buffer views of the TOE receive buffers, made once (the common full-buffer case). */
  readonly #rbViews: Uint8Array[];
  /** Whole-buffer views of the TOE send buffers, made once (for sendFilled). */
  readonly #txViews: Uint8Array[];

  constructor(mem: PhysicalMemory, vf: VfDescriptor, opts: NicDriverOptions = {}) {
    if (vf.kind !== "nic") {
      throw new InvalidArgumentError(`NicDriver needs a "nic" VF, got "${vf.kind}"`);
    }
    checkInteger("VF register block", vf.regs, 0, mem.bytes - 4096);
    const irq = checkInteger("irqWord", opts.irqWord ?? 0, 0, mem.bytes - WAKE_WORD_BYTES);
    if (irq % CACHE_LINE !== 0) {
      throw new InvalidArgumentError(`irqWord must be a multiple of ${CACHE_LINE}, got ${irq}`);
    }
    const layout = nicDmaLayout(opts);
    if (layout.bytes > vf.dma.bytes) {
      throw new InvalidArgumentError(
        `NIC VF ${vf.index}: the DMA region has ${vf.dma.bytes} bytes, the driver's layout needs ${layout.bytes}`,
      );
    }
    if (vf.dma.phys % CACHE_LINE !== 0 || vf.dma.phys + vf.dma.bytes > mem.bytes) {
      throw new InvalidArgumentError(`NIC VF ${vf.index}: DMA region outside memory or misaligned`);
    }
    this.vf = vf;
    this.mac = vfMac(vf.index);
    this.ipv4 = vfIpv4(vf.index);
    this.layout = layout;
    this.#i32 = mem.i32;
    this.#u8 = mem.u8;
    this.#dv = mem.dv;
    this.#r = vf.regs / 4;
    this.#irqWord = irq;
    this.#bell = new Notifier(mem.sab, vf.regs + VF_DOORBELL_WAKE);
    this.#phys = vf.dma.phys;
    this.#iova = vf.dma.iova;
    const s = layout.sizes;
    this.#txSize = s.txRing;
    this.#rxSize = s.rxRing;
    this.#cmdSize = s.cmdRing;
    this.#evSize = s.eventRing;
    this.#rbSize = s.toeRxBuffers;
    this.#bufBytes = s.toeBufferBytes;
    this.#txFree = new Int32Array(s.toeTxBuffers);
    this.#rbViews = [];
    for (let i = 0; i < this.#rbSize; i++) {
      const at = this.#phys + layout.toeRx + i * this.#bufBytes;
      this.#rbViews.push(mem.u8.subarray(at, at + this.#bufBytes));
    }
    this.#txViews = [];
    for (let i = 0; i < s.toeTxBuffers; i++) {
      const at = this.#phys + layout.toeTx + i * this.#bufBytes;
      this.#txViews.push(mem.u8.subarray(at, at + this.#bufBytes));
    }
    const magic = Atomics.load(this.#i32, this.#r + vrMagic); // load: written by the PF at enable
    if (magic !== VF_MAGIC_NIC) {
      throw new IoError(`NIC VF ${vf.index}: no NIC register block at byte ${vf.regs}`);
    }
    this.#attach();
  }

  // ---- state ----

  /** True once the device has been reset since attach: call reattach() (nothing else works). */
  get resetDetected(): boolean {
    return Atomics.load(this.#i32, this.#r + vrGeneration) !== this.#generation; // load: FLRs
  }

  /**
   * The VF is as we attached it: same generation, status VF_READY. Checked before every ring
   * walk; the cursor bounds there cover an FLR that starts right after this check.
   */
  #usable(): boolean {
    const i32 = this.#i32;
    return (
      Atomics.load(i32, this.#r + vrGeneration) === this.#generation && // load: no FLR since
      Atomics.load(i32, this.#r + vrStatus) === VF_READY // load: not resetting, not failed
    );
  }

  /** True if the device stopped this VF on a fatal error: requestReset(), then reattach(). */
  get failed(): boolean {
    return Atomics.load(this.#i32, this.#r + vrStatus) === VF_FAILED; // load: device status
  }

  /**
   * True if a round has something to do: RX frames, TOE events or TX completions pending, or the
   * VF was reset or failed. Cheap (a few atomic loads), allocation-free: a wait predicate.
   */
  hasWork(): boolean {
    const i32 = this.#i32;
    const r = this.#r;
    return (
      Atomics.load(i32, r + nrEvTail) !== this.#evNext || // load: events written
      Atomics.load(i32, r + nrRxHead) !== this.#rxNext || // load: frames received
      Atomics.load(i32, r + nrTxHead) !== this.#txClean || // load: TX completions
      Atomics.load(i32, r + vrGeneration) !== this.#generation || // load: a reset
      Atomics.load(i32, r + vrStatus) === VF_FAILED // load: a fatal error
    );
  }

  stats(): NicDriverStats {
    return { ...this.#stats };
  }

  /**
   * Report the socket layer's receive figures in the register block, for the hypervisor's
   * statistics (NicDevice.stats: sockRxHeld, sockRxPeak); the device does not act on them.
   */
  reportReceiveWindow(heldBytes: number, peakBytes: number): void {
    Atomics.store(this.#i32, this.#r + nrSockRxHeld, heldBytes | 0); // publish: statistics
    Atomics.store(this.#i32, this.#r + nrSockRxPeak, peakBytes | 0); // publish: statistics
  }

  /** Free TOE send buffers × their size: how many bytes send() could take now at most. */
  get sendRoom(): number {
    return this.#txFreeTop * this.#bufBytes;
  }

  // ---- frames ----

  /** Queue one Ethernet frame (flush() sends it). False when the TX ring is full. */
  sendFrame(frame: Uint8Array): boolean {
    const len = frame.length;
    if (len < MIN_FRAME || len > MAX_FRAME) {
      throw new InvalidArgumentError(
        `frame must be ${MIN_FRAME} to ${MAX_FRAME} bytes, got ${len}`,
      );
    }
    const slot = this.#txSlot();
    if (slot < 0) return false;
    this.#u8.set(frame, this.#phys + this.layout.txFrames + slot * FRAME_BUFFER_BYTES);
    this.#queueTx(slot, len);
    return true;
  }

  /**
   * Queue a UDP datagram from bound port `srcPort` to `dstIpv4`:`dstPort`, as an IPv4/UDP frame
   * to the gateway (the NIC's UDP uplink sends it from the host socket bound for srcPort).
   * False when the TX ring is full.
   */
  sendDatagram(srcPort: number, dstIpv4: number, dstPort: number, payload: Uint8Array): boolean {
    checkInteger("srcPort", srcPort, 1, 0xffff);
    checkInteger("dstIpv4", dstIpv4, 0, TWO_32 - 1);
    checkInteger("dstPort", dstPort, 1, 0xffff);
    if (payload.length > MAX_DATAGRAM) {
      throw new InvalidArgumentError(
        `datagram payload must be at most ${MAX_DATAGRAM} bytes, got ${payload.length}`,
      );
    }
    const slot = this.#txSlot();
    if (slot < 0) return false;
    const at = this.#phys + this.layout.txFrames + slot * FRAME_BUFFER_BYTES;
    const len = writeUdpHeaders(
      this.#dv,
      at,
      GATEWAY_MAC,
      this.mac,
      this.ipv4,
      dstIpv4,
      srcPort,
      dstPort,
      payload.length,
    );
    this.#u8.set(payload, at + UDP_FRAME_OVERHEAD);
    this.#queueTx(slot, len);
    return true;
  }

  /**
   * Hand every received frame to `onFrame` (the view is valid during the call), re-post the
   * buffers, and return how many there were. Raw frames, UDP ones included: a caller that uses
   * pollEvents gets them there as datagram/frame events instead.
   */
  receiveFrames(onFrame: (frame: Uint8Array) => void): number {
    if (!this.#usable()) return 0;
    this.#reclaimTx();
    return this.#drainRx(onFrame, null);
  }

  // ---- TOE commands (each returns a token > 0, or -EAGAIN when the command ring is full) ----

  /** Listen on the host's `port` (0: ephemeral): → listening (token) or error (token). */
  listen(port: number, backlog: number): number {
    checkInteger("port", port, 0, 0xffff);
    checkInteger("backlog", backlog, 0, 0xffff);
    return this.#command(CMD_LISTEN, 0, port, backlog, 0);
  }

  /** Connect to `ipv4`:`port` on the host: → connected (token) or error (token). */
  connect(ipv4: number, port: number): number {
    checkInteger("ipv4", ipv4, 0, TWO_32 - 1);
    checkInteger("port", port, 1, 0xffff);
    return this.#command(CMD_CONNECT, 0, ipv4 | 0, port, 0);
  }

  /**
   * Queue as many of `bytes` as fit in free send buffers (and command slots): returns the count
   * taken, 0 when none fit (retry after a sent event). Each buffer comes back with its sent event.
   */
  send(conn: number, bytes: Uint8Array): number {
    if (!(conn > 0 && (conn | 0) === conn))
      throw new InvalidArgumentError(`bad connection ${conn}`);
    if (!this.#usable()) return 0;
    const len = bytes.length;
    const base = this.#phys + this.layout.toeTx;
    const bufBytes = this.#bufBytes;
    let off = 0;
    while (off < len && this.#txFreeTop > 0 && this.#cmdRoom() > 0) {
      const buf = this.#txFree[--this.#txFreeTop];
      const n = Math.min(len - off, bufBytes);
      this.#u8.set(n === len ? bytes : bytes.subarray(off, off + n), base + buf * bufBytes);
      const iova = this.#iova + this.layout.toeTx + buf * bufBytes;
      this.#writeCommand(CMD_SEND, buf, conn, iova % TWO_32, n, Math.floor(iova / TWO_32));
      off += n;
    }
    return off;
  }

  /**
   * Close `conn`'s receive window: the device stops reading its host socket and holds what it
   * has (see the header for the bound) → (nothing), or error (token).
   */
  pauseReceive(conn: number): number {
    const t = this.#command(CMD_PAUSE, conn, 0, 0, 0);
    if (t > 0) this.#stats.pauses++;
    return t;
  }

  /** Open `conn`'s receive window again after pauseReceive → (nothing), or error (token). */
  resumeReceive(conn: number): number {
    const t = this.#command(CMD_RESUME, conn, 0, 0, 0);
    if (t > 0) this.#stats.resumes++;
    return t;
  }

  /**
   * send() without a staging copy: `fill(dst, offset)` copies the caller's bytes
   * [offset, offset + dst.length) straight into a send buffer and returns 0 or -errno (a copyin
   * from a program's memory). Only as many bytes as fit are asked for. Every buffer is filled
   * before any command is written, so a failed fill sends nothing: its -errno is returned and
   * the buffers stay free. Otherwise as send(): the count taken, 0 when none fit.
   */
  sendFilled(conn: number, len: number, fill: (dst: Uint8Array, offset: number) => number): number {
    if (!(conn > 0 && (conn | 0) === conn))
      throw new InvalidArgumentError(`bad connection ${conn}`);
    if (!this.#usable() || len <= 0) return 0;
    const bufBytes = this.#bufBytes;
    const k = Math.min(Math.ceil(len / bufBytes), this.#txFreeTop, this.#cmdRoom());
    for (let i = 0, off = 0; i < k; i++, off += bufBytes) {
      const buf = this.#txFree[this.#txFreeTop - 1 - i];
      const n = Math.min(len - off, bufBytes);
      const view = this.#txViews[buf] as Uint8Array;
      const r = fill(n === bufBytes ? view : view.subarray(0, n), off);
      if (r < 0) return r; // nothing queued: the buffers are still free
    }
    let off = 0;
    for (let i = 0; i < k; i++) {
      const buf = this.#txFree[--this.#txFreeTop];
      const n = Math.min(len - off, bufBytes);
      const iova = this.#iova + this.layout.toeTx + buf * bufBytes;
      this.#writeCommand(CMD_SEND, buf, conn, iova % TWO_32, n, Math.floor(iova / TWO_32));
      off += n;
    }
    return off;
  }

  /** Send FIN after everything queued: → (nothing), or error (token). */
  shutdown(conn: number): number {
    return this.#command(CMD_SHUTDOWN_WR, conn, 0, 0, 0);
  }

  /** Close a connection or a listener: → closed (token). Received bytes not yet read are dropped. */
  close(handle: number): number {
    return this.#command(CMD_CLOSE, handle, 0, 0, 0);
  }

  /** Bind UDP `port` (0: ephemeral) on the host: → udp-bound (token, port) or error (token). */
  udpBind(port: number): number {
    checkInteger("port", port, 0, 0xffff);
    return this.#command(CMD_UDP_BIND, 0, port, 0, 0);
  }

  /** Drop the host binding of UDP `port`: → (nothing), or error (token). */
  udpClose(port: number): number {
    checkInteger("port", port, 1, 0xffff);
    return this.#command(CMD_UDP_CLOSE, 0, port, 0, 0);
  }

  /**
   * Hand every TOE event, then every received frame (UDP datagrams for this VF as datagram
   * events, anything else as frame events), to `onEvent`; give buffers back to the device.
   * Returns how many events there were. Views and event objects are valid only during the call.
   */
  pollEvents(onEvent: (e: ToeEvent) => void): number {
    if (!this.#usable()) return 0;
    this.#reclaimTx();
    const i32 = this.#i32;
    const r = this.#r;
    const dv = this.#dv;
    const tail = Atomics.load(i32, r + nrEvTail); // consume: events written before tail
    if ((tail - this.#evNext) >>> 0 > this.#evSize) return 0; // an FLR is zeroing the cursors
    let n = 0;
    while (this.#evNext !== tail) {
      const at =
        this.#phys + this.layout.eventRing + (this.#evNext & (this.#evSize - 1)) * EV_BYTES;
      const type = dv.getUint32(at + eType, true);
      const tag = dv.getInt32(at + eTag, true);
      const handle = dv.getInt32(at + eHandle, true);
      const a = dv.getUint32(at + eA, true);
      const b = dv.getUint32(at + eB, true);
      const c = dv.getUint32(at + eC, true);
      this.#evNext = (this.#evNext + 1) | 0;
      n++;
      this.#dispatch(onEvent, type, tag, handle, a, b, c);
    }
    if (n > 0) {
      if (this.#cmdTail !== this.#cmdPublished) {
        // A PAUSE queued by onEvent must reach the device before the buffers below do.
        Atomics.store(i32, r + nrCmdTail, this.#cmdTail); // publish: commands, before buffers
        this.#cmdPublished = this.#cmdTail;
        this.#bellPending = true;
      }
      Atomics.store(i32, r + nrEvHead, this.#evNext); // publish: event slots free again
      Atomics.store(i32, r + nrRbTail, this.#rbTail); // publish: receive buffers re-posted
      this.#roomPending = true;
      this.#stats.events += n;
    }
    return n + this.#drainRx(null, onEvent);
  }

  /** Publish everything queued since the last flush and ring the doorbell once (if needed). */
  flush(): void {
    if (!this.#usable()) return;
    const i32 = this.#i32;
    const r = this.#r;
    let ring = this.#bellPending;
    this.#bellPending = false;
    if (this.#txTail !== this.#txPublished) {
      Atomics.store(i32, r + nrTxTail, this.#txTail); // publish: TX descriptors
      this.#txPublished = this.#txTail;
      ring = true;
    }
    if (this.#cmdTail !== this.#cmdPublished) {
      Atomics.store(i32, r + nrCmdTail, this.#cmdTail); // publish: commands
      this.#cmdPublished = this.#cmdTail;
      ring = true;
    }
    if (this.#roomPending) {
      this.#roomPending = false;
      // load: the device holds work for EV slots or RB buffers (pairs with its store before park)
      if (Atomics.load(i32, r + nrHolding) !== 0) ring = true;
    }
    if (ring) {
      this.#stats.doorbells++;
      this.#bell.notify(); // wake: the device, if it parked (NEED_WAKEUP)
      const woke = this.#bell.notifies;
      if (woke !== this.#stats.doorbellWakes) {
        this.#stats.doorbellWakes = woke;
        Atomics.store(i32, r + nrDoorbellWakes, (woke - this.#bellBase) | 0); // publish: statistics
      }
    }
  }

  // ---- reset ----

  /** Ask the device for a function-level reset; reattach() once resetDetected is true. */
  requestReset(): void {
    Atomics.or(this.#i32, this.#r + vrControl, VFC_RESET); // publish: reset request
    this.#bell.notify(); // wake: the device, if it parked (its predicate sees the control change)
  }

  /**
   * After a reset: lay the rings out afresh and enable the VF again. Every connection, listener
   * and binding of before is gone (the device closed them). Throws IoError if the VF is not
   * ready (still resetting, failed, disabled) or is enabled by someone else.
   */
  reattach(): void {
    this.#attach();
  }

  #attach(): void {
    const i32 = this.#i32;
    const r = this.#r;
    const status = Atomics.load(i32, r + vrStatus); // load: device status
    if (status !== VF_READY) {
      throw new IoError(`NIC VF ${this.vf.index} is not ready (status ${status}): reset it first`);
    }
    const control = Atomics.load(i32, r + vrControl); // load: another driver's control?
    if ((control & (VFC_ENABLE | VFC_RESET)) !== 0) {
      throw new IoError(`NIC VF ${this.vf.index} is enabled by another driver: reset it first`);
    }
    this.#generation = Atomics.load(i32, r + vrGeneration); // load: the generation we attach to
    const L = this.layout;
    // Rings: TX empty; RX and RB slot i posted with buffer i.
    this.#u8.fill(0, this.#phys, this.#phys + L.txFrames);
    for (let i = 0; i < this.#rxSize; i++) {
      this.#postDescriptor(
        L.rxRing + i * DESC_BYTES,
        L.rxFrames + i * FRAME_BUFFER_BYTES,
        FRAME_BUFFER_BYTES,
      );
    }
    for (let i = 0; i < this.#rbSize; i++) {
      this.#postDescriptor(L.rbRing + i * DESC_BYTES, L.toeRx + i * this.#bufBytes, this.#bufBytes);
    }
    this.#txTail = this.#txPublished = this.#txClean = 0;
    this.#rxNext = 0;
    this.#cmdTail = this.#cmdPublished = this.#cmdHeadSeen = 0;
    this.#evNext = 0;
    this.#rbTail = this.#rbSize;
    this.#roomPending = false;
    this.#bellPending = false;
    this.#txFreeTop = 0;
    for (let i = this.#txFree.length - 1; i >= 0; i--) this.#txFree[this.#txFreeTop++] = i;
    this.#listenerPorts.clear();
    // Ring configuration: plain stores, published by the control store below.
    const ring = (lo: number, hi: number, size: number, off: number, n: number): void => {
      const iova = this.#iova + off;
      i32[r + lo] = (iova % TWO_32) | 0;
      i32[r + hi] = Math.floor(iova / TWO_32);
      i32[r + size] = n;
    };
    ring(nrTxBaseLo, nrTxBaseHi, nrTxSize, L.txRing, this.#txSize);
    ring(nrRxBaseLo, nrRxBaseHi, nrRxSize, L.rxRing, this.#rxSize);
    ring(nrCmdBaseLo, nrCmdBaseHi, nrCmdSize, L.cmdRing, this.#cmdSize);
    ring(nrEvBaseLo, nrEvBaseHi, nrEvSize, L.eventRing, this.#evSize);
    ring(nrRbBaseLo, nrRbBaseHi, nrRbSize, L.rbRing, this.#rbSize);
    Atomics.store(i32, r + nrTxTail, 0); // publish: no TX descriptors
    Atomics.store(i32, r + nrRxTail, this.#rxSize); // publish: every RX buffer posted
    Atomics.store(i32, r + nrCmdTail, 0); // publish: no commands
    Atomics.store(i32, r + nrEvHead, 0); // publish: every event slot free
    Atomics.store(i32, r + nrRbTail, this.#rbTail); // publish: every TOE receive buffer posted
    this.reportReceiveWindow(0, 0);
    this.#bellBase = this.#bell.notifies;
    Atomics.store(i32, r + nrDoorbellWakes, 0); // publish: statistics (since this attach)
    Atomics.store(i32, r + vrIrqWord, this.#irqWord); // publish: where to interrupt
    Atomics.store(i32, r + vrControl, VFC_ENABLE); // publish: configured; the device may start
    this.#bell.notify(); // wake: the device latches the configuration
  }

  // ---- internals ----

  #postDescriptor(descOff: number, bufOff: number, cap: number): void {
    const dv = this.#dv;
    const at = this.#phys + descOff;
    const iova = this.#iova + bufOff;
    dv.setUint32(at + dIovaLo, iova % TWO_32, true);
    dv.setUint32(at + dIovaHi, Math.floor(iova / TWO_32), true);
    dv.setUint32(at + dLength, cap, true);
    dv.setUint32(at + dFlags, 0, true);
  }

  /** A free TX slot (reclaiming completions if the ring looks full), or -1. */
  #txSlot(): number {
    if (!this.#usable()) return -1;
    if (((this.#txTail - this.#txClean) | 0) >= this.#txSize) this.#reclaimTx();
    if (((this.#txTail - this.#txClean) | 0) >= this.#txSize) return -1;
    return this.#txTail & (this.#txSize - 1);
  }

  #queueTx(slot: number, len: number): void {
    const L = this.layout;
    this.#postDescriptor(L.txRing + slot * DESC_BYTES, L.txFrames + slot * FRAME_BUFFER_BYTES, len);
    this.#dv.setUint32(this.#phys + L.txRing + slot * DESC_BYTES + dFlags, DF_EOP, true);
    this.#txTail = (this.#txTail + 1) | 0;
    this.#stats.framesSent++;
  }

  /** Take back TX slots the device finished, counting the ones it failed. */
  #reclaimTx(): void {
    const head = Atomics.load(this.#i32, this.#r + nrTxHead); // consume: descriptors written back
    if ((head - this.#txClean) >>> 0 > this.#txSize) return; // an FLR is zeroing the cursors
    const base = this.#phys + this.layout.txRing;
    while (this.#txClean !== head) {
      const flags = this.#dv.getUint32(
        base + (this.#txClean & (this.#txSize - 1)) * DESC_BYTES + dFlags,
        true,
      );
      if ((flags & DF_ERR) !== 0) this.#stats.txErrors++;
      this.#txClean = (this.#txClean + 1) | 0;
    }
  }

  /** Hand received frames to onFrame (raw) or to onEvent (datagram/frame events); re-post. */
  #drainRx(
    onFrame: ((f: Uint8Array) => void) | null,
    onEvent: ((e: ToeEvent) => void) | null,
  ): number {
    const i32 = this.#i32;
    const r = this.#r;
    const dv = this.#dv;
    const L = this.layout;
    const head = Atomics.load(i32, r + nrRxHead); // consume: frames written before head
    if (head === this.#rxNext || (head - this.#rxNext) >>> 0 > this.#rxSize) return 0;
    let n = 0;
    while (this.#rxNext !== head) {
      const slot = this.#rxNext & (this.#rxSize - 1);
      const d = this.#phys + L.rxRing + slot * DESC_BYTES;
      const flags = dv.getUint32(d + dFlags, true);
      const len = dv.getUint32(d + dLength, true);
      this.#rxNext = (this.#rxNext + 1) | 0;
      if ((flags & DF_DONE) === 0 || (flags & DF_ERR) !== 0 || len > FRAME_BUFFER_BYTES) {
        this.#stats.rxErrors++;
      } else {
        const at = this.#phys + L.rxFrames + slot * FRAME_BUFFER_BYTES;
        n++;
        this.#stats.framesReceived++;
        if (onFrame !== null) onFrame(this.#u8.subarray(at, at + len));
        else if (onEvent !== null) this.#frameEvent(onEvent, at, len);
      }
      // Re-post slot's buffer: it is the next one the device will fill after the ring wraps.
      dv.setUint32(d + dLength, FRAME_BUFFER_BYTES, true);
      dv.setUint32(d + dFlags, 0, true);
    }
    Atomics.store(i32, r + nrRxTail, (this.#rxNext + this.#rxSize) | 0); // publish: buffers re-posted
    return n;
  }

  #frameEvent(onEvent: (e: ToeEvent) => void, at: number, len: number): void {
    const u = this.#udp;
    if (parseUdpFrame(this.#dv, at, len, u) && u.dstMac === this.mac && u.dstIp === this.ipv4) {
      const e = this.#evDatagram;
      e.srcIp = u.srcIp;
      e.srcPort = u.srcPort;
      e.dstPort = u.dstPort;
      e.payload = this.#u8.subarray(u.payloadOffset, u.payloadOffset + u.payloadLength);
      onEvent(e);
      return;
    }
    const e = this.#evFrame;
    e.frame = this.#u8.subarray(at, at + len);
    onEvent(e);
  }

  #dispatch(
    onEvent: (e: ToeEvent) => void,
    type: number,
    tag: number,
    handle: number,
    a: number,
    b: number,
    c: number,
  ): void {
    switch (type) {
      case EV_LISTENING: {
        const e = this.#evListening;
        e.token = tag;
        e.listener = handle;
        e.port = a;
        this.#listenerPorts.set(handle, a);
        onEvent(e);
        return;
      }
      case EV_ACCEPTED: {
        const e = this.#evAccepted;
        e.listener = c;
        e.port = this.#listenerPorts.get(c) ?? 0;
        e.conn = handle;
        e.remoteIp = a;
        e.remotePort = b;
        onEvent(e);
        return;
      }
      case EV_CONNECTED: {
        const e = this.#evConnected;
        e.token = tag;
        e.conn = handle;
        e.localPort = a;
        onEvent(e);
        return;
      }
      case EV_DATA:
        this.#data(onEvent, handle, a, b, c);
        return;
      case EV_EOF: {
        const e = this.#evEof;
        e.conn = handle;
        onEvent(e);
        return;
      }
      case EV_SENT: {
        this.#freeSendBuffer(tag);
        const e = this.#evSent;
        e.conn = handle;
        e.length = b;
        onEvent(e);
        return;
      }
      case EV_CLOSED: {
        this.#listenerPorts.delete(handle);
        const e = this.#evClosed;
        e.token = tag;
        e.conn = handle;
        onEvent(e);
        return;
      }
      case EV_ERROR: {
        if (b === CMD_SEND) this.#freeSendBuffer(tag);
        const e = this.#evError;
        e.token = b === CMD_SEND ? 0 : tag;
        e.conn = handle;
        e.errno = a;
        onEvent(e);
        return;
      }
      case EV_UDP_BOUND: {
        const e = this.#evUdpBound;
        e.token = tag;
        e.port = a;
        onEvent(e);
        return;
      }
      default:
        panic(`nic driver: unknown event type ${type} from the device`);
        return;
    }
  }

  /** A DATA event: hand the bytes over, then re-post the buffer (slot order is ring order). */
  #data(
    onEvent: (e: ToeEvent) => void,
    conn: number,
    slot: number,
    len: number,
    errno: number,
  ): void {
    const expect = this.#rbTail & (this.#rbSize - 1);
    if (slot !== expect || len > this.#bufBytes) {
      panic(`nic driver: DATA for slot ${slot} (${len} bytes), expected slot ${expect}`);
    }
    if (errno !== 0) {
      const e = this.#evError;
      e.token = 0;
      e.conn = conn;
      e.errno = errno;
      onEvent(e);
    } else {
      const e = this.#evData;
      const full = this.#rbViews[slot];
      e.conn = conn;
      e.bytes = len === this.#bufBytes ? full : full.subarray(0, len);
      onEvent(e);
    }
    const d = this.#phys + this.layout.rbRing + slot * DESC_BYTES;
    this.#dv.setUint32(d + dLength, this.#bufBytes, true);
    this.#dv.setUint32(d + dFlags, 0, true);
    this.#rbTail = (this.#rbTail + 1) | 0;
  }

  #freeSendBuffer(buf: number): void {
    if (buf < 0 || buf >= this.#txFree.length || this.#txFreeTop >= this.#txFree.length) {
      panic(`nic driver: the device returned send buffer ${buf}, which is not out`);
    }
    this.#txFree[this.#txFreeTop++] = buf;
  }

  #cmdRoom(): number {
    let room = this.#cmdSize - ((this.#cmdTail - this.#cmdHeadSeen) | 0);
    if (room === 0) {
      this.#cmdHeadSeen = Atomics.load(this.#i32, this.#r + nrCmdHead); // consume: slots taken
      room = this.#cmdSize - ((this.#cmdTail - this.#cmdHeadSeen) | 0);
    }
    return room;
  }

  /** Queue a command with a fresh token: the token, or -EAGAIN (ring full or VF reset). */
  #command(op: number, handle: number, a: number, b: number, c: number): number {
    if (!this.#usable() || this.#cmdRoom() === 0) return -EAGAIN;
    const token = this.#nextToken;
    this.#nextToken = token >= 0x3fff_ffff ? 1 : token + 1;
    this.#writeCommand(op, token, handle, a, b, c);
    return token;
  }

  #writeCommand(op: number, tag: number, handle: number, a: number, b: number, c: number): void {
    const dv = this.#dv;
    const at = this.#phys + this.layout.cmdRing + (this.#cmdTail & (this.#cmdSize - 1)) * CMD_BYTES;
    dv.setUint32(at + cOp, op, true);
    dv.setInt32(at + cTag, tag, true);
    dv.setInt32(at + cHandle, handle, true);
    dv.setUint32(at + cA, a >>> 0, true);
    dv.setUint32(at + cB, b >>> 0, true);
    dv.setUint32(at + cC, c >>> 0, true);
    this.#cmdTail = (this.#cmdTail + 1) | 0;
  }
}
