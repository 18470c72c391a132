/**
 * bench-external: reading what the real clients print (bench/load/external.ts). The texts are
 * captured from redis-benchmark 7.0 and wrk 4 on this machine; the last test runs the installed
 * clients against a real redis-server and node:http (skipped, saying why, when one is missing).
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import {
  hasCommand,
  parseRedisBenchmarkCsv,
  parseWrk,
  RedisLiveParser,
  runRedisBenchmark,
  runWrk,
  wrkDurationMs,
} from "../bench/load/external.js";
import { startRedisServer } from "../bench/servers.js";

const CSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","155038.77","0.184","0.064","0.175","0.247","0.399","2.175"
"MSET (10 keys)","55865.92","0.694","0.064","0.247","1.455","4.903","81.407"
"HSET","inf","0.350","0.120","0.399","0.495","0.511","0.511"
`;

test("redis-benchmark --csv: one row per test with rps and the latency percentiles", () => {
  const rows = parseRedisBenchmarkCsv(CSV);
  // "inf": a test that ended within one tick of redis-benchmark's clock has no rate.
  const hset = rows.pop();
  assert.equal(hset?.test, "HSET");
  assert.ok(Number.isNaN(hset?.rps));
  assert.equal(hset?.p99Ms, 0.511);
  assert.deepEqual(rows, [
    {
      test: "SET",
      rps: 155038.77,
      avgMs: 0.184,
      minMs: 0.064,
      p50Ms: 0.175,
      p95Ms: 0.247,
      p99Ms: 0.399,
      maxMs: 2.175,
    },
    {
      test: "MSET (10 keys)",
      rps: 55865.92,
      avgMs: 0.694,
      minMs: 0.064,
      p50Ms: 0.247,
      p95Ms: 1.455,
      p99Ms: 4.903,
      maxMs: 81.407,
    },
  ]);
});

test("an older redis-benchmark's CSV (rps only) is refused, naming the header it expected", () => {
  assert.throws(
    () => parseRedisBenchmarkCsv('"test","rps"\n"SET","1000.00"\n'),
    /unknown CSV header .*p99_latency_ms/,
  );
  assert.throws(() => parseRedisBenchmarkCsv(""), /no CSV/);
});

test("redis-benchmark -q live output: overall rates while a test runs, the final line when it ends", () => {
  const p = new RedisLiveParser();
  // Progress lines end in CR and are padded; the summary line ends in LF. Cut anywhere.
  const text =
    "\rSET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r" +
    "\rSET: rps=159500.0 (overall: 158868.5) avg_msec=0.204 (overall: 0.204)\r   " +
    "\rSET: 160000.00 requests per second, p50=0.351 msec\n" +
    "\rLPUSH (needed to benchmark LPOP): rps=90000.0 (overall: 88000.0) avg_msec=0.5 (overall: 0.5)\r";
  for (let i = 0; i < text.length; i += 7) p.feed(text.slice(i, i + 7));
  p.feed("\r");
  assert.equal(p.tests.length, 2);
  const [set, lpush] = p.tests;
  assert.deepEqual(set, { test: "SET", rps: 160000, instantRps: 159500, p50Ms: 0.351, done: true });
  assert.equal(lpush?.test, "LPUSH (needed to benchmark LPOP)");
  assert.equal(lpush?.rps, 88000);
  assert.equal(lpush?.done, false);
  assert.equal(p.current?.instantRps, 90000);
});

const WRK = `Running 1s test @ http://127.0.0.1:8931/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.39ms    3.46ms  26.88ms   89.99%
    Req/Sec     2.74k     1.22k    4.84k    60.00%
  Latency Distribution
     50%  812.00us
     75%    2.16ms
     90%    5.87ms
     99%    1.02s
  2730 requests in 1.00s, 1.35MB read
  Socket errors: connect 0, read 12, write 1, timeout 3
  Non-2xx or 3xx responses: 2730
Requests/sec:   2725.44
Transfer/sec:      1.35MB
`;

test("wrk --latency: requests/s, the latency distribution in any unit, and every kind of error", () => {
  const r = parseWrk(WRK);
  assert.equal(r.rps, 2725.44);
  assert.equal(r.requests, 2730);
  assert.equal(r.durationS, 1);
  assert.equal(r.p50Ms, 0.812);
  assert.equal(r.p75Ms, 2.16);
  assert.equal(r.p90Ms, 5.87);
  assert.equal(r.p99Ms, 1020);
  assert.equal(r.errors, 2730 + 12 + 1 + 3);
  assert.throws(
    () => parseWrk("unable to connect to 127.0.0.1:1 Connection refused"),
    /no Requests\/sec/,
  );
  assert.equal(wrkDurationMs("2.00m"), 120_000);
  assert.ok(Number.isNaN(wrkDurationMs("fast")));
});

test("the installed clients against real servers: redis-benchmark on redis-server, wrk on node:http", async (t) => {
  const missing = [];
  for (const cmd of ["redis-benchmark", "redis-server", "wrk"])
    if (!(await hasCommand(cmd))) missing.push(cmd);
  if (missing.length > 0) {
    t.skip(`${missing.join(", ")} not installed`);
    return;
  }
  assert.equal(await hasCommand("no-such-client-exocore"), false);
  const redis = await startRedisServer();
  try {
    const rows = await runRedisBenchmark({
      port: redis.port,
      tests: ["set", "get"],
      clients: 4,
      requests: 2000,
      pipeline: 4,
    });
    assert.deepEqual(
      rows.map((r) => r.test),
      ["SET", "GET"],
    );
    for (const r of rows) assert.ok(r.rps > 0 && r.p99Ms >= r.p50Ms, JSON.stringify(r));
  } finally {
    await redis.stop();
  }
  let served = 0;
  const server = http.createServer((_, res) => {
    served++;
    res.end("hello");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as AddressInfo).port;
    const w = await runWrk({
      url: `http://127.0.0.1:${port}/`,
      threads: 1,
      connections: 2,
      durationS: 1,
    });
    assert.ok(
      w.requests > 0 && w.requests <= served,
      `wrk counted ${w.requests}, server saw ${served}`,
    );
    assert.equal(w.errors, 0);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
