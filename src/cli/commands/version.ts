/** `exocore version` (also `exocore --version`): the version from package.json. */

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExocoreError } from "../../errors.js";
import { defineCommand } from "../args.js";

let cached: { readonly name: string; readonly version: string } | undefined;

/**
 * exocore's package.json, found by walking up from this module: it is two levels above
 * src/cli/commands when run from source and three above dist/src/cli/commands when built.
 */
export function packageInfo(): { readonly name: string; readonly version: string } {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = readPackage(join(dir, "package.json"));
    if (pkg?.name === "exocore" && typeof pkg.version === "string") {
      cached = { name: pkg.name, version: pkg.version };
      return cached;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new ExocoreError("EXO_ERR_NO_PACKAGE", "cannot find exocore's package.json");
}

function readPackage(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as { name?: unknown; version?: unknown };
  } catch {
    return undefined; // missing or unreadable: keep walking up
  }
}

export const version = defineCommand({
  name: "version",
  summary: "Print exocore's version (also: exocore --version)",
  flags: [],
  async run(ctx) {
    const { name, version } = packageInfo();
    ctx.out.emit({ name, version, node: process.version }, version);
    return 0;
  },
});
