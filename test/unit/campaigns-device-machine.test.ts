// The device state machine against reports that arrive out of order: telemetry
// goes through the durable ingest log, connections and disconnections do not,
// so a report a device sent just before it rebooted can be seen after the
// reboot (found by test/system/campaigns.test.ts with real devices).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkDeadlines, observeDevice, type DeviceRules } from '../../src/campaigns/device-machine.js';
import { CampaignEngine } from '../../src/campaigns/engine.js';
import { parseCampaignSpec, REVERT_GRACE_DEFAULT_MS } from '../../src/campaigns/spec.js';
import type { CampaignDeviceStatus } from '../../src/events.js';

const OLD = '1.0.0-0-gaaaaaaa';
const NEW = '1.1.0-0-gbbbbbbb';
const rules: DeviceRules = {
  imageId: NEW,
  imageSize: 1000,
  health: parseCampaignSpec({ id: 'c', imageId: NEW, target: { devices: ['d1'] }, stages: [{ percent: 100 }] }).health,
};

const GRACE = rules.health.revertGraceMs;

function downloaded(): CampaignDeviceStatus {
  const device: CampaignDeviceStatus = { uid: 'd1', stage: 0, state: 'notified', notifiedAt: 1000 };
  assert.equal(observeDevice(device, { kind: 'progress', bytes: 1000, at: 2000 }, rules), 'event');
  assert.equal(device.state, 'downloaded');
  return device;
}

test('old-version telemetry sent before the reboot but seen after the disconnect is stale, not a revert', () => {
  const device = downloaded();
  observeDevice(device, { kind: 'disconnected', at: 2100 }, rules);
  assert.equal(device.state, 'rebooting');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2050 }, rules), 'none');
  assert.equal(device.state, 'rebooting');
  // Sent after the reboot, the old version is MCUboot's revert, once the device asks for no more of the image.
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2600 }, rules), 'save');
  assert.equal(device.state, 'rebooting');
  assert.equal(checkDeadlines(device, 2600 + GRACE - 1, rules), 'none');
  assert.equal(checkDeadlines(device, 2600 + GRACE, rules), 'event');
  assert.equal(device.state, 'failed');
  assert.equal(device.reason, 'version_reverted');
  assert.equal(device.detail, `came back reporting ${OLD}`);
});

test('old-version reports for the whole grace time fail the device at the report that ends it', () => {
  const device = downloaded();
  observeDevice(device, { kind: 'connected', at: 2100 }, rules);
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2200 }, rules), 'save');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2200 + GRACE - 1 }, rules), 'save');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2200 + GRACE }, rules), 'event');
  assert.equal(device.reason, 'version_reverted');
});

test('a reconnect after the last chunk was lost is no reboot: asking for it again takes the device back to downloaded, and its real reboot confirms it', () => {
  // Found by test/system/campaigns.test.ts: the broker restarted while the last chunk was on its way.
  const device = downloaded();
  assert.equal(device.bytes, 1000);
  assert.equal(observeDevice(device, { kind: 'connected', at: 6000 }, rules), 'event');
  assert.equal(device.state, 'rebooting');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 6500 }, rules), 'save');
  assert.equal(observeDevice(device, { kind: 'progress', bytes: 1200, at: 8000 }, rules), 'event');
  assert.equal(device.state, 'downloaded');
  assert.equal(device.downloadedAt, 8000);
  assert.equal(device.rebootAt, undefined);
  assert.equal(device.revertSeen, undefined);
  // The grace time of the first report passes: nothing fails.
  assert.equal(checkDeadlines(device, 6500 + GRACE, rules), 'none');
  assert.equal(device.state, 'downloaded');
  // The same bytes announced again change nothing; more while downloaded is bookkeeping.
  assert.equal(observeDevice(device, { kind: 'progress', bytes: 1200, at: 8100 }, rules), 'none');
  assert.equal(observeDevice(device, { kind: 'progress', bytes: 1300, at: 8200 }, rules), 'save');
  observeDevice(device, { kind: 'disconnected', at: 8300 }, rules);
  assert.equal(device.state, 'rebooting');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: NEW, at: 9000 }, rules), 'event');
  assert.equal(device.state, 'confirmed');
});

test('a stale old-version report after the confirmation is ignored; a later one fails the device', () => {
  const device = downloaded();
  observeDevice(device, { kind: 'disconnected', at: 2100 }, rules);
  observeDevice(device, { kind: 'done', at: 2500 }, rules);
  assert.equal(device.state, 'confirmed');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2090 }, rules), 'none');
  assert.equal(device.state, 'confirmed');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 3000 }, rules), 'event');
  assert.equal(device.reason, 'version_reverted');
});

test('late telemetry never moves the last telemetry time back', () => {
  const device = downloaded();
  observeDevice(device, { kind: 'telemetry', version: NEW, at: 3000 }, rules);
  assert.equal(device.state, 'confirmed');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: NEW, at: 4000 }, rules), 'save');
  assert.equal(observeDevice(device, { kind: 'telemetry', version: NEW, at: 3500 }, rules), 'none');
  assert.equal(device.lastTelemetryAt, 4000);
});

test('a reverted device that downloads the whole image again is still a revert: a second download is no lost chunk', () => {
  const device = downloaded();
  observeDevice(device, { kind: 'disconnected', at: 2100 }, rules);
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2600 }, rules), 'save');
  // Its boot-time check is answered with the package again and it takes it (real firmware may).
  for (let bytes = 1100; bytes <= 2000; bytes += 100) observeDevice(device, { kind: 'progress', bytes, at: 2700 }, rules);
  assert.equal(device.state, 'downloaded', 'the first bytes past the image may be a lost last chunk');
  assert.equal(observeDevice(device, { kind: 'progress', bytes: 2100, at: 2800 }, rules), 'save');
  assert.equal(device.downloadedAt, 2700, 'the second download does not restart the reconnect time-out');
  observeDevice(device, { kind: 'disconnected', at: 2900 }, rules);
  observeDevice(device, { kind: 'telemetry', version: OLD, at: 3000 }, rules);
  observeDevice(device, { kind: 'progress', bytes: 2600, at: 3100 }, rules);
  assert.equal(device.state, 'rebooting');
  assert.equal(checkDeadlines(device, 3000 + GRACE, rules), 'event');
  assert.equal(device.reason, 'version_reverted');
});

test('a campaign stored before health.revertGraceMs existed gets the default when restored, and still detects a revert', () => {
  const devices = ['d1'];
  const spec = parseCampaignSpec({ id: 'old', imageId: NEW, target: { devices }, stages: [{ percent: 100 }], soakMs: 0 });
  const { engine } = CampaignEngine.create(spec, 1000, [{ uid: 'd1', previousImageId: OLD }], 1000);
  const stored = engine.takeChanges().campaign;
  assert.ok(stored);
  // As an earlier version stored it.
  const record = structuredClone(stored);
  delete (record.spec.health as Partial<typeof record.spec.health>).revertGraceMs;
  const restored = CampaignEngine.restore(record, engine.deviceList());
  assert.equal(restored.spec.health.revertGraceMs, REVERT_GRACE_DEFAULT_MS);
  restored.observe('d1', { kind: 'progress', bytes: 1000, at: 2000 });
  restored.observe('d1', { kind: 'disconnected', at: 2100 });
  restored.observe('d1', { kind: 'telemetry', version: OLD, at: 2600 });
  restored.tick(2600 + REVERT_GRACE_DEFAULT_MS);
  assert.equal(restored.device('d1')?.reason, 'version_reverted');
});
