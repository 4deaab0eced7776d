// The dashboard in a real browser (Debian's chromium via playwright-core) against
// a real Nucleon: MQTT over TLS, the OTA runner, the admin endpoint. A real
// mqtt.js device connects with a client certificate while the page watches.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { Encoder } from 'cbor-x';
import mqtt from 'mqtt';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { otaRunnerOf } from '../../src/ota/index.js';
import { repoRoot, requireBinary, waitFor } from '../helpers/index.js';
import { API_KEY, startFullInstance } from '../helpers/admin-harness.js';
import { openChromium } from '../helpers/browser.js';

const UID = '352656100000001';
const IMAGE_ID = '1.2.3-4-g965b9df';
const SCREENSHOT = path.join(repoRoot, 'test-output', 'admin-dashboard.png');
// Integer keys, as Pyrinas firmware sends them.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true });

test('the dashboard logs in, sees a device connect live, uploads an image and links it, and lists those actions under Recent admin actions', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t);
  const mqttPort = (nucleon.runner('mqtt') as MqttRunner).port('tls') ?? 0;

  const page = await openChromium(t, chromiumPath);
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  // Offline by design: every request the page makes goes to the admin server itself.
  const foreign: string[] = [];
  page.on('request', (request) => {
    if (!request.url().startsWith(`http://127.0.0.1:${adminPort}/`) && !request.url().startsWith(`ws://127.0.0.1:${adminPort}/`)) foreign.push(request.url());
  });

  await page.goto(`http://127.0.0.1:${adminPort}/`);
  // A wrong key first: the page says so and stays on the login form.
  await page.fill('#api-key', 'not-the-right-key-at-all');
  await page.click('#login-button');
  await page.waitForSelector('#message.error:has-text("invalid API key")');
  assert.equal(await page.isVisible('#login'), true);
  await page.fill('#api-key', API_KEY);
  await page.click('#login-button');
  await page.waitForSelector('#status.online:has-text("connected")');
  await page.waitForSelector('#dashboard:not([hidden])');

  // A real device over TLS with a client certificate issued by the Nucleon CA.
  const files = await issueDeviceCertificate(nucleon.config.certs, UID, path.join(dir, 'device'));
  const device = await mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, {
    ca: await readFile(files.caPath),
    cert: await readFile(files.certPath),
    key: await readFile(files.keyPath),
    clientId: UID,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  t.after(() => device.endAsync(true));
  const pushed: Buffer[] = [];
  device.on('message', (topic, payload) => {
    if (topic === `${UID}/ota/s`) pushed.push(payload);
  });
  await device.subscribeAsync(`${UID}/ota/s`, { qos: 1 });
  await page.waitForSelector(`#devices tr[data-uid="${UID}"][data-online="true"]`);
  await device.publishAsync(`${UID}/tel/p`, cbor.encode(new Map<number, unknown>([[0, '1.0.0-1-gaaaaaaa'], [1, 62]])), { qos: 1 });
  await page.waitForSelector(`#devices tr[data-uid="${UID}"] td.firmware:has-text("1.0.0-1-gaaaaaaa")`);
  await page.waitForSelector(`#telemetry li:has-text("${UID}")`);
  // The ingest log card: durable runners with their committed position.
  await page.waitForSelector('#ingest-summary:has-text("durability \\"fsync\\"")');
  await page.waitForSelector('#ingest tbody tr td:has-text("ota")');

  // Upload a 2 MB image through the page (chunked over the socket).
  const firmware = randomBytes(2 * 1024 * 1024 + 5);
  await page.setInputFiles('#upload-file', { name: 'app_update.bin', mimeType: 'application/octet-stream', buffer: firmware });
  await page.fill('#upload-version', IMAGE_ID);
  await page.fill('#upload-description', 'from the browser');
  await page.click('#upload-button');
  await page.waitForSelector(`#images tr[data-id="${IMAGE_ID}"]`, { timeout: 30_000 });
  const stored = (await otaRunnerOf(nucleon).images()).find((image) => image.id === IMAGE_ID);
  assert.equal(stored?.size, firmware.length);
  assert.equal(stored?.description, 'from the browser');

  // Link the device to a group on that image; the device is told at once.
  await page.fill('#link-device', UID);
  await page.fill('#link-group', 'field');
  await page.selectOption('#link-image', IMAGE_ID);
  await page.click('#link-button');
  await page.waitForSelector(`#groups tr[data-group="field"] td.image:has-text("${IMAGE_ID}")`);
  await page.waitForSelector(`#groups tr[data-group="field"] td.members:has-text("${UID}")`);
  await waitFor(() => pushed.some((payload) => payload.length > 0), 'the OTA package pushed to the device');

  // The "Recent admin actions" card: the page's own changes, newest on top, under the key's name.
  await page.waitForSelector('#audit tbody tr:first-child td:has-text("ota.link")');
  const auditRows: string[][] = [];
  for (let i = 1; i <= (await page.locator('#audit tbody tr').count()); i++) {
    auditRows.push((await page.locator(`#audit tbody tr:nth-child(${i}) td`).allTextContents()).slice(1));
  }
  assert.deepEqual(auditRows, [
    ['default', 'ws', 'ota.link', `${UID} group:field -> ${IMAGE_ID}`, 'ok'],
    ['default', 'ws', 'images.add', IMAGE_ID, 'ok'],
    ['default', 'ws', 'uploads.begin', `${firmware.length} bytes`, 'ok'],
  ]);
  assert.equal(await page.isVisible('#audit-empty'), false);

  // The device checks and fetches a first chunk: the OTA column follows live.
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 0]])), { qos: 1 });
  await page.waitForSelector(`#devices tr[data-uid="${UID}"] td.ota:has-text("assigned")`);
  const download = new Map<number, unknown>([[0, 2], [1, IMAGE_ID], [2, 0], [3, 4096]]);
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(download), { qos: 1 });
  await page.waitForSelector(`#devices tr[data-uid="${UID}"] td.ota:has-text("downloading")`);
  await mkdir(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // The device leaves: its row turns offline without a reload.
  await device.endAsync();
  await page.waitForSelector(`#devices tr[data-uid="${UID}"][data-online="false"]`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
