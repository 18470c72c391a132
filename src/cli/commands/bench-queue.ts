/**
 * `exocore bench queue`: the queue-latency benchmark (bench/queue.ts) with a progress line,
 * its table on stdout (or the JSON report with --json), and its aims checked. A missed aim is
 * reported, and fails the run (exit 1) only with --strict.
 *
 * The benchmark module is imported when the command runs, not when the CLI starts: it loads
 * piscina and tinybench, and `exocore --help` should not pay for that (or break with it).
 */

import type { QueueBenchOptions } from "../../../bench/queue.js";
import { defineCommand } from "../args.js";
import type { Output } from "../output.js";

/** Run the benchmark and print it; shared with `exocore demo`. Resolves to the exit code. */
export async function runQueueCommand(
  out: Output,
  label: string,
  opts: QueueBenchOptions,
  strict: boolean,
): Promise<number> {
  const bench = await import("../../../bench/queue.js");
  const progress = out.progress(label);
  const report = await bench.runQueueBench(opts, (p) => progress.update(p.phase, p.done, p.total));
  progress.end();
  const aims = checkAims(bench.checkQueueTargets(report));
  let text = bench.formatQueueReport(report);
  // The table lists the aims the report carries; list them here only if it carried none.
  if (report.targets.length === 0 && aims.lines.length > 0)
    text += `\n\nAims\n${aims.lines.join("\n")}`;
  out.emit(report, `${text}\n\n${aims.summary}`);
  if (strict && aims.missed > 0) {
    out.warn(`exocore: ${aims.missed} of ${aims.total} aims missed (--strict)`);
    return 1;
  }
  return 0;
}

function checkAims(checks: readonly { name: string; ok: boolean; detail: string }[]) {
  const missed = checks.filter((c) => !c.ok);
  const names = missed.map((c) => c.name).join("; ");
  return {
    total: checks.length,
    missed: missed.length,
    lines: checks.map((c) => `  ${c.ok ? "met   " : "MISSED"}  ${c.name}: ${c.detail}`),
    summary:
      checks.length === 0
        ? "aims: none could be checked (a method they need was not run)"
        : `aims: ${checks.length - missed.length} of ${checks.length} met${names ? `; missed: ${names}` : ""}`,
  };
}

export const benchQueue = defineCommand({
  name: "bench queue",
  summary: "Round-trip latency and throughput of exocore's rings vs postMessage and piscina",
  description:
    "Runs every method side by side (fresh worker each), writes queue.json (and queue.svg)\n" +
    "to the results directory, prints the table and checks the aims.",
  flags: [
    {
      name: "samples",
      type: "integer",
      min: 100,
      default: 20000,
      description: "Timed round trips per latency method",
    },
    {
      name: "warmup",
      type: "integer",
      min: 0,
      default: 2000,
      description: "Untimed round trips before the samples",
    },
    {
      name: "quick",
      type: "boolean",
      description: "A short run: caps samples and warmup, smaller throughput runs",
    },
    {
      name: "methods",
      type: "list",
      placeholder: "m1,m2",
      description: "Run only these methods (all when left out; a wrong name lists them)",
    },
    {
      name: "out",
      type: "string",
      placeholder: "dir",
      default: "bench/results",
      description: "Results directory",
    },
    { name: "svg", type: "boolean", default: true, description: "Write the latency chart (SVG)" },
    { name: "strict", type: "boolean", description: "Exit 1 when an aim is missed" },
  ],
  async run(ctx) {
    const f = ctx.flags;
    const opts: QueueBenchOptions = {
      samples: f.samples,
      warmup: f.warmup,
      quick: f.quick,
      out: f.out,
      svg: f.svg,
      ...(f.methods ? { methods: [...f.methods] } : {}),
    };
    return runQueueCommand(ctx.out, ctx.command, opts, f.strict);
  },
});
