// A tiny stand-in for `candor serve`, for developing the console without the real
// server: it serves web/ with the real server's CSP and answers the docs/api.md
// routes with canned data (detect always finds the three faces of sample1.jpg).
// The e2e tests run against the real server; this is only a development aid:
//   node tests/e2e/mock-server.js [port]      (prints the URL and an admin key)

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');
const KEY = 'cnd_mockmockmockmockmockmockmockmockmockmockmock';
const CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

const face = (x, y, w, h, level = 'high') => ({
  box: { x, y, width: w, height: h },
  score: 0.99,
  landmarks: {
    left_eye: [x + w * 0.3, y + h * 0.4], right_eye: [x + w * 0.7, y + h * 0.4], nose_tip: [x + w * 0.5, y + h * 0.6],
    mouth_left: [x + w * 0.35, y + h * 0.8], mouth_right: [x + w * 0.65, y + h * 0.8],
  },
  quality: { level, face_size_px: w, sharpness: 0.8, brightness: 0.5, dark_clipped: 0, bright_clipped: 0, pose: { yaw: 2, pitch: -3, roll: 1 } },
});
const FACES = [face(413, 352, 190, 242), face(823, 423, 216, 228, 'medium'), face(1456, 220, 234, 214, 'low')];

const collections = new Map(); // name -> {info, consents: Map, faces: Map subject->n}
const audit = [];
let prev = '0'.repeat(64);
function log(operation, collection, subjects, reason, result = 'ok') {
  const e = { seq: audit.length + 1, time: new Date().toISOString(), actor: 'key:admin', operation, collection, subjects, reason, result, details: {} };
  e.hash = createHash('sha256').update(prev + JSON.stringify(e)).digest('hex');
  prev = e.hash;
  audit.push(e);
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Security-Policy': CSP });
  res.end(JSON.stringify(body));
}
const fail = (res, status, code, message) => send(res, status, { error: { code, message } });

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}
function field(buf, name) {
  const m = buf.toString('latin1').match(new RegExp(`name="${name}"\\r\\n\\r\\n([^\\r]*)\\r\\n`));
  return m ? m[1] : null;
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (p === '/healthz') return send(res, 200, { status: 'ok' });
  if (p === '/readyz') return send(res, 200, { status: 'ready' });
  if (!p.startsWith('/v1/')) {
    const file = normalize(join(WEB, p === '/' ? 'index.html' : p));
    if (!file.startsWith(WEB)) return fail(res, 404, 'not_found', 'no such file');
    try {
      const data = await readFile(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream', 'Content-Security-Policy': CSP });
      return res.end(data);
    } catch {
      return fail(res, 404, 'not_found', 'no such file');
    }
  }
  if (req.headers['x-api-key'] !== KEY) return fail(res, 401, 'unauthenticated', 'a valid API key is required');
  const buf = await body(req);
  const m = (re) => p.match(re);
  let r;
  if (req.method === 'POST' && p === '/v1/detect') return send(res, 200, { width: 1920, height: 1280, faces: FACES });
  if (req.method === 'POST' && p === '/v1/compare') {
    return send(res, 200, { similarity: 0.8303, match: true, operating_point: { name: url.searchParams.get('operating_point') || 'fmr-1e-3', fmr: 0.001, threshold: 0.35 }, faces: { a: FACES[0], b: FACES[1] } });
  }
  if (p === '/v1/collections' && req.method === 'GET') return send(res, 200, { collections: [...collections.values()].map((c) => c.info) });
  if (p === '/v1/collections' && req.method === 'POST') {
    const spec = JSON.parse(buf.toString() || '{}');
    if (!/^[a-z0-9_-]{1,64}$/.test(spec.name || '')) return fail(res, 400, 'invalid_argument', 'bad collection name');
    if (collections.has(spec.name)) return fail(res, 409, 'already_exists', `collection '${spec.name}' already exists`);
    const info = { name: spec.name, purpose: spec.purpose, retention_days: spec.retention_days, match_threshold: 0.42, liveness_required: !!spec.liveness_required, created_at: new Date().toISOString() };
    collections.set(spec.name, { info, consents: new Map(), faces: new Map() });
    log('create_collection', spec.name, [], '');
    return send(res, 201, info);
  }
  if ((r = m(/^\/v1\/collections\/([^/]+)(\/.*)?$/))) {
    const c = collections.get(decodeURIComponent(r[1]));
    if (!c) return fail(res, 404, 'not_found', 'no such collection');
    const rest = r[2] || '';
    if (!rest && req.method === 'GET') return send(res, 200, { ...c.info, faces: [...c.faces.values()].reduce((a, b) => a + b, 0), consents: c.consents.size });
    if (rest === '/consents' && req.method === 'GET') return send(res, 200, { consents: [...c.consents.values()] });
    if (rest === '/consents' && req.method === 'POST') {
      const n = JSON.parse(buf.toString() || '{}');
      if (!/^[0-9a-f]{64}$/.test(n.evidence_sha256 || '')) return fail(res, 400, 'invalid_argument', 'evidence_sha256 must be 64 hex digits');
      const consent = { collection: c.info.name, subject: n.subject, purpose: n.purpose || c.info.purpose, evidence_sha256: n.evidence_sha256, collected_by: n.collected_by, granted_at: new Date().toISOString(), expires_at: n.expires_at || null, revoked_at: null };
      c.consents.set(n.subject, consent);
      log('grant_consent', c.info.name, [n.subject], '');
      return send(res, 201, consent);
    }
    if ((r = rest.match(/^\/subjects\/([^/]+)\/faces$/)) && req.method === 'POST') {
      const s = decodeURIComponent(r[1]);
      if (!c.consents.has(s)) {
        log('enroll', c.info.name, [s], '', 'refused: consent_required');
        return fail(res, 409, 'consent_required', `subject '${s}' has no valid consent for collection '${c.info.name}'`);
      }
      c.faces.set(s, (c.faces.get(s) || 0) + 1);
      log('enroll', c.info.name, [s], '');
      return send(res, 200, { enrolled: 1, images: [{ image: 'photo', face_id: 7 }] });
    }
    if (rest === '/search' && req.method === 'POST') {
      const reason = field(buf, 'reason');
      if (!reason) return fail(res, 400, 'invalid_argument', 'a search needs a reason');
      const matches = [...c.faces.keys()].map((s, i) => ({ subject: s, similarity: 0.8 - i * 0.3, match: i === 0, face_id: i + 1 }));
      log('search', c.info.name, matches.map((x) => x.subject), reason);
      return send(res, 200, { threshold: 0.42, faces_in_image: 1, probe: FACES[0], matches });
    }
  }
  if (p === '/v1/audit') {
    const q = url.searchParams;
    const entries = audit.filter((e) => (!q.get('operation') || e.operation === q.get('operation'))
      && (!q.get('collection') || e.collection === q.get('collection'))
      && (!q.get('subject') || e.subjects.includes(q.get('subject'))));
    return send(res, 200, { entries });
  }
  if (p === '/v1/audit/verify') return send(res, 200, { intact: true, entries: audit.length, head_hash: prev, issues: [] });
  return fail(res, 404, 'not_found', 'no such route');
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/`);
  console.log(`admin key: ${KEY}`);
});
