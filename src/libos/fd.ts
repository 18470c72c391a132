/**
 * fd: the process's descriptor table, as the libOS sees it. The table lives in shared memory
 * (layout.fds, one per process, MAX_FDS words), so every core running a thread of the process
 * sees the same descriptors. An entry names the domain that holds the object and the domain's
 * handle for it (src/hv/layout.ts fdEntry); fds 0–2 are the console, held by the system domain.
 *
 * Protocol: open claims the lowest free fd with a CAS (0 → FD_RESERVED), makes the call, then
 * publishes the entry (or frees the fd on failure); close takes the entry with an exchange to 0
 * before telling the domain, so two closes of one fd cannot both reach it (the second gets
 * EBADF). A thread that uses an fd another thread is closing gets what POSIX gives: EBADF or
 * the old object, never another process's.
 */

import { EBADF, EMFILE } from "../abi/errno.js";
import { FD_RESERVED, fdDomain, fdHandle, MAX_FDS } from "../hv/layout.js";
import { core } from "./context.js";

/** Word index of fd 0 of `pid`'s table. */
function tableOf(pid: number): number {
  return core().layout.fds / 4 + (pid - 1) * MAX_FDS;
}

/** Claim the lowest free descriptor: the fd, or -EMFILE. */
export function fdReserve(pid: number): number {
  const i32 = core().i32;
  const base = tableOf(pid);
  for (let fd = 0; fd < MAX_FDS; fd++) {
    if (i32[base + fd] !== 0) continue;
    if (Atomics.compareExchange(i32, base + fd, 0, FD_RESERVED) === 0) return fd; // claim
  }
  return -EMFILE;
}

/** Publish an opened object under a reserved fd. */
export function fdPublish(pid: number, fd: number, entry: number): void {
  Atomics.store(core().i32, tableOf(pid) + fd, entry); // publish: the descriptor is usable
}

/** Give back a reserved fd whose open failed. */
export function fdCancel(pid: number, fd: number): void {
  Atomics.store(core().i32, tableOf(pid) + fd, 0); // publish: free again
}

/** The entry of an open fd, or -EBADF. */
export function fdLookup(pid: number, fd: number): number {
  if (!Number.isInteger(fd) || fd < 0 || fd >= MAX_FDS) return -EBADF;
  const e = Atomics.load(core().i32, tableOf(pid) + fd); // load: published by open
  return e === 0 || e === FD_RESERVED ? -EBADF : e;
}

/** Take an fd out of the table (close): its entry, or -EBADF. */
export function fdTake(pid: number, fd: number): number {
  const e = fdLookup(pid, fd);
  if (e < 0) return e;
  const i32 = core().i32;
  const was = Atomics.compareExchange(i32, tableOf(pid) + fd, e, 0); // claim: only one close wins
  return was === e ? e : -EBADF;
}

export { fdDomain, fdHandle };

/** Index of a domain in this machine, or -1 when it does not run here. */
export function domainIndex(name: "system" | "storage" | "network"): number {
  return core().layout.domains.indexOf(name);
}
