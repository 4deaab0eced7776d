// README "Events" is checked against the code: every event type of the union
// (EVENT_TYPES) has one row, and the runners a row says accept it are exactly
// the ones that registered for it when every shipped runner is started.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EnvApp } from '../../examples/env-app.js';
import { createNucleon, silentLogger, type ConfigInput } from '../../src/index.js';
import { EVENT_TYPES } from '../../src/events.js';
import { closeAfter, repoRoot, tempDir } from '../helpers/index.js';

/** The rows of README "### Events": event type → the runners in "accepted by". */
function documentedTable(): Map<string, string[]> {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('\n### Events\n');
  assert.ok(start >= 0, 'README.md has an "### Events" section');
  const end = readme.indexOf('\n### ', start + 1);
  const rows = new Map<string, string[]>();
  for (const line of readme.slice(start, end).split('\n')) {
    const cells = /^\| `([A-Za-z]+)` \| [^|]+ \| ([^|]+) \| [^|]+ \|$/.exec(line);
    if (!cells?.[1] || !cells[2]) continue;
    assert.ok(!rows.has(cells[1]), `README "Events" lists ${cells[1]} twice`);
    rows.set(
      cells[1],
      cells[2].split(',').map((name) => name.trim()),
    );
  }
  return rows;
}

/** Every runner started by a Nucleon with this config, plus the example app, by the name it registered → its accepted types. */
async function registrations(t: TestContext, extra: ConfigInput): Promise<Map<string, string[]>> {
  const dir = await tempDir(t);
  const nucleon = createNucleon(
    {
      store: { path: `${dir}/data` },
      certs: { dir: `${dir}/certs` },
      mqtt: { tls: { enabled: true, host: '127.0.0.1', port: 0 } },
      ota: { enabled: true, http: { enabled: true, host: '127.0.0.1', port: 0 } },
      admin: { enabled: true, host: '127.0.0.1', port: 0, api_key: 'readme-architecture-key-0123456789' },
      ...extra,
    },
    { logger: silentLogger() },
  );
  await nucleon.addRunner(new EnvApp());
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  return new Map(nucleon.broker.stats().map((runner) => [runner.name === 'env-app' ? 'app' : runner.name, runner.accepts]));
}

test('README "Events" has one row per event type, and "accepted by" is what the runners register', async (t) => {
  const documented = documentedTable();
  assert.deepEqual([...documented.keys()].sort(), [...EVENT_TYPES].sort(), 'README "Events" rows against EVENT_TYPES (src/events.ts)');

  // With [influx] the influx runner takes telemetry, without it the embedded keeper: start both ways.
  const withInflux = await registrations(t, { influx: { url: 'http://127.0.0.1:9', bucket: 'nucleon' } });
  const embedded = await registrations(t, {});
  const runners = new Map([...withInflux, ...embedded]);
  assert.deepEqual([...runners.keys()].sort(), ['admin', 'app', 'campaigns', 'influx', 'mqtt', 'ota', 'telemetry-recent']);

  for (const [type, acceptedBy] of documented) {
    if (type === 'NewRunner') {
      assert.deepEqual(acceptedBy, ['the broker']);
      continue;
    }
    const registered = [...runners].filter(([, accepts]) => accepts.includes(type)).map(([name]) => name);
    assert.deepEqual([...acceptedBy].sort(), registered.sort(), `README "Events": the runners accepting ${type}`);
  }
});
