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
  listStreams: () => request('GET', '/v1/streams'),
  getStream: (id) => request('GET', `/v1/streams/${enc(id)}`),
  createStream: (spec) => request('POST', '/v1/streams', { json: spec }),
  startStream: (id) => request('POST', `/v1/streams/${enc(id)}/start`),
  stopStream: (id) => request('POST', `/v1/streams/${enc(id)}/stop`),
  deleteStream: (id) => request('DELETE', `/v1/streams/${enc(id)}`),
  listLibraries: () => request('GET', '/v1/libraries'),
  libraryGroups: (lib, all) => request('GET', `/v1/libraries/${enc(lib)}/groups`, { params: { all: all ? 'true' : '' } }),
  nameLibraryGroup: (lib, group, name) => request('POST', `/v1/libraries/${enc(lib)}/groups/${enc(group)}/name`, { json: { name } }),
  mergeLibraryGroups: (lib, group, other) => request('POST', `/v1/libraries/${enc(lib)}/groups/${enc(group)}/merge`, { json: { with: other } }),
  hideLibraryGroup: (lib, group, hidden) => request('POST', `/v1/libraries/${enc(lib)}/groups/${enc(group)}/hide`, { json: { hidden } }),
};

// A face thumbnail of a library as a Blob (an <img> cannot send the key header).
export async function thumbnail(lib, face) {
  const headers = { Accept: 'image/jpeg' };
  if (apiKey) headers['X-API-Key'] = apiKey;
  const response = await fetch(`/v1/libraries/${enc(lib)}/faces/${enc(face)}/thumbnail`, { headers, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, `${response.status}`);
  return response.blob();
}

// A stream's Server-Sent Events, read through fetch (EventSource cannot send the key
// header). Calls onEvent with each parsed `data:` object until `signal` aborts or the
// server ends the response; resolves then, rejects with an ApiError on a refusal.
export async function streamEvents(id, signal, onEvent) {
  const headers = { Accept: 'text/event-stream' };
  if (apiKey) headers['X-API-Key'] = apiKey;
  const response = await fetch(`/v1/streams/${enc(id)}/events`, { headers, signal, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) {
    let e = {};
    try {
      e = (await response.json()).error || {};
    } catch {
      e = {};
    }
    throw new ApiError(response.status, e.code || `http_${response.status}`, e.message || `${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split('\n')) {
        if (!line.startsWith('data: ')) continue; // comments are heartbeats
        try {
          onEvent(JSON.parse(line.slice(6)));
        } catch {
          // a line that is not JSON is not an event
        }
      }
    }
  }
}
