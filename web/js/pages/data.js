// Data: upload JSONL, JSON, CSV or TSV files (training data, or a benchmark
// with purpose evals; a sharegpt file under names of its own with its
// dataset_info) and read their validation report — format, counts, token
// statistics, the length histogram, and every bad line with its number and
// reason — and list the files already uploaded.
import { api, listAll } from '../api.js';
import { h, clear, field, setFieldError, fmtNum, fmtBytes, fmtTime, emptyRow, toast } from '../util.js';

function histogram(title, buckets) {
  const entries = Object.entries(buckets || {});
  if (!entries.length) return null;
  const max = Math.max(...entries.map((e) => e[1]), 1);
  return h('figure', { class: 'histogram' },
    h('figcaption', null, title),
    h('table', { class: 'bars' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Length'), h('th', { scope: 'col' }, 'Rows'))),
      h('tbody', null, entries.map(([k, n]) => {
        const bar = h('span', { class: 'bar' });
        bar.style.width = `${(100 * n) / max}%`; // CSSOM, allowed by the CSP
        return h('tr', null, h('th', { scope: 'row' }, k), h('td', null, h('span', { class: 'bar-wrap' }, bar), h('span', { class: 'bar-n' }, fmtNum(n))));
      }))));
}

// Byte lengths of the lines of a local file, for files whose report has no
// token histogram (the daemon tokenizes only when a model is named).
function lineHistogram(text) {
  const edges = [64, 128, 256, 512, 1024, 2048, 4096, 8192];
  const out = {};
  let lo = 1;
  for (const e of edges) { out[`${lo}-${e}`] = 0; lo = e + 1; }
  out[`>${edges[edges.length - 1]}`] = 0;
  const enc = new TextEncoder();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const n = enc.encode(line).length;
    let key = `>${edges[edges.length - 1]}`;
    let prev = 1;
    for (const e of edges) { if (n <= e) { key = `${prev}-${e}`; break; } prev = e + 1; }
    out[key]++;
  }
  for (const k of Object.keys(out)) if (!out[k]) delete out[k];
  return out;
}

export function report(file, localText) {
  const v = file.validation || {};
  const errs = v.errors || [];
  const warns = v.warnings || [];
  const tok = v.tokens;
  const ok = file.status !== 'error' && !errs.length;
  const kv = (k, val) => [h('dt', null, k), h('dd', null, val)];
  const hist = v.mix && v.mix.lengths ? histogram('Tokens per row', v.mix.lengths)
    : (localText ? histogram('Bytes per line (tokens are counted when a model is named)', lineHistogram(localText)) : null);
  return h('section', { class: 'report', id: 'report', 'aria-labelledby': 'report-title' },
    h('h2', { id: 'report-title', tabindex: -1 }, `Validation report: ${file.filename || file.id}`),
    h('p', { class: ok ? 'ok-text' : 'error-text', role: 'status' },
      ok ? `${file.id}: valid, ${v.format || 'unknown'} format.` : `${file.id}: ${file.status === 'error' ? 'not usable' : 'usable, with bad lines'}${file.status_details ? ` — ${file.status_details}` : ''}.`),
    h('dl', { class: 'details' },
      kv('Format', `${v.format || '–'}${v.style ? ` (${v.style})` : ''}`),
      v.dataset_info ? kv('Dataset info', h('code', { id: 'report-dataset-info' }, JSON.stringify(v.dataset_info))) : null,
      kv('Rows', fmtNum(v.rows)), kv('Valid rows', fmtNum(v.valid_rows)),
      kv('Bad lines', fmtNum(errs.length)), kv('Duplicates', fmtNum(v.duplicates)),
      kv('Empty targets', fmtNum(v.empty_targets)),
      tok ? kv('Tokens per row', `min ${fmtNum(tok.min)}, mean ${fmtNum(tok.mean, 3)}, p95 ${fmtNum(tok.p95)}, max ${fmtNum(tok.max)}`) : null,
      v.max_length ? kv('Truncated / dropped', `${fmtNum(v.truncated)} / ${fmtNum(v.dropped)} at max_length ${v.max_length}`) : null,
      kv('Trainable', v.trainable === false ? `no${v.fatal ? `: ${v.fatal}` : ''}` : 'yes'),
      kv('Bytes', fmtBytes(file.bytes)), kv('SHA-256', h('code', null, (file.sha256 || '–').slice(0, 16))),
      v.error_counts && Object.keys(v.error_counts).length ? kv('Errors by kind', Object.entries(v.error_counts).map(([k, n]) => `${k} ${n}`).join(', ')) : null,
      v.mix && v.mix.groups ? kv(`Mix by ${v.mix.by}`, Object.entries(v.mix.groups).map(([k, g]) => `${k} ${fmtNum(g.rows)} (${Math.round((g.share || 0) * 100)}%)`).join(', ')) : null),
    hist,
    h('h3', null, `Bad lines (${errs.length})`),
    h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'bad-lines' },
      h('thead', null, h('tr', null, ['Line', 'Code', 'Field', 'Reason'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, errs.length ? errs.slice(0, 1000).map((e) => h('tr', null,
        h('td', { 'data-label': 'Line', class: 'num' }, String(e.line)),
        h('td', { 'data-label': 'Code' }, h('code', null, e.code)),
        h('td', { 'data-label': 'Field' }, e.field || '–'),
        h('td', { 'data-label': 'Reason' }, e.message))) : emptyRow(4, 'None.')))),
    warns.length ? [h('h3', null, `Warnings (${warns.length})`),
      h('ul', { class: 'warnings' }, warns.slice(0, 500).map((w) => h('li', null, h('code', null, w.code), ' ', w.message)))] : null,
    h('p', null, h('a', { class: 'button', href: `#/new?training_file=${encodeURIComponent(file.id)}` }, 'Train on this file')));
}

export function render(root, route) {
  const fileIn = h('input', { type: 'file', id: 'upload-file', accept: '.jsonl,.json,.csv,.tsv,application/jsonl,application/json,text/csv,text/tab-separated-values,text/plain', required: true });
  // Uploads are training data ("fine-tune"); jobs write their own files (preferences, revisions).
  const purpose = h('select', { id: 'upload-purpose' },
    h('option', { value: 'fine-tune' }, 'fine-tune (training and validation data)'),
    h('option', { value: 'evals' }, 'evals (a benchmark for evaluate jobs and eval_tasks)'));
  const fileF = field('Data file', fileIn, 'JSONL (one JSON object per line), a JSON array of rows, or CSV/TSV with a header. Rows: text, messages, alpaca (instruction/input/output), sharegpt (conversations), prompt/completion, prompt/chosen/rejected, prompt/completion/label, prompt (+answer), rankings or ratings; a benchmark: question/choices/answer (multiple choice) or prompt/answer (generative).');
  const purposeF = field('Purpose', purpose, null);
  // A sharegpt file under names of its own, as its LLaMA-Factory dataset_info.json entry says.
  const dinfo = h('textarea', { id: 'upload-dataset-info', rows: 3, spellcheck: 'false',
    placeholder: '{"formatting": "sharegpt", "columns": {"messages": "dialog"}, "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "USER", "assistant_tag": "BOT"}}' });
  const dinfoF = field('Dataset info (optional)', dinfo, 'A sharegpt file whose columns or tags have other names: its LLaMA-Factory dataset_info.json entry. Jobs naming the file read it with these names.', { wide: true });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'upload-submit' }, 'Upload and check');
  const out = h('div', { id: 'upload-result' });
  const tbody = h('tbody');
  const form = h('form', { id: 'upload-form', novalidate: true }, h('div', { class: 'grid' }, fileF.wrap, purposeF.wrap, dinfoF.wrap), h('div', { class: 'actions' }, submit));
  root.append(
    h('h1', null, 'Data'),
    h('section', { 'aria-labelledby': 'h-upload' }, h('h2', { id: 'h-upload' }, 'Upload'), form, out),
    h('section', { 'aria-labelledby': 'h-files' }, h('h2', { id: 'h-files' }, 'Files'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'files' },
        h('thead', null, h('tr', null, ['File', 'Name', 'Purpose', 'Status', 'Format', 'Rows', 'Bad lines', 'Size', 'Created', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody))));

  async function loadFiles() {
    let files;
    try { files = await listAll('/v1/files', 500); } catch (e) { clear(tbody).append(emptyRow(10, `Could not load files: ${e.message}`)); return; }
    clear(tbody);
    if (!files.length) tbody.append(emptyRow(10, 'No files yet.'));
    for (const f of files) {
      const v = f.validation || {};
      const show = h('button', { type: 'button', 'aria-label': `Show the report of ${f.id}` }, 'Report');
      show.addEventListener('click', () => showReport(f.id));
      const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${f.id}` }, 'Delete');
      del.addEventListener('click', async () => {
        if (!confirm(`Delete ${f.filename} (${f.id})?`)) return;
        try { await api(`/v1/files/${encodeURIComponent(f.id)}`, { method: 'DELETE' }); loadFiles(); } catch (e) { toast(e.message, 'error'); }
      });
      tbody.append(h('tr', null,
        h('td', { 'data-label': 'File' }, h('code', null, f.id)),
        h('td', { 'data-label': 'Name' }, f.filename),
        h('td', { 'data-label': 'Purpose' }, f.purpose || '–'),
        h('td', { 'data-label': 'Status' }, h('span', { class: `badge st-${f.status === 'error' ? 'failed' : 'succeeded'}` }, f.status)),
        h('td', { 'data-label': 'Format' }, v.format || '–'),
        h('td', { 'data-label': 'Rows', class: 'num' }, fmtNum(v.rows)),
        h('td', { 'data-label': 'Bad lines', class: 'num' }, fmtNum((v.errors || []).length)),
        h('td', { 'data-label': 'Size', class: 'num' }, fmtBytes(f.bytes)),
        h('td', { 'data-label': 'Created' }, fmtTime(f.created_at)),
        h('td', { 'data-label': 'Actions', class: 'actions' }, show, del)));
    }
  }

  // #/data?file=file-N opens that file's report (links from jobs' result files).
  async function showReport(id) {
    try {
      const full = await api(`/v1/files/${encodeURIComponent(id)}`);
      // Without token counts in the report, the histogram is of the lines' bytes.
      let text = null;
      const v = full.validation || {};
      if (!(v.mix && v.mix.lengths) && full.bytes <= 16 << 20) {
        try { text = await api(`/v1/files/${encodeURIComponent(id)}/content`, { text: true }); } catch { /* report without histogram */ }
      }
      clear(out).append(report(full, text));
      out.querySelector('h2').focus();
    } catch (e) { toast(e.message, 'error'); }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setFieldError(fileIn, fileF.error, '');
    setFieldError(dinfo, dinfoF.error, '');
    const file = fileIn.files && fileIn.files[0];
    if (!file) { setFieldError(fileIn, fileF.error, 'file: choose a data file'); fileIn.focus(); return; }
    const info = dinfo.value.trim();
    if (info) {
      let o = null;
      try { o = JSON.parse(info); } catch (e) { setFieldError(dinfo, dinfoF.error, `dataset_info: not JSON: ${e.message}`); dinfo.focus(); return; }
      if (!o || typeof o !== 'object' || Array.isArray(o)) { setFieldError(dinfo, dinfoF.error, 'dataset_info: must be a JSON object'); dinfo.focus(); return; }
    }
    const fd = new FormData();
    fd.append('purpose', purpose.value);
    if (info) fd.append('dataset_info', info);
    fd.append('file', file, file.name);
    submit.disabled = true;
    submit.textContent = 'Uploading…';
    clear(out);
    let text = null;
    try { if (file.size < 64 << 20) text = await file.text(); } catch { /* unreadable locally: the report still shows */ }
    try {
      const f = await api('/v1/files', { method: 'POST', form: fd });
      out.append(report(f, text));
      loadFiles();
    } catch (e) {
      // Not a dataset at all (400 file_invalid): the message names the first bad line.
      const target = e.param === 'purpose' ? [purpose, purposeF.error]
        : /^dataset_info\b/.test(e.param || '') ? [dinfo, dinfoF.error] : [fileIn, fileF.error];
      setFieldError(target[0], target[1], e.message);
      out.append(h('p', { class: 'error-text', role: 'alert', id: 'upload-error' }, e.message));
      target[0].focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Upload and check';
    }
  });

  loadFiles();
  if (route && route.query.get('file')) showReport(route.query.get('file'));
  return null;
}
