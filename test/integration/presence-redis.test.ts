// RedisPresence against a real redis-server: two instances share one online set,
// with the same rule as a single instance (online while any connection is open).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { RedisHealth } from '../../src/cluster/redis-health.js';
import { silentLogger } from '../../src/logger.js';
import { RedisPresence, type DeviceConnection } from '../../src/presence/index.js';
import { waitFor } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const TTL_MS = 1200;

async function instance(t: TestContext, redis: RedisServer, name: string): Promise<RedisPresence> {
  const logger = silentLogger();
  const presence = new RedisPresence({ url: redis.url, namespace: 'test:', instanceId: name, ttlMs: TTL_MS }, new RedisHealth(logger), logger);
  await presence.start();
  t.after(() => presence.stop());
  return presence;
}

function connection(uid: string, overrides: Partial<DeviceConnection> = {}): DeviceConnection {
  return { uid, clientId: uid, remoteAddress: '127.0.0.1:4000', authMethod: 'password', at: Date.now(), ...overrides };
}

/**
 * Announcements reach an instance in the order they were written, so once a
 * marker device connected on `from` is seen on `on`, every change `from` made
 * before it has arrived too: how "nothing else happened" is checked without sleeping.
 */
let markers = 0;
async function settle(from: RedisPresence, on: RedisPresence[]): Promise<void> {
  const uid = `marker-${++markers}`;
  const leave = from.connected(connection(uid));
  for (const presence of on) await waitFor(() => presence.isOnline(uid), `${uid} on ${presence.instanceId}`);
  from.disconnected(leave);
  for (const presence of on) await waitFor(() => !presence.isOnline(uid), `${uid} gone on ${presence.instanceId}`);
}

test('cluster presence: shared online set, reconnect before goodbye, moves between instances, crash expiry', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const a = await instance(t, redis, 'A');
  const b = await instance(t, redis, 'B');

  // Connect on A: online on both, held by A.
  const first = a.connected(connection('dev-1', { remoteAddress: 'first' }));
  assert.equal(a.get('dev-1')?.instance, 'A');
  await waitFor(() => b.get('dev-1')?.instance === 'A', 'dev-1 online on B, held by A');
  assert.equal(a.connections, 1);
  assert.equal(b.connections, 0);

  // Reconnect with the same client id before the old goodbye: never offline anywhere.
  const offlineSeen: string[] = [];
  b.onChange((uid, entry) => {
    if (uid === 'dev-1' && !entry) offlineSeen.push(uid);
  });
  const second = a.connected(connection('dev-1', { remoteAddress: 'second' }));
  a.disconnected(first);
  await settle(a, [b]);
  assert.deepEqual(offlineSeen, []);
  assert.equal(a.get('dev-1')?.remoteAddress, 'second');
  assert.equal(b.get('dev-1')?.remoteAddress, 'second');

  // The device moves to B (new connection there first); A's goodbye does not take it offline.
  const onB = b.connected(connection('dev-1', { remoteAddress: 'on-b' }));
  await waitFor(() => a.get('dev-1')?.instance === 'B', 'dev-1 held by B as A sees it');
  a.disconnected(second);
  await settle(a, [b]);
  await settle(b, [a]);
  assert.deepEqual(offlineSeen, []);
  assert.equal(a.get('dev-1')?.instance, 'B');
  assert.equal(b.get('dev-1')?.instance, 'B');

  // The last goodbye: offline everywhere.
  b.disconnected(onB);
  await waitFor(() => !a.isOnline('dev-1') && !b.isOnline('dev-1'), 'dev-1 offline on both');
  assert.deepEqual(offlineSeen, ['dev-1']);

  // Held on B, briefly also connected on A: when A's connection goes, B's keeps the device online
  // (B answers A's release with its own claim).
  const heldOnB = b.connected(connection('dev-2', { remoteAddress: 'b' }));
  await waitFor(() => a.isOnline('dev-2'), 'dev-2 on A');
  const alsoOnA = a.connected(connection('dev-2', { remoteAddress: 'a' }));
  await waitFor(() => b.get('dev-2')?.instance === 'A', 'dev-2 claimed by A');
  a.disconnected(alsoOnA);
  await waitFor(() => a.get('dev-2')?.instance === 'B' && b.get('dev-2')?.instance === 'B', 'dev-2 held by B again on both');
  b.disconnected(heldOnB);

  // A crashes (stops refreshing, nothing released) with dev-3 connected: B shows it offline within the TTL.
  a.connected(connection('dev-3'));
  await waitFor(() => b.isOnline('dev-3'), 'dev-3 on B');
  await a.stop();
  const crashed = Date.now();
  await waitFor(() => !b.isOnline('dev-3'), 'dev-3 offline on B after A stopped refreshing');
  const tookMs = Date.now() - crashed;
  assert.ok(tookMs <= TTL_MS + 500, `offline after ${tookMs} ms (TTL ${TTL_MS} ms)`);
  assert.equal(b.size, 0);
});

test('cluster presence: an instance started later reads who is online; after Redis restarts empty, the holder writes its devices again', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const a = await instance(t, redis, 'A');
  for (let i = 0; i < 5; i++) a.connected(connection(`dev-${i}`));
  const b = await instance(t, redis, 'B');
  await settle(a, [b]);
  assert.deepEqual([...b.entries()].map((e) => e.uid).sort(), ['dev-0', 'dev-1', 'dev-2', 'dev-3', 'dev-4']);

  // Redis restarts with nothing (a new data dir): A writes its devices again once it is back,
  // so an instance started afterwards finds them.
  await redis.stop();
  assert.ok(await startRedis(t, redis.port));
  const c = await instance(t, redis, 'C');
  await waitFor(() => c.size === 5 && [...c.entries()].every((e) => e.instance === 'A'), 'C sees the five devices held by A', 15_000);
});
