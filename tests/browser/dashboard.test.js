// The dashboard in headless Chromium (Debian's chromium, driven by
// playwright-core) against a real daemon: its own temporary state dir and
// a tiny model made by `alignd init-model`, jobs on the built-in addition2
// task so they finish in seconds.
//
// What a person does and sees: submit a job through the form (after the
// form's own check and the API's error, each next to its field), see it in
// the jobs list, watch a chart gain points over SSE, open the samples,
// cancel a second job, upload a bad file and read its line errors, upload a
// sharegpt file under its own names with its dataset_info (the form's and
// the API's errors beside the field) and a benchmark, chat in
// the playground, compare two jobs and a base's benchmark results with its
// fine-tune's, see a job of two processes with its rank count, and get
// through the API-key prompt.
// Screenshots of every page go to $AL_TEST_TMP/screenshots.
//
// Environment: ALIGND_BIN (the daemon), AL_TEST_TMP (scratch and
// artefacts), ALIGND_WEB_DIR (optional: the staged dashboard when the
// binary's default is not it), CHROMIUM (default /usr/bin/chromium).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const { WAIT, waitFor, launch } = require('./common.js');

const BIN = process.env.ALIGND_BIN;
const TMP = process.env.AL_TEST_TMP || fs.mkdtempSync(path.join(os.tmpdir(), 'alignd-browser-'));
const SHOTS = path.join(TMP, 'screenshots');
const REPO = path.resolve(__dirname, '..', '..');

let daemon = null;
let base = null;
let ctx = null;
let page = null;
const stateDir = path.join(TMP, 'state');
const modelsDir = path.join(TMP, 'models');
const problems = []; // console errors, CSP violations, uncaught exceptions

async function http(method, p, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(base + p, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

async function shot(name, full = true) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: full });
}

// A full page load each time (a hash-only change would keep the old page).
async function go(hash) {
  await page.goto('about:blank');
  await page.goto(`${base}/${hash}`);
  await page.waitForSelector('main h1');
}

before(async () => {
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(modelsDir, { recursive: true, force: true });
  fs.mkdirSync(stateDir, { recursive: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  if (process.env.ALIGND_TEST_URL) {
    base = process.env.ALIGND_TEST_URL; // development only: a daemon already running
  } else {
    assert.ok(BIN, 'ALIGND_BIN names the daemon');
    execFileSync(BIN, ['init-model', '--arch', 'gpt2', '--layers', '1', '--hidden', '32', '--heads', '2',
      '--context', '128', '--seed', '3', '--out', path.join(modelsDir, 'tiny')], { stdio: 'ignore' });
    // A launcher that never starts a rank (a job asking for processes is
    // lost at once and, without retries, fails): enough to show one.
    const args = ['serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--models-dir', modelsDir,
      '--launcher', '/bin/false -np {processes}', '--launcher-retries', '0'];
    if (process.env.ALIGND_WEB_DIR) args.push('--web-dir', process.env.ALIGND_WEB_DIR);
    const log = fs.openSync(path.join(TMP, 'daemon.log'), 'w');
    daemon = spawn(BIN, args, { stdio: ['ignore', log, log], env: Object.assign({}, process.env, { ALIGND_THREADS: '1' }) });
    const addrFile = path.join(stateDir, 'alignd.addr');
    const addr = await waitFor(() => fs.existsSync(addrFile) && fs.readFileSync(addrFile, 'utf8').trim(), 'alignd.addr');
    base = /^https?:\/\//.test(addr) ? addr.replace(/\/$/, '') : `http://${addr}`;
    await waitFor(async () => (await http('GET', '/readyz')).status === 200, '/readyz');
  }
  // The tiny model, registered under the name "tiny" (unless the daemon
  // found it in --models-dir by itself).
  const ms = await http('GET', '/v1/models?limit=100');
  if (!ms.json.data.some((m) => m.id === 'tiny')) {
    const r = await http('POST', '/v1/models', { name: 'tiny', path: 'tiny' });
    assert.equal(r.status, 200, `registering the tiny model: ${r.text}`);
  }
  const dataDir = path.join(TMP, 'userdata');
  ({ ctx, page } = await launch(dataDir));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
});

after(async () => {
  if (ctx) await ctx.close();
  if (daemon) {
    daemon.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { daemon.kill('SIGKILL'); r(); }, 10000); daemon.on('exit', () => { clearTimeout(t); r(); }); });
  }
});

test('the dashboard is served with a strict CSP and loads without errors', async () => {
  const r = await fetch(`${base}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') || '', /text\/html/);
  const csp = r.headers.get('content-security-policy') || '';
  assert.match(csp, /default-src 'self'|script-src 'self'/, `CSP: ${csp}`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  const js = await fetch(`${base}/js/app.js`);
  assert.match(js.headers.get('content-type') || '', /javascript/);
  const vendor = await fetch(`${base}/vendor/uplot/uPlot.esm.js`);
  assert.equal(vendor.status, 200, 'uPlot is staged with the dashboard');
  await go('#/jobs');
  await page.waitForSelector('#main table.jobs tbody tr');
  assert.equal(await page.locator('#nav a[aria-current="page"]').textContent(), 'Jobs');
  await shot('jobs-empty');
});

test('the form checks fields itself and shows the API\'s error next to the field it names', async () => {
  await go('#/new');
  await page.selectOption('#method', 'sft');
  // Client-side: gradient_accumulation_steps must divide batch_size.
  await page.click('summary');
  await page.fill('#hp-batch_size', '4');
  await page.fill('#hp-gradient_accumulation_steps', '3');
  await page.click('#submit-job');
  const gaErr = page.locator('#hp-gradient_accumulation_steps-err');
  await assert.doesNotReject(gaErr.waitFor());
  assert.match(await gaErr.textContent(), /does not divide batch_size 4/);
  assert.equal(await page.getAttribute('#hp-gradient_accumulation_steps', 'aria-invalid'), 'true');
  await page.fill('#hp-gradient_accumulation_steps', '1');
  // Server-side: a model that does not exist; the API names "model".
  await page.fill('#model', 'no-such-model');
  await page.click('#submit-job');
  const modelErr = page.locator('#model-err');
  await waitFor(async () => (await modelErr.textContent()).length > 0, 'the model error');
  assert.match(await modelErr.textContent(), /no-such-model|model/);
  assert.match(page.url(), /#\/new/);
  await shot('new-job-errors');
});

// The form is built from GET /v1/methods: the registry test build
// (ALIGND_PROBE_BIN, lib/train/methods.c with AL_METHODS_PROBE) has one more
// row in the registry, registry_probe (SFT only, an integer in [0, 9],
// default 3), and SFT takes a reference model there (takes_ref_model). With
// no other change the field is on that daemon's form (for SFT, not DPO) with
// its default and help, checked against its range, sent when changed, and
// parsed by the daemon from the same row, and SFT's form has the reference
// model; the real build's form has neither.
test('a field added to the method registry in a test build appears on the form', async () => {
  assert.ok(process.env.ALIGND_PROBE_BIN, 'ALIGND_PROBE_BIN names the registry test build');
  await go('#/new');
  await page.waitForSelector('#job-form');
  assert.equal(await page.locator('#hp-registry_probe').count(), 0, 'the real build has no probe field');
  await page.selectOption('#method', 'sft');
  assert.ok(!(await page.locator('#ref_model').isVisible()), 'the real build\'s SFT takes no reference model');
  const probeState = path.join(TMP, 'probe-state');
  fs.rmSync(probeState, { recursive: true, force: true });
  fs.mkdirSync(probeState, { recursive: true });
  const args = ['serve', '--listen', '127.0.0.1:0', '--state-dir', probeState, '--models-dir', modelsDir];
  if (process.env.ALIGND_WEB_DIR) args.push('--web-dir', process.env.ALIGND_WEB_DIR);
  const log = fs.openSync(path.join(TMP, 'probe-daemon.log'), 'w');
  const probe = spawn(process.env.ALIGND_PROBE_BIN, args, { stdio: ['ignore', log, log], env: Object.assign({}, process.env, { ALIGND_THREADS: '1' }) });
  try {
    const addrFile = path.join(probeState, 'alignd.addr');
    const addr = await waitFor(() => fs.existsSync(addrFile) && fs.readFileSync(addrFile, 'utf8').trim(), 'the probe daemon');
    const probeBase = `http://${addr}`;
    await page.goto('about:blank');
    await page.goto(`${probeBase}/#/new`);
    await page.waitForSelector('#job-form');
    await page.selectOption('#method', 'sft');
    await page.click('summary');
    const input = page.locator('#hp-registry_probe');
    assert.ok(await input.isVisible(), 'the probe field is on the SFT form');
    assert.equal(await input.inputValue(), '3', 'its default from the registry');
    assert.match(await page.textContent('#hp-registry_probe-help'), /only the registry test build has/);
    assert.ok(await page.locator('#ref_model').isVisible(), 'SFT takes a reference model in the registry test build');
    await page.fill('#ref_model', 'tiny');
    assert.match(await page.textContent('#curl'), /"ref_model": "tiny"/);
    await page.fill('#ref_model', '');
    await page.selectOption('#method', 'dpo');
    assert.ok(!(await input.isVisible()), 'DPO does not take it');
    await page.selectOption('#method', 'sft');
    await page.waitForFunction(() => document.querySelector('#model-options option'));
    await page.fill('#model', 'tiny');
    await page.selectOption('#task-name', 'addition2');
    await page.fill('#task-rows', '16');
    await page.fill('#hp-registry_probe', '12');
    await page.click('#submit-job');
    assert.match(await page.textContent('#hp-registry_probe-err'), /registry_probe: 12 is outside \[0, 9\]/);
    await page.fill('#hp-registry_probe', '5');
    assert.match(await page.textContent('#curl'), /"registry_probe": 5/);
    await page.click('#estimate-job');
    await page.waitForSelector('#estimate dl');
    // The daemon parses it from the same row: its range in the error, the value in the job.
    const bad = await fetch(`${probeBase}/v1/fine_tuning/jobs/estimate`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ method: 'sft', model: 'tiny', task: { name: 'addition2', rows: 16 }, hyperparameters: { registry_probe: 12 } }) });
    const err = await bad.json();
    assert.equal(bad.status, 400);
    assert.equal(err.error.param, 'hyperparameters.registry_probe');
    assert.equal(err.error.message, 'hyperparameters.registry_probe: 12 is outside [0, 9]');
  } finally {
    probe.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { probe.kill('SIGKILL'); r(); }, 10000); probe.on('exit', () => { clearTimeout(t); r(); }); });
  }
});

// The compute core's precision settings live in the registry like every
// field: GET /v1/methods serves them (mixed_precision's default as this
// machine resolves "auto"), and the form offers their choices with that
// default selected and sends a changed one.
test('the form offers mixed_precision and save_dtype from the registry', async () => {
  const reg = await http('GET', '/v1/methods');
  const sft = reg.json.data.find((m) => m.id === 'sft');
  const mp = sft.hyperparameters.find((f) => f.name === 'mixed_precision');
  const sd = sft.hyperparameters.find((f) => f.name === 'save_dtype');
  assert.deepEqual(mp.choices, ['bf16', 'fp32', 'auto']);
  assert.ok(['bf16', 'fp32'].includes(mp.default), `mixed_precision's default is resolved (${mp.default})`);
  assert.deepEqual(sd.choices, ['float32', 'bfloat16', 'float16', 'auto']);
  assert.equal(sd.default, 'auto');
  await go('#/new');
  await page.waitForSelector('#job-form');
  await page.selectOption('#method', 'sft');
  await page.click('summary');
  for (const f of [mp, sd]) {
    const sel = `#hp-${f.name}`;
    assert.ok(await page.locator(sel).isVisible(), `${f.name} is on the form`);
    assert.deepEqual(await page.$$eval(`${sel} option`, (os) => os.map((o) => o.value)), f.choices);
    assert.equal(await page.inputValue(sel), f.default);
  }
  assert.doesNotMatch(await page.textContent('#curl'), /save_dtype|mixed_precision/, 'defaults are not sent');
  await page.selectOption('#hp-save_dtype', 'bfloat16');
  assert.match(await page.textContent('#curl'), /"save_dtype": "bfloat16"/);
});

async function submitJob({ maxSteps, logging, rows, suffix, save }) {
  await go('#/new');
  await page.selectOption('#method', 'sft');
  await page.waitForFunction(() => document.querySelector('#model-options option'));
  await page.fill('#model', 'tiny');
  await page.check('#src-task');
  await page.selectOption('#task-name', 'addition2');
  await page.fill('#task-rows', String(rows));
  await page.fill('#hp-max_steps', String(maxSteps));
  await page.fill('#hp-batch_size', '4');
  await page.fill('#hp-learning_rate', '0.001');
  await page.click('summary');
  await page.fill('#hp-logging_steps', String(logging));
  await page.fill('#hp-eval_steps', String(Math.max(logging * 5, 10)));
  await page.fill('#hp-save_steps', String(save || Math.max(logging * 10, 20)));
  await page.fill('#suffix', suffix);
  const curl = await page.textContent('#curl');
  assert.match(curl, /"max_steps": /);
  assert.match(curl, /curl -sS .*\/v1\/fine_tuning\/jobs/);
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  return decodeURIComponent(page.url().split('#/jobs/')[1]);
}

let first = null;
let resumed = null;
let benchJob = null; // an SFT job whose eval_tasks measured a benchmark file
test('a tiny job submitted through the form runs, charts, samples and checkpoints', async () => {
  first = await submitJob({ maxSteps: 60, logging: 2, rows: 64, suffix: 'first' });
  await page.waitForSelector('h1 .badge');
  // The loss chart fills in; at the end it holds every logged step.
  await waitFor(async () => Number(await page.getAttribute('#chart-loss', 'data-points')) >= 10, 'loss points');
  await waitFor(async () => /succeeded/.test(await page.textContent('h1 .badge')), 'the job to succeed', 60000);
  await waitFor(async () => /points, last step 60/.test(await page.textContent('#chart-loss .chart-cap')), 'the last step on the chart');
  assert.ok(await page.locator('#chart-lr').count(), 'learning-rate chart');
  // Smoothing and log scale redraw the same points.
  await page.locator('#smoothing').fill('0');
  assert.equal(await page.textContent('#smoothing-out'), '0.00');
  await page.check('#chart-loss-log');
  await page.waitForTimeout(100);
  assert.equal(await page.locator('#chart-loss canvas').count(), 1, 'one plot after the rebuild');
  assert.match(await page.textContent('#chart-loss .chart-cap'), /points, last step 60/);
  // Samples by step, with prompt and completion.
  await page.click('.in-page a[data-section="samples"]');
  await waitFor(async () => (await page.locator('#samples tbody tr:not(.empty)').count()) > 0, 'samples');
  const row = page.locator('#samples tbody tr').first();
  assert.match(await row.locator('td').nth(1).textContent(), /\d+\+\d+=/, 'a prompt of the addition2 task');
  await page.selectOption('#sample-group', 'prompt');
  assert.ok(await page.locator('#samples tr.group').count() > 0, 'grouped by prompt');
  // Events and checkpoints.
  assert.ok(await page.locator('#events li').count() > 0, 'events');
  await waitFor(async () => (await page.locator('#checkpoints tbody tr:not(.empty)').count()) > 0, 'checkpoints');
  const start = page.locator('#checkpoints a', { hasText: 'Start a job from here' }).first();
  assert.match(await start.getAttribute('href'), /#\/new\?from_checkpoint=ftjob-/);
  await shot('job-finished');
  // "Start a job from here": the form comes filled in from the job and the checkpoint.
  await start.click();
  await page.waitForSelector('#job-form');
  await waitFor(async () => (await page.inputValue('#from_checkpoint')).startsWith(`${first}:`), 'the checkpoint in the form');
  assert.equal(await page.inputValue('#method'), 'sft');
  assert.equal(await page.inputValue('#task-name'), 'addition2');
  assert.equal(await page.inputValue('#hp-learning_rate'), '0.001');
  await page.fill('#hp-max_steps', '6');
  await page.fill('#suffix', 'resumed');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  resumed = decodeURIComponent(page.url().split('#/jobs/')[1]);
  await waitFor(async () => /succeeded/.test(await page.textContent('h1 .badge')), 'the job from a checkpoint to succeed', 60000);
  assert.match(await page.textContent('#sec-details'), new RegExp(`From checkpoint\\s*${first}:`));
  // It is in the list, succeeded, at 100%.
  await go('#/jobs');
  const tr = page.locator(`tr[data-id="${first}"]`);
  await tr.waitFor();
  await waitFor(async () => (await tr.getAttribute('data-status')) === 'succeeded', 'succeeded in the list');
  assert.match(await tr.locator('.progress-text').textContent(), /60\/60/);
  assert.match(await tr.textContent(), /loss/);
});

test('an RL job (GRPO with a verifiable reward) from the form: checked, estimated, run', async () => {
  await go('#/new');
  await page.selectOption('#method', 'grpo');
  await page.waitForFunction(() => document.querySelector('#model-options option'));
  await page.fill('#model', 'tiny');
  assert.equal(await page.inputValue('#hp-num_generations'), '8', 'TRL\'s GRPO default');
  assert.equal(await page.inputValue('#hp-learning_rate'), '0.000001');
  assert.ok(await page.isVisible('#reward-verifiable'));
  await page.selectOption('#task-name', 'addition2');
  await page.fill('#task-rows', '32');
  await page.fill('#hp-max_steps', '4');
  await page.fill('#hp-batch_size', '4');
  await page.fill('#hp-num_generations', '3');
  await page.fill('#hp-max_completion_length', '8');
  await page.click('#submit-job');
  assert.match(await page.textContent('#hp-batch_size-err'), /not a multiple of num_generations 3/);
  await page.fill('#hp-num_generations', '2');
  await page.click('#estimate-job');
  await page.waitForSelector('#estimate dl');
  assert.match(await page.textContent('#estimate'), /Steps\s*4/);
  assert.match(await page.textContent('#curl'), /"reward": \{\s*"verifiable": 1/);
  await shot('new-job-grpo');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  await waitFor(async () => /succeeded/.test(await page.textContent('h1 .badge')), 'the GRPO job to succeed', 60000);
  await page.waitForSelector('#chart-reward');
  await waitFor(async () => Number(await page.getAttribute('#chart-reward', 'data-points')) > 0, 'reward points');
  await waitFor(async () => (await page.locator('#samples tbody tr:not(.empty)').count()) > 0, 'RL samples');
  assert.match(await page.locator('#samples tbody tr').first().locator('td').nth(3).textContent(), /^-?\d/, 'a reward per sample');
  await shot('job-grpo');
});

test('a second job: its chart gains points live, then it is cancelled from the list', async () => {
  const id = await submitJob({ maxSteps: 200000, logging: 20, rows: 2000, suffix: 'long', save: 1000000 });
  await waitFor(async () => /running/.test(await page.textContent('h1 .badge')), 'running', 60000);
  const pts = async () => Number(await page.getAttribute('#chart-loss', 'data-points'));
  const n0 = await waitFor(async () => (await pts()) > 0 && await pts(), 'first points');
  await waitFor(async () => (await pts()) > n0 + 2, 'the chart to gain points');
  assert.match(await page.textContent('.feed-state'), /live/);
  await shot('job-live');
  await go('#/jobs');
  const tr = page.locator(`tr[data-id="${id}"]`);
  await tr.waitFor();
  await shot('jobs-running');
  // Pause and resume from the list, then cancel.
  await tr.getByRole('button', { name: `Pause ${id}` }).click();
  await waitFor(async () => (await tr.getAttribute('data-status')) === 'paused', 'paused');
  await tr.getByRole('button', { name: `Resume ${id}` }).click();
  await waitFor(async () => ['queued', 'running'].includes(await tr.getAttribute('data-status')), 'resumed');
  await tr.getByRole('button', { name: `Cancel ${id}` }).click();
  await waitFor(async () => ['cancelled', 'cancelling'].includes(await tr.getAttribute('data-status')), 'cancelled');
  await waitFor(async () => (await tr.getAttribute('data-status')) === 'cancelled', 'cancelled (final)');
  assert.equal(await tr.getByRole('button', { name: `Cancel ${id}` }).count(), 0, 'no cancel button on a cancelled job');
  await page.selectOption('#status-filter', 'cancelled');
  await waitFor(async () => (await page.locator('tr[data-id]').count()) === 1, 'the filter to leave the cancelled job');
});

test('a bad file uploads with its line errors listed', async () => {
  await go('#/data');
  await page.setInputFiles('#upload-file', path.join(REPO, 'tests', 'data', 'bad_lines.jsonl'));
  await page.click('#upload-submit');
  await page.waitForSelector('#bad-lines tbody tr');
  const rows = page.locator('#bad-lines tbody tr');
  assert.ok(await rows.count() >= 5, 'several bad lines');
  const text = await page.textContent('#bad-lines');
  assert.match(text, /invalid_json/);
  assert.match(text, /unrecognized_role/);
  assert.match(await rows.first().locator('td').first().textContent(), /^2$/, 'line 2 first');
  assert.ok(await page.locator('#report .histogram tbody tr').count() > 0, 'a length histogram');
  await page.waitForSelector('#files tbody tr:not(.empty)');
  await shot('data-bad-file');
  // The report again from the files list, histogram included.
  await go('#/data');
  await page.locator('#files button', { hasText: 'Report' }).first().click();
  await page.waitForSelector('#report .histogram tbody tr');
  assert.match(await page.textContent('#bad-lines'), /unrecognized_role/);
  // Not JSONL at all: the API refuses it, and the error sits by the file field.
  const junk = path.join(TMP, 'junk.jsonl');
  fs.writeFileSync(junk, 'this is not json\nnor this\n');
  await page.setInputFiles('#upload-file', junk);
  await page.click('#upload-submit');
  await waitFor(async () => {
    const e = await page.textContent('#upload-file-err');
    const b = await page.locator('#bad-lines').count() ? await page.textContent('#bad-lines') : '';
    return e.length > 0 || /invalid_json/.test(b);
  }, 'the refusal of a non-JSONL file');
});

test('a sharegpt file under its own names uploads with its dataset_info; a benchmark with purpose evals', async () => {
  await go('#/data');
  const dialog = path.join(TMP, 'dialog.jsonl');
  fs.writeFileSync(dialog, '{"dialog": [{"speaker": "USER", "text": "1+1="}, {"speaker": "BOT", "text": "2"}]}\n' +
    '{"dialog": [{"speaker": "USER", "text": "2+2="}, {"speaker": "BOT", "text": "4"}]}\n');
  await page.setInputFiles('#upload-file', dialog);
  const err = page.locator('#upload-dataset-info-err');
  // The form's own check: not JSON.
  await page.fill('#upload-dataset-info', '{"formatting": ');
  await page.click('#upload-submit');
  await waitFor(async () => (await err.textContent()).length > 0, 'the form\'s dataset_info error');
  assert.match(await err.textContent(), /^dataset_info: not JSON: /);
  // The API's: a tag that is not a string, named by its path.
  const info = { formatting: 'sharegpt', columns: { messages: 'dialog' },
    tags: { role_tag: 'speaker', content_tag: 'text', user_tag: 'USER', assistant_tag: 7 } };
  await page.fill('#upload-dataset-info', JSON.stringify(info));
  await page.click('#upload-submit');
  await waitFor(async () => /assistant_tag/.test(await err.textContent()), 'the API\'s dataset_info error');
  assert.equal(await err.textContent(), 'dataset_info.tags.assistant_tag: must be a non-empty string of at most 63 bytes');
  assert.equal(await page.getAttribute('#upload-dataset-info', 'aria-invalid'), 'true');
  info.tags.assistant_tag = 'BOT';
  await page.fill('#upload-dataset-info', JSON.stringify(info));
  await page.click('#upload-submit');
  await page.waitForSelector('#report-dataset-info');
  assert.equal(await err.textContent(), '');
  assert.match(await page.textContent('#report [role="status"]'), /valid, sharegpt format/);
  assert.deepEqual(JSON.parse(await page.textContent('#report-dataset-info')).tags.assistant_tag, 'BOT');
  // A benchmark file: purpose evals.
  const mc = path.join(TMP, 'mc_page.jsonl');
  fs.writeFileSync(mc, '{"question": "1+1=", "choices": ["2", "3"], "answer": 0}\n');
  await page.fill('#upload-dataset-info', '');
  await page.setInputFiles('#upload-file', mc);
  await page.selectOption('#upload-purpose', 'evals');
  await page.click('#upload-submit');
  await page.waitForSelector('#report-title:has-text("mc_page.jsonl")');
  await waitFor(async () => (await page.locator('#files tbody tr', { hasText: 'mc_page.jsonl' }).count()) === 1, 'the benchmark in the list');
  assert.equal(await page.locator('#files tbody tr', { hasText: 'mc_page.jsonl' }).locator('td[data-label="Purpose"]').textContent(), 'evals');
  await shot('data-dataset-info');
  // The job form offers it as a benchmark: checked, with a row limit, it is
  // an eval_tasks entry of the request, named after the file.
  const mcId = (await page.locator('#files tbody tr', { hasText: 'mc_page.jsonl' }).locator('td[data-label="File"]').textContent()).trim();
  await go('#/new');
  await page.selectOption('#method', 'sft');
  await page.fill('#model', 'tiny');
  await page.check('#src-task');
  await page.selectOption('#task-name', 'addition2');
  await page.fill('#hp-max_steps', '2');
  await page.fill('#hp-batch_size', '2');
  await page.check(`#evalfile-${mcId}`);
  await page.fill('#eval-limit', '1');
  await waitFor(async () => /mc_page/.test(await page.textContent('#curl')), 'the benchmark in the request');
  const curl = await page.textContent('#curl');
  const body = JSON.parse(curl.slice(curl.indexOf("-d '") + 4, curl.lastIndexOf("'")));
  assert.deepEqual(body.eval_tasks, [{ file: mcId, name: 'mc_page', limit: 1 }]);
  await page.fill('#eval-fewshot', '65');
  await page.click('#submit-job');
  await waitFor(async () => (await page.textContent('#eval-fewshot-err')).length > 0, 'the few-shot bound');
  assert.equal(await page.textContent('#eval-fewshot-err'), 'num_fewshot: must be an integer in [0, 64]');
  await page.fill('#eval-fewshot', '0');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  const id = decodeURIComponent(page.url().split('#/jobs/')[1]);
  const done = await waitFor(async () => {
    const r = await http('GET', `/v1/fine_tuning/jobs/${id}`);
    return /succeeded|failed|cancelled/.test(r.json.status) ? r.json : null;
  }, 'the job with a benchmark', 60000);
  assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
  const res = done.eval_results.filter((r) => JSON.stringify(r).includes('mc_page'));
  assert.ok(res.length >= 1, JSON.stringify(done.eval_results));
});

test('a DPO job on an uploaded preference file: the file picker and the reward charts', async () => {
  await go('#/data');
  await page.setInputFiles('#upload-file', path.join(REPO, 'tests', 'data', 'preference.jsonl'));
  await page.click('#upload-submit');
  await page.waitForSelector('#report');
  assert.match(await page.textContent('#report'), /preference/);
  await page.click('#report a:has-text("Train on this file")');
  await page.waitForSelector('#job-form');
  await waitFor(async () => (await page.inputValue('#training_file')).startsWith('file-'), 'the file in the form');
  assert.ok(await page.isChecked('#src-file'));
  await page.selectOption('#method', 'dpo');
  assert.equal(await page.inputValue('#hp-beta'), '0.1', 'TRL\'s DPO beta');
  assert.equal(await page.inputValue('#hp-loss_type'), 'sigmoid');
  await page.fill('#model', 'tiny');
  await page.fill('#hp-max_steps', '8');
  await page.fill('#hp-batch_size', '2');
  await page.fill('#hp-learning_rate', '0.001');
  await page.click('summary');
  await page.fill('#hp-logging_steps', '1');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  await waitFor(async () => /succeeded|failed/.test(await page.textContent('h1 .badge')), 'the DPO job to finish', 60000);
  assert.match(await page.textContent('h1 .badge'), /succeeded/, await page.textContent('.job-head'));
  await waitFor(async () => Number(await page.getAttribute('#chart-rewards', 'data-points')) >= 8, 'reward points');
  assert.match(await page.textContent('#chart-rewards .chart-cap'), /rewards\/margins/);
  assert.ok(await page.locator('#chart-accuracy').count(), 'the preference accuracy chart');
  assert.match(await page.textContent('#chart-rewards .chart-note'), /normal for DPO/);
  await shot('job-dpo');
});

test('the playground streams an answer', async () => {
  await go('#/playground');
  await page.fill('#pane-a-model', 'tiny');
  await page.fill('#pg-message', '12+7=');
  await page.fill('#pg-max-tokens', '12');
  await page.fill('#pg-temperature', '1');
  await page.fill('#pg-seed', '5');
  await page.click('#pg-send');
  await waitFor(async () => /^done/.test(await page.textContent('#pane-a-stat')), 'the answer to finish');
  const answer = await page.textContent('#pane-a-log .msg.assistant .text');
  assert.ok(answer.length > 0, 'an answer');
  assert.match(await page.textContent('#pane-a-stat'), /tokens/);
  // Side by side: the first job's output answers the same message.
  await page.check('#pg-compare');
  await page.fill('#pane-b-model', first);
  await page.fill('#pg-message', '3+4=');
  await page.click('#pg-send');
  await waitFor(async () => /^done/.test(await page.textContent('#pane-b-stat')), 'the second pane to finish');
  assert.equal(await page.locator('#pane-b-log .msg.assistant').count(), 1);
  await shot('playground');
});

test('models and compare pages', async () => {
  await go('#/models');
  await page.waitForSelector('#models tbody tr:not(.empty)');
  assert.match(await page.textContent('#models'), /tiny/);
  // Registering a folder: a path outside the models directory is refused
  // next to the path field; the tiny folder under another name is listed.
  await page.fill('#reg-name', 'tiny-again');
  await page.fill('#reg-path', '../state');
  await page.click('#register-form button[type="submit"]');
  await waitFor(async () => (await page.textContent('#reg-path-err')).length > 0, 'the path error');
  assert.match(await page.textContent('#reg-path-err'), /path/);
  await page.fill('#reg-path', 'tiny');
  await page.click('#register-form button[type="submit"]');
  await waitFor(async () => /tiny-again/.test(await page.textContent('#models')), 'the registered model');
  await shot('models');
  await go(`#/compare?ids=${first}&metric=loss`);
  await waitFor(async () => Number(await page.getAttribute('#compare-chart', 'data-points')) >= 31, 'compare points');
  await page.check(`#cmp-${resumed}`);
  await waitFor(async () => Number(await page.getAttribute('#compare-chart', 'data-points')) > 31, 'the second job\'s points');
  const cap = await page.textContent('#compare-chart .chart-cap');
  assert.ok(cap.includes(first) && cap.includes(resumed), cap);
  assert.match(page.url(), new RegExp(`ids=${first},${resumed}`));
  await shot('compare');
  // Benchmarks side by side: a multiple-choice file (purpose evals) measured
  // by an SFT job at its start (the base) and its end (the fine-tune).
  const rows = '{"question": "1+1=", "choices": ["2", "3"], "answer": 0}\n' +
    '{"question": "2+3=", "choices": ["4", "5"], "answer": "5"}\n';
  const up = await fetch(`${base}/v1/files?purpose=evals&filename=mc.jsonl`,
    { method: 'POST', headers: { 'Content-Type': 'application/jsonl' }, body: rows });
  const file = await up.json();
  assert.equal(up.status, 200, JSON.stringify(file));
  assert.equal(file.status, 'processed');
  const bj = await http('POST', '/v1/fine_tuning/jobs', {
    model: 'tiny', method: 'sft', task: { name: 'addition2', rows: 16 },
    hyperparameters: { max_steps: 2, batch_size: 2, max_length: 16 },
    eval_tasks: [{ file: file.id, name: 'sums_mc' }],
  });
  assert.equal(bj.status, 200, bj.text);
  benchJob = bj.json.id;
  const done = await waitFor(async () => {
    const r = await http('GET', `/v1/fine_tuning/jobs/${bj.json.id}`);
    return r.json.status === 'succeeded' ? r.json : null;
  }, 'the benchmarked job');
  await go(`#/compare?ids=${bj.json.id}&metric=loss`);
  await page.waitForSelector('#compare-bench-table');
  const heads = await page.locator('#compare-bench-table thead th').allTextContents();
  assert.deepEqual(heads, ['task', 'metric', 'tiny (base)', done.fine_tuned_model]);
  const acc = page.locator('#compare-bench-table tr[data-task="sums_mc"][data-metric="acc"] td');
  assert.equal(await acc.count(), 4);
  assert.match(await acc.nth(2).textContent(), /^(0|0\.5|1) ±/);
  assert.match(await acc.nth(3).textContent(), /\([+-]?[0-9.]+\)$/); // the change from the base
  assert.equal(await page.locator('#compare-bench-table tr[data-metric="acc_norm"]').count(), 1);
  await shot('compare-benchmarks');
  await page.setViewportSize({ width: 390, height: 844 });
  await go('#/jobs');
  await page.waitForSelector('tr[data-id]');
  await shot('jobs-narrow');
  await go(`#/jobs/${first}`);
  await page.waitForSelector('#chart-loss');
  await shot('job-narrow', false);
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('a job of several processes shows its rank count in the list and on its page', async (t) => {
  if (!daemon) { t.skip('needs a daemon of its own (its launcher)'); return; }
  const r = await http('POST', '/v1/fine_tuning/jobs', {
    model: 'tiny', method: 'sft', task: { name: 'addition2', rows: 16 },
    hyperparameters: { max_steps: 2, batch_size: 2, max_length: 16 },
    resources: { processes: 2 }, distributed: { shard_optimizer: true },
  });
  assert.equal(r.status, 200, r.text);
  const id = r.json.id;
  await waitFor(async () => (await http('GET', `/v1/fine_tuning/jobs/${id}`)).json.status === 'failed',
    'the launched job to fail');
  await go('#/jobs');
  const tr = page.locator(`tr[data-id="${id}"]`);
  await tr.waitFor();
  assert.match(await tr.locator('.ranks').textContent(), /× 2 processes/);
  await go(`#/jobs/${id}`);
  assert.equal((await page.textContent('.ranks')).trim(), '2 processes (ZeRO-1)');
});

test('with an API key the dashboard asks for it and keeps it for the session', async (t) => {
  if (!daemon) { t.skip('needs a daemon of its own'); return; }
  const out = execFileSync(BIN, ['keys', 'create', '--name', 'browser', '--state-dir', stateDir]).toString().trim().split('\n');
  const key = out[out.length - 1].trim();
  assert.ok(key.length >= 16, 'the key is printed last');
  assert.equal((await http('GET', '/v1/models')).status, 401);
  await go('#/jobs');
  await page.waitForSelector('#key-dialog[open]');
  await page.fill('#key-input', 'wrong-key');
  await page.click('#key-form button[type="submit"]');
  await waitFor(async () => /not accepted/.test(await page.textContent('#key-error')), 'the refusal of a wrong key');
  await shot('api-key');
  await page.fill('#key-input', key);
  await page.click('#key-form button[type="submit"]');
  await page.waitForFunction(() => !document.getElementById('key-dialog').open);
  await waitFor(async () => (await page.locator('tr[data-id]').count()) >= 2, 'the jobs behind the key');
  // Kept for the session: a reload does not ask again.
  await page.reload();
  await page.waitForSelector('tr[data-id]');
  assert.equal(await page.locator('#key-dialog[open]').count(), 0);
  assert.ok(await page.isVisible('#forget-key'));
});

// axe-core (npm) run in the page through the DevTools protocol, which the
// page's CSP does not govern: WCAG 2.1 A and AA rules (labels, names,
// contrast, landmarks, ARIA), in the light and the dark colour scheme.
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
async function axeViolations() {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    if (!r.passes.some((p) => p.id === 'color-contrast') && !r.incomplete.some((p) => p.id === 'color-contrast')) return ['axe did not check contrast'];
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
}

test('every page passes axe-core\'s WCAG 2.1 AA checks, light and dark', async () => {
  const pages = [
    ['#/jobs', 'tr[data-id]'], [`#/jobs/${first}`, '#chart-loss'], ['#/new', '#model-options option'],
    [`#/compare?ids=${first}`, '#compare-chart'], [`#/compare?ids=${benchJob}`, '#compare-bench-table'],
    ['#/data', '#files tbody tr'], ['#/models', '#models tbody tr'],
    ['#/playground', '#pg-form'],
  ];
  const found = [];
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    // Dark: the pages with the most colour (badges, charts, the form).
    for (const [hash, ready] of scheme === 'light' ? pages : pages.slice(0, 3)) {
      await go(hash);
      await page.waitForSelector(ready, { state: 'attached' });
      await page.waitForTimeout(300); // charts draw on the next frame
      for (const v of await axeViolations()) found.push(`${scheme} ${hash}: ${v}`);
    }
    // The data page with a report, and the form showing errors.
    await go('#/data');
    await page.locator('#files button', { hasText: 'Report' }).first().click();
    await page.waitForSelector('#bad-lines');
    for (const v of await axeViolations()) found.push(`${scheme} data report: ${v}`);
    await go('#/new');
    await page.fill('#seed', '-1');
    await page.click('#submit-job');
    await page.waitForSelector('#seed[aria-invalid="true"]');
    for (const v of await axeViolations()) found.push(`${scheme} form errors: ${v}`);
    if (scheme === 'dark') await shot('new-job-dark');
  }
  await page.emulateMedia({ colorScheme: 'light' });
  assert.deepEqual(found, []);
});

test('the keyboard reaches everything: skip link, navigation, form controls', async () => {
  await go('#/jobs');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Tab'); // brand
  await page.keyboard.press('Tab'); // Jobs
  await page.keyboard.press('Tab'); // New job
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'New job');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#job-form');
  // Focus moves to the new page's heading.
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'method');
  // Every form control has a label (or an accessible name).
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.labels.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
    .map((el) => el.id || el.name));
  assert.deepEqual(unlabelled, []);
});

test('no console errors, CSP violations or uncaught exceptions', () => {
  // The refusals the tests provoke (a missing key, a bad model, a bad file)
  // are logged by Chromium as failed loads; they were shown to the user.
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of (400|401|404|409|422)/.test(p));
  assert.deepEqual(real, []);
});
