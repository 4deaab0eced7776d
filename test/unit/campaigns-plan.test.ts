// Stage planning (src/campaigns/plan.ts), target resolution (target.ts) and
// the engine rules the big simulations do not reach: canaries, counts, the
// abort rule while paused, a rollback to a named image.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CampaignEngine } from '../../src/campaigns/engine.js';
import { planStages } from '../../src/campaigns/plan.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import { resolveTarget } from '../../src/campaigns/target.js';
import { hasCode } from '../../src/errors.js';

const NEW = '1.1.0-0-gbbbbbbb';
const OLD = '1.0.0-0-gaaaaaaa';
const SAFE = '1.0.1-0-gccccccc';
const uids = (n: number) => Array.from({ length: n }, (_, i) => `d${i}`);

test('canaries come first as a stage of their own; the rest is spread by hash, the same way every time', () => {
  const spec = parseCampaignSpec({ id: 'p1', imageId: NEW, target: { devices: uids(100) }, canary: ['d7', 'x1'], stages: [{ percent: 10 }, { percent: 100 }] });
  const plan = planStages(spec, uids(100));
  assert.deepEqual(
    plan.stages.map((s) => [s.label, s.devices]),
    [
      ['canary', 2],
      ['10%', 10],
      ['100%', 89],
    ],
  );
  assert.deepEqual(plan.devices.slice(0, 2), [
    { uid: 'd7', stage: 0 },
    { uid: 'x1', stage: 0 },
  ]);
  assert.equal(new Set(plan.devices.map((d) => d.uid)).size, 101);
  const firstStage = plan.devices.filter((d) => d.stage === 1).map((d) => d.uid);
  assert.notDeepEqual(firstStage, uids(11).slice(1), 'not simply the first uids');
  assert.deepEqual(planStages(spec, [...uids(100)].reverse()).devices, plan.devices, 'the order of the target does not matter');
});

test('counts are cumulative, the last stage takes every device left, and a stage left empty is dropped', () => {
  const counts = parseCampaignSpec({ id: 'p2', imageId: NEW, target: { fleet: true }, stages: [{ count: 2 }, { count: 5 }, { count: 6 }] });
  assert.deepEqual(
    planStages(counts, uids(20)).stages.map((s) => s.devices),
    [2, 3, 15],
  );
  const tiny = parseCampaignSpec({ id: 'p3', imageId: NEW, target: { fleet: true }, stages: [{ percent: 1 }, { percent: 2 }, { percent: 100, soakMs: 5 }] });
  const plan = planStages(tiny, uids(3));
  assert.deepEqual(
    plan.stages.map((s) => [s.label, s.devices, s.soakMs]),
    [
      ['1%', 1, 3_600_000],
      ['100%', 2, 5],
    ],
  );
  assert.throws(() => CampaignEngine.create(tiny, 10, [], 0), (error) => hasCode(error, 'CAMPAIGN_EMPTY'));
});

test('the target: group members with their group image as the one to go back to, named devices, the fleet; unknown groups named', () => {
  const groups = [
    { name: 'field', imageId: OLD, devices: ['a', 'b'] },
    { name: 'lab', devices: ['c'] },
    { name: 'beta', imageId: NEW, devices: ['e'] },
  ];
  const spec = (target: Record<string, unknown>) => parseCampaignSpec({ id: 't', imageId: NEW, target, stages: [{ percent: 100 }], canary: ['z'] });
  assert.deepEqual(resolveTarget(spec({ groups: ['field', 'lab'], devices: ['a', 'y'] }), groups, []), [{ uid: 'a', previousImageId: OLD }, { uid: 'b', previousImageId: OLD }, { uid: 'c' }, { uid: 'y' }, { uid: 'z' }]);
  assert.deepEqual(
    resolveTarget(spec({ fleet: true }), groups, ['o', 'a']).map((d) => d.uid),
    ['a', 'b', 'c', 'e', 'o', 'z'],
  );
  assert.deepEqual(resolveTarget(spec({ groups: ['beta'] }), groups, []), [{ uid: 'e' }, { uid: 'z' }], 'already linked to the new image: nothing to go back to');
  assert.throws(
    () => resolveTarget(spec({ groups: ['field', 'nope', 'gone'] }), groups, []),
    (error) => hasCode(error, 'NOT_FOUND') && error.message === 'target.groups: no group "nope", "gone"',
  );
});

test('the abort rule holds while paused, and a rollback goes to the named image', () => {
  const spec = parseCampaignSpec({
    id: 'r1',
    imageId: NEW,
    target: { devices: uids(10) },
    stages: [{ percent: 100 }],
    health: { downloadTimeoutMs: 1000 },
    abort: { failedPercent: 50, minFailed: 2 },
    rollback: { imageId: SAFE },
  });
  const { engine, effects } = CampaignEngine.create(spec, 100, uids(10).map((uid) => ({ uid, previousImageId: OLD })), 0);
  assert.equal(effects.filter((e) => e.kind === 'notify').length, 10);
  engine.pause(10);
  // Half download in time (they are then watched further); the other half time out while the campaign is paused.
  for (const uid of uids(5)) engine.observe(uid, { kind: 'progress', bytes: 100, at: 500 });
  const decided = engine.tick(1000);
  assert.equal(engine.state, 'aborted');
  assert.equal(engine.summary().reason, 'abort_rule');
  assert.equal(engine.summary().counts.failed, 5);
  const relinks = decided.filter((e) => e.kind === 'relink');
  assert.equal(relinks.length, 10);
  assert.ok(relinks.every((e) => e.imageId === SAFE));
  assert.ok(engine.deviceList().every((d) => d.rolledBackTo === SAFE));
  assert.deepEqual(engine.observe('d0', { kind: 'done', at: 2000 }), [], 'an aborted campaign watches no device');
});
