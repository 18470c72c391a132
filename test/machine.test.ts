/**
 * The machine end to end: boot, run programs whose calls cross to the system domain through
 * the rings in every channel mode, errors as errno, and a shutdown that leaves nothing running.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EBADF, EFAULT, EINVAL, ENOSYS } from "../src/abi/errno.js";
import { CHANNEL_MODES } from "../src/hv/layout.js";
import { boot, type SupervisorEvent } from "../src/hv/machine.js";

const program = (name: string) =>
  fileURLToPath(new URL(`./fixtures/programs/${name}.js`, import.meta.url));
const hello = fileURLToPath(new URL("../programs/hello.js", import.meta.url));

async function runCapture(
  path: string,
  args: string[],
  opts: { channel?: (typeof CHANNEL_MODES)[number]; cores?: number; memoryMiB?: number } = {},
) {
  let out = "";
  let err = "";
  const events: SupervisorEvent[] = [];
  const m = await boot({
    cores: opts.cores ?? 2,
    channel: opts.channel ?? "hybrid",
    memoryMiB: opts.memoryMiB ?? 16,
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
    onEvent: (e) => events.push(e),
  });
  let status: number;
  try {
    status = await m.run(path, args);
  } finally {
    await m.shutdown();
  }
  // Counters are final once every worker has stopped (before, a worker may not have counted
  // the round whose completions the program already saw).
  return { status, out, err, events, stats: m.stats() };
}

for (const channel of CHANNEL_MODES) {
  test(`hello runs and exits 0 with channel ${channel}`, async () => {
    const r = await runCapture(hello, ["test"], { channel });
    assert.equal(r.status, 0);
    assert.match(r.out, /^hello, test: pid 1, thread \d+, core 0\n$/);
    const domain = r.stats.find((s) => s.name === "domain.system");
    assert.ok(domain && domain.calls >= 4, "the system domain served the calls");
  });
}

test("bad calls give errno and the domain keeps serving", async () => {
  const r = await runCapture(program("calls"), ["200"]);
  assert.equal(r.status, 7);
  const res = JSON.parse(r.out.trim()) as Record<string, number>;
  assert.equal(res.null, 0);
  assert.equal(res.pid, 1);
  assert.equal(res.badNr, -ENOSYS);
  assert.equal(res.badPtr, -EFAULT);
  assert.equal(res.wildPtr, -EFAULT);
  assert.equal(res.badFd, -EBADF);
  assert.equal(res.tooLong, -EINVAL);
  assert.equal(res.timeBadPtr, -EFAULT);
  assert.equal(res.afterErrors, 0);
  assert.ok(Math.abs((res.time ?? 0) - Date.now() / 1000) < 5, "time() is the wall clock");
  assert.equal(res.loopSum, 0);
  assert.deepEqual(r.events, []);
});

test("a program that cannot be loaded exits 127 and says why", async () => {
  const r = await runCapture(
    fileURLToPath(new URL("./fixtures/programs/missing.js", import.meta.url)),
    [],
  );
  assert.equal(r.status, 127);
  assert.ok(r.events.some((e) => e.type === "load-error"));
});

test("boot and shutdown leave nothing running: the process exits by itself", () => {
  const script = `
    const { boot } = await import(${JSON.stringify(new URL("../src/hv/machine.js", import.meta.url).href)});
    const m = await boot({ cores: 2, memoryMiB: 8, stdout: () => {} });
    const s = await m.run(${JSON.stringify(hello)}, []);
    await m.shutdown();
    console.log("status", s);
  `;
  const dir = mkdtempSync(join(tmpdir(), "exocore-boot-"));
  const file = join(dir, "boot.mjs");
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 20_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.error, undefined, "the process ended on its own (no timeout)");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /status 0/);
});

test("1,000 green threads with calls, yields and sleeps finish with correct results; a throwing one dies alone", async () => {
  const r = await runCapture(program("many"), ["1000"]);
  assert.equal(r.status, 0);
  const res = JSON.parse(r.out.trim()) as { n: number; sum: number; failed: number };
  let want = 0;
  for (let i = 0; i < 1000; i++) if (i !== 13) want += (4 + i) & 0xffff;
  assert.equal(res.failed, 1);
  assert.equal(res.sum, want);
  const killed = r.events.filter((e) => e.type === "thread-killed");
  assert.equal(killed.length, 1);
  assert.match(JSON.stringify(killed[0]), /thread 13 fails on purpose/);
});

test("producers and consumers on a channel, with calls served in trap mode too", async () => {
  const prodcons = fileURLToPath(new URL("../programs/prodcons.js", import.meta.url));
  for (const channel of ["hybrid", "trap"] as const) {
    const r = await runCapture(prodcons, ["4", "3", "500"], { channel });
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /2000 items from 4 producers to 3 consumers, sum ok/);
  }
});

test("the channel mode switches while a program runs", async () => {
  let out = "";
  const m = await boot({
    cores: 1,
    memoryMiB: 16,
    channel: "park",
    stdout: (s) => {
      out += s;
    },
    onEvent: () => {},
  });
  try {
    const done = m.run(program("calls"), ["20000"]);
    const modes = ["spin", "trap", "hybrid", "park"] as const;
    for (const mode of modes) {
      await new Promise((r) => setTimeout(r, 5));
      m.setChannel(mode);
      assert.equal(m.channel, mode);
    }
    assert.equal(await done, 7);
    assert.match(out, /"loopSum":0/);
  } finally {
    await m.shutdown();
  }
});

test("M:N: shared threads spread over every core and their results come back to the joiner", async () => {
  const parallel = fileURLToPath(new URL("../programs/parallel.js", import.meta.url));
  for (const [cores, threads] of [
    [2, 1000],
    [4, 120],
  ] as const) {
    const r = await runCapture(parallel, [String(threads), "60000"], { cores });
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, new RegExp(`6057 primes below 60000 \\(ok\\) by ${threads} threads`));
    const used = [...r.out.matchAll(/core (\d+): (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(used.length >= 2, `threads ran on more than one core: ${r.out}`);
    const onCores = r.stats.filter((s) => s.name.startsWith("core") && s.calls > 0);
    assert.ok(onCores.length >= 2, "more than one core made system calls");
  }
});

test("malloc over demand-zero pages: blocks intact across cores; a wild access kills only its thread", async () => {
  const r = await runCapture(program("memory"), [], { cores: 2 });
  assert.equal(r.status, 0, r.out);
  const res = JSON.parse(r.out.trim()) as Record<string, number | boolean>;
  assert.equal(res.allocated, 2000);
  assert.equal(res.intact, true);
  assert.equal(res.realloc, true);
  assert.equal(res.wildKilled, true);
  assert.equal(res.sharedOk, true, "threads on other cores malloc'd and checked their blocks");
  assert.ok((res.zeroFills as number) > 0, "heap pages arrived by demand-zero faults");
  const killed = r.events.filter((e) => e.type === "thread-killed");
  assert.equal(killed.length, 1);
  assert.match(JSON.stringify(killed[0]), /segmentation fault at 0x20000000/);
});

test("a program's own page-fault handler decides: it grows the heap, and declines what is out of reach", async () => {
  const handler = fileURLToPath(new URL("../programs/faulthandler.js", import.meta.url));
  const r = await runCapture(handler, []);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /heap grown 64 times, sum 2080 \(ok\), out-of-reach thread killed/);
});

test("a core whose frame pool runs dry gets more from the kernel at run time", async () => {
  // 64 MiB and 2 cores: the boot grant is ~2,000 frames a core; 3,000 pages need run-time
  // grants, past the 2,048 frames a pool held at boot.
  const r = await runCapture(program("touch"), ["3000"], { memoryMiB: 64 });
  assert.equal(r.status, 0, r.out);
  const res = JSON.parse(r.out.trim()) as { pages: number; sum: number; zeroFills: number };
  assert.equal(res.zeroFills, 3000);
  assert.equal(res.sum, (3000 * 3001) / 2);
});

test("a process that exits with threads still running elsewhere is reaped before its memory is freed", async () => {
  const events: SupervisorEvent[] = [];
  let out = "";
  const m = await boot({
    cores: 2,
    memoryMiB: 16,
    stdout: (s) => {
      out += s;
    },
    onEvent: (e) => events.push(e),
  });
  try {
    assert.equal(await m.run(program("orphan"), []), 5);
    // Its threads are gone: nobody calls the system domain any more.
    // (Calls submitted before the kill may still be in the rings: let them drain first.)
    const calls = () => m.stats().find((s) => s.name === "domain.system")?.calls ?? -1;
    await new Promise((r) => setTimeout(r, 50));
    const before = calls();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(calls(), before, "no thread of the exited process still makes calls");
    const free = m.frames.freeFrames;
    // The slot and the memory are free again: the next process gets pid 1 and runs normally.
    assert.equal(await m.run(hello, ["again"]), 0);
    assert.match(out, /hello, again: pid 1,/);
    assert.equal(m.frames.freeFrames, free, "the second process gave back all it took");
    assert.deepEqual(
      events.filter((e) => e.type !== "long-run"),
      [],
    );
  } finally {
    await m.shutdown();
  }
});

test("mmap and munmap are served by the kernel through the rings; pages arrive demand-zero", async () => {
  const r = await runCapture(program("mmap"), []);
  assert.equal(r.status, 0, r.out);
  const res = JSON.parse(r.out.trim()) as Record<string, number | boolean>;
  assert.deepEqual(res, {
    mapped: true,
    zeroFilled: true,
    sumOk: true,
    readOnlyReads: true,
    zeroLen: -EINVAL,
    unaligned: -EINVAL,
    cachedBefore: true,
    unmapped: 0,
    touchAfterKilled: true,
    writeReadOnlyKilled: true,
  });
  const killed = r.events.filter((e) => e.type === "thread-killed").map((e) => JSON.stringify(e));
  assert.equal(killed.length, 2);
  assert.ok(
    killed.some((k) => /not-present/.test(k)) && killed.some((k) => /protection-write/.test(k)),
  );
});

test("mshare: a copy-on-write snapshot keeps its content, a plain share sees writes", async () => {
  const r = await runCapture(program("cow"), []);
  assert.equal(r.status, 0, r.out);
  assert.deepEqual(JSON.parse(r.out.trim()), {
    snapshot: true,
    snapshotReads: true,
    originalWritten: true,
    snapshotKept: true,
    untouchedShared: true,
    sharedSeesWrites: true,
    notTouched: -EFAULT,
    cowBreaks: 2,
    unmapSnap: 0,
    unmapShared: 0,
    plainAfter: true,
    unmapOrig: 0,
  });
  assert.deepEqual(r.events, []);
});

test("spawnOn: threads run only on the cores of their affinity, spread round robin over them", async () => {
  const r = await runCapture(program("affinity"), [], { cores: 3 });
  assert.equal(r.status, 0, r.err);
  const res = JSON.parse(r.out.trim()) as {
    one: Record<string, number>;
    two: Record<string, number>;
    any: Record<string, number>;
    refused: string[];
  };
  assert.deepEqual(res.one, { "1": 30 }, "pinned to core 1: all 30 on core 1, none moved");
  assert.deepEqual(res.two, { "0": 15, "2": 15 }, "pinned to {0, 2}: round robin, never core 1");
  const anyTotal = Object.values(res.any).reduce((a, b) => a + b, 0);
  assert.equal(anyTotal, 30);
  assert.ok(
    Object.keys(res.any).every((c) => Number(c) < 3),
    "unpinned threads do not move either",
  );
  assert.deepEqual(res.refused, Array(4).fill("EXO_ERR_INVALID_ARG"));
});

test("print from 100 threads at once: staging outgrows the scratch window and nothing is lost", async () => {
  const r = await runCapture(program("prints"), ["100", "3000"], { cores: 1 });
  assert.equal(r.status, 0, r.out.slice(-200));
  const lines = r.out.split("\n").filter((l) => l.length > 0);
  assert.equal(lines.at(-1), "summary 100 []");
  const ids = lines.slice(0, -1).map((l) => {
    assert.equal(l.length, 2999, "each line arrives whole");
    return Number(l.slice(0, 4));
  });
  assert.deepEqual(
    ids.sort((a, b) => a - b),
    Array.from({ length: 100 }, (_, i) => i),
  );
});
