// The entity's augmentation queue: counts per status, jobs newest first (failed ones with their
// error), retry a failed job (admin key).
import { api, isAdmin } from '../api.js';
import { h, notice, replace, stamp } from '../dom.js';
import { pager } from './entities.js';

export async function renderQueue(body, entity, stale) {
  const counts = h('p', { class: 'counts', id: 'queue-counts' });
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const list = h('div', { class: 'results' });
  replace(body, h('h2', {}, 'Augmentation queue'), counts, status, list);
  const cursors = [null];
  const load = async (index) => {
    const page = await api('GET', '/v1/queue', { params: { entity_id: entity, limit: 50,
      cursor: cursors[index] } });
    if (stale()) return;
    cursors[index + 1] = page.next_cursor;
    replace(counts, ['queued', 'running', 'failed', 'done'].map((s) =>
      h('span', { class: `count status-${s}` }, `${s}: ${page.counts[s] ?? 0}`)));
    if (!page.items.length) {
      replace(list, notice('No augmentation jobs.'));
      return;
    }
    replace(list, h('table', { id: 'jobs', 'aria-label': 'Jobs, newest first' },
      h('thead', {}, h('tr', {}, ['Job', 'Status', 'Process', 'Messages', 'Attempts',
        'Created', 'Error', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, page.items.map((j) => h('tr', { dataset: { jobId: String(j.id) } },
        h('td', { class: 'n' }, `#${j.id}`),
        h('td', {}, h('span', { class: `status status-${j.status}` }, j.status)),
        h('td', {}, j.process_id ?? '—'),
        h('td', { class: 'n' }, String(j.message_ids.length)),
        h('td', { class: 'n' }, String(j.attempts)),
        h('td', { class: 'nowrap' }, stamp(j.created_at)),
        h('td', { class: 'error-text' }, j.error ?? ''),
        h('td', {}, j.status === 'failed' && isAdmin()
          ? h('button', { type: 'button', class: 'secondary retry',
            'aria-label': `Retry job ${j.id}`, onclick: async (event) => {
              event.currentTarget.disabled = true;
              try {
                await api('POST', `/v1/queue/${j.id}/retry`, { params: { entity_id: entity } });
                replace(status, notice(`Job #${j.id} queued again.`));
                await load(index);
              } catch (e) {
                replace(status, notice(`Not retried: ${e.message}`, 'error'));
              }
            } }, 'Retry') : null))))),
    pager(index, !!page.next_cursor, load));
  };
  await load(0);
}
