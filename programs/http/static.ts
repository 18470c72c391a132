/**
 * static: what to answer to a GET or HEAD of a file — decided from the file's metadata and the
 * request's validators, before a byte of the file is read. The connection then streams the
 * chosen byte range (programs/http/connection.ts); nothing here reads file contents.
 *
 *   "/" and "/dir/"       → "/index.html", "/dir/index.html"
 *   a directory "/dir"    → 301 to "/dir/" (relative links inside it then resolve)
 *   no such file          → 404
 *   validators            → ETag "ino-size-mtime" (hex) and Last-Modified. The ETag is weak
 *                           when the file changed less than a second before the request: it
 *                           could change again within the clock's resolution with the same
 *                           metadata (Apache's rule, and RFC 9110 §8.8.1 on weak validators)
 *   preconditions         → RFC 9110 §13.2.2 order: If-Match (strong compare) else
 *                           If-Unmodified-Since → 412; If-None-Match (weak compare) else
 *                           If-Modified-Since → 304
 *   Range (GET only)      → one range "a-b", "a-" or "-n" → 206 with Content-Range; a valid
 *                           set with nothing satisfiable → 416 "bytes *\/size"; several
 *                           ranges → 200 with the whole file (we send no multipart/byteranges;
 *                           RFC 9110 §14.2 lets a server ignore Range); a syntactically
 *                           invalid Range, another unit, or an If-Range that does not match
 *                           → 200 whole. HEAD ignores Range (§14.2: defined for GET only).
 *
 * Pure but for the `stat` generator (and a memo of the ETag strings it built last, per inode);
 * called by the connection for each static request.
 */

import { formatHttpDate, parseHttpDate } from "./date.js";
import type { FileStat, Green, HttpHeaders, StaticFiles } from "./message.js";
import { contentType } from "./mime.js";

/** The reply to a static request: status, extra fields, and the part of the file to send. */
export interface StaticReply {
  readonly status: number;
  /** Extra header lines, each ending in CRLF (Content-Type, ETag, Content-Range, ...). */
  readonly fields: string;
  /** The file whose bytes [start, start + length) are the body; null when there is none. */
  readonly path: string | null;
  readonly start: number;
  readonly length: number;
}

/** What static serving needs to know about a request. */
export interface StaticRequest {
  readonly method: string;
  /** Decoded, normalised path. */
  readonly path: string;
  /** The path as sent (still percent-encoded), for Location. */
  readonly rawPath: string;
  readonly query: string;
  readonly headers: HttpHeaders;
}

function reply(status: number, fields = "", path: string | null = null, start = 0, length = 0) {
  return { status, fields, path, start, length };
}

/** Decide the reply to a GET/HEAD of `request.path` (see the header comment). */
export function* planStatic(
  files: StaticFiles,
  request: StaticRequest,
  nowMs: number,
): Green<StaticReply> {
  const dirPath = request.path.endsWith("/");
  const path = dirPath ? `${request.path}index.html` : request.path;
  const st = yield* files.stat(path);
  if (st === null) return reply(404);
  if (st.type === "dir") {
    if (dirPath) return reply(404); // ".../index.html" is a directory: no listings here
    const query = request.query === "" ? "" : `?${request.query}`;
    return reply(301, `Location: ${request.rawPath}/${query}\r\n`);
  }
  return decide(path, st, request, nowMs);
}

/** The validators of a file: its ETag, whether that is strong, and Last-Modified (whole s). */
export interface Validators {
  readonly etag: string;
  readonly strong: boolean;
  readonly lastModified: number;
}

/** The last opaque tag built for each inode (the same files are served again and again). */
const tags = new Map<number, { size: number; mtimeMs: number; tag: string }>();
const TAGS_MAX = 1024;

/** "ino-size-mtime" in hex, the opaque part of a file's ETag. */
function opaqueTag(st: FileStat): string {
  const t = tags.get(st.ino);
  if (t !== undefined && t.size === st.size && t.mtimeMs === st.mtimeMs) return t.tag;
  const tag = `${st.ino.toString(16)}-${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}`;
  if (tags.size >= TAGS_MAX) tags.clear();
  tags.set(st.ino, { size: st.size, mtimeMs: st.mtimeMs, tag });
  return tag;
}

export function validators(st: FileStat, nowMs: number): Validators {
  const tag = opaqueTag(st);
  const strong = nowMs - st.mtimeMs >= 1000;
  return {
    etag: strong ? `"${tag}"` : `W/"${tag}"`,
    strong,
    lastModified: Math.floor(st.mtimeMs / 1000) * 1000,
  };
}

function decide(path: string, st: FileStat, request: StaticRequest, nowMs: number): StaticReply {
  const v = validators(st, nowMs);
  const h = request.headers;
  const etagField = `ETag: ${v.etag}\r\n`;
  // RFC 9110 §13.2.2, steps 1-4.
  const ifMatch = h.get("if-match");
  if (ifMatch !== undefined) {
    if (!tagMatches(ifMatch, v, true)) return reply(412);
  } else {
    const since = dateField(h.get("if-unmodified-since"), nowMs);
    if (!Number.isNaN(since) && v.lastModified > since) return reply(412);
  }
  const ifNoneMatch = h.get("if-none-match");
  if (ifNoneMatch !== undefined) {
    if (tagMatches(ifNoneMatch, v, false)) return reply(304, etagField);
  } else {
    const since = dateField(h.get("if-modified-since"), nowMs);
    if (!Number.isNaN(since) && v.lastModified <= since) return reply(304, etagField);
  }
  const fields =
    `Content-Type: ${contentType(path)}\r\n` +
    `Last-Modified: ${formatHttpDate(v.lastModified)}\r\n` +
    `${etagField}Accept-Ranges: bytes\r\n`;
  const size = st.size;
  const range = h.get("range");
  if (range === undefined || request.method !== "GET" || !ifRangeHolds(h, v, nowMs)) {
    return reply(200, fields, path, 0, size);
  }
  const r = parseRange(range, size);
  if (r === RANGE_UNSATISFIABLE) {
    return reply(416, `Content-Range: bytes */${size}\r\n`);
  }
  if (typeof r === "number") return reply(200, fields, path, 0, size); // ignored, or several
  const [start, end] = r;
  return reply(
    206,
    `${fields}Content-Range: bytes ${start}-${end}/${size}\r\n`,
    path,
    start,
    end - start + 1,
  );
}

/** An HTTP-date field as ms, or NaN when absent or not a valid date (then it is ignored). */
function dateField(value: string | undefined, nowMs: number): number {
  return value === undefined ? Number.NaN : parseHttpDate(value.trim(), nowMs);
}

/** If-Range (RFC 9110 §13.1.5): absent, or a strong match of the ETag or of Last-Modified. */
function ifRangeHolds(h: HttpHeaders, v: Validators, nowMs: number): boolean {
  const value = h.get("if-range");
  if (value === undefined) return true;
  const text = value.trim();
  if (text.startsWith('"') || text.startsWith("W/")) return tagMatches(text, v, true);
  return v.strong && dateField(text, nowMs) === v.lastModified;
}

/**
 * Does an If-Match / If-None-Match list match the file? "*" matches any existing file.
 * Strong comparison needs both tags strong and equal; weak compares the opaque tags only
 * (RFC 9110 §8.8.3.2). A list that does not parse matches nothing.
 */
export function tagMatches(list: string, v: Validators, strongCompare: boolean): boolean {
  if (list.trim() === "*") return true;
  const opaque = v.strong ? v.etag : v.etag.slice(2);
  let i = 0;
  const n = list.length;
  for (;;) {
    while (i < n && (list[i] === " " || list[i] === "\t" || list[i] === ",")) i++;
    if (i >= n) return false;
    let weak = false;
    if (list.startsWith("W/", i)) {
      weak = true;
      i += 2;
    }
    if (list[i] !== '"') return false;
    const close = list.indexOf('"', i + 1);
    if (close < 0) return false;
    const tag = list.slice(i, close + 1);
    if (tag === opaque && (!strongCompare || (!weak && v.strong))) return true;
    i = close + 1;
  }
}

/** parseRange results other than a single [first, last] range. */
export const RANGE_IGNORED = 0;
export const RANGE_UNSATISFIABLE = 1;
export const RANGE_MULTIPLE = 2;

/**
 * A Range field against a representation of `size` bytes (RFC 9110 §14.1.2, §14.2): the one
 * satisfiable range as [first, last] (inclusive, clamped to the file), or RANGE_IGNORED (not
 * bytes, or not valid syntax), RANGE_UNSATISFIABLE (valid, but no range-spec is satisfiable),
 * RANGE_MULTIPLE (several range-specs, some satisfiable).
 */
export function parseRange(value: string, size: number): readonly [number, number] | number {
  const eq = value.indexOf("=");
  if (eq < 0 || value.slice(0, eq).trim().toLowerCase() !== "bytes") return RANGE_IGNORED;
  let specs = 0;
  let satisfiable = 0;
  let first = 0;
  let last = 0;
  for (const member of value.slice(eq + 1).split(",")) {
    const spec = member.trim();
    if (spec === "") continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    specs++;
    const m = /^(\d*)-(\d*)$/.exec(spec);
    if (m === null || (m[1] === "" && m[2] === "")) return RANGE_IGNORED;
    let a: number;
    let b: number;
    if (m[1] === "") {
      // suffix-range "-n": the last n bytes; satisfiable if n > 0 and the file is not empty.
      const n = Number(m[2]);
      if (n === 0 || size === 0) continue;
      a = Math.max(0, size - n);
      b = size - 1;
    } else {
      a = Number(m[1]);
      b = m[2] === "" ? Number.POSITIVE_INFINITY : Number(m[2]);
      if (b < a) return RANGE_IGNORED; // an invalid range-spec invalidates the field
      if (a >= size) continue;
      b = Math.min(b, size - 1);
    }
    satisfiable++;
    first = a;
    last = b;
  }
  if (specs === 0) return RANGE_IGNORED;
  if (satisfiable === 0) return RANGE_UNSATISFIABLE;
  return specs === 1 ? [first, last] : RANGE_MULTIPLE;
}
