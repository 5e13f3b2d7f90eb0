// Sessions and their conversations as a timeline (newest first); ?c=<id> opens a
// conversation's messages (oldest first, paged).
import { allPages, api } from '../api.js';
import { h, link, notice, replace, stamp } from '../dom.js';
import { pager } from './entities.js';
import { messageText } from './memory.js';

export async function renderConversations(body, entity, params, stale) {
  const base = `/e/${encodeURIComponent(entity)}/conversations`;
  const open = params.get('c');
  const timeline = h('div', { class: 'timeline-wrap' });
  const detail = h('section', { class: 'conversation', id: 'conversation',
    'aria-label': 'Conversation' });
  replace(body, h('h2', {}, 'Conversations'), h('div', { class: 'split' }, timeline, detail));

  const cursors = [null];
  const load = async (index) => {
    const sessions = await api('GET', '/v1/sessions', { params: { entity_id: entity, limit: 50,
      cursor: cursors[index] } });
    // each session's conversations (a session holds few: one request per session shown)
    const convs = await Promise.all(sessions.items.map((x) => allPages('/v1/conversations',
      { entity_id: entity, session_id: x.session_id }, 1000)));
    if (stale()) return;
    cursors[index + 1] = sessions.next_cursor;
    const bySession = new Map();
    for (const c of convs.flat()) {
      if (!bySession.has(c.session_id)) bySession.set(c.session_id, []);
      bySession.get(c.session_id).push(c);
    }
    if (!sessions.items.length) {
      replace(timeline, notice('No sessions yet.'));
      return;
    }
    replace(timeline, h('ol', { class: 'timeline', 'aria-label': 'Sessions, newest first' },
      sessions.items.map((s) => h('li', { class: 'session' },
        h('p', { class: 'session-head' }, h('strong', {}, `Session ${s.session_id}`),
          h('span', { class: 'muted' }, ` · ${s.process_id ?? 'no process'} · ` +
            `${stamp(s.created_at)} → ${stamp(s.last_activity_at)} · ${s.messages} messages`)),
        h('ul', { class: 'convs' }, (bySession.get(s.session_id) || []).map((c) =>
          h('li', {}, link(`${base}?c=${c.id}`, `Conversation #${c.id}`,
            { 'aria-current': String(c.id) === open ? 'true' : null,
              class: 'conversation-link' }),
          h('span', { class: 'muted' }, ` · ${stamp(c.created_at)} · ${c.messages} messages`),
          c.summary ? h('p', { class: 'summary' }, c.summary) : null)))))),
    pager(index, !!sessions.next_cursor, load));
  };
  const shown = [load(0)];
  if (open) shown.push(showConversation(detail, entity, Number(open), stale));
  else replace(detail, notice('Pick a conversation to read its messages.'));
  await Promise.all(shown);
}

async function showConversation(detail, entity, id, stale) {
  const messages = [];
  let cursor = null;
  do {
    const page = await api('GET', `/v1/conversations/${id}/messages`, {
      params: { entity_id: entity, limit: 1000, cursor } });
    messages.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && messages.length < 5000);
  if (stale()) return;
  replace(detail, h('h3', {}, `Conversation #${id}`),
    h('ol', { class: 'messages', id: 'messages' }, messages.map((m) =>
      h('li', { class: `message role-${m.role}` },
        h('p', { class: 'meta' }, h('strong', {}, m.role), ` · ${stamp(m.created_at)}`),
        h('p', { class: 'message-text' }, messageText(m.content))))));
}
