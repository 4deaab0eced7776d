// ParserInput (src/mqtt/aedes/patches/parser-input.ts) stands in for bl's BufferList in aedes'
// mqtt-packet parsers: it must answer every call the parser makes exactly as bl does, also across
// chunk boundaries and after consumes, and mqtt-packet must parse the same packets through it.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { leanParserState } from '../../src/mqtt/aedes/patches/lean-parser.js';
import { ParserInput } from '../../src/mqtt/aedes/patches/parser-input.js';

const require = createRequire(import.meta.url);
const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
interface List {
  length: number;
  append(chunk: Buffer): List;
  readUInt8(offset?: number): number;
  readUInt16BE(offset?: number): number;
  readUInt32BE(offset?: number): number;
  slice(start?: number, end?: number): Buffer;
  toString(encoding?: BufferEncoding, start?: number, end?: number): string;
  consume(bytes: number): List;
}
/** bl's BufferList, as the parser used it: what ParserInput must answer, quirks included. */
const { BufferList } = createRequire(parserPath)('bl') as { BufferList: new () => List };

const CUTS = [[], [1], [3, 4, 10], [31, 32, 33], [1, 2, 3, 5, 8, 13, 21, 34, 55]];
const bytes = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
/** `whole` as chunks split at `cuts`. */
function split(whole: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, whole.length]) {
    chunks.push(whole.subarray(from, cut));
    from = cut;
  }
  return chunks;
}
function both(chunks: Buffer[]): [List, List] {
  const input: List = new ParserInput();
  const bl = new BufferList();
  for (const chunk of chunks) {
    input.append(chunk);
    bl.append(chunk);
  }
  return [input, bl];
}

test('readUInt8/16BE/32BE equal the bytes of the concatenated chunks at every offset, however the bytes are split and after any consume', () => {
  for (const cuts of CUTS) {
    for (const consumed of [0, 1, 3, 31, 33]) {
      const [input] = both(split(bytes, cuts));
      input.consume(consumed);
      const rest = bytes.subarray(consumed);
      for (let offset = 0; offset < rest.length; offset++) {
        const where = `at ${String(offset)} after consuming ${String(consumed)}, cuts ${cuts.join(',')}`;
        assert.equal(input.readUInt8(offset), rest.readUInt8(offset), `readUInt8 ${where}`);
        if (offset + 2 <= rest.length) assert.equal(input.readUInt16BE(offset), rest.readUInt16BE(offset), `readUInt16BE ${where}`);
        if (offset + 4 <= rest.length) assert.equal(input.readUInt32BE(offset), rest.readUInt32BE(offset), `readUInt32BE ${where}`);
      }
      assert.equal(input.length, rest.length);
    }
  }
});

test('a read past the end throws a RangeError, as bl does', () => {
  for (const cuts of CUTS) {
    const [input, bl] = both(split(bytes, cuts));
    assert.throws(() => bl.readUInt8(64), RangeError);
    assert.throws(() => input.readUInt8(64), RangeError);
    assert.throws(() => bl.readUInt32BE(62), RangeError);
    assert.throws(() => input.readUInt32BE(62), RangeError);
    assert.throws(() => input.readUInt8(-1), RangeError);
  }
  assert.throws(() => new ParserInput().readUInt8(0), RangeError);
});

test('slice and toString answer as bl does for every range, however the bytes are split and after any consume', () => {
  const text = Buffer.from('dev-1/app/p/data ünïcødé ✓ and some more text to cross chunks');
  for (const whole of [bytes, text]) {
    for (const cuts of CUTS.map((c) => c.filter((cut) => cut < whole.length))) {
      for (const consumed of [0, 2, 33]) {
        const rest = whole.subarray(consumed);
        for (let start = -2; start <= rest.length + 1; start++) {
          // A reversed range (never asked by the parser) is empty here; bl's answer depends on where its chunks end.
          for (let end = -2; end <= rest.length + 2; end++) {
            const at = (bound: number) => (bound < 0 ? Math.max(0, bound + rest.length) : Math.min(bound, rest.length));
            if (at(start) > at(end)) continue;
            // Fresh lists for each range: a slice across chunks joins them in a ParserInput.
            const [input, bl] = both(split(whole, cuts));
            input.consume(consumed);
            bl.consume(consumed);
            const where = `[${String(start)}, ${String(end)}) after consuming ${String(consumed)}, cuts ${cuts.join(',')}`;
            assert.deepEqual(input.slice(start, end), bl.slice(start, end), `slice ${where}`);
            assert.equal(input.toString('utf8', start, end), bl.toString('utf8', start, end), `toString ${where}`);
            assert.equal(input.length, bl.length, `length after slicing ${where}`);
          }
        }
        const [input, bl] = both(split(whole, cuts));
        input.consume(consumed);
        bl.consume(consumed);
        assert.equal(input.slice(9, 3).length, 0);
        assert.equal(input.toString('utf8', 9, 3), '');
        assert.deepEqual(input.slice(), rest);
        assert.equal(input.toString('latin1'), bl.toString('latin1'));
        assert.equal(input.toString(), rest.toString());
      }
    }
  }
});

test('consume leaves exactly the bytes after those consumed, however the bytes are split', () => {
  for (const cuts of CUTS) {
    for (const steps of [[1], [2, 3], [7], [31, 1], [64], [65], [0.5, 1.5], [Number.NaN, 4], [-3, 5]]) {
      const [input, bl] = both(split(bytes, cuts));
      let consumed = 0;
      while (consumed < bytes.length) {
        for (const step of steps) {
          input.consume(step);
          bl.consume(step);
          consumed = Math.min(bytes.length, consumed + (Number.isNaN(step) || step <= 0 ? 0 : Math.trunc(step)));
          assert.equal(input.length, bl.length);
          assert.equal(input.length, bytes.length - consumed, `length after consuming ${String(consumed)} (${steps.join(',')}) with cuts ${cuts.join(',')}`);
          assert.deepEqual(input.slice(), bytes.subarray(consumed), `bytes after consuming ${String(consumed)}`);
        }
        if (steps.every((step) => Math.trunc(step) <= 0 || Number.isNaN(step))) break;
      }
    }
  }
});

test('consuming allocates nothing: the first chunk stays, read from past what was consumed', () => {
  const first = Buffer.from('0123456789');
  const input = new ParserInput();
  input.append(first).append(Buffer.from('abc'));
  input.consume(3);
  assert.equal(input._bufs[0], first);
  assert.equal(input.readUInt8(0), 0x33);
  input.consume(7);
  assert.equal(input._bufs.length, 1);
  assert.equal(input.toString(), 'abc');
});

test('consuming the last byte leaves a fresh chunk array, not the grown one (an idle connection keeps no backing store)', () => {
  const input = new ParserInput();
  input.append(Buffer.from('01234')).append(Buffer.from('56789'));
  const grown = input._bufs;
  input.consume(4);
  assert.equal(input._bufs, grown, 'a partly consumed list keeps its array');
  input.consume(6);
  assert.equal(input.length, 0);
  assert.equal(input._bufs.length, 0);
  assert.notEqual(input._bufs, grown);
});

test('a slice inside the first chunk is a view of it, not a copy; one across chunks joins only the chunks it needs', () => {
  const first = Buffer.from('0123456789');
  const input = new ParserInput();
  input.append(first).append(Buffer.from('abc')).append(Buffer.from('def')).append(Buffer.from('ghi'));
  input.consume(1);
  const view = input.slice(1, 5);
  assert.equal(view.buffer, first.buffer);
  assert.equal(view.byteOffset, first.byteOffset + 2);
  assert.equal(view.toString(), '2345');
  assert.equal(input.toString('utf8', 7, 11), '89ab');
  assert.equal(input._bufs.length, 3, 'the first two chunks joined, the last two left as they were');
  assert.equal(input.toString(), '123456789abcdefghi');
});

test('only Buffers are appended; an empty one adds nothing', () => {
  const input = new ParserInput();
  input.append(Buffer.alloc(0));
  assert.equal(input._bufs.length, 0);
  assert.throws(() => input.append('text' as unknown as Buffer), /Buffers only/);
});

test('mqtt-packet parses the same packets whole and fed one byte at a time', () => {
  const packets = [
    mqttPacket.generate({ cmd: 'publish', topic: 'dev1/app/p/x', payload: Buffer.alloc(300, 7), qos: 1, messageId: 4242, retain: false, dup: false }),
    mqttPacket.generate({ cmd: 'puback', messageId: 65535 }),
    mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'dev1/app/s/#', qos: 1 }] }),
    mqttPacket.generate({ cmd: 'connect', clientId: 'dev1', protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 600 }),
  ];
  const Parser = require(parserPath) as { parser: () => ReturnType<typeof mqttPacket.parser> & { _list: unknown } };
  const parse = (feed: (parser: ReturnType<typeof mqttPacket.parser>) => void): unknown[] => {
    const parser = Parser.parser();
    assert.equal(leanParserState, 'installed');
    assert.ok(parser._list instanceof ParserInput, "aedes' copy of mqtt-packet buffers in a ParserInput (lean-parser.ts)");
    const out: unknown[] = [];
    parser.on('packet', (packet) => out.push(packet));
    parser.on('error', (error) => assert.fail(error));
    feed(parser);
    return out;
  };
  const wire = Buffer.concat(packets);
  const whole = parse((parser) => parser.parse(wire));
  const byteWise = parse((parser) => {
    for (const byte of wire) parser.parse(Buffer.from([byte]));
  });
  const inSevens = parse((parser) => {
    for (let at = 0; at < wire.length; at += 7) parser.parse(wire.subarray(at, at + 7));
  });
  assert.equal(whole.length, 4);
  assert.deepEqual(byteWise, whole);
  assert.deepEqual(inSevens, whole);
  assert.equal((whole[0] as { messageId: number }).messageId, 4242);
  assert.equal((whole[1] as { messageId: number }).messageId, 65535);
});
