// Models: the registered base models and the jobs' outputs (fine-tuned
// models, adapters, checkpoints), with what each is (family, size, dtype,
// context, chat template), where it came from (a folder, a Hugging Face Hub
// repo at a commit, a fine-tune of a job) and who uses it; register a folder
// from the daemon's models directory or a model from the Hub (its download's
// progress shows in the table); delete one.
import { api, listAll } from '../api.js';
import { h, clear, field, setFieldError, fmtNum, fmtTime, emptyRow, toast } from '../util.js';

export function render(root) {
  const tbody = h('tbody');
  const nameIn = h('input', { type: 'text', id: 'reg-name', autocomplete: 'off', spellcheck: 'false' });
  const pathIn = h('input', { type: 'text', id: 'reg-path', autocomplete: 'off', spellcheck: 'false', placeholder: 'tiny-gpt2' });
  const nameF = field('Name', nameIn, 'How jobs and the playground will call it.');
  const pathF = field('Folder', pathIn, 'A Hugging Face folder (config.json + model.safetensors) inside the daemon\'s models directory, relative to it.');
  const regBtn = h('button', { type: 'submit', class: 'primary' }, 'Register');
  const regErr = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'register-form', novalidate: true }, h('div', { class: 'grid' }, nameF.wrap, pathF.wrap), regErr, h('div', { class: 'actions' }, regBtn));
  const hfIn = h('input', { type: 'text', id: 'hf-repo', autocomplete: 'off', spellcheck: 'false', placeholder: 'HuggingFaceTB/SmolLM2-135M-Instruct' });
  const revIn = h('input', { type: 'text', id: 'hf-revision', autocomplete: 'off', spellcheck: 'false', placeholder: 'main' });
  const hfF = field('Repository', hfIn, 'ORG/NAME on the Hugging Face Hub. From the cache when it is there; downloaded when the daemon has allow_downloads.');
  const revF = field('Revision', revIn, 'A branch, tag or commit (default main).');
  const hfErr = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const hfForm = h('form', { id: 'hub-form', novalidate: true }, h('div', { class: 'grid' }, hfF.wrap, revF.wrap), hfErr,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add from the Hub')));
  root.append(
    h('h1', null, 'Models'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'models' },
      h('caption', { class: 'sr-only' }, 'Registered models and job outputs'),
      h('thead', null, h('tr', null, ['Model', 'Kind', 'Source', 'Family', 'Parameters', 'Context', 'Created', 'In use by', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    h('section', { 'aria-labelledby': 'h-hub' }, h('h2', { id: 'h-hub' }, 'Add a model from the Hugging Face Hub'), hfForm),
    h('section', { 'aria-labelledby': 'h-register' }, h('h2', { id: 'h-register' }, 'Register a model folder'), form));

  const path = (id) => id.split('/').map(encodeURIComponent).join('/');
  const source = (m) => {
    const s = m.source || {};
    if (s.type === 'hub') return h('span', null, h('code', null, `${s.repo}@${s.revision || 'main'}`), s.commit ? h('span', { class: 'muted' }, ` ${s.commit.slice(0, 8)}`) : null);
    if (s.type === 'fine_tune') return h('span', null, 'fine-tune of ', s.base_model ? h('code', null, s.base_model) : '–', ' by ', h('a', { href: `#/jobs/${s.job}` }, s.job));
    return h('span', { title: s.path || '' }, 'folder');
  };
  const status = (m) => {
    if (m.status === 'downloading') {
      const d = m.download || {};
      return h('span', { class: 'badge st-running', role: 'status' }, `downloading ${(d.percentage || 0).toFixed(0)}%`);
    }
    if (m.status === 'failed') return h('span', { class: 'badge st-failed', title: (m.error && m.error.message) || '' }, `failed: ${(m.error && m.error.message) || ''}`);
    return null;
  };
  let timer = null;

  async function load() {
    let models;
    try { models = await listAll('/v1/models', 500); } catch (e) { clear(tbody).append(emptyRow(9, `Could not load models: ${e.message}`)); return; }
    if (!document.body.contains(tbody)) return; // left the page
    clear(tbody);
    if (!models.length) tbody.append(emptyRow(9, 'No models yet. Add one from the Hub or register a folder below (alignd init-model makes a tiny one).'));
    clearTimeout(timer);
    if (models.some((m) => m.status === 'downloading')) timer = setTimeout(load, 1000);
    for (const m of models) {
      const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${m.id}` }, 'Delete');
      del.addEventListener('click', async () => {
        if (!confirm(`Delete the model ${m.id}? Its files on disk are kept.`)) return;
        try { await api(`/v1/models/${path(m.id)}`, { method: 'DELETE' }); load(); } catch (e) { toast(e.message, 'error'); }
      });
      const inUse = m.in_use_by || [];
      tbody.append(h('tr', null,
        h('td', { 'data-label': 'Model' }, h('code', null, m.id), m.has_score_head ? h('span', { class: 'badge' }, 'score head') : null,
          m.chat_template ? h('span', { class: 'badge' }, 'chat template') : null, status(m)),
        h('td', { 'data-label': 'Kind' }, m.kind || '–', m.base_model ? h('span', null, ' of ', h('code', null, m.base_model)) : null),
        h('td', { 'data-label': 'Source' }, source(m)),
        h('td', { 'data-label': 'Family' }, m.family || m.architecture || '–', m.dtype ? h('span', { class: 'muted' }, ` ${m.dtype}`) : null),
        h('td', { 'data-label': 'Parameters', class: 'num' }, fmtNum(m.parameters)),
        h('td', { 'data-label': 'Context', class: 'num' }, m.context_length ? fmtNum(m.context_length) : '–'),
        h('td', { 'data-label': 'Created' }, fmtTime(m.created)),
        h('td', { 'data-label': 'In use by' }, inUse.length ? inUse.map((j) => h('a', { href: `#/jobs/${j}` }, `${j} `)) : '–'),
        h('td', { 'data-label': 'Actions', class: 'actions' },
          h('a', { class: 'button', href: `#/playground?model=${encodeURIComponent(m.id)}`, 'aria-label': `Chat with ${m.id}` }, 'Chat'),
          h('a', { class: 'button', href: `#/new?model=${encodeURIComponent(m.id)}`, 'aria-label': `Fine-tune ${m.id}` }, 'Fine-tune'),
          del)));
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setFieldError(nameIn, nameF.error, '');
    setFieldError(pathIn, pathF.error, '');
    regErr.hidden = true;
    if (!pathIn.value.trim()) { setFieldError(pathIn, pathF.error, 'path: is required'); pathIn.focus(); return; }
    const body = { path: pathIn.value.trim() };
    if (nameIn.value.trim()) body.name = nameIn.value.trim();
    try {
      await api('/v1/models', { method: 'POST', body });
      nameIn.value = '';
      pathIn.value = '';
      toast('Model registered');
      load();
    } catch (e) {
      if (e.param === 'path') { setFieldError(pathIn, pathF.error, e.message); pathIn.focus(); } else if (e.param === 'id' || e.param === 'name') { setFieldError(nameIn, nameF.error, e.message); nameIn.focus(); } else { regErr.textContent = e.message; regErr.hidden = false; }
    }
  });

  hfForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setFieldError(hfIn, hfF.error, '');
    setFieldError(revIn, revF.error, '');
    hfErr.hidden = true;
    if (!hfIn.value.trim()) { setFieldError(hfIn, hfF.error, 'hf: give ORG/NAME'); hfIn.focus(); return; }
    const body = { hf: hfIn.value.trim() };
    if (revIn.value.trim()) body.revision = revIn.value.trim();
    try {
      const m = await api('/v1/models', { method: 'POST', body });
      hfIn.value = '';
      revIn.value = '';
      toast(m.status === 'downloading' ? `Downloading ${m.id}` : `Model ${m.id} registered`);
      load();
    } catch (e) {
      if (e.param === 'hf') { setFieldError(hfIn, hfF.error, e.message); hfIn.focus(); } else if (e.param === 'revision') { setFieldError(revIn, revF.error, e.message); revIn.focus(); } else { hfErr.textContent = e.message; hfErr.hidden = false; }
    }
  });

  load();
  return null;
}
