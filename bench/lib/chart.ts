/**
 * chart: dependency-free SVG charts for benchmark reports. It owns two drawings and nothing else:
 * {@link latencyChartSvg} (the latency distributions of several methods, side by side) and
 * {@link barChartSvg} (one number per method, as horizontal bars). Both return one standalone SVG
 * document as a string: an XML prolog, `xmlns`, a `viewBox`, a white background, system fonts,
 * every piece of caller text escaped. No DOM, no fonts to load, no ids that could clash when two
 * charts are inlined into one HTML page. Output is a pure function of the input (no randomness,
 * no clock), so a report re-rendered from the same samples is byte-identical.
 *
 * Anyone may call it; it is not on any hot path. Each entry point first decodes and checks every
 * argument (throwing {@link InvalidArgumentError} with a message that names the series, index and
 * value at fault), then draws in a step that cannot fail. Callers' arrays are never modified:
 * samples are sorted in a copy.
 *
 * The latency chart — what was chosen and why:
 *
 *   x  round-trip latency on a log axis (ticks at 1-2-5 of each decade, labelled ns / µs / ms).
 *      A method 100x faster than another sits two decades to its left: the gap reads like a
 *      distance on a ruler, whatever the absolute numbers are.
 *   y  percentile on a tail-stretching axis, y = -log10(1 - p): p50 → 0.3, p90 → 1, p99 → 2,
 *      p99.9 → 3, p99.99 → 4. Each "nine" gets the same height, so the tail, which is where
 *      thread hand-offs, wake-ups and GC show, gets most of the picture.
 *   one curve per series: the empirical percentile curve (the CDF drawn with a stretched y). It
 *      rises to the right; the further right, the slower; a curve that leans right near the top
 *      has a long tail. Markers: ○ at p50 and ◆ at p99 (where the curve reaches it), with their
 *      values beside them when there is room (the legend always has them); the legend lists p50,
 *      p99, p99.9, the sample count and each series' p50 as a multiple of the fastest p50 — the
 *      "how many times faster" number.
 *
 *   Rejected: a histogram or density plot (needs a bin width, and at 200k samples the tail is a
 *   few invisible one-sample bars); a box plot (hides the shape of the tail, which is the point);
 *   a linear-y CDF (squeezes p99..p99.99 into the top 1% of the height); the HdrHistogram layout
 *   with percentile on x and latency on y (equivalent, but "faster is further left" reads more
 *   naturally than "faster is lower" when the curves are two decades apart, and it leaves the
 *   horizontal axis, the long one, to latency, which spans the most range).
 *
 *   A percentile here is the Hazen plotting position: the i-th smallest of n samples (from 0) sits
 *   at p = (i + 0.5) / n, and the p-quantile interpolates linearly between neighbours. This keeps
 *   the largest sample at a finite height (p = 1 - 1/2n), so a 1 000-sample series honestly stops
 *   near p99.95 instead of being drawn up to the top of the axis, and the markers lie on the curve.
 *
 *   Size: a curve is downsampled to at most ~2 × CURVE_STEPS points, picked so that it is dense
 *   both where it rises steeply (even steps in y) and where it runs flat (even steps in log x);
 *   coordinates are written to 0.1 px. 12 series of 200k samples make ~80 KB of SVG.
 *
 * Colours: the Okabe–Ito palette (safe for the common colour-vision deficiencies) without its
 * yellow, which is unreadable on white; after 7 series the colours repeat with a dash pattern.
 */

import { checkInteger, InvalidArgumentError } from "../../src/errors.js";

export interface LatencySeries {
  name: string;
  /** round-trip samples in nanoseconds, any order */
  samplesNs: Float64Array;
  /** optional highlight colour */
  color?: string;
}

export interface LatencyChartOptions {
  title: string;
  /** Second header line, e.g. the thread layout and the Node version. */
  subtitle?: string;
  /** Width in px (default 960). */
  width?: number;
  /** Total height in px (default: a 420 px plot plus the header and legend). */
  height?: number;
}

export interface BarDatum {
  label: string;
  value: number;
  /** Short grey text after the value, e.g. "±2%" or "n=30". */
  note?: string;
}

export interface BarChartOptions {
  title: string;
  /** Unit of every value, e.g. "ops/s". "ns" formats values as durations (ns / µs / ms / s). */
  unit: string;
  logScale?: boolean;
  /** Width in px (default 960). */
  width?: number;
  /** Total height in px (default: 28 px per bar plus the header and axis). */
  height?: number;
}

// ---------------------------------------------------------------------------------------------
// Shared look
// ---------------------------------------------------------------------------------------------

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
/** Okabe–Ito: blue, vermillion, bluish green, reddish purple, orange, sky blue, black. */
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
/** One dash pattern per trip through the palette. */
const DASHES = ["", "7 4", "2 3", "10 3 2 3"];
const INK = "#1a1a1a";
const MUTED = "#5f6368";
const GRID = "#e6e6e6";
const GRID_MINOR = "#f2f2f2";
const AXIS = "#9aa0a6";
/** Halo behind labels drawn over curves, so a crossing line never hides a digit. */
const HALO = 'stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"';

const MIN_WIDTH = 480;
const MAX_SIDE = 8192;
/** Accepted colours: #rgb, #rrggbb(aa), a CSS name, or rgb()/hsl() with plain numbers. */
const COLOR_RE = /^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,30}|(rgb|rgba|hsl|hsla)\([0-9.,%\s]+\))$/;

// ---------------------------------------------------------------------------------------------
// The latency chart
// ---------------------------------------------------------------------------------------------

/** Percentile gridlines: the tail-stretched height y = -log10(1 - p) is the index here. */
const PERCENTILE_TICKS = ["min", "p50", "p90", "p99", "p99.9", "p99.99"] as const;
const PERCENTILE_TICK_P = [0, 0.5, 0.9, 0.99, 0.999, 0.9999];
/** Curve resolution: this many even steps in y and as many in log x. */
const CURVE_STEPS = 240;
const LAT_DEFAULT_PLOT_H = 420;
const LAT_MIN_PLOT_H = 160;
const LAT_TOP = 78; // title and subtitle above the plot
const LAT_AXIS_BELOW = 58; // tick labels and axis title below the plot
const LEGEND_ROW = 20;
const LEGEND_BOTTOM = 14;

/** A series after decode: checked, sorted (a copy), summarised. */
interface LatencyCurve {
  readonly name: string;
  readonly color: string;
  readonly dash: string;
  /** Ascending copy of the samples. */
  readonly sorted: Float64Array;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
}

/** A rectangle in px, for label collision checks. */
interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Everything both axes need to turn a (latency, height) pair into px. */
interface LatencyFrame {
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
  /** x domain in ns, 1-2-5 bounds. */
  readonly lo: number;
  readonly hi: number;
  /** Height of the top of the y axis in "nines" (2, 3 or 4). */
  readonly nines: number;
}

/**
 * Draw the latency distributions of several methods side by side: log latency on x, percentile
 * on a tail-stretched y, markers at p50 and p99, and a legend with p50/p99/p99.9 per series.
 * Throws InvalidArgumentError on no series, an empty series, or a sample that is not a finite
 * positive number of nanoseconds.
 */
export function latencyChartSvg(series: LatencySeries[], opts: LatencyChartOptions): string {
  const width = decodeWidth(opts);
  const curves = decodeLatencySeries(series);
  const fixed = LAT_TOP + LAT_AXIS_BELOW + LEGEND_ROW * (curves.length + 1) + LEGEND_BOTTOM;
  const height = decodeHeight(opts, fixed, LAT_DEFAULT_PLOT_H, LAT_MIN_PLOT_H, curves.length);
  const frame = latencyFrame(curves, width, height - fixed);
  return svgDocument(width, height, [
    header(opts.title, opts.subtitle, width),
    latencyGrid(frame),
    ...curves.map((c) => curvePath(c, frame)),
    latencyMarkers(curves, frame),
    latencyLegend(curves, frame, width),
  ]);
}

function decodeLatencySeries(series: LatencySeries[]): LatencyCurve[] {
  if (!Array.isArray(series) || series.length === 0) {
    throw new InvalidArgumentError(
      "series must be a non-empty array of LatencySeries, got no series",
    );
  }
  return series.map((s, i) => decodeOneSeries(s, i));
}

/** Check one series, then sort a copy and take its percentiles. */
function decodeOneSeries(s: LatencySeries, i: number): LatencyCurve {
  if (s === null || typeof s !== "object") {
    throw new InvalidArgumentError(`series[${i}] must be a LatencySeries object`);
  }
  if (typeof s.name !== "string" || s.name.length === 0) {
    throw new InvalidArgumentError(`series[${i}].name must be a non-empty string`);
  }
  const where = `series[${i}] (${JSON.stringify(s.name)})`;
  if (!(s.samplesNs instanceof Float64Array)) {
    throw new InvalidArgumentError(`${where}.samplesNs must be a Float64Array`);
  }
  if (s.samplesNs.length === 0) {
    throw new InvalidArgumentError(
      `${where}.samplesNs is empty: a latency chart needs at least one sample per series`,
    );
  }
  const bad = s.samplesNs.findIndex((v) => !(Number.isFinite(v) && v > 0));
  if (bad >= 0) {
    throw new InvalidArgumentError(
      `${where}.samplesNs[${bad}] must be a finite positive number of nanoseconds, got ${s.samplesNs[bad]}`,
    );
  }
  const color = decodeColor(s.color, `${where}.color`) ?? PALETTE[i % PALETTE.length]!;
  const dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length]!;
  const sorted = s.samplesNs.slice().sort(); // typed-array sort is numeric
  return {
    name: s.name,
    color,
    dash,
    sorted,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    p999: quantile(sorted, 0.999),
  };
}

/** The Hazen p-quantile of ascending samples: interpolate at fractional index p·n − 0.5. */
function quantile(sorted: Float64Array, p: number): number {
  const n = sorted.length;
  const f = Math.min(n - 1, Math.max(0, p * n - 0.5));
  const i = Math.floor(f);
  const j = Math.min(n - 1, i + 1);
  return sorted[i] + (sorted[j] - sorted[i]) * (f - i);
}

/** Tail-stretched height of percentile p: one unit per "nine". */
function nines(p: number): number {
  return -Math.log10(1 - p);
}

/** Hazen position of the i-th smallest of n samples. */
function position(i: number, n: number): number {
  return (i + 0.5) / n;
}

/** Choose the axes: y tall enough for the largest series (2..4 nines), x covering what is drawn. */
function latencyFrame(curves: LatencyCurve[], width: number, plotH: number): LatencyFrame {
  const maxN = Math.max(...curves.map((c) => c.sorted.length));
  const top = Math.min(4, Math.max(2, Math.ceil(nines(position(maxN - 1, maxN)) - 1e-9)));
  const pTop = 1 - 10 ** -top;
  const lo = Math.min(...curves.map((c) => c.sorted[0]));
  const hi = Math.max(...curves.map((c) => quantile(c.sorted, pTop)));
  const [dlo, dhi] = domain125(lo, hi);
  return {
    left: 72,
    right: width - 28,
    top: LAT_TOP,
    bottom: LAT_TOP + plotH,
    lo: dlo,
    hi: dhi,
    nines: top,
  };
}

function xOf(f: LatencyFrame, ns: number): number {
  const t = Math.log10(ns / f.lo) / Math.log10(f.hi / f.lo);
  return f.left + t * (f.right - f.left);
}

function yOf(f: LatencyFrame, height: number): number {
  return f.bottom - (Math.min(height, f.nines) / f.nines) * (f.bottom - f.top);
}

/** Gridlines, tick labels and axis titles of the latency plot. */
function latencyGrid(f: LatencyFrame): string {
  const out: string[] = ['<g class="grid">'];
  const ticks = ticks125(f.lo, f.hi);
  const labelAll = labelEvery125(f.lo, f.hi, f.right - f.left, ticks);
  for (const t of ticks) {
    const x = px(xOf(f, t));
    const major = t === 10 ** Math.round(Math.log10(t));
    out.push(vline(x, f.top, f.bottom, major ? GRID : GRID_MINOR));
    if (major || labelAll) {
      out.push(
        `<text class="x-tick" data-ns="${t}" x="${x}" y="${px(f.bottom + 18)}" text-anchor="middle" font-size="12" fill="${MUTED}">${esc(formatNs(t))}</text>`,
      );
    }
  }
  for (let k = 0; k < PERCENTILE_TICK_P.length; k++) {
    if (nines(PERCENTILE_TICK_P[k]!) > f.nines + 1e-9) break;
    const y = px(yOf(f, nines(PERCENTILE_TICK_P[k]!)));
    out.push(hline(f.left, f.right, y, GRID));
    out.push(
      `<text class="y-tick" data-p="${PERCENTILE_TICK_P[k]}" x="${f.left - 8}" y="${px(y + 4)}" text-anchor="end" font-size="12" fill="${MUTED}">${PERCENTILE_TICKS[k]}</text>`,
    );
  }
  out.push(
    `<rect x="${f.left}" y="${f.top}" width="${px(f.right - f.left)}" height="${px(f.bottom - f.top)}" fill="none" stroke="${AXIS}"/>`,
    `<text x="${px((f.left + f.right) / 2)}" y="${px(f.bottom + 40)}" text-anchor="middle" font-size="12.5" fill="${INK}">round-trip latency (log scale) — further left is faster</text>`,
    `<text transform="translate(${f.left - 52} ${px((f.top + f.bottom) / 2)}) rotate(-90)" text-anchor="middle" font-size="12.5" fill="${INK}">percentile (tail-stretched)</text>`,
    "</g>",
  );
  return out.join("\n");
}

/** The percentile curve of one series as a polyline of at most ~2·CURVE_STEPS points. */
function curvePath(c: LatencyCurve, f: LatencyFrame): string {
  const pts = curvePoints(c, f);
  const d = pts.map(([x, y], k) => `${k === 0 ? "M" : "L"}${px(x)} ${px(y)}`).join("");
  const dash = c.dash === "" ? "" : ` stroke-dasharray="${c.dash}"`;
  return `<path class="curve" d="${d}" fill="none" stroke="${esc(c.color)}" stroke-width="2" stroke-linejoin="round"${dash}><title>${esc(c.name)}</title></path>`;
}

/**
 * Downsample: sample indexes at even steps of height and at even steps of log latency, so both
 * steep and flat stretches keep their shape; keep those at or under the top of the axis and end
 * the curve exactly at the top with an interpolated point if the series reaches past it.
 */
function curvePoints(c: LatencyCurve, f: LatencyFrame): [number, number][] {
  const s = c.sorted;
  const n = s.length;
  const pTop = 1 - 10 ** -f.nines;
  const last = Math.min(n - 1, Math.floor(pTop * n - 0.5)); // last index at or under the top
  const picks = new Set<number>([0, Math.max(0, last)]);
  const yEnd = nines(position(Math.max(0, last), n));
  for (let k = 0; k <= CURVE_STEPS; k++) {
    const p = 1 - 10 ** (-(yEnd * k) / CURVE_STEPS);
    picks.add(Math.min(last, Math.max(0, Math.round(p * n - 0.5))));
  }
  const l0 = Math.log(s[0]);
  const l1 = Math.log(s[Math.max(0, last)]);
  for (let k = 1; k < CURVE_STEPS; k++) {
    picks.add(Math.min(last, lowerBound(s, Math.exp(l0 + ((l1 - l0) * k) / CURVE_STEPS))));
  }
  const idx = [...picks].filter((i) => i >= 0).sort((a, b) => a - b);
  const pts: [number, number][] = [[xOf(f, s[0]), yOf(f, 0)]];
  for (const i of idx) pts.push([xOf(f, s[i]), yOf(f, nines(position(i, n)))]);
  if (last < n - 1) pts.push([xOf(f, quantile(s, pTop)), yOf(f, f.nines)]);
  return dedupePx(pts);
}

/** First index whose sample is ≥ v (n when none is). */
function lowerBound(s: Float64Array, v: number): number {
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Drop points that land on the same 0.1 px as the one before. */
function dedupePx(pts: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  let prev = "";
  for (const [x, y] of pts) {
    const key = `${px(x)} ${px(y)}`;
    if (key !== prev) out.push([x, y]);
    prev = key;
  }
  return out;
}

/**
 * Markers at p50 (○) and p99 (◆) for every series, then their value labels, placed greedily:
 * right of the marker, left, above, below, then further out; a label that fits nowhere without
 * covering another label or marker is left out (its value is in the legend).
 */
function latencyMarkers(curves: LatencyCurve[], f: LatencyFrame): string {
  // A marker only where the curve reaches: a 10-sample series has no p99 to point at.
  const reaches = (c: LatencyCurve, p: number) =>
    position(c.sorted.length - 1, c.sorted.length) >= p;
  const marks = curves.flatMap((c) => [
    { c, ns: c.p50, shape: "circle" as const, x: xOf(f, c.p50), y: yOf(f, nines(0.5)) },
    ...(reaches(c, 0.99)
      ? [{ c, ns: c.p99, shape: "diamond" as const, x: xOf(f, c.p99), y: yOf(f, nines(0.99)) }]
      : []),
  ]);
  const taken: Box[] = marks.map((m) => ({ x0: m.x - 5, y0: m.y - 5, x1: m.x + 5, y1: m.y + 5 }));
  const area: Box = { x0: f.left + 2, y0: f.top + 2, x1: f.right - 2, y1: f.bottom - 2 };
  const out: string[] = ['<g class="markers">'];
  for (const m of marks) out.push(markerShape(m.shape, m.x, m.y, m.c.color));
  // p50 labels first (the headline), then p99.
  const order = [
    ...marks.filter((m) => m.shape === "circle"),
    ...marks.filter((m) => m.shape !== "circle"),
  ];
  for (const m of order) {
    const text = formatNs(m.ns);
    const spot = placeLabel(m.x, m.y, textWidth(text, 11.5, true), 11.5, area, taken);
    if (spot === null) continue;
    taken.push(spot.box);
    out.push(
      `<text class="marker-label" x="${px(spot.x)}" y="${px(spot.y)}" text-anchor="${spot.anchor}" font-size="11.5" font-weight="600" fill="${esc(darken(m.c.color))}" ${HALO}>${esc(text)}</text>`,
    );
  }
  out.push("</g>");
  return out.join("\n");
}

/** Air kept between a marker label and anything else, in px. */
const LABEL_GAP = 4;

/** A placed label: its text anchor point, anchor and the box it covers. */
interface LabelSpot {
  x: number;
  y: number;
  anchor: "start" | "end" | "middle";
  box: Box;
}

/** The first candidate spot around (x, y) that stays in `area` and overlaps nothing `taken`. */
function placeLabel(
  x: number,
  y: number,
  w: number,
  size: number,
  area: Box,
  taken: Box[],
): LabelSpot | null {
  const h = size + 2;
  const cands: [number, number, LabelSpot["anchor"]][] = [
    [x + 10, y, "start"],
    [x - 10, y, "end"],
    [x, y - 12, "middle"],
    [x, y + 14, "middle"],
  ];
  // Only spots that touch the marker: a label pushed further away could be read as another's.
  cands.push([x + 6, y - h, "start"], [x - 6, y - h, "end"]);
  cands.push([x + 6, y + h, "start"], [x - 6, y + h, "end"]);
  for (const [cx, cy, anchor] of cands) {
    const x0 = anchor === "start" ? cx : anchor === "end" ? cx - w : cx - w / 2;
    // Boxes keep LABEL_GAP px of air on each side, so neighbouring labels never touch.
    const box = { x0: x0 - LABEL_GAP, y0: cy - h / 2, x1: x0 + w + LABEL_GAP, y1: cy + h / 2 };
    if (!inside(box, area) || taken.some((t) => overlaps(box, t))) continue;
    return { x: cx, y: cy + size * 0.36, anchor, box };
  }
  return null;
}

function inside(b: Box, a: Box): boolean {
  return b.x0 >= a.x0 && b.x1 <= a.x1 && b.y0 >= a.y0 && b.y1 <= a.y1;
}

function overlaps(a: Box, b: Box): boolean {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

/** ○ (p50): white-filled circle; ◆ (p99): filled diamond. */
function markerShape(shape: "circle" | "diamond", x: number, y: number, color: string): string {
  const c = esc(color);
  if (shape === "circle") {
    return `<circle cx="${px(x)}" cy="${px(y)}" r="4.5" fill="#fff" stroke="${c}" stroke-width="2"/>`;
  }
  const r = 5.5;
  return `<path d="M${px(x)} ${px(y - r)}L${px(x + r)} ${px(y)}L${px(x)} ${px(y + r)}L${px(x - r)} ${px(y)}Z" fill="${c}" stroke="#fff" stroke-width="1"/>`;
}

/** The table under the plot: one row per series with its swatch, name and percentiles. */
function latencyLegend(curves: LatencyCurve[], f: LatencyFrame, width: number): string {
  const size = 12.5;
  const fastest = Math.min(...curves.map((c) => c.p50));
  const heads = ["p50", "p99", "p99.9", "samples", "vs fastest p50"];
  const rows = curves.map((c) => [
    formatNs(c.p50),
    formatNs(c.p99),
    formatNs(c.p999),
    formatCount(c.sorted.length),
    formatRatio(c.p50 / fastest),
  ]);
  // Each numeric column is as wide as its widest cell (header markers included), plus a gap.
  const colW = heads.map(
    (h, k) =>
      22 +
      Math.max(
        textWidth(h, size, true) + (k < 2 ? 14 : 0),
        ...rows.map((r) => textWidth(r[k]!, size, true)),
      ),
  );
  const nameX = f.left + 44;
  const maxName = width - 28 - nameX - colW.reduce((a, b) => a + b, 0);
  const nameW = Math.min(maxName, Math.max(120, ...curves.map((c) => textWidth(c.name, size))));
  const colX = colW.map((_, k) =>
    px(nameX + nameW + colW.slice(0, k + 1).reduce((a, b) => a + b, 0)),
  );
  const top = f.bottom + LAT_AXIS_BELOW + 10;
  const cell = (k: number, y: number, text: string, extra = "") =>
    `<text x="${colX[k]}" y="${y}" text-anchor="end" font-size="${size}"${extra}>${esc(text)}</text>`;
  const hy = px(top);
  const bold = ` font-weight="600" fill="${MUTED}"`;
  const out: string[] = [`<g class="legend" fill="${INK}">`];
  out.push(`<text x="${nameX}" y="${hy}" font-size="${size}"${bold}>series</text>`);
  out.push(...heads.map((h, k) => cell(k, hy, h, bold)));
  out.push(
    markerShape("circle", colX[0]! - textWidth("p50", size, true) - 12, hy - 4.5, MUTED),
    markerShape("diamond", colX[1]! - textWidth("p99", size, true) - 12, hy - 4.5, MUTED),
  );
  curves.forEach((c, i) => {
    const y = px(top + LEGEND_ROW * (i + 1));
    const dash = c.dash === "" ? "" : ` stroke-dasharray="${c.dash}"`;
    const r = rows[i]!;
    out.push(
      `<line x1="${f.left}" y1="${px(y - 4.5)}" x2="${f.left + 32}" y2="${px(y - 4.5)}" stroke="${esc(c.color)}" stroke-width="3"${dash}/>`,
      `<text class="legend-name" x="${nameX}" y="${y}" font-size="${size}">${esc(fitText(c.name, nameW, size))}<title>${esc(c.name)}</title></text>`,
      cell(0, y, r[0]!, ' class="legend-p50" font-weight="600"'),
      cell(1, y, r[1]!),
      cell(2, y, r[2]!),
      cell(3, y, r[3]!, ` fill="${MUTED}"`),
      cell(4, y, r[4]!),
    );
  });
  out.push("</g>");
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The bar chart
// ---------------------------------------------------------------------------------------------

const BAR_TOP = 56;
const BAR_AXIS_BELOW = 54;
const BAR_BOTTOM = 10;
const BAR_DEFAULT_PITCH = 28;
const BAR_MIN_PITCH = 14;
const BAR_COLOR = PALETTE[0]!;

/** A value axis: linear from 0, or log between 1-2-5 bounds. */
interface ValueAxis {
  readonly log: boolean;
  readonly lo: number;
  readonly hi: number;
  readonly x0: number;
  readonly x1: number;
  readonly ticks: number[];
}

/**
 * Draw one horizontal bar per datum with its value (and note) at the bar's end; linear from zero,
 * or log when `logScale` is set. Throws InvalidArgumentError on no data, a value that is not a
 * finite number ≥ 0, or a value ≤ 0 on a log scale.
 */
export function barChartSvg(data: BarDatum[], opts: BarChartOptions): string {
  decodeBars(data, opts);
  const width = decodeWidth(opts);
  const fixed = BAR_TOP + BAR_AXIS_BELOW + BAR_BOTTOM;
  const height = decodeHeight(
    opts,
    fixed,
    BAR_DEFAULT_PITCH * data.length,
    BAR_MIN_PITCH * data.length,
    data.length,
  );
  const pitch = (height - fixed) / data.length;
  const size = Math.min(13, Math.max(10, pitch * 0.46));
  const labelW = Math.min(width * 0.35, Math.max(...data.map((d) => textWidth(d.label, size))));
  const values = data.map((d) => valueText(d, opts.unit));
  const valueW = Math.max(...values.map((v) => textWidth(v, size))) + 12;
  const x0 = 20 + labelW + 10;
  const x1 = Math.max(x0 + 80, width - 20 - valueW);
  const axis = valueAxis(data, opts.logScale === true, x0, x1);
  const out = [
    header(opts.title, undefined, width),
    barGrid(axis, BAR_TOP, BAR_TOP + pitch * data.length, opts.unit),
  ];
  data.forEach((d, i) => {
    out.push(barRow(d, axis, BAR_TOP + pitch * i, pitch, size, labelW, opts.unit));
  });
  return svgDocument(width, height, out);
}

function decodeBars(data: BarDatum[], opts: BarChartOptions): void {
  if (!Array.isArray(data) || data.length === 0) {
    throw new InvalidArgumentError("data must be a non-empty array of BarDatum, got no bars");
  }
  if (typeof opts?.unit !== "string") {
    throw new InvalidArgumentError('unit must be a string, e.g. "ops/s"');
  }
  const log = opts.logScale === true;
  data.forEach((d, i) => {
    if (d === null || typeof d !== "object" || typeof d.label !== "string") {
      throw new InvalidArgumentError(`data[${i}].label must be a string`);
    }
    const where = `data[${i}] (${JSON.stringify(d.label)}).value`;
    if (typeof d.value !== "number" || !Number.isFinite(d.value) || d.value < 0) {
      throw new InvalidArgumentError(`${where} must be a finite number ≥ 0, got ${d.value}`);
    }
    if (log && d.value <= 0) {
      throw new InvalidArgumentError(`${where} must be > 0 on a log scale, got ${d.value}`);
    }
    if (d.note !== undefined && typeof d.note !== "string") {
      throw new InvalidArgumentError(`data[${i}].note must be a string when given`);
    }
  });
}

function valueAxis(data: BarDatum[], log: boolean, x0: number, x1: number): ValueAxis {
  const max = Math.max(...data.map((d) => d.value));
  if (log) {
    const min = Math.min(...data.map((d) => d.value));
    // Start strictly below the smallest value so its bar has a length.
    const [lo, hi] = domain125(below125(min), max);
    const ticks = ticks125(lo, hi);
    const all = labelEvery125(lo, hi, x1 - x0, ticks);
    return { log, lo, hi, x0, x1, ticks: all ? ticks : ticks.filter(isDecade) };
  }
  const step = above125(max > 0 ? max / 6 : 0.2);
  const hi = Math.max(step, Math.ceil(max / step - 1e-9) * step);
  const ticks: number[] = [];
  for (let k = 0; k * step <= hi * (1 + 1e-9); k++) ticks.push(k * step);
  return { log, lo: 0, hi, x0, x1, ticks };
}

function xOfValue(a: ValueAxis, v: number): number {
  const t = a.log ? Math.log10(v / a.lo) / Math.log10(a.hi / a.lo) : (v - a.lo) / (a.hi - a.lo);
  return a.x0 + t * (a.x1 - a.x0);
}

function barGrid(a: ValueAxis, top: number, bottom: number, unit: string): string {
  const out: string[] = ['<g class="grid">'];
  for (const t of a.ticks) {
    const x = px(xOfValue(a, t));
    out.push(vline(x, top, bottom, GRID));
    out.push(
      `<text class="x-tick" data-value="${t}" x="${x}" y="${px(bottom + 18)}" text-anchor="middle" font-size="12" fill="${MUTED}">${esc(formatValue(t, unit, false))}</text>`,
    );
  }
  out.push(hline(a.x0, a.x1, px(bottom), AXIS));
  const title = `${unit === "ns" ? "duration" : unit}${a.log ? " (log scale)" : ""}`;
  out.push(
    `<text x="${px((a.x0 + a.x1) / 2)}" y="${px(bottom + 40)}" text-anchor="middle" font-size="12.5" fill="${INK}">${esc(title)}</text>`,
    "</g>",
  );
  return out.join("\n");
}

function barRow(
  d: BarDatum,
  a: ValueAxis,
  y: number,
  pitch: number,
  size: number,
  labelW: number,
  unit: string,
): string {
  const h = pitch * 0.64;
  const by = y + (pitch - h) / 2;
  const mid = px(y + pitch / 2 + size * 0.36);
  const end = xOfValue(a, d.value);
  const value = esc(formatValue(d.value, unit, true));
  const note = d.note
    ? `<tspan dx="8" fill="${MUTED}" font-weight="400">${esc(d.note)}</tspan>`
    : "";
  return [
    '<g class="bar">',
    `<text class="bar-label" x="${px(20 + labelW)}" y="${mid}" text-anchor="end" font-size="${px(size)}" fill="${INK}">${esc(fitText(d.label, labelW, size))}<title>${esc(d.label)}</title></text>`,
    `<rect x="${px(a.x0)}" y="${px(by)}" width="${px(Math.max(1, end - a.x0))}" height="${px(h)}" rx="2" fill="${BAR_COLOR}"/>`,
    `<text class="bar-value" x="${px(Math.max(a.x0 + 1, end) + 6)}" y="${mid}" font-size="${px(size)}" font-weight="600" fill="${INK}">${value}${note}</text>`,
    "</g>",
  ].join("\n");
}

function valueText(d: BarDatum, unit: string): string {
  const v = formatValue(d.value, unit, true);
  return d.note ? `${v}   ${d.note}` : v;
}

// ---------------------------------------------------------------------------------------------
// Shared decode steps
// ---------------------------------------------------------------------------------------------

function decodeWidth(opts: { title: string; width?: number }): number {
  if (opts === null || typeof opts !== "object" || typeof opts.title !== "string") {
    throw new InvalidArgumentError("opts.title must be a string");
  }
  const o = opts as { subtitle?: unknown };
  if (o.subtitle !== undefined && typeof o.subtitle !== "string") {
    throw new InvalidArgumentError("opts.subtitle must be a string when given");
  }
  return opts.width === undefined ? 960 : checkInteger("width", opts.width, MIN_WIDTH, MAX_SIDE);
}

/** The total height: the caller's, if it leaves the plot at least `minPlot` px, else the default. */
function decodeHeight(
  opts: { height?: number },
  fixed: number,
  defaultPlot: number,
  minPlot: number,
  rows: number,
): number {
  if (opts.height === undefined) return Math.round(fixed + defaultPlot);
  const h = checkInteger("height", opts.height, 1, MAX_SIDE);
  if (h - fixed < minPlot) {
    throw new InvalidArgumentError(
      `height must be at least ${Math.ceil(fixed + minPlot)} px to fit ${rows} rows, got ${h}`,
    );
  }
  return h;
}

function decodeColor(color: unknown, name: string): string | undefined {
  if (color === undefined) return undefined;
  if (typeof color !== "string" || !COLOR_RE.test(color)) {
    throw new InvalidArgumentError(
      `${name} must be a CSS colour such as "#0072B2" or "teal", got ${JSON.stringify(color)}`,
    );
  }
  return color;
}

// ---------------------------------------------------------------------------------------------
// SVG pieces
// ---------------------------------------------------------------------------------------------

function svgDocument(width: number, height: number, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

function header(title: string, subtitle: string | undefined, width: number): string {
  const t = `<text class="title" x="20" y="30" font-size="18" font-weight="700" fill="${INK}">${esc(fitText(title, width - 40, 18))}</text>`;
  if (subtitle === undefined || subtitle === "") return t;
  return `${t}\n<text class="subtitle" x="20" y="51" font-size="13" fill="${MUTED}">${esc(fitText(subtitle, width - 40, 13))}</text>`;
}

function vline(x: number, y0: number, y1: number, color: string): string {
  return `<line x1="${x}" y1="${px(y0)}" x2="${x}" y2="${px(y1)}" stroke="${color}"/>`;
}

function hline(x0: number, x1: number, y: number, color: string): string {
  return `<line x1="${px(x0)}" y1="${y}" x2="${px(x1)}" y2="${y}" stroke="${color}"/>`;
}

/** A coordinate to 0.1 px: enough for a screen, and keeps the document small. */
function px(v: number): number {
  return Math.round(v * 10) / 10;
}

/**
 * Escape text for element content and double-quoted attributes: & < > " ' become entities, and
 * characters XML 1.0 forbids (C0 controls other than tab/newline/CR, lone surrogates) become U+FFFD.
 */
function esc(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 0x26) out += "&amp;";
    else if (ch === 0x3c) out += "&lt;";
    else if (ch === 0x3e) out += "&gt;";
    else if (ch === 0x22) out += "&quot;";
    else if (ch === 0x27) out += "&#39;";
    else if (ch < 0x20 && ch !== 0x09 && ch !== 0x0a && ch !== 0x0d) out += "\ufffd";
    else if (ch === 0xfffe || ch === 0xffff) out += "\ufffd";
    else if (ch >= 0xd800 && ch <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) out += s[i]! + s[++i]!;
      else out += "\ufffd";
    } else if (ch >= 0xdc00 && ch <= 0xdfff) out += "\ufffd";
    else out += s[i];
  }
  return out;
}

/**
 * Estimated advance width of `s` in px at `size` for a sans-serif system font. Good to ~10%,
 * which is what label placement and column widths need; nothing is measured.
 */
function textWidth(s: string, size: number, bold = false): number {
  let em = 0;
  for (const ch of s) {
    if ("il.,:;|!'`jfrt()[] ".includes(ch)) em += 0.34;
    else if ("mwMW@%".includes(ch)) em += 0.9;
    else if (ch >= "A" && ch <= "Z") em += 0.7;
    else if (ch >= "0" && ch <= "9") em += 0.62;
    else em += 0.6;
  }
  return em * size * (bold ? 1.08 : 1);
}

/** `s`, cut with an ellipsis if it is wider than `w` px. The full text goes in a <title>. */
function fitText(s: string, w: number, size: number): string {
  if (textWidth(s, size) <= w) return s;
  const chars = [...s];
  while (chars.length > 1 && textWidth(`${chars.join("")}…`, size) > w) chars.pop();
  return `${chars.join("")}…`;
}

/** A darker shade for text in light palette colours (sky blue, orange) to keep contrast. */
function darken(color: string): string {
  const m = /^#([0-9a-fA-F]{6})$/.exec(color);
  if (m === null) return color;
  const rgb = [0, 2, 4].map((k) => Number.parseInt(m[1]!.slice(k, k + 2), 16));
  const lum = (0.2126 * rgb[0]! + 0.7152 * rgb[1]! + 0.0722 * rgb[2]!) / 255;
  if (lum < 0.45) return color;
  const f = 0.45 / lum;
  return `#${rgb
    .map((c) =>
      Math.round(c * f)
        .toString(16)
        .padStart(2, "0"),
    )
    .join("")}`;
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

const MANTISSAS = [1, 2, 5];

/** m·10^k with m ∈ {1, 2, 5}, computed so that 0.2 and 0.05 come out exact. */
function value125(m: number, k: number): number {
  return k >= 0 ? m * 10 ** k : m / 10 ** -k;
}

/** The largest 1-2-5 value ≤ v. */
function floor125(v: number): number {
  const k = Math.floor(Math.log10(v));
  for (let j = MANTISSAS.length - 1; j >= 0; j--) {
    const c = value125(MANTISSAS[j]!, k);
    if (c <= v * (1 + 1e-12)) return c;
  }
  return value125(5, k - 1);
}

/** The largest 1-2-5 value strictly < v. */
function below125(v: number): number {
  const f = floor125(v);
  return f < v * (1 - 1e-12) ? f : floor125(f * 0.99);
}

/** The smallest 1-2-5 value ≥ v. */
function above125(v: number): number {
  const k = Math.floor(Math.log10(v));
  for (const m of MANTISSAS) {
    const c = value125(m, k);
    if (c >= v * (1 - 1e-12)) return c;
  }
  return value125(1, k + 1);
}

/** A log domain [lo, hi] on 1-2-5 values that holds [min, max] and is never empty. */
function domain125(min: number, max: number): [number, number] {
  const lo = floor125(min);
  const hi = above125(max);
  return hi > lo * (1 + 1e-9) ? [lo, hi] : [lo, above125(lo * 1.01)];
}

/** Every 1-2-5 value in [lo, hi], ascending. */
function ticks125(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(lo)) - 1; k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of MANTISSAS) {
      const v = value125(m, k);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  return out;
}

function isDecade(v: number): boolean {
  return Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9;
}

/** Label every 1-2-5 tick when a decade is wide enough or fewer than two decades are in view. */
function labelEvery125(lo: number, hi: number, spanPx: number, ticks: number[]): boolean {
  const perDecade = spanPx / Math.log10(hi / lo);
  return perDecade >= 170 || ticks.filter(isDecade).length < 2;
}

/** Three significant digits, no trailing zeros: 312, 1.24, 95.3, 140. */
function sig3(v: number): string {
  if (v === 0) return "0";
  return String(Number(v.toPrecision(3)));
}

/** A duration in ns as "312 ns", "1.24 µs", "95.3 µs", "1.05 ms", "2.5 s". */
function formatNs(ns: number): string {
  const v = Number(ns.toPrecision(3)); // round first, so 999.7 ns becomes "1 µs", not "1000 ns"
  if (v < 1e3) return `${sig3(v)} ns`;
  if (v < 1e6) return `${sig3(v / 1e3)} µs`;
  if (v < 1e9) return `${sig3(v / 1e6)} ms`;
  return `${sig3(v / 1e9)} s`;
}

/** A value in `unit`: durations for "ns", else three digits with k/M/G above a thousand. */
function formatValue(v: number, unit: string, withUnit: boolean): string {
  if (unit === "ns") return formatNs(v);
  const r = Number(v.toPrecision(3));
  const [num, prefix] =
    r >= 1e9 ? [r / 1e9, "G"] : r >= 1e6 ? [r / 1e6, "M"] : r >= 1e3 ? [r / 1e3, "k"] : [r, ""];
  const text = `${sig3(num)}${prefix === "" ? "" : ` ${prefix}`}`;
  return withUnit && unit !== "" ? `${text} ${unit}` : text;
}

/** A sample count: 950, 12.5k, 200k, 1.2M. */
function formatCount(n: number): string {
  if (n < 1e3) return String(n);
  if (n < 1e6) return `${sig3(n / 1e3)}k`;
  return `${sig3(n / 1e6)}M`;
}

/** A ratio to the fastest: "1×", "2.7×", "233×". */
function formatRatio(r: number): string {
  return r < 10 ? `${Number(r.toFixed(1))}×` : `${Math.round(r)}×`;
}
