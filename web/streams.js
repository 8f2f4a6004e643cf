// Candor console: camera streams (issue 12). Lists the streams with their status,
// creates, starts, stops and deletes one, and shows a stream's events live (its
// Server-Sent Events, read through fetch so the key goes in its header). A source's
// credentials are never shown: the server returns it redacted (rtsp://***@host/...).

import { api, streamEvents } from './api.js';
import { $, el, clear, show, showOk, showError, fmt, busy, focusOn } from './dom.js';
import { attempt, invalid, when, findCollection } from './common.js';

const MAX_EVENTS = 200; // lines kept in the live list
let watching = null; // { id, controller }

function stateText(s) {
  if (s.running_here) return `running here (${fmt(s.status.fps, 1)} fps)`;
  if (s.state === 'running') return s.node ? `running on ${s.node}` : (s.start_error ? 'not starting' : 'starting');
  return 'stopped';
}

// An exposure time as a camera's page shows it: 0.02 is "0.02 s (1/50)".
function shutterText(seconds) {
  const per = 1 / seconds;
  const whole = seconds < 1 && Math.abs(per - Math.round(per)) < 0.01;
  return whole ? `${seconds} s (1/${Math.round(per)})` : `${seconds} s`;
}

// The share of strangers' tracks a stream may name (strangers_named), as the form asks it.
function strangersText(share) {
  if (!share) return 'Decides at the collection\'s point alone';
  return `Strangers named ≤ ${Number((share * 100).toPrecision(3))}%`;
}

function statusCell(s) {
  if (!s.running_here) return el('td', { class: 'wrap' }, s.start_error || '—');
  const st = s.status;
  return el('td', { class: 'wrap' },
    `${fmt(st.frames_processed)} frames, ${fmt(st.frames_dropped)} dropped, ${fmt(st.detections)} detections `
    + `(every ${fmt(s.detect_every)}), ${fmt(st.open_tracks)} open tracks, `
    + `${fmt(st.decisions)} decisions (${fmt(st.recognised)} recognised)`,
    st.last_error ? el('div', { class: 'muted small' }, `Last error: ${st.last_error}`) : '');
}

async function loadStreams() {
  const data = await attempt($('streams-error'), api.listStreams);
  const body = $('streams-body');
  clear(body);
  if (!data) return;
  show($('streams-empty'), !(data.streams || []).length);
  for (const s of data.streams || []) {
    const running = s.state === 'running';
    const toggle = el('button', {
      type: 'button', class: 'btn btn-small', dataset: { testid: running ? 'stream-stop' : 'stream-start' },
      'aria-label': `${running ? 'Stop' : 'Start'} the stream ${s.name}`,
      onclick: () => act(s, running ? api.stopStream : api.startStream, running ? 'stopped' : 'started'),
    }, running ? 'Stop' : 'Start');
    const watch = el('button', {
      type: 'button', class: 'btn btn-small', dataset: { testid: 'stream-watch' },
      'aria-label': `Show the events of the stream ${s.name}`, onclick: () => watchEvents(s),
    }, 'Events');
    const remove = el('button', {
      type: 'button', class: 'btn btn-small btn-danger', dataset: { testid: 'stream-delete' },
      'aria-label': `Delete the stream ${s.name}`, onclick: () => removeStream(s),
    }, 'Delete');
    body.append(el('tr', { dataset: { testid: 'stream-row', id: s.id, name: s.name } },
      el('td', { class: 'wrap' }, el('strong', {}, s.name), el('div', { class: 'muted small' }, s.source),
        s.shutter_s != null
          ? el('div', { class: 'muted small', dataset: { testid: 'stream-shutter-shown' } },
            `Shutter ${shutterText(s.shutter_s)}: moving faces deblurred`)
          : '',
        el('div', { class: 'muted small', dataset: { testid: 'stream-strangers-shown' } }, strangersText(s.strangers_named)),
        el('div', { class: 'row-actions' }, toggle, watch, remove)),
      el('td', { class: 'wrap' }, s.collection),
      el('td', { class: 'wrap', dataset: { testid: 'stream-state' } }, stateText(s)),
      statusCell(s),
      el('td', { class: 'nowrap' }, when(s.created_at))));
  }
}

async function act(s, call, done) {
  showOk($('streams-ok'), null);
  const r = await attempt($('streams-error'), () => call(s.id));
  if (!r) return;
  await loadStreams();
  showOk($('streams-ok'), `Stream ${s.name} ${done}.`);
}

async function removeStream(s) {
  showOk($('streams-ok'), null);
  if (!window.confirm(`Delete the stream ${s.name}? It stops on whichever node runs it.`)) return;
  const r = await attempt($('streams-error'), () => api.deleteStream(s.id));
  if (!r) return;
  if (watching && watching.id === s.id) stopWatching();
  await loadStreams();
  showOk($('streams-ok'), `Stream ${s.name} deleted.`);
  focusOn($('streams-ok'));
}

function eventText(e) {
  const t = e.time ? e.time.replace('T', ' ').replace('Z', '') : '';
  switch (e.event) {
    case 'recognised':
      return `${t} track ${e.track}: ${e.subject} (similarity ${fmt(e.similarity)}, ${e.frames_used} frames, `
        + `${fmt(e.decision_ms, 0)} ms)${e.upgrade_of ? `, was ${e.upgrade_of}` : ''}`;
    case 'unknown': return `${t} track ${e.track}: unknown person (${fmt(e.face_px, 0)} px)`;
    case 'track_ended': return `${t} track ${e.track} ended: ${e.outcome}`;
    default: return `${t} ${e.event.replace('_', ' ')}${e.message ? `: ${e.message}` : ''}`;
  }
}

function stopWatching() {
  if (watching) watching.controller.abort();
  watching = null;
  $('stream-events-state').textContent = 'Not watching.';
}

async function watchEvents(s) {
  stopWatching();
  const controller = new AbortController();
  watching = { id: s.id, controller };
  const list = $('stream-events');
  clear(list);
  show($('stream-events-card'), true);
  $('stream-events-title').textContent = `Events of ${s.name}`;
  $('stream-events-state').textContent = 'Watching: events appear as they happen.';
  showError($('stream-events-error'), null);
  focusOn($('stream-events-card'));
  try {
    await streamEvents(s.id, controller.signal, (e) => {
      list.prepend(el('li', { dataset: { testid: 'stream-event', event: e.event } }, eventText(e)));
      while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    });
    if (watching && watching.controller === controller) $('stream-events-state').textContent = 'The server ended the events.';
  } catch (err) {
    if (controller.signal.aborted) return;
    showError($('stream-events-error'), err);
    $('stream-events-state').textContent = 'Not watching.';
  }
}

export function init(loaders) {
  loaders.streams = loadStreams;
  $('streams-refresh').addEventListener('click', loadStreams);
  $('stream-events-stop').addEventListener('click', stopWatching);
  // The purpose must be the collection's: offer it.
  $('stream-collection').addEventListener('change', () => {
    const c = findCollection($('stream-collection').value);
    if (c && c.purpose && !$('stream-purpose').value) $('stream-purpose').value = c.purpose;
  });
  const form = $('stream-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('stream-form-error');
    const name = $('stream-name').value.trim();
    const source = $('stream-source').value.trim();
    const collection = $('stream-collection').value;
    const purpose = $('stream-purpose').value.trim();
    const reason = $('stream-reason').value.trim();
    if (!name) return invalid(errNode, 'Name the stream (e.g. the door it watches).', $('stream-name'));
    if (!source) return invalid(errNode, 'Give the camera\'s address: rtsp://, http(s):// or /dev/videoN.', $('stream-source'));
    if (!collection) return invalid(errNode, 'Pick the collection whose people it recognises.', $('stream-collection'));
    if (!purpose) return invalid(errNode, 'The purpose must be the collection\'s (what its people consented to).', $('stream-purpose'));
    if (!reason) return invalid(errNode, 'Say why the stream runs; each decision\'s audit entry records it.', $('stream-reason'));
    const detectEvery = Number($('stream-detect-every').value), bufferFrames = Number($('stream-buffer-frames').value);
    if (!Number.isInteger(detectEvery) || detectEvery < 1 || detectEvery > 30) {
      return invalid(errNode, 'Detect on every 1st to 30th frame.', $('stream-detect-every'));
    }
    if (!Number.isInteger(bufferFrames) || bufferFrames < 1 || bufferFrames > 64) {
      return invalid(errNode, 'Hold 1 to 64 frames.', $('stream-buffer-frames'));
    }
    // The shutter is optional: sent only when filled (empty: unknown, no deblurring).
    const shutterInput = $('stream-shutter'), shutterField = shutterInput.value.trim(), shutter = Number(shutterField);
    const shutterBad = shutterField && (!Number.isFinite(shutter) || shutter <= 0 || shutter > 1);
    if (shutterInput.validity.badInput || shutterBad) {
      return invalid(errNode, 'The shutter is the exposure time in seconds, over 0 and at most 1 (1/50 s is 0.02), '
        + 'or empty when unknown.', shutterInput);
    }
    // The share is asked in percent (0.5) and sent as a fraction (0.005); empty: the default.
    const strangersInput = $('stream-strangers'), strangersField = strangersInput.value.trim();
    const strangersPct = Number(strangersField);
    if (strangersInput.validity.badInput || (strangersField
      && (!Number.isFinite(strangersPct) || strangersPct < 0 || strangersPct > 50))) {
      return invalid(errNode, 'Strangers named is a percentage from 0 to 50 (0.5 is one stranger in 200; 0: the '
        + 'collection\'s point alone), or empty for the default.', strangersInput);
    }
    const spec = {
      name, source, collection, purpose, reason, start: $('stream-start').checked,
      detect_every: detectEvery, buffer_frames: bufferFrames,
    };
    if (strangersField) spec.strangers_named = strangersPct / 100;
    if (shutterField) spec.shutter_s = shutter;
    const created = await busy(form, null, '', () => attempt(errNode, () => api.createStream(spec)));
    if (!created) return;
    showError(errNode, null);
    $('stream-source').value = ''; // the credentials are not kept in the page
    await loadStreams();
    showOk($('streams-ok'), `Stream ${created.name} created${created.state === 'running' ? ' and starting' : ''}.`);
    focusOn($('streams-ok'));
  });
}
