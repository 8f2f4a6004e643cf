// Candor console: the single-page operator console. Uses only the v1 routes of
// docs/api.md; no inline scripts or styles (the server's CSP forbids them). This module
// holds the key prompt, the tabs and four pages; each other page is a module of its own
// (compare.js, audit.js, subjects.js, keys.js, retention.js, streams.js, libraries.js) exporting init().

import { api, setKey, restoreKey, clearKey, hasKey } from './api.js';
import { $, el, clear, show, showError, showOk, fmt, busy, plural, focusOn } from './dom.js';
import { qualityLevel, leftToRight, drawPhoto, fillQualityLegends } from './draw.js';
import {
  session, can, everyCollection, scopeText, setUnauthorizedHandler, attempt, invalid, when, requireFile,
  refreshCollections, onCollections, collectionName, findCollection, newestLoad,
} from './common.js';
import * as comparePage from './compare.js';
import * as auditPage from './audit.js';
import * as subjectsPage from './subjects.js';
import * as keysPage from './keys.js';
import * as retentionPage from './retention.js';
import * as streamsPage from './streams.js';
import * as librariesPage from './libraries.js';

// ---------------------------------------------------------------- key + tabs

const PAGES = ['detect', 'compare', 'collections', 'consent', 'subjects', 'search', 'audit', 'keys', 'retention', 'streams', 'libraries'];
const loaders = {}; // page -> function run when the page is shown

// What each page needs of the key (docs/api.md "Routes"); a page the key cannot use is not shown.
const PAGE_NEEDS = {
  detect: () => can('detect'),
  compare: () => can('compare'),
  collections: () => true,
  consent: () => can('consents') || can('enroll'),
  subjects: () => can('consents'),
  search: () => can('search'),
  audit: () => can('audit'),
  keys: () => can('admin'),
  retention: () => can('admin') && everyCollection(),
  streams: () => can('streams'),
  libraries: () => can('libraries'),
};

function visiblePages() {
  return PAGES.filter((p) => PAGE_NEEDS[p]());
}

function signedIn(on) {
  show($('key-panel'), !on);
  show($('app'), on);
  show(document.querySelector('[data-testid="session"]'), on);
}

// Shows the key's name and scope in the header, and hides what the key may not do.
function applyScope() {
  const key = session.key;
  $('session-key-name').textContent = key ? key.name : '';
  $('session-key-scope').textContent = scopeText(key);
  for (const p of PAGES) show($(`tab-${p}`), PAGE_NEEDS[p]());
  for (const node of document.querySelectorAll('[data-needs]')) {
    const [op, span] = node.dataset.needs.split(':');
    show(node, can(op) && (span !== 'all' || everyCollection()));
  }
}

async function signIn(key, remember) {
  setKey(key, remember);
  try {
    session.key = await api.keySelf();
    await refreshCollections();
  } catch (err) {
    clearKey();
    session.key = null;
    throw err;
  }
  applyScope();
  signedIn(true);
  selectPage(currentPage());
}

function currentPage() {
  const hash = location.hash.replace('#', '');
  const pages = visiblePages();
  return pages.includes(hash) ? hash : pages[0] || 'collections';
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
    const pages = visiblePages();
    const i = pages.indexOf(currentPage());
    let next = null;
    if (e.key === 'ArrowRight') next = pages[(i + 1) % pages.length];
    else if (e.key === 'ArrowLeft') next = pages[(i + pages.length - 1) % pages.length];
    else if (e.key === 'Home') next = pages[0];
    else if (e.key === 'End') next = pages[pages.length - 1];
    if (next) {
      e.preventDefault();
      selectPage(next, true);
    }
  });
  window.addEventListener('hashchange', () => {
    if (hasKey()) selectPage(currentPage());
  });
}

// Nothing one key saw stays on screen for the next: forms, results, messages and tables.
function resetPages() {
  const app = $('app');
  for (const form of app.querySelectorAll('form')) form.reset();
  for (const node of app.querySelectorAll('.result, .alert, #collection-detail, #erase-form, #newkey-secret')) node.hidden = true;
  for (const body of app.querySelectorAll('tbody, #enroll-outcomes, #search-faces')) clear(body);
  $('newkey-secret-value').textContent = '';
  librariesPage.reset();
}

function signOut(err) {
  clearKey();
  session.key = null;
  session.collections = [];
  resetPages();
  signedIn(false);
  showError($('key-error'), err || null);
  $('api-key').focus();
}

function initKey() {
  $('key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('api-key').value.trim();
    const errNode = $('key-error');
    if (!key) return invalid(errNode, 'Enter an API key.', $('api-key'));
    showError(errNode, null);
    try {
      await busy($('key-form'), null, '', () => signIn(key, $('api-key-remember').checked));
      $('api-key').value = '';
      focusOn($('main'));
    } catch (err) {
      showError(errNode, err);
      $('api-key').focus();
    }
  });
  $('sign-out').addEventListener('click', () => signOut(null));
  // Any 401 after sign-in sends the operator back to the key prompt.
  setUnauthorizedHandler((err) => signOut(err));
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
    show($('detect-no-face'), false);
    const data = await busy(form, $('detect-status'), 'Detecting…', () => attempt(errNode, () => api.detect(file, params)));
    if (!data) return;
    const faces = leftToRight(Array.isArray(data.faces) ? data.faces : []);
    await drawPhoto($('detect-canvas'), file, faces, { width: data.width, height: data.height });
    $('detect-canvas').setAttribute('aria-label', `${file.name} with ${plural(faces.length, 'face')} marked, numbered left to right`);
    $('detect-canvas').dataset.faces = String(faces.length);
    const body = $('detect-faces-body');
    clear(body);
    faces.forEach((f, i) => body.append(faceRow(f, i)));
    $('detect-summary').textContent =
      `${plural(faces.length, 'face')} found in ${file.name} (${data.width} × ${data.height} px), numbered left to right.`;
    show($('detect-faces-table'), faces.length > 0);
    // No face: say what to try rather than show an empty table.
    show($('detect-no-face'), faces.length === 0);
    show($('detect-result'), true);
    focusOn($('detect-summary'));
  });
}

// ---------------------------------------------------------------- collections

function renderCollectionsTable() {
  const body = $('collections-body');
  clear(body);
  for (const c of session.collections) {
    const name = collectionName(c);
    // The name opens the details: the first column, so it never scrolls out of view.
    const open = el('button', { type: 'button', class: 'link-button', 'aria-label': `Details of ${name}`, onclick: () => showCollectionDetail(name) }, name);
    body.append(el('tr', { dataset: { testid: 'collection-row', name } },
      el('td', { class: 'wrap' }, open),
      el('td', { class: 'wrap' }, c.purpose || '—'),
      el('td', { class: 'num' }, c.retention_days === undefined ? '—' : `${c.retention_days} d`),
      el('td', { class: 'num' }, fmt(c.match_threshold, 4)),
      el('td', {}, c.liveness_required ? 'required' : 'no'),
      el('td', { class: 'nowrap' }, when(c.created_at))));
  }
  show($('collections-empty'), session.collections.length === 0);
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
  const heading = el('h3', { tabindex: '-1' }, `Collection ${data.name || name}`);
  node.append(heading, facts);
  if (can('admin')) node.append(deleteCollectionForm(data.name || name, data.faces));
  show(node, true);
  heading.focus();
}

// Deleting a collection deletes its faces and consents: a reason and the typed name first.
function deleteCollectionForm(name, faces) {
  const errNode = el('div', { class: 'alert alert-error', role: 'alert', hidden: true, dataset: { testid: 'collection-delete-error' } });
  const reason = el('input', { id: 'collection-delete-reason', maxlength: '1024', dataset: { testid: 'collection-delete-reason' } });
  const confirmInput = el('input', { id: 'collection-delete-confirm', autocomplete: 'off', spellcheck: 'false', dataset: { testid: 'collection-delete-confirm' } });
  const form = el('form', { class: 'confirm', novalidate: true, dataset: { testid: 'collection-delete-form' } },
    el('h4', {}, 'Delete this collection'),
    el('p', { class: 'small' }, `Deletes ${plural(faces || 0, 'enrolled face')} and every consent of ${name} at once. It cannot be undone.`),
    el('label', { for: 'collection-delete-reason' }, 'Reason ', el('span', { class: 'req' }, '(required)')), reason,
    el('label', { for: 'collection-delete-confirm' }, 'Type the collection name to confirm'), confirmInput,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'btn btn-danger', dataset: { testid: 'collection-delete-submit' } }, 'Delete collection')),
    errNode);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!reason.value.trim()) return invalid(errNode, 'State the reason: it is recorded in the audit log.', reason);
    if (confirmInput.value !== name) return invalid(errNode, `Type ${name} exactly to confirm.`, confirmInput);
    const r = await busy(form, null, '', () => attempt(errNode, () => api.deleteCollection(name, reason.value.trim())));
    if (!r) return;
    show($('collection-detail'), false);
    await attempt($('collections-error'), refreshCollections);
    renderCollectionsTable();
    // Said once the list shows it: a reader (or a test) told "deleted" finds no row.
    showOk($('collections-ok'), `Collection ${name} deleted with ${plural(r.deleted_faces || 0, 'face')}.`);
    focusOn($('collections-ok'));
  });
  return form;
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
    if (!/^[a-z0-9_-]{1,64}$/.test(name)) return invalid(errNode, 'The name must be 1 to 64 of a-z, 0-9, _ and -.', $('coll-name'));
    if (!purpose) return invalid(errNode, 'State the purpose: consents must name it.', $('coll-purpose'));
    if (!Number.isInteger(retention) || retention < 1 || retention > 1095) {
      return invalid(errNode, 'Retention must be 1 to 1095 days.', $('coll-retention'));
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
    form.reset();
    await attempt($('collections-error'), refreshCollections);
    renderCollectionsTable();
    showOk($('collection-form-ok'), `Collection ${created.name || name} created.`);
    focusOn($('collection-form-ok'));
  });
}

// ---------------------------------------------------------------- consent + enroll

function updateConsentPurpose() {
  const c = findCollection($('consent-collection').value);
  const purpose = c && c.purpose ? c.purpose : '';
  $('consent-collection-purpose').textContent = purpose ? `Purpose: ${purpose}` : '';
  $('consent-form-purpose').textContent = purpose || '—';
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

function consentStatus(c, collection) {
  if (c.revoked_at) return ['revoked', 'bad'];
  if (c.expires_at && Date.parse(c.expires_at) < Date.now()) return ['expired', 'bad'];
  // A consent for another purpose (recorded before grants were checked) allows no enrollment.
  if (collection && collection.purpose && c.purpose !== collection.purpose) return ['other purpose', 'bad'];
  return ['valid', 'ok'];
}

const consentLoad = newestLoad();

async function loadConsents() {
  const current = consentLoad();
  const name = $('consent-collection').value;
  const body = $('consents-body');
  clear(body);
  if (!name || !can('consents')) {
    show($('consents-empty'), true);
    return;
  }
  const data = await attempt($('consents-error'), () => api.listConsents(name));
  if (!current() || !data) return;
  clear(body);
  const consents = Array.isArray(data.consents) ? data.consents : [];
  const collection = findCollection(name);
  for (const c of consents) {
    const [status, tone] = consentStatus(c, collection);
    const revoke = el('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Revoke the consent of ${c.subject}` }, 'Revoke');
    revoke.disabled = status === 'revoked';
    revoke.addEventListener('click', async () => {
      showOk($('consents-ok'), null);
      if (!window.confirm(`Revoke ${c.subject}'s consent? Their enrolled faces are deleted at once.`)) return;
      const r = await attempt($('consents-error'), () => api.revokeConsent(name, c.subject));
      if (r) {
        // The result goes beside the table it changed, not into the "Record a consent" card,
        // whose "recorded" message would now be stale.
        showOk($('consent-ok'), null);
        showOk($('consent-warning'), null);
        await loadConsents();
        showOk($('consents-ok'), `Consent of ${c.subject} revoked; ${plural(r.deleted_faces || 0, 'face')} deleted.`);
        focusOn($('consents-ok'));
      }
    });
    body.append(el('tr', { dataset: { testid: 'consent-row', subject: c.subject, status } },
      el('td', { class: 'wrap' }, el('strong', {}, c.subject)),
      el('td', { class: 'wrap' }, c.purpose || '—'),
      el('td', { class: 'wrap' }, c.collected_by || '—'),
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

// Feedback of the other forms that a change of collection makes stale.
function clearConsentFeedback() {
  for (const id of ['consent-error', 'enroll-error', 'consents-error']) showError($(id), null);
  for (const id of ['consent-ok', 'enroll-ok', 'consents-ok', 'consent-warning']) showOk($(id), null);
  clear($('enroll-outcomes'));
}

function initConsent() {
  loaders.consent = async () => {
    await attempt($('consents-error'), refreshCollections);
    loadConsents();
  };
  onCollections(updateConsentPurpose);
  $('consent-collection').addEventListener('change', () => {
    clearConsentFeedback();
    updateConsentPurpose();
    loadConsents();
  });
  $('consents-refresh').addEventListener('click', loadConsents);
  $('consent-evidence').addEventListener('change', () => {
    computeEvidenceDigest().catch((err) => showError($('consent-error'), { client: true, message: `Could not read the file: ${err.message}` }));
  });

  const consentForm = $('consent-form');
  consentForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('consent-error');
    showOk($('consent-ok'), null);
    showOk($('consent-warning'), null);
    const collection = $('consent-collection').value;
    const subject = $('consent-subject').value.trim();
    const collectedBy = $('consent-collected-by').value.trim();
    const target = findCollection(collection);
    if (!collection || !target) return invalid(errNode, 'Choose a collection (create one first).', $('consent-collection'));
    if (!subject) return invalid(errNode, 'Name the subject.', $('consent-subject'));
    const evidenceFile = $('consent-evidence').files[0];
    if (!evidenceFile) return invalid(errNode, 'Choose the signed consent form: its SHA-256 is recorded.', $('consent-evidence'));
    if (!$('consent-purpose-confirm').checked) {
      return invalid(errNode, `Confirm that the signed form names this collection's purpose ("${target.purpose}").`, $('consent-purpose-confirm'));
    }
    if (!collectedBy) return invalid(errNode, 'Say who collected the consent.', $('consent-collected-by'));
    const digest = evidenceDigest && evidenceDigest.file === evidenceFile ? evidenceDigest : await computeEvidenceDigest();
    if (!digest) return invalid(errNode, 'The consent form could not be read.', $('consent-evidence'));
    // Recorded for the collection's purpose, named explicitly: the server refuses any other.
    const consent = { subject, evidence_sha256: digest.hex, collected_by: collectedBy, purpose: target.purpose };
    const expires = $('consent-expires').value;
    if (expires) consent.expires_at = `${expires}T23:59:59Z`; // valid through that day (UTC)
    const saved = await busy(consentForm, null, '', () => attempt(errNode, () => api.grantConsent(collection, consent)));
    if (!saved) return;
    showOk($('consent-ok'), `Consent of ${saved.subject || subject} recorded for ${collection} (${saved.purpose || target.purpose}).`);
    if (Array.isArray(saved.warnings) && saved.warnings.length) showOk($('consent-warning'), `Warning: ${saved.warnings.join(' ')}`);
    // The enrollment refused for want of this consent is no longer the state of things.
    if ($('enroll-error').dataset.code === 'consent_required') showError($('enroll-error'), null);
    if (!$('enroll-subject').value) $('enroll-subject').value = subject;
    $('consent-purpose-confirm').checked = false;
    await loadConsents();
    focusOn($('consent-ok'));
  });

  const enrollForm = $('enroll-form');
  enrollForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('enroll-error');
    showOk($('enroll-ok'), null);
    clear($('enroll-outcomes'));
    const collection = $('consent-collection').value;
    const subject = $('enroll-subject').value.trim();
    const files = Array.from($('enroll-images').files || []);
    if (!collection) return invalid(errNode, 'Choose a collection (create one first).', $('consent-collection'));
    if (!subject) return invalid(errNode, 'Name the subject.', $('enroll-subject'));
    if (!files.length) return invalid(errNode, 'Choose at least one photo.', $('enroll-images'));
    const data = await busy(enrollForm, $('enroll-status'), 'Enrolling…',
      () => attempt(errNode, () => api.enroll(collection, subject, files)));
    if (!data) return;
    const outcomes = Array.isArray(data.images) ? data.images : [];
    for (const o of outcomes) $('enroll-outcomes').append(renderOutcome(o));
    const n = data.enrolled || 0;
    if (n > 0) {
      showOk($('enroll-ok'), `${plural(n, 'face')} enrolled for ${subject}.`);
      focusOn($('enroll-ok'));
    } else {
      showError(errNode, { code: 'not_enrolled', message: 'No face was enrolled: see the reasons below.' });
      focusOn(errNode);
    }
  });
}

// ---------------------------------------------------------------- search

let searchResult = null; // {file, faces: [{probe, matches}] left to right, selected}

function renderSearchFace(i) {
  const { faces, file } = searchResult;
  searchResult.selected = i;
  for (const b of $('search-faces').querySelectorAll('button')) b.setAttribute('aria-pressed', String(Number(b.dataset.face) === i));
  const matches = faces[i].matches || [];
  const body = $('search-body');
  clear(body);
  matches.forEach((m, rank) => {
    body.append(el('tr', { dataset: { testid: 'search-match-row', subject: m.subject, match: m.match ? 'yes' : 'no' }, class: m.match ? 'row-match' : '' },
      el('td', { class: 'num' }, String(rank + 1)),
      el('td', { class: 'wrap', dataset: { testid: 'search-match-subject' } }, el('strong', {}, m.subject)),
      el('td', { class: 'num', dataset: { testid: 'search-match-similarity' } }, fmt(m.similarity, 4)),
      el('td', { class: 'num' }, fmt(m.threshold, 4)),
      el('td', {}, el('span', { class: `badge ${m.match ? 'badge-ok' : 'badge-neutral'}` }, m.match ? 'match' : 'below threshold'))));
  });
  $('search-matches-caption').textContent = `Face ${i + 1}: ${matches.some((m) => m.match) ? 'matched' : 'no match'}`;
  show($('search-empty'), matches.length === 0);
  drawPhoto($('search-canvas'), file, faces.map((f) => f.probe), { highlight: i });
}

function initSearch() {
  loaders.search = () => attempt($('search-error'), refreshCollections);
  const form = $('search-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('search-error');
    const collection = $('search-collection').value;
    const reason = $('search-reason').value.trim();
    const top = Number($('search-top').value);
    if (!collection) return invalid(errNode, 'Choose a collection.', $('search-collection'));
    const file = $('search-image').files[0];
    if (!file) return invalid(errNode, 'Choose a probe photo.', $('search-image'));
    if (!reason) return invalid(errNode, 'State the reason for this search: it is recorded in the audit log.', $('search-reason'));
    if (!Number.isInteger(top) || top < 1 || top > 100) return invalid(errNode, 'Top k must be 1 to 100.', $('search-top'));
    show($('search-result'), false);
    const data = await busy(form, $('search-status'), 'Searching…',
      () => attempt(errNode, () => api.search(collection, file, reason, top)));
    if (!data) return;
    // The reason was for this search: cleared so that an old ticket number is not reused by mistake.
    $('search-reason').value = '';
    const faces = Array.isArray(data.faces) && data.faces.length
      ? leftToRight(data.faces, (f) => f.probe.box)
      : [{ probe: data.probe, matches: data.matches || [] }];
    searchResult = { file, faces, selected: 0 };
    const picker = $('search-faces');
    clear(picker);
    faces.forEach((f, i) => {
      const hit = (f.matches || []).find((m) => m.match);
      picker.append(el('button', {
        type: 'button', class: 'btn btn-small face-button', 'aria-pressed': 'false',
        dataset: { face: String(i), testid: 'search-face', match: hit ? 'yes' : 'no' },
        onclick: () => renderSearchFace(i),
      }, `Face ${i + 1}: ${hit ? hit.subject : 'no match'}`));
    });
    const matched = faces.filter((f) => (f.matches || []).some((m) => m.match)).length;
    $('search-summary').textContent =
      `${plural(faces.length, 'face')} in ${file.name}, each searched in ${collection} (${plural(faces.length, 'audited search', 'audited searches')}); ` +
      `${matched ? `${plural(matched, 'face')} matched` : 'no match'}. Reason recorded: "${reason}".`;
    const first = faces.findIndex((f) => (f.matches || []).some((m) => m.match));
    renderSearchFace(first >= 0 ? first : 0);
    show($('search-result'), true);
    focusOn($('search-summary'));
  });
}

// ---------------------------------------------------------------- start

// A table that may scroll sideways is a region the keyboard can reach and scroll (axe
// scrollable-region-focusable), named after its table's caption.
function labelScrollRegions() {
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    const caption = wrap.querySelector('caption');
    wrap.tabIndex = 0;
    wrap.setAttribute('role', 'region');
    wrap.setAttribute('aria-label', caption ? caption.textContent.trim() : 'Table');
  }
}

function start() {
  labelScrollRegions();
  fillQualityLegends();
  initKey();
  initTabs();
  initDetect();
  comparePage.init(loaders);
  initCollections();
  initConsent();
  initSearch();
  auditPage.init(loaders);
  subjectsPage.init(loaders);
  keysPage.init(loaders);
  retentionPage.init(loaders);
  streamsPage.init(loaders);
  librariesPage.init(loaders);
  const saved = restoreKey();
  if (saved) {
    signIn(saved, true).catch((err) => signOut(err));
  } else {
    signedIn(false);
    $('api-key').focus();
  }
}

start();
