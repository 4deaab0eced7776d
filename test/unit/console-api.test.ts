// The console's server-side parts without sockets: fleet search (filters, sort,
// paging, facets), the bounds of the per-device history and of the recent
// telemetry rings, the group membership cache, OTA progress, the health timer.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { otaProgress } from '../../src/admin/device-detail.js';
import { DeviceHistory } from '../../src/admin/device-history.js';
import { FACET_CAP, searchArgs, searchDevices, type SearchContext } from '../../src/admin/device-search.js';
import type { DeviceRecord } from '../../src/admin/fleet.js';
import { GroupMembership } from '../../src/admin/group-membership.js';
import { HealthStream, type HealthSnapshot } from '../../src/admin/health.js';
import { DEFAULT_TELEMETRY_BOUNDS, TelemetryRings } from '../../src/admin/telemetry-rings.js';
import type { GroupInfo } from '../../src/events.js';
import { waitFor } from '../helpers/index.js';
import { seededDevices } from '../helpers/seed-fleet.js';

function fleetOf(count: number, now = 1_800_000_000_000): DeviceRecord[] {
  return seededDevices({ count, now, groups: [{ name: 'even', every: 2 }] }).map((device, i) => ({
    uid: device.uid,
    online: i % 3 === 0,
    lastSeen: device.lastSeen,
    otaStatus: device.otaStatus,
    ...(device.firmwareVersion !== undefined ? { firmwareVersion: device.firmwareVersion } : {}),
  }));
}

function contextOf(groups: Map<string, string[]>, revoked: ReadonlySet<string> = new Set()): SearchContext {
  const names = [...new Set([...groups.values()].flat())].sort();
  return { groupsOf: (uid) => groups.get(uid) ?? [], groups: names, revoked: (uid) => revoked.has(uid) };
}

const search = (records: DeviceRecord[], args: Record<string, unknown>, context: SearchContext) => searchDevices(records, searchArgs.parse(args), context);

test('devices.search filters by uid prefix (any case), group, firmware, online and OTA state, and counts the matches before paging', () => {
  const records = fleetOf(1000);
  const groups = new Map(records.filter((_, i) => i % 2 === 0).map((r) => [r.uid, ['even']]));
  const context = contextOf(groups, new Set(['dev-00004']));

  const all = search(records, {}, context);
  assert.equal(all.total, 1000);
  assert.equal(all.items.length, 50);
  assert.deepEqual(
    all.items.slice(0, 3).map((d) => d.uid),
    ['dev-00000', 'dev-00001', 'dev-00002'],
  );

  const prefix = search(records, { q: 'DEV-0001' }, context);
  assert.equal(prefix.total, 10);
  assert.ok(prefix.items.every((d) => d.uid.startsWith('dev-0001')));

  const inGroup = search(records, { group: 'even', limit: 500 }, context);
  assert.equal(inGroup.total, 500);
  assert.ok(inGroup.items.every((d) => d.groups.includes('even') && Number(d.uid.slice(4)) % 2 === 0));

  const firmware = search(records, { firmware: '1.1.0-3-gabcdef1' }, context);
  assert.equal(firmware.total, records.filter((r) => r.firmwareVersion === '1.1.0-3-gabcdef1').length);
  assert.ok(firmware.total > 0);

  const online = search(records, { online: true }, context);
  assert.equal(online.total, records.filter((r) => r.online).length);
  const offlineUpdated = search(records, { online: false, ota: 'updated', group: 'even' }, context);
  assert.equal(offlineUpdated.total, records.filter((r, i) => !r.online && r.otaStatus === 'updated' && i % 2 === 0).length);
  assert.ok(offlineUpdated.items.every((d) => !d.online && d.otaStatus === 'updated'));

  const revoked = search(records, { q: 'dev-00004' }, context);
  assert.deepEqual(
    revoked.items.map((d) => [d.uid, d.revoked]),
    [['dev-00004', true]],
  );
  assert.equal(search(records, { q: 'nobody' }, context).total, 0);
});

test('devices.search sorts by each key in both orders with the uid breaking ties, and pages without overlap', () => {
  const records = fleetOf(300);
  const context = contextOf(new Map());
  const byLastSeen = search(records, { sort: 'lastSeen', order: 'desc', limit: 500 }, context);
  assert.deepEqual(
    byLastSeen.items.map((d) => d.lastSeen),
    records.map((r) => r.lastSeen).sort((a, b) => b - a),
  );
  const byOta = search(records, { sort: 'ota', limit: 500 }, context).items;
  const rank = { none: 0, assigned: 1, downloading: 2, updated: 3 };
  for (let i = 1; i < byOta.length; i++) {
    const [a, b] = [byOta[i - 1] as DeviceRecord, byOta[i] as DeviceRecord];
    assert.ok(rank[a.otaStatus] < rank[b.otaStatus] || (a.otaStatus === b.otaStatus && a.uid < b.uid), `${a.uid} before ${b.uid}`);
  }
  const byFirmware = search(records, { sort: 'firmware', limit: 500 }, context).items;
  assert.equal(byFirmware.at(-1)?.firmwareVersion, undefined, 'devices without a version come last');
  assert.equal(byFirmware[0]?.firmwareVersion, '1.0.0-0-g0000000');
  const byOnlineDesc = search(records, { sort: 'online', order: 'desc', limit: 500 }, context).items;
  assert.equal(byOnlineDesc[0]?.online, true);
  assert.equal(byOnlineDesc.at(-1)?.online, false);

  const pages = [0, 1, 2, 3].map((page) => search(records, { offset: page * 100, limit: 100, order: 'desc' }, context));
  const uids = pages.flatMap((p) => p.items.map((d) => d.uid));
  assert.equal(uids.length, 300);
  assert.equal(new Set(uids).size, 300);
  assert.deepEqual(uids, [...uids].sort().reverse());
  assert.equal(pages[3]?.items.length, 0);
  assert.equal(pages[3]?.total, 300);
});

test('devices.search facets list every firmware and group of the fleet, sorted and capped', () => {
  const records: DeviceRecord[] = Array.from({ length: 250 }, (_, i) => ({ uid: `d${i}`, online: false, lastSeen: i, otaStatus: 'none', firmwareVersion: `1.0.${String(i).padStart(3, '0')}-0-g0000000` }));
  const groups = new Map(records.map((r, i) => [r.uid, [`g${String(i).padStart(3, '0')}`]]));
  const answer = search(records, { q: 'd1', limit: 1 }, contextOf(groups));
  assert.equal(answer.facets.firmware.length, FACET_CAP);
  assert.equal(answer.facets.firmware[0], '1.0.000-0-g0000000', 'facets cover the fleet, not only the matches');
  assert.deepEqual(answer.facets.firmware, [...answer.facets.firmware].sort());
  assert.equal(answer.facets.groups.length, FACET_CAP);
  assert.equal(answer.facets.groups[0], 'g000');
});

test('devices.search arguments are checked: limit 1..500, offset >= 0, known sort keys and OTA states, no unknown arguments', () => {
  for (const bad of [{ limit: 0 }, { limit: 501 }, { offset: -1 }, { sort: 'rsrp' }, { ota: 'failed' }, { q: 'x'.repeat(129) }, { color: 'red' }]) {
    assert.equal(searchArgs.safeParse(bad).success, false, JSON.stringify(bad));
  }
  assert.deepEqual(searchArgs.parse({}), { sort: 'uid', order: 'asc', offset: 0, limit: 50 });
});

test('telemetry rings keep numeric fields only, at most pointsPerField points at least minSpacingMs apart, within the window', () => {
  const rings = new TelemetryRings({ windowMs: 3_600_000, pointsPerField: 360, minSpacingMs: 10_000, fieldsPerDevice: 3, maxPoints: 1_000_000 });
  const start = 1_800_000_000_000;
  // Two hours at one message every 5 s: every other one replaces its predecessor.
  for (let t = 0; t < 7_200_000; t += 5000) {
    rings.record('a', { version: '1.0.0-0-g0000000', rsrp: t / 1000, rssi_hub: -50, extra: { temp: { type: 'float', value: 21.5 }, label: { type: 'string', value: 'x' }, on: { type: 'bool', value: true }, hum: { type: 'int', value: 3 } } }, start + t);
  }
  const now = start + 7_200_000;
  const read = rings.read('a', now);
  assert.deepEqual(Object.keys(read.fields).sort(), ['rsrp', 'rssi_hub', 'temp'], 'numeric fields, and no more than fieldsPerDevice');
  const rsrp = read.fields.rsrp ?? [];
  assert.ok(rsrp.length <= 360 && rsrp.length >= 355, `${rsrp.length} points`);
  assert.ok(rsrp.every(([at]) => at >= now - 3_600_000));
  for (let i = 1; i < rsrp.length; i++) assert.ok((rsrp[i]?.[0] as number) > (rsrp[i - 1]?.[0] as number), 'oldest first');
  assert.equal(rsrp.at(-1)?.[1], 7_195, 'the newest value');
  assert.equal(read.to, now);
  assert.equal(read.from, now - 3_600_000);
  assert.deepEqual(rings.read('nobody', now).fields, {});
});

test('telemetry rings stay under maxPoints overall, dropping the devices that reported least recently first', () => {
  const rings = new TelemetryRings({ windowMs: 3_600_000, pointsPerField: 10, minSpacingMs: 0, fieldsPerDevice: 4, maxPoints: 1000 });
  for (let d = 0; d < 300; d++) for (let p = 0; p < 10; p++) rings.record(`d${d}`, { rsrp: p }, 1000 * p + d);
  assert.ok(rings.points <= 1000, `${rings.points} points`);
  // Each eviction goes down to 95 % of the bound.
  assert.ok(rings.deviceCount >= 95 && rings.deviceCount <= 100, `${rings.deviceCount} devices`);
  assert.deepEqual(rings.read('d0', 20_000).fields, {}, 'the first devices went');
  assert.equal(rings.read('d299', 20_000).fields.rsrp?.length, 10, 'the last ones are whole');
  const points = rings.points;
  rings.forget('d299');
  assert.equal(rings.points, points - 10);
});

test('device history: sessions with reasons, firmware changes only, messages with sizes and cut payloads; bounded per device and in devices', () => {
  const history = new DeviceHistory({ sessions: 3, firmware: 2, messages: 2, payloadBytes: 4, devices: 2 });
  for (let i = 0; i < 5; i++) {
    history.connected('a', { connectedAt: i * 10, clientId: 'a', remoteAddress: '127.0.0.1', authMethod: 'password' });
    history.disconnected('a', 'a', i * 10 + 5, i === 4 ? 'keepalive_timeout' : 'closed');
  }
  history.firmware('a', '1.0.0-0-g0000000', 1, 'telemetry');
  history.firmware('a', '1.0.0-0-g0000000', 2, 'telemetry');
  history.firmware('a', '1.1.0-0-g0000000', 3, 'ota');
  history.firmware('a', '1.2.0-0-g0000000', 4, 'telemetry');
  history.message('a', 'sensors/x', new Uint8Array([1, 2, 3, 4, 5, 6]), 7);
  history.message('a', 'small', new Uint8Array([9]), 8);
  const read = history.read('a');
  assert.deepEqual(
    read.sessions.map((s) => [s.connectedAt, s.disconnectedAt, s.reason]),
    [
      [40, 45, 'keepalive_timeout'],
      [30, 35, 'closed'],
      [20, 25, 'closed'],
    ],
  );
  assert.deepEqual(
    read.firmware.map((f) => [f.version, f.source]),
    [
      ['1.2.0-0-g0000000', 'telemetry'],
      ['1.1.0-0-g0000000', 'ota'],
    ],
  );
  assert.deepEqual(
    read.messages.map((m) => [m.target, m.size, [...Buffer.from(m.payload, 'base64')], m.payloadTruncated]),
    [
      ['small', 1, [9], false],
      ['sensors/x', 6, [1, 2, 3, 4], true],
    ],
  );
  // A goodbye without its hello (before a restart) is still a session with its reason.
  history.disconnected('b', 'b', 99, 'server_stopping');
  assert.deepEqual(history.read('b').sessions, [{ disconnectedAt: 99, reason: 'server_stopping', clientId: 'b' }]);
  history.message('c', 't', new Uint8Array(1), 1);
  assert.equal(history.size, 2, 'at most `devices` histories');
  assert.equal(history.read('c').messages.length, 1);
});

test('group membership: asked once for readers at the same time, again after an invalidation (waited for) or maxAgeMs (in the background), the last known kept when the OTA runner fails', async () => {
  let now = 0;
  let asked = 0;
  let groups: GroupInfo[] = [{ name: 'north', devices: ['a', 'b'] }];
  let fail = false;
  let hold = false;
  let release: () => void = () => undefined;
  const membership = new GroupMembership({
    fetch: async () => {
      asked++;
      if (hold) await new Promise<void>((resolve) => (release = resolve));
      if (fail) throw new Error('OTA runner gone');
      return { groups, images: [{ id: '1.0.0-0-g0000000', size: 1000 } as never] };
    },
    maxAgeMs: 30_000,
    now: () => now,
  });
  const errors: unknown[] = [];
  const onError = (error: unknown) => errors.push(error);
  await Promise.all([membership.current(onError), membership.current(onError), membership.current(onError)]);
  assert.equal(asked, 1);
  assert.deepEqual(membership.groupsOf('a'), ['north']);
  assert.equal(membership.imageSize('1.0.0-0-g0000000'), 1000);
  await membership.current(onError);
  assert.equal(asked, 1, 'fresh: not asked again');
  groups = [{ name: 'south', devices: ['a'] }];
  membership.invalidate();
  await membership.current(onError);
  assert.equal(asked, 2);
  assert.deepEqual(membership.groupsOf('a'), ['south']);
  assert.deepEqual(membership.groupsOf('b'), []);
  now = 30_001;
  groups = [{ name: 'west', devices: ['a'] }];
  hold = true;
  await membership.current(onError);
  assert.equal(asked, 3, 'old: asked again');
  assert.deepEqual(membership.groupsOf('a'), ['south'], 'answered at once with what it had');
  hold = false;
  release();
  await waitFor(() => membership.groupsOf('a')[0] === 'west', 'the background answer');
  now = 60_002;
  fail = true;
  await membership.current(onError);
  assert.equal(asked, 4);
  await waitFor(() => errors.length === 1, 'the failure reported');
  assert.deepEqual(membership.groupsOf('a'), ['west'], 'the last known membership');
  fail = false;
  await membership.current(onError);
  assert.equal(asked, 5, 'a failed ask is tried again on the next read, and waited for');
  assert.deepEqual(errors.length, 1);
  // A link announced while an answer is on its way: the reader waits for a second answer.
  membership.invalidate();
  hold = true;
  const reading = membership.current(onError);
  await waitFor(() => asked === 6, 'the sixth ask on its way');
  groups = [{ name: 'east', devices: ['a'] }];
  membership.invalidate();
  hold = false;
  release();
  await reading;
  assert.equal(asked, 7);
  assert.deepEqual(membership.groupsOf('a'), ['east']);
});

test('OTA progress: bytes of the assigned image and their share of its size', () => {
  const base: DeviceRecord = { uid: 'a', online: true, lastSeen: 0, otaStatus: 'downloading' };
  const size = (id: string) => (id === '2.0.0-0-g0000000' ? 2000 : undefined);
  assert.deepEqual(otaProgress({ ...base, otaStatus: 'none' }, size), { state: 'none', bytesServed: 0 });
  assert.deepEqual(otaProgress({ ...base, ota: { uid: 'a', assignedImageId: '2.0.0-0-g0000000', downloadImageId: '2.0.0-0-g0000000', bytesServed: 500 } }, size), {
    state: 'downloading',
    imageId: '2.0.0-0-g0000000',
    version: '2.0.0-0-g0000000',
    bytesServed: 500,
    totalBytes: 2000,
    percent: 25,
  });
  // Bytes of another image are not progress on this one.
  const other = otaProgress({ ...base, otaStatus: 'assigned', ota: { uid: 'a', assignedImageId: '2.0.0-0-g0000000', downloadImageId: '1.0.0-0-g0000000', bytesServed: 900 } }, size);
  assert.equal(other.bytesServed, 0);
  assert.equal(other.percent, 0);
  assert.equal(otaProgress({ ...base, otaStatus: 'updated', ota: { uid: 'a', assignedImageId: '2.0.0-0-g0000000', doneImageId: '2.0.0-0-g0000000', bytesServed: 2100 } }, size).percent, 100);
});

test('the health timer runs only while somebody wants it, and stops', async (t) => {
  let wanted = false;
  const sent: HealthSnapshot[] = [];
  const stream = new HealthStream({
    intervalMs: 20,
    wanted: () => wanted,
    sample: async () => ({ at: Date.now() }) as HealthSnapshot,
    send: (snapshot) => sent.push(snapshot),
    onError: (error) => assert.fail(error as Error),
  });
  t.after(() => stream.stop());
  stream.update();
  assert.equal(stream.running, false);
  wanted = true;
  stream.update();
  assert.equal(stream.running, true);
  await waitFor(() => sent.length >= 2, 'two health snapshots');
  wanted = false;
  stream.update();
  assert.equal(stream.running, false);
});

// The memory part at 10,000 devices takes about a minute: CONSOLE_FIGURES_DEVICES=10000 node --expose-gc ... measures it.
const FIGURE_DEVICES = Number(process.env.CONSOLE_FIGURES_DEVICES ?? 1000);

test('figures: search time over 10,000 records; memory of full telemetry rings and histories, and of the default-bounded rings under a flood', (t) => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const fleet = fleetOf(10_000);
  const groups = new Map(fleet.filter((_, i) => i % 2 === 0).map((r) => [r.uid, ['even']]));
  const context = contextOf(groups);
  const times: Record<string, number> = {};
  for (const [name, args] of Object.entries({ all: {}, 'last page': { offset: 9950 }, 'group, by lastSeen desc': { group: 'even', sort: 'lastSeen', order: 'desc' }, prefix: { q: 'dev-05' } })) {
    const started = performance.now();
    const answer = search(fleet, args, context);
    times[name] = Math.round((performance.now() - started) * 100) / 100;
    assert.ok(answer.total > 0);
  }
  t.diagnostic(`searchDevices over 10,000 records, ms: ${JSON.stringify(times)}`);

  const records = fleet.slice(0, FIGURE_DEVICES);
  const heap = () => {
    // Twice: the first pass may leave garbage that only a second one frees (array buffers of grown rings).
    gc?.();
    gc?.();
    // Typed arrays keep their points outside the JS heap.
    const usage = process.memoryUsage();
    return usage.heapUsed + usage.arrayBuffers;
  };
  const start = 1_800_000_000_000;
  const flood = (rings: TelemetryRings) => {
    // 3 fields every 10 s for an hour: 360 points per field, the most a ring keeps.
    for (let p = 0; p < 360; p++) for (const record of records) rings.record(record.uid, { rsrp: p, rssi_hub: -p, rssi_client: p / 2 }, start + p * 10_000);
  };
  const before = heap();
  // Every point kept: what the rings would cost without the overall bound.
  const full = new TelemetryRings({ ...DEFAULT_TELEMETRY_BOUNDS, maxPoints: Number.MAX_SAFE_INTEGER });
  flood(full);
  assert.equal(full.points, records.length * 3 * 360);
  const afterFull = heap();
  // Full histories at the default bounds: 20 sessions, 10 firmware versions, 20 messages of 64 bytes per device.
  const history = new DeviceHistory();
  for (const record of records) {
    for (let i = 0; i < 20; i++) {
      history.connected(record.uid, { connectedAt: i, clientId: record.uid, remoteAddress: '10.0.0.1', authMethod: 'certificate' });
      history.disconnected(record.uid, record.uid, i + 1, 'keepalive_timeout');
      history.message(record.uid, 'sensors/door', new Uint8Array(64), i);
    }
    for (let i = 0; i < 10; i++) history.firmware(record.uid, `1.0.${i}-0-g0000000`, i, 'telemetry');
  }
  assert.equal(history.size, records.length);
  const afterHistory = heap();
  const bounded = new TelemetryRings();
  const floodStart = performance.now();
  flood(bounded);
  const floodMs = performance.now() - floodStart;
  assert.ok(bounded.points <= DEFAULT_TELEMETRY_BOUNDS.maxPoints, `${bounded.points} points`);
  const afterBounded = heap();
  // All three still referenced here, so none was collected before its figure was taken.
  assert.equal(full.deviceCount + history.size, 2 * records.length);
  const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
  t.diagnostic(
    `at ${records.length} devices${gc ? '' : ' (without --expose-gc: rough)'}: rings with every point (${full.points}) ${mb(afterFull - before)} MB; ` +
      `full histories ${mb(afterHistory - afterFull)} MB; default-bounded rings after the flood (${bounded.points} points, ${bounded.deviceCount} devices) ${mb(afterBounded - afterHistory)} MB, ` +
      `${Math.round((floodMs * 1e6) / (360 * records.length))} ns per message`,
  );
});
