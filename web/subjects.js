// Candor console: the subjects of a collection, their export (an access request) and
// their erasure (with a typed confirmation and a reason, as the audit log records it).

import { api } from './api.js';
import { $, el, clear, show, showOk, showError, fmt, busy, plural, focusOn } from './dom.js';
import { attempt, invalid, when, can, everyCollection, download, newestLoad } from './common.js';

let erasing = null; // {collection, subject, opener}

// subject -> ISO time of the newest search that matched them (from the audit log, when the key may read it).
async function lastMatched(collection) {
  if (!can('audit')) return null;
  try {
    const data = await api.audit({ collection, operation: 'search', order: 'newest', limit: 1000 });
    const seen = new Map();
    for (const e of data.entries || []) {
      for (const s of e.subjects || []) if (!seen.has(s)) seen.set(s, e.time);
    }
    return seen;
  } catch {
    return null; // the column then says "not available"
  }
}

function consentBadge(s) {
  if (s.consent_active) return el('span', { class: 'badge badge-ok' }, 'valid');
  return el('span', { class: 'badge badge-bad' }, 'none');
}

const subjectLoad = newestLoad();

async function loadSubjects() {
  const current = subjectLoad();
  const collection = $('subjects-collection').value;
  const body = $('subjects-body');
  clear(body);
  if (!collection) {
    show($('subjects-empty'), true);
    return;
  }
  const [data, seen] = await Promise.all([
    attempt($('subjects-error'), () => api.listSubjects(collection)),
    lastMatched(collection),
  ]);
  if (!current() || !data) return;
  clear(body);
  const subjects = Array.isArray(data.subjects) ? data.subjects : [];
  for (const s of subjects) {
    const actions = el('div', { class: 'row-actions' });
    if (can('audit') && everyCollection()) {
      actions.append(el('button', {
        type: 'button', class: 'btn btn-small', dataset: { testid: 'subject-export' },
        'aria-label': `Export the data of ${s.subject}`, onclick: () => exportSubject(s.subject),
      }, 'Export'));
    }
    actions.append(el('button', {
      type: 'button', class: 'btn btn-small btn-danger', dataset: { testid: 'subject-erase' },
      'aria-label': `Erase ${s.subject}`, onclick: (e) => askErase(collection, s.subject, e.currentTarget),
    }, 'Erase'));
    const last = seen ? (seen.get(s.subject) ? when(seen.get(s.subject)) : 'never') : 'not available';
    body.append(el('tr', { dataset: { testid: 'subject-row', subject: s.subject } },
      el('td', { class: 'wrap' }, el('strong', {}, s.subject)),
      el('td', { class: 'num' }, fmt(s.faces)),
      el('td', {}, consentBadge(s)),
      el('td', { class: 'nowrap' }, s.consent_expires_at ? when(s.consent_expires_at) : s.consent_active ? 'never' : '—'),
      el('td', { class: 'nowrap', dataset: { testid: 'subject-last-matched' } }, last),
      el('td', {}, actions)));
  }
  show($('subjects-empty'), subjects.length === 0);
}

async function exportSubject(subject) {
  showOk($('subjects-ok'), null);
  const data = await attempt($('subjects-error'), () => api.exportSubject(subject));
  if (!data) return;
  const file = `${subject.replace(/[^A-Za-z0-9._-]/g, '_')}-export.json`;
  download(file, JSON.stringify(data, null, 2));
  const n = (data.faces || []).length;
  showOk($('subjects-ok'), `Exported the data of ${subject} (${plural(n, 'face')}, ${plural((data.consents || []).length, 'consent')}, ` +
    `${plural((data.audit || []).length, 'audit entry', 'audit entries')}) to ${file}. The export is recorded in the audit log.`);
}

function askErase(collection, subject, opener) {
  erasing = { collection, subject, opener };
  $('erase-subject').textContent = subject;
  $('erase-collection').textContent = collection;
  $('erase-form').reset();
  showError($('erase-error'), null);
  show($('erase-form'), true);
  $('erase-reason').focus();
}

function closeErase() {
  const opener = erasing && erasing.opener;
  erasing = null;
  show($('erase-form'), false);
  if (opener && opener.isConnected) opener.focus();
}

export function init(loaders) {
  loaders.subjects = loadSubjects;
  $('subjects-collection').addEventListener('change', () => {
    showOk($('subjects-ok'), null);
    closeErase();
    loadSubjects();
  });
  $('subjects-refresh').addEventListener('click', loadSubjects);
  $('erase-cancel').addEventListener('click', closeErase);
  $('erase-form').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeErase();
  });
  $('erase-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!erasing) return;
    const errNode = $('erase-error');
    const reason = $('erase-reason').value.trim();
    if (!reason) return invalid(errNode, 'State the reason for the erasure: it is recorded in the audit log.', $('erase-reason'));
    if ($('erase-confirm').value !== erasing.subject) {
      return invalid(errNode, `Type ${erasing.subject} exactly to confirm.`, $('erase-confirm'));
    }
    const { collection, subject } = erasing;
    const r = await busy($('erase-form'), null, '', () => attempt(errNode, () => api.eraseSubject(collection, subject, reason)));
    if (!r) return;
    closeErase();
    showOk($('subjects-ok'), `${subject} erased from ${collection}: ${plural(r.deleted_faces || 0, 'face')} deleted.`);
    await loadSubjects();
    focusOn($('subjects-ok'));
  });
}
