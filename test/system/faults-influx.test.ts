// Fault injection: the InfluxDB server (a real victoria-metrics) is down for
// FAULTS_OUTAGE_S seconds (10 in npm test; `npm run soak -- --faults` runs the
// 60 s version) while three devices keep sending telemetry, and Nucleon is
// restarted (SIGTERM, new process) in the middle of the outage. Once the server
// is back, every acknowledged point is there exactly once, in order, with
// distinct receipt times, and the spool is empty.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { encode } from 'cbor-x';
import type { MqttClient } from 'mqtt';
import { delay, tempDir, waitFor } from '../helpers/index.js';
import { findSeries, samples, startVictoriaMetrics } from '../helpers/victoria-metrics.js';
import { connectDevice, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const OUTAGE_S = Number(process.env.FAULTS_OUTAGE_S ?? 10);
const DEVICES = 3;
const SEND_EVERY_MS = 50;

test(`InfluxDB down for ${OUTAGE_S} s with a Nucleon restart in between: every telemetry point arrives exactly once`, { timeout: (OUTAGE_S + 120) * 1000 }, async (t) => {
  const dir = await tempDir(t, 'nucleon-faults-influx-');
  const vmDir = path.join(dir, 'vm');
  const vm = await startVictoriaMetrics(t, vmDir);
  if (!vm) return;
  const uids = Array.from({ length: DEVICES }, (_, i) => `influx-dev-${i}`);
  const spoolDir = path.join(dir, 'spool');
  const influx = [
    '[influx]',
    `url = "${vm.url}"`,
    'org = "nucleon"',
    'bucket = "telemetry"',
    'batch_size = 50',
    'flush_interval_ms = 100',
    'max_retries = 2',
    'retry_initial_ms = 50',
    'retry_max_ms = 1000',
    'timeout_ms = 1000',
    `spool_dir = "${spoolDir}"`,
  ];
  let instance: Instance = await startInstance(t, { dir: path.join(dir, 'nucleon'), certDevices: uids, extraToml: influx });
  const devices = instance.devices;

  // Each device sends rsrp 0, 1, 2, ... at QoS 1; a value counts as sent once acknowledged.
  const sent = new Map<string, number[]>(uids.map((uid) => [uid, []]));
  let clients: MqttClient[] = [];
  let sending = false;
  let loops: Promise<void>[] = [];
  const startSending = async () => {
    clients = await Promise.all(uids.map((uid) => connectDevice(t, { ...instance, devices }, uid)));
    sending = true;
    loops = clients.map(async (client, i) => {
      const uid = uids[i] ?? '';
      const values = sent.get(uid) ?? [];
      while (sending) {
        const rsrp = values.length;
        await client.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, string | number>([[0, '3.0.0-0-gabcdef0'], [1, rsrp]]))), { qos: 1 });
        values.push(rsrp);
        await delay(SEND_EVERY_MS);
      }
    });
  };
  const stopSending = async () => {
    sending = false;
    await Promise.all(loops);
    await Promise.all(clients.map((client) => client.endAsync()));
  };
  const exported = async (uid: string) => samples(findSeries(await vm.export('telemetry_rsrp'), 'telemetry_rsrp', { id: uid }));

  await startSending();
  await delay(1000);
  await waitFor(async () => (await exported(uids[0] ?? '')).length > 0, 'the first points in victoria-metrics');

  const outageStarted = Date.now();
  await vm.stop();
  await delay((OUTAGE_S * 1000) / 2);
  // The restart: stop sending, SIGTERM (flush to the spool), a new process on the same data.
  await stopSending();
  await instance.stop();
  assert.equal(instance.process.child.exitCode, 0, `clean exit:\n${instance.process.output().slice(-2000)}`);
  const spooled = (await readdir(spoolDir)).filter((name) => name.endsWith('.spool')).length;
  instance = await startInstance(t, { dir: instance.dir, ports: instance.ports, extraToml: influx });
  await startSending();
  await delay(Math.max(0, OUTAGE_S * 1000 - (Date.now() - outageStarted)));

  const back = await startVictoriaMetrics(t, vmDir, vm.port);
  assert.ok(back);
  const outageMs = Date.now() - outageStarted;
  await delay(1000);
  await stopSending();
  const total = [...sent.values()].reduce((sum, values) => sum + values.length, 0);
  const exportedFrom = async (uid: string) => samples(findSeries(await back.export('telemetry_rsrp'), 'telemetry_rsrp', { id: uid }));
  await waitFor(
    async () => {
      for (const uid of uids) if ((await exportedFrom(uid)).length < (sent.get(uid) ?? []).length) return false;
      return true;
    },
    'every point in victoria-metrics',
    60_000,
    250,
  );
  await waitFor(async () => (await readdir(spoolDir)).every((name) => !name.endsWith('.spool')), 'the spool to empty', 30_000);
  let stored = 0;
  for (const uid of uids) {
    const points = await exportedFrom(uid);
    stored += points.length;
    assert.deepEqual(
      points.map(([, rsrp]) => rsrp),
      sent.get(uid),
      `${uid}: each value exactly once, in the order sent`,
    );
    assert.equal(new Set(points.map(([ts]) => ts)).size, points.length, `${uid}: distinct receipt times`);
  }
  summary('faults influx-outage', { outageS: Math.round(outageMs / 100) / 10, devices: DEVICES, pointsSent: total, pointsStored: stored, spoolSegmentsAtRestart: spooled });
  await back.stop();
});
