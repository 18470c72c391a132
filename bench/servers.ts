/**
 * servers: exocore's two server programs against the conventional servers, side by side, with
 * the same clients and settings (`exocore bench servers`), and the harness the demo shares.
 *
 *   KV    redis-benchmark -t set,get,incr,lpush,lpop,sadd,hset,mset -c 50 -n N, at -P 1 and
 *         -P 16, against programs/kv-server.js on a machine (one fresh machine per channel
 *         mode) and against a real redis-server on loopback (--save '' --appendonly no).
 *         Requests/s and p50/p99 come from redis-benchmark's --csv (Redis 7 prints them).
 *   HTTP  wrk --latency (fallback: the built-in client, bench/load/http.ts) against
 *         programs/http-server.js on the same machines, a plain node:http server, and
 *         node:http with its JSON route handed to a piscina pool (bench/servers-node.ts), on a
 *         static page (/index.html) and the JSON route (/api/stats).
 * Ratios are exocore over the reference (redis-server; plain node:http). Results go to
 * servers.json and servers.svg (a bar chart, bench/lib/chart.ts) in the results folder.
 *
 * The harness (used by src/cli/commands/demo.ts too): {@link findSiteDir}, {@link
 * buildSiteImage}, {@link startServers} (boot a machine with a disk and a NIC, start kv-server
 * then http-server, read each one's port from its "listening on PORT" line), {@link freePort},
 * {@link startRedisServer}, {@link threadLayout}.
 *
 * Thread layout: everything shares the host's vCPUs (2 here). The machine runs in this process
 * (main thread = hypervisor and device models; domains and cores are worker threads); every
 * other server and every client is a separate process. Nothing here blocks the main thread:
 * clients and reference servers are asynchronous child processes.
 */

import { type ChildProcess, fork, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CopyCounts, importTree } from "../src/cli/fs.js";
import { ExocoreError, InvalidArgumentError } from "../src/errors.js";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import type { ChannelMode } from "../src/hv/layout.js";
import { boot, type Machine, type SupervisorEvent, type WorkerStats } from "../src/hv/machine.js";
import { barChartSvg } from "./lib/chart.js";
import { hasCommand, type RedisBenchRow, runRedisBenchmark, runWrk } from "./load/external.js";
import { LoadProcess, type LoadResult } from "./load/fork.js";
import type { NodeServerKind, NodeServerMessage } from "./servers-node.js";

// ---- the harness ---------------------------------------------------------------------------

/** The compiled server programs (dist/programs, next to dist/bench). */
export const KV_SERVER = fileURLToPath(new URL("../programs/kv-server.js", import.meta.url));
export const HTTP_SERVER = fileURLToPath(new URL("../programs/http-server.js", import.meta.url));
/** Where the site goes in the image; http-server's default DOCROOT. */
export const SITE_ROOT = "/site";

/**
 * The demo site (demo/site in the repository): under EXOCORE_ROOT if set, next to the build
 * (dist/../demo/site), or under the working directory. Throws if none holds it.
 */
export function findSiteDir(env: Readonly<Record<string, string | undefined>> = process.env) {
  const candidates = [
    ...(env.EXOCORE_ROOT ? [join(env.EXOCORE_ROOT, "demo", "site")] : []),
    fileURLToPath(new URL("../../demo/site", import.meta.url)),
    join(process.cwd(), "demo", "site"),
  ];
  const found = candidates.find((c) => existsSync(join(c, "index.html")));
  if (found === undefined) {
    throw new InvalidArgumentError(
      `the demo site is not there (looked for index.html in ${candidates.join(", ")}); set EXOCORE_ROOT to the repository`,
    );
  }
  return found;
}

/**
 * `exocore mkfs IMAGE --size BYTES --from SITE` with the site under /site: a fresh exofs image
 * (sparse file) holding the host folder. Overwrites IMAGE.
 */
export function buildSiteImage(image: string, site: string, bytes: number): CopyCounts {
  const dev = FileBlockDevice.create(image, Math.floor(bytes / BLOCK_SIZE), { overwrite: true });
  try {
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    const counts = importTree(fs, site, SITE_ROOT);
    fs.unmount();
    return counts;
  } finally {
    dev.close();
  }
}

/** A port nobody listens on right now (the kernel's pick for port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface StartServersOptions {
  readonly image: string;
  readonly channel?: ChannelMode;
  readonly cores?: number;
  readonly memoryMiB?: number;
  /** kv-server arguments after --port 0 (e.g. --aof /kv.aof --appendfsync everysec). */
  readonly kvArgs?: readonly string[];
  /** Supervisor events, as they happen. */
  readonly onEvent?: (e: SupervisorEvent) => void;
  /** What the programs print on their stderr. */
  readonly onStderr?: (text: string) => void;
}

export interface ExocoreServers {
  readonly machine: Machine;
  readonly kvPort: number;
  readonly httpPort: number;
  /** The programs' exit statuses (they run until the machine shuts down). */
  readonly kv: Promise<number>;
  readonly http: Promise<number>;
  /** What the programs printed on stdout. */
  output(): string;
}

/** How long a program may take to print "listening on PORT". */
const LISTEN_TIMEOUT_MS = 20_000;

/**
 * Boot a machine (disk, NIC, 2 cores unless told) and start kv-server, then http-server on it; resolves
 * with both ports. On failure the machine is shut down and the error says what was printed.
 */
export async function startServers(o: StartServersOptions): Promise<ExocoreServers> {
  let out = "";
  const machine = await boot({
    cores: o.cores ?? 2,
    memoryMiB: o.memoryMiB ?? 256,
    channel: o.channel ?? "hybrid",
    disk: o.image,
    network: true,
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => o.onStderr?.(s),
    onEvent: (e) => o.onEvent?.(e),
  });
  try {
    const kv = machine.run(KV_SERVER, ["--port", "0", ...(o.kvArgs ?? [])]);
    const kvPort = await listening(() => out, 1, kv, "kv-server");
    const http = machine.run(HTTP_SERVER, ["0", SITE_ROOT]);
    const httpPort = await listening(() => out, 2, http, "http-server");
    return { machine, kvPort, httpPort, kv, http, output: () => out };
  } catch (err) {
    await machine.shutdown();
    throw err;
  }
}

/** Wait for the `nth` "listening on PORT" line; rejects if the program exits first. */
async function listening(
  out: () => string,
  nth: number,
  status: Promise<number>,
  name: string,
): Promise<number> {
  let exited: number | null = null;
  void status.then((s) => {
    exited = s;
  });
  const t0 = performance.now();
  while (performance.now() - t0 < LISTEN_TIMEOUT_MS) {
    const ports = [...out().matchAll(/listening on (\d+)/g)];
    const hit = ports[nth - 1];
    if (hit) return Number(hit[1]);
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const why = exited !== null ? `exited with status ${exited}` : "did not start listening";
  throw new ExocoreError(
    "EXO_ERR_SERVER",
    `${name} ${why}; it printed: ${out().trim() || "(nothing)"}`,
  );
}

/** A reference redis-server on loopback. */
export interface RedisServer {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Connect, send PING, and see +PONG (false on any failure). */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(1000, () => done(false));
    c.once("connect", () => c.write("PING\r\n"));
    c.once("data", (d) => done(d.toString("latin1").startsWith("+PONG")));
    c.once("error", () => done(false));
  });
}

/** Start `redis-server --save '' --appendonly no` on a free port; resolves once it answers. */
export async function startRedisServer(): Promise<RedisServer> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"];
    args.push("no", "--protected-mode", "no", "--daemonize", "no", "--logfile", "");
    const p = spawn("redis-server", args, { stdio: ["ignore", "ignore", "ignore"] });
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    let gone = false;
    void exited.then(() => {
      gone = true;
    });
    p.once("error", () => {});
    for (let i = 0; i < 100 && !gone; i++) {
      if (await redisPing(port)) {
        return {
          port,
          pid: p.pid ?? 0,
          stop: async () => {
            p.kill("SIGTERM");
            await exited;
          },
        };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    p.kill("SIGKILL");
    await exited;
  }
  throw new ExocoreError("EXO_ERR_SERVER", "redis-server did not start (three ports tried)");
}

/** A node:http server in a child process (bench/servers-node.ts). */
interface NodeServer {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

async function startNodeServer(kind: NodeServerKind, root: string): Promise<NodeServer> {
  const script = fileURLToPath(new URL("./servers-node.js", import.meta.url));
  const child: ChildProcess = fork(script, [kind, root], {
    execArgv: [],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: NodeServerMessage) => resolve(m.port));
    child.once("exit", (code) =>
      reject(new ExocoreError("EXO_ERR_SERVER", `node:http (${kind}) exited with ${code}`)),
    );
  });
  return {
    port,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** One line per thread or process of a run, for the layout print. */
export interface LayoutEntry {
  readonly name: string;
  readonly kind: "thread" | "process";
  readonly detail: string;
  /** Threads or processes this line stands for (default 1): `core0, core1` is 2. */
  readonly count?: number;
}

/** The thread layout as text lines: what runs where, on how many vCPUs. */
export function threadLayout(entries: readonly LayoutEntry[]): string[] {
  const cpus = os.availableParallelism();
  const count = (kind: LayoutEntry["kind"]) =>
    entries.filter((e) => e.kind === kind).reduce((n, e) => n + (e.count ?? 1), 0);
  const threads = count("thread");
  const procs = count("process");
  const width = Math.max(...entries.map((e) => e.name.length));
  return [
    `thread layout: ${threads} threads in this process + ${procs} other processes, on ${cpus} vCPUs`,
    ...entries.map(
      (e) =>
        `  ${e.name.padEnd(width)}  ${e.kind === "thread" ? "thread " : "process"}  ${e.detail}`,
    ),
  ];
}

/** The machine's threads as layout entries, from its workers' names. */
export function machineLayout(m: Machine, programs: string): LayoutEntry[] {
  const what: Record<string, string> = {
    "domain.system": "service domain: console, processes",
    "domain.storage": "service domain: NVMe VF driver, buffer cache, exofs with its log",
    "domain.network": "service domain: NIC VF driver, TCP/UDP sockets",
  };
  return [
    {
      name: "main",
      kind: "thread",
      detail:
        "hypervisor: kernel, IOMMU, NVMe + NIC device models (TCP offload), supervisor, this CLI",
    },
    ...m.stats().map((w) => ({
      name: w.name,
      kind: "thread" as const,
      detail: what[w.name] ?? `XOS core: M:N scheduler, green threads of ${programs}`,
    })),
  ];
}

// ---- the benchmark -------------------------------------------------------------------------

export const KV_TESTS = ["set", "get", "incr", "lpush", "lpop", "sadd", "hset", "mset"] as const;
export const KV_CLIENTS = 50;
export const KV_PIPELINES = [1, 16] as const;
/** Timed redis-benchmark -n is `requests` × this: 1 at -P 1, 10 at -P 16. */
export function pipelineScale(pipeline: number): number {
  return pipeline > 1 ? 10 : 1;
}
export const HTTP_ROUTES = [
  { route: "static", path: "/index.html" },
  { route: "dynamic", path: "/api/stats" },
] as const;
const WRK_THREADS = 2;
const HTTP_CONNECTIONS = 50;

export interface ServersBenchOptions {
  readonly quick: boolean;
  /** Channel modes, one machine each (default hybrid, spin, park; quick: hybrid, park). */
  readonly modes?: readonly ChannelMode[];
  /** redis-benchmark -n (default 100,000; quick 20,000). */
  readonly requests?: number;
  /** wrk -d in seconds (default 10; quick 3). */
  readonly durationS?: number;
  /** Results folder (default bench/results). */
  readonly out?: string;
  readonly svg?: boolean;
  /** XOS cores of the machine (default {@link defaultServerCores}). */
  readonly cores?: number;
  readonly signal?: AbortSignal;
  /** Told the thread layout once the clients are known, before anything runs. */
  readonly onLayout?: (lines: readonly string[]) => void;
}

export interface KvRun {
  /** `exocore-hybrid`, `redis-server`. */
  readonly server: string;
  readonly mode: ChannelMode | null;
  readonly pipeline: number;
  readonly client: "redis-benchmark" | "exocore-load";
  readonly rows: RedisBenchRow[];
}

export interface HttpRun {
  /** `exocore-hybrid`, `node:http`, `node:http+piscina`. */
  readonly server: string;
  readonly mode: ChannelMode | null;
  readonly route: "static" | "dynamic";
  readonly path: string;
  readonly client: "wrk" | "exocore-load";
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

export interface Ratio {
  readonly server: string;
  readonly against: string;
  /** `-P 16 SET`, `static`. */
  readonly what: string;
  readonly rps: number;
  readonly p99: number;
}

export interface Aim {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ServersReport {
  readonly benchmark: "servers";
  readonly date: string;
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly quick: boolean;
  readonly layout: string[];
  readonly settings: {
    readonly modes: readonly ChannelMode[];
    /** XOS cores of the machine. */
    readonly cores: number;
    readonly kv: {
      tests: readonly string[];
      clients: number;
      /** -n at -P 1; at deeper pipelines it is scaled by {@link pipelineScale}. */
      requests: number;
      pipelines: readonly number[];
      client: string;
    };
    readonly http: {
      client: string;
      threads: number;
      connections: number;
      durationS: number;
      routes: typeof HTTP_ROUTES;
    };
  };
  readonly notes: string[];
  readonly kv: KvRun[];
  readonly http: HttpRun[];
  readonly ratios: { readonly kv: Ratio[]; readonly http: Ratio[] };
  readonly aims: Aim[];
  /** The machine's counters at the end of each mode's run. */
  readonly machines: Record<string, WorkerStats[]>;
}

export interface ServersProgress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

function decodeOptions(o: ServersBenchOptions) {
  const modes = o.modes ?? (o.quick ? ["hybrid", "park"] : ["hybrid", "spin", "park"]);
  if (modes.length === 0)
    throw new InvalidArgumentError("modes must name at least one channel mode");
  const requests = o.requests ?? (o.quick ? 20_000 : 100_000);
  if (!Number.isInteger(requests) || requests < 100) {
    throw new InvalidArgumentError(`requests must be an integer >= 100, got ${requests}`);
  }
  const durationS = o.durationS ?? (o.quick ? 3 : 10);
  if (!Number.isInteger(durationS) || durationS < 1) {
    throw new InvalidArgumentError(`durationS must be an integer >= 1, got ${durationS}`);
  }
  const cores = o.cores ?? defaultServerCores();
  if (!Number.isInteger(cores) || cores < 1 || cores > 64) {
    throw new InvalidArgumentError(`cores must be an integer from 1 to 64, got ${cores}`);
  }
  return { modes, requests, durationS, cores, out: o.out ?? "bench/results", svg: o.svg ?? true };
}

/**
 * XOS cores for the server machine: one per host CPU but one, which is left to the hypervisor
 * (device models, TCP offload) and the service domains — FlexSC's split of cores between user
 * threads and syscall threads. On this 2-vCPU host that is 1 core: measured with
 * redis-benchmark -P 16 -c 50 in park mode, 1 core served 0.90–0.96 M req/s at 1.17 µs of CPU
 * per request where 2 served 0.82–0.85 M at 1.55 µs (a second core adds wake-ups and
 * contention for the same 2 vCPUs, not capacity); wrk on /api/stats 93–101 k vs 93–96 k.
 */
export function defaultServerCores(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

/** Run the whole comparison; writes servers.json (and servers.svg) and returns the report. */
export async function runServersBench(
  opts: ServersBenchOptions,
  onProgress?: (p: ServersProgress) => void,
): Promise<ServersReport> {
  const o = decodeOptions(opts);
  mkdirSync(o.out, { recursive: true }); // fail fast on an unwritable folder
  const signal = opts.signal;
  const [haveBench, haveRedis, haveWrk] = await Promise.all(
    ["redis-benchmark", "redis-server", "wrk"].map(hasCommand),
  );
  const notes: string[] = [];
  if (!haveBench) {
    notes.push(
      "redis-benchmark is not installed: KV figures come from the built-in RESP client (SET/GET/INCR mix, p50/p99 from its histogram)",
    );
  }
  if (!haveRedis) notes.push("redis-server is not installed: no KV reference, no KV ratios");
  if (!haveWrk) notes.push("wrk is not installed: HTTP figures come from the built-in HTTP client");

  const site = findSiteDir();
  const tmp = mkdtempSync(join(os.tmpdir(), "exocore-bench-servers-"));
  const image = join(tmp, "disk.img");
  buildSiteImage(image, site, 64 * 2 ** 20);

  const kv: KvRun[] = [];
  const http: HttpRun[] = [];
  const machines: Record<string, WorkerStats[]> = {};
  const total = o.modes.length + (haveRedis ? 1 : 0) + 2;
  let done = 0;
  const step = (phase: string) => onProgress?.({ phase, done: done++, total });
  const kvClient = haveBench ? "redis-benchmark" : "exocore-load";
  const httpClient = haveWrk ? "wrk" : "exocore-load";
  const aborted = () => signal?.aborted === true;
  const layout = benchLayout(o.modes, o.cores, kvClient, httpClient);
  opts.onLayout?.(layout);

  const runKv = async (server: string, mode: ChannelMode | null, port: number) => {
    for (const pipeline of KV_PIPELINES) {
      if (aborted()) return;
      // An untimed pass of the same tests first, on every server alike: at ~1 M req/s a test
      // of -n 100000 lasts 0.1 s, and a JIT-compiled server (exocore's cores, device models
      // and domains) would be timed while it compiles each command's path.
      if (haveBench) {
        await runRedisBenchmark(
          { port, tests: KV_TESTS, clients: KV_CLIENTS, requests: o.requests, pipeline },
          signal,
        );
        if (aborted()) return;
      }
      // Timed: -n scaled by the pipeline depth, so that a -P 16 test lasts about as long as a
      // -P 1 one (a second or so) instead of a twentieth of a second against redis-server.
      const requests = o.requests * pipelineScale(pipeline);
      const rows = haveBench
        ? await runRedisBenchmark(
            { port, tests: KV_TESTS, clients: KV_CLIENTS, requests, pipeline },
            signal,
          )
        : [respRow(await builtinLoad("resp", port, KV_CLIENTS, pipeline, o.durationS, signal))];
      kv.push({ server, mode, pipeline, client: kvClient, rows });
    }
  };
  const runHttp = async (server: string, mode: ChannelMode | null, port: number) => {
    for (const r of HTTP_ROUTES) {
      if (aborted()) return;
      const url = `http://127.0.0.1:${port}${r.path}`;
      const res = haveWrk
        ? await runWrk(
            { url, threads: WRK_THREADS, connections: HTTP_CONNECTIONS, durationS: o.durationS },
            signal,
          )
        : httpRow(
            await builtinLoad("http", port, HTTP_CONNECTIONS, 1, o.durationS, signal, r.path),
          );
      http.push({
        server,
        mode,
        route: r.route,
        path: r.path,
        client: httpClient,
        requests: res.requests,
        rps: res.rps,
        p50Ms: res.p50Ms,
        p99Ms: res.p99Ms,
        errors: res.errors,
      });
    }
  };

  try {
    for (const mode of o.modes) {
      if (aborted()) break;
      step(`exocore (${mode})`);
      const s = await startServers({ image, channel: mode, cores: o.cores });
      try {
        await runKv(`exocore-${mode}`, mode, s.kvPort);
        await runHttp(`exocore-${mode}`, mode, s.httpPort);
        machines[mode] = s.machine.stats();
      } finally {
        await s.machine.shutdown();
      }
    }
    if (haveRedis && !aborted()) {
      step("redis-server");
      const r = await startRedisServer();
      try {
        await runKv("redis-server", null, r.port);
      } finally {
        await r.stop();
      }
    }
    for (const kind of ["plain", "piscina"] as const) {
      if (aborted()) break;
      const name = kind === "plain" ? "node:http" : "node:http+piscina";
      step(name);
      const n = await startNodeServer(kind, site);
      try {
        await runHttp(name, null, n.port);
      } finally {
        await n.stop();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  onProgress?.({ phase: aborted() ? "interrupted" : "done", done: total, total });

  const ratios = { kv: kvRatios(kv), http: httpRatios(http) };
  const report: ServersReport = {
    benchmark: "servers",
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    quick: opts.quick,
    layout,
    settings: {
      modes: o.modes,
      cores: o.cores,
      kv: {
        tests: haveBench ? KV_TESTS : ["set/get/incr mix"],
        clients: KV_CLIENTS,
        requests: o.requests,
        pipelines: KV_PIPELINES,
        client: kvClient,
      },
      http: {
        client: httpClient,
        threads: WRK_THREADS,
        connections: HTTP_CONNECTIONS,
        durationS: o.durationS,
        routes: HTTP_ROUTES,
      },
    },
    notes,
    kv,
    http,
    ratios,
    aims: checkAims(ratios, o.modes),
    machines,
  };
  if (!aborted()) {
    const stem = opts.quick ? "servers-quick" : "servers";
    writeFileSync(join(o.out, `${stem}.json`), `${JSON.stringify(report, null, 2)}\n`);
    if (o.svg) writeFileSync(join(o.out, `${stem}.svg`), serversChartSvg(report));
  }
  return report;
}

/** The built-in client for `durationS` seconds (when the real client is not installed). */
async function builtinLoad(
  kind: "resp" | "http",
  port: number,
  connections: number,
  pipeline: number,
  durationS: number,
  signal: AbortSignal | undefined,
  path = "/",
): Promise<LoadResult> {
  const lp = await LoadProcess.start(
    kind === "resp"
      ? { kind, options: { host: "127.0.0.1", port, connections, pipeline } }
      : { kind, options: { host: "127.0.0.1", port, connections, pipeline, paths: [path] } },
  );
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, durationS * 1000);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
  return lp.stop();
}

function respRow(r: LoadResult): RedisBenchRow {
  const l = r.latency;
  return {
    test: "SET/GET/INCR (built-in client)",
    rps: r.rps,
    avgMs: l.meanMs,
    minMs: Number.NaN,
    p50Ms: l.p50Ms,
    p95Ms: Number.NaN,
    p99Ms: l.p99Ms,
    maxMs: l.maxMs,
  };
}

function httpRow(r: LoadResult) {
  return {
    requests: r.completed,
    rps: r.rps,
    p50Ms: r.latency.p50Ms,
    p99Ms: r.latency.p99Ms,
    errors: r.errors,
  };
}

function geomean(xs: readonly number[]): number {
  const ok = xs.filter((x) => x > 0 && Number.isFinite(x));
  if (ok.length === 0) return Number.NaN;
  return Math.exp(ok.reduce((a, x) => a + Math.log(x), 0) / ok.length);
}

/** Every exocore KV row over redis-server's same test and pipeline, plus a geomean per run. */
function kvRatios(runs: readonly KvRun[]): Ratio[] {
  const out: Ratio[] = [];
  for (const run of runs.filter((r) => r.mode !== null)) {
    const ref = runs.find((r) => r.server === "redis-server" && r.pipeline === run.pipeline);
    if (!ref) continue;
    const each: Ratio[] = [];
    for (const row of run.rows) {
      const base = ref.rows.find((x) => x.test === row.test);
      if (!base) continue;
      each.push({
        server: run.server,
        against: "redis-server",
        what: `-P ${run.pipeline} ${row.test}`,
        rps: row.rps / base.rps,
        p99: row.p99Ms / base.p99Ms,
      });
    }
    out.push(...each);
    out.push({
      server: run.server,
      against: "redis-server",
      what: `-P ${run.pipeline} geomean`,
      rps: geomean(each.map((r) => r.rps)),
      p99: geomean(each.map((r) => r.p99)),
    });
  }
  return out;
}

/** Every HTTP run over plain node:http on the same route. */
function httpRatios(runs: readonly HttpRun[]): Ratio[] {
  const out: Ratio[] = [];
  for (const run of runs.filter((r) => r.server !== "node:http")) {
    const ref = runs.find((r) => r.server === "node:http" && r.route === run.route);
    if (!ref) continue;
    out.push({
      server: run.server,
      against: "node:http",
      what: run.route,
      rps: run.rps / ref.rps,
      p99: run.p99Ms / ref.p99Ms,
    });
  }
  return out;
}

/** The issue's aims: KV ≥ 0.5× redis-server at -P 16; HTTP ≥ 1.0× node:http, p99 within 2×. */
function checkAims(ratios: ServersReport["ratios"], modes: readonly ChannelMode[]): Aim[] {
  const aims: Aim[] = [];
  for (const mode of modes) {
    const k = ratios.kv.find((r) => r.server === `exocore-${mode}` && r.what === "-P 16 geomean");
    if (k) {
      aims.push({
        name: `KV -P 16 ≥ 0.5× redis-server (exocore ${mode})`,
        ok: k.rps >= 0.5,
        detail: `${k.rps.toFixed(2)}× (geometric mean over the tests)`,
      });
    }
    for (const route of ["static", "dynamic"] as const) {
      const h = ratios.http.find((r) => r.server === `exocore-${mode}` && r.what === route);
      if (!h) continue;
      aims.push({
        name: `HTTP ${route} ≥ 1.0× node:http req/s, p99 ≤ 2× (exocore ${mode})`,
        ok: h.rps >= 1 && h.p99 <= 2,
        detail: `${h.rps.toFixed(2)}× req/s, p99 ${h.p99.toFixed(2)}×`,
      });
    }
  }
  return aims;
}

function benchLayout(
  modes: readonly ChannelMode[],
  cores: number,
  kvClient: string,
  httpClient: string,
) {
  const entries: LayoutEntry[] = [
    {
      name: "main",
      kind: "thread",
      detail: "hypervisor + NVMe/NIC device models (TCP offload), this CLI",
    },
    { name: "domain.system", kind: "thread", detail: "service domain: console, processes" },
    {
      name: "domain.storage",
      kind: "thread",
      detail: "service domain: NVMe VF, exofs (http-server's files)",
    },
    { name: "domain.network", kind: "thread", detail: "service domain: NIC VF, sockets" },
    {
      name: Array.from({ length: cores }, (_, c) => `core${c}`).join(", "),
      kind: "thread",
      count: cores,
      detail: "XOS cores: green threads of kv-server and http-server",
    },
    {
      name: "redis-server",
      kind: "process",
      detail: "reference KV: 1 main thread (+ idle background threads)",
    },
    {
      name: "node:http",
      kind: "process",
      detail: "reference HTTP: 1 JS thread + the libuv pool (file reads)",
    },
    {
      name: "node:http+piscina",
      kind: "process",
      detail: "1 JS thread + libuv pool + a piscina pool of 2 workers (the JSON route)",
    },
    {
      name: kvClient,
      kind: "process",
      detail: `KV client: -c ${KV_CLIENTS}, -P ${KV_PIPELINES.join(" and -P ")}`,
    },
    {
      name: httpClient,
      kind: "process",
      detail: `HTTP client: ${httpClient === "wrk" ? `-t ${WRK_THREADS} ` : ""}-c ${HTTP_CONNECTIONS}, keep-alive`,
    },
  ];
  return [
    ...threadLayout(entries),
    `  one machine per channel mode (${modes.join(", ")}), booted fresh; one server under load at a time; only one of the processes above runs at a time beside its client`,
    "  KV: each server gets one untimed redis-benchmark pass of the same tests before the timed one",
  ];
}

// ---- output ---------------------------------------------------------------------------------

const rate = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0));
const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : "—");
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "—");

/** The report as text tables: KV, HTTP, aims. */
export function formatServersReport(r: ServersReport): string {
  const lines: string[] = [...r.layout, ""];
  const servers = [...new Set(r.kv.map((k) => k.server))];
  if (r.kv.length > 0) {
    lines.push(
      `KV: ${r.settings.kv.client} -c ${r.settings.kv.clients} -n ${r.settings.kv.requests} (× ${pipelineScale(16)} at -P 16); req/s  p50/p99 ms  (ratio to redis-server)`,
    );
    const head = ["test", "P", ...servers];
    const rows: string[][] = [];
    for (const p of r.settings.kv.pipelines) {
      const tests = r.kv.find((k) => k.pipeline === p)?.rows.map((x) => x.test) ?? [];
      for (const t of [...tests, "geomean"]) {
        const cells = servers.map((s) => {
          const ratio = r.ratios.kv.find((x) => x.server === s && x.what === `-P ${p} ${t}`);
          if (t === "geomean") return ratio ? `(${times(ratio.rps)})` : "";
          const row = r.kv
            .find((k) => k.server === s && k.pipeline === p)
            ?.rows.find((x) => x.test === t);
          if (!row) return "—";
          return `${rate(row.rps)} ${ms(row.p50Ms)}/${ms(row.p99Ms)}${ratio ? ` (${times(ratio.rps)})` : ""}`;
        });
        rows.push([t, String(p), ...cells]);
      }
    }
    lines.push(...table(head, rows), "");
  }
  if (r.http.length > 0) {
    lines.push(
      `HTTP: ${r.settings.http.client} -c ${r.settings.http.connections} for ${r.settings.http.durationS} s; ratios to node:http`,
    );
    const rows = r.http.map((h) => {
      const ratio = r.ratios.http.find((x) => x.server === h.server && x.what === h.route);
      return [
        `${h.route} ${h.path}`,
        h.server,
        rate(h.rps),
        ms(h.p50Ms),
        ms(h.p99Ms),
        String(h.errors),
        ratio ? times(ratio.rps) : h.server === "node:http" ? "1.00×" : "—",
        ratio ? times(ratio.p99) : h.server === "node:http" ? "1.00×" : "—",
      ];
    });
    lines.push(
      ...table(
        ["route", "server", "req/s", "p50 ms", "p99 ms", "errors", "req/s ×", "p99 ×"],
        rows,
      ),
      "",
    );
  }
  if (r.notes.length > 0) lines.push(...r.notes.map((n) => `note: ${n}`), "");
  lines.push("Aims");
  for (const a of r.aims) lines.push(`  ${a.ok ? "met   " : "MISSED"}  ${a.name}: ${a.detail}`);
  return lines.join("\n");
}

/** Left-aligned first column(s), right-aligned numbers; two spaces between columns. */
function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `  ${cells.map((c, i) => (i < 2 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join("  ")}`.trimEnd();
  return [line(head), ...rows.map(line)];
}

/** One bar per server and load: KV mean req/s per pipeline depth, HTTP req/s per route. */
export function serversChartSvg(r: ServersReport): string {
  const bars: { label: string; value: number; note?: string }[] = [];
  for (const p of r.settings.kv.pipelines) {
    for (const run of r.kv.filter((k) => k.pipeline === p)) {
      // redis-benchmark prints "inf" for a test that ended within one tick of its clock.
      const finite = run.rows.filter((x) => Number.isFinite(x.rps));
      if (finite.length === 0) continue;
      const mean = finite.reduce((a, x) => a + x.rps, 0) / finite.length;
      const ratio = r.ratios.kv.find(
        (x) => x.server === run.server && x.what === `-P ${p} geomean`,
      );
      bars.push({
        label: `KV -P ${p}  ${run.server}`,
        value: mean,
        note: ratio ? `${times(ratio.rps)} redis` : undefined,
      });
    }
  }
  for (const run of r.http) {
    const ratio = r.ratios.http.find((x) => x.server === run.server && x.what === run.route);
    bars.push({
      label: `HTTP ${run.route}  ${run.server}`,
      value: run.rps,
      note: ratio ? `${times(ratio.rps)} node` : undefined,
    });
  }
  // A log scale: redis-server at -P 16 is two decades above an HTTP route.
  const drawn = bars.filter((b) => b.value > 0 && Number.isFinite(b.value));
  if (drawn.length === 0) drawn.push({ label: "no run finished", value: 1 });
  return barChartSvg(drawn, {
    title: `exocore servers vs redis-server and node:http — requests/s (${r.cpus} vCPUs, ${r.node})`,
    unit: "req/s",
    logScale: true,
  });
}
