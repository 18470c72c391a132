/** src/shm: rings, the wake protocol and layout helpers — the channels of the machine. */

import { InvalidArgumentError } from "../errors.js";
import { type MpmcOptions, MpmcRing } from "./mpmc.js";
import type { Ring, RingDescriptor } from "./ring.js";
import { SpscRing } from "./spsc.js";

export * from "./layout.js";
export * from "./mpmc.js";
export * from "./ring.js";
export * from "./spsc.js";
export * from "./wake.js";

/**
 * Attach this thread's ring object to the ring a descriptor names. `options` matter to MPMC
 * rings only (an SPSC ring has one consumer by kind).
 */
export function attachRing(
  sab: SharedArrayBuffer,
  desc: RingDescriptor,
  options: MpmcOptions = {},
): Ring {
  if (desc.kind === "spsc") return new SpscRing(sab, desc);
  if (desc.kind === "mpmc") return new MpmcRing(sab, desc, options);
  throw new InvalidArgumentError(`unknown ring kind ${String((desc as { kind: unknown }).kind)}`);
}
