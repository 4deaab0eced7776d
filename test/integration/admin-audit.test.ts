// The audit trail of a real `nucleon serve` (built binary: `npm run build`
// first): two named admin keys (one read-only) and the CLI act in turn; the
// instance's JSON log on stdout and `audit.list` must both tell who did what
// with which result, in order. Device and service-account connections are in
// the same log with their auth method and disconnect reason, and a service
// account added live logs in without a restart, and is cut off when removed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { cliPath, freePort, isolatedConfig, runCli, startProcess, tempDir, waitFor } from '../helpers/index.js';

const OPS_KEY = 'ops-key-0123456789abcdefghij';
const GRAFANA_KEY = 'grafana-key-0123456789abcdefgh';

type LogLine = Record<string, unknown>;

/** The JSON lines the instance wrote (pino, one object a line). */
function logLines(output: string): LogLine[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

test('admin actions of named keys and the CLI, refusals of a read-only key, and MQTT connections are in the log and audit.list, in order', async (t) => {
  const dir = await tempDir(t);
  const [mqttPort, adminPort] = [await freePort(), await freePort()];
  const keyFile = path.join(dir, 'ops.key');
  await writeFile(keyFile, `${OPS_KEY}\n`, { mode: 0o600 });
  const grafanaSha = createHash('sha256').update(GRAFANA_KEY).digest('hex');
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    [
      isolatedConfig(dir, { mqtt: mqttPort, admin: adminPort }),
      `keys = [{ name = "ops", role = "admin", key_file = "${keyFile}" }, { name = "grafana", role = "read-only", key_sha256 = "${grafanaSha}" }]`,
    ].join('\n'),
  );
  const server = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
  await waitFor(() => server.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);
  const wsUrl = `ws://127.0.0.1:${adminPort}/ws`;
  const ops = await AdminTestClient.connect(t, wsUrl, { headers: { authorization: `Bearer ${OPS_KEY}` } });
  const grafana = await AdminTestClient.connect(t, wsUrl, { headers: { authorization: `Bearer ${GRAFANA_KEY}` } });

  // 1. ops sets a device password.
  assert.deepEqual((await ops.request('devices.add', { uid: 'dev-1', password: 'dev-1-password-xyz' })).result, { uid: 'dev-1', password: 'dev-1-password-xyz' });
  // 2. grafana may read, 3. but not change: FORBIDDEN, and audited.
  assert.equal((await grafana.request('devices.list')).ok, true);
  const refused = await grafana.request('devices.add', { uid: 'dev-2' });
  assert.equal(refused.ok, false);
  assert.equal(refused.error?.code, 'FORBIDDEN');
  // 4. ops adds a service account while the server runs.
  assert.equal((await ops.request('service-accounts.add', { name: 'billing', password: 'billing-secret-123456' })).ok, true);

  const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
  const connect = (clientId: string, username: string, password: string) =>
    mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, { ca, clientId, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
  // No restart: the new account logs in at once, with a client id of the svc:<name>[:x] form.
  const billing = await connect('svc:billing:worker-1', 'svc:billing', 'billing-secret-123456');
  t.after(() => billing.end(true));
  let billingClosed = false;
  billing.once('close', () => (billingClosed = true));
  const device = await connect('dev-1', 'dev-1', 'dev-1-password-xyz');
  await device.endAsync();

  // 5. The CLI removes the account through the running server's admin endpoint (the default key).
  const removed = runCli(['service-accounts', 'remove', 'billing', '--config', file]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(removed.stderr, '(a server holds the store: through its admin endpoint, effective at once)\nservice account billing: password removed\n');
  await waitFor(() => billingClosed, "the removed account's live session closed");
  await assert.rejects(connect('svc:billing', 'svc:billing', 'billing-secret-123456'), /Bad username or password|Not authorized/);

  const expected = [
    { actor: 'ops', via: 'ws', command: 'devices.add', target: 'dev-1', result: 'ok' },
    { actor: 'grafana', via: 'ws', command: 'devices.add', target: 'dev-2', result: 'FORBIDDEN' },
    { actor: 'ops', via: 'ws', command: 'service-accounts.add', target: 'billing', result: 'ok' },
    { actor: 'default', via: 'cli', command: 'service-accounts.remove', target: 'billing', result: 'ok' },
  ];
  const listed = await grafana.request('audit.list');
  assert.ok(listed.ok);
  const entries = (listed.result as { entries: (Record<string, unknown> & { seq: number; at: string })[] }).entries;
  assert.deepEqual(
    entries.map(({ seq: _seq, at: _at, ...rest }) => rest),
    expected,
  );
  assert.deepEqual(
    entries.map((e) => e.seq),
    [1, 2, 3, 4],
  );

  const audit = () => logLines(server.output()).filter((line) => line.audit === true);
  const actions = await waitFor(() => {
    const lines = audit().filter((line) => line.msg === 'admin action');
    return lines.length >= expected.length ? lines : undefined;
  }, 'four admin action lines');
  assert.deepEqual(
    actions.map(({ level, actor, via, command, target, result }) => ({ level, actor, via, command, target, result })),
    expected.map((e) => ({ level: 30, ...e })),
  );
  // No secret anywhere in the log.
  for (const secret of ['dev-1-password-xyz', 'billing-secret-123456', OPS_KEY, GRAFANA_KEY]) assert.ok(!server.output().includes(secret), `the log holds ${secret}`);

  const connections = await waitFor(() => {
    const lines = audit().filter((line) => line.msg === 'client connected' || line.msg === 'client disconnected');
    return lines.length >= 4 ? lines : undefined;
  }, 'connect and disconnect lines');
  const shape = ({ level, msg, uid, service, clientId, remoteAddress, authMethod, reason }: LogLine) => ({ level, msg, uid, service, clientId, remoteAddress, authMethod, reason });
  assert.deepEqual(connections.map(shape), [
    { level: 30, msg: 'client connected', uid: undefined, service: 'billing', clientId: 'svc:billing:worker-1', remoteAddress: '127.0.0.1', authMethod: 'service', reason: undefined },
    { level: 30, msg: 'client connected', uid: 'dev-1', service: undefined, clientId: 'dev-1', remoteAddress: '127.0.0.1', authMethod: 'password', reason: undefined },
    { level: 30, msg: 'client disconnected', uid: 'dev-1', service: undefined, clientId: 'dev-1', remoteAddress: '127.0.0.1', authMethod: 'password', reason: 'closed' },
    { level: 30, msg: 'client disconnected', uid: undefined, service: 'billing', clientId: 'svc:billing:worker-1', remoteAddress: '127.0.0.1', authMethod: 'service', reason: 'service_account_removed' },
  ]);
});
