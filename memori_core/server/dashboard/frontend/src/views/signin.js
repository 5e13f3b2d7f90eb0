// Sign in with an API key (POST /ui/session); the key never goes into storage or the URL.
import { ApiError, signIn } from '../api.js';
import { field, h, notice, replace } from '../dom.js';

export function renderSignIn(main, done) {
  const input = h('input', {
    type: 'password', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false',
    'aria-describedby': 'key-help',
  });
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    field('key-input', 'API key', input),
    h('p', { id: 'key-help', class: 'help' },
      'A key made with “memori keys create” (it starts with mk_). A read key sees; ',
      'a write key also edits and deletes memories; an admin key also forgets entities ',
      'and retries jobs.'),
    button, status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(status);
    try {
      await signIn(input.value.trim());
      input.value = '';
      await done();
    } catch (e) {
      replace(status, notice(e instanceof ApiError && e.status === 401
        ? `That key was refused: ${e.message}` : String(e.message || e), 'error'));
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}
