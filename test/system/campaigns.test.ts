// Campaigns end to end: a real `nucleon serve` (dist/bin.cjs: `npm run build`
// first), a fleet of simulated Pyrinas devices over MQTT/TLS
// (scripts/fleet-sim) that download the image in chunks, reboot and report
// their version, some of them never coming back. Windows are a few seconds,
// set in the spec; every wait is a condition polled through campaigns.show.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planStages } from '../../src/campaigns/plan.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import type { CampaignDeviceStatus, CampaignSummary } from '../../src/events.js';
import { behavioursByShare, type Fleet } from '../../scripts/fleet-sim/fleet.js';
import type { Behaviour } from '../../scripts/fleet-sim/device.js';
import { waitFor } from '../helpers/index.js';
import {
  GROUP,
  NEW_IMAGE,
  OLD_IMAGE,
  showCampaign,
  startCampaignServer,
  startFleet,
  startServe,
  waitForCampaign,
  withAdminOf,
  type Serve,
} from '../helpers/campaign-fleet.js';

const SOAK_MS = 3000;

/**
 * The bricking fleet: 80 devices in `npm test`; NUCLEON_CAMPAIGN_FLEET=1000
 * runs the 1,000 devices with a 1% → 10% → 100% campaign and an
 * abort rule of 5% and at least 5 (by hand: on a busy 2-core CI machine a
 * thousand TLS devices reconnect slower than these few-second windows).
 */
const BRICK_FLEET =
  process.env.NUCLEON_CAMPAIGN_FLEET === '1000'
    ? // A hundred TLS downloads at once in stage 2 on two loaded cores: a healthy device can take longer than 20 s.
      { devices: 1000, stages: [1, 10, 100], minFailed: 5, downloadTimeoutMs: 90_000 }
    : { devices: 80, stages: [10, 40, 100], minFailed: 3, downloadTimeoutMs: 20_000 };

/** A 1% → 10% → 100%-style campaign scaled to a small fleet: stage 1 gets a few devices. */
function specOf(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    imageId: NEW_IMAGE,
    target: { groups: [GROUP] },
    stages: [{ percent: 10 }, { percent: 40 }, { percent: 100 }],
    soakMs: SOAK_MS,
    health: { windowMs: 2500, telemetrySilentMs: 4000, reconnectTimeoutMs: 4000, revertGraceMs: 1500, downloadTimeoutMs: 20_000, bootLoop: { reconnects: 4, withinMs: 3000 }, successRatio: 0.8 },
    ...extra,
  };
}

/** Which stage each device will be in: the plan is a pure function of the spec and the target. */
function stagesOf(spec: Record<string, unknown>, uids: readonly string[]): Map<string, number> {
  return new Map(planStages(parseCampaignSpec(spec), uids).devices.map(({ uid, stage }) => [uid, stage]));
}

/** The failed devices, each with what the simulator saw of it, for an assertion message. */
function describeFailures(devices: readonly CampaignDeviceStatus[], fleet: Fleet): string {
  return devices
    .filter((d) => d.state === 'failed')
    .map((d) => {
      const sim = fleet.device(d.uid);
      const times = `notified +0, downloaded +${(d.downloadedAt ?? 0) - (d.notifiedAt ?? 0)}, reboot +${(d.rebootAt ?? 0) - (d.notifiedAt ?? 0)}, settled +${(d.settledAt ?? 0) - (d.notifiedAt ?? 0)}`;
      return `${d.uid} stage ${d.stage + 1}: ${d.reason ?? '?'} (${d.detail ?? ''}; ${times}; sim: ${sim.status} on ${sim.version}, ${sim.log.connects} connects, ${sim.log.connectFailures} failed (${sim.log.lastConnectError ?? ''}), ${sim.log.chunkRequests} chunk requests)`;
    })
    .join('; ')
    .concat(fleet.failure() !== undefined ? `; simulator failure: ${String(fleet.failure())}` : '');
}

async function create(serve: Serve, spec: Record<string, unknown>): Promise<CampaignSummary> {
  return withAdminOf(serve, (client) => client.request<CampaignSummary>('campaigns.create', spec));
}

test(`${BRICK_FLEET.devices} devices, 10% never come back: the campaign aborts in stage 1 or 2, later stages are never offered the image, and the stage rolls back`, async (t) => {
  const setup = await startCampaignServer(t, BRICK_FLEET.devices);
  if (!setup) return;
  const { serve, uids } = setup;
  // Stage 2 soaks long enough for its bricks to fail first (download, then reconnectTimeoutMs): with the
  // campaign's 3 s its healthy devices could meet the gate before that on a busy machine, and the rule
  // then tripped only in stage 3.
  const spec = specOf('bricks', {
    stages: [{ percent: BRICK_FLEET.stages[0] }, { percent: BRICK_FLEET.stages[1], soakMs: 15_000 }, { percent: BRICK_FLEET.stages[2] }],
    abort: { failedPercent: 5, minFailed: BRICK_FLEET.minFailed },
    rollback: { enabled: true },
    health: { windowMs: 2500, telemetrySilentMs: 4000, reconnectTimeoutMs: 4000, revertGraceMs: 1500, downloadTimeoutMs: BRICK_FLEET.downloadTimeoutMs, bootLoop: { reconnects: 4, withinMs: 3000 }, successRatio: 0.8 },
  });
  // 10% of each stage bricks (at least one in the first), so the rule trips in stage 2 whatever the hash order.
  const stageOf = stagesOf(spec, uids);
  const behaviours = new Map<string, Behaviour>();
  for (const stage of new Set(stageOf.values())) {
    const members = uids.filter((uid) => stageOf.get(uid) === stage);
    for (const [uid, behaviour] of behavioursByShare(members, { never_back: Math.max(0.1, 1 / members.length) })) behaviours.set(uid, behaviour);
  }
  const bricks = [...behaviours].filter(([, b]) => b === 'never_back').map(([uid]) => uid);
  const tenth = BRICK_FLEET.devices / 10;
  assert.ok(bricks.length >= tenth && bricks.length <= tenth + 1, `about 10% bricks, got ${bricks.length}`);
  const fleet = await startFleet(t, serve, uids, behaviours);

  await create(serve, spec);
  const aborted = await waitForCampaign(serve, 'bricks', 'the abort rule', (s) => s.campaign.state === 'aborted', 300_000);
  assert.equal(aborted.campaign.reason, 'abort_rule');
  assert.ok(aborted.campaign.stage <= 1, `aborted in stage 1 or 2, not ${aborted.campaign.stage + 1}`);
  const failed = aborted.devices.filter((d) => d.state === 'failed');
  assert.ok(failed.length >= BRICK_FLEET.minFailed, `at least minFailed devices failed: ${failed.length}`);
  for (const device of failed) {
    assert.equal(device.reason, 'no_reconnect', `${device.uid} failed as ${device.reason ?? '?'}`);
    assert.ok(bricks.includes(device.uid), `${device.uid} failed but is not a brick`);
  }

  // Stages after the aborted one: never offered the new image, as the devices saw it.
  const abortedStage = aborted.campaign.stage;
  const later = uids.filter((uid) => (stageOf.get(uid) ?? -1) > abortedStage);
  assert.ok(later.length > 0);
  // The rolled-back stage: devices that took the image are linked back to the old one and report it.
  const rolledBack = aborted.devices.filter((d) => d.stage === abortedStage && d.rolledBackTo !== undefined);
  assert.ok(rolledBack.length > 0, 'some devices were rolled back');
  for (const device of rolledBack) assert.equal(device.rolledBackTo, OLD_IMAGE);
  const tookImage = uids.filter((uid) => stageOf.get(uid) === abortedStage && !bricks.includes(uid) && fleet.device(uid).log.downloaded.includes(NEW_IMAGE));
  assert.ok(tookImage.length > 0, 'healthy devices of the failed stage had taken the image');
  await waitFor(() => tookImage.every((uid) => fleet.device(uid).version === OLD_IMAGE), 'the rolled-back devices to report the old image', 30_000, 100);
  for (const uid of tookImage) assert.ok(rolledBack.some((d) => d.uid === uid), `${uid} took the image but has no rolledBackTo`);

  // Earlier stages passed their gate and keep the image.
  for (const uid of uids.filter((u) => (stageOf.get(u) ?? 99) < abortedStage && !bricks.includes(u))) assert.equal(fleet.device(uid).version, NEW_IMAGE, uid);
  for (const uid of later) assert.equal(fleet.device(uid).offersOf(NEW_IMAGE), 0, `${uid} (a later stage) was offered ${NEW_IMAGE}`);
  assert.equal(fleet.failure(), undefined);
});

test('with no bad device the campaign completes, each stage after its soak time', async (t) => {
  const setup = await startCampaignServer(t, 60);
  if (!setup) return;
  const { serve, uids } = setup;
  const fleet = await startFleet(t, serve, uids);
  await create(serve, specOf('clean', { abort: { failedPercent: 5, minFailed: 3 }, rollback: { enabled: true } }));
  const done = await waitForCampaign(serve, 'clean', 'the campaign to complete', (s) => s.campaign.state !== 'running', 75_000);
  assert.equal(done.campaign.state, 'completed', describeFailures(done.devices, fleet));
  assert.equal(done.campaign.reason, 'all_stages_passed');
  assert.equal(done.campaign.counts.healthy, uids.length);
  const starts = done.campaign.stages.map((stage) => stage.startedAt ?? Number.NaN);
  for (let i = 1; i < starts.length; i++) assert.ok((starts[i] ?? 0) - (starts[i - 1] ?? 0) >= SOAK_MS, `stage ${i + 1} started ${(starts[i] ?? 0) - (starts[i - 1] ?? 0)} ms after the one before`);
  for (const device of fleet.devices) {
    assert.equal(device.version, NEW_IMAGE, device.uid);
    assert.equal(device.pushesOf(NEW_IMAGE), 1, `${device.uid} notified once`);
    assert.deepEqual(device.log.downloaded, [NEW_IMAGE], `${device.uid} downloaded once`);
  }
  assert.equal(fleet.failure(), undefined);
});

test('nucleon serve stopped (SIGTERM) and killed (SIGKILL) mid-campaign: it goes on where it was, no device offered the image twice, no state lost', async (t) => {
  const setup = await startCampaignServer(t, 60);
  if (!setup) return;
  let { serve } = setup;
  const { uids } = setup;
  const fleet = await startFleet(t, serve, uids);
  // Silence and reconnect windows longer than a restart: devices are offline while the server is. A device
  // whose last chunk was lost with the restart comes back on the old version and asks for that chunk again
  // within its chunk time-out (3 s): the revert grace is longer (a CI run saw two such devices fail).
  const spec = specOf('restart', { soakMs: 4000, health: { windowMs: 2500, telemetrySilentMs: 30_000, reconnectTimeoutMs: 30_000, revertGraceMs: 10_000, downloadTimeoutMs: 30_000, bootLoop: { reconnects: 5, withinMs: 2000 }, successRatio: 0.8 } });
  const stageOf = stagesOf(spec, uids);
  await create(serve, spec);

  const restartAt = async (stage: number, how: 'stop' | 'kill') => {
    const before = await waitForCampaign(serve, 'restart', `stage ${stage + 1}`, (s) => s.campaign.stage >= stage, 45_000);
    assert.equal(before.campaign.stage, stage, 'the restart comes while this stage runs');
    // Every device of the stage has its offer, so the restart does not fall between a stored decision and its link (README "Storage and restarts").
    const members = uids.filter((uid) => stageOf.get(uid) === stage);
    try {
      await waitFor(() => members.every((uid) => fleet.device(uid).offersOf(NEW_IMAGE) > 0), `offers of stage ${stage + 1}`, 20_000, 100);
    } catch (error) {
      const shown = await showCampaign(serve, 'restart');
      const waiting = members.filter((uid) => fleet.device(uid).offersOf(NEW_IMAGE) === 0);
      const records = shown.devices.filter((d) => waiting.includes(d.uid)).map((d) => `${d.uid}: ${d.state} ${d.detail ?? ''} sim ${fleet.device(d.uid).status} connected=${String(fleet.device(d.uid).connected())}`);
      throw new Error(`${waiting.length} of ${members.length} without an offer: ${records.join('; ')}`, { cause: error });
    }
    const seen = await showCampaign(serve, 'restart');
    await (how === 'stop' ? serve.stop() : serve.kill());
    serve = await startServe(t, serve.dir, serve.ports);
    const after = await showCampaign(serve, 'restart');
    // The next stage may have started since (its soak time ran on while the server was down), never a stage again.
    seen.campaign.stages.forEach((s, i) => {
      if (s.startedAt !== undefined) assert.equal(after.campaign.stages[i]?.startedAt, s.startedAt, `stage ${i + 1} start time survives`);
    });
    assert.ok(after.campaign.stage >= seen.campaign.stage, `stage ${after.campaign.stage + 1} after the restart, ${seen.campaign.stage + 1} before`);
    const notifiedAt = new Map(after.devices.map((d) => [d.uid, d.notifiedAt]));
    for (const device of seen.devices) {
      if (device.notifiedAt !== undefined) assert.equal(notifiedAt.get(device.uid), device.notifiedAt, `${device.uid} notifiedAt survives (notified once)`);
    }
  };
  await restartAt(1, 'stop');
  await restartAt(2, 'kill');

  const done = await waitForCampaign(serve, 'restart', 'the campaign to complete', (s) => s.campaign.state !== 'running', 60_000);
  assert.equal(done.campaign.state, 'completed', describeFailures(done.devices, fleet));
  // A device reconnecting after a restart checks, and may be answered the package again: what must not
  // happen twice is the push (the campaign notifying it) and the download.
  for (const device of fleet.devices) {
    assert.ok(device.pushesOf(NEW_IMAGE) <= 1, `${device.uid} was notified of ${NEW_IMAGE} ${device.pushesOf(NEW_IMAGE)} times`);
    assert.deepEqual(device.log.downloaded, [NEW_IMAGE], `${device.uid} downloaded once`);
  }
  assert.equal(done.campaign.counts.healthy, uids.length, JSON.stringify(done.devices.filter((d) => d.state !== 'healthy')));
  assert.equal(fleet.failure(), undefined);
});
