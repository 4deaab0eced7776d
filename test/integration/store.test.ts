import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { LevelStore, RedisStore, type KvStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/index.js';
import { startRedis } from '../helpers/redis.js';

async function collect<T>(store: KvStore, prefix: string): Promise<[string, T][]> {
  const out: [string, T][] = [];
  for await (const entry of store.entries<T>(prefix)) out.push(entry);
  return out;
}

/** The same contract for both implementations. */
async function exercise(store: KvStore): Promise<void> {
  assert.equal(await store.get('ota/image/missing'), undefined);
  await store.put('ota/image/1.0.0-0-ga', { size: 1 });
  await store.put('ota/image/1.0.1-0-gb', { size: 2 });
  await store.put('ota/group/g1', { members: ['a'] });
  await store.put('ota/imagex', 'not an image');
  assert.deepEqual(await store.get('ota/image/1.0.0-0-ga'), { size: 1 });
  assert.deepEqual(await collect(store, 'ota/image/'), [
    ['ota/image/1.0.0-0-ga', { size: 1 }],
    ['ota/image/1.0.1-0-gb', { size: 2 }],
  ]);
  await store.batch([
    { type: 'del', key: 'ota/image/1.0.0-0-ga' },
    { type: 'put', key: 'ota/image/2.0.0-0-gc', value: { size: 3 } },
  ]);
  assert.deepEqual((await collect(store, 'ota/image/')).map(([k]) => k), ['ota/image/1.0.1-0-gb', 'ota/image/2.0.0-0-gc']);
  await store.del('ota/group/g1');
  assert.deepEqual(await collect(store, 'ota/group/'), []);
  // More than one page of a prefix scan.
  await store.batch(Array.from({ length: 1203 }, (_, i) => ({ type: 'put' as const, key: `many/${String(i).padStart(5, '0')}`, value: i })));
  const many = await collect<number>(store, 'many/');
  assert.equal(many.length, 1203);
  assert.deepEqual(many.map(([, v]) => v), Array.from({ length: 1203 }, (_, i) => i));
}

test('LevelStore keeps the KvStore contract and survives reopening', async (t) => {
  const dir = await tempDir(t);
  const store = new LevelStore(path.join(dir, 'kv'));
  await store.open();
  await exercise(store);
  await store.close();
  const again = new LevelStore(path.join(dir, 'kv'));
  await again.open();
  t.after(() => again.close());
  assert.deepEqual(await again.get('ota/image/2.0.0-0-gc'), { size: 3 });
});

test('RedisStore keeps the KvStore contract against a real redis-server', async (t: TestContext) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const store = new RedisStore(redis.url, 'test:');
  await store.open();
  t.after(() => store.close());
  await exercise(store);
  // Another connection (another instance) sees the same data.
  const other = new RedisStore(redis.url, 'test:');
  await other.open();
  t.after(() => other.close());
  assert.deepEqual(await other.get('ota/image/2.0.0-0-gc'), { size: 3 });
  // A different namespace is a different store.
  const foreign = new RedisStore(redis.url, 'other:');
  await foreign.open();
  t.after(() => foreign.close());
  assert.equal(await foreign.get('ota/image/2.0.0-0-gc'), undefined);
});
