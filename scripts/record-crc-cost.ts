// CPU per CRC of an ingest-log record body, the two ways src/ingest/record-crc.ts
// chooses between: zlib.crc32 over a subarray (a view and a call into C++ per
// record) against the slice-by-8 loop over the range, for body lengths around
// a device message's (a 64-byte payload makes a body of about 100 bytes).
// Checks that both give the same CRC first.
//
//   node --import tsx scripts/record-crc-cost.ts [crcs per length] [rounds]
import { crc32 } from 'node:zlib';
import { crc32Range } from '../src/ingest/record-crc.js';

const [countText = '2000000', roundsText = '3'] = process.argv.slice(2);
const count = Number(countText);
const rounds = Number(roundsText);
const LENGTHS = [40, 100, 200, 256, 400];

const buffer = Buffer.alloc(1 << 16);
for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 131 + 7) & 0xff;
const at = (i: number): number => (i * 97) & 0x7fff;

for (const length of LENGTHS) {
  for (let i = 0; i < 1000; i++) {
    if (crc32Range(buffer, at(i), at(i) + length) !== crc32(buffer.subarray(at(i), at(i) + length))) throw new Error(`the two ways differ at length ${length}`);
  }
}

function nsPer(crc: (start: number, end: number) => number, length: number): number {
  let sink = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) sink ^= crc(at(i), at(i) + length);
  const ns = Number(process.hrtime.bigint() - started) / count;
  if (sink === 0.5) console.log('unreachable');
  return ns;
}

const viaZlib = (start: number, end: number) => crc32(buffer.subarray(start, end));
const tables = (start: number, end: number) => crc32Range(buffer, start, end);
for (let round = 1; round <= rounds; round++) {
  const parts = LENGTHS.map((length) => `${length} B: zlib ${nsPer(viaZlib, length).toFixed(0)} ns, crc32Range ${nsPer(tables, length).toFixed(0)} ns`);
  console.log(`round ${round}: ${parts.join('; ')}`);
}
