import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { DEFAULT_ADMIN_KEY_NAME } from '../config/index.js';
import { deviceCredentials, serviceCredentials } from '../devices/index.js';
import { httpStatusOf } from '../errors.js';
import { httpRefusedCounter } from '../http-guard.js';
import { deadlinesOf, guardServer, httpServerOptions } from '../server-guard.js';
import { contain } from '../contain.js';
import { failResponse, rejectUpgrade, RequestRefusals } from '../http-request.js';
import { assertNever, type EventOf } from '../events.js';
import type { Runner, RunnerContext } from '../runner.js';
import { listenOrThrow } from '../util/listen.js';
import { Once } from '../util/once.js';
import { AdminAccess } from './access.js';
import { AuditLog, AuditRing, type AuditVia } from './audit.js';
import { AdminKeys, AuthLimiter, keyFromHeaders, loadKeySpecs, resolveApiKey, type AdminActor } from './auth.js';
import { fetchOtaCatalog, runCommand, type CommandServices } from './commands.js';
import { DeviceHistory } from './device-history.js';
import { GroupMembership } from './group-membership.js';
import { HealthSampler, HealthStream } from './health.js';
import { TelemetryRings } from './telemetry-rings.js';
import { InfluxHistory } from './influx-history.js';
import type { RevocationService } from '../revocation/index.js';
import { AdminConnection, CloseCode, type ConnectionHooks } from './connection.js';
import { FleetView, KvFleetStore, type DeviceRecord, type FleetStore } from './fleet.js';
import { createRequestHandler, loadStaticFiles, staticDir, type Health, type MetricsExposition } from './http-routes.js';
import { AdminMetrics } from './metrics.js';
import { PendingRequests } from './pending.js';
import { AdminError, encodeMessage, eventMessage, type Encoding } from './protocol.js';
import { UploadManager } from './uploads.js';
import { RestApi } from './rest/api.js';
import { nucleonVersion } from '../version.js';

/** The event types the admin runner takes: answers to its requests, and what feeds the fleet view and the live stream. */
const ACCEPTS = [
  'OtaCommandResult',
  'OtaImageListResponse',
  'OtaGroupListResponse',
  'ApplicationManagementResponse',
  'DeviceConnected',
  'DeviceDisconnected',
  'TelemetryReceived',
  'DeviceFirmwareUpdated',
  'CampaignCommandResult',
  'CampaignStateChanged',
  'CampaignDeviceState',
] as const;
/** Watched, not handled: the device page's last app messages (live only); with no app runner they still count as unrouted. */
const OBSERVES = ['ApplicationRequest'] as const;
type Accepted = EventOf<(typeof ACCEPTS)[number] | (typeof OBSERVES)[number]>;

/** The subprotocol a browser may offer; the API key itself never travels in the URL. */
export const ADMIN_SUBPROTOCOL = 'nucleon.admin.v1';
const FLEET_FLUSH_MS = 1000;
/** Group links made by library code or on another instance send the admin no event: asked again after this long. */
const MEMBERSHIP_MAX_AGE_MS = 30_000;
/** Room in a frame for the envelope around an upload chunk. */
const FRAME_OVERHEAD = 4096;

export interface AdminRunnerOptions {
  /** Replaces where the fleet records are kept (the KvStore by default). */
  fleetStore?: (context: RunnerContext) => FleetStore;
  /** More reasons for `/healthz` to say degraded (cluster mode: Redis connections). */
  healthChecks?: HealthCheck[];
  /** What `/metrics` serves instead of the instance's own registry (a worker of `serve --workers`: every worker's). */
  exposition?: MetricsExposition;
  /** The instance's revocation list, for devices.revoke/unrevoke/kick/revocations. */
  revocations?: RevocationService;
}

/** One part of `/healthz`: `ok: false` makes the instance degraded; the rest is shown under `checks.<name>`. */
export interface HealthCheck {
  name: string;
  check(): { readonly ok: boolean };
}

interface Started {
  context: RunnerContext;
  server: Server;
  wss: WebSocketServer;
  connections: Map<string, AdminConnection>;
  services: CommandServices;
  rest: RestApi;
  flushTimer: NodeJS.Timeout;
  healthStream: HealthStream;
  stopping: boolean;
  unsubscribePresence: () => void;
}

/**
 * The admin endpoint: a WebSocket API (JSON and CBOR), the dashboard, `/metrics`
 * and `/healthz` on one HTTP server bound to loopback by default (README "Admin").
 */
export class AdminRunner implements Runner {
  readonly name = 'admin';
  readonly listens = true;
  private started: Started | undefined;
  private readonly stopped = new Once(() => this.doStop());

  constructor(private readonly options: AdminRunnerOptions = {}) {}

  async start(context: RunnerContext): Promise<void> {
    const { config, logger, store } = context;
    const admin = config.admin;
    const apiKey = await resolveApiKey(admin.api_key, config.store.path);
    // The path, never the key: logs are read by more people than the key is meant for.
    if (apiKey.generated) logger.info({ file: apiKey.file }, 'generated an admin API key');
    else if (apiKey.file) logger.info({ file: apiKey.file }, 'admin API key read from file');
    const keys = new AdminKeys([{ name: DEFAULT_ADMIN_KEY_NAME, role: 'admin', key: apiKey.key }, ...(await loadKeySpecs(admin.keys))]);
    if (admin.keys.length > 0) logger.info({ keys: admin.keys.map((key) => ({ name: key.name, role: key.role })) }, 'admin keys');
    const limiter = new AuthLimiter({
      failuresPerWindow: admin.auth_failures_per_minute,
      globalFailuresPerWindow: admin.auth_failures_global_per_minute,
      windowMs: 60_000,
    });

    const presence = context.presence;
    const fleet = new FleetView(this.options.fleetStore?.(context) ?? new KvFleetStore(store), presence);
    await fleet.load();
    const uploads = new UploadManager(path.join(config.store.path, 'uploads'), admin.max_upload_bytes);
    await uploads.start();
    const pending = new PendingRequests(admin.request_timeout_ms);
    const connections = new Map<string, AdminConnection>();
    const metrics = new AdminMetrics(context.metrics, {
      clients: () => [...connections.values()].filter((c) => c.authenticated).length,
      pending: () => pending.size,
      devicesOnline: () => fleet.onlineCount,
      devicesKnown: () => fleet.size,
    });
    // Base64 grows bytes by 4/3; a chunk must fit a frame in JSON too.
    const chunkBytes = Math.max(1024, Math.floor(((admin.max_message_bytes - FRAME_OVERHEAD) * 3) / 4 / 1024) * 1024);
    const audit = new AuditLog(new AuditRing(admin.audit_size), logger);
    let lastHistoryError: string | undefined;
    const services: CommandServices = {
      broker: context.broker,
      fleet,
      pending,
      uploads,
      metrics,
      credentials: deviceCredentials(store),
      serviceAccounts: serviceCredentials(store),
      audit,
      chunkBytes,
      acl: { configured: config.acl.rules, store },
      revocations: this.options.revocations,
      console: {
        membership: new GroupMembership({ fetch: () => fetchOtaCatalog(services), maxAgeMs: MEMBERSHIP_MAX_AGE_MS }),
        history: new DeviceHistory(),
        telemetry: new TelemetryRings(),
        ...(config.influx ? { influxHistory: new InfluxHistory({ url: config.influx.url, bucket: config.influx.bucket, token: config.influx.token, timeoutMs: config.influx.timeout_ms }) } : {}),
        onHistoryError: (error) => {
          // Once per different reason: a device page open on a dead InfluxDB asks on every refresh.
          if (error.message === lastHistoryError) return;
          lastHistoryError = error.message;
          logger.warn({ err: error }, 'could not read telemetry history from InfluxDB; the device page shows the recent store');
        },
        health: new HealthSampler({ registry: context.metrics, broker: context.broker, presence }),
        onMembershipError: (error) => logger.warn({ err: error }, 'could not ask the OTA runner for groups; searching with the last known ones'),
      },
    };
    const healthStream = new HealthStream({
      intervalMs: admin.health_interval_ms,
      wanted: () => [...connections.values()].some((connection) => connection.subscription?.kinds.has('health') === true),
      sample: () => services.console.health.snapshot(),
      send: (snapshot) => this.send('health', 'health', undefined, { type: 'Health', ...snapshot }),
      onError: (error) => logger.error({ err: error }, 'taking a health snapshot failed'),
    });

    const dashboardDir = staticDir();
    const files = await loadStaticFiles(dashboardDir);
    if (!files.has('/')) logger.error({ dir: dashboardDir }, 'console bundle not found (run npm run build); serving the API, /metrics and /healthz only');
    const deadlines = deadlinesOf(config.limits);
    const refusals = new RequestRefusals(context.metrics, 'admin', logger);
    const access = new AdminAccess({ listenHost: admin.host, allowedHosts: admin.allowed_hosts, allowedOrigins: admin.allowed_origins });
    const rest = new RestApi({ services, keys, limiter, jsonBodyLimit: admin.max_message_bytes, maxUploadBytes: admin.max_upload_bytes, maxInFlight: admin.max_pending_per_client, version: nucleonVersion(), logger });
    await rest.start();
    const routes = createRequestHandler({
      files,
      metrics: this.options.exposition ?? context.metrics,
      health: () => this.health(),
      admit: (request) => access.admit(request),
      refusals,
      api: (request, response) => rest.handle(request, response),
    });
    const server = createServer(httpServerOptions(deadlines), contain(logger, 'admin request', routes, (_request, response) => failResponse(response)));
    // Node's defaults (60 s for headers, 300 s per request) let a slowloris client hold sockets for minutes.
    const refused = httpRefusedCounter(context.metrics);
    guardServer(server, { deadlines, refused: (reason) => refused.inc({ server: 'admin', reason }), http: { name: 'admin', metrics: context.metrics }, logger });
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      // Twice the limit, so a frame just over it is read and refused with a reason that names
      // the limit; past twice the limit ws itself closes with 1009 (no reason text).
      maxPayload: admin.max_message_bytes * 2,
      handleProtocols: (offered) => (offered.has(ADMIN_SUBPROTOCOL) ? ADMIN_SUBPROTOCOL : false),
    });
    const unauthenticatedLimit = Math.max(1, Math.floor(admin.max_clients / 4));
    const flushTimer = setInterval(() => this.flushFleet(), FLEET_FLUSH_MS);
    flushTimer.unref();
    // Devices on other instances come and go without a local event: stream those changes too.
    const unsubscribePresence = presence.onChange((uid, entry, previous) => {
      if ((entry ?? previous)?.instance === presence.instanceId) return;
      const device = fleet.get(uid);
      if (!device) return;
      if (entry) this.broadcast('device', 'device.connected', device, { at: entry.connectedAt, remoteAddress: entry.remoteAddress, authMethod: entry.authMethod });
      else this.broadcast('device', 'device.disconnected', device, { at: Date.now(), reason: 'elsewhere' });
    });
    const started: Started = { context, server, wss, connections, services, rest, flushTimer, healthStream, stopping: false, unsubscribePresence };
    this.started = started;
    // Started once doStop() can stop it again.
    services.console.health.start();

    const hooks: ConnectionHooks = {
      login: (connection, key) => {
        // The right key is never refused, however many wrong ones came from its block (see AuthLimiter).
        const actor = typeof key === 'string' ? keys.match(key) : undefined;
        if (actor) return { actor };
        if (limiter.limited(connection.address)) {
          metrics.authFailures.inc({ reason: 'rate_limited' });
          const seconds = limiter.retryAfterSeconds(connection.address);
          return { error: new AdminError('RATE_LIMITED', `too many failed logins; wrong keys are refused for ${seconds} s`), closeCode: CloseCode.rateLimited };
        }
        limiter.recordFailure(connection.address);
        metrics.authFailures.inc({ reason: 'invalid' });
        logger.warn({ address: connection.address, via: 'login message' }, 'admin login with a wrong API key');
        return { error: new AdminError('UNAUTHORIZED', 'invalid API key'), closeCode: CloseCode.unauthorized };
      },
      dispatch: (caller, request) => {
        const subscribe = caller.subscribe;
        // The health timer runs while somebody is subscribed to it, so every change of a subscription is a reason to look.
        const watched = subscribe ? { ...caller, subscribe: (subscription: Parameters<typeof subscribe>[0]) => (subscribe(subscription), healthStream.update()) } : caller;
        return runCommand(request.cmd, request.args, watched, services, request.encoding);
      },
      closed: (connection) => {
        connections.delete(connection.id);
        healthStream.update();
        pending.cancelOwner(connection.id);
        uploads.abortOwner(connection.id).catch((error: unknown) => logger.error({ err: error, client: connection.id }, 'removing unfinished uploads failed'));
        logger.debug({ client: connection.id }, 'admin client left');
      },
    };

    const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      const address = request.socket.remoteAddress ?? 'unknown';
      const admission = access.admitUpgrade(request);
      if (!admission.ok) {
        metrics.connections.inc({ result: admission.refusal.reason === 'bad_target' ? 'bad_request' : 'forbidden' });
        return refusals.upgrade(request, socket, admission.refusal);
      }
      const url = admission.url;
      if (url.pathname !== '/ws') return rejectUpgrade(socket, 404, 'the admin WebSocket is at /ws');
      if (url.search !== '') {
        // Keys in URLs end up in proxy logs and browser history: refuse rather than ignore.
        metrics.connections.inc({ result: 'bad_request' });
        return rejectUpgrade(socket, 400, 'no query string: send the API key in an Authorization header or log in with the first message');
      }
      const key = keyFromHeaders(request);
      const actor: AdminActor | undefined = key === undefined ? undefined : keys.match(key);
      if (key !== undefined && !actor) {
        // Asked only for a wrong key: the right one gets in even while its block is limited (see AuthLimiter).
        if (limiter.limited(address)) {
          metrics.connections.inc({ result: 'rate_limited' });
          metrics.authFailures.inc({ reason: 'rate_limited' });
          return rejectUpgrade(socket, httpStatusOf('RATE_LIMITED'), 'too many failed logins; wrong keys are refused until Retry-After', { 'retry-after': String(limiter.retryAfterSeconds(address)) });
        }
        limiter.recordFailure(address);
        metrics.connections.inc({ result: 'unauthorized' });
        metrics.authFailures.inc({ reason: 'invalid' });
        logger.warn({ address, via: 'header' }, 'admin connection with a wrong API key');
        return rejectUpgrade(socket, httpStatusOf('UNAUTHORIZED'), 'invalid API key');
      }
      if (key === undefined && countUnauthenticated(connections) >= unauthenticatedLimit) {
        // Connections that still have to log in are capped apart, so idle sockets cannot lock out the real clients.
        metrics.connections.inc({ result: 'too_many_clients' });
        return rejectUpgrade(socket, httpStatusOf('UNAVAILABLE'), `too many connections waiting to log in (at most ${unauthenticatedLimit})`);
      }
      if (connections.size >= admin.max_clients || started.stopping) {
        metrics.connections.inc({ result: 'too_many_clients' });
        return rejectUpgrade(socket, httpStatusOf('UNAVAILABLE'), started.stopping ? 'shutting down' : `the admin endpoint has its maximum of ${admin.max_clients} clients`);
      }
      wss.handleUpgrade(request, socket, head, (ws) => {
        metrics.connections.inc({ result: 'accepted' });
        const limits = {
          maxMessageBytes: admin.max_message_bytes,
          sendBufferBytes: admin.send_buffer_bytes,
          messagesPerSecond: admin.messages_per_second,
          maxInFlight: admin.max_pending_per_client,
          loginTimeoutMs: admin.login_timeout_ms,
        };
        const connection = new AdminConnection(randomUUID(), address, ws, actor, viaOf(request), limits, hooks, metrics, logger);
        connections.set(connection.id, connection);
        logger.debug({ client: connection.id, address, authenticated: connection.authenticated }, 'admin client connected');
      });
    };
    server.on('upgrade', contain(logger, 'admin upgrade', upgrade, (_request, socket) => socket.destroy()));

    try {
      await context.broker.publish({
        type: 'NewRunner',
        name: this.name,
        accepts: ACCEPTS,
        observes: OBSERVES,
        inbox: { handle: (event) => this.handle(event as Accepted) },
      });
      // Groups asked for now, so the first search does not wait for them (the OTA runner starts before listeners).
      if (context.broker.accepts('OtaGroupListRequest')) services.console.membership.current(services.console.onMembershipError).catch(services.console.onMembershipError);
      await listenOrThrow(server, admin.host, admin.port, 'the admin endpoint');
      access.bind(server.address() as AddressInfo);
    } catch (error) {
      // Nucleon only stops runners that started; undo our half-start here.
      await this.doStop();
      throw error;
    }
    // From now on an 'error' without a listener would end the process.
    server.on('error', (error) => logger.error({ err: error }, 'admin HTTP server error'));
    const bound = server.address() as AddressInfo;
    logger.info({ host: bound.address, port: bound.port, url: `http://${formatHost(bound.address)}:${bound.port}/` }, 'admin endpoint listening');
  }

  /** The bound address (port 0 in the config picks a free one). */
  address(): AddressInfo | undefined {
    const address = this.started?.server.address();
    return typeof address === 'object' && address !== null ? address : undefined;
  }

  stop(): Promise<void> {
    return this.stopped.run();
  }

  private async doStop(): Promise<void> {
    const started = this.started;
    if (!started) return;
    started.stopping = true;
    const { context, server, wss, connections, services, rest, flushTimer, healthStream } = started;
    started.unsubscribePresence();
    healthStream.stop();
    services.console.health.stop();
    services.console.influxHistory?.stop();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of [...connections.values()]) connection.close(CloseCode.shuttingDown, 'server shutting down');
    server.closeAllConnections();
    wss.close();
    await closed;
    await rest.stop();
    clearInterval(flushTimer);
    services.pending.cancelAll('the admin endpoint stopped');
    await services.uploads.stop();
    context.broker.unregister(this.name);
    try {
      await services.fleet.flush();
    } catch (error) {
      context.logger.error({ err: error }, 'saving the fleet view failed');
    }
    this.started = undefined;
  }

  private handle(event: Accepted): void {
    const started = this.started;
    if (!started) return;
    switch (event.type) {
      case 'OtaCommandResult':
        // A link, unlink, new or removed image: the group membership cache asks again before its next use.
        started.services.console.membership.invalidate();
        this.settle(event);
        return;
      case 'OtaImageListResponse':
      case 'OtaGroupListResponse':
      case 'ApplicationManagementResponse':
      case 'CampaignCommandResult':
        this.settle(event);
        return;
      case 'ApplicationRequest':
        started.services.console.history.message(event.uid, event.target, event.payload, event.receivedAt);
        return;
      case 'DeviceConnected': {
        const device = started.services.fleet.apply(event);
        started.services.console.history.connected(
          event.uid,
          { connectedAt: event.at, remoteAddress: event.remoteAddress, authMethod: event.authMethod, clientId: event.clientId, ...(device.instance !== undefined ? { instance: device.instance } : {}) },
          event.certificate,
        );
        this.broadcast('device', 'device.connected', device, { at: event.at, remoteAddress: event.remoteAddress, authMethod: event.authMethod });
        return;
      }
      case 'DeviceDisconnected': {
        const device = started.services.fleet.apply(event);
        started.services.console.history.disconnected(event.uid, event.clientId, event.at, event.reason);
        this.broadcast('device', 'device.disconnected', device, { at: event.at, reason: event.reason });
        return;
      }
      case 'TelemetryReceived': {
        const device = started.services.fleet.apply(event);
        started.services.console.telemetry.record(event.uid, event.telemetry, event.receivedAt);
        if (event.telemetry.version !== undefined) started.services.console.history.firmware(event.uid, event.telemetry.version, event.receivedAt, 'telemetry');
        this.broadcast('telemetry', 'telemetry', device, { at: event.receivedAt, telemetry: event.telemetry });
        return;
      }
      case 'DeviceFirmwareUpdated': {
        const doneBefore = started.services.fleet.get(event.state.uid)?.ota?.doneAt;
        const device = started.services.fleet.apply(event);
        const { doneAt, doneImageId } = event.state;
        // A Done on an image is a firmware change the OTA runner saw; its other reports (progress) are not.
        if (doneAt !== undefined && doneImageId !== undefined && doneAt !== doneBefore) started.services.console.history.firmware(event.state.uid, doneImageId, Date.parse(doneAt), 'ota');
        this.broadcast('ota', 'ota.progress', device, { at: Date.now(), state: event.state });
        return;
      }
      case 'CampaignStateChanged':
        this.send('campaign', 'campaign.state', undefined, { at: event.at, campaign: event.campaign });
        return;
      case 'CampaignDeviceState':
        this.send('campaign', 'campaign.device', event.device.uid, { uid: event.device.uid, at: event.at, campaignId: event.campaignId, previous: event.previous, device: event.device });
        return;
      default:
        assertNever(event);
    }
  }

  private settle(event: EventOf<'OtaCommandResult' | 'OtaImageListResponse' | 'OtaGroupListResponse' | 'ApplicationManagementResponse' | 'CampaignCommandResult'>): void {
    const started = this.started;
    if (started && !started.services.pending.settle(event.correlationId, event)) {
      started.context.logger.debug({ event: event.type, correlationId: event.correlationId }, 'answer nobody waits for (timed out or client gone)');
    }
  }

  /** Sends a live device event to every subscriber. */
  private broadcast(kind: string, name: string, device: DeviceRecord, extra: Record<string, unknown>): void {
    this.send(kind, name, device.uid, { uid: device.uid, ...extra, device });
  }

  /** Sends a live event to every subscriber of its kind (and of its device, if it has one); each encoding is encoded once. */
  private send(kind: string, name: string, uid: string | undefined, data: Record<string, unknown>): void {
    const started = this.started;
    if (!started) return;
    const message = eventMessage(name, data);
    const frames: Partial<Record<Encoding, string | Buffer>> = {};
    for (const connection of started.connections.values()) {
      const subscription = connection.subscription;
      if (!subscription || !subscription.kinds.has(kind)) continue;
      // `uid` narrows device events; the instance's health is for every subscriber of it.
      if (subscription.uid !== undefined && subscription.uid !== uid && kind !== 'health') continue;
      const frame = (frames[subscription.encoding] ??= encodeMessage(message, subscription.encoding));
      connection.sendFrame(frame, name);
    }
  }

  private health(): Health {
    const started = this.started;
    const runners = started?.context.broker.stats() ?? [];
    // Degraded when stopping or when some runner cannot keep up (full inbox, producers waiting).
    const congested = runners.filter((r) => r.depth >= r.capacity || r.waiting > 0).map((r) => r.name);
    const checks = Object.fromEntries((this.options.healthChecks ?? []).map((c) => [c.name, c.check()]));
    const failing = Object.entries(checks)
      .filter(([, result]) => !result.ok)
      .map(([name]) => name);
    const status = started && !started.stopping && congested.length === 0 && failing.length === 0 ? 'ok' : 'degraded';
    return {
      status,
      ...(congested.length > 0 ? { congested } : {}),
      ...(failing.length > 0 ? { failing } : {}),
      ...(Object.keys(checks).length > 0 ? { checks } : {}),
      uptimeS: Math.round(process.uptime()),
      runners,
      adminClients: started?.connections.size ?? 0,
      devices: { online: started?.services.fleet.onlineCount ?? 0, known: started?.services.fleet.size ?? 0 },
    };
  }

  private flushFleet(): void {
    const started = this.started;
    started?.services.fleet.flush().catch((error: unknown) => started.context.logger.error({ err: error }, 'saving the fleet view failed; will retry'));
  }
}

/** The nucleon CLI says who it is (src/cli/admin-client.ts); anything else on the WebSocket is `ws`. */
function viaOf(request: IncomingMessage): AuditVia {
  return request.headers['x-nucleon-client'] === 'cli' ? 'cli' : 'ws';
}

function countUnauthenticated(connections: ReadonlyMap<string, AdminConnection>): number {
  let count = 0;
  for (const connection of connections.values()) if (!connection.authenticated) count++;
  return count;
}

function formatHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

