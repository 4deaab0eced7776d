// NucleonAedes.route for a client's QoS 0 message that is not retained: it
// takes the direct route (routeQos0Directly), and what subscribers get is
// what aedes' own publish step gives them (checked by routing the same
// messages with a 'publish' listener attached, which keeps them on aedes'
// path). Retained, QoS 1, `$` topics and messages behind a full router stay
// on aedes' path.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test, type TestContext } from 'node:test';
import type { Client, PublishPacket } from 'aedes';
import type mqttPacket from 'mqtt-packet';
import { DependencyMismatchError } from '../../src/errors.js';
import { NucleonAedes } from '../../src/mqtt/aedes/index.js';
import { aedesOverTcp } from '../helpers/aedes-over-tcp.js';
import { waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';

interface Subscriber {
  raw: RawMqtt;
  got: mqttPacket.IPublishPacket[];
}

/** A subscriber that records every PUBLISH it gets (and acknowledges QoS 1 ones). */
async function subscriber(t: TestContext, port: number, clientId: string, filters: { topic: string; qos: 0 | 1 }[]): Promise<Subscriber> {
  const raw = await RawMqtt.connect(t, port, { clientId });
  assert.equal((await raw.next('connack')).returnCode, 0);
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: filters });
  await raw.next('suback');
  const got: mqttPacket.IPublishPacket[] = [];
  const read = async (): Promise<void> => {
    for (;;) {
      const packet = await raw.next('publish', 600_000).catch(() => undefined);
      if (packet === undefined) return;
      got.push(packet);
      if (packet.qos === 1 && packet.messageId !== undefined) raw.send({ cmd: 'puback', messageId: packet.messageId });
    }
  };
  void read();
  return { raw, got };
}

/** Three subscribers (one with a catch-all `#` beside `+/app/p/#` unless `catchAll` is false) and a connected device d1. */
async function setup(t: TestContext, { catchAll = true } = {}) {
  const { aedes, port, clients } = await aedesOverTcp<Client>(t, { deliveries: true });
  const wildcard = await subscriber(t, port, 'svc-wild', catchAll ? [
    { topic: '+/app/p/#', qos: 1 },
    { topic: '#', qos: 0 },
  ] : [{ topic: '+/app/p/#', qos: 1 }]);
  const exact = await subscriber(t, port, 'svc-exact', [{ topic: 'd1/app/p/data', qos: 0 }]);
  const other = await subscriber(t, port, 'svc-other', [{ topic: '+/tel/p', qos: 1 }]);
  const device = await RawMqtt.connect(t, port, { clientId: 'd1' });
  assert.equal((await device.next('connack')).returnCode, 0);
  const publisher = clients.find((client) => client.id === 'd1');
  assert.ok(publisher);
  return { aedes, port, publisher, wildcard, exact, other };
}

function route(aedes: NucleonAedes, publisher: Client | null, packet: Partial<PublishPacket> & { topic: string }): Promise<void> {
  return new Promise((resolve, reject) =>
    aedes.route({ cmd: 'publish', qos: 0, retain: false, dup: false, payload: Buffer.from('x'), ...packet }, publisher, (error) => (error ? reject(error) : resolve())),
  );
}

/** What a subscriber can tell of a PUBLISH (QoS 1 packet ids aside, which each path numbers on). */
const seen = (packets: mqttPacket.IPublishPacket[]) => packets.map((p) => ({ topic: p.topic, payload: p.payload.toString(), qos: p.qos, retain: p.retain, dup: p.dup }));

test("a client's QoS 0 message takes the direct route and reaches subscribers as through aedes' publish step", async (t) => {
  const { aedes, publisher, wildcard, exact, other } = await setup(t);
  const messages = ['d1/app/p/data', 'd1/app/p/cfg', 'd1/tel/p'].map((topic, i) => ({ topic, payload: Buffer.from(`direct-${i}`) }));
  for (const message of messages) await route(aedes, publisher, message);
  assert.equal(aedes.directRoutes, 3);
  assert.equal(aedes.routingActive, 0);

  // The same messages on aedes' path: a 'publish' listener keeps them there.
  const onAedesPath: string[] = [];
  const listener = (packet: PublishPacket, client: Client | null) => {
    if (client) onAedesPath.push(packet.topic);
  };
  aedes.on('publish', listener);
  for (const message of messages) await route(aedes, publisher, { ...message, payload: Buffer.from(message.payload.toString().replace('direct', 'aedes')) });
  aedes.off('publish', listener);
  assert.equal(aedes.directRoutes, 3, 'not direct with a publish listener');
  assert.deepEqual(onAedesPath, ['d1/app/p/data', 'd1/app/p/cfg', 'd1/tel/p']);

  await waitFor(() => wildcard.got.length === 6 && exact.got.length === 2 && other.got.length === 2, 'every copy', 10_000);
  for (const { got } of [wildcard, exact, other]) {
    const [direct, viaAedes] = [seen(got.slice(0, got.length / 2)), seen(got.slice(got.length / 2))];
    assert.deepEqual(
      direct,
      viaAedes.map((p) => ({ ...p, payload: p.payload.replace('aedes', 'direct') })),
    );
  }
  // One copy each, at QoS 0 (the publish QoS caps the grant), though `+/app/p/#` and `#` both match.
  assert.deepEqual(seen(wildcard.got.slice(0, 3)), [
    { topic: 'd1/app/p/data', payload: 'direct-0', qos: 0, retain: false, dup: false },
    { topic: 'd1/app/p/cfg', payload: 'direct-1', qos: 0, retain: false, dup: false },
    { topic: 'd1/tel/p', payload: 'direct-2', qos: 0, retain: false, dup: false },
  ]);
  assert.deepEqual(seen(exact.got.slice(0, 1)), [{ topic: 'd1/app/p/data', payload: 'direct-0', qos: 0, retain: false, dup: false }]);
});

test('the callback comes once every copy was taken; with no subscriber at once', async (t) => {
  const { aedes, publisher } = await setup(t, { catchAll: false });
  let called = false;
  aedes.route({ cmd: 'publish', topic: 'd1/app/p/data', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, publisher, () => {
    called = true;
  });
  // The copies are written from the next immediate (deliveries.ts): not yet taken, so not yet called back.
  assert.equal(called, false);
  assert.equal(aedes.routingActive, 1);
  assert.equal(await aedes.routingIdle(10_000), true);
  assert.equal(called, true);
  let none = false;
  aedes.route({ cmd: 'publish', topic: 'nobody/listens', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, publisher, () => {
    none = true;
  });
  assert.equal(none, true);
  assert.equal(aedes.directRoutes, 2);
});

test("retained, QoS 1, `$` topics, the server's own publishes and messages behind waiting ones stay on aedes' path", async (t) => {
  const { aedes, port, publisher, wildcard } = await setup(t);
  await route(aedes, publisher, { topic: 'd1/app/p/kept', retain: true, payload: Buffer.from('kept') });
  await route(aedes, publisher, { topic: 'd1/app/p/data', qos: 1, messageId: 7, payload: Buffer.from('qos1') });
  await route(aedes, publisher, { topic: '$nucleon/x', payload: Buffer.from('dollar') });
  await route(aedes, null, { topic: 'd1/app/s/data', payload: Buffer.from('server') });
  assert.equal(aedes.directRoutes, 0);
  await waitFor(() => wildcard.got.length === 3, 'the copies to the wildcard subscriber', 10_000);
  assert.deepEqual(
    wildcard.got.map((p) => [p.payload.toString(), p.qos]),
    [
      ['kept', 0],
      ['qos1', 1],
      ['server', 0],
    ],
  );
  // The retained message was stored: a later subscriber gets it, flagged retained.
  const later = await subscriber(t, port, 'svc-later', [{ topic: 'd1/app/p/kept', qos: 0 }]);
  await waitFor(() => later.got.length === 1, 'the retained message', 10_000);
  assert.deepEqual(seen(later.got), [{ topic: 'd1/app/p/kept', payload: 'kept', qos: 0, retain: true, dup: false }]);

  // The router (10 places in this helper) full and one more waiting: a QoS 0 message goes behind it.
  const slow: Promise<void>[] = [];
  for (let i = 0; i < 11; i++) slow.push(route(aedes, publisher, { topic: 'd1/app/p/data', qos: 1, messageId: 100 + i, payload: Buffer.from(`slow-${i}`) }));
  assert.ok(aedes.routingActive >= 11);
  const behind = route(aedes, publisher, { topic: 'd1/app/p/data', payload: Buffer.from('behind') });
  assert.equal(aedes.directRoutes, 0);
  await Promise.all([...slow, behind]);
  await waitFor(() => wildcard.got.length === 15, 'every copy', 10_000);
  assert.equal(aedes.routingActive, 0);
});

test("aedes' own emitter without `_matcher` (an mqemitter whose internals moved): the broker is refused at construction, naming the package", () => {
  const require = createRequire(createRequire(import.meta.url).resolve('aedes'));
  const MQEmitter = require('mqemitter') as { prototype: object };
  // The constructor's `this._matcher = new Qlobber(…)` goes nowhere.
  Object.defineProperty(MQEmitter.prototype, '_matcher', { configurable: true, get: () => undefined, set: () => undefined });
  try {
    assert.throws(
      () => new NucleonAedes({ maxRouting: 10, maxRoutingWaiting: 10, onRoutingRefused: () => undefined }),
      (error: unknown) => error instanceof DependencyMismatchError && /mqemitter@7\.1\.0/.test(error.message) && /_matcher/.test(error.message),
    );
  } finally {
    delete (MQEmitter.prototype as { _matcher?: unknown })._matcher;
  }
  // Intact again: it constructs.
  const aedes = new NucleonAedes({ maxRouting: 10, maxRoutingWaiting: 10, onRoutingRefused: () => undefined });
  aedes.close();
});
