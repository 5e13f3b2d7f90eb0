// The dashboard's only way to the server: the public /v1 REST API with the session cookie
// (set by POST /ui/session), plus X-CSRF-Token on every request that may write.

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** An error answer of the API: {error: {code, message, field}} with the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message, fieldName) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = fieldName;
  }
}

/** The signed-in session: {csrf_token, key: ApiKeyOut} or null. */
export const session = { csrf: null, key: null };

/** Called when the server answers 401 (session ended): set by main.js. */
export const hooks = { signedOut: () => {} };

/** A query string from an object: arrays repeat the name, null/undefined/'' are left out. */
export function query(params = {}) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const e = body && body.error ? body.error : {};
  return new ApiError(response.status, e.code || 'http_' + response.status,
    e.message || `${response.status} ${response.statusText}`, e.field || null);
}

/**
 * Call the server: api('GET', '/v1/memories', {params: {...}}) -> parsed JSON (null for 204).
 * Throws ApiError for an error answer; a 401 also signs the page out.
 */
export async function api(method, path, { params, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!SAFE.has(method) && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  const response = await fetch(path + query(params), {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !path.startsWith('/ui/')) {
      session.csrf = null;
      session.key = null;
      hint.set(false);
      hooks.signedOut(error);
    }
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}

/** Every page of a cursor-paged list: the items of all pages (at most `max`). */
export async function allPages(path, params, max = 100000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api('GET', path, { params: { ...params, limit: 1000, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// a hint (not a secret: the cookie is HttpOnly) that this browser signed in, so a fresh
// browser asks nothing (no 401 in its console) and a reload asks GET /ui/session
const HINT = 'memori-signed-in';
const hint = {
  get: () => { try { return localStorage.getItem(HINT) === '1'; } catch { return true; } },
  set: (on) => {
    try {
      if (on) localStorage.setItem(HINT, '1');
      else localStorage.removeItem(HINT);
    } catch {
      // storage disabled: resume() then always asks the server
    }
  },
};

/** Read the current session (after a reload): true when signed in. */
export async function resume() {
  if (!hint.get()) return false;
  try {
    const body = await api('GET', '/ui/session');
    session.csrf = body.csrf_token;
    session.key = body.key;
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      hint.set(false);
      return false;
    }
    throw e;
  }
}

/** Sign in with an API key; throws ApiError (401) for a bad one. */
export async function signIn(key) {
  const body = await api('POST', '/ui/session', { body: { key } });
  session.csrf = body.csrf_token;
  session.key = body.key;
  hint.set(true);
}

/** Sign out (the server drops the session and clears the cookie). */
export async function signOut() {
  try {
    await api('DELETE', '/ui/session');
  } finally {
    session.csrf = null;
    session.key = null;
    hint.set(false);
  }
}

/** May this key write (edit, delete memories)? */
export const canWrite = () => !!session.key && session.key.scope !== 'read';
/** Is this an admin key (forget an entity, retry a job)? */
export const isAdmin = () => !!session.key && session.key.scope === 'admin';
