// src/mqtt/aedes/write-coalescing.ts: a connection's packets written in one
// event-loop turn leave in one write, in order, none lost; a lone packet at
// light load is not held past the next check phase (no timer).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { coalesceWrites } from '../../src/mqtt/aedes/index.js';
import { admitOutOfOrder } from '../../src/mqtt/aedes/deliveries.js';
import { writeTogether } from '../../src/mqtt/aedes/write-coalescing.js';

const require = createRequire(import.meta.url);
// The copy of mqtt-packet aedes writes with.
const mqttPacket = createRequire(require.resolve('aedes'))('mqtt-packet') as { writeToStream(packet: object, stream: Duplex): boolean };

/** A duplex that records each write it gets (a writev counts once, with its chunks joined). */
function recordingStream(): { stream: Duplex; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      writes.push(chunk);
      callback();
    },
    writev(chunks, callback) {
      writes.push(Buffer.concat(chunks.map((c) => c.chunk as Buffer)));
      callback();
    },
  });
  return { stream, writes };
}

const publish = (id: number) => ({ cmd: 'publish', topic: 'dev1/app/s/x', payload: Buffer.from(`m${id}`), qos: 1, messageId: id, retain: false, dup: false });
const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

/** As aedes sends deliveries: each packet from its own setImmediate (so mqtt-packet's nextTick uncork runs between them). */
async function writeAsAedes(stream: Duplex, ids: number[]): Promise<void> {
  await Promise.all(ids.map((id) => new Promise<void>((resolve) => setImmediate(() => {
    mqttPacket.writeToStream(publish(id), stream);
    resolve();
  }))));
}

test('packets written from separate immediates of one turn leave in one write, in order, none lost', async () => {
  const plain = recordingStream();
  await writeAsAedes(plain.stream, [1, 2, 3, 4, 5]);
  await immediate();
  const perPacket = plain.writes.length;

  const coalesced = recordingStream();
  assert.equal(coalesceWrites(coalesced.stream), true);
  await writeAsAedes(coalesced.stream, [1, 2, 3, 4, 5]);
  await immediate();
  await immediate();
  assert.ok(perPacket >= 5, `without coalescing every packet is written on its own (${perPacket} writes)`);
  assert.equal(coalesced.writes.length, 1, 'one write for the turn');
  assert.deepEqual(Buffer.concat(coalesced.writes), Buffer.concat(plain.writes), 'the same bytes in the same order');
});

test('a lone packet is flushed by the next check phase, without a timer; later turns coalesce again', async () => {
  const { stream, writes } = recordingStream();
  coalesceWrites(stream);
  mqttPacket.writeToStream(publish(1), stream);
  assert.equal(writes.length, 0, 'held for the turn');
  await immediate();
  assert.equal(writes.length, 1, 'written by the immediate');
  await writeAsAedes(stream, [2, 3]);
  await immediate();
  await immediate();
  assert.equal(writes.length, 2, 'the next turn is one write again');
  assert.equal(stream.writableCorked, 0, 'nothing left corked');
});

test('packets written together from an immediate leave when it returns, one write per connection, not in the next loop iteration', async () => {
  const first = recordingStream();
  const second = recordingStream();
  const held = recordingStream();
  for (const { stream } of [first, second, held]) coalesceWrites(stream);
  const seen = await new Promise<number[]>((resolve) => {
    setImmediate(() => {
      // Corked before the batch (as by a read in this turn): its own release is already scheduled and stays so.
      mqttPacket.writeToStream(publish(9), held.stream);
      writeTogether(() => {
        for (const id of [1, 2, 3]) mqttPacket.writeToStream(publish(id), first.stream);
        mqttPacket.writeToStream(publish(4), second.stream);
        mqttPacket.writeToStream(publish(10), held.stream);
        writeTogether(() => mqttPacket.writeToStream(publish(5), second.stream));
        assert.equal(first.writes.length + second.writes.length, 0, 'held while the batch runs');
      });
      // mqtt-packet's own cork of each write is released on process.nextTick: still this immediate, before the next one.
      process.nextTick(() => resolve([first.writes.length, second.writes.length, held.writes.length]));
    });
  });
  assert.deepEqual(seen, [1, 1, 0], 'each batch connection written once as the batch returned; the one corked before waits for its turn');
  const plain = recordingStream();
  for (const id of [1, 2, 3]) mqttPacket.writeToStream(publish(id), plain.stream);
  await immediate();
  assert.deepEqual(first.writes[0], Buffer.concat(plain.writes), 'the same bytes in the same order');
  await immediate();
  await immediate();
  assert.equal(held.writes.length, 1);
  for (const { stream } of [first, second, held]) assert.equal(stream.writableCorked, 0, 'nothing left corked');
});

test('a batch that throws still releases what it corked', async () => {
  const { stream, writes } = recordingStream();
  coalesceWrites(stream);
  assert.throws(() => writeTogether(() => {
    mqttPacket.writeToStream(publish(1), stream);
    throw new Error('boom');
  }), /boom/);
  await new Promise((resolve) => process.nextTick(resolve));
  assert.equal(writes.length, 1);
  assert.equal(stream.writableCorked, 0);
});

test('a connection destroyed while held keeps its cork count balanced and writes nothing more', async () => {
  const { stream, writes } = recordingStream();
  coalesceWrites(stream);
  mqttPacket.writeToStream(publish(1), stream);
  stream.destroy();
  await immediate();
  await immediate();
  assert.equal(writes.length, 0);
  assert.equal(stream.writableCorked, 0);
});

test('a stream with its own cork is left alone', () => {
  const { stream } = recordingStream();
  stream.cork = () => undefined;
  assert.equal(coalesceWrites(stream), false);
});

test("aedes' duplicate check passes a message routed out of counter order, and still drops the same message sent twice", () => {
  // aedes' own check (lib/client.js dedupe), run after admitOutOfOrder as in deliveries.ts.
  const client = { duplicates: Object.create(null) as Record<string, number | undefined> };
  const deliver = (counter: number) => {
    const packet = { brokerId: 'b1', brokerCounter: counter };
    admitOutOfOrder(client, packet);
    const passes = (client.duplicates.b1 ?? 0) < counter;
    if (passes) client.duplicates.b1 = counter;
    return passes;
  };
  assert.deepEqual([deliver(2), deliver(1), deliver(3)], [true, true, true], 'out of order: all sent');
  assert.equal(deliver(3), false, 'the same message again (a second matching subscription): dropped');
});
