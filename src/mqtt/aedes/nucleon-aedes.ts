// First, before aedes loads mqtt-packet (see patches/index.ts).
import './patches/index.js';
import { Aedes, type AedesOptions, type Client, type PublishPacket } from 'aedes';
import { Gate } from './gate.js';

type Done = (error?: Error) => void;

export interface NucleonAedesOptions extends AedesOptions {
  /**
   * Whether a packet a client published continues into aedes' routing
   * (retained store, offline queues, subscribers). Ingested device data and
   * denied packets stop here.
   */
  shouldRoute: (packet: PublishPacket, client: Client) => boolean;
  /** Messages inside the router at once; the rest wait (bounded) with their publisher paused. */
  maxRouting: number;
  maxRoutingWaiting: number;
  onRoutingRefused: () => void;
}

/**
 * aedes with two changes to `publish`, the one place every message passes:
 * - device → server messages are already handled by the runner (ingest) and
 *   are not routed unless a subscriber may want them, which saves the
 *   retained/offline/mqemitter work on the hot path;
 * - routing is gated, so publishers that out-run a subscriber wait (their
 *   socket is not read meanwhile) instead of queueing without bound.
 */
export class NucleonAedes extends Aedes {
  private readonly gate: Gate;
  private readonly shouldRoute: NucleonAedesOptions['shouldRoute'];
  private readonly onRoutingRefused: () => void;

  constructor(options: NucleonAedesOptions) {
    super(options);
    this.gate = new Gate(options.maxRouting, options.maxRoutingWaiting);
    this.shouldRoute = options.shouldRoute;
    this.onRoutingRefused = options.onRoutingRefused;
  }

  // aedes calls `publish(packet, client, done)` internally and `publish(packet, done)` from user code.
  override publish(packet: PublishPacket, clientOrDone: Client | null | Done, maybeDone?: Done): void {
    const client = typeof clientOrDone === 'function' ? null : clientOrDone;
    const done: Done = (typeof clientOrDone === 'function' ? clientOrDone : maybeDone) ?? noop;
    if (client && !this.shouldRoute(packet, client)) {
      done();
      return;
    }
    this.route(packet, client, done);
  }

  /** Retained store, offline queues and subscribers, through the gate. */
  route(packet: PublishPacket, client: Client | null, done: Done): void {
    const entered = this.gate.enter(() => {
      basePublish.call(this, packet, client, (error?: Error) => {
        this.gate.leave();
        done(error);
      });
    });
    if (!entered) {
      this.onRoutingRefused();
      done(new Error('router overloaded: message refused'));
    }
  }

  /** Whether a client with this id is connected to this instance now. */
  clientConnected(clientId: string): boolean {
    const clients = (this as unknown as { clients: Record<string, { connected: boolean } | undefined> }).clients;
    return clients[clientId]?.connected === true;
  }

  /** Waits (bounded) for messages still being routed, before the store closes. */
  routingIdle(timeoutMs: number): Promise<boolean> {
    return this.gate.idle(timeoutMs);
  }

  get routingActive(): number {
    return this.gate.active + this.gate.queued;
  }
}

function noop(): void {}

// The three-argument form aedes uses internally (its typings only declare the two-argument one).
type InternalPublish = (this: Aedes, packet: PublishPacket, client: Client | null, done: Done) => void;
const basePublish = (Aedes.prototype as unknown as { publish: InternalPublish }).publish;
