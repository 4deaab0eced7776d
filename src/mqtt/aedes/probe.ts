import { Duplex } from 'node:stream';
import type { Aedes } from 'aedes';

/**
 * An aedes client on an in-memory stream, never connected: the adapter reads
 * the Client and Parser prototypes from it at start-up (aedes exports
 * neither) and checks their shape before any listener opens. Closed before
 * this returns, so it leaves no timer or listener behind.
 */
export function probeClient<T>(aedes: Aedes, inspect: (client: object, stream: Duplex) => T): T {
  const stream = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  const client = aedes.handle(stream) as unknown as { close(done?: () => void): void };
  try {
    return inspect(client, stream);
  } finally {
    client.close();
    stream.destroy();
  }
}
