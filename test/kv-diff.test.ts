/**
 * kv-diff: a differential test of the KV engine against a real Redis 7.0 — the same commands go
 * to a `redis-server` (one database, no persistence) and to a node:net server in this process
 * that runs the engine over a FlatMemory and the libOS Malloc; their replies must be the same
 * bytes. Covered: every command the engine has, with its syntax and arity errors and wrong
 * types; unknown commands; inline commands, pipelining and protocol errors over raw sockets
 * (the whole byte stream, and that both close the connection); random command sequences
 * (fast-check) over a few keys of every type; and redis-cli's own output, with commands as
 * arguments and piped on stdin.
 *
 * Replies whose order Redis leaves unspecified (KEYS, SMEMBERS, SPOP with a count, SCAN, CONFIG
 * GET of several parameters) are compared as multisets; PTTL as "both in (0, ttl]", and a
 * positive TTL as "within a second of each other" (each server reads its own clock).
 * Skipped (with the reason) when redis-server or redis-cli is not installed.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import {
  decodeReply,
  encodeCommand,
  makeEngine,
  type Reply,
  RespClient,
  serveEngine,
} from "./fixtures/kv-client.js";

const haveRedis =
  spawnSync("redis-server", ["--version"]).status === 0 &&
  spawnSync("redis-cli", ["--version"]).status === 0;
const skip = haveRedis ? false : "redis-server / redis-cli (Redis 7) are not installed";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitForRedis(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const c = await RespClient.connect(port);
      const r = await c.command(["PING"]);
      c.end();
      if (r.toString() === "+PONG\r\n") return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server did not come up on port ${port}`);
}

/** How two replies are compared. */
type Mode = "=" | "set" | "pttl" | "scan" | "config";

interface Case {
  readonly args: readonly string[];
  readonly mode: Mode;
}

function c(mode: Mode, ...args: string[]): Case {
  return { args, mode };
}

const e = (...args: string[]): Case => c("=", ...args);

/** Every command, its options, its errors. Each group starts from an empty database. */
const GROUPS: Case[][] = [
  [
    e("PING"),
    e("ping", "hello"),
    e("PING", "a", "b"),
    e("ECHO", "x y"),
    e("ECHO"),
    e("ECHO", "a", "b"),
    e("SELECT", "0"),
    e("SELECT", "1"),
    e("SELECT", "-1"),
    e("SELECT", "x"),
    e("SELECT", "99999999999"),
    e("SELECT"),
    e("DBSIZE"),
    e("DBSIZE", "x"),
    e("foo"),
    e("foo", "a", "b c"),
    e("FOO", "a\r\nb"),
    e(""),
    e("x".repeat(200), "y".repeat(200), "z"),
    e("CONFIG", "GET", "save"),
    e("CONFIG", "GET", "appendonly"),
    e("config", "get", "SAVE"),
    e("CONFIG", "GET", "no-such-parameter"),
    e("CONFIG", "GET", "appendonl*"),
    e("CONFIG", "GET"),
    e("CONFIG"),
    e("CONFIG", "FOO"),
    c("config", "CONFIG", "GET", "save", "appendonly"),
    e("CONFIG", "SET", "no-such-parameter", "1"),
    e("CONFIG", "SET", "save"),
    e("COMMAND", "FOO"),
    e("COMMAND", "COUNT", "x"),
    e("CLIENT"),
    e("CLIENT", "FOO"),
    e("CLIENT", "GETNAME"),
    e("CLIENT", "SETNAME", "a b"),
    e("CLIENT", "SETNAME", "conn-1"),
    e("CLIENT", "GETNAME"),
    e("CLIENT", "SETNAME", ""),
    e("CLIENT", "GETNAME"),
    e("CLIENT", "SETNAME"),
    e("FLUSHALL", "x"),
    e("FLUSHALL", "SYNC"),
    e("FLUSHDB", "ASYNC"),
    e("FLUSHDB", "a", "b"),
  ],
  [
    e("GET", "s"),
    e("SET", "s", "v"),
    e("GET", "s"),
    e("GET"),
    e("SET", "s"),
    e("SET", "s", "v", "NX"),
    e("SET", "s", "w", "XX"),
    e("GET", "s"),
    e("SET", "t", "w", "XX"),
    e("SET", "s", "v", "NX", "XX"),
    e("SET", "s", "v", "XX", "NX"),
    e("SET", "s", "v", "GET"),
    e("SET", "u", "v", "GET"),
    e("SET", "u", "v2", "NX", "GET"),
    e("SET", "u", "v3", "XX", "GET", "GET"),
    e("SET", "s", "v", "EX"),
    e("SET", "s", "v", "EX", "0"),
    e("SET", "s", "v", "EX", "-5"),
    e("SET", "s", "v", "EX", "x"),
    e("SET", "s", "v", "PX", "1.5"),
    e("SET", "s", "v", "EX", "10", "PX", "10"),
    e("SET", "s", "v", "EX", "10", "KEEPTTL"),
    e("SET", "s", "v", "KEEPTTL", "EX", "10"),
    e("SET", "s", "v", "EX", "9223372036854775807"),
    e("SET", "s", "v", "FOO"),
    e("SET", "s", "v", "EX", "100"),
    e("TTL", "s"),
    c("pttl", "PTTL", "s"),
    e("SET", "s", "v2", "KEEPTTL"),
    e("TTL", "s"),
    e("SET", "s", "v3"),
    e("TTL", "s"),
    e("SET", "s", "v", "PX", "100000"),
    e("TTL", "s"),
    e("SET", "s", "v", "EXAT", "99999999999"),
    e("TTL", "s"),
    e("SET", "s", "v", "PXAT", "99999999999000"),
    e("TTL", "s"),
    e("SET", "s", "v", "ex", "100", "ex", "200"),
    e("TTL", "s"),
    e("GETSET", "s", "new"),
    e("GETSET", "nokey", "new"),
    e("GETSET", "s"),
    e("TTL", "s"),
    e("SETNX", "s", "x"),
    e("SETNX", "sn", "x"),
    e("SETEX", "se", "100", "v"),
    e("TTL", "se"),
    e("SETEX", "se", "0", "v"),
    e("SETEX", "se", "x", "v"),
    e("PSETEX", "pse", "100000", "v"),
    e("TTL", "pse"),
    e("MSET", "a", "1", "b", "2", "c", "3"),
    e("MSET", "a", "1", "b"),
    e("MSET", "a"),
    e("MGET", "a", "b", "nokey", "c"),
    e("MGET"),
    e("APPEND", "a", "23"),
    e("APPEND", "new", ""),
    e("APPEND", "new2", "abcdefghijklmnopqrstuvwxyz"),
    e("APPEND", "new2", "0123456789"),
    e("GET", "new2"),
    e("STRLEN", "new2"),
    e("STRLEN", "nokey"),
    e("EXISTS", "new", "new", "nokey"),
    e("TYPE", "new"),
    e("TYPE", "nokey"),
    e("INCR", "n"),
    e("INCR", "n"),
    e("DECR", "n"),
    e("INCRBY", "n", "100"),
    e("INCRBY", "n", "-1000"),
    e("DECRBY", "n", "-5"),
    e("INCRBY", "n", "x"),
    e("INCRBY", "n", "1.5"),
    e("INCRBY", "n", "+1"),
    e("INCRBY", "n", "01"),
    e("INCRBY", "n", "99999999999999999999"),
    e("DECRBY", "n", "-9223372036854775808"),
    e("SET", "n", "9223372036854775806"),
    e("INCR", "n"),
    e("INCR", "n"),
    e("DECRBY", "n", "1"),
    e("SET", "n", "-9223372036854775807"),
    e("DECR", "n"),
    e("DECR", "n"),
    e("INCRBY", "n", "9223372036854775807"),
    e("SET", "n", "1.5"),
    e("INCR", "n"),
    e("SET", "n", " 1"),
    e("INCR", "n"),
    e("SET", "n", "007"),
    e("INCR", "n"),
    e("SET", "n", "-0"),
    e("INCR", "n"),
    e("SET", "n", "123456789012345678"),
    e("INCRBY", "n", "1000000000000000000"),
    e("GET", "n"),
    e("INCR"),
    e("DEL", "a", "b", "a", "nokey"),
    e("DEL"),
    e("EXISTS"),
    e("KEYS"),
    c("set", "KEYS", "*"),
    c("set", "KEYS", "n*"),
    c("set", "KEYS", "?ew*"),
    c("set", "KEYS", "[a-m]*"),
    c("set", "KEYS", "[^n]*"),
  ],
  [
    e("SET", "k", "v"),
    e("EXPIRE", "k", "100"),
    e("TTL", "k"),
    e("EXPIRE", "k", "100", "NX"),
    e("EXPIRE", "k", "200", "XX"),
    e("TTL", "k"),
    e("EXPIRE", "k", "50", "GT"),
    e("EXPIRE", "k", "300", "GT"),
    e("TTL", "k"),
    e("EXPIRE", "k", "400", "LT"),
    e("EXPIRE", "k", "30", "LT"),
    e("TTL", "k"),
    e("EXPIRE", "k", "10", "NX", "XX"),
    e("EXPIRE", "k", "10", "GT", "LT"),
    e("EXPIRE", "k", "10", "FOO"),
    e("EXPIRE", "k", "x", "FOO"),
    e("EXPIRE", "k", "x"),
    e("EXPIRE", "k", "9223372036854775807"),
    e("EXPIRE", "k"),
    e("EXPIRE", "nokey", "10"),
    e("PERSIST", "k"),
    e("PERSIST", "k"),
    e("TTL", "k"),
    e("EXPIRE", "k", "10", "XX"),
    e("EXPIRE", "k", "10", "GT"),
    e("EXPIRE", "k", "10", "LT"),
    e("TTL", "k"),
    e("PERSIST", "nokey"),
    e("PEXPIRE", "k", "100000"),
    e("TTL", "k"),
    c("pttl", "PTTL", "k"),
    e("PTTL", "nokey"),
    e("SET", "p", "v"),
    e("PTTL", "p"),
    e("TTL", "p"),
    e("EXPIREAT", "k", "99999999999"),
    e("TTL", "k"),
    e("PEXPIREAT", "k", "99999999999000"),
    e("TTL", "k"),
    e("EXPIRE", "k", "-1"),
    e("EXISTS", "k"),
    e("TTL", "k"),
    e("SET", "k", "v"),
    e("EXPIREAT", "k", "1"),
    e("GET", "k"),
    e("SET", "k", "v"),
    e("PEXPIRE", "k", "0"),
    e("GET", "k"),
    e("TTL"),
    e("PERSIST"),
  ],
  [
    e("LPUSH", "l", "a", "b", "c"),
    e("RPUSH", "l", "d", "e"),
    e("LRANGE", "l", "0", "-1"),
    e("LRANGE", "l", "1", "2"),
    e("LRANGE", "l", "-2", "-1"),
    e("LRANGE", "l", "-100", "100"),
    e("LRANGE", "l", "3", "1"),
    e("LRANGE", "l", "10", "20"),
    e("LRANGE", "l", "a", "b"),
    e("LRANGE", "nokey", "0", "-1"),
    e("LRANGE", "l", "0"),
    e("LLEN", "l"),
    e("LLEN", "nokey"),
    e("LINDEX", "l", "0"),
    e("LINDEX", "l", "-1"),
    e("LINDEX", "l", "99"),
    e("LPOP", "l"),
    e("RPOP", "l"),
    e("LPOP", "l", "2"),
    e("RPOP", "l", "0"),
    e("LPOP", "l", "-1"),
    e("LPOP", "l", "x"),
    e("LPOP", "l", "1", "2"),
    e("LPOP", "nokey"),
    e("LPOP", "nokey", "0"),
    e("LPOP", "nokey", "3"),
    e("RPOP", "l", "10"),
    e("EXISTS", "l"),
    e("LPOP", "l"),
    e("LPUSH", "l"),
    e("RPUSH", "l", ""),
    e("LRANGE", "l", "0", "-1"),
    e("TYPE", "l"),
  ],
  [
    e("SADD", "s", "a", "b", "c", "a"),
    e("SADD", "s", "a"),
    e("SCARD", "s"),
    e("SCARD", "nokey"),
    e("SISMEMBER", "s", "a"),
    e("SISMEMBER", "s", "z"),
    e("SISMEMBER", "nokey", "z"),
    c("set", "SMEMBERS", "s"),
    e("SMEMBERS", "nokey"),
    e("SREM", "s", "a", "z"),
    e("SREM", "nokey", "a"),
    e("SREM", "s", "b", "c"),
    e("EXISTS", "s"),
    e("SADD", "s", "only"),
    e("SPOP", "s"),
    e("SPOP", "s"),
    e("SPOP", "nokey", "0"),
    e("SPOP", "nokey", "3"),
    e("SADD", "s", "1", "2", "3"),
    e("SPOP", "s", "0"),
    e("SPOP", "s", "-1"),
    e("SPOP", "s", "x"),
    e("SPOP", "s", "1", "2"),
    c("set", "SPOP", "s", "10"),
    e("EXISTS", "s"),
    e("SADD", "s"),
    e("TYPE", "s"),
  ],
  [
    e("HSET", "h", "f1", "v1", "f2", "v2"),
    e("HSET", "h", "f1", "v1b", "f3", "v3"),
    e("HSET", "h", "f"),
    e("HSET", "h"),
    e("HMSET", "h", "f4", "v4"),
    e("HGET", "h", "f1"),
    e("HGET", "h", "zz"),
    e("HGET", "nokey", "f1"),
    e("HMGET", "h", "f1", "zz", "f2"),
    e("HMGET", "nokey", "f1"),
    e("HGETALL", "h"),
    e("HGETALL", "nokey"),
    e("HLEN", "h"),
    e("HLEN", "nokey"),
    e("HEXISTS", "h", "f2"),
    e("HEXISTS", "h", "zz"),
    e("HDEL", "h", "f2", "zz"),
    e("HGETALL", "h"),
    e("HSET", "h", "f2", "again"),
    e("HGETALL", "h"),
    e("HDEL", "nokey", "f"),
    e("HDEL", "h", "f1", "f3", "f4", "f2"),
    e("EXISTS", "h"),
    e("HDEL", "h"),
    e("TYPE", "h"),
  ],
  [
    e("ZADD", "z", "1", "a", "2", "b", "1.5", "c"),
    e("ZADD", "z", "1", "a"),
    e("ZADD", "z", "CH", "5", "a", "7", "new"),
    e("ZADD", "z", "NX", "0", "a", "0", "nx"),
    e("ZADD", "z", "XX", "0", "a", "0", "xx"),
    e("ZADD", "z", "GT", "1", "a", "9", "b"),
    e("ZADD", "z", "LT", "CH", "100", "a", "-1", "b"),
    e("ZADD", "z", "INCR", "0.5", "c"),
    e("ZADD", "z", "INCR", "NX", "1", "c"),
    e("ZADD", "z", "INCR", "GT", "-1", "c"),
    e("ZADD", "z", "XX", "INCR", "1", "nosuch"),
    e("ZADD", "zx", "XX", "1", "a"),
    e("ZADD", "zx", "XX", "INCR", "1", "a"),
    e("EXISTS", "zx"),
    e("ZADD", "z", "NX", "XX", "1", "a"),
    e("ZADD", "z", "GT", "LT", "1", "a"),
    e("ZADD", "z", "NX", "GT", "1", "a"),
    e("ZADD", "z", "INCR", "1", "a", "2", "b"),
    e("ZADD", "z", "1"),
    e("ZADD", "z", "1", "a", "2"),
    e("ZADD", "z", "x", "a"),
    e("ZADD", "z", "nan", "a"),
    e("ZADD", "z", " 1", "a"),
    e("ZADD", "z", "1e400", "a"),
    e("ZADD", "z", "1e-400", "a"),
    e("ZADD", "z", "FOO", "a"),
    e("ZADD", "z", "inf", "i", "-inf", "ni", "+inf", "pi", "-Infinity", "ni2"),
    e("ZADD", "z", "INCR", "-inf", "i"),
    e("ZADD", "z", "0x10", "hex", ".5", "half", "5.", "five", "1E2", "sci", "-0", "negz"),
    e("ZADD", "z", "1.1", "f1", "0.1", "f2", "1e-5", "f3", "123456789012345678", "f4"),
    e("ZADD", "z", "2.9802322387695312e-08", "tie", "3.0000000000000004", "t3"),
    e("ZADD", "z", "100000000000000000", "e17", "1e16", "e16", "0.0001", "e4", "0.00001", "e5"),
    e("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    e("ZRANGE", "z", "0", "-1"),
    e("ZRANGE", "z", "2", "4"),
    e("ZRANGE", "z", "-3", "-1", "WITHSCORES"),
    e("ZRANGE", "z", "5", "2"),
    e("ZRANGE", "z", "0", "1", "REV", "WITHSCORES"),
    e("ZRANGE", "z", "0", "-1", "REV"),
    e("ZRANGE", "z", "(1", "5", "BYSCORE"),
    e("ZRANGE", "z", "-inf", "+inf", "BYSCORE", "LIMIT", "2", "3"),
    e("ZRANGE", "z", "+inf", "(1", "BYSCORE", "REV", "WITHSCORES"),
    e("ZRANGE", "z", "0", "10", "BYSCORE", "LIMIT", "-1", "3"),
    e("ZRANGE", "z", "a", "b", "BYSCORE"),
    e("ZRANGE", "z", "-", "+", "BYLEX"),
    e("ZRANGE", "z", "[b", "(n", "BYLEX", "LIMIT", "0", "2"),
    e("ZRANGE", "z", "+", "[f", "BYLEX", "REV"),
    e("ZRANGE", "z", "a", "b", "BYLEX"),
    e("ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES"),
    e("ZRANGE", "z", "0", "1", "LIMIT", "0", "1"),
    e("ZRANGE", "z", "0", "1", "LIMIT", "0", "-1"),
    e("ZRANGE", "z", "0", "1", "FOO"),
    e("ZRANGE", "z", "x", "1"),
    e("ZRANGE", "nokey", "0", "-1"),
    e("ZRANGE", "z", "0"),
    e("ZSCORE", "z", "a"),
    e("ZSCORE", "z", "f1"),
    e("ZSCORE", "z", "nosuch"),
    e("ZSCORE", "nokey", "a"),
    e("ZCARD", "z"),
    e("ZCARD", "nokey"),
    e("ZINCRBY", "z", "2.5", "a"),
    e("ZINCRBY", "z", "x", "a"),
    e("ZREM", "z", "a", "nosuch"),
    e("ZPOPMIN", "z"),
    e("ZPOPMIN", "z", "2"),
    e("ZPOPMAX", "z"),
    e("ZPOPMIN", "z", "0"),
    e("ZPOPMIN", "z", "-1"),
    e("ZPOPMIN", "z", "x"),
    e("ZPOPMIN", "z", "1", "2"),
    e("ZPOPMIN", "nokey"),
    e("ZPOPMIN", "nokey", "0"),
    e("ZPOPMIN", "z", "1000"),
    e("EXISTS", "z"),
    e("ZADD", "big", "1", "m1", "1", "m0", "1", "m2", "0", "m9"),
    e("ZRANGE", "big", "0", "-1", "WITHSCORES"),
    e("TYPE", "big"),
  ],
  [
    e("SET", "str", "v"),
    e("LPUSH", "list", "a"),
    e("SADD", "set", "a"),
    e("HSET", "hash", "f", "v"),
    e("ZADD", "zset", "1", "a"),
    ...["str", "list", "set", "hash", "zset"].flatMap((k) => [
      e("TYPE", k),
      e("GET", k),
      e("SET", `${k}x`, "v", "GET"),
      e("GETSET", k === "str" ? "nokey" : k, "v"),
      e("INCR", k),
      e("APPEND", k, "x"),
      e("STRLEN", k),
      e("MGET", k, "str"),
      e("LPUSH", k, "x"),
      e("RPOP", k),
      e("LRANGE", k, "0", "-1"),
      e("LLEN", k),
      e("SADD", k, "x"),
      e("SREM", k, "x"),
      e("SISMEMBER", k, "x"),
      e("SCARD", k),
      e("SPOP", k),
      e("HSET", k, "f", "v"),
      e("HGET", k, "f"),
      e("HDEL", k, "f"),
      e("HLEN", k),
      e("HEXISTS", k, "f"),
      e("HGETALL", k),
      e("ZADD", k, "1", "x"),
      e("ZRANGE", k, "0", "-1"),
      e("ZSCORE", k, "x"),
      e("ZCARD", k),
      e("ZPOPMIN", k),
    ]),
    e("SET", "list", "now a string"),
    e("TYPE", "list"),
    e("MSET", "set", "s", "hash", "h"),
    e("TYPE", "hash"),
  ],
  [
    e("MSET", "user:1", "a", "user:2", "b", "user:10", "c", "item:1", "d", "a*b", "e", "a?b", "f"),
    e("MSET", "[x]", "g", "\\", "h", "ab", "i", "aXb", "j", "\xe9t\xe9", "k"),
    ...[
      "*",
      "user:*",
      "user:?",
      "user:[0-9]",
      "user:[^1]*",
      "user:[2-1]",
      "*:1*",
      "a\\*b",
      "a\\?b",
      "a?b",
      "\\[x\\]",
      "[[]x]",
      "\\\\",
      "[\\\\]",
      "a[*",
      "[a-",
      "[",
      "**a**b",
      "a[^X]b",
      "[\x80-\xff]*",
      "*[\xe9]",
      "",
      "nomatch",
    ].map((p) => c("set", "KEYS", p)),
    c("scan", "SCAN", "0", "COUNT", "1000"),
    c("scan", "SCAN", "0", "MATCH", "user:*", "COUNT", "1000"),
    c("scan", "SCAN", "0", "TYPE", "string", "COUNT", "1000"),
    c("scan", "SCAN", "0", "type", "STRING", "COUNT", "1000"),
    c("scan", "SCAN", "0", "TYPE", "list", "COUNT", "1000"),
    c("scan", "SCAN", "0", "TYPE", "nosuchtype", "COUNT", "1000"),
    e("SCAN", "x"),
    e("SCAN", " 0"),
    e("SCAN", "+"),
    e("SCAN", "18446744073709551616"),
    e("SCAN", "0", "COUNT", "0"),
    e("SCAN", "0", "COUNT", "x"),
    e("SCAN", "0", "COUNT"),
    e("SCAN", "0", "MATCH"),
    e("SCAN", "0", "FOO", "x"),
    e("SCAN"),
    e("DBSIZE"),
  ],
];

/** The reply bytes, parsed for the non-exact comparisons. */
function compare(mode: Mode, args: readonly string[], ours: Buffer, theirs: Buffer): void {
  const what = `${args.map((a) => JSON.stringify(a)).join(" ")}`;
  if (mode === "=" && args[0].toUpperCase() === "TTL" && ours[0] === 58 && theirs[0] === 58) {
    // a TTL in seconds is rounded from ms: the two servers read their clocks at other instants
    const [x, y] = [ours, theirs].map((r) => Number(r.toString("latin1", 1).trim()));
    if (x > 0 && y > 0) {
      assert.ok(Math.abs(x - y) <= 1, `${what}: ${x} / ${y}`);
      return;
    }
  }
  if (mode === "=") {
    assert.equal(ours.toString("latin1"), theirs.toString("latin1"), what);
    return;
  }
  const a = decodeReply(ours).r;
  const b = decodeReply(theirs).r;
  if (mode === "pttl") {
    assert.ok(a.t === ":" && b.t === ":", what);
    const ttl = 100000n; // every PTTL case follows an expiry of 100 s
    assert.ok(a.v > 0n && a.v <= ttl && b.v > 0n && b.v <= ttl, `${what}: ${a.v} / ${b.v}`);
    return;
  }
  if (a.t !== "*" || b.t !== "*" || a.v === null || b.v === null) {
    assert.equal(ours.toString("latin1"), theirs.toString("latin1"), what); // an error, or nil
    return;
  }
  if (mode === "set") {
    assert.deepEqual(sorted(a), sorted(b), what);
    return;
  }
  if (mode === "config") {
    assert.deepEqual(pairs(a), pairs(b), what);
    return;
  }
  // scan: [cursor, keys] with the cursor 0 (one call covered everything)
  assert.ok(a.t === "*" && b.t === "*" && a.v !== null && b.v !== null, what);
  assert.deepEqual(a.v[0], { t: "$", v: "0" }, `${what}: our cursor`);
  assert.deepEqual(b.v[0], { t: "$", v: "0" }, `${what}: redis cursor`);
  assert.deepEqual(sorted(a.v[1] as Reply), sorted(b.v[1] as Reply), what);
}

function sorted(r: Reply): string[] {
  assert.equal(r.t, "*");
  return ((r.v as Reply[]) ?? [])
    .map((x) => JSON.stringify(x, (_, v) => (typeof v === "bigint" ? String(v) : v)))
    .sort();
}

function pairs(r: Reply): string[] {
  const items = (r.v as Reply[]) ?? [];
  const out: string[] = [];
  for (let i = 0; i < items.length; i += 2) out.push(JSON.stringify([items[i], items[i + 1]]));
  return out.sort();
}

describe("the KV engine answers as Redis 7.0 does", { skip }, () => {
  let redis: ChildProcess | null = null;
  let redisPort = 0;
  let ourPort = 0;
  let server: net.Server | null = null;

  before(async () => {
    redisPort = await freePort();
    redis = spawn(
      "redis-server",
      [
        "--port",
        String(redisPort),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--databases",
        "1",
        "--protected-mode",
        "no",
      ],
      { stdio: "ignore" },
    );
    await waitForRedis(redisPort);
    const { engine } = makeEngine();
    server = await serveEngine(engine);
    const a = server.address();
    ourPort = typeof a === "object" && a !== null ? a.port : 0;
  });

  after(async () => {
    redis?.kill("SIGTERM");
    await new Promise<void>((r) => server?.close(() => r()) ?? r());
  });

  test("every command, its options, its errors and wrong types: the same reply bytes", async () => {
    const ours = await RespClient.connect(ourPort);
    const theirs = await RespClient.connect(redisPort);
    for (const group of GROUPS) {
      await ours.command(["FLUSHALL"]);
      await theirs.command(["FLUSHALL"]);
      for (const k of group)
        compare(k.mode, k.args, await ours.command(k.args), await theirs.command(k.args));
    }
    ours.end();
    theirs.end();
  });

  test("random command sequences over a few keys of every type (fast-check)", async () => {
    const ours = await RespClient.connect(ourPort);
    const theirs = await RespClient.connect(redisPort);
    const key = fc.constantFrom("k1", "k2", "k3", "k4");
    const val = fc.constantFrom(
      "a",
      "b",
      "c",
      "1",
      "2",
      "-3",
      "10",
      "x y",
      "",
      "9223372036854775807",
    );
    const num = fc.constantFrom("0", "1", "-1", "2", "3", "-2", "100", "x");
    const score = fc.constantFrom("0", "1", "1.5", "-2", "inf", "-inf", "0.1", "3e2");
    const cmd: fc.Arbitrary<string[]> = fc.oneof(
      fc.tuple(fc.constant("SET"), key, val),
      fc.tuple(fc.constant("GET"), key),
      fc.tuple(fc.constant("DEL"), key, key),
      fc.tuple(fc.constant("EXISTS"), key, key),
      fc.tuple(fc.constant("TYPE"), key),
      fc.tuple(fc.constant("INCR"), key),
      fc.tuple(fc.constant("DECRBY"), key, num),
      fc.tuple(fc.constant("APPEND"), key, val),
      fc.tuple(fc.constant("STRLEN"), key),
      fc.tuple(fc.constant("GETSET"), key, val),
      fc.tuple(fc.constant("MSET"), key, val, key, val),
      fc.tuple(fc.constant("MGET"), key, key, key),
      fc.tuple(fc.constantFrom("LPUSH", "RPUSH"), key, val, val),
      fc.tuple(fc.constantFrom("LPOP", "RPOP"), key),
      fc.tuple(fc.constantFrom("LPOP", "RPOP"), key, num),
      fc.tuple(fc.constant("LRANGE"), key, num, num),
      fc.tuple(fc.constant("LLEN"), key),
      fc.tuple(fc.constant("SADD"), key, val, val),
      fc.tuple(fc.constant("SREM"), key, val),
      fc.tuple(fc.constant("SISMEMBER"), key, val),
      fc.tuple(fc.constant("SCARD"), key),
      fc.tuple(fc.constant("HSET"), key, val, val),
      fc.tuple(fc.constant("HGET"), key, val),
      fc.tuple(fc.constant("HDEL"), key, val),
      fc.tuple(fc.constant("HLEN"), key),
      fc.tuple(fc.constant("HGETALL"), key),
      fc.tuple(fc.constant("HEXISTS"), key, val),
      fc.tuple(fc.constant("ZADD"), key, score, val),
      fc.tuple(
        fc.constant("ZADD"),
        key,
        fc.constantFrom("NX", "XX", "GT", "LT", "CH", "INCR"),
        score,
        val,
      ),
      fc.tuple(fc.constant("ZRANGE"), key, num, num),
      fc.tuple(fc.constant("ZRANGE"), key, num, num, fc.constantFrom("WITHSCORES", "REV")),
      fc.tuple(fc.constant("ZPOPMIN"), key),
      fc.tuple(fc.constant("ZPOPMIN"), key, num),
      fc.tuple(fc.constant("ZSCORE"), key, val),
      fc.tuple(fc.constant("ZCARD"), key),
      fc.tuple(fc.constant("EXPIRE"), key, fc.constantFrom("100", "-1", "200")),
      fc.tuple(fc.constant("TTL"), key),
      fc.tuple(fc.constant("PERSIST"), key),
      fc.tuple(fc.constant("SMEMBERS"), key),
      fc.tuple(fc.constant("DBSIZE")),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 60 }), async (cmds) => {
        await ours.command(["FLUSHALL"]);
        await theirs.command(["FLUSHALL"]);
        for (const args of cmds) {
          const mode: Mode = args[0] === "SMEMBERS" ? "set" : "=";
          compare(mode, args, await ours.command(args), await theirs.command(args));
        }
      }),
      { numRuns: 150 },
    );
    ours.end();
    theirs.end();
  });

  /** Send raw bytes on a fresh connection to each server; collect everything until they close. */
  async function rawBoth(bytes: string, closeWith = "QUIT\r\n"): Promise<[string, string]> {
    const out: string[] = [];
    for (const port of [ourPort, redisPort]) {
      const cl = await RespClient.connect(port);
      cl.send(bytes);
      if (closeWith !== "") cl.send(closeWith);
      out.push((await cl.untilClosed()).toString("latin1"));
    }
    return [out[0], out[1]];
  }

  test("inline commands, pipelining and chunking: the same byte stream", async () => {
    const streams = [
      "PING\r\nPING\nping hello\r\n",
      'SET "a b" "x\\ty\\x41\\n" \r\nGET "a b"\r\nECHO \'it\\\'s\'\r\n',
      "\r\n\r\n   \r\nPING\r\n",
      "ECHO a\tb\x0bc\r\nECHO \"\"\r\nECHO ''\r\n",
      "*0\r\n*-1\r\nPING\r\n",
      "*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
      `*3\r\n$3\r\nSET\r\n$3\r\nbin\r\n$5\r\n\x00\r\n\xff\x01\r\n*2\r\n$3\r\nGET\r\n$3\r\nbin\r\n`,
      `${encodeCommand(["SET", "big", "x".repeat(100000)]).toString("latin1")}${encodeCommand(["STRLEN", "big"]).toString("latin1")}`,
    ];
    for (const s of streams) {
      const [a, b] = await rawBoth(s);
      assert.equal(a, b, JSON.stringify(s));
    }
  });

  test("protocol errors: the same error reply, after the commands before them, then the connection closes", async () => {
    const streams = [
      "*x\r\n",
      "*1\r\n$x\r\n",
      "*1\r\n$-1\r\n",
      "*1\r\n$01\r\nPING\r\n",
      "PING\r\n*2\r\n$4\r\nECHO\r\nfoo\r\n",
      "*2\r\n$4\r\nECHO\r\n:3\r\n",
      "*1\r\n\r\n\r\n",
      "*3000000000\r\n",
      "*1\r\n$9999999999\r\n",
      "*+1\r\n$4\r\nPING\r\n",
      'PING\r\nECHO "unbalanced\r\n',
      "ECHO 'x'y\r\n",
      'ECHO "a"b\r\n',
      `${"x".repeat(70000)}`,
      `*${"1".repeat(70000)}`,
      `*1\r\n$${"1".repeat(70000)}`,
    ];
    for (const s of streams) {
      const [a, b] = await rawBoth(s, "");
      assert.equal(a, b, JSON.stringify(s.slice(0, 60)));
    }
  });

  test("redis-cli prints the same output for both (commands as arguments, and piped on stdin)", async () => {
    // async: our server runs on this thread's event loop, so a blocking spawnSync would hang it
    const cli = (port: number, args: string[], input?: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const p = spawn("redis-cli", ["-p", String(port), ...args], { stdio: "pipe" });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        p.stdout.on("data", (d: Buffer) => out.push(d));
        p.stderr.on("data", (d: Buffer) => err.push(d));
        p.on("error", reject);
        p.on("close", (code) =>
          resolve(
            `${Buffer.concat(out).toString("latin1")}|${Buffer.concat(err).toString("latin1")}|${code}`,
          ),
        );
        p.stdin.end(input ?? "");
      });
    for (const port of [ourPort, redisPort]) await cli(port, ["FLUSHALL"]);
    const argCases = [
      ["PING"],
      ["SET", "cli", "hello world"],
      ["GET", "cli"],
      ["INCR", "counter"],
      ["RPUSH", "list", "a", "b", "c"],
      ["LRANGE", "list", "0", "-1"],
      ["HSET", "h", "f", "v"],
      ["HGETALL", "h"],
      ["ZADD", "z", "1.5", "m"],
      ["ZRANGE", "z", "0", "-1", "WITHSCORES"],
      ["GET", "nokey"],
      ["LPUSH", "cli", "x"],
      ["NOSUCHCOMMAND", "a"],
      ["TTL", "cli"],
      ["CONFIG", "GET", "save"],
    ];
    for (const args of argCases)
      assert.equal(await cli(ourPort, args), await cli(redisPort, args), args.join(" "));
    const script = [
      "SET a 1",
      "INCRBY a 41",
      "GET a",
      'SET "key with space" "value with space"',
      'GET "key with space"',
      "LPUSH l x y z",
      "LRANGE l 0 -1",
      "ZADD z 1 a 2 b",
      "ZRANGE z 0 -1 WITHSCORES",
      "EXISTS a l z nokey",
      "TYPE l",
      "GET l",
      "SELECT 0",
      "PING",
      "",
    ].join("\n");
    assert.equal(await cli(ourPort, [], script), await cli(redisPort, [], script));
  });
});
