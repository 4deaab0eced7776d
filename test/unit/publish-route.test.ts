// When a device message is routed into MQTT (to service accounts) and when
// aedes' callback (the PUBACK) leaves, against a held disk write: the
// PublishPath alone, with the event broker and aedes' route as fakes.
// Routing every message at append instead was measured (bench scenario 10):
// 1.25-1.6x the broker CPU per message on the clean-session subscriber path at
// full load (fewer messages per socket write). Under light load (few messages
// waiting for the disk) and when a message waits for the disk much longer than
// usual, it routes before it is durable (src/mqtt/disk-waits.ts); its PUBACK
// still waits.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client, PublishPacket } from 'aedes';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/index.js';
import type { EventBroker } from '../../src/broker/event-broker.js';
import { AclRules } from '../../src/mqtt/acl-rules.js';
import { MqttMetrics } from '../../src/mqtt/metrics.js';
import type { NucleonAedes } from '../../src/mqtt/aedes/nucleon-aedes.js';
import { PublishPath } from '../../src/mqtt/publish-path.js';
import { Session } from '../../src/mqtt/sessions.js';

/** A limit no test here reaches unless it asks for a short one (a busy machine can pause for seconds). */
const NEVER_AHEAD = { minMs: 600_000, factor: 4, maxMs: 600_000, routeAtOnceBelow: 0 };

function setup(diskWaits = NEVER_AHEAD) {
  /** Acknowledgements the fake log holds: each runs when "the disk write completes". */
  const durable: (() => void)[] = [];
  const routed: string[] = [];
  const broker = {
    ingest: (_event: unknown, _message: unknown, ack: (() => void) | undefined) => {
      if (ack) durable.push(ack);
      return true;
    },
    whenIngestRoom: () => Promise.resolve(),
  } as unknown as EventBroker;
  const path = new PublishPath({
    broker,
    metrics: new MqttMetrics(new Registry(), () => ({ devices: 1, services: 0, anonymous: 0, paused: 0 })),
    logger: silentLogger(),
    maxAclViolations: 3,
    routeDeviceMessages: () => true,
    noteReason: () => undefined,
    rules: () => new AclRules([]),
    diskWaits,
  });
  path.attach({
    route: (packet: PublishPacket, _client: Client | null, done: (error?: Error) => void) => {
      routed.push(packet.topic);
      done();
    },
  } as unknown as NucleonAedes);
  const client = { id: 'dev-1' } as Client;
  const session = new Session({ kind: 'device', uid: 'dev-1' }, 'certificate', '127.0.0.1', 'dev-1');
  const publish = (qos: 0 | 1, n: number) =>
    new Promise<Error | null | undefined>((resolve) =>
      path.handle(client, session, { cmd: 'publish', topic: `dev-1/app/p/m${n}`, payload: Buffer.from([0xa0]), qos, retain: false, dup: false, messageId: n }, resolve),
    );
  return { durable, routed, publish, path };
}

test('a device message is routed to service accounts once it is on disk, and acknowledged after that', async () => {
  const { durable, routed, publish } = setup();
  let acked = false;
  const qos1 = publish(1, 1).then((error) => {
    acked = true;
    return error;
  });
  assert.equal(durable.length, 1);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(routed, [], 'not routed before the disk write completes');
  assert.equal(acked, false, 'no PUBACK before the disk write completes');
  durable[0]?.();
  assert.equal(await qos1, null);
  assert.deepEqual(routed, ['dev-1/app/p/m1']);
});

test('QoS 0 takes the same path: routed after the disk write (which batches the subscriber\'s writes)', async () => {
  const { durable, routed, publish } = setup();
  const qos0 = publish(0, 2);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(routed, []);
  durable[0]?.();
  assert.equal(await qos0, null);
  assert.deepEqual(routed, ['dev-1/app/p/m2']);
});

test('a will of an earlier run counts as being published until it is durable and routed (a stop waits for it before the store closes)', async () => {
  const { durable, routed, path } = setup();
  let done = false;
  const will = { cmd: 'publish', topic: 'dev-1/app/p/gone', payload: Buffer.from([0xa0]), qos: 1, retain: false, dup: false, clientId: 'dev-1' } as unknown as PublishPacket;
  path.handle(null, undefined, will, () => (done = true));
  assert.equal(await path.staleWillsIdle(30), false, 'its disk write has not completed');
  durable[0]?.();
  assert.equal(await path.staleWillsIdle(1000), true);
  assert.equal(done, true);
  assert.deepEqual(routed, ['dev-1/app/p/gone']);
});

test('a device message that waits for the disk much longer than usual is routed before it is durable; its PUBACK still waits for the disk', async () => {
  const { durable, routed, publish, path } = setup({ minMs: 1, factor: 4, maxMs: 1, routeAtOnceBelow: 0 });
  let acked = false;
  const first = publish(1, 1).then((error) => {
    acked = true;
    return error;
  });
  const second = publish(1, 2);
  const deadline = Date.now() + 10_000;
  while (routed.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.deepEqual(routed, ['dev-1/app/p/m1', 'dev-1/app/p/m2'], 'routed ahead of the held disk write, in the order they came');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(acked, false, 'no PUBACK before the disk write completes');
  for (const ack of durable) ack();
  assert.equal(await first, null);
  assert.equal(await second, null);
  assert.deepEqual(routed, ['dev-1/app/p/m1', 'dev-1/app/p/m2'], 'not routed a second time once durable');
  path.stop();
});

test('under light load a device message is routed when the log takes it; its PUBACK still waits for the disk', async () => {
  const { durable, routed, publish, path } = setup({ ...NEVER_AHEAD, routeAtOnceBelow: 32 });
  let acked = false;
  const first = publish(1, 1).then((error) => {
    acked = true;
    return error;
  });
  assert.deepEqual(routed, ['dev-1/app/p/m1'], 'routed when taken, before the disk write completes');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(acked, false, 'no PUBACK before the disk write completes');
  durable[0]?.();
  assert.equal(await first, null);
  assert.deepEqual(routed, ['dev-1/app/p/m1'], 'not routed a second time once durable');
  path.stop();
});
