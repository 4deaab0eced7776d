/*
 * aedes calls a write's callback only once the client's socket has drained
 * (`Client.prototype.waitForDrain`), and every shared step above it waits
 * with it: mqemitter's delivery to all subscribers of a message, the routing
 * gate, the MQTT runner's server → device sends. One device that stopped
 * reading its socket while answers kept coming held all of them until the
 * drain timeout (test/system/abuse-stalled-device.test.ts: 63-66 % of other
 * devices' round trips lost for ~25 s).
 *
 * Here a write's callback never waits for the socket. What the client has
 * not read stays in its own socket buffer, bounded per client:
 * - over `maxBufferedBytes` unsent, the client is disconnected at once
 *   ("send buffer full", reason `slow_consumer`);
 * - a buffer that does not drain within the drain timeout disconnects it too
 *   (aedes' own timer and message, reason `drain_timeout`).
 * Its queued QoS 1/2 messages stay in its session and are sent again when it
 * reconnects, as after any disconnect. Mosquitto does the same with
 * `max_queued_bytes`: a slow subscriber never slows the publishers.
 */
import type { Duplex } from 'node:stream';
import type { Aedes } from 'aedes';
import { DependencyMismatchError, SendBufferFullError } from '../../errors.js';
import { installedVersion } from './versions.js';

type DrainCallback = (error: Error | null, client: unknown) => void;

/** The parts of aedes 1.x's Client this contact reads and calls. */
interface ClientInternals {
  conn: Duplex;
  broker: object & { opts?: { drainTimeout?: number } };
  _drainTimer: NodeJS.Timeout | null;
  _onDrainBound: (() => void) | undefined;
  _handleDrain(): void;
  _handleDrainTimeout(): void;
  waitForDrain(callback: DrainCallback): void;
}

/** The limit of each broker (aedes instance); clients find theirs through `client.broker`. */
const limits = new WeakMap<object, number>();

/**
 * After a write the socket did not take whole: disconnects the client when
 * more than its broker's limit is unsent (and returns that error), or arms
 * aedes' drain timer once. Shared by the non-waiting `waitForDrain` and the
 * direct deliveries of deliveries.ts, which need the answer at once.
 */
export function boundUnsent(client: object): Error | null {
  const internals = client as ClientInternals;
  const limit = limits.get(internals.broker);
  const unsent = internals.conn.writableLength;
  if (limit !== undefined && unsent > limit) {
    const error = new SendBufferFullError(unsent, limit);
    internals.conn.destroy(error);
    return error;
  }
  // The bytes are in this client's own buffer: nothing shared waits on its socket.
  const drainTimeout = internals.broker.opts?.drainTimeout ?? 0;
  if (drainTimeout > 0 && internals._drainTimer === null) {
    internals._onDrainBound ??= internals._handleDrain.bind(internals);
    internals.conn.once('drain', internals._onDrainBound);
    internals._drainTimer = setTimeout(() => internals._handleDrainTimeout(), drainTimeout);
    internals._drainTimer.unref();
  }
  return null;
}

function nonWaitingWaitForDrain(this: ClientInternals, callback: DrainCallback): void {
  setImmediate(callback, boundUnsent(this), this);
}

/** What a client waits on while its writes never wait: nothing, shared by all (aedes only reads and replaces it). */
const NO_PENDING_DRAINS: readonly DrainCallback[] = Object.freeze([]);

/**
 * With the non-waiting `waitForDrain` installed, nothing is ever added to a
 * client's `_pendingDrains` (aedes' own waitForDrain was the one place that
 * pushed to it; its drain handlers and close() only read it and put a new
 * array in its place): the client's empty array (32 B) is replaced by one
 * shared frozen one.
 */
export function sharePendingDrains(client: object): void {
  const internals = client as { _pendingDrains?: unknown; waitForDrain?: unknown };
  if (internals.waitForDrain === nonWaitingWaitForDrain && Array.isArray(internals._pendingDrains) && internals._pendingDrains.length === 0) internals._pendingDrains = NO_PENDING_DRAINS;
}

/**
 * Installs the non-waiting `waitForDrain` on aedes' Client prototype (once;
 * idempotent) and sets this broker's per-client limit. Throws
 * DependencyMismatchError when the Client does not look like aedes 1.x's.
 */
export function limitSlowConsumers(aedes: Aedes, probe: object, maxBufferedBytes: number): void {
  const client = probe as Partial<ClientInternals>;
  const prototype = Object.getPrototypeOf(probe) as Partial<ClientInternals>;
  const shapeOk =
    typeof prototype.waitForDrain === 'function' &&
    typeof prototype._handleDrain === 'function' &&
    typeof prototype._handleDrainTimeout === 'function' &&
    client._drainTimer === null &&
    typeof client.conn?.writableLength === 'number' &&
    client.broker === aedes;
  if (!shapeOk) throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'Client.waitForDrain and its drain timer are not where src/mqtt/aedes/slow-consumers.ts expects them');
  limits.set(aedes, maxBufferedBytes);
  prototype.waitForDrain = nonWaitingWaitForDrain;
}
