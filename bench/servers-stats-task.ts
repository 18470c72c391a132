/**
 * The task a piscina worker runs for the node:http + piscina server of `exocore bench servers`
 * (bench/servers-node.ts): the JSON of GET /api/stats, computed on the pool's thread — the
 * same small object exocore's http-server computes on the core that serves the request.
 */

import { threadId } from "node:worker_threads";

export interface StatsTask {
  readonly served: number;
  readonly started: number;
}

export default function stats(task: StatsTask): string {
  return JSON.stringify({
    server: "node:http+piscina",
    thread: threadId,
    served: task.served,
    uptimeMs: Date.now() - task.started,
  });
}
