// The console's fleet views in a real browser (Debian's chromium via
// playwright-core) against a real Nucleon: MQTT over TLS, the OTA runner, the
// admin endpoint. What the old one-page dashboard test checked, on the views
// that replace it: a device connecting live in the devices table, an image
// uploaded through the page (with progress), group membership and the group's
// image edited, the OTA column following the device, the audit view listing
// those actions, and the row turning offline when the device leaves.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { Encoder } from 'cbor-x';
import { otaRunnerOf } from '../../src/ota/index.js';
import { repoRoot, requireBinary, waitFor } from '../helpers/index.js';
import { connectCertificateDevice, startFullInstance } from '../helpers/admin-harness.js';
import { openConsole } from '../helpers/console.js';

const UID = '352656100000001';
const OTHER = '352656100000002';
const IMAGE_ID = '1.2.3-4-g965b9df';
const SCREENSHOT = path.join(repoRoot, 'test-output', 'admin-dashboard.png');
// Integer keys, as Pyrinas firmware sends them.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true });

test('the console sees a device connect live, uploads an image with progress, edits a group and its image, and lists those actions in the audit view', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t);
  const { page, base, pageErrors, foreign } = await openConsole(t, chromiumPath, adminPort, { hash: '#/devices' });

  // A real device over TLS with a client certificate issued by the Nucleon CA.
  const { device } = await connectCertificateDevice(t, nucleon, dir, UID);
  const pushed: Buffer[] = [];
  device.on('message', (topic, payload) => {
    if (topic === `${UID}/ota/s`) pushed.push(payload);
  });
  await device.subscribeAsync(`${UID}/ota/s`, { qos: 1 });
  await device.publishAsync(`${UID}/tel/p`, cbor.encode(new Map<number, unknown>([[0, '1.0.0-1-gaaaaaaa'], [1, 62]])), { qos: 1 });
  // The list is a search: a device new to the fleet shows after the next one (here: a reload of the view).
  await page.reload();
  const row = `#devices tr[data-uid="${UID}"]`;
  await page.waitForSelector(`${row}[data-online="true"] td.firmware:has-text("1.0.0-1-gaaaaaaa")`);
  await page.waitForSelector(`${row} td.telemetry:has-text("version=1.0.0-1-gaaaaaaa rsrp=62")`);
  // Telemetry is streamed to the device page only (the list would take every device's); the list asks for its page again every 10 s.
  await device.publishAsync(`${UID}/tel/p`, cbor.encode(new Map<number, unknown>([[1, 70]])), { qos: 1 });
  await page.waitForSelector(`${row} td.telemetry:has-text("rsrp=70")`);

  // Upload a 2 MB image through the Images view (chunked over the socket, with progress).
  await page.click('nav a:text-is("Images")');
  const firmware = randomBytes(2 * 1024 * 1024 + 5);
  await page.setInputFiles('#upload-file', { name: 'app_update.bin', mimeType: 'application/octet-stream', buffer: firmware });
  await page.fill('#upload-version', IMAGE_ID);
  await page.fill('#upload-description', 'from the browser');
  await page.click('#upload-button');
  await page.waitForSelector('#upload-progress progress');
  await page.waitForSelector(`#images tr[data-id="${IMAGE_ID}"]`);
  await page.waitForSelector('#upload-done:has-text("uploaded image 1.2.3-4-g965b9df (2.0 MiB)")');
  const stored = (await otaRunnerOf(nucleon).images()).find((image) => image.id === IMAGE_ID);
  assert.equal(stored?.size, firmware.length);
  assert.equal(stored?.description, 'from the browser');

  // Groups: two devices into "field", one out again, then the group onto the image: the device is told at once.
  await page.click('nav a:text-is("Groups")');
  for (const uid of [UID, OTHER]) {
    await page.fill('#member-device', uid);
    await page.fill('#member-group', 'field');
    await page.click('#add-member-button');
    await page.waitForSelector(`#groups [data-group="field"] .members li[data-uid="${uid}"]`);
  }
  await page.click(`#groups [data-group="field"] button[aria-label="Remove ${OTHER} from field"]`);
  await page.waitForSelector(`#groups [data-group="field"] .members li[data-uid="${OTHER}"]`, { state: 'detached' });
  const groups = await otaRunnerOf(nucleon).groups();
  assert.deepEqual(groups.find((g) => g.name === 'field')?.devices, [UID]);
  await page.selectOption('#groups [data-group="field"] select.group-image', IMAGE_ID);
  await page.click('#groups [data-group="field"] button.link-group');
  await page.waitForSelector(`#groups [data-group="field"] .image:text-is("${IMAGE_ID}")`);
  await waitFor(() => pushed.some((payload) => payload.length > 0), 'the OTA package pushed to the device');

  // The device checks and fetches a first chunk: its OTA column follows live.
  await page.click('nav a:text-is("Devices")');
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 0]])), { qos: 1 });
  await page.waitForSelector(`${row} td.ota:has-text("assigned")`);
  await device.publishAsync(`${UID}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 2], [1, IMAGE_ID], [2, 0], [3, 4096]])), { qos: 1 });
  await page.waitForSelector(`${row} td.ota:has-text("downloading")`);
  await page.waitForSelector(`${row} td.groups:text-is("field")`);
  await mkdir(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // The audit view: the page's own changes, newest on top, under the key's name.
  await page.goto(`${base}#/audit`);
  await page.waitForSelector('#audit tbody tr:first-child td:has-text("ota.link")');
  const auditRows: string[][] = [];
  for (let i = 1; i <= (await page.locator('#audit tbody tr').count()); i++) {
    auditRows.push((await page.locator(`#audit tbody tr:nth-child(${i}) td`).allTextContents()).slice(1));
  }
  assert.deepEqual(auditRows, [
    ['default', 'ws', 'ota.link', `group:field -> ${IMAGE_ID}`, 'ok'],
    ['default', 'ws', 'ota.unlink', `${OTHER} group:field`, 'ok'],
    ['default', 'ws', 'ota.link', `${OTHER} group:field`, 'ok'],
    ['default', 'ws', 'ota.link', `${UID} group:field`, 'ok'],
    ['default', 'ws', 'images.add', IMAGE_ID, 'ok'],
    ['default', 'ws', 'uploads.begin', `${firmware.length} bytes`, 'ok'],
  ]);
  await page.fill('#audit-filter', 'unlink');
  await waitFor(async () => (await page.locator('#audit tbody tr').count()) === 1, 'the filter keeps the unlink');

  // The device leaves: its row turns offline without a reload.
  await page.goto(`${base}#/devices`);
  await page.waitForSelector(`${row}[data-online="true"]`);
  await device.endAsync();
  await page.waitForSelector(`${row}[data-online="false"]`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
