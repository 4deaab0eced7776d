// What a client is sent (src/mqtt/aedes/deliveries.ts): the highest QoS
// granted by any matching subscription, never above the publish QoS
// [MQTT-3.3.5-1], no `$` topic for a wildcard first level [MQTT-4.7.2-1];
// QoS 0 and clean-session copies written directly (one immediate for all of a
// turn, packet ids as aedes numbers them, aedes' duplicate check and its
// errors), persistent QoS 1/2 copies handed to aedes' deliverQoS (it stores
// them first). The client here has the fields of an aedes 1.x Client that the
// module reads; what it writes is parsed back with mqtt-packet.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { grantHighestQos, type DirectClient } from '../../src/mqtt/aedes/deliveries.js';

interface Sent {
  topic: string;
  qos: number;
  messageId?: number;
  payload?: string;
  via: 'wire' | 'deliverQoS';
}

type DeliverFn = (packet: Record<string, unknown> & { topic: string; qos: 0 | 1 | 2 }, callback: () => void) => void;

/** aedes' Client as a direct delivery sees it, plus what the test reads and aedes' own deliver functions. */
interface FakeClient extends DirectClient {
  subscriptions: Record<string, { qos: number }>;
  errors: Error[];
  deliver0: DeliverFn;
  deliverQoS: DeliverFn;
}

function fakeClient(subscriptions: Record<string, { qos: number }>, options: { clean?: boolean; nextId?: number; highWaterMark?: number } = {}): { client: FakeClient; sent: Sent[] } {
  const sent: Sent[] = [];
  const parser = mqttPacket.parser();
  parser.on('packet', (received) => {
    if (received.cmd !== 'publish') assert.fail(`a ${received.cmd} was written`);
    const packet = received;
    sent.push({ topic: packet.topic, qos: packet.qos, ...(packet.qos > 0 ? { messageId: packet.messageId } : {}), payload: String(packet.payload), via: 'wire' });
  });
  const conn = new Writable({
    highWaterMark: options.highWaterMark ?? 16_384,
    write(chunk: Buffer, _encoding, callback) {
      parser.parse(chunk);
      callback();
    },
  });
  const client: FakeClient = {
    id: 'svc-1',
    clean: options.clean ?? true,
    connecting: false,
    connected: true,
    errored: false,
    conn,
    broker: { authorizeForward: (_client, packet) => packet },
    subscriptions,
    duplicates: {},
    _nextId: options.nextId ?? 1,
    errors: [],
    _onError(error) {
      if (error) client.errors.push(error);
    },
    deliver0: () => assert.fail("aedes' deliver0 is not used any more"),
    deliverQoS: (packet, callback) => {
      sent.push({ topic: packet.topic, qos: packet.qos, via: 'deliverQoS' });
      callback();
    },
  };
  grantHighestQos(client);
  return { client, sent };
}

let counter = 0;
/** A copy as aedes routes it: a Packet with this broker's id and its next counter. */
function routed(topic: string, qos: 0 | 1 | 2, payload = 'x'): Record<string, unknown> & { topic: string; qos: 0 | 1 | 2 } {
  return { cmd: 'publish', topic, qos, payload: Buffer.from(payload), retain: false, dup: false, brokerId: 'b1', brokerCounter: ++counter };
}

function deliver(client: FakeClient, topic: string, qos: 0 | 1 | 2, payload = 'x'): Promise<void> {
  return new Promise((resolve) => client.deliverQoS(routed(topic, qos, payload), resolve));
}

/** Lets the writes of the turn reach the fake connection. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('one subscription grants its QoS, capped by the publish QoS', async () => {
  const { client, sent } = fakeClient({ '+/app/p/#': { qos: 1 } });
  await deliver(client, 'd1/app/p/data', 2);
  await deliver(client, 'd1/app/p/data', 0);
  const atZero = fakeClient({ '+/app/p/#': { qos: 0 } });
  await deliver(atZero.client, 'd1/app/p/data', 1);
  await nextTurn();
  assert.deepEqual(sent, [
    { topic: 'd1/app/p/data', qos: 1, messageId: 1, payload: 'x', via: 'wire' },
    { topic: 'd1/app/p/data', qos: 0, payload: 'x', via: 'wire' },
  ]);
  assert.deepEqual(atZero.sent, [{ topic: 'd1/app/p/data', qos: 0, payload: 'x', via: 'wire' }]);
});

test('a `$` topic offered to a lone `#` subscription is dropped; to a subscription naming it, delivered', async () => {
  const wildcard = fakeClient({ '#': { qos: 1 } });
  await deliver(wildcard.client, '$SYS/broker/uptime', 1);
  await nextTurn();
  assert.deepEqual(wildcard.sent, []);
  const named = fakeClient({ '$SYS/broker/uptime': { qos: 1 } });
  await deliver(named.client, '$SYS/broker/uptime', 1);
  await nextTurn();
  assert.deepEqual(named.sent, [{ topic: '$SYS/broker/uptime', qos: 1, messageId: 1, payload: 'x', via: 'wire' }]);
});

test('with several subscriptions the highest QoS among those that match wins', async () => {
  const { client, sent } = fakeClient({ 'd1/app/p/data': { qos: 0 }, '+/app/p/#': { qos: 1 }, '+/tel/p': { qos: 2 } });
  await deliver(client, 'd1/app/p/data', 2);
  await deliver(client, 'd2/app/p/data', 2);
  await deliver(client, 'd2/tel/p', 1);
  await nextTurn();
  assert.deepEqual(
    sent.map((s) => [s.topic, s.qos]),
    [
      ['d1/app/p/data', 1],
      ['d2/app/p/data', 1],
      ['d2/tel/p', 1],
    ],
  );
});

test("a persistent session's QoS 1 copy goes to aedes' deliverQoS (stored first); its QoS 0 copy is written directly", async () => {
  const { client, sent } = fakeClient({ '+/app/p/#': { qos: 1 } }, { clean: false });
  await deliver(client, 'd1/app/p/data', 1);
  await deliver(client, 'd2/app/p/data', 0);
  await nextTurn();
  assert.deepEqual(sent, [
    { topic: 'd1/app/p/data', qos: 1, via: 'deliverQoS' },
    { topic: 'd2/app/p/data', qos: 0, payload: 'x', via: 'wire' },
  ]);
});

test('the deliveries of a turn are written from one immediate, in order, each calling back after the emitting call returned', async () => {
  const { client, sent } = fakeClient({ '+/app/p/#': { qos: 1 } }, { nextId: 65534 });
  const called: number[] = [];
  for (let i = 0; i < 4; i++) client.deliverQoS(routed(`d${i}/app/p/data`, 1, String(i)), () => called.push(i));
  assert.deepEqual(called, [], 'no callback on the emitting stack');
  await nextTurn();
  assert.deepEqual(called, [0, 1, 2, 3]);
  await nextTurn();
  // Packet ids as aedes numbers them: the next one, 65535, then back to 1.
  assert.deepEqual(
    sent.map((s) => [s.payload, s.messageId]),
    [
      ['0', 65534],
      ['1', 65535],
      ['2', 1],
      ['3', 2],
    ],
  );
  assert.equal(client._nextId, 3);
});

test("aedes' duplicate check: the same message twice (two matching subscriptions) is sent once; one routed out of counter order is sent", async () => {
  const { client, sent } = fakeClient({ '+/app/p/#': { qos: 0 } });
  const first = routed('d1/app/p/data', 0, 'first');
  const second = routed('d1/app/p/data', 0, 'second');
  await new Promise<void>((resolve) => client.deliverQoS(second, resolve));
  await new Promise<void>((resolve) => client.deliverQoS({ ...second }, resolve));
  await new Promise<void>((resolve) => client.deliverQoS(first, resolve));
  await nextTurn();
  assert.deepEqual(
    sent.map((s) => s.payload),
    ['second', 'first'],
  );
});

test('no-local: a copy of the client’s own message with nl set is not sent', async () => {
  const { client, sent } = fakeClient({ 'a/#': { qos: 0 } });
  await new Promise<void>((resolve) => client.deliverQoS({ ...routed('a/b', 0), clientId: 'svc-1', nl: true }, resolve));
  await nextTurn();
  assert.deepEqual(sent, []);
});

test('a closed client: nothing written, the client gets aedes’ "connection closed" error, the callback still runs', async () => {
  const { client, sent } = fakeClient({ 'a/#': { qos: 1 } });
  client.connected = false;
  await deliver(client, 'a/b', 0);
  await deliver(client, 'a/c', 1);
  await nextTurn();
  assert.deepEqual(sent, []);
  assert.deepEqual(
    client.errors.map((e) => e.message),
    ['connection closed', 'connection closed'],
  );
});

// The per-client send-buffer limit (slow-consumers.ts) disconnects over it: test/system/abuse-slow-consumers.test.ts, on real sockets.
test('a socket over its high-water mark: the delivery calls back without waiting for a drain, and the bytes are sent once it flows', async () => {
  // No limit registered for this fake broker, and no drain timeout: nothing else applies.
  const { client, sent } = fakeClient({ 'a/#': { qos: 0 } }, { highWaterMark: 1 });
  client.conn.cork();
  await deliver(client, 'a/b', 0, 'over the mark');
  assert.deepEqual(client.errors, []);
  client.conn.uncork();
  await nextTurn();
  assert.deepEqual(
    sent.map((s) => s.payload),
    ['over the mark'],
  );
});
