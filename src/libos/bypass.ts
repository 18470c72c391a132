/**
 * bypass: XOS-style kernel bypass — a program on a core that the machine gave a NIC VF of its
 * own drives that VF directly with the NIC driver (src/drivers/nic.ts), with no service domain
 * in the path: frames and offload-engine events move between the device and this core's green
 * threads through the VF's rings in shared memory, and the device's interrupts ring the core's
 * own wake word.
 *
 *   const nic = ownNic();                  // null: this core has no VF (boot with bypassCores)
 *   const token = nic.udpBind(port);
 *   yield* waitNic();                      // blocks this green thread only, until the VF has work
 *   nic.pollEvents((e) => …);
 */

import { Y_BLOCK } from "../core/sched.js";
import type { NicDriver } from "../drivers/nic.js";
import { core, self } from "./context.js";
import type { Green } from "./index.js";

export type { NicDriver, ToeEvent } from "../drivers/nic.js";

/** The NIC VF driver of the core this thread runs on, or null when the core has no VF. */
export function ownNic(): NicDriver | null {
  return core().nic();
}

/** Block this green thread until the core's VF has work (frames, events); 0, or -ENODEV. */
export function* waitNic(): Green {
  const ctx = core();
  if (ctx.nic() === null) return -19; // ENODEV
  const now = ctx.waitNic(self());
  return now !== null ? now : yield Y_BLOCK;
}
