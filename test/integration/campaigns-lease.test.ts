// The campaign lease (src/cluster/lease.ts, lease-keeper.ts) against a real redis-server:
// SET NX PX to take it, compare-and-extend, compare-and-delete, expiry, and a second
// contender taking over a holder that can no longer reach Redis.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { LeaseKeeper } from '../../src/cluster/lease-keeper.js';
import { RedisLease } from '../../src/cluster/lease.js';
import { RedisObservationRelay } from '../../src/cluster/observation-relay.js';
import { silentLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const KEY = 'test:campaigns:lease';

function connection(t: TestContext, redis: RedisServer): Redis {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  // A test cuts some connections on purpose; their reconnect errors are expected.
  client.on('error', () => undefined);
  t.after(() => client.disconnect());
  return client;
}

test('a lease: taken once, extended and released only by its holder, free again after its TTL', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const ttlMs = 600;
  const a = new RedisLease(connection(t, redis), { key: KEY, owner: 'A', ttlMs });
  const b = new RedisLease(connection(t, redis), { key: KEY, owner: 'B', ttlMs });

  assert.equal(await a.acquire(), true);
  assert.equal(a.held, true);
  assert.ok(a.remainingMs > 0 && a.remainingMs <= ttlMs);
  assert.equal(await b.acquire(), false, 'a held lease is not taken');
  assert.equal(b.held, false);
  assert.equal(await b.extend(), false, 'only the holder extends');
  assert.equal(await b.release(), false, 'only the holder releases');
  assert.equal(await a.holder(), 'A');

  // Extending keeps it past its first TTL.
  const extendedAt = Date.now();
  for (let i = 0; i < 4; i++) {
    await waitFor(() => Date.now() - extendedAt >= ((i + 1) * ttlMs) / 3, `extend ${i + 1}`);
    assert.equal(await a.extend(), true);
  }
  assert.ok(Date.now() - extendedAt > ttlMs);
  assert.equal(await b.holder(), 'A');

  // Not extended: Redis lets it expire, the holder's local validity ends no later, and B takes it.
  await waitFor(() => !a.held, 'A to stop counting the lease as held', ttlMs * 2);
  await waitFor(async () => (await b.acquire()) || undefined, 'B to take the expired lease', ttlMs * 2);
  assert.equal(await b.holder(), 'B');
  assert.equal(await a.extend(), false, "A cannot extend B's lease");
  assert.equal(a.held, false);

  // Compare-and-delete: A's release leaves B's lease alone; B's frees it at once.
  assert.equal(await a.release(), false);
  assert.equal(await b.holder(), 'B');
  assert.equal(await b.release(), true);
  assert.equal(b.held, false);
  assert.equal(await a.holder(), undefined);
  assert.equal(await a.acquire(), true, 'free again right after the release');
});

test('two keepers: one drives; cut off from Redis it stops before the other takes over, within the TTL plus one interval', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const ttlMs = 1000;
  const intervalMs = 250;
  const logger = silentLogger();
  const events: string[] = [];
  const connA = connection(t, redis);
  const a = new LeaseKeeper(connA, { key: KEY, instanceId: 'A', ttlMs }, logger, { intervalMs });
  const b = new LeaseKeeper(connection(t, redis), { key: KEY, instanceId: 'B', ttlMs }, logger, { intervalMs });
  let aStoppedAt = 0;
  let bDroveAt = 0;
  let aHeldWhenBDrove: boolean | undefined;
  await a.start((driving) => {
    events.push(`A ${driving ? 'drives' : 'stops'}`);
    if (!driving) aStoppedAt = performance.now();
  });
  t.after(() => a.stop());
  assert.deepEqual(events, ['A drives'], 'the first keeper drives at once');
  await b.start((driving) => {
    events.push(`B ${driving ? 'drives' : 'stops'}`);
    if (!driving) return;
    bDroveAt = performance.now();
    // The fence that matters: A counts the lease as its own no longer once B has it.
    aHeldWhenBDrove = a.held;
  });
  t.after(() => b.stop());

  // A keeps the lease over several TTLs by extending it; B never drives meanwhile.
  const since = Date.now();
  await waitFor(() => Date.now() - since >= ttlMs * 2.5, 'two and a half TTLs', ttlMs * 4);
  assert.deepEqual(events, ['A drives']);
  assert.equal(a.held, true);
  assert.equal(await b.holder(), 'A');

  // A loses Redis (as in a network partition or a long pause): no extend works any more.
  const cutAt = performance.now();
  connA.disconnect();
  await waitFor(() => bDroveAt > 0, 'B to take over', ttlMs * 4);
  assert.equal(aHeldWhenBDrove, false, 'A no longer counted the lease as held when B took it');
  await waitFor(() => aStoppedAt > 0, 'A to stop driving');
  assert.ok(bDroveAt - cutAt <= ttlMs + intervalMs + 100, `B drove ${Math.round(bDroveAt - cutAt)} ms after the cut`);
  assert.deepEqual([...events].sort(), ['A drives', 'A stops', 'B drives']);
  assert.equal(a.held, false);
  assert.equal(await b.holder(), 'B');
  t.diagnostic(`A stopped ${Math.round(aStoppedAt - cutAt)} ms and B drove ${Math.round(bDroveAt - cutAt)} ms after A lost Redis (TTL ${ttlMs} ms)`);

  // A clean stop releases the lease at once (compare-and-delete), so a new contender need not wait for the TTL.
  await b.stop();
  assert.equal(await new RedisLease(connection(t, redis), { key: KEY, owner: 'C', ttlMs }).acquire(), true);
});

test('campaign commands through Redis: with no driver listening the asker is told at once; a driver answers results and errors; a silent one times out', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const channel = 'test:campaigns:observations';
  const relay = (instanceId: string, timeoutMs?: number) => {
    const relayed = new RedisObservationRelay(connection(t, redis), connection(t, redis), channel, instanceId, silentLogger(), undefined, timeoutMs);
    t.after(() => relayed.close());
    return relayed;
  };
  const driver = relay('driver');
  const follower = relay('follower', 500);
  await driver.open();
  await follower.open();

  const started = Date.now();
  await assert.rejects(follower.ask({ command: 'pause', id: 'c1' }), { code: 'UNAVAILABLE', message: /no instance drives/ });
  assert.ok(Date.now() - started < 400, 'not the time-out: nobody was listening');

  const ran: unknown[] = [];
  await driver.listen(
    () => undefined,
    async (request) => {
      ran.push(request);
      return request.command === 'pause' ? { result: { id: request.id, state: 'paused' } } : { error: { code: 'NOT_FOUND', message: 'no campaign' } };
    },
  );
  assert.deepEqual(await follower.ask({ command: 'pause', id: 'c1' }), { result: { id: 'c1', state: 'paused' } });
  assert.deepEqual(await follower.ask({ command: 'resume', id: 'c2' }), { error: { code: 'NOT_FOUND', message: 'no campaign' } });
  assert.deepEqual(ran, [
    { command: 'pause', id: 'c1' },
    { command: 'resume', id: 'c2' },
  ]);

  // A driver that never answers: the asker gives up after its time-out and says the outcome is unknown.
  await driver.unlisten();
  await driver.listen(
    () => undefined,
    () => new Promise(() => undefined),
  );
  await assert.rejects(follower.ask({ command: 'promote', id: 'c1' }), { code: 'UNAVAILABLE', message: /did not answer within 500 ms/ });
});
