/**
 * mime: the Content-Type of a static file, from its extension (case-insensitive). Text types
 * say charset=utf-8 so that browsers do not guess. Anything unknown is
 * application/octet-stream (RFC 9110 §8.3: a sender that does not know the type may omit it,
 * but an explicit octet-stream stops clients from sniffing). Called by static serving.
 */

const TYPES: ReadonlyMap<string, string> = new Map([
  ["html", "text/html; charset=utf-8"],
  ["htm", "text/html; charset=utf-8"],
  ["css", "text/css; charset=utf-8"],
  ["js", "text/javascript; charset=utf-8"],
  ["mjs", "text/javascript; charset=utf-8"],
  ["json", "application/json"],
  ["txt", "text/plain; charset=utf-8"],
  ["svg", "image/svg+xml"],
  ["png", "image/png"],
  ["jpg", "image/jpeg"],
  ["jpeg", "image/jpeg"],
  ["gif", "image/gif"],
  ["ico", "image/x-icon"],
  ["wasm", "application/wasm"],
  ["pdf", "application/pdf"],
]);

export const DEFAULT_TYPE = "application/octet-stream";

/** The Content-Type for a path ("/a/b.CSS" → "text/css; charset=utf-8"). */
export function contentType(path: string): string {
  const slash = path.lastIndexOf("/");
  const dot = path.lastIndexOf(".");
  if (dot <= slash + 1) return DEFAULT_TYPE; // no extension, or a dot-file like "/.profile"
  return TYPES.get(path.slice(dot + 1).toLowerCase()) ?? DEFAULT_TYPE;
}
