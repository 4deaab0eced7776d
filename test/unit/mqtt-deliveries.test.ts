// The QoS a client gets a message at (src/mqtt/aedes/deliveries.ts), with
// aedes' delivery functions replaced by recorders: the highest QoS granted by
// any matching subscription, never above the publish QoS [MQTT-3.3.5-1], and
// no `$` topic for a wildcard first level [MQTT-4.7.2-1], with one
// subscription (the shortcut) and with several (the full match).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { grantHighestQos } from '../../src/mqtt/aedes/deliveries.js';

interface Delivered {
  topic: string;
  qos: number;
  via: 'deliver0' | 'deliverQoS';
}

function recordingClient(subscriptions: Record<string, { qos: number }>): { client: { deliverQoS: (packet: { topic: string; qos: 0 | 1 | 2 }, callback: () => void) => void }; delivered: Delivered[] } {
  const delivered: Delivered[] = [];
  const client = {
    broker: {},
    subscriptions,
    duplicates: {},
    deliver0: (packet: { topic: string; qos: number }, callback: () => void) => {
      delivered.push({ topic: packet.topic, qos: packet.qos, via: 'deliver0' });
      callback();
    },
    deliverQoS: (packet: { topic: string; qos: number }, callback: () => void) => {
      delivered.push({ topic: packet.topic, qos: packet.qos, via: 'deliverQoS' });
      callback();
    },
  };
  grantHighestQos(client);
  return { client, delivered };
}

function deliver(client: ReturnType<typeof recordingClient>['client'], topic: string, qos: 0 | 1 | 2): Promise<void> {
  return new Promise((resolve) => client.deliverQoS({ topic, qos }, resolve));
}

test('one subscription grants its QoS, capped by the publish QoS', async () => {
  const { client, delivered } = recordingClient({ '+/app/p/#': { qos: 1 } });
  await deliver(client, 'd1/app/p/data', 2);
  await deliver(client, 'd1/app/p/data', 0);
  const atZero = recordingClient({ '+/app/p/#': { qos: 0 } });
  await deliver(atZero.client, 'd1/app/p/data', 1);
  assert.deepEqual(delivered, [
    { topic: 'd1/app/p/data', qos: 1, via: 'deliverQoS' },
    { topic: 'd1/app/p/data', qos: 0, via: 'deliver0' },
  ]);
  assert.deepEqual(atZero.delivered, [{ topic: 'd1/app/p/data', qos: 0, via: 'deliver0' }]);
});

test('a `$` topic offered to a lone `#` subscription is dropped; to a subscription naming it, delivered', async () => {
  const wildcard = recordingClient({ '#': { qos: 1 } });
  await deliver(wildcard.client, '$SYS/broker/uptime', 1);
  assert.deepEqual(wildcard.delivered, []);
  const named = recordingClient({ '$SYS/broker/uptime': { qos: 1 } });
  await deliver(named.client, '$SYS/broker/uptime', 1);
  assert.deepEqual(named.delivered, [{ topic: '$SYS/broker/uptime', qos: 1, via: 'deliverQoS' }]);
});

test('with several subscriptions the highest QoS among those that match wins', async () => {
  const { client, delivered } = recordingClient({ 'd1/app/p/data': { qos: 0 }, '+/app/p/#': { qos: 1 }, '+/tel/p': { qos: 2 } });
  await deliver(client, 'd1/app/p/data', 2);
  await deliver(client, 'd2/app/p/data', 2);
  await deliver(client, 'd2/tel/p', 1);
  assert.deepEqual(
    delivered.map((d) => [d.topic, d.qos]),
    [
      ['d1/app/p/data', 1],
      ['d2/app/p/data', 1],
      ['d2/tel/p', 1],
    ],
  );
});
