// Models: the registered base models and the jobs' outputs (fine-tuned
// models, adapters, checkpoints), with what each is and who uses it;
// register a folder from the daemon's models directory; delete one.
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
  root.append(
    h('h1', null, 'Models'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'models' },
      h('caption', { class: 'sr-only' }, 'Registered models and job outputs'),
      h('thead', null, h('tr', null, ['Model', 'Kind', 'Base', 'Architecture', 'Parameters', 'Created', 'In use by', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    h('section', { 'aria-labelledby': 'h-register' }, h('h2', { id: 'h-register' }, 'Register a model folder'), form));

  async function load() {
    let models;
    try { models = await listAll('/v1/models', 500); } catch (e) { clear(tbody).append(emptyRow(8, `Could not load models: ${e.message}`)); return; }
    clear(tbody);
    if (!models.length) tbody.append(emptyRow(8, 'No models yet. Register a folder below (alignd init-model makes a tiny one).'));
    for (const m of models) {
      const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${m.id}` }, 'Delete');
      del.addEventListener('click', async () => {
        if (!confirm(`Delete the model ${m.id}? Its files on disk are kept.`)) return;
        try { await api(`/v1/models/${encodeURIComponent(m.id)}`, { method: 'DELETE' }); load(); } catch (e) { toast(e.message, 'error'); }
      });
      const inUse = m.in_use_by || [];
      tbody.append(h('tr', null,
        h('td', { 'data-label': 'Model' }, h('code', null, m.id), m.has_score_head ? h('span', { class: 'badge' }, 'score head') : null),
        h('td', { 'data-label': 'Kind' }, m.kind || '–'),
        h('td', { 'data-label': 'Base' }, m.base_model || (m.owned_by && m.owned_by.startsWith('ftjob-') ? h('a', { href: `#/jobs/${m.owned_by}` }, m.owned_by) : '–')),
        h('td', { 'data-label': 'Architecture' }, m.architecture || '–'),
        h('td', { 'data-label': 'Parameters', class: 'num' }, fmtNum(m.parameters)),
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

  load();
  return null;
}
