// Candor console: the HTTP client for the v1 API (docs/api.md).
//
// The API key lives in this module's memory. It is copied to sessionStorage only
// when the operator asks for it (cleared when the tab closes); it is never put in
// localStorage or a cookie.

const SESSION_KEY = 'candor.apiKey';

let apiKey = null;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function setKey(key, remember) {
  apiKey = key;
  try {
    if (remember) sessionStorage.setItem(SESSION_KEY, key);
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // Storage may be disabled; the key then stays in memory only.
  }
}

export function restoreKey() {
  try {
    apiKey = sessionStorage.getItem(SESSION_KEY);
  } catch {
    apiKey = null;
  }
  return apiKey;
}

export function clearKey() {
  apiKey = null;
  try {
    sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // nothing to clear
  }
}

export function hasKey() {
  return Boolean(apiKey);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Sends a request; resolves with the parsed JSON body, rejects with an ApiError
// carrying the server's error code and message.
export async function request(method, path, { params, json, form } = {}) {
  const headers = { Accept: 'application/json' };
  if (apiKey) headers['X-API-Key'] = apiKey;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path + query(params), { method, headers, body, credentials: 'omit', cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'network_error', `The server could not be reached (${err.message}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {};
    const code = e.code || `http_${response.status}`;
    const message = e.message || `${response.status} ${response.statusText || 'error'}`.trim();
    throw new ApiError(response.status, code, message, response.headers.get('Retry-After'));
  }
  if (data === null && text) throw new ApiError(response.status, 'bad_response', 'The server sent a response that is not JSON.');
  return data;
}

const enc = encodeURIComponent;

export const api = {
  detect: (file, params) => {
    const f = new FormData();
    f.append('image', file, file.name);
    return request('POST', '/v1/detect', { form: f, params });
  },
  compare: (a, b, operatingPoint) => {
    const f = new FormData();
    f.append('a', a, a.name);
    f.append('b', b, b.name);
    return request('POST', '/v1/compare', { form: f, params: { operating_point: operatingPoint } });
  },
  listCollections: () => request('GET', '/v1/collections'),
  getCollection: (c) => request('GET', `/v1/collections/${enc(c)}`),
  createCollection: (spec) => request('POST', '/v1/collections', { json: spec }),
  listConsents: (c, subject) => request('GET', `/v1/collections/${enc(c)}/consents`, { params: { subject } }),
  grantConsent: (c, consent) => request('POST', `/v1/collections/${enc(c)}/consents`, { json: consent }),
  revokeConsent: (c, s) => request('DELETE', `/v1/collections/${enc(c)}/consents/${enc(s)}`),
  enroll: (c, s, files) => {
    const f = new FormData();
    for (const file of files) f.append('images', file, file.name);
    return request('POST', `/v1/collections/${enc(c)}/subjects/${enc(s)}/faces`, { form: f });
  },
  listSubjects: (c) => request('GET', `/v1/collections/${enc(c)}/subjects`),
  search: (c, file, reason, top) => {
    const f = new FormData();
    f.append('image', file, file.name);
    f.append('reason', reason);
    return request('POST', `/v1/collections/${enc(c)}/search`, { form: f, params: { top } });
  },
  deleteCollection: (c, reason) => request('DELETE', `/v1/collections/${enc(c)}`, { params: { reason } }),
  eraseSubject: (c, s, reason) => request('DELETE', `/v1/collections/${enc(c)}/subjects/${enc(s)}`, { params: { reason } }),
  exportSubject: (s) => request('GET', `/v1/subjects/${enc(s)}/export`),
  audit: (filters) => request('GET', '/v1/audit', { params: filters }),
  auditVerify: () => request('GET', '/v1/audit/verify'),
  keySelf: () => request('GET', '/v1/keys/self'),
  listKeys: () => request('GET', '/v1/keys'),
  createKey: (spec) => request('POST', '/v1/keys', { json: spec }),
  deleteKey: (name) => request('DELETE', `/v1/keys/${enc(name)}`),
  retentionRun: () => request('POST', '/v1/retention/run'),
};
