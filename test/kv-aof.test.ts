/**
 * kv-aof: the append-only file. Random command sequences logged by one store and replayed into
 * a fresh one give the same data (fast-check); the records are the rewritten forms replay needs
 * (SET … PXAT, PEXPIREAT, DEL for an expiry in the past and for a lazily expired key, SREM for
 * SPOP, SET for GETSET); replay keeps keys alive while loading and expires them after; a last
 * record cut short anywhere is ignored and reported (or refused on request); bytes that are not
 * a record and unknown commands refuse the file with the offset.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { AofFormatError, encodeAofCommand, loadAof } from "../programs/kv/aof.js";
import type { KvEngine, KvSession } from "../programs/kv/commands.js";
import { ArgvBuilder, RespWriter } from "../programs/kv/resp.js";
import { dumpStore, makeEngine } from "./fixtures/kv-client.js";

function run(engine: KvEngine, s: KvSession, ...args: string[]): string {
  const out = new RespWriter();
  engine.execute(s, new ArgvBuilder(args.map((a) => Buffer.from(a, "latin1"))), out);
  return Buffer.from(out.bytes()).toString("latin1");
}

function drain(engine: KvEngine): Uint8Array {
  const out = new RespWriter();
  engine.drainAof(out);
  return out.bytes().slice();
}

function aofOf(cmds: string[][]): Uint8Array {
  const out = new RespWriter();
  for (const c of cmds) encodeAofCommand(out, c);
  return out.bytes().slice();
}

const text = (b: Uint8Array): string => Buffer.from(b).toString("latin1");

test("a replayed AOF rebuilds the same data (random commands, fast-check)", () => {
  const key = fc.constantFrom("a", "b", "c", "d");
  const val = fc.constantFrom("x", "y", "1", "22", "-5", "");
  const command = fc.oneof(
    fc.tuple(fc.constant("SET"), key, val),
    fc.tuple(
      fc.constant("SET"),
      key,
      val,
      fc.constantFrom("EX", "PX"),
      fc.constantFrom("100", "5000"),
    ),
    fc.tuple(fc.constant("SET"), key, val, fc.constantFrom("NX", "XX", "GET", "KEEPTTL")),
    fc.tuple(
      fc.constantFrom("INCR", "DECR", "PERSIST", "LPOP", "RPOP", "SPOP", "ZPOPMIN", "DEL"),
      key,
    ),
    fc.tuple(fc.constant("GETSET"), key, val),
    fc.tuple(fc.constant("APPEND"), key, val),
    fc.tuple(fc.constant("MSET"), key, val, key, val),
    fc.tuple(fc.constantFrom("EXPIRE", "PEXPIRE"), key, fc.constantFrom("-1", "0", "50", "100000")),
    fc.tuple(fc.constant("EXPIREAT"), key, fc.constantFrom("1", "1700000000", "1800000000")),
    fc.tuple(fc.constantFrom("LPUSH", "RPUSH", "SADD", "SREM"), key, val, val),
    fc.tuple(fc.constant("SPOP"), key, fc.constantFrom("1", "2", "10")),
    fc.tuple(fc.constant("HSET"), key, val, val),
    fc.tuple(fc.constant("HDEL"), key, val),
    fc.tuple(fc.constant("ZADD"), key, fc.constantFrom("1", "2.5", "-1"), val),
    fc.tuple(fc.constant("ZADD"), key, fc.constant("INCR"), fc.constantFrom("1", "2.5"), val),
    fc.tuple(fc.constant("GET"), key),
    fc.tuple(fc.constant("FLUSHALL")),
    fc.tuple(fc.constant("TICK"), fc.constantFrom("10", "1000", "60000")),
  );
  fc.assert(
    fc.property(fc.array(command, { minLength: 1, maxLength: 80 }), (cmds) => {
      let t = 1_750_000_000_000;
      const live = makeEngine(4 * 1024 * 1024, {}, () => t).engine;
      live.setAppendOnly(true);
      const s = live.connect();
      for (const c of cmds) {
        if (c[0] === "TICK") t += Number(c[1]);
        else run(live, s, ...c);
      }
      const aof = drain(live);
      t += 1; // replay a little later; what has expired by then is gone in both
      const copy = makeEngine(4 * 1024 * 1024, {}, () => t).engine;
      const r = loadAof(copy, aof);
      assert.equal(r.truncatedBytes, 0);
      assert.equal(r.validBytes, aof.length);
      run(live, s, "PING"); // let both see the same time
      run(copy, copy.connect(), "PING");
      assert.deepEqual(dumpStore(copy), dumpStore(live), text(aof));
    }),
    { numRuns: 200 },
  );
});

test("records are the forms replay needs: absolute expiries, DEL, SREM for SPOP, SET for GETSET", () => {
  let t = 1_000_000;
  const { engine } = makeEngine(4 * 1024 * 1024, {}, () => t);
  engine.setAppendOnly(true);
  const s = engine.connect();
  run(engine, s, "SET", "k", "v", "EX", "10", "GET");
  run(engine, s, "EXPIRE", "k", "20", "GT");
  run(engine, s, "SET", "nope", "v", "XX"); // changes nothing: no record
  run(engine, s, "GETSET", "k", "w");
  run(engine, s, "SET", "g", "1", "GET", "NX");
  run(engine, s, "SADD", "s", "only");
  run(engine, s, "SPOP", "s");
  run(engine, s, "SET", "gone", "v");
  run(engine, s, "PEXPIRE", "gone", "-5");
  run(engine, s, "SET", "lazy", "v", "PX", "100");
  t += 101;
  run(engine, s, "GET", "lazy"); // a read: only the lazy expiry's DEL is logged
  assert.equal(
    text(drain(engine)),
    text(
      aofOf([
        ["SET", "k", "v", "PXAT", "1010000"],
        ["PEXPIREAT", "k", "1020000", "GT"],
        ["SET", "k", "w"],
        ["SET", "g", "1", "NX"],
        ["SADD", "s", "only"],
        ["SREM", "s", "only"],
        ["SET", "gone", "v"],
        ["DEL", "gone"],
        ["SET", "lazy", "v", "PXAT", "1000100"],
        ["DEL", "lazy"],
      ]),
    ),
  );
  assert.equal(drain(engine).length, 0, "a drain takes everything");
});

test("while loading nothing expires; after it, what has expired is gone", () => {
  const aof = aofOf([
    ["SET", "k", "5", "PXAT", "2000"],
    ["INCR", "k"], // at run time k had not expired yet
    ["SET", "k2", "x", "PXAT", "2000"],
    ["SET", "k2", "y", "NX"], // nor had k2: NX failed then, and must fail on replay
  ]);
  let t = 1500;
  const early = makeEngine(1024 * 1024, {}, () => t).engine;
  loadAof(early, aof);
  const s = early.connect();
  assert.equal(run(early, s, "GET", "k"), "$1\r\n6\r\n");
  assert.equal(run(early, s, "GET", "k2"), "$1\r\nx\r\n");
  assert.equal(run(early, s, "PTTL", "k"), ":500\r\n");
  t = 5000;
  const late = makeEngine(1024 * 1024, {}, () => t).engine;
  assert.equal(loadAof(late, aof).commands, 4);
  const s2 = late.connect();
  assert.equal(run(late, s2, "GET", "k"), "$-1\r\n");
  assert.equal(run(late, s2, "GET", "k2"), "$-1\r\n");
});

test("a last record cut short anywhere is ignored and reported; refused when asked", () => {
  const head = aofOf([
    ["SET", "a", "1"],
    ["RPUSH", "l", "x", "y"],
  ]);
  const last = aofOf([["SET", "b", "a value\r\nwith a line break"]]);
  const whole = new Uint8Array(head.length + last.length);
  whole.set(head);
  whole.set(last, head.length);
  for (let cut = 1; cut < last.length; cut++) {
    const bytes = whole.subarray(0, head.length + cut);
    const { engine } = makeEngine(1024 * 1024);
    const r = loadAof(engine, bytes);
    assert.deepEqual(
      r,
      { commands: 2, validBytes: head.length, truncatedBytes: cut },
      `cut at ${cut}`,
    );
    const s = engine.connect();
    assert.equal(run(engine, s, "GET", "a"), "$1\r\n1\r\n");
    assert.equal(run(engine, s, "EXISTS", "b"), ":0\r\n");
    assert.throws(
      () => loadAof(makeEngine(1024 * 1024).engine, bytes, { allowTruncated: false }),
      (e: unknown) =>
        e instanceof AofFormatError && e.offset === head.length && e.code === "EXO_ERR_IO",
    );
  }
  const { engine } = makeEngine(1024 * 1024);
  assert.deepEqual(loadAof(engine, whole), {
    commands: 3,
    validBytes: whole.length,
    truncatedBytes: 0,
  });
});

test("garbage in the middle and unknown commands refuse the file, saying where", () => {
  const a = aofOf([["SET", "a", "1"]]);
  const b = aofOf([["SET", "b", "2"]]);
  const cases: [Uint8Array, RegExp, number][] = [
    [
      Buffer.concat([a, Buffer.from("garbage\r\n"), b]),
      /bad record at byte 27: expected '\*', got 'g'/,
      a.length,
    ],
    [
      Buffer.concat([a, Buffer.from("*2\r\n$3\r\nGET\r\n:1\r\n"), b]),
      /expected '\$', got ':'/,
      a.length,
    ],
    [Buffer.concat([a, Buffer.from("*x\r\n"), b]), /invalid multibulk length/, a.length],
    [
      Buffer.concat([a, aofOf([["NOSUCH", "x"]]), b]),
      /unknown command 'NOSUCH' in the record at byte 27/,
      a.length,
    ],
  ];
  for (const [bytes, message, offset] of cases) {
    assert.throws(
      () => loadAof(makeEngine(1024 * 1024).engine, bytes),
      (e: unknown) => e instanceof AofFormatError && message.test(e.message) && e.offset === offset,
      message.source,
    );
  }
});
