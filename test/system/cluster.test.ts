import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addDevice, appCounts, device, inbox, startCluster, startInstance, waitFor } from '../helpers/cluster-harness.js';

// Two or three instances as separate processes on one real redis-server (cluster mode, issue 7).

test('1,000 app messages from a device on A are processed exactly once in the cluster, on A', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'dev-a');
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  const client = await device(t, a, 'dev-a');
  for (let i = 0; i < 1000; i++) await client.publishAsync('dev-a/app/p/data', Buffer.from(String(i)), { qos: 1 });
  // Every PUBACK arrived, so A accepted all 1,000; B must have processed none.
  const [adminA, adminB] = await Promise.all([a.admin(), b.admin()]);
  const countsA = await waitFor(async () => {
    const counts = await appCounts(adminA);
    return counts.total >= 1000 ? counts : undefined;
  }, 'A to process 1,000 messages');
  assert.deepEqual({ total: countsA.total, distinct: countsA.distinct, duplicates: countsA.duplicates }, { total: 1000, distinct: 1000, duplicates: 0 });
  // A service-style wildcard subscriber anywhere must not turn into a second ingest path.
  const countsB = await appCounts(adminB);
  assert.deepEqual({ total: countsB.total, duplicates: countsB.duplicates }, { total: 0, duplicates: 0 });
});

test('an app response and an OTA push from instance A reach a device connected to instance B', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'dev-b');
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  const client = await device(t, b, 'dev-b');
  const received = inbox(client);
  await client.subscribeAsync(['dev-b/app/s/#', 'dev-b/ota/s'], { qos: 1 });
  const adminA = await a.admin();
  // The app runner on A answers; the device is on B.
  await adminA.request('app.request', { target: 'send', payload: { uid: 'dev-b', target: 'hello', data: 'from-a' } });
  const response = await waitFor(() => received.messages.find((m) => m.topic === 'dev-b/app/s/hello'), 'the app response on B');
  assert.equal(response.payload.toString(), 'from-a');
  // An image added and linked through admin on A is pushed to the device on B.
  const bytes = Buffer.alloc(10_000, 7);
  const begin = await adminA.request<{ uploadId: string }>('uploads.begin', { size: bytes.length });
  await adminA.request('uploads.chunk', { uploadId: begin.uploadId, offset: 0, data: bytes });
  await adminA.request('images.add', { id: '1.2.3-4-g965b9df', imageType: 'primary', uploadId: begin.uploadId });
  await adminA.request('ota.link', { device: 'dev-b', image: '1.2.3-4-g965b9df' });
  const push = await waitFor(() => received.messages.find((m) => m.topic === 'dev-b/ota/s'), 'the OTA push on B');
  assert.ok(push.payload.length > 0, 'a package, not "no update"');
});

test('ACL rules set live through admin on A take effect on B for new subscriptions and publishes, without a restart', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'rules-dev');
  await addDevice(cluster, 'rules-watch');
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  const watcher = await device(t, b, 'rules-watch');
  const publisher = await device(t, b, 'rules-dev');
  // No rule yet: a device may not subscribe to fleet topics (SUBACK 0x80; mqtt.js rejects it).
  const before = await watcher.subscribeAsync('fleet/#', { qos: 1 }).then(
    (granted) => granted.map((g) => g.qos),
    (error: { packet?: { granted?: number[] } }) => error.packet?.granted,
  );
  assert.deepEqual(before, [128]);
  const adminA = await a.admin();
  const set = await adminA.request<{ live: unknown[] }>('acl.rules.set', { rules: [{ who: 'devices', action: 'both', topic: 'fleet/#' }] });
  assert.equal(set.live.length, 1);
  assert.deepEqual(await adminA.request('acl.rules.list'), { configured: [], live: [{ who: 'devices', action: 'both', effect: 'allow', topic: 'fleet/#' }] });
  // B reloads when the news comes through Redis routing: wait until a subscription is granted there.
  await waitFor(async () => (await watcher.subscribeAsync('fleet/#', { qos: 1 }).then((granted) => granted[0]?.qos === 1, () => false)) || undefined, 'the rule on B');
  const received = inbox(watcher);
  await publisher.publishAsync('fleet/status', 'up', { qos: 1 });
  const message = await waitFor(() => received.messages.find((m) => m.topic === 'fleet/status'), 'the fleet message on B');
  assert.equal(message.payload.toString(), 'up');
  // A bad rule is refused before anything is stored, naming the problem.
  await assert.rejects(adminA.request('acl.rules.set', { rules: [{ who: 'devices', action: 'both', topic: 'a/#/b' }] }), /'#' must be a whole level/);
});
