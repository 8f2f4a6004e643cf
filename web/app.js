// Candor console: the single-page operator console. Uses only the v1 routes of
// docs/api.md; no inline scripts or styles (the server's CSP forbids them).

import { api, setKey, restoreKey, clearKey, hasKey } from './api.js';
import { $, el, clear, show, showError, showOk, fmt, busy } from './dom.js';
import { decodeImage, drawFaces, qualityLevel } from './draw.js';

// ---------------------------------------------------------------- key + tabs

const PAGES = ['detect', 'compare', 'collections', 'consent', 'search', 'audit'];
const loaders = {}; // page -> function run when the page is shown

function signedIn(on) {
  show($('key-panel'), !on);
  show($('app'), on);
  show(document.querySelector('[data-testid="session"]'), on);
}

async function signIn(key, remember) {
  setKey(key, remember);
  try {
    // Any valid key may list the collections in its scope.
    await refreshCollections();
  } catch (err) {
    clearKey();
    throw err;
  }
  signedIn(true);
  selectPage(currentPage());
}

function currentPage() {
  const hash = location.hash.replace('#', '');
  return PAGES.includes(hash) ? hash : 'detect';
}

function selectPage(page, focusTab = false) {
  for (const p of PAGES) {
    const tab = $(`tab-${p}`);
    const on = p === page;
    tab.setAttribute('aria-selected', on ? 'true' : 'false');
    tab.tabIndex = on ? 0 : -1;
    show($(`page-${p}`), on);
    if (on && focusTab) tab.focus();
  }
  if (location.hash !== `#${page}`) history.replaceState(null, '', `#${page}`);
  if (loaders[page]) loaders[page]();
}

function initTabs() {
  const tabs = $('tabs');
  tabs.addEventListener('click', (e) => {
    const tab = e.target.closest('[role="tab"]');
    if (tab) selectPage(tab.dataset.page);
  });
  tabs.addEventListener('keydown', (e) => {
    const i = PAGES.indexOf(currentPage());
    let next = null;
    if (e.key === 'ArrowRight') next = PAGES[(i + 1) % PAGES.length];
    else if (e.key === 'ArrowLeft') next = PAGES[(i + PAGES.length - 1) % PAGES.length];
    else if (e.key === 'Home') next = PAGES[0];
    else if (e.key === 'End') next = PAGES[PAGES.length - 1];
    if (next) {
      e.preventDefault();
      selectPage(next, true);
    }
  });
  window.addEventListener('hashchange', () => {
    if (hasKey()) selectPage(currentPage());
  });
}

function initKey() {
  $('key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('api-key').value.trim();
    const errNode = $('key-error');
    if (!key) {
      showError(errNode, { code: 'invalid_argument', message: 'Enter an API key.' });
      $('api-key').focus();
      return;
    }
    showError(errNode, null);
    try {
      await busy($('key-form'), null, '', () => signIn(key, $('api-key-remember').checked));
      $('api-key').value = '';
    } catch (err) {
      showError(errNode, err);
      $('api-key').focus();
    }
  });
  $('sign-out').addEventListener('click', () => {
    clearKey();
    collections = [];
    signedIn(false);
    $('api-key').focus();
  });
}

// Any 401 after sign-in sends the operator back to the key prompt.
function handleAuth(err) {
  if (err && err.status === 401) {
    clearKey();
    signedIn(false);
    showError($('key-error'), err);
  }
}

// Runs an API call for a page: errors go to `errNode` (and a 401 signs out).
async function attempt(errNode, work) {
  showError(errNode, null);
  try {
    return await work();
  } catch (err) {
    showError(errNode, err);
    handleAuth(err);
    return undefined;
  }
}

function requireFile(input, errNode, what) {
  const file = input.files && input.files[0];
  if (!file) {
    showError(errNode, { code: 'invalid_argument', message: `Choose ${what}.` });
    input.focus();
  }
  return file;
}

// "2024-05-01T12:00:00.123Z" -> "2024-05-01 12:00:00" (UTC), the full value in a tooltip.
function when(iso) {
  if (!iso) return '—';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(String(iso));
  return el('time', { datetime: iso, title: iso }, m ? `${m[1]} ${m[2]}` : String(iso));
}

// ---------------------------------------------------------------- faces table

function pose(q) {
  if (!q || !q.pose) return '—';
  return `${fmt(q.pose.yaw, 1)}° / ${fmt(q.pose.pitch, 1)}° / ${fmt(q.pose.roll, 1)}°`;
}

function eyes(q) {
  if (!q || (q.left_eye_open === undefined && q.right_eye_open === undefined)) return '—';
  const e = (v) => (v === undefined ? '?' : v ? 'open' : 'closed');
  return `L ${e(q.left_eye_open)}, R ${e(q.right_eye_open)}`;
}

function qualityBadge(face) {
  const level = qualityLevel(face);
  return el('span', { class: `badge q-${level}`, dataset: { testid: 'quality-level' } }, level === 'none' ? 'n/a' : level);
}

function faceRow(face, i) {
  const q = face.quality || null;
  const b = face.box || {};
  const live = face.liveness ? `${face.liveness.live ? 'live' : 'not live'} (${fmt(face.liveness.score)})` : '—';
  return el('tr', { dataset: { testid: 'detect-face-row' } },
    el('td', { class: 'num' }, String(i + 1)),
    el('td', { class: 'num', dataset: { testid: 'face-score' } }, fmt(face.score)),
    el('td', { class: 'num' }, `${fmt(b.x, 0)}, ${fmt(b.y, 0)}, ${fmt(b.width, 0)} × ${fmt(b.height, 0)}`),
    el('td', {}, qualityBadge(face)),
    el('td', { class: 'num' }, q ? `${fmt(q.face_size_px, 0)} px` : '—'),
    el('td', { class: 'num' }, q ? fmt(q.sharpness) : '—'),
    el('td', { class: 'num' }, q ? fmt(q.brightness) : '—'),
    el('td', { class: 'num' }, pose(q)),
    el('td', {}, eyes(q)),
    el('td', {}, live),
    el('td', {}, q && q.limiting_factor ? q.limiting_factor : '—'));
}

// Draws the photo and its faces; a photo the browser cannot decode (the server may
// read formats the browser does not) leaves the canvas empty, with a note.
async function drawPhoto(canvas, file, faces, opts = {}) {
  try {
    const bitmap = await decodeImage(file);
    drawFaces(canvas, bitmap, faces, opts);
    if (bitmap.close) bitmap.close();
    return true;
  } catch {
    canvas.width = 0;
    canvas.height = 0;
    canvas.setAttribute('aria-label', `${file.name} cannot be shown in this browser`);
    return false;
  }
}

// ---------------------------------------------------------------- detect

function initDetect() {
  const form = $('detect-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('detect-error');
    const file = requireFile($('detect-image'), errNode, 'a photo');
    if (!file) return;
    const params = {
      min_face: $('detect-min-face').value,
      threshold: $('detect-threshold').value,
      max_faces: $('detect-max-faces').value,
    };
    show($('detect-result'), false);
    const data = await busy(form, $('detect-status'), 'Detecting…', () => attempt(errNode, () => api.detect(file, params)));
    if (!data) return;
    const faces = Array.isArray(data.faces) ? data.faces : [];
    await drawPhoto($('detect-canvas'), file, faces, { width: data.width, height: data.height });
    $('detect-canvas').setAttribute('aria-label', `${file.name} with ${faces.length} face${faces.length === 1 ? '' : 's'} marked`);
    $('detect-canvas').dataset.faces = String(faces.length);
    const body = $('detect-faces-body');
    clear(body);
    faces.forEach((f, i) => body.append(faceRow(f, i)));
    $('detect-summary').textContent =
      `${faces.length} face${faces.length === 1 ? '' : 's'} found in ${file.name} (${data.width} × ${data.height} px).`;
    show($('detect-result'), true);
  });
}

// ---------------------------------------------------------------- compare

function initCompare() {
  const form = $('compare-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('compare-error');
    const a = requireFile($('compare-a'), errNode, 'photo A');
    if (!a) return;
    const b = requireFile($('compare-b'), errNode, 'photo B');
    if (!b) return;
    show($('compare-result'), false);
    const data = await busy(form, $('compare-status'), 'Comparing…',
      () => attempt(errNode, () => api.compare(a, b, $('compare-op').value)));
    if (!data) return;
    const op = data.operating_point || {};
    const verdict = $('compare-verdict');
    verdict.className = `verdict ${data.match ? 'verdict-yes' : 'verdict-no'}`;
    verdict.dataset.match = data.match ? 'yes' : 'no';
    verdict.textContent = data.match ? 'Match: same person at this operating point' : 'No match at this operating point';
    $('compare-similarity').textContent = fmt(data.similarity, 4);
    $('compare-op-name').textContent = op.name || '—';
    $('compare-op-fmr').textContent = op.fmr === undefined ? '—' : String(op.fmr);
    $('compare-op-threshold').textContent = fmt(op.threshold, 4);
    const faces = data.faces || {};
    await Promise.all([
      drawPhoto($('compare-canvas-a'), a, faces.a ? [faces.a] : [], { labels: false }),
      drawPhoto($('compare-canvas-b'), b, faces.b ? [faces.b] : [], { labels: false }),
    ]);
    show($('compare-result'), true);
  });
}

// ---------------------------------------------------------------- collections

let collections = [];

function collectionName(c) {
  return typeof c === 'string' ? c : c.name;
}

async function refreshCollections() {
  const data = await api.listCollections();
  collections = Array.isArray(data.collections) ? data.collections : [];
  renderCollectionSelects();
  return collections;
}

function renderCollectionSelects() {
  for (const select of document.querySelectorAll('.collection-select')) {
    const keep = select.value;
    clear(select);
    if (!collections.length) select.append(el('option', { value: '' }, 'No collection'));
    for (const c of collections) select.append(el('option', { value: collectionName(c) }, collectionName(c)));
    if (keep && collections.some((c) => collectionName(c) === keep)) select.value = keep;
  }
  const list = $('audit-collection-list');
  clear(list);
  for (const c of collections) list.append(el('option', { value: collectionName(c) }));
  updateConsentPurpose();
}

function renderCollectionsTable() {
  const body = $('collections-body');
  clear(body);
  for (const c of collections) {
    const name = collectionName(c);
    const detailButton = el('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Details of ${name}` }, 'Details');
    detailButton.addEventListener('click', () => showCollectionDetail(name));
    body.append(el('tr', { dataset: { testid: 'collection-row', name } },
      el('td', { class: 'nowrap' }, el('strong', {}, name)),
      el('td', { class: 'wrap' }, c.purpose || '—'),
      el('td', { class: 'num' }, c.retention_days === undefined ? '—' : `${c.retention_days} d`),
      el('td', { class: 'num' }, fmt(c.match_threshold, 4)),
      el('td', {}, c.liveness_required ? 'required' : 'no'),
      el('td', { class: 'nowrap' }, when(c.created_at)),
      el('td', {}, detailButton)));
  }
  show($('collections-empty'), collections.length === 0);
}

async function showCollectionDetail(name) {
  const node = $('collection-detail');
  const data = await attempt($('collections-error'), () => api.getCollection(name));
  if (!data) return;
  clear(node);
  const facts = el('dl', { class: 'facts' });
  const add = (k, v) => facts.append(el('div', {}, el('dt', {}, k), el('dd', {}, v)));
  add('Name', data.name || name);
  add('Purpose', data.purpose || '—');
  add('Retention', data.retention_days === undefined ? '—' : `${data.retention_days} days`);
  add('Match threshold', fmt(data.match_threshold, 4));
  if (data.operating_point) add('Operating point', typeof data.operating_point === 'string' ? data.operating_point : data.operating_point.name || '—');
  add('Liveness', data.liveness_required ? 'required' : 'not required');
  add('Faces enrolled', fmt(data.faces));
  add('Consents', fmt(data.consents));
  add('Created', when(data.created_at));
  node.append(el('h3', {}, `Collection ${data.name || name}`), facts);
  show(node, true);
}

function initCollections() {
  loaders.collections = async () => {
    await attempt($('collections-error'), refreshCollections);
    renderCollectionsTable();
  };
  $('collections-refresh').addEventListener('click', loaders.collections);
  const form = $('collection-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('collection-form-error');
    showOk($('collection-form-ok'), null);
    const name = $('coll-name').value.trim();
    const purpose = $('coll-purpose').value.trim();
    const retention = Number($('coll-retention').value);
    if (!/^[a-z0-9_-]{1,64}$/.test(name)) {
      showError(errNode, { code: 'invalid_argument', message: 'The name must be 1 to 64 of a-z, 0-9, _ and -.' });
      $('coll-name').focus();
      return;
    }
    if (!purpose) {
      showError(errNode, { code: 'invalid_argument', message: 'State the purpose: consents must name it.' });
      $('coll-purpose').focus();
      return;
    }
    if (!Number.isInteger(retention) || retention < 1 || retention > 1095) {
      showError(errNode, { code: 'invalid_argument', message: 'Retention must be 1 to 1095 days.' });
      $('coll-retention').focus();
      return;
    }
    const spec = {
      name,
      purpose,
      retention_days: retention,
      operating_point: $('coll-op').value,
      liveness_required: $('coll-liveness').checked,
    };
    const created = await busy(form, null, '', () => attempt(errNode, () => api.createCollection(spec)));
    if (!created) return;
    showOk($('collection-form-ok'), `Collection ${created.name || name} created.`);
    form.reset();
    await attempt($('collections-error'), refreshCollections);
    renderCollectionsTable();
  });
}

// ---------------------------------------------------------------- consent + enroll

function selectedCollection(select) {
  return select.value || '';
}

function updateConsentPurpose() {
  const name = $('consent-collection').value;
  const c = collections.find((x) => collectionName(x) === name);
  $('consent-collection-purpose').textContent = c && c.purpose ? `Purpose: ${c.purpose}` : '';
  $('consent-purpose').placeholder = c && c.purpose ? c.purpose : '';
}

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

let evidenceDigest = null; // {file, hex}

async function computeEvidenceDigest() {
  const input = $('consent-evidence');
  const file = input.files && input.files[0];
  evidenceDigest = null;
  $('consent-digest').textContent = file ? 'computing…' : '—';
  delete $('consent-digest').dataset.ready;
  if (!file) return null;
  const hex = await sha256Hex(file);
  if (input.files[0] !== file) return null; // another file was chosen meanwhile
  evidenceDigest = { file, hex };
  $('consent-digest').textContent = hex;
  $('consent-digest').dataset.ready = 'true';
  return evidenceDigest;
}

function consentStatus(c) {
  if (c.revoked_at) return ['revoked', 'bad'];
  if (c.expires_at && Date.parse(c.expires_at) < Date.now()) return ['expired', 'bad'];
  return ['valid', 'ok'];
}

async function loadConsents() {
  const name = selectedCollection($('consent-collection'));
  const body = $('consents-body');
  clear(body);
  if (!name) {
    show($('consents-empty'), true);
    return;
  }
  const data = await attempt($('consents-error'), () => api.listConsents(name));
  if (!data) return;
  const consents = Array.isArray(data.consents) ? data.consents : [];
  for (const c of consents) {
    const [status, tone] = consentStatus(c);
    const revoke = el('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Revoke the consent of ${c.subject}` }, 'Revoke');
    revoke.disabled = status === 'revoked';
    revoke.addEventListener('click', async () => {
      if (!window.confirm(`Revoke ${c.subject}'s consent? Their enrolled faces are deleted at once.`)) return;
      const r = await attempt($('consents-error'), () => api.revokeConsent(name, c.subject));
      if (r) {
        showOk($('consent-ok'), `Consent of ${c.subject} revoked; ${fmt(r.deleted_faces)} face(s) deleted.`);
        loadConsents();
      }
    });
    body.append(el('tr', { dataset: { testid: 'consent-row', subject: c.subject } },
      el('td', {}, el('strong', {}, c.subject)),
      el('td', { class: 'wrap' }, c.purpose || '—'),
      el('td', {}, c.collected_by || '—'),
      el('td', { class: 'nowrap' }, when(c.granted_at)),
      el('td', { class: 'nowrap' }, c.expires_at ? when(c.expires_at) : 'never'),
      el('td', {}, el('span', { class: `badge badge-${tone}` }, status)),
      el('td', { class: 'nowrap' }, el('code', { class: 'digest', title: c.evidence_sha256 || '' }, c.evidence_sha256 ? `${c.evidence_sha256.slice(0, 16)}…` : '—')),
      el('td', {}, revoke)));
  }
  show($('consents-empty'), consents.length === 0);
}

function renderOutcome(o) {
  const name = o.image || 'image';
  if (o.face_id !== undefined && o.face_id !== null && !o.error) {
    return el('li', { class: 'outcome ok', dataset: { testid: 'enroll-outcome', ok: 'true' } },
      el('span', { class: 'badge badge-ok' }, 'enrolled'), ` ${name} — face ${o.face_id}`);
  }
  const err = o.error || {};
  const message = typeof err === 'string' ? err : err.message || err.code || 'not enrolled';
  const code = typeof err === 'object' && err.code ? err.code : '';
  return el('li', { class: 'outcome bad', dataset: { testid: 'enroll-outcome', ok: 'false' } },
    el('span', { class: 'badge badge-bad' }, 'skipped'), ` ${name} — ${message}`, code ? el('code', { class: 'alert-code' }, code) : null);
}

function initConsent() {
  loaders.consent = async () => {
    await attempt($('consents-error'), refreshCollections);
    loadConsents();
  };
  $('consent-collection').addEventListener('change', () => {
    updateConsentPurpose();
    loadConsents();
  });
  $('consents-refresh').addEventListener('click', loadConsents);
  $('consent-evidence').addEventListener('change', () => {
    computeEvidenceDigest().catch((err) => showError($('consent-error'), { code: 'evidence', message: `Could not read the file: ${err.message}` }));
  });

  const consentForm = $('consent-form');
  consentForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('consent-error');
    showOk($('consent-ok'), null);
    const collection = selectedCollection($('consent-collection'));
    const subject = $('consent-subject').value.trim();
    const collectedBy = $('consent-collected-by').value.trim();
    const invalid = (message, input) => {
      showError(errNode, { code: 'invalid_argument', message });
      if (input) input.focus();
    };
    if (!collection) return invalid('Choose a collection (create one first).', $('consent-collection'));
    if (!subject) return invalid('Name the subject.', $('consent-subject'));
    const evidenceFile = $('consent-evidence').files[0];
    if (!evidenceFile) return invalid('Choose the signed consent form: its SHA-256 is recorded.', $('consent-evidence'));
    if (!collectedBy) return invalid('Say who collected the consent.', $('consent-collected-by'));
    const digest = evidenceDigest && evidenceDigest.file === evidenceFile ? evidenceDigest : await computeEvidenceDigest();
    if (!digest) return invalid('The consent form could not be read.', $('consent-evidence'));
    const consent = { subject, evidence_sha256: digest.hex, collected_by: collectedBy };
    const expires = $('consent-expires').value;
    if (expires) consent.expires_at = `${expires}T23:59:59Z`; // valid through that day (UTC)
    const purpose = $('consent-purpose').value.trim();
    if (purpose) consent.purpose = purpose;
    const saved = await busy(consentForm, null, '', () => attempt(errNode, () => api.grantConsent(collection, consent)));
    if (!saved) return;
    showOk($('consent-ok'), `Consent of ${saved.subject || subject} recorded for ${collection}.`);
    if (!$('enroll-subject').value) $('enroll-subject').value = subject;
    loadConsents();
  });

  const enrollForm = $('enroll-form');
  enrollForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('enroll-error');
    showOk($('enroll-ok'), null);
    clear($('enroll-outcomes'));
    const collection = selectedCollection($('consent-collection'));
    const subject = $('enroll-subject').value.trim();
    const files = Array.from($('enroll-images').files || []);
    const invalid = (message, input) => {
      showError(errNode, { code: 'invalid_argument', message });
      if (input) input.focus();
    };
    if (!collection) return invalid('Choose a collection (create one first).', $('consent-collection'));
    if (!subject) return invalid('Name the subject.', $('enroll-subject'));
    if (!files.length) return invalid('Choose at least one photo.', $('enroll-images'));
    const data = await busy(enrollForm, $('enroll-status'), 'Enrolling…',
      () => attempt(errNode, () => api.enroll(collection, subject, files)));
    if (!data) return;
    const outcomes = Array.isArray(data.images) ? data.images : [];
    for (const o of outcomes) $('enroll-outcomes').append(renderOutcome(o));
    const n = data.enrolled || 0;
    if (n > 0) showOk($('enroll-ok'), `${n} face${n === 1 ? '' : 's'} enrolled for ${subject}.`);
    else showError(errNode, { code: 'not_enrolled', message: 'No face was enrolled: see the reasons below.' });
  });
}

// ---------------------------------------------------------------- search

function initSearch() {
  loaders.search = () => attempt($('search-error'), refreshCollections);
  const form = $('search-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('search-error');
    const collection = selectedCollection($('search-collection'));
    const reason = $('search-reason').value.trim();
    const top = Number($('search-top').value);
    const invalid = (message, input) => {
      showError(errNode, { code: 'invalid_argument', message });
      if (input) input.focus();
    };
    if (!collection) return invalid('Choose a collection.', $('search-collection'));
    const file = $('search-image').files[0];
    if (!file) return invalid('Choose a probe photo.', $('search-image'));
    if (!reason) {
      $('search-reason').setAttribute('aria-invalid', 'true');
      return invalid('State the reason for this search: it is recorded in the audit log.', $('search-reason'));
    }
    $('search-reason').removeAttribute('aria-invalid');
    if (!Number.isInteger(top) || top < 1 || top > 100) return invalid('Top k must be 1 to 100.', $('search-top'));
    show($('search-result'), false);
    const data = await busy(form, $('search-status'), 'Searching…',
      () => attempt(errNode, () => api.search(collection, file, reason, top)));
    if (!data) return;
    const matches = Array.isArray(data.matches) ? data.matches : [];
    const body = $('search-body');
    clear(body);
    matches.forEach((m, i) => {
      body.append(el('tr', { dataset: { testid: 'search-match-row', subject: m.subject, match: m.match ? 'yes' : 'no' }, class: m.match ? 'row-match' : '' },
        el('td', { class: 'num' }, String(i + 1)),
        el('td', { dataset: { testid: 'search-match-subject' } }, el('strong', {}, m.subject)),
        el('td', { class: 'num', dataset: { testid: 'search-match-similarity' } }, fmt(m.similarity, 4)),
        el('td', {}, el('span', { class: `badge ${m.match ? 'badge-ok' : 'badge-neutral'}` }, m.match ? 'match' : 'no match'))));
    });
    show($('search-empty'), matches.length === 0);
    const faces = data.faces_in_image;
    $('search-summary').textContent =
      `Searched ${collection} with the largest of ${fmt(faces)} face${faces === 1 ? '' : 's'} in ${file.name}; ` +
      `match threshold ${fmt(data.threshold, 4)}. The search and its reason were written to the audit log.`;
    await drawPhoto($('search-canvas'), file, data.probe ? [data.probe] : [], { labels: false });
    show($('search-result'), true);
  });
}

// ---------------------------------------------------------------- audit

async function verifyChain() {
  const box = $('audit-verify');
  box.dataset.state = 'checking';
  $('audit-verify-status').textContent = 'Checking the hash chain…';
  const data = await attempt($('audit-error'), api.auditVerify);
  const issues = $('audit-verify-issues');
  clear(issues);
  if (!data) {
    box.dataset.state = 'unknown';
    $('audit-verify-status').textContent = 'Hash chain could not be checked';
    $('audit-verify-detail').textContent = '';
    return;
  }
  const intact = data.intact === true;
  box.dataset.state = intact ? 'intact' : 'broken';
  $('audit-verify-status').textContent = intact ? 'Audit chain verified: intact' : 'AUDIT CHAIN BROKEN';
  const head = data.head_hash ? `${String(data.head_hash).slice(0, 16)}…` : '—';
  $('audit-verify-detail').textContent = `${fmt(data.entries)} entries checked; head hash ${head}`;
  $('audit-verify-detail').title = data.head_hash || '';
  for (const issue of Array.isArray(data.issues) ? data.issues : []) {
    const text = typeof issue === 'string' ? issue
      : `${issue.seq !== undefined ? `seq ${issue.seq}: ` : ''}${issue.kind ? `${issue.kind} — ` : ''}${issue.message || ''}`;
    issues.append(el('li', {}, text));
  }
}

function entrySubjects(e) {
  if (Array.isArray(e.subjects) && e.subjects.length) return e.subjects.join(', ');
  if (typeof e.subject === 'string' && e.subject) return e.subject;
  if (Array.isArray(e.subject_tags) && e.subject_tags.length) return `${e.subject_tags.length} (erased)`;
  return '—';
}

let auditAfter = 0; // paging: entries after this seq (the log is listed oldest first)

async function loadAudit(after = 0) {
  auditAfter = after;
  const filters = {
    after_seq: after || undefined,
    subject: $('audit-subject').value.trim(),
    collection: $('audit-collection').value.trim(),
    operation: $('audit-operation').value,
    limit: $('audit-limit').value,
  };
  const data = await busy($('audit-form'), $('audit-status'), 'Loading…', () => attempt($('audit-error'), () => api.audit(filters)));
  const body = $('audit-body');
  clear(body);
  if (!data) return;
  const entries = Array.isArray(data.entries) ? data.entries : [];
  for (const e of entries) {
    const ok = typeof e.result === 'string' && e.result === 'ok';
    body.append(el('tr', { dataset: { testid: 'audit-row', operation: e.operation || '', seq: String(e.seq ?? '') } },
      el('td', { class: 'num' }, fmt(e.seq)),
      el('td', { class: 'nowrap' }, when(e.time)),
      el('td', {}, e.actor || '—'),
      el('td', { dataset: { testid: 'audit-operation-cell' } }, e.operation || '—'),
      el('td', { class: 'nowrap' }, e.collection || '—'),
      el('td', { class: 'wrap' }, entrySubjects(e)),
      el('td', { class: 'wrap' }, e.reason || ''),
      el('td', {}, el('span', { class: `badge ${ok ? 'badge-ok' : 'badge-bad'}` }, e.result || '—')),
      el('td', { class: 'nowrap' }, el('code', { class: 'digest', title: e.hash || '' }, e.hash ? `${e.hash.slice(0, 12)}…` : '—'))));
  }
  show($('audit-empty'), entries.length === 0);
  const limit = Number(filters.limit) || 100;
  const last = entries.length ? entries[entries.length - 1].seq : null;
  $('audit-next').dataset.after = last === null ? '' : String(last);
  show($('audit-next'), entries.length >= limit && last !== null);
  show($('audit-first'), after > 0);
  $('audit-page-info').textContent = entries.length
    ? `Entries ${fmt(entries[0].seq)} to ${fmt(last)}, oldest first.` : '';
}

function initAudit() {
  loaders.audit = () => Promise.all([verifyChain(), loadAudit(auditAfter)]);
  $('audit-verify-run').addEventListener('click', verifyChain);
  $('audit-form').addEventListener('submit', (e) => {
    e.preventDefault();
    loadAudit();
  });
  $('audit-form').addEventListener('reset', () => setTimeout(() => loadAudit(), 0));
  $('audit-next').addEventListener('click', () => loadAudit(Number($('audit-next').dataset.after) || 0));
  $('audit-first').addEventListener('click', () => loadAudit());
}

// ---------------------------------------------------------------- start

function start() {
  initKey();
  initTabs();
  initDetect();
  initCompare();
  initCollections();
  initConsent();
  initSearch();
  initAudit();
  const saved = restoreKey();
  if (saved) {
    signIn(saved, true).catch((err) => {
      signedIn(false);
      showError($('key-error'), err);
    });
  } else {
    signedIn(false);
    $('api-key').focus();
  }
}

start();
