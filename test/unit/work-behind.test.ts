// WorkBehind: bounded work a runner carries out behind its inbox.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkBehind } from '../../src/util/work-behind.js';

/** A piece of work the test ends by hand. */
function gate(): { work: () => Promise<void>; open: () => void; fail: (error: Error) => void } {
  let open: () => void = () => undefined;
  let fail: (error: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { work: () => done, open, fail };
}

test('below the limit a piece starts without holding the caller; at the limit the caller waits until one ends', async () => {
  const behind = new WorkBehind(2);
  const first = gate();
  const second = gate();
  const errors: unknown[] = [];
  assert.equal(behind.start(first.work, (error) => errors.push(error)), undefined);
  const held = behind.start(second.work, (error) => errors.push(error));
  assert.ok(held instanceof Promise, 'the second of two holds the caller');
  assert.equal(behind.size, 2);
  let released = false;
  void held.then(() => (released = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(released, false, 'nothing ended yet');
  first.fail(new Error('disk full (test)'));
  await held;
  assert.equal(behind.size, 1);
  assert.deepEqual(
    errors.map((error) => (error as Error).message),
    ['disk full (test)'],
    'the failure went to its own handler',
  );
  second.open();
  await behind.settled();
  assert.equal(behind.size, 0);
});

test('settled waits for pieces started while it waits', async () => {
  const behind = new WorkBehind(8);
  const errors: unknown[] = [];
  const noteError = (error: unknown) => errors.push(error);
  const first = gate();
  const later = gate();
  assert.equal(behind.start(first.work, noteError), undefined);
  let settled = false;
  const settling = behind.settled().then(() => (settled = true));
  assert.equal(behind.start(later.work, noteError), undefined);
  first.open();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, false, 'the later piece is still under way');
  later.open();
  await settling;
  assert.equal(behind.size, 0);
  assert.deepEqual(errors, []);
});
