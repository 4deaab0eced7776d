import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Client, PublishPacket } from 'aedes';
import { ClassicLevel } from 'classic-level';
import { combiningPersistenceDb } from '../../src/mqtt/aedes/persistence-db.js';
import { DependencyMismatchError } from '../../src/errors.js';
import { SessionStore } from '../../src/mqtt/persistence.js';
import { tempDir } from '../helpers/index.js';

async function openLevel(t: TestContext, dir?: string): Promise<{ db: ClassicLevel<string, Buffer>; dir: string }> {
  const location = dir ?? (await tempDir(t));
  const db = new ClassicLevel<string, Buffer>(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  t.after(() => (db.status === 'open' ? db.close() : undefined));
  return { db, dir: location };
}

/** Counts the database's own batch/put/del calls (what reaches LevelDB through the thread pool). */
function countWrites(db: ClassicLevel<string, Buffer>): { batches: number; puts: number; dels: number } {
  const counts = { batches: 0, puts: 0, dels: 0 };
  const batch = db.batch.bind(db);
  const put = db.put.bind(db);
  const del = db.del.bind(db);
  Object.assign(db, {
    batch: (...args: Parameters<typeof batch>) => {
      counts.batches++;
      return batch(...args);
    },
    put: (...args: Parameters<typeof put>) => {
      counts.puts++;
      return put(...args);
    },
    del: (...args: Parameters<typeof del>) => {
      counts.dels++;
      return del(...args);
    },
  });
  return counts;
}

const sessionOptions = { offlineQueueSize: 1000, maySubscribe: () => true, isConnected: () => true, onOfflineDrop: () => undefined };

/** A message as aedes' routing stamps it. */
type Routed = PublishPacket & { brokerCounter: number };

function message(counter: number): Routed {
  return { cmd: 'publish', topic: `dev${counter}/app/p/data`, payload: Buffer.from(`m${counter}`), qos: 1, retain: false, dup: false, brokerId: 'b1', brokerCounter: counter } as unknown as Routed;
}

async function queued(store: SessionStore, client: Client): Promise<Routed[]> {
  const packets: Routed[] = [];
  for await (const packet of store.outgoingStream(client)) packets.push(packet as Routed);
  return packets;
}

test("a persistent session's QoS 1 messages of one turn reach LevelDB in one batch, and its queue reads as the library wrote it", async (t) => {
  const { db } = await openLevel(t);
  const writes = countWrites(db);
  const store = new SessionStore(db, sessionOptions);
  const client = { id: 'svc:reader', clean: false } as Client;

  await Promise.all(Array.from({ length: 50 }, (_, i) => store.outgoingEnqueue({ clientId: client.id }, message(i + 1))));
  assert.equal(writes.batches, 1, '50 enqueues issued in one turn: one batch');
  assert.equal(writes.puts + writes.dels, 0, 'no write bypasses the combiner');
  assert.deepEqual((await queued(store, client)).map((p) => p.brokerCounter), Array.from({ length: 50 }, (_, i) => i + 1));

  // As aedes delivers: the packet id recorded, then cleared by the PUBACK.
  const sent = { ...message(7), messageId: 42 };
  await store.outgoingUpdate(client, sent);
  const cleared = await store.outgoingClearMessageId(client, { cmd: 'puback', messageId: 42 } as unknown as PublishPacket);
  assert.equal((cleared as Routed | undefined)?.brokerCounter, 7);
  const left = await queued(store, client);
  assert.equal(left.length, 49);
  assert.ok(!left.some((p) => p.brokerCounter === 7));
});

test('a read sees a write that is not written yet, and a close writes what is still pending before the database closes', async (t) => {
  const { db, dir } = await openLevel(t);
  const { db: facade } = combiningPersistenceDb(db, { maxBatchOps: 100 });
  const written = facade.put('outgoing:x:1', Buffer.from('v1'));
  assert.equal((await facade.get('outgoing:x:1', { valueEncoding: 'buffer' }))?.toString(), 'v1', 'read before the batch is written');
  const chained = facade.batch().put('outgoing:x:2', Buffer.from('v2')).del('outgoing:x:1').write();
  assert.equal(await facade.get('outgoing:x:1'), undefined, 'a pending delete reads as absent');
  await facade.close();
  await Promise.all([written, chained]);

  const { db: reopened } = await openLevel(t, dir);
  assert.equal(await reopened.get('outgoing:x:1'), undefined);
  assert.equal((await reopened.get('outgoing:x:2'))?.toString(), 'v2');
});

test('a clear follows the writes issued before it', async (t) => {
  const { db } = await openLevel(t);
  const { db: facade } = combiningPersistenceDb(db, { maxBatchOps: 100 });
  void facade.put('incoming:c:0000000000000001', Buffer.from('a'));
  await facade.clear({ gte: 'incoming:c:', lt: 'incoming:c;' });
  assert.equal(await db.get('incoming:c:0000000000000001'), undefined);
});

test('a database method the adapter does not pass through, or a value that is not a Buffer, fails naming aedes-persistence-level', async (t) => {
  const { db } = await openLevel(t);
  const { db: facade } = combiningPersistenceDb(db, { maxBatchOps: 100 });
  assert.throws(() => (facade as unknown as { getMany: unknown }).getMany, (error: unknown) => error instanceof DependencyMismatchError && /aedes-persistence-level@9\.2\.0: .*getMany/.test(error.message));
  assert.throws(() => facade.put('k', 'text' as unknown as Buffer), DependencyMismatchError);
  assert.throws(() => facade.put('k', Buffer.from('v'), { valueEncoding: 'json' }), /valueEncoding "json"/);
  assert.equal((facade as unknown as { then?: unknown }).then, undefined, 'awaiting the facade itself is harmless');
});
