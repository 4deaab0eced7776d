// The OTA runner against a real EventBroker and LevelStore; a recording runner
// stands in for the MQTT and admin runners (DESIGN.md section 1 flows).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type { EventOf, ImageInfo } from '../../src/events.js';
import { FileBlobStore } from '../../src/store/blob-file.js';
import { HeldStore } from '../helpers/held-store.js';
import { waitFor } from '../helpers/index.js';
import { checkRequest, connected, correlationId, doneRequest, downloadRequest, firmware, startOta, type HarnessOptions, type OtaHarness } from '../helpers/ota-harness.js';

const ID = '1.2.3-4-g965b9df';
const NEWER = '1.3.0-0-gaaaaaaa';
const OLDER = '1.0.0-0-gbbbbbbb';

type Result = EventOf<'OtaCommandResult'>;

async function add(h: OtaHarness, id: string, bytes: Uint8Array): Promise<ImageInfo> {
  const answer = await h.request<Result>({ type: 'OtaNewPackage', correlationId: correlationId(), id, imageType: 'primary', source: { kind: 'bytes', data: bytes } });
  assert.equal(answer.error, undefined, JSON.stringify(answer.error));
  return (answer.result as { image: ImageInfo }).image;
}

async function link(h: OtaHarness, fields: Omit<EventOf<'OtaLink'>, 'type' | 'correlationId'>): Promise<Result> {
  return h.request<Result>({ type: 'OtaLink', correlationId: correlationId(), ...fields });
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

test('OtaNewPackage stores an image from bytes or a file, answers by correlation id, and lists it', async (t) => {
  const h = await startOta(t, { clock: () => new Date('2026-11-01T12:00:00.123Z') });
  const bytes = firmware(5000);
  const image = await add(h, ID, bytes);
  assert.deepEqual(image, {
    id: ID,
    version: { major: 1, minor: 2, patch: 3, commit: 4, hash: 'g965b9df' },
    size: 5000,
    sha256: sha256(bytes),
    imageType: 'primary',
    dateAdded: '2026-11-01T12:00:00Z',
  });
  const file = path.join(h.dir, 'upload.bin');
  const other = firmware(777, 7);
  await writeFile(file, other);
  const fromFile = await h.request<Result>({
    type: 'OtaNewPackage',
    correlationId: correlationId(),
    id: NEWER,
    imageType: 'secondary',
    description: 'modem fix',
    source: { kind: 'file', path: file },
  });
  assert.equal((fromFile.result as { image: ImageInfo }).image.sha256, sha256(other));
  assert.equal((fromFile.result as { image: ImageInfo }).image.description, 'modem fix');
  // The sender keeps its file: we copied it.
  assert.deepEqual((await readdir(h.dir)).includes('upload.bin'), true);

  const list = await h.request<EventOf<'OtaImageListResponse'>>({ type: 'OtaImageListRequest', correlationId: 'list-1' });
  assert.equal(list.type, 'OtaImageListResponse');
  assert.deepEqual(list.images.map((i) => [i.id, i.size, i.imageType]), [
    [ID, 5000, 'primary'],
    [NEWER, 777, 'secondary'],
  ]);
});

test('adding is idempotent for the same bytes; other bytes under a taken id are a CONFLICT; bad input gets stable codes', async (t) => {
  const h = await startOta(t);
  const bytes = firmware(1000);
  await add(h, ID, bytes);
  const again = await h.request<Result>({ type: 'OtaNewPackage', correlationId: correlationId(), id: ID, imageType: 'primary', source: { kind: 'bytes', data: bytes } });
  assert.equal((again.result as { created: boolean }).created, false);
  const cases: [Omit<EventOf<'OtaNewPackage'>, 'type' | 'correlationId'>, string, RegExp][] = [
    [{ id: ID, imageType: 'primary', source: { kind: 'bytes', data: firmware(1000, 2) } }, 'CONFLICT', /already exists with different bytes/],
    [{ id: 'v1', imageType: 'primary', source: { kind: 'bytes', data: bytes } }, 'INVALID_ARGUMENT', /not major\.minor\.patch-commit-hash/],
    [{ id: '../../etc-1', imageType: 'primary', source: { kind: 'bytes', data: bytes } }, 'INVALID_ARGUMENT', /not major/],
    [{ id: NEWER, imageType: 'tertiary' as 'primary', source: { kind: 'bytes', data: bytes } }, 'INVALID_ARGUMENT', /primary or secondary/],
    [{ id: NEWER, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(0) } }, 'INVALID_ARGUMENT', /is empty/],
    [{ id: NEWER, imageType: 'primary', source: { kind: 'file', path: path.join(h.dir, 'missing.bin') } }, 'INVALID_ARGUMENT', /cannot read image source file .*ENOENT/],
  ];
  for (const [fields, code, message] of cases) {
    const answer = await h.request<Result>({ type: 'OtaNewPackage', correlationId: correlationId(), ...fields });
    assert.equal(answer.error?.code, code, `${JSON.stringify(fields.id)}: ${answer.error?.message}`);
    assert.match(answer.error.message, message);
  }
  // Refused uploads leave no bytes behind: only the first image's blob is stored.
  const blobs = new FileBlobStore(path.join(h.dir, 'data', 'firmware'));
  const stored: string[] = [];
  for await (const sha of blobs.list()) stored.push(sha);
  assert.deepEqual(stored, [sha256(bytes)]);
  assert.match(await h.metrics.metrics(), /nucleon_ota_commands_total\{command="OtaNewPackage",result="CONFLICT"\} 1/);
});

test('Check answers an empty package when nothing is linked and the linked package after a link, which is also pushed', async (t) => {
  const h = await startOta(t, { clock: () => new Date('2026-11-01T12:00:00Z') });
  await h.device(checkRequest('dev1'));
  assert.deepEqual(h.of('OtaResponse'), [{ type: 'OtaResponse', uid: 'dev1', package: null }]);
  const image = await add(h, ID, firmware(4096));
  const linked = await link(h, { deviceUid: 'dev1', imageId: ID });
  assert.deepEqual(linked.result, { group: 'dev1', imageId: ID, deviceUid: 'dev1', affected: ['dev1'] });
  const expected = { id: ID, version: image.version, size: 4096, dateAdded: '2026-11-01T12:00:00Z' };
  // The push on link (device offline or not: the linked device is always told).
  assert.deepEqual(h.of('OtaResponse').at(-1), { type: 'OtaResponse', uid: 'dev1', package: expected });
  await h.device(checkRequest('dev1'));
  assert.equal(h.of('OtaResponse').length, 3);
  assert.deepEqual(h.of('OtaResponse').at(-1), { type: 'OtaResponse', uid: 'dev1', package: expected });
  // Saved behind the answer.
  const state = await waitFor(async () => {
    const current = await h.ota.deviceState('dev1');
    return current?.assignedImageId === ID ? current : undefined;
  }, 'the Check saved');
  assert.equal(state.lastCheckAt, '2026-11-01T12:00:00Z');
});

test('with ota.http.public_url the package carries the download URL for that device', async (t) => {
  const h = await startOta(t, { config: { ota: { http: { public_url: 'https://ota.example.com:3030/' } } } });
  await add(h, ID, firmware(100));
  await link(h, { deviceUid: 'dev-7', imageId: ID });
  assert.equal(h.of('OtaResponse').at(-1)?.package?.url, `https://ota.example.com:3030/images/${ID}?uid=dev-7`);
});

test('groups: a group linked to an image is pushed to its online members only; lists show members', async (t) => {
  const h = await startOta(t);
  await add(h, ID, firmware(100));
  await add(h, NEWER, firmware(120, 3));
  for (const uid of ['a1', 'a2', 'a3']) assert.equal((await link(h, { deviceUid: uid, group: 'fleet' })).error, undefined);
  // No image yet, so nothing to push.
  assert.equal(h.of('OtaResponse').length, 0);
  await h.device(connected('a1'));
  await h.device(connected('a2'));
  await h.device({ type: 'DeviceDisconnected', uid: 'a2', clientId: 'a2', reason: 'closed', at: Date.now() });
  const result = await link(h, { group: 'fleet', imageId: ID });
  assert.deepEqual((result.result as { affected: string[] }).affected.sort(), ['a1', 'a2', 'a3']);
  assert.deepEqual(h.of('OtaResponse').map((e) => [e.uid, e.package?.id]), [['a1', ID]]);
  // A device joining a group that has an image is told at once.
  await link(h, { deviceUid: 'b1', group: 'fleet' });
  assert.deepEqual(h.of('OtaResponse').at(-1)?.uid, 'b1');
  // (device, group, image) moves the device and relinks the group.
  await link(h, { deviceUid: 'c1', group: 'beta', imageId: NEWER });
  const groups = await h.request<EventOf<'OtaGroupListResponse'>>({ type: 'OtaGroupListRequest', correlationId: correlationId() });
  assert.deepEqual(
    groups.groups.map((g) => [g.name, g.imageId, g.devices]),
    [
      ['beta', NEWER, ['c1']],
      ['fleet', ID, ['a1', 'a2', 'a3', 'b1']],
    ],
  );
  // Moving a device to another group removes it from the first.
  await link(h, { deviceUid: 'a3', group: 'beta' });
  assert.deepEqual((await h.ota.groups()).find((g) => g.name === 'fleet')?.devices, ['a1', 'a2', 'b1']);
});

test('link and unlink refuse what they cannot do, with stable codes', async (t) => {
  const h = await startOta(t);
  await add(h, ID, firmware(100));
  const refusals: [Omit<EventOf<'OtaLink'>, 'type' | 'correlationId'>, string][] = [
    [{}, 'INVALID_ARGUMENT'],
    [{ deviceUid: 'dev1' }, 'INVALID_ARGUMENT'],
    [{ group: 'g' }, 'INVALID_ARGUMENT'],
    [{ deviceUid: 'bad/uid', imageId: ID }, 'INVALID_ARGUMENT'],
    [{ group: 'a/b', imageId: ID }, 'INVALID_ARGUMENT'],
    [{ group: 'g', imageId: '9.9.9-9-gnothere' }, 'NOT_FOUND'],
  ];
  for (const [fields, code] of refusals) assert.equal((await link(h, fields)).error?.code, code, JSON.stringify(fields));
  const unlink = (fields: Omit<EventOf<'OtaUnlink'>, 'type' | 'correlationId'>) => h.request<Result>({ type: 'OtaUnlink', correlationId: correlationId(), ...fields });
  assert.equal((await unlink({})).error?.code, 'INVALID_ARGUMENT');
  assert.equal((await unlink({ deviceUid: 'nobody' })).error?.code, 'NOT_FOUND');
  assert.equal((await unlink({ group: 'nogroup' })).error?.code, 'NOT_FOUND');
  await link(h, { deviceUid: 'dev1', group: 'g', imageId: ID });
  assert.equal((await unlink({ deviceUid: 'dev1', group: 'other' })).error?.code, 'NOT_FOUND');
  // Unlinking a group drops its image; members stay.
  assert.deepEqual((await unlink({ group: 'g' })).result, { group: 'g', imageId: ID });
  assert.deepEqual(await h.ota.groups(), [{ name: 'g', devices: ['dev1'] }]);
  await h.device(checkRequest('dev1'));
  assert.equal(h.of('OtaResponse').at(-1)?.package, null);
  assert.deepEqual((await unlink({ deviceUid: 'dev1', group: 'g' })).result, { deviceUid: 'dev1', group: 'g' });
  assert.deepEqual(await h.ota.groups(), [{ name: 'g', devices: [] }]);
});

test('DownloadBytes answers each range with exactly those bytes; reassembled they match the SHA-256; state tracks progress and Done', async (t) => {
  let now = new Date('2026-11-01T12:00:00Z');
  const h = await startOta(t, { clock: () => now });
  const bytes = firmware(10_000, 5);
  await add(h, ID, bytes);
  await link(h, { deviceUid: 'dev1', imageId: ID });
  const chunk = 512;
  for (let start = 0; start < bytes.length; start += chunk) await h.device(downloadRequest('dev1', ID, start, Math.min(start + chunk, bytes.length)));
  const chunks = h.of('OtaDownloadResponse');
  assert.equal(chunks.length, Math.ceil(bytes.length / chunk));
  for (const c of chunks) {
    assert.equal(c.uid, 'dev1');
    assert.equal(c.chunk.len, c.chunk.endPos - c.chunk.startPos);
    assert.equal(c.chunk.data.length, c.chunk.len);
  }
  const reassembled = Buffer.concat(chunks.map((c) => c.chunk.data));
  assert.equal(sha256(reassembled), sha256(bytes));
  // Progress is counted behind the answers (a chunk never waits for the store).
  const progress = await waitFor(async () => {
    const state = await h.ota.deviceState('dev1');
    return state?.bytesServed === 10_000 ? state : undefined;
  }, 'the progress of every chunk counted');
  assert.equal(progress?.downloadImageId, ID);
  now = new Date('2026-11-01T12:05:00Z');
  await h.device(doneRequest('dev1'));
  const done = await h.ota.deviceState('dev1');
  assert.equal(done?.doneAt, '2026-11-01T12:05:00Z');
  assert.equal(done?.doneImageId, ID);
  // DeviceFirmwareUpdated: the Check-free flow gave progress steps (not one per chunk: at most one per 10 %, fewer when a
  // save was still under way as the next chunks came, as they then join one) and Done.
  const updates = h.of('DeviceFirmwareUpdated').map((e) => e.state);
  assert.ok(updates.length >= 2 && updates.length <= 12, `progress announced at most per 10 %, got ${updates.length}`);
  assert.equal(updates.at(-2)?.bytesServed, 10_000);
  assert.equal(updates.at(-1)?.doneAt, '2026-11-01T12:05:00Z');
  assert.match(await h.metrics.metrics(), /nucleon_ota_bytes_served_total\{path="mqtt"\} 10000/);
});

/** The OTA runner on a store whose writes the test holds (a slow or stuck disk). */
async function startHeld(t: TestContext, options: HarnessOptions = {}): Promise<{ h: OtaHarness; held: HeldStore }> {
  let store: HeldStore | undefined;
  const h = await startOta(t, { ...options, storeAt: (location) => (store = new HeldStore(location)) });
  const held = store;
  assert.ok(held);
  return { h, held };
}

test('a chunk never waits for a progress save: while the store holds every write, a device downloads the whole image; its progress is saved when the store answers', async (t) => {
  const { h, held } = await startHeld(t);
  const bytes = firmware(10_000, 6);
  await add(h, ID, bytes);
  await link(h, { deviceUid: 'dev1', imageId: ID });
  held.holding = true;
  const putsBefore = held.puts;
  const chunk = 500;
  for (let start = 0; start < bytes.length; start += chunk) await h.broker.publish(downloadRequest('dev1', ID, start, start + chunk));
  await waitFor(() => h.of('OtaDownloadResponse').length === bytes.length / chunk, 'every chunk answered while the store holds its writes');
  assert.equal(sha256(Buffer.concat(h.of('OtaDownloadResponse').map((c) => c.chunk.data))), sha256(bytes));
  assert.equal(held.waiting, 1, 'the first progress save is still waiting for the store');
  held.release();
  const state = await waitFor(async () => {
    const current = await h.ota.deviceState('dev1');
    return current?.bytesServed === bytes.length ? current : undefined;
  }, 'the progress of every chunk counted');
  assert.equal(state.downloadImageId, ID);
  assert.equal((await h.store.get<{ bytesServed: number }>('ota/state/dev1'))?.bytesServed, bytes.length, 'saved');
  assert.equal(held.puts - putsBefore, 2, "the first chunk's save, then one for the 19 chunks that waited behind it");
});

test("a reconnect storm of Checks is answered while the store holds every write; each device's Check is saved when it answers", async (t) => {
  const { h, held } = await startHeld(t, { clock: () => new Date('2026-11-01T12:00:00Z') });
  await add(h, ID, firmware(4096, 8));
  const uids = Array.from({ length: 20 }, (_, i) => `storm-${i}`);
  for (const uid of uids.slice(0, 10)) await link(h, { deviceUid: uid, imageId: ID });
  const pushed = h.of('OtaResponse').length;
  held.holding = true;
  for (const uid of uids) await h.broker.publish(checkRequest(uid));
  const answers = await waitFor(() => {
    const storm = h.of('OtaResponse').slice(pushed);
    return storm.length === uids.length ? storm : undefined;
  }, 'every Check answered while the store holds its writes');
  assert.deepEqual(answers.map((answer) => [answer.uid, answer.package?.id ?? null]), uids.map((uid, i) => [uid, i < 10 ? ID : null]));
  assert.equal(held.waiting, 1, 'one save has reached the store; the others wait behind it');
  held.release();
  for (const [i, uid] of uids.entries()) {
    const state = await waitFor(() => h.store.get<{ lastCheckAt?: string; assignedImageId?: string }>(`ota/state/${uid}`), `the Check of ${uid} saved`);
    assert.deepEqual([state.lastCheckAt, state.assignedImageId], ['2026-11-01T12:00:00Z', i < 10 ? ID : undefined]);
  }
});

test('storing an image and writing a link do not hold up other devices: their chunks are answered while the commands wait for the store', async (t) => {
  const { h, held } = await startHeld(t);
  const bytes = firmware(5000, 9);
  await add(h, ID, bytes);
  await link(h, { deviceUid: 'dev1', imageId: ID });
  held.holding = true;
  await h.broker.publish({ type: 'OtaNewPackage', correlationId: 'store-newer', id: NEWER, imageType: 'primary', source: { kind: 'bytes', data: firmware(200_000, 10) } });
  await h.broker.publish({ type: 'OtaLink', correlationId: 'link-dev2', deviceUid: 'dev2', imageId: ID });
  // The image's record waits for the store; the link waits behind it in the catalog, in the order they came.
  await waitFor(() => held.waiting === 1, 'the image record waiting for the store');
  for (let start = 0; start < bytes.length; start += 500) await h.broker.publish(downloadRequest('dev1', ID, start, start + 500));
  await waitFor(() => h.of('OtaDownloadResponse').length === 10, "dev1's chunks answered while the store holds the commands");
  const answered = () => h.of('OtaCommandResult').filter((result) => result.correlationId === 'store-newer' || result.correlationId === 'link-dev2');
  assert.deepEqual(answered(), [], 'neither command answered before its write');
  held.release();
  await waitFor(() => answered().length === 2, 'both commands answered');
  assert.deepEqual(answered().map((result) => result.error), [undefined, undefined]);
  assert.ok((await h.ota.images()).some((image) => image.id === NEWER));
  assert.equal(h.of('OtaResponse').find((response) => response.uid === 'dev2')?.package?.id, ID, 'dev2 told of its link');
});

test('chunk reads ask the blob store for the requested range only', async (t) => {
  const dir = path.join((await import('node:os')).tmpdir(), `nucleon-ota-spy-${process.pid}-${Date.now()}`);
  const real = new FileBlobStore(dir);
  const reads: [number, number][] = [];
  const spy = Object.assign(Object.create(real) as FileBlobStore, {
    readRange: (sha: string, start: number, end: number) => {
      reads.push([start, end]);
      return real.readRange(sha, start, end);
    },
    createReadStream: () => {
      throw new Error('the MQTT path must not stream the whole image');
    },
  });
  t.after(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
  const h = await startOta(t, { blobs: spy });
  await add(h, ID, firmware(300_000));
  await h.device(downloadRequest('dev1', ID, 250_000, 251_024));
  assert.deepEqual(reads, [[250_000, 251_024]]);
  assert.equal(h.of('OtaDownloadResponse')[0]?.chunk.data.length, 1024);
});

test('refused ranges get no reply, a logged reason and a count, and the runner keeps serving', async (t) => {
  const h = await startOta(t, { config: { ota: { max_chunk_size: 1024 } } });
  await add(h, ID, firmware(4096));
  const cases: [EventOf<'OtaRequest'>, string][] = [
    [{ type: 'OtaRequest', uid: 'd', cmd: 'DownloadBytes', startPos: 0, endPos: 10, receivedAt: 0 }, 'missing_id'],
    [downloadRequest('d', '9.9.9-9-gnothere', 0, 10) as EventOf<'OtaRequest'>, 'unknown_image'],
    [downloadRequest('d', 'x/../../etc', 0, 10) as EventOf<'OtaRequest'>, 'unknown_image'],
    [{ type: 'OtaRequest', uid: 'd', cmd: 'DownloadBytes', id: ID, startPos: 0, receivedAt: 0 }, 'missing_range'],
    [downloadRequest('d', ID, 100, 100) as EventOf<'OtaRequest'>, 'empty_range'],
    [downloadRequest('d', ID, 4000, 4097) as EventOf<'OtaRequest'>, 'beyond_image'],
    [downloadRequest('d', ID, 5000, 6000) as EventOf<'OtaRequest'>, 'beyond_image'],
    [downloadRequest('d', ID, 0, 1025) as EventOf<'OtaRequest'>, 'chunk_too_large'],
  ];
  for (const [event, reason] of cases) {
    await h.device(event);
    const line = h.logs.at(-1);
    assert.equal(line?.reason, reason, JSON.stringify(event));
    assert.match(line?.msg ?? '', /^OTA download request refused: /);
  }
  assert.equal(h.of('OtaDownloadResponse').length, 0);
  const text = await h.metrics.metrics();
  assert.match(text, /nucleon_ota_rejected_requests_total\{reason="beyond_image"\} 2/);
  assert.match(text, /nucleon_ota_rejected_requests_total\{reason="chunk_too_large"\} 1/);
  await h.device(downloadRequest('d', ID, 3072, 4096));
  assert.equal(h.of('OtaDownloadResponse').length, 1);
});

test('a device is not linked to an older image than it reports running unless forced', async (t) => {
  const h = await startOta(t);
  await add(h, OLDER, firmware(100, 1));
  await add(h, NEWER, firmware(100, 2));
  await h.device({ type: 'TelemetryReceived', uid: 'dev1', telemetry: { version: '1.2.3-4-g965b9df', rsrp: 40 }, receivedAt: 0 });
  assert.equal((await h.ota.deviceState('dev1'))?.reportedVersion, '1.2.3-4-g965b9df');
  const refused = await link(h, { deviceUid: 'dev1', imageId: OLDER });
  assert.equal(refused.error?.code, 'VERSION_DOWNGRADE');
  assert.match(refused.error.message, /older than what dev1 run/);
  assert.equal(h.of('OtaResponse').length, 0);
  assert.equal((await link(h, { deviceUid: 'dev1', imageId: NEWER })).error, undefined);
  // Relinking the device's group to the older image would downgrade it too.
  assert.equal((await link(h, { group: 'dev1', imageId: OLDER })).error?.code, 'VERSION_DOWNGRADE');
  assert.equal((await link(h, { deviceUid: 'dev1', imageId: OLDER, force: true })).error, undefined);
  assert.equal(h.of('OtaResponse').at(-1)?.package?.id, OLDER);
});

test('deleting an image unlinks its groups and removes its bytes; * deletes all', async (t) => {
  const h = await startOta(t);
  const a = firmware(300, 1);
  await add(h, ID, a);
  await add(h, NEWER, firmware(300, 2));
  await link(h, { group: 'fleet', imageId: ID });
  const del = (id: string) => h.request<Result>({ type: 'OtaDeletePackage', correlationId: correlationId(), id });
  assert.equal((await del('9.9.9-9-gnothere')).error?.code, 'NOT_FOUND');
  assert.equal((await del('nope')).error?.code, 'INVALID_ARGUMENT');
  assert.deepEqual((await del(ID)).result, { deleted: [ID], unlinkedGroups: ['fleet'] });
  assert.deepEqual(await h.ota.groups(), [{ name: 'fleet', devices: [] }]);
  await h.device(downloadRequest('d', ID, 0, 10));
  assert.equal(h.of('OtaDownloadResponse').length, 0);
  assert.deepEqual((await del('*')).result, { deleted: [NEWER], unlinkedGroups: [] });
  assert.deepEqual(await h.ota.images(), []);
  const shards = await readdir(path.join(h.dir, 'data', 'firmware', 'sha256'));
  for (const shard of shards) assert.deepEqual(await readdir(path.join(h.dir, 'data', 'firmware', 'sha256', shard)), []);
});

test('images, links and device state survive a restart', async (t) => {
  const first = await startOta(t);
  const bytes = firmware(2048);
  await add(first, ID, bytes);
  await link(first, { deviceUid: 'dev1', group: 'g', imageId: ID });
  await first.device(downloadRequest('dev1', ID, 0, 100));
  await first.stop();
  const second = await startOta(t, { dir: first.dir });
  assert.deepEqual((await second.ota.images()).map((i) => i.id), [ID]);
  // Progress below a 10 % step was held in memory and saved on stop.
  assert.equal((await second.ota.deviceState('dev1'))?.bytesServed, 100);
  await second.device(checkRequest('dev1'));
  assert.equal(second.of('OtaResponse').at(-1)?.package?.id, ID);
  await second.device(downloadRequest('dev1', ID, 1024, 2048));
  assert.deepEqual(second.of('OtaDownloadResponse')[0]?.chunk.data, bytes.subarray(1024, 2048));
});
