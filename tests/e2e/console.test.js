// End-to-end tests of the Candor web console (web/) in headless Chromium, against a
// running `candor serve`. Started by tests/e2e/run.sh, which sets:
//   CANDOR_URL        the server's base URL, e.g. http://127.0.0.1:41234/
//   CANDOR_ADMIN_KEY  the admin key the server printed on its first start
// Optional:
//   CANDOR_E2E_SCREENSHOTS  where page screenshots go (default /tmp/candor-e2e-screens)
//   CHROMIUM                the browser binary (default /usr/bin/chromium)
//
// The tests run in order and share one browser page, like an operator's session:
// (a) sign in, detect the 3 faces of sample1.jpg; (b) a collection, a refused
// enrollment without consent, a consent for the collection's purpose, an enrollment and
// a search that finds the subject; (e) the subjects page, an export and an erasure;
// (f) a search that matches no one; (c) the audit log, newest first, each entry's
// outcome, filters, the chain; (g) a reused evidence file warned about; (h) API keys,
// the secret shown once, a search-only key that sees only what it may do; (i) the
// retention run; (j) a collection deleted; (k) keyboard only; (l) every page at 390 px
// without horizontal scroll; (m) axe-core on every page; (d) no console errors, page
// errors or CSP violations along the way. Screenshots of every page go to
// CANDOR_E2E_SCREENSHOTS (page-<name>.png at 1366 px, 390-<name>.png at 390 px).

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BASE = process.env.CANDOR_URL;
const KEY = process.env.CANDOR_ADMIN_KEY;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.CANDOR_E2E_SCREENSHOTS || '/tmp/candor-e2e-screens';
const TIMEOUT = 60_000; // one detection on 2 shared cores is well under this

const SAMPLE1 = join(ROOT, 'testdata/face-api/sample1.jpg');
// ../shared beside the project root (CANDOR_SHARED_DIR overrides), never an absolute path.
const LFW = join(process.env.CANDOR_SHARED_DIR || join(ROOT, '..', 'shared'), 'datasets/lfw/lfw');
const BUSH_1 = join(LFW, 'George_W_Bush/George_W_Bush_0001.jpg');
const BUSH_2 = join(LFW, 'George_W_Bush/George_W_Bush_0002.jpg');
const POWELL_1 = join(LFW, 'Colin_Powell/Colin_Powell_0001.jpg');

// The same-person pair: two LFW photos of one man if the data set is there,
// otherwise two crops of the same woman from the face-api samples (made in the
// browser with a canvas, see cropFace), and a different person as a distractor.
const HAVE_LFW = process.env.CANDOR_E2E_NO_LFW !== '1' && existsSync(BUSH_1) && existsSync(BUSH_2) && existsSync(POWELL_1);

const RUN = Date.now().toString(36);
const COLLECTION = `e2e-${RUN}`;
const SUBJECT = `subject-a-${RUN}`;
const OTHER = `subject-b-${RUN}`;
const REASON = `E2E check ${RUN}: case 4711`;
const STRANGER_REASON = `E2E check ${RUN}: SEC-1043`;
const PURPOSE = 'Building access for staff who opted in';
const THIRD = `subject-c-${RUN}`;

let browser;
let context;
let page;
const problems = []; // unexpected console errors, page errors, CSP violations
const expectedRefusals = []; // the 409 of the enrollment without consent
const consentBodies = []; // what the browser sent to the consents route

const testid = (id) => `[data-testid="${id}"]`;
// Every page of the console, as its tab names it (an admin key over every collection sees them all).
const PAGE_NAMES = ['detect', 'compare', 'collections', 'consent', 'subjects', 'search', 'audit', 'keys', 'retention', 'streams', 'libraries'];

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  const file = join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function gotoTab(name) {
  await page.click(testid(`tab-${name}`));
  await page.waitForSelector(`${testid(`page-${name}`)}:not([hidden])`);
}

// Crops a face from an image in the browser (canvas → PNG): a photo of one face
// made from a group photo, without any image tool on the host.
async function cropFace(file, box, margin = 0.6) {
  const bytes = readFileSync(file).toString('base64');
  const png = await page.evaluate(async ({ bytes, box, margin }) => {
    // No fetch of a data: URL: the console's CSP (connect-src 'self') forbids it.
    const raw = atob(bytes);
    const img = await createImageBitmap(new Blob([Uint8Array.from(raw, (ch) => ch.charCodeAt(0))]));
    const cx = box.x + box.w / 2;
    const cy = box.y + box.h / 2;
    const side = Math.max(box.w, box.h) * (1 + 2 * margin);
    const x = Math.max(0, cx - side / 2);
    const y = Math.max(0, cy - side / 2);
    const w = Math.min(img.width - x, side);
    const h = Math.min(img.height - y, side);
    const c = new OffscreenCanvas(Math.round(w), Math.round(h));
    c.getContext('2d').drawImage(img, x, y, w, h, 0, 0, c.width, c.height);
    const out = await c.convertToBlob({ type: 'image/png' });
    const buf = new Uint8Array(await out.arrayBuffer());
    let s = '';
    for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
    return btoa(s);
  }, { bytes, box, margin });
  return Buffer.from(png, 'base64');
}

let photoSet = null;
let subjectEvidence = null; // SUBJECT's consent form, recorded again for THIRD in (g)

async function photos() {
  if (!photoSet) photoSet = await makePhotos();
  if (process.env.CANDOR_E2E_SAVE_PHOTOS) {
    mkdirSync(process.env.CANDOR_E2E_SAVE_PHOTOS, { recursive: true });
    for (const p of Object.values(photoSet)) writeFileSync(join(process.env.CANDOR_E2E_SAVE_PHOTOS, p.name), p.buffer);
  }
  return photoSet;
}

async function makePhotos() {
  if (HAVE_LFW) {
    return {
      enroll: { name: 'George_W_Bush_0001.jpg', mimeType: 'image/jpeg', buffer: readFileSync(BUSH_1) },
      probe: { name: 'George_W_Bush_0002.jpg', mimeType: 'image/jpeg', buffer: readFileSync(BUSH_2) },
      other: { name: 'Colin_Powell_0001.jpg', mimeType: 'image/jpeg', buffer: readFileSync(POWELL_1) },
    };
  }
  // The woman at (1456,220) in sample1 and at (1073,206) in sample3; another woman from sample1 as the other.
  return {
    enroll: { name: 'woman-sample1.png', mimeType: 'image/png', buffer: await cropFace(SAMPLE1, { x: 1456, y: 220, w: 234, h: 214 }) },
    probe: { name: 'woman-sample3.png', mimeType: 'image/png', buffer: await cropFace(join(ROOT, 'testdata/face-api/sample3.jpg'), { x: 1073, y: 206, w: 220, h: 220 }) },
    other: { name: 'other-sample1.png', mimeType: 'image/png', buffer: await cropFace(SAMPLE1, { x: 823, y: 423, w: 216, h: 228 }) },
  };
}

describe('Candor web console', { timeout: 10 * TIMEOUT }, () => {
  before(async () => {
    assert.ok(BASE, 'CANDOR_URL is not set: run the tests through tests/e2e/run.sh');
    assert.ok(KEY, 'CANDOR_ADMIN_KEY is not set: run the tests through tests/e2e/run.sh');
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    context = await browser.newContext({ viewport: { width: 1366, height: 900 }, baseURL: BASE });
    // CSP violations, recorded by the page itself (the init script is injected by
    // the browser, so the CSP does not apply to it).
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
      });
    });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('console', (msg) => {
      if (msg.type() !== 'error' && msg.type() !== 'warning') return;
      const text = msg.text();
      const where = msg.location() && msg.location().url ? msg.location().url : '';
      // The enrollment refused for want of consent is expected to fail with 409.
      if (/status of 409/.test(text) && /\/v1\/collections\/[^/]+\/subjects\/[^/]+\/faces$/.test(where)) {
        expectedRefusals.push(text);
        return;
      }
      // So is the 401 of the wrong key (once).
      if (/status of 401/.test(text) && /\/v1\/keys\/self$/.test(where) && !expectedRefusals.some((t) => /401/.test(t))) {
        expectedRefusals.push(text);
        return;
      }
      if (msg.type() === 'warning' && !/Content[- ]Security[- ]Policy|Refused/i.test(text)) return;
      problems.push(`console.${msg.type()}: ${text}${where ? ` (${where})` : ''}`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('requestfailed', (req) => {
      const why = req.failure() && req.failure().errorText;
      // A stream's event feed ends when the operator stops watching: the console aborts it.
      if (/\/v1\/streams\/[^/]+\/events$/.test(new URL(req.url()).pathname) && /ABORTED/.test(why || '')) return;
      problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
    });
    page.on('request', (req) => {
      if (req.method() === 'POST' && /\/consents$/.test(new URL(req.url()).pathname)) {
        consentBodies.push({ type: req.headers()['content-type'] || '', body: req.postData() || '' });
      }
    });
  });

  after(async () => {
    if (browser) await browser.close();
  });

  test('the server sends the console with its CSP', async () => {
    const res = await page.goto('/');
    assert.equal(res.status(), 200);
    const csp = res.headers()['content-security-policy'] || '';
    assert.match(csp, /script-src 'self'/, `CSP header: ${csp}`);
    await page.waitForSelector(`${testid('key-panel')}:not([hidden])`);
    await shot('0-key-prompt');
  });

  test('a wrong key is refused with the server message', async () => {
    await page.fill(testid('api-key-input'), 'cnd_not_a_real_key');
    await page.click(testid('api-key-submit'));
    const err = page.locator(testid('key-error'));
    await err.waitFor({ state: 'visible' });
    assert.equal(await err.getAttribute('data-code'), 'unauthenticated');
    assert.ok((await err.locator(testid('error-message')).textContent()).trim().length > 0);
  });

  test('(a) sign in, detect the three faces of sample1.jpg', async () => {
    await page.fill(testid('api-key-input'), KEY);
    await page.click(testid('api-key-submit'));
    await page.waitForSelector(`${testid('page-detect')}:not([hidden])`);
    // The key is in memory only: nothing in localStorage, no cookies.
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    assert.equal((await context.cookies()).length, 0);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'not asked to remember: sessionStorage stays empty');

    await page.setInputFiles(testid('detect-image'), SAMPLE1);
    const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/detect');
    await page.click(testid('detect-submit'));
    const detected = await (await answer).json();
    await page.waitForSelector(`${testid('detect-result')}:not([hidden])`);
    const rows = page.locator(testid('detect-face-row'));
    assert.equal(await rows.count(), 3, 'sample1.jpg shows three faces');
    assert.equal(await page.getAttribute(testid('detect-canvas'), 'data-faces'), '3');
    assert.match(await page.textContent(testid('detect-summary')), /^3 faces found/);
    // The canvas holds the photo at its size, with the boxes drawn in.
    const size = await page.evaluate(() => {
      const c = document.querySelector('[data-testid="detect-canvas"]');
      return [c.width, c.height];
    });
    assert.deepEqual(size, [1920, 1280]);
    // Each face's quality level, as the server assessed it, is listed.
    // Numbered left to right, as a reader counts them (not by detector score).
    const levels = await page.locator(testid('quality-level')).allTextContents();
    const byX = [...detected.faces].sort((a, b) => a.box.x - b.box.x);
    assert.deepEqual(levels, byX.map((f) => (f.quality && f.quality.level) || 'n/a'));
    await shot('1-detect');
  });

  test('no face: the detect page says what to try', async () => {
    const blank = await page.evaluate(async () => {
      const c = new OffscreenCanvas(320, 240);
      const ctx = c.getContext('2d');
      ctx.fillStyle = '#8a9099';
      ctx.fillRect(0, 0, 320, 240);
      const buf = new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer());
      return Array.from(buf);
    });
    await page.setInputFiles(testid('detect-image'), { name: 'wall.png', mimeType: 'image/png', buffer: Buffer.from(blank) });
    await page.click(testid('detect-submit'));
    await page.waitForSelector(`${testid('detect-no-face')}:not([hidden])`);
    assert.match(await page.textContent(testid('detect-summary')), /^0 faces found/);
    await page.setInputFiles(testid('detect-image'), SAMPLE1); // back to the group photo for the screenshots
    await page.click(testid('detect-submit'));
    await page.waitForSelector(`${testid('detect-canvas')}[data-faces="3"]`);
  });

  test('sizes read in MB, plurals in words', async () => {
    const out = await page.evaluate(async () => {
      const dom = await import('/dom.js');
      return [dom.readableSizes('the image is 25165824 bytes; the limit is 20971520'),
        dom.readableSizes('request body over the limit of 20971520 bytes'), dom.plural(1, 'face'), dom.plural(3, 'face')];
    });
    assert.deepEqual(out, ['the image is 24 MB; the limit is 20 MB', 'request body over the limit of 20 MB', '1 face', '3 faces']);
  });

  test('the tabs work from the keyboard', async () => {
    await page.focus(testid('tab-detect'));
    await page.keyboard.press('ArrowRight');
    await page.waitForSelector(`${testid('page-compare')}:not([hidden])`);
    assert.equal(await page.getAttribute(testid('tab-compare'), 'aria-selected'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'tab-compare');
  });

  test('compare two photos of the same person', async () => {
    const p = await photos();
    await gotoTab('compare');
    await page.setInputFiles(testid('compare-a'), p.enroll);
    await page.setInputFiles(testid('compare-b'), p.probe);
    await page.click(testid('compare-submit'));
    await page.waitForSelector(`${testid('compare-result')}:not([hidden])`);
    assert.equal(await page.getAttribute(testid('compare-verdict'), 'data-match'), 'yes');
    assert.ok(Number(await page.textContent(testid('compare-similarity'))) > 0.3);
    assert.equal(await page.textContent(testid('compare-op-name')), 'fmr-1e-3');
    await shot('2-compare');
  });

  test('compare: a group photo lists its faces left to right and the operator picks one', async () => {
    await gotoTab('compare');
    const woman = await cropFace(SAMPLE1, { x: 1456, y: 220, w: 234, h: 214 });
    await page.setInputFiles(testid('compare-a'), SAMPLE1);
    await page.setInputFiles(testid('compare-b'), { name: 'woman.png', mimeType: 'image/png', buffer: woman });
    await page.waitForSelector(testid('compare-pick-a'));
    const choices = page.locator(`${testid('compare-pick-a')} input[type="radio"]`);
    assert.equal(await choices.count(), 3, 'the three faces of sample1, to pick from');
    // The woman is the rightmost face: face 3, left to right.
    await choices.nth(2).check();
    await page.click(testid('compare-submit'));
    await page.waitForSelector(`${testid('compare-result')}:not([hidden])`);
    assert.equal(await page.getAttribute(testid('compare-verdict'), 'data-match'), 'yes');
    await choices.nth(0).check();
    await page.click(testid('compare-submit'));
    await page.waitForSelector(`${testid('compare-verdict')}[data-match="no"]`);
  });

  test('(b) collection, refusal without consent, consent, enrollment, search', async () => {
    const p = await photos();

    // A collection.
    await gotoTab('collections');
    await page.fill(testid('collection-name'), COLLECTION);
    await page.fill(testid('collection-purpose'), PURPOSE);
    await page.fill(testid('collection-retention'), '30');
    await page.click(testid('collection-create'));
    await page.waitForSelector(`${testid('collection-form-ok')}:not([hidden])`);
    await page.waitForSelector(`${testid('collection-row')}[data-name="${COLLECTION}"]`);
    await page.click(`${testid('collection-row')}[data-name="${COLLECTION}"] button`);
    await page.waitForSelector(`${testid('collection-detail')}:not([hidden])`);
    await shot('3-collections');

    // Enrollment without consent: refused, and the refusal is shown.
    await gotoTab('consent');
    await page.selectOption(testid('consent-collection'), COLLECTION);
    await page.fill(testid('enroll-subject'), SUBJECT);
    await page.setInputFiles(testid('enroll-images'), p.enroll);
    await page.click(testid('enroll-submit'));
    const refusal = page.locator(testid('enroll-error'));
    await refusal.waitFor({ state: 'visible' });
    assert.equal(await refusal.getAttribute('data-code'), 'consent_required');
    assert.match(await refusal.textContent(), /consent/i);
    assert.ok((await refusal.locator(testid('error-message')).textContent()).trim().length > 0, 'the server message is shown');
    await shot('4-enroll-refused');

    // Consent: the evidence file is hashed in the browser and never uploaded.
    const evidence = Buffer.from(`Signed consent form of ${SUBJECT}, ${new Date().toISOString()}\n`);
    subjectEvidence = evidence;
    const digest = createHash('sha256').update(evidence).digest('hex');
    await page.fill(testid('consent-subject'), SUBJECT);
    await page.setInputFiles(testid('consent-evidence'), { name: 'consent-form.pdf', mimeType: 'application/pdf', buffer: evidence });
    await page.waitForSelector(`${testid('consent-digest')}[data-ready="true"]`);
    assert.equal(await page.textContent(testid('consent-digest')), digest);
    await page.fill(testid('consent-collected-by'), 'E2E operator');
    // The form shows the collection's purpose, and records the consent for it.
    assert.equal(await page.textContent(testid('consent-form-purpose')), PURPOSE);
    await page.check(testid('consent-purpose-confirm'));
    const nextYear = `${new Date().getUTCFullYear() + 1}-12-31`;
    await page.fill(testid('consent-expires'), nextYear);
    await page.click(testid('consent-submit'));
    await page.waitForSelector(`${testid('consent-ok')}:not([hidden])`);
    await page.waitForSelector(`${testid('consent-row')}[data-subject="${SUBJECT}"]`);
    assert.equal(await page.isHidden(testid('enroll-error')), true, 'the "no valid consent" refusal is not left standing');
    assert.equal(consentBodies.length, 1);
    assert.match(consentBodies[0].type, /application\/json/);
    const sent = JSON.parse(consentBodies[0].body);
    assert.equal(sent.evidence_sha256, digest);
    assert.equal(sent.purpose, PURPOSE, 'recorded for the collection\'s purpose');
    assert.ok(!consentBodies[0].body.includes('Signed consent form'), 'the evidence itself is not sent');

    // Enrollment now succeeds.
    await page.fill(testid('enroll-subject'), SUBJECT);
    await page.setInputFiles(testid('enroll-images'), p.enroll);
    await page.click(testid('enroll-submit'));
    await page.waitForSelector(`${testid('enroll-ok')}:not([hidden])`);
    assert.equal(await page.isHidden(testid('enroll-error')), true);
    assert.equal(await page.locator(`${testid('enroll-outcome')}[data-ok="true"]`).count(), 1);
    await shot('5-consent-enroll');

    // A second, different person, so that the search has someone to rank below.
    await page.fill(testid('consent-subject'), OTHER);
    await page.setInputFiles(testid('consent-evidence'), { name: 'form-b.txt', mimeType: 'text/plain', buffer: Buffer.from(`form of ${OTHER}`) });
    await page.waitForSelector(`${testid('consent-digest')}[data-ready="true"]`);
    await page.fill(testid('consent-expires'), '');
    await page.check(testid('consent-purpose-confirm'));
    await page.click(testid('consent-submit'));
    await page.waitForSelector(`${testid('consent-row')}[data-subject="${OTHER}"]`);
    await page.fill(testid('enroll-subject'), OTHER);
    await page.setInputFiles(testid('enroll-images'), p.other);
    await page.click(testid('enroll-submit'));
    await page.waitForSelector(`${testid('enroll-outcome')}[data-ok="true"]`);

    // Search: the reason is required, by the console before the server.
    await gotoTab('search');
    await page.selectOption(testid('search-collection'), COLLECTION);
    await page.setInputFiles(testid('search-image'), p.probe);
    await page.fill(testid('search-reason'), '');
    await page.click(testid('search-submit'));
    await page.waitForSelector(`${testid('search-error')}:not([hidden])`);
    assert.match(await page.textContent(testid('search-error')), /reason/i);
    assert.equal(await page.getAttribute(testid('search-reason'), 'aria-invalid'), 'true');
    // A check of the console's own: nothing was sent, so no "Request refused" and no API code.
    assert.equal(await page.getAttribute(testid('search-error'), 'data-code'), 'form');
    assert.match(await page.textContent(testid('search-error')), /^Check the form\./);
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'search-reason', 'focus on the field to fix');

    await page.fill(testid('search-reason'), REASON);
    await page.fill(testid('search-top'), '5');
    await page.click(testid('search-submit'));
    await page.waitForSelector(`${testid('search-result')}:not([hidden])`);
    assert.equal(await page.isHidden(testid('search-error')), true);
    const rows = page.locator(testid('search-match-row'));
    assert.equal(await rows.count(), 1, 'only the matching subject is listed, not the other enrolled one');
    const top = rows.first();
    assert.equal(await top.getAttribute('data-subject'), SUBJECT, 'the subject is the top match');
    assert.equal(await top.getAttribute('data-match'), 'yes');
    assert.equal(await page.locator(`${testid('search-match-row')}[data-subject="${OTHER}"]`).count(), 0);
    assert.equal(await page.inputValue(testid('search-reason')), '', 'the reason is cleared after the search');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'search-summary', 'focus moves to the result');
    await shot('6-search');
  });

  test('(e) subjects: listed with faces, consent and last match; export downloads; erasure asks first', async () => {
    await gotoTab('subjects');
    await page.selectOption(testid('subjects-collection'), COLLECTION);
    const row = page.locator(`${testid('subject-row')}[data-subject="${SUBJECT}"]`);
    await row.waitFor();
    assert.match(await row.textContent(), /valid/);
    assert.match(await row.locator(testid('subject-last-matched')).textContent(), /^\d{4}-\d{2}-\d{2} /, 'the search that matched her');
    assert.equal(await page.textContent(`${testid('subject-row')}[data-subject="${OTHER}"] ${testid('subject-last-matched')}`), 'never');
    await shot('8-subjects');

    // Export: a download of her data, recorded in the audit log.
    const download = page.waitForEvent('download');
    await row.locator(testid('subject-export')).click();
    const file = await (await download).path();
    const exported = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(exported.subject, SUBJECT);
    assert.equal(exported.faces.length, 1);
    await page.waitForSelector(`${testid('subjects-ok')}:not([hidden])`);

    // Erasure: a reason and the typed id first; a wrong id sends nothing.
    await page.click(`${testid('subject-row')}[data-subject="${OTHER}"] ${testid('subject-erase')}`);
    await page.waitForSelector(`${testid('erase-form')}:not([hidden])`);
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'erase-reason');
    await page.fill(testid('erase-reason'), 'GDPR art. 17 request 88');
    await page.fill(testid('erase-confirm'), 'someone else');
    await page.click(testid('erase-submit'));
    await page.waitForSelector(`${testid('erase-error')}:not([hidden])`);
    assert.equal(await page.getAttribute(testid('erase-error'), 'data-code'), 'form');
    await page.fill(testid('erase-confirm'), OTHER);
    await page.click(testid('erase-submit'));
    // The export's message is still on show: wait for the erasure's own, not for any.
    await page.locator(testid('subjects-ok'), { hasText: /erased/ }).waitFor();
    assert.match(await page.textContent(testid('subjects-ok')), /erased .* 1 face deleted/);
    assert.equal(await page.locator(`${testid('subject-row')}[data-subject="${OTHER}"]`).count(), 0);
  });

  test('(f) a search that matches no one says so', async () => {
    const p = await photos();
    await gotoTab('search');
    await page.selectOption(testid('search-collection'), COLLECTION);
    await page.setInputFiles(testid('search-image'), p.other); // erased above: a stranger now
    await page.fill(testid('search-reason'), STRANGER_REASON);
    await page.click(testid('search-submit'));
    await page.waitForSelector(`${testid('search-result')}:not([hidden])`);
    assert.equal(await page.locator(testid('search-match-row')).count(), 0);
    assert.match(await page.textContent(testid('search-summary')), /no match/);
    assert.equal(await page.getAttribute(`${testid('search-face')}[data-face="0"]`, 'data-match'), 'no');
  });

  test('(c) the audit log: newest first, outcomes that cannot be misread, filters, the chain', async () => {
    await gotoTab('audit');
    await page.waitForSelector(`${testid('audit-verify')}[data-state="intact"]`);
    assert.match(await page.textContent(testid('audit-verify-status')), /verified/i);
    await page.waitForSelector(testid('audit-row'));
    const seqs = (await page.locator(testid('audit-row')).evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq))));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
    const ops = await page.locator(testid('audit-operation-cell')).allTextContents();
    for (const op of ['create_collection', 'grant_consent', 'enroll', 'search', 'export_subject', 'erase_subject']) {
      assert.ok(ops.includes(op), `an ${op} entry is listed (got ${[...new Set(ops)].join(', ')})`);
    }
    const hit = page.locator(`${testid('audit-row')}[data-operation="search"]`).filter({ hasText: REASON });
    assert.equal(await hit.count(), 1, 'the search is listed with its reason');
    assert.equal(await hit.getAttribute('data-outcome'), 'match');
    assert.match(await hit.locator(testid('audit-outcome')).textContent(), new RegExp(`^Match: ${SUBJECT}`));
    const miss = page.locator(`${testid('audit-row')}[data-operation="search"]`).filter({ hasText: STRANGER_REASON });
    assert.equal(await miss.getAttribute('data-outcome'), 'no-match', 'a search for a stranger does not read as a hit');
    assert.match(await miss.locator(testid('audit-outcome')).textContent(), /^No match/);
    assert.equal(await miss.locator(testid('audit-subjects')).textContent(), 'none matched');
    assert.equal(await miss.locator(testid('audit-actor')).textContent(), 'key admin');
    await shot('7-audit');

    // Only the searches she was matched in.
    await page.selectOption(testid('audit-operation'), 'search');
    await page.fill(testid('audit-subject'), SUBJECT);
    await page.click(testid('audit-submit'));
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid="audit-row"]')];
      return rows.length > 0 && rows.every((r) => r.dataset.operation === 'search');
    });
    assert.equal(await page.locator(testid('audit-row')).count(), 1);
    assert.equal(await page.getAttribute(testid('audit-row'), 'data-outcome'), 'match');
    // A time range in the future holds nothing.
    await page.fill(testid('audit-subject'), '');
    await page.fill(testid('audit-since'), '2999-01-01T00:00');
    await page.click(testid('audit-submit'));
    await page.waitForSelector('#audit-empty:not([hidden])');
    await page.click('#audit-form button[type="reset"]');
    await page.waitForSelector(testid('audit-row'));
  });

  test('(g) a reused evidence file is warned about; a revocation reports beside its table', async () => {
    await gotoTab('consent');
    await page.selectOption(testid('consent-collection'), COLLECTION);
    const evidence = subjectEvidence; // the file recorded for SUBJECT above
    await page.fill(testid('consent-subject'), THIRD);
    await page.setInputFiles(testid('consent-evidence'), { name: 'form-b.txt', mimeType: 'text/plain', buffer: evidence });
    await page.waitForSelector(`${testid('consent-digest')}[data-ready="true"]`);
    await page.fill(testid('consent-collected-by'), 'E2E operator');
    await page.check(testid('consent-purpose-confirm'));
    await page.click(testid('consent-submit'));
    await page.waitForSelector(`${testid('consent-warning')}:not([hidden])`);
    assert.match(await page.textContent(testid('consent-warning')), /same evidence file/);
    assert.match(await page.textContent(testid('consent-warning')), new RegExp(SUBJECT));

    // Revoking: the result is shown beside the consents table, not in the "Record a consent" card.
    page.once('dialog', (d) => d.accept());
    await page.click(`${testid('consent-row')}[data-subject="${THIRD}"] button`);
    await page.waitForSelector(`${testid('consents-ok')}:not([hidden])`);
    assert.match(await page.textContent(testid('consents-ok')), new RegExp(`Consent of ${THIRD} revoked; 0 faces deleted`));
    assert.equal(await page.isHidden(testid('consent-ok')), true);
    await page.waitForSelector(`${testid('consent-row')}[data-subject="${THIRD}"][data-status="revoked"]`);
  });

  test('(h) API keys: create with scopes and budgets, the secret once, a search-only key sees only search', async () => {
    const name = `e2e-gate-${RUN}`;
    await gotoTab('keys');
    await page.fill(testid('newkey-name'), name);
    await page.check(testid('newkey-op-search'));
    await page.fill(testid('newkey-collections'), COLLECTION);
    await page.fill(testid('newkey-per-minute'), '5');
    await page.fill(testid('newkey-per-day'), '100');
    await page.click(testid('newkey-submit'));
    await page.waitForSelector(`${testid('newkey-secret')}:not([hidden])`);
    const secret = (await page.textContent(testid('newkey-secret-value'))).trim();
    assert.match(secret, /^cnd_/);
    const row = page.locator(`${testid('key-row')}[data-name="${name}"]`);
    await row.waitFor();
    assert.match(await row.textContent(), /search/);
    assert.match(await row.textContent(), /5 \/ 100/);
    await shot('9-keys');
    await page.click(testid('newkey-done'));
    assert.equal(await page.isHidden(testid('newkey-secret')), true);
    assert.equal(await page.textContent(testid('newkey-secret-value')), '', 'shown once: gone from the page');

    // Signed in with it: the header names it and its scope; only what it may do is offered.
    await page.click(testid('sign-out'));
    await page.fill(testid('api-key-input'), secret);
    await page.click(testid('api-key-submit'));
    await page.waitForSelector('#app:not([hidden])');
    assert.equal(await page.textContent(testid('session-key-name')), name);
    assert.match(await page.textContent(testid('session-key-scope')), new RegExp(`may search on ${COLLECTION}`));
    const tabs = await page.locator('[role="tab"]:visible').evaluateAll((t) => t.map((x) => x.dataset.page));
    assert.deepEqual(tabs, ['collections', 'search']);
    assert.equal(await page.isHidden('#collection-form'), true, 'no collection form for a search-only key');
    await page.click(testid('tab-search'));
    await page.waitForSelector(`${testid('page-search')}:not([hidden])`);
    assert.equal(await page.isHidden(testid('search-result')), true, 'nothing the admin saw is left on screen for the next key');
    await shot('10-search-only-key');

    // Back as admin; revoke it (asked first).
    await page.click(testid('sign-out'));
    await page.fill(testid('api-key-input'), KEY);
    await page.click(testid('api-key-submit'));
    await page.waitForSelector('#app:not([hidden])');
    await gotoTab('keys');
    await row.waitFor();
    page.once('dialog', (d) => d.accept());
    await row.locator(testid('key-revoke')).click();
    await page.waitForSelector(`${testid('keys-ok')}:not([hidden])`);
    assert.equal(await page.locator(`${testid('key-row')}[data-name="${name}"]`).count(), 0);
  });

  test('(i) retention run shows its result', async () => {
    await gotoTab('retention');
    await page.click(testid('retention-run'));
    await page.waitForSelector(`${testid('retention-result')}:not([hidden])`);
    assert.match(await page.textContent(testid('retention-removed')), /^\d+$/);
    await shot('11-retention');
  });

  test('(n) streams: create with a password that is never shown, watch its events live, stop, delete', async () => {
    // Nothing listens on port 9: the source fails, and its source_error events arrive over SSE.
    const password = `pw${RUN}x`;
    const name = `door-${RUN}`;
    await gotoTab('streams');
    await page.fill(testid('stream-name'), name);
    await page.fill(testid('stream-source'), `rtsp://e2euser:${password}@127.0.0.1:9/live`);
    await page.selectOption(testid('stream-collection'), COLLECTION);
    await page.fill(testid('stream-purpose'), PURPOSE);
    await page.fill(testid('stream-reason'), 'e2e door test');
    await page.fill(testid('stream-detect-every'), '2');
    await page.fill(testid('stream-buffer-frames'), '5');
    await page.fill(testid('stream-shutter'), '0.02');
    // A share over 50% is refused in the page, before any request; 2% is sent as 0.02.
    await page.fill(testid('stream-strangers'), '60');
    await page.click(testid('stream-create'));
    await page.waitForSelector(`${testid('stream-form-error')}:not([hidden])`);
    assert.match(await page.textContent(testid('stream-form-error')), /percentage from 0 to 50/);
    assert.equal(await page.locator(`${testid('stream-row')}[data-name="${name}"]`).count(), 0);
    await page.fill(testid('stream-strangers'), '2');
    await page.click(testid('stream-create'));
    const row = page.locator(`${testid('stream-row')}[data-name="${name}"]`);
    await row.waitFor();
    const listed = await (await fetch(new URL('v1/streams', BASE), { headers: { 'X-API-Key': KEY } })).json();
    const made = listed.streams.find((s) => s.name === name);
    assert.equal(made.detect_every, 2, 'the form\'s detect_every reached the stream');
    assert.equal(made.buffer_frames, 5);
    assert.equal(made.shutter_s, 0.02, 'the form\'s shutter reached the stream');
    assert.match(await row.locator(testid('stream-shutter-shown')).textContent(), /0\.02 s \(1\/50\)/,
      'the list shows the shutter');
    assert.equal(made.strangers_named, 0.02, 'the form\'s share of strangers (in percent) reached the stream');
    assert.match(await row.locator(testid('stream-strangers-shown')).textContent(), /Strangers named ≤ 2%/);
    assert.match(await row.textContent(), /rtsp:\/\/\*\*\*@127\.0\.0\.1:9\/live/);
    assert.equal(await page.locator(testid('stream-source')).inputValue(), '', 'the source is not kept in the form');
    await row.locator(testid('stream-watch')).click();
    await page.waitForSelector(`${testid('stream-event')}[data-event="source_error"]`, { timeout: 20_000 });
    await shot('12-streams');
    const html = await page.content();
    assert.ok(!html.includes(password) && !html.includes('e2euser'), 'the credentials appear nowhere on the page');
    await page.click(testid('stream-events-stop'));
    await row.locator(testid('stream-stop')).click();
    await page.waitForSelector(`${testid('stream-row')}[data-name="${name}"] ${testid('stream-start')}`);
    page.once('dialog', (d) => d.accept());
    await page.locator(`${testid('stream-row')}[data-name="${name}"]`).locator(testid('stream-delete')).click();
    await page.waitForSelector(`${testid('streams-ok')}:not([hidden])`);
    assert.equal(await page.locator(`${testid('stream-row')}[data-name="${name}"]`).count(), 0);
  });

  test('(j) a collection is deleted only with a reason and its typed name', async () => {
    const name = `e2e-del-${RUN}`;
    await gotoTab('collections');
    await page.fill(testid('collection-name'), name);
    await page.fill(testid('collection-purpose'), 'Temporary');
    await page.click(testid('collection-create'));
    await page.waitForSelector(`${testid('collection-row')}[data-name="${name}"]`);
    await page.click(`${testid('collection-row')}[data-name="${name}"] button`);
    await page.waitForSelector(testid('collection-delete-form'));
    await page.fill(testid('collection-delete-reason'), 'created by the e2e test');
    await page.fill(testid('collection-delete-confirm'), 'wrong');
    await page.click(testid('collection-delete-submit'));
    await page.waitForSelector(`${testid('collection-delete-error')}:not([hidden])`);
    await page.fill(testid('collection-delete-confirm'), name);
    await page.click(testid('collection-delete-submit'));
    await page.waitForSelector(`${testid('collections-ok')}:not([hidden])`);
    assert.equal(await page.locator(`${testid('collection-row')}[data-name="${name}"]`).count(), 0);
  });

  test('(k) keyboard only: sign in, move between tabs, create a collection, focus follows', async () => {
    await page.click(testid('sign-out'));
    // Signing out puts focus on the key field.
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'api-key-input');
    await page.keyboard.type(KEY);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#app:not([hidden])');
    await page.focus('[role="tab"][aria-selected="true"]');
    while ((await page.evaluate(() => document.activeElement.dataset.page)) !== 'collections') await page.keyboard.press('ArrowRight');
    await page.waitForSelector(`${testid('page-collections')}:not([hidden])`);
    // Into the form by Tab alone.
    for (let i = 0; i < 40 && (await page.evaluate(() => document.activeElement.dataset.testid)) !== 'collection-name'; ++i) {
      await page.keyboard.press('Tab');
    }
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'collection-name');
    await page.keyboard.type(`e2e-kb-${RUN}`);
    await page.keyboard.press('Tab');
    await page.keyboard.type('Keyboard test');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter'); // from the retention field: submits the form
    await page.waitForSelector(`${testid('collection-form-ok')}:not([hidden])`);
    await page.waitForFunction(() => document.activeElement.dataset.testid === 'collection-form-ok'); // focus on the result
  });

  test('(l) every page at 390 px: no horizontal scroll; screenshots', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const name of PAGE_NAMES) {
        await gotoTab(name);
        await page.waitForTimeout(150);
        const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
        assert.ok(scroll <= inner, `${name}: ${scroll} px wide in a ${inner} px window`);
        await shot(`390-${name}`);
      }
    } finally {
      await page.setViewportSize({ width: 1366, height: 900 });
    }
  });

  test('(m) accessibility (axe-core): no serious or critical violation on any page', async () => {
    const axe = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
    const found = [];
    for (const name of PAGE_NAMES) {
      await gotoTab(name);
      await page.waitForTimeout(150);
      // The source is evaluated through the DevTools protocol, not as a page script, so the
      // console's CSP stays as it is (and records no violation).
      if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(axe);
      const violations = await page.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ['violations'] });
        return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
      });
      for (const v of violations) found.push(`${name}: ${v}`);
      await shot(`page-${name}`);
    }
    assert.deepEqual(found, [], found.join('\n'));
  });

  test('(d) no console errors, page errors or CSP violations', async () => {
    const csp = await page.evaluate(() => window.__cspViolations || []);
    assert.deepEqual(csp, [], `CSP violations:\n${csp.join('\n')}`);
    assert.deepEqual(problems, [], `problems:\n${problems.join('\n')}`);
    assert.ok(expectedRefusals.length <= 2, expectedRefusals.join('\n'));
  });
});
