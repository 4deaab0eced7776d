// The OTA side of the Pyrinas wire protocol (DESIGN.md section 1) against the
// serde_cbor vectors: every request vector decodes, and the package the OTA
// runner answers a Check with encodes to `ota_response_packed` byte for byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeCbor, decodeOtaRequest, decodeTelemetry, encodeOtaChunk, encodeOtaPackage } from '../../src/protocol/index.js';
import { checkRequest, correlationId, downloadRequest, firmware, startOta } from '../helpers/ota-harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const vectors = new Map(
  readFileSync(path.join(here, '../fixtures/pyrinas-cbor-vectors.txt'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/) as [string, string]),
);
function vector(name: string): Buffer {
  const hex = vectors.get(name);
  assert.ok(hex, `vector ${name} is missing`);
  return Buffer.from(hex, 'hex');
}

test('every OTA request vector decodes (integer keys, text keys, nulls for absent fields), and the telemetry vector', () => {
  assert.deepEqual(decodeOtaRequest(vector('ota_request_check_packed')), { cmd: 'Check' });
  const download = { cmd: 'DownloadBytes', id: '1.2.3-4-g965b9df', startPos: 512, endPos: 1024 };
  assert.deepEqual(decodeOtaRequest(vector('ota_request_download_packed')), download);
  assert.deepEqual(decodeOtaRequest(vector('ota_request_download_named')), download);
  assert.deepEqual(decodeTelemetry(vector('telemetry_packed')), { version: '1.2.3-4-g965b9df', rsrp: 45 });
});

test('the package the runner sends for a Check is ota_response_packed byte for byte; chunks carry a CBOR byte string', async (t) => {
  const h = await startOta(t, { clock: () => new Date('2026-11-01T12:00:00Z') });
  const bytes = firmware(262_144);
  const added = await h.request({ type: 'OtaNewPackage', correlationId: correlationId(), id: '1.2.3-4-g965b9df', imageType: 'primary', source: { kind: 'bytes', data: bytes } });
  assert.equal(added.type, 'OtaCommandResult');
  await h.request({ type: 'OtaLink', correlationId: correlationId(), deviceUid: '352656100000001', group: 'field', imageId: '1.2.3-4-g965b9df' });
  // The device asks as the vector does.
  const request = decodeOtaRequest(vector('ota_request_check_packed'));
  assert.equal(request.cmd, 'Check');
  await h.device(checkRequest('352656100000001'));
  const answer = h.of('OtaResponse').at(-1);
  assert.ok(answer?.package);
  assert.equal(encodeOtaPackage(answer.package).toString('hex'), vector('ota_response_packed').toString('hex'));

  const download = decodeOtaRequest(vector('ota_request_download_packed'));
  await h.device(downloadRequest('352656100000001', download.id ?? '', download.startPos ?? 0, download.endPos ?? 0));
  const chunk = h.of('OtaDownloadResponse')[0]?.chunk;
  assert.ok(chunk);
  const wire = decodeCbor(encodeOtaChunk(chunk)) as Map<number, unknown>;
  assert.deepEqual([...wire.keys()], [0, 1, 2, 3]);
  assert.equal(wire.get(0), 512);
  assert.equal(wire.get(1), 1024);
  assert.equal(wire.get(3), 512);
  // Key 2, then major type 2 (byte string) with a 2-byte length of 512: not an array or a tagged typed array.
  assert.ok(encodeOtaChunk(chunk).includes(Buffer.from([0x02, 0x59, 0x02, 0x00])));
  assert.ok(wire.get(2) instanceof Uint8Array);
  assert.deepEqual(Buffer.from(wire.get(2) as Uint8Array), bytes.subarray(512, 1024));
});
