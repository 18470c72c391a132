/**
 * The filesystem commands as a user runs them: `node bin/exocore.js` (against the build this
 * test was compiled into, as test/cli.test.ts does) for mkfs --from a folder, fs ls, fs cat,
 * fs export (the tree comes back byte for byte), fs import, and fsck on a clean image and on
 * one broken on purpose (exit 1 with the list of problems), plus their usage errors.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { BLOCK_SIZE } from "../src/fs/blockdev.js";
import { FileBlockDevice } from "../src/fs/filedev.js";
import { FileSystem } from "../src/fs/fs.js";
import { I_DIRECT, I_NLINK, inodeBlock, inodeOffset } from "../src/fs/layout.js";
import { MemoryBlockDevice } from "../src/fs/memdev.js";

// This file runs as <dist>/test/fs-cli.test.js; the repo root is two levels up from <dist>/test,
// unless EXOCORE_ROOT says otherwise (a build made outside the repo).
const distRoot = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = process.env.EXOCORE_ROOT ?? fileURLToPath(new URL("../..", import.meta.url));
const bin = join(repoRoot, "bin", "exocore.js");

interface Run {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly out: string;
  readonly err: string;
}

function exocore(...args: string[]): Run {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: work,
    env: { ...process.env, EXOCORE_DIST: distRoot, EXOCORE_DEBUG: "" },
    timeout: 60_000,
    maxBuffer: 64 << 20,
  });
  return {
    code: r.status,
    stdout: r.stdout,
    out: r.stdout.toString("utf8"),
    err: r.stderr.toString("utf8"),
  };
}

let work = "";
let src = "";
const files: Record<string, Uint8Array> = {};

/** Deterministic bytes. */
function bytes(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Every file and folder under `dir`, relative, with "/" after folders, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(dir, p) + (e.isDirectory() ? "/" : ""));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "exofs-cli-"));
  src = join(work, "src");
  const put = (rel: string, data: Uint8Array) => {
    mkdirSync(join(src, rel, ".."), { recursive: true });
    writeFileSync(join(src, rel), data);
    files[rel] = data;
  };
  put("readme.txt", new TextEncoder().encode("hello from the host\n"));
  put("empty", new Uint8Array(0));
  put("data/one-block.bin", bytes(1, BLOCK_SIZE));
  put("data/big.bin", bytes(2, 700_000)); // past the direct blocks
  put("data/nested/deep/ünïcödé name.txt", new TextEncoder().encode("names are UTF-8\n"));
  mkdirSync(join(src, "empty-folder"));
});
after(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("exocore mkfs, fs, fsck", () => {
  it("mkfs --from copies a host folder into a new image", () => {
    const r = exocore("mkfs", "a.img", "--from", src, "--size", "8M");
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /^made a\.img: 8M, 2048 blocks, \d+ inodes, log of \d+ blocks; copied in 5 files, 4 folders, 704132 bytes from /,
    );
    assert.equal(statSync(join(work, "a.img")).size, 8 << 20);
  });

  it("mkfs refuses to overwrite an image unless --force", () => {
    const before = readFileSync(join(work, "a.img"));
    const r = exocore("mkfs", "a.img");
    assert.equal(r.code, 1);
    assert.equal(r.err, "exocore: a.img exists; use --force to overwrite it [EXO_ERR_IO]\n");
    assert.ok(readFileSync(join(work, "a.img")).equals(before), "the image is untouched");
    const forced = exocore("mkfs", "b.img", "--size", "1M");
    assert.equal(forced.code, 0, forced.err);
    assert.equal(exocore("mkfs", "b.img", "--size", "2M", "--force").code, 0);
    assert.equal(statSync(join(work, "b.img")).size, 2 << 20);
  });

  it("mkfs --from a folder too big for --size fails with ENOSPC and leaves no image", () => {
    const huge = join(work, "huge");
    mkdirSync(huge);
    writeFileSync(join(huge, "big.bin"), bytes(4, 2 << 20));
    const r = exocore("mkfs", "small.img", "--size", "1M", "--from", huge);
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      "exocore: write /big.bin: no space left on device (ENOSPC) [EXO_ERR_ENOSPC]\n",
    );
    assert.equal(existsSync(join(work, "small.img")), false);
  });

  it("fs ls lists a folder, and the whole tree with --recursive --json", () => {
    const r = exocore("fs", "ls", "a.img");
    assert.equal(r.code, 0, r.err);
    const names = r.out
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/).pop());
    assert.deepEqual(names, ["/data/", "/empty", "/empty-folder/", "/readme.txt"]);
    assert.match(r.out, /^- +20 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\/readme\.txt$/m);
    const j = exocore("fs", "ls", "a.img", "/", "--recursive", "--json", "--quiet");
    assert.equal(j.code, 0, j.err);
    const doc = JSON.parse(j.out) as { entries: { path: string; type: string; size: number }[] };
    const listed = doc.entries.map((e) => `${e.path.slice(1)}${e.type === "dir" ? "/" : ""}`);
    assert.deepEqual(listed.sort(), tree(src));
    const big = doc.entries.find((e) => e.path === "/data/big.bin");
    assert.equal(big?.size, 700_000);
  });

  it("fs cat writes a file's bytes to stdout", () => {
    for (const rel of ["readme.txt", "data/big.bin", "empty"]) {
      const r = exocore("fs", "cat", "a.img", `/${rel}`);
      assert.equal(r.code, 0, r.err);
      assert.ok(r.stdout.equals(Buffer.from(files[rel])), `${rel} byte for byte`);
    }
    const missing = exocore("fs", "cat", "a.img", "/nope");
    assert.equal(missing.code, 1);
    assert.equal(
      missing.err,
      "exocore: stat /nope: no such file or directory (ENOENT) [EXO_ERR_ENOENT]\n",
    );
    const dir = exocore("fs", "cat", "a.img", "/data");
    assert.equal(dir.code, 1);
    assert.match(dir.err, /is a directory \(EISDIR\)/);
  });

  it("fs export gives back the same tree, byte for byte", () => {
    const out = join(work, "out");
    const r = exocore("fs", "export", "a.img", out);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `exported 5 files, 4 folders, 704132 bytes to ${out}\n`);
    assert.deepEqual(tree(out), tree(src));
    for (const [rel, data] of Object.entries(files)) {
      assert.ok(readFileSync(join(out, rel)).equals(Buffer.from(data)), rel);
    }
    const again = exocore("fs", "export", "a.img", out);
    assert.equal(again.code, 1, "a folder that is not empty needs --force");
    assert.match(again.err, /is not empty; use --force/);
  });

  it("fs import copies a folder into a path of an existing image", () => {
    const more = join(work, "more");
    mkdirSync(join(more, "sub"), { recursive: true });
    writeFileSync(join(more, "sub", "x.bin"), bytes(3, 9000));
    const r = exocore("fs", "import", "a.img", more, "/imported/here");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "imported 1 files, 1 folders, 9000 bytes into /imported/here\n");
    const cat = exocore("fs", "cat", "a.img", "/imported/here/sub/x.bin");
    assert.equal(cat.code, 0, cat.err);
    assert.ok(cat.stdout.equals(Buffer.from(bytes(3, 9000))));
    // Importing again replaces the file.
    writeFileSync(join(more, "sub", "x.bin"), "shorter");
    assert.equal(exocore("fs", "import", "a.img", more, "/imported/here").code, 0);
    assert.equal(exocore("fs", "cat", "a.img", "/imported/here/sub/x.bin").out, "shorter");
  });

  it("fsck: a clean image exits 0", () => {
    const r = exocore("fsck", "a.img");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^a\.img: clean — 6 files, 8 folders, \d+ of \d+ data blocks used\n$/);
    const j = exocore("fsck", "a.img", "--json", "--quiet");
    assert.equal(j.code, 0);
    const doc = JSON.parse(j.out) as { clean: boolean; problems: string[]; files: number };
    assert.equal(doc.clean, true);
    assert.deepEqual(doc.problems, []);
    assert.equal(doc.files, 6);
  });

  it("fsck: a broken image exits 1 and lists every problem", () => {
    const path = join(work, "broken.img");
    writeFileSync(path, readFileSync(join(work, "a.img")));
    // Find /readme.txt's inode and first block, then break the image behind the fs's back.
    const dev = FileBlockDevice.open(path);
    const fs = FileSystem.mount(dev);
    const ino = fs.lookup("/readme.txt");
    const sb = fs.sb;
    fs.unmount();
    dev.close();
    const img = readFileSync(path);
    const at = inodeBlock(sb, ino) * BLOCK_SIZE + inodeOffset(ino);
    img.writeUInt16LE(5, at + I_NLINK); // a wrong link count
    const block = img.readUInt32LE(at + I_DIRECT);
    img[sb.bitmapStart * BLOCK_SIZE + (block >> 3)] &= ~(1 << (block & 7)); // in use, marked free
    writeFileSync(path, img);

    const r = exocore("fsck", "broken.img");
    assert.equal(r.code, 1, r.err);
    const lines = r.out.trim().split("\n");
    assert.match(lines[0], /^broken\.img: 2 problems — /);
    assert.deepEqual(lines.slice(1).sort(), [
      `  - block ${block} (inode ${ino} (file), file block 0) is in use but marked free`,
      `  - inode ${ino} (file) has nlink 5, expected 1`,
    ]);
    const j = exocore("fsck", "broken.img", "--json", "--quiet");
    assert.equal(j.code, 1);
    const doc = JSON.parse(j.out) as { clean: boolean; problems: string[] };
    assert.equal(doc.clean, false);
    assert.equal(doc.problems.length, 2);
  });

  it("fsck: an image cut off after a commit point is replayed, then clean", () => {
    const dev = new MemoryBlockDevice(512);
    FileSystem.mkfs(dev);
    const fs = FileSystem.mount(dev);
    const ino = fs.create("/late.bin", { mode: "file", exclusive: true });
    assert.equal(fs.write(ino, 0, bytes(5, 20_000)), 20_000);
    const s = fs.stats();
    // The ordered data, the copies, the FUA header; not the install.
    dev.cutPowerAfter(s.orderedWaiting + s.runningTxnBlocks + 1);
    assert.ok(fs.sync() < 0);
    writeFileSync(join(work, "replay.img"), dev.crash("none").image());
    const r = exocore("fsck", "replay.img");
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /^replay\.img: clean — 1 files, 1 folders, .*\n {2}\(replayed \d+ blocks from the log\)\n$/,
    );
    const cat = exocore("fs", "cat", "replay.img", "/late.bin");
    assert.ok(cat.stdout.equals(Buffer.from(bytes(5, 20_000))));
  });

  it("fsck: a file that is not an image is refused with exit 1", () => {
    writeFileSync(join(work, "foreign.img"), Buffer.alloc(64 << 10, "plain text "));
    const r = exocore("fsck", "foreign.img");
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      'exocore: not an exofs image: bad magic "plain te" in block 0 (expected "EXOFS001") [EXO_ERR_IO]\n',
    );
  });

  it("usage errors exit 2 with the exact message", () => {
    const cases: [string[], string][] = [
      [
        ["mkfs", "c.img", "--size", "12Q"],
        'exocore: --size must be a size in bytes with an optional K, M, G or T suffix from 512K to 32G, got "12Q"\n',
      ],
      [["mkfs"], 'exocore: missing argument <image> for "mkfs" (see exocore mkfs --help)\n'],
      [
        ["fs", "cat", "a.img"],
        'exocore: missing argument <path> for "fs cat" (see exocore fs cat --help)\n',
      ],
      [["fs", "ls", "none.img"], "exocore: image not found: none.img [EXO_ERR_INVALID_ARG]\n"],
      [
        ["mkfs", "c.img", "--from", "no-such-folder"],
        "exocore: --from folder not found: no-such-folder [EXO_ERR_INVALID_ARG]\n",
      ],
    ];
    for (const [args, message] of cases) {
      const r = exocore(...args);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.err, message);
      assert.equal(r.out, "");
    }
  });

  it("the help lists the fs commands, and mkfs --help its flags", () => {
    const r = exocore("fs", "--help");
    assert.equal(r.code, 0, r.err);
    for (const name of ["fs ls", "fs cat", "fs export", "fs import"]) {
      assert.match(r.out, new RegExp(`^  ${name}  +\\S`, "m"), `lists ${name}`);
    }
    const f = exocore("fsck", "--help");
    assert.equal(f.code, 0, f.err);
    assert.match(f.out, /^exocore fsck — Check an exofs image/);
    const m = exocore("mkfs", "--help");
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /--size <size> +.*default: 64M/);
    assert.match(m.out, /--from <dir>/);
    assert.match(m.out, /--force/);
  });
});
