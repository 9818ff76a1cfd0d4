// Compare: one metric from several jobs overlaid on one chart (x = step),
// and their benchmark results side by side: one column per model measured
// (a base — a training job's step 0 — first, then its fine-tunes and the
// models evaluate jobs scored), one row per task and metric, the best of a
// row marked and each cell's difference to the first column shown.
// The selection lives in the URL (#/compare?ids=a,b&metric=loss) so a
// comparison can be bookmarked or shared. Running jobs are polled for new
// points every few seconds.
import { api, listAll } from '../api.js';
import { Chart } from '../charts.js';
import { h, clear, statusBadge, fmtNum, FINAL } from '../util.js';

export function render(root, route) {
  const ids = new Set((route.query.get('ids') || '').split(',').filter(Boolean));
  let metric = route.query.get('metric') || 'loss';
  const jobList = h('ul', { class: 'pick-list', id: 'compare-jobs' });
  const metricSel = h('select', { id: 'compare-metric' });
  const smoothing = h('input', { type: 'range', id: 'cmp-smoothing', min: 0, max: 0.99, step: 0.01, value: 0.6 });
  const chartBox = h('div', { class: 'chart-grid single' });
  const msg = h('p', { class: 'muted', role: 'status' });
  const benchBox = h('div', { id: 'compare-bench' });
  root.append(
    h('h1', null, 'Compare'),
    h('p', { class: 'muted' }, 'Overlay the same metric from several jobs, e.g. the loss of two learning rates or the margins of DPO against IPO.'),
    h('div', { class: 'compare' },
      h('fieldset', { class: 'pick' }, h('legend', null, 'Jobs'), jobList),
      h('div', { class: 'compare-main' },
        h('div', { class: 'toolbar' },
          h('label', { for: 'compare-metric' }, 'Metric'), metricSel,
          h('label', { for: 'cmp-smoothing' }, 'Smoothing'), smoothing),
        msg, chartBox,
        h('h2', null, 'Benchmarks'),
        h('p', { class: 'muted' }, 'The eval_tasks results of these jobs: a base (step 0) and its fine-tunes, or the models an evaluate job scored.'),
        benchBox)));

  let jobs = [];
  let chart = null;
  const lastStep = new Map();
  const keysByJob = new Map();
  let stopped = false;
  let timer = null;

  function syncUrl() {
    history.replaceState(null, '', `#/compare?ids=${[...ids].map(encodeURIComponent).join(',')}&metric=${encodeURIComponent(metric)}`);
  }

  async function loadKeys(id) {
    if (keysByJob.has(id)) return;
    // Keys: from a small sample of the job's metric rows (any row may carry any key).
    const r = await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/metrics?max_points=50`);
    const ks = new Set();
    for (const row of r.data || []) for (const k of Object.keys(row.metrics || {})) ks.add(k);
    keysByJob.set(id, ks);
  }

  async function rebuild() {
    syncUrl();
    await Promise.allSettled([...ids].map(loadKeys));
    const all = new Set();
    for (const id of ids) for (const k of keysByJob.get(id) || []) all.add(k);
    if (!all.size) all.add(metric);
    clear(metricSel);
    for (const k of [...all].sort()) metricSel.append(h('option', { value: k }, k));
    if (!all.has(metric)) metric = all.has('loss') ? 'loss' : [...all][0];
    metricSel.value = metric;
    if (chart) chart.destroy();
    clear(chartBox);
    lastStep.clear();
    loadBench();
    if (!ids.size) { msg.textContent = 'Pick one or more jobs.'; chart = null; return; }
    msg.textContent = '';
    chart = new Chart({ id: 'compare-chart', title: `${metric} by job`, height: 320 });
    chart.setSmoothing(Number(smoothing.value));
    chartBox.append(chart.el);
    await poll();
  }

  // Every eval result of the selected jobs, then one table.
  async function loadBench() {
    const all = [];
    await Promise.allSettled([...ids].map(async (id) => {
      const r = await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/eval_results`);
      for (const x of r.data || []) all.push({ ...x, job: id });
    }));
    renderBench(all);
  }

  function renderBench(all) {
    clear(benchBox);
    if (!all.length) {
      benchBox.append(h('p', { class: 'muted' }, ids.size
        ? 'No benchmark results yet: give a job eval_tasks with a benchmark file (uploaded with purpose "evals").'
        : 'Pick one or more jobs.'));
      return;
    }
    // the latest result of each (model, task); models measured at step 0 (bases) first
    const latest = new Map();
    const models = [];
    const baseOf = new Set();
    for (const r of all) {
      if (r.step === 0) baseOf.add(r.model);
      if (!models.includes(r.model)) models.push(r.model);
      const k = `${r.model}\u0000${r.task}`;
      const o = latest.get(k);
      if (!o || r.created_at > o.created_at || (r.created_at === o.created_at && r.step > o.step)) latest.set(k, r);
    }
    models.sort((a, b) => Number(baseOf.has(b)) - Number(baseOf.has(a)));
    const tasks = [...new Set(all.map((r) => r.task))].sort();
    const head = h('tr', null, h('th', null, 'task'), h('th', null, 'metric'),
      models.map((m) => h('th', { class: 'model', dataset: { model: m } }, m, baseOf.has(m) ? h('span', { class: 'muted' }, ' (base)') : null)));
    const body = [];
    for (const t of tasks) {
      const names = new Set();
      for (const m of models) {
        const r = latest.get(`${m}\u0000${t}`);
        for (const k of Object.keys((r && r.metrics) || {})) if (!k.endsWith('_stderr')) names.add(k);
      }
      for (const name of [...names].sort()) {
        const vals = models.map((m) => {
          const r = latest.get(`${m}\u0000${t}`);
          const v = r && r.metrics ? r.metrics[name] : null;
          return { v: typeof v === 'number' ? v : null, se: r && r.metrics ? r.metrics[`${name}_stderr`] : null, n: r ? r.n : null };
        });
        const best = Math.max(...vals.map((x) => (x.v === null ? -Infinity : x.v)));
        const first = vals[0].v;
        body.push(h('tr', { dataset: { task: t, metric: name } }, h('td', null, t), h('td', null, name),
          vals.map((x, i) => h('td', { class: `num${x.v !== null && x.v === best && vals.length > 1 ? ' best' : ''}`, title: x.n ? `n = ${x.n}` : null },
            x.v === null ? '–' : fmtNum(x.v, 3),
            typeof x.se === 'number' ? h('span', { class: 'muted' }, ` ±${fmtNum(x.se, 2)}`) : null,
            i > 0 && x.v !== null && first !== null ? h('span', { class: 'delta' }, ` (${x.v - first >= 0 ? '+' : ''}${fmtNum(x.v - first, 2)})`) : null))));
      }
    }
    benchBox.append(h('table', { class: 'bench', id: 'compare-bench-table' }, h('thead', null, head), h('tbody', null, body)));
  }

  async function poll() {
    clearTimeout(timer);
    const want = metric;
    await Promise.allSettled([...ids].map(async (id) => {
      const after = lastStep.has(id) ? `&after_step=${lastStep.get(id)}` : '';
      const r = await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/metrics?keys=${encodeURIComponent(want)}&max_points=2000${after}`);
      if (want !== metric || !chart) return;
      for (const row of r.data || []) {
        if (row.metrics && want in row.metrics) chart.push(id, row.step, row.metrics[want]);
        lastStep.set(id, Math.max(lastStep.get(id) ?? -1, row.step));
      }
    }));
    const running = jobs.some((j) => ids.has(j.id) && !FINAL.has(j.status));
    if (running) loadBench();
    if (!stopped && running) timer = setTimeout(poll, 4000);
  }

  metricSel.addEventListener('change', () => { metric = metricSel.value; rebuild(); });
  smoothing.addEventListener('input', () => { if (chart) chart.setSmoothing(Number(smoothing.value)); });

  (async () => {
    try {
      jobs = await listAll('/v1/fine_tuning/jobs', 200);
    } catch (e) {
      msg.textContent = `Could not load jobs: ${e.message}`;
      return;
    }
    if (!jobs.length) jobList.append(h('li', { class: 'muted' }, 'No jobs yet.'));
    for (const j of jobs) {
      const cb = h('input', { type: 'checkbox', id: `cmp-${j.id}`, checked: ids.has(j.id) });
      cb.addEventListener('change', () => {
        if (cb.checked) ids.add(j.id); else ids.delete(j.id);
        rebuild();
      });
      jobList.append(h('li', null, cb, h('label', { for: `cmp-${j.id}` }, `${j.id} `, h('span', { class: 'muted' }, `${j.method} · ${j.model} `), statusBadge(j.status))));
    }
    rebuild();
  })();

  return () => { stopped = true; clearTimeout(timer); if (chart) chart.destroy(); };
}
