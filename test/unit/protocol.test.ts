import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  MAX_TARGET_LENGTH,
  MAX_VERSION_LENGTH,
  PayloadError,
  compareVersions,
  decodeCbor,
  decodeOtaRequest,
  decodeTelemetry,
  encodeCbor,
  encodeOtaChunk,
  encodeOtaPackage,
  parseTopic,
  parseVersionId,
} from '../../src/protocol/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// A copy of ../shared/protocol/pyrinas-cbor-vectors.txt: serde_cbor 0.11 output of Pyrinas's own types.
const vectorFile = path.resolve(here, '../fixtures/pyrinas-cbor-vectors.txt');
const vectors = new Map(
  readFileSync(vectorFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/) as [string, string]),
);
const vector = (name: string): Buffer => {
  const hex = vectors.get(name);
  assert.ok(hex, `vector ${name} missing from ${vectorFile}`);
  return Buffer.from(hex, 'hex');
};

test('encodes ota_response_packed byte for byte', () => {
  const bytes = encodeOtaPackage({
    id: '1.2.3-4-g965b9df',
    version: { major: 1, minor: 2, patch: 3, commit: 4, hash: 'g965b9df' },
    size: 262144,
    dateAdded: '2026-11-01T12:00:00Z',
  });
  assert.equal(bytes.toString('hex'), vector('ota_response_packed').toString('hex'));
});

test('a package URL rides under key 5 and leaves keys 0..4 as Pyrinas sends them', () => {
  const pkg = {
    id: '1.2.3-4-g965b9df',
    version: { major: 1, minor: 2, patch: 3, commit: 4, hash: 'g965b9df' },
    size: 262144,
    dateAdded: '2026-11-01T12:00:00Z',
  };
  const decoded = decodeCbor(encodeOtaPackage({ ...pkg, url: 'https://h/ota/images/1.2.3-4-g965b9df' })) as Map<number, unknown>;
  assert.deepEqual([...decoded.keys()], [0, 1, 2, 3, 4, 5]);
  assert.equal(decoded.get(5), 'https://h/ota/images/1.2.3-4-g965b9df');
  assert.equal(decoded.get(0), pkg.id);
});

test('decodes the packed Check request (absent fields sent as null)', () => {
  assert.deepEqual(decodeOtaRequest(vector('ota_request_check_packed')), { cmd: 'Check' });
});

test('decodes the packed and the named DownloadBytes requests alike', () => {
  const expected = { cmd: 'DownloadBytes', id: '1.2.3-4-g965b9df', startPos: 512, endPos: 1024 };
  assert.deepEqual(decodeOtaRequest(vector('ota_request_download_packed')), expected);
  assert.deepEqual(decodeOtaRequest(vector('ota_request_download_named')), expected);
});

test('decodes packed telemetry', () => {
  assert.deepEqual(decodeTelemetry(vector('telemetry_packed')), { version: '1.2.3-4-g965b9df', rsrp: 45 });
});

test('decodes named telemetry with negative rssi', () => {
  const bytes = encodeCbor(new Map<unknown, unknown>([['version', '2.0.0-0-gabc'], ['rsrp', 60], ['rssi_hub', -70], ['rssi_client', -81]]));
  assert.deepEqual(decodeTelemetry(bytes), { version: '2.0.0-0-gabc', rsrp: 60, rssi_hub: -70, rssi_client: -81 });
});

test('bad payloads raise PayloadError with a reason', () => {
  const cases: [Uint8Array, string][] = [
    [Buffer.alloc(0), 'empty'],
    [Buffer.from([0xff, 0x00, 0x13]), 'bad_cbor'],
    [encodeCbor([1, 2, 3]), 'not_a_map'],
    [encodeCbor(new Map([[1, 'x']])), 'bad_field'],
    [encodeCbor(new Map([[0, 7]])), 'bad_field'],
    [encodeCbor(new Map<number, unknown>([[0, 2], [2, -1]])), 'bad_field'],
  ];
  for (const [bytes, reason] of cases) {
    assert.throws(
      () => decodeOtaRequest(bytes),
      (error: unknown) => error instanceof PayloadError && error.reason === reason,
      `expected ${reason} for ${Buffer.from(bytes).toString('hex')}`,
    );
  }
  assert.throws(() => decodeTelemetry(encodeCbor(new Map([[1, 'strong']]))), PayloadError);
});

test('over-long text fields are refused as field_too_long, naming the field and both lengths', () => {
  const longest = 'v'.repeat(MAX_VERSION_LENGTH);
  assert.deepEqual(decodeTelemetry(encodeCbor(new Map([[0, longest]]))), { version: longest });
  assert.deepEqual(decodeOtaRequest(encodeCbor(new Map<number, unknown>([[0, 2], [1, longest]]))), { cmd: 'DownloadBytes', id: longest });
  const cases: [() => unknown, string][] = [
    [() => decodeTelemetry(encodeCbor(new Map([[0, 'v'.repeat(200 * 1024)]]))), 'telemetry: field version is 204800 characters long, at most 64 allowed'],
    [() => decodeTelemetry(encodeCbor(new Map([['version', `${longest}x`]]))), 'telemetry: field version is 65 characters long, at most 64 allowed'],
    [() => decodeOtaRequest(encodeCbor(new Map<number, unknown>([[0, 2], [1, 'i'.repeat(1000)]]))), 'ota request: field id is 1000 characters long, at most 64 allowed'],
  ];
  for (const [decode, message] of cases) {
    assert.throws(decode, (error: unknown) => error instanceof PayloadError && error.reason === 'field_too_long' && error.message === message, message);
  }
});

test('chunks carry the data as a CBOR byte string', () => {
  const data = Buffer.from([1, 2, 3, 4]);
  const bytes = encodeOtaChunk({ startPos: 0, endPos: 4, data, len: 4 });
  // a4 00 00 01 04 02 44 01020304 03 04
  assert.equal(bytes.toString('hex'), 'a40000010402440102030403' + '04');
});

test('parses device topics, both direction spellings, and rejects the rest with a reason', () => {
  assert.deepEqual(parseTopic('352656100123456/app/p/env'), { ok: true, topic: { uid: '352656100123456', kind: 'app', dir: 'p', target: 'env' } });
  assert.deepEqual(parseTopic('dev-1/app/pub/a/b'), { ok: true, topic: { uid: 'dev-1', kind: 'app', dir: 'p', target: 'a/b' } });
  assert.deepEqual(parseTopic('dev-1/tel/pub'), { ok: true, topic: { uid: 'dev-1', kind: 'tel', dir: 'p', target: '' } });
  assert.deepEqual(parseTopic('dev-1/ota/sub/d'), { ok: true, topic: { uid: 'dev-1', kind: 'ota', dir: 's', target: 'd' } });
  const failures: [string, string][] = [
    ['dev-1', 'too_short'],
    ['dev-1/app', 'too_short'],
    ['dev 1/app/p/x', 'bad_uid'],
    ['/app/p/x', 'bad_uid'],
    ['dev-1/foo/p', 'unknown_kind'],
    ['dev-1/app/x/y', 'unknown_direction'],
    ['dev-1/app/p', 'missing_target'],
    ['dev-1/tel/p/extra', 'unexpected_target'],
    ['dev-1/app/p/#', 'wildcard'],
  ];
  for (const [topic, reason] of failures) assert.deepEqual(parseTopic(topic), { ok: false, reason }, topic);
  const longest = 't'.repeat(MAX_TARGET_LENGTH);
  assert.deepEqual(parseTopic(`dev-1/app/p/${longest}`), { ok: true, topic: { uid: 'dev-1', kind: 'app', dir: 'p', target: longest } });
  assert.deepEqual(parseTopic(`dev-1/app/p/${longest}x`), { ok: false, reason: 'target_too_long' });
  assert.deepEqual(parseTopic(`dev-1/app/s/${'a/'.repeat(30_000)}b`), { ok: false, reason: 'target_too_long' });
});

test('parses and orders version ids', () => {
  const a = parseVersionId('1.2.3-4-g965b9df');
  assert.deepEqual(a, { major: 1, minor: 2, patch: 3, commit: 4, hash: 'g965b9df' });
  assert.equal(parseVersionId('1.2.3'), undefined);
  assert.equal(parseVersionId('../../etc/passwd'), undefined);
  const b = parseVersionId('1.10.0-0-gaaaaaaa');
  assert.ok(a && b && compareVersions(a, b) < 0);
});
