/**
 * The filesystem commands: `exocore mkfs`, `exocore fs ls|cat|export|import`, `exocore fsck`.
 * Each runs exofs (src/fs/fs.ts) in this process over an image file (src/fs/filedev.ts), the
 * same image the storage domain serves from behind its NVMe virtual function.
 *
 * Owns: the commands' specs and runs, and copying trees between the host and an image
 * (importTree / exportTree). Mounting an image replays its log and frees orphans, so every
 * command but mkfs may write to the image even when it only reads files from it.
 *
 * Exit codes: 0 success; 1 the command ran and failed (an image that does not mount, a file
 * that is not there, a full image, fsck found problems); 2 a usage error (see args.ts).
 * Registered by src/cli/main.ts.
 */

import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { EEXIST, EISDIR, ENOSPC, ENOTDIR, errnoMessage, errnoName } from "../abi/errno.js";
import { ExocoreError, InvalidArgumentError, IoError } from "../errors.js";
import { BLOCK_SIZE } from "../fs/blockdev.js";
import { FileBlockDevice } from "../fs/filedev.js";
import { type FileSystem as Exofs, FileSystem, type FsStat } from "../fs/fs.js";
import { MAX_BLOCKS, MIN_BLOCKS } from "../fs/layout.js";
import { type Command, defineCommand, formatSize } from "./args.js";
import type { Output } from "./output.js";

/** Bytes moved per read or write call when copying files in and out. */
const COPY_CHUNK = 1 << 20;

/** A failed filesystem call, as the CLI reports it: `<what> <path>: <message> (ENOENT)`. */
function fsError(what: string, path: string, errno: number): ExocoreError {
  const n = Math.abs(errno);
  return new ExocoreError(
    `EXO_ERR_${errnoName(n)}`,
    `${what} ${path}: ${errnoMessage(n)} (${errnoName(n)})`,
    n,
  );
}

/** `ret` if it is not -errno, else throw fsError. */
function check(ret: number, what: string, path: string): number {
  if (ret < 0) throw fsError(what, path, ret);
  return ret;
}

function statOf(fs: Exofs, path: string): FsStat {
  const st = fs.stat(path);
  if (typeof st === "number") throw fsError("stat", path, st);
  return st;
}

/**
 * Open and mount an existing image, run `body`, unmount. If `body` throws, what it did so far
 * is still committed (the image stays consistent) and its error is the one reported. The
 * device is closed in any case.
 */
async function withImage<T>(image: string, body: (fs: Exofs) => T | Promise<T>): Promise<T> {
  if (!existsSync(image)) throw new InvalidArgumentError(`image not found: ${image}`);
  const dev = FileBlockDevice.open(image);
  try {
    const fs = FileSystem.mount(dev);
    let result: T;
    try {
      result = await body(fs);
    } catch (err) {
      unmountQuietly(fs);
      throw err;
    }
    fs.unmount();
    return result;
  } finally {
    dev.close();
  }
}

/** Unmount after another error, which is the one worth reporting. */
function unmountQuietly(fs: Exofs): void {
  try {
    fs.unmount();
  } catch {
    // the device failed too: the caller's error says what went wrong first
  }
}

/** Join a directory path of the image and a name. */
function child(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** An image path from the command line: absolute, "/" when left out. */
function imagePath(given: string | undefined): string {
  if (given === undefined || given === "") return "/";
  return given.startsWith("/") ? given : `/${given}`;
}

export interface CopyCounts {
  files: number;
  directories: number;
  bytes: number;
  /** Host entries left out (symbolic links, devices, sockets…). */
  skipped: string[];
}

/**
 * Copy the host folder `hostDir` into directory `at` of the image (made if missing): folders
 * are merged, files replaced. Symbolic links and special files are skipped and listed.
 */
export function importTree(fs: Exofs, hostDir: string, at: string): CopyCounts {
  const counts: CopyCounts = { files: 0, directories: 0, bytes: 0, skipped: [] };
  const buf = new Uint8Array(COPY_CHUNK);
  mkdirs(fs, at);
  const walk = (host: string, dir: string) => {
    const entries = readdirSync(host, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      const from = join(host, e.name);
      const to = child(dir, e.name);
      if (e.isDirectory()) {
        check(fs.create(to, { mode: "dir", exclusive: false }), "mkdir", to);
        counts.directories++;
        walk(from, to);
      } else if (e.isFile()) {
        counts.bytes += importFile(fs, from, to, buf);
        counts.files++;
      } else {
        counts.skipped.push(from);
      }
    }
  };
  walk(hostDir, at);
  return counts;
}

/** mkdir -p inside the image. */
function mkdirs(fs: Exofs, path: string): void {
  let p = "";
  for (const part of path.split("/").filter((c) => c !== "")) {
    p += `/${part}`;
    check(fs.create(p, { mode: "dir", exclusive: false }), "mkdir", p);
  }
}

function importFile(fs: Exofs, from: string, to: string, buf: Uint8Array): number {
  const ino = check(fs.create(to, { mode: "file", exclusive: false }), "create", to);
  check(fs.truncate(ino, 0), "truncate", to);
  const fd = openSync(from, "r");
  let off = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, off);
      if (n === 0) break;
      const w = check(fs.write(ino, off, buf.subarray(0, n)), "write", to);
      if (w < n) throw fsError("write", to, -ENOSPC); // a short write: the image is full
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return off;
}

/**
 * Copy directory `from` of the image (its contents) into host folder `hostDir` (made if
 * missing), with the files' modification times.
 */
export function exportTree(fs: Exofs, from: string, hostDir: string): CopyCounts {
  const counts: CopyCounts = { files: 0, directories: 0, bytes: 0, skipped: [] };
  const buf = new Uint8Array(COPY_CHUNK);
  mkdirSync(hostDir, { recursive: true });
  const walk = (dir: string, host: string) => {
    const entries = fs.readdir(dir);
    if (typeof entries === "number") throw fsError("readdir", dir, entries);
    for (const e of entries) {
      const src = child(dir, e.name);
      const to = join(host, e.name);
      const st = statOf(fs, src);
      if (e.type === "dir") {
        mkdirSync(to, { recursive: true });
        counts.directories++;
        walk(src, to);
      } else {
        counts.bytes += exportFile(fs, st, src, to, buf);
        counts.files++;
      }
      utimesSync(to, st.mtimeMs / 1000, st.mtimeMs / 1000);
    }
  };
  walk(from, hostDir);
  return counts;
}

function exportFile(fs: Exofs, st: FsStat, src: string, to: string, buf: Uint8Array): number {
  const fd = openSync(to, "w", 0o644);
  try {
    for (let off = 0; off < st.size; ) {
      const n = check(fs.read(st.ino, off, buf, st.gen), "read", src);
      if (n === 0) break;
      for (let done = 0; done < n; ) done += writeSync(fd, buf, done, n - done, off + done);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return st.size;
}

/** Throw unless `dir` is an existing host folder. */
function hostFolder(dir: string, what: string): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new InvalidArgumentError(`${what} not found: ${dir}`);
  }
  if (!isDir) throw new InvalidArgumentError(`${what} is not a folder: ${dir}`);
}

function countsText(c: CopyCounts): string {
  return `${c.files} files, ${c.directories} folders, ${c.bytes} bytes`;
}

function skippedText(c: CopyCounts): string {
  const n = c.skipped.length;
  return n === 0 ? "" : ` (skipped ${n} ${n === 1 ? "entry" : "entries"}: not a file or folder)`;
}

function noteSkipped(out: Output, c: CopyCounts): void {
  for (const s of c.skipped) out.note(`exocore: skipped ${s} (not a regular file or folder)`);
}

// ---- mkfs ---------------------------------------------------------------------------------

const mkfs = defineCommand({
  name: "mkfs",
  summary: "Make an exofs image file, optionally filled from a host folder",
  description:
    "Creates IMAGE (a sparse file of --size bytes) holding an empty exofs filesystem: superblock, write-ahead log, inode table, free bitmap. With --from, the folder's files and subfolders are copied in. An existing IMAGE is left alone unless --force.",
  args: [{ name: "image", description: "the image file to create" }],
  flags: [
    {
      name: "size",
      type: "size",
      default: 64 * 2 ** 20,
      min: MIN_BLOCKS * BLOCK_SIZE,
      max: MAX_BLOCKS * BLOCK_SIZE,
      description: "image size, rounded down to whole 4 KiB blocks",
    },
    { name: "from", type: "string", placeholder: "dir", description: "host folder to copy in" },
    {
      name: "inodes",
      type: "integer",
      min: 16,
      max: 1 << 20,
      description: "number of inodes; by default one per 32 KiB of image, from 63 to 65535",
    },
    { name: "force", type: "boolean", description: "overwrite IMAGE if it exists" },
  ],
  async run(ctx) {
    const [image] = ctx.args;
    const from = ctx.flags.from;
    if (from !== undefined) hostFolder(from, "--from folder");
    if (existsSync(image) && !ctx.flags.force) {
      throw new IoError(`${image} exists; use --force to overwrite it`, EEXIST);
    }
    if (existsSync(image) && lstatSync(image).isDirectory()) {
      throw new InvalidArgumentError(`${image} is a folder, not an image file`);
    }
    const blocks = Math.floor(ctx.flags.size / BLOCK_SIZE);
    const dev = FileBlockDevice.create(image, blocks, { overwrite: ctx.flags.force });
    let counts: CopyCounts | undefined;
    let made = false;
    try {
      FileSystem.mkfs(dev, { inodes: ctx.flags.inodes });
      const fs = FileSystem.mount(dev);
      try {
        if (from !== undefined) counts = importTree(fs, from, "/");
      } catch (err) {
        unmountQuietly(fs);
        throw err;
      }
      const sb = fs.sb;
      fs.unmount();
      made = true;
      const doc = {
        image,
        bytes: blocks * BLOCK_SIZE,
        blocks: sb.totalBlocks,
        inodes: sb.ninodes - 1,
        logBlocks: sb.logBlocks,
        dataBlocks: sb.totalBlocks - sb.dataStart,
        ...(counts && { from, imported: counts }),
      };
      if (counts) noteSkipped(ctx.out, counts);
      ctx.out.emit(
        doc,
        `made ${image}: ${formatSize(blocks * BLOCK_SIZE)}, ${sb.totalBlocks} blocks, ${sb.ninodes - 1} inodes, log of ${sb.logBlocks} blocks${counts ? `; copied in ${countsText(counts)} from ${from}${skippedText(counts)}` : ""}`,
      );
      return 0;
    } finally {
      dev.close();
      if (!made) rmSync(image, { force: true }); // no half-made image left behind
    }
  },
});

// ---- fs ls / cat / export / import ---------------------------------------------------------

interface LsEntry {
  readonly path: string;
  readonly name: string;
  readonly type: "file" | "dir";
  readonly size: number;
  readonly nlink: number;
  readonly ino: number;
  readonly mtimeMs: number;
}

function lsLine(e: LsEntry): string {
  const kind = e.type === "dir" ? "d" : "-";
  const when = new Date(e.mtimeMs).toISOString().replace("T", " ").slice(0, 19);
  return `${kind} ${String(e.size).padStart(10)}  ${when}  ${e.path}${e.type === "dir" ? "/" : ""}`;
}

const ls = defineCommand({
  name: "fs ls",
  summary: "List a folder of an exofs image (or one file)",
  args: [
    { name: "image", description: "the image file" },
    { name: "path", description: "folder or file in the image (default /)", optional: true },
  ],
  flags: [{ name: "recursive", type: "boolean", description: "list subfolders too" }],
  async run(ctx) {
    const [image, given] = ctx.args;
    const path = imagePath(given);
    const entries = await withImage(image, (fs) => {
      const out: LsEntry[] = [];
      const entry = (p: string, name: string): LsEntry => {
        const st = statOf(fs, p);
        return {
          path: p,
          name,
          type: st.type,
          size: st.size,
          nlink: st.nlink,
          ino: st.ino,
          mtimeMs: st.mtimeMs,
        };
      };
      const top = statOf(fs, path);
      if (top.type === "file") return [entry(path, path.split("/").pop() ?? path)];
      const walk = (dir: string) => {
        const list = fs.readdir(dir);
        if (typeof list === "number") throw fsError("readdir", dir, list);
        for (const e of [...list].sort((a, b) => (a.name < b.name ? -1 : 1))) {
          const p = child(dir, e.name);
          out.push(entry(p, e.name));
          if (e.type === "dir" && ctx.flags.recursive) walk(p);
        }
      };
      walk(path);
      return out;
    });
    ctx.out.emit({ image, path, entries }, entries.map(lsLine).join("\n"));
    return 0;
  },
});

const cat = defineCommand({
  name: "fs cat",
  summary: "Write a file of an exofs image to stdout",
  description: "The bytes go to stdout as they are; with --json, as base64 in the document.",
  args: [
    { name: "image", description: "the image file" },
    { name: "path", description: "file in the image" },
  ],
  flags: [],
  async run(ctx) {
    const [image, given] = ctx.args;
    const path = imagePath(given);
    const chunks: Uint8Array[] = [];
    let size = 0;
    await withImage(image, async (fs) => {
      const st = statOf(fs, path);
      if (st.type === "dir") throw fsError("cat", path, -EISDIR);
      size = st.size;
      for (let off = 0; off < st.size; ) {
        const buf = new Uint8Array(Math.min(COPY_CHUNK, st.size - off));
        const n = check(fs.read(st.ino, off, buf, st.gen), "read", path);
        if (n === 0) break;
        if (ctx.out.json) chunks.push(buf.subarray(0, n));
        else if (!(await writeStdout(buf.subarray(0, n)))) break;
        off += n;
      }
    });
    if (ctx.out.json) {
      ctx.out.emit(
        { image, path, size, base64: Buffer.concat(chunks).toString("base64") },
        `${path}: ${size} bytes`,
      );
    }
    return 0;
  },
});

/**
 * Write bytes to stdout, waiting for the stream to take them (binary-safe: not the Output's
 * text sink). Resolves false when the reader went away (EPIPE, as in `| head`).
 */
function writeStdout(bytes: Uint8Array): Promise<boolean> {
  return new Promise((resolve, reject) => {
    process.stdout.write(bytes, (err) => {
      if (!err) resolve(true);
      else if ((err as NodeJS.ErrnoException).code === "EPIPE") resolve(false);
      else reject(err);
    });
  });
}

const exportCmd = defineCommand({
  name: "fs export",
  summary: "Copy the whole tree of an exofs image into a host folder",
  description:
    "DIR is created if missing; it must be empty unless --force (then files are overwritten and other files left as they are). Files keep their modification times.",
  args: [
    { name: "image", description: "the image file" },
    { name: "dir", description: "host folder to copy into" },
  ],
  flags: [
    {
      name: "path",
      type: "string",
      placeholder: "path",
      description: "export only this folder of the image",
    },
    { name: "force", type: "boolean", description: "export into a folder that is not empty" },
  ],
  async run(ctx) {
    const [image, dir] = ctx.args;
    if (existsSync(dir)) {
      hostFolder(dir, "export folder");
      if (!ctx.flags.force && readdirSync(dir).length > 0) {
        throw new IoError(`${dir} is not empty; use --force to export into it`, EEXIST);
      }
    }
    const from = imagePath(ctx.flags.path);
    const counts = await withImage(image, (fs) => {
      if (statOf(fs, from).type !== "dir") throw fsError("export", from, -ENOTDIR);
      return exportTree(fs, from, dir);
    });
    ctx.out.emit({ image, path: from, dir, ...counts }, `exported ${countsText(counts)} to ${dir}`);
    return 0;
  },
});

const importCmd = defineCommand({
  name: "fs import",
  summary: "Copy a host folder into an exofs image",
  description:
    "The folder's contents go into PATH of the image (default /, made if missing): folders are merged, files replaced. Symbolic links and special files are skipped.",
  args: [
    { name: "image", description: "the image file" },
    { name: "dir", description: "host folder to copy from" },
    { name: "path", description: "folder in the image (default /)", optional: true },
  ],
  flags: [],
  async run(ctx) {
    const [image, dir, given] = ctx.args;
    hostFolder(dir, "import folder");
    const at = imagePath(given);
    const counts = await withImage(image, (fs) => importTree(fs, dir, at));
    noteSkipped(ctx.out, counts);
    ctx.out.emit(
      { image, dir, path: at, ...counts },
      `imported ${countsText(counts)} into ${at}${skippedText(counts)}`,
    );
    return 0;
  },
});

// ---- fsck ---------------------------------------------------------------------------------

const fsck = defineCommand({
  name: "fsck",
  summary: "Check an exofs image; exit 1 and list every problem if it is not clean",
  description:
    "Mounting replays a committed log and frees orphaned inodes, as any mount does; then the whole tree, the link counts, the sizes and the free bitmap are checked. Nothing is repaired.",
  args: [{ name: "image", description: "the image file" }],
  flags: [],
  async run(ctx) {
    const [image] = ctx.args;
    const { report, replayed, orphans } = await withImage(image, (fs) => {
      const s = fs.stats();
      return { report: fs.fsck(), replayed: s.replayedBlocks, orphans: s.orphansFreed };
    });
    const summary = `${report.files} files, ${report.directories} folders, ${report.blocksUsed} of ${report.blocksUsed + report.blocksFree} data blocks used`;
    const notes: string[] = [];
    if (replayed > 0) notes.push(`replayed ${replayed} blocks from the log`);
    if (orphans > 0) notes.push(`freed ${orphans} orphaned inodes`);
    const head = report.clean
      ? `${image}: clean — ${summary}`
      : `${image}: ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"} — ${summary}`;
    const lines = [
      head,
      ...notes.map((n) => `  (${n})`),
      ...report.problems.map((p) => `  - ${p}`),
    ];
    ctx.out.emit(
      { image, replayedBlocks: replayed, orphansFreed: orphans, ...report },
      lines.join("\n"),
    );
    return report.clean ? 0 : 1;
  },
});

/** The filesystem commands, for the registry in main.ts. */
export const FS_COMMANDS: readonly Command[] = [mkfs, ls, cat, exportCmd, importCmd, fsck];
