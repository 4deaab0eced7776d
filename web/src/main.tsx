// Entry of the console bundle (scripts/build-console.ts).
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { adminSocketUrl, ConsoleClient } from './api/client.js';
import type { HealthSnapshot } from './api/types.js';
import { App } from './app.js';
import { HealthHistory } from './health-history.js';
import { ConsoleContext } from './ui/context.js';
import { ErrorStore } from './ui/errors.js';

const client = new ConsoleClient({ url: adminSocketUrl(location), storage: sessionStorage, createSocket: (url, protocol) => new WebSocket(url, protocol) });
const errors = new ErrorStore();
const health = new HealthHistory();
client.onProblem((action, error) => (error ? errors.fail(action, error) : errors.clear(action)));
// The overview's charts fill from the live stream whichever view is open; health.get gives the first point at once.
client.onEvent((event) => {
  if (event.name === 'health' || event.data.type === 'Health') health.add(event.data as unknown as HealthSnapshot);
});
client.onReady(() => {
  void errors.track('health.get', async () => health.add(await client.request<HealthSnapshot>('health.get')));
});

const root = document.getElementById('app');
if (!root) throw new Error('index.html has no #app');
root.replaceChildren();
render(
  <ConsoleContext.Provider value={{ client, errors, health }}>
    <App />
  </ConsoleContext.Provider>,
  root,
);
