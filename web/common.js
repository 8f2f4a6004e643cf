// Candor console: what every page shares: the signed-in key and what it may do, the
// collections in its scope, and how an API call reports its failure (attempt()).

import { api } from './api.js';
import { el, clear, showError, focusOn } from './dom.js';

// ---------------------------------------------------------------- the key's scope

// The calling key as GET /v1/keys/self describes it: {name, collections, operations, ...}.
export const session = { key: null, collections: [] };

// May the key do `operation`? (admin implies every operation, on the key's collections.)
export function can(operation) {
  const ops = (session.key && session.key.operations) || [];
  return ops.includes(operation) || ops.includes('admin');
}

// Does the key reach every collection ("*")? Routes over all collections need it.
export function everyCollection() {
  return Boolean(session.key && (session.key.collections || []).includes('*'));
}

// One line for the header: "search, audit on lobby".
export function scopeText(key) {
  if (!key) return '';
  const ops = (key.operations || []).join(', ') || 'nothing';
  const colls = (key.collections || []).includes('*') ? 'every collection' : (key.collections || []).join(', ');
  return `may ${ops} on ${colls}`;
}

// ---------------------------------------------------------------- failures

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// Runs an API call for a page: errors go to `errNode` (and focus moves there; a 401 signs out).
export async function attempt(errNode, work) {
  showError(errNode, null);
  try {
    return await work();
  } catch (err) {
    showError(errNode, err);
    focusOn(errNode);
    if (err && err.status === 401) onUnauthorized(err);
    return undefined;
  }
}

// A check the console makes before sending anything: says so, marks the field, focuses it.
export function invalid(errNode, message, input) {
  showError(errNode, { client: true, message });
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.addEventListener('input', () => input.removeAttribute('aria-invalid'), { once: true });
    input.addEventListener('change', () => input.removeAttribute('aria-invalid'), { once: true });
    input.focus();
  }
}

// The chosen file of a file input, or a message saying to choose one.
export function requireFile(input, errNode, what) {
  const file = input.files && input.files[0];
  if (!file) invalid(errNode, `Choose ${what}.`, input);
  return file;
}

// "2024-05-01T12:00:00.123Z" -> "2024-05-01 12:00:00" (UTC), the full value in a tooltip.
export function when(iso) {
  if (!iso) return '—';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(String(iso));
  return el('time', { datetime: iso, title: iso }, m ? `${m[1]} ${m[2]}` : String(iso));
}

// ---------------------------------------------------------------- collections in scope

const collectionListeners = [];
export function onCollections(fn) {
  collectionListeners.push(fn);
}

export function collectionName(c) {
  return typeof c === 'string' ? c : c.name;
}

export function findCollection(name) {
  return session.collections.find((c) => collectionName(c) === name);
}

export async function refreshCollections() {
  const data = await api.listCollections();
  session.collections = Array.isArray(data.collections) ? data.collections : [];
  renderCollectionSelects();
  for (const fn of collectionListeners) fn(session.collections);
  return session.collections;
}

function renderCollectionSelects() {
  for (const select of document.querySelectorAll('.collection-select')) {
    const keep = select.value;
    clear(select);
    if (!session.collections.length) select.append(el('option', { value: '' }, 'No collection'));
    for (const c of session.collections) select.append(el('option', { value: collectionName(c) }, collectionName(c)));
    if (keep && findCollection(keep)) select.value = keep;
  }
}

// For a list that loads on several triggers (its tab opened, its selector changed, an
// action's reload): each load calls the returned function at its start and gets a check
// that says, after each await, whether it is still the newest load. An older load that
// finishes later must not add its rows beside the newer one's (the subjects list showed a
// subject twice when the tab's load and the selector's overlapped) or show another
// collection's under the one now selected.
export function newestLoad() {
  let started = 0;
  return () => {
    const mine = ++started;
    return () => mine === started;
  };
}

// Triggers a download of `text` as `filename` (a subject export): a blob URL, no inline script.
export function download(filename, text, type = 'application/json') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
