import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { initCertificates, issueDeviceCertificate } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { serviceCredentials } from '../../src/devices/index.js';
import { LevelStore } from '../../src/store/index.js';
import { cliPath, freePort, startProcess, tempDir, waitFor, type RunningProcess } from '../helpers/index.js';
import { writeServeConfig } from '../helpers/mqtt-support.js';

// Runs the built binary (dist/cli.js): `npm run build` first.

async function serve(t: Parameters<typeof startProcess>[0], file: string): Promise<RunningProcess> {
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(() => proc.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);
  return proc;
}

test('a QoS 1 message queued for an offline persistent session is delivered after SIGKILL and restart', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const file = await writeServeConfig(dir, port);
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, certs: { dir: path.join(dir, 'certs') } });
  await initCertificates(config.certs);
  const files = await issueDeviceCertificate(config.certs, 'sleepy');
  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  const secret = await serviceCredentials(store).add('ops');
  await store.close();
  const tls = { ca: await readFile(files.caPath), cert: await readFile(files.certPath), key: await readFile(files.keyPath) };
  const url = `mqtts://localhost:${port}`;
  const deviceOptions = { ...tls, clientId: 'sleepy', clean: false, reconnectPeriod: 0, protocolVersion: 4 as const };

  const first = await serve(t, file);
  const device = await mqtt.connectAsync(url, deviceOptions);
  await device.subscribeAsync('sleepy/app/s/#', { qos: 1 });
  await device.endAsync();

  const service = await mqtt.connectAsync(url, { ca: tls.ca, clientId: 'svc:ops', username: 'svc:ops', password: secret, reconnectPeriod: 0 });
  // Service messages are stored before their PUBACK (README "ACL"), so once
  // this resolves the message is in the device's offline queue on disk.
  await service.publishAsync('sleepy/app/s/wake', 'while you slept', { qos: 1 });
  await service.endAsync(true);

  first.child.kill('SIGKILL');
  const exit = await first.exited;
  assert.equal(exit.signal, 'SIGKILL');

  await serve(t, file);
  const received: { topic: string; payload: string; qos: number }[] = [];
  const again = await mqtt.connectAsync(url, deviceOptions);
  t.after(() => again.endAsync(true));
  again.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), qos: packet.qos }));
  await waitFor(() => received.length > 0, 'the queued message after restart');
  assert.deepEqual(received, [{ topic: 'sleepy/app/s/wake', payload: 'while you slept', qos: 1 }]);
});
