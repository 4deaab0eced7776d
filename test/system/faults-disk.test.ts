// Fault injection: the disk fills up while an image is stored. The firmware
// store (<store.path>/firmware) sits on a 256 KiB tmpfs; a 512 KiB image sent
// through the admin endpoint must be refused with a clear STORAGE_FAILED error
// naming the cause, leave no partial image (not listed, not downloadable, no
// bytes, no temporary file), and a small image must work afterwards.
// Without permission to mount (not root), the same is checked in-process with a
// blob store whose writes fail with ENOSPC past a size (an injected failure);
// FAULTS_DISK_INJECT=1 forces that path.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { FileBlobStore } from '../../src/store/blob-file.js';
import type { BlobPutOptions, BlobStore } from '../../src/store/blob.js';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { tempDir } from '../helpers/index.js';
import { firmware, startOta } from '../helpers/ota-harness.js';
import { ADMIN_KEY, startInstance, summary } from '../helpers/reliability-support.js';

const CAPACITY = 256 * 1024;
const BIG_ID = '3.0.0-1-g965b9df';
const SMALL_ID = '3.0.1-1-g965b9df';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

/**
 * A temp dir with a tmpfs of `bytes` at `<dir>/<sub>`; undefined when this
 * process may not mount. One cleanup: unmount (lazily, the server may still
 * hold files), then remove the dir.
 */
async function tmpfsDir(t: TestContext, sub: string, bytes: number): Promise<string | undefined> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-faults-disk-'));
  const mountPoint = path.join(dir, sub);
  await mkdir(mountPoint, { recursive: true });
  // FAULTS_DISK_INJECT=1 takes the injected-failure path even where mounting works.
  const mounted =
    process.env.FAULTS_DISK_INJECT === '1'
      ? { status: 1, stderr: 'FAULTS_DISK_INJECT=1' }
      : spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', mountPoint], { encoding: 'utf8' });
  t.after(async () => {
    if (mounted.status === 0) spawnSync('umount', ['-l', mountPoint]);
    await rm(dir, { recursive: true, force: true });
  });
  if (mounted.status !== 0) {
    process.stdout.write(`[faults disk] cannot mount a tmpfs (${mounted.stderr.trim() || `exit ${mounted.status}`}); using an injected ENOSPC instead\n`);
    return undefined;
  }
  return dir;
}

test('disk full while storing an image: a clear STORAGE_FAILED error, no partial image, and the store works again', async (t) => {
  const dir = await tmpfsDir(t, 'data/firmware', CAPACITY);
  if (dir === undefined) {
    await injectedFailure(t);
    return;
  }
  const firmwareDir = path.join(dir, 'data', 'firmware');
  const instance = await startInstance(t, { dir });
  const admin = await AdminTestClient.connect(t, `ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });

  const big = firmware(2 * CAPACITY, 3);
  const refused = await admin.request('images.add', { id: BIG_ID, data: big }, 'cbor');
  assert.equal(refused.ok, false);
  assert.equal(refused.error?.code, 'STORAGE_FAILED');
  assert.match(refused.error?.message ?? '', /no space left|ENOSPC/i);

  const listed = await admin.request('images.list');
  assert.deepEqual(listed.result.images, [], 'no image record');
  assert.deepEqual(await filesUnder(firmwareDir), [], 'no bytes and no temporary file left on the full disk');
  const download = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/${BIG_ID}`);
  assert.equal(download.status, 404);
  await download.arrayBuffer();

  // The space came back with the failed write: a small image fits and downloads intact.
  const small = firmware(CAPACITY / 4, 4);
  const stored = await admin.request('images.add', { id: SMALL_ID, data: small }, 'cbor');
  assert.equal(stored.ok, true, JSON.stringify(stored));
  const fetched = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/${SMALL_ID}`);
  assert.ok(Buffer.from(await fetched.arrayBuffer()).equals(small));
  assert.ok(instance.alive());
  summary('faults disk-full', { via: 'tmpfs', capacityBytes: CAPACITY, refusedBytes: big.length, error: JSON.stringify(refused.error?.message ?? '').slice(0, 120), afterwards: 'small image stored and served' });
});

/** A file blob store whose writes fail with ENOSPC once `capacity` bytes would be exceeded. */
class FullDiskBlobs implements BlobStore {
  private readonly inner: FileBlobStore;

  constructor(
    readonly dir: string,
    private readonly capacity: number,
  ) {
    this.inner = new FileBlobStore(dir);
  }

  open = () => this.inner.open();
  close = () => this.inner.close();
  stat = (sha256: string) => this.inner.stat(sha256);
  readRange = (sha256: string, start: number, end: number) => this.inner.readRange(sha256, start, end);
  createReadStream = (sha256: string, range?: { start: number; end: number }) => this.inner.createReadStream(sha256, range);
  delete = (sha256: string) => this.inner.delete(sha256);
  list = () => this.inner.list();

  put(source: AsyncIterable<Uint8Array> | Uint8Array, options?: BlobPutOptions) {
    const capacity = this.capacity;
    async function* limited(): AsyncIterable<Uint8Array> {
      let written = 0;
      for await (const chunk of source instanceof Uint8Array ? [source] : source) {
        for (let at = 0; at < chunk.byteLength; at += 16 * 1024) {
          const piece = chunk.subarray(at, at + 16 * 1024);
          written += piece.byteLength;
          if (written > capacity) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          yield piece;
        }
      }
    }
    return this.inner.put(limited(), options);
  }
}

async function injectedFailure(t: TestContext): Promise<void> {
  const dir = await tempDir(t, 'nucleon-faults-disk-');
  const blobs = new FullDiskBlobs(path.join(dir, 'blobs'), CAPACITY);
  const harness = await startOta(t, { blobs, http: true });
  await assert.rejects(harness.ota.addImage({ id: BIG_ID, imageType: 'primary', source: { kind: 'bytes', data: firmware(2 * CAPACITY, 3) } }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'STORAGE_FAILED');
    assert.match(error.message, /no space left/);
    return true;
  });
  assert.deepEqual(await harness.ota.images(), []);
  assert.deepEqual(await filesUnder(path.join(dir, 'blobs')), []);
  const small = firmware(CAPACITY / 4, 4);
  await harness.ota.addImage({ id: SMALL_ID, imageType: 'primary', source: { kind: 'bytes', data: small } });
  assert.equal((await harness.ota.images()).length, 1);
  summary('faults disk-full', { via: 'injected ENOSPC', capacityBytes: CAPACITY });
}
