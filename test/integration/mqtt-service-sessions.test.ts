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

// Nucleon routes many messages at once and the persistent session's store
// finishes their writes out of order; aedes dropped a message older than the
// last one sent as a "duplicate" and cleared its stored copy, although the
// device had its PUBACK (bench scenario 10 lost ~300 of 7,000). Every
// acknowledged message must reach the online persistent subscriber.
test('an online persistent service account gets every acknowledged message of many devices publishing at once', async (t) => {
  const dir = await tempDir(t);
  const broker = await startBroker(t, { dir, config: { mqtt: { auth: { anonymous: true } } } });
  await addServiceAccount(broker, SERVICE.name, SERVICE.password);
  const service = await connect(t, broker, { clientId: `svc:${SERVICE.name}`, username: `svc:${SERVICE.name}`, password: SERVICE.password, clean: false });
  const received = new Map<string, number[]>();
  service.on('message', (topic, payload) => {
    const list = received.get(topic) ?? [];
    list.push(Number(payload.toString()));
    received.set(topic, list);
  });
  await service.subscribeAsync('+/app/p/#', { qos: 1 });

  const DEVICES = 8;
  const PER_DEVICE = 150;
  const devices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => connect(t, broker, { clientId: `burst-dev-${i}` })));
  // All of a device's messages in flight at once (mqtt.js sends without waiting for PUBACKs).
  await Promise.all(devices.flatMap((device, i) => Array.from({ length: PER_DEVICE }, (_, n) => device.publishAsync(`burst-dev-${i}/app/p/data`, String(n), { qos: 1 }))));

  const total = () => [...received.values()].reduce((sum, list) => sum + list.length, 0);
  await waitFor(() => total() >= DEVICES * PER_DEVICE, `all ${DEVICES * PER_DEVICE} acknowledged messages delivered`, 30_000).catch((error: unknown) => {
    throw new Error(`${String(error)}; got ${total()}`);
  });
  for (let i = 0; i < DEVICES; i++) {
    const got = new Set(received.get(`burst-dev-${i}/app/p/data`) ?? []);
    assert.equal(got.size, PER_DEVICE, `device ${i}: every message arrived`);
  }
});

// A group commit acknowledges thousands of device messages at once, and each
// is then routed to the service account through the router's gate (1,000 at
// a time). Its wait list refused past 10,000: aedes took the refusal as an
// error and closed the device's connection, with its QoS 0 messages (bench
// scenario 10: 17,752 not delivered). A device's publishes now wait for the
// gate, its socket unread meanwhile.
test('a burst of QoS 0 from many devices, routed to a service account, loses nothing and disconnects no device', async (t) => {
  const dir = await tempDir(t);
  const broker = await startBroker(t, { dir, config: { mqtt: { auth: { anonymous: true } } } });
  await addServiceAccount(broker, SERVICE.name, SERVICE.password);
  const service = await connect(t, broker, { clientId: `svc:${SERVICE.name}`, username: `svc:${SERVICE.name}`, password: SERVICE.password });
  let received = 0;
  service.on('message', () => received++);
  await service.subscribeAsync('+/app/p/#', { qos: 0 });

  const DEVICES = 16;
  const PER_DEVICE = 2000;
  const devices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => connect(t, broker, { clientId: `q0-dev-${i}` })));
  let closed = 0;
  for (const device of devices) device.on('close', () => closed++);
  // QoS 0: mqtt.js writes them all at once; the broker reads them in large chunks.
  await Promise.all(devices.flatMap((device, i) => Array.from({ length: PER_DEVICE }, (_, n) => device.publishAsync(`q0-dev-${i}/app/p/data`, String(n), { qos: 0 }))));
  await waitFor(() => received >= DEVICES * PER_DEVICE || closed > 0, `all ${DEVICES * PER_DEVICE} messages at the service account`, 60_000).catch((error: unknown) => {
    throw new Error(`${String(error)}; got ${received}`);
  });
  assert.equal(closed, 0, 'no device was disconnected');
  assert.equal(received, DEVICES * PER_DEVICE);
  assert.doesNotMatch(await broker.nucleon.metrics.metrics(), /nucleon_mqtt_overloaded_total\{where="router"\} [1-9]/);
});
