// The admin WebSocket endpoint against real sockets: a real AdminRunner on a real
// EventBroker, real `ws` clients, small answering runners for OTA and the app.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { get as httpGet, type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import WebSocket from 'ws';
import { deviceCredentials } from '../../src/devices/index.js';
import { waitFor } from '../helpers/index.js';
import { AdminTestClient, API_KEY, FakeApp, FakeOta, startAdmin } from '../helpers/admin-harness.js';
import { ensureConsoleBuilt } from '../helpers/console.js';

async function metric(httpUrl: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const match = text.split('\n').find((l) => line.test(l));
  return match === undefined ? 0 : Number(match.split(' ').pop());
}

/** Resolves with the HTTP status when the upgrade is refused. */
function refusedStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once('open', () => {
      socket.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('error', () => undefined);
  });
}

test('header authentication (Bearer and ApiKey) and ping in JSON and CBOR', async (t) => {
  const admin = await startAdmin(t);
  const bearer = await AdminTestClient.authorized(t, admin.wsUrl);
  const json = await bearer.request('ping');
  assert.equal(json.ok, true);
  assert.equal(json.v, 1);
  assert.equal(json.result.pong, true);
  const cbor = await bearer.request('ping', {}, 'cbor');
  assert.equal(cbor.ok, true);
  assert.equal(cbor.result.pong, true);
  const apiKeyHeader = await AdminTestClient.connect(t, admin.wsUrl, { headers: { apikey: API_KEY } });
  assert.equal((await apiKeyHeader.request('ping')).ok, true);
});

test('missing and wrong API keys are refused, counted and rate-limited; the server stays up', async (t) => {
  const admin = await startAdmin(t, { auth_failures_per_minute: 3 });
  // A wrong key in the header: HTTP 401 before any WebSocket exists.
  assert.equal(await refusedStatus(admin.wsUrl, { authorization: 'Bearer not-the-key-at-all' }), 401);
  // Keys in the query string are refused outright, right or wrong.
  assert.equal(await refusedStatus(`${admin.wsUrl}?apiKey=${API_KEY}`), 400);

  // No key: the first message must log in; anything else is an error and a close.
  const anonymous = await AdminTestClient.connect(t, admin.wsUrl);
  const refused = await anonymous.request('devices.list');
  assert.equal(refused.ok, false);
  assert.equal(refused.error?.code, 'UNAUTHENTICATED');
  assert.deepEqual(await anonymous.closed, { code: 4401, reason: 'not authenticated' });

  // A wrong key in the login message.
  const wrong = await AdminTestClient.connect(t, admin.wsUrl);
  const wrongReply = await wrong.request('auth.login', { apiKey: 'wrong-key-wrong-key' });
  assert.equal(wrongReply.error?.code, 'UNAUTHORIZED');
  assert.deepEqual(await wrong.closed, { code: 4401, reason: 'invalid API key' });

  // The right key in the login message (what the dashboard does).
  const browserLike = await AdminTestClient.connect(t, admin.wsUrl, { protocols: ['nucleon.admin.v1'] });
  assert.equal(browserLike.socket.protocol, 'nucleon.admin.v1');
  const login = await browserLike.request('auth.login', { apiKey: API_KEY });
  assert.deepEqual(login.result, { authenticated: true });
  assert.equal((await browserLike.request('ping')).ok, true);

  // Third failure from loopback: from now on wrong keys get 429 (test/integration/admin-access.test.ts: the right key still works).
  const third = await AdminTestClient.connect(t, admin.wsUrl);
  assert.equal((await third.request('auth.login', { apiKey: 12345 })).error?.code, 'UNAUTHORIZED');
  await third.closed;
  assert.equal(await refusedStatus(admin.wsUrl, { authorization: 'Bearer not-the-key-at-all' }), 429);
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_auth_failures_total\{reason="invalid"\}/), 3);
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_auth_failures_total\{reason="missing"\}/), 1);
  assert.ok((await metric(admin.httpUrl, /^nucleon_admin_auth_failures_total\{reason="rate_limited"\}/)) >= 1);
  // Already authenticated clients are unaffected.
  assert.equal((await browserLike.request('ping')).ok, true);
});

test('connections that never log in are capped apart and closed with a reason', async (t) => {
  const admin = await startAdmin(t, { login_timeout_ms: 500, max_clients: 4 });
  const idle = await AdminTestClient.connect(t, admin.wsUrl);
  // A quarter of max_clients may wait to log in; more are refused, clients with a key are not.
  assert.equal(await refusedStatus(admin.wsUrl), 503);
  assert.equal((await (await AdminTestClient.authorized(t, admin.wsUrl)).request('ping')).ok, true);
  assert.deepEqual(await idle.closed, { code: 4408, reason: 'login timeout: send auth.login first' });
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_auth_failures_total\{reason="login_timeout"\}/), 1);
});

test('bad JSON, bad CBOR, bad envelopes, unknown commands and bad arguments get error replies; the connection stays usable', async (t) => {
  const admin = await startAdmin(t);
  const client = await AdminTestClient.authorized(t, admin.wsUrl);

  let before = client.replies.length;
  client.socket.send('{"id": 1, "cmd": ');
  const badJson = await client.nextAnonymousReply(before);
  assert.equal(badJson.error?.code, 'BAD_MESSAGE');
  assert.match(badJson.error?.message ?? '', /^not valid JSON/);

  before = client.replies.length;
  client.socket.send(Buffer.from([0xbf, 0x61, 0x61, 0xff, 0xff, 0x1c]));
  const badCbor = await client.nextAnonymousReply(before);
  assert.equal(badCbor.error?.code, 'BAD_MESSAGE');
  assert.match(badCbor.error?.message ?? '', /^not valid CBOR/);

  before = client.replies.length;
  client.sendRaw([1, 2, 3]);
  assert.equal((await client.nextAnonymousReply(before)).error?.code, 'BAD_MESSAGE');
  before = client.replies.length;
  client.sendRaw({ cmd: 'ping' });
  assert.match((await client.nextAnonymousReply(before)).error?.message ?? '', /^id must be/);

  client.sendRaw({ id: 'no-cmd', args: {} });
  assert.equal((await client.expectReply('no-cmd')).error?.code, 'BAD_MESSAGE');
  client.sendRaw({ v: 2, id: 'v2', cmd: 'ping' });
  assert.equal((await client.expectReply('v2')).error?.code, 'UNSUPPORTED_VERSION');
  client.sendRaw({ id: 'args', cmd: 'ping', args: [1] });
  assert.equal((await client.expectReply('args')).error?.code, 'INVALID_ARGUMENT');

  const unknown = await client.request('frobnicate', {}, 'cbor');
  assert.equal(unknown.error?.code, 'UNKNOWN_COMMAND');
  assert.match(unknown.error?.message ?? '', /unknown command "frobnicate"/);
  const proto = await client.request('__proto__');
  assert.equal(proto.error?.code, 'UNKNOWN_COMMAND');

  const badArgs = await client.request('devices.get', { uid: 'no spaces allowed' });
  assert.equal(badArgs.error?.code, 'INVALID_ARGUMENT');
  assert.match(badArgs.error?.message ?? '', /^uid: expected a device uid/);
  const extraArg = await client.request('images.list', { colour: 'red' });
  assert.equal(extraArg.error?.code, 'INVALID_ARGUMENT');
  assert.match(extraArg.error?.message ?? '', /unknown argument colour/);
  const badLink = await client.request('ota.link', { image: '1.0.0-1-gabc' });
  assert.match(badLink.error?.message ?? '', /give a device, a group, or both/);

  assert.equal((await client.request('ping')).ok, true);
  assert.ok((await metric(admin.httpUrl, /^nucleon_admin_errors_total\{code="BAD_MESSAGE"\}/)) >= 5);
});

test('an oversized frame closes the connection with 1009; the server keeps serving', async (t) => {
  const admin = await startAdmin(t, { max_message_bytes: 4096 });
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  const big = { id: 'big', cmd: 'ping', args: { pad: 'x'.repeat(5000) } };
  client.sendRaw(big);
  assert.deepEqual(await client.closed, { code: 1009, reason: `message of ${JSON.stringify(big).length} bytes exceeds the limit of 4096` });
  // Far past the limit, ws stops reading the frame and closes with 1009 itself.
  const huge = await AdminTestClient.authorized(t, admin.wsUrl);
  huge.socket.send(Buffer.alloc(100_000), { binary: true });
  assert.equal((await huge.closed).code, 1009);
  const next = await AdminTestClient.authorized(t, admin.wsUrl);
  assert.equal((await next.request('ping')).ok, true);
});

test('images: inline add, chunked upload in CBOR and JSON, list, remove, link, unlink, groups; OTA errors pass through', async (t) => {
  const admin = await startAdmin(t, { max_message_bytes: 64 * 1024 });
  const ota = new FakeOta(admin.broker);
  await ota.start();
  const client = await AdminTestClient.authorized(t, admin.wsUrl);

  const small = randomBytes(1000);
  const inline = await client.request('images.add', { id: '1.0.0-1-gaaaaaaa', data: small.toString('base64'), description: 'first' });
  assert.equal(inline.ok, true, JSON.stringify(inline.error));
  assert.equal(inline.result.sha256, createHash('sha256').update(small).digest('hex'));
  assert.equal(inline.result.description, 'first');

  // Several MB in chunks, as the CLI sends them (CBOR byte strings).
  const big = randomBytes(3 * 1024 * 1024 + 123);
  const digest = createHash('sha256').update(big).digest('hex');
  const begin = await client.request('uploads.begin', { size: big.length, sha256: digest }, 'cbor');
  assert.equal(begin.ok, true, JSON.stringify(begin.error));
  const chunkBytes = begin.result.chunkBytes as number;
  assert.ok(chunkBytes >= 1024 && chunkBytes < 64 * 1024);
  for (let offset = 0; offset < big.length; offset += chunkBytes) {
    const reply = await client.request('uploads.chunk', { uploadId: begin.result.uploadId, offset, data: big.subarray(offset, offset + chunkBytes) }, 'cbor');
    assert.equal(reply.ok, true, JSON.stringify(reply.error));
  }
  const added = await client.request('images.add', { id: '1.1.0-2-gbbbbbbb', uploadId: begin.result.uploadId, imageType: 'secondary' }, 'cbor');
  assert.equal(added.ok, true, JSON.stringify(added.error));
  assert.equal(added.result.size, big.length);
  assert.equal(ota.images.get('1.1.0-2-gbbbbbbb')?.bytes.equals(big), true);
  assert.equal(ota.images.get('1.1.0-2-gbbbbbbb')?.imageType, 'secondary');
  // The upload copy is gone once the OTA runner answered.
  assert.deepEqual(await readdir(path.join(admin.dir, 'data', 'uploads')), []);

  // JSON chunks (base64, what the dashboard sends), with a wrong offset and a wrong hash on the way.
  const third = randomBytes(5000);
  const jsonBegin = await client.request('uploads.begin', { size: third.length, sha256: '0'.repeat(64) });
  const uploadId = jsonBegin.result.uploadId as string;
  const wrongOffset = await client.request('uploads.chunk', { uploadId, offset: 10, data: third.toString('base64') });
  assert.equal(wrongOffset.error?.code, 'INVALID_ARGUMENT');
  assert.equal(wrongOffset.error?.message, 'expected offset 0, got 10');
  assert.equal((await client.request('uploads.chunk', { uploadId, offset: 0, data: third.toString('base64') })).result.received, 5000);
  const mismatch = await client.request('images.add', { id: '1.2.0-3-gccccccc', uploadId });
  assert.equal(mismatch.error?.code, 'INVALID_ARGUMENT');
  assert.match(mismatch.error?.message ?? '', /^sha256 mismatch/);
  assert.equal((await client.request('uploads.chunk', { uploadId, offset: 0, data: 'AAAA' })).error?.code, 'NOT_FOUND');
  assert.equal((await client.request('uploads.begin', { size: 10 ** 12 })).error?.code, 'INVALID_ARGUMENT');
  assert.equal((await client.request('images.add', { id: '1.2.0-3-gccccccc' })).error?.code, 'INVALID_ARGUMENT');
  assert.equal((await client.request('images.add', { id: 'not-a-version', data: 'AAAA' })).error?.code, 'INVALID_ARGUMENT');

  const list = await client.request('images.list');
  assert.deepEqual(
    list.result.images.map((i: { id: string }) => i.id),
    ['1.0.0-1-gaaaaaaa', '1.1.0-2-gbbbbbbb'],
  );
  const duplicate = await client.request('images.add', { id: '1.0.0-1-gaaaaaaa', data: small.toString('base64') });
  assert.deepEqual(duplicate.error, { code: 'ALREADY_EXISTS', message: 'image 1.0.0-1-gaaaaaaa exists' });

  assert.equal((await client.request('ota.link', { group: 'field', image: '1.1.0-2-gbbbbbbb' })).ok, true);
  assert.equal((await client.request('ota.link', { device: '352656100000001', group: 'field' })).ok, true);
  assert.equal((await client.request('ota.link', { device: '352656100000002', image: '1.0.0-1-gaaaaaaa' })).ok, true);
  const unknownImage = await client.request('ota.link', { device: '352656100000002', image: '9.9.9-9-gdddddd' });
  assert.deepEqual(unknownImage.error, { code: 'NOT_FOUND', message: 'no image 9.9.9-9-gdddddd' });
  const groups = await client.request('groups.list', {}, 'cbor');
  assert.deepEqual(groups.result.groups, [{ name: 'field', imageId: '1.1.0-2-gbbbbbbb', devices: ['352656100000001'] }]);
  assert.equal((await client.request('ota.unlink', { device: '352656100000001' })).ok, true);
  assert.deepEqual((await client.request('groups.list')).result.groups[0].devices, []);
  assert.equal(ota.deviceLinks.get('352656100000002'), '1.0.0-1-gaaaaaaa');

  assert.equal((await client.request('images.remove', { id: '1.0.0-1-gaaaaaaa' })).ok, true);
  assert.equal((await client.request('images.remove', { id: '1.0.0-1-gaaaaaaa' })).error?.code, 'NOT_FOUND');
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_upload_bytes_total/), 1000 + big.length + 5000 + 1000);
});

test('OTA and app commands answer UNAVAILABLE when no runner handles them, TIMEOUT when it never answers', async (t) => {
  const admin = await startAdmin(t, { request_timeout_ms: 300 });
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  const noOta = await client.request('images.list');
  assert.equal(noOta.error?.code, 'UNAVAILABLE');
  assert.match(noOta.error?.message ?? '', /no runner handles OtaImageListRequest/);
  assert.equal((await client.request('app.request', { target: 'x', payload: 1 })).error?.code, 'UNAVAILABLE');

  const app = new FakeApp(admin.broker);
  await app.start();
  const silent = await client.request('app.request', { target: 'silent', payload: {} });
  assert.equal(silent.error?.code, 'TIMEOUT');
  assert.equal(silent.error?.message, 'ApplicationManagementResponse: no answer within 300 ms');
  const failed = await client.request('app.request', { target: 'fail', payload: {} });
  assert.deepEqual(failed.error, { code: 'APP_FAILED', message: 'the app says no' });
  // Nothing is left waiting once every request is answered or timed out.
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_pending_requests /), 0);
});

test('two clients at once each get only their own answers, and both receive the live stream', async (t) => {
  const admin = await startAdmin(t);
  const app = new FakeApp(admin.broker);
  await app.start();
  const alice = await AdminTestClient.authorized(t, admin.wsUrl);
  const bob = await AdminTestClient.authorized(t, admin.wsUrl);
  assert.equal((await alice.request('events.subscribe')).ok, true);
  assert.deepEqual((await bob.request('events.subscribe', { kinds: ['device'] }, 'cbor')).result, { kinds: ['device'], uid: null });

  // Same request ids on both connections, interleaved: each answer goes to its asker.
  const asks = [];
  for (let i = 0; i < 20; i++) {
    asks.push(alice.request('app.request', { target: 'a', payload: { who: 'alice', i } }));
    asks.push(bob.request('app.request', { target: 'b', payload: { who: 'bob', i } }, 'cbor'));
  }
  const answers = await Promise.all(asks);
  for (const [index, answer] of answers.entries()) {
    assert.equal(answer.ok, true, JSON.stringify(answer.error));
    assert.deepEqual(answer.result.payload.echo, { who: index % 2 === 0 ? 'alice' : 'bob', i: Math.floor(index / 2) });
  }
  assert.equal(alice.replies.filter((r) => r.result?.payload?.echo?.who === 'bob').length, 0);
  assert.equal(bob.replies.filter((r) => r.result?.payload?.echo?.who === 'alice').length, 0);
  assert.equal(app.seen.length, 40);

  const at = Date.now();
  await admin.device({ type: 'DeviceConnected', uid: 'dev-1', clientId: 'dev-1', remoteAddress: '127.0.0.1:5000', authMethod: 'certificate', cleanSession: true, at });
  await admin.device({ type: 'TelemetryReceived', uid: 'dev-1', telemetry: { version: '1.0.0-1-gaaaaaaa', rsrp: 55 }, receivedAt: at + 1 });
  await admin.device({ type: 'DeviceDisconnected', uid: 'dev-1', clientId: 'dev-1', reason: 'client closed', at: at + 2 });
  await waitFor(() => alice.events.length >= 3 && bob.events.length >= 2, 'live events');
  assert.deepEqual(
    alice.events.map((e) => e.event),
    ['device.connected', 'telemetry', 'device.disconnected'],
  );
  // Bob asked for device events only, in CBOR.
  assert.deepEqual(
    bob.events.map((e) => e.event),
    ['device.connected', 'device.disconnected'],
  );
  assert.equal(alice.events[0]?.data.device.online, true);
  assert.equal(alice.events[0]?.data.remoteAddress, '127.0.0.1:5000');
  assert.equal(alice.events[1]?.data.telemetry.rsrp, 55);
  assert.equal(alice.events[2]?.data.device.online, false);
  assert.equal(alice.events[2]?.data.device.firmwareVersion, '1.0.0-1-gaaaaaaa');

  // A uid filter, then unsubscribe.
  await alice.request('events.subscribe', { uid: 'dev-2' });
  await bob.request('events.unsubscribe');
  await admin.device({ type: 'DeviceConnected', uid: 'dev-1', clientId: 'dev-1', remoteAddress: 'x', authMethod: 'password', cleanSession: true, at });
  await admin.device({ type: 'DeviceConnected', uid: 'dev-2', clientId: 'dev-2', remoteAddress: 'y', authMethod: 'password', cleanSession: true, at });
  await waitFor(() => alice.events.length === 4, 'the dev-2 event');
  assert.equal(alice.events[3]?.data.uid, 'dev-2');
  assert.equal((await bob.request('ping')).ok, true);
  assert.equal(bob.events.length, 2);
});

test('devices.list and devices.get: presence, telemetry, firmware state; persisted across a restart (offline)', async (t) => {
  const admin = await startAdmin(t);
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  const at = 1_800_000_000_000;
  const connected = (uid: string, when: number) =>
    admin.device({ type: 'DeviceConnected', uid, clientId: uid, remoteAddress: '10.0.0.7:4000', authMethod: 'certificate', cleanSession: false, at: when });
  await connected('352656100000001', at);
  await connected('352656100000002', at);
  // A session takeover: the new connection arrives before the old one is dropped.
  await connected('352656100000002', at + 5);
  await admin.device({ type: 'DeviceDisconnected', uid: '352656100000002', clientId: '352656100000002', reason: 'taken over', at: at + 6 });
  await admin.broker.publish({
    type: 'DeviceFirmwareUpdated',
    state: { uid: '352656100000001', reportedVersion: '1.0.0-1-gaaaaaaa', assignedImageId: '1.1.0-2-gbbbbbbb', bytesServed: 4096, downloadImageId: '1.1.0-2-gbbbbbbb' },
  });
  await admin.broker.drain(1000);

  const list = await client.request('devices.list');
  assert.deepEqual(
    list.result.devices.map((d: { uid: string; online: boolean }) => [d.uid, d.online]),
    [
      ['352656100000001', true],
      ['352656100000002', true],
    ],
  );
  const one = await client.request('devices.get', { uid: '352656100000001' });
  assert.equal(one.result.remoteAddress, '10.0.0.7:4000');
  assert.equal(one.result.authMethod, 'certificate');
  assert.equal(one.result.firmwareVersion, '1.0.0-1-gaaaaaaa');
  assert.equal(one.result.otaStatus, 'downloading');
  assert.equal(one.result.lastSeen, at);
  assert.deepEqual((await client.request('devices.get', { uid: 'nobody' })).error, { code: 'NOT_FOUND', message: 'device nobody has never been seen' });
  assert.deepEqual((await client.request('devices.list', { online: false })).result.devices, []);

  await admin.restart();
  const after = await AdminTestClient.authorized(t, admin.wsUrl);
  const restored = await after.request('devices.list');
  assert.deepEqual(
    restored.result.devices.map((d: { uid: string; online: boolean; firmwareVersion?: string }) => [d.uid, d.online, d.firmwareVersion ?? null]),
    [
      ['352656100000001', false, '1.0.0-1-gaaaaaaa'],
      ['352656100000002', false, null],
    ],
  );
});

test('devices.add sets an MQTT password (generated or given), devices.remove takes it away', async (t) => {
  const admin = await startAdmin(t);
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  const credentials = deviceCredentials(admin.store);
  const generated = await client.request('devices.add', { uid: '352656100000009' });
  assert.equal(generated.ok, true, JSON.stringify(generated.error));
  assert.equal(generated.result.uid, '352656100000009');
  assert.match(generated.result.password, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(await credentials.verify('352656100000009', generated.result.password as string), true);
  const given = await client.request('devices.add', { uid: 'bench-7', password: 'correct horse battery' }, 'cbor');
  assert.deepEqual(given.result, { uid: 'bench-7', password: 'correct horse battery' });
  assert.equal(await credentials.verify('bench-7', 'correct horse battery'), true);
  assert.equal((await client.request('devices.add', { uid: 'a/b' })).error?.code, 'INVALID_ARGUMENT');
  assert.deepEqual((await client.request('devices.remove', { uid: 'bench-7' })).result, { uid: 'bench-7', removed: true, password: true, record: false });
  assert.equal(await credentials.verify('bench-7', 'correct horse battery'), false);
  assert.deepEqual((await client.request('devices.remove', { uid: 'bench-7' })).error, { code: 'NOT_FOUND', message: 'device bench-7 has no password' });
});

test('a client that stops reading is disconnected (1013) without slowing the broker or the other clients', async (t) => {
  const admin = await startAdmin(t, { send_buffer_bytes: 256 * 1024 });
  const reader = await AdminTestClient.authorized(t, admin.wsUrl);
  const stalled = await AdminTestClient.authorized(t, admin.wsUrl);
  await reader.request('events.subscribe', { kinds: ['telemetry'] });
  await stalled.request('events.subscribe', { kinds: ['telemetry'] });
  // Stop reading the socket: the kernel buffers fill, then the server-side send buffer.
  const rawSocket = (stalled.socket as unknown as { _socket: import('node:net').Socket })._socket;
  rawSocket.pause();

  const version = 'v'.repeat(1000);
  let sent = 0;
  const deadline = Date.now() + 30_000;
  // Bounded: at most 20 000 events (about 20 MB of frames) or 30 s.
  // Rounds of 100 events (about 100 KB, well under the 256 KB send buffer), and the reader catches up
  // before the next round: the reader runs in this process, so on a busy machine a bigger round
  // could fill its buffer too while this loop holds the event loop.
  while (sent < 20_000 && Date.now() < deadline && (await metric(admin.httpUrl, /^nucleon_admin_slow_clients_total/)) === 0) {
    for (let i = 0; i < 100; i++) {
      admin.broker.emit({ type: 'TelemetryReceived', uid: 'flood', telemetry: { version, rsrp: sent }, receivedAt: Date.now() });
      sent++;
    }
    assert.equal(await admin.broker.drain(5000), true, 'the admin runner kept up with the broker');
    await waitFor(() => reader.events.length === sent, `${sent} events at the reader`, 20_000);
  }
  assert.equal(await metric(admin.httpUrl, /^nucleon_admin_slow_clients_total/), 1);
  rawSocket.resume();
  const closed = await stalled.closed;
  assert.equal(closed.code, 1013);
  assert.equal(closed.reason, 'send buffer full: the client is not reading');
  // The reading client got every event, in order.
  await waitFor(() => reader.events.length === sent, `all ${sent} events at the reader`, 20_000);
  assert.deepEqual(
    reader.events.slice(-3).map((e) => e.data.telemetry.rsrp as number),
    [sent - 3, sent - 2, sent - 1],
  );
  assert.equal(admin.broker.stats().find((s) => s.name === 'admin')?.dropped, 0);
});

test('messages over the per-client rate get RATE_LIMITED; too many in flight get TOO_MANY_PENDING', async (t) => {
  const admin = await startAdmin(t, { messages_per_second: 5, max_pending_per_client: 2, request_timeout_ms: 2000 });
  const app = new FakeApp(admin.broker);
  await app.start();
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  const inFlight = [client.request('app.request', { target: 'silent', payload: 1 }), client.request('app.request', { target: 'silent', payload: 2 })];
  const third = await client.request('app.request', { target: 'silent', payload: 3 });
  assert.equal(third.error?.code, 'TOO_MANY_PENDING');
  // The burst allowance is twice the rate (10); 3 used, so of 10 more at least 2 are refused.
  const burst = await Promise.all(Array.from({ length: 10 }, () => client.request('ping')));
  assert.ok(burst.filter((r) => r.error?.code === 'RATE_LIMITED').length >= 2);
  for (const reply of await Promise.all(inFlight)) assert.equal(reply.error?.code, 'TIMEOUT');
});

test('/metrics serves the shared registry with admin metrics; /healthz reports the runners; the console is served, gzipped when asked', async (t) => {
  await ensureConsoleBuilt();
  const admin = await startAdmin(t);
  const ota = new FakeOta(admin.broker);
  await ota.start();
  const client = await AdminTestClient.authorized(t, admin.wsUrl);
  await client.request('images.list');
  const response = await fetch(`${admin.httpUrl}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await response.text();
  for (const name of [
    'nucleon_admin_clients 1',
    'nucleon_admin_connections_total{result="accepted"} 1',
    'nucleon_admin_messages_total{direction="in",kind="images.list"} 1',
    'nucleon_admin_messages_total{direction="out",kind="images.list"} 1',
    'nucleon_broker_inbox_depth{runner="admin"} 0',
    'nucleon_broker_delivered_total{runner="fake-ota"} 1',
  ]) {
    assert.ok(text.includes(name), `missing ${name}`);
  }
  const health = await fetch(`${admin.httpUrl}/healthz`);
  assert.equal(health.status, 200);
  const body = (await health.json()) as { status: string; runners: { name: string }[]; adminClients: number };
  assert.equal(body.status, 'ok');
  assert.deepEqual(body.runners.map((r) => r.name).sort(), ['admin', 'fake-ota']);
  assert.equal(body.adminClients, 1);

  // A runner that cannot keep up (inbox full) makes the instance degraded for load balancers.
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (release = resolve));
  await admin.broker.publish({ type: 'NewRunner', name: 'stuck', accepts: ['InfluxDataSave'], inbox: { capacity: 1, handle: () => stuck } });
  admin.broker.emit({ type: 'InfluxDataSave', points: [] });
  // The first event is taken out of the inbox and hangs; the second then fills the inbox.
  await waitFor(() => admin.broker.stats().find((r) => r.name === 'stuck')?.depth === 0, 'the stuck handler to start');
  admin.broker.emit({ type: 'InfluxDataSave', points: [] });
  const degraded = await waitFor(async () => {
    const r = await fetch(`${admin.httpUrl}/healthz`);
    return r.status === 503 ? ((await r.json()) as { status: string; congested: string[] }) : undefined;
  }, 'a 503 from /healthz');
  assert.deepEqual({ status: degraded.status, congested: degraded.congested }, { status: 'degraded', congested: ['stuck'] });
  release();
  await waitFor(async () => (await fetch(`${admin.httpUrl}/healthz`)).status === 200, 'healthy again');

  const index = await fetch(`${admin.httpUrl}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  // The console bundle goes gzipped to clients that take it, as it is to those that do not; the same bytes either way.
  const plain = await rawGet(`${admin.httpUrl}/app.js`, {});
  const zipped = await rawGet(`${admin.httpUrl}/app.js`, { 'accept-encoding': 'gzip, deflate' });
  const refused = await rawGet(`${admin.httpUrl}/app.js`, { 'accept-encoding': 'gzip;q=0, br' });
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(refused.headers['content-encoding'], undefined);
  assert.equal(zipped.headers['content-encoding'], 'gzip');
  assert.equal(zipped.headers.vary, 'accept-encoding');
  assert.ok(zipped.body.length < plain.body.length / 2, `${zipped.body.length} gzipped of ${plain.body.length}`);
  assert.deepEqual(gunzipSync(zipped.body), plain.body);
  assert.equal((await fetch(`${admin.httpUrl}/nope`)).status, 404);
  assert.equal((await fetch(`${admin.httpUrl}/metrics`, { method: 'POST' })).status, 405);
});

/** A GET without fetch's own decoding: the body as sent, and the headers. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    }).on('error', reject);
  });
}
