/**
 * network: TCP echo through the network domain against node:net (`exocore bench network`).
 *
 * Owns the run, its report (bench/results/network.json, and network.svg: the round-trip
 * distributions) and its table. Who calls: src/cli/commands/bench-network.ts, and tests
 * through it.
 *
 * Servers, measured one at a time by the same client:
 *   exocore-<mode>  a machine booted with a NIC (`cores` XOS cores, channel mode <mode>) running
 *                   programs/echo-server.js: the host's TCP sockets live in the NIC model's
 *                   offload engine on this process's main thread (the hypervisor); bytes cross
 *                   the VF's rings to the network domain and, through the syscall rings, to a
 *                   green thread per connection on the cores. The server is told how many
 *                   connections the client makes, serves them, and must exit 0.
 *   node            a plain node:net echo server (socket.pipe(socket)) in a worker thread of
 *                   this process (bench/net-echo.ts); the main thread only waits.
 * The client (bench/net-client.ts) is a child process: its event loop is its own, so it never
 * delays the hypervisor's, and this process's main thread never blocks (no sync calls, no busy
 * loop). It measures ping-pong round trips of 64-byte messages on one connection (p50 / p99),
 * then streams 64 KiB writes on N connections for a few seconds (MB/s sent and echoed back).
 *
 * Ratios are exocore / node: for latency above 1 means exocore is slower; for MB/s below 1.
 * Invariant: one server runs at a time, and each exocore run gets a fresh machine.
 */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ExocoreError, InvalidArgumentError } from "../src/errors.js";
import type { ChannelMode } from "../src/hv/layout.js";
import { boot, describeEvent, type Machine, type WorkerStats } from "../src/hv/machine.js";
import { type LatencySeries, latencyChartSvg } from "./lib/chart.js";
import type { ClientPlan, ClientResult, ThroughputSample } from "./net-client.js";
import type { EchoReady, EchoStopped } from "./net-echo.js";

export interface NetworkBenchOptions {
  readonly quick: boolean;
  /** Channel modes to run exocore with, one fresh machine each. */
  readonly channels: readonly ChannelMode[];
  /** XOS cores of each machine. */
  readonly cores: number;
  /** Timed ping-pong round trips (--quick caps it at 300). */
  readonly messages: number;
  /** Measuring window of each throughput run, s (--quick caps it at 0.3). */
  readonly seconds: number;
  /** Connection counts of the throughput runs. */
  readonly connections: readonly number[];
  /** Results directory (default bench/results). */
  readonly out?: string;
  /** Write the round-trip chart (SVG). */
  readonly svg: boolean;
}

export interface Progress {
  phase: string;
  done: number;
  total: number;
}

export interface LatencyRow {
  server: string;
  label: string;
  messages: number;
  size: number;
  minNs: number;
  p50Ns: number;
  p99Ns: number;
  p999Ns: number;
  maxNs: number;
  meanNs: number;
  /** exocore / node (1 for node itself) */
  ratioToNode: { p50: number; p99: number };
}

export interface ThroughputRow extends ThroughputSample {
  server: string;
  /** exocore / node at the same connection count (1 for node itself) */
  ratioToNode: { sent: number; received: number };
}

/** What one server run left behind: the machine's counters for exocore. */
export interface ServerRun {
  server: string;
  label: string;
  connections: number;
  /** exocore: echo-server's exit status (0: every connection served without error). */
  exit: number | null;
  /** exocore: the network domain's counters at the end. */
  domain: Pick<WorkerStats, "calls" | "rounds" | "batchMax" | "parks" | "wakeups"> | null;
  /** exocore: the NIC VF's counters at the end (the network domain's VF). */
  nic: Readonly<Record<string, number | string>> | null;
}

export interface NetworkBenchReport {
  date: string;
  node: string;
  platform: string;
  cpus: number;
  load: { start: number; end: number };
  layout: string[];
  cores: number;
  channels: ChannelMode[];
  latency: LatencyRow[];
  throughput: ThroughputRow[];
  runs: ServerRun[];
  notes: string[];
  files: string[];
}

const ECHO_SERVER = fileURLToPath(new URL("../programs/echo-server.js", import.meta.url));
const CLIENT = fileURLToPath(new URL("./net-client.js", import.meta.url));
const NODE_ECHO = new URL("./net-echo.js", import.meta.url);
/**
 * The channel modes a network run takes. Not trap: a trap call holds its whole core until it is
 * answered, so echo-server's accept would hold a core for as long as it waits for a client and
 * a connection thread's recv would starve every other connection on its core.
 */
export const NETWORK_CHANNELS: readonly ChannelMode[] = ["spin", "hybrid", "park"];
const MESSAGE_BYTES = 64;
const CHUNK_BYTES = 64 * 1024;
/** In flight per connection at most (written, not yet echoed): 16 writes. */
const WINDOW_BYTES = 16 * CHUNK_BYTES;
/** How long a server may take to start listening, and to exit once its clients are gone (ms). */
const START_MS = 20_000;
const EXIT_MS = 20_000;

export function checkNetworkOptions(o: NetworkBenchOptions): void {
  if (o.channels.length === 0)
    throw new InvalidArgumentError("channels must name at least one mode");
  for (const c of o.channels) {
    if (!NETWORK_CHANNELS.includes(c))
      throw new InvalidArgumentError(
        `channels must be among ${NETWORK_CHANNELS.join(", ")} (trap holds a whole core per call: echo-server would starve), got ${JSON.stringify(c)}`,
      );
  }
  if (!Number.isInteger(o.cores) || o.cores < 1 || o.cores > 64)
    throw new InvalidArgumentError(`cores must be an integer from 1 to 64, got ${o.cores}`);
  if (!Number.isInteger(o.messages) || o.messages < 10 || o.messages > 1_000_000)
    throw new InvalidArgumentError(
      `messages must be an integer from 10 to 1000000, got ${o.messages}`,
    );
  if (!(o.seconds > 0 && o.seconds <= 600))
    throw new InvalidArgumentError(`seconds must be > 0 and <= 600, got ${o.seconds}`);
  if (o.connections.length === 0)
    throw new InvalidArgumentError("connections must list at least one count");
  for (const n of o.connections) {
    if (!Number.isInteger(n) || n < 1 || n > 1000)
      throw new InvalidArgumentError(`each connection count must be from 1 to 1000, got ${n}`);
  }
}

/** Run the load generator in a child process; resolves to what it printed. */
async function runClient(plan: ClientPlan): Promise<ClientResult> {
  // Generous: 10 ms per round trip, each window and warm-up, and the drain deadline per run.
  const timeout =
    START_MS +
    plan.latency.messages * 10 +
    plan.throughput.reduce((ms, t) => ms + (t.seconds + t.warmup) * 1000 + 60_000, 0);
  const child = spawn(process.execPath, [CLIENT, JSON.stringify(plan)], {
    stdio: ["ignore", "pipe", "pipe"],
    timeout,
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    out += s;
  });
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    err += s;
  });
  const [code, signal] = (await once(child, "close")) as [number | null, string | null];
  if (code !== 0) {
    const how = signal !== null ? `was killed (${signal}) after ${timeout} ms` : `exited ${code}`;
    throw new ExocoreError("EXO_ERR_BENCH", `the client ${how}: ${err.trim()}`);
  }
  return JSON.parse(out) as ClientResult;
}

/** Resolve when `text()` matches `re`; reject when `exited` settles first or after `ms`. */
function waitFor(
  text: () => string,
  re: RegExp,
  exited: Promise<number>,
  ms: number,
  onOutput: (check: () => void) => void,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new ExocoreError("EXO_ERR_BENCH", `no "${re.source}" in ${ms} ms: ${text()}`));
    }, ms);
    const check = () => {
      const hit = re.exec(text());
      if (hit) {
        clearTimeout(timer);
        resolve(hit);
      }
    };
    onOutput(check);
    check();
    void exited.then((status) => {
      clearTimeout(timer);
      reject(new ExocoreError("EXO_ERR_BENCH", `the server exited ${status}: ${text()}`));
    });
  });
}

/** `p` or null after `ms` (the timer does not outlive the race). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((r) => {
    timer = setTimeout(() => r(null), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function exocoreRun(
  mode: ChannelMode,
  cores: number,
  plan: Omit<ClientPlan, "port">,
): Promise<{ result: ClientResult; run: ServerRun }> {
  let text = "";
  let onOutput: () => void = () => {};
  const events: string[] = [];
  const m: Machine = await boot({
    cores,
    memoryMiB: 64,
    channel: mode,
    network: true,
    stdout: (s) => {
      text += s;
      onOutput();
    },
    stderr: (s) => {
      text += s;
      onOutput();
    },
    onEvent: (e) => events.push(describeEvent(e)),
  });
  try {
    const connections = 1 + plan.throughput.reduce((n, t) => n + t.connections, 0);
    const status = m.run(ECHO_SERVER, ["0", String(connections)]);
    const hit = await waitFor(
      () => text,
      /listening on (\d+)/,
      status,
      START_MS,
      (check) => {
        onOutput = check;
      },
    );
    onOutput = () => {};
    const result = await runClient({ ...plan, port: Number(hit[1]) });
    const exit = await within(status, EXIT_MS);
    const domain = m.stats().find((s) => s.name === "domain.network");
    const nic = m.devices?.stats().nic?.[0] ?? null;
    if (events.length > 0)
      throw new ExocoreError("EXO_ERR_BENCH", `supervisor events: ${events.join("; ")}`);
    if (exit !== 0)
      throw new ExocoreError(
        "EXO_ERR_BENCH",
        `echo-server ${exit === null ? `did not exit within ${EXIT_MS} ms` : `exited ${exit}`}: ${text.trim()}`,
      );
    return {
      result,
      run: {
        server: `exocore-${mode}`,
        label: `exocore echo-server, ${mode}`,
        connections: result.connections,
        exit,
        domain: domain
          ? {
              calls: domain.calls,
              rounds: domain.rounds,
              batchMax: domain.batchMax,
              parks: domain.parks,
              wakeups: domain.wakeups,
            }
          : null,
        nic: nic === null ? null : { ...nic },
      },
    };
  } finally {
    await m.shutdown();
  }
}

async function nodeRun(
  plan: Omit<ClientPlan, "port">,
): Promise<{ result: ClientResult; run: ServerRun }> {
  const worker = new Worker(NODE_ECHO);
  // Settles on exit, or on an error (which the awaits below report): never an unhandled rejection.
  const exited = once(worker, "exit").then(
    () => undefined,
    () => undefined,
  );
  try {
    const [ready] = (await once(worker, "message")) as [EchoReady];
    const result = await runClient({ ...plan, port: ready.port });
    const stopped = once(worker, "message") as Promise<[EchoStopped]>;
    worker.postMessage("stop");
    const [{ connections }] = await stopped;
    if (connections !== result.connections)
      throw new ExocoreError(
        "EXO_ERR_BENCH",
        `node echo server accepted ${connections} connections, the client made ${result.connections}`,
      );
    return {
      result,
      run: {
        server: "node",
        label: "node:net echo (worker)",
        connections,
        exit: null,
        domain: null,
        nic: null,
      },
    };
  } finally {
    await within(exited, 5000);
    await worker.terminate();
  }
}

function latencyRow(server: string, label: string, r: ClientResult): LatencyRow {
  const s = Float64Array.from(r.latencyNs).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
  let sum = 0;
  for (const v of s) sum += v;
  return {
    server,
    label,
    messages: s.length,
    size: r.size,
    minNs: s[0] as number,
    p50Ns: at(0.5),
    p99Ns: at(0.99),
    p999Ns: at(0.999),
    maxNs: s[s.length - 1] as number,
    meanNs: sum / s.length,
    ratioToNode: { p50: Number.NaN, p99: Number.NaN },
  };
}

export async function runNetworkBench(
  opts: NetworkBenchOptions,
  onProgress?: (p: Progress) => void,
): Promise<NetworkBenchReport> {
  checkNetworkOptions(opts);
  const messages = opts.quick ? Math.min(opts.messages, 300) : opts.messages;
  const seconds = opts.quick ? Math.min(opts.seconds, 0.3) : opts.seconds;
  const plan: Omit<ClientPlan, "port"> = {
    latency: { messages, warmup: Math.max(20, Math.floor(messages / 10)), size: MESSAGE_BYTES },
    throughput: opts.connections.map((connections) => ({
      connections,
      seconds,
      warmup: opts.quick ? 0.1 : 0.5,
      chunk: CHUNK_BYTES,
      window: WINDOW_BYTES,
    })),
  };
  const out = opts.out ?? "bench/results";
  mkdirSync(out, { recursive: true });
  const stem = opts.quick ? "network-quick" : "network";
  const total = 1 + opts.channels.length;
  let done = 0;
  const step = (phase: string) => onProgress?.({ phase, done: done++, total: total + 1 });
  const loadStart = os.loadavg()[0] as number;

  const latency: LatencyRow[] = [];
  const throughput: ThroughputRow[] = [];
  const runs: ServerRun[] = [];
  const series: LatencySeries[] = [];
  const take = (r: { result: ClientResult; run: ServerRun }) => {
    runs.push(r.run);
    latency.push(latencyRow(r.run.server, r.run.label, r.result));
    series.push({ name: r.run.label, samplesNs: Float64Array.from(r.result.latencyNs) });
    for (const t of r.result.throughput)
      throughput.push({ ...t, server: r.run.server, ratioToNode: { sent: 1, received: 1 } });
  };
  step("node:net echo server (worker thread)");
  take(await nodeRun(plan));
  for (const mode of opts.channels) {
    step(`exocore echo-server, channel ${mode}`);
    take(await exocoreRun(mode, opts.cores, plan));
  }
  step("done");

  const nodeLat = latency.find((l) => l.server === "node") as LatencyRow;
  for (const l of latency)
    l.ratioToNode = { p50: l.p50Ns / nodeLat.p50Ns, p99: l.p99Ns / nodeLat.p99Ns };
  for (const t of throughput) {
    const n = throughput.find((x) => x.server === "node" && x.connections === t.connections);
    if (n)
      t.ratioToNode = { sent: t.sentMBps / n.sentMBps, received: t.receivedMBps / n.receivedMBps };
  }

  const cpus = os.availableParallelism();
  const loadEnd = os.loadavg()[0] as number;
  const report: NetworkBenchReport = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus,
    load: { start: loadStart, end: loadEnd },
    layout: [
      `vCPUs: ${cpus}; load average (1 min) at start ${loadStart.toFixed(2)}, at end ${loadEnd.toFixed(2)}${loadStart > 1 || loadEnd > 1 ? " — NOT QUIET: other work shares the vCPUs" : ""}`,
      "client: a child process (bench/net-client.js), its own event loop; the same code for every server",
      "exocore: hypervisor = main thread (NIC model + TCP offload engine: the host's node:net sockets);",
      `         network domain = 1 worker; system domain = 1 worker (idle); ${opts.cores} XOS core worker(s),`,
      "         echo-server: one green thread per connection, spread over the cores; one fresh machine per channel mode",
      "node: node:net echo server (socket.pipe) in 1 worker thread of this process; the main thread only waits",
    ],
    cores: opts.cores,
    channels: [...opts.channels],
    latency,
    throughput,
    runs,
    notes: [
      `latency: 1 connection, TCP_NODELAY both ends, ${MESSAGE_BYTES}-byte ping-pong, ${messages} timed round trips after ${plan.latency.warmup} untimed; client-side clock (performance.now())`,
      `throughput: N connections each writing ${CHUNK_BYTES / 1024} KiB buffers as fast as the socket drains, at most ${WINDOW_BYTES / 1024} KiB ahead of the echo, ${seconds} s window after ${plan.throughput[0]?.warmup ?? 0} s warm-up; MB = 10^6 bytes; sent = client bytes written, echoed = client bytes read`,
      "every connection must get back every byte it sent after it half-closes (echoedAll), and exocore's echo-server must exit 0",
      "ratios are exocore / node: above 1 = exocore slower for latency; below 1 = exocore slower for MB/s",
    ],
    files: [],
  };
  const jsonPath = join(out, `${stem}.json`);
  report.files.push(jsonPath);
  if (opts.svg) {
    const svgPath = join(out, `${stem}.svg`);
    writeFileSync(
      svgPath,
      latencyChartSvg(series, {
        title: `TCP echo round trip, ${MESSAGE_BYTES}-byte messages, 1 connection (client in a child process)`,
        subtitle: `Node ${process.version} · ${cpus} vCPUs · load ${loadStart.toFixed(2)} · exocore ${opts.cores} core(s) · ${messages} round trips per server · ${report.date.slice(0, 10)}`,
      }),
    );
    report.files.push(svgPath);
  }
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

// ---- the table ----

export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return "-";
  return `${r < 10 ? r.toFixed(2) : r.toFixed(0)}×`;
}

export function formatNetworkReport(r: NetworkBenchReport): string {
  const p = (s: string, n: number) => s.padStart(n);
  const lines = [
    `exocore network benchmark — Node ${r.node}, ${r.platform}`,
    ...r.layout.map((l) => `  ${l}`),
    "",
    "TCP echo round trip, 1 connection, 64-byte ping-pong",
    `  ${"server".padEnd(30)}${p("p50", 10)}${p("p99", 10)}${p("p99.9", 10)}${p("mean", 10)}${p("p50/node", 10)}${p("p99/node", 10)}`,
  ];
  for (const l of r.latency) {
    lines.push(
      `  ${l.label.padEnd(30)}${p(fmtNs(l.p50Ns), 10)}${p(fmtNs(l.p99Ns), 10)}${p(fmtNs(l.p999Ns), 10)}${p(fmtNs(l.meanNs), 10)}${p(fmtRatio(l.ratioToNode.p50), 10)}${p(fmtRatio(l.ratioToNode.p99), 10)}`,
    );
  }
  lines.push(
    "",
    "Streaming echo, 64 KiB writes (MB/s)",
    `  ${"server".padEnd(18)}${p("conns", 6)}${p("sent", 10)}${p("echoed", 10)}${p("sent/node", 11)}${p("echo/node", 11)}  all echoed`,
  );
  for (const t of r.throughput) {
    lines.push(
      `  ${t.server.padEnd(18)}${p(String(t.connections), 6)}${p(t.sentMBps.toFixed(1), 10)}${p(t.receivedMBps.toFixed(1), 10)}${p(fmtRatio(t.ratioToNode.sent), 11)}${p(fmtRatio(t.ratioToNode.received), 11)}  ${t.echoedAll ? "yes" : "NO"}`,
    );
  }
  const exo = r.runs.filter((x) => x.domain !== null);
  if (exo.length > 0) {
    lines.push("", "Network domain");
    for (const x of exo) {
      const d = x.domain as NonNullable<ServerRun["domain"]>;
      lines.push(
        `  ${x.server.padEnd(18)} calls ${d.calls}  rounds ${d.rounds}  batch max ${d.batchMax}  parks ${d.parks}`,
      );
    }
  }
  lines.push("", "Notes", ...r.notes.map((n) => `  ${n}`), "", `Written: ${r.files.join(", ")}`);
  return lines.join("\n");
}
