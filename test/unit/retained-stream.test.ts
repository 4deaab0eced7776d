import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { SessionStore } from '../../src/mqtt/persistence.js';
import { tempDir, waitFor } from '../helpers/index.js';

test("a retained stream that fails under aedes' subscribe handler (which pipes it without an error listener) is reported, not an uncaught exception", async (t) => {
  const dir = await tempDir(t);
  const db = new ClassicLevel<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  const failures: Error[] = [];
  const store = new SessionStore(db, { offlineQueueSize: 10, maySubscribe: () => true, isConnected: () => false, onOfflineDrop: () => undefined, onRetainedReadFailed: (error) => failures.push(error) });
  // More than the iterator reads ahead (classic-level fetches in batches of about 16 KiB), so closing the store
  // interrupts it; one per uid, as the retained bounds allow 100 per uid.
  for (let i = 0; i < 2000; i++) await store.storeRetained({ cmd: 'publish', topic: `dev${i}/app/p/r`, payload: Buffer.from('x'), qos: 0, retain: true, dup: false });
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));

  // As aedes 1.2.0's lib/handlers/subscribe.js does: pipe into a consumer that takes its time; close the store meanwhile (a shutdown).
  const stream = store.createRetainedStreamCombi(['+/app/p/#']);
  const delivered: unknown[] = [];
  stream.pipe(
    new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(packet, _encoding, callback) {
        delivered.push(packet);
        setImmediate(callback);
      },
    }),
  );
  await waitFor(() => delivered.length > 0 || undefined, 'the first retained message');
  await db.close();
  await waitFor(() => failures.length > 0 || uncaught.length > 0 || undefined, 'the read error');
  if (!stream.destroyed) await once(stream, 'close');
  assert.deepEqual(uncaught, []);
  assert.match(failures[0]?.message ?? '', /not open|closed/i);
});
