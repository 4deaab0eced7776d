// The on-disk spool on real files: order, restart, size limit, segment clean-up,
// and damaged data from a write torn by a crash.
import assert from 'node:assert/strict';
import { open, readdir, truncate, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Spool } from '../../src/influx/index.js';
import { tempDir } from '../helpers/index.js';

async function drain(spool: Spool, limit = 1000): Promise<string[][]> {
  const batches: string[][] = [];
  for (let i = 0; i < limit; i++) {
    const record = await spool.peek();
    if (!record) return batches;
    batches.push([...record.lines]);
    await spool.ack(record);
  }
  throw new Error('spool did not empty');
}

const segmentFiles = async (dir: string) => (await readdir(dir)).filter((name) => name.endsWith('.spool')).sort();

test('records come back in order across segments and restarts; read segments are deleted', async (t) => {
  const dir = await tempDir(t);
  const spool = new Spool({ dir, maxBytes: 1024 * 1024, segmentBytes: 100 });
  t.after(() => spool.close());
  await spool.open();
  for (let i = 0; i < 10; i++) assert.equal(await spool.append([`m v=${i}i ${i}`, `m v=${i}i ${i + 1000}`], 'ms'), true);
  assert.ok((await segmentFiles(dir)).length > 2, 'small segments roll over');
  const first = await spool.peek();
  assert.deepEqual(first?.lines, ['m v=0i 0', 'm v=0i 1000']);
  assert.equal(first?.precision, 'ms');
  assert.deepEqual(await spool.peek(), first, 'peek does not consume');
  if (first) await spool.ack(first);
  await spool.close();

  // A restart: the cursor says where the reader stopped.
  const reopened = new Spool({ dir, maxBytes: 1024 * 1024, segmentBytes: 100 });
  t.after(() => reopened.close());
  await reopened.open();
  assert.ok(reopened.pendingBytes > 0);
  await reopened.append(['m v=10i 10'], 's');
  const rest = await drain(reopened);
  assert.deepEqual(rest, [...[1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => [`m v=${i}i ${i}`, `m v=${i}i ${i + 1000}`]), ['m v=10i 10']]);
  assert.equal(reopened.pendingBytes, 0);
  assert.equal(reopened.isEmpty, true);
  assert.deepEqual(await segmentFiles(dir), [], 'every read segment is gone');
});

test('a record read but not acknowledged before a crash is read again after the restart', async (t) => {
  const dir = await tempDir(t);
  const spool = new Spool({ dir, maxBytes: 1024 * 1024 });
  await spool.open();
  await spool.append(['a v=1 1'], 'ms');
  await spool.append(['b v=2 2'], 'ms');
  const head = await spool.peek();
  assert.deepEqual(head?.lines, ['a v=1 1']);
  // "Crash": no ack, and the process goes away.
  await spool.close();
  const again = new Spool({ dir, maxBytes: 1024 * 1024 });
  t.after(() => again.close());
  await again.open();
  assert.deepEqual(await drain(again), [['a v=1 1'], ['b v=2 2']]);
});

test('the size limit refuses a batch that does not fit, and room comes back as records are acknowledged', async (t) => {
  const dir = await tempDir(t);
  const spool = new Spool({ dir, maxBytes: 1024 });
  t.after(() => spool.close());
  await spool.open();
  const line = `telemetry,id=dev1 rsrp=80i ${'1'.repeat(13)}`;
  let appended = 0;
  while (await spool.append([line], 'ms')) {
    appended++;
    assert.ok(appended < 100, 'the limit holds');
  }
  assert.ok(spool.pendingBytes <= 1024);
  assert.equal(await spool.append([line], 'ms'), false, 'still full');
  const head = await spool.peek();
  assert.ok(head);
  await spool.ack(head);
  assert.equal(await spool.append([line], 'ms'), true, 'room again');
});

test('a torn record at the end of a segment is reported and skipped; later segments are still read', async (t) => {
  const dir = await tempDir(t);
  const first = new Spool({ dir, maxBytes: 1024 * 1024 });
  await first.open();
  await first.append(['a v=1 1'], 'ms');
  await first.append(['b v=2 2'], 'ms');
  await first.close();
  const [segment] = await segmentFiles(dir);
  assert.ok(segment);
  const file = path.join(dir, segment);
  // A crash in the middle of the second append: its last bytes never reached the disk.
  await truncate(file, (await stat(file)).size - 3);

  const corrupt: { reason: string; bytes: number }[] = [];
  const second = new Spool({ dir, maxBytes: 1024 * 1024, onCorrupt: (info) => corrupt.push(info) });
  t.after(() => second.close());
  await second.open();
  await second.append(['c v=3 3'], 'ms');
  assert.deepEqual(await drain(second), [['a v=1 1'], ['c v=3 3']]);
  assert.equal(corrupt.length, 1);
  assert.equal(corrupt[0]?.reason, 'truncated record');
  assert.equal(second.pendingBytes, 0);
});

test('a record whose bytes changed fails its checksum and is skipped', async (t) => {
  const dir = await tempDir(t);
  const spool = new Spool({ dir, maxBytes: 1024 * 1024 });
  await spool.open();
  await spool.append(['a v=1 1'], 'ms');
  await spool.close();
  const [segment] = await segmentFiles(dir);
  assert.ok(segment);
  const handle = await open(path.join(dir, segment), 'r+');
  await handle.write(Buffer.from('X'), 0, 1, 12);
  await handle.close();
  const reasons: string[] = [];
  const reopened = new Spool({ dir, maxBytes: 1024 * 1024, onCorrupt: (info) => reasons.push(info.reason) });
  t.after(() => reopened.close());
  await reopened.open();
  assert.equal(await reopened.peek(), undefined);
  assert.deepEqual(reasons, ['checksum mismatch']);
  assert.equal(reopened.isEmpty, true);
});
