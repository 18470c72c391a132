/**
 * `exocore bench storage`: file I/O through the storage domain against node:fs on the same host
 * file system (bench/storage.ts) — sequential MB/s with 4 KiB / 64 KiB / 1 MiB buffers, small
 * files per second, fsync latency. Prints the table (or the JSON report with --json) and writes
 * storage.json (storage-quick.json with --quick) to the results directory.
 *
 * The benchmark module is imported when the command runs, so `exocore --help` does not load it.
 */

import { CHANNEL_MODES } from "../../hv/layout.js";
import { defineCommand } from "../args.js";

export const benchStorage = defineCommand({
  name: "bench storage",
  summary: "File I/O through the storage domain vs node:fs: sequential MB/s, small files, fsync",
  description:
    "Boots a machine over a fresh disk image and runs programs/bench/fileio.js in it, then the\n" +
    "same calls with node:fs on a plain file in the same directory; ratios are exocore / node.",
  flags: [
    {
      name: "mib",
      type: "integer",
      default: 64,
      min: 1,
      max: 1024,
      description: "size of the sequential file, MiB",
    },
    {
      name: "small-files",
      type: "integer",
      default: 1000,
      min: 1,
      max: 100_000,
      description: "files created in the small-file job",
    },
    {
      name: "fsyncs",
      type: "integer",
      default: 200,
      min: 1,
      max: 100_000,
      description: "timed write 4 KiB + fsync rounds",
    },
    {
      name: "channel",
      type: "enum",
      values: CHANNEL_MODES,
      default: "hybrid",
      description: "channel mode of the machine",
    },
    {
      name: "cores",
      type: "integer",
      default: 1,
      min: 1,
      max: 64,
      description: "XOS cores of the machine",
    },
    {
      name: "dir",
      type: "string",
      placeholder: "dir",
      description: "where the image and node's file go (default: a fresh temp directory)",
    },
    {
      name: "quick",
      type: "boolean",
      description: "a short run: 4 MiB, 100 small files, 30 fsyncs",
    },
    {
      name: "out",
      type: "string",
      default: "bench/results",
      placeholder: "dir",
      description: "results directory",
    },
  ],
  async run(ctx) {
    const { formatStorageReport, runStorageBench } = await import("../../../bench/storage.js");
    const f = ctx.flags;
    const progress = ctx.out.progress(ctx.command);
    const report = await runStorageBench(
      {
        mib: f.mib,
        quick: f.quick,
        channel: f.channel,
        cores: f.cores,
        smallFiles: f["small-files"],
        fsyncs: f.fsyncs,
        out: f.out,
        ...(f.dir !== undefined ? { dir: f.dir } : {}),
      },
      (p) => progress.update(p.phase, p.done, p.total),
    );
    progress.end();
    ctx.out.emit(report, formatStorageReport(report));
    return 0;
  },
});
