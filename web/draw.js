// Candor console: drawing a photo and its faces on a <canvas>.

export const QUALITY_COLOURS = {
  high: '#1a7f37',
  medium: '#b35900',
  low: '#c62828',
  none: '#1f5fbf',
};

const LANDMARKS = ['left_eye', 'right_eye', 'nose_tip', 'mouth_left', 'mouth_right'];
const LANDMARK_COLOURS = {
  left_eye: '#00bcd4',
  right_eye: '#00bcd4',
  nose_tip: '#ffd400',
  mouth_left: '#e040fb',
  mouth_right: '#e040fb',
};

export function qualityLevel(face) {
  const level = face && face.quality && face.quality.level;
  return level === 'high' || level === 'medium' || level === 'low' ? level : 'none';
}

// Decodes the file as the server does: the server applies a JPEG's EXIF
// orientation, and so does createImageBitmap with 'from-image'.
export function decodeImage(file) {
  return createImageBitmap(file, { imageOrientation: 'from-image' });
}

// Draws `bitmap` on `canvas` at its natural size (CSS scales it down) and, for each
// face, its box, the five landmarks and a label "#n level".
// width/height: the image size the server reported (boxes are in those pixels).
export function drawFaces(canvas, bitmap, faces, { width, height, labels = true, highlight = -1 } = {}) {
  const w = width || bitmap.width;
  const h = height || bitmap.height;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(bitmap, 0, 0, w, h);
  const unit = Math.max(1.5, Math.max(w, h) / 600); // line width that stays visible once scaled
  faces.forEach((face, i) => {
    if (!face || !face.box) return;
    const { x, y, width: bw, height: bh } = face.box;
    const colour = QUALITY_COLOURS[qualityLevel(face)];
    ctx.lineWidth = highlight === i ? unit * 2 : unit;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, bw, bh);
    if (face.landmarks) {
      for (const name of LANDMARKS) {
        const p = face.landmarks[name];
        if (!Array.isArray(p)) continue;
        ctx.beginPath();
        ctx.arc(p[0], p[1], unit * 1.6, 0, Math.PI * 2);
        ctx.fillStyle = LANDMARK_COLOURS[name];
        ctx.fill();
        ctx.lineWidth = unit * 0.6;
        ctx.strokeStyle = '#000';
        ctx.stroke();
      }
    }
    if (labels) {
      const level = qualityLevel(face);
      const text = `#${i + 1} ${level === 'none' ? '' : level}`.trim();
      const size = Math.round(unit * 8);
      ctx.font = `600 ${size}px system-ui, sans-serif`;
      const tw = ctx.measureText(text).width;
      const pad = unit * 2;
      const ty = y - size - pad * 2 >= 0 ? y - size - pad * 2 : y + bh;
      ctx.fillStyle = colour;
      ctx.fillRect(x - unit / 2, ty, tw + pad * 2, size + pad * 2);
      ctx.fillStyle = '#fff';
      ctx.textBaseline = 'top';
      ctx.fillText(text, x - unit / 2 + pad, ty + pad);
    }
  });
}

// Faces numbered as a reader counts them: left to right (then top to bottom).
// boxOf: where the box is (a search result holds it in its probe).
export function leftToRight(faces, boxOf = (f) => f.box) {
  return [...faces].sort((a, b) => (boxOf(a).x - boxOf(b).x) || (boxOf(a).y - boxOf(b).y));
}

// Draws the photo and its faces; a photo the browser cannot decode (the server may
// read formats the browser does not) leaves the canvas empty, with a note.
export async function drawPhoto(canvas, file, faces, opts = {}) {
  try {
    const bitmap = await decodeImage(file);
    drawFaces(canvas, bitmap, faces, opts);
    if (bitmap.close) bitmap.close();
    return true;
  } catch {
    canvas.width = 0;
    canvas.height = 0;
    canvas.setAttribute('aria-label', `${file.name} cannot be shown in this browser`);
    return false;
  }
}

// Fills a <ul data-quality-legend="lead text"> with the colours drawFaces uses, so that a
// box's colour is never read as a verdict (Compare and Search had no legend: issue 17).
export function fillQualityLegends(root = document) {
  for (const ul of root.querySelectorAll('[data-quality-legend]')) {
    while (ul.firstChild) ul.removeChild(ul.firstChild);
    const lead = document.createElement('li');
    lead.textContent = ul.dataset.qualityLegend;
    ul.append(lead);
    for (const [level, text] of [['high', 'high'], ['medium', 'medium'], ['low', 'low'], ['none', 'not assessed']]) {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = `swatch q-${level}`;
      li.append(swatch, ` ${text}`);
      ul.append(li);
    }
  }
}
