// The memori dashboard: a single page with hash routes, over the /v1 API (see api.js).
//   #/                          entities (search by id prefix, paginated)
//   #/e/<entity>/memories?...   an entity's memories (filters in the query string)
//   #/e/<entity>/memory/<id>    a memory: provenance, history, edit, delete
//   #/e/<entity>/playground     recall playground (the framed block, hits and why)
//   #/e/<entity>/graph          knowledge graph (cytoscape)
//   #/e/<entity>/conversations  sessions and conversations as a timeline
//   #/e/<entity>/queue          the augmentation queue
import { ApiError, hooks, resume, session, signOut } from './api.js';
import { h, notice, replace } from './dom.js';
import { renderConversations } from './views/conversations.js';
import { renderEntities } from './views/entities.js';
import { renderEntityHeader } from './views/entity.js';
import { renderGraph } from './views/graph.js';
import { renderMemories } from './views/memories.js';
import { renderMemory } from './views/memory.js';
import { renderPlayground } from './views/playground.js';
import { renderQueue } from './views/queue.js';
import { renderSignIn } from './views/signin.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const nav = document.getElementById('site-nav');
let renderCount = 0;

/** The route of the location's hash: {parts: [...], params: URLSearchParams}. */
export function currentRoute() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(search) };
}

function showWho() {
  if (!session.key) {
    replace(who);
    nav.hidden = true;
    return;
  }
  nav.hidden = false;
  const k = session.key;
  const label = `${k.name || k.key_id} · ${k.scope} key`;
  replace(who, h('span', { class: 'who-key', 'data-testid': 'who' }, label), ' ',
    h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: onSignOut },
      'Sign out'));
}

async function onSignOut() {
  await signOut();
  showWho();
  window.location.hash = '#/';
  await route();
}

function setTitle(text) {
  document.title = text ? `${text} · memori dashboard` : 'memori dashboard';
}

/** Render the page of the current hash into <main>. */
export async function route() {
  const ticket = ++renderCount;
  const stale = () => ticket !== renderCount;
  document.body.dataset.ready = 'false';
  main.setAttribute('aria-busy', 'true');
  try {
    if (!session.key) {
      showWho();
      setTitle('Sign in');
      renderSignIn(main, async () => {
        showWho();
        await route();
      });
      return;
    }
    showWho();
    const { parts, params } = currentRoute();
    if (parts[0] === 'e' && parts[1]) {
      const entity = parts[1];
      const tab = parts[2] || 'memories';
      const body = h('div', { class: 'entity-body' });
      replace(main, renderEntityHeader(entity, tab), body);
      setTitle(`${entity} · ${tab}`);
      if (tab === 'memories') await renderMemories(body, entity, params, stale);
      else if (tab === 'memory') await renderMemory(body, entity, Number(parts[3]), stale);
      else if (tab === 'playground') await renderPlayground(body, entity, params, stale);
      else if (tab === 'graph') await renderGraph(body, entity, stale);
      else if (tab === 'conversations') await renderConversations(body, entity, params, stale);
      else if (tab === 'queue') await renderQueue(body, entity, stale);
      else replace(body, notice(`No page "${tab}".`, 'error'));
    } else {
      setTitle('Entities');
      await renderEntities(main, params, stale);
    }
  } catch (e) {
    if (stale()) return;
    if (e instanceof ApiError && e.status === 401) return; // hooks.signedOut re-routes
    replace(main, h('h1', {}, 'Something went wrong'),
      notice(e instanceof ApiError ? `${e.message} (${e.status} ${e.code})` : String(e),
        'error'));
  } finally {
    if (!stale()) {
      main.removeAttribute('aria-busy');
      showFlash();
      document.body.dataset.ready = 'true';
      window.__memoriRendered = (window.__memoriRendered || 0) + 1; // tests wait on it
      window.__memoriRenderedAt = performance.now(); // and time it
    }
  }
}

/** A message left by the previous page (e.g. "Deleted memory #12.") shown once on top. */
function showFlash() {
  const text = sessionStorage.getItem('memori-flash');
  if (!text) return;
  sessionStorage.removeItem('memori-flash');
  main.prepend(notice(text));
}

hooks.signedOut = () => {
  showWho();
  route();
};

// the skip link moves focus to <main> without touching the hash route
document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => {
  route().then(() => main.focus({ preventScroll: true }));
});

resume().then(route, (e) => {
  replace(main, h('h1', {}, 'The server did not answer'), notice(String(e), 'error'));
  document.body.dataset.ready = 'true';
  window.__memoriRendered = (window.__memoriRendered || 0) + 1;
});
