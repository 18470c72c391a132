#!/usr/bin/env node
// The `exocore` command: loads the built CLI (dist/src/cli/main.js) and runs it. EXOCORE_DIST
// names another build directory (tests use it to run a build made elsewhere).
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const dist = process.env.EXOCORE_DIST
  ? resolve(process.env.EXOCORE_DIST)
  : fileURLToPath(new URL("../dist", import.meta.url));
const entry = resolve(dist, "src/cli/main.js");

if (!existsSync(entry)) {
  process.stderr.write(`exocore: ${entry} not found; run "npm run build" first\n`);
  process.exitCode = 1;
} else {
  try {
    const { main } = await import(pathToFileURL(entry).href);
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    // main() reports its own errors; this is a build that does not load.
    process.stderr.write(`exocore: internal error: cannot load ${entry}\n${err?.stack ?? err}\n`);
    process.exitCode = 70;
  }
}
