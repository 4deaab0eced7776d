// The Influx writer's memory buffer keeps points as UTF-8 batches; these check
// that what goes in comes out byte for byte, in order, in batches of the right size.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineBatch, LineBuffer } from '../../src/influx/index.js';

const line = (i: number, extra = '') => `m,id=dev${String(i)} v=${String(i)}i,s="${extra}" ${String(1_700_000_000_000 + i)}`;

test('lines come out in order, in batches of at most batchSize, with the exact request body', () => {
  const buffer = new LineBuffer(3);
  const lines = Array.from({ length: 8 }, (_, i) => line(i));
  buffer.push(lines.slice(0, 5));
  buffer.push(lines.slice(5));
  assert.equal(buffer.length, 8);
  const first = buffer.takeBatch();
  assert.equal(first.count, 3);
  assert.equal(first.body(), lines.slice(0, 3).join('\n'));
  assert.equal(buffer.length, 5);
  assert.deepEqual(buffer.takeBatch().lines(), lines.slice(3, 6));
  // The last, partly filled batch is sealed when taken.
  assert.deepEqual(buffer.takeBatch().lines(), lines.slice(6));
  assert.equal(buffer.length, 0);
  assert.equal(buffer.takeBatch().count, 0);
});

test('multi-byte text and lines far beyond the initial capacity survive intact', () => {
  const buffer = new LineBuffer(1000);
  const long = 'x'.repeat(70_000);
  const lines = [line(1, 'Zürich ☃ 𝄞'), line(2, long), line(3, '日本語'), ...Array.from({ length: 500 }, (_, i) => line(i + 4, 'é'.repeat(i)))];
  buffer.push(lines);
  const batch = buffer.takeBatch();
  assert.equal(batch.count, lines.length);
  assert.equal(batch.text.toString('utf8'), lines.join('\n'));
  assert.equal(batch.text.length, Buffer.byteLength(lines.join('\n')));
  assert.deepEqual(batch.lines(), lines);
});

test('takeAll and unshift keep the order: returned lines go back in front of newer ones', () => {
  const buffer = new LineBuffer(2);
  buffer.push([line(3), line(4), line(5)]);
  buffer.unshift([line(1), line(2)]);
  assert.equal(buffer.length, 5);
  assert.deepEqual(buffer.takeAll(), [1, 2, 3, 4, 5].map((i) => line(i)));
  assert.equal(buffer.length, 0);
  assert.deepEqual(buffer.takeAll(), []);
});

test('LineBatch.concat joins batches in order and skips empty ones', () => {
  const a = LineBatch.of([line(1), line(2)]);
  const b = LineBatch.of([]);
  const c = LineBatch.of([line(3)]);
  const joined = LineBatch.concat([a, b, c]);
  assert.equal(joined.count, 3);
  assert.deepEqual(joined.lines(), [line(1), line(2), line(3)]);
  assert.equal(LineBatch.concat([b, c]), c);
  assert.equal(LineBatch.concat([]).count, 0);
});
