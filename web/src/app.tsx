// The console: login, then the shell (header, error banner) around the view
// that the hash names. Each view is a component in views/ (web/VIEWS.md).
import { useEffect, useState } from 'preact/hooks';
import type { Route } from './router.js';
import { useConnection, useConsole } from './ui/context.js';
import { useRoute } from './ui/route.js';
import { ErrorBanner, Header, LoginForm } from './ui/shell.js';
import { AuditView } from './views/audit.js';
import { CampaignsView } from './views/campaigns.js';
import { DevicePage } from './views/device.js';
import { DevicesView } from './views/devices.js';
import { GroupsView } from './views/groups.js';
import { ImagesView } from './views/images.js';
import { OverviewView } from './views/overview.js';

export function App() {
  const { client, errors } = useConsole();
  const connection = useConnection();
  const route = useRoute();
  // Logged in once in this page: the shell stays while reconnecting, the login form comes back only when logged out.
  const [everConnected, setEverConnected] = useState(false);
  useEffect(() => {
    if (connection.kind === 'connected') {
      setEverConnected(true);
      errors.clear('connection');
    } else if (connection.kind === 'reconnecting') {
      errors.fail('connection', new Error(`${connection.reason}; the console reconnects on its own`));
    } else if (connection.kind === 'logged-out') {
      setEverConnected(false);
      errors.clear('connection');
    }
  }, [connection, errors]);
  useEffect(() => {
    const key = client.rememberedKey();
    if (key !== undefined && client.state.kind === 'logged-out') client.login(key).catch((error: unknown) => console.warn('login with the remembered key failed', error));
  }, [client]);

  if (connection.kind === 'logged-out' || (!everConnected && connection.kind !== 'connected')) {
    return <LoginForm problem={connection.kind === 'logged-out' ? connection.problem : undefined} />;
  }
  return (
    <div class="shell" data-view={route.view}>
      <a class="skip" href="#view">
        Skip to content
      </a>
      <Header current={route.view} />
      <ErrorBanner />
      <main id="view" tabIndex={-1}>
        <View route={route} />
      </main>
    </div>
  );
}

function View({ route }: { route: Route }) {
  switch (route.view) {
    case 'overview':
      return <OverviewView />;
    case 'devices':
      return <DevicesView />;
    case 'device':
      return <DevicePage key={route.uid} uid={route.uid} />;
    case 'images':
      return <ImagesView />;
    case 'groups':
      return <GroupsView />;
    case 'campaigns':
      return <CampaignsView />;
    case 'audit':
      return <AuditView />;
  }
}
