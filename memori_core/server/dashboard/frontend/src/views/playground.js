// Recall playground: a message as this entity (and persona = process) -> POST /v1/recall with
// context: the exact framed block the context pipeline injects, its tokens within the budget,
// and each hit's score with the why the server gives (rendered only where present).
import { api } from '../api.js';
import { field, h, notice, num, replace, stamp } from '../dom.js';

const WHY = [
  ['dense_rank', 'Dense rank'], ['lexical_rank', 'Lexical rank'], ['fused', 'Fused'],
  ['recency', 'Recency'], ['mentions', 'Mentions'], ['context', 'Context'],
];

export async function renderPlayground(body, entity, params, stale) {
  const processes = await api('GET', '/v1/processes', { params: { entity_id: entity } });
  if (stale()) return;
  const message = h('textarea', { name: 'query', rows: 3, required: false,
    placeholder: 'What should I cook tonight?' });
  const persona = h('select', { name: 'process' },
    h('option', { value: '' }, 'no persona (every process)'),
    processes.items.filter((p) => p.process_id !== null).map((p) =>
      h('option', { value: p.process_id }, p.process_id)));
  const limit = h('input', { type: 'number', name: 'limit', min: 1, max: 100, value: '' ,
    placeholder: 'server default' });
  const out = h('div', { class: 'results', 'aria-live': 'polite', id: 'playground-out' });
  const button = h('button', { type: 'submit' }, 'Recall');
  const form = h('form', { class: 'card', 'aria-labelledby': 'pg-title' },
    h('h2', { id: 'pg-title' }, 'Recall playground'),
    h('p', { class: 'help' }, 'What the model would be shown for this message: the framed ',
      'block the context pipeline puts into its prompt, within the budget.'),
    field('pg-query', `Message from ${entity}`, message),
    field('pg-process', 'Persona (process)', persona),
    field('pg-limit', 'Hits at most', limit),
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    const request = { entity_id: entity, query: message.value, context: true };
    if (persona.value) request.process_id = persona.value;
    else request.scope = 'entity';
    if (limit.value) request.limit = Number(limit.value);
    try {
      const result = await api('POST', '/v1/recall', { body: request });
      renderResult(out, result);
    } catch (e) {
      replace(out, notice(`Recall failed: ${e.message}`, 'error'));
    } finally {
      button.disabled = false;
    }
  });
  replace(body, form, out);
  if (params.get('q')) {
    message.value = params.get('q');
    form.requestSubmit();
  }
}

function renderResult(out, result) {
  const ctx = result.context;
  const block = ctx && ctx.block;
  replace(out,
    h('section', { 'aria-labelledby': 'block-title' },
      h('h3', { id: 'block-title' }, 'The framed block'),
      ctx ? h('p', { class: 'budget', id: 'budget' },
        `${ctx.tokens} tokens of a ${ctx.budget}-token budget · ${ctx.lines.length} lines`)
        : null,
      block ? h('pre', { class: 'block', id: 'context-block', tabindex: 0 }, block)
        : notice('Nothing would be injected (no memory passed the threshold).')),
    h('section', { 'aria-labelledby': 'hits-title' },
      h('h3', { id: 'hits-title' }, `Hits (${result.hits.length})`),
      result.hits.length ? hitTable(result.hits) : notice('No hits.')));
}

function hitTable(hits) {
  const whyCols = WHY.filter(([k]) => hits.some((hit) => hit.why && k in hit.why));
  return h('table', { id: 'hits', 'aria-label': 'Hits, best first' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'n' }, '#'), h('th', { scope: 'col' }, 'Memory'),
      h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col', class: 'n' }, 'Score'),
      h('th', { scope: 'col', class: 'n' }, 'Similarity'),
      whyCols.map(([, label]) => h('th', { scope: 'col', class: 'n' }, label)),
      h('th', { scope: 'col' }, 'Created'))),
    h('tbody', {}, hits.map((hit, i) => h('tr', {},
      h('td', { class: 'n' }, String(i + 1)),
      h('td', { class: 'content' }, hit.content),
      h('td', {}, hit.kind),
      h('td', { class: 'n' }, num(hit.score)),
      h('td', { class: 'n' }, num(hit.similarity)),
      whyCols.map(([k]) => h('td', { class: 'n' },
        hit.why && hit.why[k] !== null && hit.why[k] !== undefined ? num(hit.why[k]) : '—')),
      h('td', { class: 'nowrap' }, stamp(hit.created_at))))));
}
