// The Influx runner against a real InfluxDB line-protocol server: Debian's
// victoria-metrics (v2 write API in, /api/v1/export out). It ignores string
// fields, so these tests check the numeric ones; the exact text, version
// included, is checked in influx-writer.test.ts.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/index.js';
import { findSeries, samples, startVictoriaMetrics } from '../helpers/victoria-metrics.js';
import { fastInflux, startInfluxRunner, testEnv, type RunnerHarness } from '../helpers/influx-harness.js';

async function settled(runner: RunnerHarness): Promise<boolean> {
  return (await runner.metric('nucleon_influx_buffer_points')) === 0 && (await runner.metric('nucleon_influx_spool_bytes')) === 0;
}

test('telemetry and application points reach victoria-metrics with their exact values, tags and receipt times', async (t) => {
  const env = await testEnv(t);
  const vm = await startVictoriaMetrics(t, path.join(env.dir, 'vm'));
  if (!vm) return;
  env.defer(() => vm.stop());
  const runner = await startInfluxRunner(env, fastInflux(vm.url, path.join(env.dir, 'spool')));
  const now = Date.now();
  await runner.telemetry('352656100000001', { version: '1.2.3-4-g965b9df', rsrp: 85, rssi_hub: -42, rssi_client: -61 }, now - 2000);
  await runner.telemetry('352656100000001', { rsrp: 87 }, now - 1000);
  await runner.telemetry('352656100000002', { rsrp: 90, rssi_hub: -50 }, now - 1500);
  await runner.broker.publish({ type: 'InfluxDataSave', points: [{ measurement: 'env', tags: { room: 'lab' }, fields: { temp: 21.5 }, timestampMs: now - 500 }] });
  await waitFor(async () => (await runner.metric('nucleon_influx_points_written_total')) === 4, 'four points written');

  const series = await waitFor(
    async () => {
      // Freshly written samples become visible per series, not all at once.
      const all = await vm.export('telemetry_.*|env_.*');
      const visible = samples(findSeries(all, 'telemetry_rsrp', { id: '352656100000001' })).length === 2 && findSeries(all, 'env_temp', { room: 'lab' }) && findSeries(all, 'telemetry_rssi_hub', { id: '352656100000002' });
      return visible ? all : undefined;
    },
    'every series to show in the export',
  );
  assert.deepEqual(samples(findSeries(series, 'telemetry_rsrp', { id: '352656100000001' })), [
    [now - 2000, 85],
    [now - 1000, 87],
  ]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rssi_hub', { id: '352656100000001' })), [[now - 2000, -42]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rssi_client', { id: '352656100000001' })), [[now - 2000, -61]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rsrp', { id: '352656100000002' })), [[now - 1500, 90]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rssi_hub', { id: '352656100000002' })), [[now - 1500, -50]]);
  assert.equal(findSeries(series, 'telemetry_rssi_client', { id: '352656100000002' }), undefined, 'absent fields are not written');
  assert.deepEqual(samples(findSeries(series, 'env_temp', { room: 'lab' })), [[now - 500, 21.5]]);
  // The tag set is exactly `id` (plus the bucket/db label victoria-metrics may add).
  const labels = Object.keys(findSeries(series, 'telemetry_rsrp', { id: '352656100000002' })?.metric ?? {}).filter((key) => key !== 'db');
  assert.deepEqual(labels.sort(), ['__name__', 'id']);
});

test('outage: the server stops, telemetry keeps coming, the runner restarts, the server returns: every point arrives exactly once', async (t) => {
  const env = await testEnv(t);
  const vmDir = path.join(env.dir, 'vm');
  const spoolDir = path.join(env.dir, 'spool');
  const first = await startVictoriaMetrics(t, vmDir);
  if (!first) return;
  env.defer(() => first.stop());
  const base = Date.now() - 60_000;
  const expected: [number, number][] = [];
  const send = async (runner: RunnerHarness, i: number) => {
    await runner.telemetry('outage-dev', { rsrp: 1000 + i }, base + i * 10);
    expected.push([base + i * 10, 1000 + i]);
  };

  const before = await startInfluxRunner(env, fastInflux(first.url, spoolDir));
  for (let i = 0; i < 5; i++) await send(before, i);
  await waitFor(async () => (await before.metric('nucleon_influx_points_written_total')) === 5, 'the first points written');

  await first.stop();
  for (let i = 5; i < 25; i++) await send(before, i);
  await waitFor(async () => (await before.metric('nucleon_influx_points_spooled_total')) === 20, 'the outage points spooled', 15_000);
  // Restart during the outage: the new runner finds the spool and adds to it.
  await before.stop();
  const after = await startInfluxRunner(env, fastInflux(first.url, spoolDir));
  for (let i = 25; i < 40; i++) await send(after, i);
  await waitFor(async () => (await after.metric('nucleon_influx_points_spooled_total')) === 15, 'the later points spooled', 15_000);
  assert.equal(await after.metric('nucleon_influx_points_written_total'), 0);

  const second = await startVictoriaMetrics(t, vmDir, first.port);
  assert.ok(second);
  env.defer(() => second.stop());
  await waitFor(() => settled(after), 'the spool replayed', 20_000);
  assert.equal(await after.metric('nucleon_influx_points_written_total'), 35);
  const rsrp = await waitFor(
    async () => {
      const found = samples(findSeries(await second.export('telemetry_rsrp'), 'telemetry_rsrp', { id: 'outage-dev' }));
      return found.length >= expected.length ? found : undefined;
    },
    'all points in the export',
  );
  assert.deepEqual(rsrp, expected, 'each point exactly once, with its value and receipt time');
});
