// `nucleon serve --workers 2` (README "Workers"): two cluster-mode workers behind
// the primary's shared sockets, on a real redis-server. 16 devices spread over
// both workers (known from presence: each worker's instance id names its slot);
// a server publish (an OTA link pushing the package) reaches a device on each
// worker; /metrics carries both workers' series. Then kill -9 of one worker under
// QoS 1 telemetry load from every device: every PUBACKed point is recorded (the
// durable ingest log of the killed worker is replayed by its restarted successor
// to the recent-telemetry runner, which writes to Redis), the other worker's
// devices see no disconnect, and the primary restarts the killed worker. Last,
// SIGTERM: the primary stops both workers and exits 0, leaving no process behind.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { encode } from 'cbor-x';
import type { MqttClient } from 'mqtt';
import { RecentTelemetry } from '../../src/telemetry/recent.js';
import { API_KEY, inbox, listDevices, PRESENCE_TTL_S, startCluster, type Cluster } from '../helpers/cluster-harness.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { cliPath, freePort, startProcess, waitFor, type RunningProcess } from '../helpers/index.js';
import { testClient } from '../helpers/mqtt.js';

const DEVICES = 16;
const IMAGE_ID = '3.1.0-1-gabcdef1';
/** Acknowledged points before the kill, and after it on the surviving worker. */
const LOAD_BEFORE = 400;
const LOAD_AFTER = 200;

interface Ports {
  mqtt: number;
  tls: number;
  admin: number;
  http: number;
}

async function writeConfig(cluster: Cluster, ports: Ports): Promise<string> {
  const file = path.join(cluster.dir, 'workers.toml');
  const lines = [
    '[log]',
    'format = "json"',
    '[store]',
    'path = "data"',
    '[certs]',
    'dir = "certs"',
    // TLS on, unused by the devices: the certificates must come from the primary, once.
    '[mqtt.tls]',
    'host = "127.0.0.1"',
    `port = ${ports.tls}`,
    '[mqtt.tcp]',
    'enabled = true',
    'host = "127.0.0.1"',
    `port = ${ports.mqtt}`,
    '[mqtt.auth]',
    'anonymous = true',
    '[ota.http]',
    'host = "127.0.0.1"',
    `port = ${ports.http}`,
    'tls = false',
    '[telemetry]',
    // Every point kept, so every acknowledged one can be looked for.
    'recent_per_device = 100000',
    '[admin]',
    'host = "127.0.0.1"',
    `port = ${ports.admin}`,
    `api_key = "${API_KEY}"`,
    '[cluster]',
    `redis_url = "${cluster.redis.url}"`,
    `presence_ttl_s = ${PRESENCE_TTL_S}`,
  ];
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** The primary's `worker ready` log lines: slot → pid of its newest worker, and how many times each slot became ready. */
function readyWorkers(proc: RunningProcess): { pids: Map<number, number>; readyCount: Map<number, number> } {
  const pids = new Map<number, number>();
  const readyCount = new Map<number, number>();
  for (const line of proc.output().split('\n')) {
    if (!line.includes('"msg":"worker ready"')) continue;
    const entry = JSON.parse(line) as { worker: number; pid: number };
    pids.set(entry.worker, entry.pid);
    readyCount.set(entry.worker, (readyCount.get(entry.worker) ?? 0) + 1);
  }
  return { pids, readyCount };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** The slot in an instance id `<host>-w<slot>-<pid>-<random>`. */
function slotOf(instance: string | undefined): number | undefined {
  const match = /-w(\d+)-\d+-[0-9a-f]+$/.exec(instance ?? '');
  return match ? Number(match[1]) : undefined;
}

/** Publishes telemetry at QoS 1 (rsrp = a counter) one at a time until stopped or cut off; records what was PUBACKed. */
class Load {
  readonly acked = new Set<string>();
  private running = true;
  private counter = 0;
  private readonly loops: Promise<void>[];

  constructor(clients: Map<string, MqttClient>) {
    this.loops = [...clients].map(([uid, client]) => this.loop(uid, client));
  }

  private async loop(uid: string, client: MqttClient): Promise<void> {
    // A publish cut off by the kill never settles (mqtt.js keeps it for a reconnect that never comes).
    const closed = new Promise<false>((resolve) => client.once('close', () => resolve(false)));
    while (this.running && client.connected) {
      const n = ++this.counter;
      const payload = Buffer.from(encode(new Map<number, number>([[1, n]])));
      const ok = await Promise.race([client.publishAsync(`${uid}/tel/p`, payload, { qos: 1 }).then(() => true, () => false), closed]);
      if (!ok) return;
      this.acked.add(`${uid}:${n}`);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

test('serve --workers 2: devices on both workers, server publishes reach either, kill -9 of one loses no acknowledged message and leaves the other’s devices connected', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  const ports: Ports = { mqtt: await freePort(), tls: await freePort(), admin: await freePort(), http: await freePort() };
  const file = await writeConfig(cluster, ports);
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file, '--workers', '2']);
  if (process.env.NUCLEON_TEST_LOGS === '1') t.after(() => process.stderr.write(`\n----- serve --workers 2 -----\n${proc.output()}\n`));
  await waitFor(() => proc.output().includes('"msg":"all workers ready"') || proc.child.exitCode !== null, 'both workers to be ready', 60_000);
  assert.equal(proc.child.exitCode, null, `the primary exited: ${proc.output()}`);
  const first = readyWorkers(proc).pids;
  assert.deepEqual([...first.keys()].sort(), [1, 2]);
  assert.equal(proc.output().split('generated a development CA').length - 1, 1, 'certificates generated once, by the primary');

  // 16 devices; the primary hands connections to the workers in turn.
  const uids = Array.from({ length: DEVICES }, (_, i) => `wdev-${String(i).padStart(2, '0')}`);
  const clients = new Map<string, MqttClient>();
  for (const uid of uids) clients.set(uid, await testClient(t, `mqtt://127.0.0.1:${ports.mqtt}`, { clientId: uid }));
  const admin = await AdminClient.connect(`ws://127.0.0.1:${ports.admin}/ws`, API_KEY);
  t.after(() => admin.close());
  const placed = await waitFor(async () => {
    const online = (await listDevices(admin)).filter((d) => uids.includes(d.uid) && d.online);
    return online.length === DEVICES ? online : undefined;
  }, 'every device online in presence');
  const bySlot = new Map<number, string[]>();
  for (const device of placed) {
    const slot = slotOf(device.instance);
    assert.ok(slot === 1 || slot === 2, `instance ${device.instance} names a worker slot`);
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), device.uid]);
  }
  const onOne = bySlot.get(1) ?? [];
  const onTwo = bySlot.get(2) ?? [];
  t.diagnostic(`devices on worker 1: ${onOne.length}, on worker 2: ${onTwo.length}`);
  assert.ok(onOne.length > 0 && onTwo.length > 0, 'both workers hold devices');

  // /metrics, answered by whichever worker gets the request, carries both workers' series.
  const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
  for (const [slot, held] of [[1, onOne.length], [2, onTwo.length]] as const) {
    assert.match(metrics, new RegExp(`^nucleon_mqtt_connected_clients\\{kind="device",worker="${slot}"\\} ${held}$`, 'm'), `worker ${slot}'s device gauge`);
  }

  // A server publish reaches a device on either worker: linking a device to an image pushes the package
  // from the OTA runner of whichever worker took the admin command, through Redis, to the device's worker.
  const image = path.join(cluster.dir, 'firmware.bin');
  await writeFile(image, Buffer.alloc(4096, 7));
  await admin.addImage(image, { id: IMAGE_ID, imageType: 'primary' });
  for (const uid of [onOne[0], onTwo[0]] as string[]) {
    const client = clients.get(uid) as MqttClient;
    const box = inbox(client);
    await client.subscribeAsync(`${uid}/ota/s`, { qos: 1 });
    await admin.request('ota.link', { device: uid, image: IMAGE_ID });
    await waitFor(() => box.messages.find((m) => m.topic === `${uid}/ota/s` && m.payload.length > 0), `the OTA package at ${uid}`);
  }

  // QoS 1 load from every device, then kill -9 of worker 1.
  const survivorsClosed: string[] = [];
  for (const uid of onTwo) (clients.get(uid) as MqttClient).once('close', () => survivorsClosed.push(uid));
  const killedClosed = Promise.all(onOne.map((uid) => new Promise<void>((resolve) => (clients.get(uid) as MqttClient).once('close', () => resolve()))));
  const load = new Load(clients);
  await waitFor(() => load.acked.size >= LOAD_BEFORE, `${LOAD_BEFORE} acknowledged points`, 60_000);
  const victim = first.get(1) as number;
  process.kill(victim, 'SIGKILL');
  await waitFor(() => !alive(victim), 'worker 1 to be gone');
  await killedClosed;
  const ackedAtKill = load.acked.size;
  // The other worker's devices go on being acknowledged.
  const survivorAcked = () => [...load.acked].filter((key) => onTwo.includes(key.slice(0, key.indexOf(':')))).length;
  const survivorBefore = survivorAcked();
  await waitFor(() => survivorAcked() >= survivorBefore + LOAD_AFTER, `${LOAD_AFTER} more acknowledged points on worker 2`, 60_000);
  // The primary restarts worker 1 (a new process in the same slot).
  await waitFor(() => (readyWorkers(proc).readyCount.get(1) ?? 0) >= 2, 'worker 1 restarted', 60_000);
  const restarted = readyWorkers(proc).pids.get(1) as number;
  assert.notEqual(restarted, victim);
  assert.match(proc.output(), /"worker":1,"pid":\d+,"code":null,"signal":"SIGKILL".*"msg":"worker died/);
  await load.stop();
  t.diagnostic(`acknowledged: ${ackedAtKill} at the kill, ${load.acked.size} in all`);

  // Every acknowledged point is recorded, those of the killed worker's devices by the restarted one's replay.
  const missing = async () => {
    const lost: string[] = [];
    for (const uid of uids) {
      const recorded = new Set((await RecentTelemetry.list(cluster.store, uid, 100_000)).map((point) => point.telemetry.rsrp));
      for (const key of load.acked) if (key.startsWith(`${uid}:`) && !recorded.has(Number(key.slice(uid.length + 1)))) lost.push(key);
    }
    return lost;
  };
  await waitFor(async () => (await missing()).length === 0, 'every acknowledged point recorded', 60_000, 250).catch(async (error: unknown) => {
    const lost = await missing();
    throw new Error(`${lost.length} of ${load.acked.size} acknowledged points not recorded (e.g. ${lost.slice(0, 5).join(', ')})`, { cause: error });
  });
  // Points handed out twice: the killed worker's replay of what its runner had handled but not yet committed.
  let replayed = 0;
  for (const uid of onOne) {
    const points = await RecentTelemetry.list(cluster.store, uid, 100_000);
    replayed += points.length - new Set(points.map((point) => point.telemetry.rsrp)).size;
  }
  t.diagnostic(`recorded twice (replayed after the kill): ${replayed}`);
  assert.deepEqual(survivorsClosed, [], 'no device of the surviving worker was disconnected');
  for (const uid of onTwo) assert.ok((clients.get(uid) as MqttClient).connected, `${uid} still connected`);

  // The restarted worker takes connections again: a device of the killed worker comes back (on either worker).
  const back = await testClient(t, `mqtt://127.0.0.1:${ports.mqtt}`, { clientId: onOne[0] as string });
  assert.ok(back.connected);

  // SIGTERM: both workers drain and stop, the primary exits 0, no process is left.
  const pids = [...readyWorkers(proc).pids.values()];
  proc.child.kill('SIGTERM');
  const exit = await Promise.race([proc.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 30_000).unref())]);
  assert.deepEqual(exit, { code: 0, signal: null }, `the primary's exit: ${proc.output().slice(-2000)}`);
  await waitFor(() => pids.every((pid) => !alive(pid)), 'no worker left', 5000);
  assert.equal(proc.output().split('"msg":"worker stopped"').length - 1, 2, 'both workers stopped');
});
