// An entity's header: its name, the tabs, export (download GET /v1/export) and, for an admin
// key, forget (DELETE /v1/entities/{id}) behind a typed confirmation.
import { api, isAdmin } from '../api.js';
import { field, h, notice, replace } from '../dom.js';

const TABS = [
  ['memories', 'Memories'], ['playground', 'Recall playground'], ['graph', 'Knowledge graph'],
  ['conversations', 'Conversations'], ['queue', 'Augmentation'],
];

export function renderEntityHeader(entity, tab) {
  const base = `#/e/${encodeURIComponent(entity)}`;
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'secondary', id: 'export',
      onclick: () => exportEntity(entity, status) }, 'Export JSON'),
    isAdmin() && h('button', { type: 'button', class: 'danger', id: 'forget-open',
      'aria-expanded': 'false', 'aria-controls': 'forget-panel',
      onclick: (event) => toggleForget(event.currentTarget, entity, status) },
    'Forget entity…'));
  return h('div', { class: 'entity-head' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Entities'), ' / '),
    h('h1', {}, h('span', { class: 'sr-only' }, 'Entity '), h('span', { id: 'entity-id' },
      entity)),
    actions,
    h('div', { id: 'forget-panel', hidden: true }),
    status,
    h('nav', { class: 'tabs', 'aria-label': 'Entity pages' },
      TABS.map(([id, label]) => h('a', { href: `${base}/${id}`,
        'aria-current': (id === tab || (tab === 'memory' && id === 'memories')) ? 'page' : null },
      label))));
}

async function exportEntity(entity, status) {
  replace(status, notice('Exporting…'));
  const data = await api('GET', '/v1/export', { params: { entity_id: entity } }).catch((e) => {
    replace(status, notice(`Export failed: ${e.message}`, 'error'));
    return null;
  });
  if (!data) return;
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `memori-export-${entity}.json`, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  replace(status, notice(`Exported ${entity} (memori-export-${entity}.json).`));
}

function toggleForget(button, entity, status) {
  const panel = document.getElementById('forget-panel');
  if (!panel.hidden) {
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  const input = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const confirm = h('button', { type: 'submit', class: 'danger', disabled: true },
    'Forget this entity for good');
  input.addEventListener('input', () => {
    confirm.disabled = input.value !== entity;
  });
  const form = h('form', { class: 'card danger-zone', 'aria-labelledby': 'forget-title' },
    h('h2', { id: 'forget-title' }, 'Forget this entity'),
    h('p', {}, 'Deletes every message, memory, triple and job of ', h('strong', {}, entity),
      '. This cannot be undone. Export first to keep a copy.'),
    field('forget-confirm', `Type the entity id (${entity}) to confirm`, input),
    h('div', { class: 'actions' }, confirm,
      h('button', { type: 'button', class: 'secondary', onclick: () => {
        panel.hidden = true;
        button.setAttribute('aria-expanded', 'false');
        button.focus();
      } }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (input.value !== entity) return;
    confirm.disabled = true;
    try {
      const out = await api('DELETE', `/v1/entities/${encodeURIComponent(entity)}`);
      const total = Object.values(out.counts).reduce((a, b) => a + b, 0);
      sessionStorage.setItem('memori-flash', `Forgot ${entity}: ${total} rows deleted.`);
      window.location.hash = '#/';
    } catch (e) {
      replace(status, notice(`Forget failed: ${e.message}`, 'error'));
      confirm.disabled = false;
    }
  });
  replace(panel, form);
  panel.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  input.focus();
}
