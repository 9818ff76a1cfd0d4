// The method registry as the daemon serves it (GET /v1/methods, built from
// lib/train/methods.c): every method, the hyper-parameters it takes with
// their types, defaults (TRL's for the method), ranges or choices and help,
// and the built-in tasks. The new-job form renders from this; nothing here
// repeats what the registry says.
import { api } from './api.js';

let pending = null;

// The registry, fetched once per page load (again after a failure).
// Resolves to { methods, byId, fields, tasks }: fields is every
// hyper-parameter once (its method-independent parts), in the registry's
// order; byId[m].hp maps a field's name to method m's view of it (its
// default, choices and task default).
export function loadMethods() {
  if (!pending) pending = api('/v1/methods').then(index, (e) => { pending = null; throw e; });
  return pending;
}

function index(reg) {
  const byId = {};
  const order = [];
  const fields = new Map();
  for (const m of reg.data) {
    byId[m.id] = Object.assign({}, m, { hp: new Map(m.hyperparameters.map((f) => [f.name, f])) });
    // Each method lists its fields in the registry's order: merge the lists.
    let at = 0;
    for (const f of m.hyperparameters) {
      const i = order.indexOf(f.name);
      if (i >= 0) { at = i + 1; continue; }
      order.splice(at++, 0, f.name);
      fields.set(f.name, f);
    }
  }
  return { methods: reg.data, byId, fields: order.map((n) => fields.get(n)), tasks: reg.tasks };
}

// Method m's view of field f (null when m does not take it).
export function fieldOf(reg, f, m) { return (reg.byId[m] && reg.byId[m].hp.get(f.name)) || null; }

// The default a job of method m gets for f when the form leaves it out.
export function defOf(reg, f, m) {
  const v = fieldOf(reg, f, m);
  return v ? v.default : undefined;
}

// Client-side checks mirroring lib/train/job.c (types and ranges from the
// registry). Returns a message or ''.
export function checkValue(f, raw) {
  if (f.type === 'boolean' || f.type === 'enum' || f.type === 'enum_list') return '';
  const s = String(raw).trim();
  if (s === '' || s === 'auto') return '';
  if (f.type === 'number_list') {
    const xs = s.split(',').map((t) => Number(t.trim()));
    return xs.every((x) => Number.isFinite(x) && x >= f.minimum) ? '' : `must be a list of numbers >= ${f.minimum}`;
  }
  const x = Number(s);
  if (!Number.isFinite(x)) return f.type === 'integer' ? 'must be an integer' : 'must be a number';
  if (f.type === 'integer' && !Number.isInteger(x)) return 'must be an integer';
  if (x < f.minimum || (f.maximum !== undefined && x > f.maximum)) return `${s} is outside [${f.minimum}, ${f.maximum}]`;
  return '';
}
