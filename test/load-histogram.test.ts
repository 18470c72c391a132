/**
 * load-histogram: the load generators' latency histogram (bench/load/histogram.ts) against a
 * model — the sorted list of every value recorded. Buckets tile the range with no gap or
 * overlap and are at most 1/32 of their value wide; a percentile read back is within one
 * bucket of the exact nearest-rank percentile; histograms shipped between processes as plain
 * arrays merge into the same percentiles as one histogram that saw everything.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  BUCKETS,
  bucketHigh,
  bucketLow,
  bucketOf,
  LatencyHistogram,
  MAX_US,
} from "../bench/load/histogram.js";

test("buckets tile 0 … MAX_US in order, each at most 1/32 of its values wide", () => {
  assert.equal(bucketOf(0), 0);
  assert.equal(bucketOf(MAX_US), BUCKETS - 1);
  assert.equal(bucketHigh(BUCKETS - 1), MAX_US);
  for (let b = 0; b < BUCKETS; b++) {
    assert.equal(bucketOf(bucketLow(b)), b, `low end of bucket ${b}`);
    assert.equal(bucketOf(bucketHigh(b)), b, `high end of bucket ${b}`);
    if (b > 0) assert.equal(bucketLow(b), bucketHigh(b - 1) + 1, `bucket ${b} follows ${b - 1}`);
    assert.ok(bucketHigh(b) - bucketLow(b) + 1 <= Math.max(1, bucketLow(b) / 32), `width of ${b}`);
  }
});

test("values out of range are clamped, not lost", () => {
  const h = new LatencyHistogram();
  h.record(-5);
  h.record(2 ** 40);
  assert.equal(h.count, 2);
  assert.equal(h.percentile(50), 0);
  assert.equal(bucketOf(h.percentile(100)), BUCKETS - 1, "the largest lands in the last bucket");
  assert.equal(h.summary().maxMs, MAX_US / 1000);
});

const latencies = fc.array(
  fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 5_000_000 })),
  { minLength: 1, maxLength: 400 },
);

test("percentiles are within one bucket of the exact nearest-rank value", () => {
  fc.assert(
    fc.property(latencies, fc.constantFrom(1, 25, 50, 90, 99, 99.9, 100), (values, p) => {
      const h = new LatencyHistogram();
      for (const v of values) h.record(v);
      const sorted = [...values].sort((a, b) => a - b);
      const exact = sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] as number;
      const got = h.percentile(p);
      assert.ok(
        got >= bucketLow(bucketOf(exact)) && got <= bucketHigh(bucketOf(exact)),
        `p${p}: got ${got}, exact ${exact}`,
      );
      assert.ok(got <= (sorted[sorted.length - 1] as number), "never above the largest value");
    }),
    { numRuns: 300 },
  );
});

test("merging shipped counts gives the percentiles of one histogram that saw it all", () => {
  fc.assert(
    fc.property(latencies, latencies, (a, b) => {
      const ha = new LatencyHistogram();
      const hb = new LatencyHistogram();
      const all = new LatencyHistogram();
      for (const v of a) {
        ha.record(v);
        all.record(v);
      }
      for (const v of b) {
        hb.recordMany(v, 1);
        all.record(v);
      }
      // As bench/load/child.ts ships them: plain arrays through JSON.
      const merged = new LatencyHistogram(JSON.parse(JSON.stringify(ha)) as number[]);
      merged.add(JSON.parse(JSON.stringify(hb)) as number[]);
      assert.equal(merged.count, a.length + b.length);
      for (const p of [50, 90, 99]) {
        assert.equal(bucketOf(merged.percentile(p)), bucketOf(all.percentile(p)), `p${p}`);
      }
    }),
    { numRuns: 200 },
  );
});

test("recordMany counts a pipelined batch as that many replies", () => {
  const h = new LatencyHistogram();
  h.recordMany(1500, 16);
  h.record(100);
  assert.equal(h.count, 17);
  const s = h.summary();
  assert.ok(Math.abs(s.p50Ms - 1.5) <= 1.5 / 32, `p50 ${s.p50Ms}`);
  assert.equal(s.maxMs, 1.5);
});

test("a histogram with the wrong number of buckets and a percentile out of range are refused", () => {
  assert.throws(() => new LatencyHistogram([1, 2, 3]), /has 864 buckets, got 3/);
  assert.throws(() => new LatencyHistogram().percentile(0), /percentile must be in \(0, 100\]/);
  assert.equal(new LatencyHistogram().percentile(50), 0);
});
