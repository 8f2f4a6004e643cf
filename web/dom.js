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

// Shows an error (an ApiError or any Error) in an alert box: "message (code)".
export function showError(node, err) {
  clear(node);
  if (!err) {
    node.hidden = true;
    return;
  }
  const code = err.code || 'error';
  node.dataset.code = code;
  const title = el('strong', { class: 'alert-title' }, errorTitle(err));
  const msg = el('span', { class: 'alert-message', dataset: { testid: 'error-message' } }, err.message || String(err));
  const codeNode = el('code', { class: 'alert-code', dataset: { testid: 'error-code' } }, code);
  node.append(title, ' ', msg, ' ', codeNode);
  if (err.retryAfter) node.append(el('span', { class: 'alert-extra' }, ` Retry after ${err.retryAfter} s.`));
  node.hidden = false;
}

function errorTitle(err) {
  switch (err.code) {
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

export function fmt(v, digits = 3) {
  if (v === undefined || v === null || v === '') return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}

// Disables a form's submit button and sets a status text while `work` runs.
export async function busy(form, statusNode, text, work) {
  const button = form.querySelector('button[type="submit"]');
  if (button) button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  if (statusNode) statusNode.textContent = text;
  try {
    return await work();
  } finally {
    if (button) button.disabled = false;
    form.removeAttribute('aria-busy');
    if (statusNode) statusNode.textContent = '';
  }
}
