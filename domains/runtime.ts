/**
 * runtime: the serving loop every service domain shares (FlexSC's syscall threads, VirtuOS's
 * service domains). A domain module supplies a {@link Service} — how to serve one call, and
 * optionally how to poll its device — and the runtime does the rest:
 *
 *   1. wait on the domain's one wake word until a core's request ring has entries, a held
 *      completion can be posted, the service's device has work, or a deadline passes; every
 *      core's request ring and the domain's device interrupts (the VF's vrIrqWord) notify it;
 *   2. drain every request ring it finds (FlexSC: take all, then answer all), calling
 *      `serve` on each entry in place;
 *   3. poll the device (`poll`): deferred calls whose answer came in complete now;
 *   4. `endRound` (the console publishes its bytes; the filesystem commits a group);
 *   5. publish each touched ready queue (once per core per round, or per slice of 8 answers
 *      in a long round: it wakes the core if it parked).
 *
 * A call either answers at once (serve returns ret ≥ 0 or -errno) or is *deferred*: serve calls
 * {@link DomainRuntime.defer}, keeps the returned {@link Pending}, returns {@link PENDING}, and
 * later calls {@link DomainRuntime.complete} — a recv that waits for data, an accept that waits
 * for a client. The calling green thread stays blocked in its syscall; its core runs others.
 * Completions carry the request id, so a core matches them in any order.
 *
 * A completion that finds its core's ready queue full waits in an outbox and is retried every
 * round: a domain never drops an answer and never blocks on a slow core.
 *
 * Rejected: a promise per call (an allocation and a microtask per call on the hot path, and the
 * loop parks in Atomics.wait, where promises do not run); answering in request order only
 * (one slow call would hold up every later one from that core).
 */

import { parentPort, workerData } from "node:worker_threads";
import { kErrno, kNr, kPid, kReqId, kRet, kTid } from "../src/abi/syscall.js";
import {
  hybridSpin,
  kMachineEpoch,
  kpSerial,
  kpState,
  kState,
  kwBatchMax,
  kwHeartbeat,
  kwQueue,
  kwRounds,
  kwServed,
  kwState,
  MACHINE_RUNNING,
  type MachineLayout,
  PROC_RUNNING,
  PROC_WORDS,
  WORKER_PARKED,
  WORKER_RUNNING,
  WORKER_STOPPED,
} from "../src/hv/layout.js";
import type { VfDescriptor } from "../src/hw/vf.js";
import { attachRing, PAYLOAD_WORDS, type Ring, WAITER_STATS, Waiter } from "../src/shm/index.js";

export interface DomainData {
  readonly sab: SharedArrayBuffer;
  readonly layout: MachineLayout;
  /** This domain's index in layout.domains. */
  readonly index: number;
  /** The VF this domain drives, if its device is present (storage: NVMe, network: NIC). */
  readonly vf?: VfDescriptor;
  /** Domain-specific settings from boot (plain data). */
  readonly config?: Readonly<Record<string, string | number | boolean>>;
}

/** What a domain tells the hypervisor by message: it is up, or it could not start. */
export type DomainMessage =
  | { type: "ready" }
  | { type: "failed"; error: string }
  | { type: "log"; text: string };

/** Returned by {@link Service.serve} for a call that will be answered later. */
export const PENDING = 0x7fffffff;

/** A deferred call: what is needed to answer it later (made only for calls that wait). */
export interface Pending {
  readonly core: number;
  readonly nr: number;
  readonly pid: number;
  readonly tid: number;
  readonly reqId: number;
  /** The call's six arguments, as they were in the entry. */
  readonly args: readonly [number, number, number, number, number, number];
  /** Set once answered: a late event for it is then ignored. */
  done: boolean;
}

export interface Service {
  /** Serve the call whose payload starts at int32 index `at` of `w`: ret, -errno, or PENDING. */
  serve(w: Int32Array, at: number, core: number): number;
  /** Device work pending (a completion or event queue non-empty): part of the wait predicate. */
  hasWork?(): boolean;
  /** Take device completions and events; may complete deferred calls. */
  poll?(): void;
  /** Called once per round after serving, before completions are published. */
  endRound?(): void;
  /** Milliseconds until the earliest deadline the service keeps (poll timeouts), or Infinity. */
  nextDeadline?(): number;
  /** A process exited (or its pid was reused): free what it held here. */
  processGone?(pid: number): void;
  /** The machine is stopping: leave the device clean (the filesystem commits). */
  stop?(): void;
}

/** The machine-wide view a domain has of the process table. */
export class Processes {
  readonly #i32: Int32Array;
  readonly #base: number;
  constructor(i32: Int32Array, layout: MachineLayout) {
    this.#i32 = i32;
    this.#base = layout.procs / 4;
  }
  /** True if `pid` names a running process. */
  running(pid: number): boolean {
    if (pid < 1 || pid > 64) return false;
    return Atomics.load(this.#i32, this.#base + (pid - 1) * PROC_WORDS + kpState) === PROC_RUNNING; // load: process table
  }
  /** The spawn serial of `pid`'s current incarnation (pids are reused; serials are not). */
  serial(pid: number): number {
    return Atomics.load(this.#i32, this.#base + (pid - 1) * PROC_WORDS + kpSerial); // load: set at spawn
  }
}

export class DomainRuntime {
  readonly data: DomainData;
  readonly sab: SharedArrayBuffer;
  readonly layout: MachineLayout;
  readonly i32: Int32Array;
  readonly procs: Processes;
  /** Byte offset of this domain's wake word: give it to a VF as its interrupt word. */
  readonly wakeWord: number;
  readonly #st: number;
  readonly #machineState: number;
  readonly #epochAt: number;
  readonly #requests: Ring[];
  readonly #ready: Ring[];
  /** Entries written into each core's open ready batch this round. */
  readonly #batch: Int32Array;
  readonly #outbox: { p: Pending; ret: number }[] = [];
  readonly #waiter: Waiter;
  #service: Service | null = null;
  #epoch = 0;
  #served = 0;

  constructor(data: DomainData = workerData as DomainData) {
    this.data = data;
    this.sab = data.sab;
    this.layout = data.layout;
    this.i32 = new Int32Array(data.sab);
    this.procs = new Processes(this.i32, data.layout);
    const slot = data.layout.domainSlots[data.index];
    if (!slot) throw new Error(`no domain slot ${data.index}`);
    this.wakeWord = slot.wake;
    this.#st = slot.status / 4;
    this.#machineState = data.layout.machine / 4 + kState;
    this.#epochAt = data.layout.machine / 4 + kMachineEpoch;
    this.#requests = data.layout.requests.map((perCore, c) => {
      const desc = perCore[data.index];
      if (!desc) throw new Error(`no request ring from core ${c} to domain ${data.index}`);
      return attachRing(data.sab, desc);
    });
    this.#ready = data.layout.ready.map((r) => attachRing(data.sab, r));
    this.#batch = new Int32Array(data.layout.cores);
    this.#waiter = new Waiter(data.sab, slot.wake, {
      stats: new Float64Array(data.sab, slot.waitStats, WAITER_STATS),
      ...hybridSpin(this.i32, data.layout),
    });
  }

  get running(): boolean {
    return Atomics.load(this.i32, this.#machineState) === MACHINE_RUNNING; // load: stop request
  }

  /** Keep what is needed to answer the call at `at` later; serve then returns PENDING. */
  defer(w: Int32Array, at: number, core: number): Pending {
    return {
      core,
      nr: w[at + kNr],
      pid: w[at + kPid],
      tid: w[at + kTid],
      reqId: w[at + kReqId],
      args: [w[at + 4], w[at + 5], w[at + 6], w[at + 7], w[at + 8], w[at + 9]],
      done: false,
    };
  }

  /** Answer a deferred call (once; later answers are ignored). Posted at the end of the round. */
  complete(p: Pending, ret: number): void {
    if (p.done) return;
    p.done = true;
    if (!this.#post(p.core, p.nr, p.tid, p.reqId, ret)) this.#outbox.push({ p, ret });
  }

  /** Write one completion into core c's open ready batch; false if the queue is full. */
  #post(c: number, nr: number, tid: number, reqId: number, ret: number): boolean {
    const out = this.#ready[c] as Ring;
    let k = this.#batch[c];
    if (out.reserve(1) === 0) {
      // reserve(1) grows the open batch by one slot. On this MPMC ring it fails when another
      // domain claimed slots since our batch began: publish ours and start a new batch.
      if (k === 0) return false; // full
      out.publish(); // publish: the batch so far
      this.#batch[c] = k = 0;
      if (out.reserve(1) === 0) return false;
    }
    const dst = out.slot(k);
    const w = out.i32;
    w[dst + kNr] = nr;
    w[dst + kTid] = tid;
    w[dst + kReqId] = reqId;
    w[dst + kRet] = ret;
    w[dst + kErrno] = ret < 0 ? -ret : 0;
    if (k + 1 >= POST_SLICE) {
      out.publish(); // publish: a slice of a long round's answers, so the core starts on them
      this.#batch[c] = 0;
    } else this.#batch[c] = k + 1;
    return true;
  }

  /** The wait predicate. Request rings first: they are what a busy domain finds most often. */
  #hasWork(): boolean {
    if (this.#hasRequests()) return true;
    if (this.#outbox.length > 0) return true;
    if (!this.running) return true;
    if (Atomics.load(this.i32, this.#epochAt) !== this.#epoch) return true; // load: a process exited
    return this.#service?.hasWork?.() === true;
  }

  #hasRequests(): boolean {
    const rings = this.#requests;
    for (let c = 0; c < rings.length; c++) if ((rings[c] as Ring).hasEntries()) return true;
    return false;
  }

  /** Serve what core c asked. Entries are served in place; answers go to c's ready batch. */
  #drain(c: number, service: Service): number {
    const req = this.#requests[c] as Ring;
    const n = req.peek(req.capacity);
    if (n === 0) return 0;
    const w = req.i32;
    for (let i = 0; i < n; i++) {
      const at = req.entry(i);
      const ret = service.serve(w, at, c);
      if (ret === PENDING) continue;
      if (!this.#post(c, w[at + kNr], w[at + kTid], w[at + kReqId], ret)) {
        const p = this.defer(w, at, c);
        p.done = true;
        this.#outbox.push({ p, ret });
      }
    }
    req.release(n);
    return n;
  }

  #publish(): void {
    for (let c = 0; c < this.#batch.length; c++) {
      if (this.#batch[c] === 0) continue;
      (this.#ready[c] as Ring).publish(); // publish: one tail update per core per round; wakes it
      this.#batch[c] = 0;
    }
  }

  #retryOutbox(): void {
    const box = this.#outbox.splice(0);
    for (const { p, ret } of box) {
      if (!this.#post(p.core, p.nr, p.tid, p.reqId, ret)) this.#outbox.push({ p, ret });
    }
  }

  /** Processes exited since the last look: tell the service, which frees what they held. */
  #reapProcesses(service: Service): void {
    const e = Atomics.load(this.i32, this.#epochAt); // load: bumped by the hypervisor at each exit
    if (e === this.#epoch) return;
    this.#epoch = e;
    if (service.processGone === undefined) return;
    for (let pid = 1; pid <= 64; pid++) if (!this.procs.running(pid)) service.processGone(pid);
  }

  /** A line for the hypervisor's log (device errors and the like; not on any hot path). */
  log(text: string): void {
    parentPort?.postMessage({ type: "log", text } satisfies DomainMessage);
  }

  /** Tell the hypervisor this domain is up (after the service attached to its device). */
  ready(): void {
    parentPort?.postMessage({ type: "ready" } satisfies DomainMessage);
  }

  /** Run the serving loop until the machine stops. */
  run(service: Service): void {
    this.#service = service;
    const i32 = this.i32;
    const st = this.#st;
    this.#epoch = Atomics.load(i32, this.#epochAt); // load: the exits before we started
    const hasWork = () => this.#hasWork();
    Atomics.store(i32, st + kwState, WORKER_RUNNING); // publish: serving
    this.ready();
    for (;;) {
      Atomics.store(i32, st + kwState, WORKER_PARKED); // publish: waiting (spinning or parked)
      const deadline = service.nextDeadline?.() ?? Number.POSITIVE_INFINITY;
      this.#waiter.wait(hasWork, deadline);
      Atomics.store(i32, st + kwState, WORKER_RUNNING); // publish: serving
      this.#reapProcesses(service);
      let served = 0;
      for (let c = 0; c < this.#requests.length; c++) served += this.#drain(c, service);
      service.poll?.();
      service.endRound?.();
      if (this.#outbox.length > 0) this.#retryOutbox();
      this.#publish();
      this.#served += served;
      i32[st + kwHeartbeat]++;
      i32[st + kwRounds]++;
      i32[st + kwServed] = this.#served;
      i32[st + kwQueue] = served;
      if (served > i32[st + kwBatchMax]) i32[st + kwBatchMax] = served;
      // A stop is looked for after the round, off the path of the answers it just posted (a
      // round served after the stop was asked is harmless: the cores are stopping too).
      if (!this.running) break;
    }
    service.stop?.();
    Atomics.store(i32, st + kwState, WORKER_STOPPED); // publish: gone
  }
}

/**
 * Answers per published slice of a core's ready batch: a round that answers many calls (the
 * network domain after a burst of received data) hands them over in slices, so the core starts
 * on the first while the rest are served — the mirror of a core's FLUSH_EVERY (src/core/core.ts).
 * Measured with redis-benchmark -P 16 -c 50 (1 core, park): 0.96 → 1.00 M req/s mean of four
 * A/B pairs, wrk /api/stats p99 1.9 → 1.5 ms; slices of 4 were slower.
 */
const POST_SLICE = 8;

/** Copy payload words of an entry (for services that keep a request's words). */
export function copyEntry(w: Int32Array, at: number): Int32Array {
  return w.slice(at, at + PAYLOAD_WORDS);
}
