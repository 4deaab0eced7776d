// src/util/fifo.ts: the growable queue behind the router gate's wait list and
// a durable runner's outstanding sequence numbers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo } from '../../src/util/fifo.js';

test('keeps order across the cuts of its front, empty and refilled', () => {
  const fifo = new Fifo<number>();
  assert.equal(fifo.shift(), undefined);
  for (let i = 0; i < 5000; i++) fifo.push(i);
  const out: number[] = [];
  for (let i = 0; i < 3000; i++) out.push(fifo.shift() ?? -1);
  for (let i = 5000; i < 6000; i++) fifo.push(i);
  assert.equal(fifo.size, 3000);
  assert.equal(fifo.peek(), 3000);
  while (fifo.size > 0) out.push(fifo.shift() ?? -1);
  assert.deepEqual(out, Array.from({ length: 6000 }, (_, i) => i));
  assert.equal(fifo.peek(), undefined);
  fifo.push(7);
  assert.equal(fifo.shift(), 7);
});
