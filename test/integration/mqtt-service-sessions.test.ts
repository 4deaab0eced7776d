// A persistent service account (a backend integration) collects device
// messages while it is offline, whether or not another service account is
// online, and across a restart of Nucleon: its session's subscriptions are
// what counts, as MQTT expects. Before, device messages were routed into MQTT
// only while some service account was connected, so an offline one collected
// them only by the luck of another being online.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { tempDir, waitFor } from '../helpers/index.js';
import { addServiceAccount, connect, startBroker } from '../helpers/mqtt-support.js';

const SERVICE = { name: 'backend', password: 'backend-password-0123456789' };

test('an offline persistent service account gets the device messages sent while it was away, also across a restart', async (t) => {
  const dir = await tempDir(t);
  const config = { mqtt: { auth: { anonymous: true } } };
  const first = await startBroker(t, { dir, config });
  await addServiceAccount(first, SERVICE.name, SERVICE.password);
  const serviceOptions = { clientId: `svc:${SERVICE.name}`, username: `svc:${SERVICE.name}`, password: SERVICE.password, clean: false };
  const service = await connect(t, first, serviceOptions);
  await service.subscribeAsync('+/app/p/#', { qos: 1 });
  await service.endAsync();

  // Nobody of the server side is online now.
  const device = await connect(t, first, { clientId: 'svc-dev-1' });
  await device.publishAsync('svc-dev-1/app/p/report', 'while away', { qos: 1 });
  await device.endAsync();
  await first.nucleon.stop();

  const second = await startBroker(t, { dir, config });
  const device2 = await connect(t, second, { clientId: 'svc-dev-1' });
  await device2.publishAsync('svc-dev-1/app/p/report', 'after the restart', { qos: 1 });

  const received: string[] = [];
  // The handler is in place before the CONNACK: queued messages follow it at once.
  const back = mqtt.connect(`mqtts://localhost:${second.port}`, { ca: second.ca, reconnectPeriod: 0, protocolVersion: 4, ...serviceOptions });
  t.after(() => back.endAsync(true));
  back.on('message', (_topic, payload) => received.push(payload.toString()));
  await waitFor(() => received.length >= 2, 'both messages delivered to the returning service account');
  assert.deepEqual(received, ['while away', 'after the restart']);
});
