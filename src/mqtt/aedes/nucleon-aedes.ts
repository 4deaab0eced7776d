// First, before aedes loads mqtt-packet (see patches/index.ts).
import './patches/index.js';
import { Aedes, type AedesOptions, type Client, type PublishPacket } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { Gate } from '../../util/gate.js';
import { WaitList } from '../../util/wait-list.js';
import type { RoutingSettlements } from './routing-settlements.js';
import { installedVersion } from './versions.js';

type Done = (error?: Error) => void;

export interface NucleonAedesOptions extends AedesOptions {
  /** Messages inside the router at once; the rest wait (bounded) with their publisher paused. */
  maxRouting: number;
  maxRoutingWaiting: number;
  onRoutingRefused: () => void;
  /** aedes has put a client's QoS 2 publish into its incoming store (its publish step comes right after). */
  onIncomingStored?: (packet: PublishPacket, client: Client) => void;
  /** Shared with the session store, which may defer copies for connected persistent sessions (routing-settlements.ts). */
  settlements?: RoutingSettlements;
}

/** Set on a packet without a client (a will of an earlier run) that the publish path has dealt with already. */
const HANDLED = Symbol('nucleon.handled');

/** The publish path has routed (or dropped) this packet: aedes' publish step must leave it alone. */
export function markHandled(packet: PublishPacket): void {
  (packet as PublishPacket & { [HANDLED]?: true })[HANDLED] = true;
}

/**
 * aedes with its internal `publish(packet, client, done)` taken over, the one
 * step every message passes after aedes acknowledged it:
 * - a client's publish (and a will) was already routed, or deliberately not,
 *   by the publish path (src/mqtt/publish-path.ts) before the
 *   acknowledgement: the step does nothing for it, so "route or not" is
 *   decided in one place;
 * - what remains is aedes' own messages (`$SYS` heartbeats, cluster
 *   notices) and the server's publishes to devices, routed through a gate, so
 *   publishers that out-run a subscriber wait instead of queueing without
 *   bound (mqemitter overflows its stack otherwise, aedes issue #193).
 */
export class NucleonAedes extends Aedes {
  private readonly gate: Gate;
  private readonly onRoutingRefused: () => void;
  private readonly onIncomingStored: NucleonAedesOptions['onIncomingStored'];
  private readonly settlements: RoutingSettlements | undefined;
  /** aedes' own in-process mqemitter, for routeQos0Directly; undefined when another emitter or a `published` hook is in use. */
  private readonly directEmitter: LocalEmitter | undefined;
  /** QoS 0 messages routed by routeQos0Directly (the rest went through aedes' publish step). */
  directRoutes = 0;
  /** Direct routes whose copies are not all taken yet (one loop turn at most). */
  private directInFlight = 0;
  private readonly directIdle = new WaitList();

  constructor(options: NucleonAedesOptions) {
    super(options);
    if (options.mq === undefined) {
      const emitter = localEmitter(this);
      if (emitter === undefined) throw new DependencyMismatchError('mqemitter', installedVersion('mqemitter'), "aedes' own emitter has no `closed` flag or `_matcher.match` (src/mqtt/aedes/nucleon-aedes.ts, routeQos0Directly)");
      this.directEmitter = options.published === undefined ? emitter : undefined;
    } else this.directEmitter = undefined;
    this.gate = new Gate(options.maxRouting, options.maxRoutingWaiting);
    this.onRoutingRefused = options.onRoutingRefused;
    this.onIncomingStored = options.onIncomingStored;
    this.settlements = options.settlements;
  }

  // aedes calls `publish(packet, client, done)` internally and `publish(packet, done)` from user code.
  override publish(packet: PublishPacket, clientOrDone: Client | null | Done, maybeDone?: Done): void {
    const client = typeof clientOrDone === 'function' ? null : clientOrDone;
    const done: Done = (typeof clientOrDone === 'function' ? clientOrDone : maybeDone) ?? noop;
    if (client) {
      if (packet.qos === 2) this.onIncomingStored?.(packet, client);
      done();
      return;
    }
    if ((packet as PublishPacket & { [HANDLED]?: true })[HANDLED]) {
      done();
      return;
    }
    this.route(packet, client, done);
  }

  /**
   * Retained store, offline queues and subscribers, through the gate. A
   * client's publish waits for a place however many wait (its connection is
   * not read meanwhile, so the device slows down, and nothing is dropped:
   * a refusal is an error to aedes, which closes the publisher's connection
   * with whatever it had in flight, and a group commit acknowledging
   * thousands at once overflowed the list, bench scenario 10);
   * the server's own publishes (no client to slow down) are refused past the
   * bounded wait list. `done` waits, outside the gate, for copies the session
   * store deferred (routing-settlements.ts): acknowledged by their subscriber
   * or written. Most of a client's QoS 0 messages take routeQos0Directly instead.
   */
  route(packet: PublishPacket, client: Client | null, done: Done): void {
    if (client !== null && packet.qos === 0 && this.routeQos0Directly(packet, client, done)) return;
    // Only QoS 1/2 messages are queued for sessions (aedes' enqueueOffline step).
    const settlements = packet.qos > 0 ? this.settlements : undefined;
    const start = () => {
      const settlement = settlements?.open(packet.payload);
      basePublish.call(this, packet, client, (error?: Error) => {
        this.gate.leave();
        if (settlement === undefined) {
          done(error);
          return;
        }
        settlements?.close(packet.payload, settlement);
        settlement.whenSettled((failure) => done(error ?? failure));
      });
    };
    if (client) {
      this.gate.enterWaiting(start);
      return;
    }
    if (!this.gate.enter(start)) {
      this.onRoutingRefused();
      done(new Error('router overloaded: message refused'));
    }
  }

  /**
   * A client's QoS 0 publish, not retained, on a `$`-free topic, in one
   * process (aedes' own mqemitter): aedes' publish step for it is a Packet
   * copy, storeRetained (nothing to store), emitPacket (the publisher's id on
   * the copy, then mqemitter hands it to every subscription matching its
   * topic, one after the other on the emitter, and calls back once all of
   * them have) and callPublished (aedes' default `published`, which only calls
   * back, and a 'publish' event). Done here in one step: the same message
   * fields, the same broker counter (its duplicate check), the same
   * subscription functions called the same way, and the callback once every
   * copy was taken (README "Direct route for QoS 0").
   *
   * It takes no place in the router's gate, which bounds what waits inside
   * mqemitter: a QoS 0 copy is written from the next immediate (deliveries.ts),
   * so none is held here longer than one loop turn. Under load the gate is
   * full most of the time (a group commit of the log routes thousands at
   * once); a QoS 0 message that waited for a place there cost the wait list
   * entry and its closure too.
   *
   * False when it does not apply: retained (the retained store), QoS 1/2 (the
   * offline queues), cluster mode (mqemitter-redis shares the message), a
   * 'publish' listener or `published` hook, a `$` topic, a closed emitter,
   * or messages waiting for the gate (one of them may be this publisher's
   * older one, and a topic's messages keep their order [MQTT-4.6.0-6]).
   */
  private routeQos0Directly(packet: PublishPacket, client: Client, done: Done): boolean {
    const emitter = this.directEmitter;
    if (emitter === undefined || emitter.closed || packet.retain || packet.topic.charCodeAt(0) === DOLLAR || this.gate.queued > 0 || Object.hasOwn(packet, 'properties') || this.listenerCount('publish') > 0) return false;
    const counters = this as unknown as { counter: number; id: string };
    const message = new RoutedQos0(counters.id, ++counters.counter, packet.topic, packet.payload, client.id);
    const subscriptions = emitter._matcher.match(packet.topic) as ReadonlyArray<SubscriptionFunction>;
    this.directRoutes++;
    const count = subscriptions.length;
    if (count === 0) {
      done();
      return true;
    }
    this.directInFlight++;
    const copies = new CopiesTaken(count, this, done);
    for (let i = 0; i < count; i++) subscriptions[i]?.call(emitter, message, copies.taken);
    return true;
  }

  /** A direct route's copies were all taken (CopiesTaken). */
  directRouted(): void {
    this.directInFlight--;
    if (this.directInFlight === 0 && this.directIdle.size > 0) this.directIdle.wakeAll();
  }

  /**
   * aedes' client close ends with `if (broker.clients[id]) unregisterClient(client)`:
   * by id, not by client. A close still running when a new connection with the
   * same id registered (a device back within the old session's clean-up, which
   * waits for the store) removed the new client from the map, so a kick or a
   * revocation could not find it (test/integration/revocation-cluster.test.ts,
   * seen in CI). The old client still counts down, is announced as
   * disconnected and published to `$SYS`; the newer one keeps its place.
   */
  unregisterClient(client: Client): void {
    const clients = clientsOf(this);
    const holder = clients[client.id];
    if (holder === undefined || holder === (client as unknown)) {
      baseUnregisterClient.call(this, client);
      return;
    }
    clients[client.id] = client;
    try {
      baseUnregisterClient.call(this, client);
    } finally {
      clients[client.id] = holder;
    }
  }

  /** Whether a client with this id is connected to this instance now. */
  clientConnected(clientId: string): boolean {
    return clientsOf(this)[clientId]?.connected === true;
  }

  /**
   * The client holding this id now (a device's client id is its uid), for
   * revoke and kick: registered and not closed. aedes sets `connected` only
   * once the CONNACK is written and the session's stored queue is read back
   * (a store round trip, in cluster mode Redis), so a kick that came right
   * after the device had its CONNACK found no client (revocation-cluster,
   * seen in CI).
   */
  connectedClient(clientId: string): Client | undefined {
    const client = clientsOf(this)[clientId];
    return client !== undefined && client.closed !== true ? (client as unknown as Client) : undefined;
  }

  /** Every client registered and not closed, for a recheck of the revocation lists. */
  openClients(): Client[] {
    return Object.values(clientsOf(this)).filter((client) => client !== undefined && client.closed !== true) as unknown as Client[];
  }

  /** Waits (bounded) for messages still being routed, before the store closes. */
  async routingIdle(timeoutMs: number): Promise<boolean> {
    const started = Date.now();
    if (!(await this.gate.idle(timeoutMs))) return false;
    return this.directIdle.until(() => this.directInFlight === 0, Math.max(0, timeoutMs - (Date.now() - started)));
  }

  get routingActive(): number {
    return this.gate.active + this.gate.queued + this.directInFlight;
  }
}

function noop(): void {}

const DOLLAR = 0x24;

/** aedes' default mqemitter, as routeQos0Directly reads it (checked in NucleonAedes' constructor). */
interface LocalEmitter {
  closed: boolean;
  /** The qlobber trie of subscription functions (its matches remembered per topic by emitter-matches.ts). */
  _matcher: { match(topic: string): unknown[] };
}

/** A subscription's function as aedes gives it to mqemitter (handlePacketSubscription, or deliverSharp around it). */
type SubscriptionFunction = (this: LocalEmitter, message: RoutedQos0, callback: () => void) => void;

function localEmitter(aedes: Aedes): LocalEmitter | undefined {
  const mq = (aedes as unknown as { mq?: Partial<LocalEmitter> }).mq;
  return typeof mq?.closed === 'boolean' && typeof mq._matcher?.match === 'function' ? (mq as LocalEmitter) : undefined;
}

/**
 * The message aedes' publish step hands mqemitter for a client's QoS 0
 * publish: its Packet (aedes-packet: cmd, broker id and counter, topic,
 * payload, qos, retain, dup; no messageId at QoS 0) with the publisher's
 * client id that emitPacket sets. Each subscription copies it again.
 */
class RoutedQos0 {
  readonly cmd = 'publish';
  readonly qos = 0;
  readonly retain = false;
  readonly dup = false;
  constructor(
    readonly brokerId: string,
    readonly brokerCounter: number,
    readonly topic: string,
    readonly payload: PublishPacket['payload'],
    readonly clientId: string,
  ) {}
}

/** Calls back once every subscription took its copy, as mqemitter's fastparallel does. */
class CopiesTaken {
  constructor(
    private pending: number,
    private readonly router: NucleonAedes,
    private readonly done: Done,
  ) {}

  readonly taken = (): void => {
    if (--this.pending !== 0) return;
    this.router.directRouted();
    this.done();
  };
}

// The three-argument form aedes uses internally (its typings only declare the two-argument one).
type InternalPublish = (this: Aedes, packet: PublishPacket, client: Client | null, done: Done) => void;
const basePublish = (Aedes.prototype as unknown as { publish: InternalPublish }).publish;
/** Undefined in an aedes without it: checkNucleonAedes refuses to start then. */
const baseUnregisterClient = (Aedes.prototype as unknown as { unregisterClient: (this: Aedes, client: Client) => void }).unregisterClient;

/** aedes' private map of connected clients by id. */
function clientsOf(aedes: Aedes): Record<string, { connected: boolean; closed?: boolean } | undefined> {
  return (aedes as unknown as { clients: Record<string, { connected: boolean; closed?: boolean } | undefined> }).clients;
}

/**
 * The internals NucleonAedes relies on, checked at start-up (before any
 * listener opens): the three-argument publish, the clients map and
 * unregisterClient.
 */
export function checkNucleonAedes(aedes: NucleonAedes): void {
  if (typeof basePublish !== 'function' || basePublish.length < 3) {
    throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'Aedes.prototype.publish no longer takes (packet, client, done)');
  }
  const clients = clientsOf(aedes) as unknown;
  if (typeof clients !== 'object' || clients === null) throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'the private clients map is gone');
  if (typeof (baseUnregisterClient as unknown) !== 'function' || baseUnregisterClient.length !== 1) throw new DependencyMismatchError('aedes', installedVersion('aedes'), 'Aedes.prototype.unregisterClient no longer takes (client)');
}
