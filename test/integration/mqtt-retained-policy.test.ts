// The retained-message policy on its own (pure), the compaction scheduler, and
// the Redis session store applying the same bounds against a real redis-server
// (the embedded store is exercised end to end in mqtt-retained.test.ts).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Aedes, type PublishPacket } from 'aedes';
import { Redis } from 'ioredis';
import { Compactor } from '../../src/mqtt/compactor.js';
import { RedisSessionStore } from '../../src/mqtt/persistence-redis.js';
import type { SessionStoreOptions } from '../../src/mqtt/persistence.js';
import { RetainedPolicy, type RetainedLimits, type RetainedRefusal } from '../../src/mqtt/retained.js';
import { waitFor } from '../helpers/index.js';
import { startRedis } from '../helpers/redis.js';

const LIMITS: RetainedLimits = { perDevice: 3, bytesPerDevice: 100, total: 5, bytesTotal: 1000 };

function bytes(n: number): Buffer {
  return Buffer.alloc(n, 1);
}

test('the policy counts messages and bytes (topic + payload) per uid and in total, and refuses over each bound', () => {
  const refusals: [string, string, RetainedRefusal][] = [];
  const policy = new RetainedPolicy(LIMITS, (uid, topic, reason) => refusals.push([uid, topic, reason]));
  // 'd1/a' is 4 bytes: 4 + 16 = 20 per message.
  for (const topic of ['d1/a', 'd1/b', 'd1/c']) assert.equal(policy.admit(topic, bytes(16)).store, true);
  assert.deepEqual(policy.deviceUsage('d1'), { messages: 3, bytes: 60 });
  const over = policy.admit('d1/d', bytes(16));
  assert.equal(over.store, false);
  assert.equal(over.refused, 'device_messages');
  // Replacing at the count bound is allowed; growing past the byte bound is not, and drops the older message.
  assert.equal(policy.admit('d1/a', bytes(50)).store, true);
  assert.deepEqual(policy.deviceUsage('d1'), { messages: 3, bytes: 94 });
  const tooBig = policy.admit('d1/b', bytes(60));
  assert.equal(tooBig.refused, 'device_bytes');
  assert.deepEqual(policy.deviceUsage('d1'), { messages: 2, bytes: 74 });
  // The total: d2 and d3 fill it to 5.
  for (const topic of ['d2/a', 'd2/b', 'd3/a']) assert.equal(policy.admit(topic, bytes(16)).store, true);
  assert.equal(policy.admit('d3/b', bytes(16)).refused, 'total_messages');
  assert.deepEqual(policy.usage(), { messages: 5, bytes: 134 });
  // An empty payload clears, and makes room.
  assert.equal(policy.admit('d2/a', Buffer.alloc(0)).store, false);
  assert.equal(policy.admit('d3/b', bytes(16)).store, true);
  assert.deepEqual(
    refusals.map(([uid, , reason]) => `${uid}:${reason}`),
    ['d1:device_messages', 'd1:device_bytes', 'd3:total_messages'],
  );
});

test('total bytes bound, undo after a failed write, and a rebuild from what is stored', async () => {
  const policy = new RetainedPolicy({ ...LIMITS, bytesTotal: 50 });
  assert.equal(policy.admit('d1/a', bytes(20)).store, true);
  assert.equal(policy.admit('d2/a', bytes(20)).store, true);
  assert.equal(policy.admit('d3/a', bytes(20)).refused, 'total_bytes');
  const failed = policy.admit('d1/a', Buffer.alloc(0));
  assert.deepEqual(policy.usage(), { messages: 1, bytes: 24 });
  failed.undo();
  assert.deepEqual(policy.usage(), { messages: 2, bytes: 48 });
  const grown = policy.admit('d1/a', bytes(23));
  assert.equal(grown.refused, 'total_bytes');
  grown.undo();
  assert.deepEqual(policy.usage(), { messages: 2, bytes: 48 });

  async function* stored(): AsyncIterable<Pick<PublishPacket, 'topic' | 'payload'>> {
    yield { topic: 'd1/x', payload: bytes(10) };
    yield { topic: 'd1/y', payload: 'text' };
    yield { topic: 'solo', payload: bytes(1) };
  }
  assert.deepEqual(await policy.rebuild(stored()), { messages: 3, bytes: 4 + 10 + 4 + 4 + 4 + 1 });
  assert.deepEqual(policy.deviceUsage('d1'), { messages: 2, bytes: 22 });
  assert.deepEqual(policy.deviceUsage('d2'), { messages: 0, bytes: 0 });
});

test('the compactor: a burst of requests is one compaction, at most one per interval, none after close', async () => {
  let runs = 0;
  let release: (() => void) | undefined;
  const done: unknown[] = [];
  const compactor = new Compactor({
    compact: () => {
      runs++;
      return new Promise<void>((resolve) => (release = resolve));
    },
    intervalMs: 200,
    settleMs: 20,
    onDone: (error) => done.push(error),
  });
  for (let i = 0; i < 100; i++) compactor.request();
  await waitFor(() => runs === 1, 'the first compaction');
  // Requests while it runs are served by one more, after it and after the interval.
  compactor.request();
  compactor.request();
  const firstEnded = Date.now();
  release?.();
  await waitFor(() => runs === 2, 'the second compaction');
  assert.ok(Date.now() - firstEnded >= 150, 'the second waited for the interval');
  release?.();
  await waitFor(() => done.length === 2, 'both reported');
  assert.deepEqual(done, [undefined, undefined]);
  compactor.request();
  await compactor.close();
  compactor.request();
  assert.equal(runs, 2);
});

const sessionOptions: SessionStoreOptions = {
  offlineQueueSize: 10,
  maySubscribe: () => true,
  isConnected: () => false,
  onOfflineDrop: () => undefined,
};

async function redisStore(t: TestContext, url: string): Promise<{ store: RedisSessionStore; refusals: RetainedRefusal[] }> {
  const redis = new Redis(url, { keyPrefix: 'test:mqtt:', lazyConnect: true });
  await redis.connect();
  const refusals: RetainedRefusal[] = [];
  const policy = new RetainedPolicy(LIMITS, (_uid, _topic, reason) => refusals.push(reason));
  const store = new RedisSessionStore(redis, { ...sessionOptions, retained: { policy, compactIntervalMs: 1000 } }, 10);
  const aedes = new Aedes({ persistence: store });
  await aedes.listen();
  t.after(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await store.settled();
    redis.disconnect();
  });
  return { store, refusals };
}

function retained(topic: string, payload: Buffer): PublishPacket {
  return { cmd: 'publish', topic, payload, qos: 0, retain: true, dup: false };
}

async function storedTopics(store: RedisSessionStore): Promise<string[]> {
  const topics: string[] = [];
  for await (const packet of store.createRetainedStream('#') as AsyncIterable<PublishPacket>) topics.push(packet.topic);
  return topics.sort();
}

test('the Redis session store applies the same bounds and rebuilds its counts from Redis when it starts', async (t) => {
  const server = await startRedis(t);
  if (!server) return;
  const first = await redisStore(t, server.url);
  for (const topic of ['d1/a', 'd1/b', 'd1/c', 'd1/d', 'd2/a']) await first.store.storeRetained(retained(topic, bytes(16)));
  assert.deepEqual(first.refusals, ['device_messages']);
  assert.deepEqual(await storedTopics(first.store), ['d1/a', 'd1/b', 'd1/c', 'd2/a']);
  // Over the byte bound: not kept, and the older message on the topic is gone.
  await first.store.storeRetained(retained('d1/a', bytes(90)));
  assert.deepEqual(await storedTopics(first.store), ['d1/b', 'd1/c', 'd2/a']);

  // A second store on the same Redis (a restart, or another instance) counts what is there.
  const second = await redisStore(t, server.url);
  await second.store.storeRetained(retained('d1/e', bytes(16)));
  await second.store.storeRetained(retained('d1/f', bytes(16)));
  assert.deepEqual(second.refusals, ['device_messages']);
  assert.deepEqual(await storedTopics(second.store), ['d1/b', 'd1/c', 'd1/e', 'd2/a']);
  // Clears pass through to Redis, and make room.
  await second.store.storeRetained(retained('d1/b', Buffer.alloc(0)));
  await second.store.storeRetained(retained('d1/f', bytes(16)));
  assert.deepEqual(await storedTopics(second.store), ['d1/c', 'd1/e', 'd1/f', 'd2/a']);
});
