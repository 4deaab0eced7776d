// src/mqtt/aedes/lean-client.ts: aedes clients slimmed after their
// constructor behave as aedes' own (a socket that closes, ends or fails
// closes its client), and the parser keeps shared settings, not its CONNECT.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Client } from 'aedes';
import type { NucleonAedes } from '../../src/mqtt/aedes/index.js';
import { aedesOverTcp } from '../helpers/aedes-over-tcp.js';
import { waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';

interface Slimmed {
  closed: boolean;
  conn: Socket;
  subscriptions: object;
  duplicates: object;
  _events: object;
  _eos: () => void;
  _parser: { settings: object; _states: readonly string[]; _events: object };
}

function broker(t: TestContext): Promise<{ aedes: NucleonAedes; port: number; clients: Slimmed[] }> {
  return aedesOverTcp<Slimmed>(t);
}

async function connected(t: TestContext, port: number, clientId: string): Promise<RawMqtt> {
  const device = await RawMqtt.connect(t, port, { clientId, username: 'user', password: Buffer.from('secret') });
  assert.equal((await device.next('connack')).returnCode, 0);
  return device;
}

test("a socket's client is slimmed: one shared 'close' listener instead of stream.finished(), fast null-prototype tables, shared parser settings", async (t) => {
  const { port, clients } = await broker(t);
  await connected(t, port, 'dev-a');
  const client = clients[0];
  assert.ok(client);
  assert.equal(client.conn.listenerCount('finish'), 0, "finished()'s listeners are gone");
  assert.ok(client.conn.listeners('close').some((listener) => listener.name === 'closeClientOfSocket'));
  assert.equal(client._eos.name, 'forgetSocketClose');
  for (const table of [client.subscriptions, client.duplicates, client._events, client._parser._events]) assert.equal(Object.getPrototypeOf(table), null);
  assert.equal((client.subscriptions as Record<string, unknown>).constructor, undefined, 'inherited names read back as absent');
  assert.ok(client.conn.listeners('end').every((listener) => !listener.name.startsWith('bound ')), 'no bound listener per client');
  // The CONNECT (with its password) is not kept: only what the parser reads back.
  assert.deepEqual({ ...client._parser.settings }, { protocolVersion: 4 });
  assert.ok(Object.isFrozen(client._parser.settings) && Object.isFrozen(client._parser._states));
});

test('a socket that closes, ends or fails still closes its client, and the broker lets it go', async (t) => {
  const { aedes, port, clients } = await broker(t);
  const gone: string[] = [];
  aedes.on('clientDisconnect', (client: Client) => gone.push(client.id));

  // Destroyed on the server side without an error: only the 'close' path (what finished() used to add) sees it.
  await connected(t, port, 'dev-close');
  clients[0]?.conn.destroy();
  await waitFor(() => gone.includes('dev-close'), 'dev-close to be let go');
  assert.equal(clients[0]?.closed, true);

  // Ended by the device (FIN): aedes' own 'end' path, now a shared listener.
  const ending = await connected(t, port, 'dev-end');
  (ending as unknown as { socket: Socket }).socket.end();
  await waitFor(() => gone.includes('dev-end'), 'dev-end to be let go');

  // A socket error: through the shared 'error' listener to the client's error handler.
  await connected(t, port, 'dev-error');
  clients[2]?.conn.destroy(new Error('boom'));
  await waitFor(() => gone.includes('dev-error'), 'dev-error to be let go');
  assert.equal(aedes.connectedClients, 0);
});

test('a stream that is not a socket keeps aedes\' own stream.finished() watch', async (t) => {
  const { aedes } = await broker(t);
  const stream = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  const client = aedes.handle(stream) as unknown as Slimmed;
  assert.notEqual(client._eos.name, 'forgetSocketClose');
  assert.ok(stream.listenerCount('finish') > 0);
  stream.destroy();
  await waitFor(() => client.closed, 'the client to close with its stream');
});

test("a client's QoS 2 set is made on first use and QoS 2 runs through it; its pending drains are one shared empty list", async (t) => {
  const { port, clients } = await broker(t);
  const device = await connected(t, port, 'dev-q2');
  const client = clients[0] as unknown as Slimmed & { _inboundInflight: Set<number>; _pendingDrains: unknown[] };
  assert.equal(Object.hasOwn(client, '_inboundInflight'), false, 'no Set while the device sends no QoS 2');
  assert.ok(Object.isFrozen(client._pendingDrains) && client._pendingDrains.length === 0);
  assert.equal(client._pendingDrains, (clients[0] as unknown as { _pendingDrains: unknown[] })._pendingDrains);
  device.send({ cmd: 'publish', topic: 'dev-q2/app/p/x', payload: Buffer.from('once'), qos: 2, messageId: 7, retain: false, dup: false });
  assert.equal((await device.next('pubrec')).messageId, 7);
  assert.ok(Object.hasOwn(client, '_inboundInflight'), 'its own Set once a QoS 2 PUBLISH arrived');
  assert.deepEqual([...client._inboundInflight], [7]);
  // The same message again before PUBREL (a device resending with DUP): not delivered twice.
  device.send({ cmd: 'publish', topic: 'dev-q2/app/p/x', payload: Buffer.from('once'), qos: 2, messageId: 7, retain: false, dup: true });
  assert.equal((await device.next('pubrec')).messageId, 7);
  device.send({ cmd: 'pubrel', messageId: 7 });
  assert.equal((await device.next('pubcomp')).messageId, 7);
  await waitFor(() => client._inboundInflight.size === 0, 'the PUBREL to release message 7');
  // A second QoS 2 message takes the same Set, and leaves it empty again.
  device.send({ cmd: 'publish', topic: 'dev-q2/app/p/x', payload: Buffer.from('again'), qos: 2, messageId: 8, retain: false, dup: false });
  assert.equal((await device.next('pubrec')).messageId, 8);
  assert.deepEqual([...client._inboundInflight], [8]);
  device.send({ cmd: 'pubrel', messageId: 8 });
  assert.equal((await device.next('pubcomp')).messageId, 8);
  await waitFor(() => client._inboundInflight.size === 0, 'the PUBREL to release message 8');
});
