// src/mqtt/aedes/bounded-reads.ts: aedes parses at most READ_BATCH_BYTES of
// a connection at a time, the rest waits in the socket, and nothing stalls or
// changes order (a packet longer than one read, a read ending inside one).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { DependencyMismatchError } from '../../src/errors.js';
import { boundReads, MAX_READ_AHEAD, readAhead, READ_BATCH_BYTES } from '../../src/mqtt/aedes/bounded-reads.js';
import { aedesOverTcp } from '../helpers/aedes-over-tcp.js';
import { waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';

interface Reading {
  conn: { readableLength: number };
  _parsingBatch: number;
  _parser: { parse(chunk: Buffer): unknown };
}

/**
 * A broker whose publishes wait for `release()`, recording each chunk its
 * first client's parser is given; while `options.ahead` says so, each publish
 * is let go with readAhead before it waits (as the publish path does for a
 * message the ingest log took).
 */
async function heldBroker(t: TestContext, options: { ahead: boolean } = { ahead: false }) {
  const { aedes, port, clients } = await aedesOverTcp<Reading>(t);
  const published: string[] = [];
  let held: (() => void)[] | undefined = [];
  aedes.authorizePublish = (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) => {
    published.push(packet.payload.toString());
    if (options.ahead && client) readAhead(client);
    if (held) held.push(() => callback(null));
    else callback(null);
  };
  const device = await RawMqtt.connect(t, port, { clientId: 'dev-flood' });
  assert.equal((await device.next('connack')).returnCode, 0);
  const client = clients[0];
  assert.ok(client);
  const chunks: number[] = [];
  const parse = client._parser.parse.bind(client._parser);
  client._parser.parse = (chunk: Buffer) => {
    chunks.push(chunk.length);
    return parse(chunk);
  };
  const release = () => {
    const waiting = held ?? [];
    held = undefined;
    for (const callback of waiting) callback();
  };
  /** Calls back the first `count` held publishes; the rest stay held. */
  const releaseFirst = (count: number) => {
    for (const callback of held?.splice(0, count) ?? []) callback();
  };
  const holdAgain = () => {
    held = [];
  };
  return { device, client, published, chunks, release, releaseFirst, holdAgain };
}

/** `count` QoS 0 publishes whose payloads start with their number, from `first` on. */
function publishes(count: number, payloadBytes: number, first = 0): Buffer {
  const packets: Buffer[] = [];
  for (let i = first; i < first + count; i++) {
    const payload = Buffer.alloc(payloadBytes, 'x');
    payload.write(String(i).padStart(6, '0'));
    packets.push(mqttPacket.generate({ cmd: 'publish', topic: 'dev-flood/app/p/data', qos: 0, retain: false, dup: false, payload }));
  }
  return Buffer.concat(packets);
}

/** Waits for `count` publishes and checks they came in order, none lost or doubled. */
async function allInOrder(published: string[], count: number): Promise<void> {
  await waitFor(() => published.length === count, 'every publish', 10_000);
  assert.deepEqual(
    published.map((payload) => payload.slice(0, 6)),
    Array.from({ length: count }, (_, i) => String(i).padStart(6, '0')),
    'in order, none lost or doubled',
  );
}

test('a flood in one write is parsed at most READ_BATCH_BYTES at a time; the rest stays in the socket until the batch called back', async (t) => {
  const { device, client, published, chunks, release } = await heldBroker(t);
  const count = 1000;
  const flood = publishes(count, 64);
  assert.ok(flood.length > 8 * READ_BATCH_BYTES);
  device.send(flood);
  await waitFor(() => published.length > 0, 'the first batch');
  // Until the batch's publishes call back, nothing more is parsed: the rest waits unread.
  await waitFor(() => client.conn.readableLength > 0, 'the rest of the flood buffered in the socket');
  assert.ok(published.length * 80 <= READ_BATCH_BYTES, `one batch is at most ${READ_BATCH_BYTES} bytes of packets (got ${published.length} publishes)`);
  assert.ok(chunks.every((length) => length <= READ_BATCH_BYTES), `parsed chunks ${chunks.join(', ')}`);
  release();
  await allInOrder(published, count);
  assert.ok(Math.max(...chunks) <= READ_BATCH_BYTES, `parsed chunks ${chunks.join(', ')}`);
  assert.ok(chunks.length >= Math.ceil(flood.length / READ_BATCH_BYTES));
});

test('publishes let go with readAhead are read past their batch while their callbacks wait, at most MAX_READ_AHEAD of them; their callbacks do not count twice', async (t) => {
  const options = { ahead: true };
  const { device, client, published, release, releaseFirst, holdAgain } = await heldBroker(t, options);
  const count = 1000;
  device.send(publishes(count, 64));
  const perBatch = Math.ceil(READ_BATCH_BYTES / 80);
  await waitFor(() => published.length > MAX_READ_AHEAD, 'more than the read-ahead limit parsed with every callback held');
  await waitFor(() => client.conn.readableLength > 0, 'the rest of the flood buffered in the socket');
  // Past the limit the connection waits for callbacks again: what is parsed is the limit plus the rest of the read that crossed it.
  assert.ok(published.length <= MAX_READ_AHEAD + perBatch, `parsed ${published.length} publishes with their callbacks held (limit ${MAX_READ_AHEAD} + one read of ${perBatch})`);
  // The callbacks of the publishes let go come (from the disk, in order) while the ones past the limit still wait:
  // they do not count again, so the connection still waits for those (a callback counted twice would read on here).
  const parsed = published.length;
  const pastLimit = parsed - MAX_READ_AHEAD;
  releaseFirst(MAX_READ_AHEAD);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(client._parsingBatch, pastLimit, 'the batch waits for the publishes past the limit');
  assert.equal(published.length, parsed, 'nothing more parsed while they wait');
  release();
  await allInOrder(published, count);
  // Every callback has come: the batch count is back where aedes keeps it, so without readAhead a held flood is
  // parsed one bounded batch at a time again (a callback counted twice would have let the connection read on).
  options.ahead = false;
  holdAgain();
  device.send(publishes(count, 64));
  await waitFor(() => published.length > count, 'the next flood\'s first batch');
  await waitFor(() => client.conn.readableLength > 0, 'the rest of the next flood buffered in the socket');
  assert.ok(published.length - count <= perBatch, `one batch of the next flood parsed (got ${published.length - count} publishes)`);
  release();
  await waitFor(() => published.length === 2 * count, 'every publish of the next flood', 10_000);
});

test("a publish sent while the one before, let go by readAhead, waits for its callback is read at once: new data is not that callback", async (t) => {
  const { device, client, published, release, holdAgain } = await heldBroker(t, { ahead: true });
  device.send(publishes(1, 64));
  await waitFor(() => published.length === 1, 'the first publish, let go and held');
  // A later write: its 'readable' event reads it. It used to count as the first publish's callback instead,
  // so the second publish waited in the buffer until that callback came (a commit spacing's wait, in bench scenario 4).
  device.send(publishes(1, 64, 1));
  await waitFor(() => published.length === 2, 'the second publish read while the first still waits for its callback');
  assert.equal(client._parsingBatch, 0, 'nothing pending in the batch: both were let go');
  release();
  await allInOrder(published, 2);
  // Both callbacks came and counted once each: a held flood stops again at the read-ahead limit, the rest in the socket.
  holdAgain();
  const count = 1000;
  device.send(publishes(count, 64, 2));
  await waitFor(() => published.length > 2, 'the flood\'s first publishes');
  await waitFor(() => client.conn.readableLength > 0, 'the rest of the flood buffered in the socket');
  release();
  await allInOrder(published, count + 2);
});

test('new data is not read past a publish whose callback has not come (back-pressure holds: no read one callback early)', async (t) => {
  const { device, client, published, release } = await heldBroker(t);
  device.send(publishes(1, 64));
  await waitFor(() => published.length === 1, 'the first publish, held');
  device.send(publishes(1, 64, 1));
  // aedes counted the second write's 'readable' as the held publish's callback and read it.
  await waitFor(() => client.conn.readableLength > 0, 'the second publish buffered, unread');
  assert.equal(published.length, 1, 'nothing read past the held publish');
  release();
  await allInOrder(published, 2);
});

test('readAhead leaves a client that does not read in bounded batches alone', () => {
  const unbound = { _parsingBatch: 1, _paused: false };
  assert.equal(readAhead(unbound), false);
  assert.equal(unbound._parsingBatch, 1);
});

test('a packet longer than one read, and nothing after it, is read on to its end (no read is left waiting for a callback that cannot come)', async (t) => {
  const { device, published, chunks, release } = await heldBroker(t);
  release();
  const big = publishes(1, 3 * READ_BATCH_BYTES + 100);
  device.send(big);
  await waitFor(() => published.length === 1, 'the long publish');
  assert.equal(published[0]?.length, 3 * READ_BATCH_BYTES + 100);
  assert.ok(chunks.length >= 4 && chunks.every((length) => length <= READ_BATCH_BYTES), `parsed chunks ${chunks.join(', ')}`);
  // And a read that ends inside a packet, with the rest already buffered: 3 publishes straddling read boundaries.
  const straddling = publishes(3, READ_BATCH_BYTES - 10);
  device.send(straddling);
  await waitFor(() => published.length === 4, 'the straddling publishes');
});

test("the guard refuses a client whose nextBatch is not aedes 1.2's, naming aedes and its version", async () => {
  const aedes = new Aedes();
  const nextBatch = () => undefined;
  const changed = {
    _nextBatch: nextBatch,
    _parsingBatch: 1,
    _parser: { parse: () => undefined },
    conn: { readableLength: 0, listeners: () => [nextBatch] },
  };
  assert.throws(() => boundReads(aedes, changed), (error: unknown) => error instanceof DependencyMismatchError && /aedes@1\.2\.0: .*nextBatch/.test(error.message));
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
});

test('a malformed packet closes the client and what follows it in the socket is not parsed', async (t) => {
  const { device, client, published, release } = await heldBroker(t);
  release();
  // Two publishes, a packet of the reserved type 0, then a long run of publishes, all in one write.
  device.send(Buffer.concat([publishes(2, 16), Buffer.from([0x00, 0x00]), publishes(2000, 64)]));
  assert.equal(await device.closesWithin(5000), true, 'the broker closes the connection');
  await waitFor(() => (client as unknown as { closed: boolean }).closed, 'the client closed');
  assert.ok(published.length <= READ_BATCH_BYTES / 16, `publishes handled after the bad packet: ${published.length}`);
});
