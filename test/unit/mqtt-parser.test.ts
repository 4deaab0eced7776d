import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { NucleonAedes } from '../../src/mqtt/aedes/index.js';
import { idlePacketState, leanParserState } from '../../src/mqtt/aedes/patches/lean-parser.js';
import { connect, startBroker, waitForEvents } from '../helpers/mqtt-support.js';

// nucleon-aedes.ts loads lean-parser.ts; importing it here keeps that import in use.
void NucleonAedes;

interface ParserLike {
  _list: { constructor: { name: string }; pipe?: unknown };
  on(event: 'packet', listener: (packet: mqttPacket.Packet) => void): void;
  parse(chunk: Buffer): number;
}

function aedesParser(): ParserLike {
  const require = createRequire(import.meta.url);
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const Parser = require(parserPath) as { parser: () => ParserLike };
  return Parser.parser();
}

test("aedes' MQTT parser buffers in a ParserInput (no stream per connection) and still parses packets split anywhere", () => {
  assert.equal(leanParserState, 'installed');
  const parser = aedesParser();
  assert.equal(parser._list.constructor.name, 'ParserInput');
  assert.equal(parser._list.pipe, undefined);
  const seen: string[] = [];
  parser.on('packet', (packet) => seen.push(packet.cmd === 'publish' ? `publish ${packet.topic} ${packet.payload.length}` : packet.cmd));
  const wire = Buffer.concat([
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dev', clean: true, keepalive: 60 }),
    mqttPacket.generate({ cmd: 'publish', topic: 'dev/app/p/x', payload: Buffer.alloc(300, 7), qos: 1, messageId: 9, retain: false, dup: false }),
    mqttPacket.generate({ cmd: 'pingreq' }),
  ]);
  for (let at = 0; at < wire.length; at += 7) parser.parse(wire.subarray(at, at + 7));
  assert.deepEqual(seen, ['connect', 'publish dev/app/p/x 300', 'pingreq']);
});

test('max_packet_size is per broker: two instances in one process keep their own limits', async (t) => {
  const small = await startBroker(t, { config: { mqtt: { auth: { anonymous: true }, limits: { max_packet_size: 1024 } } } });
  const large = await startBroker(t, { config: { mqtt: { auth: { anonymous: true }, limits: { max_packet_size: 8192 } } } });
  const accepted = await connect(t, large, { clientId: 'fits' });
  await accepted.publishAsync('fits/app/p/x', Buffer.alloc(4096), { qos: 1 });
  const [request] = await waitForEvents(() => large.recorder.of('ApplicationRequest'), 1, 'the 4 KiB request');
  assert.equal(request?.payload.length, 4096);
  const refused = await connect(t, small, { clientId: 'big' });
  const closed = new Promise<void>((resolve) => refused.once('close', () => resolve()));
  refused.publish('big/app/p/x', Buffer.alloc(4096), { qos: 0 });
  await closed;
  const [gone] = await waitForEvents(() => small.recorder.of('DeviceDisconnected'), 1, 'DeviceDisconnected');
  assert.match(gone?.reason ?? '', /packet too large: 4\d\d\d bytes, the limit is 1024/);
});

test('an idle parser holds the shared empty packet, and each parsed packet is its own object', () => {
  assert.equal(idlePacketState, 'installed');
  const parser = aedesParser() as ParserLike & { packet: unknown };
  const idle = parser.packet;
  assert.ok(Object.isFrozen(idle), 'a new parser holds the shared frozen packet');
  assert.equal((aedesParser() as ParserLike & { packet: unknown }).packet, idle, 'every idle parser holds the same one');
  const seen: mqttPacket.Packet[] = [];
  parser.on('packet', (packet) => seen.push(packet));
  const publish = (id: number) => mqttPacket.generate({ cmd: 'publish', topic: 'dev/app/p/x', payload: Buffer.from([id]), qos: 1, messageId: id, retain: false, dup: false });
  const wire = Buffer.concat([publish(1), publish(2)]);
  // Split inside the second packet: between the two reads the parser holds a packet of its own, half parsed.
  parser.parse(wire.subarray(0, wire.length - 3));
  assert.equal(seen.length, 1);
  assert.notEqual(parser.packet, idle);
  parser.parse(wire.subarray(wire.length - 3));
  assert.deepEqual(
    seen.map((packet) => (packet.cmd === 'publish' ? [packet.messageId, packet.payload[0]] : [])),
    [
      [1, 1],
      [2, 2],
    ],
  );
  assert.notEqual(seen[0], seen[1]);
  assert.equal(parser.packet, idle, 'idle again after the last whole packet');
  // A malformed packet: the parser errors, and the next parse starts idle again.
  const errors: Error[] = [];
  (parser as unknown as { on(event: 'error', listener: (error: Error) => void): void }).on('error', (error) => errors.push(error));
  parser.parse(Buffer.from([0x0f, 0x00]));
  assert.equal(errors.length, 1);
  parser.parse(publish(3));
  assert.equal(seen.length, 3);
  assert.equal(parser.packet, idle);
});
