import type { AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import type { EventBroker } from '../broker/index.js';
import type { EventOf } from '../events.js';
import type { Logger } from '../logger.js';
import type { PresenceService } from '../presence/index.js';
import { encodeOtaChunk, encodeOtaPackage, isValidUid, TelemetryFields } from '../protocol/index.js';
import { maySubscribe } from './acl.js';
import type { AclRules } from './acl-rules.js';
import type { NucleonAedes } from './aedes/index.js';
import type { Notice } from '../revocation/index.js';
import { certificateIdentity, presentedCertificate, ReturnCode, tlsSocketOf, type Authenticator, type RevocationCheck } from './auth.js';
import { disconnectReason, refusedReason } from './connection-errors.js';
import type { MqttMetrics } from './metrics.js';
import { PublishPath } from './publish-path.js';
import { Session, Sessions } from './sessions.js';

export interface GatewayOptions {
  broker: EventBroker;
  authenticator: Authenticator;
  metrics: MqttMetrics;
  logger: Logger;
  maxAclViolations: number;
  /** mqtt.limits.keepalive_max_s: keepalive 0 or above this is refused. */
  keepaliveMaxS: number;
  /** Whether any service account exists now (device messages are then routed into MQTT for them). */
  serviceAccountsExist: () => Promise<boolean>;
  /** The configured ACL rules at start (README "ACL rules"); `setRules` replaces them while running. */
  rules: AclRules;
  /** Told of every device connection and its goodbye; the gateway is its only writer. */
  presence: Pick<PresenceService, 'connected' | 'disconnected' | 'connections'>;
  /** Extra telemetry fields (`[[telemetry.fields]]`). */
  telemetryFields?: TelemetryFields;
  /** Whether a device (or its certificate) is revoked now: asked again of open sessions when the lists change. */
  revoked: RevocationCheck;
}

type ServerToDevice = EventOf<'ApplicationResponse'> | EventOf<'OtaResponse'> | EventOf<'OtaDownloadResponse'>;

/**
 * The aedes hooks: who may connect and subscribe, presence, and what the
 * server sends to devices. What a PUBLISH becomes is the publish path's
 * (src/mqtt/publish-path.ts).
 */
export class Gateway {
  private readonly sessions = new Sessions();
  private readonly path: PublishPath;
  /** Keepalive of each CONNECT, from preConnect until authenticate decides. */
  private readonly keepalives = new WeakMap<Client, number>();
  /** Connected service-account clients, to close a removed account's sessions. */
  private readonly serviceClients = new Set<Client>();
  /** Set by attach(): its map of connected clients finds a device's session (client id = uid) for revoke and kick. */
  private aedes: NucleonAedes | undefined;
  private connectedAnonymous = 0;
  private rules: AclRules;
  /** Whether each CONNECT named a client id itself (aedes makes one up for an empty one before authenticate). */
  private readonly namedClientIds = new WeakMap<Client, { named: boolean; clean: boolean }>();
  private stopping = false;
  private routeDeviceMessages = false;

  constructor(private readonly options: GatewayOptions) {
    this.rules = options.rules;
    this.path = new PublishPath({
      broker: options.broker,
      metrics: options.metrics,
      logger: options.logger,
      maxAclViolations: options.maxAclViolations,
      routeDeviceMessages: () => this.routeDeviceMessages,
      noteReason: (client, reason) => this.noteReason(client, reason),
      rules: () => this.rules,
      ...(options.telemetryFields ? { telemetryFields: options.telemetryFields } : {}),
    });
  }

  counts(): { devices: number; services: number; anonymous: number; paused: number } {
    return { devices: this.options.presence.connections, services: this.serviceClients.size, anonymous: this.connectedAnonymous, paused: this.path.pausedClients };
  }

  /** New ACL rules: they decide new subscriptions and publishes from now on (existing subscriptions stay). */
  setRules(rules: AclRules): void {
    this.rules = rules;
  }

  get aclRules(): AclRules {
    return this.rules;
  }

  /**
   * A revocation list changed or a kick came (README "Revocation"): the
   * sessions it concerns are closed now, with disconnect reason `revoked` or
   * `kicked`. A device that logged in but is not 'ready' yet is checked in
   * onClientReady.
   */
  revocationNotice(notice: Notice): void {
    const aedes = this.aedes;
    if (!aedes) return;
    if (notice.kind === 'recheck') {
      for (const client of aedes.openClients()) this.closeIfRevoked(client);
      return;
    }
    const client = aedes.connectedClient(notice.uid);
    // The client with that id must be that device: an anonymous client's id is no uid.
    if (!client || this.sessions.get(client)?.principal.kind !== 'device') return;
    if (notice.kind === 'kick') this.closeFor(client, 'kicked');
    else this.closeIfRevoked(client);
  }

  private closeIfRevoked(client: Client): boolean {
    const session = this.sessions.get(client);
    if (session?.principal.kind !== 'device') return false;
    const certificate = session.method === 'certificate' ? presentedCertificate(tlsSocketOf(client)) : undefined;
    const presented = typeof certificate === 'object' ? certificate : { uid: session.principal.uid };
    if (this.options.revoked(presented) === undefined) return false;
    this.closeFor(client, 'revoked');
    return true;
  }

  private closeFor(client: Client, reason: 'revoked' | 'kicked'): void {
    this.noteReason(client, reason);
    this.options.logger.info({ clientId: client.id, reason }, 'closing a device session');
    client.close();
  }

  /** From now on disconnects are reported with reason `server_stopping`. */
  markStopping(): void {
    this.stopping = true;
    this.path.stop();
  }

  /** See PublishPath.staleWillsIdle: before the session store closes at stop. */
  staleWillsIdle(timeoutMs: number): Promise<boolean> {
    return this.path.staleWillsIdle(timeoutMs);
  }

  /**
   * Device messages are routed into MQTT once any service account exists, so
   * that a persistent service session collects them while it is offline too
   * (bounded by mqtt.limits.offline_queue_size). Asked at start and again
   * when service accounts may have changed; a service login sets it as well.
   */
  async refreshServiceAccounts(): Promise<void> {
    this.routeDeviceMessages = await this.options.serviceAccountsExist();
  }

  /**
   * Closes the live sessions of a removed service account (reason
   * `service_account_removed`); its next login is refused by the store.
   * Returns how many were closed.
   */
  closeServiceAccount(name: string): number {
    let closed = 0;
    for (const client of [...this.serviceClients]) {
      const principal = this.sessions.get(client)?.principal;
      if (principal?.kind !== 'service' || principal.name !== name) continue;
      this.noteReason(client, 'service_account_removed');
      client.close();
      closed++;
    }
    return closed;
  }

  /** For NucleonAedes: aedes stored a client's QoS 2 publish. */
  readonly incomingStored = (packet: PublishPacket, client: Client): void => this.path.stored(client, packet);

  /** Wires the hooks and events into an aedes instance. */
  attach(aedes: NucleonAedes): void {
    this.aedes = aedes;
    this.path.attach(aedes);
    aedes.preConnect = this.preConnect;
    aedes.authenticate = this.authenticate;
    aedes.authorizePublish = (client, packet, callback) => this.path.handle(client, client ? this.sessions.get(client) : undefined, packet, callback);
    aedes.authorizeSubscribe = this.authorizeSubscribe;
    // 'client' comes before the CONNACK is written, so DeviceConnected always
    // precedes the events of the device's first publishes.
    aedes.on('client', this.onClientReady);
    aedes.on('clientDisconnect', this.onClientDisconnect);
    aedes.on('clientError', this.onClientError);
    aedes.on('keepaliveTimeout', (client: Client) => this.noteReason(client, 'keepalive_timeout'));
    aedes.on('connectionError', (_client: Client, error: Error) => {
      this.options.metrics.refused.inc({ reason: refusedReason(error) });
    });
  }

  /** For the session store: the ACL, asked again before a subscription is persisted. */
  readonly maySubscribe = (client: Client, filter: string): boolean => {
    const session = this.sessions.get(client);
    return session !== undefined && maySubscribe({ principal: session.principal, clientId: client.id }, filter, this.rules);
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
  private readonly preConnect = (client: Client, packet: ConnectPacket, callback: (error: Error | null, success: boolean) => void): void => {
    this.keepalives.set(client, packet.keepalive ?? 0);
    this.namedClientIds.set(client, { named: packet.clientId !== '', clean: packet.clean !== false });
    callback(null, !this.stopping);
  };

  private readonly authenticate = (
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    // MQTT 3.1.1 has no return code for a keepalive the server will not take; like
    // Mosquitto's max_keepalive, refuse it as "identifier rejected" (aedes sent the reserved 6).
    const keepalive = this.keepalives.get(client) ?? 0;
    this.keepalives.delete(client);
    if (this.options.keepaliveMaxS > 0 && (keepalive === 0 || keepalive > this.options.keepaliveMaxS)) {
      this.options.metrics.refused.inc({ reason: 'keepalive_out_of_bounds' });
      this.options.logger.info({ clientId: client.id, keepalive, max: this.options.keepaliveMaxS, remoteAddress: remoteAddressOf(client) }, 'mqtt login refused: keepalive out of bounds');
      done(Object.assign(new Error(`keepalive ${keepalive} s is outside 1..${this.options.keepaliveMaxS} s`), { returnCode: ReturnCode.IDENTIFIER_REJECTED }), false);
      return;
    }
    // [MQTT-3.1.3-8]: a zero-length client id needs a clean session (the server then makes one up, MQTT-3.1.3-6).
    const named = this.namedClientIds.get(client) ?? { named: true, clean: true };
    this.namedClientIds.delete(client);
    if (!named.named && !named.clean) {
      this.options.metrics.refused.inc({ reason: 'bad_client_id' });
      done(Object.assign(new Error('a zero-length client id needs a clean session [MQTT-3.1.3-8]'), { returnCode: ReturnCode.IDENTIFIER_REJECTED }), false);
      return;
    }
    const attempt = { clientId: client.id, clientIdAssigned: !named.named, username, password, tls: tlsSocketOf(client), address: remoteAddressOf(client) };
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
        this.sessions.set(client, new Session(principal, method, remoteAddressOf(client), client.id));
        if (principal.kind === 'service') this.routeDeviceMessages = true;
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
    if (session && maySubscribe({ principal: session.principal, clientId: client.id }, subscription.topic, this.rules)) {
      callback(null, subscription);
      return;
    }
    // SUBACK 0x80 for this filter; the connection stays up (MQTT 3.1.1 section 3.9.3).
    this.options.metrics.aclDenied.inc({ action: 'subscribe', reason: 'not_allowed' });
    this.options.logger.info({ clientId: client.id, filter: subscription.topic }, 'subscription denied');
    callback(null, null);
  };

  private readonly onClientReady = (client: Client): void => {
    const session = this.sessions.get(client);
    if (!session) return;
    const principal = session.principal;
    // The audit trail of device connections (README "Audit log"): who, from where, how.
    this.options.logger.info({ audit: true, ...whoIs(session), clientId: client.id, remoteAddress: session.remoteAddress, authMethod: session.method }, 'client connected');
    if (principal.kind === 'service') {
      this.serviceClients.add(client);
      return;
    }
    if (principal.kind === 'anonymous') {
      this.connectedAnonymous++;
      return;
    }
    // Revoked between its login and now: closed before it is announced.
    if (this.closeIfRevoked(client)) return;
    const connection = { uid: principal.uid, clientId: client.id, remoteAddress: session.remoteAddress, authMethod: session.method, at: Date.now() };
    // Presence first, so a runner handling DeviceConnected finds the device online.
    session.presenceEntry = this.options.presence.connected(connection);
    const certificate = session.method === 'certificate' ? certificateIdentity(tlsSocketOf(client)) : undefined;
    this.options.broker.emit({ type: 'DeviceConnected', ...connection, cleanSession: client.clean, ...(certificate ? { certificate } : {}) });
  };

  private readonly onClientDisconnect = (client: Client): void => {
    const session = this.sessions.get(client);
    if (!session) return;
    session.held?.gone.abort(new Error('connection closed'));
    const reason = this.stopping ? 'server_stopping' : (session.disconnectReason ?? 'closed');
    this.options.metrics.disconnects.inc({ reason: this.stopping ? 'server_stopping' : (session.disconnectLabel ?? 'closed') });
    const principal = session.principal;
    this.options.logger.info({ audit: true, ...whoIs(session), clientId: client.id, remoteAddress: session.remoteAddress, authMethod: session.method, reason }, 'client disconnected');
    if (principal.kind === 'service') {
      this.serviceClients.delete(client);
      return;
    }
    if (principal.kind === 'anonymous') {
      this.connectedAnonymous--;
      return;
    }
    const entry = session.presenceEntry;
    // Closed in onClientReady (revoked meanwhile): it was never announced.
    if (!entry) return;
    session.presenceEntry = undefined;
    this.options.presence.disconnected(entry);
    this.options.broker.emit({ type: 'DeviceDisconnected', uid: principal.uid, clientId: client.id, reason, at: Date.now() });
  };

  private readonly onClientError = (client: Client, error: Error): void => {
    this.noteReason(client, `error: ${error.message}`, disconnectReason(error));
  };

  /** The first reason a client goes is the one reported; `label` is its bounded metric label (the reason itself unless given). */
  private noteReason(client: Client, reason: string, label = reason): void {
    const session = this.sessions.get(client);
    if (session && session.disconnectReason === undefined) {
      session.disconnectReason = reason;
      session.disconnectLabel = label;
    }
  }
}

/** `uid` for a device, `service` for a service account, nothing more for an anonymous client (its client id says it). */
function whoIs(session: Session): { uid: string } | { service: string } | Record<string, never> {
  const principal = session.principal;
  if (principal.kind === 'device') return { uid: principal.uid };
  if (principal.kind === 'service') return { service: principal.name };
  return {};
}

function remoteAddressOf(client: Client): string {
  const socket = (client.conn as { remoteAddress?: string }).remoteAddress !== undefined ? (client.conn as { remoteAddress?: string }) : client.req?.socket;
  return socket?.remoteAddress ?? 'unknown';
}
