/**
 * context: what the libOS knows about the core it runs on. A core worker binds it once at
 * start (bindCore); syscall stubs and memory helpers read it. One per worker thread.
 */

import type { Scheduler, Thread } from "../core/sched.js";
import type { NicDriver } from "../drivers/nic.js";
import { panic } from "../errors.js";
import type { MachineLayout } from "../hv/layout.js";
import type { UserMemory } from "../hw/mmu.js";
import type { Malloc } from "./malloc.js";
import type { ProcessMemory } from "./vm.js";

export interface CoreContext {
  readonly coreId: number;
  readonly cores: number;
  readonly sched: Scheduler;
  readonly user: UserMemory;
  /** The machine's memory map, and physical memory as int32 words (descriptor tables live there). */
  readonly layout: MachineLayout;
  readonly i32: Int32Array;
  /** Page-table root of a running process, by pid. */
  root(pid: number): number;
  /** Take `bytes` of this core's scratch window in the process's memory; 0 when none is free. */
  scratchAlloc(bytes: number): number;
  scratchFree(va: number): void;
  /** Index of an exported function in the program's sorted exports (-1: not exported). */
  exportIndex(pid: number, name: string): number;
  /**
   * Queue an unstarted thread any core may take, or with `mask` (bit c = core c) one of those
   * cores; its id, -EAGAIN when the queue is full, -EINVAL when the mask names no core.
   */
  spawnShared(pid: number, fn: number, args: readonly number[], mask?: number): number;
  /** A shared spawn's exit status if it has exited; else registers `t` and returns null. */
  joinShared(reqId: number, t: Thread): number | null;
  /** The process's memory as seen from this core (page faults, demand-zero heap). */
  memory(pid: number): ProcessMemory;
  /** The process's malloc on this core. */
  heap(pid: number): Malloc;
  /** This core's own NIC VF driver (XOS kernel bypass), or null when the core has none. */
  nic(): NicDriver | null;
  /** Block `t` until the core's VF has work: 0 at once if it has, else null (blocked). */
  waitNic(t: Thread): number | null;
}

let bound: CoreContext | null = null;

export function bindCore(ctx: CoreContext): void {
  if (bound) panic("libos: core bound twice");
  bound = ctx;
}

export function core(): CoreContext {
  return bound ?? panic("libos: used outside a core (no core is bound in this thread)");
}

/** The green thread running now; libOS calls are made from green threads only. */
export function self(): Thread {
  return core().sched.current ?? panic("libos: called outside a green thread");
}
