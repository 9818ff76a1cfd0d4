// The Models page's "Add a model from the Hugging Face Hub" form in headless
// Chromium, against a real daemon whose Hub is the local fake one
// (tests/fake_hub.py: the Hub's API, resolve endpoints and a CDN on another
// port) and whose downloads are on (--allow-downloads true).
//
// What a person does and sees: an empty repository field is refused by the
// form itself, a malformed id by the API (its message next to the field), a
// repository is downloaded and its row shows where it came from (repo@main
// and the commit), its family, parameters and context; the row's Fine-tune
// link opens the form with the model filled in; a gated repository's
// download fails and the row says why. Screenshots go to
// $AL_TEST_TMP/screenshots.
//
// Environment: ALIGND_BIN (the daemon), AL_TEST_TMP (scratch and
// artefacts), ALIGND_WEB_DIR (optional), CHROMIUM (default /usr/bin/chromium).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const { WAIT, waitFor, launch } = require('./common.js');

const BIN = process.env.ALIGND_BIN;
const TMP = process.env.AL_TEST_TMP || fs.mkdtempSync(path.join(os.tmpdir(), 'alignd-hub-browser-'));
const SHOTS = path.join(TMP, 'screenshots');
const REPO = path.resolve(__dirname, '..', '..');

let hub = null;
let daemon = null;
let base = null;
let ctx = null;
let page = null;
const problems = []; // console errors (refused requests among them), uncaught exceptions

async function go(hash) {
  await page.goto('about:blank');
  await page.goto(`${base}/${hash}`);
  await page.waitForSelector('main h1');
}

// The row of the models table whose first cell names the model.
function row(id) {
  return page.locator('#models tbody tr', { has: page.locator('td[data-label="Model"] code', { hasText: new RegExp(`^${id}$`) }) });
}

function stop(proc) {
  if (!proc) return Promise.resolve();
  proc.kill('SIGTERM');
  return new Promise((r) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); r(); }, 10000);
    proc.on('exit', () => { clearTimeout(t); r(); });
  });
}

before(async () => {
  assert.ok(BIN, 'ALIGND_BIN names the daemon');
  for (const d of ['repos', 'state', 'models', 'cache']) fs.rmSync(path.join(TMP, d), { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  const repos = path.join(TMP, 'repos');
  const model = (dir, seed) => execFileSync(BIN, ['init-model', '--arch', 'llama', '--layers', '1', '--hidden', '32',
    '--heads', '2', '--kv-heads', '1', '--context', '96', '--seed', String(seed), '--out', dir], { stdio: 'ignore' });
  model(path.join(repos, 'acme', 'tiny-chat'), 1);
  model(path.join(repos, 'acme', 'gated'), 2);
  fs.writeFileSync(path.join(repos, 'acme', 'gated.hub.json'), JSON.stringify({ gated_token: 'hf_not_yours' }));

  const ports = path.join(TMP, 'hub.ports');
  fs.rmSync(ports, { force: true });
  hub = spawn('/usr/bin/python3', [path.join(REPO, 'tests', 'fake_hub.py'), '--root', repos,
    '--log', path.join(TMP, 'hub.log'), '--port-file', ports], { stdio: 'ignore' });
  const hubPort = await waitFor(() => fs.existsSync(ports) && fs.readFileSync(ports, 'utf8').trim().split(/\s+/)[0], 'the fake Hub');

  const stateDir = path.join(TMP, 'state');
  fs.mkdirSync(stateDir, { recursive: true });
  fs.mkdirSync(path.join(TMP, 'models'), { recursive: true });
  const args = ['serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--models-dir', path.join(TMP, 'models'),
    '--allow-downloads', 'true'];
  if (process.env.ALIGND_WEB_DIR) args.push('--web-dir', process.env.ALIGND_WEB_DIR);
  const env = Object.assign({}, process.env, {
    ALIGND_THREADS: '1', HF_ENDPOINT: `http://127.0.0.1:${hubPort}`, HF_HUB_CACHE: path.join(TMP, 'cache'),
    HF_TOKEN: '', HF_HOME: '', HF_HUB_OFFLINE: '',
  });
  const log = fs.openSync(path.join(TMP, 'daemon.log'), 'w');
  daemon = spawn(BIN, args, { stdio: ['ignore', log, log], env });
  const addrFile = path.join(stateDir, 'alignd.addr');
  const addr = await waitFor(() => fs.existsSync(addrFile) && fs.readFileSync(addrFile, 'utf8').trim(), 'alignd.addr');
  base = /^https?:\/\//.test(addr) ? addr.replace(/\/$/, '') : `http://${addr}`;
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, '/readyz');

  const dataDir = path.join(TMP, 'userdata');
  ({ ctx, page } = await launch(dataDir));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
});

after(async () => {
  if (ctx) await ctx.close();
  await stop(daemon);
  await stop(hub);
});

test('the Hub form refuses an empty and a malformed repository next to its field', async () => {
  await go('#/models');
  await page.click('#hub-form button[type="submit"]');
  const err = page.locator('#hf-repo-err');
  await waitFor(async () => (await err.textContent()).length > 0, 'the form\'s own error');
  assert.equal(await err.textContent(), 'hf: give ORG/NAME');
  assert.equal(await page.getAttribute('#hf-repo', 'aria-invalid'), 'true');
  await page.fill('#hf-repo', 'not a repo');
  await page.click('#hub-form button[type="submit"]');
  await waitFor(async () => /not a Hugging Face repository id/.test(await err.textContent()), 'the API\'s error');
  assert.equal(await err.textContent(), "hf: 'not a repo' is not a Hugging Face repository id (ORG/NAME)");
  await page.fill('#hf-repo', 'acme/tiny-chat');
  await page.fill('#hf-revision', '../x');
  await page.click('#hub-form button[type="submit"]');
  const revErr = page.locator('#hf-revision-err');
  await waitFor(async () => (await revErr.textContent()).length > 0, 'the revision\'s error');
  assert.equal(await revErr.textContent(), "revision: '../x' is not a branch, tag or commit");
  assert.equal(await err.textContent(), '', 'the repository\'s old error is cleared');
});

test('a model added from the Hub downloads, shows where it came from and can be fine-tuned', async () => {
  await go('#/models');
  await page.fill('#hf-repo', 'acme/tiny-chat');
  await page.click('#hub-form button[type="submit"]');
  const r = row('acme/tiny-chat');
  await r.waitFor();
  // The table polls while a download runs; the row ends ready, its badge gone.
  await waitFor(async () => (await r.locator('.badge.st-running').count()) === 0 &&
    /acme\/tiny-chat@main/.test(await r.locator('td[data-label="Source"]').textContent()), 'the download to finish');
  const src = await r.locator('td[data-label="Source"]').textContent();
  const api = await (await fetch(`${base}/v1/models/acme/tiny-chat`)).json();
  assert.equal(api.status, 'ready');
  assert.equal(api.source.type, 'hub');
  assert.match(api.source.commit, /^[0-9a-f]{40}$/);
  assert.equal(src, `acme/tiny-chat@main ${api.source.commit.slice(0, 8)}`);
  assert.match(await r.locator('td[data-label="Family"]').textContent(), /^llama float32$/);
  assert.equal(await r.locator('td[data-label="Parameters"]').textContent(), api.parameters.toLocaleString('en-US'));
  assert.equal(await r.locator('td[data-label="Context"]').textContent(), '96');
  // Downloaded once, into the Hugging Face cache layout.
  const cache = path.join(TMP, 'cache', 'models--acme--tiny-chat');
  assert.equal(fs.readFileSync(path.join(cache, 'refs', 'main'), 'utf8').trim(), api.source.commit);
  assert.ok(fs.existsSync(path.join(cache, 'snapshots', api.source.commit, 'model.safetensors')));
  await page.screenshot({ path: path.join(SHOTS, 'models-hub.png'), fullPage: true });
  // Fine-tune opens the job form with the model's name filled in.
  await r.locator('a', { hasText: 'Fine-tune' }).click();
  await page.waitForURL(/#\/new/);
  await waitFor(async () => (await page.inputValue('#model')) === 'acme/tiny-chat', 'the job form\'s model');
});

test('a gated repository\'s download fails and its row says why', async () => {
  await go('#/models');
  await page.fill('#hf-repo', 'acme/gated');
  await page.click('#hub-form button[type="submit"]');
  const r = row('acme/gated');
  await r.waitFor();
  const failed = r.locator('.badge.st-failed');
  await waitFor(async () => (await failed.count()) === 1, 'the failed badge');
  const api = await (await fetch(`${base}/v1/models/acme/gated`)).json();
  assert.equal(api.status, 'failed');
  assert.equal(api.error.code, 'gated');
  assert.equal(await failed.textContent(), `failed: ${api.error.message}`);
  assert.match(api.error.message, /gated/i);
  await page.screenshot({ path: path.join(SHOTS, 'models-hub-gated.png'), fullPage: true });
  // The browser logs each refused request; the two the first test sent
  // (malformed repository, malformed revision) are the only ones.
  const refused = problems.filter((p) => /Failed to load resource: the server responded with a status of 400/.test(p));
  assert.equal(refused.length, 2);
  assert.deepEqual(problems.filter((p) => !refused.includes(p)), []);
});
