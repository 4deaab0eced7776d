// DiskWaits alone: which device messages waiting for the disk route before it,
// in what order, and how the limit follows the usual wait. The clock the
// decisions read is a fake one; the timer that wakes the check is real (1 ms
// at the shortest), so each test waits for the outcome, not for a time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskWaits, type DiskWaiter } from '../../src/mqtt/disk-waits.js';

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function setup(options: { minMs?: number; factor?: number; maxMs?: number; routeAtOnceBelow?: number } = {}) {
  let clock = 1000;
  const waits = new DiskWaits({ minMs: options.minMs ?? 5, factor: options.factor ?? 4, maxMs: options.maxMs ?? 1000, routeAtOnceBelow: options.routeAtOnceBelow ?? 0, now: () => clock });
  const routedAhead: string[] = [];
  /** Of those, the ones routed because they waited too long (routeAhead(true)). */
  const slow: string[] = [];
  const waiter = (name: string): DiskWaiter & { waiting: boolean } => {
    const w: DiskWaiter & { waiting: boolean } = {
      since: clock,
      waiting: true,
      next: undefined,
      routeAhead: (slowDisk) => {
        w.waiting = false;
        routedAhead.push(name);
        if (slowDisk) slow.push(name);
      },
    };
    return w;
  };
  const durable = (w: DiskWaiter & { waiting: boolean }) => {
    w.waiting = false;
    waits.durable(w);
  };
  return { waits, routedAhead, slow, waiter, durable, advance: (ms: number) => (clock += ms) };
}

test('a message that waited for the disk longer than the limit routes ahead, oldest first; a younger one keeps waiting', async (t) => {
  const { waits, routedAhead, slow, waiter, advance } = setup({ minMs: 5 });
  t.after(() => waits.stop());
  const a = waiter('a');
  waits.add(a);
  advance(2);
  const b = waiter('b');
  waits.add(b);
  advance(2);
  const c = waiter('c');
  waits.add(c);
  advance(2); // a has waited 6 ms, b 4, c 2
  await until(() => routedAhead.length > 0, 'the first to route ahead');
  assert.deepEqual(routedAhead, ['a'], 'only the one past the 5 ms limit');
  advance(1); // b: 5 ms
  await until(() => routedAhead.length > 1, 'the second');
  assert.deepEqual(routedAhead, ['a', 'b']);
  advance(10);
  await until(() => routedAhead.length > 2, 'the third');
  assert.deepEqual(routedAhead, ['a', 'b', 'c']);
  assert.deepEqual(slow, ['a', 'b', 'c'], 'each counted as routed for a slow disk');
});

test('a message durable in time never routes ahead, however long ago it came', async (t) => {
  const { waits, routedAhead, waiter, durable, advance } = setup({ minMs: 5 });
  t.after(() => waits.stop());
  const early = waiter('early');
  waits.add(early);
  const late = waiter('late');
  waits.add(late);
  durable(early);
  advance(100);
  // `late` is behind `early` in the queue: once it has routed, the check has passed `early`.
  await until(() => routedAhead.length > 0, 'the waiting one to route ahead');
  assert.deepEqual(routedAhead, ['late']);
});

test('the limit is `factor` times the usual wait from take to durable, within [minMs, maxMs]', () => {
  const { waits, waiter, durable, advance } = setup({ minMs: 5, factor: 4, maxMs: 100 });
  assert.equal(waits.limitMs, 5, 'no wait seen yet: the minimum');
  // Every 32nd durable message is a sample; 20 ms each.
  for (let i = 0; i < 64; i++) {
    const w = waiter(`w${i}`);
    waits.add(w);
    advance(20);
    durable(w);
  }
  assert.equal(waits.limitMs, 80, '4 x 20 ms');
  for (let i = 0; i < 32 * 200; i++) {
    const w = waiter(`slow${i}`);
    waits.add(w);
    advance(200);
    durable(w);
  }
  assert.equal(waits.limitMs, 100, 'capped at maxMs');
  waits.stop();
});

test('after stop nothing routes ahead', async (t) => {
  const { waits, routedAhead, waiter, advance } = setup({ minMs: 1 });
  const probe = setup({ minMs: 1 });
  t.after(() => probe.waits.stop());
  waits.add(waiter('a'));
  waits.stop();
  waits.add(waiter('b'));
  advance(100);
  // A second DiskWaits armed after this one shows that a 1 ms timer has had time to fire.
  probe.waits.add(probe.waiter('probe'));
  probe.advance(100);
  await until(() => probe.routedAhead.length === 1, 'the probe to route ahead');
  assert.deepEqual(routedAhead, []);
});

test('under light load (fewer than routeAtOnceBelow waiting) a message routes when taken; from the limit on, it waits, and the older ones still waiting go first once the load is light again', () => {
  const { waits, routedAhead, slow, waiter, durable } = setup({ minMs: 600_000, maxMs: 600_000, routeAtOnceBelow: 3 });
  const a = waiter('a');
  const b = waiter('b');
  waits.add(a);
  waits.add(b);
  assert.deepEqual(routedAhead, ['a', 'b'], 'one and two waiting: routed at once');
  const c = waiter('c');
  const d = waiter('d');
  waits.add(c);
  waits.add(d);
  assert.deepEqual(routedAhead, ['a', 'b'], 'three and four waiting: c and d wait for the disk');
  durable(a);
  durable(b);
  durable(c);
  // c routed when durable (the path's part); d still waits with two pending before the next comes.
  const e = waiter('e');
  waits.add(e);
  assert.deepEqual(routedAhead, ['a', 'b', 'd', 'e'], 'light again: d, older and still waiting, before e');
  assert.deepEqual(slow, [], 'none of these counts as routed for a slow disk');
  assert.equal(d.waiting, false);
  waits.stop();
});

test('routeAtOnceBelow 0 never routes at once', () => {
  const { waits, routedAhead, waiter } = setup({ minMs: 600_000, maxMs: 600_000, routeAtOnceBelow: 0 });
  waits.add(waiter('a'));
  assert.deepEqual(routedAhead, []);
  waits.stop();
});
