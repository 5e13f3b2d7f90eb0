// Entities: their memory, message and session counts; search by id prefix; next_cursor pages.
import { api } from '../api.js';
import { field, h, link, notice, replace, stamp } from '../dom.js';

const PAGE = 50;

export async function renderEntities(main, params, stale) {
  const prefix = params.get('prefix') || '';
  const input = h('input', { type: 'search', name: 'prefix', value: prefix,
    placeholder: 'e.g. user-' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Entities' },
    field('entity-prefix', 'Entity id starts with', input),
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    window.location.hash = value ? `#/?prefix=${encodeURIComponent(value)}` : '#/';
  });
  const results = h('div', { class: 'results' });
  replace(main, h('h1', {}, 'Entities'), form, results);
  const cursors = [null];
  const load = async (index) => {
    const page = await api('GET', '/v1/entities', {
      params: { prefix: prefix || null, limit: PAGE, cursor: cursors[index] } });
    if (stale()) return;
    cursors[index + 1] = page.next_cursor;
    if (!page.items.length) {
      replace(results, notice(prefix ? `No entity id starts with “${prefix}”.`
        : 'No entities yet: memories appear here once conversations are captured.'));
      return;
    }
    const rows = page.items.map((e) => h('tr', {},
      h('th', { scope: 'row' }, link(`/e/${encodeURIComponent(e.entity_id)}/memories`,
        e.entity_id, { class: 'entity-link' })),
      h('td', { class: 'n' }, String(e.memories)),
      h('td', { class: 'n' }, String(e.messages)),
      h('td', { class: 'n' }, String(e.sessions)),
      h('td', {}, stamp(e.created_at))));
    replace(results,
      h('table', { 'aria-label': 'Entities', id: 'entities' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Entity'),
          h('th', { scope: 'col', class: 'n' }, 'Memories'),
          h('th', { scope: 'col', class: 'n' }, 'Messages'),
          h('th', { scope: 'col', class: 'n' }, 'Sessions'),
          h('th', { scope: 'col' }, 'Created'))),
        h('tbody', {}, rows)),
      pager(index, !!page.next_cursor, load));
  };
  await load(0);
}

/** Previous/next buttons over a cursor-paged list (load(index) renders page `index`). */
export function pager(index, hasNext, load) {
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'secondary', disabled: index === 0,
      onclick: () => load(index - 1) }, '← Previous'),
    h('span', {}, `Page ${index + 1}`),
    h('button', { type: 'button', class: 'secondary', disabled: !hasNext, 'data-testid': 'next',
      onclick: () => load(index + 1) }, 'Next →'));
}
