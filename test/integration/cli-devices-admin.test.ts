import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { cliPath, freePort, runCli, startProcess, tempDir, waitFor } from '../helpers/index.js';

// Runs the built binary (dist/cli.js): `npm run build` first.
test('while a server holds the store, nucleon devices add/remove go through its admin endpoint', async (t) => {
  const dir = await tempDir(t);
  const [mqttPort, adminPort] = [await freePort(), await freePort()];
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    ['[log]', 'format = "json"', '[store]', 'path = "data"', '[certs]', 'dir = "certs"', '[mqtt.tls]', 'host = "127.0.0.1"', `port = ${mqttPort}`, '[ota.http]', 'enabled = false', '[admin]', `port = ${adminPort}`].join('\n'),
  );
  const server = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(() => server.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);

  const added = runCli(['devices', 'add', 'dev-9', '--config', file]);
  assert.equal(added.code, 0, added.stderr);
  const password = added.stdout.trim();
  assert.equal(password.length, 32);
  assert.equal(added.stderr, 'device dev-9: password set (printed above; it is not shown again)\n');

  const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
  const connect = (secret: string) =>
    mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, { ca, clientId: 'dev-9', username: 'dev-9', password: secret, reconnectPeriod: 0, connectTimeout: 5000 });
  const device = await connect(password);
  await device.endAsync();

  const removed = runCli(['devices', 'remove', 'dev-9', '--config', file]);
  assert.equal(removed.code, 0, removed.stderr);
  await assert.rejects(connect(password), /Not authorized|Bad username or password/);
  const again = runCli(['devices', 'remove', 'dev-9', '--config', file]);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, 'nucleon: device dev-9 has no password\n');

  // Service accounts go the same way, and say so.
  const service = runCli(['service-accounts', 'add', 'backend', '--config', file]);
  assert.equal(service.code, 0, service.stderr);
  assert.equal(service.stdout.trim().length, 32);
  assert.equal(service.stderr, '(a server holds the store: through its admin endpoint, effective at once)\nservice account backend: password set (printed above; it is not shown again)\n');
  const listed = runCli(['service-accounts', 'list', '--config', file, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual((JSON.parse(listed.stdout) as { name: string }[]).map((a) => a.name), ['backend']);
});
