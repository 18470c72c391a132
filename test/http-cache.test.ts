/**
 * http-cache: the server's cache of small static files (programs/http/cache.ts) — a copy is
 * served only while a fresh stat shows the inode, size, mtime and ctime it was read under; a
 * file is kept only once it has settled (its times a second old), whole, and small enough;
 * the bytes held stay under the bound, oldest out first. Then on a real machine: the server
 * keeps answering with the file's current contents while another program on the same machine
 * rewrites it in place (same size, same inode) and truncates it.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FileCache, type FileVersion } from "../programs/http/cache.js";
import { InvalidArgumentError } from "../src/errors.js";
import {
  buildSiteImage,
  type RunningServer,
  siteDir,
  startHttpServer,
} from "./fixtures/http-server-machine.js";

const NOW = 1_700_000_000_000;
const v = (over: Partial<FileVersion> = {}): FileVersion => ({
  ino: 5,
  size: 4,
  mtimeMs: NOW - 5000,
  ctimeMs: NOW - 5000,
  ...over,
});
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test("a kept copy is served only under exactly the version it was read under", () => {
  const c = new FileCache();
  c.put("/a", v(), bytes("abcd"), NOW);
  assert.deepEqual(c.get("/a", v()), bytes("abcd"));
  for (const changed of [{ ino: 6 }, { size: 5 }, { mtimeMs: NOW - 10 }, { ctimeMs: NOW - 10 }]) {
    c.put("/a", v(), bytes("abcd"), NOW);
    assert.equal(c.get("/a", v(changed)), null, `changed ${JSON.stringify(changed)}`);
    assert.equal(c.size, 0, "a stale copy is dropped");
    assert.equal(c.bytes, 0);
  }
  assert.equal(c.get("/b", v()), null);
  assert.equal(c.hits, 1);
});

test("only settled, whole, small files are kept", () => {
  const c = new FileCache({ maxFileBytes: 8, settledMs: 1000 });
  c.put("/young", v({ mtimeMs: NOW - 999 }), bytes("abcd"), NOW);
  c.put("/young-ctime", v({ ctimeMs: NOW - 1 }), bytes("abcd"), NOW);
  c.put("/partial", v({ size: 10 }), bytes("abcd"), NOW);
  c.put("/big", v({ size: 9 }), bytes("123456789"), NOW);
  assert.equal(c.size, 0);
  c.put("/settled", v({ mtimeMs: NOW - 1000, ctimeMs: NOW - 1000 }), bytes("abcd"), NOW);
  assert.equal(c.size, 1);
});

test("the bytes held stay under the bound; the oldest copy goes first", () => {
  const c = new FileCache({ maxBytes: 10, maxFileBytes: 4 });
  c.put("/1", v(), bytes("1111"), NOW);
  c.put("/2", v(), bytes("2222"), NOW);
  c.put("/3", v(), bytes("3333"), NOW);
  assert.equal(c.bytes, 8);
  assert.equal(c.get("/1", v()), null, "the first one made room for the third");
  assert.deepEqual(c.get("/3", v()), bytes("3333"));
  c.put("/3", v(), bytes("3x3x"), NOW); // a new copy replaces the old one
  assert.equal(c.bytes, 8);
  assert.deepEqual(c.get("/3", v()), bytes("3x3x"));
});

test("options are checked", () => {
  assert.throws(() => new FileCache({ maxBytes: -1 }), InvalidArgumentError);
  assert.throws(() => new FileCache({ maxBytes: 4, maxFileBytes: 5 }), InvalidArgumentError);
  assert.throws(() => new FileCache({ settledMs: 0.5 }), InvalidArgumentError);
});

// ---- on a machine ----

let work = "";
let server: RunningServer | null = null;
const REWRITE = fileURLToPath(new URL("./fixtures/programs/http-rewrite.js", import.meta.url));

before(async () => {
  work = mkdtempSync(join(tmpdir(), "exocore-http-cache-"));
  const image = join(work, "site.img");
  buildSiteImage(image);
  server = await startHttpServer(image, ["0", "/site"]);
});

after(async () => {
  await server?.m.shutdown();
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${server!.port}${path}`);
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()).toString("latin1") };
}

test("the server answers with the current contents while another program rewrites the file", async () => {
  const original = readFileSync(join(siteDir, "index.html"), "latin1");
  // The image was just made: wait until its files have settled, so that they are cached.
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < 6; i++) assert.equal((await get("/index.html")).body, original);
  // Same inode, same size, other bytes: only mtime (and ctime) tell the cached copy is stale.
  const same = "<!-- rewritten -->".padEnd(original.length, "x");
  assert.equal(same.length, original.length);
  assert.equal(await server!.m.run(REWRITE, ["/site/index.html", same]), 0);
  for (let i = 0; i < 6; i++) assert.equal((await get("/index.html")).body, same);
  // Truncated and rewritten shorter, within the same second as the last change.
  assert.equal(await server!.m.run(REWRITE, ["/site/index.html", "short", "trunc"]), 0);
  for (let i = 0; i < 6; i++) assert.equal((await get("/index.html")).body, "short");
  assert.equal((await get("/no-such-file.html")).status, 404);
});
