import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WriteCombiner, type WriteOp } from '../../src/mqtt/write-combiner.js';

/** A batch target whose writes finish when the test says so, recording each batch. */
function controlledTarget() {
  const batches: Array<{ ops: WriteOp[]; finish(error?: Error): void }> = [];
  const target = {
    batch(ops: WriteOp[]): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        batches.push({ ops: [...ops], finish: (error) => (error === undefined ? resolve() : reject(error)) });
      });
    },
  };
  return { target, batches };
}

const put = (key: string, text = key): WriteOp => ({ type: 'put', key, value: Buffer.from(text) });
const del = (key: string): WriteOp => ({ type: 'del', key });
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Records when a promise settles, so a test can tell "not yet" from "resolved" and "rejected". */
function track(promise: Promise<void>): { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } {
  const tracked: { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { state: 'pending' };
  promise.then(
    () => (tracked.state = 'resolved'),
    (error: unknown) => {
      tracked.state = 'rejected';
      tracked.error = error;
    },
  );
  return tracked;
}

test('the writes of one loop turn go out as one batch, in the order they were issued, and each caller settles only when it is written', async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 100 });
  const a = track(combiner.write([put('a')]));
  const b = track(combiner.write([del('b'), put('c')]));
  assert.equal(batches.length, 0, 'nothing is written before the turn ends');
  await turn();
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0]?.ops.map((op) => `${op.type}:${op.key}`), ['put:a', 'del:b', 'put:c']);
  await turn();
  assert.equal(a.state, 'pending', 'not resolved before the batch is written');
  assert.equal(b.state, 'pending');
  batches[0]?.finish();
  await turn();
  assert.equal(a.state, 'resolved');
  assert.equal(b.state, 'resolved');
});

test('one batch is written at a time: writes issued meanwhile wait and go out together when it completes', async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 100 });
  const first = track(combiner.write([put('k', 'one')]));
  await turn();
  const second = track(combiner.write([put('k', 'two')]));
  await turn();
  const third = track(combiner.write([put('j')]));
  await turn();
  assert.equal(batches.length, 1, 'the second and third wait for the first batch');
  batches[0]?.finish();
  await turn();
  assert.equal(first.state, 'resolved');
  assert.equal(batches.length, 2);
  assert.deepEqual(batches[1]?.ops.map((op) => op.key), ['k', 'j']);
  assert.equal(Buffer.from((batches[1]?.ops[0] as { value: Uint8Array }).value).toString(), 'two');
  assert.equal(second.state, 'pending');
  batches[1]?.finish();
  await turn();
  assert.equal(second.state, 'resolved');
  assert.equal(third.state, 'resolved');
});

test("a failed batch rejects every caller in it with the batch's error, and not the callers of the next batch", async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 100 });
  const a = track(combiner.write([put('a')]));
  const b = track(combiner.write([put('b')]));
  await turn();
  const c = track(combiner.write([put('c')]));
  const failure = new Error('disk full');
  batches[0]?.finish(failure);
  await turn();
  assert.equal(a.state, 'rejected');
  assert.equal(a.error, failure);
  assert.equal(b.state, 'rejected');
  assert.equal(b.error, failure);
  assert.equal(c.state, 'pending');
  assert.equal(combiner.pendingValue('a'), undefined, 'a failed write is not visible any more');
  assert.equal(batches.length, 2);
  batches[1]?.finish();
  await turn();
  assert.equal(c.state, 'resolved');
});

test('a target that throws instead of rejecting fails its callers the same way', async () => {
  const combiner = new WriteCombiner(
    {
      batch: () => {
        throw new Error('not open');
      },
    },
    { maxOps: 10 },
  );
  await assert.rejects(combiner.write([put('a')]), /not open/);
});

test('a pending batch that reaches maxOps is written at once, without splitting a caller, beside the one in flight', async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 3 });
  const first = track(combiner.write([put('a'), put('b')]));
  assert.equal(batches.length, 0);
  void combiner.write([put('c'), put('d')]);
  assert.equal(batches.length, 1, 'written in the same turn once the bound is reached');
  assert.deepEqual(batches[0]?.ops.map((op) => op.key), ['a', 'b', 'c', 'd'], "the second caller's two writes stay together");
  void combiner.write([put('e'), put('f'), put('g')]);
  assert.equal(batches.length, 2, 'a full batch does not wait for the one in flight');
  assert.equal(combiner.size, 7);
  for (const batch of batches) batch.finish();
  await turn();
  assert.equal(first.state, 'resolved');
  assert.equal(combiner.size, 0);
});

test("a read sees a write that is queued or being written (the newest one), and LevelDB's value once it is written", async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 100 });
  assert.equal(combiner.pendingValue('k'), undefined);
  void combiner.write([put('k', 'one')]);
  assert.equal(Buffer.from(combiner.pendingValue('k')?.value ?? []).toString(), 'one');
  await turn();
  void combiner.write([del('k')]);
  assert.deepEqual(combiner.pendingValue('k'), { value: undefined }, 'a queued delete reads as absent');
  batches[0]?.finish();
  await turn();
  assert.deepEqual(combiner.pendingValue('k'), { value: undefined }, 'the delete, still being written, is newer than the finished put');
  batches[1]?.finish();
  await turn();
  assert.equal(combiner.pendingValue('k'), undefined);
});

test('flushed waits for the writes issued before it, queued or in flight, failed or not, and not for later ones', async () => {
  const { target, batches } = controlledTarget();
  const combiner = new WriteCombiner(target, { maxOps: 100 });
  await combiner.flushed();
  await combiner.write([]);
  assert.equal(batches.length, 0);
  const inFlight = track(combiner.write([put('a')]));
  await turn();
  const queued = track(combiner.write([put('b')]));
  const flushed = track(combiner.flushed());
  batches[0]?.finish(new Error('io'));
  await turn();
  assert.equal(inFlight.state, 'rejected');
  assert.equal(flushed.state, 'pending', 'the queued write is not settled yet');
  const later = track(combiner.write([put('c')]));
  batches[1]?.finish();
  await turn();
  assert.equal(queued.state, 'resolved');
  assert.equal(flushed.state, 'resolved', 'a write issued after flushed() does not hold it back');
  assert.equal(later.state, 'pending');
  batches[2]?.finish();
  await turn();
  assert.equal(later.state, 'resolved');
});

test('maxOps must be a positive integer', () => {
  assert.throws(() => new WriteCombiner({ batch: () => Promise.resolve() }, { maxOps: 0 }), RangeError);
});
