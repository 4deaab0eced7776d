// FirmwareStates against a real LevelStore that counts its reads and writes:
// telemetry repeats the device's version in every message, and a repeat must
// cost no store access (issue 8, scenario 8), while every change is still saved.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type { DeviceFirmwareState } from '../../src/events.js';
import { FirmwareStates } from '../../src/ota/firmware-state.js';
import { HeldStore } from '../helpers/held-store.js';
import { tempDir, waitFor } from '../helpers/index.js';

const V1 = '1.2.3-4-g965b9df';
const V2 = '1.3.0-0-gaaaaaaa';

/** Counts the reads too; writes are counted, held and failed on demand by HeldStore, and go to a real LevelStore. */
class CountingStore extends HeldStore {
  gets = 0;
  override get<T>(key: string): Promise<T | undefined> {
    this.gets++;
    return super.get<T>(key);
  }
}

async function setup(t: TestContext, maxRememberedVersions?: number): Promise<{ store: CountingStore; states: FirmwareStates; changes: DeviceFirmwareState[]; behindErrors: [string, string][] }> {
  const dir = await tempDir(t, 'nucleon-fwstate-');
  const store = new CountingStore(path.join(dir, 'kv'));
  await store.open();
  t.after(() => store.close());
  const changes: DeviceFirmwareState[] = [];
  const behindErrors: [string, string][] = [];
  const states = new FirmwareStates({
    store,
    clock: () => new Date('2026-11-01T12:00:00Z'),
    onChange: (state) => changes.push(state),
    onBehindError: (error, uid) => behindErrors.push([uid, (error as Error).message]),
    ...(maxRememberedVersions === undefined ? {} : { maxRememberedVersions }),
  });
  return { store, states, changes, behindErrors };
}

/**
 * Holds the store's writes and starts dev1's first progress save (100 bytes
 * of `image`), returned once it waits there: what is served to dev1 next joins
 * the batch behind it.
 */
async function firstSaveHeld(store: CountingStore, states: FirmwareStates, image: { id: string; size: number }): Promise<{ first: Promise<DeviceFirmwareState | undefined> }> {
  store.holding = true;
  const first = states.served('dev1', image, 100);
  await waitFor(() => store.waiting === 1, 'the first progress save to reach the store');
  // Wrapped: an async function returning the promise itself would wait for it, and the store holds it.
  return { first };
}

test('a repeated telemetry version costs no store read or write; a change is saved and announced once', async (t) => {
  const { store, states, changes } = await setup(t);
  assert.equal(await states.reported('dev1', V1), true);
  assert.deepEqual([store.gets, store.puts, changes.length], [1, 1, 1]);
  for (let i = 0; i < 1000; i++) assert.equal(await states.reported('dev1', V1), false);
  assert.deepEqual([store.gets, store.puts, changes.length], [1, 1, 1]);
  assert.equal(await states.reported('dev1', V2), true);
  assert.deepEqual([store.gets, store.puts, changes.length], [2, 2, 2]);
  assert.equal((await states.get('dev1'))?.reportedVersion, V2);
  // Back to the first version (a rollback) is a change too.
  await states.reported('dev1', V1);
  assert.equal((await states.get('dev1'))?.reportedVersion, V1);
  assert.equal(changes.length, 3);
});

test('reports queued back to back keep the newest version, also when they alternate', async (t) => {
  const { states } = await setup(t);
  // Not awaited one by one: V2 is queued while V1 is still being saved.
  await Promise.all([states.reported('dev1', V1), states.reported('dev1', V2), states.reported('dev1', V1)]);
  assert.equal((await states.get('dev1'))?.reportedVersion, V1);
});

test('after forgetReported (a device connects) the next report is checked against the store', async (t) => {
  const { store, states } = await setup(t);
  await states.reported('dev1', V1);
  // Another instance of a cluster saved a newer version for this device.
  await store.put('ota/state/dev1', { uid: 'dev1', bytesServed: 0, reportedVersion: V2 });
  states.forgetReported('dev1');
  const gets = store.gets;
  assert.equal(await states.reported('dev1', V1), true);
  assert.equal(store.gets, gets + 1);
  assert.equal((await states.get('dev1'))?.reportedVersion, V1);
});

test('a report that could not be saved is tried again with the next telemetry', async (t) => {
  const { store, states } = await setup(t);
  store.failWith = new Error('disk full (test)');
  await assert.rejects(states.reported('dev1', V1), /disk full/);
  store.failWith = undefined;
  assert.equal(await states.reported('dev1', V1), true);
  assert.equal((await states.get('dev1'))?.reportedVersion, V1);
});

test('the remembered versions are bounded: the least recently reported device is read again', async (t) => {
  const { store, states } = await setup(t, 2);
  await states.reported('a', V1);
  await states.reported('b', V1);
  await states.reported('a', V1); // a is now the most recent
  await states.reported('c', V1); // evicts b
  const gets = store.gets;
  assert.equal(await states.reported('a', V1), false);
  assert.equal(await states.reported('c', V1), false);
  assert.equal(store.gets, gets);
  assert.equal(await states.reported('b', V1), true);
  assert.equal(store.gets, gets + 1);
});

test('a version longer than a version id can be is never stored nor remembered', async (t) => {
  const { store, states, changes } = await setup(t);
  await assert.rejects(states.reported('dev1', 'v'.repeat(200_000)), RangeError);
  assert.equal(store.puts, 0);
  assert.equal(changes.length, 0);
  assert.equal(await states.get('dev1'), undefined);
});

test('download progress is announced per step and once the whole image is served; bytes served after that are announced too', async (t) => {
  const { states, changes } = await setup(t);
  const image = { id: V2, size: 1000 };
  for (let i = 0; i < 10; i++) await states.served('dev1', image, 100);
  // Steps of 10%: one announcement per chunk of a tenth, the last one for the whole image.
  assert.deepEqual(changes.map((c) => c.bytesServed), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
  // The last chunk asked again (its answer was lost with the connection): the device has not rebooted.
  await states.served('dev1', image, 100);
  assert.equal(changes.at(-1)?.bytesServed, 1100);
  assert.equal(changes.length, 11);
  // Asked again within the same step beyond the image: counted, not announced again.
  await states.served('dev1', image, 1);
  assert.equal(changes.length, 11);
  assert.equal((await states.get('dev1'))?.bytesServed, 1101);
});

test('while a progress save waits for the store, bytes served to a device join one batch: one queued save per device, no byte lost', async (t) => {
  const { store, states, changes } = await setup(t);
  const image = { id: V2, size: 1000 };
  const { first } = await firstSaveHeld(store, states, image);
  // A chunk every few milliseconds while the disk is slow: none of these waits for the save above on its own.
  const dev1 = Array.from({ length: 9 }, () => states.served('dev1', image, 100));
  const dev2 = Array.from({ length: 5 }, () => states.served('dev2', image, 100));
  store.release();
  await first;
  const counted = await Promise.all([...dev1, ...dev2]);
  assert.equal(store.puts, 3, 'the first save, then one per device for everything that waited');
  assert.deepEqual(new Set(counted.slice(0, 9).map((state) => state?.bytesServed)), new Set([1000]));
  assert.deepEqual(new Set(counted.slice(9).map((state) => state?.bytesServed)), new Set([500]));
  assert.deepEqual(changes.map((c) => [c.uid, c.bytesServed]), [['dev1', 100], ['dev1', 1000], ['dev2', 500]]);
  assert.equal((await store.get<DeviceFirmwareState>('ota/state/dev1'))?.bytesServed, 1000);
  assert.equal((await store.get<DeviceFirmwareState>('ota/state/dev2'))?.bytesServed, 500);
});

test('bytes of another image waiting in a batch are replaced, as counting them in order would have reset them', async (t) => {
  const { store, states } = await setup(t);
  const { first } = await firstSaveHeld(store, states, { id: V2, size: 1000 });
  const old = states.served('dev1', { id: V2, size: 1000 }, 300);
  const rollback = states.served('dev1', { id: V1, size: 2000 }, 200);
  store.release();
  await first;
  assert.equal(await old, await rollback, 'one batch');
  assert.deepEqual(await states.get('dev1'), { uid: 'dev1', bytesServed: 200, downloadImageId: V1, lastDownloadAt: '2026-11-01T12:00:00Z' });
});

test('a batch saved behind the answers that fails is reported once, however many calls joined it; their promises resolve to nothing', async (t) => {
  const { store, states, behindErrors } = await setup(t);
  const image = { id: V2, size: 1000 };
  const { first } = await firstSaveHeld(store, states, image);
  const joined = Array.from({ length: 5 }, () => states.served('dev1', image, 100));
  store.failWith = new Error('disk full (test)');
  store.release();
  assert.equal(await first, undefined);
  assert.deepEqual(await Promise.all(joined), [undefined, undefined, undefined, undefined, undefined]);
  assert.deepEqual(behindErrors, [
    ['dev1', 'disk full (test)'],
    ['dev1', 'disk full (test)'],
  ]);
});
