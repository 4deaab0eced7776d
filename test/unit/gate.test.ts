// The router's gate (src/util/gate.ts): at most `limit` at once, a bounded
// wait list for callers that can be refused, and waits that never refuse for
// callers bounded where they come from (a client's publishes).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gate } from '../../src/util/gate.js';
import { waitFor } from '../helpers/index.js';

test('runs at most `limit` at once and starts waiters in order as places free', async () => {
  const gate = new Gate(2, 10);
  const started: number[] = [];
  for (let i = 0; i < 5; i++) assert.equal(gate.enter(() => started.push(i)), true);
  assert.deepEqual(started, [0, 1]);
  assert.equal(gate.queued, 3);
  gate.leave();
  gate.leave();
  await waitFor(() => started.length === 4, 'two more started');
  assert.deepEqual(started, [0, 1, 2, 3]);
  gate.leave();
  gate.leave();
  gate.leave();
  assert.equal(await gate.idle(1000), true);
});

test('waits that never refuse do not crowd the bounded wait list: a server publish still gets in line behind 20,000 of them', async () => {
  const gate = new Gate(1, 2);
  const order: string[] = [];
  // Each operation ends on the next turn, as a routed message does.
  const run = (name: string) => () => {
    order.push(name);
    setImmediate(() => gate.leave());
  };
  let blocked: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (blocked = resolve));
  gate.enter(() => {
    order.push('first');
    void held.then(() => gate.leave());
  });
  for (let i = 0; i < 20_000; i++) gate.enterWaiting(run(`client ${i}`));
  assert.equal(gate.enter(run('server a')), true, 'the bounded list is empty although 20,000 wait');
  assert.equal(gate.enter(run('server b')), true);
  assert.equal(gate.enter(run('server c')), false, 'past maxWaiting bounded callers are refused');
  assert.equal(gate.queued, 20_002);
  blocked();
  assert.equal(await gate.idle(30_000), true);
  // Everything ran once, in arrival order.
  assert.equal(order.length, 20_003);
  assert.deepEqual(order.slice(0, 2), ['first', 'client 0']);
  assert.deepEqual(order.slice(-3), ['client 19999', 'server a', 'server b']);
});

test('slots freed together pass to the oldest waiters, in order, and a newcomer meanwhile waits behind them', async () => {
  const gate = new Gate(3, 100);
  const started: string[] = [];
  for (let i = 0; i < 8; i++) assert.equal(gate.enter(() => started.push(`w${i}`)), true);
  assert.deepEqual(started, ['w0', 'w1', 'w2']);
  gate.leave();
  gate.leave();
  gate.leave();
  // The three slots are handed over, not free: a newcomer cannot take one ahead of w3..w5.
  assert.equal(gate.tryEnter(), false);
  assert.equal(gate.enter(() => started.push('new')), true);
  await waitFor(() => started.length === 6, 'three waiters started');
  assert.deepEqual(started.slice(3), ['w3', 'w4', 'w5']);
  gate.leave();
  gate.leave();
  gate.leave();
  await waitFor(() => started.length === 9, 'the rest started');
  assert.deepEqual(started.slice(6), ['w6', 'w7', 'new']);
  // More slots freed than there are waiters: one starts the last waiter, the spare ones are free again.
  assert.equal(gate.enter(() => started.push('last')), true);
  for (let i = 0; i < 3; i++) gate.leave();
  await waitFor(() => started.length === 10, 'the last waiter started');
  assert.equal(gate.active, 1);
  assert.equal(gate.tryEnter(), true);
  gate.leave();
  gate.leave();
  assert.equal(await gate.idle(1000), true);
});
