// Candor console: API keys (admin). A new key's secret is shown once, in this page only;
// revoking a key asks first. The server applies the delegation rules (docs/api.md "Scopes").

import { api } from './api.js';
import { $, el, clear, show, showOk, showError, fmt, busy, focusOn } from './dom.js';
import { attempt, invalid, when, session, everyCollection, collectionName } from './common.js';

export const OPERATIONS = ['detect', 'compare', 'enroll', 'search', 'consents', 'audit', 'metrics', 'candidates', 'streams', 'libraries', 'admin'];

async function loadKeys() {
  const data = await attempt($('keys-error'), api.listKeys);
  const body = $('keys-body');
  clear(body);
  if (!data) return;
  for (const k of data.keys || []) {
    const self = session.key && k.name === session.key.name;
    const revoke = el('button', {
      type: 'button', class: 'btn btn-small btn-danger', dataset: { testid: 'key-revoke' },
      'aria-label': `Revoke the key ${k.name}`, onclick: () => revokeKey(k.name),
    }, 'Revoke');
    revoke.disabled = self; // a key does not revoke itself from the console it is signed in with
    if (self) revoke.title = 'The key you are signed in with';
    // Revoke sits under the name, in the first column, so a wide table never hides it.
    body.append(el('tr', { dataset: { testid: 'key-row', name: k.name } },
      el('td', { class: 'wrap' }, el('strong', {}, k.name), self ? ' (this session)' : '', el('div', { class: 'row-actions' }, revoke)),
      el('td', { class: 'wrap' }, (k.operations || []).join(', ')),
      el('td', { class: 'wrap' }, (k.collections || []).join(', ')),
      el('td', { class: 'num' }, `${fmt(k.searches_per_minute)} / ${fmt(k.searches_per_day)}`),
      el('td', { class: 'nowrap' }, when(k.created_at))));
  }
}

async function revokeKey(name) {
  showOk($('keys-ok'), null);
  if (!window.confirm(`Revoke the key ${name}? Clients using it are refused within seconds.`)) return;
  const r = await attempt($('keys-error'), () => api.deleteKey(name));
  if (!r) return;
  await loadKeys();
  showOk($('keys-ok'), `Key ${name} revoked.`);
  focusOn($('keys-ok'));
}

function renderOperationChecks() {
  const box = $('newkey-ops');
  clear(box);
  const mine = (session.key && session.key.operations) || [];
  for (const op of OPERATIONS) {
    // An admin scoped to some collections may hand out any operation on them; else only its own.
    const allowed = mine.includes('admin') || mine.includes(op);
    const id = `newkey-op-${op}`;
    box.append(el('label', { class: 'check', for: id },
      el('input', { type: 'checkbox', id, value: op, disabled: !allowed, dataset: { testid: `newkey-op-${op}` } }), op));
  }
  const colls = $('newkey-collections');
  if (!colls.value) {
    colls.value = everyCollection() ? '' : ((session.key && session.key.collections) || []).join(', ');
  }
  colls.placeholder = everyCollection() ? 'e.g. lobby, staff or *' : session.collections.map(collectionName).join(', ');
}

export function init(loaders) {
  loaders.keys = () => {
    renderOperationChecks();
    return loadKeys();
  };
  $('keys-refresh').addEventListener('click', loadKeys);
  $('newkey-done').addEventListener('click', () => {
    $('newkey-secret-value').textContent = '';
    show($('newkey-secret'), false);
    $('newkey-name').focus();
  });
  $('newkey-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('newkey-secret-value').textContent);
      $('newkey-copy').textContent = 'Copied';
    } catch {
      $('newkey-copy').textContent = 'Select and copy it by hand';
    }
  });
  const form = $('key-create-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('newkey-error');
    const name = $('newkey-name').value.trim();
    const operations = [...$('newkey-ops').querySelectorAll('input:checked')].map((i) => i.value);
    const collections = $('newkey-collections').value.split(',').map((s) => s.trim()).filter(Boolean);
    const perMinute = Number($('newkey-per-minute').value);
    const perDay = Number($('newkey-per-day').value);
    if (!name) return invalid(errNode, 'Name the key (e.g. the client or gate that will use it).', $('newkey-name'));
    if (!operations.length) return invalid(errNode, 'Tick at least one operation.', $('newkey-ops').querySelector('input:not([disabled])'));
    if (!collections.length) return invalid(errNode, 'Name its collections, or * for every collection.', $('newkey-collections'));
    if (!Number.isInteger(perMinute) || perMinute < 0) return invalid(errNode, 'Searches per minute: a whole number.', $('newkey-per-minute'));
    if (!Number.isInteger(perDay) || perDay < 0) return invalid(errNode, 'Searches per day: a whole number.', $('newkey-per-day'));
    show($('newkey-secret'), false);
    const spec = { name, operations, collections, searches_per_minute: perMinute, searches_per_day: perDay };
    const created = await busy(form, null, '', () => attempt(errNode, () => api.createKey(spec)));
    if (!created) return;
    showError(errNode, null);
    $('newkey-secret-value').textContent = created.key;
    $('newkey-copy').textContent = 'Copy';
    show($('newkey-secret'), true);
    $('newkey-name').value = '';
    for (const box of $('newkey-ops').querySelectorAll('input')) box.checked = false;
    focusOn($('newkey-secret'));
    await loadKeys();
  });
}
