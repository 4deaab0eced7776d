// The embedded "recent telemetry" keeper: the last N points per device in the
// real LevelDB store, and the runner Nucleon starts when no [influx] is configured.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createNucleon, silentLogger } from '../../src/index.js';
import { LevelStore } from '../../src/store/index.js';
import { RecentTelemetry } from '../../src/telemetry/index.js';
import { tempDir, waitFor, closeAfter } from '../helpers/index.js';

test('keeps the newest N points per device, newest first, and lists at most the limit', async (t) => {
  const dir = await tempDir(t);
  const store = new LevelStore(path.join(dir, 'kv'));
  await store.open();
  t.after(() => store.close());
  for (let i = 1; i <= 7; i++) await RecentTelemetry.record(store, 'dev-a', { rsrp: 100 + i, version: '1.0.0-0-gabcdef0' }, 1000 + i, 3);
  await RecentTelemetry.record(store, 'dev-b', { rssi_hub: -40 }, 5000, 3);

  const recent = await RecentTelemetry.list(store, 'dev-a', 10, 3);
  assert.deepEqual(
    recent.map((p) => [p.seq, p.receivedAt, p.telemetry.rsrp]),
    [
      [7, 1007, 107],
      [6, 1006, 106],
      [5, 1005, 105],
    ],
  );
  assert.deepEqual((await RecentTelemetry.list(store, 'dev-a', 2)).map((p) => p.seq), [7, 6]);
  assert.deepEqual(await RecentTelemetry.list(store, 'dev-b', 10), [{ uid: 'dev-b', seq: 1, receivedAt: 5000, telemetry: { rssi_hub: -40 } }]);
  assert.deepEqual(await RecentTelemetry.list(store, 'nobody', 10), []);
  assert.deepEqual(await RecentTelemetry.devices(store), ['dev-a', 'dev-b']);
  // A ring: never more than N slots per device in the store, whatever the number of points.
  let slots = 0;
  for await (const [key] of store.entries(`${RecentTelemetry.deviceKey('dev-a')}slot/`)) if (key) slots++;
  assert.equal(slots, 3);
});

test('after N shrinks, no more than N points are listed and none older than the newest N', async (t) => {
  const dir = await tempDir(t);
  const store = new LevelStore(path.join(dir, 'kv'));
  await store.open();
  t.after(() => store.close());
  for (let i = 1; i <= 5; i++) await RecentTelemetry.record(store, 'dev', { rsrp: i }, i, 5);
  await RecentTelemetry.record(store, 'dev', { rsrp: 6 }, 6, 2);
  await RecentTelemetry.record(store, 'dev', { rsrp: 7 }, 7, 2);
  // The ring is re-cut by the new N: seq 6 and 7 land in slots 0 and 1 of the old ring.
  assert.deepEqual((await RecentTelemetry.list(store, 'dev', 10, 2)).map((p) => p.telemetry.rsrp), [7, 6]);
});

test('without [influx], Nucleon keeps recent telemetry in its store; with N = 0 it keeps none', async (t) => {
  const dir = await tempDir(t);
  const isolated = (sub: string, recent: number) => ({
    store: { path: path.join(dir, sub) },
    certs: { dir: path.join(dir, 'certs'), auto_generate: false },
    mqtt: { tls: { enabled: false } },
    ota: { http: { enabled: false } },
    admin: { enabled: false },
    telemetry: { recent_per_device: recent },
  });
  const nucleon = createNucleon(isolated('on', 2), { logger: silentLogger() });
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  assert.ok(nucleon.broker.runnerNames().includes('telemetry-recent'));
  assert.ok(!nucleon.broker.runnerNames().includes('influx'));
  for (let i = 1; i <= 3; i++) await nucleon.broker.publish({ type: 'TelemetryReceived', uid: 'dev', telemetry: { rsrp: 60 + i }, receivedAt: i });
  assert.ok(await nucleon.broker.drain(5000));
  const recent = await RecentTelemetry.list(nucleon.store, 'dev', 10, nucleon.config.telemetry.recent_per_device);
  assert.deepEqual(
    recent.map((p) => p.telemetry.rsrp),
    [63, 62],
  );

  const off = createNucleon(isolated('off', 0), { logger: silentLogger() });
  await off.start();
  closeAfter(t, () => off.stop());
  assert.ok(!off.broker.runnerNames().includes('telemetry-recent'));
  await waitFor(() => off.running, 'started');
});
