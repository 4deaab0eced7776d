// A NucleonAedes with every adapter contact installed, over a plain TCP
// listener on a free loopback port: for tests of what the contacts do to
// aedes' own clients, without the rest of Nucleon. Closed after the test.
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';
import { grantHighestQos, installAedesContacts, NucleonAedes } from '../../src/mqtt/aedes/index.js';

/**
 * The broker, its port, and every client aedes.handle made, in connection
 * order (typed as the test reads them). With `deliveries`, each client's
 * delivery functions are Nucleon's (grantHighestQos), as the MQTT runner sets them.
 */
export async function aedesOverTcp<C>(t: TestContext, options: { deliveries?: boolean } = {}): Promise<{ aedes: NucleonAedes; port: number; clients: C[] }> {
  const aedes = new NucleonAedes({ maxRouting: 10, maxRoutingWaiting: 10, onRoutingRefused: () => undefined });
  await aedes.listen();
  installAedesContacts(aedes, { maxSendBufferBytes: 1 << 20, maxPacketSize: 1 << 16 });
  const clients: C[] = [];
  const server = createServer((socket) => {
    const client = aedes.handle(socket);
    if (options.deliveries === true) grantHighestQos(client);
    clients.push(client as unknown as C);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  return { aedes, port: typeof address === 'object' && address ? address.port : 0, clients };
}
