/**
 * exofs against a model: random sequences of filesystem calls (create, write at offsets that
 * cross the direct / indirect / double-indirect boundaries and leave holes, read, truncate,
 * unlink, mkdir, rmdir, rename, readdir, stat, handles with generations, pins) run on a
 * FileSystem over a MemoryBlockDevice and on a plain in-memory model. Every return value —
 * including every -errno — must match the model, data read back must match byte for byte, and
 * the image must pass fsck after remounts (clean unmount, and a power cut right after sync).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY } from "../src/abi/errno.js";
import { ESTALE, FileSystem } from "../src/fs/fs.js";
import { MemoryBlockDevice } from "../src/fs/memdev.js";

const BS = 4096;

// ---- the model ------------------------------------------------------------------------------

interface MFile {
  readonly kind: "file";
  size: number;
  /** Block index → 4096 bytes; a missing block is a hole. */
  readonly blocks: Map<number, Uint8Array>;
}
interface MDir {
  readonly kind: "dir";
  readonly children: Map<string, MNode>;
}
type MNode = MFile | MDir;

function newFile(): MFile {
  return { kind: "file", size: 0, blocks: new Map() };
}
function newDir(): MDir {
  return { kind: "dir", children: new Map() };
}

function mWrite(f: MFile, off: number, data: Uint8Array): void {
  for (let i = 0; i < data.length; ) {
    const pos = off + i;
    const bi = Math.floor(pos / BS);
    const from = pos % BS;
    const n = Math.min(BS - from, data.length - i);
    let b = f.blocks.get(bi);
    if (b === undefined) {
      b = new Uint8Array(BS);
      f.blocks.set(bi, b);
    }
    b.set(data.subarray(i, i + n), from);
    i += n;
  }
  f.size = Math.max(f.size, off + data.length);
}

function mRead(f: MFile, off: number, len: number): Uint8Array {
  const n = Math.max(0, Math.min(len, f.size - off));
  const out = new Uint8Array(n);
  for (let i = 0; i < n; ) {
    const pos = off + i;
    const from = pos % BS;
    const k = Math.min(BS - from, n - i);
    const b = f.blocks.get(Math.floor(pos / BS));
    if (b) out.set(b.subarray(from, from + k), i);
    i += k;
  }
  return out;
}

function mTruncate(f: MFile, size: number): void {
  if (size < f.size) {
    for (const bi of [...f.blocks.keys()]) if (bi * BS >= size) f.blocks.delete(bi);
    const tail = f.blocks.get(Math.floor(size / BS));
    if (tail && size % BS !== 0) tail.fill(0, size % BS);
  }
  f.size = size;
}

class Model {
  readonly root = newDir();

  /** The node at `path`, or -errno, as exofs walks it. */
  resolve(path: string): MNode | number {
    let cur: MNode = this.root;
    for (const c of parts(path)) {
      if (cur.kind !== "dir") return -ENOTDIR;
      const next = cur.children.get(c);
      if (next === undefined) return -ENOENT;
      cur = next;
    }
    return cur;
  }

  /** The directory holding the last component, and that component; or -errno. */
  parent(path: string): { dir: MDir; name: string } | number {
    const ps = parts(path);
    const name = ps.pop() ?? "";
    const d = this.resolve(`/${ps.join("/")}`);
    if (typeof d === "number") return d;
    if (d.kind !== "dir") return -ENOTDIR;
    return { dir: d, name };
  }
}

function parts(path: string): string[] {
  return path.split("/").filter((c) => c !== "");
}

function nlinkOf(n: MNode): number {
  if (n.kind === "file") return 1;
  let subdirs = 0;
  for (const c of n.children.values()) if (c.kind === "dir") subdirs++;
  return 2 + subdirs;
}

function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (seed + i * 31 + (i >> 12)) & 0xff;
  return out;
}

// ---- operations -----------------------------------------------------------------------------

/** A path as generated: a string, or a pick (index) among the paths that exist at run time. */
type PathRef = string | number;
type Op<P = string> =
  | { op: "create"; path: P; mode: "file" | "dir"; exclusive: boolean }
  | { op: "mkdir"; path: P }
  | { op: "write"; path: P; off: number; len: number; seed: number }
  | { op: "read"; path: P; off: number; len: number }
  | { op: "truncate"; path: P; size: number }
  | { op: "unlink"; path: P }
  | { op: "rmdir"; path: P }
  | { op: "rename"; from: P; to: P }
  | { op: "readdir"; path: P }
  | { op: "stat"; path: P }
  | { op: "open"; path: P; pin: boolean }
  | { op: "readHandle"; h: number; off: number; len: number }
  | { op: "close"; h: number }
  | { op: "sync" }
  | { op: "remount" }
  | { op: "powerCutAfterSync" };

const name = fc.constantFrom("a", "b", "c");
/**
 * A path: a fresh one from a small name space (depth 1–3, shallow ones likelier), or — as a
 * number — a pick among the paths that exist when the call runs, so most calls do real work.
 */
const freshPath = fc
  .oneof(
    { weight: 5, arbitrary: fc.array(name, { minLength: 1, maxLength: 1 }) },
    { weight: 4, arbitrary: fc.array(name, { minLength: 2, maxLength: 2 }) },
    { weight: 2, arbitrary: fc.array(name, { minLength: 3, maxLength: 3 }) },
  )
  .map((cs) => `/${cs.join("/")}`);
const path: fc.Arbitrary<PathRef> = fc.oneof(
  { weight: 2, arbitrary: freshPath },
  { weight: 3, arbitrary: fc.nat(1000) },
);
const anyPath = fc.oneof(
  { weight: 9, arbitrary: path },
  { weight: 1, arbitrary: fc.constant("/") },
);
/** Offsets near the interesting boundaries: block 0, direct→indirect, indirect→double. */
const offset = fc.oneof(
  fc.integer({ min: 0, max: 20_000 }),
  fc.integer({ min: 12 * BS - 6000, max: 12 * BS + 6000 }),
  fc.integer({ min: (12 + 1024) * BS - 6000, max: (12 + 1024) * BS + 6000 }),
  fc.integer({ min: (12 + 2048) * BS - 6000, max: (12 + 2048) * BS + 6000 }),
);
const length = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 12_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 300_000 }) },
);

const opArb: fc.Arbitrary<Op<PathRef>> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("create" as const),
      path,
      mode: fc.oneof(
        { weight: 3, arbitrary: fc.constant("file" as const) },
        { weight: 1, arbitrary: fc.constant("dir" as const) },
      ),
      exclusive: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("mkdir" as const), path }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      path,
      off: offset,
      len: length,
      seed: fc.nat(255),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("read" as const), path, off: offset, len: length }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("truncate" as const),
      path,
      size: fc.oneof(offset, fc.constant(0)),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("unlink" as const), path }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("rmdir" as const), path }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("rename" as const), from: fc.nat(1000), to: path }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("readdir" as const), path: anyPath }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("stat" as const), path: anyPath }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("open" as const), path, pin: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("readHandle" as const),
      h: fc.nat(7),
      off: fc.integer({ min: 0, max: 20_000 }),
      len: fc.integer({ min: 1, max: 9000 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("close" as const), h: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.constant({ op: "sync" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "remount" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "powerCutAfterSync" as const }) },
);

interface Handle {
  readonly ino: number;
  readonly gen: number;
  readonly node: MNode;
  pinned: boolean;
}

/** Whether `node` is still reachable from the root. */
function reachable(root: MDir, node: MNode): boolean {
  if (root === node) return true;
  for (const c of root.children.values()) {
    if (c === node) return true;
    if (c.kind === "dir" && reachable(c, node)) return true;
  }
  return false;
}

/** Run `ops` on both; assert every result matches. */
function check(ops: readonly Op<PathRef>[]): void {
  let dev = new MemoryBlockDevice(4096); // 16 MiB
  FileSystem.mkfs(dev, { logBlocks: 40, inodes: 256 });
  let fs = FileSystem.mount(dev, { cacheBlocks: 200 });
  const m = new Model();
  const handles: Handle[] = [];
  const where = (i: number, op: Op) => `op ${i}: ${JSON.stringify(op)}`;

  const remount = (powerCut: boolean) => {
    if (powerCut) {
      assert.equal(fs.sync(), 0);
      dev = dev.crash("none");
    } else {
      fs.unmount();
    }
    fs = FileSystem.mount(dev, { cacheBlocks: 200 });
    // Pins do not survive: an unlinked open file is an orphan, freed at mount.
    for (const h of handles) h.pinned = false;
    const report = fs.fsck();
    assert.deepEqual(report.problems, [], "fsck after remount");
  };

  /** The paths in the model (only files, if asked and there are any), sorted. */
  const existing = (filesOnly: boolean): string[] => {
    const out: string[] = [];
    const walk = (p: string, d: MDir) => {
      for (const [k, v] of d.children) {
        const q = `${p}/${k}`;
        if (!filesOnly || v.kind === "file") out.push(q);
        if (v.kind === "dir") walk(q, v);
      }
    };
    walk("", m.root);
    return out.length === 0 && filesOnly ? existing(false) : out.sort();
  };
  /** A generated path made real: data calls pick among files, the others among everything. */
  const real = (ref: PathRef, filesOnly: boolean): string => {
    if (typeof ref === "string") return ref;
    const all = existing(filesOnly);
    return all.length === 0 ? "/a" : all[ref % all.length];
  };
  const DATA_CALLS = new Set(["write", "read", "truncate", "open"]);

  /** Run one call on both and compare; `at` names it in failures. (`return assert…` ends a case.) */
  const apply = (op: Op, at: string): unknown => {
    switch (op.op) {
      case "create": {
        const got = fs.create(op.path, { mode: op.mode, exclusive: op.exclusive });
        const p = m.parent(op.path);
        if (typeof p === "number") return assert.equal(got, p, at);
        const cur = p.dir.children.get(p.name);
        if (cur !== undefined) {
          if (op.exclusive) return assert.equal(got, -EEXIST, at);
          if (cur.kind !== op.mode) {
            return assert.equal(got, op.mode === "file" ? -EISDIR : -ENOTDIR, at);
          }
          return assert.equal(got, fs.lookup(op.path), at);
        }
        assert.ok(got > 0, `${at}: got ${got}`);
        p.dir.children.set(p.name, op.mode === "dir" ? newDir() : newFile());
        return;
      }
      case "mkdir": {
        const got = fs.mkdir(op.path);
        const p = m.parent(op.path);
        if (typeof p === "number") return assert.equal(got, p, at);
        if (p.dir.children.has(p.name)) return assert.equal(got, -EEXIST, at);
        assert.equal(got, 0, at);
        p.dir.children.set(p.name, newDir());
        return;
      }
      case "write": {
        const ino = fs.lookup(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(ino, n, at);
        const data = pattern(op.seed, op.len);
        const got = fs.write(ino, op.off, data);
        if (n.kind === "dir") return assert.equal(got, -EISDIR, at);
        assert.equal(got, op.len, at);
        if (op.len > 0) mWrite(n, op.off, data);
        return;
      }
      case "read": {
        const ino = fs.lookup(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(ino, n, at);
        const dst = new Uint8Array(op.len).fill(0xee);
        const got = fs.read(ino, op.off, dst);
        if (n.kind === "dir") return assert.equal(got, -EISDIR, at);
        const want = mRead(n, op.off, op.len);
        assert.equal(got, want.length, at);
        assert.ok(
          Buffer.from(dst.subarray(0, got)).equals(Buffer.from(want)),
          `${at}: bytes differ`,
        );
        return;
      }
      case "truncate": {
        const ino = fs.lookup(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(ino, n, at);
        const got = fs.truncate(ino, op.size);
        if (n.kind === "dir") return assert.equal(got, -EISDIR, at);
        assert.equal(got, 0, at);
        mTruncate(n, op.size);
        return;
      }
      case "unlink": {
        const got = fs.unlink(op.path);
        const p = m.parent(op.path);
        if (typeof p === "number") return assert.equal(got, p, at);
        const cur = p.dir.children.get(p.name);
        if (cur === undefined) return assert.equal(got, -ENOENT, at);
        if (cur.kind === "dir") return assert.equal(got, -EISDIR, at);
        assert.equal(got, 0, at);
        p.dir.children.delete(p.name);
        return;
      }
      case "rmdir": {
        const got = fs.rmdir(op.path);
        const p = m.parent(op.path);
        if (typeof p === "number") return assert.equal(got, p, at);
        const cur = p.dir.children.get(p.name);
        if (cur === undefined) return assert.equal(got, -ENOENT, at);
        if (cur.kind !== "dir") return assert.equal(got, -ENOTDIR, at);
        if (cur.children.size > 0) return assert.equal(got, -ENOTEMPTY, at);
        assert.equal(got, 0, at);
        p.dir.children.delete(p.name);
        return;
      }
      case "rename": {
        const got = fs.rename(op.from, op.to);
        const sp = m.parent(op.from);
        if (typeof sp === "number") return assert.equal(got, sp, at);
        const src = sp.dir.children.get(sp.name);
        if (src === undefined) return assert.equal(got, -ENOENT, at);
        const dp = m.parent(op.to);
        if (typeof dp === "number") return assert.equal(got, dp, at);
        const dst = dp.dir.children.get(dp.name);
        if (dst === src) return assert.equal(got, 0, at);
        if (src.kind === "dir") {
          const toParent = `/${parts(op.to).slice(0, -1).join("/")}`;
          const from = `/${parts(op.from).join("/")}`;
          if (toParent === from || toParent.startsWith(`${from}/`)) {
            return assert.equal(got, -EINVAL, at);
          }
          if (dst !== undefined && dst.kind !== "dir") return assert.equal(got, -ENOTDIR, at);
          if (dst !== undefined && dst.kind === "dir" && dst.children.size > 0) {
            return assert.equal(got, -ENOTEMPTY, at);
          }
        } else if (dst !== undefined && dst.kind === "dir") {
          return assert.equal(got, -EISDIR, at);
        }
        assert.equal(got, 0, at);
        sp.dir.children.delete(sp.name);
        dp.dir.children.set(dp.name, src);
        return;
      }
      case "readdir": {
        const got = fs.readdir(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(got, n, at);
        if (n.kind !== "dir") return assert.equal(got, -ENOTDIR, at);
        assert.ok(Array.isArray(got), at);
        const have = got.map((e) => `${e.name}:${e.type}`).sort();
        const want = [...n.children].map(([k, v]) => `${k}:${v.kind}`).sort();
        assert.deepEqual(have, want, at);
        return;
      }
      case "stat": {
        const got = fs.stat(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(got, n, at);
        assert.ok(typeof got === "object", at);
        assert.equal(got.type, n.kind, at);
        assert.equal(got.nlink, nlinkOf(n), at);
        if (n.kind === "file") assert.equal(got.size, n.size, at);
        return;
      }
      case "open": {
        const ino = fs.lookup(op.path);
        const n = m.resolve(op.path);
        if (typeof n === "number") return assert.equal(ino, n, at);
        const st = fs.statIno(ino);
        assert.ok(typeof st === "object", at);
        if (op.pin) assert.equal(fs.pin(ino, st.gen), 0, at);
        if (handles.length >= 8) {
          const old = handles.shift()!;
          if (old.pinned) assert.equal(fs.unpin(old.ino), 0, at);
        }
        handles.push({ ino, gen: st.gen, node: n, pinned: op.pin });
        return;
      }
      case "readHandle": {
        const h = handles[op.h];
        if (h === undefined) return;
        const dst = new Uint8Array(op.len);
        const got = fs.read(h.ino, op.off, dst, h.gen);
        const alive =
          reachable(m.root, h.node) || handles.some((o) => o.node === h.node && o.pinned);
        if (!alive) return assert.equal(got, -ESTALE, at);
        if (h.node.kind === "dir") return assert.equal(got, -EISDIR, at);
        const want = mRead(h.node, op.off, op.len);
        assert.equal(got, want.length, at);
        assert.ok(
          Buffer.from(dst.subarray(0, got)).equals(Buffer.from(want)),
          `${at}: bytes differ`,
        );
        return;
      }
      case "close": {
        const h = handles[op.h];
        if (h === undefined) return;
        handles.splice(op.h, 1);
        if (h.pinned) assert.equal(fs.unpin(h.ino), 0, at);
        return;
      }
      case "sync":
        assert.equal(fs.sync(), 0, at);
        return;
      case "remount":
        remount(false);
        return;
      case "powerCutAfterSync":
        remount(true);
        return;
    }
  };
  for (const [i, raw] of ops.entries()) {
    const op: Op =
      "from" in raw
        ? { ...raw, from: real(raw.from, false), to: real(raw.to, false) }
        : "path" in raw
          ? { ...raw, path: real(raw.path, DATA_CALLS.has(raw.op)) }
          : raw;
    apply(op, where(i, op));
  }
  const report = fs.fsck();
  assert.deepEqual(report.problems, [], "fsck at the end");
  // Everything the model holds is on the image after a last remount.
  remount(false);
  const walk = (p: string, n: MNode) => {
    const st = fs.stat(p);
    assert.ok(typeof st === "object", `stat ${p}`);
    assert.equal(st.type, n.kind, p);
    if (n.kind === "dir") {
      for (const [k, v] of n.children) walk(p === "/" ? `/${k}` : `${p}/${k}`, v);
    } else {
      const dst = new Uint8Array(n.size);
      assert.equal(fs.read(st.ino, 0, dst), n.size, p);
      assert.ok(Buffer.from(dst).equals(Buffer.from(mRead(n, 0, n.size))), `${p}: bytes differ`);
    }
  };
  walk("/", m.root);
}

describe("exofs against a model", () => {
  it("random call sequences give the model's results, errno included", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 60, size: "max" }), (ops) =>
        check(ops),
      ),
      { numRuns: 120 },
    );
  });

  it("a directory cannot move into itself, and renaming onto itself does nothing", () => {
    check([
      { op: "mkdir", path: "/a" },
      { op: "mkdir", path: "/a/b" },
      { op: "rename", from: "/a", to: "/a/b/c" },
      { op: "rename", from: "/a", to: "/a/c" },
      { op: "rename", from: "/a", to: "/a" },
      { op: "rename", from: "/a/b", to: "/b" },
      { op: "stat", path: "/" },
    ]);
  });

  it("an unlinked file stays readable through a pinned handle until closed", () => {
    const dev = new MemoryBlockDevice(1024);
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    const ino = fs.create("/f", { mode: "file", exclusive: true });
    assert.equal(fs.write(ino, 0, pattern(7, 10_000)), 10_000);
    const st = fs.statIno(ino);
    assert.ok(typeof st === "object");
    const freeBefore = fs.stats().freeBlocks;
    assert.equal(fs.pin(ino, st.gen), 0);
    assert.equal(fs.unlink("/f"), 0);
    assert.equal(fs.lookup("/f"), -ENOENT);
    const dst = new Uint8Array(10_000);
    assert.equal(fs.read(ino, 0, dst, st.gen), 10_000);
    assert.deepEqual(dst, pattern(7, 10_000));
    assert.deepEqual(fs.fsck().problems, []);
    assert.equal(fs.stats().freeBlocks, freeBefore, "blocks stay held while pinned");
    assert.equal(fs.unpin(ino), 0);
    assert.equal(fs.read(ino, 0, dst, st.gen), -ESTALE);
    assert.equal(fs.stats().freeBlocks, freeBefore + 3);
    // A new file may reuse the inode: the old handle stays stale.
    const again = fs.create("/g", { mode: "file", exclusive: true });
    const st2 = fs.statIno(again);
    assert.ok(typeof st2 === "object");
    if (again === ino) assert.notEqual(st2.gen, st.gen);
    assert.equal(fs.read(ino, 0, dst, st.gen), -ESTALE);
    assert.deepEqual(fs.fsck().problems, []);
  });

  it("an open, unlinked file left by a crash is freed at the next mount", () => {
    const dev = new MemoryBlockDevice(1024);
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    const ino = fs.create("/f", { mode: "file", exclusive: true });
    assert.equal(fs.write(ino, 0, pattern(1, 9000)), 9000);
    assert.equal(fs.pin(ino), 0);
    assert.equal(fs.unlink("/f"), 0);
    assert.equal(fs.sync(), 0);
    const after = FileSystem.mount(dev.crash("none"));
    assert.equal(after.stats().orphansFreed, 1);
    assert.equal(after.statIno(ino), -ESTALE);
    assert.deepEqual(after.fsck().problems, []);
  });
});
