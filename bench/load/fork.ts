/**
 * fork: the parent side of a load-generator child process (bench/load/child.ts). A
 * {@link LoadProcess} forks the child, hands it its spec, resolves once every connection is
 * open, surfaces its periodic progress, and on stop() returns its final figures with the
 * latency percentiles read from the merged histogram.
 *
 * Invariants: a LoadProcess always ends with its child gone — stop() asks politely, kill()
 * sends SIGKILL after a grace period, and a child that dies on its own (a Ctrl-C reached it)
 * still yields a result built from its last progress report (latency then unknown: count 0).
 * Called by the demo (src/cli/commands/demo.ts) and the servers benchmark (bench/servers.ts),
 * from the main thread: everything here is asynchronous, nothing blocks the event loop that
 * runs a machine's devices.
 */

import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ExocoreError } from "../../src/errors.js";
import type { ChildMessage, ChildResult, LoadSpec, ParentMessage } from "./child.js";
import { LatencyHistogram, type LatencySummary } from "./histogram.js";
import { HTTP_DEFAULT_CONNECTIONS } from "./http.js";
import { type LoadCounters, RESP_DEFAULT_CONNECTIONS, RESP_DEFAULT_PIPELINE } from "./resp.js";

export type { LoadSpec } from "./child.js";

const CHILD = fileURLToPath(new URL("./child.js", import.meta.url));
/** How long a child may take to open its connections. */
const START_TIMEOUT_MS = 15_000;
/** How long a stopping child may take to report before it is killed. */
const STOP_GRACE_MS = 3_000;

export interface LoadProgress extends LoadCounters {
  readonly elapsedMs: number;
}

export interface LoadResult extends LoadCounters {
  readonly kind: LoadSpec["kind"];
  readonly connections: number;
  readonly pipeline: number;
  readonly elapsedMs: number;
  /** Completed requests per second over the run. */
  readonly rps: number;
  readonly latency: LatencySummary;
  /** HTTP responses by status class [1xx … 5xx]; empty for RESP. */
  readonly statusClasses: readonly number[];
}

export class LoadProcess {
  readonly spec: LoadSpec;
  readonly #child: ChildProcess;
  #last: LoadProgress = { completed: 0, errors: 0, reconnects: 0, elapsedMs: 0 };
  #final: ChildResult | null = null;
  readonly #exited: Promise<void>;
  #alive = true;

  private constructor(spec: LoadSpec, child: ChildProcess) {
    this.spec = spec;
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
    void this.#exited.then(() => {
      this.#alive = false;
    });
    child.on("message", (m: ChildMessage) => {
      if (m.type === "progress") this.#last = m;
      else if (m.type === "done") this.#final = m.result;
    });
  }

  /** Fork a child for `spec`; resolves once all its connections are open. */
  static async start(spec: LoadSpec, reportMs = 250): Promise<LoadProcess> {
    const child = fork(CHILD, [], {
      execArgv: [], // not the parent's flags (--cpu-prof profiles the machine, not the client)
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      serialization: "json",
    });
    const lp = new LoadProcess(spec, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(new ExocoreError("EXO_ERR_LOAD", `${spec.kind} load: connections not open in time`));
      }, START_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        child.off("message", onMessage);
        child.kill("SIGKILL");
        reject(err);
      };
      const onMessage = (m: ChildMessage) => {
        if (m.type === "ready") {
          clearTimeout(timer);
          child.off("message", onMessage);
          child.off("exit", onExit);
          resolve();
        } else if (m.type === "failed") {
          fail(new ExocoreError("EXO_ERR_LOAD", `${spec.kind} load: ${m.error}`));
        }
      };
      const onExit = (code: number | null) =>
        fail(new ExocoreError("EXO_ERR_LOAD", `${spec.kind} load: child exited (${code})`));
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.send({ type: "start", spec, reportMs } satisfies ParentMessage);
    });
    return lp;
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid ?? 0;
  }

  /** The last progress report (cumulative). */
  get progress(): LoadProgress {
    return this.#last;
  }

  /** Stop the load and collect the figures; the child is gone when this resolves. */
  async stop(): Promise<LoadResult> {
    if (this.#alive && this.#child.connected) {
      this.#child.send({ type: "stop" } satisfies ParentMessage);
    }
    const grace = setTimeout(() => this.#child.kill("SIGKILL"), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(grace);
    return this.#result();
  }

  /** Kill the child at once (a second Ctrl-C). */
  kill(): void {
    if (this.#alive) this.#child.kill("SIGKILL");
  }

  #result(): LoadResult {
    const f = this.#final;
    const counters = f ?? this.#last;
    const elapsedMs = f?.elapsedMs ?? this.#last.elapsedMs;
    const hist = f ? new LatencyHistogram(f.histogram) : new LatencyHistogram();
    const resp = this.spec.kind === "resp";
    const o = this.spec.options;
    return {
      kind: this.spec.kind,
      connections: o.connections ?? (resp ? RESP_DEFAULT_CONNECTIONS : HTTP_DEFAULT_CONNECTIONS),
      pipeline: o.pipeline ?? (resp ? RESP_DEFAULT_PIPELINE : 1),
      completed: counters.completed,
      errors: counters.errors,
      reconnects: counters.reconnects,
      elapsedMs,
      rps: elapsedMs > 0 ? (counters.completed * 1000) / elapsedMs : 0,
      latency: hist.summary(),
      statusClasses: f?.statusClasses ?? [],
    };
  }
}
