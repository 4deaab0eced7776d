// The BufferList fast path (src/mqtt/aedes/patches/fast-buffer-list.ts) must read exactly what
// bl reads, also across chunk boundaries, and mqtt-packet must parse the same packets.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { fastBufferListMethods } from '../../src/mqtt/aedes/patches/fast-buffer-list.js';

const require = createRequire(import.meta.url);
const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
const { BufferList } = createRequire(parserPath)('bl') as { BufferList: new (bufs?: Buffer[]) => Record<string, (offset?: number) => number> };

test('readUInt8/16BE/32BE equal the bytes of the concatenated chunks at every offset, however the bytes are split', () => {
  assert.deepEqual([...fastBufferListMethods].sort(), ['readUInt16BE', 'readUInt32BE', 'readUInt8']);
  const bytes = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
  for (const cuts of [[], [1], [3, 4, 10], [31, 32, 33], [1, 2, 3, 5, 8, 13, 21, 34, 55]]) {
    const chunks: Buffer[] = [];
    let from = 0;
    for (const cut of [...cuts, bytes.length]) {
      chunks.push(bytes.subarray(from, cut));
      from = cut;
    }
    const list = new BufferList(chunks);
    for (let offset = 0; offset < bytes.length; offset++) {
      assert.equal(list.readUInt8?.(offset), bytes.readUInt8(offset), `readUInt8 at ${String(offset)} with cuts ${cuts.join(',')}`);
      if (offset + 2 <= bytes.length) assert.equal(list.readUInt16BE?.(offset), bytes.readUInt16BE(offset));
      if (offset + 4 <= bytes.length) assert.equal(list.readUInt32BE?.(offset), bytes.readUInt32BE(offset));
    }
  }
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
