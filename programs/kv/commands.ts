/**
 * kv/commands: the command table and the engine that runs one command against the store —
 * argument checks, the store operations, the reply (byte-exact with Redis 7.0's replies and
 * errors) and, for commands that change data, the record the AOF gets.
 *
 * Owns: {@link KvEngine} (one per core: its store handle and scratch buffers), {@link
 * KvSession} (one per connection: client id and name), the command table.
 *
 * How a server drives one connection (aof.ts explains the AOF log and its loader):
 *
 *   const session = engine.connect();
 *   parser.feed(bytes);                       // or feedFromMemory(mem, va, n) after recv
 *   for (;;) {
 *     const r = parser.next();
 *     if (r === RESP_NEED_MORE) break;
 *     if (r === RESP_ERROR) { out.error(parser.error); closeAfterSend = true; break; }
 *     if (engine.execute(session, parser, out) & EXEC_CLOSE) { closeAfterSend = true; break; }
 *   }
 *   send(out.bytes()); out.reset();
 *   …  engine.disconnect(session) when the connection ends.
 *
 * execute() takes the store lock for the whole command (store.ts explains the lock), so any
 * number of cores may run it at once on one store — unless the caller holds the lock across a
 * whole pipelined batch with hold()/release() (the KV server does: one acquisition per batch).
 * It follows Redis's processCommand order: QUIT first, then the command lookup (unknown command
 * / unknown subcommand errors), then the arity check, then the command, which decodes all its
 * arguments before it changes anything. A command runs at the time of a clock reading (Redis
 * caches mstime per call()): one reading per command, or inside a hold one per CLOCK_EVERY
 * commands — a batch takes microseconds and a clock read costs as much as a GET's store work.
 *
 * Propagation: when the store's AOF log is on, a command that changed data appends its record
 * to the shared log inside the same critical section, so the log is in execution order across
 * cores. Records are the command as sent, except where replay would differ: relative expiries
 * become absolute (SET … PXAT ms, PEXPIREAT key ms), an EXPIRE into the past becomes DEL,
 * SPOP becomes SREM of the members it took (or DEL when it took them all), GETSET becomes SET,
 * SET without GET; a key that expires lazily logs a DEL first (Redis propagateDeletion).
 *
 * Deviations from Redis 7.0, on purpose: one database (SELECT 0 only, "databases 1"); COMMAND
 * DOCS replies an empty array (no docs; redis-cli then uses its built-in help); COMMAND INFO
 * gives arity, flags and key positions with empty ACL/tips/key-spec arrays; CONFIG SET knows no
 * parameter; an out-of-memory heap answers -OOM and a multi-key write may then be partial;
 * -0 scores are stored as 0 (as Redis's listpack-encoded sorted sets keep them).
 */

import { checkInteger, panic } from "../../src/errors.js";
import { E_KLEN } from "./dict.js";
import { globMatch } from "./glob.js";
import { compareBytes, copyOut } from "./memory.js";
import {
  addLL,
  formatDouble,
  formatInt,
  LLONG_MIN,
  normalizeLL,
  parseCursor,
  parseDouble,
  parseLL,
} from "./numbers.js";
import { type Argv, DEFAULT_PROTO_MAX_BULK_LEN, RespWriter } from "./resp.js";
import {
  HF_KEY,
  HF_VAL,
  HF_VLEN,
  K_KEY,
  type KvStore,
  LN_DATA,
  SE_KEY,
  TYPE_HASH,
  TYPE_LIST,
  TYPE_NAMES,
  TYPE_NONE,
  TYPE_SET,
  TYPE_STRING,
  TYPE_ZSET,
} from "./store.js";
import { ZE_KEY } from "./zset.js";

/** execute(): the command changed data (it was, or would be, logged to the AOF). */
export const EXEC_MODIFIED = 1;
/** execute(): close the connection after sending the reply (QUIT). */
export const EXEC_CLOSE = 2;
/** execute(): the reply is an error. */
export const EXEC_ERROR = 4;

const ERR_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value";
const ERR_SYNTAX = "ERR syntax error";
const ERR_NOT_INT = "ERR value is not an integer or out of range";
const ERR_NOT_FLOAT = "ERR value is not a valid float";
const ERR_POSITIVE = "ERR value is out of range, must be positive";
const ERR_OOM = "OOM command not allowed when used memory > 'maxmemory'.";
const ERR_NAN = "ERR resulting score is not a number (NaN)";

/** Commands of one hold that share one reading of the clock (see KvEngine.execute). */
const CLOCK_EVERY = 16;

/** Redis 7.0's version, as INFO reports it (the protocol and replies this engine follows). */
export const REDIS_VERSION = "7.0.15";

/** One connection's state. */
export class KvSession {
  /** Client id (CLIENT ID). */
  readonly id: number;
  /** Client name (CLIENT SETNAME), or null. */
  name: Uint8Array | null = null;
  constructor(id: number) {
    this.id = id;
  }
}

export interface KvEngineOptions {
  /** Longest string a command may build (APPEND), as proto-max-bulk-len. Default 64 MiB. */
  readonly protoMaxBulkLen?: number;
  /** The TCP port, for INFO and CONFIG GET port. */
  readonly port?: number;
  /** appendfsync policy name, for CONFIG GET and INFO (the server applies it). */
  readonly appendfsync?: "always" | "everysec" | "no";
  /** Process id, for INFO. */
  readonly pid?: number;
}

// command flags
const F_WRITE = 1;
const F_READONLY = 2;
const F_FAST = 4;
const F_ADMIN = 8;

interface Command {
  readonly name: string;
  /** "config|get" for subcommands. */
  readonly fullname: string;
  /** Redis arity: n = exactly n arguments (name included), -n = at least n. */
  readonly arity: number;
  readonly flags: number;
  readonly firstKey: number;
  readonly lastKey: number;
  readonly step: number;
  readonly run: (x: Exec) => void;
  readonly subs: CommandTable | null;
}

/** Command names → commands, looked up case-insensitively in the argument bytes (no string made). */
class CommandTable {
  readonly #slots: (Command | undefined)[] = new Array(512);
  readonly #names: Uint8Array[] = new Array(512);
  readonly all: Command[] = [];

  static #hash(b: Uint8Array, o: number, n: number): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < n; i++) h = Math.imul(h ^ (b[o + i] | 0x20), 0x01000193);
    return (h >>> 0) & 511;
  }

  add(c: Command): void {
    const name = new TextEncoder().encode(c.name);
    let i = CommandTable.#hash(name, 0, name.length);
    while (this.#slots[i] !== undefined) i = (i + 1) & 511;
    this.#slots[i] = c;
    this.#names[i] = name;
    this.all.push(c);
  }

  find(b: Uint8Array, o: number, n: number): Command | undefined {
    for (let i = CommandTable.#hash(b, o, n); ; i = (i + 1) & 511) {
      const c = this.#slots[i];
      if (c === undefined) return undefined;
      const name = this.#names[i];
      if (name.length === n && eqLower(b, o, name)) return c;
    }
  }
}

/** Is b[o … o+name.length) equal to the lowercase ASCII `name`, ignoring case? */
function eqLower(b: Uint8Array, o: number, name: Uint8Array): boolean {
  for (let k = 0; k < name.length; k++) {
    const c = b[o + k];
    const l = c >= 65 && c <= 90 ? c | 0x20 : c;
    if (l !== name[k]) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The state of the command being run, and its helpers

/** What a command handler sees (one per engine, reused for every command). */
class Exec {
  readonly store: KvStore;
  readonly engine: KvEngine;
  a!: Argv;
  out!: RespWriter;
  session!: KvSession;
  flags = 0;
  /** Scratch for record building and key copies. */
  readonly rec = new RespWriter(1024);
  scratch = new Uint8Array(1024);

  constructor(engine: KvEngine, store: KvStore) {
    this.engine = engine;
    this.store = store;
  }

  // -- arguments
  off(i: number): number {
    return this.a.argOff[i];
  }
  len(i: number): number {
    return this.a.argLen[i];
  }
  /** Is argument i the lowercase ASCII word w, ignoring case? */
  is(i: number, w: string): boolean {
    if (this.a.argLen[i] !== w.length) return false;
    const b = this.a.buf;
    const o = this.a.argOff[i];
    for (let k = 0; k < w.length; k++) {
      const c = b[o + k];
      if ((c >= 65 && c <= 90 ? c | 0x20 : c) !== w.charCodeAt(k)) return false;
    }
    return true;
  }
  ll(i: number): number | bigint | null {
    return parseLL(this.a.buf, this.a.argOff[i], this.a.argLen[i]);
  }
  /** Argument i as a latin1 string (error messages and slow paths only). */
  str(i: number): string {
    let s = "";
    const b = this.a.buf;
    const o = this.a.argOff[i];
    for (let k = 0; k < this.a.argLen[i]; k++) s += String.fromCharCode(b[o + k]);
    return s;
  }

  // -- keys
  lookupRead(i: number): number {
    return this.store.lookup(this.a.buf, this.a.argOff[i], this.a.argLen[i], true);
  }
  lookupWrite(i: number): number {
    return this.store.lookup(this.a.buf, this.a.argOff[i], this.a.argLen[i], false);
  }
  /** Entry of key i if it holds `type`; 0 if absent; -1 after replying WRONGTYPE. */
  typed(i: number, type: number, read: boolean): number {
    const e = read ? this.lookupRead(i) : this.lookupWrite(i);
    if (e !== 0 && this.store.typeOf(e) !== type) {
      this.error(ERR_WRONGTYPE);
      return -1;
    }
    return e;
  }
  addKey(i: number, type: number, value: number, vlen: number): number {
    return this.store.addKey(this.a.buf, this.a.argOff[i], this.a.argLen[i], type, value, vlen);
  }

  // -- replies
  error(msg: string): void {
    this.out.error(msg);
    this.flags |= EXEC_ERROR;
  }
  ok(): void {
    this.out.simple("OK");
  }
  oom(): void {
    this.error(ERR_OOM);
  }
  arity(c: Command): void {
    this.error(`ERR wrong number of arguments for '${c.fullname}' command`);
  }
  bulkArg(i: number): void {
    this.out.bulk(this.a.buf, this.a.argOff[i], this.a.argLen[i]);
  }
  bulkKey(e: number): void {
    this.out.bulkFromMemory(this.store.mem, e + K_KEY, this.store.keyLength(e));
  }

  // -- changes and their AOF records
  changed(n = 1): void {
    this.flags |= EXEC_MODIFIED;
    this.store.addDirty(n);
  }
  /** Log the command as it came (when the AOF is on). */
  propagate(): void {
    if (!this.store.aofOn()) return;
    this.rec.reset(64 * 1024);
    this.rec.command(this.a);
    this.store.aofAppend(this.rec.buf, 0, this.rec.length);
  }
  /** Start a record of n arguments (then recArg / recAscii, then recEnd); false if the AOF is off. */
  recStart(n: number): boolean {
    if (!this.store.aofOn()) return false;
    this.rec.reset(64 * 1024);
    this.rec.array(n);
    return true;
  }
  recArg(i: number): void {
    this.rec.bulk(this.a.buf, this.a.argOff[i], this.a.argLen[i]);
  }
  recAscii(s: string): void {
    this.rec.bulkAscii(s);
  }
  recEnd(): void {
    this.store.aofAppend(this.rec.buf, 0, this.rec.length);
  }
  /** Log the command's first n arguments (a multi-argument write the heap cut short after them). */
  propagatePrefix(n: number): void {
    if (!this.recStart(n)) return;
    for (let i = 0; i < n; i++) this.recArg(i);
    this.recEnd();
  }
  /** Log DEL key-argument i. */
  propagateDel(i: number): void {
    if (!this.recStart(2)) return;
    this.recAscii("DEL");
    this.recArg(i);
    this.recEnd();
  }
}

// ---------------------------------------------------------------------------------------------
// Commands: connection and server

function ping(x: Exec): void {
  if (x.a.argc > 2) {
    x.arity(find("ping"));
    return;
  }
  if (x.a.argc === 1) x.out.simple("PONG");
  else x.bulkArg(1);
}

function echo(x: Exec): void {
  x.bulkArg(1);
}

function select(x: Exec): void {
  const v = x.ll(1);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  if (v < -2147483648 || v > 2147483647) {
    x.error("ERR value is out of range, value must between -2147483648 and 2147483647");
    return;
  }
  if (v !== 0) {
    x.error("ERR DB index is out of range");
    return;
  }
  x.ok();
}

function quit(x: Exec): void {
  x.ok();
  x.flags |= EXEC_CLOSE;
}

function dbsize(x: Exec): void {
  x.out.integer(x.store.dbSize());
}

function flushall(x: Exec): void {
  if (x.a.argc > 2 || (x.a.argc === 2 && !x.is(1, "sync") && !x.is(1, "async"))) {
    x.error(ERR_SYNTAX);
    return;
  }
  const n = x.store.dbSize();
  x.store.flushAll();
  x.changed(Math.max(1, n));
  x.propagate();
  x.ok();
}

/** The parameters CONFIG GET knows: name → value. */
function configParams(x: Exec): [string, string][] {
  const o = x.engine.options;
  return [
    ["save", ""],
    ["appendonly", x.store.stats().aofEnabled ? "yes" : "no"],
    ["appendfsync", o.appendfsync ?? "everysec"],
    ["databases", "1"],
    ["maxmemory", "0"],
    ["proto-max-bulk-len", String(x.engine.protoMaxBulkLen)],
    ["port", String(o.port ?? 0)],
  ];
}

const LOWER = new Uint8Array(256).map((_, c) => (c >= 65 && c <= 90 ? c | 0x20 : c));

function configGet(x: Exec): void {
  const params = configParams(x);
  const seen = new Map<string, string>(); // reply key → value, in first-match order
  const taken = new Set<string>();
  for (let i = 2; i < x.a.argc; i++) {
    const arg = x.str(i);
    if (!/[[*?]/.test(arg)) {
      const p = params.find(([k]) => k === arg.toLowerCase());
      if (p !== undefined && !taken.has(p[0])) {
        taken.add(p[0]);
        seen.set(arg, p[1]);
      }
      continue;
    }
    const pat = x.a.buf.subarray(x.off(i), x.off(i) + x.len(i)).map((c) => LOWER[c]);
    for (const [k, v] of params) {
      if (taken.has(k)) continue;
      const kb = new TextEncoder().encode(k);
      if (globMatch(pat, 0, pat.length, kb, 0, kb.length)) {
        taken.add(k);
        seen.set(k, v);
      }
    }
  }
  x.out.array(2 * seen.size);
  for (const [k, v] of seen) {
    x.out.bulkAscii(k);
    x.out.bulkAscii(v);
  }
}

function configSet(x: Exec): void {
  x.error(`ERR Unknown option or number of arguments for CONFIG SET - '${x.str(2)}'`);
}

function configResetstat(x: Exec): void {
  x.store.resetStats();
  x.ok();
}

function info(x: Exec): void {
  const want = new Set<string>();
  for (let i = 1; i < x.a.argc; i++) want.add(x.str(i).toLowerCase());
  const all = want.size === 0 || want.has("all") || want.has("everything") || want.has("default");
  const s = x.store.stats();
  const o = x.engine.options;
  const up = Math.max(0, Math.floor((x.store.now - s.createdAt) / 1000));
  const sections: [string, [string, string | number][]][] = [
    [
      "Server",
      [
        ["redis_version", REDIS_VERSION],
        ["redis_mode", "standalone"],
        ["exocore_kv", "1"],
        ["arch_bits", 32],
        ["multiplexing_api", "exocore"],
        ["process_id", o.pid ?? 0],
        ["tcp_port", o.port ?? 0],
        ["uptime_in_seconds", up],
        ["uptime_in_days", Math.floor(up / 86400)],
      ],
    ],
    ["Clients", [["connected_clients", s.clients]]],
    [
      "Memory",
      [
        ["used_memory", s.usedBytes],
        ["used_memory_human", humanBytes(s.usedBytes)],
        ["maxmemory", 0],
        ["mem_allocator", "exocore-libos-malloc"],
      ],
    ],
    [
      "Persistence",
      [
        ["loading", x.store.loading ? 1 : 0],
        ["rdb_changes_since_last_save", s.dirty],
        ["aof_enabled", s.aofEnabled ? 1 : 0],
        ["aof_pending_bytes", s.aofPendingBytes],
      ],
    ],
    [
      "Stats",
      [
        ["total_connections_received", s.connections],
        ["total_commands_processed", s.commands],
        ["expired_keys", s.expiredKeys],
        ["keyspace_hits", s.hits],
        ["keyspace_misses", s.misses],
        ["store_lock_contended", s.lockContended],
      ],
    ],
    ["Keyspace", s.keys > 0 ? [["db0", `keys=${s.keys},expires=${s.expires},avg_ttl=0`]] : []],
  ];
  let text = "";
  for (const [name, lines] of sections) {
    if (!all && !want.has(name.toLowerCase())) continue;
    if (text.length > 0) text += "\r\n";
    text += `# ${name}\r\n`;
    for (const [k, v] of lines) text += `${k}:${v}\r\n`;
  }
  x.out.bulkAscii(text);
}

function humanBytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ["K", "M", "G", "T"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(2)}${units[u]}`;
}

function commandInfoOf(x: Exec, c: Command): void {
  const o = x.out;
  o.array(10);
  o.bulkAscii(c.fullname);
  o.integer(c.arity);
  const flags: string[] = [];
  if (c.flags & F_WRITE) flags.push("write");
  if (c.flags & F_READONLY) flags.push("readonly");
  if (c.flags & F_ADMIN) flags.push("admin");
  if (c.flags & F_FAST) flags.push("fast");
  o.array(flags.length);
  for (const f of flags) o.simple(f);
  o.integer(c.firstKey);
  o.integer(c.lastKey);
  o.integer(c.step);
  o.array(0); // ACL categories
  o.array(0); // tips
  o.array(0); // key specs
  const subs = c.subs?.all ?? [];
  o.array(subs.length);
  for (const s of subs) commandInfoOf(x, s);
}

function command(x: Exec): void {
  const cmds = TABLE.all;
  x.out.array(cmds.length);
  for (const c of cmds) commandInfoOf(x, c);
}

function commandCount(x: Exec): void {
  x.out.integer(TABLE.all.length);
}

function commandInfo(x: Exec): void {
  if (x.a.argc === 2) {
    command(x);
    return;
  }
  x.out.array(x.a.argc - 2);
  for (let i = 2; i < x.a.argc; i++) {
    const c = TABLE.find(x.a.buf, x.off(i), x.len(i));
    if (c === undefined) x.out.nullBulk();
    else commandInfoOf(x, c);
  }
}

function commandDocs(x: Exec): void {
  x.out.array(0);
}

function clientSetname(x: Exec): void {
  const n = x.len(2);
  const b = x.a.buf;
  for (let k = 0; k < n; k++) {
    const c = b[x.off(2) + k];
    if (c < 33 || c > 126) {
      x.error("ERR Client names cannot contain spaces, newlines or special characters.");
      return;
    }
  }
  x.session.name = n === 0 ? null : b.slice(x.off(2), x.off(2) + n);
  x.ok();
}

function clientGetname(x: Exec): void {
  const name = x.session.name;
  if (name === null) x.out.nullBulk();
  else x.out.bulk(name, 0, name.length);
}

function clientId(x: Exec): void {
  x.out.integer(x.session.id);
}

// ---------------------------------------------------------------------------------------------
// Keys and expiry

function del(x: Exec): void {
  let n = 0;
  for (let i = 1; i < x.a.argc; i++) if (x.store.deleteKey(x.a.buf, x.off(i), x.len(i))) n++;
  if (n > 0) {
    x.changed(n);
    x.propagate();
  }
  x.out.integer(n);
}

function exists(x: Exec): void {
  let n = 0;
  for (let i = 1; i < x.a.argc; i++) if (x.lookupRead(i) !== 0) n++;
  x.out.integer(n);
}

function type(x: Exec): void {
  const e = x.lookupRead(1);
  x.out.simple(TYPE_NAMES[e === 0 ? TYPE_NONE : x.store.typeOf(e)]);
}

/** LLONG_MAX as a double (2^63): expiry arithmetic in doubles is exact only up to 2^53 ms. */
const LLMAX = 2 ** 63;

/** EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis expireGenericCommand). */
function expireGeneric(x: Exec, seconds: boolean, absolute: boolean): void {
  let nx = false;
  let xx = false;
  let gt = false;
  let lt = false;
  for (let i = 3; i < x.a.argc; i++) {
    if (x.is(i, "nx")) nx = true;
    else if (x.is(i, "xx")) xx = true;
    else if (x.is(i, "gt")) gt = true;
    else if (x.is(i, "lt")) lt = true;
    else {
      x.error(`ERR Unsupported option ${x.str(i)}`);
      return;
    }
  }
  if ((nx && xx) || (nx && gt) || (nx && lt)) {
    x.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return;
  }
  if (gt && lt) {
    x.error("ERR GT and LT options at the same time are not compatible");
    return;
  }
  const v = x.ll(2);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  let when = Number(v);
  const base = absolute ? 0 : x.store.now;
  if (seconds) {
    if (when > LLMAX / 1000 || when < -LLMAX / 1000) {
      expireTimeError(x);
      return;
    }
    when *= 1000;
  }
  if (when > LLMAX - base) {
    expireTimeError(x);
    return;
  }
  when += base;
  const e = x.lookupWrite(1);
  if (e === 0) {
    x.out.integer(0);
    return;
  }
  const cur = x.store.expireAt(e);
  if (nx && cur !== -1) {
    x.out.integer(0);
    return;
  }
  if (xx && cur === -1) {
    x.out.integer(0);
    return;
  }
  if (gt && (when <= cur || cur === -1)) {
    x.out.integer(0);
    return;
  }
  if (lt && cur !== -1 && when >= cur) {
    x.out.integer(0);
    return;
  }
  if (when <= x.store.now && !x.store.loading) {
    x.store.deleteEntry(e);
    x.changed();
    x.propagateDel(1);
    x.out.integer(1);
    return;
  }
  x.store.setExpire(e, when);
  x.changed();
  if (x.recStart(x.a.argc)) {
    x.recAscii("PEXPIREAT");
    x.recArg(1);
    x.recAscii(String(when));
    for (let i = 3; i < x.a.argc; i++) x.recArg(i);
    x.recEnd();
  }
  x.out.integer(1);
}

function expireTimeError(x: Exec): void {
  x.error(`ERR invalid expire time in '${find1(x).fullname}' command`);
}

function find1(x: Exec): Command {
  return TABLE.find(x.a.buf, x.off(0), x.len(0)) as Command;
}

function ttlGeneric(x: Exec, ms: boolean): void {
  const e = x.lookupRead(1);
  if (e === 0) {
    x.out.integer(-2);
    return;
  }
  const at = x.store.expireAt(e);
  if (at === -1) {
    x.out.integer(-1);
    return;
  }
  const ttl = Math.max(0, at - x.store.now);
  x.out.integer(ms ? ttl : Math.floor((ttl + 500) / 1000));
}

function persist(x: Exec): void {
  const e = x.lookupWrite(1);
  if (e !== 0 && x.store.removeExpire(e)) {
    x.changed();
    x.propagate();
    x.out.integer(1);
    return;
  }
  x.out.integer(0);
}

function keys(x: Exec): void {
  const all = x.len(1) === 1 && x.a.buf[x.off(1)] === 42;
  const out: number[] = [];
  for (const e of x.store.keyEntries()) if (all || matchKey(x, e, 1)) out.push(e);
  x.out.array(out.length);
  for (const e of out) x.bulkKey(e);
}

/** Does key entry e match the glob in argument i? (copies the key to scratch) */
function matchKey(x: Exec, e: number, i: number): boolean {
  const n = x.store.keyLength(e);
  if (x.scratch.length < n) x.scratch = new Uint8Array(n * 2);
  copyOut(x.store.mem, e + K_KEY, x.scratch, 0, n);
  return globMatch(x.a.buf, x.off(i), x.len(i), x.scratch, 0, n);
}

function scan(x: Exec): void {
  let cursor = parseCursor(x.a.buf, x.off(1), x.len(1));
  if (cursor < 0) {
    x.error("ERR invalid cursor");
    return;
  }
  let count = 10;
  let pat = -1;
  let typeName: string | null = null;
  for (let i = 2; i < x.a.argc; i += 2) {
    const left = x.a.argc - i;
    if (x.is(i, "count") && left >= 2) {
      const v = x.ll(i + 1);
      if (v === null) {
        x.error(ERR_NOT_INT);
        return;
      }
      if (v < 1) {
        x.error(ERR_SYNTAX);
        return;
      }
      count = Number(v);
    } else if (x.is(i, "match") && left >= 2) {
      pat = i + 1;
    } else if (x.is(i, "type") && left >= 2) {
      typeName = x.str(i + 1).toLowerCase();
    } else {
      x.error(ERR_SYNTAX);
      return;
    }
  }
  const found: number[] = [];
  let budget = count * 10;
  const visit = (e: number): void => {
    found.push(e);
  };
  do {
    cursor = x.store.scanKeys(cursor, visit);
  } while (cursor !== 0 && budget-- > 0 && found.length < count);
  const out: number[] = [];
  const all = pat >= 0 && x.len(pat) === 1 && x.a.buf[x.off(pat)] === 42;
  for (const e of found) {
    if (pat >= 0 && !all && !matchKey(x, e, pat)) continue;
    if (x.store.isExpired(e)) continue;
    if (typeName !== null && TYPE_NAMES[x.store.typeOf(e)] !== typeName) continue;
    out.push(e);
  }
  x.out.array(2);
  x.out.bulkInt(cursor);
  x.out.array(out.length);
  for (const e of out) x.bulkKey(e);
}

// ---------------------------------------------------------------------------------------------
// Strings

function get(x: Exec): void {
  const e = x.typed(1, TYPE_STRING, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.nullBulk();
    return;
  }
  x.out.bulkFromMemory(x.store.mem, x.store.value(e), x.store.valueLength(e));
}

const SET_NX = 1;
const SET_XX = 2;
const SET_GET = 4;
const SET_KEEPTTL = 8;
const SET_EX = 16;
const SET_PX = 32;
const SET_EXAT = 64;
const SET_PXAT = 128;
const SET_EXPIRES = SET_EX | SET_PX | SET_EXAT | SET_PXAT;

function set(x: Exec): void {
  let flags = 0;
  let expireArg = -1;
  const argc = x.a.argc;
  for (let j = 3; j < argc; j++) {
    const hasNext = j < argc - 1;
    if (x.is(j, "nx") && !(flags & SET_XX)) flags |= SET_NX;
    else if (x.is(j, "xx") && !(flags & SET_NX)) flags |= SET_XX;
    else if (x.is(j, "get")) flags |= SET_GET;
    else if (x.is(j, "keepttl") && !(flags & SET_EXPIRES)) flags |= SET_KEEPTTL;
    else if (x.is(j, "ex") && !(flags & (SET_KEEPTTL | SET_EXAT | SET_PX | SET_PXAT)) && hasNext) {
      flags |= SET_EX;
      expireArg = ++j;
    } else if (
      x.is(j, "px") &&
      !(flags & (SET_KEEPTTL | SET_EX | SET_EXAT | SET_PXAT)) &&
      hasNext
    ) {
      flags |= SET_PX;
      expireArg = ++j;
    } else if (
      x.is(j, "exat") &&
      !(flags & (SET_KEEPTTL | SET_EX | SET_PX | SET_PXAT)) &&
      hasNext
    ) {
      flags |= SET_EXAT;
      expireArg = ++j;
    } else if (
      x.is(j, "pxat") &&
      !(flags & (SET_KEEPTTL | SET_EX | SET_EXAT | SET_PX)) &&
      hasNext
    ) {
      flags |= SET_PXAT;
      expireArg = ++j;
    } else {
      x.error(ERR_SYNTAX);
      return;
    }
  }
  setGeneric(x, flags, expireArg);
}

/** The expiry time an EX/PX/EXAT/PXAT argument names, in ms; NaN after replying an error. */
function expireMillis(x: Exec, i: number, flags: number, name: string): number {
  const v = x.ll(i);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return Number.NaN;
  }
  let ms = Number(v);
  const seconds = (flags & (SET_EX | SET_EXAT)) !== 0;
  if (ms <= 0 || (seconds && ms > LLMAX / 1000)) {
    x.error(`ERR invalid expire time in '${name}' command`);
    return Number.NaN;
  }
  if (seconds) ms *= 1000;
  if (flags & (SET_EX | SET_PX)) ms += x.store.now;
  if (ms > LLMAX) {
    x.error(`ERR invalid expire time in '${name}' command`);
    return Number.NaN;
  }
  return ms;
}

/** Redis setGenericCommand: the shared tail of SET, SETNX, SETEX, PSETEX. */
function setGeneric(x: Exec, flags: number, expireArg: number, name = "set", ok = "OK"): void {
  let when = 0;
  if (expireArg >= 0) {
    when = expireMillis(x, expireArg, flags, name);
    if (Number.isNaN(when)) return;
  }
  if (flags & SET_GET) {
    const e = x.typed(1, TYPE_STRING, true);
    if (e < 0) return;
    if (e === 0) x.out.nullBulk();
    else x.out.bulkFromMemory(x.store.mem, x.store.value(e), x.store.valueLength(e));
  }
  // Only NX and XX need to know first (setString looks the key up, expiring it lazily, anyway).
  const found = (flags & (SET_NX | SET_XX)) !== 0 && x.lookupWrite(1) !== 0;
  if ((flags & SET_NX && found) || (flags & SET_XX && !found)) {
    if (!(flags & SET_GET)) {
      if (name === "setnx") x.out.integer(0);
      else x.out.nullBulk();
    }
    return;
  }
  const e = x.store.setString(
    x.a.buf,
    x.off(1),
    x.len(1),
    x.a.buf,
    x.off(2),
    x.len(2),
    (flags & SET_KEEPTTL) !== 0,
  );
  if (e === 0) {
    if (!(flags & SET_GET)) x.oom();
    return;
  }
  x.changed();
  if (expireArg >= 0) {
    x.store.setExpire(e, when);
    if (x.recStart(5)) {
      x.recAscii("SET");
      x.recArg(1);
      x.recArg(2);
      x.recAscii("PXAT");
      x.recAscii(String(when));
      x.recEnd();
    }
  } else if (flags & SET_GET) {
    let n = 0;
    for (let j = 0; j < x.a.argc; j++) if (!(j >= 3 && x.is(j, "get"))) n++;
    if (x.recStart(n)) {
      for (let j = 0; j < x.a.argc; j++) if (!(j >= 3 && x.is(j, "get"))) x.recArg(j);
      x.recEnd();
    }
  } else x.propagate();
  if (!(flags & SET_GET)) {
    if (name === "setnx") x.out.integer(1);
    else x.out.simple(ok);
  }
}

function setnx(x: Exec): void {
  setGeneric(x, SET_NX, -1, "setnx");
}

/** SETEX key seconds value / PSETEX key ms value: arguments moved into SET's places. */
function setexGeneric(x: Exec, ms: boolean): void {
  const a = x.a;
  // swap the value (argument 3) and the time (argument 2) so that setGeneric sees SET's order
  const o2 = a.argOff[2];
  const l2 = a.argLen[2];
  a.argOff[2] = a.argOff[3];
  a.argLen[2] = a.argLen[3];
  a.argOff[3] = o2;
  a.argLen[3] = l2;
  try {
    setGeneric(x, ms ? SET_PX : SET_EX, 3, ms ? "psetex" : "setex");
  } finally {
    a.argOff[3] = a.argOff[2];
    a.argLen[3] = a.argLen[2];
    a.argOff[2] = o2;
    a.argLen[2] = l2;
  }
}

function getset(x: Exec): void {
  const e = x.typed(1, TYPE_STRING, true);
  if (e < 0) return;
  if (e === 0) x.out.nullBulk();
  else x.out.bulkFromMemory(x.store.mem, x.store.value(e), x.store.valueLength(e));
  if (x.store.setString(x.a.buf, x.off(1), x.len(1), x.a.buf, x.off(2), x.len(2), false) === 0)
    return;
  x.changed();
  if (x.recStart(3)) {
    x.recAscii("SET");
    x.recArg(1);
    x.recArg(2);
    x.recEnd();
  }
}

function mget(x: Exec): void {
  x.out.array(x.a.argc - 1);
  for (let i = 1; i < x.a.argc; i++) {
    const e = x.lookupRead(i);
    if (e === 0 || x.store.typeOf(e) !== TYPE_STRING) x.out.nullBulk();
    else x.out.bulkFromMemory(x.store.mem, x.store.value(e), x.store.valueLength(e));
  }
}

function mset(x: Exec): void {
  if (x.a.argc % 2 === 0) {
    x.arity(find("mset"));
    return;
  }
  for (let i = 1; i < x.a.argc; i += 2) {
    const e = x.store.setString(
      x.a.buf,
      x.off(i),
      x.len(i),
      x.a.buf,
      x.off(i + 1),
      x.len(i + 1),
      false,
    );
    if (e === 0) {
      if (i > 1) {
        x.changed();
        x.propagatePrefix(i); // the pairs set before the heap ran out
      }
      x.oom();
      return;
    }
  }
  x.changed((x.a.argc - 1) / 2);
  x.propagate();
  x.ok();
}

function append(x: Exec): void {
  const e = x.typed(1, TYPE_STRING, false);
  if (e < 0) return;
  let total: number;
  if (e === 0) {
    const s = x.store.newString(x.a.buf, x.off(2), x.len(2));
    if (s < 0 || x.addKey(1, TYPE_STRING, s, x.len(2)) === 0) {
      if (s > 0) x.store.free(s, (x.len(2) + 3) & ~3);
      x.oom();
      return;
    }
    total = x.len(2);
  } else {
    total = x.store.valueLength(e) + x.len(2);
    if (total > x.engine.protoMaxBulkLen && !x.store.loading) {
      x.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
      return;
    }
    if (!x.store.appendString(e, x.a.buf, x.off(2), x.len(2))) {
      x.oom();
      return;
    }
  }
  x.changed();
  x.propagate();
  x.out.integer(total);
}

function strlen(x: Exec): void {
  const e = x.typed(1, TYPE_STRING, true);
  if (e < 0) return;
  x.out.integer(e === 0 ? 0 : x.store.valueLength(e));
}

/** INCR, DECR, INCRBY, DECRBY with the increment already decoded. */
function incrDecr(x: Exec, by: number | bigint): void {
  const e = x.typed(1, TYPE_STRING, false);
  if (e < 0) return;
  let cur: number | bigint = 0;
  if (e !== 0) {
    const n = x.store.valueLength(e);
    if (n === 0 || n > 20) {
      x.error(ERR_NOT_INT);
      return;
    }
    copyOut(x.store.mem, x.store.value(e), x.scratch, 0, n);
    const v = parseLL(x.scratch, 0, n);
    if (v === null) {
      x.error(ERR_NOT_INT);
      return;
    }
    cur = v;
  }
  const next = addLL(cur, by);
  if (next === null) {
    x.error("ERR increment or decrement would overflow");
    return;
  }
  const n = formatInt(next, x.scratch, 0);
  const ok =
    e !== 0
      ? x.store.setStringValue(e, x.scratch, 0, n)
      : x.store.setString(x.a.buf, x.off(1), x.len(1), x.scratch, 0, n, true) !== 0;
  if (!ok) {
    x.oom();
    return;
  }
  x.changed();
  x.propagate();
  x.out.integer(next);
}

function incr(x: Exec): void {
  incrDecr(x, 1);
}

function decr(x: Exec): void {
  incrDecr(x, -1);
}

function incrby(x: Exec): void {
  const v = x.ll(2);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  incrDecr(x, v);
}

function decrby(x: Exec): void {
  const v = x.ll(2);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  if (typeof v === "bigint" && v === LLONG_MIN) {
    x.error("ERR decrement would overflow");
    return;
  }
  incrDecr(x, typeof v === "bigint" ? normalizeLL(-v) : -v);
}

// ---------------------------------------------------------------------------------------------
// Lists

function push(x: Exec, left: boolean): void {
  let e = x.typed(1, TYPE_LIST, false);
  if (e < 0) return;
  if (e === 0) {
    const l = x.store.newList();
    if (l === 0 || (e = x.addKey(1, TYPE_LIST, l, 0)) === 0) {
      if (l !== 0) x.store.freeValue(TYPE_LIST, l, 0);
      x.oom();
      return;
    }
  }
  const l = x.store.value(e);
  let pushed = 0;
  for (let i = 2; i < x.a.argc; i++) {
    if (!x.store.listPush(l, left, x.a.buf, x.off(i), x.len(i))) break;
    pushed++;
  }
  if (pushed === 0) {
    if (x.store.listLength(l) === 0) x.store.deleteEntry(e);
    x.oom();
    return;
  }
  x.changed(pushed);
  if (pushed === x.a.argc - 2) x.propagate();
  else x.propagatePrefix(pushed + 2);
  if (pushed < x.a.argc - 2) {
    x.oom();
    return;
  }
  x.out.integer(x.store.listLength(l));
}

function pop(x: Exec, left: boolean): void {
  const hasCount = x.a.argc === 3;
  if (x.a.argc > 3) {
    x.arity(find1(x));
    return;
  }
  let count = 1;
  if (hasCount) {
    const v = x.ll(2);
    if (v === null || v < 0) {
      x.error(ERR_POSITIVE);
      return;
    }
    count = Number(v);
  }
  const e = x.typed(1, TYPE_LIST, false);
  if (e < 0) return;
  if (e === 0) {
    if (hasCount) x.out.nullArray();
    else x.out.nullBulk();
    return;
  }
  if (hasCount && count === 0) {
    x.out.array(0);
    return;
  }
  const l = x.store.value(e);
  const n = Math.min(count, x.store.listLength(l));
  if (hasCount) x.out.array(n);
  const mem = x.store.mem;
  for (let k = 0; k < n; k++) {
    const node = left ? x.store.listHead(l) : x.store.listTail(l);
    x.out.bulkFromMemory(mem, node + LN_DATA, x.store.nodeLength(node));
    x.store.listRemove(l, node);
  }
  if (x.store.listLength(l) === 0) x.store.deleteEntry(e);
  x.changed(n);
  x.propagate();
}

function lrange(x: Exec): void {
  let start = x.ll(2);
  let end = x.ll(3);
  if (start === null || end === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  const e = x.typed(1, TYPE_LIST, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.array(0);
    return;
  }
  const l = x.store.value(e);
  const len = x.store.listLength(l);
  start = Number(start);
  end = Number(end);
  if (start < 0) start += len;
  if (end < 0) end += len;
  if (start < 0) start = 0;
  if (start > end || start >= len) {
    x.out.array(0);
    return;
  }
  if (end >= len) end = len - 1;
  const n = end - start + 1;
  x.out.array(n);
  let node = x.store.listIndex(l, start);
  for (let k = 0; k < n; k++) {
    x.out.bulkFromMemory(x.store.mem, node + LN_DATA, x.store.nodeLength(node));
    node = x.store.nodeNext(node);
  }
}

function lindex(x: Exec): void {
  const v = x.ll(2);
  if (v === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  const e = x.typed(1, TYPE_LIST, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.nullBulk();
    return;
  }
  const l = x.store.value(e);
  const len = x.store.listLength(l);
  let i = Number(v);
  if (i < 0) i += len;
  if (i < 0 || i >= len) {
    x.out.nullBulk();
    return;
  }
  const node = x.store.listIndex(l, i);
  x.out.bulkFromMemory(x.store.mem, node + LN_DATA, x.store.nodeLength(node));
}

function llen(x: Exec): void {
  const e = x.typed(1, TYPE_LIST, true);
  if (e < 0) return;
  x.out.integer(e === 0 ? 0 : x.store.listLength(x.store.value(e)));
}

// ---------------------------------------------------------------------------------------------
// Sets

function sadd(x: Exec): void {
  let e = x.typed(1, TYPE_SET, false);
  if (e < 0) return;
  if (e === 0) {
    const s = x.store.newSet();
    if (s === 0 || (e = x.addKey(1, TYPE_SET, s, 0)) === 0) {
      if (s !== 0) x.store.freeValue(TYPE_SET, s, 0);
      x.oom();
      return;
    }
  }
  const s = x.store.value(e);
  let added = 0;
  for (let i = 2; i < x.a.argc; i++) {
    const r = x.store.setAdd(s, x.a.buf, x.off(i), x.len(i));
    if (r < 0) {
      if (x.store.setSize(s) === 0) x.store.deleteEntry(e);
      else if (added > 0) {
        x.changed(added);
        x.propagatePrefix(i); // what was added (or was there already) before the heap ran out
      }
      x.oom();
      return;
    }
    added += r;
  }
  if (added > 0) {
    x.changed(added);
    x.propagate();
  }
  x.out.integer(added);
}

function srem(x: Exec): void {
  const e = x.typed(1, TYPE_SET, false);
  if (e < 0) return;
  if (e === 0) {
    x.out.integer(0);
    return;
  }
  const s = x.store.value(e);
  let removed = 0;
  for (let i = 2; i < x.a.argc; i++) {
    const m = x.store.setFind(s, x.a.buf, x.off(i), x.len(i));
    if (m === 0) continue;
    x.store.setRemoveEntry(s, m);
    removed++;
    if (x.store.setSize(s) === 0) {
      x.store.deleteEntry(e);
      break;
    }
  }
  if (removed > 0) {
    x.changed(removed);
    x.propagate();
  }
  x.out.integer(removed);
}

function smembers(x: Exec): void {
  const e = x.typed(1, TYPE_SET, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.array(0);
    return;
  }
  const s = x.store.value(e);
  const d = x.store.dict;
  const mem = x.store.mem;
  x.out.array(d.size(s));
  for (let m = d.first(s); m !== 0; m = d.next(s, m))
    x.out.bulkFromMemory(mem, m + SE_KEY, mem.load32(m + E_KLEN));
}

function sismember(x: Exec): void {
  const e = x.typed(1, TYPE_SET, true);
  if (e < 0) return;
  x.out.integer(
    e !== 0 && x.store.setFind(x.store.value(e), x.a.buf, x.off(2), x.len(2)) !== 0 ? 1 : 0,
  );
}

function scard(x: Exec): void {
  const e = x.typed(1, TYPE_SET, true);
  if (e < 0) return;
  x.out.integer(e === 0 ? 0 : x.store.setSize(x.store.value(e)));
}

function spop(x: Exec): void {
  if (x.a.argc > 3) {
    x.error(ERR_SYNTAX);
    return;
  }
  const hasCount = x.a.argc === 3;
  let count = 1;
  if (hasCount) {
    const v = x.ll(2);
    if (v === null || v < 0) {
      x.error(ERR_POSITIVE);
      return;
    }
    count = Number(v);
  }
  const e = x.typed(1, TYPE_SET, false);
  if (e < 0) return;
  if (e === 0) {
    if (hasCount) x.out.array(0);
    else x.out.nullBulk();
    return;
  }
  if (hasCount && count === 0) {
    x.out.array(0);
    return;
  }
  const s = x.store.value(e);
  const size = x.store.setSize(s);
  const mem = x.store.mem;
  const d = x.store.dict;
  if (hasCount && count >= size) {
    x.out.array(size);
    for (let m = d.first(s); m !== 0; m = d.next(s, m))
      x.out.bulkFromMemory(mem, m + SE_KEY, mem.load32(m + E_KLEN));
    x.store.deleteEntry(e);
    x.changed(size);
    x.propagateDel(1);
    return;
  }
  const n = Math.min(count, size);
  if (hasCount) x.out.array(n);
  const log = x.recStart(n + 2);
  if (log) {
    x.recAscii("SREM");
    x.recArg(1);
  }
  for (let k = 0; k < n; k++) {
    const m = d.random(s);
    const len = mem.load32(m + E_KLEN);
    x.out.bulkFromMemory(mem, m + SE_KEY, len);
    if (log) x.rec.bulkFromMemory(mem, m + SE_KEY, len);
    x.store.setRemoveEntry(s, m);
  }
  if (x.store.setSize(s) === 0) x.store.deleteEntry(e);
  x.changed(n);
  if (log) x.recEnd();
}

// ---------------------------------------------------------------------------------------------
// Hashes

function hset(x: Exec, ok: boolean): void {
  if (x.a.argc % 2 === 1) {
    x.arity(find1(x));
    return;
  }
  let e = x.typed(1, TYPE_HASH, false);
  if (e < 0) return;
  if (e === 0) {
    const h = x.store.newHash();
    if (h === 0 || (e = x.addKey(1, TYPE_HASH, h, 0)) === 0) {
      if (h !== 0) x.store.freeValue(TYPE_HASH, h, 0);
      x.oom();
      return;
    }
  }
  const h = x.store.value(e);
  let created = 0;
  for (let i = 2; i < x.a.argc; i += 2) {
    const r = x.store.hashSet(h, x.a.buf, x.off(i), x.len(i), x.a.buf, x.off(i + 1), x.len(i + 1));
    if (r < 0) {
      if (x.store.hashSize(h) === 0) x.store.deleteEntry(e);
      else if (i > 2) {
        x.changed();
        x.propagatePrefix(i); // the pairs set before the heap ran out
      }
      x.oom();
      return;
    }
    created += r;
  }
  x.changed((x.a.argc - 2) / 2);
  x.propagate();
  if (ok) x.ok();
  else x.out.integer(created);
}

function hget(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, true);
  if (e < 0) return;
  const f = e === 0 ? 0 : x.store.hashFind(x.store.value(e), x.a.buf, x.off(2), x.len(2));
  if (f === 0) {
    x.out.nullBulk();
    return;
  }
  const mem = x.store.mem;
  x.out.bulkFromMemory(mem, mem.load32(f + HF_VAL) >>> 0, mem.load32(f + HF_VLEN));
}

function hmget(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, true);
  if (e < 0) return;
  const mem = x.store.mem;
  x.out.array(x.a.argc - 2);
  for (let i = 2; i < x.a.argc; i++) {
    const f = e === 0 ? 0 : x.store.hashFind(x.store.value(e), x.a.buf, x.off(i), x.len(i));
    if (f === 0) x.out.nullBulk();
    else x.out.bulkFromMemory(mem, mem.load32(f + HF_VAL) >>> 0, mem.load32(f + HF_VLEN));
  }
}

function hdel(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, false);
  if (e < 0) return;
  if (e === 0) {
    x.out.integer(0);
    return;
  }
  const h = x.store.value(e);
  let n = 0;
  for (let i = 2; i < x.a.argc; i++) {
    const f = x.store.hashFind(h, x.a.buf, x.off(i), x.len(i));
    if (f === 0) continue;
    x.store.hashRemoveEntry(h, f);
    n++;
    if (x.store.hashSize(h) === 0) {
      x.store.deleteEntry(e);
      break;
    }
  }
  if (n > 0) {
    x.changed(n);
    x.propagate();
  }
  x.out.integer(n);
}

function hgetall(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.array(0);
    return;
  }
  const h = x.store.value(e);
  const mem = x.store.mem;
  x.out.array(2 * x.store.hashSize(h));
  for (let f = x.store.hashFirstField(h); f !== 0; f = x.store.hashNextField(f)) {
    x.out.bulkFromMemory(mem, f + HF_KEY, mem.load32(f + E_KLEN));
    x.out.bulkFromMemory(mem, mem.load32(f + HF_VAL) >>> 0, mem.load32(f + HF_VLEN));
  }
}

function hlen(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, true);
  if (e < 0) return;
  x.out.integer(e === 0 ? 0 : x.store.hashSize(x.store.value(e)));
}

function hexists(x: Exec): void {
  const e = x.typed(1, TYPE_HASH, true);
  if (e < 0) return;
  const f = e === 0 ? 0 : x.store.hashFind(x.store.value(e), x.a.buf, x.off(2), x.len(2));
  x.out.integer(f === 0 ? 0 : 1);
}

// ---------------------------------------------------------------------------------------------
// Sorted sets

/** Reply a score as Redis 7.0 does in RESP2 (a bulk string). */
function replyScore(x: Exec, s: number): void {
  // %.17g prints an integer below 2^53 as its digits: write those without making a string
  if (Number.isSafeInteger(s) && !Object.is(s, -0)) x.out.bulkInt(s);
  else x.out.bulkAscii(formatDouble(s));
}

/** ZADD (and ZINCRBY with incr forced). */
/** ZADD ran out of memory at argument `upTo`: log what it did (the pairs before), reply -OOM. */
function zaddCutShort(x: Exec, changes: number, upTo: number): void {
  if (changes > 0) {
    x.changed(changes);
    x.propagatePrefix(upTo);
  }
  x.oom();
}

function zaddGeneric(x: Exec, forceIncr: boolean): void {
  let nx = false;
  let xx = false;
  let gt = false;
  let lt = false;
  let ch = false;
  let incr = forceIncr;
  let at = 2;
  if (!forceIncr) {
    for (; at < x.a.argc; at++) {
      if (x.is(at, "nx")) nx = true;
      else if (x.is(at, "xx")) xx = true;
      else if (x.is(at, "ch")) ch = true;
      else if (x.is(at, "incr")) incr = true;
      else if (x.is(at, "gt")) gt = true;
      else if (x.is(at, "lt")) lt = true;
      else break;
    }
  }
  const elements = x.a.argc - at;
  if (elements % 2 !== 0 || elements === 0) {
    x.error(ERR_SYNTAX);
    return;
  }
  const pairs = elements / 2;
  if (xx && nx) {
    x.error("ERR XX and NX options at the same time are not compatible");
    return;
  }
  if ((gt && nx) || (lt && nx) || (gt && lt)) {
    x.error("ERR GT, LT, and/or NX options at the same time are not compatible");
    return;
  }
  if (incr && pairs > 1) {
    x.error("ERR INCR option supports a single increment-element pair");
    return;
  }
  const scores = x.engine.scores(pairs);
  for (let j = 0; j < pairs; j++) {
    const i = at + 2 * j;
    const s = parseDouble(x.a.buf, x.off(i), x.len(i));
    if (Number.isNaN(s)) {
      x.error(ERR_NOT_FLOAT);
      return;
    }
    scores[j] = s === 0 ? 0 : s; // -0 → 0
  }
  let e = x.typed(1, TYPE_ZSET, false);
  if (e < 0) return;
  let added = 0;
  let updated = 0;
  let processed = 0;
  let score = 0;
  const zs = x.store.zsets;
  if (e === 0 && !xx) {
    const z = zs.create();
    if (z === 0 || (e = x.addKey(1, TYPE_ZSET, z, 0)) === 0) {
      if (z !== 0) zs.destroy(z);
      x.oom();
      return;
    }
  }
  if (e !== 0) {
    const z = x.store.value(e);
    for (let j = 0; j < pairs; j++) {
      const i = at + 2 * j + 1;
      let s = scores[j];
      const h = x.store.hash(x.a.buf, x.off(i), x.len(i));
      const m = zs.find(z, h, x.a.buf, x.off(i), x.len(i));
      if (m !== 0) {
        if (nx) continue;
        const cur = zs.entryScore(m);
        if (incr) {
          s += cur;
          if (Number.isNaN(s)) {
            if (added + updated > 0) {
              x.changed(added + updated);
              x.propagate();
            }
            x.error(ERR_NAN);
            return;
          }
          if (s === 0) s = 0;
        }
        if ((lt && s >= cur) || (gt && s <= cur)) continue;
        score = s;
        processed++;
        if (s !== cur) {
          if (!zs.update(z, m, s)) {
            zaddCutShort(x, added + updated, at + 2 * j);
            return;
          }
          updated++;
        }
      } else if (!xx) {
        if (zs.add(z, h, x.a.buf, x.off(i), x.len(i), s) === 0) {
          if (zs.length(z) === 0) x.store.deleteEntry(e);
          zaddCutShort(x, added + updated, at + 2 * j);
          return;
        }
        score = s;
        added++;
        processed++;
      }
    }
    if (zs.length(z) === 0) x.store.deleteEntry(e); // only NX/XX no-ops on a new set: none
  }
  if (added + updated > 0) {
    x.changed(added + updated);
    x.propagate();
  }
  if (incr) {
    if (processed > 0) replyScore(x, score);
    else x.out.nullBulk();
  } else x.out.integer(ch ? added + updated : added);
}

function zscore(x: Exec): void {
  const e = x.typed(1, TYPE_ZSET, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.nullBulk();
    return;
  }
  const zs = x.store.zsets;
  const z = x.store.value(e);
  const m = zs.find(z, x.store.hash(x.a.buf, x.off(2), x.len(2)), x.a.buf, x.off(2), x.len(2));
  if (m === 0) {
    x.out.nullBulk();
    return;
  }
  replyScore(x, zs.entryScore(m));
}

function zcard(x: Exec): void {
  const e = x.typed(1, TYPE_ZSET, true);
  if (e < 0) return;
  x.out.integer(e === 0 ? 0 : x.store.zsets.length(x.store.value(e)));
}

function zrem(x: Exec): void {
  const e = x.typed(1, TYPE_ZSET, false);
  if (e < 0) return;
  if (e === 0) {
    x.out.integer(0);
    return;
  }
  const zs = x.store.zsets;
  const z = x.store.value(e);
  let n = 0;
  for (let i = 2; i < x.a.argc; i++) {
    const m = zs.find(z, x.store.hash(x.a.buf, x.off(i), x.len(i)), x.a.buf, x.off(i), x.len(i));
    if (m === 0) continue;
    zs.remove(z, m);
    n++;
    if (zs.length(z) === 0) {
      x.store.deleteEntry(e);
      break;
    }
  }
  if (n > 0) {
    x.changed(n);
    x.propagate();
  }
  x.out.integer(n);
}

/** A score bound of ZRANGE BYSCORE: "(1.5" exclusive, "-inf", "+inf". */
function parseScoreBound(x: Exec, i: number): { v: number; ex: boolean } | null {
  const b = x.a.buf;
  let o = x.off(i);
  let n = x.len(i);
  const ex = n > 0 && b[o] === 40;
  if (ex) {
    o++;
    n--;
  }
  const v = parseDouble(b, o, n);
  return Number.isNaN(v) ? null : { v, ex };
}

/** ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]. */
function zrange(x: Exec): void {
  let withScores = false;
  let rev = false;
  let byScore = false;
  let byLex = false;
  let offset = 0;
  let limit = -1;
  for (let j = 4; j < x.a.argc; j++) {
    const left = x.a.argc - j - 1;
    if (x.is(j, "withscores")) withScores = true;
    else if (x.is(j, "limit") && left >= 2) {
      const o = x.ll(j + 1);
      const c = x.ll(j + 2);
      if (o === null || c === null) {
        x.error(ERR_NOT_INT);
        return;
      }
      offset = Number(o);
      limit = Number(c);
      j += 2;
    } else if (!rev && x.is(j, "rev")) rev = true;
    else if (!byScore && !byLex && x.is(j, "bylex")) byLex = true;
    else if (!byScore && !byLex && x.is(j, "byscore")) byScore = true;
    else {
      x.error(ERR_SYNTAX);
      return;
    }
  }
  if (limit !== -1 && !byScore && !byLex) {
    x.error(
      "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
    );
    return;
  }
  if (withScores && byLex) {
    x.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    return;
  }
  let minI = 2;
  let maxI = 3;
  if (rev && (byScore || byLex)) [minI, maxI] = [3, 2];
  if (byLex) {
    const min = parseLexBound(x, minI);
    const max = parseLexBound(x, maxI);
    if (min === null || max === null) {
      x.error("ERR min or max not valid string range item");
      return;
    }
    const e = x.typed(1, TYPE_ZSET, true);
    if (e < 0) return;
    if (e === 0) {
      x.out.array(0);
      return;
    }
    const z = x.store.value(e);
    const inMin = (node: number): boolean => lexAbove(x, node, min);
    const inMax = (node: number): boolean => lexBelow(x, node, max);
    zrangeWalk(x, z, inMin, inMax, rev, offset, limit, false);
    return;
  }
  if (byScore) {
    const min = parseScoreBound(x, minI);
    const max = parseScoreBound(x, maxI);
    if (min === null || max === null) {
      x.error("ERR min or max is not a float");
      return;
    }
    const e = x.typed(1, TYPE_ZSET, true);
    if (e < 0) return;
    if (e === 0) {
      x.out.array(0);
      return;
    }
    const zs = x.store.zsets;
    const inMin = (node: number): boolean => {
      const s = zs.nodeScore(node);
      return min.ex ? s > min.v : s >= min.v;
    };
    const inMax = (node: number): boolean => {
      const s = zs.nodeScore(node);
      return max.ex ? s < max.v : s <= max.v;
    };
    zrangeWalk(x, x.store.value(e), inMin, inMax, rev, offset, limit, withScores);
    return;
  }
  let start = x.ll(minI);
  let end = x.ll(maxI);
  if (start === null || end === null) {
    x.error(ERR_NOT_INT);
    return;
  }
  const e = x.typed(1, TYPE_ZSET, true);
  if (e < 0) return;
  if (e === 0) {
    x.out.array(0);
    return;
  }
  const zs = x.store.zsets;
  const z = x.store.value(e);
  const len = zs.length(z);
  start = Number(start);
  end = Number(end);
  if (start < 0) start += len;
  if (end < 0) end += len;
  if (start < 0) start = 0;
  if (start > end || start >= len) {
    x.out.array(0);
    return;
  }
  if (end >= len) end = len - 1;
  const n = end - start + 1;
  x.out.array(withScores ? 2 * n : n);
  let node = zs.byRank(z, rev ? len - 1 - start : start);
  for (let k = 0; k < n; k++) {
    emitNode(x, node, withScores);
    node = rev ? zs.prevNode(node) : zs.nextNode(node);
  }
}

function emitNode(x: Exec, node: number, withScores: boolean): void {
  const zs = x.store.zsets;
  const m = zs.nodeEntry(node);
  x.out.bulkFromMemory(x.store.mem, m + ZE_KEY, x.store.mem.load32(m + E_KLEN));
  if (withScores) replyScore(x, zs.nodeScore(node));
}

/** A lex bound of ZRANGE BYLEX: "-" (below all), "+" (above all), "[m" inclusive, "(m" exclusive. */
interface LexBound {
  readonly inf: -1 | 0 | 1;
  readonly ex: boolean;
  readonly off: number;
  readonly len: number;
}

function parseLexBound(x: Exec, i: number): LexBound | null {
  const b = x.a.buf;
  const o = x.off(i);
  const n = x.len(i);
  if (n === 0) return null;
  const c = b[o];
  if (c === 43) return n === 1 ? { inf: 1, ex: false, off: 0, len: 0 } : null;
  if (c === 45) return n === 1 ? { inf: -1, ex: false, off: 0, len: 0 } : null;
  if (c === 40 || c === 91) return { inf: 0, ex: c === 40, off: o + 1, len: n - 1 };
  return null;
}

function lexCompare(x: Exec, node: number, b: LexBound): number {
  if (b.inf !== 0) return -b.inf;
  const m = x.store.zsets.nodeEntry(node);
  const mem = x.store.mem;
  return compareBytes(mem, m + ZE_KEY, mem.load32(m + E_KLEN), x.a.buf, b.off, b.len);
}

function lexAbove(x: Exec, node: number, min: LexBound): boolean {
  const c = lexCompare(x, node, min);
  return min.ex ? c > 0 : c >= 0;
}

function lexBelow(x: Exec, node: number, max: LexBound): boolean {
  const c = lexCompare(x, node, max);
  return max.ex ? c < 0 : c <= 0;
}

/** The nodes between the bounds in order (or reverse), after `offset`, at most `limit` (< 0: all). */
function zrangeWalk(
  x: Exec,
  z: number,
  inMin: (node: number) => boolean,
  inMax: (node: number) => boolean,
  rev: boolean,
  offset: number,
  limit: number,
  withScores: boolean,
): void {
  const zs = x.store.zsets;
  const picked: number[] = [];
  if (offset >= 0) {
    let node = rev ? zs.lastNode(z) : zs.firstNode(z);
    while (node !== 0 && !(rev ? inMax(node) : inMin(node)))
      node = rev ? zs.prevNode(node) : zs.nextNode(node);
    for (let skip = offset; node !== 0 && skip > 0; skip--)
      node = rev ? zs.prevNode(node) : zs.nextNode(node);
    while (node !== 0 && limit !== 0) {
      if (!(inMin(node) && inMax(node))) break;
      picked.push(node);
      if (limit > 0) limit--;
      node = rev ? zs.prevNode(node) : zs.nextNode(node);
    }
  }
  x.out.array(withScores ? 2 * picked.length : picked.length);
  for (const node of picked) emitNode(x, node, withScores);
}

function zpop(x: Exec, max: boolean): void {
  let count = 1;
  const hasCount = x.a.argc === 3;
  if (x.a.argc > 3) {
    x.error(ERR_SYNTAX);
    return;
  }
  if (hasCount) {
    const v = x.ll(2);
    if (v === null || v < 0) {
      x.error(ERR_POSITIVE);
      return;
    }
    count = Number(v);
  }
  const e = x.typed(1, TYPE_ZSET, false);
  if (e < 0) return;
  if (e === 0 || count === 0) {
    x.out.array(0);
    return;
  }
  const zs = x.store.zsets;
  const z = x.store.value(e);
  const n = Math.min(count, zs.length(z));
  x.out.array(2 * n);
  for (let k = 0; k < n; k++) {
    const node = max ? zs.lastNode(z) : zs.firstNode(z);
    emitNode(x, node, true);
    zs.remove(z, zs.nodeEntry(node));
  }
  if (zs.length(z) === 0) x.store.deleteEntry(e);
  x.changed(n);
  x.propagate();
}

// ---------------------------------------------------------------------------------------------
// The table

function cmd(
  name: string,
  arity: number,
  flags: number,
  run: (x: Exec) => void,
  keys: [number, number, number] = [1, 1, 1],
  subs: Command[] = [],
  parent = "",
): Command {
  let table: CommandTable | null = null;
  if (subs.length > 0) {
    table = new CommandTable();
    for (const s of subs) table.add(s);
  }
  return {
    name,
    fullname: parent === "" ? name : `${parent}|${name}`,
    arity,
    flags,
    firstKey: keys[0],
    lastKey: keys[1],
    step: keys[2],
    run,
    subs: table,
  };
}

const W = F_WRITE;
const R = F_READONLY;
const NOKEYS: [number, number, number] = [0, 0, 0];
const ALLKEYS: [number, number, number] = [1, -1, 1];

const TABLE = new CommandTable();
for (const c of [
  cmd("ping", -1, F_FAST, ping, NOKEYS),
  cmd("echo", 2, F_FAST, echo, NOKEYS),
  cmd("select", 2, F_FAST, select, NOKEYS),
  cmd("quit", -1, F_FAST, quit, NOKEYS),
  cmd("dbsize", 1, R | F_FAST, dbsize, NOKEYS),
  cmd("flushall", -1, W, flushall, NOKEYS),
  cmd("flushdb", -1, W, flushall, NOKEYS),
  cmd("info", -1, 0, info, NOKEYS),
  // a container runs one of its subcommands; with none given its arity (-2) refuses it first
  cmd("config", -2, 0, () => undefined, NOKEYS, [
    cmd("get", -3, 0, configGet, NOKEYS, [], "config"),
    cmd("set", -4, F_ADMIN, configSet, NOKEYS, [], "config"),
    cmd("resetstat", 2, F_ADMIN, configResetstat, NOKEYS, [], "config"),
  ]),
  cmd("command", -1, 0, command, NOKEYS, [
    cmd("count", 2, 0, commandCount, NOKEYS, [], "command"),
    cmd("info", -2, 0, commandInfo, NOKEYS, [], "command"),
    cmd("docs", -2, 0, commandDocs, NOKEYS, [], "command"),
  ]),
  cmd("client", -2, 0, () => undefined, NOKEYS, [
    cmd("setname", 3, 0, clientSetname, NOKEYS, [], "client"),
    cmd("getname", 2, 0, clientGetname, NOKEYS, [], "client"),
    cmd("id", 2, 0, clientId, NOKEYS, [], "client"),
  ]),
  cmd("get", 2, R | F_FAST, get),
  cmd("set", -3, W, set),
  cmd("setnx", 3, W | F_FAST, setnx),
  cmd("setex", 4, W, (x) => setexGeneric(x, false)),
  cmd("psetex", 4, W, (x) => setexGeneric(x, true)),
  cmd("getset", 3, W | F_FAST, getset),
  cmd("mget", -2, R | F_FAST, mget, ALLKEYS),
  cmd("mset", -3, W, mset, [1, -1, 2]),
  cmd("append", 3, W | F_FAST, append),
  cmd("strlen", 2, R | F_FAST, strlen),
  cmd("incr", 2, W | F_FAST, incr),
  cmd("decr", 2, W | F_FAST, decr),
  cmd("incrby", 3, W | F_FAST, incrby),
  cmd("decrby", 3, W | F_FAST, decrby),
  cmd("del", -2, W, del, ALLKEYS),
  cmd("exists", -2, R | F_FAST, exists, ALLKEYS),
  cmd("type", 2, R | F_FAST, type),
  cmd("expire", -3, W | F_FAST, (x) => expireGeneric(x, true, false)),
  cmd("pexpire", -3, W | F_FAST, (x) => expireGeneric(x, false, false)),
  cmd("expireat", -3, W | F_FAST, (x) => expireGeneric(x, true, true)),
  cmd("pexpireat", -3, W | F_FAST, (x) => expireGeneric(x, false, true)),
  cmd("ttl", 2, R | F_FAST, (x) => ttlGeneric(x, false)),
  cmd("pttl", 2, R | F_FAST, (x) => ttlGeneric(x, true)),
  cmd("persist", 2, W | F_FAST, persist),
  cmd("keys", 2, R, keys, NOKEYS),
  cmd("scan", -2, R, scan, NOKEYS),
  cmd("lpush", -3, W | F_FAST, (x) => push(x, true)),
  cmd("rpush", -3, W | F_FAST, (x) => push(x, false)),
  cmd("lpop", -2, W | F_FAST, (x) => pop(x, true)),
  cmd("rpop", -2, W | F_FAST, (x) => pop(x, false)),
  cmd("lrange", 4, R, lrange),
  cmd("lindex", 3, R, lindex),
  cmd("llen", 2, R | F_FAST, llen),
  cmd("sadd", -3, W | F_FAST, sadd),
  cmd("srem", -3, W | F_FAST, srem),
  cmd("smembers", 2, R, smembers),
  cmd("sismember", 3, R | F_FAST, sismember),
  cmd("scard", 2, R | F_FAST, scard),
  cmd("spop", -2, W | F_FAST, spop),
  cmd("hset", -4, W | F_FAST, (x) => hset(x, false)),
  cmd("hmset", -4, W | F_FAST, (x) => hset(x, true)),
  cmd("hget", 3, R | F_FAST, hget),
  cmd("hmget", -3, R | F_FAST, hmget),
  cmd("hdel", -3, W | F_FAST, hdel),
  cmd("hgetall", 2, R, hgetall),
  cmd("hlen", 2, R | F_FAST, hlen),
  cmd("hexists", 3, R | F_FAST, hexists),
  cmd("zadd", -4, W | F_FAST, (x) => zaddGeneric(x, false)),
  cmd("zincrby", 4, W | F_FAST, (x) => zaddGeneric(x, true)),
  cmd("zrange", -4, R, zrange),
  cmd("zpopmin", -2, W | F_FAST, (x) => zpop(x, false)),
  cmd("zpopmax", -2, W | F_FAST, (x) => zpop(x, true)),
  cmd("zscore", 3, R | F_FAST, zscore),
  cmd("zcard", 2, R | F_FAST, zcard),
  cmd("zrem", -3, W | F_FAST, zrem),
])
  TABLE.add(c);

function find(name: string): Command {
  const b = new TextEncoder().encode(name);
  return TABLE.find(b, 0, b.length) as Command;
}

// ---------------------------------------------------------------------------------------------
// The engine

/** One core's command engine over a store (see the header). */
export class KvEngine {
  readonly store: KvStore;
  readonly options: KvEngineOptions;
  readonly protoMaxBulkLen: number;
  readonly #x: Exec;
  #scores = new Float64Array(16);
  /** The store lock is held by {@link hold} (on this core, by the green thread running now). */
  #held = false;
  /** Commands run in this hold (the clock is read for the first of every CLOCK_EVERY). */
  #sinceClock = 0;

  constructor(store: KvStore, options: KvEngineOptions = {}) {
    this.store = store;
    this.options = options;
    this.protoMaxBulkLen = checkInteger(
      "protoMaxBulkLen",
      options.protoMaxBulkLen ?? DEFAULT_PROTO_MAX_BULK_LEN,
      1,
      2 ** 30,
    );
    this.#x = new Exec(this, store);
  }

  /** A scratch array for n scores (ZADD decodes all scores before it changes anything). */
  scores(n: number): Float64Array {
    if (this.#scores.length < n) this.#scores = new Float64Array(n);
    return this.#scores;
  }

  /**
   * Take the store lock for a run of calls — the commands of one pipelined batch — so that
   * execute() and the other calls skip their own acquire and release until {@link release}.
   * The caller must not yield while it holds it (the lock is the whole store's). Redis runs a
   * client's whole query buffer in one go on its one thread; this is that, with one
   * acquisition per batch instead of one per command.
   */
  hold(): void {
    if (this.#held) panic("kv engine: hold() while holding the store lock");
    this.store.lock();
    this.#held = true;
    this.#sinceClock = 0;
  }

  /** {@link hold} if the lock is free now: true if it is held by this engine afterwards. */
  tryHold(): boolean {
    if (this.#held) panic("kv engine: tryHold() while holding the store lock");
    this.#held = this.store.tryLock();
    this.#sinceClock = 0;
    return this.#held;
  }

  /** End a {@link hold}. */
  release(): void {
    if (!this.#held) panic("kv engine: release() without hold()");
    this.#held = false;
    this.store.unlock();
  }

  /** Is the store lock held through {@link hold}? */
  get holding(): boolean {
    return this.#held;
  }

  /** Take the lock for one call unless a hold covers it; true if the caller must unlock. */
  #enter(): boolean {
    if (this.#held) return false;
    this.store.lock();
    return true;
  }

  /** A connection opened: its session (counts it in INFO's connected_clients). */
  connect(): KvSession {
    const took = this.#enter();
    try {
      return new KvSession(this.store.clientConnected());
    } finally {
      if (took) this.store.unlock();
    }
  }

  /** The connection of `session` closed. */
  disconnect(_session: KvSession): void {
    const took = this.#enter();
    try {
      this.store.clientDisconnected();
    } finally {
      if (took) this.store.unlock();
    }
  }

  /**
   * Run one command (argv, e.g. the parser after RESP_COMMAND) for `session`; its reply is
   * appended to `out`. Returns EXEC_* flags: MODIFIED (data changed), CLOSE (QUIT: close after
   * sending), ERROR (the reply is an error). Takes the store lock for the whole command.
   */
  execute(session: KvSession, argv: Argv, out: RespWriter): number {
    const x = this.#x;
    // A connection's batch passes the same three objects every time: store them only when
    // they change (each store of an object field is a write barrier).
    if (x.a !== argv) x.a = argv;
    if (x.out !== out) x.out = out;
    if (x.session !== session) x.session = session;
    x.flags = 0;
    if (argv.argc === 0) return 0;
    if (x.is(0, "quit")) {
      quit(x);
      return x.flags;
    }
    let c = TABLE.find(argv.buf, argv.argOff[0], argv.argLen[0]);
    if (c === undefined) {
      unknownCommand(x);
      return x.flags;
    }
    if (c.subs !== null && argv.argc > 1) {
      const sub = c.subs.find(argv.buf, argv.argOff[1], argv.argLen[1]);
      if (sub === undefined) {
        x.error(
          `ERR unknown subcommand '${trunc(x.str(1), 128)}'. Try ${c.name.toUpperCase()} HELP.`,
        );
        return x.flags;
      }
      c = sub;
    }
    if ((c.arity > 0 && c.arity !== argv.argc) || argv.argc < -c.arity) {
      x.arity(c);
      return x.flags;
    }
    const store = this.store;
    const took = this.#enter();
    try {
      // The command's time (Redis: the cached mstime of call()). Within a hold the clock is
      // read for every CLOCK_EVERY-th command only: a batch runs in microseconds, and a clock
      // read costs as much as a simple command's store work.
      if (took || this.#sinceClock++ % CLOCK_EVERY === 0) store.now = store.clock();
      store.countCommand();
      c.run(x);
    } finally {
      if (took) store.unlock();
    }
    return x.flags;
  }

  /** Is argv a command (and subcommand) this engine has? (The AOF loader refuses others.) */
  knows(argv: Argv): boolean {
    if (argv.argc === 0) return false;
    const c = TABLE.find(argv.buf, argv.argOff[0], argv.argLen[0]);
    if (c === undefined) return false;
    return (
      c.subs === null ||
      argv.argc === 1 ||
      c.subs.find(argv.buf, argv.argOff[1], argv.argLen[1]) !== undefined
    );
  }

  /** Active expiry: one bounded sweep (see KvStore.expireCycle); returns the keys deleted. */
  expireCycle(budget = 16): number {
    const store = this.store;
    const took = this.#enter();
    try {
      store.now = store.clock();
      return store.expireCycle(budget);
    } finally {
      if (took) store.unlock();
    }
  }

  /** Move the AOF log's pending bytes (every core's changes, in execution order) into `out`. */
  drainAof(out: RespWriter): number {
    const store = this.store;
    const took = this.#enter();
    try {
      this.drainedSeq = store.aofSeq();
      return store.aofDrain(out);
    } finally {
      if (took) store.unlock();
    }
  }

  /** The AOF sequence number of the last record the last drainAof took on this engine. */
  drainedSeq = 0;

  /** The AOF sequence number of the last record appended by any core (its durability mark). */
  aofSeq(): number {
    const store = this.store;
    const took = this.#enter();
    try {
      return store.aofSeq();
    } finally {
      if (took) store.unlock();
    }
  }

  /** Turn the AOF log on or off for every core (off drops what is pending). */
  setAppendOnly(on: boolean): void {
    const store = this.store;
    const took = this.#enter();
    try {
      store.setAof(on);
    } finally {
      if (took) store.unlock();
    }
  }
}

function trunc(s: string, n: number): string {
  const z = s.indexOf("\0");
  const t = z >= 0 ? s.slice(0, z) : s;
  return t.length > n ? t.slice(0, n) : t;
}

/** Redis 7.0: "unknown command '%.128s', with args beginning with: 'a' 'b' " (128 bytes of args). */
function unknownCommand(x: Exec): void {
  let args = "";
  for (let i = 1; i < x.a.argc && args.length < 128; i++)
    args += `'${trunc(x.str(i), 128 - args.length)}' `;
  x.error(`ERR unknown command '${trunc(x.str(0), 128)}', with args beginning with: ${args}`);
}
