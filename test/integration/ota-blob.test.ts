// FileBlobStore: content addressing, exact range reads, streaming, bounded handle cache.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { BlobRangeError, FileBlobStore } from '../../src/store/blob-file.js';
import { tempDir } from '../helpers/index.js';
import { firmware } from '../helpers/ota-harness.js';

async function openStore(t: Parameters<typeof tempDir>[0], maxOpenFiles?: number) {
  const dir = await tempDir(t, 'nucleon-blob-');
  const store = new FileBlobStore(dir, maxOpenFiles === undefined ? {} : { maxOpenFiles });
  await store.open();
  t.after(() => store.close());
  return { dir, store };
}

test('put addresses bytes by SHA-256, stores equal bytes once, and reads exact ranges and streams', async (t) => {
  const { dir, store } = await openStore(t);
  const bytes = firmware(70_000);
  const info = await store.put(bytes);
  assert.deepEqual(info, { sha256: createHash('sha256').update(bytes).digest('hex'), size: 70_000 });
  assert.deepEqual(await store.put((async function* () { yield bytes.subarray(0, 1000); yield bytes.subarray(1000); })()), info);
  const listed: string[] = [];
  for await (const sha of store.list()) listed.push(sha);
  assert.deepEqual(listed, [info.sha256]);
  assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
  assert.deepEqual(await store.stat(info.sha256), info);
  assert.deepEqual(await store.readRange(info.sha256, 65_000, 70_000), bytes.subarray(65_000));
  assert.deepEqual(await store.readRange(info.sha256, 5, 5), Buffer.alloc(0));
  assert.deepEqual(await buffer(store.createReadStream(info.sha256)), bytes);
  assert.deepEqual(await buffer(store.createReadStream(info.sha256, { start: 100, end: 4196 })), bytes.subarray(100, 4196));
  assert.deepEqual(await buffer(store.createReadStream(info.sha256, { start: 7, end: 7 })), Buffer.alloc(0));
});

test('reads beyond the end, of absent blobs or with a malformed address are refused', async (t) => {
  const { store } = await openStore(t);
  const { sha256 } = await store.put(firmware(100));
  await assert.rejects(store.readRange(sha256, 90, 101), BlobRangeError);
  await assert.rejects(store.readRange(sha256, 10, 5), BlobRangeError);
  await assert.rejects(store.readRange('0'.repeat(64), 0, 1), { code: 'ENOENT' });
  await assert.rejects(store.readRange('../../etc/passwd', 0, 1), /not a SHA-256 address/);
  assert.equal(await store.stat('f'.repeat(64)), undefined);
  // A failed read leaves the store usable.
  assert.equal((await store.readRange(sha256, 0, 100)).length, 100);
});

test('the handle cache stays within its bound and delete removes the bytes', async (t) => {
  const { store } = await openStore(t, 2);
  const blobs = await Promise.all([1, 2, 3, 4].map((seed) => store.put(firmware(1000, seed))));
  // Concurrent reads across more blobs than cached handles all succeed.
  const reads = await Promise.all(blobs.flatMap((b) => [0, 500].map((start) => store.readRange(b.sha256, start, start + 500))));
  assert.equal(reads.length, 8);
  assert.deepEqual(reads[2], firmware(1000, 2).subarray(0, 500));
  await store.delete(blobs[0]?.sha256 ?? '');
  assert.equal(await store.stat(blobs[0]?.sha256 ?? ''), undefined);
  await store.delete(blobs[0]?.sha256 ?? '');
  await store.close();
  await store.close();
  await assert.rejects(store.readRange(blobs[1]?.sha256 ?? '', 0, 1), /closed/);
});
