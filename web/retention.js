// Candor console: the retention run (admin over every collection) and what it removed.

import { api } from './api.js';
import { $, show, fmt, busy, focusOn } from './dom.js';
import { attempt } from './common.js';

export function init() {
  const form = $('retention-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await busy(form, $('retention-status'), 'Running…', () => attempt($('retention-error'), api.retentionRun));
    if (!r) return;
    $('retention-removed').textContent = fmt(r.removed_faces);
    $('retention-age').textContent = fmt(r.expired_by_age);
    $('retention-consent').textContent = fmt(r.without_consent);
    $('retention-when').textContent = new Date().toISOString().slice(0, 19).replace('T', ' ');
    show($('retention-result'), true);
    focusOn($('retention-result'));
  });
}
