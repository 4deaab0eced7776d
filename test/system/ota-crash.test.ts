// Crash safety of image uploads: an upload cut off part-way (the process killed,
// or the source failing) never becomes a visible image and leaves no bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createNucleon, otaRunnerOf, silentLogger } from '../../src/index.js';
import { FileBlobStore } from '../../src/store/blob-file.js';
import { startProcess, tempDir, waitFor, closeAfter } from '../helpers/index.js';
import { firmware } from '../helpers/ota-harness.js';

function isolated(dir: string) {
  return { store: { path: `${dir}/data` }, certs: { dir: `${dir}/certs`, auto_generate: false }, mqtt: { tls: { enabled: false } }, ota: { http: { enabled: false } }, admin: { enabled: false } };
}

async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) if (entry.isFile()) found.push(path.join(entry.parentPath, entry.name));
  return found;
}

test('an upload killed part-way leaves no image and, after restart, no stray bytes', async (t) => {
  const dir = await tempDir(t, 'nucleon-ota-crash-');
  const fifo = path.join(dir, 'upload.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo failed');
  const child = startProcess(t, process.execPath, ['--import', 'tsx', 'test/helpers/ota-upload-child.ts', dir, fifo]);
  await waitFor(() => child.output().includes('started'), 'the child Nucleon to start', 30_000);
  const writer = await open(fifo, 'w');
  const half = firmware(256 * 1024);
  await writer.write(half);
  const tmpDir = path.join(dir, 'data', 'firmware', 'tmp');
  // The child has written what it read into a temporary file: the upload is in flight.
  const part = await waitFor(async () => {
    for (const name of await readdir(tmpDir)) if ((await stat(path.join(tmpDir, name))).size === half.length) return name;
    return undefined;
  }, 'the partial upload on disk');
  assert.match(part, /\.part$/);
  child.child.kill('SIGKILL');
  assert.equal((await child.exited).signal, 'SIGKILL');
  await writer.close();
  assert.ok(!child.output().includes('added'));

  const nucleon = createNucleon(isolated(dir), { logger: silentLogger() });
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  const ota = otaRunnerOf(nucleon);
  assert.deepEqual(await ota.images(), []);
  assert.deepEqual(await filesUnder(path.join(dir, 'data', 'firmware')), []);
  // The store still works after the crash.
  const { image } = await ota.addImage({ id: '1.2.3-4-g965b9df', imageType: 'primary', source: { kind: 'bytes', data: half } });
  assert.equal(image.size, half.length);
});

test('bytes stored without their image record (a crash between the two) are swept at start', async (t) => {
  const dir = await tempDir(t, 'nucleon-ota-crash-');
  const blobs = new FileBlobStore(path.join(dir, 'data', 'firmware'));
  await blobs.open();
  const orphan = await blobs.put(firmware(1000));
  await blobs.close();
  assert.ok(await blobs.stat(orphan.sha256));
  const nucleon = createNucleon(isolated(dir), { logger: silentLogger() });
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  assert.equal(await blobs.stat(orphan.sha256), undefined);
});

test('a source that fails part-way, or runs past the size limit, leaves nothing in the blob store', async (t) => {
  const dir = await tempDir(t, 'nucleon-ota-crash-');
  const blobs = new FileBlobStore(path.join(dir, 'blobs'));
  await blobs.open();
  t.after(() => blobs.close());
  async function* failing() {
    yield firmware(64 * 1024);
    yield firmware(64 * 1024, 2);
    throw new Error('connection reset by the uploader');
  }
  await assert.rejects(blobs.put(failing()), /connection reset by the uploader/);
  await assert.rejects(blobs.put(firmware(2000), { maxBytes: 1000 }), /larger than the limit of 1000 bytes/);
  assert.deepEqual(await filesUnder(path.join(dir, 'blobs')), []);
});
