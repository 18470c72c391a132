/**
 * nic: the NIC device model — an SR-IOV physical function whose virtual functions each have a
 * MAC address, a TX and an RX descriptor ring of Ethernet frames, and a TCP offload engine
 * (src/hw/toe.ts); behind them three uplinks: an internal switch between the VFs, UDP datagrams
 * to the host (node:dgram), and TCP to the host through the TOE (node:net).
 *
 * Vocabulary
 *   function   one attached VF (NicFunction below): its register block, latched ring
 *              configuration, device cursors, counters, host sockets
 *   doorbell   the VF's wake word (VF_DOORBELL_WAKE): the device parks on it; a driver that
 *              published new tails notifies it (src/shm/wake.ts, NEED_WAKEUP protocol)
 *   interrupt  a notify of the wake word the driver named in vrIrqWord (MSI-X in spirit)
 *
 * Design
 *   - Hardware runs beside the software: each function has its own loop on the hypervisor
 *     thread that parks on the doorbell with Waiter.waitAsync in park mode (it never spins),
 *     wakes when a predicate over the driver's doorbell registers says there is work it can do,
 *     serves one round (control, TX ring, TOE commands and events), then yields to the event
 *     loop so host sockets' callbacks run between rounds. Host callbacks (datagrams, TCP bytes)
 *     are served from the event loop, not through the doorbell.
 *   - Interrupt moderation (a NIC's interrupt throttling, Linux NAPI): host callbacks (TCP
 *     bytes, datagrams, accepts) only queue; the function is marked, and one setImmediate per
 *     turn of the event loop — the moderation point, after every socket that was readable in
 *     that turn — pumps each marked TOE once and interrupts each function that got work once.
 *     A driver that is awake costs a load (NEED_WAKEUP); one that parked costs an
 *     Atomics.notify and a thread wake-up, so 50 connections' requests arriving together cost
 *     one pump and one wake-up of the domain instead of up to 50 (counted: irqWakes).
 *   - Every access to guest memory — descriptors, frame buffers, TOE entries — is DMA through
 *     the DmaPort with the VF's requester id (VT-d); a refused DMA moves nothing and is counted.
 *     A refused data buffer fails that descriptor (DONE | ERR); a ring the device cannot reach
 *     at all fails the function (VF_FAILED) until a reset, as an NVMe controller's fatal status.
 *   - Switch (SR-IOV's internal L2 switch, "VEB"): a frame's source MAC must be the sending
 *     VF's own (anti-spoofing, as SR-IOV NICs check), its destination picks the target: another
 *     VF (its RX ring), broadcast (every other VF), or the gateway MAC (the UDP uplink). A frame
 *     for a VF with no RX buffer posted is dropped and counted: a NIC never waits for a driver.
 *   - UDP uplink: the driver asks for a host binding with UDP_BIND (TOE command ring); frames
 *     from a bound source port to the gateway leave as real datagrams from a socket bound on the
 *     host address; datagrams arriving there become IPv4/UDP frames in the VF's RX ring.
 *
 * Rejected: a polling timer per VF (latency and idle CPU); processing a doorbell inside the
 * notifier's thread (a device must not run on its driver's thread); letting a slow VF's
 * socket back-pressure block the TX ring (the switch and uplink drop; only TCP holds back).
 *
 * Invariants: a function's device cursors only advance; TX head ≤ TX tail; RX head ≤ RX tail;
 * a descriptor is written back before its head is published. Hot paths allocate nothing except
 * what Node's socket APIs keep (a datagram's payload copy), DmaPort's exact-length views (cached
 * per length for frames; one per ring burst in the TOE) and the moderation point's one
 * setImmediate per turn of the event loop.
 * Who calls: the hypervisor (or a test) constructs one NicDevice on the main thread and calls
 * attachVf/resetVf/detachVf — the SR-IOV PF's onEnable/onReset/onDisable hooks — and close().
 */

import dgram from "node:dgram";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { EADDRINUSE, EBADF, EINVAL, EMFILE } from "../abi/errno.js";
import { checkInteger, InvalidArgumentError } from "../errors.js";
import { CACHE_LINE } from "../shm/layout.js";
import { initWakeWord, Notifier, WAKE_WORD_BYTES, Waiter } from "../shm/wake.js";
import { DMA_OK, type DmaPort } from "./dma.js";
import {
  BROADCAST_MAC,
  ipv4ToString,
  parseIpv4,
  parseUdpFrame,
  readMac,
  UDP_FRAME_OVERHEAD,
  udpFrameInfo,
  writeUdpHeaders,
} from "./net-headers.js";
import {
  CMD_BYTES,
  CMD_UDP_BIND,
  CMD_UDP_CLOSE,
  DESC_BYTES,
  DF_DONE,
  DF_ERR,
  dFlags,
  dIovaHi,
  dIovaLo,
  dLength,
  EV_BYTES,
  EV_ERROR,
  EV_UDP_BOUND,
  GATEWAY_IPV4,
  GATEWAY_MAC,
  kCommands,
  kDmaFaults,
  kErrors,
  kInterrupts,
  kIrqWakes,
  kRounds,
  kRxBytes,
  kRxDropped,
  kRxFrames,
  kToeRxBytes,
  kToeTxBytes,
  kTxBytes,
  kTxDropped,
  kTxFrames,
  kUdpRx,
  kUdpTx,
  MAX_FRAME,
  MAX_HANDLES,
  MAX_RING,
  MIN_FRAME,
  NIC_COUNTER_SLOTS,
  NIC_COUNTERS,
  NIC_REG_BYTES,
  type NicCounterName,
  nrCmdBaseHi,
  nrCmdBaseLo,
  nrCmdSize,
  nrCounters,
  nrDoorbellWakes,
  nrEvBaseHi,
  nrEvBaseLo,
  nrEvSize,
  nrGatewayIpv4,
  nrHolding,
  nrIpv4,
  nrMacHi,
  nrMacLo,
  nrMaxFrame,
  nrMaxRing,
  nrRbBaseHi,
  nrRbBaseLo,
  nrRbSize,
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
} from "./nic-regs.js";
import type { PhysicalMemory } from "./physmem.js";
import { hostErrno, ToeFunction, type ToeHost, type ToeRings } from "./toe.js";
import {
  VF_DEVICE_REGS,
  VF_DISABLED,
  VF_DOORBELL_WAKE,
  VF_FAILED,
  VF_MAGIC_NIC,
  VF_READY,
  VF_REG_BYTES,
  VF_RESETTING,
  VFC_ENABLE,
  VFC_RESET,
  type VfDescriptor,
  vrControl,
  vrGeneration,
  vrIndex,
  vrIrqWord,
  vrMagic,
  vrRid,
  vrStatus,
  vsBytes,
  vsCommands,
  vsDmaFaults,
  vsErrors,
  vsInterrupts,
} from "./vf.js";

const TWO_32 = 2 ** 32;
/** TX descriptors taken per round before the loop lets host callbacks run. */
const TX_BATCH = 256;
/** UDP bindings per VF. */
const MAX_UDP_BINDINGS = 64;
/** First word and end word of the lines a reset clears: ring configuration through cursors. */
const RING_LINES_FIRST = nrTxBaseLo;
const RING_LINES_END = nrCounters;

export interface NicVfOptions {
  /** Host address the TOE listens on and UDP bindings bind to; default "127.0.0.1". */
  readonly bindAddress?: string;
  /** TOE handles (listeners + connections) per VF; default 1024, at most 4095. */
  readonly maxHandles?: number;
}

export interface NicOptions extends NicVfOptions {
  /**
   * Who performs the FLR a driver asks for with VFC_RESET. Default: the device, with
   * {@link NicDevice.resetVf}. Under an SR-IOV PF pass `(i) => pf.serviceControl(i)`: the PF runs
   * the FLR and calls its onReset hook, which calls resetVf.
   */
  readonly resetRequest?: (index: number) => void;
}

type VfSettings = Required<NicVfOptions>;

/** A function's counters (see NIC_COUNTERS) and state, as {@link NicDevice.stats} reports them. */
export type NicVfStats = { readonly [K in NicCounterName]: number } & {
  readonly index: number;
  readonly mac: number;
  readonly ipv4: number;
  readonly status: number;
  readonly generation: number;
  /** TOE handles open now. */
  readonly handles: number;
  /** UDP ports bound now. */
  readonly udpBindings: number;
  /** Why the VF failed (status VF_FAILED), "" otherwise. */
  readonly failure: string;
  /** Received TCP bytes the driver's socket layer holds, not yet read by programs (driver-reported). */
  readonly sockRxHeld: number;
  /** The most received bytes one connection held at once since the driver attached (driver-reported). */
  readonly sockRxPeak: number;
  /** Doorbells that found the device parked: an Atomics.notify each (driver-reported). */
  readonly doorbellWakes: number;
};

/** One UDP binding on the host, for one VF. */
interface UdpBinding {
  readonly socket: dgram.Socket;
  port: number;
  bound: boolean;
  closed: boolean;
  /** Datagrams handed to the host socket and not yet sent: a close waits for them. */
  sending: number;
}

/** Ring base IOVA and entry count, latched when the driver set VFC_ENABLE. */
interface RingConfig {
  base: number;
  size: number;
}

/**
 * The state of one attached VF. Owner notes: everything here is the hypervisor thread's; the
 * register block is shared — see nic-regs.ts for which words the driver writes.
 */
class NicFunction {
  readonly counters = new Float64Array(NIC_COUNTER_SLOTS);
  readonly tx: RingConfig = { base: 0, size: 0 };
  readonly rx: RingConfig = { base: 0, size: 0 };
  readonly udp = new Map<number, UdpBinding>();
  readonly udpAll = new Set<UdpBinding>();
  /** Word index of the register block in mem.i32. */
  readonly regs: number;
  readonly waiter: Waiter;
  readonly doorbell: Notifier;
  readonly ready: () => boolean;
  irq: Notifier | null = null;
  toe: ToeFunction | null = null;
  enabled = false;
  detached = false;
  irqPending = false;
  /** A host callback asked for a TOE pump at the next moderation point. */
  pumpPending = false;
  /** Why the function failed (VF_FAILED), "" while it has not. */
  failure = "";
  lastControl = 0;
  txHead = 0;
  rxHead = 0;
  loop: Promise<void> = Promise.resolve();

  constructor(
    readonly desc: VfDescriptor,
    readonly mac: number,
    readonly ipv4: number,
    readonly opts: VfSettings,
    sab: SharedArrayBuffer,
    ready: (f: NicFunction) => boolean,
  ) {
    this.regs = desc.regs / 4;
    this.waiter = new Waiter(sab, desc.regs + VF_DOORBELL_WAKE);
    this.doorbell = new Notifier(sab, desc.regs + VF_DOORBELL_WAKE);
    this.ready = () => ready(this);
  }
}

/**
 * The NIC physical function and its virtual functions. Hypervisor (main) thread only.
 */
export class NicDevice {
  readonly #mem: PhysicalMemory;
  readonly #i32: Int32Array;
  readonly #dma: DmaPort;
  readonly #opts: VfSettings;
  readonly #resetRequest: ((index: number) => void) | null;
  readonly #functions = new Map<number, NicFunction>();
  readonly #byMac = new Map<number, NicFunction>();
  #closed = false;
  /** An interrupt moderation point (setImmediate) is scheduled. */
  #irqScheduled = false;
  readonly #moderationPoint = (): void => {
    this.#irqScheduled = false;
    for (const g of this.#functions.values()) {
      if (g.pumpPending) {
        g.pumpPending = false;
        if (g.enabled && g.toe !== null && g.toe.service() > 0) g.irqPending = true;
      }
      if (!g.irqPending) continue;
      g.irqPending = false;
      this.#raise(g);
      this.#publishStats(g);
    }
  };

  // DMA scratch, made once: a descriptor, a frame, and exact-length views of the frame.
  readonly #desc = new Uint8Array(DESC_BYTES);
  readonly #descDv = new DataView(this.#desc.buffer);
  readonly #status = new Uint8Array(4);
  readonly #statusDv = new DataView(this.#status.buffer);
  readonly #wb = new Uint8Array(8);
  readonly #wbDv = new DataView(this.#wb.buffer);
  readonly #frame = new Uint8Array(MAX_FRAME);
  readonly #frameDv = new DataView(this.#frame.buffer);
  readonly #frameViews: (Uint8Array | undefined)[] = new Array(MAX_FRAME + 1);
  readonly #udpInfo = udpFrameInfo();

  constructor(mem: PhysicalMemory, dma: DmaPort, opts: NicOptions = {}) {
    this.#mem = mem;
    this.#i32 = mem.i32;
    this.#dma = dma;
    this.#opts = checkOptions(opts, { bindAddress: "127.0.0.1", maxHandles: 1024 });
    this.#resetRequest = opts.resetRequest ?? null;
  }

  /**
   * Attach VF `desc.index` (the PF's onEnable): lay out its register block's NIC lines, give it
   * its MAC and IPv4 address, start its doorbell loop. The driver then programs rings and sets
   * VFC_ENABLE.
   */
  attachVf(desc: VfDescriptor, opts: NicVfOptions = {}): void {
    if (this.#closed) throw new InvalidArgumentError("nic: the device is closed");
    if (desc.kind !== "nic") {
      throw new InvalidArgumentError(`nic: VF descriptor kind must be "nic", got "${desc.kind}"`);
    }
    checkInteger("VF index", desc.index, 0, 0xffff);
    checkInteger("VF rid", desc.rid, 0, 0xffff);
    checkInteger("VF register block", desc.regs, 0, this.#mem.bytes - VF_REG_BYTES);
    if (desc.regs % CACHE_LINE !== 0) {
      throw new InvalidArgumentError(`VF register block must be line-aligned, got ${desc.regs}`);
    }
    if (this.#functions.has(desc.index)) {
      throw new InvalidArgumentError(`nic: VF ${desc.index} is already attached`);
    }
    const f = new NicFunction(
      desc,
      vfMac(desc.index),
      vfIpv4(desc.index),
      checkOptions(opts, this.#opts),
      this.#mem.sab,
      (fn) => this.#ready(fn),
    );
    const i32 = this.#i32;
    const r = f.regs;
    i32.fill(0, r + VF_DEVICE_REGS / 4, r + NIC_REG_BYTES / 4);
    initWakeWord(this.#mem.sab, desc.regs + VF_DOORBELL_WAKE, "park");
    this.#writeIdentity(f);
    Atomics.store(i32, r + vrMagic, VF_MAGIC_NIC); // publish: identity (the PF writes the same)
    Atomics.store(i32, r + vrIndex, desc.index); // publish
    Atomics.store(i32, r + vrRid, desc.rid); // publish
    Atomics.store(i32, r + vrControl, 0); // publish: not enabled
    f.lastControl = 0;
    Atomics.store(i32, r + vrStatus, VF_READY); // publish: the driver may configure it
    this.#functions.set(desc.index, f);
    this.#byMac.set(f.mac, f);
    f.loop = this.#run(f);
  }

  /**
   * Function-level reset of VF `index` (the PF's onReset hook, the supervisor before it restarts
   * a domain, or the driver's VFC_RESET): close its host sockets and servers, forget its queues
   * and cursors, clear its ring registers, and interrupt the driver so it sees the reset.
   * If the VF's status is VF_RESETTING, a PF is performing the FLR and finishes the header
   * itself (zeroes control and irq word, bumps vrGeneration, sets VF_READY: src/hw/sriov.ts);
   * otherwise the device does that here too.
   */
  resetVf(index: number): void {
    this.#reset(this.#function(index));
  }

  /** Detach VF `index` (the PF's onDisable): reset it, stop its loop, mark it disabled. */
  detachVf(index: number): void {
    const f = this.#function(index);
    this.#teardown(f);
    f.detached = true;
    Atomics.store(this.#i32, f.regs + vrStatus, VF_DISABLED); // publish: gone
    this.#functions.delete(index);
    this.#byMac.delete(f.mac);
    f.doorbell.wakeAll(); // wake: its loop sees `detached` and ends
  }

  /** Counters and state of VF `index`. */
  stats(index: number): NicVfStats {
    const f = this.#function(index);
    const out: Record<string, number | string> = {};
    NIC_COUNTERS.forEach((name, k) => {
      out[name] = f.counters[k];
    });
    out.index = index;
    out.mac = f.mac;
    out.ipv4 = f.ipv4;
    out.status = Atomics.load(this.#i32, f.regs + vrStatus); // load: statistics
    out.generation = Atomics.load(this.#i32, f.regs + vrGeneration); // load: statistics
    out.handles = f.toe ? f.toe.handles : 0;
    out.udpBindings = f.udp.size;
    out.failure = f.failure;
    out.sockRxHeld = Atomics.load(this.#i32, f.regs + nrSockRxHeld); // load: driver-written
    out.sockRxPeak = Atomics.load(this.#i32, f.regs + nrSockRxPeak); // load: driver-written
    out.doorbellWakes = Atomics.load(this.#i32, f.regs + nrDoorbellWakes); // load: driver-written
    return out as NicVfStats;
  }

  /** Indexes of the attached VFs. */
  get attached(): number[] {
    return [...this.#functions.keys()];
  }

  /** Detach every VF, close every host socket, and wait for the doorbell loops to end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const loops: Promise<void>[] = [];
    for (const index of [...this.#functions.keys()]) {
      loops.push(this.#function(index).loop);
      this.detachVf(index);
    }
    await Promise.all(loops);
  }

  // ---- the doorbell loop ----

  async #run(f: NicFunction): Promise<void> {
    while (!f.detached) {
      await f.waiter.waitAsync(f.ready);
      if (f.detached) break;
      f.counters[kRounds]++;
      this.#service(f);
      await yieldToEventLoop(); // host callbacks run between two rounds
    }
  }

  /** The doorbell predicate: true when a round can make progress. Cheap, allocation-free. */
  #ready(f: NicFunction): boolean {
    if (f.detached) return true;
    const i32 = this.#i32;
    if (Atomics.load(i32, f.regs + vrControl) !== f.lastControl) return true; // load: control
    if (!f.enabled) return false;
    if (Atomics.load(i32, f.regs + nrTxTail) !== f.txHead) return true; // load: TX doorbell
    return f.toe?.ready() === true;
  }

  /**
   * One round: control changes, the TX ring, the TOE; the interrupts it caused wait for the
   * moderation point (switch frames may have marked other functions too).
   */
  #service(f: NicFunction): void {
    this.#control(f);
    if (f.enabled) this.#serviceTx(f);
    if (f.enabled && f.toe && f.toe.service() > 0) f.irqPending = true;
    this.#schedulePending();
    this.#publishStats(f);
  }

  #control(f: NicFunction): void {
    const i32 = this.#i32;
    const c = Atomics.load(i32, f.regs + vrControl); // consume: the driver's control word
    if (c === f.lastControl) return;
    f.lastControl = c;
    if (c & VFC_RESET) {
      if (this.#resetRequest) this.#resetRequest(f.desc.index);
      else this.#reset(f);
      f.lastControl = Atomics.load(i32, f.regs + vrControl); // load: what the FLR left
      return;
    }
    const status = Atomics.load(i32, f.regs + vrStatus); // load: our own status word
    if (c & VFC_ENABLE && !f.enabled && status === VF_READY) this.#enable(f);
    else if (!(c & VFC_ENABLE) && f.enabled) this.#teardown(f); // quiesce; still VF_READY
  }

  /** ENABLE rose: latch and check the driver's ring configuration, start the TOE. */
  #enable(f: NicFunction): void {
    const i32 = this.#i32;
    const r = f.regs;
    const ring = (lo: number, hi: number, size: number, align: number): RingConfig | string => {
      const base = (i32[r + hi] >>> 0) * TWO_32 + (i32[r + lo] >>> 0);
      const n = i32[r + size];
      if (!(n >= 1 && n <= MAX_RING && (n & (n - 1)) === 0)) return `ring size ${n}`;
      if (base % align !== 0) return `ring base ${base} not ${align}-byte aligned`;
      return { base, size: n };
    };
    const tx = ring(nrTxBaseLo, nrTxBaseHi, nrTxSize, DESC_BYTES);
    const rx = ring(nrRxBaseLo, nrRxBaseHi, nrRxSize, DESC_BYTES);
    const cmd = ring(nrCmdBaseLo, nrCmdBaseHi, nrCmdSize, CMD_BYTES);
    const ev = ring(nrEvBaseLo, nrEvBaseHi, nrEvSize, EV_BYTES);
    const rb = ring(nrRbBaseLo, nrRbBaseHi, nrRbSize, DESC_BYTES);
    for (const c of [tx, rx, cmd, ev, rb]) {
      if (typeof c === "string") {
        this.#fail(f, `bad configuration: ${c}`);
        return;
      }
    }
    const irq = i32[r + vrIrqWord] >>> 0;
    if (irq !== 0 && (irq % CACHE_LINE !== 0 || irq > this.#mem.bytes - WAKE_WORD_BYTES)) {
      this.#fail(f, `bad irq wake word ${irq}`);
      return;
    }
    f.irq = irq === 0 ? null : new Notifier(this.#mem.sab, irq);
    const t = tx as RingConfig;
    const x = rx as RingConfig;
    f.tx.base = t.base;
    f.tx.size = t.size;
    f.rx.base = x.base;
    f.rx.size = x.size;
    f.txHead = 0;
    f.rxHead = 0;
    for (let w = nrTxHead; w <= nrHolding; w++) Atomics.store(i32, r + w, 0); // publish: cursors
    this.#writeIdentity(f); // an SR-IOV FLR zeroed it
    const rings: ToeRings = {
      cmdBase: (cmd as RingConfig).base,
      cmdSize: (cmd as RingConfig).size,
      evBase: (ev as RingConfig).base,
      evSize: (ev as RingConfig).size,
      rbBase: (rb as RingConfig).base,
      rbSize: (rb as RingConfig).size,
    };
    f.toe = new ToeFunction(
      this.#dma,
      f.desc.rid,
      i32,
      r,
      rings,
      f.counters,
      this.#toeHost(f),
      f.opts,
    );
    f.enabled = true;
  }

  /** What the TOE of `f` may call back into. */
  #toeHost(f: NicFunction): ToeHost {
    return {
      schedule: () => {
        f.pumpPending = true;
        this.#moderateSoon();
      },
      fail: (why: string) => this.#fail(f, why),
      udpBind: (tag: number, port: number) => this.#udpBind(f, tag, port),
      udpClose: (tag: number, port: number) => this.#udpClose(f, tag, port),
    };
  }

  /** A fatal error of the function: stop it and tell the driver (VF_FAILED until a reset). */
  #fail(f: NicFunction, why: string): void {
    f.counters[kErrors]++;
    this.#teardown(f);
    Atomics.store(this.#i32, f.regs + vrStatus, VF_FAILED); // publish: the driver must reset
    f.failure = why;
    this.#raise(f);
    this.#publishStats(f);
  }

  /** Close host sockets and servers, forget the TOE; the registers are left as they are. */
  #teardown(f: NicFunction): void {
    f.enabled = false;
    if (f.toe) f.toe.close();
    f.toe = null;
    for (const b of f.udpAll) {
      b.closed = true;
      b.socket.close();
    }
    f.udpAll.clear();
    f.udp.clear();
  }

  #reset(f: NicFunction): void {
    const i32 = this.#i32;
    const r = f.regs;
    const underFlr = Atomics.load(i32, r + vrStatus) === VF_RESETTING; // load: a PF's FLR?
    if (!underFlr) Atomics.store(i32, r + vrStatus, VF_RESETTING); // publish: reset under way
    this.#teardown(f);
    const irq = f.irq;
    f.irq = null;
    f.txHead = 0;
    f.rxHead = 0;
    f.failure = "";
    i32.fill(0, r + RING_LINES_FIRST, r + RING_LINES_END);
    i32.fill(0, r + nrSockRxHeld, r + nrDoorbellWakes + 1); // the driver's figures go with it
    this.#writeIdentity(f);
    if (!underFlr) {
      Atomics.store(i32, r + vrIrqWord, 0); // publish: no interrupts until the driver asks again
      Atomics.store(i32, r + vrControl, 0); // publish: RESET done, not enabled
      Atomics.store(i32, r + vrStatus, VF_READY); // publish: the driver may configure it again
      Atomics.add(i32, r + vrGeneration, 1); // publish: the reset is complete (drivers compare)
    }
    f.lastControl = 0;
    if (irq) {
      // After the FLR is complete (a PF finishes it when this hook returns): the parked driver
      // wakes and sees the new generation.
      queueMicrotask(() => {
        irq.notify(); // wake: the driver's irq wake word
        f.counters[kInterrupts]++;
      });
    }
    this.#publishStats(f);
  }

  #writeIdentity(f: NicFunction): void {
    const i32 = this.#i32;
    const r = f.regs;
    Atomics.store(i32, r + nrMacHi, Math.floor(f.mac / TWO_32)); // publish: identity
    Atomics.store(i32, r + nrMacLo, (f.mac % TWO_32) | 0); // publish
    Atomics.store(i32, r + nrIpv4, f.ipv4 | 0); // publish
    Atomics.store(i32, r + nrGatewayIpv4, GATEWAY_IPV4); // publish
    Atomics.store(i32, r + nrMaxFrame, MAX_FRAME); // publish
    Atomics.store(i32, r + nrMaxRing, MAX_RING); // publish
  }

  // ---- TX ring and the switch ----

  #serviceTx(f: NicFunction): void {
    const i32 = this.#i32;
    const tail = Atomics.load(i32, f.regs + nrTxTail); // consume: descriptors published before tail
    if (tail === f.txHead) return; // nothing to send: no write-back, no interrupt
    if ((tail - f.txHead) >>> 0 > f.tx.size) {
      this.#fail(f, `TX tail ${tail} ran past head ${f.txHead} by over the ring`);
      return;
    }
    const dv = this.#descDv;
    const mask = f.tx.size - 1;
    const c = f.counters;
    for (let n = 0; f.txHead !== tail && n < TX_BATCH && f.enabled; n++) {
      const at = f.tx.base + (f.txHead & mask) * DESC_BYTES;
      if (!this.#dmaRead(f, at, this.#desc)) {
        this.#fail(f, `TX ring unreadable at IOVA ${at}`);
        return;
      }
      const iova = dv.getUint32(dIovaHi, true) * TWO_32 + dv.getUint32(dIovaLo, true);
      const len = dv.getUint32(dLength, true);
      let flags = DF_DONE;
      if (len < MIN_FRAME || len > MAX_FRAME) {
        flags |= DF_ERR;
        c[kTxDropped]++;
        c[kErrors]++;
      } else if (!this.#dmaRead(f, iova, this.#frameView(len))) {
        flags |= DF_ERR; // refused by the IOMMU (counted there): nothing was read, nothing sent
        c[kTxDropped]++;
      } else if (this.#route(f, len)) {
        c[kTxFrames]++;
        c[kTxBytes] += len;
      } else {
        c[kTxDropped]++;
      }
      this.#statusDv.setUint32(0, flags, true);
      if (!this.#dmaWrite(f, at + dFlags, this.#status)) {
        this.#fail(f, `TX descriptor unwritable at IOVA ${at}`);
        return;
      }
      f.txHead = (f.txHead + 1) | 0;
    }
    Atomics.store(i32, f.regs + nrTxHead, f.txHead); // publish: descriptors done, slots free
    f.irqPending = true;
  }

  /** Forward the frame in #frame (`len` bytes) from `f`. False if it went nowhere. */
  #route(f: NicFunction, len: number): boolean {
    const dv = this.#frameDv;
    if (readMac(dv, 6) !== f.mac) return false; // spoofed source MAC
    const dst = readMac(dv, 0);
    if (dst === GATEWAY_MAC) return this.#uplink(f, len);
    if (dst === BROADCAST_MAC) {
      for (const g of this.#functions.values()) if (g !== f) this.#receive(g, len);
      return true;
    }
    const g = this.#byMac.get(dst);
    if (g === undefined) return false;
    this.#receive(g, len);
    return true;
  }

  /**
   * Put the frame in #frame (`len` bytes) into `g`'s RX ring, or drop it (counted) when `g` has
   * no buffer posted, the buffer is too small, or the IOMMU refuses the buffer.
   */
  #receive(g: NicFunction, len: number): void {
    const c = g.counters;
    if (!g.enabled) this.#control(g); // its driver may have just enabled it: act on that first
    if (!g.enabled) {
      c[kRxDropped]++;
      return;
    }
    const i32 = this.#i32;
    const tail = Atomics.load(i32, g.regs + nrRxTail); // consume: buffers posted before tail
    if (tail === g.rxHead) {
      c[kRxDropped]++; // no buffer posted: a NIC drops, it never waits
      return;
    }
    if ((tail - g.rxHead) >>> 0 > g.rx.size) {
      this.#fail(g, `RX tail ${tail} ran past head ${g.rxHead} by over the ring`);
      return;
    }
    const at = g.rx.base + (g.rxHead & (g.rx.size - 1)) * DESC_BYTES;
    if (!this.#dmaRead(g, at, this.#desc)) {
      this.#fail(g, `RX ring unreadable at ${at}`);
      return;
    }
    const dv = this.#descDv;
    const iova = dv.getUint32(dIovaHi, true) * TWO_32 + dv.getUint32(dIovaLo, true);
    const cap = dv.getUint32(dLength, true);
    let written = 0;
    let flags = DF_DONE;
    if (cap < len) {
      flags |= DF_ERR;
      c[kRxDropped]++;
      c[kErrors]++;
    } else if (!this.#dmaWrite(g, iova, this.#frameView(len))) {
      flags |= DF_ERR; // refused by the IOMMU (counted there): nothing was written
      c[kRxDropped]++;
    } else {
      written = len;
      c[kRxFrames]++;
      c[kRxBytes] += len;
    }
    this.#wbDv.setUint32(0, written, true);
    this.#wbDv.setUint32(4, flags, true);
    if (!this.#dmaWrite(g, at + dLength, this.#wb)) {
      this.#fail(g, `RX descriptor unwritable at IOVA ${at}`);
      return;
    }
    g.rxHead = (g.rxHead + 1) | 0;
    Atomics.store(i32, g.regs + nrRxHead, g.rxHead); // publish: the frame (or failed slot)
    g.irqPending = true;
  }

  // ---- the UDP uplink ----

  /** A frame to the gateway: send its UDP payload from the VF's binding of its source port. */
  #uplink(f: NicFunction, len: number): boolean {
    const u = this.#udpInfo;
    if (!parseUdpFrame(this.#frameDv, 0, len, u)) return false; // the gateway routes UDP only
    const b = f.udp.get(u.srcPort);
    if (b === undefined || !b.bound) return false;
    // dgram keeps the payload until it is sent: it must be the device's own copy.
    const payload = Buffer.from(
      this.#frame.subarray(u.payloadOffset, u.payloadOffset + u.payloadLength),
    );
    b.sending++;
    b.socket.send(payload, u.dstPort, ipv4ToString(u.dstIp), (err) => {
      if (err) f.counters[kErrors]++;
      // A UDP_CLOSE that came after this datagram closes the socket once it has left.
      if (--b.sending === 0 && b.closed) b.socket.close();
    });
    f.counters[kUdpTx]++;
    return true;
  }

  #udpBind(f: NicFunction, tag: number, port: number): void {
    const toe = f.toe;
    if (!toe) return;
    if (port > 0xffff) {
      toe.post(EV_ERROR, tag, 0, EINVAL, CMD_UDP_BIND, 0);
      return;
    }
    if (port !== 0 && f.udp.has(port)) {
      toe.post(EV_ERROR, tag, 0, EADDRINUSE, CMD_UDP_BIND, 0);
      return;
    }
    if (f.udpAll.size >= MAX_UDP_BINDINGS) {
      toe.post(EV_ERROR, tag, 0, EMFILE, CMD_UDP_BIND, 0);
      return;
    }
    const socket = dgram.createSocket("udp4");
    const b: UdpBinding = { socket, port, bound: false, closed: false, sending: 0 };
    f.udpAll.add(b);
    socket.on("error", (err: Error) => {
      if (b.closed) return;
      if (!b.bound) {
        b.closed = true;
        f.udpAll.delete(b);
        socket.close();
        f.toe?.post(EV_ERROR, tag, 0, hostErrno(err), CMD_UDP_BIND, 0);
        f.toe?.flush();
      } else {
        f.counters[kErrors]++;
      }
    });
    socket.on("listening", () => {
      if (b.closed) return;
      b.port = socket.address().port;
      b.bound = true;
      f.udp.set(b.port, b);
      f.toe?.post(EV_UDP_BOUND, tag, 0, b.port, 0, 0);
      f.toe?.flush();
    });
    socket.on("message", (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      if (!b.closed) this.#fromHost(f, b, msg, rinfo);
    });
    socket.bind(port, f.opts.bindAddress);
  }

  #udpClose(f: NicFunction, tag: number, port: number): void {
    const b = f.udp.get(port);
    if (b === undefined) {
      f.toe?.post(EV_ERROR, tag, 0, EBADF, CMD_UDP_CLOSE, 0);
      return;
    }
    // Datagrams the driver queued on the TX ring before it asked for the close go out first:
    // the round read the TX tail before it took this command, and frames written after that
    // read would otherwise find the port closed and be dropped (a program that echoes a burst
    // and exits lost its last replies so).
    this.#serviceTx(f);
    b.closed = true;
    f.udp.delete(port);
    f.udpAll.delete(b);
    if (b.sending === 0) b.socket.close(); // else the last send's callback closes it
  }

  /** A datagram from the host for `b`'s port: an IPv4/UDP frame into the VF's RX ring. */
  #fromHost(f: NicFunction, b: UdpBinding, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const c = f.counters;
    c[kUdpRx]++;
    const srcIp = parseIpv4(rinfo.address);
    const len = UDP_FRAME_OVERHEAD + msg.length;
    if (srcIp < 0 || len > MAX_FRAME) {
      c[kRxDropped]++;
      return;
    }
    writeUdpHeaders(
      this.#frameDv,
      0,
      f.mac,
      GATEWAY_MAC,
      srcIp,
      f.ipv4,
      rinfo.port,
      b.port,
      msg.length,
    );
    this.#frame.set(msg, UDP_FRAME_OVERHEAD);
    this.#receive(f, len);
    if (f.irqPending) this.#interruptSoon(f);
  }

  // ---- interrupts, counters, DMA ----

  #schedulePending(): void {
    if (this.#irqScheduled) return;
    for (const g of this.#functions.values()) {
      if (g.irqPending) {
        this.#interruptSoon(g);
        return;
      }
    }
  }

  /** Mark `f` for an interrupt at the next moderation point (see the header). */
  #interruptSoon(f: NicFunction): void {
    f.irqPending = true;
    this.#moderateSoon();
  }

  /** Schedule the moderation point, if it is not already. */
  #moderateSoon(): void {
    if (this.#irqScheduled) return;
    this.#irqScheduled = true;
    setImmediate(this.#moderationPoint);
  }

  #raise(f: NicFunction): void {
    const irq = f.irq;
    if (irq === null) return;
    const woke = irq.notifies;
    irq.notify(); // wake: the driver's irq wake word (a no-op unless it is parked)
    f.counters[kInterrupts]++;
    if (irq.notifies !== woke) f.counters[kIrqWakes]++;
  }

  /** Mirror the counters into the register block (low 32 bits) for other threads to read. */
  #publishStats(f: NicFunction): void {
    const i32 = this.#i32;
    const r = f.regs;
    const c = f.counters;
    for (let k = 0; k < NIC_COUNTER_SLOTS; k++) Atomics.store(i32, r + nrCounters + k, c[k] | 0); // publish: statistics
    const bytes = c[kTxBytes] + c[kRxBytes] + c[kToeTxBytes] + c[kToeRxBytes];
    Atomics.store(i32, r + vsCommands, c[kCommands] | 0); // publish: statistics
    Atomics.store(i32, r + vsBytes, bytes | 0); // publish: statistics
    Atomics.store(i32, r + vsErrors, c[kErrors] | 0); // publish: statistics
    Atomics.store(i32, r + vsDmaFaults, c[kDmaFaults] | 0); // publish: statistics
    Atomics.store(i32, r + vsInterrupts, c[kInterrupts] | 0); // publish: statistics
  }

  /** #frame's first `len` bytes as a view made once per length (DmaPort wants exact lengths). */
  #frameView(len: number): Uint8Array {
    let v = this.#frameViews[len];
    if (v === undefined) {
      v = this.#frame.subarray(0, len);
      this.#frameViews[len] = v;
    }
    return v;
  }

  #dmaRead(f: NicFunction, iova: number, dst: Uint8Array): boolean {
    if (this.#dma.read(f.desc.rid, iova, dst) === DMA_OK) return true;
    f.counters[kDmaFaults]++;
    f.counters[kErrors]++;
    return false;
  }

  #dmaWrite(f: NicFunction, iova: number, src: Uint8Array): boolean {
    if (this.#dma.write(f.desc.rid, iova, src) === DMA_OK) return true;
    f.counters[kDmaFaults]++;
    f.counters[kErrors]++;
    return false;
  }

  #function(index: number): NicFunction {
    const f = this.#functions.get(index);
    if (f === undefined) throw new InvalidArgumentError(`nic: VF ${index} is not attached`);
    return f;
  }
}

function checkOptions(opts: NicVfOptions, defaults: VfSettings): VfSettings {
  const bindAddress = opts.bindAddress ?? defaults.bindAddress;
  if (parseIpv4(bindAddress) < 0) {
    throw new InvalidArgumentError(`bindAddress must be an IPv4 address, got "${bindAddress}"`);
  }
  const maxHandles = checkInteger(
    "maxHandles",
    opts.maxHandles ?? defaults.maxHandles,
    1,
    MAX_HANDLES,
  );
  return { bindAddress, maxHandles };
}
