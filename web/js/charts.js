// Line charts over training steps, drawn by uPlot (npm, staged into
// vendor/ at build time). A chart holds named series of (step, value)
// points, redraws at most once per frame, and supports smoothing
// (TensorBoard's debiased exponential moving average) and a log y-scale.
// Its caption states in words what it shows (points, last step, values),
// which is what assistive technology reads and what tests assert.
import { h, fmtNum } from './util.js';

// uPlot is loaded on first use: a build without it (npm ci not run) still
// serves every page, with the charts' captions in place of the plots.
let uPlot = null;
let uPlotLoad = null;
function loadUPlot() {
  if (!uPlotLoad) {
    uPlotLoad = import('../vendor/uplot/uPlot.esm.js')
      .then((m) => { uPlot = m.default; return uPlot; })
      .catch(() => null);
  }
  return uPlotLoad;
}

// Series colours that keep 3:1 contrast against the light and the dark background.
const PALETTE_LIGHT = ['#1f63c6', '#c2410c', '#15803d', '#9333ea', '#b91c1c', '#0e7490', '#a16207', '#be185d'];
const PALETTE_DARK = ['#7fb0ff', '#ff9d5c', '#5fd38d', '#c89bff', '#ff7b7b', '#4fd1e8', '#e8c04f', '#ff85c0'];
const dark = () => window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches;

export function smooth(values, weight) {
  if (!(weight > 0)) return values;
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

// Tick labels with as many decimals as the tick spacing needs (uPlot's
// default rounds 0.00075 and 0.001 to the same label).
export function tickLabels(u, vals) {
  const step = vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 0;
  let d = 0;
  while (step > 0 && d < 10 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6 * step * 10 ** d) d++;
  return vals.map((v) => {
    if (v === null || v === undefined) return '';
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (v !== 0 && (a >= 1e6 || d > 5)) return v.toExponential(Math.min(3, Math.max(1, Math.ceil(Math.log10(a / (step || a))))));
    return v.toFixed(d);
  });
}

export class Chart {
  // opts: {title, note, warn, height, id}
  constructor(opts) {
    this.opts = opts;
    this.series = new Map(); // label -> Map(step -> value)
    this.smoothing = 0;
    this.log = false;
    this.plot = null;
    this.pending = false;
    const capId = `${opts.id}-cap`;
    this.canvasBox = h('div', { class: 'plot', role: 'img', 'aria-labelledby': `${opts.id}-title`, 'aria-describedby': capId });
    this.caption = h('figcaption', { id: capId, class: 'chart-cap', 'aria-live': 'off' }, 'no points yet');
    this.logBox = h('input', { type: 'checkbox', id: `${opts.id}-log`, onchange: () => { this.log = this.logBox.checked; this.rebuild(); } });
    this.noteEl = h('p', { class: 'chart-note' }, opts.note || '');
    this.warnEl = h('p', { class: 'chart-warn', role: 'status', hidden: true });
    this.el = h('figure', { class: 'chart', id: opts.id, dataset: { points: '0' } },
      h('div', { class: 'chart-head' },
        h('h3', { id: `${opts.id}-title` }, opts.title),
        h('label', { class: 'inline', for: `${opts.id}-log` }, this.logBox, ' log scale')),
      this.canvasBox, this.caption, this.noteEl, this.warnEl);
    if (!opts.note) this.noteEl.hidden = true;
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.canvasBox);
  }

  push(label, step, value) {
    if (typeof value !== 'number' || !Number.isFinite(value) || typeof step !== 'number') return;
    let s = this.series.get(label);
    if (!s) {
      s = new Map();
      this.series.set(label, s);
      this.structureChanged = true;
    }
    s.set(step, value);
    this.schedule();
  }

  setSmoothing(w) { this.smoothing = w; this.schedule(); }

  // A reading of the curve under the chart; kind 'info' or 'warn'.
  warn(text, kind = 'warn') {
    this.warnEl.dataset.kind = kind;
    this.warnEl.textContent = text || '';
    this.warnEl.hidden = !text;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  data() {
    const steps = new Set();
    for (const s of this.series.values()) for (const k of s.keys()) steps.add(k);
    const xs = [...steps].sort((a, b) => a - b);
    const cols = [xs];
    for (const s of this.series.values()) {
      let col = xs.map((x) => (s.has(x) ? s.get(x) : null));
      col = smooth(col, this.smoothing);
      if (this.log) col = col.map((v) => (v !== null && v > 0 ? v : null));
      cols.push(col);
    }
    return cols;
  }

  points() {
    let n = 0;
    for (const s of this.series.values()) n += s.size;
    return n;
  }

  rebuild() {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    this.structureChanged = false;
    this.draw();
  }

  width() { return Math.max(240, this.canvasBox.clientWidth || 480); }

  draw() {
    if (this.structureChanged) { this.rebuild(); return; }
    const data = this.data();
    if (!uPlot) {
      this.updateCaption(data);
      loadUPlot().then((u) => {
        if (u) this.schedule();
        else this.canvasBox.textContent = 'Charts are unavailable: uPlot was not installed with the dashboard (npm ci, then rebuild).';
      });
      return;
    }
    if (!this.plot) {
      const labels = [...this.series.keys()];
      // Axis colours from the page's scheme (light or dark), for contrast.
      const css = getComputedStyle(document.documentElement);
      const ink = css.getPropertyValue('--muted').trim() || '#4b5563';
      const line = css.getPropertyValue('--line').trim() || '#d5d9e0';
      const opts = {
        width: this.width(),
        height: this.opts.height || 220,
        scales: { x: { time: false }, y: this.log ? { distr: 3 } : {} },
        axes: [{ label: 'step', stroke: ink, grid: { stroke: line }, ticks: { stroke: line } },
          Object.assign({ stroke: ink, size: 64, grid: { stroke: line }, ticks: { stroke: line } }, this.log ? {} : { values: tickLabels })],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        series: [{ label: 'step' }, ...labels.map((l, i) => ({
          label: l, stroke: (dark() ? PALETTE_DARK : PALETTE_LIGHT)[i % 8], width: 2, spanGaps: true,
          points: { show: (u, si) => u.data[si].filter((v) => v !== null).length < 40 },
          value: (u, v) => fmtNum(v),
        }))],
      };
      this.plot = new uPlot(opts, data, this.canvasBox);
    } else {
      this.plot.setData(data);
    }
    this.updateCaption(data);
  }

  updateCaption(data) {
    const n = this.points();
    this.el.dataset.points = String(n);
    if (!n) { this.caption.textContent = 'no points yet'; return; }
    const xs = data[0];
    const parts = [];
    for (const [label, s] of this.series) {
      let last = null;
      for (let j = xs.length - 1; j >= 0; j--) if (s.has(xs[j])) { last = s.get(xs[j]); break; }
      parts.push(`${label} ${fmtNum(last)}`);
    }
    this.caption.textContent = `${n} points, last step ${xs[xs.length - 1]}: ${parts.join(', ')}`;
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: this.opts.height || 220 });
  }

  destroy() {
    this.ro.disconnect();
    if (this.plot) this.plot.destroy();
  }
}
