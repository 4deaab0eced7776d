import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EnvApp } from '../../examples/env-app.js';
import { protocol } from '../../src/index.js';
import { waitFor } from '../helpers/index.js';
import { connect, deviceTls, startBroker } from '../helpers/mqtt-support.js';

// The example app runner end to end: a real device over TLS publishes a CBOR
// reading on <uid>/app/p/env and gets the app's CBOR answer on <uid>/app/s/env.
test('examples/env-app answers a real device over MQTT/TLS', async (t) => {
  const broker = await startBroker(t);
  await broker.nucleon.addRunner(new EnvApp());
  const uid = '352656100000777';
  const tls = await deviceTls(broker, uid);
  const device = await connect(t, { port: broker.port, ca: tls.ca }, { clientId: uid, cert: tls.cert, key: tls.key });
  await device.subscribeAsync(`${uid}/app/s/env`, { qos: 1 });

  const answers: { topic: string; payload: Buffer }[] = [];
  device.on('message', (topic, payload) => answers.push({ topic, payload }));
  const reading = protocol.encodeCbor(new Map([[0, 22.25], [1, 41]]));
  await device.publishAsync(`${uid}/app/p/env`, reading, { qos: 1 });
  await device.publishAsync(`${uid}/app/p/env`, protocol.encodeCbor(new Map([['temperature', 23]])), { qos: 1 });
  await waitFor(() => answers.length >= 2, 'two answers on env');

  assert.deepEqual(
    answers.map((a) => ({ topic: a.topic, body: protocol.decodeCbor(a.payload) })),
    [
      { topic: `${uid}/app/s/env`, body: new Map<string, unknown>([['ok', true], ['count', 1]]) },
      { topic: `${uid}/app/s/env`, body: new Map<string, unknown>([['ok', true], ['count', 2]]) },
    ],
  );
});
