/**
 * nic-regs: the NIC virtual function's contract between device model and driver — the
 * device-specific registers of a VF's register block, the 16-byte descriptors of the frame
 * rings and of the TOE receive-buffer ring, the 32-byte TOE command and event entries, and the
 * addresses (MAC, IPv4) a VF answers to.
 *
 * Owns: every offset, size, opcode and flag both sides use; nothing here runs. Read by the device
 * model (src/hw/nic.ts, src/hw/toe.ts) on the hypervisor thread and by the driver
 * (src/drivers/nic.ts) on a domain or core thread. The common header (identity, control, the
 * doorbell wake word, vs* counters) is src/hw/vf.ts's.
 *
 * The MAC and IPv4 address are derived from the VF index (vfMac, vfIpv4 below); the identity line
 * repeats them for whoever reads registers (an SR-IOV FLR zeroes it; the device rewrites it when
 * the driver enables the VF).
 *
 * Register block, from byte VF_DEVICE_REGS (int32 word indexes nr* count from the start of
 * the block, like vf.ts's vr* words):
 *
 *   byte 256  line 4  identity, device-written at attach and reset: MAC (hi 16 | lo 32), IPv4,
 *                     gateway IPv4, largest frame, largest ring
 *   byte 320  line 5  ring configuration, driver-written before VFC_ENABLE (latched by the device
 *                     when ENABLE rises): base IOVA (lo, hi) and entry count of each ring
 *   byte 384  line 6  doorbells, driver-written (free-running u32 counters, masked by the ring
 *                     size — liburing's convention): TX tail, RX tail, CMD tail, EV head, RB tail
 *   byte 448  line 7  device-written cursors: TX head, RX head, CMD head, EV tail, RB head;
 *                     the holding flag (the TOE waits for EV slots or RB buffers)
 *   byte 512  line 8-9 NIC counters (device-written, low 32 bits, wrap): see NIC_COUNTERS
 *   byte 640  line 10 driver-written figures (plain data for the hypervisor's stats; the device
 *                     never acts on them): bytes received and not yet read by programs, the
 *                     most one connection ever held (the receive window), doorbells that woke
 *                     the device
 *
 * Rings (all in the driver's DMA region, reached by the device only through its DmaPort):
 *
 *   TX   frame descriptors, driver → device. The driver fills [head, tail); the device sends
 *        each frame, writes DONE (| ERR) back into the descriptor and advances TX head.
 *   RX   frame descriptors, device → driver. The driver posts empty buffers up to RX tail; the
 *        device fills the descriptor at RX head (length, DONE | ERR) and advances it. A frame
 *        that finds no posted buffer is dropped and counted, as a real NIC does.
 *   CMD  TOE commands, driver → device (32-byte entries).
 *   EV   TOE events, device → driver (32-byte entries); the driver frees slots by advancing EV
 *        head. The device never overwrites an unconsumed event: with no room it holds its work.
 *   RB   TOE receive buffers, driver → device, in descriptor format. The device fills them in
 *        ring order with a connection's bytes and reports each one with a DATA event that names
 *        its slot, so the driver re-posts them in the same order.
 *
 * Ordering: the producer of a ring writes entries with plain stores and then publishes its
 * cursor register with Atomics.store; the consumer loads the cursor with Atomics.load before it
 * reads entries (store-release / load-acquire; JS atomics are sequentially consistent). The
 * device's entry reads and writes are DMA through the IOMMU; its cursor registers are MMIO.
 * (Intel 82599 / e1000 descriptor rings with head/tail registers; NVMe's SQ tail doorbell.)
 */

import { VF_DEVICE_REGS } from "./vf.js";

// ---- line 4: identity (device-written) ----
const L4 = VF_DEVICE_REGS / 4;
export const nrMacHi = L4 + 0; // top 16 bits of the VF's MAC
export const nrMacLo = L4 + 1; // low 32 bits of the VF's MAC
export const nrIpv4 = L4 + 2; // the VF's IPv4 address
export const nrGatewayIpv4 = L4 + 3; // the uplink gateway's IPv4 address
export const nrMaxFrame = L4 + 4; // largest frame the device sends or receives, in bytes
export const nrMaxRing = L4 + 5; // largest entry count of any ring

// ---- line 5: ring configuration (driver-written, latched at VFC_ENABLE) ----
const L5 = L4 + 16;
export const nrTxBaseLo = L5 + 0;
export const nrTxBaseHi = L5 + 1;
export const nrTxSize = L5 + 2;
export const nrRxBaseLo = L5 + 3;
export const nrRxBaseHi = L5 + 4;
export const nrRxSize = L5 + 5;
export const nrCmdBaseLo = L5 + 6;
export const nrCmdBaseHi = L5 + 7;
export const nrCmdSize = L5 + 8;
export const nrEvBaseLo = L5 + 9;
export const nrEvBaseHi = L5 + 10;
export const nrEvSize = L5 + 11;
export const nrRbBaseLo = L5 + 12;
export const nrRbBaseHi = L5 + 13;
export const nrRbSize = L5 + 14;

// ---- line 6: doorbells (driver-written) ----
const L6 = L5 + 16;
export const nrTxTail = L6 + 0; // descriptors [0, tail) have been handed to the device
export const nrRxTail = L6 + 1; // buffers [0, tail) have been posted
export const nrCmdTail = L6 + 2; // commands [0, tail) have been submitted
export const nrEvHead = L6 + 3; // events [0, head) have been consumed: their slots are free
export const nrRbTail = L6 + 4; // TOE receive buffers [0, tail) have been posted

// ---- line 7: device cursors (device-written) ----
const L7 = L6 + 16;
export const nrTxHead = L7 + 0; // descriptors [0, head) are done (written back)
export const nrRxHead = L7 + 1; // buffers [0, head) hold frames (written back)
export const nrCmdHead = L7 + 2; // commands [0, head) have been taken
export const nrEvTail = L7 + 3; // events [0, tail) have been written
export const nrRbHead = L7 + 4; // TOE receive buffers [0, head) have been filled
/**
 * 1 while the TOE holds work that waits for EV slots or RB buffers, else 0. A driver that frees
 * slots or posts buffers rings the doorbell only when this is 1 (notification suppression, as
 * NVMe's event index or virtio's used-event): device stores it before it parks and re-checks;
 * the driver stores its head/tail before it loads this, so one of them sees the other.
 */
export const nrHolding = L7 + 5;

// ---- line 8 on: NIC counters (device-written, low 32 bits) ----
const L8 = L7 + 16;
/** Names of the NIC counters, in slot order; word nrCounters + k mirrors slot k (32 words at most). */
export const NIC_COUNTERS = [
  "txFrames",
  "rxFrames",
  "txDropped",
  "rxDropped",
  "txBytes",
  "rxBytes",
  "udpTx",
  "udpRx",
  "commands",
  "events",
  "connections",
  "refused",
  "toeTxBytes",
  "toeRxBytes",
  "dmaFaults",
  "errors",
  "interrupts",
  "heldBytes",
  "peakHeldBytes",
  "txBlocked",
  "rxPaused",
  "txWrites",
  "irqWakes",
  "rounds",
  "pauses",
  "resumes",
] as const;
export type NicCounterName = (typeof NIC_COUNTERS)[number];
export const nrCounters = L8;
// Slot numbers of the counters (index into a device's counter array, and + nrCounters a word).
export const kTxFrames = 0; // frames taken from the TX ring and sent (switch or uplink)
export const kRxFrames = 1; // frames written into the RX ring
export const kTxDropped = 2; // TX frames not sent: bad length, DMA fault, spoofed source, no route
export const kRxDropped = 3; // frames for this VF dropped: no buffer posted, too small, DMA fault
export const kTxBytes = 4;
export const kRxBytes = 5;
export const kUdpTx = 6; // datagrams sent to the host
export const kUdpRx = 7; // datagrams received from the host
export const kCommands = 8; // TOE commands taken
export const kEvents = 9; // TOE events written
export const kConnections = 10; // TCP connections accepted or connected, in total
export const kRefused = 11; // host connections refused: handle table full
export const kToeTxBytes = 12; // TCP bytes DMA-read from SEND buffers and written to host sockets
export const kToeRxBytes = 13; // TCP bytes DMA-written into receive buffers
export const kDmaFaults = 14; // DMAs the DmaPort refused
export const kErrors = 15; // DMA faults, bad descriptors or commands, fatal VF errors
export const kInterrupts = 16; // irq wake-word notifications
export const kHeldBytes = 17; // TCP bytes the device holds now (received not delivered + unsent)
export const kPeakHeldBytes = 18; // the largest kHeldBytes seen since the VF was attached
export const kTxBlocked = 19; // times a connection's SENDs were held until the host socket drained
export const kRxPaused = 20; // times a host socket was paused: no RB buffer or EV slot for its bytes
export const kTxWrites = 21; // host socket writes: a connection's SENDs of one batch make one
export const kIrqWakes = 22; // interrupts that found the driver parked (an Atomics.notify each)
export const kRounds = 23; // rounds of the doorbell loop (wake-ups of the device)
export const kPauses = 24; // PAUSE commands that stopped a connection's receive side
export const kResumes = 25; // RESUME commands that restarted it
export const NIC_COUNTER_SLOTS = NIC_COUNTERS.length;

// ---- line 10: socket-layer figures (driver-written, for statistics only) ----
const L10 = L8 + 32;
/** Received TCP bytes the driver's socket layer holds, not yet read by programs (all sockets). */
export const nrSockRxHeld = L10 + 0;
/** The most received bytes one connection held at once since the driver attached. */
export const nrSockRxPeak = L10 + 1;
/** Doorbells that found the device parked (each an Atomics.notify), since the driver attached. */
export const nrDoorbellWakes = L10 + 2;

/** Bytes of the register block the NIC uses, from byte 0; must fit in VF_REG_BYTES. */
export const NIC_REG_BYTES = (L10 + 16) * 4;

// ---- descriptors (TX, RX, RB): 16 bytes, little-endian ----
export const DESC_BYTES = 16;
export const dIovaLo = 0; // u32: buffer IOVA, low 32 bits
export const dIovaHi = 4; // u32: buffer IOVA, high bits
export const dLength = 8; // u32: TX: frame bytes; RX/RB: buffer capacity, written back: bytes filled
export const dFlags = 12; // u32: DF_* bits
export const DF_DONE = 1; // device: the descriptor is finished (written back)
export const DF_ERR = 2; // device: it failed (bad length, DMA fault, buffer too small)
export const DF_EOP = 4; // driver, TX: end of packet (each frame is one descriptor)

// ---- TOE command entries (CMD ring): 32 bytes, 8 little-endian u32 ----
export const CMD_BYTES = 32;
export const cOp = 0; // CMD_* opcode
export const cTag = 4; // the driver's token, echoed in the command's events
export const cHandle = 8; // a connection or listener handle
export const cA = 12;
export const cB = 16;
export const cC = 20;

export const CMD_LISTEN = 1; // a = port (0: ephemeral), b = backlog → LISTENING or ERROR
export const CMD_CONNECT = 2; // a = IPv4, b = port → CONNECTED or ERROR (the handle needs no CLOSE)
export const CMD_SEND = 3; // handle, a = IOVA lo, c = IOVA hi, b = length → SENT or ERROR
export const CMD_SHUTDOWN_WR = 4; // handle: send FIN after queued SENDs → (nothing, or ERROR)
export const CMD_CLOSE = 5; // handle (connection or listener) → CLOSED (ERROR EBADF: no such handle)
export const CMD_UDP_BIND = 6; // a = port (0: ephemeral) → UDP_BOUND or ERROR
export const CMD_UDP_CLOSE = 7; // a = port → (nothing, or ERROR)
/**
 * handle = conn: stop reading the host socket (TCP's window closes on the peer) and hold its
 * received bytes; DATA already written stays valid → (nothing, or ERROR). Taken before the
 * device fills any RB buffer posted after it, so once the driver has published PAUSE and then
 * re-posted buffers, the connection gets at most the buffers that were posted before.
 */
export const CMD_PAUSE = 8;
/** handle = conn: undo PAUSE — deliver the held bytes, read the host socket again → (nothing, or ERROR). */
export const CMD_RESUME = 9;

// ---- TOE event entries (EV ring): 32 bytes, 8 little-endian u32 ----
export const EV_BYTES = 32;
export const eType = 0; // EV_* type
export const eTag = 4; // the token of the command this answers; 0 for host-initiated events
export const eHandle = 8;
export const eA = 12;
export const eB = 16;
export const eC = 20;

export const EV_LISTENING = 1; // tag, handle = listener, a = port
export const EV_ACCEPTED = 2; // handle = conn, a = remote IPv4, b = remote port, c = listener
export const EV_CONNECTED = 3; // tag, handle = conn, a = local port
export const EV_DATA = 4; // handle = conn, a = RB slot, b = bytes, c = errno (0; else not filled)
export const EV_EOF = 5; // handle = conn: the peer sent FIN, after every DATA before it
export const EV_SENT = 6; // tag, handle = conn, b = bytes: the SEND's buffer is free again
export const EV_CLOSED = 7; // handle: the answer to CLOSE; the handle is free for reuse
export const EV_ERROR = 8; // tag, handle (or 0), a = errno, b = CMD_* opcode (0: host-initiated);
// for a SEND the tag is the driver's buffer tag, as in SENT
export const EV_UDP_BOUND = 9; // tag, a = port

/**
 * Handles: slot (low HANDLE_SLOT_BITS) | sequence (the bits above), so that a handle used after
 * its CLOSED names nothing instead of the slot's next owner. Always > 0.
 */
export const HANDLE_SLOT_BITS = 12;
export const MAX_HANDLES = (1 << HANDLE_SLOT_BITS) - 1;

// ---- sizes and addresses ----
/** Largest frame, in bytes (a standard Ethernet frame fits; so does a 2 KiB buffer). */
export const MAX_FRAME = 2048;
/** Smallest frame: an Ethernet header. */
export const MIN_FRAME = 14;
/** Largest entry count of any ring. */
export const MAX_RING = 4096;

/** 02:65:78:00:00:01 — the uplink gateway (locally administered, unicast: bit 1 of byte 0). */
export const GATEWAY_MAC = 0x0265_7800_0001;
/** 10.0.0.1 */
export const GATEWAY_IPV4 = 0x0a00_0001;

/** The MAC of VF `index`: 02:65:78:00:01:00 + index (locally administered, from the index). */
export function vfMac(index: number): number {
  return 0x0265_7800_0100 + index;
}

/** The IPv4 address of VF `index`: 10.0.1.1 + index. */
export function vfIpv4(index: number): number {
  return (0x0a00_0101 + index) >>> 0;
}
