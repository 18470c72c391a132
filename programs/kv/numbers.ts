/**
 * kv/numbers: the number syntax of the Redis protocol, byte for byte as Redis 7.0 parses and
 * prints numbers.
 *
 * Owns: {@link parseLL} (Redis util.c string2ll: no sign '+', no leading zeros, no spaces, int64
 * range), {@link parseCursor} (strtoul as SCAN's parseScanCursorOrReply uses it), {@link
 * parseDouble} (strtod as getDoubleFromObject uses it: decimal, hex, inf/infinity; NaN, a leading
 * space, trailing bytes and over/underflow refused), {@link formatDouble} (the "%.17g" printf
 * of Redis 7.0's addReplyDouble, with glibc's round-half-even on exact ties), and integer
 * formatting into a byte buffer without allocating.
 *
 * int64 values: a number that fits in 2^53 is a JS number; a larger one is a bigint (INCRBY near
 * the int64 limits), so the common path allocates nothing.
 *
 * Who calls: the command table (commands.ts), the store (INCR on stored strings), the parser.
 */

/** Largest and smallest int64. */
export const LLONG_MAX = 9223372036854775807n;
export const LLONG_MIN = -9223372036854775808n;

const C0 = 48;
const C9 = 57;

/**
 * string2ll over b[o … o+n): the int64 it spells, or null. A result outside ±(2^53-1) comes back
 * as a bigint.
 */
export function parseLL(b: Uint8Array, o: number, n: number): number | bigint | null {
  if (n === 0 || n > 20) return null;
  if (n === 1 && b[o] === C0) return 0;
  let i = o;
  const end = o + n;
  let neg = false;
  if (b[i] === 45) {
    neg = true;
    i++;
    if (i === end) return null;
  }
  if (b[i] < 49 || b[i] > C9) return null; // first digit 1-9: no leading zeros, no "-0"
  let v = 0;
  const start = i;
  for (; i < end; i++) {
    const c = b[i];
    if (c < C0 || c > C9) return null;
    v = v * 10 + (c - C0);
  }
  if (end - start <= 15) return neg ? -v : v; // ≤ 15 digits: exact as a double
  let big = 0n;
  for (let k = start; k < end; k++) big = big * 10n + BigInt(b[k] - C0);
  if (neg) big = -big;
  if (big > LLONG_MAX || big < LLONG_MIN) return null;
  return Number.isSafeInteger(Number(big)) && BigInt(Number(big)) === big ? Number(big) : big;
}

/** An int64 (number or bigint) as a number when it is exact, else as the bigint. */
export function normalizeLL(v: bigint): number | bigint {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
}

/** a + b as int64, or null on overflow (Redis: "increment or decrement would overflow"). */
export function addLL(a: number | bigint, b: number | bigint): number | bigint | null {
  if (typeof a === "number" && typeof b === "number") {
    const s = a + b;
    if (Number.isSafeInteger(s)) return s;
  }
  const s = BigInt(a) + BigInt(b);
  if (s > LLONG_MAX || s < LLONG_MIN) return null;
  return normalizeLL(s);
}

/** Write the decimal form of an integer at dst[off…]; returns the bytes written (≤ 20). */
export function formatInt(v: number | bigint, dst: Uint8Array, off: number): number {
  if (typeof v === "bigint") {
    const s = v.toString();
    for (let i = 0; i < s.length; i++) dst[off + i] = s.charCodeAt(i);
    return s.length;
  }
  let n = v;
  let p = off;
  if (n < 0) {
    dst[p++] = 45;
    n = -n;
  }
  if (n === 0) {
    dst[p] = C0;
    return p + 1 - off;
  }
  if (n < 2147483648) {
    // int32 arithmetic: V8 turns `(x / 10) | 0` into a multiply and a shift
    let x = n | 0;
    let digits = 1;
    for (let t = x; t >= 10; t = (t / 10) | 0) digits++;
    for (let i = digits - 1; i >= 0; i--) {
      const q = (x / 10) | 0;
      dst[p + i] = C0 + (x - q * 10);
      x = q;
    }
    return p + digits - off;
  }
  let digits = 0;
  for (let t = n; t >= 1; t = Math.floor(t / 10)) digits++;
  for (let i = digits - 1; i >= 0; i--) {
    const q = Math.floor(n / 10);
    dst[p + i] = C0 + (n - q * 10);
    n = q;
  }
  return p + digits - off;
}

/**
 * SCAN's cursor: strtoul(s, &end, 10) accepted only when the first byte is not a space, every
 * byte was used and it did not overflow 2^64-1 (Redis parseScanCursorOrReply). A leading '-'
 * negates modulo 2^64 as strtoul does, and "" is 0. Returns the low 32 bits (our tables never
 * have more than 2^32 buckets, and the reverse-binary scan ignores bits above the mask), or -1.
 */
export function parseCursor(b: Uint8Array, o: number, n: number): number {
  if (n === 0) return 0;
  if (isSpace(b[o])) return -1;
  let i = o;
  const end = o + n;
  let neg = false;
  if (b[i] === 43 || b[i] === 45) {
    neg = b[i] === 45;
    i++;
  }
  if (i === end) return -1; // a sign with no digits: strtoul consumed nothing
  let v = 0n;
  for (; i < end; i++) {
    const c = b[i];
    if (c < C0 || c > C9) return -1;
    v = v * 10n + BigInt(c - C0);
    if (v > 0xffff_ffff_ffff_ffffn) return -1;
  }
  if (neg) v = (1n << 64n) - v;
  return Number(v & 0xffff_ffffn);
}

/** C isspace in the "C" locale. */
export function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/;
const INF = /^([+-]?)(?:inf|infinity)$/i;

/**
 * getDoubleFromObject's strtod over b[o … o+n): the double, or NaN when Redis would answer
 * "value is not a valid float" (empty, leading space, unused bytes, overflow to ±HUGE_VAL,
 * underflow to zero, NaN).
 */
export function parseDouble(b: Uint8Array, o: number, n: number): number {
  if (n === 0 || n > 1024 || isSpace(b[o])) return Number.NaN;
  // fast path, no allocation: an optional '-' and at most 15 digits is an exact integer
  if (n <= 15) {
    let i = o;
    const neg = b[i] === 45;
    if (neg) i++;
    let v = 0;
    for (; i < o + n; i++) {
      const c = b[i];
      if (c < C0 || c > C9) break;
      v = v * 10 + (c - C0);
    }
    if (i === o + n && i > o + (neg ? 1 : 0)) return neg ? -v : v;
  }
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(b[o + i]);
  if (DECIMAL.test(s)) {
    const v = Number(s);
    if (!Number.isFinite(v)) return Number.NaN; // ERANGE, HUGE_VAL
    if (v === 0 && /[1-9]/.test(s.replace(/[eE].*$/, ""))) return Number.NaN; // ERANGE, zero
    return v;
  }
  const inf = INF.exec(s);
  if (inf !== null) return inf[1] === "-" ? -Infinity : Infinity;
  const hex = HEX.exec(s);
  if (hex !== null) {
    const int = hex[2] ?? "";
    const frac = hex[3] ?? "";
    if (int.length + frac.length === 0) return Number.NaN; // "0x" stops after the 0
    const mant = BigInt(`0x${int}${frac}`);
    const exp = Number(hex[4] ?? "0") - 4 * frac.length;
    let v = Number(mant) * 2 ** exp;
    if (!Number.isFinite(v) && exp < 0) v = Number(mant) * 2 ** (exp + 512) * 2 ** -512;
    if (!Number.isFinite(v)) return Number.NaN;
    if (v === 0 && mant !== 0n) return Number.NaN;
    return hex[1] === "-" ? -v : v;
  }
  return Number.NaN;
}

/**
 * The significant digits of |d| rounded to `p` digits, round-half-even on an exact tie (glibc
 * printf), and the decimal exponent of the first digit.
 */
function roundDigits(d: number, p: number): { digits: string; exp: number } {
  const a = Math.abs(d);
  let e = a.toExponential(p + 3); // p+4 significant digits, correctly rounded
  let digits = e.slice(0, 1) + e.slice(2, e.indexOf("e"));
  let exp = Number(e.slice(e.indexOf("e") + 1));
  let tail = digits.slice(p);
  if (tail === "5000" || tail === "4999") {
    // maybe an exact tie: look at (nearly) every digit the double has
    e = a.toExponential(99);
    digits = e.slice(0, 1) + e.slice(2, e.indexOf("e"));
    exp = Number(e.slice(e.indexOf("e") + 1));
    tail = digits.slice(p);
  }
  let head = digits.slice(0, p);
  const first = tail.charCodeAt(0) - C0;
  const exactHalf = first === 5 && /^5(0*)$/.test(tail);
  const up = first > 5 || (first === 5 && (!exactHalf || (head.charCodeAt(p - 1) - C0) % 2 === 1));
  if (up) {
    const arr = head.split("");
    let k = p - 1;
    while (k >= 0 && arr[k] === "9") arr[k--] = "0";
    if (k < 0) {
      arr.unshift("1");
      arr.pop();
      exp++;
    } else arr[k] = String.fromCharCode(arr[k].charCodeAt(0) + 1);
    head = arr.join("");
  }
  return { digits: head, exp };
}

/**
 * A double as Redis 7.0 replies it in RESP2: "inf" / "-inf", else printf("%.17g"): 17 significant
 * digits, trailing zeros dropped, exponent form when the exponent is < -4 or ≥ 17.
 */
export function formatDouble(d: number): string {
  if (d === Infinity) return "inf";
  if (d === -Infinity) return "-inf";
  if (Number.isNaN(d)) return "nan";
  if (d === 0) return Object.is(d, -0) ? "-0" : "0";
  const P = 17;
  const { digits, exp } = roundDigits(d, P);
  const sign = d < 0 ? "-" : "";
  const trimmed = digits.replace(/0+$/, "");
  if (exp < -4 || exp >= P) {
    const mant = trimmed.length > 1 ? `${trimmed[0]}.${trimmed.slice(1)}` : trimmed;
    const ae = Math.abs(exp);
    return `${sign}${mant}e${exp < 0 ? "-" : "+"}${ae < 10 ? "0" : ""}${ae}`;
  }
  if (exp >= 0) {
    const int = digits.slice(0, exp + 1);
    const frac = digits.slice(exp + 1).replace(/0+$/, "");
    return frac.length > 0 ? `${sign}${int}.${frac}` : `${sign}${int}`;
  }
  return `${sign}0.${"0".repeat(-exp - 1)}${trimmed}`;
}
