// Campaign pacing and byte budgets with a fake clock (README "Campaigns",
// "Byte budget"): the engine keeps at most budget.maxConcurrent devices
// downloading and notifies the next as one finishes; the OTA side's budget
// (src/ota/budget.ts) spaces the bytes of a campaign's devices at the rate.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { budgetEvent } from '../../src/campaigns/budget.js';
import { CampaignEngine, type Effect } from '../../src/campaigns/engine.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import { hasCode } from '../../src/errors.js';
import { DownloadBudgets } from '../../src/ota/budget.js';
import { TokenBucket } from '../../src/util/token-bucket.js';
import { IMAGE_SIZE, MINUTE, NEW_IMAGE, OLD_IMAGE } from '../helpers/campaign-sim.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const uids = (n: number) => Array.from({ length: n }, (_, i) => `dev${String(i).padStart(3, '0')}`);

function create(budget: Record<string, unknown> | undefined, devices = uids(10), stages: unknown[] = [{ percent: 100 }]) {
  const spec = parseCampaignSpec({
    id: 'paced',
    imageId: NEW_IMAGE,
    target: { devices },
    stages,
    soakMs: 0,
    health: { windowMs: MINUTE, downloadTimeoutMs: 10 * MINUTE, successRatio: 0.5 },
    ...(budget ? { budget } : {}),
  });
  return CampaignEngine.create(spec, IMAGE_SIZE, devices.map((uid) => ({ uid, previousImageId: OLD_IMAGE })), T0);
}

const notified = (effects: Effect[]) => effects.flatMap((effect) => (effect.kind === 'notify' ? [effect.uid] : []));
const downloading = (engine: CampaignEngine) => engine.deviceList().filter((d) => d.state === 'notified' || d.state === 'downloading').length;

test('without a budget every device of the stage is notified at once, as before', () => {
  const { engine, effects } = create(undefined);
  assert.equal(notified(effects).length, 10);
  assert.equal(engine.waitingCount, 0);
});

test('maxConcurrent 3: three notified at start; a device that downloads or fails frees its slot for the next, in order; never more than 3', () => {
  const { engine, effects } = create({ maxConcurrent: 3 });
  // Devices are notified in plan order (spread by a hash of campaign id and uid).
  const order = engine.deviceList().map((d) => d.uid);
  assert.deepEqual(notified(effects), order.slice(0, 3));
  assert.equal(engine.downloadingCount, 3);
  assert.equal(engine.waitingCount, 7);

  // Progress short of the image keeps the slot.
  assert.deepEqual(notified(engine.observe(order[0] ?? '', { kind: 'progress', bytes: IMAGE_SIZE / 2, at: T0 + 1000 })), []);
  // The whole image: downloaded, and the next device is told.
  assert.deepEqual(notified(engine.observe(order[0] ?? '', { kind: 'progress', bytes: IMAGE_SIZE, at: T0 + 2000 })), [order[3]]);
  assert.equal(downloading(engine), 3);

  // Download time-outs (checked by the tick) free their slots too: order[1] and order[2] time out,
  // order[3] (notified 2 s later) not yet.
  const late = engine.tick(T0 + 10 * MINUTE);
  assert.equal(engine.device(order[1] ?? '')?.reason, 'download_timeout');
  assert.equal(engine.device(order[2] ?? '')?.reason, 'download_timeout');
  assert.equal(engine.device(order[3] ?? '')?.state, 'notified');
  assert.deepEqual(notified(late), order.slice(4, 6));
  assert.equal(engine.device(order[4] ?? '')?.notifiedAt, T0 + 10 * MINUTE, 'a device that waited for a slot is timed from its own notification');
  assert.equal(downloading(engine), 3);
  assert.equal(engine.downloadingCount, downloading(engine));
});

test('a link refused by the OTA runner frees the slot; a paused campaign notifies nobody new, resume fills the slots again', () => {
  const { engine } = create({ maxConcurrent: 2 });
  const order = engine.deviceList().map((d) => d.uid);
  engine.pause(T0 + 1);
  assert.deepEqual(notified(engine.observe(order[0] ?? '', { kind: 'link_refused', detail: 'NOT_FOUND', at: T0 + 2 })), []);
  assert.equal(downloading(engine), 1);
  assert.deepEqual(notified(engine.tick(T0 + 3)), []);
  assert.deepEqual(notified(engine.resume(T0 + 4)), [order[2]]);
  assert.equal(downloading(engine), 2);
});

test('an abort notifies none of the waiting devices, and rolls back only those that were notified', () => {
  const { engine } = create({ maxConcurrent: 2 });
  const order = engine.deviceList().map((d) => d.uid);
  const effects = engine.abort(T0 + 1, true);
  assert.deepEqual(notified(effects), []);
  assert.deepEqual(
    effects.flatMap((effect) => (effect.kind === 'relink' ? [effect.uid] : [])),
    order.slice(0, 2),
  );
  assert.equal(engine.deviceList().filter((d) => d.state === 'pending').length, 8);
});

test('a campaign restored from its records goes on notifying the waiting devices of its started stage, none twice', () => {
  const { engine } = create({ maxConcurrent: 2 });
  const order = engine.deviceList().map((d) => d.uid);
  engine.observe(order[0] ?? '', { kind: 'progress', bytes: IMAGE_SIZE, at: T0 + 1 });
  const changes = engine.takeChanges();
  assert.ok(changes.campaign);
  const restored = CampaignEngine.restore(changes.campaign, engine.deviceList());
  assert.equal(restored.downloadingCount, 2);
  assert.equal(restored.waitingCount, 7);
  const told = new Set(order.slice(0, 3));
  for (let step = 1; step <= 20 && restored.waitingCount > 0; step++) {
    const open = restored.deviceList().find((d) => d.state === 'notified');
    assert.ok(open, 'a device holds a slot');
    for (const uid of notified(restored.observe(open.uid, { kind: 'progress', bytes: IMAGE_SIZE, at: T0 + step * 1000 }))) {
      assert.ok(!told.has(uid), `${uid} notified twice`);
      told.add(uid);
    }
    assert.ok(downloading(restored) <= 2);
  }
  assert.equal(told.size, 10);
});

test('a stage that passes its gate with devices still waiting goes on notifying them after the next stage starts, slots shared', () => {
  const { engine } = create({ maxConcurrent: 2 }, uids(6), [{ count: 4 }, { count: 6 }]);
  const order = engine.deviceList().map((d) => d.uid);
  // successRatio 0.5 of 4: two healthy devices pass stage 1 while two of it still wait.
  for (const uid of order.slice(0, 2)) {
    engine.observe(uid, { kind: 'progress', bytes: IMAGE_SIZE, at: T0 });
    engine.observe(uid, { kind: 'disconnected', at: T0 });
    engine.observe(uid, { kind: 'telemetry', version: NEW_IMAGE, at: T0 });
  }
  assert.deepEqual(
    order.slice(2, 4).map((uid) => engine.device(uid)?.state),
    ['notified', 'notified'],
  );
  engine.tick(T0 + 2 * MINUTE);
  assert.equal(engine.summary().stage, 1);
  assert.deepEqual(
    order.slice(4).map((uid) => engine.device(uid)?.state),
    ['pending', 'pending'],
  );
  assert.equal(engine.waitingCount, 2);
  assert.deepEqual(notified(engine.observe(order[2] ?? '', { kind: 'progress', bytes: IMAGE_SIZE, at: T0 + 3 * MINUTE })), [order[4]]);
});

test('the spec: budget needs bytesPerSecond or maxConcurrent; maxDelayMs defaults to 10 s', () => {
  const base = { id: 'x', imageId: NEW_IMAGE, target: { fleet: true }, stages: [{ percent: 100 }] };
  assert.throws(() => parseCampaignSpec({ ...base, budget: {} }), (error) => hasCode(error, 'INVALID_ARGUMENT') && /budget: give bytesPerSecond/.test((error as Error).message));
  assert.throws(() => parseCampaignSpec({ ...base, budget: { bytesPerSecond: 10 } }), /budget.bytesPerSecond/);
  assert.deepEqual(parseCampaignSpec({ ...base, budget: { bytesPerSecond: 2_000_000 } }).budget, { bytesPerSecond: 2_000_000, maxDelayMs: 10_000 });
});

test('the budget event names the campaign devices and image while active, and clears once the campaign ends; none without bytesPerSecond', () => {
  const { engine } = create({ bytesPerSecond: 50_000, maxConcurrent: 2 }, uids(3));
  assert.deepEqual(budgetEvent(engine), { type: 'OtaBudgetSet', budget: { campaignId: 'paced', imageId: NEW_IMAGE, bytesPerSecond: 50_000, maxDelayMs: 10_000, devices: engine.deviceList().map((d) => d.uid) } });
  engine.abort(T0 + 1, false);
  assert.deepEqual(budgetEvent(engine), { type: 'OtaBudgetCleared', campaignId: 'paced' });
  assert.equal(budgetEvent(create({ maxConcurrent: 2 }).engine), undefined);
});

test('TokenBucket.reserve: goes into debt and says how long to wait; refuses (taking nothing) past maxWaitMs', () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 1000, burst: 100, now: () => now });
  assert.equal(bucket.reserve(100, 0), 0);
  assert.equal(bucket.reserve(500, 1000), 500);
  assert.equal(bucket.reserve(600, 1000), undefined);
  assert.equal(bucket.waitFor(600), 1100);
  now = 500;
  assert.equal(bucket.reserve(100, 1000), 100);
});

test('DownloadBudgets: campaign devices share one rate over both paths; other devices and other images are free; a cleared budget frees its devices', async () => {
  let now = 0;
  const budgets = new DownloadBudgets({ now: () => now });
  budgets.set({ campaignId: 'c', imageId: NEW_IMAGE, bytesPerSecond: 10_000, maxDelayMs: 1000, devices: ['a', 'b'] });
  // A quarter of a second's bytes are there when idle.
  assert.deepEqual(await budgets.request('a', NEW_IMAGE, 1000), { kind: 'wait', ms: 0, campaignId: 'c' });
  assert.deepEqual(await budgets.request('b', NEW_IMAGE, 4000), { kind: 'wait', ms: 250, campaignId: 'c' });
  assert.deepEqual(await budgets.request('a', NEW_IMAGE, 4000), { kind: 'wait', ms: 650, campaignId: 'c' });
  // 0.65 s of debt: another 4,000 bytes would wait 1.05 s, past maxDelayMs.
  assert.deepEqual(await budgets.request('b', NEW_IMAGE, 4000), { kind: 'over', retryAfterMs: 1050, campaignId: 'c' });
  assert.deepEqual(await budgets.request('other', NEW_IMAGE, 4000), { kind: 'free' });
  assert.deepEqual(await budgets.request('a', OLD_IMAGE, 4000), { kind: 'free' });
  assert.deepEqual(await budgets.request(undefined, NEW_IMAGE, 4000), { kind: 'free' });

  // Two devices asking one chunk after another, each as soon as its last was answered:
  // over a 10 s window the bytes answered are the rate's, within 1%.
  const next = new Map([['a', 2000], ['b', 2000]]);
  const answeredAt: number[] = [];
  for (let round = 0; round < 1000; round++) {
    const [uid, at] = [...next].reduce((x, y) => (y[1] < x[1] ? y : x));
    now = at;
    const decision = await budgets.request(uid, NEW_IMAGE, 1000);
    assert.equal(decision.kind, 'wait', 'one waiter at a time per device stays within maxDelayMs');
    const ms = decision.kind === 'wait' ? decision.ms : 0;
    answeredAt.push(now + ms);
    next.set(uid, now + ms);
  }
  const inWindow = answeredAt.filter((t) => t >= 3000 && t < 13_000).length * 1000;
  assert.ok(Math.abs(inWindow - 100_000) <= 1000, `${inWindow} bytes answered in 10 s at 10,000 B/s`);

  budgets.clear('c');
  assert.equal(budgets.size, 0);
  assert.deepEqual(await budgets.request('a', NEW_IMAGE, 4000), { kind: 'free' });
});
