// Fault injection: SIGKILL of a Nucleon process under QoS 1 load from several
// devices, then a restart on the same data. A persistent subscriber (a service
// account with a clean=false session subscribed to +/app/p/#) must receive every
// message any device saw acknowledged: acknowledged ⇒ never lost. Duplicates are
// allowed (QoS 1 is at least once) and reported.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { delay, waitFor } from '../helpers/index.js';
import { connectDevice, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const DEVICES = 4;
const WINDOW = 20;
const SINK = { name: 'sink', password: 'sink-secret-0123456789' };

async function connectSink(instance: Instance): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtts://localhost:${instance.ports.tls}`, {
    ca: instance.ca,
    clientId: `svc:${SINK.name}`,
    username: `svc:${SINK.name}`,
    password: SINK.password,
    clean: false,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
}

/** Publishes `<uid>:<n>` at QoS 1, at most WINDOW unacknowledged, until the connection drops; records what was acknowledged. */
async function load(client: MqttClient, uid: string, acked: Set<string>, maxMessages: number): Promise<void> {
  let n = 0;
  while (client.connected && n < maxMessages) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < WINDOW; i++) {
      const message = `${uid}:${n++}`;
      batch.push(
        client.publishAsync(`${uid}/app/p/load`, message, { qos: 1 }).then(
          () => void acked.add(message),
          // Cut off by the kill: not acknowledged, so not promised.
          () => undefined,
        ),
      );
    }
    // Bounded: a publish cut off by the kill never settles until the client ends.
    await Promise.race([Promise.all(batch), new Promise<void>((resolve) => client.once('close', () => resolve()))]);
  }
}

/** SIGKILL while the devices publish; waits for their loads to end and closes the clients. Returns how many were acknowledged. */
async function killUnderLoad(instance: Instance, loads: Promise<void>[], acked: Set<string>, clients: MqttClient[]): Promise<number> {
  await instance.kill();
  await Promise.all(loads);
  const ackedAtKill = acked.size;
  await Promise.all(clients.map((client) => client.endAsync(true)));
  return ackedAtKill;
}

test('SIGKILL under QoS 1 load, then restart: every message a device saw acknowledged reaches the persistent subscriber', async (t) => {
  const uids = Array.from({ length: DEVICES }, (_, i) => `kill-dev-${i}`);
  const first = await startInstance(t, { certDevices: uids, services: { [SINK.name]: SINK.password } });
  const recordFile = path.join(first.dir, 'handled.txt');
  await first.stop();
  // Restarted with the app runner recording what it handled (informational: the app path is in-memory after the PUBACK).
  const instance = await startInstance(t, { dir: first.dir, ports: first.ports, recordFile });

  const received = new Map<string, number>();
  const onMessage = (_topic: string, payload: Buffer) => received.set(payload.toString(), (received.get(payload.toString()) ?? 0) + 1);
  const sink = await connectSink(instance);
  sink.on('message', onMessage);
  await sink.subscribeAsync('+/app/p/#', { qos: 1 });

  const devices = await Promise.all(uids.map((uid) => connectDevice(t, { ...instance, devices: first.devices }, uid)));
  const acked = new Set<string>();
  const loads = devices.map((device, i) => load(device, uids[i] ?? '', acked, 100_000));
  await waitFor(() => acked.size >= 2000, '2000 acknowledged messages', 30_000);
  const ackedAtKill = await killUnderLoad(instance, loads, acked, [...devices, sink]);

  const restarted = await startInstance(t, { dir: first.dir, ports: first.ports });
  const again = await connectSink(restarted);
  t.after(() => again.endAsync(true));
  again.on('message', onMessage);
  const missing = () => [...acked].filter((message) => !received.has(message));
  await waitFor(() => missing().length === 0, 'every acknowledged message at the subscriber', 20_000).catch(() => undefined);
  // Settle: late redeliveries are counted as duplicates, not missed.
  await delay(500);

  const lost = missing();
  const duplicates = [...received.values()].filter((count) => count > 1).length;
  const handled = new Set((await readFile(recordFile, 'utf8')).split('\n').map((line) => Buffer.from(line.split(' ')[2] ?? '', 'hex').toString()));
  summary('faults sigkill', {
    devices: DEVICES,
    acknowledged: ackedAtKill,
    receivedBySubscriber: received.size,
    lostAcknowledged: lost.length,
    duplicates,
    appRunnerHandledOfAcknowledged: [...acked].filter((message) => handled.has(message)).length,
  });
  assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged messages never reached the subscriber`);
});

test('SIGKILL while a connected persistent subscriber acknowledges nothing: every message a device saw acknowledged is queued for it after the restart', async (t) => {
  // The broker keeps a message for a connected persistent session in memory while it waits for the
  // subscriber's PUBACK (src/mqtt/aedes/level-outgoing.ts); the device's PUBACK must wait until the
  // message is written, since this subscriber never acknowledges.
  const uids = Array.from({ length: DEVICES }, (_, i) => `stall-dev-${i}`);
  const instance = await startInstance(t, { certDevices: uids, services: { [SINK.name]: SINK.password } });
  const stalled = await connectSink(instance);
  let heldBySubscriber = 0;
  // mqtt.js sends a PUBACK once handleMessage calls back: this one never does (and mqtt.js then reads
  // nothing more, so the broker's writes to it back up while it stays connected).
  stalled.handleMessage = (_packet, _callback) => {
    heldBySubscriber++;
  };
  await stalled.subscribeAsync('+/app/p/#', { qos: 1 });

  const devices = await Promise.all(uids.map((uid) => connectDevice(t, instance, uid)));
  const acked = new Set<string>();
  const loads = devices.map((device, i) => load(device, uids[i] ?? '', acked, 100_000));
  const progress = () => {
    if (acked.size >= 1000 && heldBySubscriber >= 1) return true;
    throw new Error(`${acked.size} acknowledged, ${heldBySubscriber} held by the subscriber`);
  };
  await waitFor(progress, '1000 acknowledged messages while the subscriber acknowledges none', 30_000);
  const ackedAtKill = await killUnderLoad(instance, loads, acked, [...devices, stalled]);

  const restarted = await startInstance(t, { dir: instance.dir, ports: instance.ports });
  const received = new Set<string>();
  const again = await connectSink(restarted);
  t.after(() => again.endAsync(true));
  again.on('message', (_topic: string, payload: Buffer) => received.add(payload.toString()));
  const missing = () => [...acked].filter((message) => !received.has(message));
  await waitFor(() => missing().length === 0, 'every acknowledged message at the subscriber', 20_000).catch(() => undefined);

  const lost = missing();
  summary('faults sigkill, subscriber not acknowledging', { devices: DEVICES, acknowledged: ackedAtKill, heldBySubscriber, receivedAfterRestart: received.size, lostAcknowledged: lost.length });
  assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged messages were not queued for the subscriber`);
});
