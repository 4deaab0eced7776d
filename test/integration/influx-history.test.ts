// devices.detail's telemetry history from a real InfluxDB (Debian's influxdb
// 1.6.7) through InfluxQL on /query, over the admin WebSocket and REST; then,
// with influxd stopped, the fallback to the embedded recent store, saying so.
//
// The points are written here through the 1.x /write in the very line shape
// Nucleon's writer produces (src/influx/points.ts): the writer itself uses the
// v2 write API (POST /api/v2/write), which 1.6.7 does not have. The instance's
// Influx runner points at the same influxd and its writes fail (404, retried
// and spooled); that is its business and does not touch what is read here.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import { encode } from 'cbor-x';
import { requireBinary, waitFor } from '../helpers/index.js';
import { openConsole } from '../helpers/console.js';
import { AdminTestClient, API_KEY, connectCertificateDevice, startFullInstance, type Reply } from '../helpers/admin-harness.js';
import { startInfluxDb1 } from '../helpers/influxdb.js';
import { historyQuery, InfluxHistory } from '../../src/admin/influx-history.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
type Result = any;

function ok(reply: Reply): Result {
  assert.equal(reply.ok, true, JSON.stringify(reply.error));
  return reply.result;
}

async function rest(port: number, route: string): Promise<{ status: number; body: Result }> {
  const response = await fetch(`http://127.0.0.1:${port}/api/v1${route}`, { headers: { authorization: `Bearer ${API_KEY}` } });
  return { status: response.status, body: await response.json() };
}

const UID = '352656100000888';
const OTHER = '352656100000999';

/**
 * influxd with a database holding UID's points (and one of another device, one
 * older than the hour), a full instance with [influx] pointing at it, and UID
 * connected with one telemetry message (rsrp 50), which lands in the recent
 * store only. `expected` is what devices.detail must answer from InfluxDB.
 */
async function setUp(t: TestContext) {
  const influx = await startInfluxDb1(t);
  if (!influx) return undefined;
  const bucket = 'nucleon_telemetry';
  await influx.query(`CREATE DATABASE "${bucket}"`);
  const now = Date.now();
  // A slot boundary half an hour ago: the points below fall into two known 10 s slots.
  const slot = Math.floor((now - 30 * 60_000) / 10_000) * 10_000;
  await influx.write(bucket, [
    `telemetry,id=${UID} rsrp=-90i,rssi_hub=-60i,version="1.0.0-0-g0000000" ${slot + 1000}`,
    // Same slot, later: last() keeps this one.
    `telemetry,id=${UID} rsrp=-91i ${slot + 5000}`,
    `telemetry,id=${UID} rsrp=-92i,temperature=21.5,door=T ${slot + 20_000}`,
    // Older than the hour: not shown.
    `telemetry,id=${UID} rsrp=-1i ${now - 2 * 3_600_000}`,
    // Another device: not shown.
    `telemetry,id=${OTHER} rsrp=-5i ${slot + 1000}`,
  ]);
  const { nucleon, adminPort, dir } = await startFullInstance(t, {
    influx: { url: influx.url, org: '', bucket, timeout_ms: 2000, spool_dir: '' },
  });
  // The device must be known (a fleet record) for devices.detail; its own telemetry lands in the recent store only.
  const { device } = await connectCertificateDevice(t, nucleon, dir, UID);
  await device.publishAsync(`${UID}/tel/p`, Buffer.from(encode(new Map<number, unknown>([[0, '1.0.0-0-g0000000'], [1, 50]]))), { qos: 1 });
  // Slot start times; `version` (a string) and `door` (a boolean) are not charted.
  const expected = {
    rsrp: [
      [slot, -91],
      [slot + 20_000, -92],
    ],
    rssi_hub: [[slot, -60]],
    temperature: [[slot + 20_000, 21.5]],
  };
  return { influx, bucket, adminPort, device, expected };
}

test('devices.detail reads the last hour from InfluxDB (last value per 10 s slot, numeric fields only), and falls back to the recent store with the reason when InfluxDB is down', async (t) => {
  const set = await setUp(t);
  if (!set) return;
  const { influx, bucket, adminPort, expected } = set;
  const uid = UID;
  const client = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);

  const fromInflux = await waitFor(async (): Promise<Result> => {
    const reply = await client.request('devices.detail', { uid });
    return reply.ok ? reply.result : undefined;
  }, 'devices.detail of the connected device');
  assert.equal(fromInflux.telemetry.source, 'influx', JSON.stringify(fromInflux.telemetry));
  assert.equal(fromInflux.telemetry.error, undefined);
  assert.deepEqual(fromInflux.telemetry.fields, expected);
  assert.equal(fromInflux.telemetry.to - fromInflux.telemetry.from, 3_600_000);

  const viaRest = await rest(adminPort, `/devices/${uid}/detail`);
  assert.equal(viaRest.status, 200, JSON.stringify(viaRest.body));
  assert.equal(viaRest.body.telemetry.source, 'influx');
  assert.deepEqual(viaRest.body.telemetry.fields, expected);

  // A uid is validated before it gets here; the quoting still has to hold against influxd's own parser.
  const odd = `it's\\odd`;
  await influx.write(bucket, [`telemetry,id=${odd} rsrp=-7i ${expected.rsrp[0]?.[0]}`]);
  const direct = new InfluxHistory({ url: influx.url, bucket, token: '', timeoutMs: 2000 });
  assert.deepEqual((await direct.read(odd, Date.now())).fields, { rsrp: [[expected.rsrp[0]?.[0], -7]] });
  assert.deepEqual((await direct.read(`it's`, Date.now())).fields, {});
  // A bucket (database) that is not there is an error, not an empty chart.
  await assert.rejects(new InfluxHistory({ url: influx.url, bucket: 'missing', token: '', timeoutMs: 2000 }).read(uid, Date.now()), /database not found: missing/);

  await influx.stop();
  // The device's own message may still be on its way to the recent store.
  const fallback = await waitFor(async (): Promise<Result> => {
    const detail = ok(await client.request('devices.detail', { uid }));
    return detail.telemetry.fields.rsrp?.length === 1 ? detail : undefined;
  }, 'the recent store with the device telemetry');
  assert.equal(fallback.telemetry.source, 'recent');
  assert.match(fallback.telemetry.error, /^InfluxDB query failed: ECONNREFUSED/);
  assert.deepEqual(Object.keys(fallback.telemetry.fields), ['rsrp']);
  assert.equal(fallback.telemetry.fields.rsrp[0][1], 50);
  assert.ok(Math.abs(fallback.telemetry.fields.rsrp[0][0] - Date.now()) < 60_000, 'the message of this test, received a moment ago');
  const fallbackRest = await rest(adminPort, `/devices/${uid}/detail`);
  assert.equal(fallbackRest.status, 200);
  assert.equal(fallbackRest.body.telemetry.source, 'recent');
  assert.match(fallbackRest.body.telemetry.error, /ECONNREFUSED/);
  t.diagnostic(`influxd pid ${influx.pid}; fallback error: ${fallback.telemetry.error}`);
});

test('InfluxHistory asks GET /query with db = bucket, epoch=ms and Authorization: Token (InfluxDB 2.x compatibility API), and gives up after timeout_ms', async (t) => {
  // A server that takes the request and never answers: the one failure a real influxd cannot be made to show.
  const seen: Array<{ method?: string; url?: string; authorization?: string }> = [];
  const server = createServer((request) => {
    seen.push({ method: request.method, url: request.url, authorization: request.headers.authorization });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  const history = new InfluxHistory({ url: `http://127.0.0.1:${port}/`, bucket: 'fleet', token: 'secret-token', timeoutMs: 300 });
  const started = performance.now();
  await assert.rejects(history.read('dev-1', 7_200_000), /^Error: InfluxDB query failed: no answer within 300 ms$/);
  t.diagnostic(`gave up after ${Math.round(performance.now() - started)} ms (timeout_ms 300)`);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]?.method, 'GET');
  assert.equal(seen[0]?.authorization, 'Token secret-token');
  const url = new URL(seen[0]?.url ?? '', 'http://x');
  assert.equal(url.pathname, '/query');
  assert.equal(url.searchParams.get('db'), 'fleet');
  assert.equal(url.searchParams.get('epoch'), 'ms');
  assert.equal(url.searchParams.get('q'), historyQuery('dev-1', 3_600_000, 7_200_000, 10_000));

  // stop() ends a query in flight at once.
  const pending = history.read('dev-1', 7_200_000);
  await waitFor(() => seen.length === 2, 'the second query to arrive');
  history.stop();
  await assert.rejects(pending, /InfluxDB query failed: the admin runner is stopping/);
});

test("the console's device page charts the InfluxDB history and says where it came from; with influxd stopped, the recent store and why", async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const set = await setUp(t);
  if (!set) return;
  const { influx, adminPort, device } = set;
  const { page, pageErrors, foreign } = await openConsole(t, chromiumPath, adminPort, { hash: `#/devices/${UID}` });
  await page.waitForSelector(`#device-page[data-uid="${UID}"]`);
  await page.waitForSelector('#telemetry-source[data-source="influx"]');
  assert.equal((await page.textContent('#telemetry-source'))?.trim(), 'From InfluxDB.');
  await page.waitForSelector('.telemetry-field[data-field="rsrp"][data-points="2"] canvas');
  await page.waitForSelector('.telemetry-field[data-field="temperature"][data-points="1"] canvas');
  assert.equal(await page.locator('.telemetry-field[data-field="door"]').count(), 0);

  await influx.stop();
  // A device message makes the page ask for devices.detail again (at most once a second).
  await device.publishAsync(`${UID}/tel/p`, Buffer.from(encode(new Map<number, unknown>([[1, 52]]))), { qos: 1 });
  await page.waitForSelector('#telemetry-source[data-source="recent"]');
  assert.match((await page.textContent('#telemetry-error')) ?? '', /InfluxDB could not be read: InfluxDB query failed: ECONNREFUSED/);
  await page.waitForSelector('.telemetry-field[data-field="rsrp"] canvas');
  assert.equal(await page.locator('.telemetry-field[data-field="temperature"]').count(), 0, 'the recent store has only what the device sent');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
