/**
 * http: the HTTP/1.1 engine of exocore's HTTP server, as one import for the server program
 * (programs/http-server.ts) and the tests. Pure modules: no sockets, no files, no threads —
 * bytes in, bytes out, and file access through the StaticFiles generators the server provides.
 *
 *   const routes = new Routes().get("/api/stats", json(stats)).post("/api/echo", echo);
 *   const engine = new HttpEngine({ files, routes });
 *   // per accepted connection, in its green thread:
 *   yield* serveConnection(engine.connection(), transport);
 */

export { FileCache, type FileCacheOptions, type FileVersion } from "./cache.js";
export {
  DEFAULT_LIMITS,
  DEFAULT_OUTPUT_BYTES,
  HttpConnection,
  HttpEngine,
  type HttpOptions,
  type MemoryReader,
  serveConnection,
  type Transport,
} from "./connection.js";
export { DateCache, formatHttpDate, parseHttpDate } from "./date.js";
export type {
  BodyProducer,
  FileStat,
  Green,
  Handler,
  HandlerResponse,
  HttpRequest,
  StaticFiles,
} from "./message.js";
export { HttpHeaders } from "./message.js";
export { contentType } from "./mime.js";
export type { HttpLimits } from "./parser.js";
export { echo, json, jsonNow, type Route, Routes } from "./routes.js";
