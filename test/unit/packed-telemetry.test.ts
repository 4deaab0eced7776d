// The packed telemetry path (src/protocol/packed-telemetry.ts) against the
// general CBOR decoder: over seeded random maps, hand-made edge cases and
// mutated bytes, it either gives exactly the general decoder's telemetry or
// steps aside (undefined); it never takes a payload the general path refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Encoder } from 'cbor-x';
import { PayloadError, readTelemetry, readTelemetryDecoded } from '../../src/protocol/cbor.js';
import { readPackedTelemetry } from '../../src/protocol/packed-telemetry.js';
import { MAX_VERSION_LENGTH } from '../../src/protocol/index.js';
import { seeded as random } from '../helpers/rng.js';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false, variableMapSize: true });

const pick = <T>(next: () => number, items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;

const INTEGERS = [0, 1, 23, 24, 97, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, -24, -25, -61, -256, -257, -65536, -65537, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 32)];
const TEXTS = ['', 'v', '1.2.3-4-g965b9df', 'x'.repeat(23), 'y'.repeat(24), 'z'.repeat(MAX_VERSION_LENGTH), 'w'.repeat(MAX_VERSION_LENGTH + 1), 'q'.repeat(256), 'ünï', 'tab\tnew\nline', '\u0000'];

function value(next: () => number): unknown {
  const kind = next();
  if (kind < 0.35) return pick(next, INTEGERS);
  if (kind < 0.6) return pick(next, TEXTS);
  if (kind < 0.7) return null;
  if (kind < 0.75) return -95.5;
  if (kind < 0.8) return next() < 0.5;
  if (kind < 0.85) return BigInt(2) ** BigInt(64) - BigInt(1);
  if (kind < 0.9) return new Uint8Array([1, 2]);
  if (kind < 0.95) return [1];
  return undefined;
}

/** A telemetry map: mostly keys 0-3 with fitting values, sometimes names, unknown keys or wrong types. */
function telemetryMap(next: () => number): Map<unknown, unknown> {
  const map = new Map<unknown, unknown>();
  const entries = Math.floor(next() * 6);
  for (let i = 0; i < entries; i++) {
    const key = next() < 0.85 ? Math.floor(next() * 4) : pick(next, [4, 23, 'version', 'rsrp', 'extra', -1]);
    const fitting = next() < 0.6;
    if (fitting && key === 0) map.set(key, pick(next, TEXTS.slice(0, 6)));
    else if (fitting && typeof key === 'number' && key >= 1 && key <= 3) map.set(key, pick(next, INTEGERS));
    else map.set(key, value(next));
  }
  return map;
}

/** The packed path's answer is the general decoder's, or it steps aside. */
function agree(bytes: Uint8Array, where: string): 'packed' | 'aside' {
  const packed = readPackedTelemetry(bytes, MAX_VERSION_LENGTH);
  let general: ReturnType<typeof readTelemetryDecoded> | PayloadError;
  try {
    general = readTelemetryDecoded(bytes);
  } catch (error) {
    assert.ok(error instanceof PayloadError, `${where}: ${String(error)}`);
    general = error;
  }
  if (packed === undefined) {
    // The public entry point gives the general answer then, error and all.
    if (general instanceof PayloadError) assert.throws(() => readTelemetry(bytes), (error: unknown) => error instanceof PayloadError && error.message === general.message, where);
    else assert.deepEqual(readTelemetry(bytes), general, where);
    return 'aside';
  }
  assert.ok(!(general instanceof PayloadError), `${where}: the packed path took what the general one refuses (${general instanceof PayloadError ? general.message : ''})`);
  assert.deepEqual(general.unknownKeys, [], where);
  assert.deepEqual(general.refused, [], where);
  assert.deepEqual(packed, general.telemetry, where);
  // The same key order too: one object shape for both paths.
  assert.deepEqual(Object.keys(packed), Object.keys(general.telemetry), where);
  assert.deepEqual(readTelemetry(bytes).telemetry, general.telemetry, where);
  return 'packed';
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

test('packed telemetry: random maps decode exactly as the general decoder, or step aside', () => {
  const next = random(11);
  let packed = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = encoder.encode(telemetryMap(next));
    if (agree(bytes, hex(bytes)) === 'packed') packed++;
  }
  assert.ok(packed > 3_000, `the packed path took ${packed} of 20,000`);
});

test('packed telemetry: mutated, truncated and extended bytes never decode differently', () => {
  const next = random(12);
  const base = [
    encoder.encode(new Map<number, unknown>([[0, '1.2.3-4-g965b9df'], [1, 97], [2, -61], [3, -72]])),
    encoder.encode(new Map<number, unknown>([[1, 4294967295], [3, -2147483648]])),
    encoder.encode(new Map<number, unknown>([[0, null], [2, 70000]])),
  ];
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.from(pick(next, base));
    const how = next();
    let mutated: Uint8Array = bytes;
    if (how < 0.5) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
    else if (how < 0.75) mutated = bytes.subarray(0, Math.floor(next() * bytes.length));
    else mutated = Buffer.concat([bytes, Buffer.from([Math.floor(next() * 256)])]);
    agree(mutated, hex(mutated));
  }
});

test('packed telemetry: the edges by hand', () => {
  const cases: [string, number[], 'packed' | 'aside'][] = [
    ['the bench payload', [...encoder.encode(new Map<number, unknown>([[0, '1.2.3-4-g965b9df'], [1, 97], [2, -61], [3, -72]]))], 'packed'],
    ['a repeated key (the general decoder keeps the last)', [0xa2, 0x01, 0x01, 0x01, 0x02], 'aside'],
    ['a non-shortest integer', [0xa1, 0x01, 0x18, 0x05], 'packed'],
    ['a four-byte rsrp at u32 max', [0xa1, 0x01, 0x1a, 0xff, 0xff, 0xff, 0xff], 'packed'],
    ['an eight-byte integer', [0xa1, 0x01, 0x1b, 0, 0, 0, 0, 0, 0, 0, 1], 'aside'],
    ['a negative rsrp (refused)', [0xa1, 0x01, 0x20], 'aside'],
    ['rssi_hub just below i32 min (refused)', [0xa1, 0x02, 0x3a, 0x80, 0x00, 0x00, 0x00], 'aside'],
    ['rssi_hub at i32 min', [0xa1, 0x02, 0x3a, 0x7f, 0xff, 0xff, 0xff], 'packed'],
    ['a text of 64 characters in one length byte', [0xa1, 0x00, 0x78, 64, ...Buffer.from('a'.repeat(64))], 'packed'],
    ['a text of 65 characters (refused)', [0xa1, 0x00, 0x78, 65, ...Buffer.from('a'.repeat(65))], 'aside'],
    ['a text cut short', [0xa1, 0x00, 0x65, 0x61, 0x62], 'aside'],
    ['a non-ASCII text', [0xa1, 0x00, 0x62, 0xc3, 0xbc], 'aside'],
    ['an indefinite-length map', [0xbf, 0x01, 0x01, 0xff], 'aside'],
    ['an empty map', [0xa0], 'aside'],
    ['trailing bytes (refused)', [0xa1, 0x01, 0x01, 0x00], 'aside'],
    ['null for every field', [0xa4, 0x00, 0xf6, 0x01, 0xf6, 0x02, 0xf6, 0x03, 0xf6], 'packed'],
  ];
  for (const [name, bytes, expected] of cases) assert.equal(agree(Uint8Array.from(bytes), name), expected, name);
});

test('packed telemetry: a kept version text is the same string, and new bytes are read anew', () => {
  const payload = (version: string) => encoder.encode(new Map<number, unknown>([[0, version], [1, 1]]));
  for (let round = 0; round < 3; round++) {
    // More versions than are kept, so some are read again after being replaced.
    for (let v = 0; v < 40; v++) {
      const version = `1.${v}.${round}-0-gabcdef`;
      assert.equal(readPackedTelemetry(payload(version), MAX_VERSION_LENGTH)?.version, version);
      assert.equal(readPackedTelemetry(payload(version), MAX_VERSION_LENGTH)?.version, version);
    }
  }
});
