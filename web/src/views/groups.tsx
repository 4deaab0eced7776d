import { Page } from '../ui/shell.js';

/** Not built yet (web/VIEWS.md): a placeholder so the route exists. */
export function GroupsView() {
  return (
    <Page title="Groups">
      <p class="empty">This view is not built yet.</p>
    </Page>
  );
}
