/**
 * faulthandler: a program with its own page-fault handler (XOS: page faults belong to the libOS
 * and the application may define the policy). The handler makes the heap grow on demand: a
 * touch past the break, within a reach the program chooses, moves the break to cover it, and the
 * default pager then serves the page demand-zero. Anything else still faults.
 *
 *   exocore run programs/faulthandler.js
 */

import { HEAP_BASE } from "../src/hv/layout.js";
import {
  type Green,
  join,
  memory,
  nullcall,
  print,
  setFaultHandler,
  spawn,
} from "../src/libos/index.js";

const REACH = 8 * 1024 * 1024;

function* outOfReach(): Green {
  yield* nullcall(); // run as a thread of its own first
  memory().store32(HEAP_BASE + 4 * REACH, 1); // beyond the reach: the handler declines
  return 0;
}

export function* main(): Green {
  let grown = 0;
  setFaultHandler((va, _access, _code, vm) => {
    const a = va >>> 0;
    if (a < HEAP_BASE || a >= HEAP_BASE + REACH) return false; // not ours: default pager / SIGSEGV
    const brk = vm.sbrk(0);
    if (a >= brk) {
      vm.sbrk(((a - brk) & ~0xfff) + 0x1000); // cover the page, then let the default pager map it
      grown++;
    }
    return false;
  });
  const m = memory();
  // Touch pages far past the break: each touch faults, the handler grows the heap.
  for (let page = 0; page < 64; page++) m.store32(HEAP_BASE + page * 128 * 1024, page + 1);
  let sum = 0;
  for (let page = 0; page < 64; page++) sum += m.load32(HEAP_BASE + page * 128 * 1024);
  const t = spawn(outOfReach(), { name: "out-of-reach" });
  yield* join(t);
  yield* print(
    `faulthandler: ${m.counters.faults} faults, heap grown ${grown} times, sum ${sum} (${sum === (64 * 65) / 2 ? "ok" : "WRONG"}), out-of-reach thread ${t.error !== undefined ? "killed" : "survived"}\n`,
  );
  return sum === (64 * 65) / 2 && t.error !== undefined ? 0 : 1;
}
