// LocalPresence: the one rule for a device's presence (online while at least one
// of its connections is open), without sockets or a broker.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { silentLogger } from '../../src/logger.js';
import { LocalPresence, type DeviceConnection, type PresenceEntry } from '../../src/presence/index.js';

function connection(uid: string, overrides: Partial<DeviceConnection> = {}): DeviceConnection {
  return { uid, clientId: uid, remoteAddress: '127.0.0.1:4000', authMethod: 'certificate', at: 1000, ...overrides };
}

function recordChanges(presence: LocalPresence): [string, string | undefined][] {
  const changes: [string, string | undefined][] = [];
  presence.onChange((uid, entry) => changes.push([uid, entry?.remoteAddress]));
  return changes;
}

test('a device is online from its connect until its goodbye', () => {
  const presence = new LocalPresence('here', silentLogger());
  const changes = recordChanges(presence);
  assert.equal(presence.isOnline('dev-1'), false);
  const leave = presence.connected(connection('dev-1'));
  assert.equal(presence.isOnline('dev-1'), true);
  assert.deepEqual(presence.get('dev-1'), {
    uid: 'dev-1',
    instance: 'here',
    clientId: 'dev-1',
    connectedAt: 1000,
    remoteAddress: '127.0.0.1:4000',
    authMethod: 'certificate',
  } satisfies PresenceEntry);
  assert.equal(presence.size, 1);
  assert.equal(presence.connections, 1);
  presence.disconnected(leave);
  assert.equal(presence.isOnline('dev-1'), false);
  assert.equal(presence.size, 0);
  assert.equal(presence.connections, 0);
  // A second goodbye of the same connection changes nothing.
  presence.disconnected(leave);
  assert.equal(presence.connections, 0);
  assert.deepEqual(changes, [
    ['dev-1', '127.0.0.1:4000'],
    ['dev-1', undefined],
  ]);
});

test('a reconnect with the same client id before the old goodbye keeps the device online', () => {
  const presence = new LocalPresence('here', silentLogger());
  const changes = recordChanges(presence);
  const oldLeave = presence.connected(connection('dev-1', { remoteAddress: 'old', at: 1000 }));
  // Session takeover: the new connection arrives with the same client id, then the old one says goodbye.
  const newLeave = presence.connected(connection('dev-1', { remoteAddress: 'new', at: 2000 }));
  assert.equal(presence.connections, 2);
  assert.equal(presence.size, 1);
  presence.disconnected(oldLeave);
  assert.equal(presence.isOnline('dev-1'), true);
  assert.equal(presence.get('dev-1')?.remoteAddress, 'new');
  assert.equal(presence.get('dev-1')?.connectedAt, 2000);
  presence.disconnected(newLeave);
  assert.equal(presence.isOnline('dev-1'), false);
  // The old goodbye was invisible: only connect, reconnect, and the last goodbye are changes.
  assert.deepEqual(changes, [
    ['dev-1', 'old'],
    ['dev-1', 'new'],
    ['dev-1', undefined],
  ]);
});

test('several connections of one device: online until the last closes, in any order', () => {
  const presence = new LocalPresence('here', silentLogger());
  const [a, b, c] = ['a', 'b', 'c'].map((address, i) => presence.connected(connection('dev-1', { clientId: `dev-1-${address}`, remoteAddress: address, at: i })));
  assert.ok(a && b && c);
  const other = presence.connected(connection('dev-2'));
  assert.equal(presence.connections, 4);
  assert.equal(presence.size, 2);
  // The newest closes first: the newest still open stands for the device.
  presence.disconnected(c);
  assert.equal(presence.get('dev-1')?.remoteAddress, 'b');
  presence.disconnected(a);
  assert.equal(presence.get('dev-1')?.remoteAddress, 'b');
  presence.disconnected(b);
  assert.equal(presence.isOnline('dev-1'), false);
  assert.equal(presence.isOnline('dev-2'), true);
  assert.deepEqual([...presence.entries()].map((e) => e.uid), ['dev-2']);
  presence.disconnected(other);
  assert.equal(presence.connections, 0);
});

test('a listener that throws is logged and the others are still told', () => {
  const errors: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      errors.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
      done();
    },
  });
  const presence = new LocalPresence('here', pino({ level: 'error' }, sink));
  const told: string[] = [];
  presence.onChange(() => {
    throw new Error('listener bug');
  });
  const unsubscribe = presence.onChange((uid) => told.push(uid));
  presence.connected(connection('dev-1'));
  assert.deepEqual(told, ['dev-1']);
  assert.deepEqual(errors, ['presence listener failed']);
  unsubscribe();
  presence.connected(connection('dev-2'));
  assert.deepEqual(told, ['dev-1']);
});
