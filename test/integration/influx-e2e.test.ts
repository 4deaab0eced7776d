// End to end: a real MQTT device (mqtt.js over TLS with its client certificate)
// publishes CBOR telemetry on <uid>/tel/p; Nucleon writes it to a real
// victoria-metrics. The outage test runs Nucleon as separate `nucleon serve`
// processes (npm run build first) and restarts it while the server is down.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { encode } from 'cbor-x';
import mqtt, { type MqttClient } from 'mqtt';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { cliPath, delay, freePort, startProcess, waitFor } from '../helpers/index.js';
import { findSeries, samples, startVictoriaMetrics } from '../helpers/victoria-metrics.js';
import { fastInflux, testEnv, type TestEnv } from '../helpers/influx-harness.js';
import { deviceTls, startBroker } from '../helpers/mqtt-support.js';

/** Telemetry as nRF9160 firmware sends it: integer keys, QCBOR style. */
function telemetryPayload(fields: { version?: string; rsrp?: number; rssi_hub?: number; rssi_client?: number }): Buffer {
  const map = new Map<number, string | number>();
  if (fields.version !== undefined) map.set(0, fields.version);
  if (fields.rsrp !== undefined) map.set(1, fields.rsrp);
  if (fields.rssi_hub !== undefined) map.set(2, fields.rssi_hub);
  if (fields.rssi_client !== undefined) map.set(3, fields.rssi_client);
  return Buffer.from(encode(map));
}

test('telemetry from a real MQTT device reaches victoria-metrics with the exact values, the id tag and its receipt time', async (t) => {
  const env = await testEnv(t);
  const vm = await startVictoriaMetrics(t, path.join(env.dir, 'vm'));
  if (!vm) return;
  env.defer(() => vm.stop());
  const broker = await startBroker(t, { dir: env.dir, config: { influx: fastInflux(vm.url, path.join(env.dir, 'spool')) } });
  env.defer(() => broker.nucleon.stop());
  const uid = '352656100000777';
  const tls = await deviceTls(broker, uid);
  const device = await mqtt.connectAsync(`mqtts://localhost:${broker.port}`, { ca: tls.ca, cert: tls.cert, key: tls.key, clientId: uid, reconnectPeriod: 0, protocolVersion: 4 });
  env.defer(() => device.endAsync(true));

  const before = Date.now();
  await device.publishAsync(`${uid}/tel/p`, telemetryPayload({ version: '1.2.3-4-g965b9df', rsrp: 85, rssi_hub: -42, rssi_client: -61 }), { qos: 1 });
  const after = Date.now();

  const series = await waitFor(
    async () => {
      const all = await vm.export('telemetry_.*');
      // Freshly written samples become visible per series, not all at once.
      return ['telemetry_rsrp', 'telemetry_rssi_hub', 'telemetry_rssi_client'].every((name) => findSeries(all, name, { id: uid })) ? all : undefined;
    },
    'the telemetry in victoria-metrics',
  );
  const rsrp = samples(findSeries(series, 'telemetry_rsrp', { id: uid }));
  assert.equal(rsrp.length, 1);
  const [receivedAt, value] = rsrp[0] ?? [0, 0];
  assert.equal(value, 85);
  assert.ok(receivedAt >= before && receivedAt <= after, `timestamp ${receivedAt} is the receipt time (${before}..${after})`);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rssi_hub', { id: uid })), [[receivedAt, -42]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_rssi_client', { id: uid })), [[receivedAt, -61]]);
  assert.deepEqual(Object.keys(findSeries(series, 'telemetry_rsrp', { id: uid })?.metric ?? {}).filter((key) => key !== 'db').sort(), ['__name__', 'id']);
});

interface ServeProcess {
  stop(): Promise<number | null>;
}

async function writeServeConfig(env: TestEnv, vmUrl: string, mqttPort: number): Promise<string> {
  const file = path.join(env.dir, 'nucleon.toml');
  const influx = fastInflux(vmUrl, path.join(env.dir, 'spool'), { org: '' });
  const influxLines = Object.entries(influx).map(([key, value]) => `${key} = ${JSON.stringify(value)}`);
  await writeFile(
    file,
    [
      '[log]',
      'level = "info"',
      'format = "json"',
      '[broker]',
      'stop_timeout_ms = 4000',
      '[store]',
      `path = ${JSON.stringify(path.join(env.dir, 'data'))}`,
      '[certs]',
      `dir = ${JSON.stringify(path.join(env.dir, 'certs'))}`,
      '[mqtt.tls]',
      'host = "127.0.0.1"',
      `port = ${mqttPort}`,
      '[ota]',
      'enabled = false',
      '[ota.http]',
      'enabled = false',
      '[admin]',
      'enabled = false',
      '[influx]',
      ...influxLines,
      '',
    ].join('\n'),
  );
  return file;
}

function serve(t: Parameters<typeof startProcess>[0], config: string): ServeProcess & { ready: Promise<unknown>; output: () => string } {
  const running = startProcess(t, process.execPath, [cliPath, 'serve', '--config', config]);
  const ready = waitFor(
    () => {
      if (running.child.exitCode !== null) throw new Error(`nucleon serve exited: ${running.output()}`);
      return running.output().includes('"msg":"nucleon started"');
    },
    'nucleon serve to start',
    20_000,
  );
  return {
    ready,
    output: running.output,
    async stop() {
      running.child.kill('SIGTERM');
      return (await running.exited).code;
    },
  };
}

test('outage: victoria-metrics stops, the device keeps sending, nucleon restarts, the server returns: every point arrives exactly once', async (t) => {
  const env = await testEnv(t);
  const vmDir = path.join(env.dir, 'vm');
  const first = await startVictoriaMetrics(t, vmDir);
  if (!first) return;
  env.defer(() => first.stop());
  const mqttPort = await freePort();
  const config = await writeServeConfig(env, first.url, mqttPort);
  const uid = 'outage-device-1';
  const sent: number[] = [];

  const connectDevice = async (): Promise<MqttClient> => {
    const certs = validateConfig({ certs: { dir: path.join(env.dir, 'certs') } }).certs;
    const files = await issueDeviceCertificate(certs, uid, path.join(env.dir, 'device'));
    const client = await mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, {
      ca: await readFile(files.caPath),
      cert: await readFile(files.certPath),
      key: await readFile(files.keyPath),
      clientId: uid,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    env.defer(() => client.endAsync(true));
    return client;
  };
  const sendTelemetry = async (client: MqttClient, from: number, to: number) => {
    for (let rsrp = from; rsrp < to; rsrp++) {
      await client.publishAsync(`${uid}/tel/p`, telemetryPayload({ rsrp, version: '2.0.0-0-gabcdef0' }), { qos: 1 });
      sent.push(rsrp);
      // Receipt times are milliseconds: keep two points of one device from sharing one.
      await delay(3);
    }
  };
  const exported = async (vm: NonNullable<typeof first>) => samples(findSeries(await vm.export('telemetry_rsrp'), 'telemetry_rsrp', { id: uid }));

  const nucleonA = serve(t, config);
  env.defer(async () => void (await nucleonA.stop()));
  await nucleonA.ready;
  const deviceA = await connectDevice();
  await sendTelemetry(deviceA, 1, 6);
  await waitFor(async () => (await exported(first)).length === 5, 'the first points in victoria-metrics');

  await first.stop();
  await sendTelemetry(deviceA, 6, 16);
  // Restart Nucleon during the outage; what it could not write must survive in the spool.
  await deviceA.endAsync();
  assert.equal(await nucleonA.stop(), 0, `clean exit:\n${nucleonA.output()}`);
  assert.ok(nucleonA.output().includes('moving points to the spool') || nucleonA.output().includes('"msg":"InfluxDB write failed'), 'the outage was noticed');
  const nucleonB = serve(t, config);
  env.defer(async () => void (await nucleonB.stop()));
  await nucleonB.ready;
  assert.ok(nucleonB.output().includes('replaying points spooled by an earlier run'));
  const deviceB = await connectDevice();
  await sendTelemetry(deviceB, 16, 26);

  const second = await startVictoriaMetrics(t, vmDir, first.port);
  assert.ok(second);
  env.defer(() => second.stop());
  await waitFor(async () => (await exported(second)).length >= sent.length, 'every point in victoria-metrics', 30_000);
  // Nothing left to send: the spool is empty (its segment files are deleted once written).
  await waitFor(async () => (await readdir(path.join(env.dir, 'spool'))).every((name) => !name.endsWith('.spool')), 'the spool to empty');
  const points = await exported(second);
  assert.deepEqual(
    points.map(([, rsrp]) => rsrp),
    sent,
    'each value exactly once, in the order sent',
  );
  assert.equal(new Set(points.map(([ts]) => ts)).size, points.length, 'distinct receipt times');
  assert.equal(await nucleonB.stop(), 0);
});
