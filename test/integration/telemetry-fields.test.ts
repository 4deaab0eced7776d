// Custom telemetry fields end to end: a real MQTT device over mutual TLS
// publishes CBOR with Pyrinas keys, configured extra keys, a key nobody
// configured and a configured key with the wrong type. Nucleon writes to a
// real victoria-metrics through a recording loopback proxy, so the test sees
// both the line protocol sent (the type suffixes) and what the server stored
// (victoria-metrics keeps numbers and booleans as 1/0 and ignores strings).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { test } from 'node:test';
import { encode } from 'cbor-x';
import mqtt from 'mqtt';
import pino from 'pino';
import { createNucleon } from '../../src/index.js';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import { RecentTelemetry } from '../../src/telemetry/index.js';
import type { ConfigInput } from '../../src/config/index.js';
import { requireBinary, waitFor } from '../helpers/index.js';
import { connectCertificateDevice, startFullInstance } from '../helpers/admin-harness.js';
import { openConsole } from '../helpers/console.js';
import { findSeries, samples, startVictoriaMetrics } from '../helpers/victoria-metrics.js';
import { fastInflux, testEnv, type LogEntry, type TestEnv } from '../helpers/influx-harness.js';
import { baseConfig } from '../helpers/mqtt-support.js';
import { metricValue } from '../helpers/reliability-support.js';

const FIELDS = [
  { key: 10, name: 'temperature', type: 'float' },
  { key: 11, name: 'battery_mv', type: 'int' },
  { key: 'charging', name: 'charging', type: 'bool' },
  { key: 'cell', name: 'cell_id', type: 'string' },
] as const;

/** Forwards write requests to `target` and keeps each body's text. */
async function recordingProxy(env: TestEnv, target: string): Promise<{ url: string; bodies: string[] }> {
  const bodies: string[] = [];
  const read = async (request: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };
  const server = createServer((request, response) => {
    void (async () => {
      const body = await read(request);
      bodies.push((request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8'));
      const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => !['host', 'connection', 'content-length'].includes(name)) as [string, string][]);
      const answer = await fetch(`${target}${request.url ?? '/'}`, { method: request.method ?? 'POST', headers, body });
      response.writeHead(answer.status).end(Buffer.from(await answer.arrayBuffer()));
    })().catch((error: unknown) => response.writeHead(502).end(String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  env.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

async function startNucleon(env: TestEnv, config: ConfigInput) {
  const logs: LogEntry[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogEntry) });
  const nucleon = createNucleon(baseConfig(env.dir, { ...config, telemetry: { fields: [...FIELDS] } }), { logger });
  await nucleon.start();
  env.defer(() => nucleon.stop());
  const port = (nucleon.runner('mqtt') as unknown as { port(name: string): number | undefined }).port('tls') ?? 0;
  const uid = '352656100000888';
  const files = await issueDeviceCertificate({ ...nucleon.config.certs }, uid, path.join(env.dir, 'devices'));
  const device = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
    ca: await readFile(files.caPath),
    cert: await readFile(files.certPath),
    key: await readFile(files.keyPath),
    clientId: uid,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  env.defer(() => device.endAsync(true));
  const metric = async (name: string, labels: Record<string, string> = {}) => metricValue(await nucleon.metrics.metrics(), name, labels);
  return { nucleon, logs, uid, device, metric };
}

test('configured extra telemetry fields reach victoria-metrics in their configured types; unknown and mistyped keys are counted and logged', async (t) => {
  const env = await testEnv(t);
  const vm = await startVictoriaMetrics(t, path.join(env.dir, 'vm'));
  if (!vm) return;
  env.defer(() => vm.stop());
  const proxy = await recordingProxy(env, vm.url);
  const { logs, uid, device, metric } = await startNucleon(env, { influx: fastInflux(proxy.url, path.join(env.dir, 'spool'), { org: '' }) });

  // Integer keys as QCBOR sends them, text keys, and a whole number in the float field.
  const first = new Map<unknown, unknown>([[0, '1.2.3-4-g965b9df'], [1, 85], [10, 21], [11, 3700], ['charging', true], ['cell', 'ab12'], [42, 'mystery']]);
  // A text in the int field is left out; the other fields of the message still arrive.
  const second = new Map<unknown, unknown>([[1, 86], [10, 22.75], [11, 'high'], ['charging', false], [42, 1]]);
  const before = Date.now();
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(first)), { qos: 1 });
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(second)), { qos: 1 });
  const after = Date.now();

  const names = ['telemetry_rsrp', 'telemetry_temperature', 'telemetry_battery_mv', 'telemetry_charging'];
  const series = await waitFor(
    async () => {
      const all = await vm.export('telemetry_.*');
      return names.every((name) => findSeries(all, name, { id: uid })) && samples(findSeries(all, 'telemetry_rsrp', { id: uid })).length === 2 ? all : undefined;
    },
    'the extra fields in victoria-metrics',
  );
  const rsrp = samples(findSeries(series, 'telemetry_rsrp', { id: uid }));
  const [t1, t2] = rsrp.map(([at]) => at);
  assert.ok(t1 !== undefined && t2 !== undefined && t1 >= before && t2 <= after);
  assert.deepEqual(rsrp, [[t1, 85], [t2, 86]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_temperature', { id: uid })), [[t1, 21], [t2, 22.75]]);
  assert.deepEqual(samples(findSeries(series, 'telemetry_battery_mv', { id: uid })), [[t1, 3700]], 'the mistyped value is not written');
  assert.deepEqual(samples(findSeries(series, 'telemetry_charging', { id: uid })), [[t1, 1], [t2, 0]]);
  assert.equal(series.filter((s) => /mystery|42/.test(s.metric.__name__ ?? '')).length, 0, 'the unknown key is not written');

  // The bytes the server accepted: each field with its configured type.
  const lines = proxy.bodies.join('\n').split('\n').filter((line) => line.startsWith('telemetry,'));
  assert.deepEqual(lines, [
    `telemetry,id=${uid} battery_mv=3700i,cell_id="ab12",charging=T,rsrp=85i,temperature=21,version="1.2.3-4-g965b9df" ${t1}`,
    `telemetry,id=${uid} charging=F,rsrp=86i,temperature=22.75 ${t2}`,
  ]);

  assert.equal(await metric('nucleon_mqtt_telemetry_unknown_keys_total'), 2);
  assert.equal(await metric('nucleon_mqtt_telemetry_fields_refused_total', { field: 'battery_mv' }), 1);
  const unknownLogs = logs.filter((entry) => entry.msg.startsWith('telemetry key not built in'));
  assert.deepEqual(unknownLogs.map((entry) => [entry.uid, entry.key]), [[uid, 42]], 'each unknown key logged once');
  const refusedLogs = logs.filter((entry) => entry.msg.startsWith('telemetry field battery_mv'));
  assert.deepEqual(refusedLogs.map((entry) => [entry.msg, entry.got]), [['telemetry field battery_mv (key 11) must be int, got text "high": left out of the point', 'text "high"']]);
});

test('without [influx], the extra fields are kept in the embedded recent telemetry', async (t) => {
  const env = await testEnv(t);
  const { nucleon, uid, device } = await startNucleon(env, {});
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<unknown, unknown>([[1, 70], [10, 19.5], ['cell', 'x1']]))), { qos: 1 });
  const recent = await waitFor(async () => (await RecentTelemetry.list(nucleon.store, uid, 10)).at(0), 'the recent point');
  assert.deepEqual(recent.telemetry, { rsrp: 70, extra: { temperature: { type: 'float', value: 19.5 }, cell_id: { type: 'string', value: 'x1' } } });
});

test('the console shows the extra fields in the devices table, and a chart per numeric field on the device page', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t, { telemetry: { fields: [...FIELDS] } });

  const uid = '352656100000999';
  const { device } = await connectCertificateDevice(t, nucleon, dir, uid);
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<unknown, unknown>([[1, 61], [10, 23.25], [11, 3650]]))), { qos: 1 });
  const { page, pageErrors } = await openConsole(t, chromiumPath, adminPort, { hash: '#/devices' });
  await page.waitForSelector(`#devices tr[data-uid="${uid}"] td.telemetry:has-text("rsrp=61 temperature=23.25 battery_mv=3650")`);

  // The device page: one chart per numeric field, the extra ones included, fed live.
  await page.click(`#devices tr[data-uid="${uid}"] a`);
  for (const field of ['rsrp', 'temperature', 'battery_mv']) await page.waitForSelector(`.telemetry-field[data-field="${field}"][data-points="1"] canvas`);
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<unknown, unknown>([[10, 24.5]]))), { qos: 1 });
  await page.waitForSelector('.telemetry-field[data-field="temperature"][data-points="2"]');
  assert.equal(await page.getAttribute('.telemetry-field[data-field="battery_mv"]', 'data-points'), '1');
  assert.deepEqual(pageErrors, []);
});
