/**
 * demo: `exocore demo` as a user runs it — `node bin/exocore.js demo --quick` against the build
 * this test was compiled into (EXOCORE_DIST), spawned asynchronously. It must boot, serve both
 * servers under load, print live figures on stderr and a summary on stdout, write an HTML
 * report with its figures, and exit 0; and on Ctrl-C (SIGINT) in the middle of a long run it
 * must stop the load, shut the machine down, still report, and exit 130 on its own with no
 * load-generator process left behind.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

// This file runs as <dist>/test/demo.test.js; the repository is two levels up from <dist>/test
// unless EXOCORE_ROOT says otherwise (a build made outside the repository).
const distRoot = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = process.env.EXOCORE_ROOT ?? fileURLToPath(new URL("../..", import.meta.url));
const bin = join(repoRoot, "bin", "exocore.js");

interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal that killed it). */
  readonly exit: Promise<number | NodeJS.Signals>;
}

/** Liveness guard only: a demo that never exits is killed so the suite does not hang. */
const HANG_MS = 90_000;

function exocore(args: string[]): Running {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, EXOCORE_DIST: distRoot, EXOCORE_ROOT: repoRoot, EXOCORE_DEBUG: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const guard = setTimeout(() => child.kill("SIGKILL"), HANG_MS);
  const exit = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once("close", (code, signal) => {
      clearTimeout(guard);
      resolve(code ?? (signal as NodeJS.Signals));
    }),
  );
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Is a process with this pid still there? */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("exocore demo --quick serves both servers, shows live figures, prints a summary and writes the report", async () => {
  const dir = mkdtempSync(join(os.tmpdir(), "exocore-demo-test-"));
  const report = join(dir, "out", "report.html");
  try {
    const r = exocore(["demo", "--quick", "--report", report]);
    const code = await r.exit;
    assert.equal(code, 0, `exit ${code}\n${r.stderr()}`);
    const out = r.stdout();
    const err = r.stderr();
    // the thread layout at start, and live figures while it runs
    assert.match(
      err,
      /thread layout: 6 threads in this process \+ \d+ other processes, on \d+ vCPUs/,
    );
    assert.match(err, /^ {2}main +thread +hypervisor/m);
    assert.match(err, /resp client \(pid \d+\) +process/);
    assert.match(
      err,
      /demo: kv [\d.]+[kM]?\/s {2}http [\d.]+[kM]?\/s {2}syscalls [\d.]+[kM]?\/s {2}│ net q\d+ park [\d.]+[kM]?\/s wake [\d.]+[kM]?\/s {2}│ sto q\d+ park/,
    );
    // the summary: both servers got requests from the built-in clients, none failed
    assert.match(out, /^exocore demo: [\d.]+ s of load, channel hybrid/m);
    for (const [server, client] of [
      ["kv-server", "built-in RESP -P 16"],
      ["http-server", "built-in HTTP"],
    ]) {
      const row = new RegExp(
        `^ {2}${server} +${client.replace(/[-+]/g, "\\$&")} +([\\d,]+) +([\\d,]+) .* (\\d+)$`,
        "m",
      ).exec(out);
      assert.ok(row, `a summary row for ${server}:\n${out}`);
      assert.ok(Number(row[1]?.replace(/,/g, "")) > 0, `${server} served requests`);
      assert.equal(row[3], "0", `${server}: no errors`);
    }
    assert.match(out, /^ {2}domain\.network +[\d,]+/m);
    assert.match(out, /^nvme: [\d,]+ commands .* [\d,]+ writes/m, "the AOF reached the disk");
    assert.match(out, /^nic VF 0: [\d,]+ connections/m);
    assert.match(
      out,
      new RegExp(`^report: ${report.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"),
    );
    // the report: self-contained, with its figures
    assert.ok(existsSync(report));
    const html = readFileSync(report, "utf8");
    assert.ok((html.match(/<svg[\s>]/g) ?? []).length >= 6, "at least six inline figures");
    assert.ok(html.includes("kv-server: requests/s") && html.includes("http-server: requests/s"));
    assert.ok(html.includes("Thread layout"));
    assert.ok(html.includes("NVMe controller") && html.includes("NIC virtual functions"));
    assert.doesNotMatch(html, /<script/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Ctrl-C in the middle of the demo stops the load, shuts down, reports, and exits 130", async () => {
  const dir = mkdtempSync(join(os.tmpdir(), "exocore-demo-test-"));
  const report = join(dir, "report.html");
  try {
    const r = exocore(["demo", "--duration", "600", "--no-external", "--report", report]);
    // Wait for the first live figures: the machine is up and the clients are loading it.
    while (!/demo: kv /.test(r.stderr())) {
      const done = await Promise.race([r.exit, new Promise((res) => setTimeout(res, 50))]);
      if (done !== undefined) assert.fail(`the demo ended before any load: ${r.stderr()}`);
    }
    const pids = [...r.stderr().matchAll(/client \(pid (\d+)\)/g)].map((m) => Number(m[1]));
    assert.equal(pids.length, 2, "two load-generator processes");
    r.child.kill("SIGINT");
    const code = await r.exit;
    assert.equal(code, 130, `exit ${code}\n${r.stderr()}`);
    assert.match(r.stderr(), /SIGINT: stopping the load and shutting the machine down/);
    assert.match(r.stdout(), /^exocore demo \(interrupted\):/m);
    assert.match(r.stdout(), /^ {2}kv-server +built-in RESP/m, "what was measured is summarised");
    const html = readFileSync(report, "utf8");
    assert.match(html, /Stopped by Ctrl-C/);
    for (const pid of pids) assert.equal(alive(pid), false, `load generator ${pid} is gone`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
