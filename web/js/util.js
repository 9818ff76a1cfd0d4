// DOM building and formatting helpers shared by the pages. Elements are
// built with h() (no innerHTML with data, no inline styles: the page runs
// under a strict Content-Security-Policy).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

// Appends children (nodes, strings, nested arrays; null/false skipped).
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e9) return x.toLocaleString('en');
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hr = Math.floor(m / 60);
  return `${hr}h ${m % 60}m`;
}

export function fmtTime(unix) {
  if (!unix) return '–';
  const d = new Date(unix * 1000);
  return d.toLocaleString('en-GB', { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function toast(msg, kind = 'info') {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = msg;
  t.dataset.kind = kind;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 5000);
}

export const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

// The processes a job runs as (resources.processes: ranks of a
// data-parallel job started through the daemon's launcher; 1 in-process).
export function ranks(j) {
  return (j && j.resources && j.resources.processes) || 1;
}

export function statusBadge(status) {
  return h('span', { class: `badge st-${status}` }, status.replace('_', ' '));
}

// Parses "#/page/arg?x=1" into {page, arg, query}.
export function parseHash(hash) {
  const raw = (hash || '').replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || 'jobs', arg: parts[1] || null, query: new URLSearchParams(qs || '') };
}

// A labelled form control: returns {wrap, input, error}. The error element
// is tied to the input by aria-describedby so screen readers read it.
export function field(label, input, help, opts = {}) {
  const id = input.id || nextId('f');
  input.id = id;
  const helpId = `${id}-help`;
  const errId = `${id}-err`;
  const describedBy = [help ? helpId : null, errId].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', describedBy);
  const error = h('p', { class: 'field-error', id: errId });
  const isCheck = input.type === 'checkbox';
  const lab = h('label', { for: id }, label);
  const wrap = h('div', { class: `field${isCheck ? ' check' : ''}${opts.wide ? ' wide' : ''}` },
    isCheck ? [input, lab] : [lab, input],
    help ? h('p', { class: 'help', id: helpId }, help) : null,
    error);
  return { wrap, input, error };
}

export function setFieldError(input, error, msg) {
  if (msg) {
    input.setAttribute('aria-invalid', 'true');
    error.textContent = msg;
  } else {
    input.removeAttribute('aria-invalid');
    error.textContent = '';
  }
}

export function emptyRow(cols, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols }, text));
}

// The metric a job list shows for a method: the one people watch.
export function keyMetric(method, m) {
  if (!m) return null;
  const prefs = {
    sft: ['eval_loss', 'loss'], pretrain: ['eval_loss', 'loss'],
    reward_model: ['eval_accuracy', 'accuracy', 'loss'],
    dpo: ['rewards/margins', 'rewards/accuracies', 'loss'],
    kto: ['rewards/margins', 'loss'], orpo: ['rewards/margins', 'loss'], simpo: ['rewards/margins', 'loss'],
    ppo: ['objective/rlhf_reward', 'objective/scores', 'loss'],
    grpo: ['reward', 'loss'], rloo: ['reward', 'objective/rlhf_reward', 'loss'],
    evaluate: ['win_rate', 'exact_match_a', 'eval_exact_match'],
    generate_preferences: ['pairs', 'reward'], critique_revise: ['prompts', 'reward'],
  };
  for (const k of (prefs[method] || ['loss'])) if (k in m) return [k, m[k]];
  const keys = Object.keys(m);
  return keys.length ? [keys[0], m[keys[0]]] : null;
}
