// Candor console: the audit log page. Newest first, filtered by operation, subject,
// collection, key and time; each entry says what happened (a search's outcome per face,
// the subject matched or none, the key a key_create made) rather than only "ok".

import { api } from './api.js';
import { $, el, clear, show, fmt, busy, plural } from './dom.js';
import { attempt, invalid, when, can, everyCollection, session, onCollections, collectionName } from './common.js';

const OPERATIONS = ['search', 'enroll', 'grant_consent', 'revoke_consent', 'erase_subject', 'export_subject',
  'create_collection', 'delete_collection', 'retention_run', 'retention_purge', 'key_create', 'key_delete'];

let pages = []; // before_seq of each page shown so far: [undefined, s1, s2, ...]

function badge(text, tone) {
  return el('span', { class: `badge badge-wrap badge-${tone}` }, text);
}

function score(v) {
  return typeof v === 'number' ? v.toFixed(4) : fmt(v);
}

// What an entry's details say, as a short phrase and a tone, for the "Outcome" column.
export function outcome(e) {
  const d = e.details && typeof e.details === 'object' ? e.details : {};
  if (typeof e.result === 'string' && e.result !== 'ok') {
    return { text: `Refused: ${e.result.replace(/^refused: /, '')}`, tone: 'bad', kind: 'refused' };
  }
  const subjects = Array.isArray(e.subjects) ? e.subjects : [];
  switch (e.operation) {
    case 'search': {
      if (d.verify) {
        return d.match
          ? { text: `Verified: same person (similarity ${score(d.score)})`, tone: 'ok', kind: 'match' }
          : { text: `Not verified: no match (similarity ${score(d.score)})`, tone: 'neutral', kind: 'no-match' };
      }
      const results = Array.isArray(d.results) ? d.results : [];
      const hits = results.filter((r) => r.match);
      const where = Array.isArray(d.face_box) ? ` (face at ${Math.round(d.face_box[0])}, ${Math.round(d.face_box[1])})` : '';
      if (!hits.length) {
        const shown = results.length ? `; ${plural(results.length, 'candidate')} below the threshold shown` : '';
        return { text: `No match${where}${shown}`, tone: 'neutral', kind: 'no-match' };
      }
      const names = subjects.length ? subjects.join(', ') : plural(hits.length, 'erased subject');
      return { text: `Match: ${names} (similarity ${hits.map((h) => score(h.score)).join(', ')})${where}`, tone: 'ok', kind: 'match' };
    }
    case 'key_create': {
      const scopes = d.scopes || {};
      const ops = Array.isArray(scopes.operations) ? scopes.operations.join(', ') : '';
      const colls = Array.isArray(scopes.collections) ? scopes.collections.join(', ') : '';
      return { text: `Key "${d.name || '?'}" created${ops ? `: ${ops}` : ''}${colls ? ` on ${colls}` : ''}`, tone: 'neutral', kind: 'key' };
    }
    case 'key_delete':
      return { text: `Key "${d.name || '?'}" deleted`, tone: 'neutral', kind: 'key' };
    case 'enroll':
      return { text: `${plural((d.face_ids || []).length || d.faces || 0, 'face')} enrolled`, tone: 'ok', kind: 'ok' };
    case 'grant_consent':
      return { text: `Consent recorded${d.expires_at ? `, expires ${new Date(d.expires_at).toISOString().slice(0, 10)}` : ''}`, tone: 'ok', kind: 'ok' };
    case 'revoke_consent':
      return { text: `Consent revoked; ${plural((d.face_ids || []).length, 'face')} deleted`, tone: 'neutral', kind: 'ok' };
    case 'erase_subject':
      return { text: `Erased; ${plural((d.face_ids || []).length, 'face')} deleted`, tone: 'neutral', kind: 'ok' };
    case 'delete_collection':
      return { text: `Deleted with ${plural(d.faces_deleted || 0, 'face')} and ${plural(d.consents_deleted || 0, 'consent')}`, tone: 'neutral', kind: 'ok' };
    default:
      return { text: 'Done', tone: 'ok', kind: 'ok' };
  }
}

function detailsCell(e) {
  const d = e.details && typeof e.details === 'object' ? e.details : {};
  if (!Object.keys(d).length) return el('td', {}, '—');
  return el('td', { class: 'wrap' },
    el('details', {}, el('summary', {}, 'Details'), el('pre', { class: 'details-json' }, JSON.stringify(d, null, 1))));
}

function subjectsCell(e) {
  if (Array.isArray(e.subjects) && e.subjects.length) return e.subjects.join(', ');
  if (Array.isArray(e.subject_tags) && e.subject_tags.length) return `${plural(e.subject_tags.length, 'subject')} (erased)`;
  if (e.operation === 'search') return 'none matched';
  return '—';
}

function actorCell(actor) {
  if (typeof actor === 'string' && actor.startsWith('key:')) return el('span', {}, 'key ', el('strong', {}, actor.slice(4)));
  return actor || '—';
}

function filters(before) {
  return {
    order: 'newest',
    before_seq: before || undefined,
    operation: $('audit-operation').value,
    subject: $('audit-subject').value.trim(),
    collection: $('audit-collection').value.trim(),
    key: $('audit-key').value.trim(),
    since: $('audit-since').value ? `${$('audit-since').value}:00Z` : undefined,
    until: $('audit-until').value ? `${$('audit-until').value}:00Z` : undefined,
    limit: $('audit-limit').value,
  };
}

async function loadAudit(page = 0) {
  const f = filters(pages[page]);
  if (f.since && f.until && f.since >= f.until) {
    return invalid($('audit-error'), 'The end of the time range must be after its start.', $('audit-until'));
  }
  // A key scoped to several collections must name one (the API says so; the console asks first).
  if (!everyCollection() && !f.collection && session.key && session.key.collections.length > 1) {
    return invalid($('audit-error'), 'This key sees several collections: choose one.', $('audit-collection'));
  }
  const data = await busy($('audit-form'), $('audit-status'), 'Loading…', () => attempt($('audit-error'), () => api.audit(f)));
  if (!data) return;
  const body = $('audit-body');
  clear(body);
  const entries = Array.isArray(data.entries) ? data.entries : [];
  for (const e of entries) {
    const o = outcome(e);
    body.append(el('tr', { dataset: { testid: 'audit-row', operation: e.operation || '', seq: String(e.seq ?? ''), outcome: o.kind } },
      el('td', { class: 'num' }, fmt(e.seq)),
      el('td', { class: 'nowrap' }, when(e.time)),
      el('td', { dataset: { testid: 'audit-operation-cell' } }, e.operation || '—'),
      el('td', { class: 'wrap', dataset: { testid: 'audit-outcome' } }, badge(o.text, o.tone)),
      el('td', { class: 'wrap', dataset: { testid: 'audit-subjects' } }, subjectsCell(e)),
      el('td', { class: 'nowrap' }, e.collection || '—'),
      el('td', { dataset: { testid: 'audit-actor' } }, actorCell(e.actor)),
      el('td', { class: 'wrap' }, e.reason || ''),
      detailsCell(e)));
  }
  show($('audit-empty'), entries.length === 0);
  const limit = Number(f.limit) || 100;
  const last = entries.length ? entries[entries.length - 1].seq : null;
  pages = pages.slice(0, page + 1);
  if (entries.length >= limit && last !== null) pages.push(last);
  show($('audit-older'), pages.length > page + 1);
  show($('audit-newer'), page > 0);
  $('audit-older').dataset.page = String(page + 1);
  $('audit-newer').dataset.page = String(page - 1);
  $('audit-page-info').textContent = entries.length
    ? `Entries ${fmt(entries[0].seq)} down to ${fmt(last)}, newest first.` : '';
}

async function verifyChain() {
  const box = $('audit-verify');
  if (!everyCollection()) {
    box.dataset.state = 'unknown';
    $('audit-verify-status').textContent = 'Chain not checked';
    $('audit-verify-detail').textContent = 'Verifying the whole chain needs a key over every collection.';
    $('audit-verify-run').hidden = true;
    return;
  }
  $('audit-verify-run').hidden = false;
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
  $('audit-verify-detail').textContent =
    `${plural(data.entries || 0, 'entry', 'entries')} checked at ${new Date().toISOString().slice(11, 19)} UTC; head hash ${head}`;
  $('audit-verify-detail').title = data.head_hash || '';
  for (const issue of Array.isArray(data.issues) ? data.issues : []) {
    issues.append(el('li', {}, `seq ${issue.seq}: ${issue.kind} — ${issue.message || ''}`));
  }
}

export function init(loaders) {
  const select = $('audit-operation');
  for (const op of OPERATIONS) select.append(el('option', { value: op }, op));
  onCollections((list) => {
    const dl = $('audit-collection-list');
    clear(dl);
    for (const c of list) dl.append(el('option', { value: collectionName(c) }));
    if (!everyCollection() && list.length === 1 && !$('audit-collection').value) $('audit-collection').value = collectionName(list[0]);
  });
  loaders.audit = async () => {
    if (can('admin')) {
      const keys = await api.listKeys().catch(() => null);
      const dl = $('audit-key-list');
      clear(dl);
      for (const k of (keys && keys.keys) || []) dl.append(el('option', { value: k.name }));
    }
    pages = [undefined];
    await Promise.all([verifyChain(), loadAudit(0)]);
  };
  $('audit-verify-run').addEventListener('click', verifyChain);
  $('audit-form').addEventListener('submit', (e) => {
    e.preventDefault();
    pages = [undefined];
    loadAudit(0);
  });
  $('audit-form').addEventListener('reset', () => setTimeout(() => {
    if ($('page-audit').hidden) return; // a reset on sign-out: nothing to load
    pages = [undefined];
    loadAudit(0);
  }, 0));
  $('audit-older').addEventListener('click', () => loadAudit(Number($('audit-older').dataset.page)));
  $('audit-newer').addEventListener('click', () => loadAudit(Math.max(0, Number($('audit-newer').dataset.page))));
}
