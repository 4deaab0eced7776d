import { AdminRunner, type MetricsExposition } from './admin/index.js';
import { EventBroker } from './broker/index.js';
import { validateConfig, type Config, type ConfigInput } from './config/index.js';
import type { Logger } from './logger.js';
import { createLogger } from './logger.js';
import { createMetricsRegistry } from './metrics.js';
import type { Runner, RunnerContext } from './runner.js';
import { LevelStore, type KvStore } from './store/index.js';
import { otaRunners } from './ota/index.js';
import { CampaignRunner } from './campaigns/index.js';
import { RecentTelemetryRunner } from './telemetry/index.js';
import { InfluxRunner } from './influx/index.js';
import { embeddedSessions, MqttRunner, mqttListens, redisSessions } from './mqtt/index.js';
import { ClusterServices } from './cluster/index.js';
import { IngestLog } from './ingest/index.js';
import { LocalPresence, newInstanceId, type Presence, type PresenceService } from './presence/index.js';
import { Once } from './util/once.js';
import { TelemetryFields } from './protocol/index.js';
import { LocalChannel, RedisChannel, RevocationService } from './revocation/index.js';
import path from 'node:path';
import type { Registry } from 'prom-client';

export interface NucleonOptions {
  logger?: Logger;
  /** Replaces the embedded store (tests, or a custom backend). */
  store?: KvStore;
  /** Collect Node.js process metrics (off for several instances in one process). */
  processMetrics?: boolean;
  /** Where relative paths in a config object passed in code are resolved; cwd by default. */
  baseDir?: string;
  /** This instance's id in presence (`newInstanceId()` by default; a worker of `serve --workers` names its slot). */
  instanceId?: string;
  /**
   * What the admin endpoint's `/metrics` serves; this instance's registry by
   * default. A worker of `serve --workers` serves every worker's (src/workers/metrics.ts).
   */
  exposition?: MetricsExposition;
}

/**
 * The runners Nucleon brings, in start order. Each issue's runner is added here.
 * In cluster mode the same runners get Redis-backed parts (src/cluster).
 */
function builtinRunners(
  config: Readonly<Config>,
  cluster: ClusterServices | undefined,
  shared: { presence: PresenceService; revocations: RevocationService },
  exposition: MetricsExposition | undefined,
  logger: Logger,
): Runner[] {
  const { presence, revocations } = shared;
  const backend = cluster ? redisSessions({ url: cluster.url, namespace: cluster.namespace, connections: cluster.health }) : embeddedSessions;
  const mqtt = new MqttRunner({ backend, presence, revocations });
  const ota = cluster && config.ota.enabled ? { blobs: cluster.blobStore(), budgetBuckets: cluster.budgetBuckets() } : {};
  const admin = new AdminRunner({
    revocations,
    ...(cluster ? { healthChecks: [{ name: 'redis', check: () => cluster.health.report() }] } : {}),
    ...(exposition ? { exposition } : {}),
  });
  return [
    ...(mqttListens(config) ? [mqtt] : []),
    ...otaRunners(config, ota, revocations),
    // Campaigns notify through the OTA runner. In a cluster the holder of a Redis lease drives them; the others forward their devices' events.
    ...(config.ota.enabled ? [new CampaignRunner(cluster ? { cluster: cluster.campaignDriving(logger.child({ component: 'campaigns-lease' })) } : {})] : []),
    ...telemetryRunners(config),
    ...(config.admin.enabled ? [admin] : []),
  ];
}

/** Where device telemetry goes: InfluxDB when `[influx]` is present, else the embedded keeper (unless N is 0). */
function telemetryRunners(config: Readonly<Config>): Runner[] {
  if (config.influx) return [new InfluxRunner()];
  if (config.telemetry.recent_per_device > 0) return [new RecentTelemetryRunner()];
  return [];
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * One Nucleon instance: store, presence, broker and runners. Start order is
 * store, ingest log, presence, broker, the runners that do not listen
 * (built-in, then added ones), then the listeners; stop runs the other way
 * round, draining the broker after the listeners close.
 */
export class Nucleon implements AsyncDisposable {
  readonly config: Readonly<Config>;
  readonly logger: Logger;
  readonly metrics: Registry;
  readonly broker: EventBroker;
  readonly store: KvStore;
  /** The durable ingest log; undefined with `[ingest] durability = "memory"`. */
  readonly ingestLog: IngestLog | undefined;
  /** Cluster mode (`[cluster]`): the Redis-backed parts; undefined for a standalone instance. */
  readonly cluster: ClusterServices | undefined;
  /** Who is online; the MQTT gateway writes it, runners read it through their context. */
  readonly presence: Presence;
  /** Revoked devices and certificates (README "Revocation"): checked by the MQTT gateway, changed by the admin commands or library code. */
  readonly revocations: RevocationService;
  private readonly presenceService: PresenceService;
  private readonly runners: Runner[];
  private readonly started: Runner[] = [];
  private state: State = 'new';
  private readonly stopping = new Once(() => this.doStop());

  constructor(config: Readonly<Config>, options: NucleonOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger({ level: config.log.level, format: config.log.format });
    this.metrics = createMetricsRegistry({ defaultMetrics: options.processMetrics ?? false });
    const ingest = config.ingest;
    this.ingestLog =
      ingest.durability === 'memory'
        ? undefined
        : new IngestLog({
            dir: ingest.dir === '' ? path.join(config.store.path, 'ingest') : ingest.dir,
            durability: ingest.durability,
            maxBytes: ingest.max_bytes,
            segmentBytes: ingest.segment_bytes,
            commitSpacingMs: ingest.commit_spacing_ms,
            qos0CommitDelayMs: ingest.qos0_commit_delay_ms,
            logger: this.logger.child({ component: 'ingest' }),
            metrics: this.metrics,
          });
    this.broker = new EventBroker({
      inboxSize: config.broker.inbox_size,
      maxWaiters: config.broker.max_waiters,
      logger: this.logger.child({ component: 'broker' }),
      metrics: this.metrics,
      ...(this.ingestLog ? { log: this.ingestLog } : {}),
      telemetryFields: new TelemetryFields(config.telemetry.fields),
    });
    const instanceId = options.instanceId ?? newInstanceId();
    this.cluster = config.cluster ? new ClusterServices(config.cluster, this.logger, this.metrics, instanceId) : undefined;
    this.store = options.store ?? this.cluster?.store ?? new LevelStore(path.join(config.store.path, 'kv'));
    // One presence per instance: shared through Redis in cluster mode, else in memory.
    const presenceLogger = this.logger.child({ component: 'presence' });
    this.presenceService = this.cluster?.presence(presenceLogger) ?? new LocalPresence(instanceId, presenceLogger);
    this.presence = this.presenceService;
    const revocationLogger = this.logger.child({ component: 'revocations' });
    const channel = this.cluster ? new RedisChannel(this.cluster.url, `${this.cluster.namespace}revocations:changes`, this.cluster.health, revocationLogger) : new LocalChannel();
    this.revocations = new RevocationService(this.store, channel, revocationLogger);
    this.runners = builtinRunners(config, this.cluster, { presence: this.presenceService, revocations: this.revocations }, options.exposition, this.logger);
  }

  /** Adds a runner (such as the application's). After `start()` it starts at once. */
  async addRunner(runner: Runner): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') throw new Error('cannot add a runner to a stopped Nucleon');
    if (this.runners.some((r) => r.name === runner.name)) throw new Error(`a runner named "${runner.name}" was already added`);
    this.runners.push(runner);
    if (this.state === 'running') await this.startRunner(runner);
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`Nucleon cannot start from state "${this.state}"`);
    this.state = 'starting';
    try {
      await this.store.open();
      await this.ingestLog?.open();
      await this.presenceService.start();
      await this.revocations.start();
      this.broker.start();
      const ordered = [...this.runners.filter((r) => !r.listens), ...this.runners.filter((r) => r.listens)];
      for (const runner of ordered) await this.startRunner(runner);
      this.state = 'running';
      this.logger.info({ runners: this.started.map((r) => r.name) }, 'nucleon started');
    } catch (error) {
      // Undo what did start so a failed start leaves no socket or file open.
      await this.stop();
      throw error;
    }
  }

  /** Stops everything in reverse start order. Safe to call more than once. */
  stop(): Promise<void> {
    return this.stopping.run();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** A built-in or added runner by name, so library code can call its typed API (e.g. the OTA runner's). */
  runner(name: string): Runner | undefined {
    return this.runners.find((r) => r.name === name);
  }

  private async startRunner(runner: Runner): Promise<void> {
    const context: RunnerContext = {
      config: this.config,
      broker: this.broker,
      logger: this.logger.child({ runner: runner.name }),
      metrics: this.metrics,
      store: this.store,
      presence: this.presence,
    };
    await runner.start(context);
    this.started.push(runner);
  }

  private async doStop(): Promise<void> {
    this.state = 'stopping';
    const timeoutMs = this.config.broker.stop_timeout_ms;
    const reversed = [...this.started].reverse();
    const listeners = reversed.filter((r) => r.listens);
    const workers = reversed.filter((r) => !r.listens);
    // Answers already on their way to devices and admin clients go out first.
    await this.broker.drain(timeoutMs);
    for (const runner of listeners) await this.stopRunner(runner);
    // Events already accepted from devices are handled before the workers go.
    await this.broker.drain(timeoutMs);
    for (const runner of workers) await this.stopRunner(runner);
    await this.broker.stop(timeoutMs);
    try {
      // After the MQTT runner, so its goodbyes are written (cluster mode).
      await this.presenceService.stop();
    } catch (error) {
      this.logger.error({ err: error }, 'stopping presence failed');
    }
    try {
      await this.revocations.stop();
    } catch (error) {
      this.logger.error({ err: error }, 'stopping the revocation list failed');
    }
    try {
      await this.ingestLog?.close(timeoutMs);
    } catch (error) {
      this.logger.error({ err: error }, 'closing the ingest log failed');
    }
    try {
      await this.store.close();
    } catch (error) {
      this.logger.error({ err: error }, 'closing the store failed');
    }
    this.started.length = 0;
    this.state = 'stopped';
    this.logger.info('nucleon stopped');
  }

  private async stopRunner(runner: Runner): Promise<void> {
    try {
      await runner.stop();
      this.logger.info({ runner: runner.name }, 'runner stopped');
    } catch (error) {
      this.logger.error({ err: error, runner: runner.name }, 'runner failed to stop cleanly');
    }
  }
}

/** The library entry point: validate the config (defaults fill gaps) and build an instance. */
export function createNucleon(config: ConfigInput | Readonly<Config> = {}, options: NucleonOptions = {}): Nucleon {
  const validated = validateConfig(config, { baseDir: options.baseDir ?? process.cwd() });
  return new Nucleon(validated, options);
}
