// The device publish path end to end inside one process, with no socket:
// mqtt.js clients on in-memory streams handed to the MQTT runner
// (MqttRunner.connectStream), through authentication, the ACL, CBOR decoding
// and the event broker to a runner, and back to a device.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { MqttClient } from 'mqtt';
import { createNucleon, EventRunner, silentLogger, type ConfigInput, type Event, type EventOf } from '../../src/index.js';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { encodeCbor } from '../../src/protocol/index.js';
import { closeAfter, tempDir, waitFor } from '../helpers/index.js';
import { duplexPair } from '../helpers/streams.js';

type Seen = EventOf<'ApplicationRequest' | 'TelemetryReceived'>;

class Recorder extends EventRunner<'ApplicationRequest' | 'TelemetryReceived'> {
  readonly seen: Seen[] = [];
  constructor() {
    super('recorder', ['ApplicationRequest', 'TelemetryReceived']);
  }
  protected handle(event: Event): void {
    this.seen.push(event as Seen);
  }
  reply(uid: string, target: string, payload: Uint8Array): Promise<void> {
    return this.publish({ type: 'ApplicationResponse', uid, target, payload });
  }
}

type Rules = NonNullable<NonNullable<ConfigInput['acl']>['rules']>;

async function startBroker(t: TestContext, rules: Rules = []) {
  const dir = await tempDir(t);
  const nucleon = createNucleon(
    {
      store: { path: `${dir}/data` },
      certs: { dir: `${dir}/certs`, auto_generate: false },
      ingest: { durability: 'memory' },
      // The runner needs a listener to be added at all; this one is never used.
      mqtt: { tls: { enabled: false }, tcp: { enabled: true, host: '127.0.0.1', port: 0 }, auth: { anonymous: true, client_certificates: false, passwords: false }, limits: { max_acl_violations: 3 }, sys_interval_s: 0 },
      acl: { rules },
      ota: { enabled: false, http: { enabled: false } },
      admin: { enabled: false },
      telemetry: { recent_per_device: 0 },
    },
    { logger: silentLogger() },
  );
  const recorder = new Recorder();
  await nucleon.addRunner(recorder);
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  const mqtt = nucleon.runner('mqtt') as MqttRunner;
  return { recorder, mqtt };
}

/** An mqtt.js client whose "socket" is an in-memory stream served by the runner. */
async function client(t: TestContext, mqtt: MqttRunner, clientId: string): Promise<MqttClient> {
  const c = new MqttClient(
    () => {
      const [device, server] = duplexPair();
      mqtt.connectStream(server);
      return device;
    },
    { clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30 },
  );
  t.after(() => c.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

test('telemetry and application data reach a runner as events; its answer reaches the device', async (t) => {
  const { recorder, mqtt } = await startBroker(t);
  const device = await client(t, mqtt, 'dev-one');
  await device.subscribeAsync('dev-one/app/s/#', { qos: 1 });
  const answers: { topic: string; payload: Buffer }[] = [];
  device.on('message', (topic, payload) => answers.push({ topic, payload }));

  await device.publishAsync('dev-one/tel/p', Buffer.from(encodeCbor({ version: '1.2.3-0-abcdef12' })), { qos: 1 });
  await device.publishAsync('dev-one/app/p/env', Buffer.from([1, 2, 3]), { qos: 1 });
  await waitFor(() => recorder.seen.length === 2 || undefined, 'both events');
  const [telemetry, app] = recorder.seen;
  assert.equal(telemetry?.type, 'TelemetryReceived');
  assert.equal(telemetry.uid, 'dev-one');
  assert.equal(app?.type, 'ApplicationRequest');
  assert.deepEqual(app.type === 'ApplicationRequest' ? [app.uid, app.target, [...app.payload]] : [], ['dev-one', 'env', [1, 2, 3]]);

  await recorder.reply('dev-one', 'env', new Uint8Array([9]));
  const answer = await waitFor(() => answers[0], 'the answer on dev-one/app/s/env');
  assert.equal(answer.topic, 'dev-one/app/s/env');
  assert.deepEqual([...answer.payload], [9]);
});

test('the ACL on the publish path: another uid\'s topic and bad CBOR go nowhere, a foreign subscription gets 0x80, repeated violations close the connection', async (t) => {
  const { recorder, mqtt } = await startBroker(t);
  const device = await client(t, mqtt, 'dev-two');
  // Acknowledged (MQTT 3.1.1 allows it), not delivered as an event.
  await device.publishAsync('dev-other/app/p/env', Buffer.from([1]), { qos: 1 });
  await device.publishAsync('dev-two/tel/p', Buffer.from([0xff, 0x00]), { qos: 1 });
  const granted = await device.subscribeAsync('#', { qos: 1 }).then(
    (g) => g.map((x) => x.qos),
    (error: { packet?: { granted?: number[] } }) => error.packet?.granted,
  );
  assert.deepEqual(granted, [128]);
  // A valid message after the refused ones still arrives, and is the only event.
  await device.publishAsync('dev-two/app/p/ok', Buffer.from([7]), { qos: 1 });
  await waitFor(() => recorder.seen.length === 1 || undefined, 'the valid message');
  assert.deepEqual(recorder.seen.map((e) => [e.type, e.uid]), [['ApplicationRequest', 'dev-two']]);

  // max_acl_violations is 3: two more publishes as another uid close the connection.
  const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
  device.publish('dev-other/app/p/x', Buffer.from([1]), { qos: 0 });
  device.publish('dev-other/app/p/y', Buffer.from([1]), { qos: 0 });
  await closed;
  assert.equal(recorder.seen.length, 1);
});

test('a configured rule opens a topic of its own between devices; %u keeps each device to its own level', async (t) => {
  const { mqtt } = await startBroker(t, [
    { who: 'devices', action: 'subscribe', topic: 'fleet/#' },
    { who: 'devices', action: 'publish', topic: 'fleet/%u/status' },
  ]);
  const watcher = await client(t, mqtt, 'dev-watch');
  const reporter = await client(t, mqtt, 'dev-rep');
  const received: string[] = [];
  watcher.on('message', (topic, payload) => received.push(`${topic}=${payload.toString()}`));
  assert.deepEqual((await watcher.subscribeAsync('fleet/#', { qos: 1 })).map((g) => g.qos), [1]);
  await reporter.publishAsync('fleet/dev-watch/status', 'spoofed', { qos: 1 });
  await reporter.publishAsync('fleet/dev-rep/status', 'up', { qos: 1 });
  await waitFor(() => received.length > 0 || undefined, 'the status message');
  assert.deepEqual(received, ['fleet/dev-rep/status=up']);
});
