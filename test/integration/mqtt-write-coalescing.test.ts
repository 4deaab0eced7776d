// Writes coalesced per connection per loop turn (src/mqtt/aedes/write-coalescing.ts)
// over real sockets: many QoS 1 messages to one subscriber arrive in order and
// none is lost, each PUBLISH intact however the turn's writes were joined, and
// unacknowledged ones are still sent again with DUP when the session returns.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { startBroker } from '../helpers/mqtt-support.js';

const COUNT = 400;

async function tcpBroker(t: TestContext): Promise<number> {
  const broker = await startBroker(t, {
    config: {
      mqtt: { tcp: { enabled: true, host: '127.0.0.1', port: 0 }, auth: { anonymous: true } },
      acl: { rules: [{ who: 'anyone', action: 'both', topic: '#' }] },
    },
  });
  return (broker.nucleon.runner('mqtt') as MqttRunner).port('tcp') ?? 0;
}

async function connected(t: TestContext, port: number, clientId: string, clean = true): Promise<RawMqtt> {
  const client = await RawMqtt.connect(t, port, { clientId, clean });
  assert.equal((await client.next('connack')).returnCode, 0);
  return client;
}

/** Sends COUNT QoS 1 messages in one burst (one socket write), payloads 0..COUNT-1, and waits for their PUBACKs. */
async function burst(sender: RawMqtt, topic: string): Promise<void> {
  const packets = Array.from({ length: COUNT }, (_, i) => ({ cmd: 'publish' as const, topic, payload: Buffer.from(String(i)), qos: 1 as const, messageId: i + 1, retain: false, dup: false }));
  for (const packet of packets) sender.send(packet);
  for (let i = 0; i < COUNT; i++) await sender.next('puback');
}

test('a burst of QoS 1 messages to a subscriber arrives in order, none lost, every packet intact', async (t) => {
  const port = await tcpBroker(t);
  const receiver = await connected(t, port, 'coalesce-receiver');
  receiver.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'burst/#', qos: 1 }] });
  await receiver.next('suback');
  const sender = await connected(t, port, 'coalesce-sender');
  await burst(sender, 'burst/a');
  const payloads: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const packet = await receiver.next('publish');
    assert.equal(packet.qos, 1);
    payloads.push(Number(packet.payload.toString()));
    receiver.send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
  }
  assert.deepEqual(payloads, Array.from({ length: COUNT }, (_, i) => i));
});

test('unacknowledged QoS 1 messages of a burst are sent again with DUP when the persistent session returns', async (t) => {
  const port = await tcpBroker(t);
  const receiver = await connected(t, port, 'coalesce-persistent', false);
  receiver.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'burst/#', qos: 1 }] });
  await receiver.next('suback');
  const sender = await connected(t, port, 'coalesce-sender-2');
  await burst(sender, 'burst/b');
  // Received, never acknowledged.
  const first = new Set<number>();
  for (let i = 0; i < COUNT; i++) first.add(Number((await receiver.next('publish')).payload.toString()));
  assert.equal(first.size, COUNT);
  receiver.end();
  await receiver.closed;

  const again = await RawMqtt.connect(t, port, { clientId: 'coalesce-persistent', clean: false });
  assert.equal((await again.next('connack')).sessionPresent, true);
  const resent = new Set<number>();
  for (let i = 0; i < COUNT; i++) {
    const packet = await again.next('publish');
    assert.equal(packet.dup, true, 'a redelivery carries DUP');
    resent.add(Number(packet.payload.toString()));
    again.send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
  }
  assert.equal(resent.size, COUNT, 'every unacknowledged message sent again');
});
