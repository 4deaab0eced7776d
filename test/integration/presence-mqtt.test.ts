// Presence fed by the MQTT gateway over real sockets. Within one instance aedes
// closes the old connection of a session takeover before it accepts the new one;
// the other order (a reconnect before the goodbye, as across cluster instances)
// is covered by test/unit/presence.test.ts and test/integration/presence-redis.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, deviceTls, startBroker, waitForEvents } from '../helpers/mqtt-support.js';
import { waitFor } from '../helpers/index.js';

test('a session takeover leaves the device online with one connection; the last goodbye takes it offline', async (t) => {
  const broker = await startBroker(t);
  const { presence } = broker.nucleon;
  const uid = '352656100000042';
  const tls = await deviceTls(broker, uid);
  const options = { clientId: uid, ca: tls.ca, cert: tls.cert, key: tls.key };

  const first = await connect(t, broker, options);
  // 'client' comes before the CONNACK, so presence knows the device once connect resolves.
  assert.equal(presence.isOnline(uid), true);
  assert.equal(presence.get(uid)?.authMethod, 'certificate');

  const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()));
  const second = await connect(t, broker, options);
  await firstClosed;
  await waitForEvents(() => broker.recorder.events.filter((e) => e.type === 'DeviceConnected' || e.type === 'DeviceDisconnected'), 3, 'two connects and the old goodbye');
  assert.equal(presence.isOnline(uid), true);
  assert.equal(presence.size, 1);
  assert.equal(presence.get(uid)?.connectedAt, broker.recorder.of('DeviceConnected')[1]?.at);

  await second.endAsync();
  await waitFor(() => !presence.isOnline(uid), 'the device offline after its last goodbye');
  assert.equal(presence.size, 0);
});
