import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EnvApp } from '../../examples/env-app.js';
import { createNucleon, protocol, silentLogger, type Event } from '../../src/index.js';
import { tempDir, closeAfter } from '../helpers/index.js';

// The example app against the real broker; the MQTT end-to-end version is in test/integration/example-app-mqtt.test.ts.
test('EnvApp answers readings, emits points and serves stats by correlation id', async (t) => {
  const dir = await tempDir(t);
  const nucleon = createNucleon(
    { store: { path: `${dir}/data` }, certs: { dir: `${dir}/certs`, auto_generate: false }, mqtt: { tls: { enabled: false } }, ota: { http: { enabled: false } }, admin: { enabled: false } },
    { logger: silentLogger() },
  );
  const seen: Event[] = [];
  await nucleon.addRunner(new EnvApp());
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  nucleon.broker.register({
    type: 'NewRunner',
    name: 'observer',
    accepts: ['ApplicationResponse', 'InfluxDataSave', 'ApplicationManagementResponse'],
    inbox: { handle: (event) => void seen.push(event) },
  });
  const reading = protocol.encodeCbor(new Map([[0, 21.5], [1, 40]]));
  await nucleon.broker.publish({ type: 'ApplicationRequest', uid: 'dev-1', target: 'env', payload: reading, receivedAt: 1000 });
  await nucleon.broker.publish({ type: 'ApplicationRequest', uid: 'dev-1', target: 'env', payload: protocol.encodeCbor('nonsense'), receivedAt: 1001 });
  await nucleon.broker.publish({ type: 'ApplicationManagementRequest', correlationId: 'c-1', target: 'env.stats', payload: null });
  await nucleon.broker.publish({ type: 'ApplicationManagementRequest', correlationId: 'c-2', target: 'nope', payload: null });
  await nucleon.broker.drain(5000);

  const responses = seen.filter((e) => e.type === 'ApplicationResponse');
  assert.equal(responses.length, 2);
  assert.deepEqual(protocol.decodeCbor(responses[0]?.type === 'ApplicationResponse' ? responses[0].payload : new Uint8Array()), new Map<string, unknown>([['ok', true], ['count', 1]]));
  assert.deepEqual(protocol.decodeCbor(responses[1]?.type === 'ApplicationResponse' ? responses[1].payload : new Uint8Array()), new Map<string, unknown>([['ok', false], ['error', 'expected a CBOR map']]));
  assert.deepEqual(
    seen.filter((e) => e.type === 'InfluxDataSave'),
    [{ type: 'InfluxDataSave', points: [{ measurement: 'env', tags: { id: 'dev-1' }, fields: { temperature: 21.5, humidity: 40 }, timestampMs: 1000 }] }],
  );
  assert.deepEqual(
    seen.filter((e) => e.type === 'ApplicationManagementResponse'),
    [
      { type: 'ApplicationManagementResponse', correlationId: 'c-1', payload: { 'dev-1': 1 } },
      { type: 'ApplicationManagementResponse', correlationId: 'c-2', error: { code: 'UNKNOWN_TARGET', message: 'env-app has no target "nope"' } },
    ],
  );
});
