/**
 * progress: the progress line of a long run (a benchmark, a demo), written to stderr only.
 *
 * On a terminal it is one line redrawn in place (`\r`, clear-line, text; cut to the terminal's
 * width so it never wraps): `bench queue: measure spsc 9000/20000 (45%) 12.3s`. Redraws are
 * throttled to one per {@link TTY_REDRAW_MS} except at a phase change, and a timer (unref'd, so
 * it never keeps the process alive) ticks the elapsed time while a phase is slow to report.
 * Anywhere else (CI logs, a pipe) every line is kept, so it prints a line at each phase change
 * and otherwise at most once per {@link LOG_INTERVAL_MS}.
 *
 * A reporter that is not enabled (--quiet) does nothing. Other text written to the same stream
 * while a line is drawn must first call {@link ProgressReporter.interrupt}, which clears the
 * line; the next update draws it again. src/cli/output.ts does that for its notes.
 */

/** Where the progress line goes: stderr, or a fake in tests. */
export interface ProgressSink {
  write(chunk: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressOptions {
  /** false under --quiet: the reporter writes nothing. */
  readonly enabled: boolean;
  /** Clock in milliseconds; `performance.now` unless a test gives its own. */
  readonly now?: () => number;
  /** Minimum time between two log lines when the sink is not a terminal. */
  readonly logIntervalMs?: number;
}

export const TTY_REDRAW_MS = 100;
export const LOG_INTERVAL_MS = 2000;
const TICK_MS = 1000;
const CLEAR_LINE = "\r\x1b[2K";

export class ProgressReporter {
  readonly label: string;
  readonly #sink: ProgressSink;
  readonly #enabled: boolean;
  readonly #tty: boolean;
  readonly #now: () => number;
  readonly #logInterval: number;
  readonly #start: number;
  #phase = "";
  #done = 0;
  #total = 0;
  #lastWrite = Number.NEGATIVE_INFINITY;
  #drawn = false; // a TTY line is on screen and not yet cleared
  #ticker: ReturnType<typeof setInterval> | undefined;
  #ended = false;

  constructor(label: string, sink: ProgressSink, opts: ProgressOptions) {
    this.label = label;
    this.#sink = sink;
    this.#enabled = opts.enabled;
    this.#tty = sink.isTTY === true;
    this.#now = opts.now ?? (() => performance.now());
    this.#logInterval = opts.logIntervalMs ?? LOG_INTERVAL_MS;
    this.#start = this.#now();
  }

  /** Milliseconds since the reporter was made. */
  get elapsedMs(): number {
    return this.#now() - this.#start;
  }

  /** Report that `done` of `total` steps of `phase` are done (`total` 0: no count known). */
  update(phase: string, done: number, total: number): void {
    if (!this.#enabled || this.#ended) return;
    const changed = phase !== this.#phase;
    this.#phase = phase;
    this.#done = done;
    this.#total = total;
    const since = this.#now() - this.#lastWrite;
    if (this.#tty) {
      if (changed || since >= TTY_REDRAW_MS) this.#draw();
      this.#startTicker();
    } else if (changed || since >= this.#logInterval) {
      this.#sink.write(`${this.#text()}\n`);
      this.#lastWrite = this.#now();
    }
  }

  /** Clear the drawn line so other text can go to the stream; the next update redraws it. */
  interrupt(): void {
    if (this.#drawn) {
      this.#sink.write(CLEAR_LINE);
      this.#drawn = false;
    }
  }

  /** The run finished: clear the line and print `label: done in 12.3s`. */
  end(): void {
    if (this.#ended) return;
    this.abort();
    if (this.#enabled)
      this.#sink.write(`${this.label}: done in ${formatElapsed(this.elapsedMs)}\n`);
  }

  /** The run stopped (an error): clear the line, print nothing. */
  abort(): void {
    this.#ended = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.interrupt();
  }

  #text(): string {
    let count = "";
    if (this.#total > 0) {
      const pct = Math.floor((100 * Math.min(this.#done, this.#total)) / this.#total);
      count = ` ${this.#done}/${this.#total} (${pct}%)`;
    }
    const phase = this.#phase ? ` ${this.#phase}` : "";
    return `${this.label}:${phase}${count} ${formatElapsed(this.elapsedMs)}`;
  }

  #draw(): void {
    const width = (this.#sink.columns || 80) - 1; // a pty may report 0 columns
    this.#sink.write(`${CLEAR_LINE}${this.#text().slice(0, Math.max(width, 20))}`);
    this.#drawn = true;
    this.#lastWrite = this.#now();
  }

  #startTicker(): void {
    if (this.#ticker !== undefined) return;
    this.#ticker = setInterval(() => {
      if (this.#now() - this.#lastWrite >= TICK_MS) this.#draw();
    }, TICK_MS);
    this.#ticker.unref();
  }
}

/** `850ms`, `12.3s`, `4m05s`. */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
