import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Redis } from 'ioredis';
import { LeaseKeeper } from '../../src/cluster/lease-keeper.js';
import { silentLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/index.js';

/*
 * The campaign lease keeper stops driving when the lease's local validity
 * runs out without a confirmed extend. Node times a timer from the loop's
 * cached clock, so the expiry timer can fire before the validity (measured
 * with performance.now) has run out; here the lease's clock runs at half
 * speed, so every timer fires "early" by its measure.
 */
test('cut off from Redis, a keeper whose expiry timer fires before the validity ran out still stops driving once it has', async (t) => {
  // Redis answers the first SET, then is unreachable (every extend and the release fail).
  const redis = {
    status: 'ready',
    set: () => Promise.resolve('OK'),
    eval: () => Promise.reject(new Error('Connection is closed.')),
    get: () => Promise.resolve(null),
  } as unknown as Redis;
  const started = performance.now();
  const halfSpeed = (): number => (performance.now() - started) / 2;
  const keeper = new LeaseKeeper(redis, { key: 'test:lease', instanceId: 'A', ttlMs: 200 }, silentLogger(), { intervalMs: 60_000, now: halfSpeed });
  const changes: boolean[] = [];
  await keeper.start((driving) => changes.push(driving));
  t.after(() => keeper.stop());
  assert.deepEqual(changes, [true]);
  // Valid for 196 ms of the lease's clock: about 392 ms of real time.
  await waitFor(() => changes.length === 2, 'the keeper to stop driving', 5_000);
  assert.deepEqual(changes, [true, false]);
  assert.equal(keeper.held, false);
  assert.ok(halfSpeed() >= 196, `stopped at ${halfSpeed().toFixed(0)} ms of the lease's clock, not before its validity ran out`);
});
