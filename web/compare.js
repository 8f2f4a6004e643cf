// Candor console: the Compare page. The API compares the largest face of each photo; a
// photo with several faces lists them (numbered left to right, found with /v1/detect when
// the key may detect) and the face the operator picks is cropped here and compared instead.

import { api } from './api.js';
import { $, el, clear, show, fmt, busy, plural, focusOn } from './dom.js';
import { decodeImage, leftToRight, drawPhoto } from './draw.js';
import { attempt, can, requireFile } from './common.js';

// A PNG of one face of `file` with a margin around it, for comparing a face other than
// the largest (the API compares the largest face of each photo).
async function cropFace(file, box, margin = 0.5) {
  const bitmap = await decodeImage(file);
  const side = Math.max(box.width, box.height) * (1 + 2 * margin);
  const x = Math.max(0, box.x + box.width / 2 - side / 2);
  const y = Math.max(0, box.y + box.height / 2 - side / 2);
  const w = Math.min(bitmap.width - x, side);
  const h = Math.min(bitmap.height - y, side);
  const canvas = new OffscreenCanvas(Math.round(w), Math.round(h));
  canvas.getContext('2d').drawImage(bitmap, x, y, w, h, 0, 0, canvas.width, canvas.height);
  if (bitmap.close) bitmap.close();
  const blob = await canvas.convertToBlob({ type: 'image/png' });
  return new File([blob], `${file.name.replace(/\.[^.]+$/, '')}-face.png`, { type: 'image/png' });
}

const compareState = { a: null, b: null }; // {file, faces (left to right), pick}

// Lists the faces of a photo with several, so the operator picks the one to compare.
async function pickerFor(side, file) {
  const box = $(`compare-pick-${side}`);
  clear(box);
  compareState[side] = { file, faces: [], pick: -1 };
  show(box, false);
  if (!file || !can('detect')) return;
  const data = await api.detect(file, {}).catch(() => null);
  const faces = data && Array.isArray(data.faces) ? leftToRight(data.faces) : [];
  compareState[side].faces = faces;
  if (faces.length < 2) return;
  const name = `compare-face-${side}`;
  const group = el('fieldset', { class: 'checks face-pick', dataset: { testid: `compare-pick-${side}` } },
    el('legend', {}, `Photo ${side.toUpperCase()} shows ${plural(faces.length, 'face')}: which one?`));
  const largest = faces.reduce((best, f, i) => (f.box.width * f.box.height > faces[best].box.width * faces[best].box.height ? i : best), 0);
  faces.forEach((f, i) => {
    const id = `${name}-${i}`;
    const input = el('input', { type: 'radio', name, id, value: String(i), checked: i === largest });
    input.addEventListener('change', () => { compareState[side].pick = i; });
    group.append(el('label', { class: 'check', for: id }, input, `Face ${i + 1}${i === largest ? ' (largest)' : ''}`));
  });
  compareState[side].pick = largest;
  box.append(group);
  show(box, true);
}

async function compareInput(side) {
  const st = compareState[side];
  const file = $(`compare-${side}`).files[0];
  if (!st || st.file !== file || st.faces.length < 2) return file;
  return cropFace(file, st.faces[st.pick].box);
}

export function init() {
  for (const side of ['a', 'b']) {
    $(`compare-${side}`).addEventListener('change', () => {
      show($('compare-result'), false);
      pickerFor(side, $(`compare-${side}`).files[0]);
    });
  }
  const form = $('compare-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errNode = $('compare-error');
    if (!requireFile($('compare-a'), errNode, 'photo A')) return;
    if (!requireFile($('compare-b'), errNode, 'photo B')) return;
    const a = await compareInput('a');
    const b = await compareInput('b');
    show($('compare-result'), false);
    const data = await busy(form, $('compare-status'), 'Comparing…',
      () => attempt(errNode, () => api.compare(a, b, $('compare-op').value)));
    if (!data) return;
    const op = data.operating_point || {};
    const verdict = $('compare-verdict');
    verdict.className = `verdict ${data.match ? 'verdict-yes' : 'verdict-no'}`;
    verdict.dataset.match = data.match ? 'yes' : 'no';
    verdict.textContent = data.match ? 'Match: same person at this operating point' : 'No match at this operating point';
    $('compare-similarity').textContent = fmt(data.similarity, 4);
    $('compare-op-name').textContent = op.name || '—';
    $('compare-op-fmr').textContent = op.fmr === undefined ? '—' : String(op.fmr);
    $('compare-op-threshold').textContent = fmt(op.threshold, 4);
    const faces = data.faces || {};
    await Promise.all([
      drawPhoto($('compare-canvas-a'), a, faces.a ? [faces.a] : [], { labels: false }),
      drawPhoto($('compare-canvas-b'), b, faces.b ? [faces.b] : [], { labels: false }),
    ]);
    show($('compare-result'), true);
    focusOn(verdict);
  });
}
