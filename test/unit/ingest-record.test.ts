// src/ingest/record.ts: a record's bytes are those of its layout written with Buffer (uid in latin1, target in
// UTF-8), whatever the target holds, and decode gives the message back.
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { test } from 'node:test';
import { decodeRecord, encodeRecord, HEADER_BYTES, recordSize, type DeviceMessage } from '../../src/ingest/record.js';

/** The layout of record.ts's header comment, written with Buffer's own encoders. */
function reference(seq: number, message: DeviceMessage): Buffer {
  const target = Buffer.from(message.target, 'utf8');
  const body = Buffer.concat([
    Buffer.from([1]),
    (() => {
      const b = Buffer.alloc(6);
      b.writeUIntLE(seq, 0, 6);
      return b;
    })(),
    (() => {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(message.receivedAt, 0);
      return b;
    })(),
    Buffer.from([{ app: 1, tel: 2, ota: 3 }[message.kind], message.qos, message.uid.length]),
    Buffer.from(message.uid, 'latin1'),
    (() => {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(target.length, 0);
      return b;
    })(),
    target,
    Buffer.from(message.payload),
  ]);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(body.length, 0);
  header.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([header, body]);
}

const TARGETS = ['', 'data', 'x', 'dätä', 'ünïcødé ✓', '𝄞-clef', 'a'.repeat(64), 'a'.repeat(65), `${'a'.repeat(70)}é`, `é${'b'.repeat(63)}`, `${'c'.repeat(63)}✓`];

test('a record is its layout written with Buffer, for ASCII and non-ASCII targets of any length, and decodes back', () => {
  for (const target of TARGETS) {
    for (const uid of ['d', 'dev-01_A', 'u'.repeat(64)]) {
      const message: DeviceMessage = { kind: target === '' ? 'tel' : 'app', uid, target, payload: Buffer.from([0, 1, 2, 250]), receivedAt: 1_764_000_000_123.5, qos: 1 };
      const expected = reference(281_474_976_710_655, message);
      assert.equal(recordSize(message), expected.length, `size for ${JSON.stringify(target)}`);
      // Dirty, so every byte the encoder leaves alone would show.
      const buffer = Buffer.alloc(expected.length + 7, 0xee);
      const size = encodeRecord(buffer, 3, 281_474_976_710_655, message);
      assert.equal(size, expected.length);
      assert.deepEqual(buffer.subarray(3, 3 + size), expected, `bytes for ${JSON.stringify(target)} / ${uid}`);
      const decoded = decodeRecord(buffer, 3, 3 + size);
      assert.equal(decoded.kind, 'record');
      if (decoded.kind !== 'record') return;
      assert.equal(decoded.record.target, target);
      assert.equal(decoded.record.uid, uid);
      assert.deepEqual(Buffer.from(decoded.record.payload), Buffer.from(message.payload));
    }
  }
});
