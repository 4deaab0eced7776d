// The dashboard's "Recent admin actions" card: the instance's last admin
// actions from `audit.list` (README "Audit log"), newest on top. It owns only
// its DOM; the connection is app.js's and passed in.

/** Rows shown; the server keeps admin.audit_size, the log keeps them all. */
const SHOWN = 20;

const $ = (selector) => document.querySelector(selector);

/** @param {{ request: (cmd: string, args?: object) => Promise<any> }} deps */
export function createAuditView({ request }) {
  return {
    async refresh() {
      const { entries } = await request('audit.list', { limit: SHOWN });
      const body = $('#audit tbody');
      body.replaceChildren();
      for (const entry of [...entries].reverse()) {
        const row = document.createElement('tr');
        row.append(
          cell(new Date(entry.at).toLocaleTimeString()),
          cell(entry.actor),
          cell(entry.via),
          cell(entry.command, 'mono'),
          cell(entry.target ?? ''),
          cell(entry.result, entry.result === 'ok' ? '' : 'warn'),
        );
        body.append(row);
      }
      $('#audit-empty').hidden = entries.length > 0;
    },
  };
}

// textContent only: nothing from the server is parsed as HTML.
function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
