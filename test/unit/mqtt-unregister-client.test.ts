// aedes' client close unregisters by id (`if (broker.clients[id])`), not by
// client: a close that finished after a new connection with the same id had
// registered removed the new client from the map, and a kick or revocation
// then could not find it (revocation-cluster, seen in CI). NucleonAedes keeps
// the newer client in its place and still reports the old one's disconnect;
// a client registered but not yet marked connected is found for a kick.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client } from 'aedes';
import { checkNucleonAedes, NucleonAedes } from '../../src/mqtt/aedes/nucleon-aedes.js';

interface Internals {
  clients: Record<string, unknown>;
  connectedClients: number;
}

function broker(t: import('node:test').TestContext): NucleonAedes & Internals {
  const aedes = new NucleonAedes({ maxRouting: 10, maxRoutingWaiting: 10, onRoutingRefused: () => undefined });
  t.after(() => new Promise<void>((resolve) => aedes.close(() => resolve())));
  return aedes as NucleonAedes & Internals;
}

const clientNamed = (id: string, label: string) => ({ id, label, connected: true }) as unknown as Client & { label: string };

test('the close of an old connection that ends after a newer one with its id registered leaves the newer one in the map', (t) => {
  const aedes = broker(t);
  checkNucleonAedes(aedes);
  const old = clientNamed('dev-c', 'old');
  const newer = clientNamed('dev-c', 'newer');
  aedes.clients['dev-c'] = newer;
  aedes.connectedClients = 2;
  const disconnected: string[] = [];
  aedes.on('clientDisconnect', (client) => disconnected.push((client as Client & { label: string }).label));

  aedes.unregisterClient(old);
  assert.equal(aedes.clients['dev-c'], newer, 'the newer connection keeps its place');
  assert.equal(aedes.connectedClient('dev-c'), newer);
  assert.deepEqual(disconnected, ['old'], 'the old one is still reported as gone');
  assert.equal(aedes.connectedClients, 1);

  aedes.unregisterClient(newer);
  assert.equal(aedes.clients['dev-c'], undefined);
  assert.deepEqual(disconnected, ['old', 'newer']);
  assert.equal(aedes.connectedClients, 0);
});

test('a client registered but not yet "connected" (its stored queue still being read) is found for a kick; a closed one is not', (t) => {
  const aedes = broker(t);
  // aedes sets `connected` only after the CONNACK and the stored queue: a kick in between must still find it.
  const registering = { id: 'dev-k', connected: false, closed: false } as unknown as Client;
  aedes.clients['dev-k'] = registering;
  assert.equal(aedes.connectedClient('dev-k'), registering);
  assert.deepEqual(aedes.openClients(), [registering]);
  (registering as unknown as { closed: boolean }).closed = true;
  assert.equal(aedes.connectedClient('dev-k'), undefined);
  assert.deepEqual(aedes.openClients(), []);
});
