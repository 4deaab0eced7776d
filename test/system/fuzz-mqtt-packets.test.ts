// Fuzzing the MQTT listeners: valid packets from mqtt-packet, mutated (bit flips,
// truncation, wrong and huge remaining lengths, invalid UTF-8 topics, bad
// protocol levels and names, wrong packet types and flags, inserted bytes,
// garbage), sent over plain TCP and over TLS, some after a valid CONNECT and
// some without. Throughout, a canary device round-trips through the app runner;
// at the end the process is up, healthy, and its RSS stayed under the bound.
// Seeded: FUZZ_SEED replays a run, FUZZ_ITERATIONS scales it.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import { delay } from '../helpers/index.js';
import { connectPacket, encodePacket, mutate, MUTATIONS, randomPacket, type Mutation } from '../helpers/fuzz-mutate.js';
import { Canary, fuzzSettings, Rng, RssSampler, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

/** The stated memory bound for the broker process under this fuzzing (measured ~110 MB). */
const RSS_BOUND_MB = 300;
const PARALLEL = 12;
/** How long a session waits for the server after its last write before hanging up itself. */
const IDLE_MS = 120;
const SESSION_MAX_MS = 2000;

interface Tally {
  sessions: number;
  packets: number;
  bytes: number;
  serverClosed: number;
  weClosed: number;
  connackAccepted: number;
  connackRefused: number;
  byMutation: Partial<Record<Mutation, number>>;
}

/** One connection: optionally a valid CONNECT, then a few packets, each possibly mutated. */
async function session(instance: Instance, rng: Rng, transport: 'tcp' | 'tls', slot: number, tally: Tally): Promise<void> {
  // Anonymous login is on in this instance (client id = uid), so sessions are cheap; a few carry passwords.
  const uid = `fuzz-${transport}-${slot}`;
  const writes: Buffer[] = [];
  if (rng.chance(0.6)) writes.push(encodePacket(connectPacket(rng, uid, false)));
  for (let i = 0, n = 1 + rng.int(8); i < n; i++) {
    const mutation: Mutation = rng.chance(0.35) ? 'none' : rng.pick(MUTATIONS);
    tally.byMutation[mutation] = (tally.byMutation[mutation] ?? 0) + 1;
    writes.push(mutate(rng, encodePacket(randomPacket(rng, uid)), mutation));
  }
  const together = rng.chance(0.3);
  const socket: net.Socket =
    transport === 'tcp' ? net.connect(instance.ports.tcp, '127.0.0.1') : tls.connect({ port: instance.ports.tls, host: '127.0.0.1', ca: instance.ca, servername: 'localhost' });
  let closed = false;
  let lastData = Date.now();
  let first: Buffer | undefined;
  socket.on('data', (data: Buffer) => {
    lastData = Date.now();
    first ??= data;
  });
  socket.on('error', () => undefined);
  const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.once('close', () => (closed = true));
  await new Promise<void>((resolve) => {
    socket.once(transport === 'tcp' ? 'connect' : 'secureConnect', () => resolve());
    socket.once('close', () => resolve());
  });
  const started = Date.now();
  for (const bytes of together ? [Buffer.concat(writes)] : writes) {
    if (closed) break;
    socket.write(bytes);
    tally.packets += together ? writes.length : 1;
    tally.bytes += bytes.length;
    if (!together) await delay(rng.int(3));
  }
  lastData = Math.max(lastData, Date.now());
  while (!closed && Date.now() - lastData < IDLE_MS && Date.now() - started < SESSION_MAX_MS) await delay(20);
  if (closed) tally.serverClosed++;
  else tally.weClosed++;
  if (first && first[0] === 0x20 && first.length >= 4) {
    if (first[3] === 0) tally.connackAccepted++;
    else tally.connackRefused++;
  }
  socket.destroy();
  await closedByServer;
  tally.sessions++;
}

test('fuzzed MQTT packets over TCP and TLS: the broker stays up, the canary keeps round-tripping, memory stays bounded', async (t) => {
  const fuzz = fuzzSettings('mqtt-packets', 2500);
  const instance = await startInstance(t, {
    certDevices: ['canary-mqtt'],
    extraToml: ['[mqtt.auth]', 'anonymous = true'],
  });
  const canary = await Canary.start(t, instance, 'canary-mqtt');
  await canary.roundTrip();
  const rss = new RssSampler(instance);
  const tally: Tally = { sessions: 0, packets: 0, bytes: 0, serverClosed: 0, weClosed: 0, connackAccepted: 0, connackRefused: 0, byMutation: {} };

  const background = canary.inBackground();

  // Each worker has its own slot (client id) and its own stream of randomness, derived from the seed.
  let next = 0;
  const workers = Array.from({ length: PARALLEL }, async (_, slot) => {
    const rng = new Rng(fuzz.seed + slot * 7919);
    while (next < fuzz.iterations && background.failure() === undefined) {
      next++;
      await session(instance, rng, slot % 2 === 0 ? 'tcp' : 'tls', slot, tally);
    }
  });
  await Promise.all(workers);
  const canaryError = await background.stop();
  const memory = await rss.stop();

  assert.equal(canaryError, undefined, `the canary failed during fuzzing: ${String(canaryError)}`);
  assert.ok(instance.alive(), `the broker exited:\n${instance.process.output().slice(-3000)}`);
  await canary.roundTrip();
  const health = await fetch(`http://127.0.0.1:${instance.ports.admin}/healthz`);
  assert.equal(health.status, 200, await health.text());
  assert.ok(memory.peakMb < RSS_BOUND_MB, `RSS peaked at ${memory.peakMb} MB, over the bound of ${RSS_BOUND_MB} MB`);
  assert.equal(tally.sessions, fuzz.iterations);

  const text = await instance.metricsText();
  const counted = (name: string) => [...text.matchAll(new RegExp(`^${name}\\{reason="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => `${m[1]}:${m[2]}`).join(',');
  summary('fuzz mqtt-packets', {
    seed: fuzz.seed,
    sessions: tally.sessions,
    packets: tally.packets,
    bytes: tally.bytes,
    closedByServer: tally.serverClosed,
    closedByUs: tally.weClosed,
    connackAccepted: tally.connackAccepted,
    connackRefused: tally.connackRefused,
    canaryRoundTrips: canary.roundTrips,
    rssStartMb: memory.startMb,
    rssPeakMb: memory.peakMb,
    refused: counted('nucleon_mqtt_refused_total'),
    disconnects: counted('nucleon_mqtt_disconnects_total'),
  });
});
