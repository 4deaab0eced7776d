// Each way a device can fail a campaign, detected from what real devices do
// over MQTT/TLS (scripts/fleet-sim) against a real `nucleon serve`
// (dist/bin.cjs: `npm run build` first): MCUboot reverting the image, a boot
// loop, telemetry that stops after the update, a download that stalls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Behaviour } from '../../scripts/fleet-sim/device.js';
import type { CampaignFailReason } from '../../src/events.js';
import { GROUP, NEW_IMAGE, OLD_IMAGE, startCampaignServer, startFleet, waitForCampaign, withAdminOf } from '../helpers/campaign-fleet.js';

const EXPECTED: Partial<Record<Behaviour, CampaignFailReason>> = {
  revert: 'version_reverted',
  boot_loop: 'boot_loop',
  silent: 'telemetry_silent',
  stall: 'download_timeout',
};

test('version_reverted, boot_loop, telemetry_silent and download_timeout, each detected from real devices; the good ones become healthy', async (t) => {
  const setup = await startCampaignServer(t, 20);
  if (!setup) return;
  const { serve, uids } = setup;
  // Two devices of each misbehaviour, spread over the list; the rest good.
  const behaviours = new Map<string, Behaviour>(uids.map((uid) => [uid, 'good']));
  (Object.keys(EXPECTED) as Behaviour[]).forEach((behaviour, i) => {
    for (const uid of [uids[i * 2], uids[i * 2 + 11]]) if (uid !== undefined) behaviours.set(uid, behaviour);
  });
  const fleet = await startFleet(t, serve, uids, behaviours);

  await withAdminOf(serve, (client) =>
    client.request('campaigns.create', {
      id: 'misbehaviour',
      imageId: NEW_IMAGE,
      target: { groups: [GROUP] },
      stages: [{ percent: 100 }],
      soakMs: 0,
      health: { windowMs: 5000, telemetrySilentMs: 2500, reconnectTimeoutMs: 10_000, revertGraceMs: 2000, downloadTimeoutMs: 8000, bootLoop: { reconnects: 3, withinMs: 5000 }, successRatio: 0.5 },
    }),
  );
  const done = await waitForCampaign(serve, 'misbehaviour', 'every device healthy or failed', (s) => s.campaign.state !== 'running', 60_000);
  assert.equal(done.campaign.state, 'completed');
  for (const device of done.devices) {
    const behaviour = behaviours.get(device.uid) ?? 'good';
    const expected = EXPECTED[behaviour];
    if (expected === undefined) {
      assert.equal(device.state, 'healthy', `${device.uid} (good): ${device.state} ${device.reason ?? ''} ${device.detail ?? ''}`);
      assert.equal(fleet.device(device.uid).version, NEW_IMAGE);
    } else {
      assert.equal(device.state, 'failed', `${device.uid} (${behaviour}) is ${device.state}`);
      assert.equal(device.reason, expected, `${device.uid} (${behaviour}): ${device.detail ?? ''}`);
    }
  }
  for (const uid of uids.filter((u) => behaviours.get(u) === 'revert' || behaviours.get(u) === 'stall')) assert.equal(fleet.device(uid).version, OLD_IMAGE, uid);
  assert.equal(fleet.failure(), undefined);
});
