// What the browser test files share: polling with a clear timeout message,
// and headless Debian chromium on a fresh profile (playwright-core).
'use strict';
const fs = require('node:fs');
const { chromium } = require('playwright-core');

const WAIT = 30000; // ms for anything the daemon does

async function waitFor(fn, what, ms = WAIT) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
}

// A persistent context on dataDir (emptied first) and its page.
async function launch(dataDir) {
  fs.rmSync(dataDir, { recursive: true, force: true });
  const ctx = await chromium.launchPersistentContext(dataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  return { ctx, page };
}

module.exports = { WAIT, waitFor, launch };
