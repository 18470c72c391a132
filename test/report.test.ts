/**
 * report: the demo's HTML report (src/cli/report.ts) from made-up run data — one
 * self-contained page (no script, no external fetch), a figure per server plus the system-call,
 * parks, queue, per-worker and layout figures, every outside string escaped, gaps in a series
 * drawn as gaps, and clients without live figures drawn as their average.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type DemoReportData,
  esc,
  lineChartSvg,
  renderDemoReport,
  wrap2,
} from "../src/cli/report.js";
import type { WorkerStats } from "../src/hv/machine.js";

function worker(name: string, calls: number): WorkerStats {
  return {
    name,
    state: "parked",
    heartbeat: 10,
    calls,
    rounds: 100,
    threads: 0,
    queue: 2,
    batchMax: 9,
    spins: 50,
    parks: 40,
    wakeups: 41,
  };
}

function data(over: Partial<DemoReportData> = {}): DemoReportData {
  return {
    date: "2026-01-02T03:04:05.000Z",
    node: "v20.0.0",
    cpus: 2,
    cpuModel: "Test CPU",
    durationS: 5,
    quick: true,
    channel: "hybrid",
    interrupted: false,
    layout: [
      { name: "main", kind: "thread", detail: "hypervisor and device models" },
      { name: "domain.network", kind: "thread", detail: "sockets" },
      { name: "core0", kind: "thread", detail: "green threads" },
      { name: "resp client (pid 7)", kind: "process", detail: "built-in" },
    ],
    phases: [
      { name: "built-in clients", from: 0, to: 3 },
      { name: "redis-benchmark + wrk", from: 3, to: 5 },
    ],
    samples: [1, 2, 3, 4].map((t) => ({
      t,
      rps:
        t <= 3
          ? { "kv-server": 1000 * t, "http-server": 100 * t }
          : { "kv-server": 900, "http-server": null },
      syscallsPerS: 5000 + t,
      queue: { "domain.network": t },
      parksPerS: { "domain.network": 10, core0: 5 },
      wakeupsPerS: { "domain.network": 10, core0: 5 },
    })),
    results: [
      {
        server: "kv-server",
        client: "built-in RESP -P 16",
        phase: "built-in clients",
        requests: 6000,
        rps: 2000,
        p50Ms: 1.5,
        p99Ms: 9.25,
        errors: 0,
        live: true,
      },
      {
        server: "http-server",
        client: "wrk",
        phase: "redis-benchmark + wrk",
        requests: 800,
        rps: 400,
        p50Ms: 3,
        p99Ms: 20,
        errors: 0,
        live: false,
      },
    ],
    workers: [worker("domain.network", 12345), worker("core0", 999)],
    devices: null,
    events: ["kv-server: <script>alert(1)</script> & more"],
    image: "demo/site in /site",
    ...over,
  };
}

test("the report is one self-contained page with the figures the demo promises", () => {
  const html = renderDemoReport(data());
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script/i, "no script (the event text is escaped)");
  assert.doesNotMatch(html, /\b(src|href)="(https?:)?\/\//, "nothing fetched from elsewhere");
  assert.doesNotMatch(html, /<\?xml/, "inlined SVG documents lose their XML prolog");
  const svgs = html.match(/<svg[\s>]/g) ?? [];
  // kv-server and http-server req/s, syscalls, parks, queue depth, calls per worker, layout
  assert.equal(svgs.length, 7);
  for (const title of [
    "kv-server: requests/s",
    "http-server: requests/s",
    "System calls served per second",
    "Parks per second",
    "System calls per worker",
    "Thread layout: 3 threads in the exocore process, 1 other processes, 2 vCPUs",
  ]) {
    assert.ok(html.includes(title), `has ${title}`);
  }
  assert.ok(html.includes("&#60;script&#62;alert(1)&#60;/script&#62; &#38; more"));
  assert.ok(html.includes("12,345"), "per-worker calls in the table");
  assert.ok(html.includes("wrk: average"), "a client without live figures is drawn as its average");
  assert.ok(html.includes("No device statistics"));
});

test("an interrupted run says so", () => {
  const html = renderDemoReport(data({ interrupted: true }));
  assert.match(html, /<h1>exocore demo \(interrupted\)<\/h1>/);
  assert.match(html, /Stopped by Ctrl-C/);
});

test("a null value breaks a line into separate strokes; phases are drawn as labelled bands", () => {
  const svg = lineChartSvg(
    [
      {
        name: "a<b",
        points: [
          [0, 1],
          [1, 2],
          [2, null],
          [3, 4],
          [4, 5],
        ],
      },
    ],
    { title: "T & U", unit: "x/s", bands: [{ name: "phase one", from: 0, to: 2 }] },
  );
  const d = /<path d="([^"]+)"/.exec(svg)?.[1] ?? "";
  assert.equal(d.match(/M/g)?.length, 2, d);
  assert.equal(d.match(/L/g)?.length, 2, d);
  assert.ok(svg.includes("phase one"));
  assert.ok(svg.includes("a&#60;b"));
  assert.ok(svg.includes("<title>T &#38; U</title>"));
});

test("helpers: escaping and two-line wrapping", () => {
  assert.equal(
    esc(`<a href="x">'&'</a>`),
    "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;",
  );
  assert.deepEqual(wrap2("service domain: NIC VF driver, TCP/UDP sockets", 20), [
    "service domain: NIC",
    "VF driver, TCP/UDP…",
  ]);
  assert.deepEqual(wrap2("short", 20), ["short", ""]);
});
