import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Client, PublishPacket } from 'aedes';
import { ClassicLevel } from 'classic-level';
import { DEFER_WRITE_MS, ID_WRITE_DELAY_MS, LevelOutgoing, MAX_DEFERRED } from '../../src/mqtt/aedes/level-outgoing.js';
import type { PersistenceDb } from '../../src/mqtt/aedes/persistence-db.js';
import { RoutingSettlements, type Settlement } from '../../src/mqtt/aedes/routing-settlements.js';
import { SessionStore } from '../../src/mqtt/persistence.js';
import { tempDir, waitFor } from '../helpers/index.js';

/*
 * The outgoing messages of persistent sessions in the embedded store
 * (src/mqtt/aedes/level-outgoing.ts): the library's key layout, fewer
 * writes and no reads per message.
 */

type Level = ClassicLevel<string, Buffer>;
type Routed = PublishPacket & { brokerId: string; brokerCounter: number };

async function openLevel(t: TestContext, dir?: string): Promise<{ db: Level; dir: string }> {
  const location = dir ?? (await tempDir(t));
  const db = new ClassicLevel<string, Buffer>(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  t.after(() => (db.status === 'open' ? db.close() : undefined));
  return { db, dir: location };
}

/** Counts what reaches LevelDB: operations in batches, and point reads. */
function countAccess(db: Level): { ops: number; reads: number } {
  const counts = { ops: 0, reads: 0 };
  const batch = db.batch.bind(db) as (ops?: unknown[], options?: object) => unknown;
  const getSync = db.getSync.bind(db);
  const get = db.get.bind(db);
  Object.assign(db, {
    batch: (ops?: unknown[], options?: object) => {
      if (ops !== undefined) {
        counts.ops += ops.length;
        return batch(ops, options);
      }
      const chained = batch() as { put(...args: unknown[]): unknown; del(...args: unknown[]): unknown };
      const put = chained.put.bind(chained);
      const del = chained.del.bind(chained);
      return Object.assign(chained, {
        put: (...args: unknown[]) => {
          counts.ops++;
          put(...args);
          return chained;
        },
        del: (...args: unknown[]) => {
          counts.ops++;
          del(...args);
          return chained;
        },
      });
    },
    getSync: (...args: Parameters<typeof getSync>) => {
      counts.reads++;
      return getSync(...args);
    },
    get: (...args: Parameters<typeof get>) => {
      counts.reads++;
      return get(...args);
    },
  });
  return counts;
}

const sessionOptions = { offlineQueueSize: 1000, maySubscribe: () => true, isConnected: () => true, onOfflineDrop: () => undefined };

function message(counter: number): Routed {
  return { cmd: 'publish', topic: `dev${counter}/app/p/data`, payload: Buffer.from(`m${counter}`), qos: 1, retain: false, dup: false, brokerId: 'b1', brokerCounter: counter } as unknown as Routed;
}

/** A message as aedes sends it: a copy of the queued one with the connection's packet id. */
function sending(counter: number, messageId: number): Routed {
  return { ...message(counter), messageId };
}

async function queued(store: SessionStore, client: Client): Promise<Routed[]> {
  const packets: Routed[] = [];
  for await (const packet of store.outgoingStream(client)) packets.push(packet as Routed);
  return packets;
}

const connection = (id: string): Client => ({ id, clean: false }) as Client;

test('a QoS 1 message to an online persistent subscriber, acknowledged in time, costs 2 LevelDB writes and no read: queued, acknowledged', async (t) => {
  const { db } = await openLevel(t);
  const store = new SessionStore(db, sessionOptions);
  const client = connection('svc:reader');
  const access = countAccess(db);
  const count = 20;
  for (let i = 1; i <= count; i++) {
    await store.outgoingEnqueue({ clientId: client.id }, message(i));
    await store.outgoingUpdate(client, sending(i, i + 100));
    const acked = await store.outgoingClearMessageId(client, { cmd: 'puback', messageId: i + 100 } as unknown as PublishPacket);
    assert.equal((acked as Routed | undefined)?.brokerCounter, i, 'the PUBACK finds the message it acknowledges');
    assert.equal(acked?.messageId, i + 100);
  }
  await store.close();
  // aedes-persistence-level 9.2.0 alone: 5 writes and 2 reads per message.
  assert.equal(access.ops, 2 * count);
  assert.equal(access.reads, 0);
  const { db: reopened } = await openLevel(t, (db as unknown as { location: string }).location);
  const left: string[] = [];
  for await (const key of reopened.keys()) left.push(key);
  assert.deepEqual(left, [], 'nothing is left behind');
});

test('a message sent but not acknowledged is resent after a reconnect with its original packet id [MQTT-4.4.0-1], and the new connection clears it', async (t) => {
  const { db, dir } = await openLevel(t);
  const store = new SessionStore(db, sessionOptions);
  const first = connection('svc:reader');
  await store.outgoingEnqueue({ clientId: first.id }, message(1));
  await store.outgoingEnqueue({ clientId: first.id }, message(2));
  await store.outgoingUpdate(first, sending(1, 7));
  // Message 2 was queued while the client was away: never sent.

  const second = connection('svc:reader');
  const resent = await queued(store, second);
  assert.deepEqual(
    resent.map((p) => ({ counter: p.brokerCounter, messageId: p.messageId ?? undefined, dup: p.dup })),
    [
      { counter: 1, messageId: 7, dup: true },
      { counter: 2, messageId: undefined, dup: false },
    ],
  );
  assert.equal(await store.outgoingClearMessageId(first, { cmd: 'puback', messageId: 99 } as unknown as PublishPacket), undefined, 'an id never sent clears nothing');
  // As aedes' emptyQueue does: the stored packet updated on the new connection, then acknowledged there.
  await store.outgoingUpdate(second, resent[0] as Routed);
  assert.equal((await store.outgoingClearMessageId(second, { cmd: 'puback', messageId: 7 } as unknown as PublishPacket))?.topic, 'dev1/app/p/data');
  await store.close();

  const { db: reopened } = await openLevel(t, dir);
  const restarted = new SessionStore(reopened, sessionOptions);
  assert.deepEqual((await queued(restarted, connection('svc:reader'))).map((p) => p.brokerCounter), [2], 'the acknowledged message is gone, the other survives a restart');
});

test('QoS 2: the PUBREL replaces its message in the queue (resent instead of the PUBLISH after a reconnect) and the PUBCOMP clears it', async (t) => {
  const { db, dir } = await openLevel(t);
  const store = new SessionStore(db, sessionOptions);
  const client = connection('svc:q2');
  await store.outgoingEnqueue({ clientId: client.id }, { ...message(5), qos: 2 });
  await store.outgoingUpdate(client, { ...sending(5, 11), qos: 2 });
  // aedes' pubrec handler: a PUBREL with only the packet id.
  await store.outgoingUpdate(client, { cmd: 'pubrel', messageId: 11 } as unknown as Routed);
  await store.close();

  const { db: reopened } = await openLevel(t, dir);
  const restarted = new SessionStore(reopened, sessionOptions);
  const again = connection('svc:q2');
  const resent = await queued(restarted, again);
  assert.deepEqual(
    resent.map((p) => ({ cmd: p.cmd, messageId: p.messageId, counter: p.brokerCounter })),
    [{ cmd: 'pubrel', messageId: 11, counter: 5 }],
  );
  await restarted.outgoingUpdate(again, resent[0] as Routed);
  assert.equal((await restarted.outgoingClearMessageId(again, { cmd: 'pubcomp', messageId: 11 } as unknown as PublishPacket))?.cmd, 'pubrel');
  assert.deepEqual(await queued(restarted, again), []);
});

test('a clean session dropping stored messages clears them by their own key; the packet-id index an earlier version stored is removed at start', async (t) => {
  const { db, dir } = await openLevel(t);
  await db.put('outgoing-id:svc%3Aold:0000000000000003', Buffer.from([0xc0]));
  const store = new SessionStore(db, sessionOptions);
  await store.setup({ id: 'b1', subscribe: () => undefined } as never);
  const client = connection('svc:old');
  await store.outgoingEnqueue({ clientId: client.id }, message(3));
  const clean = { id: 'svc:old', clean: true } as Client;
  for (const stored of await queued(store, clean)) await store.outgoingClearMessageId(clean, stored);
  assert.deepEqual(await queued(store, clean), []);
  await store.close();
  const { db: reopened } = await openLevel(t, dir);
  const keys: string[] = [];
  for await (const key of reopened.keys({ gte: 'outgoing', lt: 'outgoinh' })) keys.push(key);
  assert.deepEqual(keys, []);
});

test('the packet id of a message still unacknowledged is written after a while, and at close', async (t) => {
  const { db, dir } = await openLevel(t);
  const store = new SessionStore(db, sessionOptions);
  const client = connection('svc:slow');
  await store.outgoingEnqueue({ clientId: client.id }, message(1));
  await store.outgoingEnqueue({ clientId: client.id }, message(2));
  const started = Date.now();
  await store.outgoingUpdate(client, sending(1, 21));
  // msgpack: the key "messageId", then the id as a positive fixint.
  const hasId = async (id: number) => {
    for await (const value of db.values({ gte: 'outgoing:', lt: 'outgoing;' })) if (value.includes(Buffer.concat([Buffer.from('messageId'), Buffer.from([id])]))) return true;
    return false;
  };
  assert.equal(await hasId(21), false, 'not written at once');
  await waitFor(() => hasId(21), 'the id of message 1 written');
  assert.ok(Date.now() - started >= ID_WRITE_DELAY_MS - 5, 'not before the delay');
  await store.outgoingUpdate(client, sending(2, 22));
  await store.close();
  const { db: reopened } = await openLevel(t, dir);
  const restarted = new SessionStore(reopened, sessionOptions);
  assert.deepEqual(
    (await queued(restarted, connection('svc:slow'))).map((p) => p.messageId),
    [21, 22],
  );
});

/*
 * Deferred writes: a message for a session connected here, routed with a
 * settlement (src/mqtt/aedes/routing-settlements.ts), waits in memory for
 * its subscriber's acknowledgement; the route (and so the publisher's PUBACK)
 * waits until it was acknowledged or written.
 */

function settledFlag(settlement: Settlement): { settled: boolean; error: Error | undefined } {
  const state = { settled: false, error: undefined as Error | undefined };
  settlement.whenSettled((error) => {
    state.settled = true;
    state.error = error;
  });
  return state;
}

/** A route as NucleonAedes runs one: open, enqueue each copy, close. */
async function route(store: SessionStore, settlements: RoutingSettlements, clientIds: string[], packet: Routed): Promise<{ settled: boolean; error: Error | undefined }> {
  const settlement = settlements.open(packet.payload);
  assert.ok(settlement);
  for (const clientId of clientIds) await store.outgoingEnqueue({ clientId }, packet);
  settlements.close(packet.payload, settlement);
  return settledFlag(settlement);
}

test('a message to a connected persistent subscriber acknowledged in time is never written; its route settles with the acknowledgement', async (t) => {
  const { db, dir } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, settlements });
  const client = connection('svc:reader');
  const access = countAccess(db);
  const count = 20;
  for (let i = 1; i <= count; i++) {
    const routed = await route(store, settlements, [client.id], message(i));
    assert.equal(routed.settled, false, 'the route waits for the subscriber');
    await store.outgoingUpdate(client, sending(i, i + 100));
    assert.equal(routed.settled, false, 'sending is not enough');
    const acked = await store.outgoingClearMessageId(client, { cmd: 'puback', messageId: i + 100 } as unknown as PublishPacket);
    assert.equal((acked as Routed | undefined)?.brokerCounter, i, 'the PUBACK finds the message it acknowledges');
    assert.deepEqual(routed, { settled: true, error: undefined }, 'the acknowledgement settles the route');
  }
  await store.close();
  // Without deferral: 2 writes per message (queued, acknowledged).
  assert.equal(access.ops, 0);
  assert.equal(access.reads, 0);
  const { db: reopened } = await openLevel(t, dir);
  const left: string[] = [];
  for await (const key of reopened.keys()) left.push(key);
  assert.deepEqual(left, []);
});

test('a deferred message not acknowledged in time is written with its packet id, and only then settles its route; it survives a restart', async (t) => {
  const { db, dir } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, settlements });
  const client = connection('svc:slow');
  const started = Date.now();
  // Two subscribers: the route waits for both copies.
  const routed = await route(store, settlements, [client.id, 'svc:other'], message(1));
  await store.outgoingUpdate(client, sending(1, 31));
  const stored = async () => {
    const keys: string[] = [];
    for await (const key of db.keys({ gte: 'outgoing:', lt: 'outgoing;' })) keys.push(key);
    return keys.length;
  };
  assert.equal(await stored(), 0, 'not written at once');
  await waitFor(() => routed.settled, 'the route settled');
  assert.ok(Date.now() - started >= DEFER_WRITE_MS - 5, 'not before the deferral ends');
  assert.equal(routed.error, undefined);
  assert.equal(await stored(), 2, 'both copies were written before the route settled');
  await store.close();

  const { db: reopened } = await openLevel(t, dir);
  const restarted = new SessionStore(reopened, sessionOptions);
  assert.deepEqual(
    (await queued(restarted, connection('svc:slow'))).map((p) => ({ counter: p.brokerCounter, messageId: p.messageId, dup: p.dup })),
    [{ counter: 1, messageId: 31, dup: true }],
  );
  assert.deepEqual((await queued(restarted, connection('svc:other'))).map((p) => p.brokerCounter), [1]);
});

test('deferred copies of one message for two subscribers are found and acknowledged each on its own; a copy with the same counter from another broker is written, not mixed up', async (t) => {
  const { db } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, settlements });
  const access = countAccess(db);
  const first = connection('svc:first');
  const second = connection('svc:second');
  const routed = await route(store, settlements, [first.id, second.id], message(9));
  await store.outgoingUpdate(first, sending(9, 1));
  await store.outgoingUpdate(second, sending(9, 1));
  // The same counter from another broker, queued for the first subscriber: written when queued.
  await store.outgoingEnqueue({ clientId: first.id }, { ...message(9), brokerId: 'b2' } as Routed);
  assert.equal(access.ops, 1, 'only the other broker\'s message was written');
  assert.equal(((await store.outgoingClearMessageId(first, { cmd: 'puback', messageId: 1 } as unknown as PublishPacket)) as Routed | undefined)?.brokerId, 'b1');
  assert.equal(routed.settled, false, 'the route waits for the second copy');
  assert.equal(((await store.outgoingClearMessageId(second, { cmd: 'puback', messageId: 1 } as unknown as PublishPacket)) as Routed | undefined)?.brokerCounter, 9);
  assert.deepEqual(routed, { settled: true, error: undefined });
  assert.equal(access.ops, 1, 'neither deferred copy was written');
  assert.deepEqual((await queued(store, first)).map((p) => `${p.brokerId}:${p.brokerCounter}`), ['b2:9'], "the other broker's message is still queued");
  await store.close();
});

test('QoS 2 on a deferred message: the PUBREL state is written before the route settles, and the PUBCOMP clears it', async (t) => {
  const { db, dir } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, settlements });
  const client = connection('svc:q2');
  const routed = await route(store, settlements, [client.id], { ...message(6), qos: 2 });
  await store.outgoingUpdate(client, { ...sending(6, 12), qos: 2 });
  await store.outgoingUpdate(client, { cmd: 'pubrel', messageId: 12 } as unknown as Routed);
  assert.deepEqual(routed, { settled: true, error: undefined }, 'settled once the PUBREL state is written');
  await store.close();
  const { db: reopened } = await openLevel(t, dir);
  const restarted = new SessionStore(reopened, sessionOptions);
  const again = connection('svc:q2');
  const resent = await queued(restarted, again);
  assert.deepEqual(resent.map((p) => ({ cmd: p.cmd, messageId: p.messageId })), [{ cmd: 'pubrel', messageId: 12 }]);
  await restarted.outgoingUpdate(again, resent[0] as Routed);
  await restarted.outgoingClearMessageId(again, { cmd: 'pubcomp', messageId: 12 } as unknown as PublishPacket);
  assert.deepEqual(await queued(restarted, connection('svc:q2')), []);
});

test('a reconnect reads deferred messages: they are written before the queue is read', async (t) => {
  const { db } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, settlements });
  const routed = await route(store, settlements, ['svc:back'], message(4));
  const resent = await queued(store, connection('svc:back'));
  assert.deepEqual(resent.map((p) => p.brokerCounter), [4]);
  assert.equal(routed.settled, true, 'written, so settled');
  await store.close();
});

test('a message for a session not connected here is written before its route ends, as without deferral', async (t) => {
  const { db } = await openLevel(t);
  const settlements = new RoutingSettlements();
  const store = new SessionStore(db, { ...sessionOptions, isConnected: () => false, settlements });
  const access = countAccess(db);
  const routed = await route(store, settlements, ['svc:away'], message(5));
  assert.equal(routed.settled, true);
  assert.equal(access.ops, 1);
  await store.close();
});

test('a deferred write that fails fails its route with the error (the publisher is not acknowledged)', async (t) => {
  const failure = new Error('disk full');
  const writes: string[] = [];
  const db = {
    put: (key: string) => {
      writes.push(key);
      return Promise.reject(failure);
    },
    del: () => Promise.resolve(),
  } as unknown as PersistenceDb;
  const outgoing = new LevelOutgoing(db, { onUnawaitedWriteFailed: () => undefined });
  const settlements = new RoutingSettlements();
  const packet = message(6);
  const settlement = settlements.open(packet.payload);
  assert.ok(settlement);
  assert.equal(outgoing.defer('svc:x', packet, settlement), true);
  settlements.close(packet.payload, settlement);
  const routed = settledFlag(settlement);
  await waitFor(() => routed.settled, 'the route settled');
  assert.equal(routed.error, failure);
  assert.equal(writes.length, 1);
  assert.equal(outgoing.deferredCount(), 0);
  t.diagnostic(`deferred write failed as expected: ${routed.error?.message}`);
});

test('at most MAX_DEFERRED messages are held in memory; past that a message is written when queued', () => {
  const db = { put: () => Promise.resolve(), del: () => Promise.resolve() } as unknown as PersistenceDb;
  const outgoing = new LevelOutgoing(db, { onUnawaitedWriteFailed: () => undefined });
  const settlement = new RoutingSettlements().open(Buffer.from('many'));
  assert.ok(settlement);
  for (let i = 1; i <= MAX_DEFERRED; i++) assert.equal(outgoing.defer('svc:many', message(i), settlement), true);
  assert.equal(outgoing.defer('svc:many', message(MAX_DEFERRED + 1), settlement), false, 'the caller writes it instead');
  assert.equal(outgoing.deferredCount(), MAX_DEFERRED);
  // Written (and released) at once, so no timer is left behind.
  void outgoing.writeHeld();
  assert.equal(outgoing.deferredCount(), 0);
});

test('a message aedes queues for its matched sessions (outgoingEnqueueCombi) is queued for each: one, several, none', async (t) => {
  const { db } = await openLevel(t);
  const store = new SessionStore(db, { ...sessionOptions, isConnected: () => false });
  const [a, b, c] = [connection('svc:a'), connection('svc:b'), connection('svc:c')];
  await store.outgoingEnqueueCombi([{ clientId: a.id, topic: '+/app/p/#', qos: 1 }], message(1));
  await store.outgoingEnqueueCombi([{ clientId: a.id, topic: '+/app/p/#', qos: 1 }, { clientId: b.id, topic: '#', qos: 1 }], message(2));
  await store.outgoingEnqueueCombi([], message(3));
  assert.deepEqual((await queued(store, a)).map((p) => p.brokerCounter), [1, 2]);
  assert.deepEqual((await queued(store, b)).map((p) => p.brokerCounter), [2]);
  assert.deepEqual(await queued(store, c), []);
  await store.close();
});
