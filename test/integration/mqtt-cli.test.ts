import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import mqtt from 'mqtt';
import { deviceCredentials, MIN_PASSWORD_LENGTH, serviceCredentials } from '../../src/devices/index.js';
import { LevelStore } from '../../src/store/index.js';
import { cliPath, freePort, requireBinary, runCli, runToExit, startProcess, tempDir, waitFor } from '../helpers/index.js';
import { writeServeConfig } from '../helpers/mqtt-support.js';

// Runs the built binary (dist/cli.js): `npm run build` first.

async function configFile(t: TestContext, port: number): Promise<{ dir: string; file: string }> {
  const dir = await tempDir(t);
  return { dir, file: await writeServeConfig(dir, port) };
}

async function serve(t: TestContext, file: string) {
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(() => proc.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);
  return proc;
}


test('nucleon devices add/remove and service-accounts add: hashed in the store; a running server holds the store', async (t) => {
  const { dir, file } = await configFile(t, await freePort());
  const added = runCli(['devices', 'add', 'dev-1', '--config', file]);
  assert.equal(added.code, 0, added.stderr);
  const password = added.stdout.trim();
  assert.equal(password.length, 32);
  assert.equal(runCli(['devices', 'add', 'dev-2', '--password', 'chosen-secret', '--config', file]).stdout, '');
  assert.equal(runCli(['service-accounts', 'add', 'backend', '--password', 'svc-secret-long', '--config', file]).code, 0);
  assert.equal(runCli(['devices', 'remove', 'dev-2', '--config', file]).code, 0);
  const again = runCli(['devices', 'remove', 'dev-2', '--config', file]);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, 'nucleon: device dev-2 has no password\n');
  const bad = runCli(['devices', 'add', 'a/b', '--config', file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^nucleon: invalid device uid "a\/b"/);

  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  try {
    assert.equal(await deviceCredentials(store).verify('dev-1', password), true);
    assert.equal(await deviceCredentials(store).has('dev-2'), false);
    assert.equal(await serviceCredentials(store).verify('backend', 'svc-secret-long'), true);
    assert.equal(await deviceCredentials(store).verify('backend', 'svc-secret-long'), false);
  } finally {
    await store.close();
  }

  await serve(t, file);
  const locked = runCli(['devices', 'add', 'dev-3', '--config', file]);
  assert.equal(locked.code, 1);
  assert.equal(locked.stderr, `nucleon: the store ${path.join(dir, 'data', 'kv')} is in use by a running server: stop it first, or use the admin endpoint\n`);
});

test('nucleon serve with the MQTT port taken exits 1 with a one-line reason', async (t) => {
  const blocker = createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const address = blocker.address();
  assert.ok(address && typeof address === 'object');
  const { file } = await configFile(t, address.port);
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  const exit = await proc.exited;
  assert.equal(exit.code, 1);
  const lines = proc.output().split('\n').filter((line) => line.startsWith('nucleon: '));
  assert.deepEqual(lines, [`nucleon: cannot listen for MQTT over TLS on 127.0.0.1:${address.port}: address already in use`]);
});

test('mosquitto_sub / mosquitto_pub over TLS with a device certificate from `nucleon certs device`', async (t) => {
  const sub = requireBinary(t, 'mosquitto_sub', 'mosquitto-clients');
  const pub = requireBinary(t, 'mosquitto_pub', 'mosquitto-clients');
  if (!sub || !pub) return;
  const port = await freePort();
  const { dir, file } = await configFile(t, port);
  assert.equal(runCli(['certs', 'init', '--config', file]).code, 0);
  const out = path.join(dir, 'flash');
  assert.equal(runCli(['certs', 'device', '352656100000042', '--config', file, '--out', out]).code, 0);
  assert.equal(runCli(['service-accounts', 'add', 'ops', '--password', 'ops-secret-long', '--config', file]).code, 0);
  await serve(t, file);
  const uid = '352656100000042';
  const tlsArgs = ['-h', 'localhost', '-p', String(port), '--cafile', path.join(out, 'ca.crt'), '--cert', path.join(out, `${uid}.crt`), '--key', path.join(out, `${uid}.key`), '-i', uid, '-V', 'mqttv311'];

  // A persistent session: subscribe and leave (-E), get a message while away, come back for it.
  const subscribed = await runToExit(sub, [...tlsArgs, '-c', '-q', '1', '-t', `${uid}/app/s/#`, '-E']);
  assert.equal(subscribed.code, 0, subscribed.stderr);
  const service = await mqtt.connectAsync(`mqtts://localhost:${port}`, { ca: await readFile(path.join(out, 'ca.crt')), clientId: 'svc:ops', username: 'svc:ops', password: 'ops-secret-long', reconnectPeriod: 0 });
  t.after(() => service.endAsync(true));
  await service.publishAsync(`${uid}/app/s/led`, 'on', { qos: 1 });
  const received = await runToExit(sub, [...tlsArgs, '-c', '-q', '1', '-t', `${uid}/app/s/#`, '-C', '1', '-v', '-W', '10']);
  assert.equal(received.code, 0, received.stderr);
  assert.equal(received.stdout, `${uid}/app/s/led on\n`);

  // Device → server, seen by the service account.
  await service.subscribeAsync('+/app/p/#', { qos: 1 });
  const seen: string[] = [];
  service.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
  const published = await runToExit(pub, [...tlsArgs, '-q', '1', '-t', `${uid}/app/p/hello`, '-m', 'from mosquitto']);
  assert.equal(published.code, 0, published.stderr);
  await waitFor(() => seen.length > 0, 'the service account sees the mosquitto_pub message');
  assert.deepEqual(seen, [`${uid}/app/p/hello from mosquitto`]);

  // A certificate for this uid cannot publish as another device.
  const spoof = await runToExit(pub, [...tlsArgs, '-q', '1', '-t', '352656100000099/app/p/hello', '-m', 'spoof']);
  assert.equal(spoof.code, 0, spoof.stderr);
  const marker = await runToExit(pub, [...tlsArgs, '-q', '1', '-t', `${uid}/app/p/marker`, '-m', 'x']);
  assert.equal(marker.code, 0);
  await waitFor(() => seen.length > 1, 'marker');
  assert.deepEqual(seen, [`${uid}/app/p/hello from mosquitto`, `${uid}/app/p/marker x`]);
});

test('nucleon devices add: passwords shorter than the minimum are refused; --generate prints a random one', async (t) => {
  const { dir, file } = await configFile(t, await freePort());
  const short = runCli(['devices', 'add', 'dev-1', '--password', 'abcde', '--config', file]);
  assert.equal(short.code, 1);
  assert.equal(short.stderr, `nucleon: the password is 5 characters long, at least ${MIN_PASSWORD_LENGTH} are required (leave it out, or pass --generate, to have one generated)\n`);
  const serviceShort = runCli(['service-accounts', 'add', 'backend', '--password', 'x'.repeat(MIN_PASSWORD_LENGTH - 1), '--config', file]);
  assert.equal(serviceShort.code, 1);
  assert.equal(runCli(['devices', 'add', 'dev-2', '--password', 'x'.repeat(MIN_PASSWORD_LENGTH), '--config', file]).code, 0);
  const both = runCli(['devices', 'add', 'dev-3', '--password', 'long-enough-secret', '--generate', '--config', file]);
  assert.equal(both.code, 2);
  assert.equal(both.stderr, 'nucleon: add <uid>: give --password or --generate, not both\n');

  const generated = runCli(['devices', 'add', 'dev-4', '--generate', '--config', file]);
  assert.equal(generated.code, 0, generated.stderr);
  const password = generated.stdout.trim();
  assert.match(password, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(generated.stderr, 'device dev-4: password set (printed above; it is not shown again)\n');

  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  try {
    assert.equal(await deviceCredentials(store).has('dev-1'), false, 'the short password was not stored');
    assert.equal(await serviceCredentials(store).has('backend'), false);
    assert.equal(await deviceCredentials(store).verify('dev-2', 'x'.repeat(MIN_PASSWORD_LENGTH)), true);
    assert.equal(await deviceCredentials(store).verify('dev-4', password), true);
  } finally {
    await store.close();
  }
});
