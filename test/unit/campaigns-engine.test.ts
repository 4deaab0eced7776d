// The campaign decision engine (src/campaigns/engine.ts) against a simulated
// fleet with a fake clock (test/helpers/campaign-sim.ts): issue 18's "must
// show" items that do not need a real broker or real devices.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { CampaignEngine } from '../../src/campaigns/engine.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import { CampaignStore } from '../../src/campaigns/store.js';
import { hasCode } from '../../src/errors.js';
import { LevelStore } from '../../src/store/index.js';
import { FleetSim, IMAGE_SIZE, MINUTE, NEW_IMAGE, OLD_IMAGE, type Behaviour } from '../helpers/campaign-sim.js';
import { HeldStore } from '../helpers/held-store.js';
import { tempDir } from '../helpers/index.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const HOUR = 60 * MINUTE;
const STEP = 10_000;

const uids = (n: number) => Array.from({ length: n }, (_, i) => `dev${String(i).padStart(4, '0')}`);

function spec(overrides: Record<string, unknown> = {}) {
  return parseCampaignSpec({
    id: 'rollout-1',
    imageId: NEW_IMAGE,
    target: { devices: uids(1000) },
    stages: [{ percent: 1 }, { percent: 10 }, { percent: 100 }],
    soakMs: HOUR,
    health: { windowMs: 30 * MINUTE, telemetrySilentMs: 10 * MINUTE, reconnectTimeoutMs: 15 * MINUTE, downloadTimeoutMs: HOUR, bootLoop: { reconnects: 3, withinMs: 10 * MINUTE }, successRatio: 0.8 },
    abort: { failedPercent: 5, minFailed: 5 },
    rollback: { enabled: true },
    ...overrides,
  });
}

function start(overrides: Record<string, unknown>, behaviourOf: (uid: string) => Behaviour, beforeEffects?: (engine: CampaignEngine) => Promise<void>) {
  const s = spec(overrides);
  const devices = s.target.devices ?? [];
  const { engine, effects } = CampaignEngine.create(s, IMAGE_SIZE, devices.map((uid) => ({ uid, previousImageId: OLD_IMAGE })), T0);
  const sim = new FleetSim(engine, behaviourOf, T0, beforeEffects);
  return { sim, engine, effects };
}

/** Every 10th device (by uid) never comes back after installing: 10% of the fleet. */
const tenPercentBricked = (uid: string): Behaviour => (Number(uid.slice(3)) % 10 === 3 ? 'brick' : 'good');

test('1,000 devices, 10% bricking: the 1% → 10% → 100% campaign aborts in stage 1 or 2, later stages are never notified, rollback relinks the failed stage', async () => {
  const { sim, engine, effects } = start({}, tenPercentBricked);
  await sim.apply(effects);
  await sim.run(STEP, 48 * HOUR, (e) => !e.active);

  const summary = engine.summary();
  assert.equal(summary.state, 'aborted');
  assert.equal(summary.reason, 'abort_rule');
  assert.ok(summary.stage === 0 || summary.stage === 1, `aborted in stage ${summary.stage + 1}`);
  const abortStage = summary.stage;

  // No device of a later stage was ever notified (or moved at all).
  const devices = engine.deviceList();
  const later = devices.filter((d) => d.stage > abortStage);
  assert.ok(later.length > 0);
  assert.deepEqual(later.filter((d) => d.state !== 'pending').map((d) => d.uid), []);
  const stageOf = new Map(devices.map((d) => [d.uid, d.stage]));
  assert.deepEqual(sim.record.notified.filter((n) => (stageOf.get(n.uid) ?? -1) > abortStage), []);
  // Nobody was notified twice.
  assert.equal(new Set(sim.record.notified.map((n) => n.uid)).size, sim.record.notified.length);

  // The abort came as soon as the rule held: within one health window of the failure that crossed the threshold.
  const abortedAt = sim.record.campaignEvents.find((e) => e.campaign.state === 'aborted')?.at;
  assert.ok(abortedAt !== undefined);
  let notified = 0;
  let failed = 0;
  let crossedAt: number | undefined;
  for (const event of sim.record.deviceEvents) {
    if (event.previous === 'pending') notified++;
    if (event.device.state === 'failed' && event.previous !== 'failed') failed++;
    if (crossedAt === undefined && failed >= 5 && failed * 100 >= 5 * notified) crossedAt = event.at;
  }
  assert.ok(crossedAt !== undefined);
  assert.ok(abortedAt - crossedAt <= 30 * MINUTE, `aborted ${abortedAt - crossedAt} ms after the threshold was crossed`);
  const failedDevices = devices.filter((d) => d.state === 'failed');
  assert.ok(failedDevices.length >= 5);
  assert.ok(failedDevices.every((d) => d.reason === 'no_reconnect' && tenPercentBricked(d.uid) === 'brick'));

  // Rollback: every notified device of the failed stage, among them all that took the image, linked back to the previous image.
  const failedStage = devices.filter((d) => d.stage === abortStage && d.state !== 'pending').map((d) => d.uid).sort();
  assert.deepEqual(sim.record.relinked.map((r) => r.uid).sort(), failedStage);
  assert.ok(sim.record.relinked.every((r) => r.imageId === OLD_IMAGE && r.at === abortedAt));
  const tookImage = devices.filter((d) => d.stage === abortStage && (d.state === 'confirmed' || d.state === 'healthy'));
  assert.ok(tookImage.length > 0, 'some devices of the failed stage had installed the image');
  assert.ok(tookImage.every((d) => d.rolledBackTo === OLD_IMAGE));
  // Earlier stages passed their gate and keep the image.
  assert.deepEqual(devices.filter((d) => d.stage < abortStage && d.rolledBackTo !== undefined), []);
});

test('1,000 devices, none bad: the campaign completes, each stage advancing only after its soak time', async () => {
  const { sim, engine, effects } = start({}, () => 'good');
  await sim.apply(effects);
  await sim.run(STEP, 48 * HOUR, (e) => !e.active);

  const summary = engine.summary();
  assert.equal(summary.state, 'completed');
  assert.equal(summary.reason, 'all_stages_passed');
  assert.equal(summary.counts.healthy, 1000);
  assert.deepEqual(summary.stages.map((s) => s.devices), [10, 90, 900]);
  const started = summary.stages.map((s) => s.startedAt ?? Number.NaN);
  for (let i = 1; i < started.length; i++) {
    const soak = (started[i] ?? 0) - (started[i - 1] ?? 0);
    assert.ok(soak >= HOUR, `stage ${i + 1} started ${soak} ms after stage ${i}, before the soak time`);
    // ...and not much later: the gate is met long before the soak ends (health window 30 min), so it advances at the first tick after it.
    assert.ok(soak < HOUR + 2 * STEP, `stage ${i + 1} started ${soak} ms after stage ${i}`);
  }
  const completedAt = sim.record.campaignEvents.find((e) => e.campaign.state === 'completed')?.at ?? 0;
  assert.ok(completedAt - (started[2] ?? 0) >= HOUR);
  assert.equal(sim.record.notified.length, 1000);
  assert.deepEqual(sim.record.relinked, []);
});

/** One device, one stage: how it fails. */
async function failureOf(behaviour: Behaviour) {
  const { sim, engine, effects } = start({ target: { devices: ['dev0001'] }, stages: [{ percent: 100 }], abort: undefined }, () => behaviour);
  await sim.apply(effects);
  await sim.run(STEP, 6 * HOUR, (e) => e.device('dev0001')?.state === 'failed' || e.device('dev0001')?.state === 'healthy');
  return engine.device('dev0001');
}

test('a device that comes back on the old version fails as version_reverted', async () => {
  const device = await failureOf('revert');
  assert.equal(device?.state, 'failed');
  assert.equal(device.reason, 'version_reverted');
  assert.equal(device.detail, `came back reporting ${OLD_IMAGE}`);
});

test('a device that reconnects 3 times within 10 minutes after the download fails as boot_loop', async () => {
  const device = await failureOf('boot_loop');
  assert.equal(device?.state, 'failed');
  assert.equal(device.reason, 'boot_loop');
});

test('a device that confirms the version and then sends no telemetry fails as telemetry_silent', async () => {
  const device = await failureOf('silent');
  assert.equal(device?.state, 'failed');
  assert.equal(device.reason, 'telemetry_silent');
});

test('a device that never finishes its download fails as download_timeout; one that sends Done without downloading as device_rejected', async () => {
  const stalled = await failureOf('stall');
  assert.equal(stalled?.state, 'failed');
  assert.equal(stalled.reason, 'download_timeout');
  assert.equal(stalled.bytes, IMAGE_SIZE / 4);
  assert.equal(stalled.percent, 25);
  const rejected = await failureOf('reject');
  assert.equal(rejected?.state, 'failed');
  assert.equal(rejected.reason, 'device_rejected');
});

test('a good device goes through every state to healthy, one event per change', async () => {
  const { sim, effects } = start({ target: { devices: ['dev0001'] }, stages: [{ percent: 100 }] }, () => 'good');
  await sim.apply(effects);
  await sim.run(STEP, 6 * HOUR, (e) => !e.active);
  assert.deepEqual(
    sim.record.deviceEvents.map((e) => e.device.state),
    ['notified', 'downloading', 'downloaded', 'rebooting', 'confirmed', 'healthy'],
  );
  assert.deepEqual(sim.record.deviceEvents.map((e) => e.previous), ['pending', 'notified', 'downloading', 'downloaded', 'rebooting', 'confirmed']);
});

test('a stage that can no longer meet its gate pauses the campaign; promote moves on, resume re-checks', async () => {
  // No abort rule: 10% bricked leaves the 1% stage (10 devices) below a 100% gate once all have settled.
  const { sim, engine, effects } = start({ abort: undefined, health: { successRatio: 1 } }, tenPercentBricked);
  await sim.apply(effects);
  await sim.run(STEP, 48 * HOUR);
  const paused = engine.summary();
  assert.equal(paused.state, 'paused');
  assert.equal(paused.reason, 'gate_not_met');
  assert.equal(paused.stage, 0);
  const resumed = engine.resume(sim.now);
  assert.equal(engine.state, 'paused', 'the gate still fails: paused again at once');
  assert.deepEqual(resumed.map((e) => (e.kind === 'campaign' ? e.campaign.reason : e.kind)), ['operator', 'gate_not_met']);
  const promoted = engine.promote(sim.now);
  assert.equal(engine.state, 'running');
  assert.equal(promoted.filter((e) => e.kind === 'notify').length, 90);
  assert.throws(() => engine.pause(sim.now) && engine.pause(sim.now), (error) => hasCode(error, 'CAMPAIGN_STATE'));
  engine.resume(sim.now);
  const aborted = engine.abort(sim.now, false);
  assert.equal(engine.state, 'aborted');
  assert.deepEqual(aborted.filter((e) => e.kind === 'relink'), [], 'no rollback when the operator says so');
  assert.throws(() => engine.promote(sim.now), (error) => hasCode(error, 'CAMPAIGN_STATE'));
  assert.deepEqual(engine.tick(sim.now + HOUR), [], 'an aborted campaign decides nothing more');
});

test('a campaign reloaded from the store mid-campaign continues without notifying anyone again', async (t) => {
  const dir = await tempDir(t);
  const kv = new LevelStore(path.join(dir, 'kv'));
  await kv.open();
  t.after(() => kv.close());
  const campaigns = new CampaignStore(kv);
  const save = (engine: CampaignEngine) => campaigns.save(engine);
  const { sim, engine, effects } = start({}, () => 'good', save);
  await sim.apply(effects);
  // Into stage 2 (10%), with its devices part-way: notified, downloading, rebooting...
  // Ticks a minute apart here: every tick with changes is a synced store write.
  await sim.run(MINUTE, 3 * HOUR, (e) => e.summary().stage === 1 && e.deviceList().some((d) => d.stage === 1 && d.state === 'rebooting'));
  const before = engine.summary();
  assert.equal(before.stage, 1);

  // "Restart": a new engine from the store, the simulated devices go on as they were.
  const [restored, ...others] = await new CampaignStore(kv).loadAll();
  assert.ok(restored);
  assert.deepEqual(others, []);
  assert.deepEqual(restored.summary(), before);
  assert.deepEqual(restored.deviceList().sort((a, b) => a.uid.localeCompare(b.uid)), engine.deviceList().sort((a, b) => a.uid.localeCompare(b.uid)));
  assert.deepEqual(restored.tick(sim.now).filter((e) => e.kind === 'notify'), [], 'the running stage is not notified again');
  const notifiedBefore = sim.record.notified.length;
  assert.equal(notifiedBefore, 100);
  sim.engine = restored;
  await sim.run(MINUTE, 48 * HOUR, (e) => !e.active);

  assert.equal(restored.state, 'completed');
  assert.equal(sim.record.notified.length, 1000);
  assert.equal(new Set(sim.record.notified.map((n) => n.uid)).size, 1000, 'every device notified exactly once over the restart');
  const [reloaded] = await new CampaignStore(kv).loadAll();
  assert.equal(reloaded?.state, 'completed');
  assert.equal(reloaded.summary().counts.healthy, 1000);
});

test('a spec is checked in one pass, and each problem names its field', () => {
  const problems = (input: unknown) => {
    try {
      parseCampaignSpec(input);
    } catch (error) {
      assert.ok(hasCode(error, 'INVALID_ARGUMENT'));
      return error.message;
    }
    assert.fail('expected INVALID_ARGUMENT');
  };
  assert.equal(
    problems({ id: 'bad id!', imageId: '1.2', target: {}, stages: [{ percent: 10 }, { percent: 5 }], health: { successRatio: 2 } }),
    'id: expected [A-Za-z0-9_.-], 1..64 characters; imageId: expected an image id such as 1.2.3-4-g965b9df; target: give groups, devices, or fleet: true; health.successRatio: Too big: expected number to be <=1; ' +
      'stages.1.percent: stages are cumulative: must be more than the stage before (10); stages.1.percent: the last stage must reach 100, so no target device is left out',
  );
  assert.match(problems({ id: 'a', imageId: NEW_IMAGE, target: { fleet: true }, stages: [{ percent: 10 }, { percent: 5 }] }), /^stages\.1\.percent: stages are cumulative: must be more than the stage before \(10\); stages\.1\.percent: the last stage must reach 100/);
  assert.equal(problems({ id: 'a', imageId: NEW_IMAGE, target: { fleet: true }, stages: [{ percent: 100, count: 3 }] }), 'stages.0: give exactly one of percent or count');
  assert.equal(problems({ id: 'a', imageId: NEW_IMAGE, target: { fleet: true }, stages: [{ percent: 100 }], abort: { failedPercent: 5 } }), 'abort.minFailed: Invalid input: expected number, received undefined');
  assert.equal(problems({ id: 'a', imageId: NEW_IMAGE, target: { fleet: true }, stages: [{ percent: 100 }], colour: 'red' }), 'unknown field colour');
  const ok = parseCampaignSpec({ id: 'a', imageId: NEW_IMAGE, target: { groups: ['field'] }, stages: [{ count: 5 }, { count: 50, soakMs: 0 }] });
  assert.equal(ok.health.successRatio, 0.95);
  assert.equal(ok.health.bootLoop.reconnects, 3);
  assert.equal(ok.stages[1]?.soakMs, 0);
});

test('a save that fails gives its changes back: the next save writes them, with what changed since', async (t) => {
  const dir = await tempDir(t);
  const kv = new HeldStore(path.join(dir, 'kv'));
  await kv.open();
  t.after(() => kv.close());
  const campaigns = new CampaignStore(kv);
  const { engine } = CampaignEngine.create(spec({ target: { devices: uids(10) } }), IMAGE_SIZE, uids(10).map((uid) => ({ uid, previousImageId: OLD_IMAGE })), T0);
  kv.failWith = new Error('no space left on device (test)');
  await assert.rejects(campaigns.save(engine), /no space left on device/);
  kv.failWith = undefined;
  assert.equal((await new CampaignStore(kv).loadAll()).length, 0, 'nothing written');
  engine.observe('dev0000', { kind: 'progress', bytes: IMAGE_SIZE, at: T0 + 1000 });
  await campaigns.save(engine);
  const [stored] = await new CampaignStore(kv).loadAll();
  assert.ok(stored, 'the campaign written by the next save');
  assert.deepEqual(stored.summary(), engine.summary());
  assert.deepEqual(
    stored.deviceList().sort((a, b) => a.uid.localeCompare(b.uid)),
    engine.deviceList().sort((a, b) => a.uid.localeCompare(b.uid)),
  );
});
