// Admin keys, roles and the audit ring without sockets: AdminKeys against
// configured specs, runCommand's role check and audit lines with a real
// pino logger writing into memory, and the README section `service-accounts
// --help` names.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { AuditLog, AuditRing } from '../../src/admin/audit.js';
import { AdminKeys, loadKeySpecs } from '../../src/admin/auth.js';
import { COMMANDS, commandChanges, runCommand, type CommandCaller, type CommandServices } from '../../src/admin/commands.js';
import { DeviceHistory } from '../../src/admin/device-history.js';
import { TelemetryRings } from '../../src/admin/telemetry-rings.js';
import { EventBroker } from '../../src/broker/index.js';
import { serviceAccountsUsage } from '../../src/cli/devices.js';
import { validateConfig } from '../../src/config/index.js';
import { deviceCredentials, serviceCredentials } from '../../src/devices/index.js';
import { hasCode } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { LevelStore } from '../../src/store/index.js';
import { repoRoot, tempDir } from '../helpers/index.js';

test('the audit ring keeps the newest entries, oldest first, never more than its size', () => {
  let now = Date.parse('2026-12-01T10:00:00Z');
  const ring = new AuditRing(3, () => now++);
  for (const command of ['a', 'b', 'c', 'd', 'e']) ring.add({ actor: 'ops', via: 'ws', command, result: 'ok' });
  assert.deepEqual(
    ring.list().map((e) => [e.seq, e.command]),
    [
      [3, 'c'],
      [4, 'd'],
      [5, 'e'],
    ],
  );
  assert.deepEqual(
    ring.list(2).map((e) => e.command),
    ['d', 'e'],
  );
  assert.deepEqual(
    ring.list(10).map((e) => e.command),
    ['c', 'd', 'e'],
  );
  assert.equal(ring.list()[0]?.at, '2026-12-01T10:00:00.002Z');

  const partly = new AuditRing(4);
  partly.add({ actor: 'ops', via: 'cli', command: 'x', result: 'ok' });
  assert.deepEqual(
    partly.list().map((e) => e.command),
    ['x'],
  );
  const none = new AuditRing(0);
  assert.equal(none.add({ actor: 'ops', via: 'ws', command: 'x', result: 'ok' }).seq, 1);
  assert.deepEqual(none.list(), []);
});

test('AdminKeys names the key that matched, by key or by its SHA-256, and nothing for a wrong one', () => {
  const opsKey = 'ops-key-0123456789abcdef';
  const keys = new AdminKeys([
    { name: 'default', role: 'admin', key: 'default-key-0123456789' },
    { name: 'grafana', role: 'read-only', sha256: createHash('sha256').update('grafana-key-0123456789').digest('hex') },
    { name: 'ops', role: 'admin', key: opsKey },
  ]);
  assert.deepEqual(keys.match('default-key-0123456789'), { name: 'default', role: 'admin' });
  assert.deepEqual(keys.match('grafana-key-0123456789'), { name: 'grafana', role: 'read-only' });
  assert.deepEqual(keys.match(opsKey), { name: 'ops', role: 'admin' });
  assert.equal(keys.match(`${opsKey}x`), undefined);
  assert.equal(keys.match(''), undefined);
  // The digest itself is not a key.
  assert.equal(keys.match(createHash('sha256').update('grafana-key-0123456789').digest('hex')), undefined);
});

test('key files: read trimmed; a missing or short one fails the start naming the key', async (t) => {
  const dir = await tempDir(t);
  const good = path.join(dir, 'ops.key');
  await writeFile(good, 'ops-key-0123456789abcdef\n');
  const short = path.join(dir, 'short.key');
  await writeFile(short, 'short\n');
  const specs = await loadKeySpecs([
    { name: 'ops', role: 'admin', key_file: good },
    { name: 'grafana', role: 'read-only', key_sha256: 'AB'.repeat(32) },
  ]);
  assert.deepEqual(specs, [
    { name: 'ops', role: 'admin', key: 'ops-key-0123456789abcdef' },
    { name: 'grafana', role: 'read-only', sha256: 'ab'.repeat(32) },
  ]);
  await assert.rejects(loadKeySpecs([{ name: 'ci', role: 'admin', key_file: short }]), (error: Error) => {
    assert.ok(hasCode(error, 'CONFIG_INVALID'));
    assert.equal(error.message, `admin.keys.0.key_file: ${short} (key "ci") holds fewer than 16 characters`);
    return true;
  });
  await assert.rejects(loadKeySpecs([{ name: 'ci', role: 'admin', key_file: path.join(dir, 'none') }]), /admin\.keys\.0\.key_file: .*none \(key "ci"\) does not exist or is empty/);
});

test('admin.keys in the config: one of key_file / key_sha256, a role, unique names other than "default"', () => {
  const sha = 'a'.repeat(64);
  const config = validateConfig({ admin: { keys: [{ name: 'ops', role: 'admin', key_sha256: sha }] } });
  assert.deepEqual(config.admin.keys, [{ name: 'ops', role: 'admin', key_sha256: sha }]);
  assert.equal(config.admin.audit_size, 200);
  const problems = (input: unknown): string[] => {
    try {
      validateConfig({ admin: { keys: input } });
    } catch (error) {
      return (error as { problems: string[] }).problems;
    }
    return [];
  };
  assert.match(problems([{ name: 'ops', role: 'admin' }]).join('\n'), /admin\.keys\.0: give exactly one of key_file or key_sha256/);
  assert.match(problems([{ name: 'ops', role: 'admin', key_file: '/k', key_sha256: sha }]).join('\n'), /give exactly one of key_file or key_sha256/);
  assert.match(problems([{ name: 'ops', role: 'root', key_sha256: sha }]).join('\n'), /admin\.keys\.0\.role: expected "admin" or "read-only", got "root"/);
  assert.match(problems([{ name: 'default', role: 'admin', key_sha256: sha }]).join('\n'), /admin\.keys\.0\.name: "default" is the name of the admin\.api_key/);
  assert.match(
    problems([
      { name: 'ops', role: 'admin', key_sha256: sha },
      { name: 'ops', role: 'read-only', key_sha256: sha },
    ]).join('\n'),
    /admin\.keys\.1\.name: "ops" is used by another key/,
  );
  assert.match(problems([{ name: 'ops', role: 'admin', key_sha256: 'xyz' }]).join('\n'), /key_sha256: expected the key's SHA-256 as 64 hex digits/);
});

/** runCommand with real credential stores, a real broker and a pino logger whose lines are kept. */
async function setUp(t: TestContext, size = 10) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const store = new LevelStore(path.join(await tempDir(t), 'kv'));
  await store.open();
  const broker = new EventBroker({ inboxSize: 64, maxWaiters: 64, logger: silentLogger(), metrics: new Registry() });
  broker.start();
  t.after(async () => {
    await broker.stop(1000);
    await store.close();
  });
  const audit = new AuditLog(new AuditRing(size), logger);
  // Only what the commands below use.
  // devices.remove forgets the fleet record too; these devices never connected, so there is none.
  const fleet = { forget: async () => false };
  const consoleViews = { history: new DeviceHistory(), telemetry: new TelemetryRings() };
  const services = { broker, audit, fleet, console: consoleViews, credentials: deviceCredentials(store), serviceAccounts: serviceCredentials(store) } as unknown as CommandServices;
  const caller = (name: string, role: 'admin' | 'read-only'): CommandCaller => ({ id: `conn-${name}`, actor: { name, role }, via: 'ws' });
  const run = (who: CommandCaller, cmd: string, args: Record<string, unknown>) => runCommand(cmd, args, who, services, 'json');
  return { lines: () => lines.filter((line) => line.audit === true), audit, run, caller };
}

test('changing commands are audited with actor, target and result; read-only keys read but are refused changes, and the refusal is audited', async (t) => {
  const { lines, audit, run, caller } = await setUp(t);
  const ops = caller('ops', 'admin');
  const grafana = caller('grafana', 'read-only');

  const added = (await run(ops, 'devices.add', { uid: 'dev-1', password: 'secret-password-1' })) as { password: string };
  assert.equal(added.password, 'secret-password-1');
  assert.deepEqual(await run(grafana, 'service-accounts.list', {}), { accounts: [] });
  await assert.rejects(run(grafana, 'devices.remove', { uid: 'dev-1' }), (error: Error) => {
    assert.ok(hasCode(error, 'FORBIDDEN'));
    assert.equal(error.message, 'devices.remove changes something; the key "grafana" is read-only (a key with role "admin" may)');
    return true;
  });
  await assert.rejects(run(ops, 'devices.remove', { uid: 'dev-2' }), (error: Error) => hasCode(error, 'NOT_FOUND'));
  await assert.rejects(run(ops, 'devices.add', { uid: 'a/b' }), (error: Error) => hasCode(error, 'INVALID_ARGUMENT'));
  assert.deepEqual(await run(ops, 'devices.remove', { uid: 'dev-1' }), { uid: 'dev-1', removed: true, password: true, record: false });

  const expected = [
    { actor: 'ops', command: 'devices.add', target: 'dev-1', result: 'ok' },
    { actor: 'grafana', command: 'devices.remove', target: 'dev-1', result: 'FORBIDDEN' },
    { actor: 'ops', command: 'devices.remove', target: 'dev-2', result: 'NOT_FOUND' },
    { actor: 'ops', command: 'devices.add', result: 'INVALID_ARGUMENT' },
    { actor: 'ops', command: 'devices.remove', target: 'dev-1', result: 'ok' },
  ];
  // Reads (service-accounts.list) are not audited.
  assert.deepEqual(
    lines().map(({ actor, command, target, result, via, level, msg }) => ({ level, msg, via, actor, command, ...(target !== undefined ? { target } : {}), result })),
    expected.map((e) => ({ level: 30, msg: 'admin action', via: 'ws', ...e })),
  );
  assert.deepEqual(
    audit.list().map(({ actor, command, target, result }) => ({ actor, command, ...(target !== undefined ? { target } : {}), result })),
    expected,
  );
  // A read-only key can ask for the audit itself; the limit keeps the newest.
  const listed = (await run(grafana, 'audit.list', { limit: 2 })) as { entries: { command: string; result: string }[] };
  assert.deepEqual(
    listed.entries.map((e) => e.result),
    ['INVALID_ARGUMENT', 'ok'],
  );
  // Never a password in the log.
  assert.ok(!JSON.stringify(lines()).includes('secret-password-1'));
});

test('every command is either a read or a change, and the reads are the ones README "Admin keys and roles" lists', () => {
  const reads = Object.keys(COMMANDS).filter((name) => !commandChanges(name));
  assert.deepEqual(reads.sort(), [
    'acl.rules.list',
    'audit.list',
    'campaigns.list',
    'campaigns.show',
    'devices.detail',
    'devices.get',
    'devices.list',
    'devices.revocations',
    'devices.search',
    'events.subscribe',
    'events.unsubscribe',
    'groups.list',
    'health.get',
    'images.list',
    'ingest.status',
    'ping',
    'service-accounts.list',
  ]);
  assert.equal(commandChanges('no.such.command'), false);
});

test('the README section `nucleon service-accounts --help` points to exists, and documents the client-id rule', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const usage = serviceAccountsUsage();
  const named = [...usage.matchAll(/README "([^"]+)"/g)].map((match) => match[1]);
  assert.ok(named.length > 0, `no README section named in: ${usage}`);
  for (const section of named) {
    const heading = new RegExp(`^#{2,4} ${section?.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm');
    assert.match(readme, heading, `README has no section "${section}"`);
  }
  const body = readme.slice(readme.indexOf('\n### Service accounts\n'));
  assert.match(body.slice(0, body.indexOf('\n### ', 5)), /client id\s+`svc:<name>`, or `svc:<name>:<anything>`/);
});
