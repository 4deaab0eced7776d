// Nucleon as a general-purpose MQTT 3.1.1 broker (examples/open-broker.toml,
// with only its port and paths changed) driven by Debian's clients:
// python3-paho-mqtt (test/fixtures/paho_conformance.py: QoS 0/1/2, retained
// set/read/clear, will on abrupt close and at keepalive expiry, cross-client
// QoS 2, overlapping subscriptions, $ topics, the refused subscription, zero-
// length client ids, offline queueing) and mosquitto_pub / mosquitto_sub.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'smol-toml';
import { cliPath, freePort, repoRoot, requireBinary, runToExit as run, skipOutsideCi, spawnCollecting as start, startProcess, tempDir, waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';

const DEBIAN_PYTHON = '/usr/bin/python3';

/** The example config with a free port and a temporary store: everything else exactly as shipped. */
async function startOpenBroker(t: Parameters<typeof tempDir>[0]): Promise<{ port: number; output: () => string }> {
  const dir = await tempDir(t);
  const config = parse(await readFile(path.join(repoRoot, 'examples/open-broker.toml'), 'utf8')) as Record<string, Record<string, unknown>>;
  const port = await freePort();
  const mqtt = config.mqtt as Record<string, Record<string, unknown>>;
  assert.equal(mqtt.tcp?.port, 1883, 'the example listens on 1883');
  assert.equal(mqtt.tcp?.host, '127.0.0.1');
  mqtt.tcp = { ...mqtt.tcp, port };
  config.store = { path: path.join(dir, 'data') };
  config.certs = { dir: path.join(dir, 'certs') };
  const file = path.join(dir, 'open-broker.toml');
  await writeFile(file, stringify(config));
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`nucleon exited: ${proc.output()}`);
      const client = await RawMqtt.connect(t, port, { clientId: 'probe' }).catch(() => undefined);
      if (!client) return false;
      const connack = await client.next('connack', 2000).catch(() => undefined);
      client.end();
      return connack?.returnCode === 0;
    },
    'the open broker to accept connections',
    30_000,
    100,
  );
  assert.match(proc.output(), /mqtt\.auth\.anonymous is on/, 'anonymous access is logged loudly');
  return { port, output: proc.output };
}


test('python3-paho-mqtt against examples/open-broker.toml: every check of test/fixtures/paho_conformance.py passes', async (t) => {
  if (!requireBinary(t, DEBIAN_PYTHON, 'python3')) return;
  const hasPaho = spawnSync(DEBIAN_PYTHON, ['-c', 'import paho.mqtt.client'], { encoding: 'utf8' });
  if (hasPaho.status !== 0) {
    skipOutsideCi(t, 'python3-paho-mqtt not installed (apt-get install -y python3-paho-mqtt)');
    return;
  }
  const broker = await startOpenBroker(t);
  const result = await run(DEBIAN_PYTHON, [path.join(repoRoot, 'test/fixtures/paho_conformance.py'), '127.0.0.1', String(broker.port)], 120_000);
  t.diagnostic(result.stdout.trim().replace(/\n/g, ' | '));
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /^11 passed, 0 failed$/m);
});

test('mosquitto_pub / mosquitto_sub against examples/open-broker.toml: QoS 0/1/2, retained set/read/clear, QoS 2 between them', async (t) => {
  const pub = requireBinary(t, 'mosquitto_pub', 'mosquitto-clients');
  const sub = requireBinary(t, 'mosquitto_sub', 'mosquitto-clients');
  if (!pub || !sub) return;
  const { port } = await startOpenBroker(t);
  const common = ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311'];

  // A retained marker tells when a subscriber has its subscription (it arrives right after the SUBACK).
  assert.equal((await run(pub, [...common, '-t', 'cli/qos/ready', '-m', 'ready', '-q', '1', '-r'])).code, 0);
  const subscriber = start(sub, [...common, '-i', 'mosq-sub', '-t', 'cli/qos/#', '-q', '2', '-C', '4', '-W', '20', '-v']);
  await waitFor(() => subscriber.output().includes('cli/qos/ready ready'), 'the subscriber to have subscribed');
  for (const qos of [0, 1, 2]) {
    const published = await run(pub, [...common, '-i', `mosq-pub-${qos}`, '-t', `cli/qos/${qos}`, '-m', `qos ${qos}`, '-q', String(qos)]);
    assert.equal(published.code, 0, published.stderr);
  }
  const received = await subscriber.done;
  assert.deepEqual(received.stdout.trim().split('\n'), ['cli/qos/ready ready', 'cli/qos/0 qos 0', 'cli/qos/1 qos 1', 'cli/qos/2 qos 2']);

  // Retained: set, read by a new subscriber, cleared.
  assert.equal((await run(pub, [...common, '-t', 'cli/retained', '-m', 'kept', '-q', '1', '-r'])).code, 0);
  const read = await run(sub, [...common, '-t', 'cli/retained', '-C', '1', '-W', '10', '-v']);
  assert.equal(read.stdout.trim(), 'cli/retained kept');
  assert.equal((await run(pub, [...common, '-t', 'cli/retained', '-n', '-q', '1', '-r'])).code, 0);
  // With the retained message cleared, a subscriber sees nothing: mosquitto_sub times out (exit 27) with no output.
  const none = await run(sub, [...common, '-t', 'cli/retained', '-C', '1', '-W', '2', '-v']);
  assert.equal(none.stdout.trim(), '');
  assert.equal(none.code, 27);

  // QoS 2 from one client to another, exactly once each, in order.
  assert.equal((await run(pub, [...common, '-t', 'cli/q2/ready', '-m', 'ready', '-q', '1', '-r'])).code, 0);
  const q2 = start(sub, [...common, '-i', 'mosq-q2', '-t', 'cli/q2/#', '-q', '2', '-C', '11', '-W', '20']);
  await waitFor(() => q2.output().includes('ready'), 'the QoS 2 subscriber to have subscribed');
  const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
  for (const message of sent) assert.equal((await run(pub, [...common, '-t', 'cli/q2/m', '-m', message, '-q', '2'])).code, 0);
  assert.deepEqual((await q2.done).stdout.trim().split('\n'), ['ready', ...sent]);
});
