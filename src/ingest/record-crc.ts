import { crc32 } from 'node:zlib';

/*
 * The CRC-32 of a byte range inside a buffer (IEEE 802.3, the one zlib
 * computes, so records written before read back the same), for the ingest
 * log's records. zlib.crc32 takes a whole view: a record's body cost a
 * `subarray` and a call into C++ for a few dozen bytes, more than the
 * computation. Short bodies (a device message is mostly under 200 bytes) are
 * done here with slice-by-8 tables (8 KB, built once); longer ones still go to
 * zlib, whose native loop wins past about 220 bytes. `scripts/record-crc-cost.ts`
 * measures both ways: for a 100-byte body (a 64-byte payload) 258–285 ns
 * through zlib against 134–152 ns here; 40 bytes 212–224 against 52–57.
 */

/** Bodies up to this length use the tables; longer ones zlib (on this VM: 256 vs 328 ns at 200 bytes, 326 vs 290 at 256). */
export const SHORT_BODY_BYTES = 200;

const POLYNOMIAL = 0xedb88320;

/** Table k holds the CRC of a byte followed by k zero bytes. */
const TABLES = buildTables();

function buildTables(): Uint32Array {
  const tables = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? POLYNOMIAL ^ (c >>> 1) : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n] ?? 0;
    for (let k = 1; k < 8; k++) {
      c = (tables[c & 0xff] ?? 0) ^ (c >>> 8);
      tables[k * 256 + n] = c >>> 0;
    }
  }
  return tables;
}

/** CRC-32 of `buffer[start, end)`. */
export function crc32Range(buffer: Uint8Array, start: number, end: number): number {
  if (end - start > SHORT_BODY_BYTES) return crc32(buffer.subarray(start, end));
  const t = TABLES;
  let c = 0xffffffff;
  let i = start;
  // Indexes are in range by construction (a byte, or start <= i < end <= length); `as number` spares the checks.
  for (; i + 8 <= end; i += 8) {
    const low = (c ^ ((buffer[i] as number) | ((buffer[i + 1] as number) << 8) | ((buffer[i + 2] as number) << 16) | ((buffer[i + 3] as number) << 24))) >>> 0;
    c =
      (t[1792 + (low & 0xff)] as number) ^
      (t[1536 + ((low >>> 8) & 0xff)] as number) ^
      (t[1280 + ((low >>> 16) & 0xff)] as number) ^
      (t[1024 + (low >>> 24)] as number) ^
      (t[768 + (buffer[i + 4] as number)] as number) ^
      (t[512 + (buffer[i + 5] as number)] as number) ^
      (t[256 + (buffer[i + 6] as number)] as number) ^
      (t[buffer[i + 7] as number] as number);
  }
  for (; i < end; i++) c = (t[(c ^ (buffer[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
