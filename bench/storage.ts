/**
 * storage: file I/O through the storage domain against node:fs (`exocore bench storage`).
 *
 * Owns the run, its report (bench/results/storage.json) and its table. Who calls:
 * src/cli/commands/bench-storage.ts, and tests through it.
 *
 * What is measured, the same way on both sides:
 *   seq     a file of `mib` MiB written sequentially with buffers of 4 KiB, 64 KiB and 1 MiB,
 *           fsynced, closed, then read back with the same buffer size. Write MB/s counts the
 *           writes and the fsync (the data is durable at the end), read MB/s open to close.
 *   small   `smallFiles` × (create a file, write 4 KiB, close), no fsync: ops/s.
 *   fsync   `fsyncs` × (append 4 KiB, fsync), each timed: p50 / p99.
 *
 * exocore side: one machine (`cores` XOS cores, channel mode `channel`) booted over a fresh
 * disk image; programs/bench/fileio.js runs each job as a process and times it from inside with
 * gettsc() — every crossing to the storage domain, the filesystem and its log, the NVMe VF and
 * the device model's host I/O are inside the figure; boot and program load are not.
 * node:fs side: the same calls, synchronous (openSync/writeSync/readSync/fsyncSync/closeSync),
 * on this process's main thread, timed with performance.now(), after the machine shut down, on
 * a plain file in the same directory as the image — so both sides end on the same host file
 * system and page cache. Invariant: the two sides never run at the same time.
 *
 * Ratios are exocore / node: for MB/s and ops/s below 1 means exocore is slower; for latency
 * above 1 means exocore is slower.
 */

import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statfsSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ExocoreError, InvalidArgumentError } from "../src/errors.js";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import type { DeviceStats } from "../src/hv/devices.js";
import { CHANNEL_MODES, type ChannelMode } from "../src/hv/layout.js";
import { boot, describeEvent, type Machine, type WorkerStats } from "../src/hv/machine.js";

export interface StorageBenchOptions {
  /** Size of the sequential file, MiB (--quick caps it at 4). */
  readonly mib: number;
  readonly quick: boolean;
  /** Channel mode of the machine's core ↔ domain channels. */
  readonly channel: ChannelMode;
  /** XOS cores of the machine. */
  readonly cores: number;
  /** Files in the small-file job (--quick caps it at 100). */
  readonly smallFiles: number;
  /** Timed fsyncs (--quick caps it at 30). */
  readonly fsyncs: number;
  /** Directory for the image and node's file (default: a fresh one in the OS temp dir). */
  readonly dir?: string;
  /** Results directory (default bench/results). */
  readonly out?: string;
}

export interface Progress {
  phase: string;
  done: number;
  total: number;
}

/** One side of a sequential run, times in ns. */
export interface SeqSide {
  /** open → last write returned */
  writeNs: number;
  fsyncNs: number;
  /** open → close of the read-back */
  readNs: number;
  /** bytes / (writeNs + fsyncNs), MB/s (10^6 bytes) */
  writeMBps: number;
  /** bytes / readNs, MB/s */
  readMBps: number;
}

export interface SeqRow {
  buffer: number;
  bytes: number;
  exocore: SeqSide;
  node: SeqSide;
  /** exocore / node */
  ratio: { write: number; read: number };
  /**
   * Bytes the NVMe device wrote to its cache per payload byte: 1.0 for appends (blocks a
   * transaction allocates go home before the commit, unlogged); overwrites are logged, so 2.0.
   */
  deviceWriteAmplification: number;
  /** NVMe commands of the run: reads, writes, flushes. */
  nvme: { reads: number; writes: number; flushes: number };
}

export interface SmallSide {
  ns: number;
  opsPerSec: number;
}

export interface LatencySide {
  minNs: number;
  p50Ns: number;
  p99Ns: number;
  maxNs: number;
  meanNs: number;
}

export interface StorageBenchReport {
  date: string;
  node: string;
  platform: string;
  cpus: number;
  /** 1-minute load average at the start and at the end of the run. */
  load: { start: number; end: number };
  layout: string[];
  hostFs: string;
  channel: ChannelMode;
  cores: number;
  mib: number;
  seq: SeqRow[];
  small: { count: number; bytes: number; exocore: SmallSide; node: SmallSide; ratio: number };
  fsync: {
    count: number;
    bytes: number;
    exocore: LatencySide;
    node: LatencySide;
    /** exocore / node, per statistic */
    ratio: { p50: number; p99: number };
  };
  /** The machine's counters at the end of the exocore jobs. */
  machine: {
    storageDomain: Pick<WorkerStats, "calls" | "rounds" | "batchMax" | "parks" | "wakeups"> | null;
    nvme: NonNullable<DeviceStats["nvme"]>;
  };
  notes: string[];
  files: string[];
}

const PROGRAM = fileURLToPath(new URL("../programs/bench/fileio.js", import.meta.url));
export const BUFFERS: readonly number[] = [4096, 64 * 1024, 1024 * 1024];
const SMALL = 4096;
const FSYNC_WARMUP = 5;
const MIB = 1024 * 1024;

/** The byte at offset `i` of the pattern both sides write (as programs/bench/fileio.ts). */
function patternByte(i: number): number {
  return (i * 131 + (i >>> 12)) & 0xff;
}

function patterned(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = patternByte(i);
  return b;
}

export function checkStorageOptions(o: StorageBenchOptions): void {
  const int = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  };
  int("mib", o.mib, 1, 1024);
  int("cores", o.cores, 1, 64);
  int("smallFiles", o.smallFiles, 1, 100_000);
  int("fsyncs", o.fsyncs, 1, 100_000);
  if (!CHANNEL_MODES.includes(o.channel))
    throw new InvalidArgumentError(
      `channel must be one of ${CHANNEL_MODES.join(", ")}, got ${JSON.stringify(o.channel)}`,
    );
}

// ---- node:fs ----

function now(): number {
  return performance.now() * 1e6;
}

function nodeSeq(path: string, total: number, size: number): SeqSide {
  const buf = patterned(size);
  const t0 = now();
  const fd = openSync(path, "w");
  for (let done = 0; done < total; ) done += writeSync(fd, buf, 0, Math.min(size, total - done));
  const t1 = now();
  fsyncSync(fd);
  const t2 = now();
  closeSync(fd);
  const t3 = now();
  const rd = openSync(path, "r");
  let got = 0;
  for (;;) {
    const n = readSync(rd, buf, 0, size, null);
    if (n === 0) break;
    got += n;
  }
  closeSync(rd);
  const t4 = now();
  if (got !== total) throw new ExocoreError("EXO_ERR_IO", `${path}: read ${got} of ${total}`);
  unlinkSync(path); // untimed, as the program does

  return side(total, t1 - t0, t2 - t1, t4 - t3);
}

function nodeSmall(dir: string, count: number): SmallSide {
  const buf = patterned(SMALL);
  mkdirSync(dir);
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const fd = openSync(join(dir, `f${i}`), "w");
    writeSync(fd, buf);
    closeSync(fd);
  }
  const ns = now() - t0;
  return { ns, opsPerSec: count / (ns / 1e9) };
}

function nodeFsync(path: string, count: number): LatencySide {
  const buf = patterned(SMALL);
  const fd = openSync(path, "w");
  const samples = new Float64Array(count);
  for (let i = -FSYNC_WARMUP; i < count; i++) {
    const t0 = now();
    writeSync(fd, buf);
    fsyncSync(fd);
    if (i >= 0) samples[i] = now() - t0;
  }
  closeSync(fd);
  return summarize(samples);
}

function summarize(samples: Float64Array): LatencySide {
  const s = Float64Array.from(samples).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
  let sum = 0;
  for (const v of s) sum += v;
  return {
    minNs: s[0] as number,
    p50Ns: at(0.5),
    p99Ns: at(0.99),
    maxNs: s[s.length - 1] as number,
    meanNs: sum / s.length,
  };
}

function side(bytes: number, writeNs: number, fsyncNs: number, readNs: number): SeqSide {
  return {
    writeNs,
    fsyncNs,
    readNs,
    writeMBps: bytes / ((writeNs + fsyncNs) / 1e3),
    readMBps: bytes / (readNs / 1e3),
  };
}

// ---- exocore ----

/** Run one fileio job as a process; its JSON line, or an ExocoreError with what it printed. */
async function job(
  m: Machine,
  out: { text: string },
  args: string[],
): Promise<Record<string, number>> {
  out.text = "";
  const status = await m.run(PROGRAM, args);
  if (status !== 0) {
    throw new ExocoreError(
      "EXO_ERR_BENCH",
      `fileio ${args.join(" ")} exited ${status}: ${out.text.trim() || "(no output)"}`,
    );
  }
  const line = out.text.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as Record<string, number>;
}

/** The NVMe model's counters now. */
function nvmeOf(m: Machine): NonNullable<DeviceStats["nvme"]> {
  const s = m.devices?.stats().nvme;
  if (!s) throw new ExocoreError("EXO_ERR_BENCH", "the machine has no NVMe device");
  return s;
}

const FS_TYPES: Readonly<Record<number, string>> = {
  61267: "ext4",
  16914836: "tmpfs",
  2035054128: "overlayfs",
  1481003842: "xfs",
  2435016766: "btrfs",
  26985: "nfs",
};

function hostFsName(dir: string): string {
  try {
    const t = statfsSync(dir).type;
    return `${FS_TYPES[t] ?? "unknown"} (statfs type 0x${t.toString(16)})`;
  } catch {
    return "unknown";
  }
}

export async function runStorageBench(
  opts: StorageBenchOptions,
  onProgress?: (p: Progress) => void,
): Promise<StorageBenchReport> {
  checkStorageOptions(opts);
  const mib = opts.quick ? Math.min(opts.mib, 4) : opts.mib;
  const smallFiles = opts.quick ? Math.min(opts.smallFiles, 100) : opts.smallFiles;
  const fsyncs = opts.quick ? Math.min(opts.fsyncs, 30) : opts.fsyncs;
  const total = mib * MIB;
  const outDir = opts.out ?? "bench/results";
  mkdirSync(outDir, { recursive: true }); // fail fast on an unwritable results directory
  const own = opts.dir === undefined;
  const dir = own ? mkdtempSync(join(os.tmpdir(), "exocore-bench-storage-")) : resolve(opts.dir);
  if (!own) mkdirSync(dir, { recursive: true });
  const steps = 2 * (BUFFERS.length + 2) + 1;
  let done = 0;
  const step = (phase: string) => onProgress?.({ phase, done: done++, total: steps });
  const loadStart = os.loadavg()[0] as number;
  const hostFs = hostFsName(dir);
  const image = join(dir, "exocore-bench.img");
  const hostFile = join(dir, "node-bench.dat");
  const seqExo: { side: SeqSide; amp: number; nvme: SeqRow["nvme"] }[] = [];
  const seqNode: SeqSide[] = [];
  let smallExo: SmallSide;
  let fsyncExo: LatencySide;
  let smallNode: SmallSide;
  let fsyncNode: LatencySide;
  let machine: StorageBenchReport["machine"];
  try {
    step("making the disk image");
    // Room for the file twice over (the log carries data too) plus the small files and slack.
    const dev = FileBlockDevice.create(image, (2 * mib + 64) * 256, { overwrite: true });
    try {
      FileSystem.mkfs(dev);
    } finally {
      dev.close();
    }
    const out = { text: "" };
    const events: string[] = [];
    const m = await boot({
      cores: opts.cores,
      memoryMiB: 64,
      channel: opts.channel,
      disk: image,
      stdout: (s) => {
        out.text += s;
      },
      stderr: (s) => {
        out.text += s;
      },
      onEvent: (e) => events.push(describeEvent(e)),
    });
    try {
      for (const size of BUFFERS) {
        step(`exocore: sequential ${mib} MiB, ${size / 1024} KiB buffers`);
        const before = nvmeOf(m);
        const r = await job(m, out, ["seq", `/seq-${size}`, String(total), String(size)]);
        const after = nvmeOf(m);
        seqExo.push({
          side: side(total, r.writeNs as number, r.fsyncNs as number, r.readNs as number),
          amp: (after.bytesWritten - before.bytesWritten) / total,
          nvme: {
            reads: after.reads - before.reads,
            writes: after.writes - before.writes,
            flushes: after.flushes - before.flushes,
          },
        });
      }
      step(`exocore: ${smallFiles} small files`);
      const s = await job(m, out, ["small", "/small", String(smallFiles)]);
      smallExo = { ns: s.ns as number, opsPerSec: smallFiles / ((s.ns as number) / 1e9) };
      step(`exocore: ${fsyncs} × (write 4 KiB + fsync)`);
      const f = await job(m, out, ["fsync", "/fsync", String(fsyncs)]);
      fsyncExo = {
        minNs: f.minNs as number,
        p50Ns: f.p50Ns as number,
        p99Ns: f.p99Ns as number,
        maxNs: f.maxNs as number,
        meanNs: f.meanNs as number,
      };
      const d = m.stats().find((w) => w.name === "domain.storage");
      machine = {
        storageDomain: d
          ? {
              calls: d.calls,
              rounds: d.rounds,
              batchMax: d.batchMax,
              parks: d.parks,
              wakeups: d.wakeups,
            }
          : null,
        nvme: nvmeOf(m),
      };
    } finally {
      await m.shutdown();
    }
    if (events.length > 0)
      throw new ExocoreError("EXO_ERR_BENCH", `supervisor events: ${events.join("; ")}`);
    for (const size of BUFFERS) {
      step(`node:fs: sequential ${mib} MiB, ${size / 1024} KiB buffers`);
      seqNode.push(nodeSeq(hostFile, total, size));
    }
    step(`node:fs: ${smallFiles} small files`);
    smallNode = nodeSmall(join(dir, "node-small"), smallFiles);
    step(`node:fs: ${fsyncs} × (write 4 KiB + fsync)`);
    fsyncNode = nodeFsync(join(dir, "node-fsync.dat"), fsyncs);
    step("done");
  } finally {
    rmSync(own ? dir : image, { recursive: true, force: true });
    if (!own) {
      rmSync(hostFile, { force: true });
      rmSync(join(dir, "node-small"), { recursive: true, force: true });
      rmSync(join(dir, "node-fsync.dat"), { force: true });
    }
  }

  const seq: SeqRow[] = BUFFERS.map((buffer, i) => {
    const e = seqExo[i] as (typeof seqExo)[number];
    const n = seqNode[i] as SeqSide;
    return {
      buffer,
      bytes: total,
      exocore: e.side,
      node: n,
      ratio: { write: e.side.writeMBps / n.writeMBps, read: e.side.readMBps / n.readMBps },
      deviceWriteAmplification: e.amp,
      nvme: e.nvme,
    };
  });
  const cpus = os.availableParallelism();
  const loadEnd = os.loadavg()[0] as number;
  const report: StorageBenchReport = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus,
    load: { start: loadStart, end: loadEnd },
    layout: [
      `vCPUs: ${cpus}; load average (1 min) at start ${loadStart.toFixed(2)}, at end ${loadEnd.toFixed(2)}${loadStart > 1 || loadEnd > 1 ? " — NOT QUIET: other work shares the vCPUs" : ""}`,
      "exocore: hypervisor = main thread (runs the NVMe model: queues, write cache, host file I/O through fs/promises on libuv's pool)",
      "         storage domain = 1 worker (filesystem + write-ahead log + NVMe VF driver; waits on its one wake word)",
      `         system domain = 1 worker (console, idle); ${opts.cores} XOS core worker(s); the program is one green thread on core 0`,
      `         channel ${opts.channel}; times read inside the program with gettsc() (no boot, no program load)`,
      "node:fs: the same calls, synchronous, on this process's main thread, after the machine shut down",
    ],
    hostFs,
    channel: opts.channel,
    cores: opts.cores,
    mib,
    seq,
    small: {
      count: smallFiles,
      bytes: SMALL,
      exocore: smallExo,
      node: smallNode,
      ratio: smallExo.opsPerSec / smallNode.opsPerSec,
    },
    fsync: {
      count: fsyncs,
      bytes: SMALL,
      exocore: fsyncExo,
      node: fsyncNode,
      ratio: { p50: fsyncExo.p50Ns / fsyncNode.p50Ns, p99: fsyncExo.p99Ns / fsyncNode.p99Ns },
    },
    machine,
    notes: [
      "write MB/s = bytes / (writes + fsync): both sides end durable; MB = 10^6 bytes",
      "read-back follows the write at once: exocore's buffer cache holds 8 MiB, so a larger file is read through the NVMe model from the host page cache, where node:fs reads it too",
      "exocore logs metadata and overwrites; newly allocated data blocks go home before the commit record, once (ordered data): see deviceWriteAmplification",
      "fsync: exocore commits the log: NVMe FLUSH, then the commit record written with FUA (the model fdatasyncs the image for each); node:fs calls fsync(2) on its file",
      "ratios are exocore / node: below 1 = exocore slower for MB/s and ops/s; above 1 = exocore slower for latency",
    ],
    files: [],
  };
  const path = join(outDir, opts.quick ? "storage-quick.json" : "storage.json");
  report.files.push(path);
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

// ---- the table ----

export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return "-";
  return `${r < 10 ? r.toFixed(2) : r.toFixed(0)}×`;
}

function fmtRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(0);
}

function fmtSize(bytes: number): string {
  return bytes >= MIB ? `${bytes / MIB} MiB` : `${bytes / 1024} KiB`;
}

export function formatStorageReport(r: StorageBenchReport): string {
  const p = (s: string, n: number) => s.padStart(n);
  const lines = [
    `exocore storage benchmark — Node ${r.node}, ${r.platform}; host file system ${r.hostFs}`,
    ...r.layout.map((l) => `  ${l}`),
    "",
    `Sequential ${r.mib} MiB (MB/s; write includes the final fsync)`,
    `  ${"buffer".padEnd(9)}${p("exo write", 11)}${p("node write", 12)}${p("ratio", 8)}${p("exo read", 11)}${p("node read", 11)}${p("ratio", 8)}${p("dev. write amp.", 17)}`,
  ];
  for (const s of r.seq) {
    lines.push(
      `  ${fmtSize(s.buffer).padEnd(9)}${p(s.exocore.writeMBps.toFixed(1), 11)}${p(s.node.writeMBps.toFixed(1), 12)}${p(fmtRatio(s.ratio.write), 8)}${p(s.exocore.readMBps.toFixed(1), 11)}${p(s.node.readMBps.toFixed(1), 11)}${p(fmtRatio(s.ratio.read), 8)}${p(s.deviceWriteAmplification.toFixed(2), 17)}`,
    );
  }
  const sm = r.small;
  lines.push(
    "",
    `Small files: ${sm.count} × (create, write 4 KiB, close), no fsync`,
    `  exocore ${fmtRate(sm.exocore.opsPerSec)} ops/s   node:fs ${fmtRate(sm.node.opsPerSec)} ops/s   ratio ${fmtRatio(sm.ratio)}`,
    "",
    `fsync latency: ${r.fsync.count} × (append 4 KiB, fsync)`,
    `  ${"".padEnd(9)}${p("min", 10)}${p("p50", 10)}${p("p99", 10)}${p("max", 10)}${p("mean", 10)}`,
  );
  for (const [name, s] of [
    ["exocore", r.fsync.exocore],
    ["node:fs", r.fsync.node],
  ] as const) {
    lines.push(
      `  ${name.padEnd(9)}${p(fmtNs(s.minNs), 10)}${p(fmtNs(s.p50Ns), 10)}${p(fmtNs(s.p99Ns), 10)}${p(fmtNs(s.maxNs), 10)}${p(fmtNs(s.meanNs), 10)}`,
    );
  }
  lines.push(
    `  ratio exocore / node: p50 ${fmtRatio(r.fsync.ratio.p50)}, p99 ${fmtRatio(r.fsync.ratio.p99)}`,
    "",
    `Machine: storage domain calls ${r.machine.storageDomain?.calls ?? "-"}, parks ${r.machine.storageDomain?.parks ?? "-"}; NVMe reads ${r.machine.nvme.reads}, writes ${r.machine.nvme.writes}, flushes ${r.machine.nvme.flushes}`,
    "",
    "Notes",
    ...r.notes.map((n) => `  ${n}`),
    "",
    `Written: ${r.files.join(", ")}`,
  );
  return lines.join("\n");
}
