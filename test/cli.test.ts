/**
 * The exocore command line: help, version, usage errors with their exact messages and exit
 * codes, and --json errors. Each case spawns `node bin/exocore.js` against the build this test
 * was compiled into (EXOCORE_DIST), so it checks what a user runs. The benchmark itself is
 * never run here. How each kind of error maps to an exit code, and the progress line, are
 * checked in-process with fake streams and a fake clock.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { main, reportError } from "../src/cli/main.js";
import { type Io, Output } from "../src/cli/output.js";
import { formatElapsed, ProgressReporter } from "../src/cli/progress.js";
import { ExocoreError, InvalidArgumentError, PanicError } from "../src/errors.js";

// This file runs as <dist>/test/cli.test.js; the repo root is two levels up from <dist>/test,
// unless EXOCORE_ROOT says otherwise (a build made outside the repo).
const distRoot = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = process.env.EXOCORE_ROOT ?? fileURLToPath(new URL("../..", import.meta.url));
const bin = join(repoRoot, "bin", "exocore.js");
const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string };

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function exocore(...args: string[]): Run {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    env: { ...process.env, EXOCORE_DIST: distRoot, EXOCORE_DEBUG: "" },
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("exocore help and version", () => {
  it("--help exits 0 and lists every command with its summary, and the exit codes", () => {
    const r = exocore("--help");
    assert.equal(r.code, 0, r.stderr);
    for (const name of ["bench queue", "demo", "help", "version"]) {
      assert.match(r.stdout, new RegExp(`^  ${name}  +\\S`, "m"), `lists ${name}`);
    }
    assert.match(r.stdout, /^ {2}70 +internal error/m);
    assert.equal(r.stderr, "");
  });

  it("help <command> and <command> --help print the same page", () => {
    const a = exocore("help", "bench", "queue");
    const b = exocore("bench", "queue", "--help");
    assert.equal(a.code, 0);
    assert.equal(b.code, 0);
    assert.equal(a.stdout, b.stdout);
  });

  it("bench queue --help lists its flags with their defaults", () => {
    const r = exocore("bench", "queue", "--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--samples <n> +.*an integer >= 100; default: 20000/);
    assert.match(r.stdout, /--warmup <n> +.*an integer >= 0; default: 2000/);
    assert.match(r.stdout, /--quick +\S/);
    assert.match(r.stdout, /--methods <\S+> +\S/);
    assert.match(r.stdout, /--out <dir> +.*default: bench\/results/);
    assert.match(r.stdout, /--\[no-\]svg +.*default: on/);
    assert.match(r.stdout, /--strict +\S/);
    assert.match(r.stdout, /--json +\S/);
  });

  it("--help wins over a bad flag value", () => {
    const r = exocore("bench", "queue", "--samples", "abc", "--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--samples/);
  });

  it("a group name with --help lists its commands", () => {
    const r = exocore("bench", "--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /bench queue/);
  });

  it("--version and version print the version in package.json", () => {
    for (const args of [["--version"], ["version"]]) {
      const r = exocore(...args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${pkg.version}\n`);
    }
  });

  it("version --json prints one JSON document", () => {
    const r = exocore("version", "--json");
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { name: string; version: string };
    assert.equal(doc.name, "exocore");
    assert.equal(doc.version, pkg.version);
  });
});

describe("exocore usage errors (exit 2)", () => {
  const cases: readonly (readonly [string[], string])[] = [
    [["frob"], 'exocore: unknown command "frob" (see exocore --help)'],
    [["bench", "frob"], 'exocore: unknown command "bench frob" (see exocore bench --help)'],
    [
      ["bench"],
      'exocore: "bench" needs a subcommand: network, queue, servers, storage, syscalls (see exocore bench --help)',
    ],
    [["--foo"], "exocore: unknown flag --foo (see exocore --help)"],
    [
      ["bench", "queue", "--foo"],
      'exocore: unknown flag --foo for "bench queue" (see exocore bench queue --help)',
    ],
    [
      ["bench", "queue", "--no-quick-at-all"],
      'exocore: unknown flag --no-quick-at-all for "bench queue" (see exocore bench queue --help)',
    ],
    [
      ["bench", "queue", "--samples", "abc"],
      'exocore: --samples must be an integer >= 100, got "abc"',
    ],
    [["bench", "queue", "--samples=99"], 'exocore: --samples must be an integer >= 100, got "99"'],
    [
      ["bench", "queue", "--samples", "1.5"],
      'exocore: --samples must be an integer >= 100, got "1.5"',
    ],
    [["bench", "queue", "--warmup", "-1"], 'exocore: --warmup must be an integer >= 0, got "-1"'],
    [["bench", "queue", "--samples"], "exocore: --samples needs a value (an integer >= 100)"],
    [
      ["bench", "queue", "--samples", "--quick"],
      "exocore: --samples needs a value (an integer >= 100)",
    ],
    [["bench", "queue", "--quick=yes"], 'exocore: --quick takes no value, got "yes"'],
    [["bench", "queue", "--out="], 'exocore: --out must be a non-empty string, got ""'],
    [
      ["bench", "queue", "--methods", "a,,b"],
      'exocore: --methods must be a comma-separated list of non-empty names, got "a,,b"',
    ],
    [
      ["bench", "queue", "extra"],
      'exocore: unexpected argument "extra" for "bench queue" (see exocore bench queue --help)',
    ],
    [["help", "frob"], 'exocore: unknown command "frob" (see exocore --help)'],
  ];
  for (const [args, message] of cases) {
    it(`exocore ${args.join(" ")}`, () => {
      const r = exocore(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `${message}\n`);
      assert.equal(r.stdout, "");
    });
  }

  it("no command prints the help on stderr", () => {
    const r = exocore();
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /Usage: exocore <command>/);
  });
});

describe("exocore --json errors", () => {
  it("a usage error is one JSON error object on stdout", () => {
    const r = exocore("bench", "queue", "--json", "--samples", "abc");
    assert.equal(r.code, 2);
    assert.deepEqual(JSON.parse(r.stdout), {
      error: { code: "EXO_ERR_USAGE", message: '--samples must be an integer >= 100, got "abc"' },
    });
    assert.equal(r.stderr, 'exocore: --samples must be an integer >= 100, got "abc"\n');
  });

  it("--json before the command counts too", () => {
    const r = exocore("--json", "frob");
    assert.equal(r.code, 2);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    assert.equal(doc.error.code, "EXO_ERR_USAGE");
    assert.equal(doc.error.message, 'unknown command "frob" (see exocore --help)');
  });

  it("a missing command is a JSON error, not the help text", () => {
    const r = exocore("--json");
    assert.equal(r.code, 2);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "EXO_ERR_USAGE");
  });

  it("--help --json describes the command's flags as JSON", () => {
    const r = exocore("bench", "queue", "--help", "--json", "--quiet");
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { command: string; flags: { name: string }[] };
    assert.equal(doc.command, "bench queue");
    assert.deepEqual(
      doc.flags.map((f) => f.name),
      ["samples", "warmup", "quick", "methods", "out", "svg", "strict"],
    );
    assert.equal(r.stderr, "");
  });
});

describe("exocore without a build", () => {
  it("says to run npm run build and exits 1", () => {
    const r = spawnSync(process.execPath, [bin, "--help"], {
      encoding: "utf8",
      env: { ...process.env, EXOCORE_DIST: join(distRoot, "no-such-build") },
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /run "npm run build" first/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  });
});

/** An Io that records stdout and stderr. */
function fakeIo(env: Record<string, string> = {}) {
  const io = { stdout: "", stderr: "" };
  const sinks: Io = {
    stdout: { write: (s: string) => (io.stdout += s) },
    stderr: { write: (s: string) => (io.stderr += s) },
    env,
  };
  return { io, sinks };
}

describe("exit codes of errors a command throws", () => {
  function report(err: unknown, json = false, env: Record<string, string> = {}) {
    const { io, sinks } = fakeIo(env);
    const code = reportError(new Output(sinks, { json, quiet: false }), err, env);
    return { code, ...io };
  }

  it("an InvalidArgumentError (a flag value a library refused) is a usage error: 2", () => {
    const r = report(new InvalidArgumentError('unknown method "x"'));
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'exocore: unknown method "x" [EXO_ERR_INVALID_ARG]\n');
  });

  it("another ExocoreError means the command ran and failed: 1", () => {
    const r = report(new ExocoreError("EXO_ERR_EXAMPLE", "the domain did not come up"));
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "exocore: the domain did not come up [EXO_ERR_EXAMPLE]\n");
  });

  it("a failed call to the host is a failure, not a bug: 1", () => {
    let err: unknown;
    try {
      readFileSync(join(distRoot, "no-such-file"));
    } catch (e) {
      err = e;
    }
    const r = report(err);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^exocore: ENOENT: no such file or directory, open .* \[ENOENT\]\n$/);
  });

  it("any other exception is an internal error: 70, the stack only with EXOCORE_DEBUG=1", () => {
    const quiet = report(new TypeError("x is not a function"));
    assert.equal(quiet.code, 70);
    assert.equal(
      quiet.stderr,
      "exocore: internal error: x is not a function\n(set EXOCORE_DEBUG=1 to print the stack)\n",
    );
    const debug = report(new TypeError("x is not a function"), false, { EXOCORE_DEBUG: "1" });
    assert.equal(debug.code, 70);
    assert.match(
      debug.stderr,
      /^exocore: internal error: x is not a function\nTypeError: .*\n +at /,
    );
  });

  it("a panic is an internal error too, with its code in the JSON error", () => {
    const r = report(new PanicError("ring: tail passed head"), true);
    assert.equal(r.code, 70);
    assert.deepEqual(JSON.parse(r.stdout), {
      error: { code: "EXO_ERR_PANIC", message: "panic: ring: tail passed head" },
    });
  });
});

describe("main in-process", () => {
  it("resolves to the exit code and writes only to the Io it is given", async () => {
    const { io, sinks } = fakeIo();
    assert.equal(await main(["--version"], sinks), 0);
    assert.deepEqual(io, { stdout: `${pkg.version}\n`, stderr: "" });
  });
});

/** A stream that records what was written, with a settable clock. */
function fakeStderr(isTTY: boolean) {
  const chunks: string[] = [];
  let t = 0;
  return {
    chunks,
    sink: { isTTY, columns: 40, write: (s: string) => chunks.push(s) },
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe("progress reporter", () => {
  it("off a terminal, prints at each phase change and at most every 2 s within a phase", () => {
    const f = fakeStderr(false);
    const p = new ProgressReporter("bench queue", f.sink, { enabled: true, now: f.now });
    p.update("latency: spin", 0, 4);
    f.advance(500);
    p.update("latency: spin", 1, 4); // same phase, 0.5 s later: no line
    f.advance(1600);
    p.update("latency: spin", 2, 4); // 2.1 s after the last line: a line
    f.advance(10);
    p.update("throughput", 3, 4); // new phase: a line
    p.end();
    assert.deepEqual(f.chunks, [
      "bench queue: latency: spin 0/4 (0%) 0ms\n",
      "bench queue: latency: spin 2/4 (50%) 2.1s\n",
      "bench queue: throughput 3/4 (75%) 2.1s\n",
      "bench queue: done in 2.1s\n",
    ]);
  });

  it("on a terminal, redraws one line cut to the width and clears it at the end", () => {
    const f = fakeStderr(true);
    const p = new ProgressReporter("bench queue", f.sink, { enabled: true, now: f.now });
    p.update("a phase with a rather long name indeed", 1, 2);
    p.update("a phase with a rather long name indeed", 2, 2); // within 100 ms: not redrawn
    p.abort();
    assert.equal(f.chunks.length, 2);
    assert.equal(f.chunks[0], "\r\x1b[2Kbench queue: a phase with a rather long"); // 39 = columns - 1
    assert.equal(f.chunks[1], "\r\x1b[2K");
    assert.ok(!f.chunks.join("").includes("\n"));
  });

  it("writes nothing when disabled (--quiet)", () => {
    const f = fakeStderr(true);
    const p = new ProgressReporter("x", f.sink, { enabled: false, now: f.now });
    p.update("phase", 1, 2);
    p.end();
    assert.deepEqual(f.chunks, []);
  });

  it("formats elapsed time", () => {
    assert.equal(formatElapsed(850), "850ms");
    assert.equal(formatElapsed(12_340), "12.3s");
    assert.equal(formatElapsed(245_000), "4m05s");
  });
});
