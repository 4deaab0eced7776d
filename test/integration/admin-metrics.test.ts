// /metrics and /healthz of a full instance (MQTT, OTA, telemetry, Influx, admin),
// and the README's metrics list checked against what /metrics really serves.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/index.js';
import { startFullInstance } from '../helpers/admin-harness.js';

test('a full instance serves every metric the README lists, and no undocumented one; /healthz lists the runners', async (t) => {
  const { adminPort: port } = await startFullInstance(t, {
    // Nothing listens there; the writer only has to exist for its metrics.
    influx: { url: 'http://127.0.0.1:9', bucket: 'telemetry', flush_interval_ms: 600_000 },
  });

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
