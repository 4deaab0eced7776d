import type { AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import type { EventBroker } from '../broker/index.js';
import type { AuthMethod, Event, EventOf } from '../events.js';
import type { Logger } from '../logger.js';
import { encodeOtaChunk, encodeOtaPackage, isValidUid } from '../protocol/index.js';
import { decideDevicePublish, decideServicePublish, maySubscribe, type Principal, type PublishDecision } from './acl.js';
import { tlsSocketOf, type Authenticator } from './auth.js';
import { deviceEvent } from './ingest.js';
import type { MqttMetrics } from './metrics.js';
import type { NucleonAedes } from './nucleon-aedes.js';

type PublishCallback = (error?: Error | null) => void;

/**
 * Publishes of a paused device waiting (in order) for inbox room: each event
 * with its packet and the aedes callback that sends its PUBACK. aedes reads
 * nothing more from the socket until every packet of the current read is
 * answered, so this holds at most one socket read's worth of packets; the cap
 * (MAX_HELD_PER_CLIENT) is a second line.
 */
class HeldPublishes {
  readonly events: Event[] = [];
  readonly packets: PublishPacket[] = [];
  readonly callbacks: PublishCallback[] = [];
  head = 0;
  /** Aborted when the client goes, so its wait leaves the broker at once. */
  readonly gone = new AbortController();

  get size(): number {
    return this.events.length - this.head;
  }

  push(event: Event, packet: PublishPacket, callback: PublishCallback): void {
    this.events.push(event);
    this.packets.push(packet);
    this.callbacks.push(callback);
  }
}

/** At most this many publishes held per paused client (one socket read of 64-byte messages is a few hundred). */
export const MAX_HELD_PER_CLIENT = 8192;

/** What we know about one connected client; kept in a WeakMap so it goes with the client. */
class Session {
  violations = 0;
  /** Set while the client is paused for broker room (Gateway.holdUntilRoom). */
  held: HeldPublishes | undefined;
  /** Devices publish to a handful of topics; the last decision is reused for a repeated topic. */
  lastTopic = '';
  lastDecision: PublishDecision | undefined;
  disconnectReason: string | undefined;

  constructor(
    readonly principal: Principal,
    readonly method: AuthMethod,
    readonly remoteAddress: string,
  ) {}
}

export interface GatewayOptions {
  broker: EventBroker;
  authenticator: Authenticator;
  metrics: MqttMetrics;
  logger: Logger;
  maxAclViolations: number;
}

type ServerToDevice = EventOf<'ApplicationResponse'> | EventOf<'OtaResponse'> | EventOf<'OtaDownloadResponse'>;

/**
 * The aedes hooks: who may connect, publish and subscribe, and what a device
 * publish becomes (an event, handed to the EventBroker before the PUBACK).
 */
export class Gateway {
  private readonly sessions = new WeakMap<Client, Session>();
  /** Connected service accounts with at least one subscription: device messages are routed to MQTT only for them. */
  private readonly subscribedServices = new Set<Client>();
  /** Packets authorised as received but not to be routed (ACL-denied, undecodable). */
  private readonly dropped = new WeakSet<PublishPacket>();
  private aedes: NucleonAedes | undefined;
  private connectedDevices = 0;
  private connectedServices = 0;
  /** Clients held back for broker room now. */
  private pausedClients = 0;
  private stopping = false;

  constructor(private readonly options: GatewayOptions) {}

  counts(): { devices: number; services: number; paused: number } {
    return { devices: this.connectedDevices, services: this.connectedServices, paused: this.pausedClients };
  }

  /** From now on disconnects are reported with reason `server_stopping`. */
  markStopping(): void {
    this.stopping = true;
  }

  /** Wires the hooks and events into an aedes instance. */
  attach(aedes: NucleonAedes): void {
    this.aedes = aedes;
    aedes.preConnect = this.preConnect;
    aedes.authenticate = this.authenticate;
    aedes.authorizePublish = this.authorizePublish;
    aedes.authorizeSubscribe = this.authorizeSubscribe;
    // 'client' comes before the CONNACK is written, so DeviceConnected always
    // precedes the events of the device's first publishes.
    aedes.on('client', this.onClientReady);
    aedes.on('clientDisconnect', this.onClientDisconnect);
    aedes.on('clientError', this.onClientError);
    aedes.on('keepaliveTimeout', (client: Client) => this.noteReason(client, 'keepalive_timeout'));
    aedes.on('subscribe', (subscriptions: Subscription[], client: Client) => {
      if (subscriptions.length > 0 && this.sessions.get(client)?.principal.kind === 'service') this.subscribedServices.add(client);
    });
    aedes.on('connectionError', (_client: Client, error: Error) => {
      this.options.metrics.refused.inc({ reason: connectionErrorReason(error) });
    });
  }

  /** For `NucleonAedes`: whether a client's publish goes on into MQTT routing. */
  readonly shouldRoute = (packet: PublishPacket, client: Client): boolean => {
    if (this.dropped.has(packet)) return false;
    const session = this.sessions.get(client);
    if (session?.principal.kind === 'device') return this.subscribedServices.size > 0;
    return session !== undefined;
  };

  /** For the session store: the ACL, asked again before a subscription is persisted. */
  readonly maySubscribe = (client: Client, filter: string): boolean => {
    const session = this.sessions.get(client);
    return session !== undefined && maySubscribe(session.principal, filter);
  };

  /** The topic and payload of a server → device event; undefined (logged, counted) for an invalid uid or target. */
  outgoing(event: ServerToDevice): { topic: string; payload: Buffer; kind: string } | undefined {
    if (!isValidUid(event.uid)) return this.refuseOutgoing(event, 'invalid uid');
    switch (event.type) {
      case 'ApplicationResponse': {
        if (event.target === '' || /[+#]/.test(event.target) || event.target.includes('\0')) return this.refuseOutgoing(event, 'invalid target');
        const payload = Buffer.from(event.payload.buffer, event.payload.byteOffset, event.payload.byteLength);
        return { topic: `${event.uid}/app/s/${event.target}`, payload, kind: 'app' };
      }
      case 'OtaResponse':
        // An empty payload tells Pyrinas firmware "no update".
        return { topic: `${event.uid}/ota/s`, payload: event.package ? encodeOtaPackage(event.package) : Buffer.alloc(0), kind: 'ota' };
      case 'OtaDownloadResponse':
        return { topic: `${event.uid}/ota/s/d`, payload: encodeOtaChunk(event.chunk), kind: 'ota_chunk' };
    }
  }

  private refuseOutgoing(event: ServerToDevice, why: string): undefined {
    this.options.metrics.sendFailures.inc({ kind: event.type });
    this.options.logger.warn({ event: event.type, uid: event.uid, why }, 'server message not sent');
    return undefined;
  }

  // No new sessions while stopping: they would only be cut off again.
  private readonly preConnect = (_client: Client, _packet: ConnectPacket, callback: (error: Error | null, success: boolean) => void): void => {
    callback(null, !this.stopping);
  };

  private readonly authenticate = (
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    const attempt = { clientId: client.id, username, password, tls: tlsSocketOf(client), address: remoteAddressOf(client) };
    this.options.authenticator.authenticate(attempt).then(
      (result) => {
        if (!result.ok) {
          this.options.metrics.refused.inc({ reason: result.failure.reason });
          this.options.logger.info({ clientId: client.id, username, reason: result.failure.reason, remoteAddress: remoteAddressOf(client) }, 'mqtt login refused');
          const error = Object.assign(new Error(`login refused: ${result.failure.reason}`), { returnCode: result.failure.returnCode });
          done(error, false);
          return;
        }
        const { principal, method } = result.identity;
        this.sessions.set(client, new Session(principal, method, remoteAddressOf(client)));
        done(null, true);
      },
      (error: unknown) => {
        this.options.logger.error({ err: error, clientId: client.id }, 'authentication failed with an error');
        const refusal = Object.assign(new Error('server unavailable'), { returnCode: 3 });
        done(refusal, false);
      },
    );
  };

  private readonly authorizeSubscribe = (client: Client, subscription: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void): void => {
    const session = this.sessions.get(client);
    if (session && maySubscribe(session.principal, subscription.topic)) {
      callback(null, subscription);
      return;
    }
    // SUBACK 0x80 for this filter; the connection stays up (MQTT 3.1.1 section 3.9.3).
    this.options.metrics.aclDenied.inc({ action: 'subscribe', reason: 'not_allowed' });
    this.options.logger.info({ clientId: client.id, filter: subscription.topic }, 'subscription denied');
    callback(null, null);
  };

  /**
   * Runs for every PUBLISH before aedes acknowledges it. A device publish is
   * turned into an event and handed to the EventBroker here, so for QoS 1 the
   * PUBACK leaves only once the event was accepted (acknowledged ⇒ accepted).
   * While the broker has no room, this waits, the device gets no PUBACK and
   * aedes reads nothing more from its socket (back-pressure).
   */
  private readonly authorizePublish = (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void => {
    const session = client ? this.sessions.get(client) : undefined;
    // Wills of clients from a previous run arrive without a client: not ours to trust.
    if (!client || !session) {
      callback(new Error('not authorized'));
      return;
    }
    if (session.principal.kind === 'service') {
      const decision = decideServicePublish(packet.topic);
      if (decision.ok) this.routeBeforeAck(client, packet, callback);
      else this.deny(client, session, packet, decision.reason, callback);
      return;
    }

    let decision = session.lastDecision;
    if (decision === undefined || session.lastTopic !== packet.topic) {
      decision = decideDevicePublish(session.principal.uid, packet.topic);
      session.lastTopic = packet.topic;
      session.lastDecision = decision;
    }
    if (!decision.ok) {
      this.deny(client, session, packet, decision.reason, callback);
      return;
    }
    const topic = decision.topic;
    const result = deviceEvent(topic, packet.payload as Buffer, Date.now());
    if (!result.ok) {
      // Logged with uid and topic, counted; the connection is not disturbed and
      // the message is acknowledged, so the device does not resend it forever.
      this.options.metrics.badPayloads.inc({ kind: topic.kind, reason: result.reason });
      this.options.logger.warn({ uid: topic.uid, topic: packet.topic, reason: result.reason, error: result.message }, 'device payload refused');
      this.dropped.add(packet);
      callback(null);
      return;
    }
    this.options.metrics.received[topic.kind]++;
    if (session.held === undefined && this.options.broker.offer(result.event)) {
      // Every inbox had room and nothing of this device waits before it: the
      // event is queued now, no promise needed.
      this.accepted(client, packet, callback);
      return;
    }
    this.holdUntilRoom(client, session, result.event, packet, callback);
  };

  /**
   * A device event is in the broker: acknowledge. With a service account
   * subscribed, the message is also stored for it (its persistent session)
   * before the PUBACK, as service publishes are: aedes would acknowledge first,
   * and a crash in between lost acknowledged messages (test/faults-kill.test.ts).
   */
  private accepted(client: Client, packet: PublishPacket, callback: PublishCallback): void {
    if (this.subscribedServices.size > 0) this.routeBeforeAck(client, packet, callback);
    else callback(null);
  }

  /**
   * Back-pressure for a device that out-runs a runner: its publishes wait here
   * in order, unacknowledged, with one broker wait for all of them; aedes does
   * not read the socket meanwhile, so the device's TCP window fills and it
   * slows down. Nothing is refused and the connection stays up (until the
   * broker stops: then the held publishes fail unacknowledged and the device
   * sends them again after reconnecting).
   */
  private holdUntilRoom(client: Client, session: Session, event: Event, packet: PublishPacket, callback: PublishCallback): void {
    if (session.held === undefined) {
      const held = new HeldPublishes();
      held.push(event, packet, callback);
      session.held = held;
      this.pausedClients++;
      this.waitForRoom(client, session, held);
      return;
    }
    if (session.held.size >= MAX_HELD_PER_CLIENT) {
      this.options.metrics.overloaded.inc({ where: 'held_per_client' });
      this.noteReason(client, 'overloaded');
      callback(new Error('too many publishes waiting for room'));
      return;
    }
    session.held.push(event, packet, callback);
  }

  private waitForRoom(client: Client, session: Session, held: HeldPublishes): void {
    const broker = this.options.broker;
    const first = held.events[held.head];
    if (first === undefined) {
      this.release(session);
      return;
    }
    broker.whenRoom(first.type, held.gone.signal).then(
      () => {
        if (client.closed) {
          // Gone while paused: nothing was acknowledged, so nothing is handed
          // on either (the device sends it again, and it is not doubled).
          const callbacks = held.callbacks.slice(held.head);
          this.release(session);
          for (const callback of callbacks) callback(new Error('connection closed'));
          return;
        }
        // Move what fits, in order; wait again for the rest.
        while (held.size > 0) {
          const i = held.head;
          const event = held.events[i];
          const packet = held.packets[i];
          const callback = held.callbacks[i];
          if (event === undefined || packet === undefined || callback === undefined || !broker.offer(event)) break;
          held.head++;
          this.accepted(client, packet, callback);
        }
        if (held.size > 0) this.waitForRoom(client, session, held);
        else this.release(session);
      },
      (error: unknown) => {
        // The broker stopped or the client went: no PUBACK for what is held;
        // the device sends these again after reconnecting.
        const failure = error instanceof Error ? error : new Error(String(error));
        const callbacks = held.callbacks.slice(held.head);
        this.release(session);
        for (const callback of callbacks) callback(failure);
      },
    );
  }

  private release(session: Session): void {
    session.held = undefined;
    this.pausedClients--;
  }

  /**
   * aedes acknowledges a QoS 1 publish before it stores it; a crash in between
   * would lose a message its sender saw acknowledged. Service messages are
   * therefore routed (queued for offline sessions, stored) here, before the
   * PUBACK, and skipped when aedes' own publish step comes.
   */
  private routeBeforeAck(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    const aedes = this.aedes;
    if (!aedes) {
      callback(new Error('not attached'));
      return;
    }
    aedes.route(packet, client, (error?: Error) => {
      if (error) {
        callback(error);
        return;
      }
      this.dropped.add(packet);
      callback(null);
    });
  }

  private deny(client: Client, session: Session, packet: PublishPacket, reason: string, callback: (error?: Error | null) => void): void {
    session.violations++;
    const metrics = this.options.metrics;
    if (reason === 'not_own_uid' || reason === 'wrong_direction' || reason === 'reserved') metrics.aclDenied.inc({ action: 'publish', reason });
    else metrics.malformedTopics.inc({ reason });
    if (session.violations === 1) this.options.logger.warn({ clientId: client.id, topic: packet.topic, reason }, 'publish denied');
    if (session.violations >= this.options.maxAclViolations) {
      this.options.logger.warn({ clientId: client.id, violations: session.violations }, 'too many denied publishes; closing the connection');
      this.noteReason(client, 'acl_violations');
      callback(new Error('too many denied publishes'));
      return;
    }
    // MQTT 3.1.1 [MQTT-3.3.5-2]: acknowledge as usual (or close); the message itself goes nowhere.
    this.dropped.add(packet);
    callback(null);
  }

  private readonly onClientReady = (client: Client): void => {
    const session = this.sessions.get(client);
    if (!session) return;
    if (session.principal.kind === 'service') {
      this.connectedServices++;
      return;
    }
    this.connectedDevices++;
    this.options.broker.emit({
      type: 'DeviceConnected',
      uid: session.principal.uid,
      clientId: client.id,
      remoteAddress: session.remoteAddress,
      authMethod: session.method,
      cleanSession: client.clean,
      at: Date.now(),
    });
  };

  private readonly onClientDisconnect = (client: Client): void => {
    const session = this.sessions.get(client);
    if (!session) return;
    session.held?.gone.abort(new Error('connection closed'));
    const reason = this.stopping ? 'server_stopping' : (session.disconnectReason ?? 'closed');
    this.options.metrics.disconnects.inc({ reason: reason.startsWith('error') ? errorDisconnectReason(reason) : reason });
    if (session.principal.kind === 'service') {
      this.connectedServices--;
      this.subscribedServices.delete(client);
      return;
    }
    this.connectedDevices--;
    this.options.broker.emit({ type: 'DeviceDisconnected', uid: session.principal.uid, clientId: client.id, reason, at: Date.now() });
  };

  private readonly onClientError = (client: Client, error: Error): void => {
    this.noteReason(client, `error: ${error.message}`);
  };

  private noteReason(client: Client, reason: string): void {
    const session = this.sessions.get(client);
    if (session && session.disconnectReason === undefined) session.disconnectReason = reason;
  }
}

function remoteAddressOf(client: Client): string {
  const socket = (client.conn as { remoteAddress?: string }).remoteAddress !== undefined ? (client.conn as { remoteAddress?: string }) : client.req?.socket;
  return socket?.remoteAddress ?? 'unknown';
}

/** Bounded label values for disconnects caused by an error, so slow consumers and oversized packets are counted apart. */
function errorDisconnectReason(reason: string): string {
  if (reason.includes('drain timeout')) return 'drain_timeout';
  if (reason.includes('too large')) return 'packet_too_large';
  return 'error';
}

function connectionErrorReason(error: Error): string {
  if (error.message.includes('connect did not arrive in time')) return 'connect_timeout';
  if (error.message.includes('too large')) return 'packet_too_large';
  if (error.message.includes('keep alive limit')) return 'keepalive_out_of_bounds';
  if (error.message.includes('identifier rejected')) return 'identifier_rejected';
  return 'protocol_error';
}
