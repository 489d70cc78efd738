// A training curve: a uPlot chart that grows as points arrive, with the points drawn also as
// a table behind a toggle (for screen readers and for reading exact values).
//
// Long curves are downsampled before drawing: at most MAX_POINTS points, each bucket of steps
// keeping its lowest and highest value of the first series, so spikes survive; a
// 10,000-step curve is drawn from 1,000 points and redrawn at most once a frame.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { fill, h, number } from "./dom.js";

export const MAX_POINTS = 1000;
//: Dark enough on white for axe's contrast rules; overlaid runs take them in turn.
const COLOURS = ["#0b5cad", "#b3261e", "#17692f", "#6b4b00", "#6a1b9a", "#00695c", "#ad1457", "#37474f"];

/** At most `max` of the points (xs, and each of ys alike), keeping each bucket's extremes. */
export function downsample(xs, ys, max = MAX_POINTS) {
  if (xs.length <= max) return [xs, ...ys];
  const buckets = Math.floor(max / 2);
  const size = xs.length / buckets;
  const keep = [];
  const first = ys[0];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor(b * size);
    const end = Math.min(xs.length, Math.floor((b + 1) * size));
    let low = start;
    let high = start;
    for (let i = start; i < end; i++) {
      if (first[i] < first[low]) low = i;
      if (first[i] > first[high]) high = i;
    }
    keep.push(...(low === high ? [low] : [Math.min(low, high), Math.max(low, high)]));
  }
  return [keep.map((i) => xs[i]), ...ys.map((series) => keep.map((i) => series[i]))];
}

export class Curve {
  /**
   * @param container where the chart and its table go
   * @param options {title, x: axis label, series: [{label, scale, digits, spanGaps}]}
   *   (spanGaps: draw the line across x values the series has no point at, as overlaid runs
   *   of different lengths have)
   */
  constructor(container, { title, x, series }) {
    this.xs = [];
    this.ys = series.map(() => []);
    this.series = series;
    this.x = x;
    this.pending = false;
    const scales = [...new Set(series.map((s) => s.scale))];
    this.plotBox = h("div", { class: "plot" });
    this.caption = h("figcaption", {}, title);
    this.table = h("table", {});
    this.details = h("details", {}, h("summary", {}, `${title}: table of the points drawn`), this.table);
    this.empty = h("p", { class: "quiet" }, "No points yet.");
    this.figure = h("figure", { class: "chart", "data-points": 0 }, this.caption, this.empty, this.plotBox);
    container.append(this.figure, this.details);
    this.details.addEventListener("toggle", () => this.details.open && this.fillTable());
    this.chart = new uPlot(
      {
        width: Math.max(320, Math.min(container.clientWidth || 800, 832)),
        height: 260,
        scales: { x: { time: false } },
        axes: [
          { label: x },
          ...scales.map((scale, i) => ({ scale, label: scale, side: i ? 1 : 3, grid: { show: !i } })),
        ],
        series: [
          { label: x },
          ...series.map((s, i) => ({ label: s.label, scale: s.scale, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: Boolean(s.spanGaps), points: { show: false } })),
        ],
      },
      [[], ...series.map(() => [])],
      this.plotBox,
    );
    this.plotBox.hidden = true;
  }

  /** Add a point (one y per series; null where a series has none). */
  push(x, values) {
    this.xs.push(x);
    values.forEach((v, i) => this.ys[i].push(typeof v === "number" ? v : null));
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => this.draw());
    }
  }

  /** Replace every point at once (a finished job's curves, read from its metrics). */
  setData(xs, ys) {
    this.xs = [...xs];
    this.ys = ys.map((series) => series.map((v) => (typeof v === "number" ? v : null)));
    this.draw();
  }

  draw() {
    this.pending = false;
    this.drawn = downsample(this.xs, this.ys);
    this.empty.hidden = this.xs.length > 0;
    this.plotBox.hidden = this.xs.length === 0;
    this.chart.setData(this.drawn);
    this.figure.dataset.points = String(this.xs.length);
    const note = this.xs.length > this.drawn[0].length ? ` (${this.drawn[0].length} of ${this.xs.length} points drawn)` : "";
    this.caption.textContent = `${this.caption.textContent.replace(/ \(\d+ of \d+ points drawn\)$/, "")}${note}`;
    if (this.details.open) this.fillTable();
  }

  fillTable() {
    const [xs, ...ys] = this.drawn ?? [[]];
    const head = h("tr", {}, h("th", { scope: "col" }, this.x), this.series.map((s) => h("th", { scope: "col" }, s.label)));
    const rows = xs.map((x, i) => h("tr", {}, h("td", {}, x), ys.map((series, k) => h("td", {}, number(series[i], this.series[k].digits ?? 4)))));
    fill(this.table, h("thead", {}, head), h("tbody", {}, rows));
  }
}
