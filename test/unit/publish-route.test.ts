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
import { PublishPath, READ_AHEAD_BELOW } from '../../src/mqtt/publish-path.js';
import { Session } from '../../src/mqtt/sessions.js';

/** A limit no test here reaches unless it asks for a short one (a busy machine can pause for seconds). */
const NEVER_AHEAD = { minMs: 600_000, factor: 4, maxMs: 600_000, routeAtOnceBelow: 0 };

function setup(diskWaits = NEVER_AHEAD, options: { log?: 'held' | 'none'; route?: boolean; room?: () => boolean; waiting?: () => number } = {}) {
  /** Acknowledgements the fake log holds: each runs when "the disk write completes". */
  const durable: (() => void)[] = [];
  const routed: string[] = [];
  /** Topics of the messages whose connection was let read on (readAhead) when the log took them. */
  const readAheadOf: string[] = [];
  let handling = '';
  const withLog = options.log !== 'none';
  const broker = {
    ingest: (_event: unknown, _message: unknown, ack: (() => void) | undefined) => {
      if (options.room && !options.room()) return false;
      // Without a log ("memory" durability) the message counts as durable when taken.
      if (!withLog) ack?.();
      else if (ack) durable.push(ack);
      return true;
    },
    hasIngestLog: withLog,
    get ingestWaitingForDisk() {
      return options.waiting?.() ?? durable.length;
    },
    // "Maybe room now" on the next turn (at once, a path that finds no room again would spin in microtasks).
    whenIngestRoom: () => new Promise((resolve) => setImmediate(resolve)),
  } as unknown as EventBroker;
  const path = new PublishPath({
    broker,
    metrics: new MqttMetrics(new Registry(), () => ({ devices: 1, services: 0, anonymous: 0, paused: 0 })),
    logger: silentLogger(),
    maxAclViolations: 3,
    routeDeviceMessages: () => options.route ?? true,
    noteReason: () => undefined,
    rules: () => new AclRules([]),
    diskWaits,
    readAhead: () => readAheadOf.push(handling),
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
    new Promise<Error | null | undefined>((resolve) => {
      handling = `dev-1/app/p/m${n}`;
      // The log calls aedes' callback itself when nothing routes (no error argument): undefined and null both mean success.
      path.handle(client, session, { cmd: 'publish', topic: handling, payload: Buffer.from([0xa0]), qos, retain: false, dup: false, messageId: n }, (error) => resolve(error ?? null));
    });
  return { durable, routed, readAheadOf, publish, path };
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

test('while a message waits for the disk its connection reads on (readAhead); the PUBACK still waits for the disk', async () => {
  for (const route of [true, false]) {
    const { durable, readAheadOf, publish, path } = setup(NEVER_AHEAD, { route });
    let acked = 0;
    const acks = [publish(1, 1), publish(0, 2)].map((pending) => pending.then((error) => (acked++, error)));
    assert.deepEqual(readAheadOf, ['dev-1/app/p/m1', 'dev-1/app/p/m2'], `each message let go when the log took it (routed: ${route})`);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(acked, 0, 'no acknowledgement before the disk write completes');
    for (const ack of durable) ack();
    assert.deepEqual(await Promise.all(acks), [null, null]);
    path.stop();
  }
});

test('without a log (durability "memory") a message is durable when taken: nothing to read ahead of', async () => {
  for (const route of [true, false]) {
    const { readAheadOf, publish, path } = setup(NEVER_AHEAD, { log: 'none', route });
    assert.equal(await publish(1, 1), null);
    assert.deepEqual(readAheadOf, [], `routed: ${route}`);
    path.stop();
  }
});

test('a message held back for room in the log is not read ahead of: its connection waits (back-pressure)', async () => {
  let room = false;
  const { durable, readAheadOf, publish, path } = setup(NEVER_AHEAD, { route: false, room: () => room });
  const held = publish(1, 1);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(durable.length, 0, 'not taken while the log has no room');
  room = true;
  // The path tries again each time the broker says there may be room (every turn here).
  const deadline = Date.now() + 10_000;
  while (durable.length === 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(durable.length, 1, 'taken once there is room');
  assert.deepEqual(readAheadOf, [], 'a held message is not let go ahead of its callback');
  durable[0]?.();
  assert.equal(await held, null);
  path.stop();
});

test('under load (READ_AHEAD_BELOW or more messages waiting for the disk) a connection waits for the disk as before', async () => {
  for (const route of [true, false]) {
    let waiting = READ_AHEAD_BELOW - 2;
    const { durable, readAheadOf, publish, path } = setup(NEVER_AHEAD, { route, waiting: () => waiting });
    // The count includes the message just taken.
    const light = publish(1, 1);
    waiting = READ_AHEAD_BELOW;
    const loaded = publish(1, 2);
    assert.deepEqual(readAheadOf, ['dev-1/app/p/m1'], `only the message taken under light load let its connection read on (routed: ${route})`);
    for (const ack of durable) ack();
    assert.deepEqual(await Promise.all([light, loaded]), [null, null]);
    path.stop();
  }
});
