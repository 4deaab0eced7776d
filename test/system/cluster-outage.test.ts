import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startRedis } from '../helpers/redis.js';
import { addDevice, appCounts, device, inbox, startCluster, startInstance, waitFor } from '../helpers/cluster-harness.js';

// Redis outage (issue 7): the instance keeps its devices, says degraded, loses nothing it acknowledged, recovers.

async function health(port: number): Promise<{ status: number; body: { status: string; checks?: { redis?: { ok: boolean } } } }> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: response.status, body: (await response.json()) as { status: string; checks?: { redis?: { ok: boolean } } } };
}

test('Redis outage: devices stay connected, QoS 1 ingest goes on (each PUBACK is a processed message), /healthz degraded, recovery', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'dev-o');
  const a = await startInstance(t, cluster, 'a');
  const client = await device(t, a, 'dev-o');
  const received = inbox(client);
  await client.subscribeAsync('dev-o/app/s/#', { qos: 1 });
  let closed = false;
  client.on('close', () => (closed = true));
  assert.equal((await health(a.adminPort)).status, 200);

  await cluster.redis.stop();
  const degraded = await waitFor(async () => {
    const h = await health(a.adminPort);
    return h.status === 503 ? h : undefined;
  }, '/healthz to report degraded');
  assert.equal(degraded.body.status, 'degraded');
  assert.equal(degraded.body.checks?.redis?.ok, false);
  await waitFor(() => a.proc.output().includes('redis unavailable'), 'the outage in the log');

  // Device → server needs no Redis: each message is in the app runner before its PUBACK.
  for (let i = 0; i < 200; i++) await client.publishAsync('dev-o/app/p/during', Buffer.from(String(i)), { qos: 1 });
  const adminA = await a.admin();
  const during = await appCounts(adminA);
  assert.deepEqual({ total: during.total, distinct: during.distinct }, { total: 200, distinct: 200 });
  assert.equal(closed, false, 'the device stayed connected');

  const restarted = await startRedis(t, cluster.redis.port, cluster.redis.dir);
  assert.ok(restarted);
  await waitFor(async () => (await health(a.adminPort)).status === 200, '/healthz back to ok', 15_000, 100);
  await waitFor(() => a.proc.output().includes('redis connection restored'), 'the recovery in the log');
  // Server → device routing works again.
  await adminA.request('app.request', { target: 'send', payload: { uid: 'dev-o', target: 'after', data: 'recovered' } });
  const message = await waitFor(() => received.messages.find((m) => m.topic === 'dev-o/app/s/after'), 'a message after recovery');
  assert.equal(message.payload.toString(), 'recovered');
  assert.equal(closed, false, 'the device stayed connected through the outage');
  const after = await appCounts(adminA);
  assert.equal(after.duplicates, 0);
});
