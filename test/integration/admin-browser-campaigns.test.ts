// The console's Campaigns view in a real browser (Debian's chromium via
// playwright-core) against a real Nucleon: OTA and campaigns runners, MQTT over
// TLS. The campaign is created through the admin protocol; three canary devices
// are real mqtt.js clients that download, "reboot" and report a version, and
// the page follows them live. Then the operator buttons: pause, resume,
// promote, a promote the server refuses, and an abort with rollback.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { Encoder } from 'cbor-x';
import mqtt, { type MqttClient } from 'mqtt';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { otaRunnerOf } from '../../src/ota/index.js';
import { repoRoot, requireBinary } from '../helpers/index.js';
import { AdminTestClient, startFullInstance } from '../helpers/admin-harness.js';
import { openConsole } from '../helpers/console.js';

const OLD = '1.0.0-0-gaaaaaaa';
const NEW = '1.1.0-0-gbbbbbbb';
const SIZE = 4096;
const CAMPAIGN = 'fw-1.1.0';
/** Stage 1 is the canary stage: these three, in this order, so the test knows who is notified. */
const [GOOD, SLOW, REVERTED] = ['352656100000011', '352656100000012', '352656100000013'];
const LATER = ['352656100000014', '352656100000015'];
const SCREENSHOT = path.join(repoRoot, 'test-output', 'campaigns-dashboard.png');
const MINUTE = 60_000;
// Integer keys, as Pyrinas firmware sends them.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true });

test('the Campaigns view shows a live funnel, pauses, resumes, promotes, shows a refusal and aborts with rollback', async (t) => {
  const chromiumPath = requireBinary(t, 'chromium', 'chromium');
  if (chromiumPath === undefined) return;
  const { nucleon, adminPort, dir } = await startFullInstance(t);
  const mqttPort = (nucleon.runner('mqtt') as MqttRunner).port('tls') ?? 0;

  // Five devices in group "field" on the old image.
  const ota = otaRunnerOf(nucleon);
  await ota.addImage({ id: OLD, imageType: 'primary', source: { kind: 'bytes', data: randomBytes(SIZE) } });
  await ota.addImage({ id: NEW, imageType: 'primary', source: { kind: 'bytes', data: randomBytes(SIZE) } });
  await ota.link({ group: 'field', imageId: OLD });
  for (const uid of [GOOD, SLOW, REVERTED, ...LATER]) await ota.link({ deviceUid: uid, group: 'field' });

  const admin = await AdminTestClient.authorized(t, `ws://127.0.0.1:${adminPort}/ws`);
  const created = await admin.request('campaigns.create', {
    id: CAMPAIGN,
    imageId: NEW,
    target: { groups: ['field'] },
    canary: [GOOD, SLOW, REVERTED],
    stages: [{ percent: 100 }],
    soakMs: 60 * MINUTE,
    // Long windows: nothing times out or turns healthy while the test runs.
    health: { windowMs: 30 * MINUTE, telemetrySilentMs: 30 * MINUTE, downloadTimeoutMs: 60 * MINUTE, reconnectTimeoutMs: 60 * MINUTE, revertGraceMs: 500 },
    abort: { failedPercent: 90, minFailed: 5 },
    rollback: { enabled: true },
  });
  assert.equal(created.ok, true, JSON.stringify(created.error));
  assert.equal(created.result.state, 'running');
  assert.deepEqual(
    created.result.stages.map((stage: { label: string; devices: number }) => [stage.label, stage.devices]),
    [
      ['canary', 3],
      ['100%', 2],
    ],
  );

  const { page, pageErrors, foreign } = await openConsole(t, chromiumPath, adminPort, { hash: '#/campaigns' });

  // The list, then the detail.
  const row = `#campaigns tr[data-id="${CAMPAIGN}"]`;
  await page.waitForSelector(`${row}[data-state="running"] td.stage:has-text("1/2 (canary)")`);
  await page.getByRole('button', { name: `Show campaign ${CAMPAIGN}` }).click();
  const detail = `#campaign-detail[data-id="${CAMPAIGN}"]`;
  await page.waitForSelector(`${detail}[data-state="running"]`);
  await page.waitForSelector('#campaign-funnel-bars li[data-step="notified"] .value:has-text("3 / 5")');

  // The canaries, as real devices over TLS.
  const devices = new Devices(nucleon.config.certs, path.join(dir, 'devices'), mqttPort);
  t.after(() => devices.closeAll());
  const download = (client: MqttClient, end: number) => client.publishAsync(`${client.options.clientId}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 2], [1, NEW], [2, 0], [3, end]])), { qos: 1 });
  const telemetry = (client: MqttClient, version: string) => client.publishAsync(`${client.options.clientId}/tel/p`, cbor.encode(new Map<number, unknown>([[0, version]])), { qos: 1 });
  const logged = (uid: string, change: string) => page.waitForSelector(`#campaign-log li:has-text("${uid}: ${change}")`);

  /** The whole image, a "reboot", back reporting `version`: confirmed with the new one, failed with another. */
  const installAndReboot = async (uid: string, version: string, outcome: string) => {
    await download(await devices.connect(uid), SIZE);
    await logged(uid, 'notified → downloaded');
    await devices.disconnect(uid);
    await logged(uid, 'downloaded → rebooting');
    await telemetry(await devices.connect(uid), version);
    await logged(uid, `rebooting → ${outcome}`);
  };
  await installAndReboot(GOOD, NEW, 'confirmed');
  // SLOW: a quarter of the image so far → downloading.
  await download(await devices.connect(SLOW), SIZE / 4);
  await logged(SLOW, 'notified → downloading');
  // REVERTED: back on the old version, as after an MCUboot revert.
  await installAndReboot(REVERTED, OLD, 'failed (version_reverted)');

  // The funnel, the stage table, the failures and the bytes, all without a reload.
  const stageRow = `#campaign-funnel tbody tr[data-stage="0"]`;
  for (const [step, count] of [['notified', '3 / 5'], ['downloading', '3 / 5'], ['downloaded', '2 / 5'], ['rebooting', '2 / 5'], ['confirmed', '1 / 5'], ['healthy', '0 / 5']]) {
    await page.waitForSelector(`#campaign-funnel-bars li[data-step="${step}"] .value:text-is("${count}")`);
  }
  assert.equal(await page.textContent(`${stageRow} td.confirmed`), '1');
  assert.equal(await page.textContent(`${stageRow} td.downloading`), '1');
  assert.equal(await page.textContent(`${stageRow} td.failed`), '1');
  assert.equal(await page.textContent(`#campaign-funnel tbody tr[data-stage="1"] td.pending`), '2');
  assert.equal(await page.textContent('#campaign-failures li[data-reason="version_reverted"]'), 'version_reverted: 1');
  // 4 KiB twice and a quarter of it once.
  assert.equal(await page.textContent('#campaign-bytes'), '9.0 KiB (image 4.0 KiB)');
  // Estimates are times like every other: relative, the absolute time on hover.
  assert.match((await page.textContent('#campaign-downloads-eta')) ?? '', /^(in \d+ (s|min|h)|just now)$/);
  assert.match((await page.textContent('#campaign-end-eta')) ?? '', /^in \d+ (min|h)$/);
  assert.match((await page.getAttribute('#campaign-end-eta time', 'title')) ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
  await page.waitForSelector(`${row} td.failed:text-is("1")`);
  await mkdir(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // Pause: the page and campaigns.show agree.
  await page.click('#campaign-pause');
  await page.waitForSelector(`${detail}[data-state="paused"] #campaign-state:text-is("paused")`);
  await page.waitForSelector(`${row}[data-state="paused"]`);
  assert.equal(await page.isDisabled('#campaign-pause'), true);
  const paused = await admin.request('campaigns.show', { id: CAMPAIGN });
  assert.equal(paused.ok, true);
  assert.equal(paused.result.campaign.state, 'paused');
  assert.equal(paused.result.campaign.reason, 'operator');

  // Resume, promote to the last stage: its two devices are notified.
  await page.click('#campaign-resume');
  await page.waitForSelector(`${detail}[data-state="running"]`);
  await page.click('#campaign-promote');
  await page.waitForSelector(`${row} td.stage:has-text("2/2 (100%)")`);
  await page.waitForSelector('#campaign-funnel-bars li[data-step="notified"] .value:text-is("5 / 5")');

  // A promote at the last stage: the server refuses, the page says why and stays as it was.
  await page.click('#campaign-promote');
  const refusal = await page.waitForSelector('#campaign-error:not([hidden])');
  assert.match((await refusal.textContent()) ?? '', /^campaigns\.promote refused: campaign fw-1\.1\.0 is at its last stage; there is nothing to promote to \[CAMPAIGN_STATE\]$/);
  assert.equal(await page.getAttribute(detail, 'data-state'), 'running');

  // Abort asks first, with the campaign's rollback setting as the default.
  await page.click('#campaign-abort');
  await page.waitForSelector('#abort-dialog[open]');
  assert.equal(await page.isChecked('#abort-rollback'), true);
  await page.click('#abort-cancel');
  await page.waitForSelector('#abort-dialog:not([open])', { state: 'attached' });
  assert.equal(await page.getAttribute(detail, 'data-state'), 'running');
  await page.click('#campaign-abort');
  await page.click('#abort-confirm');
  await page.waitForSelector(`${detail}[data-state="aborted"]`);
  await page.waitForSelector(`${row}[data-state="aborted"]`);
  assert.equal(await page.isDisabled('#campaign-abort'), true);
  const aborted = await admin.request('campaigns.show', { id: CAMPAIGN, devices: true });
  assert.equal(aborted.result.campaign.state, 'aborted');
  // The rollback linked the last stage's notified devices back to the old image.
  const rolledBack = aborted.result.devices
    .filter((device: { rolledBackTo?: string }) => device.rolledBackTo !== undefined)
    .map((device: { uid: string; rolledBackTo: string }) => [device.uid, device.rolledBackTo])
    .sort();
  assert.deepEqual(rolledBack, LATER.map((uid) => [uid, OLD]));
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

/** Simulated devices as real mqtt.js clients with certificates from the Nucleon CA; a "reboot" is a disconnect and a new connection. */
class Devices {
  private readonly clients = new Map<string, MqttClient>();
  private readonly files = new Map<string, Awaited<ReturnType<typeof issueDeviceCertificate>>>();

  constructor(
    private readonly certs: Parameters<typeof issueDeviceCertificate>[0],
    private readonly dir: string,
    private readonly port: number,
  ) {}

  async connect(uid: string): Promise<MqttClient> {
    const files = this.files.get(uid) ?? (await issueDeviceCertificate(this.certs, uid, path.join(this.dir, uid)));
    this.files.set(uid, files);
    const client = await mqtt.connectAsync(`mqtts://localhost:${this.port}`, {
      ca: await readFile(files.caPath),
      cert: await readFile(files.certPath),
      key: await readFile(files.keyPath),
      clientId: uid,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 4,
    });
    this.clients.set(uid, client);
    return client;
  }

  async disconnect(uid: string): Promise<void> {
    await this.clients.get(uid)?.endAsync();
    this.clients.delete(uid);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.clients.values()].map((client) => client.endAsync(true)));
    this.clients.clear();
  }
}
