// The dashboard shell: hash routing between pages, the API-key dialog, and
// the daemon's health in the header. Each page module exports
// render(root, route) and may return a cleanup function (it stops streams
// and timers when the user leaves the page).
import { api, apiKey, setApiKey } from './api.js';
import { clear, parseHash } from './util.js';
import * as jobs from './pages/jobs.js';
import * as job from './pages/job.js';
import * as compare from './pages/compare.js';
import * as newjob from './pages/newjob.js';
import * as data from './pages/data.js';
import * as models from './pages/models.js';
import * as playground from './pages/playground.js';

const pages = { jobs, job, compare, new: newjob, data, models, playground };
const titles = {
  jobs: 'Jobs', job: 'Job', compare: 'Compare', new: 'New job', data: 'Data',
  models: 'Models', playground: 'Playground',
};

let cleanup = null;
const main = document.getElementById('main');

function route() {
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } }
  cleanup = null;
  const r = parseHash(location.hash);
  let name = r.page;
  if (name === 'jobs' && r.arg) name = 'job';
  if (!pages[name]) name = 'jobs';
  for (const a of document.querySelectorAll('#nav a')) {
    const on = a.dataset.page === (name === 'job' ? 'jobs' : name);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${titles[name]}${r.arg ? ` ${r.arg}` : ''} · alignd`;
  clear(main);
  main.dataset.page = name;
  cleanup = pages[name].render(main, r) || null;
  // Move focus to the new page's heading for keyboard and screen-reader users,
  // unless this is the first load.
  if (route.loaded) {
    const h1 = main.querySelector('h1');
    if (h1) { h1.tabIndex = -1; h1.focus({ preventScroll: false }); }
  }
  route.loaded = true;
}

// API keys: any 401 opens the dialog; a key given is kept in sessionStorage.
const dialog = document.getElementById('key-dialog');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyError = document.getElementById('key-error');
const forget = document.getElementById('forget-key');

function askKey(why) {
  if (dialog.open) return;
  keyError.textContent = why || '';
  keyInput.value = '';
  dialog.showModal();
  keyInput.focus();
}

keyForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const k = keyInput.value.trim();
  if (!k) { keyError.textContent = 'Enter a key.'; return; }
  const old = apiKey();
  setApiKey(k);
  try {
    await api('/v1/models?limit=1');
    dialog.close();
    updateKeyUi();
    route();
  } catch (e) {
    setApiKey(old);
    keyError.textContent = e.status === 401 ? 'That key was not accepted.' : e.message;
  }
});
dialog.addEventListener('cancel', (ev) => ev.preventDefault()); // the dashboard cannot work without it

window.addEventListener('alignd:unauthorized', () => {
  askKey(apiKey() ? 'The key was refused; enter another.' : '');
});

function updateKeyUi() { forget.hidden = !apiKey(); }
forget.addEventListener('click', () => { setApiKey(''); updateKeyUi(); route(); });

// Health: /healthz needs no key; /readyz says whether workers run.
const health = document.getElementById('health');
async function checkHealth() {
  try {
    const k = apiKey();
    const r = await fetch('/readyz', { cache: 'no-store', headers: k ? { Authorization: `Bearer ${k}` } : {} });
    if (r.status === 401) {
      const hz = await fetch('/healthz', { cache: 'no-store' });
      health.textContent = hz.ok ? 'daemon up (key needed)' : 'daemon not healthy';
      health.dataset.state = hz.ok ? 'warn' : 'bad';
      return;
    }
    health.textContent = r.ok ? 'daemon ready' : 'daemon not ready';
    health.dataset.state = r.ok ? 'ok' : 'warn';
  } catch {
    health.textContent = 'daemon unreachable';
    health.dataset.state = 'bad';
  }
}

window.addEventListener('hashchange', route);
updateKeyUi();
checkHealth();
setInterval(checkHealth, 15000);
route();
