// The BufferList fast path (src/mqtt/aedes/patches/fast-buffer-list.ts) must read exactly what
// bl reads, also across chunk boundaries, and mqtt-packet must parse the same packets.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { fastBufferListMethods } from '../../src/mqtt/aedes/patches/fast-buffer-list.js';

const require = createRequire(import.meta.url);
const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
interface List {
  length: number;
  readUInt8(offset?: number): number;
  readUInt16BE(offset?: number): number;
  readUInt32BE(offset?: number): number;
  slice(start?: number, end?: number): Buffer;
  toString(encoding?: BufferEncoding, start?: number, end?: number): string;
  consume(bytes: number): List;
}
const fromParser = createRequire(parserPath);
const { BufferList } = fromParser('bl') as { BufferList: new (bufs?: Buffer[]) => List };
/** A second, unpatched copy of bl's BufferList: what the fast paths must answer, quirks included. */
const blPath = fromParser.resolve('bl/BufferList.js');
const patchedModule = require.cache[blPath];
delete require.cache[blPath];
const PristineList = fromParser('bl/BufferList.js') as new (bufs?: Buffer[]) => List;
if (patchedModule) require.cache[blPath] = patchedModule;

const CUTS = [[], [1], [3, 4, 10], [31, 32, 33], [1, 2, 3, 5, 8, 13, 21, 34, 55]];
const bytes = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
/** `text` as a list of chunks split at `cuts`. */
function split(whole: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, whole.length]) {
    chunks.push(whole.subarray(from, cut));
    from = cut;
  }
  return chunks;
}

test('readUInt8/16BE/32BE equal the bytes of the concatenated chunks at every offset, however the bytes are split', () => {
  assert.deepEqual([...fastBufferListMethods].sort(), ['consume', 'readUInt16BE', 'readUInt32BE', 'readUInt8', 'slice', 'toString']);
  for (const cuts of CUTS) {
    const list = new BufferList(split(bytes, cuts));
    for (let offset = 0; offset < bytes.length; offset++) {
      assert.equal(list.readUInt8(offset), bytes.readUInt8(offset), `readUInt8 at ${String(offset)} with cuts ${cuts.join(',')}`);
      if (offset + 2 <= bytes.length) assert.equal(list.readUInt16BE(offset), bytes.readUInt16BE(offset));
      if (offset + 4 <= bytes.length) assert.equal(list.readUInt32BE(offset), bytes.readUInt32BE(offset));
    }
  }
});

test('slice and toString answer as bl does for every range, however the bytes are split', () => {
  assert.notEqual(PristineList.prototype.slice, BufferList.prototype.slice);
  const text = Buffer.from('dev-1/app/p/data ünïcødé ✓ and some more text to cross chunks');
  for (const whole of [bytes, text]) {
    for (const cuts of CUTS.map((c) => c.filter((cut) => cut < whole.length))) {
      const list = new BufferList(split(whole, cuts));
      const pristine = new PristineList(split(whole, cuts));
      for (let start = -2; start <= whole.length + 1; start++) {
        for (let end = start - 1; end <= whole.length + 2; end++) {
          const where = `[${String(start)}, ${String(end)}) with cuts ${cuts.join(',')}`;
          assert.deepEqual(list.slice(start, end), pristine.slice(start, end), `slice ${where}`);
          assert.equal(list.toString('utf8', start, end), pristine.toString('utf8', start, end), `toString ${where}`);
          if (start >= 0 && end >= start) assert.deepEqual(list.slice(start, end), whole.subarray(start, end), `slice ${where}`);
        }
      }
      assert.deepEqual(list.slice(), whole);
      assert.equal(list.toString('latin1'), whole.toString('latin1'));
    }
  }
});

test('consume leaves exactly the bytes after those consumed, however the bytes are split', () => {
  for (const cuts of CUTS) {
    for (const steps of [[1], [2, 3], [7], [31, 1], [64], [65], [0.5, 1.5], [Number.NaN, 4]]) {
      const list = new BufferList(split(bytes, cuts));
      const pristine = new PristineList(split(bytes, cuts));
      let consumed = 0;
      while (consumed < bytes.length) {
        for (const step of steps) {
          list.consume(step);
          pristine.consume(step);
          assert.equal(list.length, pristine.length);
          consumed = Math.min(bytes.length, consumed + (Number.isNaN(step) || step <= 0 ? 0 : Math.trunc(step)));
          assert.equal(list.length, bytes.length - consumed, `length after consuming ${String(consumed)} (${steps.join(',')}) with cuts ${cuts.join(',')}`);
          assert.deepEqual(list.slice(), bytes.subarray(consumed), `bytes after consuming ${String(consumed)}`);
        }
        if (steps.every((step) => Math.trunc(step) <= 0 || Number.isNaN(step))) break;
      }
    }
  }
});

test('a slice inside the first buffer is a view of it, not a copy', () => {
  const first = Buffer.from('0123456789');
  const list = new BufferList([first, Buffer.from('abc')]);
  const view = list.slice(2, 6);
  assert.equal(view.buffer, first.buffer);
  assert.equal(view.byteOffset, first.byteOffset + 2);
  assert.equal(view.toString(), '2345');
});

test('mqtt-packet parses the same packets whole and fed one byte at a time', () => {
  const packets = [
    mqttPacket.generate({ cmd: 'publish', topic: 'dev1/app/p/x', payload: Buffer.alloc(300, 7), qos: 1, messageId: 4242, retain: false, dup: false }),
    mqttPacket.generate({ cmd: 'puback', messageId: 65535 }),
    mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'dev1/app/s/#', qos: 1 }] }),
    mqttPacket.generate({ cmd: 'connect', clientId: 'dev1', protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 600 }),
  ];
  const parse = (feed: (parser: ReturnType<typeof mqttPacket.parser>) => void): unknown[] => {
    const parser = mqttPacket.parser();
    const out: unknown[] = [];
    parser.on('packet', (packet) => out.push(packet));
    parser.on('error', (error) => assert.fail(error));
    feed(parser);
    return out;
  };
  const whole = parse((parser) => parser.parse(Buffer.concat(packets)));
  const byteWise = parse((parser) => {
    for (const byte of Buffer.concat(packets)) parser.parse(Buffer.from([byte]));
  });
  assert.equal(whole.length, 4);
  assert.deepEqual(byteWise, whole);
  assert.equal((whole[0] as { messageId: number }).messageId, 4242);
  assert.equal((whole[1] as { messageId: number }).messageId, 65535);
});

test("aedes' parsers read through the fast path (their buffer is a plain BufferList, see lean-parser.ts)", async () => {
  const { dependencyPatches } = await import('../../src/mqtt/aedes/patches/index.js');
  // quietDebug is checked in a fresh process (quiet-debug.test.ts): this file loads mqtt-packet before the patches.
  assert.equal(dependencyPatches.fastBufferList, 'installed');
  assert.equal(dependencyPatches.leanParser, 'installed');
  const Parser = require(parserPath) as { parser: () => { _list: { readUInt8: { fastPath?: boolean } } } };
  assert.equal(Parser.parser()._list.readUInt8.fastPath, true);
});
