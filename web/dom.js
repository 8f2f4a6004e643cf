// Candor console: small DOM helpers. Text is always set with textContent, never
// parsed as HTML, so names and messages from the server cannot inject markup.

export const $ = (id) => document.getElementById(id);

// el('td', {class: 'num', dataset: {testid: 'x'}}, 'text', childNode, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

// "3 faces", "1 face": never "face(s)".
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

// Sizes as an operator reads them: 20971520 -> "20 MB" (MiB, as the server's limits are set).
export function megabytes(bytes) {
  const mb = bytes / (1024 * 1024);
  if (mb >= 1) return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

// A server message with byte counts in MB: "the image is 25165824 bytes; the limit is
// 20971520" -> "the image is 24 MB; the limit is 20 MB", "over the limit of 20971520 bytes".
export function readableSizes(text) {
  const s = String(text);
  if (!/\d{5,} bytes/.test(s)) return s;
  return s.replace(/\b(\d{5,})( bytes)?\b/g, (_, n) => megabytes(Number(n)));
}

// Shows an error (an ApiError or any Error) in an alert box: "title message (code)".
// A check the console made itself ({client: true}) says so, with no code: nothing was sent.
export function showError(node, err) {
  clear(node);
  if (!err) {
    node.hidden = true;
    delete node.dataset.code;
    return;
  }
  const code = err.client ? 'form' : err.code || 'error';
  node.dataset.code = code;
  const title = el('strong', { class: 'alert-title' }, err.client ? 'Check the form.' : errorTitle(err));
  const msg = el('span', { class: 'alert-message', dataset: { testid: 'error-message' } }, readableSizes(err.message || String(err)));
  node.append(title, ' ', msg);
  if (!err.client) node.append(' ', el('code', { class: 'alert-code', dataset: { testid: 'error-code' } }, code));
  if (err.retryAfter) node.append(el('span', { class: 'alert-extra' }, ` Retry after ${err.retryAfter} s.`));
  node.hidden = false;
}

function errorTitle(err) {
  switch (err.code) {
    case 'image_too_large': return 'Too large.';
    case 'consent_required': return 'Refused: no valid consent.';
    case 'unauthenticated': return 'Not signed in.';
    case 'permission_denied': return 'Not allowed.';
    case 'not_found': return 'Not found.';
    case 'already_exists': return 'Already exists.';
    case 'no_face': return 'No face found.';
    case 'quality_too_low': return 'Face quality too low.';
    case 'rate_limited': return 'Too many requests.';
    case 'overloaded': return 'Server busy.';
    case 'network_error': return 'Network error.';
    default: return err.status >= 500 ? 'Server error.' : 'Request refused.';
  }
}

export function showOk(node, text) {
  clear(node);
  if (!text) {
    node.hidden = true;
    return;
  }
  node.textContent = text;
  node.hidden = false;
}

// Moves focus to a result (or an error) after a submit, so that a keyboard or screen
// reader user lands on what happened; the node gets tabindex=-1 to take focus.
export function focusOn(node) {
  if (!node || node.hidden) return;
  if (!node.hasAttribute('tabindex')) node.tabIndex = -1;
  node.focus({ preventScroll: false });
}

export function fmt(v, digits = 3) {
  if (v === undefined || v === null || v === '') return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}

// Disables a form's submit button and sets a status text while `work` runs.
export async function busy(form, statusNode, text, work) {
  const button = form.querySelector('button[type="submit"]');
  // Disabling the focused button drops focus to <body>: it is given back afterwards, so
  // a keyboard user is not sent to the top of the page by every submit.
  const focused = document.activeElement;
  if (button) button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  if (statusNode) statusNode.textContent = text;
  try {
    return await work();
  } finally {
    if (button) button.disabled = false;
    form.removeAttribute('aria-busy');
    if (statusNode) statusNode.textContent = '';
    if (focused && focused.isConnected && (document.activeElement === document.body || !document.activeElement)) focused.focus();
  }
}
