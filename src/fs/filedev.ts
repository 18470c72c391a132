/**
 * filedev: a BlockDevice over a host file, with node:fs synchronous calls — what the mkfs, fs
 * and fsck commands run the filesystem on (src/cli/fs.ts), and what tests use for real files.
 *
 * Owns one file descriptor. The device has floor(size / 4096) blocks; flush() is fsync and a
 * FUA write is a write then fdatasync, so the durability contract of src/fs/blockdev.ts holds
 * with the host's page cache as the volatile write cache. Writes complete at once: plug() and
 * unplug() do nothing. Every host error becomes an IoError naming the file, with the host's
 * errno and the original error as its cause.
 *
 * Who calls: the CLI and tests, on one thread. close() when done.
 */

import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { EIO, EROFS } from "../abi/errno.js";
import { IoError } from "../errors.js";
import { BLOCK_SIZE, type BlockDevice } from "./blockdev.js";

export interface FileDeviceOptions {
  /** Open for reading only: writes and flushes throw IoError(EROFS). */
  readonly readOnly?: boolean;
}

export interface CreateFileDeviceOptions {
  /** Replace an existing file (else creating over one throws IoError(EEXIST)). */
  readonly overwrite?: boolean;
}

export class FileBlockDevice implements BlockDevice {
  readonly path: string;
  readonly blocks: number;
  readonly readOnly: boolean;
  #fd: number;

  private constructor(path: string, fd: number, blocks: number, readOnly: boolean) {
    this.path = path;
    this.#fd = fd;
    this.blocks = blocks;
    this.readOnly = readOnly;
  }

  /** Open an existing image. */
  static open(path: string, opts: FileDeviceOptions = {}): FileBlockDevice {
    const readOnly = opts.readOnly ?? false;
    const fd = host(path, "open", () => openSync(path, readOnly ? "r" : "r+"));
    try {
      const size = host(path, "stat", () => fstatSync(fd).size);
      return new FileBlockDevice(path, fd, Math.floor(size / BLOCK_SIZE), readOnly);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Create an image of `blocks` zero blocks (a sparse file where the host allows). */
  static create(path: string, blocks: number, opts: CreateFileDeviceOptions = {}): FileBlockDevice {
    const flags =
      constants.O_RDWR |
      constants.O_CREAT |
      (opts.overwrite ? constants.O_TRUNC : constants.O_EXCL);
    const fd = host(path, "create", () => openSync(path, flags, 0o644));
    try {
      host(path, "size", () => ftruncateSync(fd, blocks * BLOCK_SIZE));
      return new FileBlockDevice(path, fd, blocks, false);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  read(lba: number, count: number, dst: Uint8Array): void {
    this.#check("read", lba, count, dst);
    const bytes = count * BLOCK_SIZE;
    let done = 0;
    while (done < bytes) {
      const n = host(this.path, "read", () =>
        readSync(this.#fd, dst, done, bytes - done, lba * BLOCK_SIZE + done),
      );
      if (n === 0) {
        throw new IoError(`${this.path}: read past the end of the file at block ${lba}`, EIO);
      }
      done += n;
    }
  }

  readv(lba: number, count: number, dst: readonly Uint8Array[]): void {
    this.#check("read", lba, count, null);
    if (dst.length < count) {
      throw new IoError(`${this.path}: read of ${count} blocks got ${dst.length} buffers`, EIO);
    }
    for (let i = 0; i < count; i++) this.read(lba + i, 1, dst[i] as Uint8Array);
  }

  write(lba: number, count: number, src: Uint8Array, fua = false): void {
    this.#check("write", lba, count, src);
    const bytes = count * BLOCK_SIZE;
    let done = 0;
    while (done < bytes) {
      done += host(this.path, "write", () =>
        writeSync(this.#fd, src, done, bytes - done, lba * BLOCK_SIZE + done),
      );
    }
    if (fua) host(this.path, "fdatasync", () => fdatasyncSync(this.#fd));
  }

  plug(): void {}

  unplug(): void {}

  flush(): void {
    if (this.readOnly) throw new IoError(`${this.path}: flush of a read-only image`, EROFS);
    this.#open();
    host(this.path, "fsync", () => fsyncSync(this.#fd));
  }

  /** Close the file. The device refuses every call after. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    host(this.path, "close", () => closeSync(fd));
  }

  #open(): void {
    if (this.#fd < 0) throw new IoError(`${this.path}: the device is closed`, EIO);
  }

  #check(op: "read" | "write", lba: number, count: number, buf: Uint8Array | null): void {
    this.#open();
    if (op === "write" && this.readOnly) {
      throw new IoError(`${this.path}: write to a read-only image`, EROFS);
    }
    if (
      !Number.isInteger(lba) ||
      !Number.isInteger(count) ||
      lba < 0 ||
      count < 0 ||
      lba + count > this.blocks
    ) {
      throw new IoError(
        `${this.path}: ${op} of ${count} blocks at ${lba} is outside the image (${this.blocks} blocks)`,
        EIO,
      );
    }
    if (buf !== null && buf.length < count * BLOCK_SIZE) {
      throw new IoError(
        `${this.path}: ${op} of ${count} blocks needs ${count * BLOCK_SIZE} bytes, the buffer has ${buf.length}`,
        EIO,
      );
    }
  }
}

/** Run a host call; a host error becomes IoError("<path>: <what> failed: <message>"). */
function host<T>(path: string, what: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const errno = typeof e.errno === "number" ? Math.abs(e.errno) : EIO;
    const reason = e.code ? `${e.code}: ${describeCode(e.code, e.message)}` : String(err);
    throw new IoError(`${path}: ${what} failed (${reason})`, errno, { cause: err });
  }
}

function describeCode(code: string, message: string): string {
  const m = /^[A-Z]+: ([^,]+)/.exec(message);
  return m ? m[1] : code;
}
