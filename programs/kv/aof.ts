/**
 * kv/aof: the append-only file's format and its loader.
 *
 * Owns: {@link encodeAofCommand} (one command as a RESP multibulk record — the only form an AOF
 * holds) and {@link loadAof} (replay a whole AOF byte stream into a store).
 *
 * Where records come from: every core's engine appends the record of each command that changed
 * data to the store's shared log (store.ts), inside the command's critical section, so the log
 * is in execution order across cores; relative expiries are already absolute there (SET … PXAT,
 * PEXPIREAT) and lazily expired keys are logged as DEL, so a replay at any later time rebuilds
 * the same data. The server drains the log with `engine.drainAof(out)` and writes the bytes to
 * its file under its appendfsync policy (always / everysec / no — the server's business, not
 * this module's).
 *
 * Loading (Redis loadAppendOnlyFiles): records are parsed with the RESP parser in multibulk-only
 * mode and executed with the store in loading mode — nothing expires while loading (Redis
 * keyIsExpired returns 0 while server.loading) and nothing is logged again; replies are
 * dropped. A last record cut short by a crash is ignored and reported (Redis's
 * `aof-load-truncated yes`; the server should truncate the file to `validBytes`), or refused
 * when `allowTruncated` is false. Bytes that are not a record, or a command the engine does
 * not have, refuse the file with an {@link AofFormatError} that says where.
 *
 * Who calls: the KV server at start-up (loadAof), tests; the engine writes records itself.
 */

import { IoError } from "../../src/errors.js";
import { type KvEngine, KvSession } from "./commands.js";
import {
  type Argv,
  ArgvBuilder,
  argString,
  RESP_COMMAND,
  RESP_ERROR,
  RespParser,
  RespWriter,
} from "./resp.js";

/** An AOF that holds something other than records (code EXO_ERR_IO). */
export class AofFormatError extends IoError {
  /** Byte offset of the bad record in the file. */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

/** What {@link loadAof} did. */
export interface AofLoadResult {
  /** Commands replayed. */
  readonly commands: number;
  /** Bytes of complete records (the file's length, or where a cut-short last record starts). */
  readonly validBytes: number;
  /** Bytes of a last record cut short and ignored (0 when the file ends on a record). */
  readonly truncatedBytes: number;
}

export interface AofLoadOptions {
  /** Ignore (and report) a last record cut short, as Redis's aof-load-truncated yes. Default true. */
  readonly allowTruncated?: boolean;
}

/** Append one command to `out` in AOF form (a RESP multibulk request). */
export function encodeAofCommand(
  out: RespWriter,
  args: Argv | ReadonlyArray<string | Uint8Array>,
): void {
  const a = "argc" in args ? args : new ArgvBuilder(args);
  out.command(a);
}

/** Bytes fed to the parser at a time (the parser keeps one record plus this much). */
const FEED = 1024 * 1024;

/** Replay an AOF byte stream into the engine's store (see the header). */
export function loadAof(
  engine: KvEngine,
  bytes: Uint8Array,
  options: AofLoadOptions = {},
): AofLoadResult {
  const allowTruncated = options.allowTruncated ?? true;
  const parser = new RespParser({
    inline: false,
    protoMaxBulkLen: Math.max(engine.protoMaxBulkLen, 1),
    maxQueryBuffer: 2 ** 31 - 1,
  });
  const out = new RespWriter();
  const session = new KvSession(0);
  const store = engine.store;
  let commands = 0;
  store.loading = true;
  try {
    for (let fed = 0; ; ) {
      const r = parser.next();
      if (r === RESP_COMMAND) {
        if (!engine.knows(parser))
          throw new AofFormatError(
            `aof: unknown command '${argString(parser, 0)}' in the record at byte ${parser.commandStart}`,
            parser.commandStart,
          );
        out.reset();
        engine.execute(session, parser, out);
        commands++;
        continue;
      }
      if (r === RESP_ERROR)
        throw new AofFormatError(
          `aof: bad record at byte ${parser.requestStart}: ${parser.error.replace(/^ERR (Protocol error: )?/, "")}`,
          parser.requestStart,
        );
      if (fed >= bytes.length) break;
      const n = Math.min(FEED, bytes.length - fed);
      parser.feed(bytes, fed, n);
      fed += n;
    }
  } finally {
    store.loading = false;
  }
  const validBytes = parser.midRequest ? parser.requestStart : bytes.length;
  const truncatedBytes = bytes.length - validBytes;
  if (truncatedBytes > 0 && !allowTruncated)
    throw new AofFormatError(
      `aof: the last record (from byte ${validBytes}, ${truncatedBytes} bytes) is cut short`,
      validBytes,
    );
  return { commands, validBytes, truncatedBytes };
}
