/**
 * Copy-on-write against a model: whatever sequence of writes, snapshots (of snapshots) and reads
 * a program makes, every region reads as if each snapshot had been a full copy at its moment.
 * Each sequence runs as a process of one real machine (cores, kernel ring, pager, shootdowns).
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { boot } from "../src/hv/machine.js";

const PROGRAM = fileURLToPath(new URL("./fixtures/programs/cowmodel.js", import.meta.url));
const PAGES = 4;

type Op =
  | { kind: "write"; r: number; p: number; v: number }
  | { kind: "snap"; r: number }
  | { kind: "read"; r: number; p: number };

/** Ops whose region indexes exist when they run (region count grows with each snapshot). */
const opsArb = fc
  .array(
    fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant("write" as const),
          r: fc.nat(),
          p: fc.nat(PAGES - 1),
          v: fc.integer({ min: 1, max: 1 << 20 }),
        }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("snap" as const), r: fc.nat() }) },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("read" as const),
          r: fc.nat(),
          p: fc.nat(PAGES - 1),
        }),
      },
    ),
    { minLength: 1, maxLength: 40 },
  )
  .map((ops) => {
    let regions = 1;
    return ops.map((o): Op => {
      const r = o.r % regions;
      if (o.kind === "snap") regions++;
      return { ...o, r } as Op;
    });
  });

function model(ops: Op[]): { reads: number[]; pages: number[][] } {
  const regions: number[][] = [new Array(PAGES).fill(0)];
  const reads: number[] = [];
  for (const o of ops) {
    const region = regions[o.r] as number[];
    if (o.kind === "write") region[o.p] = o.v;
    else if (o.kind === "snap") regions.push([...region]);
    else reads.push(region[o.p] as number);
  }
  return { reads, pages: regions };
}

function encode(ops: Op[]): string[] {
  return ops
    .flatMap((o) =>
      o.kind === "write" ? [0, o.r, o.p, o.v] : o.kind === "snap" ? [1, o.r] : [2, o.r, o.p],
    )
    .map(String);
}

test("copy-on-write snapshots behave as copies, under random writes, snapshots and reads", async () => {
  let out = "";
  const m = await boot({
    cores: 2,
    memoryMiB: 32,
    stdout: (s) => {
      out += s;
    },
    onEvent: () => {},
  });
  try {
    await fc.assert(
      fc.asyncProperty(opsArb, async (ops) => {
        out = "";
        const status = await m.run(PROGRAM, encode(ops));
        assert.equal(status, 0, out);
        assert.deepEqual(JSON.parse(out.trim()), model(ops));
      }),
      { numRuns: 40 },
    );
  } finally {
    await m.shutdown();
  }
});
