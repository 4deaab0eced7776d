// src/ingest/record-crc.ts: the CRC of a range is zlib's CRC-32 of the same
// bytes, for every length on both sides of the switch to zlib and at any
// offset, so records written by either way read back with the other.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { crc32Range, SHORT_BODY_BYTES } from '../../src/ingest/record-crc.js';

test("crc32Range is zlib's crc32 of the same range, at every length up to past the switch and at any offset", () => {
  const bytes = randomBytes(4096);
  for (let length = 0; length <= SHORT_BODY_BYTES + 64; length++) {
    for (let offset = 0; offset < 12; offset++) {
      const start = offset * 37;
      assert.equal(crc32Range(bytes, start, start + length), crc32(bytes.subarray(start, start + length)), `length ${length} at ${start}`);
    }
  }
  assert.equal(crc32Range(Buffer.from('123456789'), 0, 9), 0xcbf43926, 'the check value of CRC-32/ISO-HDLC');
});

test('one flipped bit anywhere in a short body changes its CRC', () => {
  const body = randomBytes(100);
  const sound = crc32Range(body, 0, body.length);
  for (let bit = 0; bit < body.length * 8; bit++) {
    const damaged = Buffer.from(body);
    damaged[bit >> 3] = (damaged[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    assert.notEqual(crc32Range(damaged, 0, damaged.length), sound, `bit ${bit}`);
  }
});
