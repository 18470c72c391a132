/**
 * The device benchmarks as a user runs them: `exocore bench storage` and `exocore bench network`
 * with tiny sizes and --json, spawned against the build this test was compiled into
 * (EXOCORE_DIST; the repo root is two levels up unless EXOCORE_ROOT says otherwise). Checks the
 * report's shape and that its numbers are consistent with each other and with the devices'
 * own counters — never how fast anything was. Also the option errors of both commands.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { NetworkBenchReport } from "../bench/network.js";
import type { StorageBenchReport } from "../bench/storage.js";

const distRoot = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = process.env.EXOCORE_ROOT ?? fileURLToPath(new URL("../..", import.meta.url));
const bin = join(repoRoot, "bin", "exocore.js");

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the exocore command (asynchronously: the benchmark's own child processes need the loop). */
function exocore(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [bin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, EXOCORE_DIST: distRoot, EXOCORE_DEBUG: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    p.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let out = "";
before(() => {
  out = mkdtempSync(join(tmpdir(), "exocore-bench-devices-"));
});
after(() => {
  rmSync(out, { recursive: true, force: true });
});

function positive(x: unknown, what: string): void {
  assert.equal(typeof x, "number", `${what} is a number`);
  assert.ok(Number.isFinite(x as number) && (x as number) > 0, `${what} > 0, got ${x}`);
}

function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

describe("exocore bench storage", () => {
  it("--quick --json: a report whose figures agree with each other and with the NVMe counters", async () => {
    const r = await exocore(
      "bench",
      "storage",
      "--quick",
      "--json",
      "--mib",
      "1",
      "--small-files",
      "20",
      "--fsyncs",
      "8",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as StorageBenchReport;
    assert.equal(rep.mib, 1);
    assert.equal(rep.channel, "hybrid");
    assert.deepEqual(
      rep.seq.map((s) => s.buffer),
      [4096, 65536, 1048576],
    );
    for (const s of rep.seq) {
      assert.equal(s.bytes, 1 << 20);
      for (const side of [s.exocore, s.node]) {
        positive(side.writeNs, "writeNs");
        positive(side.readNs, "readNs");
        positive(side.fsyncNs, "fsyncNs");
        close(side.writeMBps, s.bytes / ((side.writeNs + side.fsyncNs) / 1e3), "write MB/s");
        close(side.readMBps, s.bytes / (side.readNs / 1e3), "read MB/s");
      }
      close(s.ratio.write, s.exocore.writeMBps / s.node.writeMBps, "write ratio");
      close(s.ratio.read, s.exocore.readMBps / s.node.readMBps, "read ratio");
      // The fsync made the file durable: the device took every byte, and a FLUSH.
      assert.ok(
        s.deviceWriteAmplification >= 1,
        `write amplification ${s.deviceWriteAmplification}`,
      );
      assert.ok(s.nvme.flushes >= 1, "the fsync reached the device as a FLUSH");
      assert.ok(s.nvme.writes >= 1);
    }
    assert.equal(rep.small.count, 20);
    for (const side of [rep.small.exocore, rep.small.node]) {
      positive(side.ns, "small ns");
      close(side.opsPerSec, 20 / (side.ns / 1e9), "small ops/s");
    }
    assert.equal(rep.fsync.count, 8);
    for (const f of [rep.fsync.exocore, rep.fsync.node]) {
      positive(f.minNs, "fsync min");
      assert.ok(f.minNs <= f.p50Ns && f.p50Ns <= f.p99Ns && f.p99Ns <= f.maxNs, JSON.stringify(f));
      assert.ok(f.minNs <= f.meanNs && f.meanNs <= f.maxNs);
    }
    close(rep.fsync.ratio.p50, rep.fsync.exocore.p50Ns / rep.fsync.node.p50Ns, "fsync ratio");
    // Every fsync of the fsync job reached the device: at least one FLUSH each, beyond the seq's.
    const seqFlushes = rep.seq.reduce((n, s) => n + s.nvme.flushes, 0);
    assert.ok(rep.machine.nvme.flushes >= seqFlushes + 8 + 5, "a FLUSH per fsync (5 warm-up)");
    assert.ok(
      (rep.machine.storageDomain?.calls ?? 0) > 3 * 20,
      "the small files' calls were served",
    );
    assert.equal(typeof rep.load.start, "number");
    assert.match(rep.layout.join("\n"), /storage domain = 1 worker/);
    assert.match(rep.layout.join("\n"), /load average/);
    assert.deepEqual(rep.files, [join(out, "storage-quick.json")]);
    assert.deepEqual(JSON.parse(readFileSync(join(out, "storage-quick.json"), "utf8")), rep);
  });

  it("refuses bad options with exit 2 and says which", async () => {
    const r = await exocore("bench", "storage", "--mib", "0");
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'exocore: --mib must be an integer from 1 to 1024, got "0"\n');
    const c = await exocore("bench", "storage", "--channel", "fast");
    assert.equal(c.code, 2);
    assert.match(c.stderr, /^exocore: --channel must be one of .*hybrid.*, got "fast"/);
  });
});

describe("exocore bench network", () => {
  it("--quick --json: every server echoed every byte, and the NIC counted the same connections", async () => {
    const r = await exocore(
      "bench",
      "network",
      "--quick",
      "--json",
      "--channels",
      "hybrid",
      "--messages",
      "40",
      "--seconds",
      "0.1",
      "--connections",
      "1,4",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as NetworkBenchReport;
    assert.deepEqual(rep.channels, ["hybrid"]);
    assert.deepEqual(
      rep.latency.map((l) => l.server),
      ["node", "exocore-hybrid"],
    );
    for (const l of rep.latency) {
      assert.equal(l.messages, 40);
      assert.equal(l.size, 64);
      positive(l.minNs, "min");
      assert.ok(l.minNs <= l.p50Ns && l.p50Ns <= l.p99Ns && l.p99Ns <= l.p999Ns);
      assert.ok(l.p999Ns <= l.maxNs);
    }
    const [node, exo] = rep.latency as [(typeof rep.latency)[0], (typeof rep.latency)[0]];
    assert.equal(node.ratioToNode.p50, 1);
    close(exo.ratioToNode.p50, exo.p50Ns / node.p50Ns, "latency ratio");
    assert.deepEqual(
      rep.throughput.map((t) => `${t.server}/${t.connections}`),
      ["node/1", "node/4", "exocore-hybrid/1", "exocore-hybrid/4"],
    );
    for (const t of rep.throughput) {
      assert.equal(t.echoedAll, true, `${t.server} ${t.connections}: every byte came back`);
      assert.equal(t.chunk, 65536);
      assert.equal(t.window, 16 * 65536);
      positive(t.sentBytes, "sent");
      positive(t.receivedBytes, "received");
      close(t.receivedMBps, t.receivedBytes / t.seconds / 1e6, "MB/s");
    }
    const run = rep.runs.find((x) => x.server === "exocore-hybrid");
    assert.ok(run, "the exocore run is reported");
    assert.ok(run.domain !== null && run.nic !== null, "with the domain's and the NIC's counters");
    assert.equal(run.exit, 0, "echo-server served every connection and exited 0");
    assert.equal(run.connections, 1 + 1 + 4);
    assert.equal(run.nic.connections, run.connections, "the offload engine accepted each one");
    assert.equal(run.nic.toeTxBytes, run.nic.toeRxBytes, "the machine sent back all it got");
    const echoed = rep.throughput
      .filter((t) => t.server === "exocore-hybrid")
      .reduce((n, t) => n + t.receivedBytes, 0);
    assert.ok((run.nic.toeTxBytes as number) >= echoed, "the window's bytes crossed the NIC");
    assert.ok(run.domain.calls > 0);
    assert.match(rep.layout.join("\n"), /client: a child process/);
    assert.deepEqual(rep.files, [join(out, "network-quick.json"), join(out, "network-quick.svg")]);
    assert.ok(existsSync(join(out, "network-quick.svg")));
    assert.deepEqual(JSON.parse(readFileSync(join(out, "network-quick.json"), "utf8")), rep);
  });

  it("refuses bad options with exit 2 and says which", async () => {
    const r = await exocore("bench", "network", "--channels", "hybrid,fast");
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^exocore: --channels must be a comma-separated list of .*, got "hybrid,fast"/,
    );
    const t = await exocore("bench", "network", "--channels", "trap");
    assert.equal(t.code, 2, "trap would starve echo-server");
    const c = await exocore("bench", "network", "--connections", "0", "--quick");
    assert.equal(c.code, 2);
    assert.match(c.stderr, /^exocore: each connection count must be from 1 to 1000, got 0 /);
    const d = await exocore("bench", "network", "--connections", "1,x");
    assert.equal(d.code, 2);
    assert.match(d.stderr, /^exocore: --connections takes whole numbers like 1,16; got "1,x" /);
  });
});
