// Playground: chat with any registered model or checkpoint through
// /v1/chat/completions, streamed token by token, optionally side by side
// with a second model answering the same conversation (e.g. the SFT model
// against the DPO model trained from it).
import { listAll, chatStream } from '../api.js';
import { h, clear, field, setFieldError, fmtNum } from '../util.js';

function pane(label, idp) {
  const model = h('input', { type: 'text', id: `${idp}-model`, list: 'pg-models', autocomplete: 'off', spellcheck: 'false' });
  const mf = field(`${label} model`, model, null);
  const log = h('ol', { class: 'chat-log', id: `${idp}-log`, 'aria-live': 'polite', 'aria-label': `${label} conversation` });
  const stat = h('p', { class: 'muted chat-stat', id: `${idp}-stat`, role: 'status' });
  const el = h('section', { class: 'pane', id: idp, 'aria-label': label }, mf.wrap, log, stat);
  return { el, model, mf, log, stat, history: [] };
}

export function render(root, route) {
  const a = pane('A', 'pane-a');
  const b = pane('B', 'pane-b');
  const datalist = h('datalist', { id: 'pg-models' });
  const sideBy = h('input', { type: 'checkbox', id: 'pg-compare' });
  const sys = h('textarea', { id: 'pg-system', rows: 2, placeholder: 'optional' });
  const msg = h('textarea', { id: 'pg-message', rows: 3, required: true });
  const maxTok = h('input', { type: 'number', id: 'pg-max-tokens', min: 1, max: 2048, step: 1, value: 64 });
  const temp = h('input', { type: 'number', id: 'pg-temperature', min: 0, max: 2, step: 0.1, value: 0.7 });
  const topP = h('input', { type: 'number', id: 'pg-top-p', min: 0, max: 1, step: 0.05, value: 1 });
  const seed = h('input', { type: 'number', id: 'pg-seed', min: 0, step: 1, placeholder: 'random' });
  const send = h('button', { type: 'submit', class: 'primary', id: 'pg-send' }, 'Send');
  const stop = h('button', { type: 'button', id: 'pg-stop', disabled: true }, 'Stop');
  const reset = h('button', { type: 'button', id: 'pg-clear' }, 'Clear conversation');
  const msgF = field('Message', msg, 'Ctrl+Enter sends.', { wide: true });
  const sysF = field('System prompt', sys, null, { wide: true });
  const mtF = field('max_tokens', maxTok, null);
  const tF = field('temperature', temp, '0 is greedy (deterministic).');
  const pF = field('top_p', topP, null);
  const sF = field('seed', seed, 'The same seed repeats a sampled answer.');
  const form = h('form', { id: 'pg-form', novalidate: true },
    h('div', { class: 'grid' }, sysF.wrap, msgF.wrap, mtF.wrap, tF.wrap, pF.wrap, sF.wrap),
    h('div', { class: 'actions' }, send, stop, reset,
      h('label', { for: 'pg-compare', class: 'inline' }, sideBy, ' Side by side with a second model')));
  const panes = h('div', { class: 'panes', id: 'panes' }, a.el, b.el);
  root.append(h('h1', null, 'Playground'),
    h('p', { class: 'muted' }, 'Chat with any model, a finished job\'s output or a checkpoint (ftjob-N:STEP); compare two answers to the same conversation.'),
    datalist, panes, form);

  const syncSide = () => { b.el.hidden = !sideBy.checked; panes.classList.toggle('two', sideBy.checked); };
  sideBy.addEventListener('change', syncSide);

  let ctl = null;
  const bubble = (role, text) => h('li', { class: `msg ${role}` }, h('span', { class: 'role' }, role), h('div', { class: 'text' }, text));

  async function run(p, userText) {
    const model = p.model.value.trim();
    const messages = [];
    if (sys.value.trim()) messages.push({ role: 'system', content: sys.value.trim() });
    messages.push(...p.history, { role: 'user', content: userText });
    p.log.append(bubble('user', userText));
    const text = h('div', { class: 'text' });
    const li = h('li', { class: 'msg assistant', 'aria-busy': 'true' }, h('span', { class: 'role' }, model), text);
    p.log.append(li);
    p.stat.textContent = 'generating…';
    const body = { model, messages, max_tokens: Number(maxTok.value), temperature: Number(temp.value), top_p: Number(topP.value) };
    if (seed.value !== '') body.seed = Number(seed.value);
    const t0 = performance.now();
    let out = '';
    let chunks = 0;
    try {
      const r = await chatStream(body, (d) => { out += d; chunks++; text.textContent = out; li.scrollIntoView({ block: 'nearest' }); }, ctl.signal);
      const secs = (performance.now() - t0) / 1000;
      const toks = r.usage ? r.usage.completion_tokens : chunks;
      if (!out) text.textContent = '(empty answer)';
      p.stat.textContent = `done: ${r.finish_reason || 'stop'} · ${toks} tokens in ${secs.toFixed(1)}s (${fmtNum(toks / Math.max(secs, 1e-3), 3)} tokens/s)`;
      p.history.push({ role: 'user', content: userText }, { role: 'assistant', content: out });
    } catch (e) {
      if (e.name === 'AbortError') {
        p.stat.textContent = 'stopped';
        p.history.push({ role: 'user', content: userText }, { role: 'assistant', content: out });
      } else {
        li.classList.add('error');
        text.textContent = out || '';
        p.stat.textContent = `error: ${e.message}`;
        if (e.param === 'model') setFieldError(p.model, p.mf.error, e.message);
      }
    }
    li.removeAttribute('aria-busy');
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setFieldError(msg, msgF.error, '');
    const active = sideBy.checked ? [a, b] : [a];
    let bad = false;
    for (const p of active) {
      setFieldError(p.model, p.mf.error, '');
      if (!p.model.value.trim()) { setFieldError(p.model, p.mf.error, 'model: choose a model'); p.model.focus(); bad = true; }
    }
    if (!msg.value.trim()) { setFieldError(msg, msgF.error, 'Write a message.'); if (!bad) msg.focus(); bad = true; }
    if (bad) return;
    const userText = msg.value;
    msg.value = '';
    ctl = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    await Promise.all(active.map((p) => run(p, userText)));
    send.disabled = false;
    stop.disabled = true;
    msg.focus();
  });
  msg.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  stop.addEventListener('click', () => { if (ctl) ctl.abort(); });
  reset.addEventListener('click', () => { for (const p of [a, b]) { p.history = []; clear(p.log); p.stat.textContent = ''; } });

  (async () => {
    try {
      const models = await listAll('/v1/models', 500);
      for (const m of models) datalist.append(h('option', { value: m.id }, m.kind || ''));
      if (!a.model.value && models[0]) a.model.value = models[0].id;
      if (!b.model.value && models[1]) b.model.value = models[1].id;
    } catch { /* typed names still work */ }
    const qm = route.query.get('model');
    if (qm) a.model.value = qm;
    if (route.query.get('b')) { b.model.value = route.query.get('b'); sideBy.checked = true; }
    syncSide();
  })();
  syncSide();
  return () => { if (ctl) ctl.abort(); };
}
