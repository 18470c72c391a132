/**
 * kv-server on the machine: the Redis-protocol server (programs/kv-server.ts) runs on a real
 * exocore machine — `exocore run … --net --disk IMAGE` in a child process: hypervisor with the
 * NIC and NVMe models, network and storage domains, two XOS cores — and real clients talk to
 * it over 127.0.0.1 through the NIC's offload engine, the network domain's sockets, the
 * syscall rings and the cores' MMU. (test/kv-diff.test.ts checks the engine alone, in-process.)
 *
 *   1. differential: the same commands to the machine and to a real redis-server — over a raw
 *      socket one at a time, pipelined, inline; with redis-cli reading stdin and taking argv;
 *      redis-cli --scan — byte for byte, with replies whose order Redis leaves open (SMEMBERS,
 *      KEYS, SCAN, SPOP) compared as sets and positive TTLs as "in (0, the TTL given]"; expiry,
 *      lazy and active
 *   2. redis-benchmark -P 1 and -P 16 runs to the end with no error; the data it leaves is right
 *   3. malformed RESP: the connection gets Redis's error and is closed; a client connected at
 *      the same time keeps working; keys stored before are intact
 *   4. persistence: appendfsync always survives a SIGKILL of the whole machine process with
 *      every acknowledged write (and the image passes fsck); everysec keeps everything across
 *      a clean exit
 *   5. 50 concurrent redis-cli processes on one counter and their own keys: exact totals
 *
 * One machine (AOF everysec) serves 1, 2, 3 and 5; the persistence tests boot their own.
 * A client program that is not installed skips its test, saying so.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decodeReply, encodeCommand, type Reply, RespClient } from "./fixtures/kv-client.js";
import {
  cliLine,
  ExocoreProcess,
  exocore,
  installed,
  killAll,
  mkfs,
  parseBenchmark,
  RedisServer,
  redisBenchmark,
  redisCli,
} from "./fixtures/kv-server-host.js";

const haveCli = installed("redis-cli");
const haveRedis = installed("redis-server");
const haveBench = installed("redis-benchmark");
const needRedis = haveRedis ? false : "redis-server is not installed";
const needBoth =
  haveRedis && haveCli ? false : "redis-server and redis-cli (Redis 7) are not installed";

/** A hang guard, not a speed limit: a server that never answers fails the test. */
const HANG = { timeout: 20_000 };

let work = "";
/** The machine that serves tests 1, 2, 3 and 5. */
let kv: ExocoreProcess;
/** A real Redis to compare with, when installed. */
let redis: RedisServer | null = null;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "exocore-kv-server-"));
  const image = join(work, "shared.img");
  await mkfs(image, 64);
  kv = await ExocoreProcess.start({
    disk: image,
    args: ["--aof", "/shared.aof", "--appendfsync", "everysec"],
  });
  if (haveRedis) redis = await RedisServer.start();
});

after(async () => {
  await killAll(); // a machine a failed test left behind
  await kv?.stop();
  await redis?.stop();
  rmSync(work, { recursive: true, force: true });
});

// ---- comparing replies ----

/** How two replies are compared: exact bytes, as sets, or as TTLs read at different times. */
type Mode = "=" | "set" | "ttl" | "scan";

interface Case {
  readonly args: readonly string[];
  readonly mode: Mode;
  /** Where a channel needs a reply of a defined order: a command with the same effect. */
  readonly alt?: readonly string[];
  /** Mode "ttl": the time the key was given; both replies must lie in (0, max]. */
  readonly max?: number;
}

const e = (...args: string[]): Case => ({ args, mode: "=" });
const asSet = (...args: string[]): Case => ({ args, mode: "set" });
const ttl = (max: number, ...args: string[]): Case => ({ args, mode: "ttl", max });
const scan = (...args: string[]): Case => ({ args, mode: "scan" });

const text = (r: Reply): string =>
  JSON.stringify(r, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v));

/** A multi-bulk reply's items as a sorted list of their text (a set, duplicates kept). */
function members(r: Reply): string[] | null {
  if (r.t !== "*" || r.v === null) return null;
  return r.v.map(text).sort();
}

/** Assert that the machine's reply `got` matches Redis's `want` under `mode`. */
function sameReply(c: Case, got: Buffer, want: Buffer): void {
  const what = c.args.join(" ").slice(0, 80);
  if (c.mode === "=") {
    assert.equal(got.toString("latin1"), want.toString("latin1"), what);
    return;
  }
  const g = decodeReply(got).r;
  const w = decodeReply(want).r;
  if (c.mode === "set") {
    const gm = members(g);
    if (gm === null) assert.equal(got.toString("latin1"), want.toString("latin1"), what);
    else assert.deepEqual(gm, members(w), what);
    return;
  }
  // a positive TTL: each server reads its own clock at its own moment, so the values may
  // differ; both must be counting down from the time the key was given
  assert.equal(g.t, ":", what);
  assert.equal(w.t, ":", what);
  for (const v of [Number(g.v), Number(w.v)])
    assert.ok(v > 0 && v <= (c.max as number), `${what}: ${v} not in (0, ${c.max}]`);
}

/** Every key a SCAN with these arguments visits, iterating the cursor back to 0. */
async function scanAll(client: RespClient, args: readonly string[]): Promise<string[]> {
  const keys = new Set<string>();
  let cursor = "0";
  do {
    const r = decodeReply(await client.command(["SCAN", cursor, ...args.slice(2)])).r;
    assert.equal(r.t, "*");
    const [cur, items] = r.v as [Reply, Reply];
    cursor = cur.v as string;
    for (const k of items.v as Reply[]) keys.add(k.v as string);
  } while (cursor !== "0");
  return [...keys].sort();
}

/** The command lines of `cases` whose replies have a defined order (or their stand-ins). */
function ordered(cases: readonly Case[]): (readonly string[])[] {
  const out: (readonly string[])[] = [];
  for (const c of cases) {
    if (c.mode === "=") out.push(c.args);
    else if (c.alt !== undefined) out.push(c.alt);
  }
  return out;
}

// ---- 1. differential ----

/** One sequence from an empty database: every data type, its errors, expiry, patterns. */
const SEQUENCE: Case[] = [
  e("FLUSHALL"),
  e("PING"),
  e("PING", "hello"),
  e("ECHO", "x y"),
  e("DBSIZE"),
  // strings
  e("SET", "s", "v"),
  e("GET", "s"),
  e("SET", "s", "w", "NX"),
  e("SET", "s", "w", "XX"),
  e("GET", "s"),
  e("SET", "t", "x", "XX"),
  e("GET", "t"),
  e("SET", "s", "v2", "GET"),
  e("GETSET", "s", "v3"),
  e("GETSET", "nokey", "z"),
  e("SET", "s", "v", "NX", "XX"),
  e("SET", "s", "v", "FOO"),
  e("MSET", "a", "1", "b", "2", "c", "3"),
  e("MSET", "a", "1", "b"),
  e("MGET", "a", "b", "nokey", "c"),
  e("APPEND", "a", "23"),
  e("APPEND", "new", "abc"),
  e("STRLEN", "a"),
  e("STRLEN", "nokey"),
  e("SETNX", "a", "z"),
  e("SETNX", "d", "4"),
  e("EXISTS", "a", "a", "nokey"),
  e("TYPE", "a"),
  e("TYPE", "nokey"),
  e("DEL", "a", "nokey", "d"),
  e("SET", "bin", "a\x00b\r\nc\xff"),
  e("GET", "bin"),
  e("STRLEN", "bin"),
  e("SET", "big", "0123456789".repeat(10_000)), // 100 KB: more than one recv on the machine
  e("GET", "big"),
  // expiry: what does not depend on the clock, and positive TTLs as a range
  e("SET", "e", "v", "EX", "0"),
  e("SET", "e", "v", "EX", "-5"),
  e("SET", "e", "v", "EX", "x"),
  e("SET", "e", "v", "EX", "10", "PX", "10"),
  e("SET", "e", "v"),
  e("TTL", "e"),
  e("PTTL", "e"),
  e("TTL", "nokey"),
  e("EXPIRE", "e", "100"),
  e("EXPIRE", "e", "100", "NX"),
  ttl(100, "TTL", "e"),
  ttl(100_000, "PTTL", "e"),
  e("PERSIST", "e"),
  e("PERSIST", "e"),
  e("TTL", "e"),
  e("SETEX", "e", "0", "v"),
  e("SETEX", "se", "100", "v"),
  ttl(100, "TTL", "se"),
  e("EXPIREAT", "e", "1"),
  e("EXISTS", "e"),
  e("GET", "e"),
  e("SET", "e", "v", "PX", "100000"),
  e("PEXPIRE", "e", "0"),
  e("GET", "e"),
  e("EXPIRE", "e"),
  // counters, overflow
  e("INCR", "n"),
  e("INCRBY", "n", "100"),
  e("DECRBY", "n", "-5"),
  e("DECR", "n"),
  e("INCRBY", "n", "x"),
  e("INCRBY", "n", "1.5"),
  e("INCRBY", "n", "99999999999999999999"),
  e("SET", "n", "9223372036854775806"),
  e("INCR", "n"),
  e("INCR", "n"),
  e("GET", "n"),
  e("INCRBY", "n", "1"),
  e("SET", "n", "-9223372036854775807"),
  e("DECR", "n"),
  e("DECR", "n"),
  e("DECRBY", "n", "-9223372036854775808"),
  e("SET", "n", "1.5"),
  e("INCR", "n"),
  e("SET", "n", "007"),
  e("INCR", "n"),
  e("INCR", "s"),
  // lists
  e("LPUSH", "l", "a", "b", "c"),
  e("RPUSH", "l", "d", "e"),
  e("LRANGE", "l", "0", "-1"),
  e("LRANGE", "l", "-2", "-1"),
  e("LRANGE", "l", "a", "b"),
  e("LINDEX", "l", "0"),
  e("LINDEX", "l", "99"),
  e("LLEN", "l"),
  e("LPOP", "l"),
  e("RPOP", "l", "2"),
  e("LPOP", "l", "0"),
  e("LPOP", "nokey"),
  e("LRANGE", "l", "0", "-1"),
  e("LPUSH", "l"),
  // sets
  e("SADD", "st", "a", "b", "c", "a"),
  e("SCARD", "st"),
  e("SISMEMBER", "st", "a"),
  e("SISMEMBER", "st", "z"),
  asSet("SMEMBERS", "st"),
  e("SREM", "st", "a", "z"),
  { args: ["SPOP", "st", "10"], mode: "set", alt: ["DEL", "st"] },
  e("EXISTS", "st"),
  e("SADD", "st", "only"),
  e("SPOP", "st"),
  e("SPOP", "st", "-1"),
  e("SMEMBERS", "nokey"),
  // hashes
  e("HSET", "h", "f1", "v1", "f2", "v2"),
  e("HSET", "h", "f1", "v1b", "f3", "v3"),
  e("HGET", "h", "f1"),
  e("HGET", "h", "zz"),
  e("HMGET", "h", "f1", "zz", "f2"),
  e("HGETALL", "h"),
  e("HLEN", "h"),
  e("HEXISTS", "h", "f2"),
  e("HDEL", "h", "f2", "zz"),
  e("HGETALL", "h"),
  e("HSET", "h", "f"),
  // sorted sets
  e("ZADD", "z", "1", "a", "2", "b", "1.5", "c"),
  e("ZADD", "z", "CH", "5", "a", "7", "new"),
  e("ZADD", "z", "NX", "XX", "1", "a"),
  e("ZADD", "z", "x", "a"),
  e("ZINCRBY", "z", "2.5", "b"),
  e("ZSCORE", "z", "b"),
  e("ZRANGE", "z", "0", "-1", "WITHSCORES"),
  e("ZRANGE", "z", "0", "-1", "REV"),
  e("ZRANGE", "z", "(1", "5", "BYSCORE"),
  e("ZCARD", "z"),
  e("ZREM", "z", "a", "nosuch"),
  e("ZPOPMIN", "z"),
  e("ZPOPMAX", "z", "2"),
  e("ZADD", "z", "inf", "i", "-inf", "ni", "0.1", "f"),
  e("ZRANGE", "z", "0", "-1", "WITHSCORES"),
  // wrong types
  e("GET", "l"),
  e("LPUSH", "s", "x"),
  e("SADD", "h", "x"),
  e("HGET", "st", "x"),
  e("ZADD", "l", "1", "x"),
  e("INCR", "l"),
  e("LRANGE", "z", "0", "-1"),
  e("SMEMBERS", "z"),
  e("APPEND", "l", "x"),
  e("ZSCORE", "h", "f"),
  // unknown commands, arity
  e("FOO"),
  e("foo", "a", "b c"),
  e(""),
  e("GET"),
  e("SET", "s"),
  e("LPUSH", "l"),
  e("ZADD", "z", "1"),
  e("HGETALL"),
  e("CONFIG", "GET"),
  e("PING", "a", "b"),
  e("DBSIZE"),
  // KEYS and SCAN patterns
  e("FLUSHALL"),
  e(
    "MSET",
    ...["hello", "hallo", "hxllo", "hllo", "heeeello", "user:1", "user:2", "user:10"]
      .concat(["a*b", "a?b", "ab"])
      .flatMap((k) => [k, `v-${k}`]),
  ),
  e("RPUSH", "list:1", "x"),
  e("SADD", "set:1", "x"),
  asSet("KEYS", "*"),
  asSet("KEYS", "h?llo"),
  asSet("KEYS", "h*llo"),
  asSet("KEYS", "h[ae]llo"),
  asSet("KEYS", "h[^e]llo"),
  asSet("KEYS", "h[a-b]llo"),
  asSet("KEYS", "user:?"),
  asSet("KEYS", "user:*"),
  asSet("KEYS", "a\\*b"),
  asSet("KEYS", "a?b"),
  asSet("KEYS", "*:1*"),
  e("KEYS", "nomatch*"),
  scan("SCAN", "0"),
  scan("SCAN", "0", "MATCH", "user:*", "COUNT", "2"),
  scan("SCAN", "0", "MATCH", "h*llo"),
  scan("SCAN", "0", "TYPE", "list"),
  e("SCAN", "x"),
  e("SCAN", "0", "COUNT", "0"),
  e("SCAN", "0", "FOO"),
  e("DBSIZE"),
];

describe("the same replies as redis-server, through the machine", { skip: needRedis }, () => {
  test("raw socket, one command at a time: byte-exact RESP replies", async () => {
    const mine = await RespClient.connect(kv.port);
    const ref = await RespClient.connect((redis as RedisServer).port);
    try {
      for (const c of SEQUENCE) {
        if (c.mode === "scan") {
          assert.deepEqual(
            await scanAll(mine, c.args),
            await scanAll(ref, c.args),
            c.args.join(" "),
          );
        } else {
          sameReply(c, await mine.command(c.args), await ref.command(c.args));
        }
      }
    } finally {
      mine.end();
      ref.end();
    }
  });

  test("raw socket, the whole sequence pipelined in one write", async () => {
    const cases = SEQUENCE.filter((c) => c.mode !== "scan");
    const bytes = Buffer.concat(cases.map((c) => encodeCommand(c.args)));
    const mine = await RespClient.connect(kv.port);
    const ref = await RespClient.connect((redis as RedisServer).port);
    try {
      mine.send(bytes);
      ref.send(bytes);
      for (const c of cases) sameReply(c, await mine.reply(), await ref.reply());
    } finally {
      mine.end();
      ref.end();
    }
  });

  test("inline commands, mixed with multibulk, and QUIT", async () => {
    const stream = Buffer.concat([
      Buffer.from("PING\r\nSET inl \"a b\\x41\"\r\nGET inl\r\n\r\nECHO 'x y'\r\n", "latin1"),
      encodeCommand(["APPEND", "inl", "!"]),
      Buffer.from("get inl\nDEL inl\r\nnosuch a\r\nPING\r\n", "latin1"),
      encodeCommand(["QUIT"]),
      Buffer.from("PING\r\n", "latin1"), // after QUIT: never answered
    ]);
    const got: string[] = [];
    for (const port of [kv.port, (redis as RedisServer).port]) {
      const c = await RespClient.connect(port);
      c.send(stream);
      got.push((await c.untilClosed()).toString("latin1"));
    }
    assert.equal(got[0], got[1]);
    assert.match(got[0] as string, /^\+PONG\r\n\+OK\r\n\$4\r\na bA\r\n.*\+OK\r\n$/s);
  });

  test("expiry: a key past its time is gone for every command; TTL and PTTL count down", async () => {
    const mine = await RespClient.connect(kv.port);
    const ref = await RespClient.connect((redis as RedisServer).port);
    const both = async (c: Case): Promise<void> =>
      sameReply(c, await mine.command(c.args), await ref.command(c.args));
    try {
      for (const c of [
        e("FLUSHALL"),
        e("SET", "k1", "v", "PX", "50"),
        e("SET", "k2", "v", "EX", "100"),
        e("SET", "k3", "v"),
        e("PEXPIRE", "k3", "60"),
        e("RPUSH", "k4", "x"),
        e("PEXPIREAT", "k4", String(Date.now() + 70)),
        ttl(100, "TTL", "k2"),
        ttl(100_000, "PTTL", "k2"),
      ])
        await both(c);
      await new Promise((r) => setTimeout(r, 250)); // every short expiry is now in the past
      for (const c of [
        e("GET", "k1"),
        e("EXISTS", "k1", "k3", "k4"),
        e("TTL", "k1"),
        e("PTTL", "k3"),
        e("LLEN", "k4"),
        e("LPUSH", "k1", "fresh"),
        e("LRANGE", "k1", "0", "-1"),
        e("TTL", "k1"),
        asSet("KEYS", "*"),
        ttl(100, "TTL", "k2"),
      ])
        await both(c);
    } finally {
      mine.end();
      ref.end();
    }
  });

  test("active expiry: keys nobody touches again are removed in the background", HANG, async () => {
    for (const port of [kv.port, (redis as RedisServer).port]) {
      const c = await RespClient.connect(port);
      await c.command(["FLUSHALL"]);
      await c.command(["SET", "stays", "v"]);
      for (let i = 0; i < 40; i++) await c.command(["SET", `short:${i}`, "v", "PX", "20"]);
      // DBSIZE counts keys not yet reclaimed; only the expiry cycle can bring it down to 1
      while ((await c.command(["DBSIZE"])).toString() !== ":1\r\n")
        await new Promise((r) => setTimeout(r, 50));
      assert.equal((await c.command(["GET", "stays"])).toString(), "$1\r\nv\r\n");
      c.end();
    }
  });

  test("redis-cli reading commands on stdin prints the same bytes", {
    skip: needBoth,
  }, async () => {
    const script = `${ordered(SEQUENCE).map(cliLine).join("\n")}\n`;
    const mine = await redisCli(kv.port, [], script);
    const ref = await redisCli((redis as RedisServer).port, [], script);
    assert.equal(mine.stderr, ref.stderr);
    assert.equal(mine.code, ref.code);
    assert.ok(ref.stdout.length > 100_000, "the script ran to its end");
    assert.equal(mine.stdout.toString("latin1"), ref.stdout.toString("latin1"));
  });

  test("redis-cli with the command as arguments: same output and exit status", {
    skip: needBoth,
  }, async () => {
    const cases: Case[] = [
      e("FLUSHALL"),
      e("SET", "s", "v a"),
      e("GET", "s"),
      e("INCR", "s"),
      e("MSET", "a", "1", "b", "2"),
      e("MGET", "a", "b", "nokey"),
      e("INCRBY", "a", "-5"),
      e("RPUSH", "l", "a", "b", "c"),
      e("LRANGE", "l", "0", "-1"),
      e("SADD", "st", "a", "b", "c"),
      asSet("SMEMBERS", "st"),
      e("HSET", "h", "f", "v", "g", "w"),
      e("HGETALL", "h"),
      e("ZADD", "z", "1", "a", "2.5", "b"),
      e("ZRANGE", "z", "0", "-1", "WITHSCORES"),
      asSet("KEYS", "*"),
      e("GET", "l"),
      e("FOO", "bar"),
      e("GET"),
      e("SET", "n", "9223372036854775807"),
      e("INCR", "n"),
      e("SET", "line", "x\ny"),
      e("GET", "line"),
      e("TTL", "s"),
    ];
    for (const c of cases) {
      const mine = await redisCli(kv.port, c.args);
      const ref = await redisCli((redis as RedisServer).port, c.args);
      const what = c.args.join(" ");
      assert.equal(mine.code, ref.code, what);
      assert.equal(mine.stderr, ref.stderr, what);
      const lines = (b: Buffer) => {
        const l = b.toString("latin1").split("\n");
        return c.mode === "set" ? l.sort() : l;
      };
      assert.deepEqual(lines(mine.stdout), lines(ref.stdout), what);
    }
  });

  test("redis-cli --scan --pattern visits the same keys", { skip: needBoth }, async () => {
    const setup = `FLUSHALL\n${Array.from({ length: 300 }, (_, i) => `SET key:${i} ${i}\nSADD set:${i % 7} ${i}`).join("\n")}\n`;
    await redisCli(kv.port, [], setup);
    await redisCli((redis as RedisServer).port, [], setup);
    for (const args of [
      ["--scan"],
      ["--scan", "--pattern", "key:1*"],
      ["--scan", "--pattern", "set:*"],
      ["--scan", "--pattern", "*:2?"],
    ]) {
      const mine = await redisCli(kv.port, args);
      const ref = await redisCli((redis as RedisServer).port, args);
      const keys = (b: Buffer) => [...new Set(b.toString("latin1").split("\n"))].sort();
      assert.equal(mine.code, 0, mine.stderr);
      assert.deepEqual(keys(mine.stdout), keys(ref.stdout), args.join(" "));
    }
    const all = await redisCli(kv.port, ["--scan"]);
    assert.equal(new Set(all.stdout.toString().trim().split("\n")).size, 307);
  });
});

// ---- 2. redis-benchmark ----

test("redis-benchmark -P 1 and -P 16 run to the end with no error, and leave the right data", {
  skip: haveBench && haveCli ? false : "redis-benchmark / redis-cli are not installed",
}, async (t) => {
  const TESTS = ["SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET", "MSET (10 keys)"];
  assert.equal((await redisCli(kv.port, ["FLUSHALL"])).stdout.toString(), "OK\n");
  for (const pipeline of ["1", "16"]) {
    const r = await redisBenchmark(kv.port, [
      ...["-q", "-n", "2000", "-c", "20", "-P", pipeline],
      ...["-t", "set,get,incr,lpush,lpop,sadd,hset,mset"],
    ]);
    const out = r.stdout.toString("latin1");
    assert.equal(r.code, 0, `${out}\n${r.stderr}`);
    assert.doesNotMatch(out + r.stderr, /error|warning/i);
    const lines = parseBenchmark(out);
    assert.deepEqual(
      lines.map((l) => l.test),
      TESTS,
      out,
    );
    for (const l of lines) assert.ok(l.rps > 0, `${l.test} -P ${pipeline}: ${l.rps}`);
    t.diagnostic(
      `redis-benchmark -P ${pipeline} on the machine: ${lines.map((l) => `${l.test} ${Math.round(l.rps)}`).join(", ")} rps`,
    );
  }
  // Without -r every key is literal: 2 × 2000 INCRs on one counter, every LPUSH popped again.
  const cli = async (...args: string[]) => (await redisCli(kv.port, args)).stdout.toString().trim();
  assert.equal(await cli("DBSIZE"), "4");
  assert.equal(await cli("GET", "counter:__rand_int__"), "4000");
  assert.equal(await cli("STRLEN", "key:__rand_int__"), "3");
  assert.equal(await cli("EXISTS", "mylist"), "0");
  assert.equal(await cli("SMEMBERS", "myset"), "element:__rand_int__");
  const hash = (await cli("HGETALL", "myhash")).split("\n");
  assert.equal(hash.length, 2);
  assert.equal(hash[0], "element:__rand_int__");
  assert.equal(hash[1]?.length, 3);
});

// ---- 3. malformed RESP ----

interface Malformed {
  readonly name: string;
  readonly bytes: string;
  /** The whole reply before the server closes the connection. */
  readonly reply: string;
  /** Redis answers this the same way (false where only our limits apply). */
  readonly redis: boolean;
}

const MALFORMED: Malformed[] = [
  {
    name: "a multibulk length that is not a number",
    bytes: "*abc\r\n",
    reply: "-ERR Protocol error: invalid multibulk length\r\n",
    redis: true,
  },
  {
    name: "a multibulk length over INT_MAX",
    bytes: "*3000000000\r\n",
    reply: "-ERR Protocol error: invalid multibulk length\r\n",
    redis: true,
  },
  {
    name: "a bulk length that is not a number",
    bytes: "*1\r\n$abc\r\n",
    reply: "-ERR Protocol error: invalid bulk length\r\n",
    redis: true,
  },
  {
    name: "a negative bulk length",
    bytes: "*2\r\n$3\r\nGET\r\n$-5\r\n",
    reply: "-ERR Protocol error: invalid bulk length\r\n",
    redis: true,
  },
  {
    name: "a bulk length over the server's 16 MiB limit",
    bytes: "*2\r\n$3\r\nSET\r\n$20000000\r\n",
    reply: "-ERR Protocol error: invalid bulk length\r\n",
    redis: false, // Redis's limit is 512 MiB: it would wait for the 20 MB
  },
  {
    name: "a bulk length over Redis's 512 MiB limit too",
    bytes: "*2\r\n$3\r\nSET\r\n$600000000\r\n",
    reply: "-ERR Protocol error: invalid bulk length\r\n",
    redis: true,
  },
  {
    name: "garbage where a bulk header should be",
    bytes: "*1\r\nGET\r\n",
    reply: "-ERR Protocol error: expected '$', got 'G'\r\n",
    redis: true,
  },
  {
    name: "an inline command with unbalanced quotes",
    bytes: 'SET "a b\r\n',
    reply: "-ERR Protocol error: unbalanced quotes in request\r\n",
    redis: true,
  },
  {
    name: "an inline line longer than 64 KiB",
    bytes: "x".repeat(70_000),
    reply: "-ERR Protocol error: too big inline request\r\n",
    redis: true,
  },
  {
    name: "good commands, then garbage in the same write",
    bytes:
      "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$6\r\nbefore\r\n*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n",
    reply: "+PONG\r\n$7\r\nintact!\r\n-ERR Protocol error: invalid bulk length\r\n",
    redis: true,
  },
];

describe("malformed RESP closes that connection only", () => {
  let bystander: RespClient;

  before(async () => {
    bystander = await RespClient.connect(kv.port);
    assert.equal((await bystander.command(["FLUSHALL"])).toString(), "+OK\r\n");
    assert.equal((await bystander.command(["SET", "before", "intact!"])).toString(), "+OK\r\n");
    assert.equal((await bystander.command(["RPUSH", "list", "a", "b"])).toString(), ":2\r\n");
  });

  after(async () => {
    // keys stored before every bad client are still there, and the bystander never dropped
    assert.equal((await bystander.command(["GET", "before"])).toString(), "$7\r\nintact!\r\n");
    assert.equal(
      (await bystander.command(["LRANGE", "list", "0", "-1"])).toString(),
      "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    );
    assert.equal((await bystander.command(["DBSIZE"])).toString(), ":2\r\n");
    assert.equal(bystander.closed, false);
    bystander.end();
  });

  /** The bystander's connection still works, and sees the store unchanged. */
  async function bystanderWorks(): Promise<void> {
    assert.equal((await bystander.command(["PING"])).toString(), "+PONG\r\n");
    assert.equal((await bystander.command(["GET", "before"])).toString(), "$7\r\nintact!\r\n");
  }

  for (const m of MALFORMED) {
    test(`${m.name}: Redis's error, then the connection is closed`, HANG, async () => {
      const bad = await RespClient.connect(kv.port);
      bad.send(m.bytes);
      const got = (await bad.untilClosed()).toString("latin1");
      assert.equal(got, m.reply);
      await bystanderWorks();
      if (m.redis && redis !== null) {
        const ref = await RespClient.connect(redis.port);
        assert.equal((await ref.command(["SET", "before", "intact!"])).toString(), "+OK\r\n");
        ref.send(m.bytes);
        assert.equal((await ref.untilClosed()).toString("latin1"), got, "the same as Redis");
      }
    });
  }

  test(
    "binary garbage as an inline command: an unknown-command error, the connection stays",
    HANG,
    async () => {
      const garbage = "\x01\xfe\x7fjunk \x80\x90 \x1b[0m\r\n";
      const bad = await RespClient.connect(kv.port);
      bad.send(garbage);
      const got = (await bad.reply()).toString("latin1");
      const head = "-ERR unknown command '\x01\xfe\x7fjunk', with args beginning with: ";
      assert.ok(got.startsWith(head), JSON.stringify(got));
      assert.equal((await bad.command(["PING"])).toString(), "+PONG\r\n");
      bad.end();
      if (redis !== null) {
        const ref = await RespClient.connect(redis.port);
        ref.send(garbage);
        assert.equal((await ref.reply()).toString("latin1"), got, "the same as Redis");
        ref.end();
      }
      await bystanderWorks();
    },
  );

  test(
    "a command cut off by the client closing: no reply, the server closes its end too",
    HANG,
    async () => {
      const rest = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const s = net.connect(kv.port, "127.0.0.1", () => s.end("*1\r\n$3\r\nGE")); // FIN mid-command
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("end", () => resolve(Buffer.concat(chunks)));
        s.on("error", reject);
      });
      assert.equal(rest.length, 0);
      await bystanderWorks();
      // and a reset in the middle of a bulk string
      const s = net.connect(kv.port, "127.0.0.1");
      await new Promise<void>((resolve) => s.once("connect", () => resolve()));
      s.write("*3\r\n$3\r\nSET\r\n$6\r\nbefore\r\n$100\r\nhalf");
      await new Promise((r) => setTimeout(r, 50));
      s.resetAndDestroy();
      await bystanderWorks();
    },
  );

  test("a client sending half a command does not hold up another", HANG, async () => {
    const slow = await RespClient.connect(kv.port);
    slow.send("*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$5\r\nva");
    await bystanderWorks(); // answered while `slow` waits for the rest of its value
    assert.equal((await bystander.command(["EXISTS", "slow"])).toString(), ":0\r\n");
    slow.send("lue\r\n");
    assert.equal((await slow.reply()).toString(), "+OK\r\n");
    assert.equal((await bystander.command(["GET", "slow"])).toString(), "$5\r\nvalue\r\n");
    assert.equal((await bystander.command(["DEL", "slow"])).toString(), ":1\r\n");
    slow.end();
  });
});

// ---- 5. many clients ----

test("50 concurrent redis-cli processes: INCR on one key and SET/GET on their own: exact totals", {
  skip: haveCli ? false : "redis-cli is not installed",
}, async () => {
  const CLIENTS = 50;
  const ROUNDS = 30;
  assert.equal((await redisCli(kv.port, ["FLUSHALL"])).stdout.toString(), "OK\n");
  const runs = Array.from({ length: CLIENTS }, (_, i) => {
    const lines: string[] = [];
    for (let j = 0; j < ROUNDS; j++) {
      lines.push("INCR counter", `SET own:${i}:${j} value-${i}-${j}`, `GET own:${i}:${j}`);
      lines.push(`SADD members ${i}:${j}`);
    }
    return redisCli(kv.port, [], `${lines.join("\n")}\n`);
  });
  const results = await Promise.all(runs);
  const incrs: number[] = [];
  results.forEach((r, i) => {
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.toString().split("\n");
    assert.equal(out.length, ROUNDS * 4 + 1, `client ${i}`);
    for (let j = 0; j < ROUNDS; j++) {
      const n = Number(out[j * 4]);
      if (j > 0) assert.ok(n > (incrs.at(-1) as number), `client ${i}: INCR replies grow`);
      incrs.push(n);
      assert.equal(out[j * 4 + 1], "OK");
      assert.equal(out[j * 4 + 2], `value-${i}-${j}`, `client ${i} round ${j}`);
      assert.equal(out[j * 4 + 3], "1");
    }
  });
  // every INCR got a different count: 1 … total, each exactly once
  incrs.sort((a, b) => a - b);
  assert.deepEqual(
    incrs,
    Array.from({ length: CLIENTS * ROUNDS }, (_, k) => k + 1),
  );
  const check = await RespClient.connect(kv.port);
  try {
    const total = String(CLIENTS * ROUNDS);
    assert.equal(
      (await check.command(["GET", "counter"])).toString(),
      `$${total.length}\r\n${total}\r\n`,
    );
    assert.equal((await check.command(["SCARD", "members"])).toString(), `:${total}\r\n`);
    assert.equal((await check.command(["DBSIZE"])).toString(), `:${CLIENTS * ROUNDS + 2}\r\n`);
    for (let i = 0; i < CLIENTS; i++) {
      const keys = Array.from({ length: ROUNDS }, (_, j) => `own:${i}:${j}`);
      const got = decodeReply(await check.command(["MGET", ...keys])).r;
      assert.deepEqual(
        (got.v as Reply[]).map((r) => r.v),
        keys.map((_, j) => `value-${i}-${j}`),
      );
    }
  } finally {
    check.end();
  }
});

test("the shared machine saw no worker failure and shuts down cleanly", async () => {
  const exit = await kv.stop();
  assert.deepEqual(kv.failures(), []);
  assert.equal(exit.signal, null, kv.stderr);
});

// ---- 4. persistence ----

/** Send SET key value for every pair in one write per batch. */
function setBatch(pairs: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(pairs.map(([k, v]) => encodeCommand(["SET", k, v])));
}

/** The values of `keys` on a server (null: no such key), read with MGET in chunks. */
async function values(c: RespClient, keys: readonly string[]): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  for (let at = 0; at < keys.length; at += 500) {
    const r = decodeReply(await c.command(["MGET", ...keys.slice(at, at + 500)])).r;
    for (const item of r.v as Reply[]) out.push(item.v as string | null);
  }
  return out;
}

describe("persistence on the machine's filesystem", { timeout: 60_000 }, () => {
  test("appendfsync always: every acknowledged write survives a SIGKILL of the machine", async (t) => {
    const image = join(work, "kill.img");
    await mkfs(image, 32);
    const srv = await ExocoreProcess.start({
      disk: image,
      args: ["--aof", "/kv.aof", "--appendfsync", "always"],
    });
    const sent = new Map<string, string>();
    const acked = new Map<string, string>();
    // one at a time: each reply means the write is on the disk
    const one = await RespClient.connect(srv.port);
    for (let i = 0; i < 40; i++) {
      const k = `one:${i}`;
      const v = `v${i}:${"x".repeat(i * 7)}`;
      sent.set(k, v);
      assert.equal((await one.command(["SET", k, v])).toString(), "+OK\r\n");
      acked.set(k, v);
    }
    for (let i = 1; i <= 10; i++)
      assert.equal((await one.command(["INCR", "counter"])).toString(), `:${i}\r\n`);
    // pipelined on two connections: keep up to WINDOW SETs in flight on each, and SIGKILL the
    // machine's process once KILL_AT of them are acknowledged, just after sending more
    const WINDOW = 200;
    const BATCH = 50;
    const KILL_AT = 600;
    let pipelinedAcks = 0;
    let killed = false;
    let inFlightAtKill = 0;
    const conns = [await RespClient.connect(srv.port), await RespClient.connect(srv.port)];
    await Promise.all(
      conns.map(async (conn, c) => {
        const queue: string[] = [];
        let next = 0;
        /** Top the window up (and send at least `min` more). */
        const refill = (min: number): void => {
          const pairs: [string, string][] = [];
          while (queue.length + pairs.length < WINDOW || pairs.length < min) {
            for (let b = 0; b < BATCH; b++, next++) {
              const k = `pipe:${c}:${next}`;
              const v = `${c}-${next}-${"y".repeat(next % 50)}`;
              sent.set(k, v);
              pairs.push([k, v]);
            }
          }
          for (const [k] of pairs) queue.push(k);
          if (pairs.length > 0) conn.send(setBatch(pairs));
        };
        refill(0);
        for (;;) {
          let r: Buffer;
          try {
            r = await conn.reply();
          } catch {
            return; // the machine is gone: what came before is all that was acknowledged
          }
          assert.equal(r.toString(), "+OK\r\n");
          const k = queue.shift() as string;
          acked.set(k, sent.get(k) as string);
          pipelinedAcks++;
          if (killed) continue;
          if (pipelinedAcks < KILL_AT) {
            refill(0);
          } else {
            refill(BATCH); // a batch written just before the kill can never be acknowledged
            killed = true;
            inFlightAtKill = sent.size - acked.size;
            srv.kill("SIGKILL");
          }
        }
      }),
    );
    one.end();
    const exit = await srv.exited;
    assert.equal(exit.signal, "SIGKILL");
    assert.ok(inFlightAtKill > 0, "SETs were in flight when the machine died");
    assert.ok(acked.size < sent.size, "some SETs were never acknowledged");

    // the filesystem is consistent after the power cut
    const fsck = await exocore("fsck", image);
    assert.equal(fsck.code, 0, fsck.stdout.toString() + fsck.stderr);

    // boot again on the same image: every acknowledged key, with its value
    const again = await ExocoreProcess.start({
      disk: image,
      args: ["--aof", "/kv.aof", "--appendfsync", "always", "--connections", "1"],
    });
    const check = await RespClient.connect(again.port);
    const keys = [...sent.keys()];
    const got = await values(check, keys);
    let lost = 0;
    keys.forEach((k, i) => {
      const v = got[i] ?? null;
      if (acked.has(k)) assert.equal(v, acked.get(k), `acknowledged ${k}`);
      else if (v === null) lost++;
      else assert.equal(v, sent.get(k), `unacknowledged ${k} is whole if it is there`);
    });
    assert.equal((await check.command(["GET", "counter"])).toString(), "$2\r\n10\r\n");
    const dbsize = Number(decodeReply(await check.command(["DBSIZE"])).r.v);
    assert.equal(dbsize, sent.size - lost + 1);
    check.end();
    const status = await again.exited;
    assert.equal(status.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /replayed \d+ commands from \/kv\.aof/);
    t.diagnostic(
      `SIGKILL: ${sent.size} SETs sent, ${acked.size} acknowledged (all found), ${sent.size - acked.size - lost} more found, ${lost} never reached the disk`,
    );
  });

  test("appendfsync everysec: a clean exit keeps every write", async () => {
    const image = join(work, "everysec.img");
    await mkfs(image, 32);
    const srv = await ExocoreProcess.start({
      disk: image,
      args: ["--aof", "/ev.aof", "--appendfsync", "everysec", "--connections", "2"],
    });
    const want = new Map<string, string>();
    let writes = 0;
    const a = await RespClient.connect(srv.port);
    const b = await RespClient.connect(srv.port);
    const pairs: [string, string][] = [];
    for (let i = 0; i < 2000; i++) pairs.push([`b:${i}`, `${i}`.repeat(1 + (i % 9))]);
    b.send(setBatch(pairs));
    for (const [k, v] of pairs) want.set(k, v);
    writes += pairs.length;
    for (let i = 0; i < 100; i++) {
      assert.equal((await a.command(["SET", `a:${i}`, `a${i}`])).toString(), "+OK\r\n");
      want.set(`a:${i}`, `a${i}`);
    }
    for (let i = 0; i < 50; i++) await a.command(["DEL", `a:${i * 2}`]);
    for (let i = 0; i < 50; i++) want.delete(`a:${i * 2}`);
    await a.command(["RPUSH", "list", "x", "y", "z"]);
    await a.command(["HSET", "hash", "f", "v"]);
    await a.command(["INCRBY", "count", "41"]);
    await a.command(["INCR", "count"]);
    writes += 100 + 50 + 4;
    for (let i = 0; i < pairs.length; i++) assert.equal((await b.reply()).toString(), "+OK\r\n");
    a.end();
    b.end();
    const exit = await srv.exited;
    assert.equal(exit.code, 0, srv.stdout + srv.stderr);

    const again = await ExocoreProcess.start({
      disk: image,
      args: ["--aof", "/ev.aof", "--appendfsync", "everysec", "--connections", "1"],
    });
    assert.match(again.stdout, new RegExp(`replayed ${writes} commands from /ev\\.aof`));
    const check = await RespClient.connect(again.port);
    const keys = [...want.keys()];
    assert.deepEqual(
      await values(check, keys),
      keys.map((k) => want.get(k)),
    );
    assert.equal((await check.command(["DBSIZE"])).toString(), `:${want.size + 3}\r\n`);
    assert.equal(
      (await check.command(["LRANGE", "list", "0", "-1"])).toString(),
      "*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n",
    );
    assert.equal((await check.command(["HGET", "hash", "f"])).toString(), "$1\r\nv\r\n");
    assert.equal((await check.command(["GET", "count"])).toString(), "$2\r\n42\r\n");
    check.end();
    assert.equal((await again.exited).code, 0, again.stderr);
  });
});
