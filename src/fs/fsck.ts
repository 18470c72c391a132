/**
 * fsck: the consistency checker of exofs. Reads the whole filesystem through the view it is
 * given and lists every problem it finds; it changes nothing (mount already replayed the log
 * and freed orphans, which is all the repairing exofs does).
 *
 * Checks, in order:
 *   1. the bitmap: metadata blocks and the padding past the end are marked used;
 *   2. every inode: a known type; block pointers inside the data region and owned once; the
 *      block count it records; a file's blocks within its size and the bytes past its size
 *      zero; a directory whole blocks with no hole; the size within the 4 GiB limit;
 *   3. the tree from the root: entries name live inodes of the type they say, names valid and
 *      unique, each directory reached once and its parent field pointing back;
 *   4. link counts: a file's nlink is its number of entries, a directory's 2 + subdirectories;
 *      an inode in use that no entry names is lost (unless it is an unlinked, pinned open file);
 *   5. the bitmap against ownership: a used block marked free, a marked block nobody owns;
 *   6. the free counts the mounted filesystem keeps against the bitmap and the inode table.
 *
 * Who calls: FileSystem.fsck() (src/fs/fs.ts), which `exocore fsck` and the tests use.
 */

import { BLOCK_SIZE } from "./blockdev.js";
import {
  BITS_PER_BITMAP_BLOCK,
  DE_INO,
  DE_NAME,
  DE_NAMELEN,
  DE_TYPE,
  DIRENT_BYTES,
  DIRENTS_PER_BLOCK,
  I_BLOCKS,
  I_DINDIRECT,
  I_DIRECT,
  I_INDIRECT,
  I_NLINK,
  I_PARENT,
  I_TYPE,
  INODE_BYTES,
  inodeSize,
  MAX_FILE_SIZE,
  NDIRECT,
  NINDIRECT,
  ROOT_INO,
  type Superblock,
  T_DIR,
  T_FILE,
  T_FREE,
} from "./layout.js";

/** What the checker reads through. */
export interface FsckSource {
  readonly sb: Superblock;
  /** A copy of block `b` as the filesystem sees it now. */
  readBlock(b: number): Uint8Array;
  /** Copies of `count` blocks at `lba`. */
  readBlocks(lba: number, count: number): Uint8Array;
  /** Whether an open file pins inode `ino`. */
  pinned(ino: number): boolean;
  /** The free counts the mounted filesystem keeps. */
  readonly freeBlocks: number;
  readonly freeInodes: number;
}

export interface FsckReport {
  readonly clean: boolean;
  /** One sentence per problem. */
  readonly problems: readonly string[];
  readonly files: number;
  readonly directories: number;
  readonly inodesUsed: number;
  readonly inodesTotal: number;
  readonly blocksUsed: number;
  readonly blocksFree: number;
  readonly blocksTotal: number;
}

const decoder = new TextDecoder();

export function checkFileSystem(src: FsckSource): FsckReport {
  const sb = src.sb;
  const problems: string[] = [];
  const bitmap = src.readBlocks(sb.bitmapStart, sb.bitmapBlocks);
  const marked = (b: number) => (bitmap[b >> 3] & (1 << (b & 7))) !== 0;

  // 1. reserved bits
  reportRuns(problems, 0, sb.dataStart, (b) => !marked(b), "metadata", "marked free");
  reportRuns(
    problems,
    sb.totalBlocks,
    sb.bitmapBlocks * BITS_PER_BITMAP_BLOCK,
    (b) => !marked(b),
    "padding bits for",
    "(past the end of the image) marked free",
  );

  // 2. inodes
  const table = src.readBlocks(sb.inodeStart, sb.inodeBlocks);
  const tdv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const n = sb.ninodes;
  const types = new Uint8Array(n);
  const nlinks = new Uint32Array(n);
  const parents = new Uint32Array(n);
  const sizes = new Float64Array(n);
  const owner = new Uint32Array(sb.totalBlocks);
  let inodesUsed = 0;
  let freeInodes = 0;
  for (let ino = ROOT_INO; ino < n; ino++) {
    const o = ino * INODE_BYTES;
    const type = tdv.getUint16(o + I_TYPE, true);
    if (type === T_FREE) {
      if (ino > ROOT_INO) freeInodes++;
      continue;
    }
    inodesUsed++;
    if (type !== T_FILE && type !== T_DIR) {
      problems.push(`inode ${ino} has unknown type ${type}`);
      continue;
    }
    types[ino] = type;
    nlinks[ino] = tdv.getUint16(o + I_NLINK, true);
    parents[ino] = tdv.getUint32(o + I_PARENT, true);
    sizes[ino] = inodeSize(tdv, o);
    checkInodeBlocks(src, problems, owner, tdv, ino, type, sizes[ino], marked);
  }

  // 3. the tree
  const refs = new Uint32Array(n);
  const subdirs = new Uint32Array(n);
  const reached = new Uint8Array(n);
  if (types[ROOT_INO] !== T_DIR) {
    problems.push(`the root inode ${ROOT_INO} is not a directory`);
  } else {
    if (parents[ROOT_INO] !== ROOT_INO) {
      problems.push(`the root's parent is ${parents[ROOT_INO]}, expected ${ROOT_INO}`);
    }
    reached[ROOT_INO] = 1;
    const queue = [ROOT_INO];
    while (queue.length > 0) {
      const dir = queue.pop()!;
      const nameProblems = forEachEntry(src, tdv, dir, sizes[dir], owner, (name, ino, detype) => {
        const where = `directory ${dir} entry ${JSON.stringify(name)}`;
        if (ino === ROOT_INO || ino >= n) {
          problems.push(`${where} names inode ${ino}, which no entry may name`);
          return;
        }
        if (types[ino] === T_FREE) {
          problems.push(`${where} names inode ${ino}, which is free`);
          return;
        }
        if (detype !== types[ino]) {
          problems.push(`${where} says type ${detype}, inode ${ino} has type ${types[ino]}`);
        }
        refs[ino]++;
        if (types[ino] !== T_DIR) return;
        subdirs[dir]++;
        if (reached[ino]) {
          problems.push(`directory ${ino} is linked more than once (again at ${where})`);
          return;
        }
        reached[ino] = 1;
        if (parents[ino] !== dir) {
          problems.push(`directory ${ino} records parent ${parents[ino]} but sits in ${dir}`);
        }
        queue.push(ino);
      });
      problems.push(...nameProblems);
    }
  }

  // 4. link counts and lost inodes
  let files = 0;
  let directories = 0;
  for (let ino = ROOT_INO; ino < n; ino++) {
    const type = types[ino];
    if (type === T_FREE) continue;
    if (type === T_DIR) directories++;
    else files++;
    const openUnlinked = nlinks[ino] === 0 && src.pinned(ino);
    if (ino !== ROOT_INO && refs[ino] === 0) {
      if (!openUnlinked) {
        problems.push(
          `inode ${ino} (${typeName(type)}, nlink ${nlinks[ino]}) is in use but lost: no entry names it`,
        );
      }
      continue;
    }
    const want = type === T_DIR ? 2 + subdirs[ino] : refs[ino];
    if (nlinks[ino] !== want) {
      problems.push(`inode ${ino} (${typeName(type)}) has nlink ${nlinks[ino]}, expected ${want}`);
    }
  }

  // 5. bitmap against ownership
  let blocksFree = 0;
  for (let b = sb.dataStart; b < sb.totalBlocks; b++) if (!marked(b)) blocksFree++;
  reportRuns(
    problems,
    sb.dataStart,
    sb.totalBlocks,
    (b) => marked(b) && owner[b] === 0,
    "",
    "marked used but owned by no inode (leaked)",
  );

  // 6. the mounted filesystem's counters
  if (src.freeBlocks !== blocksFree) {
    problems.push(
      `the free-block count (${src.freeBlocks}) differs from the bitmap (${blocksFree})`,
    );
  }
  if (src.freeInodes !== freeInodes) {
    problems.push(
      `the free-inode count (${src.freeInodes}) differs from the inode table (${freeInodes})`,
    );
  }

  return {
    clean: problems.length === 0,
    problems,
    files,
    directories,
    inodesUsed,
    inodesTotal: n - 1,
    blocksUsed: sb.totalBlocks - sb.dataStart - blocksFree,
    blocksFree,
    blocksTotal: sb.totalBlocks,
  };
}

/** Step 2 for one inode: its pointers, tables, block count, and size rules. */
function checkInodeBlocks(
  src: FsckSource,
  problems: string[],
  owner: Uint32Array,
  tdv: DataView,
  ino: number,
  type: number,
  size: number,
  marked: (b: number) => boolean,
): void {
  const sb = src.sb;
  const o = ino * INODE_BYTES;
  const what = `inode ${ino} (${typeName(type)})`;
  let held = 0;
  let lastData = -1;
  const mapped: number[] = [];
  /** Claim block p for this inode; false if it cannot be followed. */
  const claim = (p: number, role: string): boolean => {
    if (p < sb.dataStart || p >= sb.totalBlocks) {
      problems.push(`${what} points to block ${p} (${role}), outside the data region`);
      return false;
    }
    if (owner[p] !== 0) {
      problems.push(`block ${p} is owned twice: by inode ${owner[p]} and by inode ${ino}`);
      return false;
    }
    owner[p] = ino;
    held++;
    if (!marked(p)) problems.push(`block ${p} (${what}, ${role}) is in use but marked free`);
    return true;
  };
  const data = (p: number, fbn: number) => {
    if (p === 0 || !claim(p, `file block ${fbn}`)) return;
    lastData = Math.max(lastData, fbn);
    if (type === T_DIR) mapped.push(fbn);
  };
  for (let i = 0; i < NDIRECT; i++) data(tdv.getUint32(o + I_DIRECT + 4 * i, true), i);
  const ind = tdv.getUint32(o + I_INDIRECT, true);
  if (ind !== 0 && claim(ind, "indirect block")) {
    const t = new DataView(src.readBlock(ind).buffer);
    for (let j = 0; j < NINDIRECT; j++) data(t.getUint32(4 * j, true), NDIRECT + j);
  }
  const top = tdv.getUint32(o + I_DINDIRECT, true);
  if (top !== 0 && claim(top, "double-indirect block")) {
    const t = new DataView(src.readBlock(top).buffer);
    for (let i = 0; i < NINDIRECT; i++) {
      const l2 = t.getUint32(4 * i, true);
      if (l2 === 0 || !claim(l2, "second-level block")) continue;
      const t2 = new DataView(src.readBlock(l2).buffer);
      const base = NDIRECT + NINDIRECT + i * NINDIRECT;
      for (let j = 0; j < NINDIRECT; j++) data(t2.getUint32(4 * j, true), base + j);
    }
  }
  const recorded = tdv.getUint32(o + I_BLOCKS, true);
  if (recorded !== held) problems.push(`${what} records ${recorded} blocks, holds ${held}`);
  if (size > MAX_FILE_SIZE) problems.push(`${what} has size ${size}, past the 4 GiB limit`);
  const sizeBlocks = Math.ceil(size / BLOCK_SIZE);
  if (lastData >= sizeBlocks) {
    problems.push(`${what} has block ${lastData} mapped past its size ${size}`);
  }
  if (type === T_DIR) {
    if (size % BLOCK_SIZE !== 0) problems.push(`${what} has size ${size}, not whole blocks`);
    else if (mapped.length !== sizeBlocks || lastData !== sizeBlocks - 1) {
      problems.push(`${what} has holes: ${mapped.length} of ${sizeBlocks} blocks mapped`);
    }
  } else if (size % BLOCK_SIZE !== 0 && lastData === sizeBlocks - 1) {
    const p = blockOf(src, tdv, o, lastData);
    if (p !== 0) {
      const b = src.readBlock(p);
      if (b.subarray(size % BLOCK_SIZE).some((x) => x !== 0)) {
        problems.push(`${what}: the bytes of its last block past its size are not zero`);
      }
    }
  }
}

/** The block of file block `fbn` of the inode at byte `o` of the table (0 if none). */
function blockOf(src: FsckSource, tdv: DataView, o: number, fbn: number): number {
  if (fbn < NDIRECT) return tdv.getUint32(o + I_DIRECT + 4 * fbn, true);
  fbn -= NDIRECT;
  if (fbn < NINDIRECT) {
    const ind = tdv.getUint32(o + I_INDIRECT, true);
    return ind === 0 ? 0 : new DataView(src.readBlock(ind).buffer).getUint32(4 * fbn, true);
  }
  fbn -= NINDIRECT;
  const top = tdv.getUint32(o + I_DINDIRECT, true);
  if (top === 0) return 0;
  const l2 = new DataView(src.readBlock(top).buffer).getUint32(
    4 * Math.floor(fbn / NINDIRECT),
    true,
  );
  return l2 === 0
    ? 0
    : new DataView(src.readBlock(l2).buffer).getUint32(4 * (fbn % NINDIRECT), true);
}

/**
 * Call `visit` for each entry of directory `dir` (only its blocks this inode owns); returns
 * the problems with the entries' names.
 */
function forEachEntry(
  src: FsckSource,
  tdv: DataView,
  dir: number,
  size: number,
  owner: Uint32Array,
  visit: (name: string, ino: number, type: number) => void,
): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const o = dir * INODE_BYTES;
  const nb = Math.floor(size / BLOCK_SIZE);
  for (let fbn = 0; fbn < nb; fbn++) {
    const p = blockOf(src, tdv, o, fbn);
    if (p === 0 || p >= owner.length || owner[p] !== dir) continue;
    const d = src.readBlock(p);
    const dv = new DataView(d.buffer);
    for (let s = 0; s < DIRENTS_PER_BLOCK; s++) {
      const e = s * DIRENT_BYTES;
      const ino = dv.getUint32(e + DE_INO, true);
      if (ino === 0) continue;
      const len = d[e + DE_NAMELEN];
      const bytes = d.subarray(e + DE_NAME, e + DE_NAME + len);
      const name = decoder.decode(bytes);
      const where = `directory ${dir} block ${fbn} slot ${s}`;
      if (len === 0 || bytes.includes(0x2f) || bytes.includes(0) || name === "." || name === "..") {
        problems.push(`${where} has an invalid name ${JSON.stringify(name)}`);
      }
      if (names.has(name))
        problems.push(`${where}: the name ${JSON.stringify(name)} appears twice`);
      names.add(name);
      visit(name, ino, d[e + DE_TYPE]);
    }
  }
  return problems;
}

/** Report each run of blocks in [from, to) where `bad` holds as one problem. */
function reportRuns(
  problems: string[],
  from: number,
  to: number,
  bad: (b: number) => boolean,
  noun: string,
  what: string,
): void {
  let start = -1;
  for (let b = from; b <= to; b++) {
    const isBad = b < to && bad(b);
    if (isBad && start < 0) start = b;
    if (!isBad && start >= 0) {
      const range = b - 1 === start ? `block ${start}` : `blocks ${start}-${b - 1}`;
      problems.push(`${noun ? `${noun} ` : ""}${range} ${what}`);
      start = -1;
    }
  }
}

function typeName(type: number): string {
  return type === T_DIR ? "dir" : type === T_FILE ? "file" : `type ${type}`;
}
