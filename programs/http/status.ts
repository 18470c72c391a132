/**
 * status: reason phrases (RFC 9110 §15) and the small HTML page of an error response. Pure;
 * called by the connection when it writes a status line or an error.
 */

const REASONS: ReadonlyMap<number, string> = new Map([
  [100, "Continue"],
  [200, "OK"],
  [201, "Created"],
  [202, "Accepted"],
  [204, "No Content"],
  [206, "Partial Content"],
  [301, "Moved Permanently"],
  [302, "Found"],
  [303, "See Other"],
  [304, "Not Modified"],
  [307, "Temporary Redirect"],
  [308, "Permanent Redirect"],
  [400, "Bad Request"],
  [401, "Unauthorized"],
  [403, "Forbidden"],
  [404, "Not Found"],
  [405, "Method Not Allowed"],
  [406, "Not Acceptable"],
  [408, "Request Timeout"],
  [409, "Conflict"],
  [410, "Gone"],
  [411, "Length Required"],
  [412, "Precondition Failed"],
  [413, "Content Too Large"],
  [414, "URI Too Long"],
  [415, "Unsupported Media Type"],
  [416, "Range Not Satisfiable"],
  [417, "Expectation Failed"],
  [422, "Unprocessable Content"],
  [429, "Too Many Requests"],
  [431, "Request Header Fields Too Large"],
  [500, "Internal Server Error"],
  [501, "Not Implemented"],
  [502, "Bad Gateway"],
  [503, "Service Unavailable"],
  [504, "Gateway Timeout"],
  [505, "HTTP Version Not Supported"],
]);

/** The reason phrase of a status, or "" (the phrase is optional, RFC 9112 §4). */
export function reasonPhrase(status: number): string {
  return REASONS.get(status) ?? "";
}

const pages = new Map<number, string>();

/** The HTML body of an error response (ASCII, so its length in bytes is its length). */
export function errorPage(status: number): string {
  let page = pages.get(status);
  if (page === undefined) {
    const title = `${status} ${reasonPhrase(status)}`.trimEnd();
    page = `<!DOCTYPE html>\n<html><head><title>${title}</title></head><body><h1>${title}</h1></body></html>\n`;
    pages.set(status, page);
  }
  return page;
}
