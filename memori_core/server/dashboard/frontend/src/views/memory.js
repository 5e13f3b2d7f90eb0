// One memory: its fields, provenance (source messages and their conversations), history
// (the versions it superseded, and what superseded it), edit (PATCH) and delete.
import { api, canWrite } from '../api.js';
import { field, h, link, notice, num, replace, stamp } from '../dom.js';
import { KINDS, memoryTable } from './memories.js';

export async function renderMemory(body, entity, id, stale) {
  const params = { entity_id: entity };
  const [memory, provenance, history] = await Promise.all([
    api('GET', `/v1/memories/${id}`, { params }),
    api('GET', `/v1/memories/${id}/provenance`, { params }),
    api('GET', `/v1/memories/${id}/history`, { params }),
  ]);
  if (stale()) return;
  const base = `/e/${encodeURIComponent(entity)}`;
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const tools = h('div', { class: 'actions' });
  const editPanel = h('div', { id: 'edit-panel', hidden: true });
  if (canWrite() && !memory.superseded_by) {
    tools.append(
      h('button', { type: 'button', id: 'edit', 'aria-controls': 'edit-panel',
        onclick: () => openEdit(editPanel, entity, memory, status) }, 'Edit'),
      h('button', { type: 'button', class: 'danger', id: 'delete',
        onclick: (event) => confirmDelete(event.currentTarget, entity, memory, status) },
      'Delete'));
  }
  const conversations = new Map(provenance.conversations.map((c) => [c.id, c]));
  replace(body,
    h('h2', {}, `Memory #${memory.id}`),
    h('blockquote', { class: 'memory-text', id: 'memory-content' }, memory.content),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Kind'), h('dd', {}, memory.kind),
      h('dt', {}, 'Created'), h('dd', {}, stamp(memory.created_at)),
      h('dt', {}, 'Last seen'), h('dd', {}, stamp(memory.last_seen_at)),
      h('dt', {}, 'Mentions'), h('dd', {}, String(memory.mention_count)),
      h('dt', {}, 'Process'), h('dd', {}, memory.process_id ?? '—'),
      h('dt', {}, 'Importance'), h('dd', {}, num(memory.importance, 2)),
      memory.slot && [h('dt', {}, 'Slot'), h('dd', {}, memory.slot)],
      h('dt', {}, 'Superseded by'), h('dd', {}, memory.superseded_by
        ? link(`${base}/memory/${memory.superseded_by}`, `#${memory.superseded_by}`,
          { id: 'superseded-by' })
        : 'nothing (current)')),
    tools, editPanel, status,
    h('section', { 'aria-labelledby': 'prov-title', id: 'provenance' },
      h('h3', { id: 'prov-title' }, 'Provenance: the messages it was drawn from'),
      provenance.messages.length
        ? h('ol', { class: 'messages' }, provenance.messages.map((m) => {
          const c = conversations.get(m.conversation_id);
          return h('li', { class: `message role-${m.role}` },
            h('p', { class: 'meta' }, h('strong', {}, m.role), ` · ${stamp(m.created_at)}`,
              c ? [' · conversation ', link(`${base}/conversations?c=${c.id}`, `#${c.id}`),
                ` (session ${c.session_id}${c.process_id ? ', ' + c.process_id : ''})`] : null),
            h('p', { class: 'message-text' }, messageText(m.content)));
        }))
        : notice('No source message (remembered directly, or its messages were deleted).')),
    h('section', { 'aria-labelledby': 'hist-title', id: 'history' },
      h('h3', { id: 'hist-title' }, 'History: the versions it replaced'),
      history.items.length ? memoryTable(entity, history.items, 'Earlier versions')
        : notice('It replaced no earlier version.')));
}

/** A message's content as text (content parts: their text joined). */
export function messageText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part.text === 'string') ? part.text
      : JSON.stringify(part)).join('\n');
  }
  return JSON.stringify(content);
}

function openEdit(panel, entity, memory, status) {
  const text = h('textarea', { name: 'content', rows: 4, required: true }, memory.content);
  const kind = h('select', { name: 'kind' },
    KINDS.map((k) => h('option', { value: k, selected: k === memory.kind }, k)));
  const importance = h('input', { type: 'number', name: 'importance', min: 0, max: 1,
    step: 'any', value: String(memory.importance) });
  const form = h('form', { class: 'card', 'aria-labelledby': 'edit-title' },
    h('h3', { id: 'edit-title' }, 'Edit memory'),
    h('p', { class: 'help' }, 'Saving keeps this version as history and makes a new one.'),
    field('edit-content', 'Text', text), field('edit-kind', 'Kind', kind),
    field('edit-importance', 'Importance (0 to 1)', importance),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'save' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: () => {
        panel.hidden = true;
        document.getElementById('edit').focus();
      } }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const out = await api('PATCH', `/v1/memories/${memory.id}`, {
        params: { entity_id: entity },
        body: { content: text.value, kind: kind.value, importance: Number(importance.value) },
      });
      window.location.hash = `#/e/${encodeURIComponent(entity)}/memory/${out.memory.id}`;
    } catch (e) {
      replace(status, notice(`Not saved: ${e.message}`, 'error'));
    }
  });
  replace(panel, form);
  panel.hidden = false;
  text.focus();
}

function confirmDelete(button, entity, memory, status) {
  const yes = h('button', { type: 'button', class: 'danger', id: 'delete-confirm',
    onclick: async () => {
      try {
        await api('DELETE', `/v1/memories/${memory.id}`, { params: { entity_id: entity } });
        sessionStorage.setItem('memori-flash', `Deleted memory #${memory.id}.`);
        window.location.hash = `#/e/${encodeURIComponent(entity)}/memories`;
      } catch (e) {
        replace(status, notice(`Not deleted: ${e.message}`, 'error'));
      }
    } }, 'Yes, delete it');
  const no = h('button', { type: 'button', class: 'secondary', onclick: () => {
    replace(status);
    button.focus();
  } }, 'Keep it');
  replace(status, h('div', { class: 'card danger-zone', role: 'group',
    'aria-label': 'Confirm delete' },
  h('p', {}, 'Delete this memory? It is gone from recall at once.'), yes, ' ', no));
  yes.focus();
}
