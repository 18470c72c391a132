/**
 * bench/lib/chart: the SVG it writes is a well-formed standalone document (checked by a small
 * stack parser below, no dependencies), caller text is escaped, the legend names every series
 * with its p50, the document stays small for 12 × 200k samples, axis ticks are ordered, and bad
 * input is refused with InvalidArgumentError.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { barChartSvg, type LatencySeries, latencyChartSvg } from "../bench/lib/chart.js";
import { InvalidArgumentError } from "../src/errors.js";

// ---------------------------------------------------------------------------------------------
// A minimal XML parser: enough to prove well-formedness of what chart.ts writes (prolog,
// comments, elements, double- or single-quoted attributes, text, the five named entities and
// numeric references). It throws on anything else, so an unescaped `<` or `&` fails the test.
// ---------------------------------------------------------------------------------------------

interface XmlElement {
  name: string;
  attrs: Map<string, string>;
  children: XmlNode[];
}
type XmlNode = XmlElement | string;

const NAMED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function isNameStart(c: string): boolean {
  return (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c === "_" || c === ":";
}
function isNameChar(c: string): boolean {
  return isNameStart(c) || (c >= "0" && c <= "9") || c === "-" || c === ".";
}
function isSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r";
}

function parseXml(src: string): XmlElement {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`XML: ${why} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  const skipSpace = () => {
    while (i < src.length && isSpace(src[i]!)) i++;
  };
  const name = (): string => {
    const start = i;
    if (!isNameStart(src[i] ?? "")) fail("expected a name");
    while (i < src.length && isNameChar(src[i]!)) i++;
    return src.slice(start, i);
  };
  /** Decode text up to (not including) `stop`, checking each entity reference. */
  const chars = (stop: string): string => {
    let out = "";
    while (i < src.length && src[i] !== stop) {
      const c = src[i]!;
      if (c === "<") fail("raw '<' in text or attribute");
      if (c !== "&") {
        out += c;
        i++;
        continue;
      }
      const semi = src.indexOf(";", i);
      if (semi < 0 || semi - i > 10) fail("unterminated entity");
      const ent = src.slice(i + 1, semi);
      if (ent.startsWith("#x")) out += String.fromCodePoint(Number.parseInt(ent.slice(2), 16));
      else if (ent.startsWith("#")) out += String.fromCodePoint(Number.parseInt(ent.slice(1), 10));
      else if (ent in NAMED) out += NAMED[ent];
      else fail(`unknown entity &${ent};`);
      i = semi + 1;
    }
    return out;
  };
  const skipMisc = () => {
    for (;;) {
      skipSpace();
      if (src.startsWith("<?", i)) {
        const end = src.indexOf("?>", i);
        if (end < 0) fail("unterminated processing instruction");
        i = end + 2;
      } else if (src.startsWith("<!--", i)) {
        const end = src.indexOf("-->", i);
        if (end < 0) fail("unterminated comment");
        i = end + 3;
      } else return;
    }
  };
  const element = (): XmlElement => {
    if (src[i] !== "<") fail("expected '<'");
    i++;
    const el: XmlElement = { name: name(), attrs: new Map(), children: [] };
    for (;;) {
      const before = i;
      skipSpace();
      if (src.startsWith("/>", i)) {
        i += 2;
        return el;
      }
      if (src[i] === ">") {
        i++;
        break;
      }
      if (i === before) fail("expected space before attribute");
      const key = name();
      if (el.attrs.has(key)) fail(`duplicate attribute ${key}`);
      skipSpace();
      if (src[i] !== "=") fail("expected '='");
      i++;
      skipSpace();
      const q = src[i];
      if (q !== '"' && q !== "'") fail("expected a quoted value");
      i++;
      el.attrs.set(key, chars(q!));
      if (src[i] !== q) fail("unterminated attribute");
      i++;
    }
    for (;;) {
      if (i >= src.length) fail(`unclosed <${el.name}>`);
      if (src.startsWith("</", i)) {
        i += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}>`);
        skipSpace();
        if (src[i] !== ">") fail("expected '>'");
        i++;
        return el;
      }
      if (src.startsWith("<!--", i)) skipMisc();
      else if (src[i] === "<") el.children.push(element());
      else el.children.push(chars("<"));
    }
  };
  skipMisc();
  const root = element();
  skipMisc();
  if (i !== src.length) fail("content after the root element");
  return root;
}

function* walk(el: XmlElement): Generator<XmlElement> {
  yield el;
  for (const c of el.children) if (typeof c !== "string") yield* walk(c);
}

/** The text of an element without the text of its <title> children (tooltips). */
function textOf(el: XmlElement): string {
  return el.children
    .map((c) => (typeof c === "string" ? c : c.name === "title" ? "" : textOf(c)))
    .join("");
}

function byClass(root: XmlElement, cls: string): XmlElement[] {
  return [...walk(root)].filter((e) => (e.attrs.get("class") ?? "").split(" ").includes(cls));
}

test("the XML checker used here rejects what a broken chart would produce", () => {
  const bad = [
    "<svg><g></svg>",
    "<svg><g></g>",
    "<svg><text>a & b</text></svg>",
    "<svg><text>a < b</text></svg>",
    '<svg><text x="a<b">t</text></svg>',
    '<svg><text x="1" x="2">t</text></svg>',
    '<svg><text x="1>t</text></svg>',
    "<svg/><svg/>",
    "<svg>&nbsp;</svg>",
  ];
  for (const src of bad) assert.throws(() => parseXml(src), /^Error: XML:/, src);
  const ok = parseXml('<?xml version="1.0"?>\n<svg a="&quot;&#39;"><t>&lt;&amp;</t><g/></svg>\n');
  assert.equal(ok.attrs.get("a"), `"'`);
  assert.equal(textOf(ok), "<&");
});

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/** Deterministic PRNG (mulberry32): the same samples every run. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Log-normal samples around `medianNs` with a 1% Pareto tail, in random order. */
function latencies(n: number, medianNs: number, seed: number): Float64Array {
  const r = prng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    out[i] = r() < 0.01 ? medianNs * 1.5 * (1 - r()) ** (-1 / 1.8) : medianNs * Math.exp(0.2 * g);
  }
  return out;
}

/** 1001 samples 1..1001 ns, shuffled: the median is exactly 501 ns. */
function knownMedian(): Float64Array {
  const out = Float64Array.from({ length: 1001 }, (_, k) => k + 1);
  const r = prng(7);
  for (let k = out.length - 1; k > 0; k--) {
    const j = Math.floor(r() * (k + 1));
    [out[k], out[j]] = [out[j]!, out[k]!];
  }
  return out;
}

const FIVE: LatencySeries[] = [
  { name: "spsc ring", samplesNs: latencies(20_000, 300, 1) },
  { name: "mpmc ring", samplesNs: latencies(20_000, 800, 2) },
  { name: "postMessage", samplesNs: latencies(20_000, 70_000, 3) },
  { name: "MessageChannel", samplesNs: latencies(20_000, 95_000, 4) },
  { name: "piscina", samplesNs: latencies(20_000, 140_000, 5), color: "#333333" },
];
const OPTS = { title: "Round trips", subtitle: "4 cores · Node v20" };

function assertInvalid(fn: () => unknown, mention: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${err}`);
    assert.equal(err.code, "EXO_ERR_INVALID_ARG");
    assert.match(err.message, mention);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Latency chart
// ---------------------------------------------------------------------------------------------

test("latency chart is a well-formed standalone SVG with a white background and system fonts", () => {
  const svg = latencyChartSvg(FIVE, OPTS);
  assert.ok(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>'));
  const root = parseXml(svg);
  assert.equal(root.name, "svg");
  assert.equal(root.attrs.get("xmlns"), "http://www.w3.org/2000/svg");
  assert.match(root.attrs.get("viewBox") ?? "", /^0 0 960 \d+$/);
  assert.match(root.attrs.get("font-family") ?? "", /system-ui.*sans-serif$/);
  const bg = root.children.find((c): c is XmlElement => typeof c !== "string");
  assert.equal(bg?.name, "rect");
  assert.equal(bg?.attrs.get("fill"), "#fff");
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  assert.equal(textOf(byClass(root, "title")[0]!), "Round trips");
  assert.equal(textOf(byClass(root, "subtitle")[0]!), "4 cores · Node v20");
});

test('latency chart escapes & < > " in series names, title and subtitle', () => {
  const nasty = "a<b> & \"c\" 'd'";
  const svg = latencyChartSvg([{ name: nasty, samplesNs: latencies(1000, 500, 9) }], {
    title: `t ${nasty}`,
    subtitle: `s ${nasty}`,
  });
  assert.ok(!svg.includes(nasty), "raw text must not appear");
  assert.ok(svg.includes("a&lt;b&gt; &amp; &quot;c&quot;"));
  const root = parseXml(svg);
  assert.deepEqual(
    byClass(root, "legend-name").map(textOf),
    [nasty],
    "escaped text round-trips through a parser",
  );
  assert.equal(textOf(byClass(root, "title")[0]!), `t ${nasty}`);
  assert.equal(textOf(byClass(root, "subtitle")[0]!), `s ${nasty}`);
});

test("latency chart lists every series in the legend, each with a distinct colour", () => {
  const root = parseXml(latencyChartSvg(FIVE, OPTS));
  const legend = byClass(root, "legend")[0]!;
  assert.deepEqual(
    byClass(legend, "legend-name").map(textOf),
    FIVE.map((s) => s.name),
  );
  const colours = byClass(root, "curve").map((e) => e.attrs.get("stroke"));
  assert.equal(colours.length, FIVE.length);
  assert.equal(new Set(colours).size, FIVE.length);
  assert.equal(colours[4], "#333333", "a series' own colour is used");
});

test("latency chart shows each series' p50 in the legend and next to its marker", () => {
  const root = parseXml(
    latencyChartSvg(
      [
        { name: "known", samplesNs: knownMedian() },
        { name: "slow", samplesNs: latencies(5000, 100_000, 3) },
      ],
      OPTS,
    ),
  );
  const p50s = byClass(root, "legend-p50").map(textOf);
  assert.equal(p50s[0], "501 ns");
  assert.match(p50s[1]!, /^\d+(\.\d+)? µs$/);
  const labels = byClass(root, "marker-label").map(textOf);
  assert.ok(labels.includes("501 ns"), `marker labels: ${labels.join(", ")}`);
});

test("latency chart does not modify the caller's samples", () => {
  const samples = knownMedian();
  const before = Float64Array.from(samples);
  latencyChartSvg([{ name: "x", samplesNs: samples }], OPTS);
  assert.deepEqual(samples, before);
});

test("latency chart of 12 series × 200k samples stays under 200 KB and well-formed", () => {
  const series = Array.from({ length: 12 }, (_, k) => ({
    name: `method ${k}`,
    samplesNs: latencies(200_000, 300 * 1.8 ** k, 100 + k),
  }));
  const svg = latencyChartSvg(series, OPTS);
  const bytes = Buffer.byteLength(svg, "utf8");
  assert.ok(bytes < 200_000, `SVG is ${bytes} bytes`);
  const root = parseXml(svg);
  assert.equal(byClass(root, "curve").length, 12);
  assert.equal(byClass(root, "legend-name").length, 12);
});

test("latency chart x ticks are 1-2-5 values in increasing order, left to right", () => {
  const root = parseXml(latencyChartSvg(FIVE, OPTS));
  const ticks = byClass(root, "x-tick");
  assert.ok(ticks.length >= 3, `only ${ticks.length} x ticks`);
  const ns = ticks.map((t) => Number(t.attrs.get("data-ns")));
  const xs = ticks.map((t) => Number(t.attrs.get("x")));
  for (let k = 1; k < ticks.length; k++) {
    assert.ok(ns[k]! > ns[k - 1]!, `tick values ${ns.join(", ")}`);
    assert.ok(xs[k]! > xs[k - 1]!, `tick positions ${xs.join(", ")}`);
  }
  for (const v of ns) {
    const mantissa = Number((v / 10 ** Math.floor(Math.log10(v))).toPrecision(6));
    assert.ok([1, 2, 5].includes(mantissa), `${v} is not a 1-2-5 value`);
  }
  assert.ok(ns.includes(1000), "the decade 1 µs is labelled");
  assert.equal(textOf(ticks[ns.indexOf(1000)]!), "1 µs");
});

test("latency chart y ticks climb from min through p50 to p99.99 on a tail-stretched axis", () => {
  const root = parseXml(latencyChartSvg(FIVE, OPTS));
  const ticks = byClass(root, "y-tick");
  assert.deepEqual(ticks.map(textOf), ["min", "p50", "p90", "p99", "p99.9", "p99.99"]);
  const ys = ticks.map((t) => Number(t.attrs.get("y")));
  for (let k = 1; k < ys.length; k++) assert.ok(ys[k]! < ys[k - 1]!, `y ${ys.join(", ")}`);
  // Each "nine" gets the same height: p90→p99 spans what p99→p99.9 spans.
  assert.ok(Math.abs(ys[2]! - ys[3]! - (ys[3]! - ys[4]!)) < 0.25);
});

test("latency chart copes with one sample, equal samples and tiny series", () => {
  const svg = latencyChartSvg(
    [
      { name: "one", samplesNs: new Float64Array([1234]) },
      { name: "flat", samplesNs: new Float64Array(50).fill(100) },
      { name: "ten", samplesNs: Float64Array.from({ length: 10 }, (_, k) => 2 ** k) },
    ],
    OPTS,
  );
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  const root = parseXml(svg);
  assert.deepEqual(byClass(root, "legend-p50").map(textOf).slice(0, 2), ["1.23 µs", "100 ns"]);
});

test("latency chart output is deterministic", () => {
  assert.equal(latencyChartSvg(FIVE, OPTS), latencyChartSvg(FIVE, OPTS));
});

test("latency chart refuses no series and series with zero samples", () => {
  assertInvalid(() => latencyChartSvg([], OPTS), /non-empty array/);
  assertInvalid(
    () => latencyChartSvg([FIVE[0]!, { name: "idle", samplesNs: new Float64Array(0) }], OPTS),
    /series\[1\] \("idle"\)\.samplesNs is empty/,
  );
});

test("latency chart refuses samples that are not finite positive nanoseconds", () => {
  for (const bad of [Number.NaN, -1, 0, Number.POSITIVE_INFINITY]) {
    const samplesNs = new Float64Array([100, 200, bad]);
    assertInvalid(
      () => latencyChartSvg([{ name: "x", samplesNs }], OPTS),
      /samplesNs\[2\] must be a finite positive number/,
    );
  }
});

test("latency chart refuses bad options and colours with precise messages", () => {
  const one = [FIVE[0]!];
  assertInvalid(
    () => latencyChartSvg(one, { title: "t", width: 100 }),
    /^width must be an integer/,
  );
  assertInvalid(() => latencyChartSvg(one, { title: "t", height: 50 }), /^height must be at least/);
  assertInvalid(
    () => latencyChartSvg([{ ...FIVE[0]!, color: 'red" onload="x' }], OPTS),
    /color must be a CSS colour/,
  );
  assertInvalid(() => latencyChartSvg([{ name: "", samplesNs: knownMedian() }], OPTS), /name/);
});

test("latency chart honours width and height", () => {
  const root = parseXml(latencyChartSvg(FIVE, { title: "t", width: 1200, height: 700 }));
  assert.equal(root.attrs.get("viewBox"), "0 0 1200 700");
});

// ---------------------------------------------------------------------------------------------
// Bar chart
// ---------------------------------------------------------------------------------------------

const BARS = [
  { label: "spsc <ring> & co", value: 3_200_000, note: "±1.5%" },
  { label: "postMessage", value: 14_200 },
  { label: "piscina", value: 7050, note: 'n="30"' },
];

test("bar chart is well-formed, escapes labels and notes, and labels every value", () => {
  const svg = barChartSvg(BARS, { title: "Round trips / s", unit: "ops/s" });
  const root = parseXml(svg);
  assert.equal(root.attrs.get("xmlns"), "http://www.w3.org/2000/svg");
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  assert.deepEqual(
    byClass(root, "bar-label").map(textOf),
    BARS.map((b) => b.label),
  );
  assert.deepEqual(byClass(root, "bar-value").map(textOf), [
    "3.2 M ops/s±1.5%",
    "14.2 k ops/s",
    '7.05 k ops/sn="30"', // the note is a <tspan> set off by dx, not by a space
  ]);
});

test("bar chart bars grow with their values on a linear scale from zero", () => {
  const root = parseXml(barChartSvg(BARS, { title: "t", unit: "ops/s" }));
  const widths = [...walk(root)]
    .filter((e) => e.name === "rect" && e.attrs.get("rx") === "2")
    .map((e) => Number(e.attrs.get("width")));
  assert.equal(widths.length, 3);
  assert.ok(widths[0]! > widths[1]! && widths[1]! > widths[2]!);
  const ticks = byClass(root, "x-tick").map((t) => Number(t.attrs.get("data-value")));
  assert.equal(ticks[0], 0);
});

test("bar chart log-scale ticks are ordered 1-2-5 values and cover every value", () => {
  const root = parseXml(barChartSvg(BARS, { title: "t", unit: "ops/s", logScale: true }));
  const ticks = byClass(root, "x-tick");
  const vs = ticks.map((t) => Number(t.attrs.get("data-value")));
  const xs = ticks.map((t) => Number(t.attrs.get("x")));
  assert.ok(vs.length >= 3);
  for (let k = 1; k < vs.length; k++) {
    assert.ok(vs[k]! > vs[k - 1]! && xs[k]! > xs[k - 1]!, `ticks ${vs.join(", ")}`);
  }
  assert.ok(vs[0]! < 7050 && vs.at(-1)! >= 3_200_000);
});

test("bar chart in ns formats values as durations", () => {
  const root = parseXml(barChartSvg([{ label: "p50", value: 70_200 }], { title: "t", unit: "ns" }));
  assert.deepEqual(byClass(root, "bar-value").map(textOf), ["70.2 µs"]);
});

test("bar chart refuses empty data, negative values and non-positive values on a log scale", () => {
  assertInvalid(() => barChartSvg([], { title: "t", unit: "x" }), /non-empty array/);
  assertInvalid(
    () => barChartSvg([{ label: "a", value: -1 }], { title: "t", unit: "x" }),
    /data\[0\] \("a"\)\.value must be a finite number ≥ 0/,
  );
  assertInvalid(
    () => barChartSvg([{ label: "a", value: 0 }], { title: "t", unit: "x", logScale: true }),
    /must be > 0 on a log scale/,
  );
  assertInvalid(
    () => barChartSvg([{ label: "a", value: Number.NaN }], { title: "t", unit: "x" }),
    /finite/,
  );
});
