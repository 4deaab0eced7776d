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
 * - aedes listens with a bound function per client for the socket's 'end'
 *   (`close.bind(client)`) and 'error' and the parser's 'error'
 *   (`emit.bind(client, 'error')`). Shared functions find the client through
 *   the emitter's `client` (set by aedes on both) and do the same; each takes
 *   its bound function's place, last among that event's listeners.
 * - Each parser gets its own copy of the same four state names (`_states`),
 *   which it only reads: one frozen array serves all.
 * - Objects with a null prototype made with `Object.create(null)` or
 *   `{ __proto__: null }` start in V8's dictionary mode: 184 B each, against
 *   56 B for an empty object whose prototype is then set to null (same
 *   semantics: nothing inherited, and a property named like an Object method
 *   reads back as absent). A client has four while idle: its `subscriptions`
 *   and `duplicates` (empty at this point) and the EventEmitter listener
 *   tables (`_events`) of the client and of its parser (copied; each event's
 *   listeners unchanged). EventEmitter treats `_events` as a plain table and
 *   makes a new one when it empties. The client's one-time 'connected'
 *   listener goes last in its copy: V8 keeps a table in fast mode when the
 *   property deleted is the last one added, and that listener is removed at
 *   CONNACK (the order of event names is nothing aedes or Node relies on).
 * - Each client gets a Set of the QoS 2 messages it sent that await PUBREL
 *   (`_inboundInflight`, 172 B empty), which most devices never use. An
 *   accessor on Client.prototype takes the constructor's empty Set and drops
 *   it; the client's own Set is made the first time aedes reads the field
 *   (a QoS 2 PUBLISH or a PUBREL), and is an ordinary field from then on.
 * - Its empty `_pendingDrains` array becomes a shared frozen one while
 *   slow-consumers.ts's waitForDrain (which never adds to it) is installed.
 */
import type { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { adjustNewClients } from './new-clients.js';
import { sharePendingDrains } from './slow-consumers.js';
import { installedVersion } from './versions.js';

/** The parts of aedes 1.x's Client this contact reads and replaces. */
interface ClientInternals {
  conn: Socket & { client?: unknown };
  subscriptions: Record<string, unknown>;
  duplicates: Record<string, unknown>;
  _events: Record<string, unknown>;
  _parser: EventEmitter & { _events: Record<string, unknown>; _states: readonly string[] };
  /** `finished()`'s cleanup, which aedes calls from close(). */
  _eos: () => void;
  close(): void;
}

/** A socket's 'close' listener (the socket is `this`): closes its aedes client, as `finished` did. */
function closeClientOfSocket(this: { client?: unknown }): void {
  (this.client as ClientInternals | undefined)?.close();
}

/** A socket's or parser's 'error' listener: the error goes to its client, as `client.emit.bind(client, 'error')` did. */
function emitErrorOnClient(this: { client?: unknown }, error: Error): void {
  (this.client as { emit(event: 'error', error: Error): void } | undefined)?.emit('error', error);
}

/** Puts `shared` in place of the bound function named `boundName` when that is `event`'s last listener. */
function replaceLastBound(emitter: EventEmitter, event: string, boundName: string, shared: (this: { client?: unknown }, error: Error) => void): void {
  const last = emitter.rawListeners(event).at(-1);
  if (typeof last !== 'function' || last.name !== boundName) return;
  emitter.removeListener(event, last as (...args: unknown[]) => void);
  emitter.on(event, shared as (...args: unknown[]) => void);
}

/** Replaces `finished()`'s cleanup: aedes' close() calls it as a method of the client. */
function forgetSocketClose(this: ClientInternals): void {
  this.conn.removeListener('close', closeClientOfSocket);
}

/** mqtt-packet 9's parser states, in order. */
const PARSER_STATES: readonly string[] = Object.freeze(['_parseHeader', '_parseLength', '_parsePayload', '_newPacket']);

function sameStates(states: readonly string[]): boolean {
  return Array.isArray(states) && states.length === PARSER_STATES.length && states.every((state, i) => state === PARSER_STATES[i]);
}

/** An empty object without prototype, in V8's fast mode (see above). */
function table(): Record<string, unknown> {
  return Object.setPrototypeOf({}, null) as Record<string, unknown>;
}

/** The same entries in a fast-mode table, `last` added last; anything but a null-prototype object is left as it is. */
function fastTable<T extends object>(from: T, last?: string): T {
  if (typeof from !== 'object' || from === null || Object.getPrototypeOf(from) !== null) return from;
  const source = from as Record<string | symbol, unknown>;
  const copy = table() as Record<string | symbol, unknown>;
  for (const key of Reflect.ownKeys(source)) if (key !== last) copy[key] = source[key];
  if (last !== undefined && Object.hasOwn(source, last)) copy[last] = source[last];
  return copy as T;
}

function slim(client: ClientInternals): void {
  sharePendingDrains(client);
  client.subscriptions = table();
  client.duplicates = table();
  client._events = fastTable(client._events, 'connected');
  client._parser._events = fastTable(client._parser._events);
  if (sameStates(client._parser._states)) client._parser._states = PARSER_STATES;
  replaceLastBound(client._parser, 'error', 'bound emit', emitErrorOnClient);
  const conn = client.conn;
  if (conn instanceof Socket && !conn.closed) {
    client._eos();
    conn.on('close', closeClientOfSocket);
    client._eos = forgetSocketClose;
    // With finished()'s listeners gone, aedes' own are the last ones again.
    replaceLastBound(conn, 'end', 'bound close', closeClientOfSocket);
    replaceLastBound(conn, 'error', 'bound emit', emitErrorOnClient);
  }
}

/** Makes `client._inboundInflight` an own field holding `value`, as aedes' constructor would have. */
function ownInflight(client: object, value: Set<unknown>): Set<unknown> {
  Object.defineProperty(client, '_inboundInflight', { value, writable: true, enumerable: true, configurable: true });
  return value;
}

/** Marks aedes.handle once it slims its clients. */
const LEAN = Symbol('nucleon.leanClients');

/** Marks Client.prototype once the lazy `_inboundInflight` accessor is on it. */
const LAZY_INFLIGHT = Symbol('nucleon.lazyInboundInflight');

/** Installs the accessor on aedes' Client.prototype (once per process: every broker shares the class). */
function lazyInboundInflight(probe: object): void {
  const prototype = Object.getPrototypeOf(probe) as Record<string | symbol, unknown>;
  if (prototype[LAZY_INFLIGHT]) return;
  Object.defineProperty(prototype, '_inboundInflight', {
    configurable: true,
    get(this: object): Set<unknown> {
      return ownInflight(this, new Set());
    },
    set(this: object, value: unknown) {
      // The constructor's empty Set is dropped; anything else aedes assigns is kept as it is.
      if (value instanceof Set && value.size === 0) return;
      ownInflight(this, value as Set<unknown>);
    },
  });
  prototype[LAZY_INFLIGHT] = true;
}

/**
 * Checks the probe client (made by aedes.handle on an in-memory stream) has
 * what `slim` replaces, then wraps this broker's `handle` (once) so every
 * new client is slimmed. Throws DependencyMismatchError when it does not.
 */
export function leanClients(aedes: Aedes, probe: object): void {
  const client = probe as Partial<ClientInternals>;
  const emptyTable = (value: unknown) => typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === null && Object.keys(value).length === 0;
  const shapeOk =
    typeof client._eos === 'function' &&
    typeof client.close === 'function' &&
    (client.conn as { client?: unknown } | undefined)?.client === probe &&
    emptyTable(client.subscriptions) &&
    emptyTable(client.duplicates) &&
    typeof client._events === 'object' &&
    typeof client._parser?._events === 'object' &&
    sameStates(client._parser._states) &&
    (Object.hasOwn(probe, '_inboundInflight') ? (probe as { _inboundInflight?: unknown })._inboundInflight instanceof Set : (Object.getPrototypeOf(probe) as Record<symbol, unknown>)[LAZY_INFLIGHT] === true);
  if (!shapeOk) throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'a client has no _eos / close / conn.client / subscriptions / duplicates / _parser / _inboundInflight where src/mqtt/aedes/lean-client.ts expects them');
  lazyInboundInflight(probe);
  adjustNewClients(aedes, LEAN, (made) => slim(made as ClientInternals));
}
