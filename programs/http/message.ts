/**
 * message: the shapes the HTTP engine shares with the program that runs it — a parsed request,
 * its header fields, what a route handler returns, and the file interface of static serving.
 *
 * Everything that may touch the machine (a file read, a stats query) is a generator of the
 * green-thread protocol (`Generator<number, T, number>`, src/libos/index.ts): the engine runs it
 * with `yield*`, so its yields reach the core's scheduler unchanged and a syscall parks only the
 * connection's green thread. In tests a trivial runner drives the same generators with no
 * machine at all.
 *
 * Invariants: header names are stored in lower case; a request's `path` is percent-decoded,
 * absolute, and has no empty, "." or ".." segment (programs/http/target.ts).
 */

/** The green-thread protocol: yields scheduler tokens, receives results (src/libos). */
export type Green<T> = Generator<number, T, number>;

/** What {@link StaticFiles.stat} reports about a path. */
export interface FileStat {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly type: "file" | "dir";
}

/**
 * The files static serving reads; the server implements it with open/fstat/pread/close.
 * Paths are what the client asked for after decoding and normalisation ("/css/site.css"):
 * the implementation maps them under its document root.
 */
export interface StaticFiles {
  /** The file's metadata, or null if there is no such file. */
  stat(path: string): Green<FileStat | null>;
  /**
   * Up to `length` bytes at `offset` (fewer only at end of file), or null on an error. The
   * engine never asks for more than its output chunk size at a time.
   */
  read(path: string, offset: number, length: number): Green<Uint8Array | null>;
}

/** Header fields of a request: names in lower case, in the order received. */
export class HttpHeaders {
  /** name0, value0, name1, value1, ... (names lower case). */
  readonly #fields: readonly string[];

  constructor(fields: readonly string[]) {
    this.#fields = fields;
  }

  /** Number of field lines. */
  get size(): number {
    return this.#fields.length >> 1;
  }

  /**
   * The value of field `name` (any case), or undefined; several lines of the same name are
   * combined with ", " as RFC 9110 §5.3 allows for list-based fields.
   */
  get(name: string): string | undefined {
    const key = name.toLowerCase();
    let value: string | undefined;
    const f = this.#fields;
    for (let i = 0; i < f.length; i += 2) {
      if (f[i] === key) value = value === undefined ? f[i + 1] : `${value}, ${f[i + 1]}`;
    }
    return value;
  }

  has(name: string): boolean {
    return this.#fields.includes(name.toLowerCase());
  }

  /** Every field line as [name, value], in the order received. */
  *entries(): IterableIterator<[string, string]> {
    const f = this.#fields;
    for (let i = 0; i < f.length; i += 2) yield [f[i]!, f[i + 1]!];
  }
}

/** One request, complete with its body, as a route handler sees it. */
export interface HttpRequest {
  /** The method token as sent (case-sensitive, RFC 9110 §9.1). */
  readonly method: string;
  /** The request-target as sent. */
  readonly target: string;
  /** The decoded, normalised path (no query). */
  readonly path: string;
  /** The query string without "?" ("" if none), still percent-encoded. */
  readonly query: string;
  /** HTTP/1.minor: 0 or 1. */
  readonly minor: number;
  readonly headers: HttpHeaders;
  /** The request body (empty if none); at most the configured body limit. */
  readonly body: Uint8Array;
}

/**
 * A body whose length is not known up front: each call gives the next piece, null at the end.
 * The engine sends it chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones.
 */
export type BodyProducer = () => Green<Uint8Array | null>;

/** What a route handler returns. */
export interface HandlerResponse {
  /** 200..599. 204 and 304 carry no body. */
  readonly status: number;
  /**
   * Extra header fields. The engine owns the framing fields (Content-Length,
   * Transfer-Encoding, Connection) and writes Date and Server itself: a handler that sets one
   * of those fails with 500. Without Content-Type a string body is sent as text/plain and a
   * byte body as application/octet-stream.
   */
  readonly headers?: Readonly<Record<string, string>>;
  /** A string (sent as UTF-8), bytes, or a producer of pieces. */
  readonly body?: string | Uint8Array | BodyProducer;
}

/**
 * A route handler: plain, or a generator that may `yield*` syscalls. Throwing gives the client
 * a 500 and leaves the connection usable.
 */
export type Handler = (request: HttpRequest) => HandlerResponse | Green<HandlerResponse>;
