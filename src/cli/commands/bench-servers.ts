/**
 * `exocore bench servers`: exocore's KV and HTTP servers against redis-server and node:http
 * (plain, and with a piscina pool), side by side with the same clients (bench/servers.ts).
 * Prints the thread layout first, a progress line while it runs, then the tables and the
 * aims (or the JSON report with --json); writes servers.json and servers.svg.
 *
 * Ctrl-C stops the run between steps (the client in flight is interrupted), shuts down the
 * machine and the reference servers, prints what was measured, writes no results, exits 130.
 * The benchmark module is imported when the command runs, so `exocore --help` does not load it.
 */

import { CHANNEL_MODES, type ChannelMode } from "../../hv/layout.js";
import { defineCommand } from "../args.js";

export const benchServers = defineCommand({
  name: "bench servers",
  summary: "KV and HTTP servers on exocore vs redis-server and node:http (+ piscina)",
  description:
    "KV: redis-benchmark -t set,get,incr,lpush,lpop,sadd,hset,mset -c 50 -n N at -P 1 and -n 10N at -P 16\n" +
    "against kv-server on a fresh machine per channel mode, and against redis-server.\n" +
    "HTTP: wrk (or the built-in client) on /index.html and /api/stats against http-server,\n" +
    "node:http and node:http with a piscina pool. Writes servers.json and servers.svg.",
  flags: [
    {
      name: "quick",
      type: "boolean",
      description: "A short run: -n 20000, 3 s per HTTP run, modes hybrid and park",
    },
    {
      name: "modes",
      type: "list",
      values: CHANNEL_MODES,
      placeholder: "m1,m2",
      description: "Channel modes, one machine each (default hybrid,spin,park; quick hybrid,park)",
    },
    {
      name: "requests",
      type: "integer",
      min: 100,
      description:
        "redis-benchmark -n per test at -P 1, ×10 at -P 16 (default 100000; quick 20000)",
    },
    {
      name: "duration",
      type: "integer",
      min: 1,
      max: 600,
      placeholder: "s",
      description: "Seconds per HTTP run (default 10; quick 3)",
    },
    {
      name: "cores",
      type: "integer",
      min: 1,
      max: 64,
      description: "XOS cores of the server machine (default: host CPUs - 1, at least 1)",
    },
    {
      name: "out",
      type: "string",
      placeholder: "dir",
      default: "bench/results",
      description: "Results directory",
    },
    { name: "svg", type: "boolean", default: true, description: "Write the bar chart (SVG)" },
    { name: "strict", type: "boolean", description: "Exit 1 when an aim is missed" },
  ],
  async run(ctx) {
    const f = ctx.flags;
    const bench = await import("../../../bench/servers.js");
    const abort = new AbortController();
    const onSignal = () => {
      if (abort.signal.aborted) process.exit(130); // a second Ctrl-C: leave now
      ctx.out.warn("exocore: interrupted; stopping the run");
      abort.abort();
    };
    process.on("SIGINT", onSignal);
    const progress = ctx.out.progress(ctx.command);
    try {
      const report = await bench.runServersBench(
        {
          quick: f.quick,
          modes: f.modes as readonly ChannelMode[] | undefined,
          requests: f.requests,
          durationS: f.duration,
          cores: f.cores,
          out: f.out,
          svg: f.svg,
          signal: abort.signal,
          onLayout: (lines) => ctx.out.note(lines.join("\n")),
        },
        (p) => progress.update(p.phase, p.done, p.total),
      );
      progress.end();
      const text = bench.formatServersReport(report);
      if (abort.signal.aborted) {
        ctx.out.emit(report, `${text}\n\ninterrupted: partial figures, no results written`);
        return 130;
      }
      const missed = report.aims.filter((a) => !a.ok);
      const stem = report.quick ? "servers-quick" : "servers";
      ctx.out.note(`wrote ${f.out}/${stem}.json${f.svg ? ` and ${stem}.svg` : ""}`);
      ctx.out.emit(
        report,
        `${text}\n\naims: ${report.aims.length - missed.length} of ${report.aims.length} met`,
      );
      return f.strict && missed.length > 0 ? 1 : 0;
    } finally {
      process.off("SIGINT", onSignal);
    }
  },
});
