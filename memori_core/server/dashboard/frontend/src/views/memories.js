// An entity's memories, newest first: filters (kind, process, date range, text) live in the
// hash's query string, so a filtered list can be reloaded and shared; pages by next_cursor.
import { api } from '../api.js';
import { field, h, link, notice, num, replace, stamp } from '../dom.js';
import { pager } from './entities.js';

export const KINDS = ['episodic', 'fact', 'preference', 'skill', 'attribute', 'event'];
const PAGE = 50;

export async function renderMemories(body, entity, params, stale) {
  const processes = await api('GET', '/v1/processes', { params: { entity_id: entity } });
  if (stale()) return;
  const kinds = params.getAll('kind');
  const process = params.get('process');
  const q = params.get('q') || '';
  const since = params.get('since') || '';
  const until = params.get('until') || '';
  const superseded = params.get('superseded') === '1';

  const kindBoxes = KINDS.map((k) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'kind', value: k, checked: kinds.includes(k) }), k));
  const processSelect = h('select', { name: 'process' },
    h('option', { value: '' }, 'every process'),
    processes.items.filter((p) => p.process_id !== null).map((p) =>
      h('option', { value: p.process_id, selected: p.process_id === process },
        `${p.process_id} (${p.memories})`)));
  const qInput = h('input', { type: 'search', name: 'q', value: q });
  const sinceInput = h('input', { type: 'date', name: 'since', value: since });
  const untilInput = h('input', { type: 'date', name: 'until', value: until });
  const supersededBox = h('input', { type: 'checkbox', name: 'superseded', value: '1',
    checked: superseded, id: 'f-superseded' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter memories' },
    field('f-q', 'Text contains', qInput),
    h('fieldset', { class: 'kinds' }, h('legend', {}, 'Kinds'), kindBoxes),
    field('f-process', 'Process', processSelect),
    field('f-since', 'Created from', sinceInput),
    field('f-until', 'Created before', untilInput),
    h('div', { class: 'field check' }, supersededBox,
      h('label', { for: 'f-superseded' }, 'Include superseded versions')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter'),
      h('a', { href: `#/e/${encodeURIComponent(entity)}/memories`, class: 'button secondary' },
        'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (qInput.value.trim()) next.set('q', qInput.value.trim());
    for (const box of form.querySelectorAll('input[name=kind]:checked')) {
      next.append('kind', box.value);
    }
    if (processSelect.value) next.set('process', processSelect.value);
    if (sinceInput.value) next.set('since', sinceInput.value);
    if (untilInput.value) next.set('until', untilInput.value);
    if (supersededBox.checked) next.set('superseded', '1');
    const search = next.toString();
    window.location.hash = `#/e/${encodeURIComponent(entity)}/memories${search ? '?' + search : ''}`;
  });

  const results = h('div', { class: 'results', 'aria-live': 'polite' });
  replace(body, h('h2', {}, 'Memories'), form, results);

  const cursors = [null];
  const load = async (index) => {
    const page = await api('GET', '/v1/memories', { params: {
      entity_id: entity, limit: PAGE, cursor: cursors[index], kind: kinds,
      process_id: process, scope: process ? 'process' : 'entity', q: q || null,
      since: since || null, until: until || null,
      include_superseded: superseded ? 'true' : null,
    } });
    if (stale()) return;
    cursors[index + 1] = page.next_cursor;
    if (!page.items.length) {
      replace(results, notice(index === 0 ? 'No memory matches.' : 'No more memories.'));
      return;
    }
    replace(results, memoryTable(entity, page.items), pager(index, !!page.next_cursor, load));
  };
  await load(0);
}

/** The memories as a table: kind, text (a link to the memory), date, mentions, process,
 * importance. */
export function memoryTable(entity, items, label = 'Memories') {
  return h('table', { class: 'memories', 'aria-label': label },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Memory'),
      h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col', class: 'n' }, 'Mentions'),
      h('th', { scope: 'col' }, 'Process'), h('th', { scope: 'col', class: 'n' }, 'Importance'))),
    h('tbody', {}, items.map((m) => h('tr', { dataset: { memoryId: String(m.id) },
      class: m.superseded_by ? 'superseded' : null },
    h('td', {}, h('span', { class: `kind kind-${m.kind}` }, m.kind)),
    h('td', { class: 'content' }, link(`/e/${encodeURIComponent(entity)}/memory/${m.id}`,
      m.content, { class: 'memory-link' }),
    m.superseded_by ? h('span', { class: 'muted' }, ` (superseded by #${m.superseded_by})`)
      : null),
    h('td', { class: 'nowrap' }, stamp(m.created_at)),
    h('td', { class: 'n' }, String(m.mention_count)),
    h('td', {}, m.process_id ?? '—'),
    h('td', { class: 'n' }, num(m.importance, 2))))));
}
