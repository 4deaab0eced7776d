import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chronologicalBrokerId } from '../../src/mqtt/aedes/broker-id.js';

test('broker ids of later runs sort after earlier ones (offline queues are read back in key order), and two runs in one millisecond differ', () => {
  const times = [0, 1, 35, 36, 1_700_000_000_000, 1_700_000_000_001, 4_102_444_800_000];
  const ids = times.map((at) => chronologicalBrokerId(at));
  assert.deepEqual([...ids].sort(), ids);
  assert.ok(ids.every((id) => id.length === ids[0]?.length));
  assert.notEqual(chronologicalBrokerId(5), chronologicalBrokerId(5));
});
