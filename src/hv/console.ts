/**
 * console: the machine's console device — a ring of 64-byte entries from the system domain to
 * the hypervisor, each carrying up to 52 bytes written to fd 1 or 2.
 *
 * Entry payload: word 0 fd, word 1 byte count, words 2…14 the bytes. Being in shared memory,
 * the output of a write is published before the write's completion is: whoever sees a program
 * exit can drain the console first and lose nothing (messages from two workers have no order).
 */

import type { Ring } from "../shm/index.js";

export const CONSOLE_BYTES_PER_ENTRY = 52;
const kFd = 0;
const kLen = 1;
const kBytes = 2;

/**
 * Domain side: append `bytes` for `fd`, one entry per 52 bytes, into the ring's open batch (the
 * caller publishes). When the ring is full, `waitForSpace` is called: it must publish what is
 * pending and wait until the hypervisor has taken entries (back-pressure, nothing dropped).
 */
export function consoleWrite(
  ring: Ring,
  fd: number,
  bytes: Uint8Array,
  scratch: DataView,
  batch: { n: number },
  waitForSpace: () => void,
): void {
  const i32 = ring.i32;
  for (let start = 0; start < bytes.length; start += CONSOLE_BYTES_PER_ENTRY) {
    while (ring.reserve(1) === 0) {
      waitForSpace();
      batch.n = 0;
    }
    const at = ring.slot(batch.n++);
    const len = Math.min(CONSOLE_BYTES_PER_ENTRY, bytes.length - start);
    i32[at + kFd] = fd;
    i32[at + kLen] = len;
    for (let w = 0; w < 13; w++) {
      for (let b = 0; b < 4; b++) {
        const k = start + w * 4 + b;
        scratch.setUint8(b, k < start + len ? (bytes[k] as number) : 0);
      }
      i32[at + kBytes + w] = scratch.getInt32(0, true);
    }
  }
}

/** Hypervisor side: take every entry, decoding per fd (multi-byte characters may span entries). */
export class ConsoleReader {
  readonly #ring: Ring;
  readonly #decoders = [new TextDecoder(), new TextDecoder(), new TextDecoder()];
  readonly #buf = new Uint8Array(CONSOLE_BYTES_PER_ENTRY);
  readonly #view = new DataView(this.#buf.buffer);

  constructor(ring: Ring) {
    this.#ring = ring;
  }

  /** True when entries wait (the one consumer object's own view: a second one would be stale). */
  hasEntries(): boolean {
    return this.#ring.hasEntries();
  }

  drain(out: (fd: number, text: string) => void): number {
    const ring = this.#ring;
    const n = ring.peek(ring.capacity);
    for (let i = 0; i < n; i++) {
      const at = ring.entry(i);
      const fd = ring.i32[at + kFd] === 2 ? 2 : 1;
      const len = Math.min(ring.i32[at + kLen] as number, CONSOLE_BYTES_PER_ENTRY);
      for (let w = 0; w < 13; w++)
        this.#view.setInt32(w * 4, ring.i32[at + kBytes + w] as number, true);
      const text = (this.#decoders[fd] as InstanceType<typeof TextDecoder>).decode(
        this.#buf.subarray(0, len),
        { stream: true },
      );
      if (text.length > 0) out(fd, text);
    }
    ring.release();
    return n;
  }
}
