/** src/shm: rings, the wake protocol and layout helpers — the channels of the machine. */

import { InvalidArgumentError } from "../errors.js";
import { MpmcRing } from "./mpmc.js";
import type { Ring, RingDescriptor } from "./ring.js";
import { SpscRing } from "./spsc.js";

export * from "./layout.js";
export * from "./mpmc.js";
export * from "./ring.js";
export * from "./spsc.js";
export * from "./wake.js";

/** Attach this thread's ring object to the ring a descriptor names. */
export function attachRing(sab: SharedArrayBuffer, desc: RingDescriptor): Ring {
  if (desc.kind === "spsc") return new SpscRing(sab, desc);
  if (desc.kind === "mpmc") return new MpmcRing(sab, desc);
  throw new InvalidArgumentError(`unknown ring kind ${String((desc as { kind: unknown }).kind)}`);
}
