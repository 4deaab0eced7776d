// The console's admin commands on a whole Nucleon: devices.search over 10,000
// devices seeded into the store (ms per search logged), devices.detail of a
// real MQTT device over mutual TLS (sessions with reasons, certificate,
// telemetry series, app messages with sizes, payloads only when asked), and
// health frames on the WebSocket as a device connects; each also over REST.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import { encode } from 'cbor-x';
import type mqtt from 'mqtt';
import type { Nucleon } from '../../src/nucleon.js';
import { waitFor } from '../helpers/index.js';
import { AdminTestClient, API_KEY, connectCertificateDevice, startFullInstance, type Reply } from '../helpers/admin-harness.js';
import { seededDevices, seedFleet, type SeedOptions } from '../helpers/seed-fleet.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
async function rest(port: number, route: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://127.0.0.1:${port}/api/v1${route}`, { headers: { authorization: `Bearer ${API_KEY}` } });
  return { status: response.status, body: await response.json() };
}

/** An answer's result, checked field by field by the tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Result = any;

function ok(reply: Reply): Result {
  assert.equal(reply.ok, true, JSON.stringify(reply.error));
  return reply.result;
}

async function connectDevice(t: TestContext, nucleon: Nucleon, dir: string, uid: string): Promise<{ device: mqtt.MqttClient; serial: string }> {
  const { device, certPath } = await connectCertificateDevice(t, nucleon, dir, uid);
  return { device, serial: new X509Certificate(await readFile(certPath)).serialNumber };
}

test('devices.search answers over 10,000 devices seeded into the store: filters, sort, paging, facets; WebSocket and REST', async (t) => {
  const seed: SeedOptions = { count: 10_000, now: Date.now(), groups: [{ name: 'canary', every: 100 }, { name: 'even', every: 2 }] };
  let seedMs = 0;
  const { adminPort } = await startFullInstance(t, {}, {
    beforeStart: async (dataDir) => {
      const started = performance.now();
      await seedFleet(dataDir, seed);
      seedMs = performance.now() - started;
    },
  });
  const devices = seededDevices(seed);
  const client = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);

  const timings: Record<string, number> = {};
  const timed = async (name: string, args: Record<string, unknown>): Promise<Result> => {
    const started = performance.now();
    const result = ok(await client.request('devices.search', args));
    timings[name] = Math.round((performance.now() - started) * 10) / 10;
    return result;
  };
  // The admin asked the OTA runner for the groups when it started; a first search may still wait for that answer.
  const first = await timed('first', {});
  assert.equal(first.total, 10_000);
  assert.deepEqual(
    first.items.map((d: { uid: string }) => d.uid),
    devices.slice(0, 50).map((d) => d.uid),
  );
  assert.deepEqual(first.facets.groups, ['canary', 'even']);
  assert.deepEqual(first.facets.firmware, ['1.0.0-0-g0000000', '1.1.0-3-gabcdef1', '2.0.0-1-g1234567']);
  assert.deepEqual(first.items[0].groups, ['canary']);
  assert.equal(first.items[0].revoked, false);

  const all = await timed('all, page 1', {});
  assert.equal(all.total, 10_000);
  const deep = await timed('all, offset 9,950', { offset: 9950 });
  assert.deepEqual(
    deep.items.map((d: { uid: string }) => d.uid),
    devices.slice(9950).map((d) => d.uid),
  );
  const prefix = await timed('uid prefix', { q: 'DEV-012' });
  assert.equal(prefix.total, 100);
  const canary = await timed('group canary', { group: 'canary', limit: 500 });
  assert.equal(canary.total, 100);
  const even = await timed('group even', { group: 'even' });
  // A device is in one group: the canary ones (every 100th) are not in `even`.
  assert.equal(even.total, devices.filter((d) => d.group === 'even').length);
  const firmware = await timed('firmware, sorted by lastSeen desc', { firmware: '2.0.0-1-g1234567', sort: 'lastSeen', order: 'desc', limit: 500 });
  assert.equal(firmware.total, devices.filter((d) => d.firmwareVersion === '2.0.0-1-g1234567').length);
  assert.ok(firmware.items.every((d: { lastSeen: number }, i: number, items: { lastSeen: number }[]) => i === 0 || (items[i - 1] as { lastSeen: number }).lastSeen >= d.lastSeen));
  const combined = await timed('offline + ota downloading + group even, by firmware', { online: false, ota: 'downloading', group: 'even', sort: 'firmware', limit: 500 });
  assert.equal(combined.total, devices.filter((d) => d.otaStatus === 'downloading' && d.group === 'even').length);
  const none = await timed('no match', { q: 'nobody' });
  assert.equal(none.total, 0);

  const viaRest = await rest(adminPort, '/devices/search?group=canary&online=false&sort=uid&order=desc&offset=10&limit=5');
  assert.equal(viaRest.status, 200, JSON.stringify(viaRest.body));
  assert.equal(viaRest.body.total, 100);
  assert.deepEqual(
    viaRest.body.items.map((d: { uid: string }) => d.uid),
    devices
      .filter((d) => d.group === 'canary')
      .map((d) => d.uid)
      .reverse()
      .slice(10, 15),
  );
  const badRest = await rest(adminPort, '/devices/search?limit=501');
  assert.equal(badRest.status, 400);
  assert.equal(badRest.body.error.code, 'INVALID_ARGUMENT');

  t.diagnostic(`seeded 10,000 devices in ${Math.round(seedMs)} ms; ms per devices.search over the WebSocket: ${JSON.stringify(timings)}`);
});

test('devices.detail of a real device (ingest in memory): certificate, sessions with reasons, firmware, OTA group, telemetry series, app messages; payloads only when asked', async (t) => {
  // Without the durable ingest log, which health.get then shows as null.
  const { nucleon, adminPort, dir } = await startFullInstance(t, { ingest: { durability: 'memory' } });
  const client = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);
  assert.equal(ok(await client.request('health.get')).ingest, null);
  const uid = '352656100000777';
  assert.equal((await client.request('devices.detail', { uid })).error?.code, 'NOT_FOUND');

  const { device, serial } = await connectDevice(t, nucleon, dir, uid);
  // Pyrinas telemetry with integer keys: version, rsrp, rssi_hub.
  for (const rsrp of [40, 41]) await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, unknown>([[0, '1.0.0-0-g0000000'], [1, rsrp], [2, -60]]))), { qos: 1 });
  await device.publishAsync(`${uid}/app/p/sensors/door`, Buffer.from([1, 2, 3, 4, 5]), { qos: 1 });
  await device.publishAsync(`${uid}/app/p/status`, Buffer.alloc(300, 7), { qos: 1 });
  ok(await client.request('ota.link', { device: uid, group: 'lobby' }));

  const online = await waitFor(async (): Promise<Result> => {
    const detail = ok(await client.request('devices.detail', { uid }));
    return detail.messages.length === 2 && detail.telemetry.fields.rsrp !== undefined && detail.device.groups.length === 1 ? detail : undefined;
  }, 'the device page with telemetry, messages and the group');
  assert.equal(online.device.online, true);
  assert.deepEqual(online.device.groups, ['lobby'], 'the link went through the OTA runner and the cache was asked again');
  assert.equal(online.identity.authMethod, 'certificate');
  assert.equal(online.identity.certificate.serial.toLowerCase().replace(/^0+/, ''), serial.toLowerCase().replace(/^0+/, ''));
  assert.match(online.identity.certificate.subject, new RegExp(`CN=${uid}`));
  assert.ok(online.identity.certificate.notAfter > Date.now(), 'a certificate valid from now on');
  assert.equal(online.identity.revoked, null);
  assert.equal(online.identity.hasPassword, false);
  assert.equal(online.sessions.length, 1);
  assert.equal(online.sessions[0].disconnectedAt, undefined);
  assert.deepEqual(
    online.firmware.map((f: { version: string; source: string }) => [f.version, f.source]),
    [['1.0.0-0-g0000000', 'telemetry']],
  );
  // Two messages within the 10 s spacing are one point: the newer value.
  assert.equal(online.telemetry.fields.rsrp.length, 1);
  assert.equal(online.telemetry.fields.rsrp[0][1], 41);
  assert.equal(online.telemetry.fields.rssi_hub[0][1], -60);
  assert.ok(online.telemetry.to - online.telemetry.from === 3_600_000);
  assert.equal(online.telemetry.source, 'recent', 'without [influx], the embedded recent store');
  assert.equal(online.telemetry.error, undefined);
  assert.deepEqual(
    online.messages.map((m: { target: string; size: number; payload?: unknown }) => [m.target, m.size, m.payload]),
    [
      ['status', 300, undefined],
      ['sensors/door', 5, undefined],
    ],
  );
  assert.equal(online.ota.state, 'none');

  await device.endAsync();
  const offline = await waitFor(async (): Promise<Result> => {
    const detail = ok(await client.request('devices.detail', { uid, payloads: true }));
    return detail.sessions[0]?.disconnectedAt !== undefined ? detail : undefined;
  }, 'the session closed');
  assert.equal(offline.device.online, false);
  assert.equal(offline.sessions[0].reason, 'closed');
  assert.equal(offline.sessions[0].authMethod, 'certificate');
  assert.equal(offline.sessions[0].remoteAddress, '127.0.0.1');
  assert.ok(offline.sessions[0].disconnectedAt >= offline.sessions[0].connectedAt);
  const [status, door] = offline.messages as { payload: string; payloadTruncated?: boolean }[];
  assert.equal(Buffer.from(door?.payload ?? '', 'base64').toString('hex'), '0102030405');
  assert.equal(Buffer.from(status?.payload ?? '', 'base64').length, 128, 'a long payload is kept cut');
  assert.equal(status?.payloadTruncated, true);

  const viaRest = await rest(adminPort, `/devices/${uid}/detail`);
  assert.equal(viaRest.status, 200);
  assert.equal(viaRest.body.sessions[0].reason, 'closed');
  assert.equal(viaRest.body.messages[0].payload, undefined);
  const withPayloads = await rest(adminPort, `/devices/${uid}/detail?payloads=true`);
  assert.equal(Buffer.from(withPayloads.body.messages[1].payload, 'base64').toString('hex'), '0102030405');
  const unknown = await rest(adminPort, '/devices/nobody-here/detail');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, 'NOT_FOUND');
});

test('health: frames on the WebSocket every admin.health_interval_ms with connections going 0 -> 1; health.get over the WebSocket and REST', async (t) => {
  const { nucleon, adminPort, dir } = await startFullInstance(t, { admin: { health_interval_ms: 200 } });
  const client = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);
  const snapshot = ok(await client.request('health.get'));
  assert.equal(snapshot.connections, 0);
  assert.equal(snapshot.counters.messagesIn, 0);
  // The durable ingest log is on by default: its runners start at no lag.
  assert.deepEqual(snapshot.ingest, { bytes: 0, segments: 0, lag: { ota: 0, 'telemetry-recent': 0 } });
  assert.equal(snapshot.spoolBytes, 0);
  assert.ok(snapshot.rssBytes > 0 && snapshot.heapUsedBytes > 0);

  // Subscribed with a uid (the device page does): health frames still come.
  const subscribed = ok(await client.request('events.subscribe', { kinds: ['health', 'device'], uid: 'someone-else' }));
  assert.deepEqual(subscribed.kinds, ['health', 'device']);
  const healthFrames = () => client.events.filter((e) => e.event === 'health');
  const before = await waitFor(() => healthFrames().at(-1), 'a health frame');
  assert.equal(before.data.type, 'Health');
  assert.equal(before.data.connections, 0);

  const uid = '352656100000555';
  const { device } = await connectDevice(t, nucleon, dir, uid);
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, unknown>([[1, 50]]))), { qos: 1 });
  const after = await waitFor(() => healthFrames().find((e) => e.data.connections === 1 && e.data.counters.messagesIn >= 1), 'a health frame with the device connected');
  assert.ok(after.data.at > before.data.at);
  assert.ok(after.data.eventLoopLagMs >= 0);
  const frames = healthFrames();
  const spacing = frames.slice(1).map((frame, i) => frame.data.at - (frames[i] as { data: { at: number } }).data.at);

  const viaRest = await rest(adminPort, '/health');
  assert.equal(viaRest.status, 200);
  assert.equal(viaRest.body.connections, 1);
  assert.ok(viaRest.body.counters.messagesIn >= 1);

  ok(await client.request('events.unsubscribe'));
  await device.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, unknown>([[1, 51]]))), { qos: 1 });
  const later = await waitFor(async (): Promise<Result> => {
    const health = ok(await client.request('health.get'));
    return health.counters.messagesIn >= 2 ? health : undefined;
  }, 'health.get counting the second message');
  assert.equal(later.connections, 1);
  t.diagnostic(`${frames.length} health frames, ms between them: ${JSON.stringify(spacing)}`);
});

test('devices.detail OTA progress of a real download: bytes served and percent of the image, then updated with an ota firmware entry', async (t) => {
  const { nucleon, adminPort, dir } = await startFullInstance(t);
  const client = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);
  const uid = '352656100000333';
  const imageId = '1.2.3-4-g965b9df';
  const image = Buffer.alloc(4096, 0x5a);
  ok(await client.request('images.add', { id: imageId, data: image.toString('base64') }));
  const { device } = await connectDevice(t, nucleon, dir, uid);
  ok(await client.request('ota.link', { device: uid, image: imageId }));
  const ota = (fields: [number, unknown][]) => device.publishAsync(`${uid}/ota/p`, Buffer.from(encode(new Map<number, unknown>(fields))), { qos: 1 });
  const progress = async (what: string, check: (ota: Result) => boolean): Promise<Result> =>
    waitFor(async (): Promise<Result> => {
      const detail = ok(await client.request('devices.detail', { uid }));
      return check(detail.ota) ? detail : undefined;
    }, what);

  await ota([[0, 0]]);
  await ota([[0, 2], [1, imageId], [2, 0], [3, 1024]]);
  const quarter = await progress('a quarter served', (o) => o.bytesServed === 1024);
  assert.deepEqual(quarter.ota, { state: 'downloading', imageId, version: imageId, bytesServed: 1024, totalBytes: 4096, percent: 25 });
  assert.equal(quarter.device.otaStatus, 'downloading');

  await ota([[0, 2], [1, imageId], [2, 1024], [3, 4096]]);
  await progress('all served', (o) => o.bytesServed === 4096 && o.percent === 100);
  await ota([[0, 1]]);
  const updated = await progress('updated', (o) => o.state === 'updated');
  assert.equal(updated.ota.percent, 100);
  assert.deepEqual(
    updated.firmware.map((f: { version: string; source: string }) => [f.version, f.source]),
    [[imageId, 'ota']],
  );
  const search = ok(await client.request('devices.search', { ota: 'updated' }));
  assert.deepEqual(
    search.items.map((d: { uid: string }) => d.uid),
    [uid],
  );
});
