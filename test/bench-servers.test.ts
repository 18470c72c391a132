/**
 * bench-servers: `exocore bench servers` in small — one machine (hybrid), -n 3000, 1 s HTTP
 * runs — end to end in this process: exocore's servers, redis-server and both node:http
 * servers are measured with the same client, the results and the chart are written, every
 * exocore figure has its ratio to the reference, and no HTTP request failed. A second run with
 * no client on PATH uses the built-in clients instead and says so.
 */

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hasCommand } from "../bench/load/external.js";
import { formatServersReport, runServersBench, type ServersReport } from "../bench/servers.js";

async function runSmall(out: string): Promise<ServersReport> {
  const phases: string[] = [];
  let layout: readonly string[] = [];
  const report = await runServersBench(
    {
      quick: true,
      modes: ["hybrid"],
      requests: 3000,
      durationS: 1,
      out,
      onLayout: (l) => (layout = l),
    },
    (p) => phases.push(p.phase),
  );
  assert.match(
    layout[0] ?? "",
    /^thread layout: \d+ threads in this process \+ \d+ other processes, on \d+ vCPUs$/,
  );
  assert.equal(phases[0], "exocore (hybrid)");
  assert.equal(phases[phases.length - 1], "done");
  return report;
}

test("every server under the same clients; ratios, aims, servers-quick.json and .svg written", async (t) => {
  const tools = await Promise.all(["redis-benchmark", "redis-server", "wrk"].map(hasCommand));
  if (tools.includes(false)) {
    t.skip(
      "redis-benchmark, redis-server or wrk is not installed (the next test covers that case)",
    );
    return;
  }
  const out = mkdtempSync(join(os.tmpdir(), "exocore-bench-servers-"));
  try {
    const r = await runSmall(out);
    assert.deepEqual(
      r.kv.map((k) => `${k.server} -P ${k.pipeline} ${k.client}`),
      [
        "exocore-hybrid -P 1 redis-benchmark",
        "exocore-hybrid -P 16 redis-benchmark",
        "redis-server -P 1 redis-benchmark",
        "redis-server -P 16 redis-benchmark",
      ],
    );
    for (const k of r.kv) {
      assert.equal(k.rows.length, 8, `${k.server}: one row per test`);
      for (const row of k.rows) {
        assert.ok(row.p99Ms >= row.p50Ms, JSON.stringify(row));
        // redis-server may finish a -P 16 test of 3000 requests within one tick of
        // redis-benchmark's millisecond clock: it prints "inf", read as NaN.
        if (k.server !== "redis-server") assert.ok(row.rps > 0, JSON.stringify(row));
        else assert.ok(row.rps > 0 || Number.isNaN(row.rps), JSON.stringify(row));
      }
    }
    assert.deepEqual(
      r.http.map((h) => `${h.server} ${h.route}`),
      [
        "exocore-hybrid static",
        "exocore-hybrid dynamic",
        "node:http static",
        "node:http dynamic",
        "node:http+piscina static",
        "node:http+piscina dynamic",
      ],
    );
    for (const h of r.http) {
      assert.equal(h.errors, 0, `${h.server} ${h.route}: every response 2xx`);
      assert.ok(h.requests > 0 && h.rps > 0);
    }
    // 8 tests + a geomean, at two depths; HTTP: exocore and piscina against node:http, 2 routes
    assert.equal(r.ratios.kv.length, 18);
    assert.equal(r.ratios.http.length, 4);
    const geo = r.ratios.kv.find((x) => x.what === "-P 16 geomean");
    assert.ok(geo && geo.rps > 0 && Number.isFinite(geo.rps));
    assert.equal(r.aims.length, 3);
    assert.match(r.aims[0]?.name ?? "", /^KV -P 16 ≥ 0\.5× redis-server \(exocore hybrid\)$/);
    assert.ok(r.machines.hybrid?.some((w) => w.name === "domain.network" && w.calls > 0));
    const saved = JSON.parse(
      readFileSync(join(out, "servers-quick.json"), "utf8"),
    ) as ServersReport;
    assert.deepEqual(saved.ratios, JSON.parse(JSON.stringify(r.ratios)));
    assert.match(readFileSync(join(out, "servers-quick.svg"), "utf8"), /<svg[^>]*viewBox/);
    const text = formatServersReport(r);
    assert.match(text, /^ {2}MSET \(10 keys\) +16 +/m);
    assert.match(text, /^ {2}static \/index\.html +exocore-hybrid +/m);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("with no client installed, the built-in clients measure every server and the notes say so", async () => {
  const out = mkdtempSync(join(os.tmpdir(), "exocore-bench-servers-"));
  const path = process.env.PATH;
  process.env.PATH = join(out, "empty"); // no redis-benchmark, redis-server or wrk (nor sh)
  try {
    const r = await runSmall(out);
    process.env.PATH = path;
    assert.equal(r.settings.kv.client, "exocore-load");
    assert.equal(r.settings.http.client, "exocore-load");
    assert.equal(r.notes.length, 3);
    assert.match(r.notes.join("\n"), /built-in RESP client/);
    assert.deepEqual(
      r.kv.map((k) => `${k.server} -P ${k.pipeline} ${k.rows.length}`),
      ["exocore-hybrid -P 1 1", "exocore-hybrid -P 16 1"],
    );
    for (const k of r.kv) assert.ok((k.rows[0]?.rps ?? 0) > 0 && (k.rows[0]?.p99Ms ?? 0) > 0);
    assert.equal(r.http.length, 6);
    for (const h of r.http) assert.equal(h.errors, 0, `${h.server} ${h.route}`);
    assert.equal(r.ratios.kv.length, 0, "no redis-server: no KV ratio");
    assert.equal(r.ratios.http.length, 4);
    assert.ok(existsSync(join(out, "servers-quick.json")));
  } finally {
    process.env.PATH = path;
    rmSync(out, { recursive: true, force: true });
  }
});
