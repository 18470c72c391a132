/**
 * child: the entry of a load-generator child process (forked by bench/load/fork.ts). It runs
 * one generator — RESP (bench/load/resp.ts) or HTTP (bench/load/http.ts) — on its own event
 * loop and CPU time, so the load never shares the event loop of a machine's hypervisor thread.
 *
 * Protocol over the IPC channel (JSON messages, {@link ParentMessage} / {@link ChildMessage}):
 *   parent → child   start {spec, reportMs}      open the connections, then run
 *   child → parent   ready                       every connection is open; the clock starts
 *   child → parent   progress {counters}         every reportMs: cumulative counts
 *   parent → child   stop                        stop sending, report, exit
 *   child → parent   done {result}               final counts and the latency histogram
 *   child → parent   failed {error}              the generator could not start
 * SIGINT / SIGTERM (a Ctrl-C reaches the whole process group) count as stop. If the parent
 * goes away (the channel disconnects), the child stops and exits at once: no load generator
 * outlives the command that started it.
 */

import type { HttpLoadOptions } from "./http.js";
import type { LoadCounters, RespLoadOptions } from "./resp.js";

export type LoadSpec =
  | { readonly kind: "resp"; readonly options: RespLoadOptions }
  | { readonly kind: "http"; readonly options: HttpLoadOptions };

export type ParentMessage =
  | { readonly type: "start"; readonly spec: LoadSpec; readonly reportMs: number }
  | { readonly type: "stop" };

/** What a child reports at the end. */
export interface ChildResult extends LoadCounters {
  readonly elapsedMs: number;
  /** Latency histogram counts (bench/load/histogram.ts buckets). */
  readonly histogram: number[];
  /** HTTP responses by status class [1xx … 5xx]; empty for RESP. */
  readonly statusClasses: number[];
}

export type ChildMessage =
  | { readonly type: "ready" }
  | ({ readonly type: "progress"; readonly elapsedMs: number } & LoadCounters)
  | { readonly type: "done"; readonly result: ChildResult }
  | { readonly type: "failed"; readonly error: string };

interface Engine {
  start(): Promise<void>;
  stop(): void;
  counters(): LoadCounters;
  readonly histogram: { toJSON(): number[] };
  statusClasses?(): number[];
}

function send(m: ChildMessage, then?: () => void): void {
  if (process.connected) process.send?.(m, undefined, {}, () => then?.());
  else then?.();
}

async function makeEngine(spec: LoadSpec): Promise<Engine> {
  if (spec.kind === "resp") {
    const { RespLoad } = await import("./resp.js");
    return new RespLoad(spec.options);
  }
  const { HttpLoad } = await import("./http.js");
  return new HttpLoad(spec.options);
}

let engine: Engine | null = null;
let startedAt = 0;
let ticker: NodeJS.Timeout | null = null;
let finishing = false;

/** Stop the generator, send the final report, and leave. */
function finish(): void {
  if (finishing) return;
  finishing = true;
  if (ticker !== null) clearInterval(ticker);
  if (engine === null) {
    process.exit(0);
  }
  engine.stop();
  const result: ChildResult = {
    ...engine.counters(),
    elapsedMs: startedAt === 0 ? 0 : performance.now() - startedAt,
    histogram: engine.histogram.toJSON(),
    statusClasses: engine.statusClasses?.() ?? [],
  };
  send({ type: "done", result }, () => process.exit(0));
}

async function start(spec: LoadSpec, reportMs: number): Promise<void> {
  try {
    engine = await makeEngine(spec);
    await engine.start();
  } catch (err) {
    engine?.stop();
    engine = null;
    const error = err instanceof Error ? err.message : String(err);
    send({ type: "failed", error }, () => process.exit(1));
    return;
  }
  startedAt = performance.now();
  send({ type: "ready" });
  const e = engine;
  ticker = setInterval(() => {
    send({ type: "progress", elapsedMs: performance.now() - startedAt, ...e.counters() });
  }, reportMs);
}

if (process.send === undefined) {
  process.stderr.write("bench/load/child: run me with child_process.fork (an IPC channel)\n");
  process.exitCode = 2;
} else {
  process.on("message", (m: ParentMessage) => {
    if (m.type === "start" && engine === null && !finishing) void start(m.spec, m.reportMs);
    else if (m.type === "stop") finish();
  });
  process.on("disconnect", () => {
    engine?.stop();
    process.exit(0);
  });
  process.on("SIGINT", finish);
  process.on("SIGTERM", finish);
}
