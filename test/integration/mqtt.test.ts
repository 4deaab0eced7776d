import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeCbor } from '../../src/protocol/index.js';
import { connect, deviceTls, startBroker, waitForEvents } from '../helpers/mqtt-support.js';

test('a device with a client certificate publishes app, telemetry and OTA messages; they become events', async (t) => {
  const broker = await startBroker(t);
  const tls = await deviceTls(broker, '352656100000001');
  const device = await connect(t, broker, { clientId: '352656100000001', ca: tls.ca, cert: tls.cert, key: tls.key });
  await device.publishAsync('352656100000001/app/p/env', Buffer.from([1, 2, 3]), { qos: 1 });
  await device.publishAsync('352656100000001/tel/p', encodeCbor(new Map<number, unknown>([[0, '1.2.3-4-g965b9df'], [1, 42]])), { qos: 1 });
  await device.publishAsync('352656100000001/ota/pub', encodeCbor(new Map([[0, 0]])), { qos: 1 });
  const { recorder } = broker;
  // PUBACK means accepted: the events are already in the recorder's inbox.
  await waitForEvents(() => recorder.events.filter((e) => e.type !== 'DeviceConnected'), 3, 'three events');
  const [connected] = recorder.of('DeviceConnected');
  assert.ok(connected);
  assert.equal(connected.uid, '352656100000001');
  assert.equal(connected.authMethod, 'certificate');
  assert.equal(connected.clientId, '352656100000001');
  assert.equal(connected.cleanSession, true);
  assert.equal(connected.remoteAddress, '127.0.0.1');
  const [app] = recorder.of('ApplicationRequest');
  assert.equal(app?.target, 'env');
  assert.deepEqual([...(app?.payload ?? [])], [1, 2, 3]);
  assert.deepEqual(recorder.of('TelemetryReceived')[0]?.telemetry, { version: '1.2.3-4-g965b9df', rsrp: 42 });
  assert.equal(recorder.of('OtaRequest')[0]?.cmd, 'Check');
  await device.endAsync();
  const [gone] = await waitForEvents(() => recorder.of('DeviceDisconnected'), 1, 'DeviceDisconnected');
  assert.equal(gone?.uid, '352656100000001');
});
