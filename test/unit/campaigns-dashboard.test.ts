// The numbers of the console's campaign detail (web/src/campaign-funnel.ts):
// pure functions without DOM, the module the browser bundle is built from.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as funnelModule from '../../web/src/campaign-funnel.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const MINUTE = 60_000;
const SIZE = 1000;

function summary(state: string, stage: number) {
  return {
    id: 'fw',
    imageId: '1.1.0-0-gbbbbbbb',
    state,
    stage,
    stages: [
      { label: 'canary', devices: 2, soakMs: 10 * MINUTE, startedAt: T0 },
      { label: '100%', devices: 3, soakMs: 0, ...(stage >= 1 ? { startedAt: T0 + 20 * MINUTE } : {}) },
    ],
    counts: {},
    reason: 'created',
    createdAt: T0,
    updatedAt: T0,
  };
}

const spec = { health: { windowMs: 30 * MINUTE, successRatio: 0.95 } };

const devices = [
  { uid: 'a', stage: 0, state: 'healthy', notifiedAt: T0, bytes: SIZE, downloadedAt: T0 + MINUTE, rebootAt: T0 + 2 * MINUTE, confirmedAt: T0 + 3 * MINUTE },
  { uid: 'b', stage: 0, state: 'failed', reason: 'version_reverted', notifiedAt: T0, bytes: SIZE, downloadedAt: T0 + MINUTE, rebootAt: T0 + 2 * MINUTE },
  { uid: 'c', stage: 1, state: 'downloading', notifiedAt: T0, bytes: 400 },
  { uid: 'd', stage: 1, state: 'notified', notifiedAt: T0 },
  { uid: 'e', stage: 1, state: 'failed', reason: 'download_timeout', notifiedAt: T0 },
];

test('the funnel counts devices per stage and state, and how far each got (failed ones by their record)', () => {
  const { rows, total } = funnelModule.funnel(summary('running', 1), devices);
  assert.deepEqual(
    rows.map((row: { label: string; counts: Record<string, number> }) => [row.label, row.counts.healthy, row.counts.failed, row.counts.downloading, row.counts.notified]),
    [
      ['canary', 1, 1, 0, 0],
      ['100%', 0, 1, 1, 1],
    ],
  );
  assert.equal(total.devices, 5);
  assert.deepEqual(funnelModule.reached(devices), { notified: 5, downloading: 3, downloaded: 2, rebooting: 2, confirmed: 1, healthy: 1 });
  assert.deepEqual(funnelModule.failedByReason(devices), [
    { reason: 'download_timeout', count: 1 },
    { reason: 'version_reverted', count: 1 },
  ]);
  assert.equal(funnelModule.bytesServed(devices), 2 * SIZE + 400);
  assert.equal(funnelModule.bytesServed(devices, 1), 400);
});

test('estimates: downloads at the stage rate so far, the end no earlier than soak times and health windows; none while paused', () => {
  const now = T0 + 24 * MINUTE;
  // Stage 1 started 4 min ago and was served 400 bytes: 100 B/min; 600 + 1000 bytes left → 16 min.
  const running = funnelModule.estimate({ summary: summary('running', 1), spec, devices, imageSize: SIZE, now });
  assert.equal(running.downloadsDoneAt, now + 16 * MINUTE);
  // The last stage needs its health window (30 min) from its start: T0 + 50 min.
  assert.equal(running.earliestEndAt, T0 + 50 * MINUTE);
  // In the canary stage: its soak (10 min) and window (30 min), then the last stage's window.
  const early = funnelModule.estimate({ summary: summary('running', 0), spec, devices, imageSize: SIZE, now: T0 + MINUTE });
  assert.equal(early.earliestEndAt, T0 + 30 * MINUTE + 30 * MINUTE);
  assert.equal(early.downloadsDoneAt, undefined, 'every canary device has the image');
  // Without the image size there is no download estimate; paused: no estimate at all.
  assert.equal(funnelModule.estimate({ summary: summary('running', 1), spec, devices, imageSize: 0, now }).downloadsDoneAt, undefined);
  assert.deepEqual(funnelModule.estimate({ summary: summary('paused', 1), spec, devices, imageSize: SIZE, now }), { downloadsDoneAt: undefined, earliestEndAt: undefined });
});
