/**
 * cp: copy a file inside the machine's filesystem with a read/write loop through user memory —
 * every byte goes from the storage domain into this process's heap (copyout) and back (copyin).
 * Ends with fsync, so the copy is durable when cp exits 0.
 *
 *   exocore run programs/cp.js SRC DST --disk IMAGE [--buffer BYTES]
 */

import {
  close,
  free,
  fsync,
  type Green,
  malloc,
  O_CREAT,
  O_RDONLY,
  O_TRUNC,
  O_WRONLY,
  open,
  print,
  read,
  write,
} from "../src/libos/index.js";

function* fail(what: string, r: number): Green {
  yield* print(`cp: ${what}: error ${-r}\n`, 2);
  return 1;
}

export function* main(args: readonly string[]): Green {
  const [src, dst] = args;
  if (src === undefined || dst === undefined) {
    yield* print("usage: cp SRC DST [BUFFER_BYTES]\n", 2);
    return 2;
  }
  const size = Number(args[2] ?? 64 * 1024);
  const from = yield* open(src, O_RDONLY);
  if (from < 0) return yield* fail(`open ${src}`, from);
  const to = yield* open(dst, O_WRONLY | O_CREAT | O_TRUNC);
  if (to < 0) return yield* fail(`open ${dst}`, to);
  const buf = malloc(size);
  if (buf === 0) return yield* fail("malloc", -12);
  let total = 0;
  for (;;) {
    const n = yield* read(from, buf, size);
    if (n < 0) return yield* fail(`read ${src}`, n);
    if (n === 0) break;
    for (let done = 0; done < n; ) {
      const w = yield* write(to, buf + done, n - done);
      if (w < 0) return yield* fail(`write ${dst}`, w);
      done += w;
    }
    total += n;
  }
  free(buf);
  const s = yield* fsync(to);
  if (s < 0) return yield* fail(`fsync ${dst}`, s);
  yield* close(from);
  yield* close(to);
  yield* print(`cp: ${total} bytes ${src} -> ${dst}\n`);
  return 0;
}
