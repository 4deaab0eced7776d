import { once } from 'node:events';
import type { Server } from 'node:net';
import { ListenError } from '../errors.js';

/**
 * Binds `server` (TCP, TLS or HTTP) to `host:port`, or throws ListenError
 * naming `what` and the address when it cannot (port in use, permission
 * denied, address not on this machine). Until it is listening, the bind error
 * is this call's; afterwards the caller adds its own 'error' listener.
 */
export async function listenOrThrow(server: Server, host: string, port: number, what: string): Promise<void> {
  try {
    server.listen(port, host);
    // `once` rejects on an 'error' before 'listening' and removes both listeners either way.
    await once(server, 'listening');
  } catch (error) {
    throw new ListenError(what, `${host}:${port}`, error);
  }
}
