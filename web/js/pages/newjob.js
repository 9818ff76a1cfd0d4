// New job: a form for every method with TRL's defaults filled in and
// explained, model and dataset pickers, client-side checks that mirror the
// API's (lib/train/job.c), the API's own error shown next to the field its
// `param` names, an estimate, and the equivalent curl command. The methods,
// their hyper-parameters and the built-in tasks come from the daemon's
// registry (GET /v1/methods, js/methods.js).
import { api, apiKey, listAll } from '../api.js';
import { loadMethods, fieldOf, defOf, checkValue } from '../methods.js';
import { h, clear, field, setFieldError, fmtNum, fmtBytes, fmtDuration } from '../util.js';

function numOrNull(s) {
  const t = String(s).trim();
  return t === '' ? null : Number(t);
}

export function render(root, route) {
  let gone = false;
  const loading = h('p', { class: 'muted', id: 'form-loading', 'aria-live': 'polite' }, 'Loading the methods…');
  root.append(h('h1', null, 'New job'), loading);
  loadMethods().then((mreg) => {
    if (gone) return;
    loading.remove();
    build(root, route, mreg);
  }, (e) => {
    if (!gone) loading.textContent = `The methods could not be loaded: ${e.message}`;
  });
  return () => { gone = true; };
}

// The methods that train or sample a model (clean_data, which filters a
// file and takes no model, has no form here), and the sampling ones.
const forForm = (m) => m.requires_model;
const samples = (info) => info.kind === 'rl' || info.kind === 'data';
// A value as an input shows it (lists: their first entry, or comma-separated).
const shown = (f, v) => (Array.isArray(v) ? (f.type === 'enum_list' ? v[0] : v.join(', ')) : v);

function build(root, route, mreg) {
  const q = route.query;
  const controls = []; // {param, input, error, wrap, check()}
  // Registers a field under the API's name for it (`param` of its errors).
  const reg = (param, f, check) => { const c = Object.assign({ param, check }, f); controls.push(c); f.input.dataset.param = param; return c; };

  // ---- method
  const methodSel = h('select', { id: 'method', name: 'method' });
  const groups = new Map();
  for (const m of mreg.methods.filter(forForm)) {
    if (!groups.has(m.group)) { groups.set(m.group, h('optgroup', { label: m.group })); methodSel.append(groups.get(m.group)); }
    groups.get(m.group).append(h('option', { value: m.id }, m.title));
  }
  if (mreg.byId.sft) methodSel.value = 'sft'; // the form opens on SFT
  const methodAbout = h('p', { class: 'help', id: 'method-about', 'aria-live': 'polite' });
  const methodF = reg('method', field('Method', methodSel, null));
  methodSel.setAttribute('aria-describedby', `method-about ${methodSel.getAttribute('aria-describedby')}`);

  // ---- model
  const modelList = h('datalist', { id: 'model-options' });
  const modelIn = h('input', { id: 'model', type: 'text', list: 'model-options', required: true, autocomplete: 'off', spellcheck: 'false' });
  const modelF = reg('model', field('Base model', modelIn, 'A registered model, a finished job (ftjob-N) or one of its checkpoints (ftjob-N:STEP).'), () => (modelIn.value.trim() ? '' : 'is required'));
  const refIn = h('input', { id: 'ref_model', type: 'text', list: 'model-options', autocomplete: 'off' });
  const refF = reg('ref_model', field('Reference model (optional)', refIn, 'A separate frozen reference. Left empty, the reference is the start model (with LoRA: the base with adapters off).'));
  const ckptIn = h('input', { id: 'from_checkpoint', type: 'text', autocomplete: 'off', placeholder: 'ftjob-N:STEP' });
  const ckptF = reg('from_checkpoint', field('Start from checkpoint (optional)', ckptIn, 'Start from the weights of an earlier job\'s checkpoint (ftjob-N: its latest).'),
    () => (ckptIn.value.trim() && !/^ftjob-[^:\s]+(:\d+)?$/.test(ckptIn.value.trim()) ? 'must look like ftjob-N or ftjob-N:STEP' : ''));
  const modelB = h('input', { id: 'model_b', type: 'text', list: 'model-options', autocomplete: 'off' });
  const modelBF = reg('model_b', field('Model B (compared against)', modelB, 'The evaluate job reports the base model\'s win rate against this one (e.g. the DPO model against its SFT start), judged by the reward model or the AI judge. Leave empty for exact match on a task only.'));
  const ckptOpt = h('input', { type: 'checkbox', id: 'from_checkpoint_optimizer' });
  const ckptOptF = reg('from_checkpoint_optimizer', field('Resume the optimiser state too', ckptOpt, 'Off: start fresh from the checkpoint\'s weights. On: continue that run exactly (moments, step, data position).'));
  const criticSel = h('select', { id: 'critic' },
    h('option', { value: '' }, 'default (shared_base with LoRA, else separate)'),
    h('option', { value: 'shared_base' }, 'shared_base: a value head with its own LoRA on the frozen base'),
    h('option', { value: 'separate' }, 'separate: a second model'));
  const criticF = reg('critic', field('PPO critic', criticSel, 'shared_base keeps memory near one model (needs LoRA); separate starts the critic from critic_model or the reward model.'),
    () => (criticSel.value === 'shared_base' && !loraOn.checked ? '"shared_base" needs LoRA (the base is shared frozen)' : ''));
  const criticModel = h('input', { id: 'critic_model', type: 'text', list: 'model-options', autocomplete: 'off' });
  const criticModelF = reg('critic_model', field('Critic model (optional)', criticModel, 'Where a separate critic starts; default: the reward model.'));

  // ---- data
  const srcTask = h('input', { type: 'radio', name: 'source', id: 'src-task', value: 'task', checked: true });
  const srcFile = h('input', { type: 'radio', name: 'source', id: 'src-file', value: 'file' });
  const taskName = h('select', { id: 'task-name' }, mreg.tasks.map((t) => h('option', { value: t.id }, t.id)));
  const taskRows = h('input', { id: 'task-rows', type: 'number', min: 1, max: 10000000, step: 1, value: 1000, inputmode: 'numeric' });
  const taskSeed = h('input', { id: 'task-seed', type: 'number', min: 0, step: 1, value: 1, inputmode: 'numeric' });
  const taskNameF = reg('task.name', field('Built-in task', taskName, 'Synthetic tasks with verifiable answers.'));
  const taskAbout = taskNameF.wrap.querySelector('.help');
  const syncTask = () => { const t = mreg.tasks.find((x) => x.id === taskName.value); taskAbout.textContent = `Synthetic tasks with verifiable answers. ${t ? t.description : ''}`; };
  taskName.addEventListener('change', syncTask);
  syncTask();
  const taskRowsF = reg('task.rows', field('Rows', taskRows, 'How many rows the task generates (default 1000).'), () => intIn(taskRows.value, 1, 10000000));
  const taskSeedF = reg('task.seed', field('Task seed', taskSeed, 'Seeds the generated rows.'), () => intIn(taskSeed.value, 0, Number.MAX_SAFE_INTEGER));
  const trainSel = h('select', { id: 'training_file' }, h('option', { value: '' }, 'choose an uploaded file…'));
  const trainF = reg('training_file', field('Training file', trainSel, null), () => (srcFile.checked && !trainSel.value ? 'is required (or training_files, or a built-in task)' : ''));
  const valSel = h('select', { id: 'validation_file' }, h('option', { value: '' }, 'none (a task draws its own validation split)'));
  const valF = reg('validation_file', field('Validation file (optional)', valSel, null));
  const dataHelp = h('p', { class: 'help', id: 'data-help' });
  const taskBox = h('div', { class: 'grid' }, taskNameF.wrap, taskRowsF.wrap, taskSeedF.wrap);
  const fileBox = h('div', { class: 'grid' }, trainF.wrap, valF.wrap, h('p', { class: 'help wide' }, 'Upload and check JSONL, JSON, CSV or TSV files on the ', h('a', { href: '#/data' }, 'Data page'), '.'));
  // Several files mixed by weight ("training_files"): a fixed set of rows, empty ones left out.
  const srcMix = h('input', { type: 'radio', name: 'source', id: 'src-mix', value: 'mix' });
  const mixRows = [];
  for (let i = 0; i < 4; i++) {
    const sel = h('select', { id: `mix-file-${i}` }, h('option', { value: '' }, i < 2 ? 'choose an uploaded file…' : 'none'));
    const w = h('input', { id: `mix-weight-${i}`, type: 'number', min: 0, step: 'any', value: 1, inputmode: 'decimal' });
    const fF = reg(`training_files[${i}].file`, field(`File ${i + 1}`, sel, null),
      () => (srcMix.checked && i < 2 && !sel.value ? 'is required: a mixture names two files or more' : ''));
    const wF = reg(`training_files[${i}].weight`, field(`Weight ${i + 1}`, w, i === 0 ? 'Each example is drawn from a file with probability weight / sum of weights (seeded; resumes exactly).' : null),
      () => (srcMix.checked && sel.value && !(Number(w.value) > 0) ? 'must be a number > 0' : ''));
    mixRows.push({ sel, w, fF, wF });
  }
  const mixF = reg('training_files', { input: h('input', { type: 'hidden' }), error: h('p', { class: 'field-error' }), wrap: h('div') });
  const mixBox = h('div', { class: 'grid', id: 'mix-box' }, ...mixRows.flatMap((r) => [r.fF.wrap, r.wF.wrap]), mixF.error,
    h('p', { class: 'help wide' }, 'Packing and group_by_length do not apply to a mixture (it is drawn example by example).'));
  // The chat template: the model's, a built-in (lib/text/chat_builtin.c) or Jinja text.
  const BUILTIN_TEMPLATES = ['chatml', 'llama2', 'llama3', 'llama3.1', 'mistral', 'zephyr', 'gemma', 'phi3', 'qwen2.5'];
  const tmplSel = h('select', { id: 'chat_template' }, h('option', { value: '' }, "the model's own"),
    BUILTIN_TEMPLATES.map((t) => h('option', { value: t }, t)), h('option', { value: 'custom' }, 'Jinja text…'));
  const tmplText = h('textarea', { id: 'chat_template-text', rows: 4, spellcheck: 'false', placeholder: "{% for message in messages %}…{% endfor %}" });
  const tmplF = reg('chat_template', field('Chat template', tmplSel, 'Renders conversations (messages, alpaca, sharegpt) for training, and is saved with the output (tokenizer_config.json) so the fine-tune serves with it. A base model has none: name one.'),
    () => (tmplSel.value === 'custom' && !/\{[{%]/.test(tmplText.value) ? 'must be Jinja text ({{ … }} or {% … %})' : ''));
  const tmplTextF = field('Template text', tmplText, null, { wide: true });

  // ---- reward (RL)
  const rwVer = h('input', { id: 'reward-verifiable', type: 'number', step: 'any', min: 0, value: 1 });
  const rwPartial = h('input', { id: 'reward-partial', type: 'checkbox' });
  const rwRmW = h('input', { id: 'reward-model-weight', type: 'number', step: 'any', min: 0, placeholder: '1' });
  const rwJudgeW = h('input', { id: 'reward-judge-weight', type: 'number', step: 'any', min: 0, placeholder: '1' });
  const rwNorm = h('input', { id: 'reward-normalize', type: 'checkbox' });
  const rwRm = h('input', { id: 'reward-model', type: 'text', list: 'model-options', autocomplete: 'off' });
  const rwJudge = h('input', { id: 'reward-judge', type: 'text', list: 'model-options', autocomplete: 'off' });
  const rwPrinciples = h('textarea', { id: 'reward-principles', rows: 3 });
  const rwLen = h('input', { id: 'reward-length', type: 'number', step: 'any', min: 0, placeholder: '0' });
  const rwEos = h('input', { id: 'reward-eos', type: 'number', step: 'any', min: 0, placeholder: '0' });
  const rwClip = h('input', { id: 'reward-clip', type: 'number', step: 'any', min: 0, placeholder: 'off' });
  const nonneg = (inp) => () => { const v = numOrNull(inp.value); return v !== null && !(v >= 0) ? 'must be a number >= 0' : ''; };
  const rwVerF = reg('reward.verifiable', field('Verifiable reward weight', rwVer, 'Exact match (partial credit) against the task\'s or the row\'s reference answer. 0 turns it off.'), nonneg(rwVer));
  const rwPartialF = reg('reward.verifiable.partial', field('Partial credit', rwPartial, 'Character overlap earns part of the reward below an exact match.'));
  const rwRmF = reg('reward.reward_model', field('Reward model (optional)', rwRm, 'A reward_model job\'s output, or any model with a scalar head. Several, comma-separated: an ensemble scored by its minimum (a reward-hacking guard).'));
  const rwRmWF = reg('reward.reward_model_weight', field('Reward model weight', rwRmW, null), nonneg(rwRmW));
  const rwJudgeWF = reg('reward.judge.weight', field('Judge weight', rwJudgeW, null), nonneg(rwJudgeW));
  const rwNormF = reg('reward.length_normalize', field('Divide the reward by the response length', rwNorm, 'Length normalisation: a guard against length hacking.'));
  const rwJudgeF = reg('reward.judge.model', field('AI judge model (optional)', rwJudge, 'A registered model asked which of two responses is better (RLAIF).'));
  const rwPrF = reg('reward.judge.principles', field('Principles', rwPrinciples, 'One per line. The judge weighs responses against them; critique_revise draws one per prompt to critique and revise its answer.', { wide: true }));
  controls.push(Object.assign({}, rwPrF, { param: 'principles', check: () => (method() === 'critique_revise' && !rwPrinciples.value.trim() ? 'critique_revise needs a list of principles' : '') }));
  const rwLenF = reg('reward.length_penalty', field('Length penalty per token', rwLen, 'Subtracted per response token: a guard against length hacking.'), nonneg(rwLen));
  const rwEosF = reg('reward.missing_eos_penalty', field('Missing-EOS penalty', rwEos, 'Subtracted when a response never ends (TRL\'s missing_eos_penalty).'), nonneg(rwEos));
  const rwClipF = reg('reward.clip', field('Reward clip', rwClip, 'Clip rewards to ±this value; empty is off.'), nonneg(rwClip));
  const rewardError = h('p', { class: 'field-error', id: 'reward-error' });
  const rewardSet = h('fieldset', { id: 'fs-reward' }, h('legend', null, 'Reward'),
    h('p', { class: 'help' }, 'Where the reward comes from; sources combine with their weights.'),
    h('div', { class: 'grid' }, rwVerF.wrap, rwPartialF.wrap, rwRmF.wrap, rwRmWF.wrap, rwJudgeF.wrap, rwJudgeWF.wrap,
      rwLenF.wrap, rwEosF.wrap, rwClipF.wrap, rwNormF.wrap, rwPrF.wrap), rewardError);
  rewardSet.dataset.param = 'reward';

  // ---- hyper-parameters
  const hpFields = new Map(); // name -> {f, input, error, wrap, dirty}
  const basicGrid = h('div', { class: 'grid' });
  const advGrid = h('div', { class: 'grid' });
  for (const f of mreg.fields) {
    let input;
    if (f.type === 'boolean') input = h('input', { type: 'checkbox', id: `hp-${f.name}` });
    else if (f.type === 'enum') input = h('select', { id: `hp-${f.name}` }, f.choices.map((o) => h('option', { value: o }, o)));
    else if (f.type === 'enum_list') input = h('select', { id: `hp-${f.name}` }); // the method's choices (syncMethod)
    else input = h('input', { type: 'text', id: `hp-${f.name}`, inputmode: f.type === 'integer' ? 'numeric' : f.type === 'number' ? 'decimal' : 'text', autocomplete: 'off', spellcheck: 'false' });
    const fl = field(f.name, input, f.help);
    const entry = Object.assign({ f, dirty: false, help: fl.wrap.querySelector('.help') }, fl);
    input.addEventListener('input', () => { entry.dirty = true; });
    input.addEventListener('change', () => { entry.dirty = true; });
    hpFields.set(f.name, entry);
    (f.basic ? basicGrid : advGrid).append(fl.wrap);
    const c = reg(`hyperparameters.${f.name}`, fl, () => (entry.wrap.hidden ? '' : checkValue(f, input.value)));
    c.hp = entry;
  }

  // ---- LoRA
  const loraOn = h('input', { type: 'checkbox', id: 'lora-on' });
  const loraR = h('input', { type: 'number', id: 'lora-r', min: 1, max: 4096, step: 1, value: 8 });
  const loraA = h('input', { type: 'number', id: 'lora-alpha', min: 0, step: 'any', value: 8 });
  const loraT = h('input', { type: 'text', id: 'lora-targets', value: 'all-linear' });
  const loraM = h('input', { type: 'checkbox', id: 'lora-merge' });
  const loraOnF = field('Train LoRA adapters instead of every weight', loraOn, 'Far fewer trainable parameters and a small adapter folder (PEFT format). With LoRA the reference is the base with adapters switched off.');
  const loraRF = reg('lora.r', field('r (rank)', loraR, 'PEFT default 8. Higher ranks learn more, cost more.'), () => (loraOn.checked ? intIn(loraR.value, 1, 4096) : ''));
  const loraAF = reg('lora.alpha', field('alpha', loraA, 'Scale of the update is alpha / r (PEFT default 8).'), () => (loraOn.checked && !(Number(loraA.value) > 0) ? 'must be a number > 0' : ''));
  const loraTF = reg('lora.target_modules', field('target_modules', loraT, '"all-linear" or a comma-separated list of module names (q_proj, v_proj, c_attn, …).'), () => (loraOn.checked && !loraT.value.trim() ? 'must be a module list or "all-linear"' : ''));
  const loraMF = reg('lora.merge', field('Also write merged weights at the end', loraM, null));
  const loraBox = h('div', { class: 'grid', id: 'lora-box' }, loraRF.wrap, loraAF.wrap, loraTF.wrap, loraMF.wrap);

  // ---- evaluation tasks
  const evalBoxes = mreg.tasks.map((t) => h('input', { type: 'checkbox', id: `eval-${t.id}`, value: t.id }));
  const evalRows = h('input', { type: 'number', id: 'eval-rows', min: 1, step: 1, value: 200 });
  const evalRowsF = reg('eval_tasks', field('Rows per evaluation task', evalRows, 'Exact-match accuracy on built-in tasks at each evaluation, charted as eval/<task>/accuracy.'), () => intIn(evalRows.value, 1, 10000000));
  // Benchmark files (uploaded with purpose evals), scored as lm-evaluation-harness does.
  const benchBox = h('div', { class: 'checks', role: 'group', 'aria-label': 'Benchmark files', id: 'eval-files' },
    h('span', { class: 'muted' }, 'No benchmark files yet: upload one on the Data page with purpose evals.'));
  let benchBoxes = [];
  const fewshot = h('input', { type: 'number', id: 'eval-fewshot', min: 0, max: 64, step: 1, value: 0 });
  const fewshotF = reg('num_fewshot', field('Few-shot examples per benchmark row', fewshot, 'num_fewshot: examples from the file itself before each row, as the harness draws them (0: zero-shot).'), () => intIn(fewshot.value, 0, 64));
  const benchLimit = h('input', { type: 'number', id: 'eval-limit', min: 1, step: 1, placeholder: 'all' });
  const benchLimitF = reg('limit', field('Rows per benchmark', benchLimit, 'limit: the first rows of each file (empty: all of them).'), () => (benchLimit.value.trim() ? intIn(benchLimit.value, 1, 10000000) : ''));
  // A metric-safe name for a file's results: its name without the extension.
  const benchName = (f) => (f.filename || f.id).replace(/\.(jsonl|json|csv|tsv)$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60) || f.id;

  // ---- job
  const seedIn = h('input', { type: 'number', id: 'seed', min: 0, step: 1, value: 42 });
  const seedF = reg('seed', field('Seed', seedIn, 'Seeds initialisation, data order and sampling (TRL default 42): the same seed reproduces the run.'), () => intIn(seedIn.value, 0, Number.MAX_SAFE_INTEGER));
  const suffixIn = h('input', { type: 'text', id: 'suffix', maxlength: 64, autocomplete: 'off' });
  const suffixF = reg('suffix', field('Suffix (optional)', suffixIn, 'Added to the fine-tuned model\'s name: up to 64 letters, digits, -, _ and .'),
    () => (suffixIn.value.trim().length > 64 ? 'at most 64 characters' : /^[A-Za-z0-9._-]*$/.test(suffixIn.value.trim()) ? '' : 'only letters, digits, \'-\', \'_\' and \'.\''));
  const metaIn = h('textarea', { id: 'metadata', rows: 2, placeholder: 'team=research' });
  const metaF = reg('metadata', field('Metadata (optional)', metaIn, 'key=value, one per line, at most 16 pairs.'), () => metaCheck(metaIn.value));
  const prioIn = h('input', { type: 'number', id: 'priority', step: 1, value: 0 });
  const prioF = reg('priority', field('Priority', prioIn, 'Higher runs first among queued jobs (-100 to 100).'), () => intIn(prioIn.value, -100, 100));

  const formError = h('div', { class: 'form-error', id: 'form-error', role: 'alert', tabindex: -1 });
  const estimateOut = h('div', { class: 'estimate', id: 'estimate', 'aria-live': 'polite' });
  const curlOut = h('pre', { class: 'curl', id: 'curl', tabindex: 0, 'aria-label': 'Equivalent curl command' });
  const copyBtn = h('button', { type: 'button' }, 'Copy curl');
  const submitBtn = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Start job');
  const estimateBtn = h('button', { type: 'button', id: 'estimate-job' }, 'Estimate');

  const rlSet = [rewardSet];
  const form = h('form', { id: 'job-form', novalidate: true },
    h('fieldset', null, h('legend', null, 'Method'), methodF.wrap, methodAbout),
    h('fieldset', null, h('legend', null, 'Model'),
      h('div', { class: 'grid' }, modelF.wrap, refF.wrap, modelBF.wrap, criticF.wrap, criticModelF.wrap, ckptF.wrap, ckptOptF.wrap), modelList),
    h('fieldset', { id: 'fs-data' }, h('legend', null, 'Data'), dataHelp,
      h('div', { class: 'radios', role: 'radiogroup', 'aria-label': 'Training data source' },
        h('label', { for: 'src-task' }, srcTask, ' Built-in task'),
        h('label', { for: 'src-file' }, srcFile, ' Uploaded file'),
        h('label', { for: 'src-mix' }, srcMix, ' Several files, mixed by weight')),
      taskBox, fileBox, mixBox, h('div', { class: 'grid' }, tmplF.wrap, tmplTextF.wrap)),
    rewardSet,
    h('fieldset', null, h('legend', null, 'Hyper-parameters'),
      h('p', { class: 'help' }, 'Filled with TRL\'s defaults for the method; only values you change are sent ("auto" or empty keeps the default).'),
      basicGrid,
      h('details', null, h('summary', null, 'More hyper-parameters'), advGrid)),
    h('fieldset', null, h('legend', null, 'LoRA'), loraOnF.wrap, loraBox),
    h('fieldset', null, h('legend', null, 'Evaluation'),
      h('div', { class: 'checks', role: 'group', 'aria-label': 'Built-in evaluation tasks' },
        evalBoxes.map((b) => h('label', { for: b.id }, b, ` ${b.value}`))), evalRowsF.wrap,
      h('h3', null, 'Benchmark files'), benchBox, h('div', { class: 'grid' }, fewshotF.wrap, benchLimitF.wrap)),
    h('fieldset', null, h('legend', null, 'Job'), h('div', { class: 'grid' }, seedF.wrap, suffixF.wrap, prioF.wrap, metaF.wrap)),
    formError,
    h('div', { class: 'actions' }, submitBtn, estimateBtn),
    estimateOut,
    h('section', { 'aria-labelledby': 'h-curl' },
      h('div', { class: 'section-head' }, h('h2', { id: 'h-curl' }, 'The same job with curl'), copyBtn),
      curlOut));

  root.append(form);

  // ---- behaviour
  function method() { return methodSel.value; }
  function syncMethod(resetDefaults) {
    const m = method();
    const info = mreg.byId[m];
    methodAbout.textContent = `${info.description} Data: ${info.input_data}.`;
    const rl = samples(info);
    for (const s of rlSet) s.hidden = !rl;
    // Which job fields the method takes: the registry's takes_* (lib/train/methods.h).
    for (const w of [rwVerF, rwPartialF, rwRmF, rwRmWF]) w.wrap.hidden = !info.takes_reward;
    rwJudgeF.wrap.hidden = rwJudgeWF.wrap.hidden = !info.takes_judge;
    rwLenF.wrap.hidden = rwEosF.wrap.hidden = rwClipF.wrap.hidden = rwNormF.wrap.hidden = !info.takes_reward_shaping;
    modelBF.wrap.hidden = !info.takes_model_b;
    criticF.wrap.hidden = criticModelF.wrap.hidden = !info.takes_critic;
    refF.wrap.hidden = !info.takes_ref_model;
    dataHelp.textContent = `This method trains on ${info.input_data}.`;
    for (const e of hpFields.values()) {
      const v = fieldOf(mreg, e.f, m);
      e.wrap.hidden = !v;
      if (!v) continue;
      if (e.f.type === 'enum_list') { // loss_type: the objective's own list
        const keep = e.input.value;
        clear(e.input).append(...v.choices.map((o) => h('option', { value: o }, o)));
        if (v.choices.includes(keep)) e.input.value = keep;
        else { setInput(e, v.default); e.dirty = false; }
      }
      if (resetDefaults && !e.dirty) setInput(e, v.default);
      // What a job on a built-in task gets when the field is left as it is.
      const recipe = v.task_default === undefined ? ''
        : ` Left unchanged on a built-in task: ${shown(e.f, v.task_default)}${v.task_default_unless_set ? ` (unless ${v.task_default_unless_set} is set)` : ''}.`;
      e.help.textContent = `${e.f.help}${recipe}`;
    }
    for (const c of controls) if (c.hp) c.active = !c.hp.wrap.hidden;
    updateCurl();
  }
  function setInput(e, v) {
    if (e.f.type === 'boolean') e.input.checked = !!v;
    else e.input.value = v === null || v === undefined ? '' : String(shown(e.f, v));
  }
  function syncSource() {
    taskBox.hidden = !srcTask.checked;
    fileBox.hidden = !srcFile.checked;
    mixBox.hidden = !srcMix.checked;
    tmplTextF.wrap.hidden = tmplSel.value !== 'custom';
    updateCurl();
  }
  function syncLora() { loraBox.hidden = !loraOn.checked; updateCurl(); }

  function body() {
    const m = method();
    const b = { method: m, model: modelIn.value.trim() };
    if (srcTask.checked) {
      b.task = { name: taskName.value, rows: Number(taskRows.value), seed: Number(taskSeed.value) };
    } else if (srcMix.checked) {
      const tf = mixRows.filter((r) => r.sel.value).map((r) => ({ file: r.sel.value, weight: numOrNull(r.w.value) ?? 1 }));
      if (tf.length) b.training_files = tf;
    } else if (trainSel.value) b.training_file = trainSel.value;
    if (srcFile.checked && valSel.value) b.validation_file = valSel.value;
    if (tmplSel.value === 'custom') { if (tmplText.value.trim()) b.chat_template = tmplText.value; } else if (tmplSel.value) b.chat_template = tmplSel.value;
    if (!refF.wrap.hidden && refIn.value.trim()) b.ref_model = refIn.value.trim();
    if (!modelBF.wrap.hidden && modelB.value.trim()) b.model_b = modelB.value.trim();
    if (!criticF.wrap.hidden && criticSel.value) b.critic = criticSel.value;
    if (!criticModelF.wrap.hidden && criticModel.value.trim()) b.critic_model = criticModel.value.trim();
    if (ckptIn.value.trim()) {
      b.from_checkpoint = ckptIn.value.trim();
      if (ckptOpt.checked) b.from_checkpoint_optimizer = true;
    }
    const hp = {};
    for (const e of hpFields.values()) {
      if (e.wrap.hidden) continue;
      const d = shown(e.f, defOf(mreg, e.f, m));
      let v;
      if (e.f.type === 'boolean') v = e.input.checked;
      else if (e.f.type === 'enum' || e.f.type === 'enum_list') v = e.input.value;
      else if (e.f.type === 'number_list') {
        const s = e.input.value.trim();
        if (s === '' || s === 'auto' || s === d) continue;
        v = s.split(',').map((t) => (Number.isFinite(Number(t.trim())) ? Number(t.trim()) : t.trim()));
        hp[e.f.name] = v;
        continue;
      } else {
        const s = e.input.value.trim();
        if (s === '' || s === 'auto') continue;
        v = Number(s);
        if (!Number.isFinite(v)) v = s; // sent as typed; the server names the field
      }
      if (v !== d) hp[e.f.name] = v;
    }
    if (Object.keys(hp).length) b.hyperparameters = hp;
    const principles = rwPrinciples.value.split('\n').map((x) => x.trim()).filter(Boolean);
    if (m === 'critique_revise' && principles.length) b.principles = principles;
    if (mreg.byId[m].takes_reward) {
      const r = {};
      const ver = numOrNull(rwVer.value);
      if (ver) r.verifiable = rwPartial.checked ? { weight: ver, partial: true } : ver;
      const rms = rwRm.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (rms.length) r.reward_model = rms.length === 1 ? rms[0] : rms;
      const rmw = numOrNull(rwRmW.value);
      if (rms.length && rmw !== null && rmw !== 1) r.reward_model_weight = rmw;
      if (!rwJudgeF.wrap.hidden && rwJudge.value.trim()) {
        r.judge = { model: rwJudge.value.trim() };
        if (principles.length) r.judge.principles = principles;
        const jw = numOrNull(rwJudgeW.value);
        if (jw !== null && jw !== 1) r.judge.weight = jw;
      }
      if (!rwLenF.wrap.hidden) {
        for (const [k, inp] of [['length_penalty', rwLen], ['missing_eos_penalty', rwEos], ['clip', rwClip]]) {
          const v = numOrNull(inp.value);
          if (v) r[k] = v;
        }
        if (rwNorm.checked) r.length_normalize = true;
      }
      if (Object.keys(r).length) b.reward = r;
    }
    if (loraOn.checked) {
      b.lora = { r: Number(loraR.value), alpha: Number(loraA.value) };
      const t = loraT.value.trim();
      b.lora.target_modules = t === 'all-linear' || !t.includes(',') ? t : t.split(',').map((s) => s.trim()).filter(Boolean);
      if (loraM.checked) b.lora.merge = true;
    }
    const ev = evalBoxes.filter((x) => x.checked).map((x) => ({ name: x.value, rows: Number(evalRows.value) }));
    for (const x of benchBoxes.filter((c) => c.checked)) {
      const t = { file: x.value, name: x.dataset.name };
      if (Number(fewshot.value) > 0) t.num_fewshot = Number(fewshot.value);
      if (benchLimit.value.trim()) t.limit = Number(benchLimit.value);
      ev.push(t);
    }
    if (ev.length) b.eval_tasks = ev;
    b.seed = Number(seedIn.value);
    if (suffixIn.value.trim()) b.suffix = suffixIn.value.trim();
    const meta = parseMeta(metaIn.value);
    if (Object.keys(meta).length) b.metadata = meta;
    if (Number(prioIn.value)) b.priority = Number(prioIn.value);
    return b;
  }

  function updateCurl() {
    const json = JSON.stringify(body(), null, 2).replace(/'/g, "'\\''");
    const lines = [`curl -sS ${location.origin}/v1/fine_tuning/jobs \\`];
    if (apiKey()) lines.push('  -H "Authorization: Bearer $ALIGND_API_KEY" \\');
    lines.push("  -H 'Content-Type: application/json' \\", `  -d '${json}'`);
    curlOut.textContent = lines.join('\n');
  }
  copyBtn.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(curlOut.textContent); copyBtn.textContent = 'Copied'; } catch { copyBtn.textContent = 'Select and copy'; }
    setTimeout(() => { copyBtn.textContent = 'Copy curl'; }, 2000);
  });

  function clearErrors() {
    for (const c of controls) setFieldError(c.input, c.error, '');
    rewardError.textContent = '';
    formError.textContent = '';
    formError.hidden = true;
  }

  // Client-side checks; returns the first bad control or null.
  function validate() {
    clearErrors();
    let first = null;
    for (const c of controls) {
      if (!c.check || c.wrap.closest('[hidden]')) continue;
      const msg = c.check();
      if (msg) { setFieldError(c.input, c.error, `${c.param}: ${msg}`); first = first || c; }
    }
    const bs = hpFields.get('batch_size'), ga = hpFields.get('gradient_accumulation_steps');
    const bsv = Number(bs.input.value || defOf(mreg, bs.f, method())), gav = Number(ga.input.value || 1);
    if (Number.isInteger(bsv) && Number.isInteger(gav) && gav > 0 && bsv % gav) {
      setFieldError(ga.input, ga.error, `hyperparameters.gradient_accumulation_steps: ${gav} does not divide batch_size ${bsv}`);
      first = first || controls.find((c) => c.input === ga.input);
    }
    // The cross-field rules of lib/train/job.c (check_rl).
    const m = method();
    const info = mreg.byId[m];
    const b = body();
    const hpv = (name) => { const e = hpFields.get(name); const v = e.input.value.trim(); return v === '' || v === 'auto' ? defOf(mreg, e.f, m) : Number(v); };
    const bad = (input, error, msg) => { setFieldError(input, error, msg); first = first || { input }; };
    const judged = b.reward && (b.reward.reward_model || b.reward.judge);
    if (info.requires_reward && !(b.reward && (b.reward.verifiable || judged))) {
      rewardError.textContent = `reward: is required for ${m}: name a source (verifiable weight, reward model or judge)`;
      first = first || { input: rwVer };
    }
    // num_generations: the methods that sample groups take it; RL counts completions in batch_size
    const ng = hpFields.get('num_generations');
    if (fieldOf(mreg, ng.f, m) && Number.isInteger(hpv('num_generations'))) {
      if (hpv('num_generations') < 2) bad(ng.input, ng.error, `hyperparameters.num_generations: must be >= 2 for ${m}`);
      else if (info.kind === 'rl' && Number.isInteger(bsv) && bsv % hpv('num_generations')) {
        bad(bs.input, bs.error, `hyperparameters.batch_size: ${bsv} is not a multiple of num_generations ${hpv('num_generations')} (batch_size counts completions)`);
      }
    }
    const nm = hpFields.get('num_mini_batches');
    if (fieldOf(mreg, nm.f, m) && Number.isInteger(bsv) && Number.isInteger(hpv('num_mini_batches')) && bsv % hpv('num_mini_batches')) {
      bad(nm.input, nm.error, `hyperparameters.num_mini_batches: ${hpv('num_mini_batches')} does not divide batch_size ${bsv}`);
    }
    if (info.takes_model_b) { // evaluate: model against model_b
      if (!b.model_b && judged) bad(modelB, modelBF.error, 'model_b: is required to judge the model against it');
      else if (b.model_b && !judged) { rewardError.textContent = 'reward: evaluate needs a reward_model or a judge to compare models'; first = first || { input: rwRm }; }
      else if (!b.model_b && !srcTask.checked) bad(modelB, modelBF.error, 'model_b: is required (or name a task for exact match only)');
    }
    return first;
  }

  // The API's error next to the field its param names (or above the buttons).
  function showApiError(e) {
    const p = e.param || '';
    let target = null;
    const cands = controls.filter((c) => c.active !== false && !c.wrap.closest('[hidden]'));
    // "eval_tasks[0].rows" -> "eval_tasks[0]" -> "eval_tasks": the nearest field that exists.
    let key = p;
    while (key && !target) {
      target = cands.find((c) => c.param === key) || null;
      const up = key.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
      key = up === key ? '' : up;
    }
    if (!target && p === 'reward') { rewardError.textContent = e.message; rwVer.focus(); return; }
    if (target) {
      setFieldError(target.input, target.error, e.message);
      const adv = target.wrap.closest('details');
      if (adv) adv.open = true;
      target.input.focus();
    } else {
      formError.textContent = `${e.message}${p ? ` (${p})` : ''}`;
      formError.hidden = false;
      formError.focus();
    }
  }

  form.addEventListener('input', updateCurl);
  form.addEventListener('change', updateCurl);
  methodSel.addEventListener('change', () => syncMethod(true));
  srcTask.addEventListener('change', syncSource);
  srcFile.addEventListener('change', syncSource);
  srcMix.addEventListener('change', syncSource);
  tmplSel.addEventListener('change', syncSource);
  loraOn.addEventListener('change', syncLora);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const bad = validate();
    if (bad) {
      const adv = bad.input.closest('details');
      if (adv) adv.open = true;
      bad.input.focus();
      return;
    }
    submitBtn.disabled = true;
    submitBtn.textContent = 'Starting…';
    try {
      const job = await api('/v1/fine_tuning/jobs', { method: 'POST', body: body() });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      showApiError(e);
    } finally {
      submitBtn.disabled = false;
      submitBtn.textContent = 'Start job';
    }
  });

  estimateBtn.addEventListener('click', async () => {
    const bad = validate();
    if (bad) { bad.input.focus(); return; }
    clear(estimateOut).append(h('p', { class: 'muted' }, 'Estimating…'));
    try {
      const r = await api('/v1/jobs/estimate', { method: 'POST', body: body() });
      const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
      clear(estimateOut).append(h('h2', null, 'Estimate'), h('dl', { class: 'details' },
        row('Steps', fmtNum(r.steps)), row('Examples', fmtNum(r.examples)), row('Tokens', fmtNum(r.tokens)),
        row('Parameters', `${fmtNum(r.trainable_parameters)} trainable of ${fmtNum(r.parameters)}`),
        row('Memory', fmtBytes(r.memory_bytes)), row('Time', fmtDuration(r.seconds)),
        row('Fits in memory', r.fits === false ? 'no' : 'yes')));
    } catch (e) {
      clear(estimateOut);
      showApiError(e);
    }
  });

  // ---- pickers and prefill
  (async () => {
    const [models, files] = await Promise.allSettled([listAll('/v1/models', 300), listAll('/v1/files', 300)]);
    if (models.status === 'fulfilled') {
      for (const m of models.value) modelList.append(h('option', { value: m.id }, `${m.kind || 'model'}${m.architecture ? ` · ${m.architecture}` : ''}${m.parameters ? ` · ${fmtNum(m.parameters)} params` : ''}`));
      if (!modelIn.value && models.value.length) {
        const base = models.value.find((m) => m.kind === 'base') || models.value[0];
        modelIn.value = base.id;
      }
    }
    if (files.status === 'fulfilled') {
      for (const f of files.value) {
        const v = f.validation || {};
        const label = `${f.filename} · ${f.id} · ${v.format || '?'} · ${fmtNum(v.valid_rows ?? v.rows)} rows${f.status === 'error' ? ' · has errors' : ''}`;
        trainSel.append(h('option', { value: f.id }, label));
        valSel.append(h('option', { value: f.id }, label));
        for (const r of mixRows) r.sel.append(h('option', { value: f.id }, label));
      }
      const benches = files.value.filter((f) => f.purpose === 'evals' && f.status !== 'error');
      if (benches.length) {
        benchBoxes = benches.map((f) => h('input', { type: 'checkbox', id: `evalfile-${f.id}`, value: f.id, 'data-name': benchName(f) }));
        clear(benchBox).append(...benchBoxes.map((b, i) => h('label', { for: b.id }, b, ` ${benches[i].filename} (${b.value}, results as ${b.dataset.name})`)));
      }
    }
    if (q.get('model')) modelIn.value = q.get('model');
    if (q.get('from_checkpoint')) ckptIn.value = q.get('from_checkpoint');
    if (q.get('training_file')) { srcFile.checked = true; trainSel.value = q.get('training_file'); }
    if (q.get('clone')) await cloneFrom(q.get('clone'));
    if (q.get('method') && mreg.byId[q.get('method')] && forForm(mreg.byId[q.get('method')])) { methodSel.value = q.get('method'); syncMethod(true); }
    syncSource();
    updateCurl();
  })();

  async function cloneFrom(id) {
    let j;
    try { j = await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}`); } catch { return; }
    if (mreg.byId[j.method] && forForm(mreg.byId[j.method])) methodSel.value = j.method;
    syncMethod(true);
    if (!q.get('model') && !q.get('from_checkpoint')) modelIn.value = j.model || modelIn.value;
    if (q.get('from_checkpoint')) modelIn.value = j.model || modelIn.value;
    if (j.task) {
      srcTask.checked = true;
      taskName.value = j.task.name;
      taskRows.value = j.task.rows;
      taskSeed.value = j.task.seed ?? 1;
    } else if (Array.isArray(j.training_files) && j.training_files.length > 1) {
      srcMix.checked = true;
      j.training_files.slice(0, mixRows.length).forEach((t, i) => { mixRows[i].sel.value = t.file; mixRows[i].w.value = t.weight ?? 1; });
    } else if (j.training_file || (Array.isArray(j.training_files) && j.training_files.length)) {
      srcFile.checked = true;
      trainSel.value = j.training_file || j.training_files[0].file;
      if (j.validation_file) valSel.value = j.validation_file;
    }
    if (j.chat_template) {
      if (BUILTIN_TEMPLATES.includes(j.chat_template)) tmplSel.value = j.chat_template;
      else { tmplSel.value = 'custom'; tmplText.value = j.chat_template; }
    }
    for (const [k, v] of Object.entries(j.hyperparameters || {})) {
      const e = hpFields.get(k);
      if (!e || !fieldOf(mreg, e.f, j.method) || v === null || (typeof v === 'object' && !Array.isArray(v))) continue;
      // Resolved values went through float32: 0.001000000047 reads back as 0.001.
      const f32 = (x) => (typeof x === 'number' && !Number.isInteger(x) ? Number(x.toPrecision(6)) : x);
      setInput(e, Array.isArray(v) ? v.map(f32) : f32(v));
      e.dirty = true;
    }
    if (j.seed !== undefined && j.seed !== null) seedIn.value = j.seed;
    if (j.suffix) suffixIn.value = j.suffix;
  }

  syncMethod(true);
  syncSource();
  syncLora();
  formError.hidden = true;
  return null;
}

function intIn(s, lo, hi) {
  const t = String(s).trim();
  if (t === '') return 'is required';
  const x = Number(t);
  if (!Number.isInteger(x)) return 'must be an integer';
  if (hi === Number.MAX_SAFE_INTEGER && x < lo) return lo === 0 ? 'must be a non-negative integer' : `must be an integer >= ${lo}`;
  if (x < lo || x > hi) return `must be an integer in [${lo}, ${hi}]`;
  return '';
}

function parseMeta(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    const i = t.indexOf('=');
    if (i > 0) out[t.slice(0, i).trim()] = t.slice(i + 1).trim();
  }
  return out;
}

function metaCheck(text) {
  const lines = text.split('\n').map((s) => s.trim()).filter(Boolean);
  for (const l of lines) if (l.indexOf('=') <= 0) return `"${l}" is not key=value`;
  if (lines.length > 16) return 'at most 16 pairs';
  for (const [k, v] of Object.entries(parseMeta(text))) {
    if (k.length > 64) return `key "${k.slice(0, 20)}…" is longer than 64 characters`;
    if (v.length > 512) return `value of "${k}" is longer than 512 characters`;
  }
  return '';
}
