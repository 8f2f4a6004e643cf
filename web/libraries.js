// Candor console: photo libraries (issue 13). Shows a library's groups as grids of face
// thumbnails, largest first, with the owner's controls: name a group, merge it into
// another, hide it (or show it again). Libraries are made and filled with
// `candor library add` on the owner's machine; nothing here reads a folder.
// Thumbnails are cut by the server from the owner's photos when asked
// (GET /v1/libraries/{lib}/faces/{id}/thumbnail, never cached) and fetched with the key
// in a header, then shown through blob: URLs that are revoked when the page redraws.

import { api, thumbnail } from './api.js';
import { $, el, clear, show, showOk, plural } from './dom.js';
import { attempt, newestLoad } from './common.js';

const FACES_SHOWN = 24; // per group: a large group shows its first faces and a count of the rest
const PARALLEL = 2; // thumbnails fetched at once (each is a photo decode on the server)
let urls = []; // blob: URLs of the thumbnails on screen
let generation = 0; // a redraw cancels the thumbnail fetches of the one before

function dropThumbnails() {
  for (const u of urls) URL.revokeObjectURL(u);
  urls = [];
  generation += 1;
}

async function loadLibraries() {
  const data = await attempt($('libraries-error'), api.listLibraries);
  const select = $('library-select');
  const current = select.value;
  clear(select);
  if (!data) return;
  const libs = data.libraries || [];
  show($('libraries-empty'), !libs.length);
  for (const l of libs) select.append(el('option', { value: l.name }, `${l.name} (${l.owner})`));
  if (libs.some((l) => l.name === current)) select.value = current;
  await loadGroups();
}

function groupTitle(g) {
  return g.name ? g.name : `Person ${g.group}`;
}

const groupLoad = newestLoad();

async function loadGroups() {
  const current = groupLoad();
  dropThumbnails();
  const body = $('library-groups');
  clear(body);
  const lib = $('library-select').value;
  if (!lib) return;
  const data = await attempt($('libraries-error'), () => api.libraryGroups(lib, $('library-hidden').checked));
  if (!current() || !data) return;
  clear(body);
  const groups = data.groups || [];
  const pending = []; // [img, face id]
  for (const g of groups) {
    const grid = el('div', { class: 'face-grid', dataset: { testid: 'library-faces' } });
    for (const id of g.face_ids.slice(0, FACES_SHOWN)) {
      const img = el('img', { alt: `face ${id}`, width: 96, height: 96, dataset: { face: String(id) } });
      pending.push([img, id]);
      grid.append(img);
    }
    if (g.face_ids.length > FACES_SHOWN) grid.append(el('span', { class: 'muted small' }, `and ${g.face_ids.length - FACES_SHOWN} more`));
    body.append(groupCard(lib, g, groups, grid));
  }
  if (data.ungrouped_face_ids && data.ungrouped_face_ids.length) {
    body.append(el('p', { class: 'muted' }, `${plural(data.ungrouped_face_ids.length, 'face')} not grouped yet.`));
  }
  show($('library-groups-empty'), !groups.length);
  fetchThumbnails(lib, pending, generation);
}

function groupCard(lib, g, groups, grid) {
  const title = groupTitle(g);
  const nameInput = el('input', { maxlength: 256, value: g.name || '', 'aria-label': `Name of ${title}`, dataset: { testid: 'library-name-input' } });
  const rename = el('button', {
    type: 'button', class: 'btn btn-small', dataset: { testid: 'library-rename' },
    onclick: () => act(() => api.nameLibraryGroup(lib, g.group, nameInput.value.trim()), `${title} renamed.`),
  }, 'Rename');
  const target = el('select', { 'aria-label': `Merge ${title} with` },
    el('option', { value: '' }, 'Merge with…'),
    groups.filter((o) => o.group !== g.group).map((o) => el('option', { value: String(o.group) }, groupTitle(o))));
  const merge = el('button', {
    type: 'button', class: 'btn btn-small', dataset: { testid: 'library-merge' },
    onclick: () => {
      if (!target.value) return;
      act(() => api.mergeLibraryGroups(lib, g.group, Number(target.value)), `${title} merged.`);
    },
  }, 'Merge');
  const hide = el('button', {
    type: 'button', class: 'btn btn-small', dataset: { testid: 'library-hide' },
    onclick: () => act(() => api.hideLibraryGroup(lib, g.group, !g.hidden), `${title} ${g.hidden ? 'shown' : 'hidden'}.`),
  }, g.hidden ? 'Show' : 'Hide');
  return el('section', { class: 'card', dataset: { testid: 'library-group', group: String(g.group) } },
    el('h3', {}, title, ' ', el('span', { class: 'muted small' }, `${plural(g.faces, 'face')}, ${plural(g.photos, 'photo')}${g.hidden ? ', hidden' : ''}`)),
    grid,
    el('div', { class: 'row-actions' }, nameInput, rename, target, merge, hide));
}

async function fetchThumbnails(lib, pending, gen) {
  let next = 0;
  const worker = async () => {
    while (next < pending.length && gen === generation) {
      const [img, id] = pending[next++];
      try {
        const blob = await thumbnail(lib, id);
        if (gen !== generation) return;
        const u = URL.createObjectURL(blob);
        urls.push(u);
        img.src = u;
      } catch {
        img.alt = `face ${id}: photo missing or changed`;
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

async function act(call, done) {
  showOk($('libraries-ok'), null);
  const r = await attempt($('libraries-error'), call);
  if (!r) return;
  await loadGroups();
  showOk($('libraries-ok'), done);
}

export function init(loaders) {
  loaders.libraries = loadLibraries;
  $('libraries-refresh').addEventListener('click', loadLibraries);
  $('library-select').addEventListener('change', loadGroups);
  $('library-hidden').addEventListener('change', loadGroups);
}

// Called when the key changes: nothing of the last key's library stays on screen.
export function reset() {
  dropThumbnails();
  clear($('library-groups'));
}
