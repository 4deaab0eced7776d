import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppStats, RespondArgs, RespondResult, StatsOptions } from '../lib/app-counter.js';
import type { BenchCerts } from '../lib/certs.js';
import { RpcChild } from '../lib/ipc.js';
import { freePort, waitForPort } from '../lib/net.js';
import type { TargetName } from '../lib/report.js';

/**
 * A broker under test as the scenarios see it: where to connect, which PIDs to
 * meter, and its application (counting deliveries, sending responses).
 */
export interface Target {
  name: TargetName;
  port: number;
  brokerPid: number;
  /** The application's own process when it is not inside the broker (Mosquitto). */
  appPid: number | undefined;
  /** Nucleon with workers: the worker processes (`brokerPid` is their primary); empty otherwise. */
  workerPids: number[];
  /** The app's counts; `latency: false` skips the percentiles (for polling). */
  stats(options?: StatsOptions): Promise<AppStats>;
  reset(): Promise<void>;
  respond(args: RespondArgs): Promise<RespondResult>;
  /** Full GC in the broker when it has one (before memory readings). */
  gc(): Promise<void>;
  alive(): boolean;
  /** Why the broker exited, when it did. */
  exitReason(): string | undefined;
  /** The last output (logs) of the broker and its app, for diagnosis. */
  output(): string;
  /** A broker-specific command (Nucleon: `otaAddImage`); rejects where the broker has none. */
  command<T>(cmd: string, args: unknown, timeoutMs?: number): Promise<T>;
  /** Nucleon with OTA over HTTPS: the download listener's port. */
  otaHttpPort: number | undefined;
  stop(): Promise<void>;
}

export interface TargetOptions {
  workDir: string;
  certs: BenchCerts;
  /** Extra Node flags for the broker process (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** Nucleon only: enable the OTA HTTPS listener on this port. */
  otaHttpPort?: number;
  /** Nucleon only: the [influx] section. */
  influx?: Record<string, unknown>;
  /**
   * Nucleon only: run with `runWorkers` and this many worker processes (in
   * cluster mode on `redisUrl`, which is then required); 0 or unset: one
   * process without Redis, the default.
   */
  workers?: number;
  redisUrl?: string;
  /** Nucleon only: `[ingest] durability` (default "fsync"). */
  durability?: 'fsync' | 'write' | 'memory';
  /**
   * Baselines only: false starts aedes without its in-process `+/app/p/#`
   * subscriber and Mosquitto without its subscriber process (scenario 10
   * brings its own subscriber, which would otherwise get every message
   * twice). Nucleon keeps its app runner: the ingest log feeds it whatever
   * else subscribes.
   */
  app?: boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const servers = path.join(here, '..', 'servers');
const distDir = path.join(here, '..', '..', 'dist');

/** Why Nucleon cannot run yet (its MQTT runner is not built), or undefined. */
export function nucleonUnavailable(): string | undefined {
  if (!existsSync(path.join(distDir, 'index.js'))) return 'dist/ missing (npm run build)';
  if (!existsSync(path.join(distDir, 'mqtt'))) return 'the MQTT runner (src/mqtt) is not built into dist/ yet';
  return undefined;
}

export function mosquittoUnavailable(): string | undefined {
  return existsSync(MOSQUITTO) ? undefined : `${MOSQUITTO} not installed (apt-get install -y mosquitto)`;
}

export const MOSQUITTO = '/usr/sbin/mosquitto';

function childExitReason(child: RpcChild): string | undefined {
  if (child.alive) return undefined;
  return `exited with code ${child.child.exitCode} signal ${child.child.signalCode}; output tail: ${child.output().slice(-2000)}`;
}

/** A Node broker process whose application answers over IPC (Nucleon, aedes). */
function inProcessTarget(name: TargetName, server: RpcChild, port: number, otaHttpPort?: number, workerPids: number[] = []): Target {
  return {
    name,
    port,
    workerPids,
    otaHttpPort,
    command: (cmd, args, timeoutMs) => server.call(cmd, args, timeoutMs),
    brokerPid: server.pid,
    appPid: undefined,
    stats: (options = {}) => server.call<AppStats>('stats', options),
    reset: () => server.call<void>('reset'),
    respond: (args) => server.call<RespondResult>('respond', args, 600_000),
    gc: () => server.call<void>('gc'),
    alive: () => server.alive,
    exitReason: () => childExitReason(server),
    output: () => server.output(),
    stop: () => server.stop(15_000),
  };
}

/** A whole number of ms from the environment variable `name`, for an A/B of an ingest setting (unset: Nucleon's default). */
function ingestMsFromEnv<K extends string>(name: string, key: K): Partial<Record<K, number>> {
  const text = process.env[name];
  if (text === undefined || text === '') return {};
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 0) throw new Error(`${name} must be a whole number of ms, got ${JSON.stringify(text)}`);
  return { [key]: ms } as Partial<Record<K, number>>;
}

/** BENCH_NUCLEON_COMMIT_SPACING_MS and BENCH_NUCLEON_QOS0_COMMIT_DELAY_MS: `[ingest]` settings for A/B runs. */
function ingestTuning(): { commit_spacing_ms?: number; qos0_commit_delay_ms?: number } {
  return { ...ingestMsFromEnv('BENCH_NUCLEON_COMMIT_SPACING_MS', 'commit_spacing_ms'), ...ingestMsFromEnv('BENCH_NUCLEON_QOS0_COMMIT_DELAY_MS', 'qos0_commit_delay_ms') };
}

/** Extra Node flags for the Nucleon process only, for A/B measurements (e.g. GC settings): BENCH_NUCLEON_NODE_FLAGS="--a --b". */
function extraNucleonFlags(): string[] {
  return (process.env.BENCH_NUCLEON_NODE_FLAGS ?? '').split(' ').filter(Boolean);
}

export async function startNucleon(options: TargetOptions): Promise<Target> {
  const workers = options.workers ?? 0;
  if (workers > 0 && !options.redisUrl) throw new Error('Nucleon with workers needs a Redis (redisUrl)');
  const port = await freePort();
  const dir = path.join(options.workDir, `nucleon-${port}`);
  await mkdir(dir, { recursive: true });
  const config = {
    log: { level: 'warn', format: 'json' },
    store: { path: path.join(dir, 'store') },
    certs: { dir: options.certs.dir, auto_generate: false },
    mqtt: {
      tls: { enabled: true, host: '127.0.0.1', port },
      // Anonymous devices: the client id is the uid. The baselines run without auth too.
      auth: { anonymous: true, client_certificates: false, passwords: false },
      // The defaults (500/s, 1024 per address) protect a production host; scenario 5 measures the raw
      // connect rate of 10,000 devices, all from 127.0.0.1.
      limits: { connections_per_second: 1_000_000, connections_per_address: 0 },
    },
    ota: { http: { enabled: options.otaHttpPort !== undefined, host: '127.0.0.1', port: options.otaHttpPort ?? 0, tls: true, connections_per_address: 0 } },
    admin: { enabled: false },
    ingest: { durability: options.durability ?? 'fsync', ...ingestTuning() },
    ...(options.influx ? { influx: options.influx } : {}),
    ...(workers > 0 ? { cluster: { redis_url: options.redisUrl } } : {}),
  };
  const server = new RpcChild('nucleon', path.join(servers, 'nucleon-server.ts'), [JSON.stringify(config), String(workers)], {
    nodeFlags: ['--expose-gc', ...extraNucleonFlags(), ...(options.nodeFlags ?? [])],
    cwd: dir,
  });
  const ready = await server.waitFor<{ workerPids: number[] }>('ready', 60_000);
  const name: TargetName = options.durability === 'write' ? 'nucleon-write' : options.durability === 'memory' ? 'nucleon-memory' : 'nucleon';
  return inProcessTarget(name, server, port, options.otaHttpPort, ready.workerPids);
}

export async function startAedes(options: TargetOptions): Promise<Target> {
  const port = await freePort();
  const server = new RpcChild('aedes', path.join(servers, 'aedes-server.ts'), [String(port), options.certs.serverCert, options.certs.serverKey, options.app === false ? 'no-app' : 'app'], {
    nodeFlags: ['--expose-gc', ...(options.nodeFlags ?? [])],
  });
  await server.waitFor('ready', 60_000);
  return inProcessTarget('aedes', server, port);
}

/**
 * A Node floor with no broker, its own process on the brokers' certificate:
 * `node-tls` (scenario 5: answers CONNECT and holds the socket) or
 * `node-relay` (scenarios 10 and 11: frames MQTT packets and forwards each
 * PUBLISH to the subscriber).
 */
async function startNodeFloor(name: 'node-tls' | 'node-relay', script: string, options: TargetOptions): Promise<Target> {
  const port = await freePort();
  const server = new RpcChild(name, path.join(servers, script), [String(port), options.certs.serverCert, options.certs.serverKey], {
    nodeFlags: ['--expose-gc', ...(options.nodeFlags ?? [])],
  });
  await server.waitFor('ready', 60_000);
  return inProcessTarget(name, server, port);
}

/** The generated Mosquitto config: TLS listener, anonymous, no persistence, queues large enough not to drop. */
export function mosquittoConfig(port: number, certs: BenchCerts): string {
  return [
    'per_listener_settings false',
    'allow_anonymous true',
    'persistence false',
    // A slow subscriber must not lose QoS 1 messages: queue (nearly) without bound.
    'max_queued_messages 10000000',
    'max_queued_bytes 0',
    // Messages in flight per client before queueing (the default is 20).
    'max_inflight_messages 100',
    // set_tcp_nodelay stays at Mosquitto's default (off): on, every PUBACK goes out in its
    // own TLS record and Mosquitto spent ~40% more CPU per message in our trials.
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    // Runs as the invoking user rather than dropping to "mosquitto", so it can read the temp certs.
    'user root',
    `listener ${port} 127.0.0.1`,
    `certfile ${certs.serverCert}`,
    `keyfile ${certs.serverKey}`,
    '',
  ].join('\n');
}

export async function startMosquitto(options: TargetOptions): Promise<Target> {
  const port = await freePort();
  const confPath = path.join(options.workDir, `mosquitto-${port}.conf`);
  await writeFile(confPath, mosquittoConfig(port, options.certs));
  const broker: ChildProcess = spawn(MOSQUITTO, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  broker.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => broker.once('exit', () => resolve()));
  const brokerAlive = () => broker.exitCode === null && broker.signalCode === null;
  const kill = async () => {
    if (!brokerAlive()) return;
    broker.kill('SIGTERM');
    const timer = setTimeout(() => broker.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  let app: RpcChild | undefined;
  try {
    await waitForPort(port, 10_000, brokerAlive);
    if (broker.pid === undefined) throw new Error('mosquitto has no pid');
    if (options.app !== false) {
      app = new RpcChild('mosquitto-app', path.join(servers, 'subscriber-app.ts'), ['127.0.0.1', String(port)]);
      await app.waitFor('ready', 30_000);
    }
  } catch (error) {
    await app?.stop();
    await kill();
    throw new Error(`mosquitto did not start: ${error instanceof Error ? error.message : String(error)}; stderr: ${tail}`, { cause: error });
  }
  const subscriber = app;
  const brokerPid = broker.pid;
  const noApp = () => Promise.reject(new Error('mosquitto was started without its subscriber app'));
  return {
    name: 'mosquitto',
    port,
    brokerPid,
    appPid: subscriber?.pid,
    workerPids: [],
    stats: (statsOptions = {}) => subscriber?.call<AppStats>('stats', statsOptions) ?? noApp(),
    reset: () => subscriber?.call<void>('reset') ?? noApp(),
    respond: (args) => subscriber?.call<RespondResult>('respond', args, 600_000) ?? noApp(),
    gc: async () => undefined,
    otaHttpPort: undefined,
    command: (cmd) => Promise.reject(new Error(`mosquitto has no "${cmd}"`)),
    alive: () => brokerAlive() && (subscriber?.alive ?? true),
    exitReason: () => (brokerAlive() ? (subscriber ? childExitReason(subscriber) : undefined) : `mosquitto exited (code ${broker.exitCode}, signal ${broker.signalCode}): ${tail}`),
    output: () => `${tail}\n${subscriber?.output() ?? ''}`,
    stop: async () => {
      await subscriber?.stop();
      await kill();
    },
  };
}

export const STARTERS: Record<TargetName, (options: TargetOptions) => Promise<Target>> = {
  nucleon: startNucleon,
  'nucleon-write': (options) => startNucleon({ ...options, durability: 'write' }),
  'nucleon-memory': (options) => startNucleon({ ...options, durability: 'memory' }),
  aedes: startAedes,
  mosquitto: startMosquitto,
  'node-tls': (options) => startNodeFloor('node-tls', 'tls-server.ts', options),
  'node-relay': (options) => startNodeFloor('node-relay', 'relay-server.ts', options),
};
