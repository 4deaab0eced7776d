// The campaigns runner with the real EventBroker, the real OTA runner and a
// LevelStore, no sockets: simulated devices are events put on the broker
// (what the MQTT runner would publish), their notifications are the
// OtaResponse packages the OTA runner sends them. The clock is fake and the
// runner's timer is off: the test calls tick() after moving the clock.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CampaignRunner } from '../../src/campaigns/index.js';
import type { CampaignSummary, Event, EventOf, EventType } from '../../src/events.js';
import type { LevelStore } from '../../src/store/index.js';
import { campaignContext } from '../helpers/campaign-context.js';
import { HeldStore } from '../helpers/held-store.js';
import { tempDir, waitFor } from '../helpers/index.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const MINUTE = 60_000;
const OLD = '1.0.0-0-gaaaaaaa';
const NEW = '1.1.0-0-gbbbbbbb';
const SIZE = 1000;
const DEVICES = Array.from({ length: 20 }, (_, i) => `dev${String(i).padStart(2, '0')}`);

async function setUp(t: TestContext, store?: LevelStore) {
  const { context, broker, ota, settle, close } = await campaignContext(t, store ? { storeAt: () => store } : {});
  const { metrics } = context;
  const clock = { now: T0 };
  const startCampaigns = async () => {
    const runner = new CampaignRunner({ clock: () => clock.now, tickIntervalMs: 24 * 60 * MINUTE });
    await runner.start(context);
    return runner;
  };
  let campaigns = await startCampaigns();
  t.after(async () => {
    await campaigns.stop();
    await close();
  });

  // What reaches the devices and what the campaigns runner announces.
  const seen: Event[] = [];
  const accepts: EventType[] = ['OtaResponse', 'CampaignDeviceState', 'CampaignStateChanged', 'CampaignCommandResult', 'OtaBudgetSet', 'OtaBudgetCleared'];
  await broker.publish({ type: 'NewRunner', name: 'recorder', accepts, inbox: { handle: (event) => void seen.push(event) } });

  await ota.addImage({ id: OLD, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(1) } });
  await ota.addImage({ id: NEW, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(2) } });
  await ota.link({ group: 'field', imageId: OLD });
  for (const uid of DEVICES) await ota.link({ deviceUid: uid, group: 'field' });
  await settle(campaigns);
  seen.length = 0;

  let next = 0;
  return {
    broker,
    settle: () => settle(campaigns),
    metrics,
    seen,
    clock,
    runner: () => campaigns,
    /** A restart of the campaigns runner: a new instance reading the same store. */
    restart: async () => {
      await campaigns.stop();
      campaigns = await startCampaigns();
    },
    /** Sends a CampaignCommand as the admin runner does and waits for its answer. */
    command: async (request: EventOf<'CampaignCommand'>['request']) => {
      const correlationId = `test-${next++}`;
      await broker.publish({ type: 'CampaignCommand', correlationId, request });
      return waitFor(() => seen.find((e): e is EventOf<'CampaignCommandResult'> => e.type === 'CampaignCommandResult' && e.correlationId === correlationId), 'the command answer');
    },
    /** The devices that were sent a package of `image`, in order. */
    packagesOf: (image: string) => seen.flatMap((e) => (e.type === 'OtaResponse' && e.package?.id === image ? [e.uid] : [])),
    lastCampaign: () => seen.filter((e): e is EventOf<'CampaignStateChanged'> => e.type === 'CampaignStateChanged').at(-1)?.campaign,
  };
}

type Setup = Awaited<ReturnType<typeof setUp>>;

/** One simulated device installing the image it was told about: download, reboot, Done, then telemetry (or not, if bricked). */
async function install(s: Setup, uid: string, brick: boolean): Promise<void> {
  const at = s.clock.now;
  await s.broker.publish({ type: 'OtaRequest', uid, cmd: 'DownloadBytes', id: NEW, startPos: 0, endPos: SIZE, receivedAt: at });
  await waitFor(() => s.runner().show('c1', true).then((r) => r.devices?.find((d) => d.uid === uid)?.state === 'downloaded'), `${uid} downloaded`);
  await s.broker.publish({ type: 'DeviceDisconnected', uid, clientId: uid, reason: 'reboot', at });
  if (brick) return;
  await s.broker.publish({ type: 'DeviceConnected', uid, clientId: uid, remoteAddress: '127.0.0.1', authMethod: 'password', cleanSession: false, at: at + 1000 });
  await s.broker.publish({ type: 'OtaRequest', uid, cmd: 'Done', receivedAt: at + 2000 });
  await s.broker.publish({ type: 'TelemetryReceived', uid, telemetry: { version: NEW }, receivedAt: at + 3000 });
}

/** Moves the fake clock, sends every confirmed device's telemetry, and ticks. */
async function advance(s: Setup, ms: number, alive: readonly string[]): Promise<void> {
  s.clock.now += ms;
  for (const uid of alive) await s.broker.publish({ type: 'TelemetryReceived', uid, telemetry: { version: NEW }, receivedAt: s.clock.now });
  await s.settle();
  await s.runner().tick();
  await s.settle();
}

const SPEC = {
  id: 'c1',
  imageId: NEW,
  target: { groups: ['field'] },
  stages: [{ count: 2 }, { count: 10 }, { count: 20 }],
  soakMs: 20 * MINUTE,
  health: { windowMs: 10 * MINUTE, telemetrySilentMs: 5 * MINUTE, reconnectTimeoutMs: 5 * MINUTE, downloadTimeoutMs: 30 * MINUTE, successRatio: 1 },
  abort: { failedPercent: 20, minFailed: 2 },
  rollback: { enabled: true },
};

/** Every device notified but not yet installing installs; returns the ones that did. */
async function installNotified(s: Setup, done: Set<string>, bricked: ReadonlySet<string>): Promise<void> {
  for (const uid of s.packagesOf(NEW)) {
    if (done.has(uid)) continue;
    done.add(uid);
    await install(s, uid, bricked.has(uid));
  }
  await s.settle();
}

test('through the broker: a campaign created by CampaignCommand notifies stage by stage through the OTA runner and completes', async (t) => {
  const s = await setUp(t);
  const created = await s.command({ command: 'create', spec: SPEC });
  assert.equal(created.error, undefined);
  const summary = created.result as CampaignSummary;
  assert.equal(summary.state, 'running');
  assert.deepEqual(summary.stages.map((stage) => stage.devices), [2, 8, 10]);
  await waitFor(() => s.packagesOf(NEW).length === 2, 'stage 1 notified through the OTA runner');

  const installed = new Set<string>();
  const alive = () => [...installed];
  for (let round = 0; round < 20 && s.lastCampaign()?.state === 'running'; round++) {
    await installNotified(s, installed, new Set());
    await advance(s, 5 * MINUTE, alive());
  }
  const final = s.lastCampaign();
  assert.equal(final?.state, 'completed');
  assert.equal(final.counts.healthy, 20);
  const notified = s.packagesOf(NEW);
  assert.equal(notified.length, 20);
  assert.equal(new Set(notified).size, 20, 'no device was told twice');
  // Every transition was announced as a CampaignDeviceState event.
  const states = s.seen.filter((e): e is EventOf<'CampaignDeviceState'> => e.type === 'CampaignDeviceState' && e.device.uid === notified[0]).map((e) => e.device.state);
  assert.deepEqual(states, ['notified', 'downloaded', 'rebooting', 'confirmed', 'healthy']);
  const gauges = `${await s.metrics.getSingleMetricAsString('nucleon_campaign_devices')}\n${await s.metrics.getSingleMetricAsString('nucleon_campaign_stage')}`;
  assert.match(gauges, /^nucleon_campaign_devices\{campaign="c1",state="healthy"\} 20$/m);
  assert.match(gauges, /^nucleon_campaign_devices\{campaign="c1",state="failed"\} 0$/m);
  assert.match(gauges, /^nucleon_campaign_stage\{campaign="c1",state="completed"\} 2$/m);
  const answer = await s.command({ command: 'pause', id: 'c1' });
  assert.equal(answer.error?.code, 'CAMPAIGN_STATE');
});

test('through the broker: bricked devices abort the campaign, the failed stage is linked back to the old image, and a restarted runner notifies nobody again', async (t) => {
  const s = await setUp(t);
  assert.equal((await s.command({ command: 'create', spec: SPEC })).error, undefined);
  await waitFor(() => s.packagesOf(NEW).length === 2, 'stage 1 notified');
  const installed = new Set<string>();
  await installNotified(s, installed, new Set());
  // Stage 1 passes after its soak; stage 2 (8 devices) starts.
  for (let round = 0; round < 10 && s.packagesOf(NEW).length === 2; round++) await advance(s, 5 * MINUTE, [...installed]);
  assert.equal(s.packagesOf(NEW).length, 10);

  // A restart mid-stage: nobody is told again.
  await s.restart();
  await advance(s, 1000, [...installed]);
  assert.equal(s.packagesOf(NEW).length, 10);

  // Three of stage 2's devices never come back after installing.
  const stage2 = s.packagesOf(NEW).slice(2);
  const bricked = new Set(stage2.slice(0, 3));
  await installNotified(s, installed, bricked);
  const alive = () => [...installed].filter((uid) => !bricked.has(uid));
  for (let round = 0; round < 10 && s.lastCampaign()?.state === 'running'; round++) await advance(s, 5 * MINUTE, alive());

  const final = s.lastCampaign();
  assert.equal(final?.state, 'aborted');
  assert.equal(final.reason, 'abort_rule');
  assert.equal(final.stage, 1);
  assert.equal(s.packagesOf(NEW).length, 10, 'stage 3 was never notified');
  // The OTA runner pushed the old image to every device of stage 2 (they are linked, so told at once).
  await waitFor(() => s.packagesOf(OLD).length === 8, 'the rollback links reached the devices');
  assert.deepEqual([...s.packagesOf(OLD)].sort(), [...stage2].sort());
  const shown = await s.runner().show('c1', true);
  assert.deepEqual(shown.devices?.filter((d) => d.state === 'failed').map((d) => d.reason), ['no_reconnect', 'no_reconnect', 'no_reconnect']);
  assert.deepEqual(shown.devices?.filter((d) => d.rolledBackTo === OLD).map((d) => d.uid).sort(), [...stage2].sort());
});

test('through the broker: bad specs, unknown images and groups, taken ids and overlapping targets are refused with their codes', async (t) => {
  const s = await setUp(t);
  const invalid = await s.command({ command: 'create', spec: { ...SPEC, stages: [{ percent: 50 }] } });
  assert.deepEqual(invalid.error, { code: 'INVALID_ARGUMENT', message: 'stages.0.percent: the last stage must reach 100, so no target device is left out' });
  const noImage = await s.command({ command: 'create', spec: { ...SPEC, imageId: '9.9.9-0-gccccccc' } });
  assert.deepEqual(noImage.error, { code: 'NOT_FOUND', message: 'imageId: no image 9.9.9-0-gccccccc' });
  const noGroup = await s.command({ command: 'create', spec: { ...SPEC, target: { groups: ['field', 'lab'] } } });
  assert.deepEqual(noGroup.error, { code: 'NOT_FOUND', message: 'target.groups: no group "lab"' });
  assert.equal((await s.command({ command: 'create', spec: SPEC })).error, undefined);
  const again = await s.command({ command: 'create', spec: SPEC });
  assert.equal(again.error?.code, 'CAMPAIGN_EXISTS');
  const overlap = await s.command({ command: 'create', spec: { ...SPEC, id: 'c2', target: { devices: ['dev00', 'other'] } } });
  assert.deepEqual(overlap.error, { code: 'CAMPAIGN_OVERLAP', message: '1 target devices are still in progress in another campaign: dev00' });
  const missing = await s.command({ command: 'show', id: 'nope' });
  assert.deepEqual(missing.error, { code: 'NOT_FOUND', message: 'no campaign nope' });
  const list = await s.command({ command: 'list' });
  assert.deepEqual((list.result as { campaigns: CampaignSummary[] }).campaigns.map((c) => c.id), ['c1']);
});

test('through the broker: a budget paces notifications through the OTA runner; the byte budget is told before the first package, again after a restart, and cleared on abort', async (t) => {
  const s = await setUp(t);
  const spec = { ...SPEC, stages: [{ percent: 100 }], budget: { bytesPerSecond: 100_000, maxConcurrent: 3 } };
  assert.equal((await s.command({ command: 'create', spec })).error, undefined);
  await waitFor(() => s.packagesOf(NEW).length === 3, 'three devices notified');
  const budgetAt = s.seen.findIndex((e) => e.type === 'OtaBudgetSet');
  const firstPackage = s.seen.findIndex((e) => e.type === 'OtaResponse' && e.package?.id === NEW);
  assert.ok(budgetAt >= 0 && budgetAt < firstPackage, 'the budget reached the OTA runner before any package');
  const set = s.seen[budgetAt];
  assert.ok(set?.type === 'OtaBudgetSet');
  assert.deepEqual({ ...set.budget, devices: [...set.budget.devices].sort() }, { campaignId: 'c1', imageId: NEW, bytesPerSecond: 100_000, maxDelayMs: 10_000, devices: [...DEVICES].sort() });

  // One device downloads: the next is told, still three at once.
  const [first] = s.packagesOf(NEW);
  assert.ok(first);
  await s.broker.publish({ type: 'OtaRequest', uid: first, cmd: 'DownloadBytes', id: NEW, startPos: 0, endPos: SIZE, receivedAt: s.clock.now });
  await waitFor(() => s.packagesOf(NEW).length === 4, 'the fourth device notified');
  await s.settle();
  assert.equal(s.packagesOf(NEW).length, 4);

  await s.restart();
  await waitFor(() => s.seen.filter((e) => e.type === 'OtaBudgetSet').length === 2, 'the budget told again after the restart');
  await advance(s, 1000, []);
  assert.equal(s.packagesOf(NEW).length, 4, 'nobody told twice, nobody more while three download');

  assert.equal((await s.command({ command: 'abort', id: 'c1' })).error, undefined);
  await waitFor(() => s.seen.find((e) => e.type === 'OtaBudgetCleared' && e.campaignId === 'c1'), 'the budget cleared');
  assert.equal(s.packagesOf(NEW).length, 4, 'the waiting devices were never notified');
});

test('devices that finish while a decision waits for the disk join one save: two synced writes for 20 downloads, each saved before it is announced', async (t) => {
  // Only the campaigns runner's writes: the OTA runner's links go on.
  const store = new HeldStore(path.join(await tempDir(t), 'kv'), (keys) => keys.some((key) => key.startsWith('campaign/')));
  const s = await setUp(t, store);
  const created = await s.command({ command: 'create', spec: { ...SPEC, id: 'c2', stages: [{ percent: 100 }] } });
  assert.equal(created.error, undefined);
  await s.settle();
  assert.equal(s.packagesOf(NEW).length, DEVICES.length);
  const downloaded = () => s.seen.filter((e) => e.type === 'CampaignDeviceState' && e.device.state === 'downloaded');
  store.holding = true;
  const before = store.batches;
  // What the OTA runner announces as each device's last chunk is served.
  for (const uid of DEVICES) await s.broker.publish({ type: 'DeviceFirmwareUpdated', state: { uid, bytesServed: SIZE, downloadImageId: NEW } });
  await waitFor(() => store.waiting === 1, 'the first decision waiting for the disk');
  await s.broker.drain(5000);
  assert.equal(downloaded().length, 0, 'nothing announced before it is saved');
  store.release();
  await s.settle();
  assert.equal(store.batches - before, 2, 'the first decision, then one save for the 19 that came while it waited');
  assert.deepEqual(
    downloaded().map((e) => (e.type === 'CampaignDeviceState' ? e.device.uid : '')),
    DEVICES,
    'announced in the order they came',
  );
  for (const uid of DEVICES) assert.equal((await store.get<{ state: string }>(`campaign/device/c2/${uid}`))?.state, 'downloaded');
});
