/**
 * `exocore demo`: the main demo. Today it is the queue benchmark in its quick form; a later
 * issue turns it into the full server demo (boot, KV and HTTP servers, clients, faults).
 *
 * Its results go to a scratch directory, so a quick demo never overwrites the results of a
 * full `exocore bench queue` in bench/results.
 */

import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineCommand } from "../args.js";
import { runQueueCommand } from "./bench-queue.js";

export const demo = defineCommand({
  name: "demo",
  summary: "The main demo (today: the queue benchmark, quick; the server demo comes later)",
  flags: [],
  async run(ctx) {
    const out = join(tmpdir(), "exocore-demo");
    const opts = { samples: 20000, warmup: 2000, quick: true, out, svg: false };
    return runQueueCommand(ctx.out, "demo", opts, false);
  },
});
