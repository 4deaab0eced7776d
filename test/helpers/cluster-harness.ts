// Cluster tests: a real redis-server and Nucleon instances as separate processes
// (test/helpers/cluster-instance.ts, or the built CLI), each on its own loopback ports.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { testClient } from './mqtt.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { deviceCredentials } from '../../src/devices/index.js';
import { RedisStore } from '../../src/store/index.js';
import { cliPath, freePort, repoRoot, startProcess, tempDir, waitFor, type RunningProcess } from './index.js';
import { startRedis, type RedisServer } from './redis.js';

export const API_KEY = 'cluster-test-admin-key-0123456789';
export const PRESENCE_TTL_S = 3;

export interface Cluster {
  redis: RedisServer;
  dir: string;
  /** The shared store, as every instance sees it. */
  store: RedisStore;
}

export interface Instance {
  name: string;
  proc: RunningProcess;
  mqttPort: number;
  adminPort: number;
  httpPort: number;
  admin(): Promise<AdminClient>;
}

export async function startCluster(t: TestContext): Promise<Cluster | undefined> {
  const redis = await startRedis(t);
  if (!redis) return undefined;
  const dir = await tempDir(t, 'nucleon-cluster-');
  const store = new RedisStore(redis.url, 'nucleon:');
  // Outage tests stop Redis on purpose; this connection's reconnect errors are expected then.
  store.client.on('error', () => undefined);
  await store.open();
  t.after(() => store.close());
  return { redis, dir, store };
}

/** Adds an MQTT password for a device in the shared store (any instance accepts it). */
export async function addDevice(cluster: Cluster, uid: string): Promise<string> {
  return deviceCredentials(cluster.store).add(uid, `pw-${uid}-0123456789`);
}

/**
 * Starts one instance: plain MQTT on loopback (password logins), OTA HTTP
 * without TLS, admin with a fixed key, `[cluster]` on the test's Redis.
 * `via: 'cli'` runs `node dist/cli.js serve` (no app runner; `npm run build` first).
 * `campaignLeaseMs` sets `[cluster] campaign_lease_ms` (10 s by default).
 */
export async function startInstance(t: TestContext, cluster: Cluster, name: string, options: { via?: 'app' | 'cli'; campaignLeaseMs?: number } = {}): Promise<Instance> {
  const [mqttPort, adminPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const file = path.join(cluster.dir, `${name}.toml`);
  const lines = [
    '[log]',
    'format = "json"',
    '[store]',
    `path = "data-${name}"`,
    '[certs]',
    `dir = "certs-${name}"`,
    '[mqtt.tls]',
    'enabled = false',
    '[mqtt.tcp]',
    'enabled = true',
    'host = "127.0.0.1"',
    `port = ${mqttPort}`,
    '[ota.http]',
    'host = "127.0.0.1"',
    `port = ${httpPort}`,
    'tls = false',
    '[admin]',
    'host = "127.0.0.1"',
    `port = ${adminPort}`,
    `api_key = "${API_KEY}"`,
    '[cluster]',
    `redis_url = "${cluster.redis.url}"`,
    `presence_ttl_s = ${PRESENCE_TTL_S}`,
    ...(options.campaignLeaseMs === undefined ? [] : [`campaign_lease_ms = ${options.campaignLeaseMs}`]),
  ];
  await writeFile(file, `${lines.join('\n')}\n`);
  const args = options.via === 'cli' ? [cliPath, 'serve', '--config', file] : ['--import', 'tsx', path.join(repoRoot, 'test/helpers/cluster-instance.ts'), file];
  const proc = startProcess(t, process.execPath, args);
  // NUCLEON_TEST_LOGS=1 prints each instance's log after its test (for debugging a failure).
  if (process.env.NUCLEON_TEST_LOGS === '1') t.after(() => process.stderr.write(`\n----- instance ${name} -----\n${proc.output()}\n`));
  const ready = options.via === 'cli' ? '"msg":"nucleon started"' : '"msg":"cluster instance ready"';
  await waitFor(() => proc.output().includes(ready) || proc.child.exitCode !== null, `instance ${name} to start`, 30_000);
  if (proc.child.exitCode !== null) throw new Error(`instance ${name} exited: ${proc.output()}`);
  const instance: Instance = {
    name,
    proc,
    mqttPort,
    adminPort,
    httpPort,
    admin: async () => {
      const client = await AdminClient.connect(`ws://127.0.0.1:${adminPort}/ws`, API_KEY);
      t.after(() => client.close());
      return client;
    },
  };
  return instance;
}

/** A device over plain MQTT with its password; never reconnects by itself; ended after the test. */
export async function device(t: TestContext, instance: { mqttPort: number }, uid: string, options: IClientOptions = {}): Promise<MqttClient> {
  return testClient(t, `mqtt://127.0.0.1:${instance.mqttPort}`, { clientId: uid, username: uid, password: `pw-${uid}-0123456789`, ...options });
}

/** Collects messages a client receives, by topic. */
export function inbox(client: MqttClient): { messages: { topic: string; payload: Buffer }[] } {
  const box = { messages: [] as { topic: string; payload: Buffer }[] };
  client.on('message', (topic, payload) => box.messages.push({ topic, payload }));
  return box;
}

export async function appCounts(admin: AdminClient): Promise<{ total: number; distinct: number; duplicates: number; byUid: Record<string, number> }> {
  const answer = await admin.request<{ payload: { total: number; distinct: number; duplicates: number; byUid: Record<string, number> } }>('app.request', { target: 'counts', payload: null });
  return answer.payload;
}

export interface ListedDevice {
  uid: string;
  online: boolean;
  instance?: string;
}

export async function listDevices(admin: AdminClient): Promise<ListedDevice[]> {
  const answer = await admin.request<{ devices: ListedDevice[] }>('devices.list', {});
  return answer.devices;
}

export { waitFor };
