/**
 * args: the grammar of the exocore command line — flag specs, the shape of a command, parsing
 * and validation of one command's arguments, and the help text generated from the specs.
 *
 * Grammar (after the command words, which src/cli/main.ts resolves):
 *   --name value | --name=value   a flag that takes a value (string, integer, number, enum, list,
 *                                 size: bytes with an optional K/M/G/T suffix, `64M`)
 *   --name | --no-name            a boolean flag, set or cleared; booleans take no value
 *   -h -q                         the short forms of --help and --quiet (no bundling)
 *   --                            everything after it is a positional argument
 *   A flag given twice keeps its last value. A value may not start with "--" (so a forgotten
 *   value never swallows the next flag), but "-" and negative numbers are values.
 *
 * Decode, then invoke: {@link parseCommandArgs} checks every token against the command's spec
 * and throws a {@link UsageError} whose message says exactly what was wrong (undici style:
 * `--samples must be an integer >= 100, got "abc"`); a command's `run` only ever sees values of
 * the types its spec declares, with defaults filled in.
 *
 * Rejected: node:util parseArgs. On Node 20 it has no `--no-` negation and no typed values, and
 * its errors (`Unknown option '--foo'`) are not ours to word; with the checks added it would
 * be a thin wrapper around most of this file anyway.
 */

import { EINVAL } from "../abi/errno.js";
import { ExocoreError, panic } from "../errors.js";
import type { Output } from "./output.js";

/** A usage error: an unknown command or flag, a bad flag value. Exit code 2. */
export class UsageError extends ExocoreError {
  constructor(message: string) {
    super("EXO_ERR_USAGE", message, EINVAL);
  }
}

interface FlagBase {
  /** Long name without dashes, kebab-case: `samples`, `spin-budget`. Also the key in `flags`. */
  readonly name: string;
  /** One line, no trailing period; the help appends the range and the default. */
  readonly description: string;
  /** The word in the help's `--name <placeholder>`. */
  readonly placeholder?: string;
}
export interface BooleanFlag extends FlagBase {
  readonly type: "boolean";
  /** false when left out; a flag that defaults to true is cleared with `--no-<name>`. */
  readonly default?: boolean;
}
export interface StringFlag extends FlagBase {
  readonly type: "string";
  readonly default?: string;
}
export interface IntegerFlag extends FlagBase {
  readonly type: "integer";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}
export interface NumberFlag extends FlagBase {
  readonly type: "number";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}
export interface EnumFlag extends FlagBase {
  readonly type: "enum";
  readonly values: readonly string[];
  readonly default?: string;
}
/** A comma-separated list (`--methods spsc,mpmc`): items trimmed, empty items refused. */
export interface ListFlag extends FlagBase {
  readonly type: "list";
  /** When given, every item must be one of these. */
  readonly values?: readonly string[];
  readonly default?: readonly string[];
}
/** A size in bytes: digits with an optional binary suffix K, M, G, T (`64M`, `1GiB`, `4096`). */
export interface SizeFlag extends FlagBase {
  readonly type: "size";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}
export type FlagSpec =
  | BooleanFlag
  | StringFlag
  | IntegerFlag
  | NumberFlag
  | EnumFlag
  | ListFlag
  | SizeFlag;
export type FlagValue = boolean | string | number | readonly string[];

/** The type a flag's value has in `run`. */
type ValueOf<S extends FlagSpec> = S extends BooleanFlag
  ? boolean
  : S extends IntegerFlag | NumberFlag | SizeFlag
    ? number
    : S extends EnumFlag
      ? S["values"][number]
      : S extends ListFlag
        ? readonly string[]
        : string;

/** Booleans always have a value; other flags only when they have a default. */
type Always<S extends FlagSpec> = S extends BooleanFlag
  ? true
  : S extends { readonly default: unknown }
    ? true
    : false;

/** The typed `flags` object a command's `run` receives, derived from its spec. */
export type FlagValues<F extends readonly FlagSpec[]> = {
  readonly [S in F[number] as S["name"]]: Always<S> extends true
    ? ValueOf<S>
    : ValueOf<S> | undefined;
};

/** A positional argument, for the help text and the count check. */
export interface ArgSpec {
  readonly name: string;
  readonly description: string;
  readonly optional?: boolean;
  /** Takes every remaining positional (only the last one may). */
  readonly variadic?: boolean;
}

/** What a command's `run` is given. */
export interface Context<V> {
  /** The command's full name: `bench queue`. */
  readonly command: string;
  readonly flags: V;
  /** Flags that were given on the command line (not filled from defaults). */
  readonly given: ReadonlySet<string>;
  readonly args: readonly string[];
  /** Where results, notes and progress go (honours --json and --quiet). */
  readonly out: Output;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A command as written in src/cli/commands/: its spec and a typed `run`. */
export interface CommandDef<F extends readonly FlagSpec[]> {
  /** One or two words: `version`, `bench queue`. */
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Optional paragraph for the command's own help. */
  readonly description?: string;
  readonly flags: F;
  readonly args?: readonly ArgSpec[];
  /** Resolves to the exit code: 0 success, 1 the command ran and failed. */
  run(ctx: Context<FlagValues<F>>): Promise<number>;
}

/** A command in the registry, its flag types erased. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly description?: string;
  readonly flags: readonly FlagSpec[];
  readonly args: readonly ArgSpec[];
  run(ctx: Context<ParsedFlags>): Promise<number>;
}
export type ParsedFlags = Readonly<Record<string, FlagValue | undefined>>;

/** The flags every command takes; main.ts acts on them, commands read them from `ctx.out`. */
export const COMMON_FLAGS: readonly BooleanFlag[] = [
  {
    name: "json",
    type: "boolean",
    description: "Print one JSON document on stdout; human text and progress go to stderr",
  },
  { name: "quiet", type: "boolean", description: "Hide progress and notes (-q)" },
  { name: "help", type: "boolean", description: "Show this help (-h)" },
];
const SHORT: Readonly<Record<string, string>> = { h: "help", q: "quiet" };

/**
 * Register a command: checks its spec once (a broken spec is a bug: panic at load) and erases
 * its flag types. The one cast below is sound because `run` is only ever called with flags that
 * {@link parseCommandArgs} built from this same spec.
 */
export function defineCommand<const F extends readonly FlagSpec[]>(def: CommandDef<F>): Command {
  checkSpec(def.name, def.flags);
  return {
    name: def.name,
    summary: def.summary,
    description: def.description,
    flags: def.flags,
    args: def.args ?? [],
    run: (ctx) => def.run(ctx as unknown as Context<FlagValues<F>>),
  };
}

function checkSpec(command: string, flags: readonly FlagSpec[]): void {
  const seen = new Set<string>(COMMON_FLAGS.map((f) => f.name));
  for (const f of flags) {
    if (!/^[a-z][a-z0-9-]*$/.test(f.name) || f.name.startsWith("no-") || seen.has(f.name)) {
      panic(`cli: command "${command}" has a bad or duplicate flag name "${f.name}"`);
    }
    seen.add(f.name);
    if (f.default !== undefined && f.type !== "boolean" && f.type !== "string") {
      const raw = Array.isArray(f.default) ? f.default.join(",") : String(f.default);
      decodeValue(f, raw); // a default must pass its own check
    }
  }
}

/** The result of parsing one command's tokens. */
export interface ParsedArgs {
  readonly flags: ParsedFlags;
  readonly given: ReadonlySet<string>;
  readonly args: readonly string[];
  readonly json: boolean;
  readonly quiet: boolean;
  readonly help: boolean;
}

/** The hint every usage error ends with. */
export function seeHelp(command?: string): string {
  return command ? `(see exocore ${command} --help)` : "(see exocore --help)";
}

/**
 * Decode one command's tokens (everything after its name) against its spec. A `--help`
 * anywhere before `--` wins over every other check, so `--help` always works.
 */
export function parseCommandArgs(cmd: Command, tokens: readonly string[]): ParsedArgs {
  const end = tokens.indexOf("--");
  const head = end < 0 ? tokens : tokens.slice(0, end);
  const common = { json: false, quiet: false, help: false };
  common.help = head.includes("--help") || head.includes("-h");
  const flags: Record<string, FlagValue | undefined> = {};
  for (const f of cmd.flags)
    flags[f.name] = f.type === "boolean" ? (f.default ?? false) : f.default;
  const given = new Set<string>();
  const args: string[] = [];
  const byName = new Map(cmd.flags.map((f) => [f.name, f]));

  for (let i = 0; i < head.length; i++) {
    const tok = head[i];
    if (!tok.startsWith("-") || tok === "-" || /^-\.?\d/.test(tok)) {
      args.push(tok);
      continue;
    }
    const short = /^-[^-]$/.test(tok) ? SHORT[tok.slice(1)] : undefined;
    const eq = tok.indexOf("=");
    const name = short ?? (eq < 0 ? tok.slice(2) : tok.slice(2, eq));
    const inline = short || eq < 0 ? undefined : tok.slice(eq + 1);
    const display = eq < 0 ? tok : tok.slice(0, eq);
    if (!tok.startsWith("--") && short === undefined) {
      throw new UsageError(`unknown flag ${display} for "${cmd.name}" ${seeHelp(cmd.name)}`);
    }
    if (name === "json" || name === "quiet" || name === "help") {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value, got "${inline}"`);
      common[name] = true;
      continue;
    }
    const negated = name.startsWith("no-") ? byName.get(name.slice(3)) : undefined;
    const spec = byName.get(name) ?? (negated?.type === "boolean" ? negated : undefined);
    if (spec === undefined) {
      if (common.help) continue; // help is on its way; do not fail on the rest
      throw new UsageError(`unknown flag ${display} for "${cmd.name}" ${seeHelp(cmd.name)}`);
    }
    given.add(spec.name);
    if (spec.type === "boolean") {
      if (inline !== undefined) {
        throw new UsageError(`${display} takes no value, got ${JSON.stringify(inline)}`);
      }
      flags[spec.name] = spec !== negated;
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      const next = head[i + 1];
      if (next === undefined || next.startsWith("--")) {
        if (common.help) continue;
        throw new UsageError(`--${spec.name} needs a value (${expects(spec)})`);
      }
      raw = next;
      i++;
    }
    if (common.help) continue;
    flags[spec.name] = decodeValue(spec, raw);
  }
  if (end >= 0) args.push(...tokens.slice(end + 1));
  if (!common.help) checkPositionals(cmd, args);
  return { flags, given, args, ...common };
}

function checkPositionals(cmd: Command, args: readonly string[]): void {
  const variadic = cmd.args.some((a) => a.variadic);
  if (!variadic && args.length > cmd.args.length) {
    const extra = args[cmd.args.length];
    throw new UsageError(
      `unexpected argument ${JSON.stringify(extra)} for "${cmd.name}" ${seeHelp(cmd.name)}`,
    );
  }
  const required = cmd.args.filter((a) => !a.optional).length;
  if (args.length < required) {
    const missing = cmd.args[args.length];
    throw new UsageError(
      `missing argument <${missing.name}> for "${cmd.name}" ${seeHelp(cmd.name)}`,
    );
  }
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/**
 * A size: `4096`, `512K`, `64M`, `1G`, `2T` (binary multiples; `KiB`, `MB`, `k` are accepted
 * too); NaN if it is not one.
 */
export function parseSize(raw: string): number {
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(raw.trim());
  return m ? Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()] : Number.NaN;
}

/** A size as the help prints it: `64M`, `512K`, or bytes when no suffix divides it. */
export function formatSize(bytes: number): string {
  for (const [suffix, unit] of [
    ["T", 2 ** 40],
    ["G", 2 ** 30],
    ["M", 2 ** 20],
    ["K", 2 ** 10],
  ] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

/** Check and convert one raw value; throws a UsageError that names the flag. */
export function decodeValue(spec: Exclude<FlagSpec, BooleanFlag>, raw: string): FlagValue {
  const bad = (): never => {
    throw new UsageError(`--${spec.name} must be ${expects(spec)}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case "string":
      return raw === "" ? bad() : raw;
    case "integer": {
      const n = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
      if (!Number.isSafeInteger(n) || !inRange(spec, n)) bad();
      return n;
    }
    case "number": {
      const n = raw.trim() === "" ? Number.NaN : Number(raw);
      if (!Number.isFinite(n) || !inRange(spec, n)) bad();
      return n;
    }
    case "enum":
      return spec.values.includes(raw) ? raw : bad();
    case "size": {
      const n = parseSize(raw);
      if (!Number.isSafeInteger(n) || !inRange(spec, n)) bad();
      return n;
    }
    case "list": {
      const items = raw.split(",").map((s) => s.trim());
      if (items.some((s) => s === "" || (spec.values && !spec.values.includes(s)))) bad();
      return [...new Set(items)];
    }
  }
}

function inRange(spec: IntegerFlag | NumberFlag | SizeFlag, n: number): boolean {
  return (spec.min === undefined || n >= spec.min) && (spec.max === undefined || n <= spec.max);
}

/** What a flag accepts, in words: `an integer >= 100`, `one of spin, hybrid, park`. */
export function expects(spec: Exclude<FlagSpec, BooleanFlag>): string {
  switch (spec.type) {
    case "string":
      return "a non-empty string";
    case "integer":
    case "number": {
      const what = spec.type === "integer" ? "an integer" : "a number";
      if (spec.min !== undefined && spec.max !== undefined) {
        return `${what} from ${spec.min} to ${spec.max}`;
      }
      if (spec.min !== undefined) return `${what} >= ${spec.min}`;
      if (spec.max !== undefined) return `${what} <= ${spec.max}`;
      return what;
    }
    case "enum":
      return `one of ${spec.values.join(", ")}`;
    case "size": {
      const range =
        spec.min !== undefined && spec.max !== undefined
          ? ` from ${formatSize(spec.min)} to ${formatSize(spec.max)}`
          : spec.min !== undefined
            ? ` >= ${formatSize(spec.min)}`
            : spec.max !== undefined
              ? ` <= ${formatSize(spec.max)}`
              : "";
      return `a size in bytes with an optional K, M, G or T suffix${range}`;
    }
    case "list":
      return spec.values
        ? `a comma-separated list of ${spec.values.join(", ")}`
        : "a comma-separated list of non-empty names";
  }
}

// ---- help text ----------------------------------------------------------------------------

/** The left column of a flag's help line: `--samples <n>`, `--[no-]svg`, `--quick`. */
function flagUsage(spec: FlagSpec): string {
  switch (spec.type) {
    case "boolean":
      return spec.default === true ? `--[no-]${spec.name}` : `--${spec.name}`;
    case "integer":
      return `--${spec.name} <${spec.placeholder ?? "n"}>`;
    case "number":
      return `--${spec.name} <${spec.placeholder ?? "x"}>`;
    case "enum":
      return `--${spec.name} <${spec.placeholder ?? spec.values.join("|")}>`;
    case "list":
      return `--${spec.name} <${spec.placeholder ?? "a,b,..."}>`;
    case "size":
      return `--${spec.name} <${spec.placeholder ?? "size"}>`;
    case "string":
      return `--${spec.name} <${spec.placeholder ?? "value"}>`;
  }
}

/** The right column: the description, then what it accepts and its default in parentheses. */
function flagText(spec: FlagSpec): string {
  const notes: string[] = [];
  if (spec.type === "boolean") {
    if (spec.default === true) notes.push("default: on");
  } else {
    if (spec.type !== "string") notes.push(expects(spec));
    if (spec.default !== undefined) {
      const d = Array.isArray(spec.default)
        ? spec.default.join(",")
        : spec.type === "size"
          ? formatSize(spec.default as number)
          : String(spec.default);
      notes.push(`default: ${d}`);
    }
  }
  return notes.length ? `${spec.description} (${notes.join("; ")})` : spec.description;
}

/** Two aligned columns, indented by two spaces. */
export function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.min(28, Math.max(0, ...rows.map(([l]) => l.length)));
  return rows
    .map(([l, r]) =>
      l.length > width ? `  ${l}\n  ${" ".repeat(width + 2)}${r}` : `  ${l.padEnd(width + 2)}${r}`,
    )
    .join("\n");
}

/** The exit codes, as every help page lists them. */
export const EXIT_CODES: readonly (readonly [number, string])[] = [
  [0, "success"],
  [1, "the command ran and failed (a check failed; an aim was missed, with --strict)"],
  [2, "usage error: unknown command or flag, bad flag value, bad argument"],
  [70, "internal error: a bug in exocore (EXOCORE_DEBUG=1 prints the stack)"],
];

export function exitCodesText(): string {
  return columns(EXIT_CODES.map(([c, t]) => [String(c), t]));
}

/** The help page of one command. */
export function formatCommandHelp(cmd: Command): string {
  const args = cmd.args
    .map((a) => {
      const w = `<${a.name}>${a.variadic ? "..." : ""}`;
      return a.optional ? `[${w}]` : w;
    })
    .join(" ");
  const lines = [`exocore ${cmd.name} — ${cmd.summary}`, ""];
  lines.push(
    `Usage: exocore ${cmd.name}${cmd.flags.length ? " [flags]" : ""}${args ? ` ${args}` : ""}`,
  );
  if (cmd.description) lines.push("", cmd.description);
  if (cmd.args.length) {
    lines.push("", "Arguments:", columns(cmd.args.map((a) => [`<${a.name}>`, a.description])));
  }
  if (cmd.flags.length) {
    lines.push("", "Flags:", columns(cmd.flags.map((f) => [flagUsage(f), flagText(f)])));
  }
  lines.push("", "Common flags:", columns(COMMON_FLAGS.map((f) => [flagUsage(f), flagText(f)])));
  lines.push("", "Exit codes:", exitCodesText());
  return `${lines.join("\n")}\n`;
}

/** The command's spec as a JSON document (for `--help --json`). */
export function commandHelpJson(cmd: Command): object {
  return {
    command: cmd.name,
    summary: cmd.summary,
    description: cmd.description,
    args: cmd.args,
    flags: cmd.flags,
    commonFlags: COMMON_FLAGS,
    exitCodes: Object.fromEntries(EXIT_CODES),
  };
}
