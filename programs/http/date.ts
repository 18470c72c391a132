/**
 * date: HTTP-date (RFC 9110 §5.6.7). Senders use IMF-fixdate only; recipients must accept all
 * three formats — IMF-fixdate, the obsolete RFC 850 form and asctime. Pure functions plus a
 * one-entry cache, so that the Date field of a busy server costs one string per second, and a
 * small memo of formatted dates (the Last-Modified of the same files, request after request).
 * Called by the connection (Date), by static serving (Last-Modified, If-Modified-Since,
 * If-Unmodified-Since, If-Range) and by tests.
 */

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Dates formatted lately (a static server formats the same Last-Modified again and again). */
const formatted = new Map<number, string>();
const FORMATTED_MAX = 256;

/** IMF-fixdate of a time in ms, e.g. "Sun, 06 Nov 1994 08:49:37 GMT". */
export function formatHttpDate(ms: number): string {
  let s = formatted.get(ms);
  if (s === undefined) {
    // ECMAScript's toUTCString is exactly IMF-fixdate for years 1000..9999.
    s = new Date(ms).toUTCString();
    if (formatted.size >= FORMATTED_MAX) formatted.clear();
    formatted.set(ms, s);
  }
  return s;
}

const IMF = /^[A-Z][a-z]{2}, (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850 = /^[A-Z][a-z]{5,8}, (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME = /^[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * The time (ms, whole seconds) of an HTTP-date in any of the three formats, or NaN if `text`
 * is not one. A two-digit RFC 850 year is taken in the century that puts it no more than 50
 * years in the future of `nowMs` (RFC 9110 §5.6.7).
 */
export function parseHttpDate(text: string, nowMs = Date.now()): number {
  let m = IMF.exec(text);
  if (m !== null) return utc(m[3]!, m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  m = RFC850.exec(text);
  if (m !== null) {
    const now = new Date(nowMs).getUTCFullYear();
    let year = now - (now % 100) + Number(m[3]);
    if (year > now + 50) year -= 100;
    return utc(String(year), m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  }
  m = ASCTIME.exec(text);
  if (m !== null) return utc(m[6]!, m[1]!, m[2]!.trim(), m[3]!, m[4]!, m[5]!);
  return Number.NaN;
}

function utc(y: string, mon: string, d: string, h: string, min: string, s: string): number {
  const month = MONTHS.indexOf(mon);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(min);
  const second = Number(s);
  if (month < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return Number.NaN;
  }
  const ms = Date.UTC(Number(y), month, day, hour, minute, Math.min(second, 59));
  // Date.UTC rolls "31 Feb" over into March: refuse dates that do not exist.
  return new Date(ms).getUTCDate() === day ? ms : Number.NaN;
}

/** The Date field value for "now", recomputed once per second of the given clock. */
export class DateCache {
  readonly #now: () => number;
  #second = -1;
  #value = "";

  constructor(now: () => number) {
    this.#now = now;
  }

  /** The current time in ms, from the clock this cache was given. */
  nowMs(): number {
    return this.#now();
  }

  /** IMF-fixdate of the current second. */
  get(): string {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#value = formatHttpDate(second * 1000);
    }
    return this.#value;
  }
}
