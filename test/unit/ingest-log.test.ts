// The ingest log on disk (src/ingest/): group commit, reading back across
// segments, torn tails and damaged records, retention, cursors, the size
// limit; and the broker feeding durable runners from it, live and after a
// restart.
import assert from 'node:assert/strict';
import { mkdir, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import type { DeviceEvent, Event } from '../../src/events.js';
import { IngestLog, SegmentLog, deviceEvent, type DeviceMessage, type LogRecord } from '../../src/ingest/index.js';
import { decodeRecord } from '../../src/ingest/record.js';
import { SPACED_BELOW_RECORDS } from '../../src/ingest/segment-log.js';
import { LEASE_SIZE } from '../../src/ingest/seq-lease.js';
import { silentLogger } from '../../src/logger.js';
import { tempDir, waitFor } from '../helpers/index.js';

function message(n: number, size = 40): DeviceMessage {
  return { kind: 'app', uid: `dev-${n % 7}`, target: `t/${n}`, payload: Buffer.alloc(size, n % 251), receivedAt: 1_700_000_000_000 + n, qos: 1 };
}

async function appendAll(log: SegmentLog, count: number, size = 40): Promise<number[]> {
  const seqs: number[] = [];
  for (let n = 0; n < count; n++) seqs.push(log.append(message(n, size)));
  await log.flushed();
  return seqs;
}

async function readAll(log: SegmentLog, from = 1): Promise<LogRecord[]> {
  const reader = log.reader(from);
  const out: LogRecord[] = [];
  for (let i = 0; i < 100_000; i++) {
    const records = await reader.next(4096);
    if (records.length === 0) return out;
    out.push(...records);
  }
  throw new Error('reader never caught up');
}

test('group commit: many appends become few writes, read back in order and intact, across segments', async (t) => {
  const dir = await tempDir(t);
  const batches: number[] = [];
  const log = new SegmentLog({ dir, durability: 'fsync', segmentBytes: 8 * 1024, onDurable: (_seq, stats) => batches.push(stats.records) });
  await log.open();
  const seqs = await appendAll(log, 1000);
  assert.deepEqual(seqs, Array.from({ length: 1000 }, (_, i) => i + 1));
  assert.equal(log.durableSeq, 1000);
  assert.ok(batches.length < 50, `1000 appends in one turn took ${batches.length} writes`);
  // One batch may overshoot a segment; the next batch starts a new one.
  const more = [];
  for (let round = 0; round < 20; round++) more.push(...(await appendAll(log, 10)));
  assert.ok(log.segmentCount > 2, `segments: ${log.segmentCount}`);
  const records = await readAll(log);
  assert.deepEqual(
    records.map((r) => r.seq),
    Array.from({ length: 1200 }, (_, i) => i + 1),
  );
  const sample = records[499];
  assert.ok(sample);
  assert.deepEqual({ ...sample, payload: Buffer.from(sample.payload) }, { seq: 500, ...message(499), payload: Buffer.from(message(499).payload) });
  // A reader that starts in the middle finds its place (through the sparse index or a scan).
  assert.deepEqual(
    (await readAll(log, 777)).map((r) => r.seq)[0],
    777,
  );
  await log.close();
});

test('"fsync": a spare segment of zeros is ready after open; the next segment is made from it, another spare follows, zeros are cut at reopen', async (t) => {
  const dir = await tempDir(t);
  const segmentBytes = 64 * 1024;
  const log = new SegmentLog({ dir, durability: 'fsync', segmentBytes });
  await log.open();
  const spare = path.join(dir, 'next.seg.tmp');
  const exists = (file: string) => stat(file).then(() => true, () => false);
  const segmentFiles = async () => (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();

  await waitFor(() => log.spareReady, 'the spare segment, written and synced');
  assert.equal((await stat(spare)).size, segmentBytes);

  // Records up to the next segment: it is the spare, renamed, full size on disk from its first record on.
  let appended = 0;
  while ((await segmentFiles()).length < 2) {
    await appendAll(log, 20, 100);
    appended += 20;
  }
  const newest = (await segmentFiles()).at(-1) ?? '';
  assert.equal((await stat(path.join(dir, newest))).size, segmentBytes, `${newest} was not made from the spare`);
  await waitFor(() => log.spareReady, 'a new spare for the segment after it');
  assert.equal((await stat(spare)).size, segmentBytes);
  assert.deepEqual(
    (await readAll(log)).map((r) => r.seq),
    Array.from({ length: appended }, (_, i) => i + 1),
  );
  await log.close();

  // Reopened: the zeros after the last record are cut, and every record reads back.
  const reopened = new SegmentLog({ dir, durability: 'fsync', segmentBytes });
  await reopened.open();
  assert.ok((await stat(path.join(dir, newest))).size < segmentBytes);
  assert.equal((await readAll(reopened)).length, appended);
  await reopened.close();
  assert.equal(await exists(path.join(dir, newest)), true);
});

/** Writes for real; the calls listed in `hold` wait for `release()` after writing (and throw if told to). */
function scriptedWrites(hold: Map<number, { fail: boolean }>) {
  const calls: { position: number; length: number; done: boolean }[] = [];
  const held: (() => void)[] = [];
  const writeAt = async (handle: import('node:fs/promises').FileHandle, buffer: Buffer, length: number, position: number) => {
    const call = { position, length, done: false };
    calls.push(call);
    const script = hold.get(calls.length);
    const { bytesWritten } = await handle.write(buffer, 0, length, position);
    assert.equal(bytesWritten, length);
    if (script) {
      await new Promise<void>((resolve) => held.push(resolve));
      if (script.fail) throw new Error('scripted write failure');
    }
    call.done = true;
  };
  return { calls, writeAt, release: () => held.shift()?.() };
}

test('a slow write lets the next batch start beside it; the second is durable only after the first, and both read back', async (t) => {
  const dir = await tempDir(t);
  const durable: number[] = [];
  const writes = scriptedWrites(new Map([[1, { fail: false }]]));
  const log = new SegmentLog({ dir, durability: 'fsync', segmentBytes: 1024 * 1024, writeAt: writes.writeAt, onDurable: (seq) => durable.push(seq) });
  await log.open();
  for (let n = 0; n < 10; n++) log.append(message(n));
  await waitFor(() => writes.calls.length === 1, 'the first write started');
  for (let n = 10; n < 20; n++) log.append(message(n));
  await waitFor(() => writes.calls[1]?.done === true, 'the second batch written beside the slow first');
  const [first, second] = writes.calls;
  assert.equal(second?.position, (first?.position ?? 0) + (first?.length ?? 0), 'the second batch goes right after the first');
  assert.deepEqual(durable, [], 'nothing is durable while the first write runs');
  assert.equal(log.durableSeq, 0);
  writes.release();
  await log.flushed();
  assert.deepEqual(durable, [10, 20]);
  await log.close();
  const reopened = new SegmentLog({ dir, durability: 'fsync', segmentBytes: 1024 * 1024 });
  const recovery = await reopened.open();
  t.after(() => reopened.close());
  assert.equal(recovery.damagedRecords, 0);
  assert.deepEqual(
    (await readAll(reopened)).map((r) => r.seq),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

test('a slow write that then fails is retried in its place; the batch written beside it waits for it', async (t) => {
  const dir = await tempDir(t);
  const durable: number[] = [];
  const writes = scriptedWrites(new Map([[1, { fail: true }]]));
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1024 * 1024, writeAt: writes.writeAt, onDurable: (seq) => durable.push(seq) });
  await log.open();
  t.after(() => log.close());
  for (let n = 0; n < 10; n++) log.append(message(n));
  await waitFor(() => writes.calls.length === 1, 'the first write started');
  for (let n = 10; n < 20; n++) log.append(message(n));
  await waitFor(() => writes.calls[1]?.done === true, 'the second batch written');
  writes.release();
  await waitFor(() => log.failing, 'the first write failed');
  assert.deepEqual(durable, []);
  await log.flushed();
  assert.equal(writes.calls.length, 3);
  assert.equal(writes.calls[2]?.position, writes.calls[0]?.position, 'the retry writes the same place');
  assert.deepEqual(durable, [10, 20]);
  assert.equal(log.failing, false);
  assert.deepEqual(
    (await readAll(log)).map((r) => r.seq),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

test('a torn tail is cut at reopen, counted, and appends continue after the last good record', async (t) => {
  const dir = await tempDir(t);
  const first = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20 });
  await first.open();
  await appendAll(first, 100);
  await first.close();
  const [segment] = (await readdir(dir)).filter((name) => name.endsWith('.seg'));
  assert.ok(segment);
  const file = path.join(dir, segment);
  const size = (await stat(file)).size;
  await truncate(file, size - 17); // half of the last record
  const damage: string[] = [];
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, onDamage: (report) => damage.push(report.reason) });
  const recovery = await log.open();
  assert.equal(recovery.nextSeq, 100, 'record 100 was torn: the next append reuses its number');
  assert.ok(recovery.truncatedBytes > 0);
  assert.deepEqual(damage, ['torn or damaged tail cut']);
  await appendAll(log, 5);
  assert.deepEqual(
    (await readAll(log)).map((r) => r.seq),
    Array.from({ length: 104 }, (_, i) => i + 1),
  );
  await log.close();
});

for (const [where, at] of [
  ['its payload', (start: number, size: number) => start + size - 5],
  ['its length field', (start: number) => start + 1],
] as const) {
  test(`a flipped byte in the middle (${where}): that record is skipped and counted, the ones after it are read`, async (t) => {
    const dir = await tempDir(t);
    const first = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20 });
    await first.open();
    await appendAll(first, 50);
    await first.close();
    const [segment] = (await readdir(dir)).filter((name) => name.endsWith('.seg'));
    const file = path.join(dir, segment ?? '');
    const bytes = await readFile(file);
    let start = 0;
    for (let i = 0; i < 19; i++) {
      const result = decodeRecord(bytes, start, bytes.length);
      assert.equal(result.kind, 'record');
      if (result.kind === 'record') start += result.size;
    }
    const twenty = decodeRecord(bytes, start, bytes.length);
    assert.ok(twenty.kind === 'record' && twenty.record.seq === 20);
    const index = at(start, twenty.size);
    bytes[index] = (bytes[index] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const damage: string[] = [];
    const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, onDamage: (report) => damage.push(report.reason) });
    const recovery = await log.open();
    assert.equal(recovery.damagedRecords, 1);
    assert.equal(recovery.nextSeq, 51);
    const seqs = (await readAll(log)).map((r) => r.seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: 50 }, (_, i) => i + 1).filter((n) => n !== 20),
    );
    assert.equal(damage.length, 1, damage.join(', '));
    await log.close();
  });
}

test('damage in an older segment is found when it is read: skipped, counted, reading goes on', async (t) => {
  const dir = await tempDir(t);
  const first = new SegmentLog({ dir, durability: 'write', segmentBytes: 2048 });
  await first.open();
  for (let i = 0; i < 10; i++) await appendAll(first, 20);
  await first.close();
  const segments = (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
  assert.ok(segments.length >= 3);
  const handle = await open(path.join(dir, segments[0] ?? ''), 'r+');
  await handle.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, 300);
  await handle.close();
  const damage: string[] = [];
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 2048, onDamage: (report) => damage.push(report.reason) });
  await log.open();
  const seqs = (await readAll(log)).map((r) => r.seq);
  assert.ok(damage.length >= 1, 'counted');
  assert.ok(seqs.length >= 195 && seqs.length < 200, `${seqs.length} of 200 read`);
  assert.equal(seqs.at(-1), 200);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  await log.close();
});

test('retention: whole segments before a position are deleted; the last one only once it is all passed', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1024 });
  await log.open();
  for (let i = 0; i < 10; i++) await appendAll(log, 20);
  const before = log.segmentCount;
  const bytes = log.retainedBytes;
  const freed = await log.deleteThrough(100);
  assert.ok(freed > 0 && log.retainedBytes === bytes - freed);
  assert.ok(log.firstSeq <= 101, 'record 101 is kept');
  assert.ok(log.segmentCount < before);
  await log.deleteThrough(199);
  assert.equal(log.segmentCount, 1, 'the segment holding 200 stays');
  assert.deepEqual((await readAll(log, log.firstSeq)).at(-1)?.seq, 200);
  await log.deleteThrough(200);
  assert.equal(log.segmentCount, 0);
  assert.equal(log.retainedBytes, 0);
  await appendAll(log, 3);
  assert.deepEqual(
    (await readAll(log, 1)).map((r) => r.seq),
    [201, 202, 203],
  );
  await log.close();
});

// ---- the broker and durable runners -------------------------------------------

interface Setup {
  log: IngestLog;
  broker: EventBroker;
  handled: DeviceEvent[];
}

interface SetupOptions {
  inbox?: number;
  handle?: (event: DeviceEvent) => Promise<void> | void;
  maxBytes?: number;
  segmentBytes?: number;
  writeAt?: ReturnType<typeof scriptedWrites>['writeAt'];
  leaseSize?: number;
  qos0CommitDelayMs?: number;
}

async function setup(dir: string, options: SetupOptions = {}): Promise<Setup> {
  const metrics = new Registry();
  const log = new IngestLog({
    dir,
    durability: 'fsync',
    maxBytes: options.maxBytes ?? 1 << 30,
    segmentBytes: options.segmentBytes ?? 4096,
    cursorSaveMs: 20,
    logger: silentLogger(),
    metrics,
    ...(options.writeAt ? { writeAt: options.writeAt } : {}),
    ...(options.leaseSize ? { leaseSize: options.leaseSize } : {}),
    ...(options.qos0CommitDelayMs !== undefined ? { qos0CommitDelayMs: options.qos0CommitDelayMs } : {}),
  });
  await log.open();
  const broker = new EventBroker({ inboxSize: options.inbox ?? 64, maxWaiters: 10, logger: silentLogger(), metrics, log });
  broker.start();
  const handled: DeviceEvent[] = [];
  broker.register({
    type: 'NewRunner',
    name: 'app',
    accepts: ['ApplicationRequest'],
    inbox: {
      durable: 'handled',
      handle: async (event: Event) => {
        handled.push(event as DeviceEvent);
        await options.handle?.(event as DeviceEvent);
      },
    },
  });
  return { log, broker, handled };
}

function ingest(broker: EventBroker, n: number, acks: number[], qos: DeviceMessage['qos'] = 1): void {
  const msg = { ...message(n), qos };
  const decoded = deviceEvent(msg);
  assert.ok(decoded.ok);
  assert.equal(
    broker.ingest(decoded.event, msg, () => acks.push(n)),
    true,
  );
}

test('a durable runner gets every event once, with its log position, lagging in memory and then on disk; acknowledgements only after the write', async (t) => {
  const dir = await tempDir(t);
  // An inbox of 4 lets 1,024 events wait in memory; the rest of 3,000 are read back from disk.
  const { log, broker, handled } = await setup(dir, { inbox: 4, handle: () => new Promise((resolve) => setImmediate(resolve)) });
  const acks: number[] = [];
  for (let n = 0; n < 3000; n++) ingest(broker, n, acks);
  assert.equal(acks.length, 0, 'nothing acknowledged before the batch is durable');
  await waitFor(() => acks.length === 3000, 'every message acknowledged');
  assert.equal(broker.stats().find((s) => s.name === 'app')?.ingest?.lagging, true);
  await waitFor(() => handled.length === 3000, 'every event handled');
  assert.deepEqual(
    handled.map((e) => e.log?.seq),
    Array.from({ length: 3000 }, (_, i) => i + 1),
  );
  await waitFor(() => broker.stats().find((s) => s.name === 'app')?.ingest?.lagging === false, 'live again');
  assert.ok(handled.every((e) => e.log?.replay === false && e.log.id === `${log.logId}:${e.log.seq}`));
  await broker.stop(1000);
  await log.close(1000);
});

test('after a crash, a durable runner is handed what it had not finished, marked as replays with the same ids', async (t) => {
  const dir = await tempDir(t);
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const first = await setup(dir, { inbox: 8, handle: (event) => (event.log && event.log.seq > 30 ? stuck : undefined) });
  const acks: number[] = [];
  for (let n = 0; n < 100; n++) ingest(first.broker, n, acks);
  await waitFor(() => acks.length === 100 && first.handled.length === 31, 'acknowledged, 30 handled, the 31st stuck');
  const ids = new Map(first.handled.map((e) => [e.log?.seq, e.log?.id]));
  // Wait for a cursor save with the runner stuck at 31, then "crash": no stop, no close.
  await waitFor(async () => JSON.parse(await readFile(path.join(dir, 'cursors.json'), 'utf8')).cursors.app === 30, 'cursor 30 saved');
  void release;
  const second = await setup(dir);
  await waitFor(() => second.handled.length === 70, 'the 70 unfinished events handed out again');
  assert.deepEqual(
    second.handled.map((e) => e.log?.seq),
    Array.from({ length: 70 }, (_, i) => i + 31),
  );
  assert.ok(second.handled.every((e) => e.log?.replay === true));
  assert.equal(second.handled[0]?.log?.id, ids.get(31), 'the same id as before the crash');
  // New events after the replay are live, numbered after the lease of the crashed run (it may have handed out up to it).
  const acks2: number[] = [];
  ingest(second.broker, 1000, acks2);
  await waitFor(() => second.handled.length === 71, 'a new event');
  assert.equal(second.handled[70]?.log?.replay, false);
  assert.equal(second.handled[70]?.log?.seq, LEASE_SIZE + 1);
  assert.equal(second.broker.stats().find((s) => s.name === 'app')?.ingest?.lagEvents, 0, 'the skipped numbers are not lag');
  await second.broker.stop(1000);
  await second.log.close(1000);
  release();
  await first.broker.stop(100);
  await first.log.close(100);
});

test('the size limit: a full log has no room (devices wait) until the runner catches up and segments go', async (t) => {
  const dir = await tempDir(t);
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const { log, broker, handled } = await setup(dir, { maxBytes: 16 * 1024, handle: () => stuck });
  const acks: number[] = [];
  let n = 0;
  while (log.hasRoom && n < 10_000) {
    ingest(broker, n++, acks);
    if (n % 50 === 0) await log.whenRoom().catch(() => undefined);
  }
  await waitFor(() => !log.hasRoom, 'the log full');
  let roomAgain = false;
  void log.whenRoom().then(() => (roomAgain = true));
  assert.equal(roomAgain, false);
  release();
  await waitFor(() => roomAgain, 'room again once the runner caught up and segments were deleted');
  await waitFor(() => handled.length === n, 'everything handled');
  await broker.stop(1000);
  await log.close(1000);
});

test('a durable runner 65,536 events behind holds devices back although the log has room, and lets them go as it catches up', async (t) => {
  const dir = await tempDir(t);
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const { log, broker, handled } = await setup(dir, { segmentBytes: 16 << 20, handle: () => stuck });
  const acks: number[] = [];
  let n = 0;
  const offer = (): boolean => {
    const msg = message(n);
    const decoded = deviceEvent(msg);
    assert.ok(decoded.ok);
    const taken = broker.ingest(decoded.event, msg, () => acks.push(n));
    if (taken) n++;
    return taken;
  };
  // A producer that takes every chance it is given: once refused, it waits until what it sent is
  // durable and handed out (the runner takes at most its inbox), then tries again; it stops when
  // even then it is refused.
  for (let rounds = 0; rounds < 100; rounds++) {
    while (n < 200_000 && offer());
    await waitFor(() => acks.length === n, 'what was taken in acknowledged');
    if (n >= 200_000 || !offer()) break;
  }
  // 65,536 behind, plus the inbox (64) and the one being handled: no more, though the log is far from full.
  assert.ok(n >= 65_536 && n <= 65_536 + 65, `taken in while the runner was stuck: ${n}`);
  assert.equal(log.hasRoom, true);
  await waitFor(() => acks.length === n, 'everything taken in acknowledged');
  let roomAgain = false;
  void broker.whenIngestRoom('ApplicationRequest').then(() => (roomAgain = true));
  release();
  await waitFor(() => roomAgain, 'room again as the runner catches up');
  await waitFor(() => handled.length === n, 'every event handled', 30_000);
  await broker.stop(1000);
  await log.close(1000);
});

test('a cursors file that does not check out is ignored: every runner starts from the oldest segment', async (t) => {
  const dir = await tempDir(t);
  const first = await setup(dir, { handle: (event) => (event.log && event.log.seq > 5 ? new Promise<void>(() => undefined) : undefined) });
  const acks: number[] = [];
  for (let n = 0; n < 10; n++) ingest(first.broker, n, acks);
  await waitFor(() => first.handled.length === 6, 'five handled, the sixth stuck');
  await first.broker.stop(100);
  await first.log.close(1000);
  assert.equal(JSON.parse(await readFile(path.join(dir, 'cursors.json'), 'utf8')).cursors.app, 5);
  await writeFile(path.join(dir, 'cursors.json'), '{"version":1,"cursors":{"app":5},"crc":1}');
  const second = await setup(dir);
  await waitFor(() => second.handled.length === 10, 'all ten again, the five handled ones too');
  assert.ok(second.handled.every((e) => e.log?.replay));
  await second.broker.stop(1000);
  await second.log.close(1000);
});

test('runners get an event as soon as it is appended; its acknowledgement waits until it is on disk', async (t) => {
  const dir = await tempDir(t);
  const writes = scriptedWrites(new Map([[1, { fail: false }]]));
  const { log, broker, handled } = await setup(dir, { writeAt: writes.writeAt });
  const acks: number[] = [];
  for (let n = 0; n < 5; n++) ingest(broker, n, acks);
  await waitFor(() => handled.length === 5 && writes.calls.length === 1, 'handled while the write is held');
  assert.deepEqual(acks, [], 'no acknowledgement before the write is done');
  assert.equal(log.headSeq, 0);
  // The runner committed 5 but only the durable head is saved: a crash now replays from the start.
  await waitFor(async () => JSON.parse(await readFile(path.join(dir, 'cursors.json'), 'utf8')).cursors.app === 0, 'cursor saved at the durable head');
  writes.release();
  await waitFor(() => acks.length === 5, 'acknowledged once durable');
  assert.deepEqual(acks, [0, 1, 2, 3, 4]);
  await waitFor(async () => JSON.parse(await readFile(path.join(dir, 'cursors.json'), 'utf8')).cursors.app === 5, 'cursor 5 saved once durable');
  await broker.stop(1000);
  await log.close(1000);
});

test('a number handed out before a crash is never given to another message: not after a lost tail, not after retention emptied the log', async (t) => {
  const dir = await tempDir(t);
  // Run 1: five events handed out and handled, none on disk ("crash" before the write: no stop, no close).
  let unblock: () => void = () => undefined;
  const neverWritten = new Promise<void>((resolve) => (unblock = resolve));
  const first = await setup(dir, { writeAt: () => neverWritten });
  const lost: number[] = [];
  for (let n = 0; n < 5; n++) ingest(first.broker, n, lost);
  await waitFor(() => first.handled.length === 5, 'handled before durable');
  const seen = new Set(first.handled.map((e) => e.log?.id));
  // Run 2 on the same directory: the new messages get new ids.
  const second = await setup(dir);
  const acks: number[] = [];
  for (let n = 100; n < 110; n++) ingest(second.broker, n, acks);
  await waitFor(() => second.handled.length === 10 && acks.length === 10, 'run 2 handled and acknowledged');
  for (const event of second.handled) assert.equal(seen.has(event.log?.id), false, `id ${String(event.log?.id)} was handed out in run 1`);
  for (const event of second.handled) seen.add(event.log?.id);
  // Retention deletes every segment once the runner is done; a clean close then a new run numbers on without a gap.
  await waitFor(() => second.log.stats().segments === 0, 'every segment deleted');
  const lastOfRun2 = second.log.appendedSeq;
  await second.broker.stop(1000);
  await second.log.close(1000);
  const third = await setup(dir);
  const acks3: number[] = [];
  ingest(third.broker, 200, acks3);
  await waitFor(() => third.handled.length === 1, 'run 3 handled');
  assert.equal(third.handled[0]?.log?.seq, lastOfRun2 + 1, 'no gap after a clean close, and no number used twice');
  assert.equal(seen.has(third.handled[0]?.log?.id), false);
  await third.broker.stop(1000);
  await third.log.close(1000);
  await first.broker.stop(100);
  unblock();
  await first.log.close(100);
});

test('when the sequence lease cannot be written, appends stop at its end (devices wait) and go on once a retry writes it', async (t) => {
  const dir = await tempDir(t);
  const { log, broker, handled } = await setup(dir, { leaseSize: 20 });
  // The lease is replaced through seq-lease.tmp: a directory in its place makes every write fail.
  await mkdir(path.join(dir, 'seq-lease.tmp'));
  const acks: number[] = [];
  let accepted = 0;
  for (let n = 0; n < 40; n++) {
    const msg = message(n);
    const decoded = deviceEvent(msg);
    assert.ok(decoded.ok);
    if (broker.ingest(decoded.event, msg, () => acks.push(n))) accepted++;
    else break;
  }
  assert.equal(accepted, 20, 'no number past the lease is handed out');
  assert.equal(log.hasRoom, false);
  await waitFor(() => acks.length === 20, 'what was appended is acknowledged');
  const room = log.whenRoom();
  await rm(path.join(dir, 'seq-lease.tmp'), { recursive: true });
  await room;
  assert.equal(log.hasRoom, true, 'the retry wrote the lease');
  assert.ok(Number((await readFile(path.join(dir, 'seq-lease'), 'utf8')).trim()) > 20);
  ingest(broker, 100, acks);
  await waitFor(() => handled.length === 21, 'appends go on');
  await broker.stop(1000);
  await log.close(1000);
});

/** Lets `turns` event-loop turns and a short timer pass (a batch that was not held back is written within them). */
async function someTurns(turns = 5): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 20));
}

test('commit spacing: while the spacing has not passed since the last write started, the next batch waits; flushed() writes it at once', async (t) => {
  const dir = await tempDir(t, 'nucleon-spacing-');
  let writes = 0;
  const log = new SegmentLog({
    dir,
    durability: 'write',
    segmentBytes: 1 << 20,
    commitSpacingMs: 60_000,
    writeAt: async (handle, buffer, length, position) => {
      writes++;
      await handle.write(buffer, 0, length, position);
    },
  });
  await log.open();
  log.append(message(1));
  await waitFor(() => log.durableSeq === 1, 'the first write (nothing written before it)');
  log.append(message(2));
  // Several turns and a timer later, the second batch has still not been written.
  await someTurns();
  assert.equal(writes, 1, 'the second batch waits for the spacing');
  assert.equal(log.durableSeq, 1);
  await log.flushed();
  assert.equal(writes, 2);
  assert.equal(log.durableSeq, 2, 'flushed() does not wait for the spacing');
  await log.close();
});

test('commit spacing holds back only a small batch: one of SPACED_BELOW_RECORDS records is written at once', async (t) => {
  const dir = await tempDir(t, 'nucleon-spacing-');
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, commitSpacingMs: 60_000 });
  await log.open();
  log.append(message(1));
  await waitFor(() => log.durableSeq === 1, 'the first write (nothing written before it)');
  for (let n = 2; n < SPACED_BELOW_RECORDS + 1; n++) log.append(message(n));
  await someTurns();
  assert.equal(log.durableSeq, 1, `${SPACED_BELOW_RECORDS - 1} records wait for the spacing`);
  log.append(message(SPACED_BELOW_RECORDS + 1));
  // Far inside the 60 s spacing: the batch reached the bound, so it is not held back.
  await waitFor(() => log.durableSeq === SPACED_BELOW_RECORDS + 1, 'the batch of SPACED_BELOW_RECORDS records, without waiting for the spacing');
  await log.close();
});

test('commit spacing: the waiting batch is written once the spacing has passed', async (t) => {
  const dir = await tempDir(t, 'nucleon-spacing-');
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, commitSpacingMs: 30 });
  await log.open();
  log.append(message(1));
  await waitFor(() => log.durableSeq === 1, 'the first write');
  log.append(message(2));
  await waitFor(() => log.durableSeq === 2, 'the second write, after the spacing');
  await log.close();
});

test('an unawaited batch waits for unawaitedDelayMs; a record someone waits for starts its write at once, all in one write', async (t) => {
  const dir = await tempDir(t, 'nucleon-unawaited-');
  const writes = scriptedWrites(new Map());
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, unawaitedDelayMs: 60_000, writeAt: writes.writeAt });
  await log.open();
  for (let n = 1; n <= 3; n++) log.append(message(n), false);
  await someTurns();
  assert.equal(writes.calls.length, 0, 'three unawaited records wait');
  assert.equal(log.durableSeq, 0);
  log.append(message(4));
  await waitFor(() => log.durableSeq === 4, 'the awaited record and the three before it, far inside the 60 s delay');
  assert.equal(writes.calls.length, 1, 'one write for all four');
  // The next batch starts over: unawaited again, so it waits again.
  log.append(message(5), false);
  await someTurns();
  assert.equal(log.durableSeq, 4, 'the next unawaited batch waits');
  await log.flushed();
  assert.equal(log.durableSeq, 5, 'flushed() does not wait for the delay');
  assert.deepEqual((await readAll(log)).map((record) => record.seq), [1, 2, 3, 4, 5]);
  await log.close();
});

test('an unawaited batch of SPACED_BELOW_RECORDS records is written at once; a short delay passes and the batch is written', async (t) => {
  const dir = await tempDir(t, 'nucleon-unawaited-');
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, unawaitedDelayMs: 60_000 });
  await log.open();
  for (let n = 1; n < SPACED_BELOW_RECORDS; n++) log.append(message(n), false);
  await someTurns();
  assert.equal(log.durableSeq, 0, `${SPACED_BELOW_RECORDS - 1} unawaited records wait`);
  log.append(message(SPACED_BELOW_RECORDS), false);
  await waitFor(() => log.durableSeq === SPACED_BELOW_RECORDS, 'the full batch, without waiting for the delay');
  await log.close();

  const shortDir = await tempDir(t, 'nucleon-unawaited-');
  const short = new SegmentLog({ dir: shortDir, durability: 'write', segmentBytes: 1 << 20, unawaitedDelayMs: 30 });
  await short.open();
  short.append(message(1), false);
  await waitFor(() => short.durableSeq === 1, 'the unawaited record once the delay has passed');
  await short.close();
});

test('an unawaited record behind a write in flight waits for the delay after it, not beside it', async (t) => {
  const dir = await tempDir(t, 'nucleon-unawaited-');
  const writes = scriptedWrites(new Map([[1, { fail: false }]]));
  const log = new SegmentLog({ dir, durability: 'write', segmentBytes: 1 << 20, unawaitedDelayMs: 60_000, writeAt: writes.writeAt });
  await log.open();
  log.append(message(1));
  await waitFor(() => writes.calls.length === 1, 'the first (awaited) write starts and is held');
  log.append(message(2), false);
  await someTurns();
  writes.release();
  await waitFor(() => log.durableSeq === 1, 'the first write done');
  await someTurns();
  assert.equal(writes.calls.length, 1, 'the unawaited record did not follow the write ahead at once');
  await log.flushed();
  assert.equal(log.durableSeq, 2);
  await log.close();
});

test('QoS 0 messages are unawaited in the ingest log at light load: runners get them at once, their write waits; a QoS 1 message writes them with it', async (t) => {
  const dir = await tempDir(t);
  const writes = scriptedWrites(new Map());
  const { log, broker, handled } = await setup(dir, { qos0CommitDelayMs: 60_000, writeAt: writes.writeAt });
  const acks: number[] = [];
  for (let n = 0; n < 3; n++) ingest(broker, n, acks, 0);
  await waitFor(() => handled.length === 3, 'the runner has the QoS 0 messages at once');
  await someTurns();
  assert.equal(writes.calls.length, 0, 'no write for QoS 0 messages yet');
  assert.deepEqual(acks, []);
  ingest(broker, 3, acks, 1);
  await waitFor(() => acks.length === 4, 'all four durable with the QoS 1 message');
  assert.deepEqual(acks, [0, 1, 2, 3]);
  assert.equal(writes.calls.length, 1, 'in one write');
  assert.equal(log.headSeq, 4);
  await broker.stop(1000);
  await log.close(1000);
});

test('QoS 0 messages count as awaited once SPACED_BELOW_RECORDS messages are not durable yet (under load nothing waits for the delay)', async (t) => {
  const dir = await tempDir(t);
  const writes = scriptedWrites(new Map([[1, { fail: false }]]));
  const { log, broker } = await setup(dir, { qos0CommitDelayMs: 60_000, writeAt: writes.writeAt, inbox: 1024 });
  const acks: number[] = [];
  // A write of SPACED_BELOW_RECORDS QoS 1 messages, held in flight.
  for (let n = 0; n < SPACED_BELOW_RECORDS; n++) ingest(broker, n, acks, 1);
  await waitFor(() => writes.calls.length === 1, 'the first write is in flight');
  // One QoS 0 message behind it: the log is not at light load, so its batch follows the write at once.
  ingest(broker, SPACED_BELOW_RECORDS, acks, 0);
  writes.release();
  await waitFor(() => log.headSeq === SPACED_BELOW_RECORDS + 1, 'the QoS 0 message written right after the write ahead, not 60 s later');
  assert.equal(acks.length, SPACED_BELOW_RECORDS + 1);
  await broker.stop(1000);
  await log.close(1000);
});
