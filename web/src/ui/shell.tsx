// The frame around every view: the login form, the header with the navigation
// and the connection indicator, and the error banner.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { ConnectionState } from '../api/client.js';
import { NAV, type ViewName } from '../router.js';
import { useConnection, useConsole } from './context.js';
import type { ErrorEntry } from './errors.js';
import { useNow } from './now.js';

export function LoginForm({ problem }: { problem?: string | undefined }) {
  const { client } = useConsole();
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(problem);
  useEffect(() => setError(problem), [problem]);
  const submit = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    client
      .login(key.trim())
      .catch((failure: unknown) => setError(failure instanceof Error ? failure.message : String(failure)))
      .finally(() => setBusy(false));
  };
  return (
    <main class="login-page">
      <section id="login" class="card login" aria-labelledby="login-title">
        <h1 id="login-title">Nucleon console</h1>
        <form id="login-form" onSubmit={submit}>
          <label for="api-key">API key</label>
          <input id="api-key" name="api-key" type="password" autocomplete="current-password" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          <button id="login-button" type="submit" disabled={busy}>
            {busy ? 'Logging in…' : 'Log in'}
          </button>
        </form>
        {error && (
          <p id="login-error" class="message error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">
          The key is in <code>admin.api_key</code>, <code>NUCLEON_ADMIN_API_KEY</code>, or the file <code>&lt;store.path&gt;/admin-api-key</code>.
        </p>
      </section>
    </main>
  );
}

export function ConnectionIndicator() {
  const state = useConnection();
  const now = useNow(1000);
  const { text, tone } = describe(state, now);
  return (
    <span id="status" class={`status ${tone}`} data-state={state.kind} role="status" aria-live="polite" title={state.kind === 'reconnecting' ? state.reason : undefined}>
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function describe(state: ConnectionState, now: number): { text: string; tone: 'online' | 'offline' | 'error' } {
  switch (state.kind) {
    case 'connected':
      return { text: 'connected', tone: 'online' };
    case 'connecting':
      return { text: 'connecting…', tone: 'offline' };
    case 'reconnecting': {
      const seconds = Math.max(0, Math.ceil((state.retryAt - now) / 1000));
      return { text: seconds > 0 ? `reconnecting in ${seconds} s` : 'reconnecting…', tone: 'error' };
    }
    case 'logged-out':
      return { text: 'logged out', tone: 'offline' };
  }
}

export function Header({ current }: { current: ViewName }) {
  const { client } = useConsole();
  const [open, setOpen] = useState(false);
  const active = current === 'device' ? 'devices' : current;
  return (
    <header class="top">
      <a class="brand" href="#/overview">
        Nucleon
      </a>
      <button type="button" class="menu-button secondary" aria-expanded={open} aria-controls="nav" onClick={() => setOpen(!open)}>
        Menu
      </button>
      <nav id="nav" class={open ? 'open' : ''} aria-label="Views">
        <ul>
          {NAV.map((item) => (
            <li key={item.view}>
              <a href={`#/${item.view}`} aria-current={active === item.view ? 'page' : undefined} onClick={() => setOpen(false)}>
                {item.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="top-right">
        <ConnectionIndicator />
        <button id="logout-button" type="button" class="secondary" onClick={() => client.logout()}>
          Log out
        </button>
      </div>
    </header>
  );
}

export function ErrorBanner() {
  const { errors } = useConsole();
  const [entries, setEntries] = useState<readonly ErrorEntry[]>(errors.list);
  useEffect(() => errors.subscribe(setEntries), [errors]);
  if (entries.length === 0) return null;
  return (
    <div id="message" class="banner error" role="alert">
      <ul>
        {entries.map((entry) => (
          <li key={entry.action} data-action={entry.action}>
            <strong>{entry.action} failed:</strong> <span class="banner-text">{entry.message}</span>
            <button type="button" class="link" aria-label={`Dismiss the error of ${entry.action}`} onClick={() => errors.clear(entry.action)}>
              Dismiss
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

export function Page({ title, actions, children }: { title: ComponentChildren; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section class="page">
      <div class="page-head">
        <h1>{title}</h1>
        {actions && <div class="page-actions">{actions}</div>}
      </div>
      {children}
    </section>
  );
}
