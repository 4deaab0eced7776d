// /metrics and /healthz of a full instance (MQTT, OTA, telemetry, Influx, admin),
// and the README's metrics list checked against what /metrics really serves.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { AdminRunner } from '../src/admin/index.js';
import { silentLogger } from '../src/logger.js';
import { createNucleon } from '../src/nucleon.js';
import { repoRoot, tempDir } from './helpers/index.js';

test('a full instance serves every metric the README lists, and no undocumented one; /healthz lists the runners', async (t) => {
  const dir = await tempDir(t, 'nucleon-admin-metrics-');
  const nucleon = createNucleon(
    {
      log: { level: 'silent' },
      store: { path: path.join(dir, 'data') },
      certs: { dir: path.join(dir, 'certs') },
      mqtt: { tls: { host: '127.0.0.1', port: 0 } },
      ota: { http: { host: '127.0.0.1', port: 0 } },
      admin: { port: 0, api_key: 'metrics-test-key-0123456789' },
      // Nothing listens there; the writer only has to exist for its metrics.
      influx: { url: 'http://127.0.0.1:9', bucket: 'telemetry', flush_interval_ms: 600_000 },
    },
    { logger: silentLogger() },
  );
  await nucleon.start();
  t.after(() => nucleon.stop());
  const port = (nucleon.runner('admin') as AdminRunner).address()?.port ?? 0;

  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const served = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`));
  const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split('<!-- metrics list: begin -->')[1]?.split('<!-- metrics list: end -->')[0] ?? '';
  const documented = new Set([...section.matchAll(/^\| `(nucleon_\w+)` \| (\w+) \|/gm)].map((m) => `${m[1]} ${m[2]}`));
  assert.ok(documented.size > 30, 'the README lists the metrics');
  assert.deepEqual([...served].filter((m) => !documented.has(m)).sort(), [], 'served but not in the README');
  assert.deepEqual([...documented].filter((m) => !served.has(m)).sort(), [], 'in the README but not served');

  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  assert.equal(health.status, 200);
  const body = (await health.json()) as { status: string; runners: { name: string }[] };
  assert.equal(body.status, 'ok');
  assert.ok(['mqtt', 'ota', 'admin'].every((name) => body.runners.some((r) => r.name === name)), JSON.stringify(body.runners.map((r) => r.name)));
});
