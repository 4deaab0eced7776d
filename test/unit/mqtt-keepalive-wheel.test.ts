// src/mqtt/aedes/keepalive-wheel.ts: one wheel per broker in place of aedes'
// Node timer per client. A client is timed out at 1.5 × its keepalive with
// no packet, never before; every packet refreshes it; closed clients leave.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client } from 'aedes';
import { KeepaliveWheel } from '../../src/mqtt/aedes/keepalive-wheel.js';
import { aedesOverTcp } from '../helpers/aedes-over-tcp.js';
import { waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';

interface FakeClient {
  closed: boolean;
  _keepaliveInterval: number;
  _keepaliveTimer: unknown;
  broker: { emit(event: 'keepaliveTimeout', client: unknown): boolean };
  emit(event: 'error', error: Error): boolean;
  timeouts: number;
  errors: string[];
}

function fakeClient(intervalMs: number): FakeClient {
  const client: FakeClient = {
    closed: false,
    _keepaliveInterval: intervalMs,
    // What aedes' setKeepAlive leaves: a Node timer (long, so it never fires here).
    _keepaliveTimer: setTimeout(() => assert.fail('the replaced Node timer fired'), 60_000),
    broker: {
      emit: () => {
        client.timeouts++;
        return true;
      },
    },
    emit: (_event, error) => {
      client.errors.push(error.message);
      // aedes' close(), as its error handler runs it.
      client.closed = true;
      client._keepaliveTimer = null;
      return true;
    },
    timeouts: 0,
    errors: [],
  };
  return client;
}

test('the wheel takes over a Node keepalive timer and times a client out at its interval, never before, each refresh starting it again', (t) => {
  const wheel = new KeepaliveWheel();
  t.after(() => wheel.stop());
  const client = fakeClient(1500);
  const nodeTimer = client._keepaliveTimer as NodeJS.Timeout;
  wheel.watch(client);
  assert.notEqual(client._keepaliveTimer, nodeTimer);
  assert.equal((nodeTimer as unknown as { _destroyed: boolean })._destroyed, true, "aedes' timer is cleared");
  assert.equal(wheel.size, 1);
  const entry = client._keepaliveTimer as { seen: number; refresh(): unknown };
  const before = performance.now();
  entry.refresh();
  assert.ok(entry.seen >= before, 'refresh() notes the time');
  // Whole milliseconds from here: a clock reading plus 2,500 minus itself plus 1,000 need not be exactly 1,500 in floating point.
  entry.seen = 10_000;
  wheel.sweep(11_499);
  assert.equal(client.timeouts, 0, 'not before 1.5 × keepalive');
  // A packet (aedes calls refresh()): the interval starts again from it.
  entry.seen = 11_000;
  wheel.sweep(12_499);
  assert.equal(client.timeouts, 0);
  wheel.sweep(12_500);
  assert.equal(client.timeouts, 1);
  assert.deepEqual(client.errors, ['keep alive timeout']);
  assert.equal(wheel.size, 0, 'the timed-out client leaves the wheel');
});

test('closed clients leave the wheel at the next sweep, and clients without a keepalive are not watched', (t) => {
  const wheel = new KeepaliveWheel();
  t.after(() => wheel.stop());
  const open = fakeClient(10_000);
  const closing = fakeClient(10_000);
  wheel.watch(open);
  wheel.watch(closing);
  // aedes' close(): clearTimeout on the entry (a no-op for it), then null.
  clearTimeout(closing._keepaliveTimer as NodeJS.Timeout);
  closing._keepaliveTimer = null;
  wheel.sweep();
  assert.equal(wheel.size, 1);
  const none = fakeClient(0);
  const nodeTimer = none._keepaliveTimer as NodeJS.Timeout;
  none._keepaliveInterval = 0;
  wheel.watch(none);
  assert.equal(none._keepaliveTimer, nodeTimer);
  clearTimeout(nodeTimer);
  clearTimeout((open._keepaliveTimer as { refresh?: unknown }) as NodeJS.Timeout);
  assert.equal(open.timeouts + closing.timeouts, 0);
});

test('over a socket: a silent device is closed with keepaliveTimeout no sooner than 1.5 × keepalive; a pinging one is refreshed', async (t) => {
  const { aedes, port, clients } = await aedesOverTcp<Client>(t);
  const timedOut: string[] = [];
  aedes.on('keepaliveTimeout', (client: Client) => timedOut.push(client.id));

  const pinging = await RawMqtt.connect(t, port, { clientId: 'pinging', keepalive: 60 });
  assert.equal((await pinging.next('connack')).returnCode, 0);
  await waitFor(() => (clients[0] as unknown as { _keepaliveTimer: unknown } | undefined)?._keepaliveTimer?.constructor.name === 'KeepaliveEntry', "the client's keepalive to be on the wheel");
  const entry = (clients[0] as unknown as { _keepaliveTimer: { seen: number } })._keepaliveTimer;
  const seenAtConnect = entry.seen;
  await waitFor(() => performance.now() > seenAtConnect + 1, 'the clock to move');
  pinging.send({ cmd: 'pingreq' });
  await pinging.next('pingresp');
  assert.ok(entry.seen > seenAtConnect, 'a PINGREQ refreshed the entry');

  const sentAt = performance.now();
  const silent = await RawMqtt.connect(t, port, { clientId: 'silent', keepalive: 1 });
  assert.equal((await silent.next('connack')).returnCode, 0);
  assert.equal(await silent.closesWithin(10_000), true, 'the silent device is closed');
  const elapsed = performance.now() - sentAt;
  assert.ok(elapsed >= 1500, `closed after ${elapsed.toFixed(0)} ms, not before 1.5 × keepalive`);
  assert.deepEqual(timedOut, ['silent']);
  assert.equal(clients[0]?.closed, false, 'the pinging device stays');
});
