/**
 * routes: the dynamic part of the HTTP server — a table from exact paths to handlers, filled by
 * the server program before it accepts, read by every connection (programs/http/connection.ts).
 * A path that has no route is served from the static files.
 *
 * Invariants: paths are absolute and normalised like request paths (programs/http/target.ts);
 * a GET route also answers HEAD (RFC 9110 §9.3.2); one handler per (method, path).
 *
 * Ready-made handlers: {@link echo} (POST /api/echo: the body back), {@link jsonNow} (a value
 * computed at once as application/json: a plain function, for GET /api/stats) and {@link json}
 * (the same for a generator that may make system calls). Both JSON handlers answer with one
 * frozen headers object, which the engine checks once (programs/http/connection.ts).
 */

import { InvalidArgumentError } from "../../src/errors.js";
import type { Green, Handler, HandlerResponse, HttpRequest } from "./message.js";
import { normalizePath } from "./target.js";

/** The handlers of one path. */
export interface Route {
  readonly get: Handler | null;
  readonly post: Handler | null;
  /** The Allow field value for this path (RFC 9110 §10.2.1). */
  readonly allow: string;
}

export class Routes {
  readonly #table = new Map<string, Route>();

  /** Serve GET (and HEAD) of `path` with `handler`. */
  get(path: string, handler: Handler): this {
    return this.#add("get", path, handler);
  }

  /** Serve POST to `path` with `handler`. */
  post(path: string, handler: Handler): this {
    return this.#add("post", path, handler);
  }

  /** The route of a normalised request path, or undefined. */
  find(path: string): Route | undefined {
    return this.#table.get(path);
  }

  #add(method: "get" | "post", path: string, handler: Handler): this {
    if (typeof path !== "string" || normalizePath(path) !== path) {
      throw new InvalidArgumentError(
        `route path must be absolute and normalised (like "/api/stats"), got ${JSON.stringify(path)}`,
      );
    }
    if (typeof handler !== "function") {
      throw new InvalidArgumentError(
        `route handler for ${method.toUpperCase()} ${path} must be a function`,
      );
    }
    const old = this.#table.get(path);
    if (old?.[method]) {
      throw new InvalidArgumentError(`route ${method.toUpperCase()} ${path} is already registered`);
    }
    const get = method === "get" ? handler : (old?.get ?? null);
    const post = method === "post" ? handler : (old?.post ?? null);
    const allow = [get ? "GET, HEAD" : "", post ? "POST" : ""].filter((s) => s !== "").join(", ");
    this.#table.set(path, { get, post, allow });
    return this;
  }
}

/** POST /api/echo: the request body back, with the request's Content-Type. */
export function echo(request: HttpRequest): HandlerResponse {
  return {
    status: 200,
    headers: { "content-type": request.headers.get("content-type") ?? "application/octet-stream" },
    body: request.body,
  };
}

/** The fields of every JSON answer: one frozen object, so the engine checks it only once. */
const JSON_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "content-type": "application/json",
});

/**
 * A JSON route computed at once, with no system call: a plain function (no generator to step
 * through), answering with the one frozen JSON_HEADERS.
 */
export function jsonNow(produce: (request: HttpRequest) => unknown): Handler {
  return function jsonNowHandler(request: HttpRequest): HandlerResponse {
    return { status: 200, headers: JSON_HEADERS, body: JSON.stringify(produce(request)) };
  };
}

/** A handler that answers 200 with the JSON of what `produce` returns (it may make syscalls). */
export function json(produce: (request: HttpRequest) => Green<unknown>): Handler {
  return function* jsonHandler(request: HttpRequest): Green<HandlerResponse> {
    const value = yield* produce(request);
    return { status: 200, headers: JSON_HEADERS, body: JSON.stringify(value) };
  };
}
