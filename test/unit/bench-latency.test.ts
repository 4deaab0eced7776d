// The bench's latency arithmetic (bench/lib/latency.ts), which runs for every
// message inside the broker under test: the timestamp a device wrote is read
// back exactly, wherever the payload sits in its buffer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatencyRecorder, latencyUs, TIMESTAMP_OFFSET } from '../../bench/lib/latency.js';

test('latencyUs reads the big-endian send time at any byte offset and gives microseconds', () => {
  const backing = Buffer.alloc(80);
  for (const offset of [0, 3, 8]) {
    const payload = backing.subarray(offset, offset + 64);
    payload.writeDoubleBE(1234.5678, TIMESTAMP_OFFSET);
    assert.ok(Math.abs(latencyUs(payload, 1235.5678) - 1000) < 1e-6, `offset ${offset}: ${latencyUs(payload, 1235.5678)}`);
    assert.ok(Math.abs(latencyUs(payload, 1234.5678) - 0) < 1e-6);
  }
  assert.ok(Number.isNaN(latencyUs(new Uint8Array(7), 1)));
});

test('the recorder gives exact percentiles while it is not full', () => {
  const recorder = new LatencyRecorder(1000);
  for (let us = 1; us <= 100; us++) recorder.record(us);
  const summary = recorder.summary();
  assert.deepEqual([summary.count, summary.p50, summary.p99, summary.max, summary.negative], [100, 50, 99, 100, 0]);
});
