// The revocation list (src/revocation) on the embedded store with the in-process channel.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/logger.js';
import { LocalChannel, normalizeSerial, RevocationService, type Notice } from '../../src/revocation/index.js';
import { LevelStore } from '../../src/store/index.js';
import { HeldStore } from '../helpers/held-store.js';
import { tempDir, waitFor } from '../helpers/index.js';

async function openStore(t: TestContext, dir?: string): Promise<{ store: LevelStore; dir: string }> {
  const where = dir ?? (await tempDir(t));
  const store = new LevelStore(path.join(where, 'kv'));
  await store.open();
  t.after(() => store.close());
  return { store, dir: where };
}

async function service(t: TestContext, store: LevelStore, now: () => number = Date.now): Promise<{ revocations: RevocationService; notices: Notice[] }> {
  const revocations = new RevocationService(store, new LocalChannel(), silentLogger(), now);
  const notices: Notice[] = [];
  revocations.onNotice((notice) => notices.push(notice));
  await revocations.start();
  t.after(() => revocations.stop());
  return { revocations, notices };
}

test('a revoked uid is refused (every certificate and its password) and announced; unrevoke lifts it; kick only announces', async (t) => {
  const { store } = await openStore(t);
  const { revocations, notices } = await service(t, store);
  assert.equal(revocations.check({ uid: 'dev-1' }), undefined);
  const entry = await revocations.revoke({ uid: 'dev-1' }, { reason: 'stolen', by: 'test' });
  assert.equal(revocations.check({ uid: 'dev-1' })?.reason, 'stolen');
  assert.equal(revocations.check({ uid: 'dev-1', serial: 'ABCDEF' }), entry, 'any certificate of the device');
  assert.equal(revocations.check({ uid: 'dev-2' }), undefined);
  assert.deepEqual(notices, [{ kind: 'revoked', uid: 'dev-1' }]);
  assert.deepEqual(await store.get('revocations/uid/dev-1'), entry);

  assert.equal(await revocations.unrevoke('dev-1'), true);
  assert.equal(revocations.check({ uid: 'dev-1' }), undefined);
  assert.equal(await revocations.unrevoke('dev-1'), false);
  assert.equal(await store.get('revocations/uid/dev-1'), undefined);

  await revocations.kick('dev-2');
  assert.deepEqual(notices.at(-1), { kind: 'kick', uid: 'dev-2' });
  assert.deepEqual(revocations.list(), []);
});

test('a serial revoked for later is refused from effectiveAt on, matched whatever its case and leading zeros, and rechecked when its time comes', async (t) => {
  const { store } = await openStore(t);
  let now = 1_000_000;
  const { revocations, notices } = await service(t, store, () => now);
  await revocations.revoke({ serial: '00:0A:BC', uid: 'dev-3' }, { reason: 'rotated', by: 'test', effectiveAt: now + 60_000 });
  assert.equal(revocations.check({ uid: 'dev-3', serial: 'abc' }), undefined, 'not yet: the grace period');
  assert.deepEqual(notices, []);
  now += 60_000;
  assert.equal(revocations.check({ uid: 'dev-3', serial: 'ABC' })?.reason, 'rotated');
  assert.equal(revocations.check({ uid: 'dev-3', serial: '0abd' }), undefined, 'another certificate of the device');
  assert.equal(revocations.check({ uid: 'dev-3' }), undefined, 'the device itself is not revoked');
  assert.equal(normalizeSerial('00:0A:BC'), 'abc');
});

test('the timer announces a recheck when a grace period ends; the list survives a restart', async (t) => {
  const { store } = await openStore(t);
  const first = await service(t, store);
  await first.revocations.revoke({ serial: 'ff01' }, { reason: 'rotated', by: 'test', effectiveAt: Date.now() + 100 });
  await first.revocations.revoke({ uid: 'dev-4' }, { reason: 'retired', by: 'test' });
  await waitFor(() => first.notices.some((notice) => notice.kind === 'recheck'), 'a recheck at the end of the grace period', 2000);
  await first.revocations.stop();

  const second = await service(t, store);
  assert.deepEqual(
    second.revocations.list().map((entry) => entry.uid ?? entry.serial),
    ['ff01', 'dev-4'],
  );
  assert.equal(second.revocations.check({ uid: 'x', serial: 'FF01' })?.reason, 'rotated');
});

test('a revocation is in force on its instance before the store write ends (announced once, refused meanwhile); a write that fails takes it back', async (t) => {
  const dir = await tempDir(t);
  const store = new HeldStore(path.join(dir, 'kv'));
  store.holding = true;
  await store.open();
  t.after(() => store.close());
  const { revocations, notices } = await service(t, store);

  const revoking = revocations.revoke({ uid: 'dev-1' }, { reason: 'stolen', by: 'test' });
  await waitFor(() => store.waiting === 1, 'the store write to start');
  assert.deepEqual(notices, [{ kind: 'revoked', uid: 'dev-1' }], 'announced while the write waits');
  assert.equal(revocations.check({ uid: 'dev-1' })?.reason, 'stolen');
  store.releaseOne();
  const entry = await revoking;
  assert.deepEqual(notices, [{ kind: 'revoked', uid: 'dev-1' }], 'announced once, not again when the channel brings it back');
  assert.deepEqual(await store.get('revocations/uid/dev-1'), entry);

  store.failWith = new Error('no space left on device');
  const failing = revocations.revoke({ uid: 'dev-2' }, { reason: 'retired', by: 'test' });
  await waitFor(() => store.waiting === 1, 'the second store write to start');
  assert.equal(revocations.check({ uid: 'dev-2' })?.reason, 'retired', 'refused while the write waits');
  store.releaseOne();
  await assert.rejects(failing, /no space left on device/);
  assert.equal(revocations.check({ uid: 'dev-2' }), undefined, 'not stored, so not revoked');
  assert.equal(await store.get('revocations/uid/dev-2'), undefined);
  assert.equal(revocations.check({ uid: 'dev-1' })?.reason, 'stolen', 'the first revocation stays');
  assert.deepEqual(
    revocations.list().map((r) => r.uid),
    ['dev-1'],
  );
});
