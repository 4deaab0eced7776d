// A campaign's schedule window (src/campaigns/schedule.ts, README
// "Campaigns"): new devices are notified only inside it; devices notified
// already go on, and the health checks and the abort rule hold at any time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CampaignEngine, type Effect } from '../../src/campaigns/engine.js';
import { insideSchedule } from '../../src/campaigns/schedule.js';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import { hasCode } from '../../src/errors.js';
import { IMAGE_SIZE, MINUTE, NEW_IMAGE, OLD_IMAGE } from '../helpers/campaign-sim.js';

const at = (iso: string) => Date.parse(iso);
const uids = (n: number) => Array.from({ length: n }, (_, i) => `dev${String(i).padStart(3, '0')}`);
const notified = (effects: Effect[]) => effects.flatMap((effect) => (effect.kind === 'notify' ? [effect.uid] : []));

test('insideSchedule: notBefore, notAfter, and a daily UTC window, also one running over midnight', () => {
  assert.equal(insideSchedule(undefined, at('2026-12-01T12:00:00Z')), true);
  const dated = { notBefore: '2026-12-02T00:00:00Z', notAfter: '2026-12-03T00:00:00Z' };
  assert.equal(insideSchedule(dated, at('2026-12-01T23:59:59Z')), false);
  assert.equal(insideSchedule(dated, at('2026-12-02T00:00:00Z')), true);
  assert.equal(insideSchedule(dated, at('2026-12-03T00:00:00Z')), false);
  const night = { daily: { from: '22:30', to: '02:00' } };
  assert.equal(insideSchedule(night, at('2026-12-01T22:29:00Z')), false);
  assert.equal(insideSchedule(night, at('2026-12-01T22:30:00Z')), true);
  assert.equal(insideSchedule(night, at('2026-12-02T01:59:00Z')), true);
  assert.equal(insideSchedule(night, at('2026-12-02T02:00:00Z')), false);
  const day = { daily: { from: '09:00', to: '17:00' } };
  assert.equal(insideSchedule(day, at('2026-12-01T08:59:59Z')), false);
  assert.equal(insideSchedule(day, at('2026-12-01T16:59:59Z')), true);
  assert.equal(insideSchedule(day, at('2026-12-01T17:00:00Z')), false);
});

test('a bad schedule is refused naming each field', () => {
  const base = { id: 'c', imageId: NEW_IMAGE, target: { devices: ['a'] }, stages: [{ percent: 100 }] };
  assert.throws(
    () => parseCampaignSpec({ ...base, schedule: { notBefore: 'tomorrow', daily: { from: '25:00', to: '02:00' } } }),
    (error: unknown) => hasCode(error, 'INVALID_ARGUMENT') && /schedule\.notBefore: expected an ISO 8601/.test(error.message) && /schedule\.daily\.from: expected a UTC time of day HH:MM/.test(error.message),
  );
  assert.throws(
    () => parseCampaignSpec({ ...base, schedule: { notBefore: '2026-12-03T00:00:00Z', notAfter: '2026-12-02T00:00:00Z' } }),
    (error: unknown) => hasCode(error, 'INVALID_ARGUMENT') && /schedule\.notAfter: notBefore must be before notAfter/.test(error.message),
  );
});

test('devices are notified only inside the daily window; those notified go on (and fail) outside it', () => {
  const devices = uids(6);
  const spec = parseCampaignSpec({
    id: 'nightly',
    imageId: NEW_IMAGE,
    target: { devices },
    stages: [{ percent: 100 }],
    soakMs: 0,
    budget: { maxConcurrent: 3 },
    schedule: { daily: { from: '02:00', to: '03:00' } },
    health: { windowMs: MINUTE, downloadTimeoutMs: 90 * MINUTE, successRatio: 0.5 },
  });
  // Created at noon: nobody is told.
  const { engine, effects } = CampaignEngine.create(spec, IMAGE_SIZE, devices.map((uid) => ({ uid, previousImageId: OLD_IMAGE })), at('2026-12-01T12:00:00Z'));
  assert.deepEqual(notified(effects), []);
  assert.deepEqual(notified(engine.tick(at('2026-12-02T01:59:00Z'))), []);
  // The window opens: the first three (the concurrency limit).
  const order = engine.deviceList().map((d) => d.uid);
  assert.deepEqual(notified(engine.tick(at('2026-12-02T02:00:00Z'))), order.slice(0, 3));
  // After it closes, a device that finishes frees its slot, but nobody new is told until the next night.
  assert.deepEqual(notified(engine.observe(order[0] ?? '', { kind: 'progress', bytes: IMAGE_SIZE, at: at('2026-12-02T03:10:00Z') })), []);
  // The others time out outside the window all the same.
  engine.tick(at('2026-12-02T03:31:00Z'));
  assert.equal(engine.device(order[1] ?? '')?.reason, 'download_timeout');
  assert.deepEqual(notified(engine.tick(at('2026-12-02T12:00:00Z'))), []);
  assert.deepEqual(notified(engine.tick(at('2026-12-03T02:00:00Z'))), order.slice(3, 6));
});
