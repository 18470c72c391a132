/**
 * `exocore demo`: the server demo that `npm start` runs. On a fresh checkout it needs nothing
 * but the build:
 *
 *   1. an exofs image in a scratch folder, made from demo/site (the `mkfs --from` logic);
 *   2. a machine booted in this process (disk + NIC, 2 XOS cores), kv-server (AOF everysec)
 *      and http-server (the site from the image) started on it;
 *   3. load, in two phases: the built-in clients (bench/load: a pipelined RESP client and a
 *      keep-alive HTTP client, each a child process) on both servers at once; then, when
 *      installed and not --no-external, redis-benchmark and wrk (async child processes);
 *   4. live figures on stderr every ~0.5 s (one redrawn line on a terminal, a plain line every
 *      2 s otherwise): requests/s per server, system calls/s served by the domains, and per
 *      domain the queue depth, parks/s and wake-ups/s (Machine.stats());
 *   5. a summary table on stdout (the JSON document with --json) and an HTML report
 *      (src/cli/report.ts) written to --report or into the scratch folder, path printed.
 *
 * Ctrl-C (SIGINT) or SIGTERM: the load stops, the machine shuts down, what was measured is
 * still summarised and reported, and the command exits 130 (143 for SIGTERM). A second Ctrl-C
 * kills the clients and leaves at once. The hypervisor's event loop is never blocked while the
 * machine runs: every client is another process and every wait here is asynchronous.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Collected, RedisLiveParser, WrkResult } from "../../../bench/load/external.js";
import type { LoadProcess, LoadResult } from "../../../bench/load/fork.js";
import type { ExocoreServers } from "../../../bench/servers.js";
import { ExocoreError } from "../../errors.js";
import { CHANNEL_MODES, type ChannelMode } from "../../hv/layout.js";
import { describeEvent, type WorkerStats } from "../../hv/machine.js";
import { defineCommand } from "../args.js";
import type { Output } from "../output.js";
import type { DemoPhase, DemoReportData, DemoResult, DemoSample, LayoutBox } from "../report.js";

/** Sampling period of the live figures and the report's time series. */
const SAMPLE_MS = 500;
/** Between two plain live lines when stderr is not a terminal. */
const LOG_EVERY_MS = 2000;
/**
 * Image size: room for the AOF of a long run — 20 s here append ~150 MiB (a sparse file: only
 * what is written takes space, and the image is deleted at the end). A full image is not fatal:
 * kv-server keeps serving and its AOF stops growing.
 */
const IMAGE_BYTES = 2 ** 30;
const RESP_CONNECTIONS = 32;
const RESP_PIPELINE = 16;
const HTTP_CONNECTIONS = 32;
const HTTP_PATHS = ["/index.html", "/about.html", "/css/site.css", "/img/layout.svg"];
const EXTERNAL_CLIENTS = 50;
/** The servers' names in the results, the samples and the report. */
const KV = "kv-server";
const HTTP = "http-server";

export interface DemoOptions {
  readonly quick: boolean;
  /** Seconds of load (default 20; quick 5). */
  readonly durationS?: number;
  /** Where the HTML report goes (default: report.html in the scratch folder). */
  readonly report?: string;
  /** Run redis-benchmark and wrk when installed. */
  readonly external: boolean;
  readonly channel: ChannelMode;
}

export const demo = defineCommand({
  name: "demo",
  summary: "Boot a machine, serve KV and HTTP under load with live figures; write an HTML report",
  description:
    "Builds a disk image from demo/site, boots a machine (hypervisor on the main thread, storage\n" +
    "and network domains, 2 XOS cores), starts kv-server and http-server, drives them with the\n" +
    "built-in clients and then redis-benchmark and wrk (when installed), and prints a summary\n" +
    "and the path of an HTML report. Ctrl-C stops it cleanly (exit 130).",
  flags: [
    { name: "quick", type: "boolean", description: "A short run: 5 s of load" },
    {
      name: "duration",
      type: "integer",
      min: 2,
      max: 3600,
      placeholder: "s",
      description: "Seconds of load (default 20; quick 5)",
    },
    {
      name: "report",
      type: "string",
      placeholder: "path",
      description: "Write the HTML report here (default: a file in a scratch folder)",
    },
    {
      name: "external",
      type: "boolean",
      default: true,
      description: "Also run redis-benchmark and wrk when installed (--no-external: built-in only)",
    },
    {
      name: "channel",
      type: "enum",
      values: CHANNEL_MODES,
      default: "hybrid",
      description: "How cores wait for system-call answers",
    },
  ],
  async run(ctx) {
    return runDemo(ctx.out, {
      quick: ctx.flags.quick,
      durationS: ctx.flags.duration,
      report: ctx.flags.report,
      external: ctx.flags.external,
      channel: ctx.flags.channel as ChannelMode,
    });
  },
});

/** Per-worker counters at one instant, to turn two snapshots into rates. */
interface Snapshot {
  readonly at: number;
  readonly workers: ReadonlyMap<string, WorkerStats>;
}

/** The live state the sampler reads: which clients run now. */
interface Live {
  resp: LoadProcess | null;
  http: LoadProcess | null;
  redis: RedisLiveParser | null;
  /** The last progress seen per load process, to take differences. */
  readonly last: Map<LoadProcess, { completed: number; elapsedMs: number }>;
}

/** Run the demo; resolves to the exit code. */
export async function runDemo(out: Output, o: DemoOptions): Promise<number> {
  const servers = await import("../../../bench/servers.js");
  const { LoadProcess } = await import("../../../bench/load/fork.js");
  const ext = await import("../../../bench/load/external.js");
  const { renderDemoReport } = await import("../report.js");

  const abort = new AbortController();
  let exitCode = 0;
  const stopNow: (() => void)[] = [];
  const onSignal = (signal: NodeJS.Signals) => {
    if (abort.signal.aborted) {
      for (const f of stopNow) f(); // a second Ctrl-C: kill the clients, leave at once
      process.exit(exitCode);
    }
    exitCode = signal === "SIGTERM" ? 143 : 130;
    out.warn(`exocore demo: ${signal}: stopping the load and shutting the machine down`);
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const durationS = o.durationS ?? (o.quick ? 5 : 20);
  const [haveBench, haveWrk] = o.external
    ? await Promise.all([ext.hasCommand("redis-benchmark"), ext.hasCommand("wrk")])
    : [false, false];
  const external = haveBench || haveWrk;
  const builtinS = external ? Math.max(2, Math.round(durationS * 0.6)) : durationS;
  const externalS = external ? Math.max(1, durationS - builtinS) : 0;
  if (o.external && !external) {
    out.note("exocore demo: redis-benchmark and wrk are not installed: built-in clients only");
  }

  const scratch = mkdtempSync(join(os.tmpdir(), "exocore-demo-"));
  const reportPath = resolve(o.report ?? join(scratch, "report.html"));
  const image = join(scratch, "disk.img");
  const events: string[] = [];
  const phases: DemoPhase[] = [];
  const samples: DemoSample[] = [];
  const results: DemoResult[] = [];
  const layout: LayoutBox[] = [];
  let s: ExocoreServers | null = null;
  let finalWorkers: WorkerStats[] = [];
  let devices: DemoReportData["devices"] = null;
  let sampler: NodeJS.Timeout | null = null;
  const live: Live = { resp: null, http: null, redis: null, last: new Map() };
  /** Ends phase 2's redis-benchmark (it loops until told): at the phase's end, or on the way out. */
  const stopPhase = new AbortController();
  const t0 = { at: 0 };
  const progress = out.progress("demo");

  try {
    const site = servers.findSiteDir();
    const counts = servers.buildSiteImage(image, site, IMAGE_BYTES);
    const imageText = `${counts.files} files from ${site}, in /site of a ${IMAGE_BYTES / 2 ** 30} GiB exofs image`;
    out.note(`exocore demo: disk image ${image}: ${imageText}`);
    progress.update("booting the machine", 0, 0);
    s = await servers.startServers({
      image,
      channel: o.channel,
      kvArgs: ["--aof", "/kv.aof", "--appendfsync", "everysec"],
      onEvent: (e) => {
        const text = describeEvent(e);
        events.push(text);
        out.warn(`exocore: ${text}`);
      },
      onStderr: (text) => {
        for (const line of text.split("\n").filter((l) => l.trim() !== "")) {
          events.push(line);
          out.warn(line);
        }
      },
    });
    const m = s.machine;
    await checkServers(s.kvPort, s.httpPort, servers.redisPing);
    out.note(
      `exocore demo: kv-server on 127.0.0.1:${s.kvPort}, http-server on http://127.0.0.1:${s.httpPort}/`,
    );

    // Phase 1: the built-in clients on both servers at once.
    if (!abort.signal.aborted) {
      progress.update("starting the clients", 0, 0);
      const started = await Promise.allSettled([
        LoadProcess.start({
          kind: "resp",
          options: {
            host: "127.0.0.1",
            port: s.kvPort,
            connections: RESP_CONNECTIONS,
            pipeline: RESP_PIPELINE,
          },
        }),
        LoadProcess.start({
          kind: "http",
          options: {
            host: "127.0.0.1",
            port: s.httpPort,
            connections: HTTP_CONNECTIONS,
            paths: HTTP_PATHS,
          },
        }),
      ]);
      const failed = started.find((x) => x.status === "rejected");
      if (failed !== undefined) {
        for (const x of started) if (x.status === "fulfilled") await x.value.stop();
        throw failed.reason;
      }
      const [resp, httpLoad] = started.map(
        (x) => (x as PromiseFulfilledResult<LoadProcess>).value,
      ) as [LoadProcess, LoadProcess];
      live.resp = resp;
      live.http = httpLoad;
      stopNow.push(
        () => resp.kill(),
        () => httpLoad.kill(),
      );
      layout.push(
        ...servers.machineLayout(m, "kv-server and http-server"),
        {
          name: `resp client (pid ${resp.pid})`,
          kind: "process",
          detail: `built-in: ${RESP_CONNECTIONS} conns, -P ${RESP_PIPELINE}, SET/GET/INCR`,
        },
        {
          name: `http client (pid ${httpLoad.pid})`,
          kind: "process",
          detail: `built-in: ${HTTP_CONNECTIONS} keep-alive conns, GET ${HTTP_PATHS.length} files`,
        },
      );
      if (haveBench) {
        layout.push({
          name: "redis-benchmark",
          kind: "process",
          detail: `phase 2: -c ${EXTERNAL_CLIENTS} -P 16, SET/GET/INCR`,
        });
      }
      if (haveWrk) {
        layout.push({
          name: "wrk",
          kind: "process",
          detail: `phase 2: -t 2 -c ${EXTERNAL_CLIENTS}, GET /index.html`,
        });
      }
      out.note(servers.threadLayout(layout).join("\n"));

      t0.at = performance.now();
      let prev: Snapshot = snapshot(m.stats());
      let lastLog = Number.NEGATIVE_INFINITY;
      const tty = process.stderr.isTTY === true;
      sampler = setInterval(() => {
        const now = snapshot(m.stats());
        const sample = takeSample(prev, now, live, (now.at - t0.at) / 1000);
        prev = now;
        samples.push(sample);
        if (tty || now.at - lastLog >= LOG_EVERY_MS) {
          lastLog = now.at;
          progress.update(liveLine(sample), 0, 0);
        }
      }, SAMPLE_MS);

      const phase1 = { name: "built-in clients", from: 0, to: builtinS };
      phases.push(phase1);
      await sleep(builtinS * 1000, undefined, { signal: abort.signal }).catch(() => {});
      const [rr, hr] = await Promise.all([resp.stop(), httpLoad.stop()]);
      live.resp = null;
      live.http = null;
      const phase1End = (performance.now() - t0.at) / 1000;
      phase1.to = phase1End;
      results.push(builtinResult(KV, `built-in RESP -P ${RESP_PIPELINE}`, phase1, rr));
      results.push(builtinResult(HTTP, "built-in HTTP", phase1, hr));

      // Phase 2: the real clients, when installed.
      if (external && !abort.signal.aborted) {
        const phase = { name: "redis-benchmark + wrk", from: phase1End, to: phase1End + externalS };
        phases.push(phase);
        const onAbort = () => stopPhase.abort();
        abort.signal.addEventListener("abort", onAbort, { once: true });
        const kvPort = s.kvPort;
        const killOnExit = (pid: number) =>
          stopNow.push(() => {
            try {
              process.kill(pid, "SIGKILL");
            } catch {
              // already gone
            }
          });
        const bench = haveBench
          ? ext.startRedisBenchmarkLive(
              {
                port: kvPort,
                tests: ["set", "get", "incr"],
                clients: EXTERNAL_CLIENTS,
                pipeline: 16,
                keyspace: 10_000,
              },
              stopPhase.signal,
              killOnExit,
            )
          : null;
        live.redis = bench?.parser ?? null;
        const wrk: Promise<WrkResult | Error> | null = haveWrk
          ? ext
              .runWrk(
                {
                  url: `http://127.0.0.1:${s.httpPort}/index.html`,
                  threads: 2,
                  connections: EXTERNAL_CLIENTS,
                  durationS: externalS,
                },
                abort.signal,
                killOnExit,
              )
              .catch((e: Error) => e)
          : null;
        await sleep(externalS * 1000, undefined, { signal: abort.signal }).catch(() => {});
        stopPhase.abort();
        abort.signal.removeEventListener("abort", onAbort);
        const benchOut: Collected | Error | null = bench ? await bench.done.catch((e) => e) : null;
        const wrkOut = wrk ? await wrk : null;
        live.redis = null;
        phase.to = (performance.now() - t0.at) / 1000;
        if (bench) {
          for (const t of bench.parser.tests) {
            results.push({
              server: KV,
              client: `redis-benchmark -P 16 ${t.test}`,
              phase: phase.name,
              requests: Number.NaN,
              rps: t.rps,
              p50Ms: t.p50Ms,
              p99Ms: Number.NaN,
              errors: 0,
              live: true,
              note: t.done ? "" : "overall rate when stopped",
            });
          }
          if (benchOut instanceof Error) events.push(`redis-benchmark: ${benchOut.message}`);
        }
        if (wrkOut instanceof Error) events.push(`wrk: ${wrkOut.message}`);
        else if (wrkOut) {
          results.push({
            server: HTTP,
            client: "wrk",
            phase: phase.name,
            requests: wrkOut.requests,
            rps: wrkOut.rps,
            p50Ms: wrkOut.p50Ms,
            p99Ms: wrkOut.p99Ms,
            errors: wrkOut.errors,
            live: false,
            note: "no live rate: average over the phase",
          });
        }
      }
    }
  } finally {
    stopPhase.abort();
    if (sampler !== null) clearInterval(sampler);
    progress.end();
    for (const lp of [live.resp, live.http]) if (lp) await lp.stop();
    if (s !== null) {
      finalWorkers = s.machine.stats();
      devices = s.machine.devices?.stats() ?? null;
      await s.machine.shutdown();
    }
    rmSync(image, { force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  const elapsedS = samples.length > 0 ? (samples[samples.length - 1] as DemoSample).t : 0;
  const data: DemoReportData = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    durationS: Math.round(elapsedS * 10) / 10,
    quick: o.quick,
    channel: o.channel,
    interrupted: abort.signal.aborted,
    layout,
    phases,
    samples,
    results,
    workers: finalWorkers,
    devices,
    events,
    image: "demo/site in /site",
  };
  mkdirSync(dirname(reportPath), { recursive: true });
  writeFileSync(reportPath, renderDemoReport(data));
  if (o.report !== undefined) rmSync(scratch, { recursive: true, force: true });
  out.emit({ ...data, report: reportPath }, `${summaryText(data)}\nreport: ${reportPath}`);
  return exitCode;
}

/** One request to each server before the load: both must answer, or the demo stops here. */
async function checkServers(
  kvPort: number,
  httpPort: number,
  ping: (port: number) => Promise<boolean>,
): Promise<void> {
  if (!(await ping(kvPort))) {
    throw new ExocoreError("EXO_ERR_SERVER", `kv-server on port ${kvPort} does not answer PING`);
  }
  const status = await new Promise<number>((resolveStatus) => {
    const req = http.get({ host: "127.0.0.1", port: httpPort, path: "/", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolveStatus(res.statusCode ?? 0));
    });
    req.setTimeout(5000, () => req.destroy());
    req.on("error", () => resolveStatus(0));
  });
  if (status !== 200) {
    throw new ExocoreError(
      "EXO_ERR_SERVER",
      `http-server answered GET / with ${status || "nothing"}`,
    );
  }
}

function snapshot(stats: readonly WorkerStats[]): Snapshot {
  return { at: performance.now(), workers: new Map(stats.map((w) => [w.name, w])) };
}

/** Rates between two snapshots, and the clients' rates since their last report. */
function takeSample(prev: Snapshot, now: Snapshot, live: Live, t: number): DemoSample {
  const dt = (now.at - prev.at) / 1000;
  const per = (x: number) => (dt > 0 ? x / dt : 0);
  let syscalls = 0;
  const queue: Record<string, number> = {};
  const parksPerS: Record<string, number> = {};
  const wakeupsPerS: Record<string, number> = {};
  for (const [name, w] of now.workers) {
    const p = prev.workers.get(name);
    if (p === undefined) continue;
    // kwServed is an int32 in shared memory: take the difference modulo 2^32.
    if (name.startsWith("domain.")) syscalls += (w.calls - p.calls) >>> 0;
    queue[name] = w.queue;
    parksPerS[name] = per(w.parks - p.parks);
    wakeupsPerS[name] = per(w.wakeups - p.wakeups);
  }
  const rps: Record<string, number | null> = {};
  const rate = (lp: LoadProcess) => {
    const cur = lp.progress;
    const before = live.last.get(lp) ?? { completed: 0, elapsedMs: 0 };
    live.last.set(lp, { completed: cur.completed, elapsedMs: cur.elapsedMs });
    const ms = cur.elapsedMs - before.elapsedMs;
    return ms > 0 ? ((cur.completed - before.completed) * 1000) / ms : 0;
  };
  if (live.resp) rps[KV] = rate(live.resp);
  else if (live.redis) rps[KV] = live.redis.current?.instantRps ?? 0;
  if (live.http) rps[HTTP] = rate(live.http);
  else if (live.redis) rps[HTTP] = null; // wrk reports only at its end
  return { t, rps, syscallsPerS: per(syscalls), queue, parksPerS, wakeupsPerS };
}

/** The live line: rates per server, syscalls/s, then each busy domain's queue, parks, wakes. */
function liveLine(s: DemoSample): string {
  const r = (x: number | null | undefined) => (x === null || x === undefined ? "—" : short(x));
  const parts = [
    `kv ${r(s.rps[KV])}/s`,
    `http ${r(s.rps[HTTP])}/s`,
    `syscalls ${short(s.syscallsPerS)}/s`,
  ];
  for (const name of ["domain.network", "domain.storage"]) {
    if (!(name in s.queue)) continue;
    const tag = name === "domain.network" ? "net" : "sto";
    parts.push(
      `│ ${tag} q${s.queue[name]} park ${short(s.parksPerS[name] ?? 0)}/s wake ${short(s.wakeupsPerS[name] ?? 0)}/s`,
    );
  }
  return parts.join("  ");
}

/** A rate in at most four characters: 812, 3.4k, 46k, 150k, 1.2M. */
function short(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 10_000) return `${Math.round(x / 1000)}k`;
  if (x >= 1000) return `${(x / 1000).toFixed(1)}k`;
  return x.toFixed(0);
}

function builtinResult(
  server: string,
  client: string,
  phase: DemoPhase,
  r: LoadResult,
): DemoResult {
  return {
    server,
    client,
    phase: phase.name,
    requests: r.completed,
    rps: r.rps,
    p50Ms: r.latency.count > 0 ? r.latency.p50Ms : Number.NaN,
    p99Ms: r.latency.count > 0 ? r.latency.p99Ms : Number.NaN,
    errors: r.errors,
    live: true,
    note: r.reconnects > 0 ? `${r.reconnects} reconnects` : "",
  };
}

/** The summary on stdout: results, per-worker counters, devices. */
function summaryText(d: DemoReportData): string {
  const f = (x: number, digits = 0) =>
    Number.isFinite(x)
      ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
      : "—";
  const lines = [
    `exocore demo${d.interrupted ? " (interrupted)" : ""}: ${d.durationS} s of load, channel ${d.channel}, ${d.cpus} vCPUs, Node ${d.node}`,
    "",
  ];
  lines.push(
    ...columns(
      ["server", "client", "requests", "req/s", "p50 ms", "p99 ms", "errors"],
      d.results.map((r) => [
        r.server,
        r.client,
        f(r.requests),
        f(r.rps),
        f(r.p50Ms, 2),
        f(r.p99Ms, 2),
        f(r.errors),
      ]),
    ),
  );
  if (d.results.length === 0) lines.push("  (no load ran)");
  lines.push("");
  lines.push(
    ...columns(
      ["worker", "calls", "rounds", "batch max", "parks", "wake-ups"],
      d.workers.map((w) => [
        w.name,
        f(w.calls),
        f(w.rounds),
        f(w.batchMax),
        f(w.parks),
        f(w.wakeups),
      ]),
    ),
  );
  const dev = d.devices;
  if (dev !== null) {
    lines.push("");
    if (dev.nvme) {
      lines.push(
        `nvme: ${f(dev.nvme.commands)} commands (${f(dev.nvme.reads)} reads, ${f(dev.nvme.writes)} writes, ${f(dev.nvme.flushes)} flushes), ${f(dev.nvme.bytesWritten / 2 ** 20, 1)} MiB written`,
      );
    }
    for (const [vf, st] of Object.entries(dev.nic ?? {})) {
      if (st.connections === 0 && st.commands === 0) continue;
      lines.push(
        `nic VF ${vf}: ${f(st.connections)} connections, ${f(st.toeRxBytes / 2 ** 20, 1)} MiB in, ${f(st.toeTxBytes / 2 ** 20, 1)} MiB out`,
      );
    }
    lines.push(
      `iommu: ${f(dev.iommu.reads + dev.iommu.writes)} DMA transfers, ${f(dev.iommu.faults)} faults`,
    );
  }
  if (d.events.length > 0) lines.push("", `events: ${d.events.length} (see the report)`);
  return lines.join("\n");
}

function columns(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `  ${cells.map((c, i) => (i < 2 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join("  ")}`.trimEnd();
  return [line(head), ...rows.map(line)];
}
