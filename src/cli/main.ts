/**
 * main: the `exocore` command. Resolves the command words, hands the rest to the command's
 * parser (src/cli/args.ts), runs it, and turns whatever it throws into a message and an exit
 * code. bin/exocore.js calls {@link main} and sets process.exitCode from it; main itself never
 * throws and never calls process.exit, so output is flushed and tests can call it in-process.
 *
 * Command line:  exocore [--json] [--quiet] <command words> [flags] [arguments]
 *   Commands are one or two words (`demo`, `bench queue`); the longest registered name that
 *   the leading words spell wins, and the words after it are the command's arguments. A first
 *   word that only starts names (`bench`) is a group: `exocore bench --help` lists it.
 *
 * Exit codes (listed in every help page, see EXIT_CODES in args.ts):
 *   0  success
 *   1  the command ran and failed (a check failed; a missed aim with --strict); also any
 *      ExocoreError a command throws, printed as `exocore: <message> [<code>]`, and a failed
 *      call to the host (a Node error with a `syscall`, e.g. EACCES writing to --out)
 *   2  usage error: UsageError from the parser, or InvalidArgumentError from a library that
 *      a flag value reached (the user's input was wrong either way)
 *   70 internal error (BSD sysexits EX_SOFTWARE): any other exception, or a PanicError;
 *      the message, and the stack with EXOCORE_DEBUG=1
 * With --json an error is also written to stdout as {"error":{"code","message"}}, unless the
 * command had already written its document.
 */

import { ExocoreError, InvalidArgumentError, PanicError } from "../errors.js";
import {
  COMMON_FLAGS,
  type Command,
  columns,
  commandHelpJson,
  defineCommand,
  EXIT_CODES,
  exitCodesText,
  formatCommandHelp,
  parseCommandArgs,
  seeHelp,
  UsageError,
} from "./args.js";
import { COMMANDS } from "./commands/index.js";
import { packageInfo, version } from "./commands/version.js";
import { FS_COMMANDS } from "./fs.js";
import { type Io, Output, processIo } from "./output.js";

const help = defineCommand({
  name: "help",
  summary: "Show the help of exocore, of a command or of a group of commands",
  args: [
    {
      name: "command",
      description: "A command or group, e.g. bench queue",
      optional: true,
      variadic: true,
    },
  ],
  flags: [],
  async run(ctx) {
    if (ctx.args.length === 0) {
      ctx.out.emit(topHelpJson(), topHelpText());
      return 0;
    }
    const found = resolveCommand(ctx.args);
    if (found.used < ctx.args.length) {
      throw new UsageError(`unknown command ${JSON.stringify(ctx.args.join(" "))} ${seeHelp()}`);
    }
    emitHelp(ctx.out, found);
    return 0;
  },
});

/** Every command, sorted by name for the help listing. */
const REGISTRY: readonly Command[] = [...COMMANDS, ...FS_COMMANDS, help].sort((a, b) =>
  a.name.localeCompare(b.name),
);

/** Run the exocore command line `argv` (without node and the script); resolves to the exit code. */
export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const head = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  const out = new Output(io, {
    json: head.includes("--json"),
    quiet: head.includes("--quiet") || head.includes("-q"),
  });
  try {
    return await dispatch(argv, out, io.env);
  } catch (err) {
    return reportError(out, err, io.env);
  } finally {
    out.close();
  }
}

async function dispatch(argv: readonly string[], out: Output, env: Io["env"]): Promise<number> {
  // Flags before the command: the common ones (passed on to the command) and --version.
  let i = 0;
  let wantHelp = false;
  let wantVersion = false;
  for (; i < argv.length && argv[i].startsWith("-"); i++) {
    const tok = argv[i];
    if (tok === "--help" || tok === "-h") wantHelp = true;
    else if (tok === "--version" || tok === "-V") wantVersion = true;
    else if (tok !== "--json" && tok !== "--quiet" && tok !== "-q") {
      throw new UsageError(`unknown flag ${tok.split("=")[0]} ${seeHelp()}`);
    }
  }
  const leading = argv.slice(0, i).filter((t) => t !== "--version" && t !== "-V");
  if (wantVersion) return runCommand(version, leading, out, env);

  let end = i;
  while (end < argv.length && !argv[end].startsWith("-")) end++;
  if (end === i) {
    if (wantHelp) return runCommand(help, [], out, env);
    if (out.json) throw new UsageError(`missing command ${seeHelp()}`);
    out.warn(topHelpText());
    return 2;
  }
  const found = resolveCommand(argv.slice(i, end));
  if (found.kind === "group") {
    if (wantHelp || argv.slice(end).some((t) => t === "--help" || t === "-h")) {
      emitHelp(out, found);
      return 0;
    }
    const names = found.members.map((c) => c.name.slice(found.name.length + 1)).join(", ");
    throw new UsageError(`"${found.name}" needs a subcommand: ${names} ${seeHelp(found.name)}`);
  }
  return runCommand(found.cmd, [...leading, ...argv.slice(i + found.used)], out, env);
}

/** Decode the command's tokens, then run it (or print its help). */
async function runCommand(
  cmd: Command,
  tokens: readonly string[],
  out: Output,
  env: Io["env"],
): Promise<number> {
  const parsed = parseCommandArgs(cmd, tokens);
  if (parsed.help) {
    out.emit(commandHelpJson(cmd), formatCommandHelp(cmd));
    return 0;
  }
  return cmd.run({
    command: cmd.name,
    flags: parsed.flags,
    given: parsed.given,
    args: parsed.args,
    out,
    env,
  });
}

type Found =
  | { readonly kind: "command"; readonly cmd: Command; readonly used: number }
  | {
      readonly kind: "group";
      readonly name: string;
      readonly members: readonly Command[];
      readonly used: number;
    };

/**
 * The command the leading words name: the longest registered name they spell, else the longest
 * group (a prefix of names) they spell, if it is all of them. Throws an unknown-command error.
 */
function resolveCommand(words: readonly string[]): Found {
  for (let n = words.length; n > 0; n--) {
    const name = words.slice(0, n).join(" ");
    const cmd = REGISTRY.find((c) => c.name === name);
    if (cmd) return { kind: "command", cmd, used: n };
  }
  for (let n = words.length; n > 0; n--) {
    const name = words.slice(0, n).join(" ");
    const members = REGISTRY.filter((c) => c.name.startsWith(`${name} `));
    if (members.length === 0) continue;
    if (n === words.length) return { kind: "group", name, members, used: n };
    throw new UsageError(`unknown command "${name} ${words[n]}" ${seeHelp(name)}`);
  }
  throw new UsageError(`unknown command ${JSON.stringify(words[0])} ${seeHelp()}`);
}

function emitHelp(out: Output, found: Found): void {
  if (found.kind === "command") {
    out.emit(commandHelpJson(found.cmd), formatCommandHelp(found.cmd));
    return;
  }
  const text = [
    `exocore ${found.name} — commands:`,
    "",
    columns(found.members.map((c) => [c.name, c.summary])),
    "",
    `Run "exocore ${found.name} <command> --help" for a command's flags.`,
  ].join("\n");
  out.emit({ group: found.name, commands: found.members.map(summaryJson) }, text);
}

function topHelpText(): string {
  const lines = [
    `exocore ${packageInfo().version} — an exception-less, exokernel-style runtime for Node.js`,
    "",
    "Usage: exocore <command> [flags] [arguments]",
    "       exocore help [command]",
    "       exocore --version",
    "",
    "Commands:",
    columns(REGISTRY.map((c) => [c.name, c.summary])),
    "",
    "Common flags (every command):",
    columns(COMMON_FLAGS.map((f) => [`--${f.name}`, f.description])),
    "",
    "Exit codes:",
    exitCodesText(),
    "",
    "Environment:",
    columns([["EXOCORE_DEBUG=1", "print the stack of an error"]]),
    "",
    `Run "exocore <command> --help" for a command's flags and defaults.`,
  ];
  return `${lines.join("\n")}\n`;
}

function topHelpJson(): object {
  return {
    ...packageInfo(),
    commands: REGISTRY.map(summaryJson),
    commonFlags: COMMON_FLAGS,
    exitCodes: Object.fromEntries(EXIT_CODES),
  };
}

function summaryJson(c: Command): object {
  return { name: c.name, summary: c.summary };
}

/**
 * Print an error the way its kind asks for and choose the exit code (see the header). Exported
 * for the tests, which check each kind in-process.
 */
export function reportError(out: Output, err: unknown, env: Io["env"]): number {
  const debug = env.EXOCORE_DEBUG === "1";
  const stack = debug && err instanceof Error && err.stack ? `\n${err.stack}` : "";
  if (err instanceof UsageError) {
    out.error(`exocore: ${err.message}${stack}`, err.code, err.message);
    return 2;
  }
  if (err instanceof ExocoreError && !(err instanceof PanicError)) {
    out.error(`exocore: ${err.message} [${err.code}]${stack}`, err.code, err.message);
    return err instanceof InvalidArgumentError ? 2 : 1;
  }
  if (isSystemError(err)) {
    out.error(`exocore: ${err.message} [${err.code}]${stack}`, err.code, err.message);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof ExocoreError ? err.code : "EXO_ERR_INTERNAL";
  const hint = stack || "\n(set EXOCORE_DEBUG=1 to print the stack)";
  out.error(`exocore: internal error: ${message}${hint}`, code, message);
  return 70;
}

/** A failed call to the host (`EACCES: permission denied, mkdir 'x'`): the world, not a bug. */
function isSystemError(err: unknown): err is Error & { code: string; syscall: string } {
  const e = err as { code?: unknown; syscall?: unknown };
  return err instanceof Error && typeof e.code === "string" && typeof e.syscall === "string";
}
