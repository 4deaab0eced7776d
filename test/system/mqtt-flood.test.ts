import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { Duplex } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { initCertificates } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { serviceCredentials } from '../../src/devices/index.js';
import { LevelStore } from '../../src/store/index.js';
import { cliPath, delay, freePort, startProcess, tempDir, waitFor } from '../helpers/index.js';
import { connect, RecordingRunner, startBroker, writeServeConfig } from '../helpers/mqtt-support.js';

/** Publishes QoS `qos` messages until `deadline`, never more than `window` unacknowledged; returns how many were acknowledged. */
async function flood(client: MqttClient, topic: string, qos: 0 | 1, deadline: number, window = 100, maxMessages = 1_000_000): Promise<number> {
  const payload = Buffer.alloc(64, 0x61);
  let acked = 0;
  let sent = 0;
  while (Date.now() < deadline && sent < maxMessages && client.connected) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < window && sent < maxMessages; i++, sent++) batch.push(client.publishAsync(topic, payload, { qos }).then(() => acked++));
    await Promise.allSettled(batch);
  }
  return acked;
}

for (const durability of ['fsync', 'memory'] as const) {
  test(`back-pressure (${durability}): a slow app runner never loses an acknowledged QoS 1 message`, async (t) => {
    // Inbox of 16 and 1 ms per event: the device is much faster than the consumer.
    const recorder = new RecordingRunner(1, 100_000, 16);
    const broker = await startBroker(t, { config: { ingest: { durability }, mqtt: { auth: { anonymous: true } } }, recorder });
    const device = await connect(t, broker, { clientId: 'fast' });
    const acked = await flood(device, 'fast/app/p/x', 1, Date.now() + 60_000, 200, 1500);
    assert.equal(acked, 1500);
    // Acknowledged ⇒ accepted: every one is (or will be, in order) handled.
    await waitFor(() => recorder.of('ApplicationRequest').length >= 1500, 'all 1500 handled', 30_000);
    const seq = recorder.of('ApplicationRequest').map((e) => e.log?.seq ?? 0);
    assert.equal(seq.length, 1500);
    if (durability === 'fsync') assert.deepEqual(seq, [...seq].sort((a, b) => a - b), 'handed out in log order');
  });
}

test('a slow runner lags behind in the ingest log instead of holding devices back: none paused, every message once and in order', async (t) => {
  const recorder = new RecordingRunner(1, 100_000, 8);
  const broker = await startBroker(t, { config: { mqtt: { auth: { anonymous: true } } }, recorder });
  const perDevice = 150;
  const devices = await Promise.all(Array.from({ length: 8 }, (_, i) => connect(t, broker, { clientId: `lag${i}` })));
  const started = Date.now();
  await Promise.all(devices.map((device, i) => Promise.all(Array.from({ length: perDevice }, (_, n) => device.publishAsync(`lag${i}/app/p/seq`, String(n), { qos: 1 })))));
  const ackedInMs = Date.now() - started;
  const lagging = broker.nucleon.broker.stats().find((s) => s.name === 'recorder')?.ingest;
  assert.ok(lagging && lagging.lagEvents > 0, 'the runner was behind when the devices were done');
  assert.equal(/nucleon_mqtt_paused_clients (\d+)/.exec(await broker.nucleon.metrics.metrics())?.[1], '0');
  await waitFor(() => recorder.of('ApplicationRequest').length >= 8 * perDevice, 'every message handled', 60_000);
  for (let i = 0; i < 8; i++) {
    const seq = recorder.of('ApplicationRequest').filter((e) => e.uid === `lag${i}`).map((e) => Number(Buffer.from(e.payload).toString()));
    assert.deepEqual(seq, Array.from({ length: perDevice }, (_, n) => n), `device lag${i} in order, once each`);
  }
  await waitFor(() => broker.nucleon.broker.stats().find((s) => s.name === 'recorder')?.ingest?.lagging === false, 'the runner live again');
  t.diagnostic(`${8 * perDevice} messages acknowledged in ${ackedInMs} ms while the runner took ~${8 * perDevice} ms; lag at that point ${lagging.lagEvents} events`);
});

test('overload (memory): 16 devices out-run a slow runner with a tiny wait list; none is disconnected, every message arrives once and in order', async (t) => {
  // Inbox of 8, 1 ms per event, and only 2 producers allowed to wait with
  // publish(): the old per-packet wait disconnected devices here. Now each
  // device is paused (its socket not read) with one wait for all it holds.
  // Without the ingest log ("memory"), a full inbox is what holds devices back.
  const recorder = new RecordingRunner(1, 100_000, 8);
  const broker = await startBroker(t, { config: { ingest: { durability: 'memory' }, broker: { max_waiters: 2 }, mqtt: { auth: { anonymous: true } } }, recorder });
  const perDevice = 150;
  const devices = await Promise.all(Array.from({ length: 16 }, (_, i) => connect(t, broker, { clientId: `od${i}` })));
  let pausedSeen = 0;
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 600; i++) {
      const paused = /nucleon_mqtt_paused_clients (\d+)/.exec(await broker.nucleon.metrics.metrics())?.[1];
      pausedSeen = Math.max(pausedSeen, Number(paused ?? 0));
      await delay(50);
    }
  })();
  const payload = (n: number) => Buffer.from(String(n));
  const acked = await Promise.all(
    devices.map(async (device, i) => {
      const qos = i % 2 === 0 ? 1 : 0;
      // All at once: each device writes far more than one inbox holds.
      const sends = Array.from({ length: perDevice }, (_, n) => device.publishAsync(`od${i}/app/p/seq`, payload(n), { qos }));
      await Promise.all(sends);
      return sends.length;
    }),
  );
  assert.deepEqual(acked, Array.from({ length: 16 }, () => perDevice));
  await waitFor(() => recorder.of('ApplicationRequest').length >= 16 * perDevice, 'every message handled', 60_000);
  sampling = false;
  await sampler;
  assert.equal(recorder.of('ApplicationRequest').length, 16 * perDevice);
  for (let i = 0; i < 16; i++) {
    const seq = recorder
      .of('ApplicationRequest')
      .filter((e) => e.uid === `od${i}`)
      .map((e) => Number(Buffer.from(e.payload).toString()));
    assert.deepEqual(seq, Array.from({ length: perDevice }, (_, n) => n), `device od${i} in order, once each`);
  }
  assert.ok(devices.every((d) => d.connected), 'every device still connected');
  const text = await broker.nucleon.metrics.metrics();
  assert.doesNotMatch(text, /nucleon_mqtt_disconnects_total\{reason="overloaded"\}/);
  assert.doesNotMatch(text, /nucleon_broker_dropped_total\{runner="recorder"/);
  assert.ok(pausedSeen > 0, 'some device was paused for room');
  t.diagnostic(`most devices paused at once: ${pausedSeen}`);
});

test('(memory) a device that disconnects while paused has none of its held (unacknowledged) messages forwarded', async (t) => {
  // Inbox of 1 and 1.5 s per event: while DeviceConnected is being handled,
  // message 0 takes the one place and messages 1–4 are held.
  const recorder = new RecordingRunner(1500, 100, 1);
  const broker = await startBroker(t, { config: { ingest: { durability: 'memory' }, mqtt: { auth: { anonymous: true } } }, recorder });
  const paused = async () => Number(/nucleon_mqtt_paused_clients (\d+)/.exec(await broker.nucleon.metrics.metrics())?.[1] ?? -1);
  const device = await connect(t, broker, { clientId: 'quitter' });
  await waitFor(() => recorder.handled === 1, 'DeviceConnected in the handler');
  for (let n = 0; n < 5; n++) device.publish('quitter/app/p/seq', String(n), { qos: 1 });
  await waitFor(async () => (await paused()) === 1, 'the device to be paused', 10_000);
  device.end(true);
  // The disconnect takes the device's wait off the broker at once.
  await waitFor(async () => (await paused()) === 0, 'the paused device to be released', 10_000);
  await waitFor(() => recorder.handled === 2, 'message 0 handled', 10_000);
  assert.equal(await broker.nucleon.broker.drain(5000), true);
  assert.deepEqual(recorder.of('ApplicationRequest').map((e) => Buffer.from(e.payload).toString()), ['0']);
});

test('flood: publishers out-run a subscriber that stopped reading; the broker stays up and its RSS stays under 350 MB', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const file = await writeServeConfig(dir, port, ['[mqtt.auth]', 'anonymous = true', '[mqtt.limits]', 'drain_timeout_ms = 3000']);
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, certs: { dir: path.join(dir, 'certs') } });
  const ca = (await initCertificates(config.certs)).ca;
  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  await serviceCredentials(store).add('sink', 'sink-secret-long');
  await store.close();

  const server = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(() => server.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);
  const pid = server.child.pid ?? 0;
  const rssMb = async () => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const url = `mqtts://localhost:${port}`;

  // The slow consumer: subscribes to every device message, then stops reading its socket.
  const sink = await mqtt.connectAsync(url, { ca, clientId: 'svc:sink', username: 'svc:sink', password: 'sink-secret-long', reconnectPeriod: 0 });
  t.after(() => sink.endAsync(true));
  await sink.subscribeAsync('+/app/p/#', { qos: 1 });
  (sink.stream as Duplex).pause();

  const publishers = await Promise.all(
    Array.from({ length: 4 }, (_, i) => mqtt.connectAsync(url, { ca, clientId: `flood${i}`, reconnectPeriod: 0, protocolVersion: 4 })),
  );
  t.after(() => Promise.all(publishers.map((p) => p.endAsync(true))));
  let peak = await rssMb();
  const start = peak;
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 400; i++) {
      peak = Math.max(peak, await rssMb());
      await delay(100);
    }
  })();
  const deadline = Date.now() + 8000;
  const counts = await Promise.all(publishers.map((p, i) => flood(p, `flood${i}/app/p/data`, i % 2 === 0 ? 0 : 1, deadline)));
  sampling = false;
  await sampler;

  assert.equal(server.child.exitCode, null, `the broker exited:\n${server.output().slice(-2000)}`);
  // Still serving: a new device connects and gets a PUBACK.
  const probe = await mqtt.connectAsync(url, { ca, clientId: 'probe', reconnectPeriod: 0 });
  await probe.publishAsync('probe/app/p/alive', 'yes', { qos: 1 });
  await probe.endAsync();
  t.diagnostic(`acknowledged per publisher: ${counts.join(', ')}; RSS start ${start.toFixed(0)} MB, peak ${peak.toFixed(0)} MB`);
  assert.ok(counts.reduce((a, b) => a + b, 0) > 1000, `too few messages got through: ${counts.join(', ')}`);
  assert.ok(peak < 350, `RSS peaked at ${peak.toFixed(0)} MB`);
  assert.doesNotMatch(server.output(), /Maximum call stack size exceeded/);
});
