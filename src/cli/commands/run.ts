/**
 * `exocore run PROGRAM [args…]`: boot a machine, run the program's main(args) as the first green
 * thread of process 1, print its output, and exit with its status.
 */

import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError } from "../../errors.js";
import { CHANNEL_MODES } from "../../hv/layout.js";
import { boot, describeEvent } from "../../hv/machine.js";
import { defineCommand } from "../args.js";

/** The package root: dist/src/cli/commands/run.js is four levels below it. */
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

/** Find the program: as given, or its compiled form under dist/ (`programs/hello.ts` works). */
export function resolveProgram(given: string): string {
  const js = given.replace(/\.ts$/, ".js");
  const candidates = [
    ...new Set(
      [given, js, join(ROOT, "dist", js), join(ROOT, js)].map((p) =>
        isAbsolute(p) ? p : resolve(p),
      ),
    ),
  ];
  for (const c of candidates) if (/\.m?js$/.test(c) && existsSync(c)) return c;
  throw new InvalidArgumentError(
    `program not found: ${given} (looked for ${candidates.join(", ")})`,
  );
}

/** "0,1" → [0, 1]; undefined → undefined. */
function parseCores(list: string | undefined): number[] | undefined {
  if (list === undefined || list === "") return undefined;
  return list.split(",").map((t) => {
    const n = Number(t.trim());
    if (!Number.isInteger(n) || n < 0) {
      throw new InvalidArgumentError(
        `--bypass takes core numbers like 0,1; got ${JSON.stringify(list)}`,
      );
    }
    return n;
  });
}

export const run = defineCommand({
  name: "run",
  summary: "Boot a machine and run a program's main() as process 1; exit with its status",
  description:
    "The program is an ES module exporting a generator function main(args); its system calls go through the rings to the service domains. Program arguments follow the program; put them after -- if they start with a dash.",
  args: [
    {
      name: "program",
      description: "path of the program (programs/hello.js, or its .ts source name)",
    },
    { name: "args", description: "arguments passed to main()", optional: true, variadic: true },
  ],
  flags: [
    {
      name: "cores",
      type: "integer",
      default: 2,
      min: 1,
      max: 64,
      description: "XOS cores (worker threads)",
    },
    {
      name: "channel",
      type: "enum",
      values: CHANNEL_MODES,
      default: "hybrid",
      description: "how cores wait for system-call answers",
    },
    {
      name: "policy",
      type: "enum",
      values: ["fifo", "rr", "priority"],
      default: "fifo",
      description: "scheduling policy of every core",
    },
    {
      name: "memory",
      type: "integer",
      default: 64,
      min: 4,
      max: 4096,
      description: "physical memory, MiB",
      placeholder: "mib",
    },
    {
      name: "stats",
      type: "boolean",
      description: "print per-worker counters when the program ends",
    },
    {
      name: "disk",
      type: "string",
      description: "disk image (exocore mkfs) for the NVMe device: starts the storage domain",
      placeholder: "image",
    },
    {
      name: "net",
      type: "boolean",
      description: "give the machine a NIC: starts the network domain (TCP/UDP on 127.0.0.1)",
    },
    {
      name: "bypass",
      type: "string",
      description: "comma-separated cores that get a NIC VF of their own (XOS kernel bypass)",
      placeholder: "cores",
    },
  ],
  async run(ctx) {
    const [program, ...args] = ctx.args;
    if (program === undefined) throw new InvalidArgumentError("run needs a program");
    const path = resolveProgram(program);
    const t0 = performance.now();
    const machine = await boot({
      cores: ctx.flags.cores,
      channel: ctx.flags.channel,
      policy: ctx.flags.policy as "fifo" | "rr" | "priority",
      memoryMiB: ctx.flags.memory,
      disk: ctx.flags.disk,
      network: ctx.flags.net === true,
      bypassCores: parseCores(ctx.flags.bypass),
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
      onEvent: (e) => process.stderr.write(`exocore: ${describeEvent(e)}\n`),
    });
    const stop = () => void machine.shutdown();
    process.once("SIGINT", stop);
    let status: number;
    try {
      status = await machine.run(path, args);
    } finally {
      const stats = machine.stats();
      await machine.shutdown();
      process.off("SIGINT", stop);
      if (ctx.flags.stats) {
        const lines = stats.map(
          (s) =>
            `  ${s.name.padEnd(14)} calls ${String(s.calls).padStart(9)}  rounds ${String(s.rounds).padStart(8)}  batch max ${String(s.batchMax).padStart(4)}  parks ${String(s.parks).padStart(6)}`,
        );
        ctx.out.note(
          `exocore: ${((performance.now() - t0) / 1000).toFixed(2)} s, ${ctx.flags.cores} cores, channel ${ctx.flags.channel}\n${lines.join("\n")}`,
        );
      }
    }
    return status < 0 ? 1 : status & 0xff;
  },
});
