// src/mqtt/aedes/packet-bytes.ts: PUBLISH and the acknowledgements in one
// buffer, byte for byte what mqtt-packet writes for MQTT 3.1.1, and
// undefined for everything it leaves to mqtt-packet.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { encodeHotPacket, type OutgoingPacket } from '../../src/mqtt/aedes/packet-bytes.js';
import { coalesceWrites, writeHotPacketsWhole } from '../../src/mqtt/aedes/write-coalescing.js';

const same = (packet: OutgoingPacket) => {
  const ours = encodeHotPacket(packet);
  assert.ok(ours, `encoded ${JSON.stringify({ ...packet, payload: undefined })}`);
  assert.deepEqual(ours, mqttPacket.generate(packet as mqttPacket.Packet), JSON.stringify({ ...packet, payload: typeof packet.payload === 'string' ? packet.payload : (packet.payload as Buffer | undefined)?.length }));
  // And mqtt-packet reads it back as the same packet.
  const parser = mqttPacket.parser();
  const parsed: mqttPacket.Packet[] = [];
  parser.on('packet', (p) => parsed.push(p));
  parser.parse(ours);
  assert.equal(parsed.length, 1);
  assert.equal(parsed[0]?.cmd, packet.cmd);
};

test('PUBLISH: every QoS, DUP and RETAIN, UTF-8 topics, Buffer and string payloads, every remaining-length size', () => {
  const topics = ['a', 'dev-1/app/p/data', 'ü/€/𝄞', 'x'.repeat(300)];
  // Remaining lengths across the one-, two-, three- and four-byte boundaries.
  const payloadSizes = [0, 1, 64, 120, 127, 128, 1000, 16_380, 16_384, 70_000, 2_097_200];
  let id = 0;
  for (const qos of [0, 1, 2] as const) {
    for (const topic of topics) {
      for (const size of payloadSizes) {
        for (const flags of [0, 1, 2, 3]) {
          const payload = Buffer.alloc(size, (size % 251) + 1);
          same({ cmd: 'publish', topic, payload, qos, dup: (flags & 1) === 1, retain: (flags & 2) === 2, ...(qos > 0 ? { messageId: id++ % 65_536 } : {}) });
        }
      }
    }
  }
  same({ cmd: 'publish', topic: 't', payload: 'text ü', qos: 1, messageId: 65_535 });
  same({ cmd: 'publish', topic: 't', payload: undefined, qos: 0 });
  same({ cmd: 'publish', topic: 't', payload: Buffer.alloc(3), qos: 2, messageId: 0 });
});

test('PUBACK, PUBREC, PUBREL, PUBCOMP for packet ids across the range', () => {
  for (const cmd of ['puback', 'pubrec', 'pubrel', 'pubcomp']) for (const messageId of [0, 1, 255, 256, 4660, 65_535]) same({ cmd, messageId });
});

test('what mqtt-packet refuses or writes otherwise is left to it (undefined)', () => {
  const left: OutgoingPacket[] = [
    { cmd: 'publish', topic: Buffer.from('t'), payload: Buffer.alloc(1), qos: 0 },
    { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 1 },
    { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 1, messageId: 65_536 },
    { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 3, messageId: 1 },
    { cmd: 'publish', topic: 't', payload: new Uint8Array(2), qos: 0 },
    { cmd: 'publish', topic: 'x'.repeat(65_536), payload: Buffer.alloc(1), qos: 0 },
    { cmd: 'pubrel', messageId: 1, dup: true },
    { cmd: 'puback' },
    { cmd: 'suback', messageId: 1 },
    { cmd: 'pingresp' },
  ];
  for (const packet of left) assert.equal(encodeHotPacket(packet), undefined, JSON.stringify({ ...packet, topic: String(packet.topic).slice(0, 10) }));
});

test("once installed, aedes' writeToStream writes a PUBLISH to a coalesced connection as one buffer, and to any other stream as mqtt-packet does", async () => {
  writeHotPacketsWhole();
  const aedesMqttPacket = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as { writeToStream(packet: object, stream: Duplex): boolean };
  const sink = () => {
    const writes: Buffer[] = [];
    const stream = new Duplex({
      read() {},
      writev(chunks, callback) {
        for (const { chunk } of chunks) writes.push(chunk as Buffer);
        callback();
      },
      write(chunk: Buffer, _encoding, callback) {
        writes.push(chunk);
        callback();
      },
    });
    return { stream, writes };
  };
  const packet = { cmd: 'publish', topic: 'dev-1/app/p/data', payload: Buffer.alloc(64, 1), qos: 1, messageId: 7, dup: false, retain: false };
  const coalesced = sink();
  assert.equal(coalesceWrites(coalesced.stream), true);
  aedesMqttPacket.writeToStream(packet, coalesced.stream);
  aedesMqttPacket.writeToStream({ cmd: 'puback', messageId: 9 }, coalesced.stream);
  const plain = sink();
  aedesMqttPacket.writeToStream(packet, plain.stream);
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(coalesced.writes, [mqttPacket.generate(packet as mqttPacket.Packet), mqttPacket.generate({ cmd: 'puback', messageId: 9 })]);
  assert.ok(plain.writes.length >= 5, `mqtt-packet's own writes on a stream without coalescing (${plain.writes.length})`);
  assert.deepEqual(Buffer.concat(plain.writes), mqttPacket.generate(packet as mqttPacket.Packet));
});
