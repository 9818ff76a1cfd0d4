// The REST client: JSON requests with the session's API key, OpenAI-style
// errors as ApiError (status, type, code, param, message), and server-sent
// events read from fetch streams (EventSource cannot send Authorization).

const KEY_NAME = 'alignd.api_key';

export function apiKey() {
  try { return sessionStorage.getItem(KEY_NAME) || ''; } catch { return ''; }
}

export function setApiKey(k) {
  try {
    if (k) sessionStorage.setItem(KEY_NAME, k);
    else sessionStorage.removeItem(KEY_NAME);
  } catch { /* storage disabled: the key lives until reload */ }
  window.dispatchEvent(new CustomEvent('alignd:key'));
}

export class ApiError extends Error {
  constructor(status, err) {
    super(err && err.message ? err.message : `HTTP ${status}`);
    this.status = status;
    this.type = err && err.type || '';
    this.code = err && err.code || '';
    this.param = err && err.param || '';
  }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const k = apiKey();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const e = new ApiError(res.status, body && body.error ? body.error : { message: `${res.status} ${res.statusText}` });
  if (res.status === 401) window.dispatchEvent(new CustomEvent('alignd:unauthorized', { detail: e }));
  return e;
}

// api('/v1/models') or api('/v1/files', {method:'POST', form}) or
// api(path, {method, body}) -> parsed JSON (text with {text: true} or for
// other content types); throws ApiError.
export async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', headers: headers(), signal: opts.signal };
  if (opts.form) {
    init.body = opts.form;
  } else if (opts.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { message: 'cannot reach the daemon', type: 'network_error' });
  }
  if (!res.ok) throw await errorOf(res);
  const ct = res.headers.get('Content-Type') || '';
  return !opts.text && ct.includes('json') && !ct.includes('jsonl') ? res.json() : res.text();
}

// Reads an SSE body, calling onMessage({id, event, data}) per message
// (data JSON-parsed when it parses). Resolves when the stream ends.
async function readSse(res, onMessage) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let msg = { id: null, event: 'message', data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(buf[nl] === '\r' && buf[nl + 1] === '\n' ? nl + 2 : nl + 1);
      if (line === '') {
        if (msg.data.length) {
          const text = msg.data.join('\n');
          let data = text;
          try { data = JSON.parse(text); } catch { /* e.g. [DONE] */ }
          onMessage({ id: msg.id, event: msg.event, data });
        }
        msg = { id: msg.id, event: 'message', data: [] };
        continue;
      }
      if (line[0] === ':') continue; // comment: heartbeat
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v[0] === ' ') v = v.slice(1);
      if (field === 'data') msg.data.push(v);
      else if (field === 'event') msg.event = v;
      else if (field === 'id') msg.id = v;
    }
  }
}

// Follows a job's live feed: GET path with Accept: text/event-stream,
// reconnecting with Last-Event-ID when the stream breaks. onMessage gets
// {id, event, data}. Stops when signal aborts, when the server says the
// feed is over (`event: end`, sent once a finished job's items are all
// out), or when a stream ends having delivered nothing.
// onState('live'|'reconnecting'|'ended').
export async function follow(path, onMessage, { signal, onState } = {}) {
  let last = null;
  let delay = 1000;
  while (!signal || !signal.aborted) {
    let got = 0;
    let over = false;
    try {
      const h = headers({ Accept: 'text/event-stream' });
      if (last !== null) h['Last-Event-ID'] = last;
      const res = await fetch(path, { headers: h, signal, cache: 'no-store' });
      if (!res.ok) throw await errorOf(res);
      if (onState) onState('live');
      await readSse(res, (m) => {
        if (m.event === 'end') { over = true; return; }
        got++;
        if (m.id !== null) last = m.id;
        onMessage(m);
      });
      if (over || !got) { if (onState) onState('ended'); return; }
      delay = 1000;
    } catch (e) {
      if (signal && signal.aborted) return;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
        if (onState) onState('ended');
        return;
      }
      if (onState) onState('reconnecting');
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// POST /v1/chat/completions with stream: true; onDelta(text, chunk) per
// chunk. Resolves with {finish_reason, usage}.
export async function chatStream(body, onDelta, signal) {
  const res = await fetch('/v1/chat/completions', {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
    body: JSON.stringify(Object.assign({}, body, { stream: true })),
    signal,
  });
  if (!res.ok) throw await errorOf(res);
  const out = { finish_reason: null, usage: null };
  await readSse(res, (m) => {
    if (m.data === '[DONE]' || typeof m.data !== 'object' || !m.data) return;
    if (m.data.error) throw new ApiError(500, m.data.error);
    const ch = m.data.choices && m.data.choices[0];
    if (m.data.usage) out.usage = m.data.usage;
    if (!ch) return;
    const text = ch.delta && ch.delta.content;
    if (text) onDelta(text, m.data);
    if (ch.finish_reason) out.finish_reason = ch.finish_reason;
  });
  return out;
}

// Every page of a list endpoint (at most `max` objects).
export async function listAll(path, max = 500) {
  const out = [];
  let after = null;
  const sep = path.includes('?') ? '&' : '?';
  while (out.length < max) {
    const q = `${sep}limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const page = await api(path + q);
    out.push(...(page.data || []));
    if (!page.has_more || !page.data || !page.data.length) break;
    after = page.last_id || page.data[page.data.length - 1].id;
    if (!after) break;
  }
  return out;
}
