/**
 * tlb: each core's translation lookaside buffer, the shootdown protocol that keeps every TLB
 * honest after the kernel takes a mapping away, and the {@link Translator} that puts a TLB in
 * front of the page walk.
 *
 * Owns: {@link Tlb} — a set-associative cache of PTEs in private typed arrays (not shared: one
 * per thread); the shootdown board — one mailbox per participant in shared memory;
 * {@link Shootdown} — the hypervisor's side of the board; {@link ShootdownMailbox} — a
 * participant's side; {@link Translator} — TLB + walk + the last page fault, for a core. The
 * TLB counts its invalidations in an epoch: a cache of translations kept above the Translator
 * (ProcessMemory's last-translation cache, src/libos/vm.ts) asks for it through
 * Translator.stamp() — which also does step P1 — and empties itself when it changes.
 *
 * Vocabulary
 *   asid         an address space's id in the TLB: its root frame (src/hw/mmu.ts). A root frame
 *                is reused only after destroyAddressSpace, which must follow an asid shootdown.
 *   participant  a thread that may hold translations: each XOS core, and each domain that
 *                copies user memory. It owns one mailbox on the board.
 *   generation   a per-mailbox counter the hypervisor bumps once per request; a participant
 *                acknowledges a generation once every request up to it is done.
 *
 * Shootdown protocol (the hypervisor H is the only thread that changes PTEs; P is a participant)
 *   H1. change the PTEs (mmu.unmap / protect / map with replace: one Atomics RMW each).
 *   H2. for each target P: write the request (pages of an asid, a whole asid) into P's ring and
 *       publish it with a store of the ring's tail; if the ring is full, set P's flushAll flag
 *       instead. Then Atomics.add P's generation (seq-cst).
 *   H3. load P's state. OFFLINE (dead or not started) and IDLE (parked, holding no translation
 *       in use) participants need no acknowledgement. For an ACTIVE one, wait (Atomics.waitAsync
 *       on P's ack word; the hypervisor never spins) until ack >= the generation of H2.
 *   H4. only then free or reuse the frame, or the page-table frames, or the asid.
 *   P1. at every TLB lookup and scheduling point: load the generation (one Atomics.load); if it
 *       equals the one last seen, nothing to do — the common case.
 *   P2. otherwise: exchange flushAll to 0 (a flush of everything if it was set), load the
 *       tail and do every request in [head, tail), store head.
 *   P3. store ack = the generation loaded in P1 and notify the ack word. Every request up to that
 *       generation was written before the generation was bumped, so P2 has seen all of them.
 *   P4. going idle (before parking): store state = IDLE, then do P1–P3. Waking: store state =
 *       ACTIVE, then P1–P3 before the first lookup. The state store and the generation load on
 *       P's side and the generation add and the state load on H's side are all seq-cst, so they
 *       form a Dekker pair: either H sees ACTIVE and waits for P's ack, or P sees the new
 *       generation before it uses its TLB again.
 *   A participant that never reaches P1 (a green thread computing without yielding) delays H4
 *   but nothing breaks: H waits asynchronously. The supervisor marks a dead participant OFFLINE
 *   (which also wakes a waiting H); a restarted participant attaches with an empty TLB and
 *   skips whatever was posted before.
 *
 * Rejected: a generation counter only (every core would flush its whole TLB per unmap); one
 * global board (a core would have to track which requests it had done); waking parked cores to
 * acknowledge (lazy idle, as Linux's lazy TLB mode, is cheaper and needs no wake-up); waiting
 * with Atomics.wait on the hypervisor (it runs the device models and must not block).
 *
 * Shootdown board at byte `off`:
 *   off +  0  line B   magic, participants, capacity                 written once at lay-out
 *   off + 64  mailbox of participant 0, then 1, …, each `stride` bytes:
 *     + 0    line R   gen, tail, flushAll      hypervisor (flushAll also exchanged to 0 by P)
 *     + 64   line A   ack, head, state         participant (state OFFLINE also by the hypervisor,
 *                                              only for a participant whose thread is gone)
 *     + 128  ring     capacity × 4 int32: kind, asid, vpn, count   written by the hypervisor
 *
 * Who may call: Tlb and ShootdownMailbox and Translator on their own thread only; Shootdown
 * on the hypervisor only.
 */

import { checkInteger, checkPowerOfTwo, InvalidArgumentError, panic } from "../errors.js";
import { type Arena, alignUp, CACHE_LINE } from "../shm/layout.js";
import {
  ACCESS_WRITE,
  type Access,
  type AddressTranslation,
  checkAccess,
  FAULT_BAD_ADDRESS,
  type Mmu,
  PTE_D,
  toVa,
  UserMemory,
} from "./mmu.js";
import { PAGE_MASK, PAGE_SHIFT, PAGE_SIZE } from "./physmem.js";

// ---------------------------------------------------------------------------------------------
// Tlb

export interface TlbOptions {
  /** Sets (a power of two; default 16). */
  readonly sets?: number;
  /** Ways per set (default 4): 16 × 4 = 64 entries. */
  readonly ways?: number;
}

/**
 * A set-associative TLB: the tag is (asid, virtual page number), the data a copy of the PTE as
 * it was when the entry was filled. Round-robin replacement within a set. Private to its
 * thread: plain typed arrays, no Atomics. Allocates nothing after construction.
 */
export class Tlb {
  readonly sets: number;
  readonly ways: number;
  /** Lookups that found an entry. */
  hits = 0;
  /** Lookups that found none. */
  misses = 0;
  /** Entries dropped by invalidations (of any kind). */
  invalidations = 0;
  /** invalidateAll calls. */
  flushes = 0;
  /**
   * Bumped by every invalidation call (page, range, asid, all), whether or not it found an
   * entry: a cache of translations kept outside the TLB (ProcessMemory's, through
   * {@link Translator.stamp}) is valid only while this stays the same. Wraps as an int32.
   */
  epoch = 0;
  readonly #asid: Int32Array; // -1: empty way
  readonly #vpn: Int32Array;
  readonly #pte: Int32Array;
  readonly #victim: Uint8Array;
  readonly #setMask: number;

  constructor(options: TlbOptions = {}) {
    this.sets = checkPowerOfTwo("tlb sets", options.sets ?? 16, 1, 1 << 16);
    this.ways = checkInteger("tlb ways", options.ways ?? 4, 1, 64);
    const n = this.sets * this.ways;
    this.#asid = new Int32Array(n).fill(-1);
    this.#vpn = new Int32Array(n);
    this.#pte = new Int32Array(n);
    this.#victim = new Uint8Array(this.sets);
    this.#setMask = this.sets - 1;
  }

  /** Entries in all. */
  get entries(): number {
    return this.sets * this.ways;
  }

  /** The cached PTE (an int32 with P set, so never 0) for (asid, vpn), or 0 on a miss. */
  lookup(asid: number, vpn: number): number {
    const base = this.#set(asid, vpn) * this.ways;
    const end = base + this.ways;
    for (let i = base; i < end; i++) {
      if (this.#vpn[i] === vpn && this.#asid[i] === asid) {
        this.hits++;
        return this.#pte[i];
      }
    }
    this.misses++;
    return 0;
  }

  /** Cache `pte` (present) for (asid, vpn), replacing an entry with the same tag if any. */
  insert(asid: number, vpn: number, pte: number): void {
    const set = this.#set(asid, vpn);
    const base = set * this.ways;
    const end = base + this.ways;
    let slot = -1;
    for (let i = base; i < end; i++) {
      if (this.#asid[i] === asid && this.#vpn[i] === vpn) {
        slot = i;
        break;
      }
      if (slot < 0 && this.#asid[i] === -1) slot = i;
    }
    if (slot < 0) {
      const v = this.#victim[set];
      slot = base + v;
      this.#victim[set] = v + 1 === this.ways ? 0 : v + 1;
    }
    this.#asid[slot] = asid;
    this.#vpn[slot] = vpn;
    this.#pte[slot] = pte | 0;
  }

  /** Drop the entry for the page that holds `va` in `asid`. */
  invalidatePage(asid: number, va: number): void {
    this.epoch = (this.epoch + 1) | 0;
    const vpn = toVa(va) >>> PAGE_SHIFT;
    const base = this.#set(asid, vpn) * this.ways;
    for (let i = base; i < base + this.ways; i++) {
      if (this.#asid[i] === asid && this.#vpn[i] === vpn) this.#drop(i);
    }
  }

  /** Drop the entries for pages [vpn, vpn + count) of `asid`. */
  invalidateRange(asid: number, vpn: number, count: number): void {
    if (count === 1) {
      this.invalidatePage(asid, vpn * PAGE_SIZE);
      return;
    }
    this.epoch = (this.epoch + 1) | 0;
    for (let i = 0; i < this.#asid.length; i++) {
      if (this.#asid[i] === asid && (this.#vpn[i] - vpn) >>> 0 < count) this.#drop(i);
    }
  }

  /** Drop every entry of `asid`. */
  invalidateAsid(asid: number): void {
    this.epoch = (this.epoch + 1) | 0;
    for (let i = 0; i < this.#asid.length; i++) if (this.#asid[i] === asid) this.#drop(i);
  }

  /** Drop every entry. */
  invalidateAll(): void {
    this.epoch = (this.epoch + 1) | 0;
    for (let i = 0; i < this.#asid.length; i++) if (this.#asid[i] !== -1) this.#drop(i);
    this.flushes++;
  }

  #drop(i: number): void {
    this.#asid[i] = -1;
    this.invalidations++;
  }

  #set(asid: number, vpn: number): number {
    return (vpn ^ (Math.imul(asid, 0x9e3779b1) >>> 20)) & this.#setMask;
  }
}

// ---------------------------------------------------------------------------------------------
// The shootdown board

/** Names the board across threads: plain data, safe in workerData. */
export interface ShootdownDescriptor {
  readonly offset: number;
  /** Number of mailboxes (cores and domains), at most 32 (targets are a bit mask). */
  readonly participants: number;
  /** Requests a mailbox holds before it degrades to flush-all (a power of two). */
  readonly capacity: number;
}

/** Participant states (word `state` of line A). */
export const PARTICIPANT_OFFLINE = 0;
export const PARTICIPANT_ACTIVE = 1;
export const PARTICIPANT_IDLE = 2;

/** Every participant, as a target mask. */
export const ALL_PARTICIPANTS = -1;

// Board header words.
const kbMagic = 0;
const kbParticipants = 1;
const kbCapacity = 2;
const BOARD_MAGIC = 0x544c4253; // "TLBS"
// Mailbox words, relative to the mailbox's first word.
const kGen = 0; // line R
const kTail = 1;
const kFlushAll = 2;
const kAck = CACHE_LINE / 4; // line A
const kHead = kAck + 1;
const kState = kAck + 2;
const kRing = (2 * CACHE_LINE) / 4;
const REQUEST_WORDS = 4; // kind, asid, vpn, count
const REQ_PAGES = 1;
const REQ_ASID = 2;

function mailboxBytes(capacity: number): number {
  return 2 * CACHE_LINE + alignUp(capacity * REQUEST_WORDS * 4, CACHE_LINE);
}

/** Bytes of a board with these dimensions. */
export function shootdownBoardBytes(participants: number, capacity: number): number {
  return CACHE_LINE + participants * mailboxBytes(capacity);
}

/** Lay out and initialise the board in the boot arena (boot only). Every mailbox starts OFFLINE. */
export function layShootdownBoard(
  arena: Arena,
  participants: number,
  capacity = 16,
): ShootdownDescriptor {
  checkInteger("shootdown participants", participants, 1, 32);
  checkPowerOfTwo("shootdown capacity", capacity, 1, 1 << 12);
  const bytes = shootdownBoardBytes(participants, capacity);
  const region = arena.alloc("tlb.shootdown", bytes);
  const w = new Int32Array(arena.sab, region.offset, bytes / 4);
  w.fill(0);
  w[kbParticipants] = participants;
  w[kbCapacity] = capacity;
  Atomics.store(w, kbMagic, BOARD_MAGIC); // publish: the board is initialised
  return { offset: region.offset, participants, capacity };
}

function checkBoard(i32: Int32Array, desc: ShootdownDescriptor): void {
  checkInteger("shootdown participants", desc.participants, 1, 32);
  checkPowerOfTwo("shootdown capacity", desc.capacity, 1, 1 << 12);
  if (
    desc.offset % CACHE_LINE !== 0 ||
    desc.offset + shootdownBoardBytes(desc.participants, desc.capacity) > i32.byteLength
  ) {
    throw new InvalidArgumentError(
      `shootdown board at byte ${desc.offset} is misaligned or overruns memory`,
    );
  }
  const at = desc.offset / 4;
  const magic = Atomics.load(i32, at + kbMagic); // load: published at lay-out
  if (magic !== BOARD_MAGIC) panic(`tlb: no shootdown board at byte ${desc.offset}`);
  if (i32[at + kbParticipants] !== desc.participants || i32[at + kbCapacity] !== desc.capacity) {
    panic(`tlb: shootdown board at byte ${desc.offset} has other dimensions than its descriptor`);
  }
}

/**
 * The hypervisor's side of the board: post invalidations to participants (steps H2) and wait
 * for their acknowledgements (H3). Hypervisor thread only.
 */
export class Shootdown {
  readonly descriptor: ShootdownDescriptor;
  readonly participants: number;
  /** Requests posted (one per target), and how many degraded to a flush-all. */
  posted = 0;
  overflows = 0;
  readonly #i32: Int32Array;
  readonly #boxes: Int32Array; // first word of each mailbox
  readonly #mask: number;

  constructor(sab: SharedArrayBuffer, desc: ShootdownDescriptor) {
    this.#i32 = new Int32Array(sab);
    checkBoard(this.#i32, desc);
    this.descriptor = desc;
    this.participants = desc.participants;
    this.#mask = desc.capacity - 1;
    const stride = mailboxBytes(desc.capacity) / 4;
    this.#boxes = new Int32Array(desc.participants);
    for (let p = 0; p < desc.participants; p++)
      this.#boxes[p] = desc.offset / 4 + CACHE_LINE / 4 + p * stride;
  }

  /** Post: drop pages [va, va + count × 4096) of `asid` from the targets' TLBs. */
  invalidatePages(asid: number, va: number, count = 1, targets = ALL_PARTICIPANTS): void {
    const a = toVa(va);
    if (a < 0 || (a & PAGE_MASK) !== 0 || !Number.isInteger(count) || count < 1) {
      panic(`tlb: shootdown of ${count} pages at ${va}: not a page-aligned range`);
    }
    for (let p = 0; p < this.participants; p++) {
      if (((targets >>> p) & 1) !== 0) this.#post(p, REQ_PAGES, asid, a >>> PAGE_SHIFT, count);
    }
  }

  /** Post: drop every entry of `asid` (before its root frame is reused). */
  invalidateAsid(asid: number, targets = ALL_PARTICIPANTS): void {
    for (let p = 0; p < this.participants; p++) {
      if (((targets >>> p) & 1) !== 0) this.#post(p, REQ_ASID, asid, 0, 0);
    }
  }

  /** Post: flush the targets' whole TLBs. */
  invalidateAll(targets = ALL_PARTICIPANTS): void {
    const i32 = this.#i32;
    for (let p = 0; p < this.participants; p++) {
      if (((targets >>> p) & 1) === 0) continue;
      const box = this.#boxes[p];
      Atomics.store(i32, box + kFlushAll, 1); // publish: flush everything
      Atomics.add(i32, box + kGen, 1); // publish: a new generation (seq-cst: pairs with P's state store)
      this.posted++;
    }
  }

  /** State of participant `p`: PARTICIPANT_OFFLINE, _ACTIVE or _IDLE. */
  state(p: number): number {
    return Atomics.load(this.#i32, this.#box(p) + kState); // load: written by the participant
  }

  /** Targets that are ACTIVE and have not yet acknowledged all that was posted to them. */
  pending(targets = ALL_PARTICIPANTS): number {
    let n = 0;
    for (let p = 0; p < this.participants; p++) {
      if (((targets >>> p) & 1) === 0) continue;
      const posted = Atomics.load(this.#i32, this.#boxes[p] + kGen); // load: what we posted
      if (this.#mustWait(p, posted)) n++;
    }
    return n;
  }

  /**
   * Resolve once every target has acknowledged everything posted to it so far, or is idle or
   * offline (step H3). Never blocks the thread: parks with Atomics.waitAsync.
   */
  async waitAcks(targets = ALL_PARTICIPANTS): Promise<void> {
    const i32 = this.#i32;
    const want: number[] = [];
    for (let p = 0; p < this.participants; p++) want.push(Atomics.load(i32, this.#boxes[p] + kGen)); // load: generations to wait for
    for (let p = 0; p < this.participants; p++) {
      if (((targets >>> p) & 1) === 0) continue;
      const ackAt = this.#boxes[p] + kAck;
      while (this.#mustWait(p, want[p])) {
        const seen = Atomics.load(i32, ackAt); // load: the value we sleep on
        if (((seen - want[p]) | 0) >= 0) break;
        const r = Atomics.waitAsync(i32, ackAt, seen); // park: until the participant acks
        if (r.async) {
          // A pending waitAsync does not keep the event loop alive; this timer does, until woken.
          const keepAlive = setInterval(noop, 1 << 30);
          try {
            await r.value;
          } finally {
            clearInterval(keepAlive);
          }
        }
      }
    }
  }

  /** Post pages and wait: steps H2 and H3 in one call. */
  async shootdownPages(
    asid: number,
    va: number,
    count = 1,
    targets = ALL_PARTICIPANTS,
  ): Promise<void> {
    this.invalidatePages(asid, va, count, targets);
    await this.waitAcks(targets);
  }

  /**
   * The supervisor's word that participant `p`'s thread is gone: it will never acknowledge, and
   * its TLB no longer exists. Wakes a waitAcks that waits for it.
   */
  markOffline(p: number): void {
    const box = this.#box(p);
    Atomics.store(this.#i32, box + kState, PARTICIPANT_OFFLINE); // publish: nobody holds translations here
    Atomics.notify(this.#i32, box + kAck); // wake: a waitAcks parked on this mailbox
  }

  #mustWait(p: number, want: number): boolean {
    const box = this.#boxes[p];
    if (Atomics.load(this.#i32, box + kState) !== PARTICIPANT_ACTIVE) return false; // load: H3 (seq-cst, after the gen add)
    return ((Atomics.load(this.#i32, box + kAck) - want) | 0) < 0; // load: acknowledged generation
  }

  #post(p: number, kind: number, asid: number, vpn: number, count: number): void {
    const i32 = this.#i32;
    const box = this.#boxes[p];
    const tail = i32[box + kTail];
    const head = Atomics.load(i32, box + kHead); // load: slots the participant has finished with
    if (((tail - head) | 0) > this.#mask) {
      Atomics.store(i32, box + kFlushAll, 1); // publish: too many requests to list: flush everything
      this.overflows++;
    } else {
      const at = box + kRing + (tail & this.#mask) * REQUEST_WORDS;
      i32[at] = kind;
      i32[at + 1] = asid;
      i32[at + 2] = vpn;
      i32[at + 3] = count;
      Atomics.store(i32, box + kTail, (tail + 1) | 0); // publish: the request
    }
    Atomics.add(i32, box + kGen, 1); // publish: a new generation (seq-cst: pairs with P's state store)
    this.posted++;
  }

  #box(p: number): number {
    checkInteger("participant", p, 0, this.participants - 1);
    return this.#boxes[p];
  }
}

function noop(): void {}

/**
 * A participant's side of the board: one mailbox, bound to this thread's TLB (steps P1–P4).
 * Constructing it attaches: the TLB must be empty then (a fresh or restarted thread).
 */
export class ShootdownMailbox {
  readonly index: number;
  readonly tlb: Tlb;
  /** Generations processed (P2 runs), for statistics. */
  processed = 0;
  readonly #i32: Int32Array;
  readonly #box: number;
  readonly #mask: number;
  #seen: number;
  #head: number;

  constructor(sab: SharedArrayBuffer, desc: ShootdownDescriptor, index: number, tlb: Tlb) {
    this.#i32 = new Int32Array(sab);
    checkBoard(this.#i32, desc);
    checkInteger("participant", index, 0, desc.participants - 1);
    this.index = index;
    this.tlb = tlb;
    this.#mask = desc.capacity - 1;
    this.#box = desc.offset / 4 + CACHE_LINE / 4 + index * (mailboxBytes(desc.capacity) / 4);
    const i32 = this.#i32;
    tlb.invalidateAll();
    Atomics.store(i32, this.#box + kState, PARTICIPANT_ACTIVE); // publish: from now on H waits for us
    this.#seen = Atomics.load(i32, this.#box + kGen); // load: skip what was posted to a TLB that is gone
    this.#head = Atomics.load(i32, this.#box + kTail); // load: same
    Atomics.store(i32, this.#box + kFlushAll, 0); // publish: nothing to flush in an empty TLB
    Atomics.store(i32, this.#box + kHead, this.#head); // release: the old requests' slots
    Atomics.store(i32, this.#box + kAck, this.#seen); // publish: acknowledged
  }

  /** Step P1: do what was posted since the last call; true if there was anything. Cheap. */
  poll(): boolean {
    const gen = Atomics.load(this.#i32, this.#box + kGen); // load-acquire: anything posted since?
    if (gen === this.#seen) return false;
    this.#process(gen);
    return true;
  }

  /** Step P4, before parking: from now on the hypervisor does not wait for this thread. */
  enterIdle(): void {
    Atomics.store(this.#i32, this.#box + kState, PARTICIPANT_IDLE); // publish: lazy mode (seq-cst, Dekker with H2/H3)
    this.poll();
  }

  /** Step P4, on waking: catch up before the first lookup. */
  leaveIdle(): void {
    Atomics.store(this.#i32, this.#box + kState, PARTICIPANT_ACTIVE); // publish: H waits for us again (seq-cst, Dekker with H2/H3)
    this.poll();
  }

  /**
   * This thread is leaving: the hypervisor stops waiting for it. It also acknowledges every
   * generation posted so far (it holds no translations any more), which changes the ack word a
   * waitAcks may be about to park on, so that park cannot miss the wake-up.
   */
  detach(): void {
    const i32 = this.#i32;
    Atomics.store(i32, this.#box + kState, PARTICIPANT_OFFLINE); // publish: no translations here
    Atomics.store(i32, this.#box + kAck, Atomics.load(i32, this.#box + kGen)); // publish: all acknowledged (load: posted so far)
    Atomics.notify(i32, this.#box + kAck); // wake: a waitAcks parked on this mailbox
  }

  /** Steps P2 and P3. */
  #process(gen: number): void {
    const i32 = this.#i32;
    const box = this.#box;
    const tlb = this.tlb;
    const flush = Atomics.exchange(i32, box + kFlushAll, 0) !== 0; // claim: a pending flush-all
    const tail = Atomics.load(i32, box + kTail); // consume: requests published before tail
    if (flush) {
      tlb.invalidateAll();
    } else {
      for (let h = this.#head; h !== tail; h = (h + 1) | 0) {
        const at = box + kRing + (h & this.#mask) * REQUEST_WORDS;
        if (i32[at] === REQ_PAGES) tlb.invalidateRange(i32[at + 1], i32[at + 2], i32[at + 3]);
        else tlb.invalidateAsid(i32[at + 1]);
      }
    }
    this.#head = tail;
    Atomics.store(i32, box + kHead, tail); // release: the slots back to the hypervisor
    this.#seen = gen;
    this.processed++;
    Atomics.store(i32, box + kAck, gen); // publish: everything up to gen is done
    Atomics.notify(i32, box + kAck); // wake: the hypervisor, if it waits (rare path)
  }
}

// ---------------------------------------------------------------------------------------------
// Translator

/**
 * A core's MMU: TLB, then page walk on a miss, with the shootdown mailbox polled at every
 * translation. A fault is returned as a fault code (src/hw/mmu.ts) and recorded in
 * `faultVa` / `faultCode` / `faultAccess` for the libOS's page-fault handler; nothing throws
 * and nothing is allocated.
 *
 * On a TLB hit the cached PTE's rights are checked. A hit that would fault, or a write through
 * an entry whose D bit is clear, goes to the page walk instead (as hardware re-walks to set
 * D): so a permission *upgrade* (protect adding W, a COW break) needs no shootdown.
 */
export class Translator implements AddressTranslation {
  readonly mmu: Mmu;
  readonly tlb: Tlb;
  readonly mailbox: ShootdownMailbox | null;
  /** copyin/copyout and typed user access through this TLB. */
  readonly user: UserMemory;
  /** Translations that faulted. */
  faults = 0;
  /** The last fault: virtual address, fault code, access. */
  faultVa = 0;
  faultCode = 0;
  faultAccess: Access = 0;

  constructor(mmu: Mmu, tlb: Tlb, mailbox: ShootdownMailbox | null = null) {
    if (mailbox !== null && mailbox.tlb !== tlb) {
      throw new InvalidArgumentError("translator: the mailbox must be bound to the same TLB");
    }
    this.mmu = mmu;
    this.tlb = tlb;
    this.mailbox = mailbox;
    this.user = new UserMemory(mmu.mem, this);
  }

  translate(as: number, va: number, access: Access, user: boolean): number {
    this.mailbox?.poll();
    const a = toVa(va);
    if (a < 0) return this.#fault(va, FAULT_BAD_ADDRESS, access);
    const vpn = a >>> PAGE_SHIFT;
    const cached = this.tlb.lookup(as, vpn);
    if (
      cached !== 0 &&
      checkAccess(cached, access, user) === 0 &&
      (access !== ACCESS_WRITE || (cached & PTE_D) !== 0)
    ) {
      return (cached >>> PAGE_SHIFT) * PAGE_SIZE + (a & PAGE_MASK);
    }
    const pte = this.mmu.access(as, a, access, user, true);
    if (pte < 0) {
      if (cached !== 0) this.tlb.invalidatePage(as, a);
      return this.#fault(a, pte, access);
    }
    this.tlb.insert(as, vpn, pte);
    return (pte >>> PAGE_SHIFT) * PAGE_SIZE + (a & PAGE_MASK);
  }

  /**
   * For a cache of translations layered over this one (ProcessMemory's last-translation cache):
   * do what shootdowns posted (step P1, and P2–P3 if anything was), then return the TLB's
   * {@link Tlb.epoch}. A translation obtained between two calls that return the same stamp is
   * as good as a TLB entry: no invalidation reached this core in between. Allocates nothing.
   */
  stamp(): number {
    this.mailbox?.poll();
    return this.tlb.epoch;
  }

  /** The TLB's {@link Tlb.epoch}, without polling: invalidations this thread already did. */
  get epoch(): number {
    return this.tlb.epoch;
  }

  probe(as: number, va: number, access: Access, user: boolean): number {
    this.mailbox?.poll();
    const a = toVa(va);
    if (a < 0) return FAULT_BAD_ADDRESS;
    const cached = this.tlb.lookup(as, a >>> PAGE_SHIFT);
    if (cached !== 0 && checkAccess(cached, access, user) === 0) {
      return (cached >>> PAGE_SHIFT) * PAGE_SIZE + (a & PAGE_MASK);
    }
    return this.mmu.probe(as, a, access, user);
  }

  #fault(va: number, code: number, access: Access): number {
    this.faults++;
    this.faultVa = va;
    this.faultCode = code;
    this.faultAccess = access;
    return code;
  }
}
