import type { Client, PublishPacket } from 'aedes';
import type { AuthMethod, DeviceEvent } from '../events.js';
import type { PresenceEntry } from '../presence/index.js';
import { isValidUid } from '../protocol/index.js';
import type { Principal, PublishVerdict } from './acl.js';
import { SERVICE_PREFIX } from './auth.js';

export type PublishCallback = (error?: Error | null) => void;

/**
 * Publishes of a paused device waiting (in order) for ingest room: each event
 * with what it needs to continue. aedes reads nothing more from the socket
 * until every packet of the current read is answered, so this holds at most
 * one socket read's worth of packets; MAX_HELD_PER_CLIENT is a second line.
 */
export class HeldPublishes {
  readonly items: { event: DeviceEvent; resume: () => boolean; fail: (error: Error) => void }[] = [];
  head = 0;
  /** Aborted when the client goes, so its wait leaves the broker at once. */
  readonly gone = new AbortController();

  get size(): number {
    return this.items.length - this.head;
  }
}

/** What the gateway knows about one connected client; kept in a WeakMap so it goes with the client. */
export class Session {
  violations = 0;
  /** Set while the client is paused for ingest room. */
  held: HeldPublishes | undefined;
  /** Devices publish to a handful of topics; the last verdict is reused for a repeated topic (while the rules are the same). */
  lastTopic = '';
  lastVerdict: PublishVerdict | undefined;
  lastRulesVersion = 0;
  disconnectReason: string | undefined;
  /** The metric label of `disconnectReason`: bounded, so slow consumers and oversized packets are counted apart. */
  disconnectLabel: string | undefined;
  /** A device connection's presence entry, from its 'clientReady' until it disconnects (handed back to presence then). */
  presenceEntry: PresenceEntry | undefined;

  constructor(
    readonly principal: Principal,
    readonly method: AuthMethod,
    readonly remoteAddress: string,
    readonly clientId: string,
  ) {}
}

export class Sessions {
  private readonly byClient = new WeakMap<Client, Session>();

  get(client: Client): Session | undefined {
    return this.byClient.get(client);
  }

  set(client: Client, session: Session): void {
    this.byClient.set(client, session);
  }
}

/**
 * Who a will of a client from an earlier run speaks for. aedes keeps wills
 * across restarts and publishes those of clients that never came back without
 * a client; the client id tells whose it is, because a device's client id is
 * its uid and a service account's is `svc:<name>[:…]` (src/mqtt/auth.ts).
 */
export function principalOfStaleWill(packet: PublishPacket & { clientId?: unknown }): Principal | undefined {
  const clientId = packet.clientId;
  if (typeof clientId !== 'string') return undefined;
  if (clientId.startsWith(SERVICE_PREFIX)) {
    const name = clientId.slice(SERVICE_PREFIX.length).split(':')[0] ?? '';
    return name === '' ? undefined : { kind: 'service', name };
  }
  // A device's client id is its uid; anything else was an anonymous client (mqtt.auth.anonymous).
  return isValidUid(clientId) ? { kind: 'device', uid: clientId } : { kind: 'anonymous', clientId };
}
