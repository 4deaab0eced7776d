// Audit: this instance's last admin actions (audit.list), newest first,
// refreshed while the view is open (actions of the CLI or other consoles show
// up within the interval; our own at once, as they are made elsewhere).
import { useEffect, useState } from 'preact/hooks';
import type { AuditEntry } from '../api/types.js';
import { useConsole, useOnReady } from '../ui/context.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';

const SHOWN = 200;
const REFRESH_MS = 5000;

export function AuditView() {
  const { client, errors } = useConsole();
  const [entries, setEntries] = useState<AuditEntry[] | undefined>(undefined);
  const [filter, setFilter] = useState('');

  const load = () => {
    void errors.track('audit.list', () => client.request<{ entries: AuditEntry[] }>('audit.list', { limit: SHOWN })).then((answer) => answer && setEntries([...answer.entries].reverse()));
  };
  useOnReady(load, []);
  useEffect(() => {
    const timer = setInterval(() => {
      if (client.state.kind === 'connected') load();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [client]);

  const needle = filter.trim().toLowerCase();
  const shown = (entries ?? []).filter((entry) => !needle || [entry.command, entry.actor, entry.target ?? '', entry.result].some((text) => text.toLowerCase().includes(needle)));
  return (
    <Page title="Audit">
      <section class="card stack" aria-label="Recent admin actions">
        <div class="filters">
          <div class="field q">
            <label for="audit-filter">Filter (command, who, target, result)</label>
            <input id="audit-filter" type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
          </div>
        </div>
        {entries && entries.length === 0 && (
          <p id="audit-empty" class="empty">
            No admin action on this instance yet (README "Audit log").
          </p>
        )}
        {entries && entries.length > 0 && (
          <div class="table-box">
            <table id="audit" class="cards">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Who</th>
                  <th scope="col">Via</th>
                  <th scope="col">Command</th>
                  <th scope="col">Target</th>
                  <th scope="col">Result</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((entry) => (
                  <tr key={entry.seq} data-seq={entry.seq}>
                    <td data-label="Time">
                      <Time at={entry.at} />
                    </td>
                    <td data-label="Who">{entry.actor}</td>
                    <td data-label="Via">{entry.via}</td>
                    <td class="mono" data-label="Command">
                      {entry.command}
                    </td>
                    <td class="wrap" data-label="Target">
                      {entry.target ?? ''}
                    </td>
                    <td data-label="Result" class={entry.result === 'ok' ? '' : 'warn'}>
                      {entry.result}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </Page>
  );
}
