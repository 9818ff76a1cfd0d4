// Job: a job's live view. Charts of its metrics, the samples by step, the
// events log and its checkpoints, all filled from the REST lists first and
// then kept current by the job's server-sent event feed (Last-Event-ID on
// reconnect; items already seen are recognised and skipped).
import { api, follow } from '../api.js';
import { Chart } from '../charts.js';
import { NOTES } from '../notes.js';
import { h, add, clear, fmtNum, fmtTime, fmtDuration, statusBadge, emptyRow, FINAL, ranks } from '../util.js';
import { actionButtons, progressCell } from './jobs.js';

// Chart groups: which metric keys each chart draws, in display order.
export const GROUPS = [
  { id: 'loss', title: 'Loss', keys: (k) => ['loss', 'eval_loss', 'nll_loss', 'sft_loss', 'loss/policy_avg', 'loss/value_avg'].includes(k) },
  { id: 'rewards', title: 'Rewards: chosen, rejected, margin', keys: (k) => /^(eval_)?rewards\/(chosen|rejected|margins)$/.test(k) },
  { id: 'accuracy', title: 'Preference accuracy', keys: (k) => /^(eval_)?(rewards\/accuracies|accuracy)$/.test(k) },
  { id: 'reward', title: 'Reward', keys: (k) => ['objective/rlhf_reward', 'objective/scores', 'reward', 'reward_std', 'objective/non_score_reward', 'eval_reward', 'score_chosen', 'score_rejected', 'reward_a', 'reward_b'].includes(k) || /^rewards\/(verifiable|reward_model|judge)\/mean$/.test(k) },
  { id: 'winrate', title: 'Win rate and exact match', keys: (k) => ['win_rate', 'win_rate_b', 'ties', 'exact_match_a', 'exact_match_b', 'eval_exact_match', 'judge/mean_p_a'].includes(k) },
  { id: 'kl', title: 'KL to the reference', keys: (k) => ['objective/kl', 'kl', 'kl_coef', 'objective/kl_coef', 'policy/approxkl_avg'].includes(k) },
  { id: 'entropy', title: 'Entropy', keys: (k) => ['objective/entropy', 'entropy', 'eval_entropy', 'policy/entropy_avg'].includes(k) },
  { id: 'clip', title: 'Clip fraction', keys: (k) => ['policy/clipfrac_avg', 'val/clipfrac_avg', 'completions/clipped_ratio'].includes(k) || k.startsWith('clip_ratio/') },
  { id: 'length', title: 'Response length', keys: (k) => ['response_length', 'lengths/chosen', 'lengths/rejected'].includes(k) || /^completions\/(mean|max|min|mean_terminated)_length$/.test(k) },
  { id: 'diversity', title: 'Diversity and learning signal', keys: (k) => ['completions/distinct_2', 'frac_reward_zero_std'].includes(k) },
  { id: 'eval', title: 'Accuracy (token and exact match)', keys: (k) => /^(eval_)?mean_token_accuracy$/.test(k) || /^eval\/.+\/accuracy$/.test(k) },
  { id: 'lr', title: 'Learning rate', keys: (k) => k === 'learning_rate' },
  { id: 'grad', title: 'Gradient norm', keys: (k) => k === 'grad_norm' },
  { id: 'speed', title: 'Tokens per second', keys: (k) => k === 'tokens_per_second' },
];

const SKIP = new Set(['epoch', 'step']);

function trend(series) {
  const pts = [...series.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  if (pts.length < 6) return null;
  const k = Math.floor(pts.length / 3);
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  const a = mean(pts.slice(0, k));
  const b = mean(pts.slice(-k));
  return { a, b, d: b - a, rel: (b - a) / (Math.abs(a) || 1) };
}

export function render(root, route) {
  const id = route.arg;
  const ctl = new AbortController();
  const st = {
    job: null, charts: new Map(), groupOf: new Map(), custom: new Map(),
    metricSteps: new Set(), samples: [], sampleKeys: new Set(), events: new Map(), checkpoints: new Map(),
  };

  const head = h('div', { class: 'job-head' });
  const feedState = h('span', { class: 'feed-state', role: 'status' }, 'loading…');
  const smoothing = h('input', { type: 'range', id: 'smoothing', min: 0, max: 0.99, step: 0.01, value: 0.6 });
  const smoothOut = h('output', { for: 'smoothing', id: 'smoothing-out' }, '0.6');
  const chartGrid = h('div', { class: 'chart-grid', id: 'charts' });
  const noMetrics = h('p', { class: 'muted', id: 'no-metrics' }, 'No metrics yet: the first are logged after the first logging_steps steps.');
  const otherSel = h('select', { id: 'other-metric' }, h('option', { value: '' }, 'choose a metric…'));
  const sampleBody = h('tbody');
  const stepSel = h('select', { id: 'sample-step' }, h('option', { value: '' }, 'all steps'));
  const groupSel = h('select', { id: 'sample-group' }, h('option', { value: 'step' }, 'step (newest first)'), h('option', { value: 'prompt' }, 'prompt (see it change)'));
  const eventList = h('ol', { class: 'events', id: 'events', reversed: true });
  const ckptBody = h('tbody');
  const details = h('dl', { class: 'details' });

  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', id),
    head,
    h('nav', { class: 'in-page', 'aria-label': 'Sections' },
      ['charts', 'samples', 'events', 'checkpoints', 'details'].map((s) => h('a', { href: `#/jobs/${encodeURIComponent(id)}`, dataset: { section: s } }, s))),
    h('section', { id: 'sec-charts', 'aria-labelledby': 'h-charts' },
      h('div', { class: 'section-head' },
        h('h2', { id: 'h-charts' }, 'Metrics'),
        h('div', { class: 'toolbar' },
          h('label', { for: 'smoothing' }, 'Smoothing'), smoothing, smoothOut,
          h('label', { for: 'other-metric' }, 'Chart another metric'), otherSel, feedState)),
      noMetrics, chartGrid),
    h('section', { id: 'sec-samples', 'aria-labelledby': 'h-samples' },
      h('div', { class: 'section-head' },
        h('h2', { id: 'h-samples' }, 'Samples'),
        h('div', { class: 'toolbar' },
          h('label', { for: 'sample-step' }, 'Step'), stepSel,
          h('label', { for: 'sample-group' }, 'Group by'), groupSel)),
      h('p', { class: 'muted' }, 'What the model answers to fixed prompts as training goes on; the reward is the score the job gave it (RL) or its exact-match verdict (tasks).'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'samples', id: 'samples' },
        h('thead', null, h('tr', null, ['Step', 'Prompt', 'Completion', 'Reward'].map((t) => h('th', { scope: 'col' }, t)))),
        sampleBody))),
    h('section', { id: 'sec-events', 'aria-labelledby': 'h-events' },
      h('h2', { id: 'h-events' }, 'Events'), eventList),
    h('section', { id: 'sec-checkpoints', 'aria-labelledby': 'h-checkpoints' },
      h('h2', { id: 'h-checkpoints' }, 'Checkpoints'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'checkpoints' },
        h('thead', null, h('tr', null, ['Step', 'Checkpoint', 'Metrics', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        ckptBody))),
    h('section', { id: 'sec-details', 'aria-labelledby': 'h-details' },
      h('h2', { id: 'h-details' }, 'Details'), details));

  for (const a of root.querySelectorAll('.in-page a')) {
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      const sec = document.getElementById(`sec-${a.dataset.section}`);
      sec.scrollIntoView({ behavior: 'smooth' });
      const hd = sec.querySelector('h2');
      hd.tabIndex = -1;
      hd.focus({ preventScroll: true });
    });
  }

  smoothing.addEventListener('input', () => {
    const w = Number(smoothing.value);
    smoothOut.textContent = w.toFixed(2);
    for (const c of st.charts.values()) c.setSmoothing(w);
    for (const c of st.custom.values()) c.setSmoothing(w);
  });

  // ---- charts
  function chartFor(key) {
    if (st.groupOf.has(key)) return st.groupOf.get(key);
    let c = null;
    const g = GROUPS.find((gr) => gr.keys(key));
    if (g) {
      c = st.charts.get(g.id);
      if (!c) {
        c = new Chart({ id: `chart-${g.id}`, title: g.title, note: NOTES[g.id] });
        c.setSmoothing(Number(smoothing.value));
        st.charts.set(g.id, c);
        // keep GROUPS order in the grid
        const after = GROUPS.slice(GROUPS.indexOf(g) + 1).map((x) => st.charts.get(x.id)).find(Boolean);
        chartGrid.insertBefore(c.el, after ? after.el : null);
      }
    } else if (!SKIP.has(key) && ![...otherSel.options].some((o) => o.value === key)) {
      otherSel.append(h('option', { value: key }, key));
    }
    st.groupOf.set(key, c);
    return c;
  }

  otherSel.addEventListener('change', () => {
    const key = otherSel.value;
    if (!key || st.custom.has(key)) return;
    const c = new Chart({ id: `chart-x-${st.custom.size}`, title: key });
    c.setSmoothing(Number(smoothing.value));
    st.custom.set(key, c);
    chartGrid.append(c.el);
    for (const row of st.rows || []) if (key in row.metrics) c.push(key, row.step, row.metrics[key]);
    otherSel.value = '';
  });

  st.rows = [];
  function addMetrics(row) {
    if (!row || !row.metrics) return;
    const dup = st.metricSteps.has(row.step);
    st.metricSteps.add(row.step);
    if (!dup) st.rows.push(row);
    noMetrics.hidden = true;
    for (const [k, v] of Object.entries(row.metrics)) {
      const c = chartFor(k);
      if (c) c.push(k, row.step, v);
      const cc = st.custom.get(k);
      if (cc) cc.push(k, row.step, v);
    }
    scheduleHealth();
  }

  // Readings of the curves people misread, shown under the charts.
  let healthTimer = null;
  function scheduleHealth() {
    if (healthTimer) return;
    healthTimer = setTimeout(() => { healthTimer = null; health(); }, 300);
  }
  function health() {
    const rw = st.charts.get('rewards');
    if (rw) {
      const ch = rw.series.get('rewards/chosen'), rj = rw.series.get('rewards/rejected'), mg = rw.series.get('rewards/margins');
      const tc = ch && trend(ch), tr = rj && trend(rj), tm = mg && trend(mg);
      if (tc && tr && tm && tc.d < 0 && tr.d < 0 && tm.d > 0) {
        rw.warn('Now: chosen and rejected rewards are both falling while the margin grows. This is normal for DPO-style training.', 'info');
      } else if (tm && tm.d < 0) {
        rw.warn('Now: the margin is shrinking. Check the data (swapped labels?) or lower the learning rate.');
      } else rw.warn('');
    }
    const rc = st.charts.get('reward');
    const lc = st.charts.get('length');
    if (rc && lc) {
      const rs = rc.series.get('reward') || rc.series.get('objective/rlhf_reward') || rc.series.get('objective/scores');
      const ls = lc.series.get('completions/mean_length') || lc.series.get('response_length');
      const tr = rs && trend(rs), tl = ls && trend(ls);
      // A learned reward against the samples' true exact match (logged at
      // weight 0 whenever the prompts have answers): the learned score
      // rising while the truth stands still is reward hacking.
      const learned = rc.series.get('rewards/reward_model/mean') || rc.series.get('rewards/judge/mean');
      const truth = rc.series.get('rewards/verifiable/mean');
      const tm = learned && trend(learned), tv = truth && trend(truth);
      if (tr && tl && tr.d > 0 && tl.rel > 0.15) rc.warn('Warning: the reward climbs while responses get longer — possible length hacking. Read the samples; consider a length penalty.');
      else if (tm && tv && tm.d > 0.2 && tv.d < 0.02) rc.warn('Warning: the learned reward climbs while the samples’ exact match (rewards/verifiable/mean) does not — reward hacking. Raise kl_coef, use an ensemble of reward models, or retrain the reward model on the policy’s own samples.');
      else rc.warn('');
    }
    const kc = st.charts.get('kl');
    if (kc) {
      const ks = kc.series.get('objective/kl') || kc.series.get('kl');
      const t = ks && trend(ks);
      if (t && t.b > 10 && t.rel > 1) kc.warn('Warning: KL is growing fast — the policy is drifting from the reference. Raise kl_coef or lower the learning rate.');
      else kc.warn('');
    }
    const ec = st.charts.get('entropy');
    if (ec) {
      const es = ec.series.get('objective/entropy') || ec.series.get('entropy');
      const t = es && trend(es);
      if (t && t.a > 0 && t.b < 0.1 * t.a) ec.warn('Warning: entropy has collapsed — the policy answers the same way every time.');
      else ec.warn('');
    }
    const dc = st.charts.get('diversity');
    if (dc) {
      const zs = dc.series.get('frac_reward_zero_std');
      const t = zs && trend(zs);
      if (t && t.b > 0.8) dc.warn('Warning: most groups got the same reward for every completion — no learning signal. Raise temperature or num_generations, or use an easier task.');
      else dc.warn('');
    }
  }

  // ---- samples
  function sampleKey(s) { return `${s.step}\u0000${s.prompt}\u0000${s.completion}`; }
  function addSample(s, redraw = true) {
    const k = sampleKey(s);
    if (st.sampleKeys.has(k)) return;
    st.sampleKeys.add(k);
    st.samples.push(s);
    if (![...stepSel.options].some((o) => o.value === String(s.step))) {
      stepSel.append(h('option', { value: String(s.step) }, `step ${s.step}`));
    }
    if (redraw) drawSamples();
  }
  function drawSamples() {
    clear(sampleBody);
    const step = stepSel.value;
    let rows = st.samples.filter((s) => step === '' || String(s.step) === step);
    if (!rows.length) { sampleBody.append(emptyRow(4, 'No samples yet.')); return; }
    const cell = (s) => [
      h('td', { 'data-label': 'Step', class: 'num' }, String(s.step)),
      h('td', { 'data-label': 'Prompt' }, h('pre', null, s.prompt)),
      h('td', { 'data-label': 'Completion' }, h('pre', null, s.completion === '' ? '(empty)' : s.completion)),
      h('td', { 'data-label': 'Reward', class: 'num' }, s.reward === null || s.reward === undefined ? '–' : fmtNum(s.reward))];
    if (groupSel.value === 'prompt') {
      const by = new Map();
      for (const s of rows) { if (!by.has(s.prompt)) by.set(s.prompt, []); by.get(s.prompt).push(s); }
      for (const [prompt, list] of by) {
        sampleBody.append(h('tr', { class: 'group' }, h('th', { colspan: 4, scope: 'colgroup' }, `Prompt: ${prompt}`)));
        list.sort((a, b) => a.step - b.step);
        for (const s of list) sampleBody.append(h('tr', null, cell(s)));
      }
    } else {
      rows = rows.slice().sort((a, b) => b.step - a.step);
      for (const s of rows.slice(0, 300)) sampleBody.append(h('tr', null, cell(s)));
    }
  }
  stepSel.addEventListener('change', drawSamples);
  groupSel.addEventListener('change', drawSamples);

  // ---- events
  function addEvent(e, top = true) {
    if (!e || st.events.has(e.id)) return;
    st.events.set(e.id, e);
    const li = h('li', { class: `ev lvl-${e.level || 'info'}` },
      h('time', { datetime: new Date((e.created_at || 0) * 1000).toISOString() }, fmtTime(e.created_at)),
      h('span', { class: `badge lvl-${e.level || 'info'}` }, e.level || 'info'),
      h('span', { class: 'ev-msg' }, e.message || ''));
    if (top) eventList.prepend(li); else eventList.append(li);
    while (eventList.children.length > 500) eventList.lastChild.remove();
  }

  // ---- checkpoints
  function addCheckpoint(c) {
    if (!c || st.checkpoints.has(c.id)) return;
    st.checkpoints.set(c.id, c);
    const empty = ckptBody.querySelector('tr.empty');
    if (empty) empty.remove();
    const name = c.fine_tuned_model_checkpoint || `${id}:${c.step_number}`;
    const metrics = Object.entries(c.metrics || {}).slice(0, 4).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ');
    ckptBody.append(h('tr', null,
      h('td', { 'data-label': 'Step', class: 'num' }, String(c.step_number)),
      h('td', { 'data-label': 'Checkpoint' }, h('code', null, name)),
      h('td', { 'data-label': 'Metrics' }, metrics || '–'),
      h('td', { 'data-label': 'Actions', class: 'actions' },
        h('a', { class: 'button', href: `#/new?from_checkpoint=${encodeURIComponent(name)}&clone=${encodeURIComponent(id)}` }, 'Start a job from here'),
        h('a', { class: 'button', href: `#/new?model=${encodeURIComponent(name)}` }, 'Use as base'),
        h('a', { class: 'button', href: `#/playground?model=${encodeURIComponent(name)}` }, 'Chat'))));
  }

  // ---- header and details
  function drawJob(j) {
    st.job = j;
    clear(head);
    const p = j.progress || {};
    add(head,
      h('div', { class: 'page-head' },
        h('h1', null, j.id, ' ', statusBadge(j.status)),
        h('div', { class: 'actions' }, actionButtons(j, reloadJob),
          h('a', { class: 'button', href: `#/compare?ids=${encodeURIComponent(j.id)}` }, 'Compare'),
          h('a', { class: 'button', href: `#/new?clone=${encodeURIComponent(j.id)}` }, 'New job like this'),
          j.fine_tuned_model ? h('a', { class: 'button', href: `#/playground?model=${encodeURIComponent(j.fine_tuned_model)}` }, 'Chat with the result') : null)),
      h('p', { class: 'summary' },
        h('strong', null, j.method), ' on ', h('code', null, j.model),
        j.task ? [' · task ', h('code', null, `${j.task.name} × ${j.task.rows}`)] : null,
        j.training_file ? [' · ', h('code', null, j.training_file)] : null,
        ranks(j) > 1 ? [' · ', h('span', { class: 'ranks', title: 'data-parallel ranks started through the launcher' },
          `${ranks(j)} processes${j.distributed && j.distributed.shard_optimizer ? ' (ZeRO-1)' : ''}`)] : null,
        j.fine_tuned_model ? [' → ', h('code', null, j.fine_tuned_model)] : null),
      progressCell(j),
      h('p', { class: 'muted' },
        `elapsed ${fmtDuration(p.elapsed_s)} · epoch ${fmtNum(p.epoch, 3)} · ${p.tokens_per_second ? fmtNum(p.tokens_per_second, 3) : '–'} tokens/s · ${fmtNum(j.trained_tokens)} tokens trained`),
      j.error && j.error.message ? h('p', { class: 'error-text', role: 'alert' }, `Error: ${j.error.message}`) : null);
    clear(details);
    const dd = (k, v) => [h('dt', null, k), h('dd', null, v)];
    add(details,
      dd('Created', fmtTime(j.created_at)), dd('Started', fmtTime(j.started_at)), dd('Finished', fmtTime(j.finished_at)),
      dd('Seed', String(j.seed ?? '–')), dd('Priority', String(j.priority ?? '–')),
      dd('From checkpoint', j.from_checkpoint || '–'),
      dd('Validation file', j.validation_file || '–'),
      dd('Result files', (j.result_files || []).length
        ? (j.result_files || []).map((f, i) => [i ? ', ' : '', h('a', { href: `#/data?file=${encodeURIComponent(f)}` }, f)]) : '–'),
      dd('Metadata', j.metadata ? Object.entries(j.metadata).map(([k, v]) => `${k}=${v}`).join(', ') : '–'));
    const hp = j.hyperparameters || {};
    add(details, h('dt', null, 'Hyper-parameters'), h('dd', null, h('details', { id: 'hp-table' },
      h('summary', null, `${Object.keys(hp).length} resolved values (defaults filled in)`),
      h('table', { class: 'kv' }, h('tbody', null, Object.entries(hp).map(([k, v]) =>
        h('tr', null, h('th', { scope: 'row' }, k), h('td', null, typeof v === 'number' ? fmtNum(v) : typeof v === 'object' ? JSON.stringify(v) : String(v)))))))));
  }

  async function reloadJob() {
    try { drawJob(await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}`)); } catch { /* the feed will tell */ }
  }

  // ---- load, then follow
  (async () => {
    const base = `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
    try {
      drawJob(await api(base));
    } catch (e) {
      clear(head).append(h('h1', null, id), h('p', { class: 'error-text', role: 'alert' }, e.status === 404 ? 'No such job.' : `Could not load the job: ${e.message}`));
      feedState.textContent = '';
      return;
    }
    const loads = [
      api(`${base}/metrics?max_points=2000`).then((r) => { for (const row of r.data || []) addMetrics(row); }),
      api(`${base}/samples?limit=1000`).then((r) => { for (const s of r.data || []) addSample(s, false); drawSamples(); }),
      api(`${base}/events?limit=100`).then((r) => { for (const e of r.data || []) addEvent(e, false); }),
      api(`${base}/checkpoints?limit=100`).then((r) => { for (const c of r.data || []) addCheckpoint(c); }),
    ];
    const res = await Promise.allSettled(loads);
    if (ctl.signal.aborted) return;
    const failed = res.filter((r) => r.status === 'rejected');
    if (failed.length) feedState.textContent = `some lists failed to load: ${failed[0].reason.message}`;
    if (!st.samples.length) drawSamples();
    if (!st.checkpoints.size) ckptBody.append(emptyRow(4, 'No checkpoints yet (save_steps).'));
    if (!eventList.children.length) eventList.append(h('li', { class: 'muted' }, 'No events yet.'));
    await follow(`${base}/events`, (m) => {
      if (!m.data || typeof m.data !== 'object') return;
      if (m.event === 'metrics') addMetrics(m.data);
      else if (m.event === 'sample') addSample(m.data);
      else if (m.event === 'event') {
        const ph = eventList.querySelector('li.muted');
        if (ph) ph.remove();
        addEvent(m.data);
        if (m.data.type === 'checkpoint') api(`${base}/checkpoints?limit=100`).then((r) => { for (const c of r.data || []) addCheckpoint(c); }).catch(() => {});
      } else if (m.event === 'status') {
        drawJob(m.data);
        if (FINAL.has(m.data.status)) api(`${base}/checkpoints?limit=100`).then((r) => { for (const c of r.data || []) addCheckpoint(c); }).catch(() => {});
      }
    }, {
      signal: ctl.signal,
      onState: (s) => {
        feedState.dataset.state = s;
        feedState.textContent = s === 'live' ? '● live' : s === 'reconnecting' ? 'reconnecting…' : (st.job && FINAL.has(st.job.status) ? 'finished' : 'feed closed');
      },
    });
    if (!ctl.signal.aborted) reloadJob();
  })();

  return () => {
    ctl.abort();
    for (const c of st.charts.values()) c.destroy();
    for (const c of st.custom.values()) c.destroy();
  };
}
