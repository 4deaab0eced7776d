import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Client } from 'aedes';
import { ensureServerTls, type ServerTls } from '../certs/index.js';
import type { Config } from '../config/index.js';
import { deviceCredentials, loginGuard, serviceCredentials } from '../devices/index.js';
import type { EventOf } from '../events.js';
import type { PresenceService } from '../presence/index.js';
import { TelemetryFields } from '../protocol/index.js';
import { CrlFile, type Presented, type RevocationService } from '../revocation/index.js';
import path from 'node:path';
import type { Runner, RunnerContext } from '../runner.js';
import { Authenticator } from './auth.js';
import { loadLiveRules } from '../acl/index.js';
import { AclRules } from './acl-rules.js';
import { Gateway } from './gateway.js';
import { chronologicalBrokerId } from './aedes/broker-id.js';
import { RoutingSettlements } from './aedes/routing-settlements.js';
import { SysTopics } from './sys-topics.js';
import { nucleonVersion } from '../version.js';
import { Gate } from '../util/gate.js';
import { Once } from '../util/once.js';
import { createListener, type Listener, type ListenerName } from './listeners.js';
import { MqttMetrics } from './metrics.js';
import { coalesceWrites, grantHighestQos, installAedesContacts, NucleonAedes } from './aedes/index.js';
import type { SessionPersistence } from './persistence.js';
import { embeddedSessions, type MqttBackend, type Opened } from './session-backends.js';
import { RateLimiter } from './rate-limit.js';

const ACCEPTS = ['ApplicationResponse', 'OtaResponse', 'OtaDownloadResponse', 'AclRulesChanged', 'ServiceAccountsChanged'] as const;
type Outgoing = EventOf<'ApplicationResponse' | 'OtaResponse' | 'OtaDownloadResponse'>;
/** Internal (clients may subscribe only below $SYS/broker/): tells every cluster instance to reload the ACL rules. */
const ACL_CHANGED_TOPIC = '$SYS/nucleon/acl/changed';
/** Internal, like ACL_CHANGED_TOPIC: a service account added or removed live; the payload is `{name, change}`. */
const SERVICE_ACCOUNTS_TOPIC = '$SYS/nucleon/service-accounts/changed';

/** mqemitter's concurrency; our router gate stays below it so mqemitter never queues. */
const MQ_CONCURRENCY = 1024;
/**
 * Messages routed at once. Write coalescing (src/mqtt/aedes/write-coalescing.ts)
 * joins a connection's packets of one loop turn, so it pays only when several
 * messages per connection are on their way at once: with 100 routed and 64 in
 * flight to 64 devices, each got about one per turn (bench scenario 3: 1.00
 * write syscall per message); with 1,000 / 1,024, 0.13.
 */
const MAX_ROUTING = 1000;
const MAX_ROUTING_WAITING = 10_000;
/** Server → device publishes in flight at once; the runner's inbox waits beyond that. */
const MAX_SENDS = 1024;

/** Whether any MQTT listener is on; with none, Nucleon runs without the MQTT runner. */
export function mqttListens(config: Readonly<Config>): boolean {
  return config.mqtt.tls.enabled || config.mqtt.tcp.enabled || config.mqtt.ws.enabled;
}

export interface MqttRunnerOptions {
  backend?: (context: RunnerContext) => MqttBackend;
  /** The instance's presence, which the gateway writes (runners read it through their context). */
  presence: PresenceService;
  /** The instance's revocation list, which the gateway checks at every login and listens to for sessions to close. */
  revocations: RevocationService;
}

interface Started {
  context: RunnerContext;
  sys?: SysTopics;
  sessions: Opened<SessionPersistence> | undefined;
  emitter: Opened<unknown> | undefined;
  aedes: NucleonAedes | undefined;
  gateway: Gateway | undefined;
  metrics: MqttMetrics | undefined;
  sends: Gate;
  listeners: Listener[];
  registered: boolean;
  /** `certs/crl.pem`, with TLS. */
  crl?: CrlFile;
  stopNotices?: () => void;
  /** Serves one connection, as every listener does. */
  handle?: (stream: Duplex, request?: IncomingMessage) => void;
}

/**
 * The MQTT front end (README "MQTT and the device protocol"): aedes over TLS
 * (and optionally TCP and WebSocket), device identity and ACL, device
 * publishes → events, server events → device publishes, durable sessions.
 */
export class MqttRunner implements Runner {
  readonly name = 'mqtt';
  readonly listens = true;
  private started: Started | undefined;
  private readonly stopping = new Once(() => this.doStop());
  private readonly boundPorts = new Map<ListenerName, number>();

  constructor(private readonly options: MqttRunnerOptions) {}

  /**
   * Serves one MQTT connection over any duplex stream, as the listeners do:
   * in-memory streams in the unit tests, or a transport of a library user's
   * own. Such a connection has no TLS certificate, so it logs in with a
   * password (or, with `mqtt.auth.anonymous`, without).
   */
  connectStream(stream: Duplex): void {
    const handle = this.started?.handle;
    if (!handle) throw new Error('the MQTT runner is not running');
    handle(stream);
  }

  /** The port a listener is bound to (useful with port 0); undefined when it is off. */
  port(listener: ListenerName): number | undefined {
    return this.boundPorts.get(listener);
  }

  async start(context: RunnerContext): Promise<void> {
    const { config, logger } = context;
    const mqtt = config.mqtt;
    const needsTls = mqtt.tls.enabled || (mqtt.ws.enabled && mqtt.ws.tls);
    const tls = needsTls ? await ensureServerTls(config.certs, logger) : undefined;

    if (mqtt.auth.anonymous) {
      logger.warn(
        { rules: config.acl.rules.length },
        'mqtt.auth.anonymous is on: clients without credentials connect (a client id that is a uid as that device, any other as an anonymous client governed by [acl] rules). For development and conformance testing only',
      );
    }
    const state: Started = { context, sessions: undefined, emitter: undefined, aedes: undefined, gateway: undefined, metrics: undefined, sends: new Gate(MAX_SENDS, 1), listeners: [], registered: false };
    this.started = state;
    this.stopping.reset();
    try {
      await this.startBroker(state, config, tls);
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private async startBroker(state: Started, config: Readonly<Config>, tls: ServerTls | undefined): Promise<void> {
    const { context } = state;
    const { logger } = context;
    const mqtt = config.mqtt;
    const limits = mqtt.limits;
    const metrics: MqttMetrics = new MqttMetrics(context.metrics, () => gateway.counts());
    const revocations = this.options.revocations;
    // Closes what a changed CRL file revokes; the gateway exists by the time the file is watched.
    const crl = tls ? new CrlFile(path.join(tls.dir, 'crl.pem'), tls.caPath, logger, () => gateway.revocationNotice({ kind: 'recheck' })) : undefined;
    const revoked = (presented: Presented): string | undefined => {
      const revocation = revocations.check(presented);
      if (revocation) return `revoked by ${revocation.by}: ${revocation.reason}`;
      const issuer = crl?.refusal(presented);
      return issuer === undefined ? undefined : `listed in the CRL of ${issuer}`;
    };
    const authenticator = new Authenticator(mqtt.auth, limits.max_client_id_length, deviceCredentials(context.store), serviceCredentials(context.store), loginGuard(context), revoked);
    const services = serviceCredentials(context.store);
    const gateway: Gateway = new Gateway({
      broker: context.broker,
      authenticator,
      metrics,
      logger,
      maxAclViolations: limits.max_acl_violations,
      keepaliveMaxS: limits.keepalive_max_s,
      serviceAccountsExist: async () => (await services.list()).length > 0,
      rules: await this.loadRules(context),
      presence: this.options.presence,
      telemetryFields: new TelemetryFields(config.telemetry.fields),
      revoked,
    });
    await gateway.refreshServiceAccounts();
    state.gateway = gateway;
    state.metrics = metrics;
    if (crl) {
      state.crl = crl;
      await crl.start();
    }
    state.stopNotices = revocations.onNotice((notice) => gateway.revocationNotice(notice));

    const backend = (this.options.backend ?? embeddedSessions)(context);
    const settlements = new RoutingSettlements();
    state.sessions = await backend.openSessions({
      settlements,
      offlineQueueSize: limits.offline_queue_size,
      maySubscribe: gateway.maySubscribe,
      isConnected: (clientId: string): boolean => aedes.clientConnected(clientId),
      onWillDeleteFailed: (clientId, error) => logger.warn({ err: error, clientId }, 'deleting a published will failed; a later sweep publishes it again'),
      onUnawaitedWriteFailed: (clientId, error) => logger.error({ err: error, clientId }, 'recording the packet id of a message being sent failed; after a reconnect it is resent with a new id'),
      onRetainedReadFailed: (error) => logger.warn({ err: error }, 'reading retained messages for a new subscription failed; that subscriber misses them'),
      onOfflineDrop: (clientId) => {
        metrics.offlineDropped.inc();
        logger.debug({ clientId }, 'offline queue full; message dropped');
      },
    });
    const persistence = state.sessions.value;
    state.emitter = await backend.openEmitter?.(MQ_CONCURRENCY);
    const aedes: NucleonAedes = new NucleonAedes({
      // Offline queues are read back in key order, which includes this id: later runs sort later.
      id: chronologicalBrokerId(),
      persistence,
      ...(state.emitter ? { mq: state.emitter.value } : {}),
      concurrency: MQ_CONCURRENCY,
      connectTimeout: limits.connect_timeout_ms,
      drainTimeout: limits.drain_timeout_ms,
      heartbeatInterval: limits.heartbeat_interval_ms,
      // Checked by the gateway, which answers with a valid CONNACK code (aedes sends the reserved 6).
      keepaliveLimit: 0,
      maxClientsIdLength: limits.max_client_id_length,
      // Before CONNACK a client may pipeline a few packets; more is abuse.
      queueLimit: 42,
      onIncomingStored: gateway.incomingStored,
      maxRouting: MAX_ROUTING,
      maxRoutingWaiting: MAX_ROUTING_WAITING,
      onRoutingRefused: () => metrics.overloaded.inc({ where: 'router' }),
      settlements,
    });
    state.aedes = aedes;
    gateway.attach(aedes);
    aedes.on('client', (client: Client) => {
      if (client.clean) persistence.forget(client.id);
    });
    // aedes reports persistence failures here; without a listener they would crash the process.
    // (aedes' typings omit the plain EventEmitter 'error' event.)
    (aedes as EventEmitter).on('error', (error: Error) => logger.error({ err: error }, 'mqtt broker error'));
    await aedes.listen();
    // Rules set live on any instance: reloaded here when the news comes through routing.
    await new Promise<void>((resolve) =>
      aedes.subscribe(
        ACL_CHANGED_TOPIC,
        (_packet: unknown, done: () => void) => {
          this.loadRules(context).then(
            (rules) => {
              gateway.setRules(rules);
              logger.info({ rules: rules.size }, 'ACL rules reloaded');
            },
            (error: unknown) => logger.error({ err: error }, 'reloading the ACL rules failed; the previous ones stay'),
          );
          done();
        },
        () => resolve(),
      ),
    );
    // Service accounts changed live on any instance: a removed one's sessions here are closed.
    await new Promise<void>((resolve) =>
      aedes.subscribe(
        SERVICE_ACCOUNTS_TOPIC,
        (packet: { payload: Buffer | string }, done: () => void) => {
          this.serviceAccountChanged(gateway, packet.payload);
          done();
        },
        () => resolve(),
      ),
    );
    // Before any listener opens: a dependency whose internals moved fails the start here.
    for (const warning of installAedesContacts(aedes, { maxSendBufferBytes: limits.max_send_buffer_bytes, maxPacketSize: limits.max_packet_size })) logger.warn(warning);

    await context.broker.publish({
      type: 'NewRunner',
      name: this.name,
      accepts: ACCEPTS,
      inbox: {
        handle: (event) => {
          if (event.type === 'AclRulesChanged') return this.announce(aedes, ACL_CHANGED_TOPIC, Buffer.alloc(0));
          if (event.type === 'ServiceAccountsChanged') return this.announce(aedes, SERVICE_ACCOUNTS_TOPIC, Buffer.from(JSON.stringify({ name: event.name, change: event.change })));
          return this.send(state, gateway, event as Outgoing);
        },
      },
    });
    state.registered = true;

    // One counter for every client (not a closure per connection: it would stay for the connection's life).
    const countDelivery = () => {
      metrics.publishesOut++;
    };
    const handle = (stream: Duplex, request?: IncomingMessage) => {
      // One TLS record and one syscall per connection per loop turn, not per packet (src/mqtt/aedes/write-coalescing.ts).
      coalesceWrites(stream);
      // Before the client can subscribe: its deliveries get the highest QoS granted (src/mqtt/aedes/deliveries.ts).
      grantHighestQos(aedes.handle(stream, request), countDelivery);
    };
    state.handle = handle;
    state.sys = new SysTopics(
      aedes,
      () => ({ version: nucleonVersion(), clients: gateway.counts(), received: metrics.publishesIn, sent: metrics.publishesOut }),
      mqtt.sys_interval_s,
      logger,
    );
    state.sys.start();
    const limiter = new RateLimiter(limits.connections_per_second);
    const listenerContext = { mqtt, limits: config.limits, tls, handle, limiter, metrics, registry: context.metrics, logger };
    const wanted: [ListenerName, { enabled: boolean; host: string; port: number }][] = [
      ['tls', mqtt.tls],
      ['tcp', mqtt.tcp],
      ['ws', mqtt.ws],
    ];
    for (const [name, settings] of wanted) {
      if (!settings.enabled) continue;
      const listener = createListener(name, listenerContext);
      state.listeners.push(listener);
      await listener.listen(settings.host, settings.port);
      this.boundPorts.set(name, listener.port);
    }
  }

  private serviceAccountChanged(gateway: Gateway, payload: Buffer | string): void {
    const logger = this.started?.context.logger;
    let change: { name?: unknown; change?: unknown };
    try {
      change = JSON.parse(payload.toString()) as { name?: unknown; change?: unknown };
    } catch (error) {
      logger?.error({ err: error }, 'a service account change notice is not JSON; ignored');
      return;
    }
    gateway.refreshServiceAccounts().catch((error: unknown) => logger?.error({ err: error }, 'reading the service accounts failed'));
    if (change.change === 'removed' && typeof change.name === 'string') {
      const closed = gateway.closeServiceAccount(change.name);
      logger?.info({ service: change.name, closed }, 'service account removed; its sessions closed');
    }
  }

  /** Through MQTT routing, so every cluster instance (this one too) hears of a change to the shared store. */
  private announce(aedes: NucleonAedes, topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      aedes.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, (error?: Error) => (error ? reject(error) : resolve()));
    });
  }

  /** The configured rules, then the ones set live. */
  private async loadRules(context: RunnerContext): Promise<AclRules> {
    return new AclRules([...context.config.acl.rules, ...(await loadLiveRules(context.store))]);
  }

  /**
   * Publishes a server event to its device (QoS 1, queued for an offline
   * persistent session). Up to MAX_SENDS publishes run at once; while a place
   * is free this returns nothing (no promise per message), beyond that the
   * returned promise holds the runner's inbox, so its bound (not a list here)
   * holds the rest.
   */
  private send(state: Started, gateway: Gateway, event: Outgoing): Promise<void> | undefined {
    const aedes = state.aedes;
    const message = gateway.outgoing(event);
    if (!aedes || !message) return undefined;
    const start = () => this.publishToDevice(state, aedes, event.type, message);
    if (state.sends.tryEnter()) {
      start();
      return undefined;
    }
    return new Promise<void>((admitted) => {
      const entered = state.sends.enter(() => {
        admitted();
        start();
      });
      if (!entered) throw new Error('unreachable: one event is handled at a time');
    });
  }

  private publishToDevice(state: Started, aedes: NucleonAedes, type: Outgoing['type'], message: { topic: string; payload: Buffer; kind: string }): void {
    aedes.publish({ cmd: 'publish', topic: message.topic, payload: message.payload, qos: 1, retain: false, dup: false }, (error?: Error) => {
      state.sends.leave();
      if (error) {
        state.context.logger.warn({ err: error, topic: message.topic }, 'publish to device failed');
        state.metrics?.sendFailures.inc({ kind: type });
      } else {
        state.metrics?.sent.inc({ kind: message.kind });
      }
    });
  }

  stop(): Promise<void> {
    return this.stopping.run();
  }

  private async doStop(): Promise<void> {
    const state = this.started;
    if (!state) return;
    this.started = undefined;
    const { context } = state;
    state.sys?.stop();
    state.stopNotices?.();
    await state.crl?.stop();
    if (state.registered) context.broker.unregister(this.name);
    state.gateway?.markStopping();
    // Stop accepting, then end every session (aedes publishes wills), then
    // wait for messages still being stored before the store closes.
    const closing = state.listeners.map((listener) => listener.close());
    const settleMs = Math.min(context.config.broker.stop_timeout_ms, 5000);
    if (state.aedes) {
      const aedes = state.aedes;
      // Bounded: a shared emitter whose Redis is away may never confirm its close.
      const closed = await waitAtMost(new Promise<void>((resolve) => aedes.close(() => resolve())), settleMs);
      if (!closed) context.logger.warn('mqtt broker did not close in time; closing its connections anyway');
    }
    await Promise.all(closing);
    await state.sends.idle(settleMs);
    if (state.aedes && !(await state.aedes.routingIdle(settleMs))) context.logger.warn('mqtt messages still being routed at stop; they may be lost');
    // A will of an earlier run being published now is deleted from the store right after: let it finish, or it is published again after the next start.
    if (state.gateway && !(await state.gateway.staleWillsIdle(settleMs))) context.logger.warn('wills of an earlier run still being published at stop; they may be published again after the next start');
    await state.emitter?.close();
    await state.sessions?.close();
    this.boundPorts.clear();
  }
}

/** Whether `work` finished within `ms`; it keeps running either way. */
async function waitAtMost(work: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
