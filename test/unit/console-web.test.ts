// The console's pure modules (web/src), in Node: the one time format, hash
// routes, the health history's rates and bounds, the device page's telemetry
// series, the error banner's model, and the WebSocket client against a
// stand-in socket (answers by id, login refused, reconnect with backoff,
// RATE_LIMITED waited out, the subscription sent again after a reconnect).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, ConsoleClient, KEY_STORAGE, type ConnectionState, type SocketLike } from '../../web/src/api/client.js';
import type { HealthSnapshot } from '../../web/src/api/types.js';
import type * as web from '../../web/src/api/types.js';
import type * as funnel from '../../web/src/campaign-funnel.js';
import type { AuditEntry as ServerAuditEntry } from '../../src/admin/audit.js';
import type { DeviceDetail as ServerDeviceDetail } from '../../src/admin/device-detail.js';
import type { DeviceSummary as ServerDeviceSummary } from '../../src/admin/device-search.js';
import type { HealthSnapshot as ServerHealthSnapshot } from '../../src/admin/health.js';
import type { CampaignDeviceStatus, CampaignSummary, GroupInfo, ImageInfo } from '../../src/events.js';
import { HealthHistory, MAX_KEYS, RATE_WINDOW_MS } from '../../web/src/health-history.js';
import { parseRoute, routeHref } from '../../web/src/router.js';
import { appendTelemetry, MAX_POINTS, WINDOW_MS } from '../../web/src/telemetry-series.js';
import { formatAbsolute, formatBytes, formatDuration, formatRelative } from '../../web/src/time.js';
import { ErrorStore } from '../../web/src/ui/errors.js';
import { waitFor } from '../helpers/index.js';

const T0 = Date.UTC(2026, 11, 1, 19, 40, 5);

test('times: relative with a tolerance for clock skew, absolute in one format with the zone as a UTC offset', () => {
  assert.equal(formatRelative(T0, T0 + 2000), 'just now');
  assert.equal(formatRelative(T0 + 3000, T0), 'just now', 'a server clock a little ahead is still now');
  assert.equal(formatRelative(T0, T0 + 42_000), '42 s ago');
  assert.equal(formatRelative(T0, T0 + 2 * 60_000 + 5000), '2 min ago');
  assert.equal(formatRelative(T0, T0 + 3 * 3_600_000), '3 h ago');
  assert.equal(formatRelative(T0, T0 + 5 * 86_400_000), '5 d ago');
  assert.equal(formatRelative(T0 + 10 * 60_000, T0), 'in 10 min');
  assert.equal(formatAbsolute(T0, 'UTC'), '2026-12-01 19:40:05 UTC');
  assert.equal(formatAbsolute(T0, 'Europe/Berlin'), '2026-12-01 20:40:05 UTC+1');
  assert.equal(formatAbsolute(T0, 'Asia/Kolkata'), '2026-12-02 01:10:05 UTC+5:30');
  assert.equal(formatAbsolute(T0, 'America/New_York'), '2026-12-01 14:40:05 UTC-5');
  assert.equal(formatDuration(450), '450 ms');
  assert.equal(formatDuration(90 * 60_000), '90 min');
  assert.equal(formatBytes(9216), '9.0 KiB');
});

test('routes: every view by its hash, device uids decoded, anything else the overview', () => {
  assert.deepEqual(parseRoute('#/devices'), { view: 'devices' });
  assert.deepEqual(parseRoute('#/devices/352656100000001'), { view: 'device', uid: '352656100000001' });
  assert.deepEqual(parseRoute('#/devices/dev%2D1'), { view: 'device', uid: 'dev-1' });
  assert.deepEqual(parseRoute('#/devices/100%'), { view: 'device', uid: '100%' });
  for (const view of ['overview', 'images', 'groups', 'campaigns', 'audit'] as const) assert.deepEqual(parseRoute(`#/${view}`), { view });
  for (const hash of ['', '#', '#/', '#/nothing', '#/devices/a/b']) assert.deepEqual(parseRoute(hash), { view: 'overview' });
  assert.equal(routeHref({ view: 'device', uid: 'a b' }), '#/devices/a%20b');
});

function snapshot(at: number, patch: Partial<HealthSnapshot> = {}): HealthSnapshot {
  return {
    at,
    connections: 0,
    counters: { messagesIn: 0, messagesOut: 0, pointsAccepted: 0, pointsWritten: 0 },
    refusals: {},
    ingest: { bytes: 0, segments: 1, lag: { ota: 0 } },
    spoolBytes: 0,
    eventLoopLagMs: 1,
    rssBytes: 100,
    heapUsedBytes: 50,
    ...patch,
  };
}

test('health history: rates from cumulative counters, none across a restart, old or repeated snapshots ignored, bounded', () => {
  const history = new HealthHistory(5);
  history.add(snapshot(T0));
  history.add(snapshot(T0 + 2000, { connections: 3, counters: { messagesIn: 100, messagesOut: 10, pointsAccepted: 40, pointsWritten: 30 }, refusals: { bad_credentials: 4 } }));
  history.add(snapshot(T0 + 1000));
  history.add(snapshot(T0 + 2000));
  // The instance restarted: its counters start again from 0.
  history.add(snapshot(T0 + 3000, { counters: { messagesIn: 5, messagesOut: 0, pointsAccepted: 0, pointsWritten: 0 } }));
  assert.equal(history.size, 3);
  const rates = history.series([
    { label: 'in', value: (s) => s.messagesIn },
    { label: 'written', value: (s) => s.pointsWritten },
    { label: 'connected', value: (s) => s.connections },
  ]);
  assert.deepEqual(rates.data, [
    [T0 / 1000, (T0 + 2000) / 1000, (T0 + 3000) / 1000],
    [null, 50, null],
    [null, 15, null],
    [0, 3, 0],
  ]);
  // Refusals per minute by reason: 4 in 2 s.
  assert.deepEqual(history.keyed((s) => s.refusals).data[1], [null, 120, null]);
  for (let i = 4; i < 20; i++) history.add(snapshot(T0 + i * 1000));
  assert.equal(history.size, 5, 'at most maxSamples');
  // And never older than an hour.
  history.add(snapshot(T0 + 2 * 3_600_000));
  assert.equal(history.size, 1);
  // Memory mode: no lag series; many runners: at most MAX_KEYS.
  const lags = new HealthHistory();
  lags.add(snapshot(T0, { ingest: { bytes: 0, segments: 1, lag: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`runner-${String(i).padStart(2, '0')}`, i])) } }));
  lags.add(snapshot(T0 + 1000, { ingest: null }));
  const keyed = lags.keyed((s) => s.lag);
  assert.equal(keyed.labels.length, MAX_KEYS);
  assert.deepEqual(keyed.data[1], [0, null]);
});

test('health history: rates over a window of RATE_WINDOW_MS, so messages every second sampled every half second draw no saw-tooth', () => {
  const history = new HealthHistory();
  for (let i = 0; i <= 40; i++) {
    const messagesIn = 8 * Math.floor(i / 2);
    history.add(snapshot(T0 + i * 500, { counters: { messagesIn, messagesOut: 0, pointsAccepted: 0, pointsWritten: 0 } }));
  }
  const rates = history.series([{ label: 'in', value: (s) => s.messagesIn }]).data[1] ?? [];
  // Past the first window, every rate is 8/s give or take one message's step over 5 s.
  for (const rate of rates.slice(RATE_WINDOW_MS / 500)) assert.ok(rate !== null && rate >= 8 - 1.6 && rate <= 8 + 1.6, `rate ${rate}`);
});

test('telemetry series: numeric fields only (extra int/float included), appended in time order, an hour and MAX_POINTS at most', () => {
  let series = appendTelemetry({}, T0, { version: '1.0.0', rsrp: 61, extra: { temperature: { type: 'float', value: 21.5 }, cell: { type: 'string', value: 'x' }, ok: { type: 'bool', value: true } } });
  assert.deepEqual(series, { rsrp: [[T0, 61]], temperature: [[T0, 21.5]] });
  series = appendTelemetry(series, T0 - 1000, { rsrp: 60 });
  assert.deepEqual(series.rsrp, [
    [T0 - 1000, 60],
    [T0, 61],
  ]);
  series = appendTelemetry(series, T0 + WINDOW_MS + 1, { rsrp: 70 });
  assert.deepEqual(series.rsrp, [[T0 + WINDOW_MS + 1, 70]], 'points older than the hour are dropped');
  let many = {};
  for (let i = 0; i < MAX_POINTS + 10; i++) many = appendTelemetry(many, T0 + i, { rsrp: i });
  assert.equal((many as { rsrp: unknown[] }).rsrp.length, MAX_POINTS);
});

test('error banner: one entry per action, replaced by its next failure, cleared by its next success, bounded', async () => {
  const errors = new ErrorStore(() => T0);
  assert.equal(await errors.track('devices.search', () => Promise.reject(new Error('boom'))), undefined);
  assert.deepEqual(errors.list, [{ action: 'devices.search', message: 'boom', at: T0 }]);
  await errors.track('devices.search', () => Promise.reject(new Error('again')));
  assert.deepEqual(errors.list.map((e) => e.message), ['again']);
  assert.equal(await errors.track('devices.search', async () => 42), 42);
  assert.equal(errors.list.length, 0);
  for (let i = 0; i < 8; i++) errors.fail(`action ${i}`, new Error('x'));
  assert.deepEqual(errors.list.map((e) => e.action), ['action 3', 'action 4', 'action 5', 'action 6', 'action 7']);
});

/** A stand-in for the browser's WebSocket: the test plays the server. */
class FakeSocket implements SocketLike {
  readyState = 0;
  readonly sent: Array<{ id: number; cmd: string; args: Record<string, unknown> }> = [];
  closedWith: { code?: number; reason?: string } | undefined;
  private readonly listeners = new Map<string, Array<(event: never) => void>>();

  addEventListener(type: string, listener: (event: never) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as { id: number; cmd: string; args: Record<string, unknown> });
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.emit('open', {});
  }

  answer(cmd: string, reply: { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }): void {
    const request = [...this.sent].reverse().find((message) => message.cmd === cmd);
    assert.ok(request, `${cmd} was sent`);
    this.emit('message', { data: JSON.stringify({ v: 1, id: request.id, ...reply }) });
  }

  event(name: string, data: unknown): void {
    this.emit('message', { data: JSON.stringify({ v: 1, event: name, data }) });
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.emit('close', { code, reason });
  }

  private emit(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) (listener as (event: unknown) => void)(event);
  }
}

function fakeClient() {
  const sockets: FakeSocket[] = [];
  const storage = new Map<string, string>();
  const states: ConnectionState[] = [];
  const client = new ConsoleClient({
    url: 'ws://127.0.0.1:1/ws',
    storage: { getItem: (key) => storage.get(key) ?? null, setItem: (key, value) => void storage.set(key, value), removeItem: (key) => void storage.delete(key) },
    createSocket: () => {
      const socket = new FakeSocket();
      sockets.push(socket);
      return socket;
    },
  });
  client.onState((state) => states.push(state));
  const socket = () => sockets.at(-1) as FakeSocket;
  return { client, sockets, socket, storage, states };
}

test('client: logs in, subscribes, pairs answers by id, delivers live events; a refused key goes back to the form and is forgotten', async () => {
  const { client, socket, storage, states } = fakeClient();
  const login = client.login('the-key');
  socket().open();
  assert.deepEqual(socket().sent[0], { v: 1, id: 1, cmd: 'auth.login', args: { apiKey: 'the-key' } });
  socket().answer('auth.login', { ok: true, result: { name: 'default' } });
  await waitFor(() => socket().sent.some((message) => message.cmd === 'events.subscribe'), 'the subscription');
  assert.deepEqual(socket().sent[1]?.args, { kinds: ['device', 'ota', 'campaign', 'health'] });
  socket().answer('events.subscribe', { ok: true, result: {} });
  await login;
  assert.equal(storage.get(KEY_STORAGE), 'the-key');
  assert.equal(client.state.kind, 'connected');

  const events: string[] = [];
  client.onEvent((event) => events.push(event.name));
  socket().event('health', { type: 'Health', at: T0 });
  assert.deepEqual(events, ['health']);

  // Two requests in flight, answered out of order.
  const first = client.request<{ n: number }>('images.list');
  const second = client.request('groups.list');
  socket().answer('groups.list', { ok: false, error: { code: 'TIMEOUT', message: 'slow' } });
  socket().answer('images.list', { ok: true, result: { n: 1 } });
  assert.deepEqual(await first, { n: 1 });
  await assert.rejects(second, (error: unknown) => error instanceof CommandError && error.code === 'TIMEOUT' && error.cmd === 'groups.list' && error.message === 'slow [TIMEOUT]');

  client.logout();
  assert.equal(storage.get(KEY_STORAGE), undefined);
  assert.deepEqual(states.map((s) => s.kind), ['connecting', 'connected', 'logged-out']);

  const refused = client.login('wrong');
  socket().open();
  socket().answer('auth.login', { ok: false, error: { code: 'UNAUTHENTICATED', message: 'invalid API key' } });
  await assert.rejects(refused, /invalid API key/);
  assert.deepEqual(client.state, { kind: 'logged-out', problem: 'Login failed: invalid API key [UNAUTHENTICATED]' });
  assert.equal(storage.get(KEY_STORAGE), undefined);
});

test('client: a lost connection reconnects with backoff, logs in again, sends the current subscription again and tells the views', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, sockets, socket } = fakeClient();
  const login = client.login('the-key');
  socket().open();
  socket().answer('auth.login', { ok: true, result: {} });
  await waitForImmediate(() => socket().sent.length === 2);
  socket().answer('events.subscribe', { ok: true, result: {} });
  await login;
  const narrowed = client.subscribe({ kinds: ['device', 'telemetry'], uid: 'dev-1' });
  socket().answer('events.subscribe', { ok: true, result: {} });
  await narrowed;
  let ready = 0;
  client.onReady(() => ready++);

  const pending = client.request('images.list');
  socket().serverClose(1006);
  await assert.rejects(pending, /connection closed \(1006\)/);
  const state = client.state;
  assert.equal(state.kind, 'reconnecting');
  assert.equal(state.kind === 'reconnecting' && state.attempt, 1);
  assert.equal(sockets.length, 1);
  t.mock.timers.tick(700);
  assert.equal(sockets.length, 2, 'a new socket after the backoff');
  socket().open();
  socket().answer('auth.login', { ok: true, result: {} });
  await waitForImmediate(() => socket().sent.length === 2);
  assert.deepEqual(socket().sent[1]?.args, { kinds: ['device', 'telemetry'], uid: 'dev-1' });
  socket().answer('events.subscribe', { ok: true, result: {} });
  await waitForImmediate(() => ready === 1);
  assert.equal(client.state.kind, 'connected');

  // Closed for a wrong key or too many attempts: no retry, back to the form.
  socket().serverClose(4401, 'invalid API key');
  assert.deepEqual(client.state, { kind: 'logged-out', problem: 'invalid API key' });
  t.mock.timers.tick(60_000);
  assert.equal(sockets.length, 2);
});

test('client: requestPatiently waits out RATE_LIMITED answers', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, socket } = fakeClient();
  const login = client.login('k');
  socket().open();
  socket().answer('auth.login', { ok: true, result: {} });
  await waitForImmediate(() => socket().sent.length === 2);
  socket().answer('events.subscribe', { ok: true, result: {} });
  await login;
  const chunk = client.requestPatiently('uploads.chunk', { offset: 0 });
  socket().answer('uploads.chunk', { ok: false, error: { code: 'RATE_LIMITED', message: 'slow down' } });
  await waitForImmediate(() => true);
  t.mock.timers.tick(100);
  await waitForImmediate(() => socket().sent.filter((m) => m.cmd === 'uploads.chunk').length === 2);
  socket().answer('uploads.chunk', { ok: true, result: { received: 10 } });
  assert.deepEqual(await chunk, { received: 10 });
});

/** Lets promise callbacks run (the mocked timers do not move on their own). */
async function waitForImmediate(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (condition()) return;
    await new Promise<void>((resolve) => queueMicrotask(resolve));
  }
  assert.fail('condition not met after 100 microtask turns');
}

// The console writes the wire shapes out (web/src/api/types.ts) instead of
// importing the server's modules into the bundle. These compile-time checks
// keep the copies true: each server answer type must fit the console's
// (JSON turns byte arrays into base64 text, hence the payload as unknown).
type Fits<Server, Console> = [Server] extends [Console] ? true : false;
type Holds<T extends true> = T;
export type ConsoleTypesFitTheServer = [
  Holds<Fits<ServerDeviceSummary, web.DeviceSummary>>,
  Holds<Fits<Omit<ServerDeviceDetail, 'messages'>, Omit<web.DeviceDetail, 'messages'>>>,
  Holds<Fits<ServerHealthSnapshot, web.HealthSnapshot>>,
  Holds<Fits<ImageInfo, web.ImageInfo>>,
  Holds<Fits<GroupInfo, web.GroupInfo>>,
  Holds<Fits<ServerAuditEntry, web.AuditEntry>>,
  Holds<Fits<CampaignSummary, funnel.CampaignSummary>>,
  Holds<Fits<CampaignDeviceStatus, funnel.CampaignDevice>>,
];
