import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppStats, StatsOptions } from '../lib/app-counter.js';
import { RpcChild } from '../lib/ipc.js';
import type { SubscriberOptions } from '../servers/subscriber-app.js';
import type { TargetName } from '../lib/report.js';
import type { Target } from '../targets/index.js';
import { deviceIds, type ScenarioContext } from './context.js';

/**
 * The subscriber path of issue 16 (scenarios 10 and 11): 64 devices publish on
 * `<uid>/app/p/data` and one separate MQTT subscriber process on `+/app/p/#`
 * (QoS 1) receives every message. The subscriber is the same process for every
 * broker (bench/servers/subscriber-app.ts), so the broker's CPU is metered
 * alone; the baselines run without their own bench application (start them
 * with `app: false`), which would get every message twice.
 */
export const SUBSCRIBER_PATH_DEVICES = 64;
export const SUBSCRIBER_PATH_PAYLOAD = 64;
/** The brokers of the subscriber path, and its floor: Node's TLS relaying MQTT with no broker (asked for by name, see ON_REQUEST_NAMES). */
export const SUBSCRIBER_PATH_TARGETS: TargetName[] = ['nucleon', 'aedes', 'mosquitto', 'node-relay'];
export const RELAY_FLOOR_NOTE =
  'Node TLS relay (no broker) is bench/servers/relay-server.ts: one Node process that frames MQTT packets by their fixed header, answers CONNECT and SUBSCRIBE, and forwards each PUBLISH to the subscribed connection (QoS 1: PUBACK to the device at once, its own packet id toward the subscriber), writes coalesced per event-loop turn as in Nucleon; no topic matching, sessions, queues or flow control. What it costs is what Node\'s TLS, sockets and event loop cost on this path: the floor for any broker on Node.';
const SERVICE = { name: 'bench-sub', password: 'bench-subscriber-password-1234567890' };
const SUBSCRIBER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'servers', 'subscriber-app.ts');
const GROUP = 'subscribers';

export type Subscriber = RpcChild & { stats(options?: StatsOptions): Promise<AppStats & { closedReason?: string }> };

/** The MQTT subscriber process, logged in as the service account (Nucleon) or anonymously with the same names (baselines). */
async function startSubscriber(target: Target, persistent: boolean): Promise<Subscriber> {
  const login = `svc:${SERVICE.name}`;
  const options: SubscriberOptions = { clientId: login, username: login, password: SERVICE.password, clean: !persistent, filter: '+/app/p/#' };
  const child = new RpcChild(`subscriber-${target.name}`, SUBSCRIBER_SCRIPT, ['127.0.0.1', String(target.port), JSON.stringify(options)]);
  try {
    await child.waitFor('ready', 30_000);
  } catch (error) {
    await child.stop();
    throw error;
  }
  return Object.assign(child, { stats: (statsOptions: StatsOptions = {}) => child.call<AppStats & { closedReason?: string }>('stats', statsOptions) });
}

/**
 * Gives `run` a subscriber (Nucleon: the service account `svc:bench-sub`) and
 * 64 connected devices in the load generator group it names; closes both
 * afterwards, whatever `run` did.
 */
export async function withSubscriberPath<T>(
  context: ScenarioContext,
  target: Target,
  persistent: boolean,
  run: (subscriber: Subscriber, group: string) => Promise<T>,
): Promise<T> {
  if (target.name.startsWith('nucleon')) await target.command('addServiceAccount', SERVICE);
  const subscriber = await startSubscriber(target, persistent);
  try {
    const connected = await context.gen.connect({ group: GROUP, host: '127.0.0.1', port: target.port, uids: deviceIds('dev', SUBSCRIBER_PATH_DEVICES), keepalive: 600, concurrency: 16, timeoutMs: 20_000 });
    if (connected.connected !== SUBSCRIBER_PATH_DEVICES) throw new Error(`only ${connected.connected} of ${SUBSCRIBER_PATH_DEVICES} devices connected: ${connected.errors.join('; ')}`);
    return await run(subscriber, GROUP);
  } finally {
    await context.gen.close(GROUP);
    await subscriber.stop();
  }
}

/** After a measured run: a subscriber whose connection ended or a dead broker makes the figures meaningless. */
export async function checkSubscriberPath(subscriber: Subscriber, target: Target): Promise<void> {
  const closed = (await subscriber.stats({ latency: false })).closedReason;
  if (closed) throw new Error(`the subscriber's connection ended: ${closed}`);
  if (!target.alive()) throw new Error(`broker died: ${target.exitReason() ?? 'unknown'}`);
}
