import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, deviceTls, startBroker, subscribeCodes, waitForEvents } from '../helpers/mqtt-support.js';
import { waitFor } from '../helpers/index.js';

test('device A cannot publish as B: nothing reaches the app runner, the connection stays up', async (t) => {
  const broker = await startBroker(t);
  const tlsA = await deviceTls(broker, 'devA');
  const a = await connect(t, broker, { clientId: 'devA', ca: tlsA.ca, cert: tlsA.cert, key: tlsA.key });
  // Acknowledged (MQTT-3.3.5-2 allows a positive ack) but dropped.
  await a.publishAsync('devB/app/p/cmd', 'spoofed', { qos: 1 });
  await a.publishAsync('devB/tel/p', Buffer.from([0xa0]), { qos: 1 });
  await a.publishAsync('devA/app/s/cmd', 'wrong direction', { qos: 1 });
  // A's own message comes after the denied ones on the same connection; once it
  // is in, the denied ones were handled (in order) and went nowhere.
  await a.publishAsync('devA/app/p/ok', 'mine', { qos: 1 });
  await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 1, 'A own message');
  assert.deepEqual(
    broker.recorder.events.filter((e) => e.type !== 'DeviceConnected').map((e) => [e.type, 'uid' in e ? e.uid : '']),
    [['ApplicationRequest', 'devA']],
  );
  assert.equal(a.connected, true);
  const metrics = await broker.nucleon.metrics.getSingleMetricAsString('nucleon_mqtt_acl_denied_total');
  assert.match(metrics, /nucleon_mqtt_acl_denied_total\{action="publish",reason="not_own_uid"\} 2/);
  assert.match(metrics, /nucleon_mqtt_acl_denied_total\{action="publish",reason="wrong_direction"\} 1/);
});

test('device A cannot subscribe to B/#, #, $SYS/# or +/app/s/#: SUBACK 0x80, connection stays up, own topics granted', async (t) => {
  const broker = await startBroker(t);
  const tlsA = await deviceTls(broker, 'devA');
  const a = await connect(t, broker, { clientId: 'devA', ca: tlsA.ca, cert: tlsA.cert, key: tlsA.key });
  for (const filter of ['devB/#', '#', '$SYS/#', '+/app/s/#', 'devA/#', 'devA/app/p/x', 'devB/app/s/#']) {
    assert.deepEqual(await subscribeCodes(a, filter), [128], filter);
  }
  assert.deepEqual(await subscribeCodes(a, ['devA/app/s/#', 'devA/ota/sub', 'devA/ota/s/d']), [1, 1, 1]);
  assert.equal(a.connected, true);
  await a.publishAsync('devA/app/p/still-here', 'x', { qos: 1 });
  await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 1, 'publish after denied subscriptions');
});

test('a persistent session never stores a denied filter sent in the same SUBSCRIBE as an allowed one', async (t) => {
  const broker = await startBroker(t);
  const tlsA = await deviceTls(broker, 'devA');
  const options = { clientId: 'devA', ca: tlsA.ca, cert: tlsA.cert, key: tlsA.key, clean: false };
  const a = await connect(t, broker, options);
  assert.deepEqual(await subscribeCodes(a, ['devA/app/s/#', 'devB/app/s/#']), [1, 128]);
  await a.endAsync();
  // Offline: one message for B (must not be queued for A), then one for A.
  await broker.nucleon.broker.publish({ type: 'ApplicationResponse', uid: 'devB', target: 'secret', payload: Buffer.from('for B') });
  await broker.nucleon.broker.publish({ type: 'ApplicationResponse', uid: 'devA', target: 'hello', payload: Buffer.from('for A') });
  await broker.nucleon.broker.drain(5000);
  const received: string[] = [];
  const again = await connect(t, broker, options);
  again.on('message', (topic) => received.push(topic));
  await waitFor(() => received.includes('devA/app/s/hello'), 'queued message for A');
  // B's message was published first; had it been queued for A it would have arrived first.
  assert.deepEqual(received, ['devA/app/s/hello']);
});

test('the connection closes after max_acl_violations denied publishes', async (t) => {
  const broker = await startBroker(t, { config: { mqtt: { limits: { max_acl_violations: 3 } } } });
  const tlsA = await deviceTls(broker, 'devA');
  const a = await connect(t, broker, { clientId: 'devA', ca: tlsA.ca, cert: tlsA.cert, key: tlsA.key });
  const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
  for (let i = 0; i < 3; i++) a.publish('devB/app/p/x', 'spoof', { qos: 0 });
  await closed;
  const [gone] = await waitForEvents(() => broker.recorder.of('DeviceDisconnected'), 1, 'DeviceDisconnected');
  assert.equal(gone?.reason, 'acl_violations');
});
