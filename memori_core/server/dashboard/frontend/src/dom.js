// DOM helpers. Text from the database is only ever inserted as text: h() turns every string
// child into a text node (document.createTextNode); nothing here sets innerHTML.

/**
 * Make an element: h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', otherNode, [more]).
 * Attributes named on* are event listeners; `dataset` and boolean attributes are handled;
 * null/undefined/false attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value') {
      el.value = value;
    } else if (name === 'checked' || name === 'disabled' || name === 'selected') {
      el[name] = Boolean(value);
    } else if (name === 'style') {
      throw new Error('h(): no style attribute (the CSP forbids it): use a class');
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings as text nodes, arrays, skipping null/false). */
export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A date-time as the browser's locale shows it (UTC ISO strings from the API). */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A short date (YYYY-MM-DD HH:MM, UTC) that sorts and compares. */
export function stamp(iso) {
  if (!iso) return '';
  return String(iso).replace('T', ' ').slice(0, 16) + ' UTC';
}

/** A number with at most `digits` decimals. */
export function num(value, digits = 3) {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'number') return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** An announcement for screen readers and sighted users (role=status/alert region). */
export function notice(text, kind = 'status') {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    text);
}

/** A labelled form field: returns [label, input]; the input gets `id`. */
export function field(id, label, input) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A link to a hash route. */
export function link(route, text, attrs = {}) {
  return h('a', { href: `#${route}`, ...attrs }, text);
}
