// Jobs: every job with its method, model, status, progress, speed and key
// metric; a status filter; cancel, pause and resume; refreshed every two
// seconds while the page is open.
import { api, listAll } from '../api.js';
import { h, clear, fmtNum, fmtDuration, statusBadge, emptyRow, keyMetric, toast, FINAL, ranks } from '../util.js';

const STATUSES = ['validating_files', 'queued', 'running', 'paused', 'cancelling', 'succeeded', 'failed', 'cancelled'];

export function actionButtons(job, after) {
  const act = async (action, btn) => {
    btn.disabled = true;
    try {
      await api(`/v1/fine_tuning/jobs/${encodeURIComponent(job.id)}/${action}`, { method: 'POST' });
      toast(`${job.id}: ${action} requested`);
    } catch (e) {
      toast(`${job.id}: ${action} failed: ${e.message}`, 'error');
    }
    btn.disabled = false;
    if (after) after();
  };
  const out = [];
  const mk = (action, label, cls) => {
    const b = h('button', { type: 'button', class: cls || '', 'aria-label': `${label} ${job.id}` }, label);
    b.addEventListener('click', () => act(action, b));
    out.push(b);
  };
  const s = job.status;
  if (s === 'running' || s === 'queued' || s === 'validating_files') mk('pause', 'Pause');
  if (s === 'paused') mk('resume', 'Resume');
  if (!FINAL.has(s) && s !== 'cancelling') mk('cancel', 'Cancel', 'danger');
  return out;
}

export function progressCell(job) {
  const p = job.progress || {};
  const total = p.total_steps || 0;
  const step = p.step || 0;
  const pct = typeof p.percentage === 'number' ? p.percentage : (total ? (100 * step) / total : 0);
  const bar = h('progress', { max: 100, value: Math.max(0, Math.min(100, pct)), 'aria-label': `${job.id} progress` });
  let rest = '';
  if (job.status === 'running' && p.remaining_s !== null && p.remaining_s !== undefined) rest = ` · ${fmtDuration(p.remaining_s)} left`;
  else if (job.status === 'queued' && job.queue_position) rest = ` · #${job.queue_position} in queue`;
  return h('div', { class: 'progress' }, bar, h('span', { class: 'progress-text' }, `${step}/${total || '?'} (${Math.round(pct)}%)${rest}`));
}

export function render(root, route) {
  const filter = h('select', { id: 'status-filter' },
    h('option', { value: '' }, 'all'),
    STATUSES.map((s) => h('option', { value: s }, s.replace('_', ' '))));
  filter.value = route.query.get('status') || '';
  const tbody = h('tbody');
  // Not a live region: it changes every two seconds.
  const live = h('p', { class: 'muted' }, '');
  const compareBtn = h('button', { type: 'button', disabled: true }, 'Compare selected');
  const selected = new Set();
  compareBtn.addEventListener('click', () => {
    location.hash = `#/compare?ids=${[...selected].map(encodeURIComponent).join(',')}`;
  });
  root.append(
    h('div', { class: 'page-head' },
      h('h1', null, 'Jobs'),
      h('a', { class: 'button primary', href: '#/new' }, 'New job')),
    h('div', { class: 'toolbar' },
      h('label', { for: 'status-filter' }, 'Status '), filter, compareBtn, live),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'jobs cards' },
        h('caption', { class: 'sr-only' }, 'Fine-tuning jobs, newest first'),
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Select')),
          ['Job', 'Method', 'Model', 'Status', 'Progress', 'Tokens/s', 'Key metric', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)));

  let timer = null;
  let stopped = false;
  async function refresh() {
    clearTimeout(timer);
    try {
      const st = filter.value;
      const jobs = await listAll(`/v1/fine_tuning/jobs${st ? `?status=${encodeURIComponent(st)}` : ''}`, 200);
      if (stopped) return;
      draw(jobs);
      live.textContent = `${jobs.length} job${jobs.length === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString('en-GB')}`;
    } catch (e) {
      if (stopped) return;
      live.textContent = `Could not load jobs: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(refresh, 2000);
  }

  function draw(jobs) {
    // Keep focus on a button across redraws (keyboard users).
    const focused = document.activeElement && document.activeElement.getAttribute('aria-label');
    clear(tbody);
    if (!jobs.length) tbody.append(emptyRow(9, filter.value ? `No ${filter.value} jobs.` : 'No jobs yet. Start one from New job.'));
    for (const j of jobs) {
      const km = keyMetric(j.method, j.latest_metrics);
      const cb = h('input', { type: 'checkbox', 'aria-label': `select ${j.id} for comparison`, checked: selected.has(j.id) });
      cb.addEventListener('change', () => {
        if (cb.checked) selected.add(j.id); else selected.delete(j.id);
        compareBtn.disabled = selected.size < 1;
      });
      const tps = j.progress && j.progress.tokens_per_second;
      tbody.append(h('tr', { dataset: { id: j.id, status: j.status } },
        h('td', { 'data-label': 'Select' }, cb),
        h('td', { 'data-label': 'Job' }, h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id),
          j.suffix ? h('span', { class: 'muted' }, ` ${j.suffix}`) : null),
        h('td', { 'data-label': 'Method' }, j.method || '–',
          ranks(j) > 1 ? h('span', { class: 'muted ranks', title: 'data-parallel ranks' }, ` × ${ranks(j)} processes`) : null),
        h('td', { 'data-label': 'Model', class: 'model' }, j.model || '–'),
        h('td', { 'data-label': 'Status' }, statusBadge(j.status),
          j.error && j.error.message ? h('div', { class: 'error-text' }, j.error.message) : null),
        h('td', { 'data-label': 'Progress' }, progressCell(j)),
        h('td', { 'data-label': 'Tokens/s', class: 'num' }, tps ? fmtNum(tps, 3) : '–'),
        h('td', { 'data-label': 'Key metric', class: 'num' }, km ? `${km[0]} ${fmtNum(km[1])}` : '–'),
        h('td', { 'data-label': 'Actions', class: 'actions' }, actionButtons(j, refresh))));
    }
    if (focused) {
      const again = tbody.querySelector(`[aria-label="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  filter.addEventListener('change', () => {
    history.replaceState(null, '', filter.value ? `#/jobs?status=${filter.value}` : '#/jobs');
    refresh();
  });
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
