// The device state machine against reports that arrive out of order: telemetry
// goes through the durable ingest log, connections and disconnections do not,
// so a report a device sent just before it rebooted can be seen after the
// reboot (found by test/system/campaigns.test.ts with real devices).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { observeDevice, type DeviceRules } from '../../src/campaigns/device-machine.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import type { CampaignDeviceStatus } from '../../src/events.js';

const OLD = '1.0.0-0-gaaaaaaa';
const NEW = '1.1.0-0-gbbbbbbb';
const rules: DeviceRules = {
  imageId: NEW,
  imageSize: 1000,
  health: parseCampaignSpec({ id: 'c', imageId: NEW, target: { devices: ['d1'] }, stages: [{ percent: 100 }] }).health,
};

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
  // Sent after the reboot, the old version is MCUboot's revert.
  assert.equal(observeDevice(device, { kind: 'telemetry', version: OLD, at: 2600 }, rules), 'event');
  assert.equal(device.state, 'failed');
  assert.equal(device.reason, 'version_reverted');
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
