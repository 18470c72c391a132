/**
 * kv-resp: the RESP2 parser and writer of the KV engine. The parser against random chunking
 * (fast-check: any split of a valid stream of multibulk and inline commands parses to the same
 * commands), its one-pass path for whole requests against its state machine on well-formed and
 * malformed streams, inline quoting and escapes, empty requests, the exact Redis error of each protocol
 * error and that the parser stays stopped after one, the limits (bulk length, multibulk count,
 * 64 KiB lines, query buffer), and the writer's bytes for every reply type. Also the number
 * syntax (string2ll, strtod, %.17g, integer formatting) and glob matching the commands rely on.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { globMatch } from "../programs/kv/glob.js";
import { FlatMemory } from "../programs/kv/memory.js";
import {
  formatDouble,
  formatInt,
  parseCursor,
  parseDouble,
  parseLL,
} from "../programs/kv/numbers.js";
import {
  ArgvBuilder,
  argBytes,
  RESP_COMMAND,
  RESP_ERROR,
  RESP_NEED_MORE,
  RespParser,
  type RespParserOptions,
  RespWriter,
} from "../programs/kv/resp.js";

const latin1 = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const str = (b: Uint8Array): string => Buffer.from(b).toString("latin1");

/** Feed `chunks` one by one; collect every command (as latin1 strings) and the final status. */
function parseAll(
  chunks: Uint8Array[],
  options: RespParserOptions = {},
): { cmds: string[][]; error: string | null } {
  const p = new RespParser(options);
  const cmds: string[][] = [];
  for (const ch of chunks) {
    p.feed(ch);
    for (;;) {
      const r = p.next();
      if (r === RESP_NEED_MORE) break;
      if (r === RESP_ERROR) return { cmds, error: p.error };
      assert.equal(r, RESP_COMMAND);
      const args: string[] = [];
      for (let i = 0; i < p.argc; i++) args.push(str(argBytes(p, i)));
      cmds.push(args);
    }
  }
  return { cmds, error: null };
}

function multibulk(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`;
}

/** Split bytes at the given cut points. */
function split(b: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
  return out;
}

const binaryArg = fc.string({
  unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
const inlineArg = fc.string({
  unit: fc.constantFrom(..."abcXYZ019-_:.?"),
  minLength: 1,
  maxLength: 12,
});

test("any split of a stream of multibulk and inline commands parses to the same commands", () => {
  const command = fc.oneof(
    fc
      .array(binaryArg, { minLength: 1, maxLength: 6 })
      .map((args) => ({ args, wire: multibulk(args) })),
    fc
      .array(inlineArg, { minLength: 1, maxLength: 5 })
      .chain((args) =>
        fc.constantFrom("\r\n", "\n").map((end) => ({ args, wire: `${args.join(" ")}${end}` })),
      ),
  );
  fc.assert(
    fc.property(
      fc.array(command, { minLength: 1, maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (cmds, cuts) => {
        const stream = latin1(cmds.map((c) => c.wire).join(""));
        const r = parseAll(split(stream, cuts));
        assert.equal(r.error, null);
        assert.deepEqual(
          r.cmds,
          cmds.map((c) => c.args),
        );
      },
    ),
    { numRuns: 300 },
  );
});

test("a stream fed one byte at a time parses as when fed whole", () => {
  const stream = latin1(
    `${multibulk(["SET", "k", "v\r\nw"])}PING\r\n${multibulk(["GET", ""])}  echo "a b"  \n${multibulk(["X"])}`,
  );
  const whole = parseAll([stream]);
  const bytes = parseAll([...stream].map((b) => Uint8Array.of(b)));
  assert.deepEqual(bytes, whole);
  assert.deepEqual(whole.cmds, [
    ["SET", "k", "v\r\nw"],
    ["PING"],
    ["GET", ""],
    ["echo", "a b"],
    ["X"],
  ]);
});

test("whole requests (the one-pass path) parse as the state machine does, malformed ones too", () => {
  // Fed whole, a request that is wholly buffered is parsed in one pass; fed one byte at a time
  // it goes through the state machine only. Streams of RESP-like tokens, mostly well formed and
  // sometimes not (leading zeros, signs, missing '$', short bulks, CR without LF), must give
  // the same commands and the same error either way.
  const token = fc.oneof(
    { weight: 6, arbitrary: binaryArg.map((a) => `$${a.length}\r\n${a}\r\n`) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "*",
        "$",
        "0",
        "00",
        "01",
        "-1",
        "+3",
        "\r\n",
        "\r",
        "\n",
        "x",
        "$3\r\nab",
        "$0\r\n\r\n",
        "$2\r\nab\r\n",
        "*0\r\n",
        "*-1\r\n",
        "*1\rx",
        "$1\rxyz",
        "99999999999",
      ),
    },
  );
  const request = fc
    .tuple(fc.integer({ min: 1, max: 4 }), fc.array(token, { minLength: 0, maxLength: 5 }))
    .map(([n, parts]) => `*${n}\r\n${parts.join("")}`);
  fc.assert(
    fc.property(fc.array(request, { minLength: 1, maxLength: 8 }), (reqs) => {
      const stream = latin1(reqs.join(""));
      const whole = parseAll([stream]);
      const bytes = parseAll([...stream].map((b) => Uint8Array.of(b)));
      assert.deepEqual(whole, bytes);
    }),
    { numRuns: 500 },
  );
});

test("a pipeline of whole requests: each command's argv points at its own bytes", () => {
  const cmds = [
    ["SET", "key:__rand_int__", "xxx"],
    ["GET", "key:__rand_int__"],
    ["MSET", "a", "", "b", "x".repeat(300)],
    ["INCR", "counter"],
  ];
  const wire = latin1(cmds.map(multibulk).join("").repeat(16));
  const p = new RespParser();
  p.feed(wire);
  const starts: number[] = [];
  for (let i = 0; i < 64; i++) {
    assert.equal(p.next(), RESP_COMMAND);
    starts.push(p.commandStart);
    const want = cmds[i % cmds.length]!;
    assert.equal(p.argc, want.length);
    for (let k = 0; k < p.argc; k++) assert.equal(str(argBytes(p, k)), want[k]);
  }
  assert.equal(p.next(), RESP_NEED_MORE);
  assert.equal(p.consumed, wire.length);
  assert.equal(starts[1], multibulk(cmds[0]!).length, "commandStart of the second request");
});

test("formatInt writes what String() writes, on both sides of 2^31 and for bigints", () => {
  const buf = new Uint8Array(24);
  const check = (v: number | bigint): void => {
    const n = formatInt(v, buf, 2);
    assert.equal(str(buf.subarray(2, 2 + n)), String(v));
  };
  for (const v of [0, 1, 9, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1])
    check(v);
  check(Number.MAX_SAFE_INTEGER);
  check(Number.MIN_SAFE_INTEGER);
  check(9223372036854775807n);
  check(-9223372036854775808n);
  fc.assert(
    fc.property(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.maxSafeNat()), (v) => check(v)),
    { numRuns: 2000 },
  );
});

test("inline commands: quotes, escapes and blank lines as sdssplitargs reads them", () => {
  const r = parseAll([
    latin1(
      [
        'SET "a b" "x\\ty\\x41\\n\\"" \r\n',
        "ECHO 'it\\'s' \"\"\r\n",
        "\r\n",
        "   \t \r\n",
        'a"b c"\r\n',
        "PING\n",
        "x\x00ignored after a NUL\r\n",
      ].join(""),
    ),
  ]);
  assert.equal(r.error, null);
  assert.deepEqual(r.cmds, [
    ["SET", "a b", 'x\tyA\n"'],
    ["ECHO", "it's", ""],
    ["ab c"],
    ["PING"],
    ["x"],
  ]);
});

test("empty multibulk requests (*0, *-1) are skipped", () => {
  assert.deepEqual(parseAll([latin1("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n")]).cmds, [["PING"]]);
});

test("protocol errors give Redis's exact error, after the commands before them, and stop the parser", () => {
  const cases: [string, string][] = [
    ["*x\r\n", "ERR Protocol error: invalid multibulk length"],
    ["*+1\r\n", "ERR Protocol error: invalid multibulk length"],
    ["*01\r\n", "ERR Protocol error: invalid multibulk length"],
    [`*${1024 * 1024 + 1}\r\n`, "ERR Protocol error: invalid multibulk length"],
    ["*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"],
    ["*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"],
    ["*1\r\n$01\r\n", "ERR Protocol error: invalid bulk length"],
    ["*1\r\nPING\r\n", "ERR Protocol error: expected '$', got 'P'"],
    ["*2\r\n$1\r\na\r\n\r\n\r\n", "ERR Protocol error: expected '$', got ' '"],
    ['ECHO "abc\r\n', "ERR Protocol error: unbalanced quotes in request"],
    ["ECHO 'a'b\r\n", "ERR Protocol error: unbalanced quotes in request"],
    [`${"x".repeat(64 * 1024 + 1)}`, "ERR Protocol error: too big inline request"],
    [`*${"1".repeat(64 * 1024)}`, "ERR Protocol error: too big mbulk count string"],
    [`*1\r\n$${"1".repeat(64 * 1024)}`, "ERR Protocol error: too big bulk count string"],
  ];
  for (const [wire, want] of cases) {
    const p = new RespParser();
    p.feed(latin1(`PING\r\n${wire}`));
    assert.equal(p.next(), RESP_COMMAND, wire);
    assert.equal(p.next(), RESP_ERROR, JSON.stringify(wire.slice(0, 30)));
    assert.equal(p.error, want);
    assert.ok(p.failed);
    p.feed(latin1("PING\r\n"));
    assert.equal(p.next(), RESP_ERROR, "the parser stays stopped");
  }
});

test("limits: proto-max-bulk-len, multibulk count, line length and the query buffer are configurable", () => {
  const small = { protoMaxBulkLen: 10, maxMultibulkLength: 3 };
  assert.equal(parseAll([latin1("*1\r\n$10\r\n0123456789\r\n")], small).error, null);
  assert.equal(
    parseAll([latin1("*1\r\n$11\r\n")], small).error,
    "ERR Protocol error: invalid bulk length",
  );
  assert.equal(parseAll([latin1("*3\r\n")], small).error, null);
  assert.equal(
    parseAll([latin1("*4\r\n")], small).error,
    "ERR Protocol error: invalid multibulk length",
  );
  // a line longer than 64 KiB is fine while its end is already buffered (as in Redis)
  const long = `ECHO ${"y".repeat(70 * 1024)}\r\n`;
  assert.deepEqual(parseAll([latin1(long)]).cmds[0][1].length, 70 * 1024);
  // but not when it arrives without its end
  assert.equal(
    parseAll([latin1(long.slice(0, 65 * 1024))]).error,
    "ERR Protocol error: too big inline request",
  );
  const q = parseAll([latin1(`*2\r\n$60000\r\n${"z".repeat(60000)}\r\n$60000\r\n`)], {
    maxQueryBuffer: 100000,
  });
  assert.equal(q.error, "ERR Protocol error: query buffer limit exceeded");
  assert.throws(() => new RespParser({ protoMaxBulkLen: 0 }), /protoMaxBulkLen must be an integer/);
});

test("a big bulk arriving in small chunks is parsed once it is whole, and offsets stay right after compaction", () => {
  const big = "b".repeat(300000);
  const stream = latin1(
    `${multibulk(["PING"])}${multibulk(["SET", "k", big])}${multibulk(["GET", "k"])}`,
  );
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i += 1000) chunks.push(stream.subarray(i, i + 1000));
  const r = parseAll(chunks);
  assert.equal(r.error, null);
  assert.deepEqual(r.cmds, [["PING"], ["SET", "k", big], ["GET", "k"]]);
});

test("the parser reads recv's bytes straight from process memory", () => {
  const mem = FlatMemory.create(64 * 1024);
  mem.sbrk(8192);
  const wire = latin1(multibulk(["SET", "key", "value"]));
  mem.writeBytes(mem.base + 16, wire);
  const p = new RespParser();
  p.feedFromMemory(mem, mem.base + 16, wire.length);
  assert.equal(p.next(), RESP_COMMAND);
  assert.deepEqual(
    [0, 1, 2].map((i) => str(argBytes(p, i))),
    ["SET", "key", "value"],
  );
});

test("the writer encodes every RESP2 reply type", () => {
  const w = new RespWriter(16);
  w.simple("OK");
  w.error("ERR bad\r\nthing");
  w.integer(0);
  w.integer(-42);
  w.integer(9007199254740991);
  w.integer(-9223372036854775808n);
  w.bulk(latin1("a\r\nb"), 0, 4);
  w.bulkAscii("");
  w.bulkInt(-17);
  w.nullBulk();
  w.array(2);
  w.nullArray();
  w.command(new ArgvBuilder(["SET", "k", "v"]));
  assert.equal(
    str(w.bytes()),
    "+OK\r\n-ERR bad  thing\r\n:0\r\n:-42\r\n:9007199254740991\r\n:-9223372036854775808\r\n" +
      "$4\r\na\r\nb\r\n$0\r\n\r\n$3\r\n-17\r\n$-1\r\n*2\r\n*-1\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
  );
  w.reset();
  assert.equal(w.length, 0);
  const mem = FlatMemory.create(64 * 1024);
  mem.sbrk(8192);
  mem.writeBytes(mem.base, latin1("hello, memory"));
  w.bulkFromMemory(mem, mem.base, 13);
  assert.equal(str(w.bytes()), "$13\r\nhello, memory\r\n");
});

test("string2ll: Redis's integer syntax and int64 range", () => {
  const ll = (s: string): number | bigint | null => parseLL(latin1(s), 0, s.length);
  assert.equal(ll("0"), 0);
  assert.equal(ll("-1"), -1);
  assert.equal(ll("123456789012345"), 123456789012345);
  assert.equal(ll("9223372036854775807"), 9223372036854775807n);
  assert.equal(ll("-9223372036854775808"), -9223372036854775808n);
  assert.equal(ll("9007199254740991"), 9007199254740991);
  for (const bad of [
    "",
    "-",
    "+1",
    "01",
    "-0",
    " 1",
    "1 ",
    "1.0",
    "9223372036854775808",
    "-9223372036854775809",
    "1e3",
    "0x10",
  ])
    assert.equal(ll(bad), null, JSON.stringify(bad));
  fc.assert(
    fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (v) => {
      const s = v.toString();
      assert.equal(BigInt(ll(s) as number | bigint), v);
    }),
  );
});

test("strtod as getDoubleFromObject accepts it", () => {
  const d = (s: string): number => parseDouble(latin1(s), 0, s.length);
  assert.equal(d("1.5"), 1.5);
  assert.equal(d("-.5"), -0.5);
  assert.equal(d("5."), 5);
  assert.equal(d("+1e2"), 100);
  assert.equal(d("0x10"), 16);
  assert.equal(d("0x1.8p1"), 3);
  assert.equal(d("inf"), Infinity);
  assert.equal(d("-Infinity"), -Infinity);
  assert.equal(d("1e-310"), 1e-310);
  for (const bad of [
    "",
    " 1",
    "1 ",
    "nan",
    "abc",
    "1e400",
    "-1e400",
    "1e-400",
    "1e",
    "0x",
    "1.2.3",
  ])
    assert.ok(Number.isNaN(d(bad)), JSON.stringify(bad));
});

test("%.17g: 17 significant digits, shortest exponent form, round-half-even on exact ties", () => {
  const table: [number, string][] = [
    [1, "1"],
    [1.5, "1.5"],
    [-2, "-2"],
    [0.1, "0.10000000000000001"],
    [1.1, "1.1000000000000001"],
    [1e-5, "1.0000000000000001e-05"],
    [0.0001, "0.0001"],
    [1.2345678901234568e17, "1.2345678901234568e+17"],
    [1e16, "10000000000000000"],
    [1e17, "1e+17"],
    [2 ** -25, "2.9802322387695312e-08"],
    [Infinity, "inf"],
    [-Infinity, "-inf"],
    [-0, "-0"],
    [5e-324, "4.9406564584124654e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"],
  ];
  for (const [v, want] of table) assert.equal(formatDouble(v), want, String(v));
  fc.assert(
    fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (v) => {
      const s = formatDouble(v);
      assert.equal(Number(s), v, s); // 17 digits round-trip
      assert.match(s, /^-?\d(\.\d+)?(e[+-]\d{2,3})?$|^-?\d+(\.\d+)?$/);
    }),
  );
});

test("SCAN cursors parse as strtoul does", () => {
  const cur = (s: string): number => parseCursor(latin1(s), 0, s.length);
  assert.equal(cur(""), 0);
  assert.equal(cur("0"), 0);
  assert.equal(cur("123"), 123);
  assert.equal(cur("-1"), 0xffffffff);
  assert.equal(cur("4294967297"), 1);
  assert.equal(cur("18446744073709551615"), 0xffffffff);
  for (const bad of [" 1", "+", "x", "1x", "18446744073709551616"]) assert.equal(cur(bad), -1, bad);
});

test("glob matching as stringmatchlen", () => {
  const m = (p: string, s: string): boolean =>
    globMatch(latin1(p), 0, p.length, latin1(s), 0, s.length);
  assert.ok(m("*", "anything"));
  assert.ok(m("h?llo", "hello"));
  assert.ok(m("h[ae]llo", "hallo"));
  assert.ok(!m("h[^e]llo", "hello"));
  assert.ok(m("h[a-b]llo", "hbllo"));
  assert.ok(m("h[b-a]llo", "hallo"), "a reversed range is swapped");
  assert.ok(m("a\\*b", "a*b"));
  assert.ok(!m("a\\*b", "axb"));
  assert.ok(m("[\\]]", "]"));
  assert.ok(m("a[", "a[") === false && m("ab[c", "abc"), "an unclosed class runs to the end");
  assert.ok(m("*a*b*c*", "xxaxxbxxcxx"));
  assert.ok(!m("*a*b*c*d", "xxaxxbxxcxx"));
  assert.ok(m("", ""));
  assert.ok(!m("", "x"));
  // backtracking is bounded (CVE-2022-36021): this returns at once
  assert.ok(!m(`${"*a".repeat(30)}b`, "a".repeat(60)));
});
