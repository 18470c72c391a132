/**
 * hello: the first program. Asks the system domain who it is, says hello through write(2)
 * (the bytes go into this process's memory and through the domain's copyin), and exits 0.
 *
 *   exocore run programs/hello.js [name]
 */

import { type Green, getcore, getpid, gettid, print } from "../src/libos/index.js";

export function* main(args: readonly string[]): Green {
  const pid = yield* getpid();
  const tid = yield* gettid();
  const core = yield* getcore();
  const who = args[0] ?? "world";
  const n = yield* print(`hello, ${who}: pid ${pid}, thread ${tid}, core ${core}\n`);
  return n > 0 ? 0 : 1;
}
