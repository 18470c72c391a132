/**
 * The network domain end to end: programs on the machine's cores serve real clients on the
 * host's loopback — TCP through the NIC's offload engine and the network domain's sockets,
 * UDP through the NIC's uplink, and UDP on a core's own VF with no domain in the path (XOS).
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { boot } from "../src/hv/machine.js";
import { startListening as start } from "./fixtures/listening.js";

const prog = (name: string) => fileURLToPath(new URL(`../programs/${name}.js`, import.meta.url));

/** Send `data` on a fresh connection, half-close, and collect everything echoed back. */
function echoOnce(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect(port, "127.0.0.1", () => c.end(data));
    c.on("data", (d) => chunks.push(d));
    c.on("end", () => resolve(Buffer.concat(chunks)));
    c.on("error", reject);
  });
}

test("a node:net client exchanges bytes with echo-server, on several connections in a row", async () => {
  const r = await start(prog("echo-server"), ["0", "3"]);
  try {
    for (let k = 0; k < 3; k++) {
      const data = Buffer.from(`hello ${k} `.repeat(100 * (k + 1)));
      assert.deepEqual(await echoOnce(r.port, data), data);
    }
    assert.equal(await r.status, 0);
    const nd = r.m.stats().find((s) => s.name === "domain.network");
    assert.ok(nd && nd.calls > 10, "the network domain served the socket calls");
  } finally {
    await r.m.shutdown();
  }
});

test("1,000 concurrent connections, every byte echoed in order", async () => {
  const n = 1000;
  const r = await start(prog("echo-server"), ["0", String(n)]);
  try {
    const sent: Buffer[] = [];
    const all = Array.from({ length: n }, (_, i) => {
      const data = Buffer.concat([Buffer.from(`conn ${i}:`), randomBytes(200 + (i % 7) * 300)]);
      sent.push(data);
      return echoOnce(r.port, data);
    });
    const got = await Promise.all(all);
    for (let i = 0; i < n; i++) assert.ok(got[i]?.equals(sent[i] as Buffer), `connection ${i}`);
    assert.equal(await r.status, 0);
  } finally {
    await r.m.shutdown();
  }
});

test("a large transfer to a slow reader loses nothing (back-pressure end to end)", async () => {
  const r = await start(prog("echo-server"), ["0", "1"]);
  try {
    const data = randomBytes(8 * 1024 * 1024);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const hash = createHash("sha256");
      let bytes = 0;
      const c = net.connect(r.port, "127.0.0.1", () => c.end(data));
      c.on("data", (d: Buffer) => {
        hash.update(d);
        bytes += d.length;
        c.pause(); // a slow reader: the echo's sends must wait, not drop
        setTimeout(() => c.resume(), 1);
      });
      c.on("end", () => resolve(Buffer.from(`${bytes}:${hash.digest("hex")}`)));
      c.on("error", reject);
    });
    const want = `${data.length}:${createHash("sha256").update(data).digest("hex")}`;
    assert.equal(got.toString(), want);
    assert.equal(await r.status, 0);
  } finally {
    await r.m.shutdown();
  }
});

test("nc talks to echo-server", { skip: !(await has("nc")) && "nc is not installed" }, async () => {
  const r = await start(prog("echo-server"), ["0", "1"]);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn("nc", ["-N", "127.0.0.1", String(r.port)]);
      let s = "";
      p.stdout.on("data", (d) => {
        s += d;
      });
      p.on("close", () => resolve(s));
      p.on("error", reject);
      p.stdin.end("line one\nline two\n");
    });
    assert.equal(out, "line one\nline two\n");
    assert.equal(await r.status, 0);
  } finally {
    await r.m.shutdown();
  }
});

/** Send datagrams to `port` and collect the replies until `n` arrived (or 5 s passed). */
async function udpRoundTrips(port: number, payloads: Buffer[]): Promise<Buffer[]> {
  const sock = dgram.createSocket("udp4");
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    sock.on("message", (m) => {
      got.push(m);
      if (got.length === payloads.length) resolve();
    });
    setTimeout(resolve, 5000).unref();
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  for (const p of payloads) sock.send(p, port, "127.0.0.1");
  await done;
  sock.close();
  return got;
}

test("udp-echo answers datagrams through the network domain", async () => {
  const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(1 + i * 70));
  const r = await start(prog("udp-echo"), ["0", String(payloads.length)]);
  try {
    const got = await udpRoundTrips(r.port, payloads);
    if (got.length !== payloads.length) {
      // Say where they went: the NIC's counters (a frame with no RX buffer posted is dropped
      // and counted) and what the program printed (a failed sendto says so).
      const nic = JSON.stringify(r.m.devices?.stats().nic);
      assert.fail(`${got.length} of ${payloads.length} echoed; NIC ${nic}; program: ${r.out()}`);
    }
    const key = (b: Buffer) => b.toString("hex");
    assert.deepEqual(got.map(key).sort(), payloads.map(key).sort());
    assert.equal(await r.status, 0);
  } finally {
    await r.m.shutdown();
  }
});

test("bypass-echo answers datagrams on core 0's own VF, with no domain in the path", async () => {
  const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(10 + i * 50));
  const r = await start(prog("bypass-echo"), ["0", String(payloads.length)], {
    network: false,
    bypassCores: [0],
  });
  try {
    assert.equal(
      r.m.layout.domains.includes("network"),
      false,
      "no network domain on this machine",
    );
    const got = await udpRoundTrips(r.port, payloads);
    const key = (b: Buffer) => b.toString("hex");
    assert.deepEqual(got.map(key).sort(), payloads.map(key).sort());
    assert.equal(await r.status, 0);
  } finally {
    await r.m.shutdown();
  }
});

test("socket errors come back as errno and the domain keeps serving", async () => {
  // Two servers on one port: the second listen fails with EADDRINUSE; the first still echoes.
  const a = await start(prog("echo-server"), ["0", "1"]);
  try {
    let out = "";
    const m2 = await boot({
      cores: 1,
      memoryMiB: 16,
      network: true,
      stdout: (s) => {
        out += s;
      },
      stderr: (s) => {
        out += s;
      },
    });
    try {
      assert.equal(await m2.run(prog("echo-server"), [String(a.port), "1"]), 1);
      assert.match(out, /cannot listen on \d+: error 98/); // EADDRINUSE
    } finally {
      await m2.shutdown();
    }
    const data = Buffer.from("still here");
    assert.deepEqual(await echoOnce(a.port, data), data);
  } finally {
    await a.m.shutdown();
  }
});

const fixture = (name: string) =>
  fileURLToPath(new URL(`./fixtures/programs/${name}.js`, import.meta.url));

test("poll waits on a listener and many connections in one green thread", async () => {
  const r = await start(fixture("pollecho"), ["5"]);
  try {
    const data = Array.from({ length: 5 }, (_, i) => Buffer.from(`poll client ${i} `.repeat(50)));
    const got = await Promise.all(data.map((d) => echoOnce(r.port, d)));
    for (const [i, g] of got.entries()) assert.deepEqual(g, data[i]);
    assert.equal(await r.status, 0);
    assert.match(r.out(), /served 5 connections in \d+ poll rounds/);
  } finally {
    await r.m.shutdown();
  }
});

test("a program connects out to a host server; a closed port gives ECONNREFUSED", async () => {
  const server = net.createServer((c) => {
    let got = "";
    c.on("data", (d) => {
      got += d;
    });
    c.on("end", () => c.end(`you said: ${got}`));
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as net.AddressInfo).port;
  const closed = net.createServer();
  await new Promise<void>((res) => closed.listen(0, "127.0.0.1", res));
  const dead = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((res) => closed.close(() => res()));
  let out = "";
  const m = await boot({
    cores: 2,
    memoryMiB: 16,
    network: true,
    stdout: (s) => {
      out += s;
    },
  });
  try {
    assert.equal(await m.run(fixture("connect"), [String(port), String(dead)]), 0);
    assert.match(out, /refused: -111\n/);
    assert.match(out, /got: you said: hello from inside\n/);
  } finally {
    await m.shutdown();
    server.close();
  }
});

async function has(cmd: string): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn("sh", ["-c", `command -v ${cmd}`]);
    p.on("close", (code) => resolve(code === 0));
    p.on("error", () => resolve(false));
  });
}
