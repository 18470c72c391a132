/**
 * target: from a request-target to the path the engine serves (RFC 9112 §3.2, RFC 3986 §2.1
 * and §3.3). Pure functions; called by the connection for every request and by Routes to check
 * route paths.
 *
 * - origin-form "/a/b?q" and absolute-form "http://host/a/b?q" give the path "/a/b" and the
 *   query "q"; any other form is a 400 for the methods served here.
 * - The path is percent-decoded as UTF-8 (a bad escape or a NUL is a 400), then normalised:
 *   empty and "." segments go, a trailing "/" stays, and a ".." segment anywhere is refused
 *   with 403 rather than resolved, so no request can name anything above the document root —
 *   however it spells the dots (%2e%2e) or the slashes (%2f).
 */

/** Results are a string (the path) or one of these statuses. */
export const BAD_TARGET = 400;
export const FORBIDDEN_TARGET = 403;

/** The raw (still encoded) path part of a request-target, or 400. */
export function targetPath(target: string): string | number {
  let from = 0;
  if (target.charCodeAt(0) !== 0x2f /* "/" */) {
    const scheme = target.indexOf("://");
    if (scheme <= 0 || !/^https?$/i.test(target.slice(0, scheme))) return BAD_TARGET;
    // The authority ends at the first "/" or "?"; with no "/" there the path is empty ("/").
    from = scheme + 3;
    while (from < target.length && target[from] !== "/" && target[from] !== "?") from++;
    if (from === target.length || target[from] === "?") return "/";
  }
  const q = target.indexOf("?", from);
  return q < 0 ? target.slice(from) : target.slice(from, q);
}

/** The query of a request-target without its "?", or "". */
export function targetQuery(target: string): string {
  const q = target.indexOf("?");
  return q < 0 ? "" : target.slice(q + 1);
}

/** Percent-decode and normalise a raw path: the path, 400 (bad escape, NUL) or 403 (".."). */
export function decodePath(raw: string): string | number {
  let path = raw;
  if (raw.includes("%")) {
    try {
      path = decodeURIComponent(raw);
    } catch {
      return BAD_TARGET; // "%zz", or escapes that are not UTF-8
    }
    if (path.includes("\0")) return BAD_TARGET;
  }
  return normalizePath(path);
}

/** Drop empty and "." segments, keep a trailing "/"; 403 on any ".." segment. */
export function normalizePath(path: string): string | number {
  if (path.charCodeAt(0) !== 0x2f) return BAD_TARGET;
  // Fast path: nothing to normalise (no "//", no "/." segment start).
  if (!path.includes("//") && !path.includes("/.")) return path;
  const kept: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") return FORBIDDEN_TARGET;
    kept.push(segment);
  }
  const last = path.slice(path.lastIndexOf("/") + 1);
  const trailing = kept.length > 0 && (last === "" || last === ".");
  return `/${kept.join("/")}${trailing ? "/" : ""}`;
}
