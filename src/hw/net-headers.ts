/**
 * net-headers: the few wire formats the NIC speaks — Ethernet II framing, IPv4 (RFC 791) and
 * UDP (RFC 768) headers — built and parsed in place in a byte buffer, with no allocation.
 *
 * Owns: the header sizes, the MAC-as-number convention and the IPv4 header checksum (RFC 1071).
 * Invariants: a MAC address is a 48-bit unsigned integer (exact in a double), most significant
 * byte first on the wire; an IPv4 address is a 32-bit unsigned integer, network order on the wire.
 * Every multi-byte field on the wire is big-endian (network order).
 * Called by the NIC device model (src/hw/nic.ts: switch and UDP uplink) and by the NIC driver
 * (src/drivers/nic.ts: sendDatagram) and by programs that parse received frames.
 *
 * Ethernet + IPv4 + UDP frame as built here:
 *
 *   byte  0  dst MAC (6)  6 src MAC (6)  12 ethertype 0x0800
 *   byte 14  IPv4: version/IHL 0x45, TOS 0, total length, id 0, flags DF, TTL 64, proto 17,
 *            header checksum, src address, dst address                 (20 bytes, no options)
 *   byte 34  UDP: src port, dst port, length, checksum (0 = none, allowed for IPv4 by RFC 768)
 *   byte 42  payload
 */

/** Bytes of an Ethernet II header (no VLAN tag). */
export const ETH_HEADER = 14;
/** Bytes of an IPv4 header without options. */
export const IPV4_HEADER = 20;
/** Bytes of a UDP header. */
export const UDP_HEADER = 8;
/** Bytes before a UDP payload in a frame built by {@link writeUdpHeaders}. */
export const UDP_FRAME_OVERHEAD = ETH_HEADER + IPV4_HEADER + UDP_HEADER;

export const ETHERTYPE_IPV4 = 0x0800;
export const IPPROTO_UDP = 17;
/** ff:ff:ff:ff:ff:ff as a number. */
export const BROADCAST_MAC = 0xffff_ffff_ffff;

const TWO_32 = 2 ** 32;

/** Read the MAC address at `off` (6 bytes, network order) as a 48-bit number. */
export function readMac(dv: DataView, off: number): number {
  return dv.getUint16(off) * TWO_32 + dv.getUint32(off + 2);
}

/** Write the 48-bit `mac` at `off` in network order. */
export function writeMac(dv: DataView, off: number, mac: number): void {
  dv.setUint16(off, Math.floor(mac / TWO_32));
  dv.setUint32(off + 2, mac % TWO_32);
}

/** Write an Ethernet II header at `off`. */
export function writeEthernet(
  dv: DataView,
  off: number,
  dst: number,
  src: number,
  ethertype: number,
): void {
  writeMac(dv, off, dst);
  writeMac(dv, off + 6, src);
  dv.setUint16(off + 12, ethertype);
}

/** The ones'-complement sum of `len` bytes at `off`, folded to 16 bits (RFC 1071). */
export function internetChecksum(dv: DataView, off: number, len: number): number {
  let sum = 0;
  let i = 0;
  for (; i + 1 < len; i += 2) sum += dv.getUint16(off + i);
  if (i < len) sum += dv.getUint8(off + i) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Write Ethernet, IPv4 and UDP headers for a payload of `payloadLen` bytes that the caller puts
 * at `off + UDP_FRAME_OVERHEAD`. Returns the frame's length. The UDP checksum is left 0 (none).
 */
export function writeUdpHeaders(
  dv: DataView,
  off: number,
  dstMac: number,
  srcMac: number,
  srcIp: number,
  dstIp: number,
  srcPort: number,
  dstPort: number,
  payloadLen: number,
): number {
  writeEthernet(dv, off, dstMac, srcMac, ETHERTYPE_IPV4);
  const ip = off + ETH_HEADER;
  dv.setUint8(ip, 0x45); // version 4, IHL 5 words
  dv.setUint8(ip + 1, 0);
  dv.setUint16(ip + 2, IPV4_HEADER + UDP_HEADER + payloadLen);
  dv.setUint16(ip + 4, 0); // identification
  dv.setUint16(ip + 6, 0x4000); // DF, fragment offset 0
  dv.setUint8(ip + 8, 64); // TTL
  dv.setUint8(ip + 9, IPPROTO_UDP);
  dv.setUint16(ip + 10, 0);
  dv.setUint32(ip + 12, srcIp >>> 0);
  dv.setUint32(ip + 16, dstIp >>> 0);
  dv.setUint16(ip + 10, internetChecksum(dv, ip, IPV4_HEADER));
  const udp = ip + IPV4_HEADER;
  dv.setUint16(udp, srcPort);
  dv.setUint16(udp + 2, dstPort);
  dv.setUint16(udp + 4, UDP_HEADER + payloadLen);
  dv.setUint16(udp + 6, 0);
  return UDP_FRAME_OVERHEAD + payloadLen;
}

/** What {@link parseUdpFrame} finds; the caller owns one and reuses it (no allocation). */
export interface UdpFrameInfo {
  dstMac: number;
  srcMac: number;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** Byte offset of the payload, from the start of the DataView. */
  payloadOffset: number;
  payloadLength: number;
}

/** A fresh, zeroed {@link UdpFrameInfo} to reuse across parses. */
export function udpFrameInfo(): UdpFrameInfo {
  return {
    dstMac: 0,
    srcMac: 0,
    srcIp: 0,
    dstIp: 0,
    srcPort: 0,
    dstPort: 0,
    payloadOffset: 0,
    payloadLength: 0,
  };
}

/**
 * Parse the `len`-byte frame at `off` as Ethernet + IPv4 + UDP into `out`. Returns false (and
 * leaves `out` partly written) if it is not one: another ethertype or protocol, a fragment,
 * a bad IPv4 header checksum, or lengths that do not fit the frame. IPv4 options are skipped.
 */
export function parseUdpFrame(dv: DataView, off: number, len: number, out: UdpFrameInfo): boolean {
  if (len < UDP_FRAME_OVERHEAD) return false;
  if (dv.getUint16(off + 12) !== ETHERTYPE_IPV4) return false;
  const ip = off + ETH_HEADER;
  const vihl = dv.getUint8(ip);
  const ihl = (vihl & 0xf) * 4;
  if (vihl >>> 4 !== 4 || ihl < IPV4_HEADER) return false;
  const total = dv.getUint16(ip + 2);
  if (total < ihl + UDP_HEADER || ETH_HEADER + total > len) return false;
  if ((dv.getUint16(ip + 6) & 0x3fff) !== 0) return false; // MF set or a fragment offset
  if (dv.getUint8(ip + 9) !== IPPROTO_UDP) return false;
  if (internetChecksum(dv, ip, ihl) !== 0) return false;
  const udp = ip + ihl;
  const udpLen = dv.getUint16(udp + 4);
  if (udpLen < UDP_HEADER || udpLen > total - ihl) return false;
  out.dstMac = readMac(dv, off);
  out.srcMac = readMac(dv, off + 6);
  out.srcIp = dv.getUint32(ip + 12);
  out.dstIp = dv.getUint32(ip + 16);
  out.srcPort = dv.getUint16(udp);
  out.dstPort = dv.getUint16(udp + 2);
  out.payloadOffset = udp + UDP_HEADER;
  out.payloadLength = udpLen - UDP_HEADER;
  return true;
}

/** "a.b.c.d" of a 32-bit address. */
export function ipv4ToString(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/**
 * The 32-bit address of "a.b.c.d" (also the IPv4-mapped "::ffff:a.b.c.d" Node reports for
 * dual-stack sockets), or -1 if `s` is not one.
 */
export function parseIpv4(s: string): number {
  const text = s.startsWith("::ffff:") ? s.slice(7) : s;
  const parts = text.split(".");
  if (parts.length !== 4) return -1;
  let ip = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return -1;
    const b = Number(p);
    if (b > 255) return -1;
    ip = ip * 256 + b;
  }
  return ip;
}

/** "02:65:78:00:01:00" of a 48-bit MAC. */
export function macToString(mac: number): string {
  const out: string[] = [];
  for (let shift = 5; shift >= 0; shift--) {
    const b = Math.floor(mac / 2 ** (8 * shift)) % 256;
    out.push(b.toString(16).padStart(2, "0"));
  }
  return out.join(":");
}
