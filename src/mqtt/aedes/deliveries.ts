/*
 * The QoS a client gets a message at. aedes calls the delivery function of
 * the first of a client's subscriptions that matches (its own dedupe drops the
 * others) and downgrades only by a subscription whose filter is the topic
 * itself, so with overlapping or wildcard subscriptions a client got a copy
 * at the publish QoS, or at the QoS of whichever subscription came first.
 * MQTT 3.1.1 wants one copy at the highest QoS granted by any matching
 * subscription, no higher than the QoS it was published with
 * [MQTT-3.3.5-1]; retained messages sent on SUBSCRIBE likewise [MQTT-3.8.4-6].
 * And aedes' retained store offers `$` topics (`$SYS/broker/…`) to a `#`
 * subscription, which must not match them [MQTT-4.7.2-1]: those are dropped.
 *
 * Each client's `deliver0` / `deliverQoS` (set per client in aedes' Client
 * constructor, and captured by each subscription when it is made) is wrapped
 * as soon as aedes has made the client: the QoS is worked out from all of the
 * client's subscriptions; a QoS 1/2 copy for a persistent session goes on to
 * aedes' deliverQoS (it stores the copy first), everything else is written
 * here directly (see "Direct deliveries" below).
 *
 * aedes drops a delivery as a duplicate when its broker counter is not above
 * the highest one the client was sent (`client.duplicates[brokerId]`): meant
 * for one message matching several subscriptions of the client, it also drops
 * every message routed out of counter order, and for a persistent session it
 * then clears the stored copy too. Nucleon routes up to 100 messages at once
 * and a persistent session's store (LevelDB) finishes their writes out of
 * order, so an online persistent subscriber lost messages whose publishers had
 * their PUBACK (bench scenario 10: ~300 of 7,000). Here a message is a
 * duplicate only when it is the one just sent to this client: mqemitter hands
 * a message to all of a client's matching subscriptions one after the other,
 * with no other message of that client in between.
 */
import type { Writable } from 'node:stream';
import { DependencyMismatchError } from '../../errors.js';
import type { OutgoingPacket } from './packet-bytes.js';
import { boundUnsent } from './slow-consumers.js';
import { installedVersion } from './versions.js';
import { writePacket, writeTogether } from './write-coalescing.js';

type Deliver = (packet: { topic: string; qos: 0 | 1 | 2 }, callback: () => void) => void;

interface ClientDeliveries {
  deliver0: Deliver;
  deliverQoS: Deliver;
  subscriptions: Record<string, { qos?: number } | undefined>;
  /** aedes: the highest broker counter sent to this client, per broker id (replaced on each CONNECT). */
  duplicates: Record<string, number | undefined>;
}

/** What aedes' routing puts on a packet: which broker made it, and its number there. */
interface Routed {
  brokerId?: string;
  brokerCounter?: number;
}

/** Whether an MQTT topic filter matches a topic name (a wildcard first level never matches a `$` topic, MQTT-4.7.2-1). */
export function filterMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The highest QoS any of the client's subscriptions grants for `topic` (undefined: none matches). */
function grantedQos(subscriptions: ClientDeliveries['subscriptions'], topic: string): number | undefined {
  // aedes delivers only what one of the client's subscriptions matched (a `$` topic aside, see deliverGranted):
  // with a single subscription (a service account on `+/app/p/#`), that one grants it, with no matching here.
  // About 250 → 40 ns a delivery (scripts/delivery-cost.ts), the splits of filterMatches being most of it.
  if (topic.charCodeAt(0) !== DOLLAR) {
    const only = onlyFilter(subscriptions);
    if (only !== undefined) return subscriptions[only]?.qos ?? 0;
  }
  let granted: number | undefined;
  for (const filter in subscriptions) {
    const qos = subscriptions[filter]?.qos ?? 0;
    if ((granted === undefined || qos > granted) && filterMatches(filter, topic)) granted = qos;
  }
  return granted;
}

const DOLLAR = 0x24;

/** The client's one subscription filter, or undefined when it has none or several. */
function onlyFilter(subscriptions: ClientDeliveries['subscriptions']): string | undefined {
  let only: string | undefined;
  for (const filter in subscriptions) {
    if (only !== undefined) return undefined;
    only = filter;
  }
  return only;
}

export function checkDeliveries(probe: object): void {
  const client = probe as Partial<ClientDeliveries & DirectClient>;
  if (typeof client.deliver0 !== 'function' || typeof client.deliverQoS !== 'function' || typeof client.subscriptions !== 'object' || typeof client.duplicates !== 'object' || client.duplicates === null) {
    throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'a client has no deliver0 / deliverQoS / subscriptions / duplicates where src/mqtt/aedes/deliveries.ts expects them');
  }
  if (typeof client._nextId !== 'number' || typeof client._onError !== 'function' || typeof client.clean !== 'boolean' || typeof client.connecting !== 'boolean' || typeof client.connected !== 'boolean' || typeof client.errored !== 'boolean' || typeof client.conn?.write !== 'function' || typeof client.broker?.authorizeForward !== 'function') {
    throw new DependencyMismatchError('aedes', installedVersion('aedes'), "a client has no _nextId / _onError / clean / connecting / connected / errored / conn, or its broker no authorizeForward, where src/mqtt/aedes/deliveries.ts's direct deliveries expect them");
  }
}

/** A client after grantHighestQos: aedes' own deliverQoS (for persistent sessions) kept beside the shared function that replaced both. */
interface GrantingClient extends ClientDeliveries {
  _aedesDeliverQoS: Deliver;
}

/** What one delivery reads of the packet aedes hands it (its Packet, a fresh copy per subscription). */
interface Delivery {
  topic: string;
  qos: 0 | 1 | 2;
  payload?: unknown;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  clientId?: string;
  nl?: boolean;
}

/** The parts of aedes 1.x's Client a direct delivery reads and calls (checked by checkDeliveries). */
export interface DirectClient {
  id: string;
  clean: boolean;
  connecting: boolean;
  connected: boolean;
  errored: boolean;
  conn: Writable;
  broker: { authorizeForward(client: unknown, packet: Delivery): Delivery | null | undefined };
  /** aedes: the next packet id this client sends. */
  _nextId: number;
  _onError(error: Error | null | undefined): void;
  duplicates: ClientDeliveries['duplicates'];
}

/** What each broker counts per delivery (its MQTT runner's counter), found through the client's broker. */
const deliveryCounters = new WeakMap<object, () => void>();

/** One function for every client (bound to it): a closure per client would stay for the connection's life. */
function deliverGranted(this: GrantingClient & DirectClient, packet: Parameters<Deliver>[0], callback: () => void): void {
  const granted = grantedQos(this.subscriptions, packet.topic);
  // A retained `$` message offered to a `#` subscription: aedes' retained store matches it, MQTT does not [MQTT-4.7.2-1].
  if (granted === undefined && packet.topic.startsWith('$')) {
    setImmediate(callback);
    return;
  }
  deliveryCounters.get(this.broker)?.();
  const qos = Math.min(packet.qos, granted ?? packet.qos) as 0 | 1 | 2;
  packet.qos = qos;
  if (qos > 0 && !this.clean) {
    // A QoS 1/2 copy for a persistent session is stored before it is sent: aedes' own step does that, after its duplicate check.
    admitOutOfOrder(this, packet as typeof packet & Routed);
    this._aedesDeliverQoS(packet, callback);
  } else queueDirect(this, packet, callback);
}

/*
 * Direct deliveries: what aedes' deliverQoS0, and its deliverQoS for a clean
 * session (nothing to store), do, without their per-delivery costs. aedes
 * sends each delivery from its own `setImmediate` (a closure and an Immediate
 * each), copies the packet once more, and its write calls back through one
 * more `setImmediate`; with the socket's buffer over its high-water mark
 * (a service account taking every device's messages is, most of the time)
 * through a third one. Here the deliveries of a turn wait in one list and
 * are written from one `setImmediate`, each calling back at once. The order
 * of one client's deliveries is the order they came in, as before, and the
 * callbacks still come after the emitting call returned (mqemitter and
 * aedes' publish steps are not re-entered, aedes issue #193).
 */

/** Client, forwarded packet (undefined: not to be sent), callback: three slots per delivery. */
let waiting: unknown[] = [];
let spare: unknown[] = [];
let flushScheduled = false;

function queueDirect(client: DirectClient, packet: Delivery, callback: () => void): void {
  // As aedes' getToForwardPacket: no-local [MQTT-v5 3.8.3.1], the duplicate check (as admitOutOfOrder and aedes' together), then authorizeForward.
  const forward = packet.clientId === client.id && packet.nl ? undefined : firstCopy(client, packet as Delivery & Routed) ? client.broker.authorizeForward(client, packet) : undefined;
  waiting.push(client, forward ?? undefined, callback);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushDirect);
  }
}

function flushDirect(): void {
  const batch = waiting;
  waiting = spare;
  flushScheduled = false;
  // Released when the batch is written, not in the next loop iteration (write-coalescing.ts).
  writeTogether(() => {
    for (let i = 0; i < batch.length; i += 3) {
      sendDirect(batch[i] as DirectClient, batch[i + 1] as Delivery | undefined, batch[i + 2] as () => void);
    }
  });
  batch.length = 0;
  spare = batch;
}

/** One delivery written as aedes' write does; its callback gets no error (mqemitter would throw it): the client gets it. */
function sendDirect(client: DirectClient, packet: Delivery | undefined, callback: () => void): void {
  if (packet === undefined) {
    callback();
    return;
  }
  const qos = packet.qos;
  let messageId: number | undefined;
  if (qos > 0) {
    // As aedes' QoSPacket: the packet's own id, or the client's next one (1 to 65535).
    messageId = packet.messageId || client._nextId;
    if (!packet.messageId) client._nextId = client._nextId >= 65535 ? 1 : client._nextId + 1;
  }
  const error = writeDirect(client, { cmd: 'publish', topic: packet.topic, payload: packet.payload ?? EMPTY, qos, retain: packet.retain ?? false, dup: packet.dup ?? false, messageId });
  // aedes emits a QoS 1/2 write's error on the client, whose one 'error' listener is this same _onError.
  if (error !== null) client._onError(error);
  callback();
}

const EMPTY = Buffer.alloc(0);

/** aedes' write (lib/write.js) with the non-waiting drain of slow-consumers.ts: the error, or null. */
function writeDirect(client: DirectClient, packet: OutgoingPacket): Error | null {
  if (!client.connecting && !client.connected) return new Error('connection closed');
  let flowing: boolean;
  try {
    flowing = writePacket(packet, client.conn);
  } catch (refusal) {
    // aedes' own words for any packet mqtt-packet refuses to write; what it said is the cause.
    return new Error('packet received not valid', { cause: refusal });
  }
  return flowing || client.errored ? null : boundUnsent(client);
}

/**
 * The duplicate check of a direct delivery, in one step: admitOutOfOrder
 * followed by aedes' own (lib/client.js `dedupe`) come to "a copy only when
 * it is the message just sent to this client"; the counter is recorded.
 */
function firstCopy(client: Pick<ClientDeliveries, 'duplicates'>, packet: Routed): boolean {
  const id = packet.brokerId;
  const counter = packet.brokerCounter;
  if (!id || counter === undefined) return true;
  // aedes replaces the object on CONNECT: read it each time.
  const duplicates = client.duplicates;
  if (duplicates[id] === counter) return false;
  duplicates[id] = counter;
  return true;
}

/**
 * Replaces a new client's delivery functions (before it can subscribe) with
 * the shared one, bound to the client; `delivered` counts what the client's
 * broker sends (one counter per broker: the last one given for it counts).
 */
export function grantHighestQos(client: object, delivered: () => void = () => undefined): void {
  const target = client as GrantingClient & { broker: object };
  if (deliveryCounters.get(target.broker) !== delivered) deliveryCounters.set(target.broker, delivered);
  target._aedesDeliverQoS = target.deliverQoS;
  // aedes calls these as methods (client.publish) and as plain functions (a subscription's captured copy): bound, both reach the client.
  const deliver: Deliver = deliverGranted.bind(target as GrantingClient & DirectClient);
  target.deliver0 = deliver;
  target.deliverQoS = deliver;
}

/**
 * Lets aedes' duplicate check pass a message routed out of counter order:
 * unless it is the message just sent to this client (the same counter),
 * the recorded counter is set just below its own, so aedes sends it and
 * records its counter, as it does for a message in order.
 */
export function admitOutOfOrder(client: Pick<ClientDeliveries, 'duplicates'>, packet: Routed): void {
  const id = packet.brokerId;
  const counter = packet.brokerCounter;
  if (!id || counter === undefined) return;
  // aedes replaces the object on CONNECT: read it each time.
  const duplicates = client.duplicates;
  if (duplicates[id] !== counter) duplicates[id] = counter - 1;
}
