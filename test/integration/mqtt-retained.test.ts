// Retained messages a device controls are bounded (README "Retained messages"):
// count and bytes per uid and in total; a message over a bound is delivered
// but not retained, counted and logged once per uid; the counts are rebuilt
// from the store after a restart; and clearing retained messages gives their
// disk space back (the embedded store compacts the retained key range).
// A real instance (child process), devices over TLS, and a service account
// subscribed so that device messages are routed into MQTT at all.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ClassicLevel } from 'classic-level';
import type { MqttClient } from 'mqtt';
import { testClient } from '../helpers/mqtt.js';
import { waitFor } from '../helpers/index.js';
import { connectDevice, startInstance, type Instance, type InstanceOptions } from '../helpers/reliability-support.js';

const WATCHER = { name: 'watcher', password: 'watcher-secret-0123456789' };

function limitsToml(lines: string[]): Pick<InstanceOptions, 'omit' | 'extraToml'> {
  return {
    omit: ['log', 'mqtt.limits'],
    extraToml: [
      '[log]',
      'level = "warn"',
      'format = "json"',
      '[mqtt.limits]',
      'connections_per_second = 100000',
      'connect_timeout_ms = 2000',
      'drain_timeout_ms = 3000',
      ...lines,
    ],
  };
}

/** A clean-session service account subscribed to every device's app messages; counts what it receives per topic. */
async function watch(t: TestContext, instance: Instance, filter = '+/app/p/#'): Promise<{ client: MqttClient; received: { topic: string; payload: Buffer; retain: boolean }[] }> {
  const client = await testClient(t, `mqtts://localhost:${instance.ports.tls}`, {
    ca: instance.ca,
    clientId: `svc:${WATCHER.name}:${Math.random().toString(36).slice(2)}`,
    username: `svc:${WATCHER.name}`,
    password: WATCHER.password,
    clean: true,
  });
  const received: { topic: string; payload: Buffer; retain: boolean }[] = [];
  client.on('message', (topic, payload, packet) => received.push({ topic, payload, retain: packet.retain }));
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, received };
}

async function retainedKeys(dir: string): Promise<string[]> {
  const db = new ClassicLevel<string, Buffer>(path.join(dir, 'data', 'mqtt'), { valueEncoding: 'buffer' });
  await db.open();
  try {
    const keys: string[] = [];
    // The broker's own $SYS/broker/… topics are retained too, outside the bounds: only device topics here.
    for await (const key of db.keys({ gte: 'retained:', lt: 'retained;' })) if (!key.startsWith('retained:$SYS/')) keys.push(key.slice('retained:'.length));
    return keys.sort();
  } finally {
    await db.close();
  }
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) {
    // LevelDB's compaction deletes table files while the server runs: one gone since readdir holds nothing.
    const size = await stat(path.join(dir, name)).then(
      (info) => info.size,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return 0;
        throw error;
      },
    );
    total += size;
  }
  return total;
}

test('retained messages over the per-device and total bounds are delivered, not retained, counted and logged once per uid; the counts survive a restart', async (t) => {
  const limits = limitsToml(['retained_per_device = 5', 'retained_bytes_per_device = 4096', 'retained_total = 8', 'retained_bytes_total = 1048576']);
  const first = await startInstance(t, { certDevices: ['ret-a', 'ret-b'], services: { [WATCHER.name]: WATCHER.password }, ...limits });
  const watcher = await watch(t, first);
  const a = await connectDevice(t, first, 'ret-a');
  const b = await connectDevice(t, first, 'ret-b');
  const payload = (n: number, size = 100) => Buffer.alloc(size, n);

  // ret-a: ten topics, five fit; the other five are still delivered.
  for (let i = 0; i < 10; i++) await a.publishAsync(`ret-a/app/p/r${i}`, payload(i), { qos: 1, retain: true });
  // Replacing a kept topic's message is allowed at the count bound.
  await a.publishAsync('ret-a/app/p/r0', payload(42), { qos: 1, retain: true });
  // Over the byte bound: not retained, and r1's older message goes too (a subscriber must not get an older state than the last one published).
  await a.publishAsync('ret-a/app/p/r1', payload(7, 5000), { qos: 1, retain: true });
  // ret-b: 4 fit (a holds 4, the total is 8), the fifth is over the total.
  for (let i = 0; i < 5; i++) await b.publishAsync(`ret-b/app/p/r${i}`, payload(i), { qos: 1, retain: true });
  await waitFor(() => watcher.received.length === 17, 'every message delivered to the watcher');

  // The retained store's work for a message can finish after the watcher has it: wait until every count
  // has settled at once (a wrong count never settles, and the wait fails naming the last reading).
  const counts = async () => [
    await first.metric('nucleon_mqtt_retained_messages'),
    await first.metric('nucleon_mqtt_retained_refused_total', { reason: 'device_messages' }),
    await first.metric('nucleon_mqtt_retained_refused_total', { reason: 'device_bytes' }),
    await first.metric('nucleon_mqtt_retained_refused_total', { reason: 'total_messages' }),
  ];
  let last: (number | undefined)[] = [];
  await waitFor(
    async () => {
      last = await counts();
      return JSON.stringify(last) === JSON.stringify([8, 5, 1, 1]) || undefined;
    },
    'retained 8, refused 5 per device, 1 over the device bytes, 1 over the total',
  ).catch((error: unknown) => assert.fail(`${(error as Error).message}; last reading [retained, device_messages, device_bytes, total_messages]: ${JSON.stringify(last)}`));
  const bytes = 8 * (Buffer.byteLength('ret-a/app/p/r0') + 100);
  assert.equal(await first.metric('nucleon_mqtt_retained_bytes'), bytes);
  const warnings = first.process
    .output()
    .split('\n')
    .filter((line) => line.includes('retained message over its bound'));
  assert.deepEqual(
    warnings.map((line) => (JSON.parse(line) as { uid: string; reason: string }).uid),
    ['ret-a', 'ret-b'],
    'logged once per uid',
  );

  // A new subscriber gets exactly what was kept, with r0's newer payload.
  const late = await watch(t, first, 'ret-a/app/p/#');
  await waitFor(() => late.received.length >= 4, 'the retained messages of ret-a');
  assert.deepEqual(late.received.map((m) => `${m.topic}=${m.payload[0]}`).sort(), ['ret-a/app/p/r0=42', 'ret-a/app/p/r2=2', 'ret-a/app/p/r3=3', 'ret-a/app/p/r4=4']);

  await first.stop();
  const kept = await retainedKeys(first.dir);
  assert.deepEqual(kept, ['ret-a/app/p/r0', 'ret-a/app/p/r2', 'ret-a/app/p/r3', 'ret-a/app/p/r4', 'ret-b/app/p/r0', 'ret-b/app/p/r1', 'ret-b/app/p/r2', 'ret-b/app/p/r3']);

  // After a restart the counts are rebuilt from the store: the total is still full.
  const again = await startInstance(t, { dir: first.dir, ports: first.ports, ...limits });
  assert.equal(await again.metric('nucleon_mqtt_retained_messages'), 8);
  assert.equal(await again.metric('nucleon_mqtt_retained_bytes'), bytes);
  const watcher2 = await watch(t, again);
  const a2 = await connectDevice(t, { ...again, devices: first.devices }, 'ret-a');
  await a2.publishAsync('ret-a/app/p/r5', payload(5), { qos: 1, retain: true });
  await waitFor(() => watcher2.received.some((m) => m.topic === 'ret-a/app/p/r5'), 'r5 delivered');
  await waitFor(async () => (await again.metric('nucleon_mqtt_retained_refused_total', { reason: 'total_messages' })) === 1, 'r5 refused over the total');
  // Clearing one makes room again.
  await a2.publishAsync('ret-a/app/p/r4', Buffer.alloc(0), { qos: 1, retain: true });
  await a2.publishAsync('ret-a/app/p/r5', payload(5), { qos: 1, retain: true });
  await waitFor(async () => (await again.metric('nucleon_mqtt_retained_messages')) === 8 && watcher2.received.filter((m) => m.topic === 'ret-a/app/p/r5').length === 2, 'r5 kept after r4 was cleared');
  await again.stop();
  assert.ok((await retainedKeys(first.dir)).includes('ret-a/app/p/r5'));
});

test('clearing retained messages gives their disk space back (the retained range is compacted)', async (t) => {
  const limits = limitsToml(['retained_per_device = 1000', 'retained_bytes_per_device = 67108864', 'retained_compact_interval_ms = 500']);
  const instance = await startInstance(t, { certDevices: ['ret-disk'], services: { [WATCHER.name]: WATCHER.password }, ...limits });
  const mqttDir = path.join(instance.dir, 'data', 'mqtt');
  const watcher = await watch(t, instance);
  const device = await connectDevice(t, instance, 'ret-disk');
  const empty = await directoryBytes(mqttDir);

  const COUNT = 100;
  const SIZE = 200 * 1024;
  for (let i = 0; i < COUNT; i++) {
    // Random bytes: LevelDB compresses its blocks, a constant payload would take no room.
    await device.publishAsync(`ret-disk/app/p/blob${i}`, randomBytes(SIZE), { qos: 1, retain: true });
  }
  await waitFor(() => watcher.received.length === COUNT, 'every blob delivered');
  const filled = await directoryBytes(mqttDir);
  assert.ok(filled - empty >= COUNT * SIZE * 0.9, `the store grew by ${filled - empty} bytes`);

  for (let i = 0; i < COUNT; i++) await device.publishAsync(`ret-disk/app/p/blob${i}`, Buffer.alloc(0), { qos: 1, retain: true });
  await waitFor(() => watcher.received.length === 2 * COUNT, 'every clear delivered');
  const clearedAt = Date.now();
  const cleared = await directoryBytes(mqttDir);
  // Waits for the space to come back: a condition, bounded in time.
  const after = await waitFor(
    async () => {
      const size = await directoryBytes(mqttDir);
      return size - empty < (filled - empty) / 10 ? size : undefined;
    },
    'the store to shrink after the clears',
    30_000,
    100,
  );
  process.stdout.write(`[retained-disk] empty=${empty} filled=${filled} cleared_before_compaction=${cleared} after_compaction=${after} bytes, ${Date.now() - clearedAt} ms after the last clear\n`);
  assert.ok((await instance.metric('nucleon_mqtt_retained_compactions_total', { result: 'ok' })) >= 1);
  assert.equal(await instance.metric('nucleon_mqtt_retained_messages'), 0);
});
