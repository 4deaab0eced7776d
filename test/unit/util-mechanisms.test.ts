// The small shared mechanisms of src/util/ that several runners use: one test each, no sockets but loopback port 0.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { ListenError } from '../../src/errors.js';
import { listenOrThrow } from '../../src/util/listen.js';
import { EveryNthPerKey, everyNth, shouldLog } from '../../src/util/log-sampling.js';
import { Once } from '../../src/util/once.js';
import { SerialQueue } from '../../src/util/serial-queue.js';
import { WaitList } from '../../src/util/wait-list.js';

test('SerialQueue runs tasks one at a time in call order; a failure rejects only its own caller', async () => {
  const queue = new SerialQueue();
  const seen: string[] = [];
  let running = 0;
  const task = (name: string, fail = false) => async () => {
    running++;
    assert.equal(running, 1, 'never two at once');
    await new Promise((resolve) => setImmediate(resolve));
    seen.push(name);
    running--;
    if (fail) throw new Error(`${name} failed`);
    return name;
  };
  const results = await Promise.allSettled([queue.run(task('a')), queue.run(task('b', true)), queue.run(task('c'))]);
  assert.deepEqual(seen, ['a', 'b', 'c']);
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
    ['a', 'b failed', 'c'],
  );
  await queue.idle();
});

test('listenOrThrow binds, and a port in use becomes ListenError naming what and where, with the cause', async (t) => {
  const first = net.createServer();
  await listenOrThrow(first, '127.0.0.1', 0, 'the first');
  t.after(() => new Promise<void>((resolve) => first.close(() => resolve())));
  const port = (first.address() as net.AddressInfo).port;
  const second = net.createServer();
  const error = await listenOrThrow(second, '127.0.0.1', port, 'the second').then(
    () => undefined,
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof ListenError);
  assert.equal(error.code, 'LISTEN_FAILED');
  assert.equal(error.message, `cannot listen for the second on 127.0.0.1:${port}: address already in use`);
  assert.equal((error.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
  // The bind error was this call's: no listener left behind for it.
  assert.equal(second.listenerCount('error'), 0);
});

test('Once runs its operation once; later calls share the promise until reset', async () => {
  let runs = 0;
  let finish: () => void = () => undefined;
  const stop = new Once(() => {
    runs++;
    return new Promise<void>((resolve) => (finish = resolve));
  });
  const first = stop.run();
  const second = stop.run();
  assert.equal(first, second, 'a second stop waits for the one in progress');
  finish();
  await first;
  assert.equal(stop.run(), first, 'and after it finished gets the same settled promise');
  assert.equal(runs, 1);
  stop.reset();
  const again = stop.run();
  finish();
  await again;
  assert.equal(runs, 2);
});

test('log sampling: the first, then every Nth; with `first`, the first few; per key, each key counted apart', () => {
  const sample = everyNth(3);
  assert.deepEqual(
    Array.from({ length: 7 }, () => sample()),
    [true, false, true, false, false, true, false],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5, 10].map((count) => shouldLog(count, 5, 3)),
    [true, true, true, false, true, true],
  );
  const perReason = new EveryNthPerKey<'a' | 'b'>(2);
  assert.deepEqual(
    (['a', 'a', 'b', 'a'] as const).map((key) => perReason.note(key)),
    [
      { count: 1, log: true },
      { count: 2, log: true },
      { count: 1, log: true },
      { count: 3, log: false },
    ],
  );
});

test('WaitList: wakeAll resolves every waiter, failAll rejects them, an aborted waiter leaves at once', async () => {
  const list = new WaitList();
  const woken = [list.wait(), list.wait()];
  assert.equal(list.size, 2);
  list.wakeAll();
  assert.equal(list.size, 0);
  await Promise.all(woken);

  const gone = new AbortController();
  const leaving = list.wait(gone.signal);
  const staying = list.wait();
  gone.abort(new Error('connection closed'));
  await assert.rejects(leaving, /connection closed/);
  assert.equal(list.size, 1);
  list.failAll(() => new Error('stopped'));
  await assert.rejects(staying, /stopped/);
  await assert.rejects(list.wait(gone.signal), /connection closed/, 'an already aborted signal is not parked');
  assert.equal(list.size, 0);
});

test('WaitList.until: true as soon as a wakeAll finds the condition holding, false once the time is up', async () => {
  const list = new WaitList();
  let busy = 2;
  const idle = list.until(() => busy === 0, 10_000);
  busy = 1;
  list.wakeAll();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(list.size, 1, 'woken with the condition still false: waiting again');
  busy = 0;
  list.wakeAll();
  assert.equal(await idle, true);
  assert.equal(await list.until(() => true, 0), true, 'already holding: no wait');
  assert.equal(await list.until(() => false, 20), false);
  assert.equal(list.size, 0, 'the timed-out waiter left the list');
});
