/*
 * What aedes' Client constructor leaves on every connection, done with less
 * memory and the same behaviour (README "Memory per device connection";
 * measured with scripts/heap-per-connection.ts). aedes makes its clients in
 * `aedes.handle()`; `leanClients` wraps that, and each new client is slimmed
 * right after its constructor returns, before any event of its stream can run.
 *
 * - aedes watches the connection with `stream.finished(conn, close)`: seven
 *   closures, two contexts and an options object per client (about 1 KB),
 *   listening for 'end', 'finish', 'error' and 'close'. On a socket (which
 *   emits 'close', so `finished` calls back on 'close' or 'error' only) aedes
 *   already closes the client on 'end' and on 'error' (through its error
 *   handler); what `finished` adds is 'close'. One listener shared by all
 *   sockets does that; a stream that is not a socket (a WebSocket stream) or
 *   is closed already keeps aedes' own.
 */
import { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';

/** The parts of aedes 1.x's Client this contact reads and replaces. */
interface ClientInternals {
  conn: Socket & { client?: unknown };
  /** `finished()`'s cleanup, which aedes calls from close(). */
  _eos: () => void;
  close(): void;
}

/** A socket's 'close' listener (the socket is `this`): closes its aedes client, as `finished` did. */
function closeClientOfSocket(this: { client?: unknown }): void {
  (this.client as ClientInternals | undefined)?.close();
}

/** Replaces `finished()`'s cleanup: aedes' close() calls it as a method of the client. */
function forgetSocketClose(this: ClientInternals): void {
  this.conn.removeListener('close', closeClientOfSocket);
}

function slim(client: ClientInternals): void {
  const conn = client.conn;
  if (conn instanceof Socket && !conn.closed) {
    client._eos();
    conn.on('close', closeClientOfSocket);
    client._eos = forgetSocketClose;
  }
}

/**
 * Checks the probe client (made by aedes.handle on an in-memory stream) has
 * what `slim` replaces, then wraps this broker's `handle` (once) so every
 * new client is slimmed. Throws DependencyMismatchError when it does not.
 */
export function leanClients(aedes: Aedes, probe: object): void {
  const client = probe as Partial<ClientInternals>;
  if (typeof client._eos !== 'function' || typeof client.close !== 'function' || (client.conn as { client?: unknown } | undefined)?.client !== probe) {
    throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'a client has no _eos / close / conn.client where src/mqtt/aedes/lean-client.ts expects them');
  }
  const handle = aedes.handle as Aedes['handle'] & { lean?: true };
  if (handle.lean) return;
  const lean: Aedes['handle'] & { lean?: true } = (stream, request) => {
    const made = handle(stream, request);
    slim(made as unknown as ClientInternals);
    return made;
  };
  lean.lean = true;
  aedes.handle = lean;
}
