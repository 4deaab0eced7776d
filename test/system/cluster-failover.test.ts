import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { decodeCbor, encodeCbor } from '../../src/protocol/index.js';
import { addDevice, device, inbox, listDevices, PRESENCE_TTL_S, startCluster, startInstance, waitFor } from '../helpers/cluster-harness.js';

// Cluster mode (issue 7): shared firmware bytes, sessions that move between instances, crash expiry.

const IMAGE_ID = '2.0.0-1-gabcdef1';

test('an image uploaded through admin on A downloads completely from B, in MQTT chunks and HTTP ranges', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'dev-dl');
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  const image = randomBytes(300_000);
  const file = path.join(cluster.dir, 'firmware.bin');
  await writeFile(file, image);
  const adminA = await a.admin();
  await adminA.addImage(file, { id: IMAGE_ID, imageType: 'primary' });

  // MQTT: DownloadBytes in 4 KiB chunks from a device on B.
  const client = await device(t, b, 'dev-dl');
  const received = inbox(client);
  await client.subscribeAsync('dev-dl/ota/s/d', { qos: 1 });
  const chunkSize = 4096;
  const parts: Buffer[] = [];
  for (let start = 0, n = 0; start < image.length; start += chunkSize, n++) {
    const end = Math.min(image.length, start + chunkSize);
    const request = new Map<number, unknown>([[0, 2], [1, IMAGE_ID], [2, start], [3, end]]);
    await client.publishAsync('dev-dl/ota/p', encodeCbor(request), { qos: 1 });
    const message = await waitFor(() => received.messages[n], `chunk ${n}`);
    const chunk = decodeCbor(message.payload) as Map<number, unknown>;
    assert.deepEqual([chunk.get(0), chunk.get(1), chunk.get(3)], [start, end, end - start]);
    parts.push(Buffer.from(chunk.get(2) as Uint8Array));
  }
  assert.equal(createHash('sha256').update(Buffer.concat(parts)).digest('hex'), createHash('sha256').update(image).digest('hex'));

  // HTTP: 64 KiB ranges from B's download server.
  const ranges: Buffer[] = [];
  for (let start = 0; start < image.length; start += 65_536) {
    const last = Math.min(image.length, start + 65_536) - 1;
    const response = await fetch(`http://127.0.0.1:${b.httpPort}/images/${IMAGE_ID}`, { headers: { Range: `bytes=${start}-${last}` } });
    assert.equal(response.status, 206);
    ranges.push(Buffer.from(await response.arrayBuffer()));
  }
  assert.ok(Buffer.concat(ranges).equals(image), 'HTTP ranges from B reassemble the image uploaded on A');
  const whole = await fetch(`http://127.0.0.1:${b.httpPort}/images/${IMAGE_ID}`);
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(image));
});

test('a persistent-session device leaves A, a QoS 1 message is sent meanwhile, it reconnects to B and receives it', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  await addDevice(cluster, 'dev-s');
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  const first = await device(t, a, 'dev-s', { clean: false });
  await first.subscribeAsync('dev-s/app/s/#', { qos: 1 });
  await first.endAsync();
  // Sent by A's app runner while the device is offline: queued in Redis.
  const adminA = await a.admin();
  await adminA.request('app.request', { target: 'send', payload: { uid: 'dev-s', target: 'queued', data: 'while-away' } });
  const again = await device(t, b, 'dev-s', { clean: false });
  const received = inbox(again);
  const message = await waitFor(() => received.messages.find((m) => m.topic === 'dev-s/app/s/queued'), 'the queued message on B');
  assert.equal(message.payload.toString(), 'while-away');
  // Delivered once: nothing else arrives for it.
  await waitFor(async () => (await listDevices(await b.admin())).find((d) => d.uid === 'dev-s')?.online, 'dev-s online on B');
  assert.equal(received.messages.filter((m) => m.topic === 'dev-s/app/s/queued').length, 1);
});

test('kill -9 of instance A: its devices show offline on B within the presence TTL, then reconnect to B', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  const uids = ['dev-k1', 'dev-k2', 'dev-k3'];
  for (const uid of uids) await addDevice(cluster, uid);
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a', { via: 'cli' }), startInstance(t, cluster, 'b', { via: 'cli' })]);
  const clients = await Promise.all(uids.map((uid) => device(t, a, uid)));
  const adminB = await b.admin();
  const onlineOnB = async () => (await listDevices(adminB)).filter((d) => uids.includes(d.uid) && d.online);
  await waitFor(async () => (await onlineOnB()).length === 3, 'B to see the three devices of A online');

  const closed = Promise.all(clients.map((client) => new Promise<void>((resolve) => client.once('close', () => resolve()))));
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  const killedAt = Date.now();
  await closed;
  // Presence expires without A's help; B's sweep announces it. Bounded by the TTL plus slack for polling.
  await waitFor(async () => (await onlineOnB()).length === 0, 'the devices of A to show offline on B', PRESENCE_TTL_S * 1000 + 2000, 100);
  const tookMs = Date.now() - killedAt;
  assert.ok(tookMs <= PRESENCE_TTL_S * 1000 + 2000, `offline after ${tookMs} ms`);
  t.diagnostic(`devices of the killed instance offline on B after ${tookMs} ms (presence_ttl_s = ${PRESENCE_TTL_S})`);

  await Promise.all(uids.map((uid) => device(t, b, uid)));
  const back = await waitFor(async () => {
    const online = await onlineOnB();
    return online.length === 3 ? online : undefined;
  }, 'the devices back online on B');
  assert.deepEqual(back.map((d) => d.uid).sort(), uids);
});
