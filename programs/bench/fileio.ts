/**
 * bench/fileio: the in-machine half of `exocore bench storage` (bench/storage.ts). One job per
 * run; each prints one JSON line on stdout and exits 0 (1 on any failed call, with the errno on
 * stderr). Every byte goes through user memory and the storage domain (copyin / copyout), as in
 * programs/cp.ts. Times are read with gettsc() (ns) on this green thread, so they include the
 * crossings to the storage domain, the filesystem, the NVMe VF and the device model — and
 * nothing of the machine's boot or the program's load.
 *
 *   seq   PATH BYTES BUFFER   write BYTES in BUFFER-sized writes to a new file, fsync, close;
 *                             then read it back in BUFFER-sized reads and close. Reports the
 *                             write phase (open → last write), the fsync, and the read phase
 *                             (open → close), in ns. The last buffer read is checked, and
 *                             the file is unlinked (untimed).
 *   small DIR COUNT           COUNT × (create DIR/fN, write 4 KiB, close); no fsync. Total ns.
 *   fsync PATH COUNT          COUNT × (append 4 KiB, fsync), each timed: min, p50, p99, max,
 *                             mean in ns (after 5 untimed rounds).
 *
 *   exocore run programs/bench/fileio.js seq /big 67108864 65536 --disk IMAGE
 */

import {
  close,
  fsync,
  type Green,
  gettsc,
  malloc,
  memory,
  mkdir,
  O_CREAT,
  O_RDONLY,
  O_TRUNC,
  O_WRONLY,
  open,
  print,
  read,
  unlink,
  write,
} from "../../src/libos/index.js";

const SMALL = 4096;
const FSYNC_WARMUP = 5;

function* fail(what: string, r: number): Green {
  yield* print(`fileio: ${what}: error ${-r}\n`, 2);
  return 1;
}

/** The byte at offset `i` of the benchmark's pattern (not all zeros, not periodic in 4 KiB). */
function patternByte(i: number): number {
  return (i * 131 + (i >>> 12)) & 0xff;
}

/** A heap buffer of `n` bytes filled with the pattern; 0 when the heap is full. */
function patterned(n: number): number {
  const va = malloc(n);
  if (va === 0) return 0;
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = patternByte(i);
  memory().writeBytes(va, bytes);
  return va;
}

function* sequential(path: string, total: number, size: number): Green {
  const buf = patterned(size);
  if (buf === 0) return yield* fail("malloc", -12);
  const t0 = gettsc();
  const fd = yield* open(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (fd < 0) return yield* fail(`open ${path}`, fd);
  for (let done = 0; done < total; ) {
    const w = yield* write(fd, buf, Math.min(size, total - done));
    if (w <= 0) return yield* fail(`write ${path}`, w === 0 ? -5 : w);
    done += w;
  }
  const t1 = gettsc();
  const s = yield* fsync(fd);
  if (s < 0) return yield* fail(`fsync ${path}`, s);
  const t2 = gettsc();
  yield* close(fd);

  const t3 = gettsc();
  const rd = yield* open(path, O_RDONLY);
  if (rd < 0) return yield* fail(`open ${path}`, rd);
  let got = 0;
  let last = 0;
  for (;;) {
    const n = yield* read(rd, buf, size);
    if (n < 0) return yield* fail(`read ${path}`, n);
    if (n === 0) break;
    got += n;
    last = n;
  }
  yield* close(rd);
  const t4 = gettsc();
  if (got !== total) return yield* fail(`read ${path}: ${got} of ${total} bytes`, -5);
  // The last chunk read started at total - last; with writes of `size` from offset 0 its
  // bytes are the pattern from (total - last) mod size.
  const back = memory().readBytes(buf, last);
  const base = (total - last) % size;
  for (let i = 0; i < last; i += 509) {
    if (back[i] !== patternByte(base + i)) return yield* fail(`read ${path}: wrong data`, -5);
  }
  const u = yield* unlink(path); // untimed: leave the room to the next run
  if (u < 0) return yield* fail(`unlink ${path}`, u);
  const out = { op: "seq", bytes: total, buffer: size, writeNs: t1 - t0, fsyncNs: t2 - t1 };
  yield* print(`${JSON.stringify({ ...out, readNs: t4 - t3 })}\n`);
  return 0;
}

function* smallFiles(dir: string, count: number): Green {
  const buf = patterned(SMALL);
  if (buf === 0) return yield* fail("malloc", -12);
  const m = yield* mkdir(dir);
  if (m < 0) return yield* fail(`mkdir ${dir}`, m);
  const t0 = gettsc();
  for (let i = 0; i < count; i++) {
    const fd = yield* open(`${dir}/f${i}`, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd < 0) return yield* fail(`open ${dir}/f${i}`, fd);
    const w = yield* write(fd, buf, SMALL);
    if (w !== SMALL) return yield* fail(`write ${dir}/f${i}`, w < 0 ? w : -5);
    yield* close(fd);
  }
  const ns = gettsc() - t0;
  yield* print(`${JSON.stringify({ op: "small", count, bytes: SMALL, ns })}\n`);
  return 0;
}

function* fsyncLatency(path: string, count: number): Green {
  const buf = patterned(SMALL);
  if (buf === 0) return yield* fail("malloc", -12);
  const fd = yield* open(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (fd < 0) return yield* fail(`open ${path}`, fd);
  const samples = new Float64Array(count);
  for (let i = -FSYNC_WARMUP; i < count; i++) {
    const t0 = gettsc();
    const w = yield* write(fd, buf, SMALL);
    if (w !== SMALL) return yield* fail(`write ${path}`, w < 0 ? w : -5);
    const s = yield* fsync(fd);
    if (s < 0) return yield* fail(`fsync ${path}`, s);
    if (i >= 0) samples[i] = gettsc() - t0;
  }
  yield* close(fd);
  samples.sort();
  let sum = 0;
  for (const v of samples) sum += v;
  const at = (q: number) => samples[Math.min(count - 1, Math.floor(q * count))];
  const out = { op: "fsync", count, minNs: samples[0], p50Ns: at(0.5), p99Ns: at(0.99) };
  yield* print(`${JSON.stringify({ ...out, maxNs: samples[count - 1], meanNs: sum / count })}\n`);
  return 0;
}

export function* main(args: readonly string[]): Green {
  const [job, path, a, b] = args;
  const n = Number(a);
  if (path !== undefined && Number.isInteger(n) && n > 0) {
    if (job === "seq" && Number.isInteger(Number(b)) && Number(b) > 0)
      return yield* sequential(path, n, Number(b));
    if (job === "small") return yield* smallFiles(path, n);
    if (job === "fsync") return yield* fsyncLatency(path, n);
  }
  yield* print("usage: fileio seq PATH BYTES BUFFER | small DIR COUNT | fsync PATH COUNT\n", 2);
  return 2;
}
