// Child process for test/system/process-guard.test.ts: a Nucleon (admin endpoint only)
// run by stopOnSignals, as `nucleon serve` runs one. It leaves a promise
// rejection unhandled, prints its own /metrics lines for the counter, then
// throws from a timer, where nothing can catch it.
import type { AdminRunner } from '../../src/admin/index.js';
import { createNucleon } from '../../src/index.js';
import { createLogger } from '../../src/logger.js';
import { stopOnSignals } from '../../src/signals.js';
import { waitFor } from './index.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: process-guard-child.ts <dir>');
const logger = createLogger({ level: 'info', format: 'json' });
const nucleon = createNucleon(
  {
    store: { path: `${dir}/data` },
    certs: { dir: `${dir}/certs` },
    mqtt: { tls: { enabled: false } },
    ota: { enabled: false, http: { enabled: false } },
    admin: { host: '127.0.0.1', port: 0, api_key: 'process-guard-admin-key-0123' },
  },
  { logger },
);
void stopOnSignals(nucleon, logger).then((code) => process.exit(code));
await nucleon.start();
const port = (nucleon.runner('admin') as AdminRunner).address()?.port ?? 0;
const unhandled = async () => (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).split('\n').filter((line) => line.startsWith('nucleon_process_unhandled_total{'));

// eslint-disable-next-line @typescript-eslint/no-floating-promises -- the point: a rejection nobody handles
Promise.reject(new Error('a stray rejection'));
const lines = await waitFor(async () => {
  const found = await unhandled();
  return found.includes('nucleon_process_unhandled_total{kind="rejection"} 1') ? found : undefined;
}, 'the rejection to be counted');
process.stdout.write(`metrics after the rejection: ${lines.join(' | ')}\n`);
setTimeout(() => {
  throw new Error('a stray exception');
}, 0);
