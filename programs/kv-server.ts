/**
 * kv-server: a Redis-protocol (RESP2) key-value server on the machine, for unmodified clients
 * (redis-cli, redis-benchmark). The store lives in this process's own memory, allocated with
 * the libOS malloc (programs/kv/store.ts), so the threads that serve connections on every core
 * share one store through the simulated MMU. One green thread per connection, from the
 * machine's spawn queue (M:N). The engine (programs/kv) parses, executes and encodes. Each
 * recv's batch of pipelined commands runs under one acquisition of the store lock (a waiter
 * first yields its green thread, so the core serves other connections meanwhile), and its
 * replies leave with the wait for the next batch in one sendrecv: one crossing to the network
 * domain and one lock round trip per batch (a reply longer than a buffer sends the rest first).
 *
 *   exocore run programs/kv-server.js -- [--port N] [--aof PATH] [--appendfsync always|everysec|no]
 *                                         [--connections N] --net [--disk IMAGE]
 *
 * Persistence (with --aof, which needs --disk): an append-only file on the machine's
 * filesystem, replayed at start (a truncated last record is cut off, as Redis's
 * aof-load-truncated does). Every change goes into the store's shared log in execution order;
 * one thread at a time (the AOF lock, a word in process memory) drains the log to the file:
 *   always    a connection whose commands changed data drains and fsyncs — or finds that
 *             another thread's drain already covered its records — before it sends any reply,
 *             so an acknowledged write is on the disk; concurrent drains group-commit
 *   everysec  a background thread drains every 10 ms and fsyncs once a second
 *   no        a background thread drains every 10 ms and never fsyncs
 *
 * Prints "listening on PORT". With --connections N it exits after serving N connections.
 */

import {
  accept,
  bind,
  close,
  free,
  fsync,
  ftruncate,
  type Green,
  getpid,
  getsockname,
  joinShared,
  listen,
  malloc,
  memory,
  O_APPEND,
  O_CREAT,
  O_RDONLY,
  O_WRONLY,
  open,
  print,
  read,
  recv,
  type SharedThread,
  sendAll,
  sendrecv,
  sleep,
  socket,
  spawn,
  spawnShared,
  write,
  yieldNow,
} from "../src/libos/index.js";
import { loadAof } from "./kv/aof.js";
import { EXEC_CLOSE, EXEC_MODIFIED, KvEngine } from "./kv/commands.js";
import { RESP_ERROR, RESP_NEED_MORE, RespParser, RespWriter } from "./kv/resp.js";
import { KvStore } from "./kv/store.js";

const BUFFER = 64 * 1024;
/**
 * What one recv asks for unless the last one filled its buffer (Redis reads 16 KiB at a time,
 * PROTO_IOBUF_LEN): the libOS pages in the whole buffer it hands a domain, so asking for less
 * touches fewer pages per call.
 */
const RECV_SMALL = 16 * 1024;
/** Yields a connection makes waiting for the store lock before it waits in place. */
const HOLD_YIELDS = 64;
/** Largest bulk string accepted (the process heap is 64 MiB). */
const PROTO_MAX_BULK = 16 * 1024 * 1024;

// The server block in process memory, shared by every core (int32 words).
const B_LOCK = 0; // the AOF lock: 0 free, 1 held
const B_DURABLE = 4; // AOF sequence number known to be on the disk (policy always)
const B_AOF_FD = 8; // the AOF's fd, or -1
const B_POLICY = 12; // index in POLICIES: 0 no, 1 everysec, 2 always
const B_ROOT = 16; // the store's root
const B_PORT = 20;
const BLOCK_BYTES = 32;
const P_EVERYSEC = 1;
const P_ALWAYS = 2;
const POLICIES = ["no", "everysec", "always"] as const;

/** This core's view of the store: a KvStore and engine over this core's process memory. */
let engine: KvEngine | null = null;
/** This core's staging for AOF bytes (used only while holding the AOF lock). */
const aofOut = new RespWriter(64 * 1024);
let aofBuf = 0;
let lastFsync = 0;

function engineOf(block: number): KvEngine {
  if (engine !== null) return engine;
  const mem = memory();
  const store = new KvStore(mem, { malloc, free }, mem.load32(block + B_ROOT));
  const policy = POLICIES[mem.load32(block + B_POLICY)] ?? "no";
  engine = new KvEngine(store, {
    protoMaxBulkLen: PROTO_MAX_BULK,
    port: mem.load32(block + B_PORT),
    appendfsync: policy,
  });
  return engine;
}

/** Has sequence number `have` reached `want` (with wrap-around)? */
function reached(have: number, want: number): boolean {
  return ((have - want) | 0) >= 0;
}

/** Write all of `bytes` to fd through a buffer of ours in process memory: 0, or -errno. */
function* writeAll(fd: number, bytes: Uint8Array): Green {
  if (aofBuf === 0) aofBuf = malloc(BUFFER);
  if (aofBuf === 0) return -12;
  const mem = memory();
  for (let at = 0; at < bytes.length; ) {
    const n = Math.min(bytes.length - at, BUFFER);
    mem.writeFrom(aofBuf, bytes, at, n);
    for (let done = 0; done < n; ) {
      const w = yield* write(fd, aofBuf + done, n - done);
      if (w < 0) return w;
      done += w;
    }
    at += n;
  }
  return 0;
}

/**
 * Drain the shared AOF log to the file. With `want` (policy always), return once records up to
 * `want` are durable — drained by this thread or by whichever thread held the lock meanwhile.
 * `sync`: fsync after writing. Returns 0, or -errno.
 */
function* aofFlush(block: number, want: number | null, sync: boolean): Green {
  const mem = memory();
  const eng = engineOf(block);
  for (let tries = 0; ; tries++) {
    if (want !== null && reached(mem.load32(block + B_DURABLE), want)) return 0;
    if (mem.cas32(block + B_LOCK, 0, 1) === 0) break; // claim: the AOF lock
    if (tries < 32) yield* yieldNow();
    else yield* sleep(1);
  }
  try {
    const fd = mem.load32(block + B_AOF_FD);
    aofOut.reset();
    eng.drainAof(aofOut);
    const seq = eng.drainedSeq;
    if (aofOut.length > 0) {
      const r = yield* writeAll(fd, aofOut.bytes());
      if (r < 0) return r;
    }
    if (sync) {
      const r = yield* fsync(fd);
      if (r < 0) return r;
      lastFsync = Date.now();
    }
    if (sync) mem.store32(block + B_DURABLE, seq); // publish: these records are on the disk
    return 0;
  } finally {
    mem.store32(block + B_LOCK, 0); // release: the AOF lock
  }
}

/**
 * Take the store lock for one batch, after a first try failed. A holder never yields, so it
 * runs on another core: while the lock is busy yield this green thread (up to HOLD_YIELDS times) — the core goes
 * on with other connections' calls and parsing, which need no lock — then wait in place
 * (store.ts: a short spin, then a sleep on the lock word until the holder's unlock).
 */
function* holdStore(eng: KvEngine): Green {
  for (let tries = 0; tries < HOLD_YIELDS; tries++) {
    yield* yieldNow();
    if (eng.tryHold()) return 0;
  }
  eng.hold();
  return 0;
}

/** Serve one connection until it closes; returns 0, or -errno. */
export function* serve(fd: number, block: number): Green {
  const mem = memory();
  const eng = engineOf(block);
  const aof = mem.load32(block + B_AOF_FD) >= 0;
  const always = aof && mem.load32(block + B_POLICY) === P_ALWAYS;
  const inBuf = malloc(BUFFER);
  const outBuf = malloc(BUFFER);
  if (inBuf === 0 || outBuf === 0) return -12;
  const session = eng.connect();
  const parser = new RespParser({ protoMaxBulkLen: PROTO_MAX_BULK });
  const out = new RespWriter();
  let closing = false;
  let want = RECV_SMALL;
  let held = 0; // reply bytes in outBuf, sent with the next recv (one sendrecv crossing)
  try {
    while (!closing) {
      const n =
        held > 0 ? yield* sendrecv(fd, outBuf, held, inBuf, want) : yield* recv(fd, inBuf, want);
      held = 0;
      if (n <= 0) return n;
      want = n === want ? BUFFER : RECV_SMALL; // a full read: more is likely waiting
      parser.feedFromMemory(mem, inBuf, n);
      let modified = false;
      let seq = 0;
      if (!eng.tryHold()) yield* holdStore(eng);
      try {
        for (;;) {
          const r = parser.next();
          if (r === RESP_NEED_MORE) break;
          if (r === RESP_ERROR) {
            out.error(parser.error); // malformed input: answer, then close this connection only
            closing = true;
            break;
          }
          const flags = eng.execute(session, parser, out);
          if ((flags & EXEC_MODIFIED) !== 0) modified = true;
          if ((flags & EXEC_CLOSE) !== 0) {
            closing = true;
            break;
          }
        }
        if (modified && always) seq = eng.aofSeq();
      } finally {
        eng.release();
      }
      if (modified && always) {
        const r = yield* aofFlush(block, seq, true);
        if (r < 0) return r; // the write is not durable: no acknowledgement
      }
      // Every buffer of the reply but the last goes out now; the last goes with the next
      // recv (or alone, when this connection is closing).
      for (let at = 0; at < out.length; ) {
        const k = Math.min(out.length - at, BUFFER);
        mem.writeFrom(outBuf, out.buf, at, k);
        at += k;
        if (at === out.length && !closing) held = k;
        else {
          const w = yield* sendAll(fd, outBuf, k);
          if (w < 0) return w;
        }
      }
      out.reset();
    }
    return 0;
  } finally {
    eng.disconnect(session);
    free(inBuf);
    free(outBuf);
    yield* close(fd);
  }
}

/** Background: drain the log every 10 ms; fsync once a second under everysec. */
function* aofWriter(block: number, policy: number): Green {
  for (;;) {
    yield* sleep(10);
    const sync = policy === P_EVERYSEC && Date.now() - lastFsync >= 1000;
    yield* aofFlush(block, null, sync);
  }
}

/** Background: Redis's active expiry, a bounded sweep ten times a second. */
function* expirer(block: number): Green {
  const eng = engineOf(block);
  for (;;) {
    yield* sleep(100);
    while (eng.expireCycle(16) >= 4) yield* yieldNow(); // many expired: keep sweeping
  }
}

/** Read the whole AOF and replay it into the store. Returns the fd to append to, or -errno. */
function* replay(path: string, eng: KvEngine): Green {
  const fd = yield* open(path, O_RDONLY);
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (fd >= 0) {
    const buf = malloc(BUFFER);
    for (;;) {
      const n = yield* read(fd, buf, BUFFER);
      if (n < 0) return n;
      if (n === 0) break;
      chunks.push(memory().readBytes(buf, n));
      total += n;
    }
    free(buf);
    yield* close(fd);
  } else if (fd !== -2) return fd; // ENOENT: a fresh server
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  const r = loadAof(eng, all, { allowTruncated: true });
  const out = yield* open(path, O_WRONLY | O_CREAT | O_APPEND);
  if (out < 0) return out;
  if (r.truncatedBytes > 0) {
    yield* print(`kv-server: AOF truncated: ignored the last ${r.truncatedBytes} bytes\n`, 2);
    const t = yield* ftruncate(out, r.validBytes);
    if (t < 0) return t;
  }
  if (total > 0) yield* print(`kv-server: replayed ${r.commands} commands from ${path}\n`);
  return out;
}

function flagValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

export function* main(args: readonly string[]): Green {
  const port = Number(flagValue(args, "port") ?? 0);
  const aofPath = flagValue(args, "aof");
  const policyName = flagValue(args, "appendfsync") ?? "everysec";
  const max = Number(flagValue(args, "connections") ?? 0);
  const policy = POLICIES.indexOf(policyName as (typeof POLICIES)[number]);
  if (policy < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    yield* print(
      "kv-server: usage: [--port N] [--aof PATH] [--appendfsync always|everysec|no]\n",
      2,
    );
    return 2;
  }
  const mem = memory();
  const block = malloc(BLOCK_BYTES);
  if (block === 0) return 1;
  for (let i = 0; i < BLOCK_BYTES; i += 4) mem.store32(block + i, 0);
  mem.store32(block + B_AOF_FD, -1);
  mem.store32(block + B_POLICY, policy);
  mem.store32(block + B_ROOT, KvStore.create(mem, { malloc, free }));
  const eng = engineOf(block);
  if (aofPath !== undefined) {
    const fd = yield* replay(aofPath, eng);
    if (fd < 0) {
      yield* print(`kv-server: cannot open the AOF ${aofPath}: error ${-fd}\n`, 2);
      return 1;
    }
    mem.store32(block + B_AOF_FD, fd);
    eng.setAppendOnly(true);
    if (policy !== P_ALWAYS) spawn(aofWriter(block, policy), { name: "aof-writer" });
  }
  spawn(expirer(block), { name: "expirer" });
  const s = yield* socket();
  let r = s < 0 ? s : yield* bind(s, port);
  if (r >= 0) r = yield* listen(s, 1024);
  if (r < 0) {
    yield* print(`kv-server: cannot listen on ${port}: error ${-r}\n`, 2);
    return 1;
  }
  const bound = yield* getsockname(s);
  mem.store32(block + B_PORT, bound);
  yield* print(`listening on ${bound} (pid ${yield* getpid()})\n`);
  const threads: SharedThread[] = [];
  for (let n = 0; max === 0 || n < max; n++) {
    const c = yield* accept(s);
    if (c < 0) {
      yield* print(`kv-server: accept: error ${-c}\n`, 2);
      return 1;
    }
    const t = yield* spawnShared(serve, c, block);
    if (max > 0) threads.push(t);
  }
  for (const t of threads) yield* joinShared(t);
  if (aofPath !== undefined) yield* aofFlush(block, null, true); // the last changes, durable
  yield* close(s);
  return 0;
}
