/**
 * output: where each kind of text a command writes goes, so that `--json` and `--quiet` mean
 * the same for every command.
 *
 *                      default              --json                      --quiet
 *   result (emit)      text on stdout       one JSON document, stdout   unchanged
 *                                           (the text goes to stderr)   (text on stderr hidden)
 *   note               stderr               stderr                      hidden
 *   progress           stderr               stderr                      hidden
 *   error              stderr               JSON on stdout + stderr     unchanged
 *
 * stdout therefore holds only results: a pipe gets the table, or exactly one JSON document.
 */

import { ProgressReporter, type ProgressSink } from "./progress.js";

/** A stream as the CLI uses it; process.stdout / process.stderr, or a fake in tests. */
export interface TextSink {
  write(chunk: string): unknown;
}

/** The process around main(): its two streams and its environment. */
export interface Io {
  readonly stdout: TextSink;
  readonly stderr: ProgressSink;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The real process. A closed stdout (`exocore --help | head -1`) is not an error. */
export function processIo(): Io {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
  });
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}

export interface OutputMode {
  readonly json: boolean;
  readonly quiet: boolean;
}

export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly #io: Io;
  #progress: ProgressReporter | undefined;
  #emitted = false;

  constructor(io: Io, mode: OutputMode) {
    this.#io = io;
    this.json = mode.json;
    this.quiet = mode.quiet;
  }

  /**
   * The command's result: `doc` as one JSON document on stdout with --json (and `text` on
   * stderr for a human watching, unless --quiet), else `text` on stdout. Once per run.
   */
  emit(doc: unknown, text: string): void {
    if (this.#emitted) throw new Error("output: a command emits its result once");
    this.#emitted = true;
    if (this.json) {
      this.#io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
      if (!this.quiet) this.#stderr(text);
    } else {
      this.#io.stdout.write(withNewline(text));
    }
  }

  /** A human note on stderr (`wrote bench/results/queue.json`); hidden by --quiet. */
  note(text: string): void {
    if (!this.quiet) this.#stderr(text);
  }

  /** A line on stderr that --quiet does not hide: warnings and errors. */
  warn(text: string): void {
    this.#stderr(text);
  }

  /** A usage or run error: `exocore: <message>` on stderr, and with --json the error object. */
  error(line: string, code: string, message: string): void {
    if (this.json && !this.#emitted) {
      this.#emitted = true;
      this.#io.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
    }
    this.#stderr(line);
  }

  /** A progress reporter for a long run; at most one at a time per command. */
  progress(label: string): ProgressReporter {
    this.#progress?.abort();
    this.#progress = new ProgressReporter(label, this.#io.stderr, { enabled: !this.quiet });
    return this.#progress;
  }

  /** The run is over: clear a progress line that is still drawn (the run threw). */
  close(): void {
    this.#progress?.abort();
    this.#progress = undefined;
  }

  #stderr(text: string): void {
    this.#progress?.interrupt();
    this.#io.stderr.write(withNewline(text));
  }
}

function withNewline(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}
