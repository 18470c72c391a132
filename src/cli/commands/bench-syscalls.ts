/** `exocore bench syscalls`: the XOS table — syscall, gettsc and switch costs per channel mode. */

import { defineCommand } from "../args.js";

export const benchSyscalls = defineCommand({
  name: "bench syscalls",
  summary:
    "The XOS table: null syscall, gettsc and green switch per channel mode vs piscina and postMessage",
  flags: [
    {
      name: "iterations",
      type: "integer",
      default: 20000,
      min: 100,
      description: "calls per measurement",
    },
    {
      name: "threads",
      type: "integer",
      default: 64,
      min: 1,
      max: 4096,
      description: "green threads keeping calls outstanding",
    },
    { name: "quick", type: "boolean", description: "a short run" },
    {
      name: "out",
      type: "string",
      default: "bench/results",
      description: "results directory",
      placeholder: "dir",
    },
  ],
  async run(ctx) {
    const { formatSyscallReport, runSyscallBench } = await import("../../../bench/syscalls.js");
    const progress = ctx.out.progress("bench syscalls");
    const report = await runSyscallBench(
      {
        iterations: ctx.flags.iterations,
        threads: ctx.flags.threads,
        quick: ctx.flags.quick,
        out: ctx.flags.out,
      },
      (p) => progress.update(p.phase, p.done, p.total),
    );
    progress.end();
    ctx.out.emit(report, formatSyscallReport(report));
    return 0;
  },
});
