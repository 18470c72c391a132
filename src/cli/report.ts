/**
 * report: the demo's HTML report — one self-contained page (inline CSS and inline SVG, no
 * script, no external request) that a browser opens from disk or a CI job keeps as an
 * artefact. It holds the summary, requests/s over time per server, system calls per second,
 * per-domain counters (calls, parks, wake-ups, queue depth), the thread layout drawn as
 * boxes, and the devices' counters (NVMe, NIC VFs, IOMMU, SR-IOV PFs).
 *
 * Owns: {@link renderDemoReport} (data in, HTML out; a pure function: no clock, no I/O) and
 * the time-series line chart it draws ({@link lineChartSvg}); bar charts come from
 * bench/lib/chart.ts. Every piece of text that comes from outside (program output, names) is
 * escaped. Called by src/cli/commands/demo.ts, which writes the file.
 */

import { barChartSvg } from "../../bench/lib/chart.js";
import type { DeviceStats } from "../hv/devices.js";
import type { WorkerStats } from "../hv/machine.js";

/** One sampling tick of the demo (every ~0.5 s). */
export interface DemoSample {
  /** Seconds since the load started. */
  readonly t: number;
  /** Requests/s per server name over the tick; null when no live figure exists (wrk). */
  readonly rps: Readonly<Record<string, number | null>>;
  /** System calls served per second, summed over the service domains. */
  readonly syscallsPerS: number;
  /** Per worker: the queue-depth sample (entries taken in the last round). */
  readonly queue: Readonly<Record<string, number>>;
  readonly parksPerS: Readonly<Record<string, number>>;
  readonly wakeupsPerS: Readonly<Record<string, number>>;
}

/** A stretch of the run with one kind of client. */
export interface DemoPhase {
  readonly name: string;
  readonly from: number;
  readonly to: number;
}

/** What one client measured against one server. */
export interface DemoResult {
  readonly server: string;
  readonly client: string;
  readonly phase: string;
  readonly requests: number;
  readonly rps: number;
  /** NaN when the client does not report it. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** The client's rate is in the samples (under the server's name); false: only this average. */
  readonly live: boolean;
  readonly note?: string;
}

/** A thread or process of the run, for the layout drawing. */
export interface LayoutBox {
  readonly name: string;
  readonly kind: "thread" | "process";
  readonly detail: string;
}

export interface DemoReportData {
  readonly date: string;
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly durationS: number;
  readonly quick: boolean;
  readonly channel: string;
  /** The run was stopped by Ctrl-C. */
  readonly interrupted: boolean;
  readonly layout: readonly LayoutBox[];
  readonly phases: readonly DemoPhase[];
  readonly samples: readonly DemoSample[];
  readonly results: readonly DemoResult[];
  readonly workers: readonly WorkerStats[];
  readonly devices: DeviceStats | null;
  /** Supervisor events and program errors, as text. */
  readonly events: readonly string[];
  /** Where the disk image came from and what it holds. */
  readonly image: string;
}

// ---- text helpers ---------------------------------------------------------------------------

/** Escape for HTML text and attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** 1234567 → "1,234,567"; fractions kept to `digits`. */
function num(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "—";
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A short rate: 45.2k, 812. */
export function shortRate(x: number): string {
  if (!Number.isFinite(x)) return "—";
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 10_000) return `${(x / 1000).toFixed(1)}k`;
  return x.toFixed(0);
}

/** An SVG document inlined into HTML: drop its XML prolog. */
function inline(svg: string): string {
  return svg.replace(/^<\?xml[^>]*\?>\s*/, "");
}

// ---- the line chart -------------------------------------------------------------------------

export interface LineSeries {
  readonly name: string;
  /** [x, y] points in x order; a null y breaks the line. */
  readonly points: readonly (readonly [number, number | null])[];
  readonly dashed?: boolean;
}

export interface LineChartOptions {
  readonly title: string;
  readonly unit: string;
  readonly xLabel?: string;
  /** Shaded stretches of x with a label (the demo's phases). */
  readonly bands?: readonly DemoPhase[];
  readonly width?: number;
  readonly height?: number;
}

/** Okabe–Ito without yellow, as bench/lib/chart.ts. */
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/** Round `x` up to 1, 2 or 5 times a power of ten. */
function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

/**
 * Draw series over time: linear x from 0 to the last point (or band end), linear y from 0 to
 * a 1-2-5 bound above the largest value, five gridlines, phase bands behind, a legend below.
 */
export function lineChartSvg(series: readonly LineSeries[], o: LineChartOptions): string {
  const W = o.width ?? 900;
  const H = o.height ?? 320;
  const left = 64;
  const right = W - 16;
  const top = 40;
  const legendRows = Math.ceil(series.length / 4);
  const bottom = H - 40 - legendRows * 18;
  let xMax = 0;
  let yMax = 0;
  for (const s of series) {
    for (const [x, y] of s.points) {
      xMax = Math.max(xMax, x);
      if (y !== null && Number.isFinite(y)) yMax = Math.max(yMax, y);
    }
  }
  for (const b of o.bands ?? []) xMax = Math.max(xMax, b.to);
  xMax = xMax > 0 ? xMax : 1;
  yMax = niceCeil(yMax * 1.05);
  const X = (x: number) => left + (x / xMax) * (right - left);
  const Y = (y: number) => bottom - (y / yMax) * (bottom - top);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="${FONT}" font-size="12" role="img">`,
    `<title>${esc(o.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="600" fill="#1a1a1a">${esc(o.title)}</text>`,
  ];
  (o.bands ?? []).forEach((b, i) => {
    const x0 = X(b.from);
    const x1 = X(Math.min(b.to, xMax));
    parts.push(
      `<rect x="${x0.toFixed(1)}" y="${top}" width="${Math.max(0, x1 - x0).toFixed(1)}" height="${bottom - top}" fill="${i % 2 === 0 ? "#f3f6f9" : "#f9f5ef"}"/>`,
      `<text x="${(x0 + 4).toFixed(1)}" y="${top + 14}" fill="#5f6368" font-size="11">${esc(b.name)}</text>`,
    );
  });
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    const y = Y(v).toFixed(1);
    parts.push(
      `<line x1="${left}" x2="${right}" y1="${y}" y2="${y}" stroke="${k === 0 ? "#9aa0a6" : "#e6e6e6"}"/>`,
      `<text x="${left - 6}" y="${y}" dy="4" text-anchor="end" fill="#5f6368">${esc(shortRate(v))}</text>`,
    );
  }
  const xStep = niceCeil(xMax / 8);
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    parts.push(
      `<text x="${X(x).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" fill="#5f6368">${num(x)}</text>`,
    );
  }
  parts.push(
    `<text x="${right}" y="${bottom + 32}" text-anchor="end" fill="#5f6368">${esc(o.xLabel ?? "seconds")}</text>`,
    `<text x="${left}" y="${top - 6}" fill="#5f6368">${esc(o.unit)}</text>`,
  );
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] as string;
    let d = "";
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${X(x).toFixed(1)} ${Y(y).toFixed(1)}`;
      pen = true;
    }
    if (d !== "") {
      parts.push(
        `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""} stroke-linejoin="round"/>`,
      );
    }
    const lx = left + (i % 4) * ((right - left) / 4);
    const ly = H - 18 - (legendRows - 1 - Math.floor(i / 4)) * 18;
    parts.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      `<text x="${lx + 28}" y="${ly}" fill="#1a1a1a">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

// ---- the thread layout drawing ----------------------------------------------------------------

/** Threads of this process in one frame, other processes beside it, the vCPU count above. */
export function layoutSvg(boxes: readonly LayoutBox[], cpus: number): string {
  const threads = boxes.filter((b) => b.kind === "thread");
  const procs = boxes.filter((b) => b.kind === "process");
  const W = 940;
  const bw = 200;
  const bh = 62;
  const gap = 12;
  const perRow = 3;
  const rows = Math.max(1, Math.ceil(threads.length / perRow));
  const frameW = perRow * bw + (perRow + 1) * gap;
  const frameH = 30 + rows * (bh + gap) + gap;
  const procRows = Math.max(1, procs.length);
  const H = 40 + Math.max(frameH, procRows * (bh + gap)) + 16;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="${FONT}" font-size="12" role="img">`,
    "<title>thread layout</title>",
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="16" y="22" font-size="15" font-weight="600" fill="#1a1a1a">Thread layout: ${threads.length} threads in the exocore process, ${procs.length} other processes, ${cpus} vCPUs shared by all</text>`,
    `<rect x="16" y="40" width="${frameW}" height="${frameH}" rx="8" fill="#f7f9fb" stroke="#9aa0a6"/>`,
    `<text x="28" y="60" fill="#5f6368">exocore process (node): main thread + worker threads</text>`,
  ];
  const box = (x: number, y: number, b: LayoutBox, fill: string, stroke: string) => {
    const [l1, l2] = wrap2(b.detail, 31);
    parts.push(
      `<g><title>${esc(`${b.name}: ${b.detail}`)}</title>`,
      `<rect x="${x}" y="${y}" width="${bw}" height="${bh}" rx="6" fill="${fill}" stroke="${stroke}"/>`,
      `<text x="${x + 10}" y="${y + 19}" font-weight="600" fill="#1a1a1a">${esc(b.name)}</text>`,
      `<text x="${x + 10}" y="${y + 36}" fill="#5f6368" font-size="11">${esc(l1)}</text>`,
      `<text x="${x + 10}" y="${y + 51}" fill="#5f6368" font-size="11">${esc(l2)}</text></g>`,
    );
  };
  threads.forEach((b, i) => {
    const x = 16 + gap + (i % perRow) * (bw + gap);
    const y = 70 + Math.floor(i / perRow) * (bh + gap);
    const kind = b.name === "main" ? 0 : b.name.startsWith("domain.") ? 1 : 2;
    const fill = ["#e8f1f8", "#fdeee6", "#e6f5f0"][kind] as string;
    const stroke = ["#0072B2", "#D55E00", "#009E73"][kind] as string;
    box(x, y, b, fill, stroke);
  });
  procs.forEach((b, i) => {
    box(16 + frameW + 24, 40 + i * (bh + gap), b, "#f4eef7", "#CC79A7");
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Two lines of at most `n` characters, cut at spaces; an ellipsis if more is left. */
export function wrap2(text: string, n: number): [string, string] {
  const lines: string[] = [""];
  for (const word of text.split(" ")) {
    const cur = lines[lines.length - 1] as string;
    if (cur === "") lines[lines.length - 1] = word;
    else if (cur.length + 1 + word.length <= n) lines[lines.length - 1] = `${cur} ${word}`;
    else lines.push(word);
  }
  const first = (lines[0] ?? "").slice(0, n);
  let second = lines[1] ?? "";
  if (lines.length > 2 || second.length > n) second = `${second.slice(0, n - 1)}…`;
  return [first, second];
}

// ---- the page -------------------------------------------------------------------------------

const CSS = `
body{margin:0 auto;max-width:960px;padding:24px;font:14px/1.5 ${FONT};color:#1a1a1a;background:#fbfbf8}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
.muted{color:#5f6368}table{border-collapse:collapse;margin:8px 0;background:#fff}
th,td{border:1px solid #e3e6ea;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}th{background:#f3f5f7}
figure{margin:12px 0;background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:8px;overflow-x:auto}
figure svg{max-width:100%;height:auto}.warn{color:#a03000}code{background:#eef1f4;padding:0 3px}
`;

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join("");
  const tr = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`).join("\n");
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

/** A flat object's numbers and strings as a two-column table (nested values left out). */
function flatTable(obj: object): string {
  const rows: string[][] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === "number") rows.push([k, num(v)]);
    else if (typeof v === "string" && v !== "") rows.push([k, v]);
    else if (typeof v === "boolean") rows.push([k, String(v)]);
  }
  return table(["counter", "value"], rows);
}

function figure(svg: string): string {
  return `<figure>${inline(svg)}</figure>`;
}

/** Servers that have a live rate in the samples, in first-seen order. */
function serversOf(samples: readonly DemoSample[]): string[] {
  const names: string[] = [];
  for (const s of samples)
    for (const k of Object.keys(s.rps)) if (!names.includes(k)) names.push(k);
  return names;
}

function devicesSection(d: DeviceStats | null): string {
  if (d === null) return "<p class=muted>No device statistics (the machine did not boot).</p>";
  const parts: string[] = [];
  if (d.nvme) parts.push("<h3>NVMe controller (disk image)</h3>", flatTable(d.nvme));
  if (d.nic) {
    const vfs = Object.entries(d.nic);
    const keys = vfs.length > 0 ? Object.keys(vfs[0]?.[1] ?? {}) : [];
    const numeric = keys.filter((k) => vfs.some(([, s]) => typeof (s as never)[k] === "number"));
    const rows = numeric.map((k) => [
      k,
      ...vfs.map(([, s]) => {
        const v = (s as unknown as Record<string, unknown>)[k];
        return typeof v === "number" ? num(v) : "";
      }),
    ]);
    parts.push(
      "<h3>NIC virtual functions</h3>",
      table(["counter", ...vfs.map(([i]) => `VF ${i}`)], rows),
    );
  }
  parts.push("<h3>IOMMU</h3>", flatTable(d.iommu));
  const pfRows: string[][] = [];
  for (const pf of d.pfs) {
    for (const vf of pf.vfs) {
      pfRows.push([
        `${pf.kind} PF ${pf.rid.toString(16).padStart(4, "0")}`,
        `VF ${vf.index}`,
        vf.rid.toString(16).padStart(4, "0"),
        vf.owner ?? "—",
        vf.status,
        num(vf.dma?.bytes ?? 0),
      ]);
    }
  }
  parts.push(
    "<h3>SR-IOV functions</h3>",
    table(
      ["physical function", "VF", "requester id", "assigned to", "status", "DMA bytes"],
      pfRows,
    ),
  );
  return parts.join("\n");
}

/** The whole report page. */
export function renderDemoReport(r: DemoReportData): string {
  // One chart per server: their rates differ by orders of magnitude.
  const servers = serversOf(r.samples);
  for (const res of r.results) if (!servers.includes(res.server)) servers.push(res.server);
  const rpsCharts = servers.map((name) => {
    const series: LineSeries[] = [
      { name: `${name} req/s`, points: r.samples.map((s) => [s.t, s.rps[name] ?? null] as const) },
    ];
    // Clients with no live figure (wrk): their average over their phase, dashed.
    for (const res of r.results) {
      const ph = r.phases.find((p) => p.name === res.phase);
      if (ph && !res.live && res.server === name) {
        series.push({
          name: `${res.client}: average`,
          points: [
            [ph.from, res.rps],
            [ph.to, res.rps],
          ],
          dashed: true,
        });
      }
    }
    return figure(
      lineChartSvg(series, { title: `${name}: requests/s`, unit: "req/s", bands: r.phases }),
    );
  });
  const domains = r.workers.filter((w) => w.name.startsWith("domain.")).map((w) => w.name);
  const sysSeries: LineSeries[] = [
    {
      name: "syscalls/s (all domains)",
      points: r.samples.map((s) => [s.t, s.syscallsPerS] as const),
    },
  ];
  const parkSeries: LineSeries[] = r.workers.map((w) => ({
    name: `${w.name} parks/s`,
    points: r.samples.map((s) => [s.t, s.parksPerS[w.name] ?? null] as const),
  }));
  const queueSeries: LineSeries[] = domains.map((name) => ({
    name,
    points: r.samples.map((s) => [s.t, s.queue[name] ?? null] as const),
  }));

  const resultRows = r.results.map((x) => [
    x.server,
    x.client,
    x.phase,
    num(x.requests),
    num(x.rps),
    Number.isFinite(x.p50Ms) ? x.p50Ms.toFixed(2) : "—",
    Number.isFinite(x.p99Ms) ? x.p99Ms.toFixed(2) : "—",
    num(x.errors),
    x.note ?? "",
  ]);
  const workerRows = r.workers.map((w) => [
    w.name,
    w.state,
    num(w.calls),
    num(w.rounds),
    w.rounds > 0 ? (w.calls / w.rounds).toFixed(2) : "—",
    num(w.batchMax),
    num(w.queue),
    num(w.spins),
    num(w.parks),
    num(w.wakeups),
  ]);
  const callBars = r.workers
    .filter((w) => w.calls > 0)
    .map((w) => ({ label: w.name, value: w.calls, note: `${num(w.parks)} parks` }));

  const body = [
    `<h1>exocore demo${r.interrupted ? " (interrupted)" : ""}</h1>`,
    `<p class=muted>${esc(r.date)} · Node ${esc(r.node)} · ${r.cpus} vCPUs (${esc(r.cpuModel)}) · ${r.durationS} s of load${r.quick ? " (--quick)" : ""} · channel mode ${esc(r.channel)}</p>`,
    `<p>One machine booted in the demo's process: the hypervisor and the device models on the main thread, the service domains and ${r.workers.filter((w) => !w.name.startsWith("domain.")).length} XOS cores on worker threads. kv-server (RESP, AOF everysec) and http-server (static files from the disk image, ${esc(r.image)}) run on the cores; the clients are separate processes.</p>`,
    r.interrupted
      ? `<p class=warn>Stopped by Ctrl-C: the figures cover the run up to that point.</p>`
      : "",
    "<h2>Summary</h2>",
    table(
      ["server", "client", "phase", "requests", "req/s", "p50 ms", "p99 ms", "errors", "note"],
      resultRows,
    ),
    "<h2>Requests per second</h2>",
    ...rpsCharts,
    "<h2>System calls and waiting</h2>",
    figure(
      lineChartSvg(sysSeries, {
        title: "System calls served per second",
        unit: "calls/s",
        bands: r.phases,
      }),
    ),
    figure(
      lineChartSvg(parkSeries, {
        title: "Parks per second (Atomics.wait after the spin budget)",
        unit: "parks/s",
        bands: r.phases,
      }),
    ),
    figure(
      lineChartSvg(queueSeries, {
        title: "Queue depth: requests taken per drain round",
        unit: "entries",
        bands: r.phases,
      }),
    ),
    "<h2>Per-domain and per-core counters</h2>",
    `<p class=muted>calls: system calls served (domains) or issued (cores); rounds: drain or scheduler rounds; queue: entries taken in the last round; parks and wake-ups: the NEED_WAKEUP protocol's (src/shm/wake.ts).</p>`,
    table(
      [
        "worker",
        "state",
        "calls",
        "rounds",
        "calls/round",
        "batch max",
        "queue",
        "spins",
        "parks",
        "wake-ups",
      ],
      workerRows,
    ),
    callBars.length > 0
      ? figure(barChartSvg(callBars, { title: "System calls per worker", unit: "calls" }))
      : "",
    "<h2>Thread layout</h2>",
    figure(layoutSvg(r.layout, r.cpus)),
    table(
      ["thread or process", "kind", "what it runs"],
      r.layout.map((b) => [b.name, b.kind, b.detail]),
    ),
    "<h2>Devices</h2>",
    devicesSection(r.devices),
    "<h2>Events</h2>",
    r.events.length === 0
      ? "<p class=muted>None: no worker died, hung or failed.</p>"
      : `<ul>${r.events.map((e) => `<li>${esc(e)}</li>`).join("")}</ul>`,
  ];
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>exocore demo — ${esc(r.date)}</title>`,
    `<style>${CSS}</style></head><body>`,
    ...body.filter((s) => s !== ""),
    "</body></html>",
    "",
  ].join("\n");
}
