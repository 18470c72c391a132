/**
 * queue-worker: the far side of every method in the queue-latency benchmark (bench/queue.ts).
 * One worker per method run; `workerData.role` says which protocol to answer:
 *
 *   bare-spin        spin on a request word, store the reply word (no ring: the lower bound)
 *   ring             echo 64-byte entries from a request ring to a reply ring (exocore)
 *   atomics-wait     a 64-byte mailbox each way, Atomics.wait/notify on a sequence word
 *   post-message     echo parentPort messages
 *   message-channel  echo messages on a transferred MessagePort
 *   sink-ring        drain a ring one way, count and checksum the entries (throughput)
 *   sink-post        count entries arriving in postMessage batches (throughput baseline)
 */

import { readFileSync } from "node:fs";
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { attachRing, ENTRY_WORDS, PAYLOAD_WORDS, Waiter } from "../src/shm/index.js";
import {
  kIdleProbe,
  kRepBody,
  kRepSeq,
  kReqBody,
  kReqSeq,
  kStop,
  STOP,
  type WorkerRole,
} from "./queue-protocol.js";

function parent(): MessagePort {
  if (!parentPort) throw new Error("queue-worker must run in a worker thread");
  return parentPort;
}
const port = parent();
const job = workerData as WorkerRole;

/** CPU time this thread has used, in ms (Linux /proc/thread-self; falls back to the process). */
function threadCpuMs(): number {
  try {
    const stat = readFileSync("/proc/thread-self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[11], fields[12] are utime and stime (fields 14 and 15 of stat), in clock ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
}

function serveBareSpin(job: Extract<WorkerRole, { role: "bare-spin" }>): void {
  const i32 = new Int32Array(job.sab);
  port.postMessage("ready");
  let last = 0;
  for (;;) {
    let v = Atomics.load(i32, kReqSeq); // load: the next request
    while (v === last) v = Atomics.load(i32, kReqSeq);
    if (v === STOP) break;
    last = v;
    if (job.payload) for (let w = 1; w < ENTRY_WORDS; w++) i32[kRepSeq + w] = i32[kReqSeq + w];
    Atomics.store(i32, kRepSeq, v); // publish: the reply
  }
}

function serveAtomicsWait(job: Extract<WorkerRole, { role: "atomics-wait" }>): void {
  const i32 = new Int32Array(job.sab);
  port.postMessage("ready");
  let last = 0;
  for (;;) {
    Atomics.wait(i32, kReqSeq, last); // park until the sequence moves
    const v = Atomics.load(i32, kReqSeq); // load
    if (v === last) continue;
    if (v === STOP) break;
    last = v;
    for (let w = 0; w < ENTRY_WORDS; w++) i32[kRepBody + w] = i32[kReqBody + w];
    Atomics.store(i32, kRepSeq, v); // publish: the reply
    Atomics.notify(i32, kRepSeq); // wake the requester
  }
}

function serveRing(job: Extract<WorkerRole, { role: "ring" }>): void {
  const { sab } = job;
  const req = attachRing(sab, job.req);
  const rep = attachRing(sab, job.rep);
  const ctl = new Int32Array(sab, job.control, 16);
  const waiter = new Waiter(sab, job.req.notEmpty as number);
  const ready = () =>
    req.hasEntries() || Atomics.load(ctl, kStop) !== 0 || Atomics.load(ctl, kIdleProbe) !== 0;
  const i32 = req.i32;
  port.postMessage("ready");
  for (;;) {
    waiter.wait(ready);
    if (Atomics.load(ctl, kStop) !== 0) break; // load: stop request
    if (Atomics.load(ctl, kIdleProbe) !== 0) {
      Atomics.store(ctl, kIdleProbe, 0); // consume the probe
      port.postMessage({ cpuMs: threadCpuMs(), waiter: waiter.stats() });
      continue;
    }
    // FlexSC: drain everything found, then post all replies with one publish.
    const n = req.peek(req.capacity);
    const m = rep.reserve(n);
    for (let i = 0; i < m; i++) {
      const src = req.entry(i);
      const dst = rep.slot(i);
      for (let w = 0; w < PAYLOAD_WORDS; w++) i32[dst + w] = i32[src + w];
    }
    if (m < n)
      throw new Error("reply ring full: the requester keeps more in flight than it can take back");
    req.release();
    rep.publish();
  }
  port.postMessage({ cpuMs: threadCpuMs(), waiter: waiter.stats() });
}

function serveSinkRing(job: Extract<WorkerRole, { role: "sink-ring" }>): void {
  const { sab } = job;
  const req = attachRing(sab, job.req);
  const rep = job.rep ? attachRing(sab, job.rep) : null;
  const ctl = new Int32Array(sab, job.control, 16);
  const waiter = new Waiter(sab, job.req.notEmpty as number);
  const ready = () => req.hasEntries() || Atomics.load(ctl, kStop) !== 0;
  const i32 = req.i32;
  port.postMessage("ready");
  let seen = 0;
  let sum = 0;
  while (seen < job.total) {
    waiter.wait(ready);
    if (Atomics.load(ctl, kStop) !== 0) break; // load: stop request
    const n = req.peek(req.capacity);
    for (let i = 0; i < n; i++) {
      const at = req.entry(i);
      // Read the whole entry (15 payload words + the sequence word = 64 bytes), as a domain would.
      for (let w = 0; w < PAYLOAD_WORDS; w++) sum = (sum + i32[at + w]) | 0;
    }
    if (rep) {
      // Round trip: one 64-byte completion per request, written in place.
      const m = rep.reserve(n);
      for (let i = 0; i < m; i++) {
        const src = req.entry(i);
        const dst = rep.slot(i);
        for (let w = 0; w < PAYLOAD_WORDS; w++) i32[dst + w] = i32[src + w];
      }
      if (m < n) throw new Error("reply ring full");
      rep.publish();
    }
    req.release();
    seen += n;
  }
  port.postMessage({ seen, sum, waiter: waiter.stats() });
}

function servePostMessage(): void {
  port.on("message", (m: unknown) => {
    if (m === "stop") port.close();
    else port.postMessage(m);
  });
  port.postMessage("ready");
}

function serveMessageChannel(job: Extract<WorkerRole, { role: "message-channel" }>): void {
  const p = job.port;
  p.on("message", (m: unknown) => {
    if (m === "stop") p.close();
    else p.postMessage(m);
  });
  port.postMessage("ready");
}

function serveSinkPost(job: Extract<WorkerRole, { role: "sink-post" }>): void {
  let seen = 0;
  let sum = 0;
  port.on("message", (m: Int32Array) => {
    for (let i = 0; i < m.length; i++) sum = (sum + m[i]) | 0;
    seen += m.length / ENTRY_WORDS;
    if (seen >= job.total) {
      port.postMessage({ seen, sum });
      port.close();
    }
  });
  port.postMessage("ready");
}

// Each role runs in a function of its own: hot loops in module top-level code get neither
// good on-stack replacement nor register-allocated locals.
switch (job.role) {
  case "bare-spin":
    serveBareSpin(job);
    break;
  case "atomics-wait":
    serveAtomicsWait(job);
    break;
  case "ring":
    serveRing(job);
    break;
  case "sink-ring":
    serveSinkRing(job);
    break;
  case "post-message":
    servePostMessage();
    break;
  case "message-channel":
    serveMessageChannel(job);
    break;
  case "sink-post":
    serveSinkPost(job);
    break;
}
