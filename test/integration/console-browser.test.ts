// The operator console (web/) in a real browser (Debian's chromium via
// playwright-core) against a real Nucleon: MQTT over TLS with client
// certificates, the OTA runner, the admin endpoint with the console API.
// Login, the overview's live charts, search and paging over 10,000 devices
// in the store (figures printed, not asserted), and a device page fed by a
// real device: telemetry chart, kick, revoke, password, image link.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { Encoder } from 'cbor-x';
import type { MqttClient } from 'mqtt';
import type { Page } from 'playwright-core';
import type { Nucleon } from '../../src/nucleon.js';
import { otaRunnerOf } from '../../src/ota/index.js';
import { freePort, requireBinary, waitFor } from '../helpers/index.js';
import { API_KEY, connectCertificateDevice, startFullInstance } from '../helpers/admin-harness.js';
import { openConsole } from '../helpers/console.js';
import { seededDevices, seedFleet, type SeedOptions } from '../helpers/seed-fleet.js';

const UID = '352656100000001';
const IMAGE_ID = '1.2.3-4-g965b9df';
// Integer keys, as Pyrinas firmware sends them.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true });

/** A real device: mqtt.js over TLS with a certificate from the instance's CA. */
async function connectDevice(t: TestContext, nucleon: Nucleon, dir: string, uid: string): Promise<MqttClient> {
  return (await connectCertificateDevice(t, nucleon, dir, uid)).device;
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.once('close', () => resolve()));
}

async function text(page: Page, selector: string): Promise<string> {
  return ((await page.textContent(selector)) ?? '').trim();
}

test('login: a wrong key is refused on the form, the right one opens the overview, whose connected-devices chart follows a real TLS device', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t, { admin: { health_interval_ms: 200 } });
  const { page, pageErrors, foreign } = await openConsole(t, chromiumPath, adminPort, { login: false });

  await page.fill('#api-key', 'not-the-right-key-at-all');
  await page.click('#login-button');
  await page.waitForSelector('#login-error:has-text("invalid API key")');
  assert.equal(await page.isVisible('#login'), true);
  assert.equal(await page.isVisible('#nav'), false);
  await page.fill('#api-key', API_KEY);
  await page.click('#login-button');
  await page.waitForSelector('#status[data-state="connected"]:has-text("connected")');
  await page.waitForSelector('nav a[aria-current="page"]:text-is("Overview")');

  // The health stream fills the charts: samples pile up while nobody is connected.
  await page.waitForSelector('#metric-connections .metric-value:text-is("0")');
  await waitFor(async () => Number(await page.getAttribute('#metric-connections', 'data-points')) >= 3, 'three health samples in the chart');
  assert.equal(await page.locator('#metric-connections canvas').count(), 1, 'a uPlot sparkline');
  await page.waitForSelector('#metric-memory .metric-value:has-text("MiB")');

  await connectDevice(t, nucleon, dir, UID);
  await page.waitForSelector('#metric-connections .metric-value:text-is("1")');
  // The chart holds both levels: 0 before the device, 1 after it.
  assert.ok(Number(await page.getAttribute('#metric-connections', 'data-points')) >= 4);

  // A click opens the larger chart with axes and legend; the card says it is open.
  await page.click('#metric-connections');
  await page.waitForSelector('#metric-detail[data-metric="connections"] canvas');
  await page.waitForSelector('#metric-detail .u-legend');
  assert.equal(await page.getAttribute('#metric-connections', 'aria-pressed'), 'true');
  await page.click('#metric-detail button:text-is("Close")');
  await page.waitForSelector('#metric-detail', { state: 'detached' });

  // Times are relative with the absolute time on hover, in one format.
  const title = await page.getAttribute('.page-head time', 'title');
  assert.match(title ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC([+-]\d{1,2}(:\d\d)?)?$/);

  // Log out: back to the form, the key forgotten by the tab.
  await page.click('#logout-button');
  await page.waitForSelector('#login');
  assert.equal(await page.evaluate<string | null>('sessionStorage.getItem("nucleon.admin.key")'), null);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('the connection indicator: reconnecting with a countdown while the server is down, connected again on its own with the banner cleared', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const port = await freePort();
  const first = await startFullInstance(t, { admin: { port } });
  const { page, pageErrors, foreign } = await openConsole(t, chromiumPath, port, { hash: '#/devices' });
  await page.waitForSelector('#devices[data-state="ready"]');

  await first.nucleon.stop();
  await page.waitForSelector('#status[data-state="reconnecting"]');
  assert.match(await text(page, '#status'), /^reconnecting( in \d+ s|…)$/);
  await page.waitForSelector('#message li[data-action="connection"]:has-text("reconnects on its own")');
  // The shell stays (no login form) while it retries.
  assert.equal(await page.locator('#login').count(), 0);

  // Another instance on the same port with the same key: the page logs in again, subscribes again and reloads its view.
  const second = await startFullInstance(t, { admin: { port } });
  const device = await connectDevice(t, second.nucleon, second.dir, UID);
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForSelector('#message li[data-action="connection"]', { state: 'detached' });
  await page.waitForSelector(`#devices tr[data-uid="${UID}"][data-online="true"]`);
  await device.endAsync();
  await page.waitForSelector(`#devices tr[data-uid="${UID}"][data-online="false"]`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('devices: search, filters, sort, paging and columns over 10,000 devices in the store, with search-to-render and first-load times printed', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const seed: SeedOptions = { count: 10_000, now: Date.now(), groups: [{ name: 'canary', every: 100 }, { name: 'even', every: 2 }] };
  const { adminPort } = await startFullInstance(t, {}, { beforeStart: (dataDir) => seedFleet(dataDir, seed) });
  const devices = seededDevices(seed);
  const { page, pageErrors, foreign, commands } = await openConsole(t, chromiumPath, adminPort, { hash: '#/devices' });
  const table = '#devices[data-state="ready"]';
  const uids = async () => {
    const rows = page.locator('#devices tbody tr');
    const found: (string | null)[] = [];
    for (let i = 0; i < (await rows.count()); i++) found.push(await rows.nth(i).getAttribute('data-uid'));
    return found;
  };

  await page.waitForSelector(`${table}[data-total="10000"] tbody tr`);
  assert.deepEqual(await uids(), devices.slice(0, 50).map((d) => d.uid));
  assert.equal(await text(page, '#page-range'), '1–50 of 10,000');

  // First load: navigation start to the devices table rendered, with the key kept by the tab.
  await page.reload();
  await page.waitForSelector(`${table}[data-total="10000"] tbody tr`);
  const firstLoadMs = await page.evaluate(() => performance.getEntriesByName('console:devices-rendered')[0]?.startTime ?? -1);
  assert.ok(firstLoadMs > 0);

  // Search by uid prefix: the page asks once typing pauses, and only devices.search.
  const prefix = devices[1230]?.uid.slice(0, -1) ?? '';
  const started = performance.now();
  await page.fill('#device-search', prefix);
  await page.waitForSelector(`${table}[data-total="10"]`);
  const typedToRenderedMs = performance.now() - started;
  const searchToRenderMs = Number(await page.getAttribute('#devices', 'data-render-ms'));
  assert.deepEqual(await uids(), devices.slice(1230, 1240).map((d) => d.uid));
  // Another prefix, measured again: the second is without the first's warm-up.
  const again = performance.now();
  await page.fill('#device-search', devices[4567]?.uid ?? '');
  await page.waitForSelector(`${table}[data-total="1"]`);
  const secondTypedMs = performance.now() - again;
  const secondSearchMs = Number(await page.getAttribute('#devices', 'data-render-ms'));
  console.log(
    `console figures (10,000 devices): first load ${firstLoadMs.toFixed(0)} ms (navigation start to table rendered); ` +
      `search-to-render ${searchToRenderMs.toFixed(1)} / ${secondSearchMs.toFixed(1)} ms (request sent to rows in the DOM); ` +
      `typed-to-rendered ${typedToRenderedMs.toFixed(0)} / ${secondTypedMs.toFixed(0)} ms (with the 250 ms typing pause)`,
  );
  await page.fill('#device-search', '');
  await page.waitForSelector(`${table}[data-total="10000"]`);

  // Page size and paging.
  await page.selectOption('#page-size', '100');
  await page.waitForSelector(`${table}[data-query*='"limit":100']`);
  assert.equal(await page.locator('#devices tbody tr').count(), 100);
  await page.click('#page-next');
  await page.waitForSelector(`${table}[data-query*='"offset":100']`);
  assert.equal(await text(page, '#page-range'), '101–200 of 10,000');
  assert.equal((await uids())[0], devices[100]?.uid);

  // Sort by clicking a header: UID again turns the order around (and goes back to the first page).
  await page.click('#devices th button[data-sort="uid"]');
  await page.waitForSelector(`${table}[data-query*='"order":"desc"'][data-query*='"offset":0']`);
  assert.equal((await uids())[0], devices.at(-1)?.uid);
  assert.equal(await page.getAttribute('#devices th:has(button[data-sort="uid"])', 'aria-sort'), 'descending');

  // Filters from the facets.
  await page.selectOption('#device-group', 'canary');
  await page.waitForSelector(`${table}[data-total="100"]`);
  assert.ok((await page.locator('#devices tbody tr td.groups').allTextContents()).every((groups) => groups === 'canary'));
  await page.selectOption('#device-group', '');
  await page.selectOption('#device-firmware', '2.0.0-1-g1234567');
  await page.waitForSelector(`${table}[data-total="2500"]`);
  await page.selectOption('#device-ota', 'downloading');
  await page.waitForSelector(`${table}[data-query*='"ota":"downloading"']`);
  const expected = devices.filter((d) => d.firmwareVersion === '2.0.0-1-g1234567' && d.otaStatus === 'downloading').length;
  assert.equal(await page.getAttribute('#devices', 'data-total'), String(expected));
  await page.selectOption('#device-online', 'true');
  await page.waitForSelector(`${table}[data-total="0"]`);
  await page.waitForSelector('text=No device matches.');

  // Columns chosen by the operator stay chosen after a reload.
  await page.click('button:text-is("Columns")');
  await page.uncheck('input[name="column-telemetry"]');
  await page.check('input[name="column-address"]');
  await page.waitForSelector('#devices th:text-is("Address")');
  assert.equal(await page.locator('#devices th:text-is("Telemetry")').count(), 0);
  await page.reload();
  await page.waitForSelector(`${table}[data-total="10000"]`);
  assert.equal(await page.locator('#devices th:text-is("Address")').count(), 1);
  assert.equal(await page.locator('#devices th:text-is("Telemetry")').count(), 0);

  // A row links to its device page.
  await page.click(`#devices tbody tr[data-uid="${devices[0]?.uid}"] a`);
  await page.waitForSelector(`#device-page[data-uid="${devices[0]?.uid}"]`);
  assert.equal(new URL(page.url()).hash, `#/devices/${devices[0]?.uid}`);
  // Never the whole fleet: devices.search and devices.detail, no devices.list.
  assert.ok(commands.includes('devices.search') && commands.includes('devices.detail'));
  assert.equal(commands.filter((cmd) => cmd === 'devices.list').length, 0);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('device page: a telemetry chart fed live by a real device, sessions, password, image link, kick and revoke closing its MQTT session', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t);
  await otaRunnerOf(nucleon).addImage({ id: IMAGE_ID, imageType: 'primary', source: { kind: 'bytes', data: randomBytes(8192) } });
  let device = await connectDevice(t, nucleon, dir, UID);
  const pushed: Buffer[] = [];
  device.on('message', (topic, payload) => {
    if (topic === `${UID}/ota/s`) pushed.push(payload);
  });
  await device.subscribeAsync(`${UID}/ota/s`, { qos: 1 });
  await device.publishAsync(`${UID}/tel/p`, cbor.encode(new Map<number, unknown>([[0, '1.0.0-1-gaaaaaaa'], [1, 60]])), { qos: 1 });

  const { page, pageErrors, foreign } = await openConsole(t, chromiumPath, adminPort, { hash: `#/devices/${UID}` });
  const devicePage = `#device-page[data-uid="${UID}"]`;
  await page.waitForSelector(`${devicePage}[data-online="true"]`);
  await page.waitForSelector('#identity .auth-method:text-is("certificate")');
  await page.waitForSelector('#sessions tbody tr td:has-text("open")');
  await page.waitForSelector('#firmware-history td:text-is("1.0.0-1-gaaaaaaa")');

  // The rsrp chart: the first point from devices.detail, the next ones from the live stream.
  await page.waitForSelector('.telemetry-field[data-field="rsrp"][data-points="1"] canvas');
  for (const rsrp of [62, 64]) {
    await device.publishAsync(`${UID}/tel/p`, cbor.encode(new Map<number, unknown>([[1, rsrp]])), { qos: 1 });
    // One point per message; the server keeps one per millisecond, so the messages are told apart by the page's count.
    await waitFor(async () => Number(await page.getAttribute('.telemetry-field[data-field="rsrp"]', 'data-points')) >= (rsrp === 62 ? 2 : 3), `rsrp ${rsrp} on the chart`);
  }
  assert.match(await text(page, '.telemetry-field[data-field="rsrp"] h3'), /^rsrp 64 · /);

  // A password, shown once.
  await page.click('#password-button');
  await page.waitForSelector('#new-password');
  assert.ok((await text(page, '#new-password')).length >= 16);
  await page.waitForSelector('#identity .has-password:text-is("set")');
  await page.click('#password-once button');
  await page.waitForSelector('#new-password', { state: 'detached' });

  // Link an image: the device is told at once.
  await page.selectOption('#link-image', IMAGE_ID);
  await page.click('#link-button');
  await waitFor(() => pushed.some((payload) => payload.length > 0), 'the OTA package pushed to the device');
  await page.waitForSelector('#action-done:has-text("linked")');
  // The device checks, then fetches half of the image: the progress bar follows live, in percent and bytes.
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 0]])), { qos: 1 });
  await page.waitForSelector('#ota[data-state="assigned"]');
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 2], [1, IMAGE_ID], [2, 0], [3, 4096]])), { qos: 1 });
  await page.waitForSelector('#ota[data-state="downloading"] .ota-figures:text-is("50 % · 4.0 KiB of 8.0 KiB")');
  assert.equal(await page.getAttribute('#ota-progress progress', 'value'), '50');

  // Kick: the device's real session closes, the page shows it offline with the reason.
  const kicked = closed(device);
  await page.click('#kick-button');
  await kicked;
  await page.waitForSelector(`${devicePage}[data-online="false"]`);
  await page.waitForSelector('#sessions tbody tr[data-reason="kicked"]');

  // Revoke (asked first, with a reason): the session closes and a new one is refused.
  device = await connectDevice(t, nucleon, dir, UID);
  await page.waitForSelector(`${devicePage}[data-online="true"]`);
  await page.click('#revoke-button');
  await page.waitForSelector('#revoke-dialog[open]');
  await page.click('#revoke-cancel');
  await page.waitForSelector('#revoke-dialog:not([open])', { state: 'attached' });
  assert.equal(await page.getAttribute(devicePage, 'data-revoked'), 'false');
  const revoked = closed(device);
  await page.click('#revoke-button');
  await page.fill('#revoke-reason', 'stolen from the test bench');
  await page.click('#revoke-confirm');
  await revoked;
  await page.waitForSelector(`${devicePage}[data-revoked="true"][data-online="false"]`);
  await page.waitForSelector('#identity .revocation:has-text("stolen from the test bench")');
  await assert.rejects(connectDevice(t, nucleon, dir, UID));

  // Lift it: the device may come back.
  await page.click('#unrevoke-button');
  await page.waitForSelector(`${devicePage}[data-revoked="false"]`);
  await connectDevice(t, nucleon, dir, UID);
  await page.waitForSelector(`${devicePage}[data-online="true"]`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
