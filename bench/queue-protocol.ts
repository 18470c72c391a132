/**
 * queue-protocol: what bench/queue.ts (main thread) and bench/queue-worker.ts (the far side)
 * agree on: the worker roles and the word indexes of their mailboxes and control block.
 */

import type { MessagePort } from "node:worker_threads";
import type { RingDescriptor } from "../src/shm/index.js";

export type WorkerRole =
  | { role: "bare-spin"; sab: SharedArrayBuffer; payload: boolean }
  | {
      role: "ring";
      sab: SharedArrayBuffer;
      req: RingDescriptor;
      rep: RingDescriptor;
      control: number;
    }
  | { role: "atomics-wait"; sab: SharedArrayBuffer }
  | { role: "post-message" }
  | { role: "message-channel"; port: MessagePort }
  | {
      role: "sink-ring";
      sab: SharedArrayBuffer;
      req: RingDescriptor;
      rep?: RingDescriptor;
      control: number;
      total: number;
    }
  | { role: "sink-post"; total: number };

/** Word indexes of the bare-spin and atomics-wait mailboxes (each on its own cache line). */
export const kReqSeq = 0;
export const kRepSeq = 16;
export const kReqBody = 32;
export const kRepBody = 48;
export const STOP = -1;

/** Control block of ring roles (word indexes from `control / 4`). */
export const kStop = 0; // set by main to end the worker
export const kIdleProbe = 1; // main asks the worker to report its own CPU time
