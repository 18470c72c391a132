/**
 * kv/glob: glob-style matching of keys, exactly as Redis 7.0's stringmatchlen (util.c) does it —
 * `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (ends swapped when reversed), `\` escapes inside and
 * outside classes, an unclosed `[` running to the end of the pattern — including its quirks:
 * range ends compare as C `char` (signed, so bytes ≥ 0x80 sort below ASCII), and the
 * "skip longer matches" cut-off that bounds backtracking (CVE-2022-36021).
 *
 * Owns: {@link globMatch}. Pure, allocates nothing. Who calls: KEYS and SCAN's MATCH (commands.ts).
 */

/** Byte i of the pattern, or 0 past its end (C reads the NUL terminator there). */
function at(p: Uint8Array, i: number, end: number): number {
  return i < end ? p[i] : 0;
}

function signed(c: number): number {
  return (c << 24) >> 24;
}

const STAR = 42;
const QMARK = 63;
const LBRACKET = 91;
const RBRACKET = 93;
const BACKSLASH = 92;
const CARET = 94;
const DASH = 45;

/** Flag shared down one match's recursion (stringmatchlen's skipLongerMatches). */
const skip = { longer: false };

function match(
  p: Uint8Array,
  pi: number,
  pend: number,
  s: Uint8Array,
  si: number,
  send: number,
): boolean {
  while (pi < pend && si < send) {
    switch (p[pi]) {
      case STAR: {
        while (pi + 1 < pend && p[pi + 1] === STAR) pi++;
        if (pend - pi === 1) return true;
        while (si < send) {
          if (match(p, pi + 1, pend, s, si, send)) return true;
          if (skip.longer) return false;
          si++;
        }
        skip.longer = true;
        return false;
      }
      case QMARK:
        si++;
        break;
      case LBRACKET: {
        pi++;
        const not = at(p, pi, pend) === CARET;
        if (not) pi++;
        let ok = false;
        const c = s[si];
        for (;;) {
          if (at(p, pi, pend) === BACKSLASH && pend - pi >= 2) {
            pi++;
            if (p[pi] === c) ok = true;
          } else if (at(p, pi, pend) === RBRACKET) {
            break;
          } else if (pi >= pend) {
            pi--;
            break;
          } else if (pend - pi >= 3 && p[pi + 1] === DASH) {
            let lo = signed(p[pi]);
            let hi = signed(p[pi + 2]);
            if (lo > hi) {
              const t = lo;
              lo = hi;
              hi = t;
            }
            const sc = signed(c);
            pi += 2;
            if (sc >= lo && sc <= hi) ok = true;
          } else if (p[pi] === c) {
            ok = true;
          }
          pi++;
        }
        if (not) ok = !ok;
        if (!ok) return false;
        si++;
        break;
      }
      case BACKSLASH:
        if (pend - pi >= 2) pi++;
        if (p[pi] !== s[si]) return false;
        si++;
        break;
      default:
        if (p[pi] !== s[si]) return false;
        si++;
        break;
    }
    pi++;
    if (si === send) {
      while (at(p, pi, pend) === STAR) pi++;
      break;
    }
  }
  return pi >= pend && si === send;
}

/** Does s[so … so+sn) match the glob pattern p[po … po+pn)? (case-sensitive, as KEYS and SCAN) */
export function globMatch(
  p: Uint8Array,
  po: number,
  pn: number,
  s: Uint8Array,
  so: number,
  sn: number,
): boolean {
  skip.longer = false;
  return match(p, po, po + pn, s, so, so + sn);
}
