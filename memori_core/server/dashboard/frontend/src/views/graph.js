// Knowledge graph: every triple of the entity (GET /v1/triples, all pages) drawn with
// cytoscape.js: nodes are subjects and objects, edges are triples (labelled by predicate).
// Click a node (or pick it in the list, by keyboard) for its triples and their source
// memories (memory_id -> GET /v1/memories/{id}). The instance is window.__memoriGraph (tests
// and benchmarks read it), with window.__memoriGraphTimings (ms).
import cytoscape from 'cytoscape';
import { allPages, api } from '../api.js';
import { field, h, link, notice, replace } from '../dom.js';

/** Above this many nodes the layout is concentric by degree (linear time) and edge labels
 * show only for the selected node's edges. */
const BIG = 300;

export async function renderGraph(body, entity, stale) {
  const t0 = performance.now();
  const triples = await allPages('/v1/triples', { entity_id: entity });
  if (stale()) return;
  const tFetched = performance.now();
  if (window.__memoriGraph) {
    window.__memoriGraph.destroy();
    window.__memoriGraph = null;
  }
  if (!triples.length) {
    replace(body, h('h2', {}, 'Knowledge graph'),
      notice('No triples yet: augmentation draws them from the conversations.'));
    return;
  }
  const names = new Map(); // node name -> id
  const nodes = [];
  const edges = [];
  const nodeId = (name) => {
    if (!names.has(name)) {
      const id = `n${names.size}`;
      names.set(name, id);
      nodes.push({ data: { id, label: name } });
    }
    return names.get(name);
  };
  const byEdge = new Map(); // edge id -> its triple (kept out of cytoscape's element data)
  for (const t of triples) {
    byEdge.set(`t${t.id}`, t);
    edges.push({ data: { id: `t${t.id}`, source: nodeId(t.subject), target: nodeId(t.object),
      label: t.predicate } });
  }
  const big = nodes.length > BIG;
  const container = h('div', { id: 'graph', class: 'graph', role: 'img',
    'aria-label': `Knowledge graph of ${entity}: ${nodes.length} nodes, ${edges.length} edges. ` +
      'Use the node list to explore it by keyboard.' });
  const picker = h('select', { name: 'node' }, h('option', { value: '' }, '— pick a node —'),
    [...names.entries()].sort((a, b) => a[0].localeCompare(b[0]))
      .map(([name, id]) => h('option', { value: id }, name)));
  const panel = h('section', { id: 'node-panel', class: 'node-panel', 'aria-live': 'polite',
    'aria-label': 'Selected node' }, notice('Click a node, or pick one in the list.'));
  const controls = h('div', { class: 'graph-controls' },
    field('graph-node', 'Node', picker),
    h('button', { type: 'button', class: 'secondary', onclick: () => cy.fit(undefined, 20) },
      'Fit'),
    h('button', { type: 'button', class: 'secondary', onclick: () => zoomBy(1.25) },
      'Zoom in'),
    h('button', { type: 'button', class: 'secondary', onclick: () => zoomBy(0.8) },
      'Zoom out'));
  replace(body, h('h2', {}, 'Knowledge graph'),
    h('p', { class: 'help', id: 'graph-summary' },
      `${nodes.length} nodes · ${edges.length} triples${big ? ' · concentric layout' : ''}`),
    controls, h('div', { class: 'graph-wrap' }, container, panel));

  const tLayout = performance.now();
  const cy = cytoscape({
    container,
    elements: { nodes, edges },
    hideEdgesOnViewport: big,
    textureOnViewport: false,
    pixelRatio: 1,
    style: [
      { selector: 'node', style: {
        'background-color': '#0b57d0', label: 'data(label)', color: '#1a1a1a',
        'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 3, width: 14, height: 14,
        'min-zoomed-font-size': big ? 9 : 0 } },
      { selector: 'edge', style: {
        width: 1.2, 'line-color': '#8a8f98', 'target-arrow-color': '#8a8f98',
        'target-arrow-shape': 'triangle', 'curve-style': big ? 'haystack' : 'bezier',
        label: big ? '' : 'data(label)', 'font-size': 9, color: '#3c4043',
        'text-rotation': 'autorotate', 'text-background-color': '#ffffff',
        'text-background-opacity': 1, 'text-background-padding': 1 } },
      { selector: 'node:selected', style: { 'background-color': '#b3261e', width: 20,
        height: 20 } },
      { selector: 'edge.near', style: { 'line-color': '#b3261e', 'target-arrow-color': '#b3261e',
        width: 2, label: 'data(label)', 'curve-style': 'bezier' } },
    ],
    layout: big
      ? { name: 'concentric', animate: false, concentric: (n) => n.degree(),
        levelWidth: () => 2, minNodeSpacing: 6 }
      : { name: 'cose', animate: false, numIter: 500, randomize: false, nodeRepulsion: 8000,
        idealEdgeLength: 60 },
  });
  if (cy.zoom() > 1.5) { // a small graph: no giant nodes
    cy.zoom(1.5);
    cy.center();
  }
  const tDrawn = performance.now();
  window.__memoriGraph = cy;
  const timings = { fetch_ms: tFetched - t0, layout_ms: tDrawn - tLayout,
    nodes: nodes.length, edges: edges.length };
  window.__memoriGraphTimings = timings;
  cy.one('render', () => {
    timings.first_render_ms = performance.now() - t0;
  });

  function zoomBy(factor) {
    cy.zoom({ level: cy.zoom() * factor,
      renderedPosition: { x: container.clientWidth / 2, y: container.clientHeight / 2 } });
  }

  const select = (id) => {
    const node = cy.getElementById(id);
    if (node.empty()) return;
    cy.elements().unselect();
    cy.edges('.near').removeClass('near');
    node.select();
    node.connectedEdges().addClass('near');
    picker.value = id;
    showNode(panel, entity, node, byEdge, stale);
  };
  cy.on('tap', 'node', (event) => {
    timings.tap_at = performance.now();
    select(event.target.id());
  });
  picker.addEventListener('change', () => {
    if (!picker.value) return;
    select(picker.value);
    cy.center(cy.getElementById(picker.value));
  });
}

async function showNode(panel, entity, node, byEdge, stale) {
  const name = node.data('label');
  const triples = node.connectedEdges().map((e) => byEdge.get(e.id()));
  const memoryIds = [...new Set(triples.map((t) => t.memory_id).filter((m) => m !== null))];
  const list = h('ul', { class: 'triples', id: 'node-triples' }, triples.map((t) =>
    h('li', {}, h('span', { class: 'subject' }, t.subject), ' ',
      h('span', { class: 'predicate' }, t.predicate), ' ',
      h('span', { class: 'object' }, t.object),
      t.memory_id !== null ? h('span', { class: 'muted' }, ` (memory #${t.memory_id})`) : null)));
  const sources = h('ul', { class: 'sources', id: 'node-memories' });
  const mentions = h('ul', { class: 'sources', id: 'node-mentions' });
  panel.dataset.loaded = 'false';
  const ticket = (panel.ticket = (panel.ticket || 0) + 1); // a later click wins
  replace(panel, h('h3', {}, name), h('h4', {}, `Triples (${triples.length})`), list,
    h('h4', {}, `Source memories (${memoryIds.length})`),
    memoryIds.length ? sources : h('p', { class: 'muted' }, 'Its triples name no memory.'),
    h('h4', {}, `Memories that mention “${name}”`), mentions);
  const [found, mentioning] = await Promise.all([
    Promise.all(memoryIds.slice(0, 50).map((id) =>
      api('GET', `/v1/memories/${id}`, { params: { entity_id: entity } }).catch(() => null))),
    api('GET', '/v1/memories', { params: { entity_id: entity, scope: 'entity', q: name,
      limit: 10 } }).then((page) => page.items, () => []),
  ]);
  if (stale() || !panel.isConnected || panel.ticket !== ticket) return;
  const item = (m) => h('li', {},
    link(`/e/${encodeURIComponent(entity)}/memory/${m.id}`, m.content, { class: 'memory-link' }),
    h('span', { class: 'muted' }, ` · ${m.kind}`));
  replace(sources, found.filter(Boolean).map(item));
  if (memoryIds.length > 50) sources.append(h('li', {}, `… and ${memoryIds.length - 50} more`));
  replace(mentions, mentioning.length ? mentioning.map(item) : h('li', {}, 'none'));
  panel.dataset.loaded = 'true';
  const timings = window.__memoriGraphTimings;
  if (timings && timings.tap_at !== undefined) {
    timings.click_ms = performance.now() - timings.tap_at; // tap -> triples and memories shown
    timings.tap_at = undefined;
  }
}
