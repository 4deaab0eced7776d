import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoutingSettlements, Settlement } from '../../src/mqtt/aedes/routing-settlements.js';

/* What a route waits for before its publisher is acknowledged (src/mqtt/aedes/routing-settlements.ts). */

function outcome(settlement: Settlement): { calls: number; error: Error | undefined } {
  const state = { calls: 0, error: undefined as Error | undefined };
  settlement.whenSettled((error) => {
    state.calls++;
    state.error = error;
  });
  return state;
}

test('a settlement with nothing held settles at once; otherwise when the last hold is released, once', () => {
  assert.deepEqual(outcome(new Settlement()), { calls: 1, error: undefined });
  const settlement = new Settlement();
  settlement.hold();
  settlement.hold();
  const state = outcome(settlement);
  settlement.release();
  assert.equal(state.calls, 0);
  settlement.release();
  assert.deepEqual(state, { calls: 1, error: undefined });
});

test('a failed copy fails the settlement with the first error, after every copy ended', () => {
  const settlement = new Settlement();
  settlement.hold();
  settlement.hold();
  const state = outcome(settlement);
  const first = new Error('first');
  settlement.release(first);
  assert.equal(state.calls, 0, 'the other copy still runs');
  settlement.release(new Error('second'));
  assert.deepEqual(state, { calls: 1, error: first });
});

test('the store finds a route by its payload object while the route runs, not before or after', () => {
  const settlements = new RoutingSettlements();
  const payload = Buffer.from('x');
  assert.equal(settlements.of(payload), undefined);
  const settlement = settlements.open(payload);
  assert.ok(settlement);
  assert.equal(settlements.of(payload), settlement);
  assert.equal(settlements.of(Buffer.from('x')), undefined, 'by identity, not by content');
  settlements.close(payload, settlement);
  assert.equal(settlements.of(payload), undefined);
});

test('two routes of one payload object at a time: neither defers any more copies', () => {
  const settlements = new RoutingSettlements();
  const payload = Buffer.from('shared');
  const first = settlements.open(payload);
  assert.ok(first);
  assert.equal(settlements.open(payload), undefined, 'the second route gets none');
  assert.equal(settlements.of(payload), undefined, 'copies of either are written at once');
  settlements.close(payload, first);
  assert.ok(settlements.open(payload), 'a later route of the same object defers again');
});

test('a string payload is never deferred', () => {
  const settlements = new RoutingSettlements();
  assert.equal(settlements.open('text'), undefined);
  assert.equal(settlements.of('text'), undefined);
});
