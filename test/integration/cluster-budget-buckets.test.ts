// A campaign's byte budget shared by the instances of a cluster (README "Byte budget"):
// two RedisByteBuckets on their own connections to one real redis-server stand for two
// instances, each serving downloaders that ask chunk after chunk and wait as told. The
// bytes both serve together stay at the budget, not twice it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisByteBuckets } from '../../src/cluster/budget-buckets.js';
import { startRedis } from '../helpers/redis.js';
import { DownloadBudgets } from '../../src/ota/budget.js';

const IMAGE = '2.0.0-0-gshared1';
const RATE = 200_000;
const CHUNK = 4096;
const LIMITS = { bytesPerSecond: RATE, burst: RATE / 4 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('two instances drawing on one Redis bucket serve the budget together, ±10% per 1 s window; past maxDelayMs nothing is taken', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const instances = [0, 1].map(() => {
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    return new RedisByteBuckets(client, 'test:campaigns:budget:', () => client.quit().then(() => undefined));
  });
  t.after(() => Promise.all(instances.map((bucket) => bucket.close())));
  for (const bucket of instances) await bucket.open();
  const [first, second] = instances as [RedisByteBuckets, RedisByteBuckets];

  // Each instance: its own DownloadBudgets (as each OTA runner has), the same campaign.
  const budgets = instances.map((shared) => {
    const budget = new DownloadBudgets({ shared, onSharedError: (error) => assert.fail(`the shared bucket failed: ${String(error)}`) });
    budget.set({ campaignId: 'c1', imageId: IMAGE, bytesPerSecond: RATE, maxDelayMs: 5000, devices: ['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7'] });
    return budget;
  });

  const served: { at: number; bytes: number; instance: number }[] = [];
  const start = performance.now();
  const until = start + 6000;
  async function downloader(instance: number, uid: string): Promise<void> {
    const budget = budgets[instance];
    assert.ok(budget);
    while (performance.now() < until) {
      const decision = await budget.request(uid, IMAGE, CHUNK);
      assert.equal(decision.kind, 'wait', `${uid}: within maxDelayMs`);
      if (decision.kind === 'wait' && decision.ms > 0) await sleep(decision.ms);
      served.push({ at: performance.now(), bytes: CHUNK, instance });
    }
  }
  await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => downloader(i % 2, `d${i}`)));

  const windows: number[] = [];
  for (let from = start + 1000; from + 1000 <= until; from += 1000) {
    windows.push(served.filter((piece) => piece.at >= from && piece.at < from + 1000).reduce((sum, piece) => sum + piece.bytes, 0));
  }
  const byInstance = [0, 1].map((instance) => served.filter((piece) => piece.instance === instance).length);
  t.diagnostic(`B/s per 1 s window: ${windows.join(', ')}; chunks per instance ${byInstance.join(' / ')}`);
  assert.ok(windows.length >= 4);
  for (const rate of windows) assert.ok(Math.abs(rate - RATE) <= RATE * 0.1, `a window served ${rate} B/s against a shared budget of ${RATE} (all: ${windows.join(', ')})`);
  assert.ok(byInstance.every((chunks) => chunks > 0), 'both instances served');

  // A request that would wait past maxWaitMs takes nothing: the next one that fits still waits only for the debt before it.
  const drained = await first.reserve('c2', LIMITS, RATE, 10_000);
  assert.deepEqual(drained.taken, true);
  const over = await second.reserve('c2', LIMITS, RATE, 1000);
  assert.equal(over.taken, false);
  assert.ok(over.waitMs > 1000 && over.waitMs <= 2000, `wait ${over.waitMs} ms`);
  const fits = await second.reserve('c2', LIMITS, CHUNK, 2000);
  assert.equal(fits.taken, true);
  assert.ok(fits.waitMs < over.waitMs, 'the refused request left no debt behind');
});
