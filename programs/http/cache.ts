/**
 * cache: the contents of small static files, kept by a server between requests and trusted
 * only while a fresh stat of the path shows the same inode, size, mtime and ctime.
 *
 * Why that is enough: a file is cached only once its mtime and ctime are `settledMs` old (one
 * second by default, the same rule that makes an ETag strong in static.ts). Any write after
 * that gives the file a later mtime, so a cached copy never stands for contents that changed
 * within the clock's resolution of the ones it holds. A file replaced by another (a new inode,
 * or the same inode reused) has a new ctime as well. A write that lands between the stat and
 * the read of the same request may put the new contents under the old metadata: that entry
 * then never matches again, because the next stat shows the new mtime.
 *
 * Bounded by `maxBytes` (the oldest entry goes first) and `maxFileBytes` per file. Pure: the
 * server does the stat and the reads (http-server.ts); one cache per core, not shared.
 */

import { checkInteger } from "../../src/errors.js";

/** What the cache checks a file's copy against. */
export interface FileVersion {
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export interface FileCacheOptions {
  /** Bytes of contents kept in all (default 4 MiB). */
  readonly maxBytes?: number;
  /** Largest file kept (default 64 KiB). */
  readonly maxFileBytes?: number;
  /** How old (ms) a file's mtime and ctime must be before it is kept (default 1000). */
  readonly settledMs?: number;
}

interface Entry extends FileVersion {
  readonly bytes: Uint8Array;
}

export class FileCache {
  readonly maxBytes: number;
  readonly maxFileBytes: number;
  readonly settledMs: number;
  /** Lookups that found a valid copy, and those that did not. */
  hits = 0;
  misses = 0;
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  constructor(options: FileCacheOptions = {}) {
    this.maxBytes = checkInteger("maxBytes", options.maxBytes ?? 4 * 1024 * 1024, 0, 2 ** 31);
    this.maxFileBytes = checkInteger(
      "maxFileBytes",
      options.maxFileBytes ?? 64 * 1024,
      0,
      this.maxBytes,
    );
    this.settledMs = checkInteger("settledMs", options.settledMs ?? 1000, 0, 2 ** 31);
  }

  /** Bytes of contents held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Files held. */
  get size(): number {
    return this.#entries.size;
  }

  /** The contents of `path` if they were kept under exactly `version`, else null (and dropped). */
  get(path: string, version: FileVersion): Uint8Array | null {
    const e = this.#entries.get(path);
    if (e !== undefined) {
      if (
        e.ino === version.ino &&
        e.size === version.size &&
        e.mtimeMs === version.mtimeMs &&
        e.ctimeMs === version.ctimeMs
      ) {
        this.hits++;
        return e.bytes;
      }
      this.#drop(path, e);
    }
    this.misses++;
    return null;
  }

  /**
   * Keep `bytes`, the whole contents of `path` read after a stat that returned `version`, if the
   * file is small enough and settled at `nowMs`. The cache keeps `bytes` itself: do not change it.
   */
  put(path: string, version: FileVersion, bytes: Uint8Array, nowMs: number): void {
    if (bytes.length !== version.size || bytes.length > this.maxFileBytes) return;
    if (nowMs - version.mtimeMs < this.settledMs || nowMs - version.ctimeMs < this.settledMs)
      return;
    const old = this.#entries.get(path);
    if (old !== undefined) this.#drop(path, old);
    for (const [p, e] of this.#entries) {
      if (this.#bytes + bytes.length <= this.maxBytes) break;
      this.#drop(p, e); // Map order is insertion order: the oldest first
    }
    const { ino, size, mtimeMs, ctimeMs } = version;
    this.#entries.set(path, { ino, size, mtimeMs, ctimeMs, bytes });
    this.#bytes += bytes.length;
  }

  #drop(path: string, e: Entry): void {
    this.#entries.delete(path);
    this.#bytes -= e.bytes.length;
  }
}
