// The real binary (dist/cli.js; `npm test` builds first) against a running
// `nucleon serve` with the real OTA runner: upload -> link -> list, and the
// failures a user meets (wrong key, unreachable server, unknown image).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import mqtt from 'mqtt';
import { AdminClient } from '../../src/cli/admin-client.js';
import { cliPath, freePort, isolatedConfig, runCli, startProcess, tempDir, waitFor } from '../helpers/index.js';

interface Server {
  dir: string;
  config: string;
  adminPort: number;
  mqttPort: number;
}

/** Starts `nucleon serve` with its own store and certs; the admin API key is generated on first start. */
async function startServer(t: TestContext): Promise<Server> {
  const dir = await tempDir(t, 'nucleon-admin-cli-');
  const adminPort = await freePort();
  const mqttPort = await freePort();
  const config = path.join(dir, 'config.toml');
  await writeFile(config, isolatedConfig(dir, { mqtt: mqttPort, admin: adminPort }));
  // No key in the environment: the server must generate one and the CLI must find it through --config.
  const env = { NUCLEON_ADMIN_API_KEY: '' };
  const server = startProcess(t, process.execPath, [cliPath, 'serve', '--config', config], { env });
  await waitFor(() => server.output().includes('"msg":"nucleon started"'), 'nucleon started', 30_000);
  assert.match(server.output(), /"msg":"generated an admin API key"/);
  return { dir, config, adminPort, mqttPort };
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(args, { env: { NUCLEON_ADMIN_API_KEY: '', NUCLEON_ADMIN_URL: '', ...env }, timeoutMs: 60_000 });
}

test('nucleon ota add -> link -> list, groups, remove: tables by default, --json for scripts', async (t) => {
  const server = await startServer(t);
  const keyFile = path.join(server.dir, 'data', 'admin-api-key');
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
  const firmware = path.join(server.dir, 'app_update.bin');
  const bytes = randomBytes(3 * 1024 * 1024 + 17);
  await writeFile(firmware, bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const withConfig = ['--config', server.config];

  const add = cli(['ota', 'add', firmware, '--version', '1.2.3-4-g965b9df', '--description', 'field test', ...withConfig]);
  assert.equal(add.stderr, '');
  assert.equal(add.code, 0);
  assert.equal(add.stdout, `added: image 1.2.3-4-g965b9df (primary, 3.0 MiB, sha256 ${sha256})\n`);

  const link = cli(['ota', 'link', '--device', '352656100000001', '--group', 'field', '--image', '1.2.3-4-g965b9df', ...withConfig]);
  assert.equal(link.stderr, '');
  assert.equal(link.code, 0);
  assert.match(link.stdout, /^linked: device 352656100000001 in group field → image 1\.2\.3-4-g965b9df/);

  const list = cli(['ota', 'list', '--json', ...withConfig]);
  assert.equal(list.code, 0, list.stderr);
  const images = JSON.parse(list.stdout) as { id: string; size: number; sha256: string; imageType: string; description?: string }[];
  assert.deepEqual(
    images.map(({ id, size, sha256: hash, imageType, description }) => ({ id, size, sha256: hash, imageType, description })),
    [{ id: '1.2.3-4-g965b9df', size: bytes.length, sha256, imageType: 'primary', description: 'field test' }],
  );
  const table = cli(['ota', 'list', ...withConfig]);
  assert.equal(table.code, 0, table.stderr);
  const [header, row, ...more] = table.stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^ID\s+TYPE\s+SIZE\s+ADDED\s+SHA256\s+DESCRIPTION$/);
  assert.match(row ?? '', new RegExp(`^1\\.2\\.3-4-g965b9df\\s+primary\\s+3\\.0 MiB\\s+\\S+\\s+${sha256.slice(0, 12)}\\s+field test$`));
  assert.deepEqual(more, []);

  // The URL and key from the environment instead of --config.
  const key = (await readFile(keyFile, 'utf8')).trim();
  const groups = cli(['groups', '--json'], { NUCLEON_ADMIN_URL: `http://127.0.0.1:${server.adminPort}`, NUCLEON_ADMIN_API_KEY: key });
  assert.equal(groups.code, 0, groups.stderr);
  assert.deepEqual(JSON.parse(groups.stdout), [{ name: 'field', imageId: '1.2.3-4-g965b9df', devices: ['352656100000001'] }]);
  const groupTable = cli(['groups', '--url', `ws://127.0.0.1:${server.adminPort}/ws`, '--api-key', key]);
  assert.equal(groupTable.code, 0, groupTable.stderr);
  assert.equal(groupTable.stdout, 'GROUP  IMAGE             DEVICES  MEMBERS\nfield  1.2.3-4-g965b9df  1        352656100000001\n');

  // A device with a password (set through the admin endpoint while the server runs) connects over TLS.
  const admin = await AdminClient.connect(`ws://127.0.0.1:${server.adminPort}/ws`, key);
  await admin.request('devices.add', { uid: '352656100000001', password: 'cli-test-password' });
  admin.close();
  const device = await mqtt.connectAsync(`mqtts://localhost:${server.mqttPort}`, {
    ca: await readFile(path.join(server.dir, 'certs', 'ca.crt')),
    clientId: '352656100000001',
    username: '352656100000001',
    password: 'cli-test-password',
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  t.after(() => device.endAsync(true));
  const fleet = await waitFor(() => {
    const result = cli(['devices', '--json', ...withConfig]);
    const list = result.code === 0 ? (JSON.parse(result.stdout) as { uid: string; online: boolean; authMethod?: string }[]) : [];
    return list.find((d) => d.uid === '352656100000001' && d.online);
  }, 'the device online in nucleon devices');
  assert.equal(fleet.authMethod, 'password');
  const fleetTable = cli(['devices', 'list', '--online', ...withConfig]);
  assert.equal(fleetTable.code, 0, fleetTable.stderr);
  assert.match(fleetTable.stdout, /^UID\s+STATE\s+LAST SEEN\s+ADDRESS\s+FIRMWARE\s+OTA\n352656100000001\s+online\s/);
  await device.endAsync();
  await waitFor(() => cli(['devices', 'list', '--offline', ...withConfig]).stdout.includes('352656100000001'), 'the device offline');

  const unlink = cli(['ota', 'unlink', '--device', '352656100000001', ...withConfig]);
  assert.equal(unlink.code, 0, unlink.stderr);
  assert.equal(unlink.stdout, 'unlinked: device 352656100000001\n');
  const remove = cli(['ota', 'remove', '1.2.3-4-g965b9df', ...withConfig]);
  assert.equal(remove.code, 0, remove.stderr);
  assert.equal(remove.stdout, 'removed: image 1.2.3-4-g965b9df\n');
  assert.deepEqual(JSON.parse(cli(['ota', 'list', '--json', ...withConfig]).stdout), []);
});

test('CLI errors: unknown image, wrong key, unreachable server, bad usage: non-zero exit and one clear line', async (t) => {
  const server = await startServer(t);
  const withConfig = ['--config', server.config];

  const unknown = cli(['ota', 'link', '--group', 'field', '--image', '9.9.9-9-g0000000', ...withConfig]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /^nucleon: .*9\.9\.9-9-g0000000.* \[NOT_FOUND\]\n$/);
  const removeUnknown = cli(['ota', 'remove', '9.9.9-9-g0000000', ...withConfig]);
  assert.equal(removeUnknown.code, 1);
  assert.match(removeUnknown.stderr, /\[NOT_FOUND\]\n$/);

  const wrongKey = cli(['ota', 'list', '--url', `ws://127.0.0.1:${server.adminPort}/ws`, '--api-key', 'definitely-not-the-key']);
  assert.equal(wrongKey.code, 1);
  assert.equal(wrongKey.stderr, `nucleon: the admin endpoint at ws://127.0.0.1:${server.adminPort}/ws refused the API key [UNAUTHORIZED]\n`);

  const closedPort = await freePort();
  const unreachable = cli(['groups', '--url', `ws://127.0.0.1:${closedPort}/ws`, '--api-key', 'whatever-key']);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, new RegExp(`^nucleon: cannot reach the admin endpoint at ws://127\\.0\\.0\\.1:${closedPort}/ws: connection refused`));

  const noVersion = cli(['ota', 'add', path.join(server.dir, 'x.bin'), ...withConfig]);
  assert.equal(noVersion.code, 2);
  assert.equal(noVersion.stderr, 'nucleon ota: ota add needs --version <id>, e.g. --version 1.2.3-4-g965b9df (see nucleon ota --help)\n');
  const badVersion = cli(['ota', 'add', path.join(server.dir, 'x.bin'), '--version', '1.2', ...withConfig]);
  assert.equal(badVersion.code, 2);
  const missingFile = cli(['ota', 'add', path.join(server.dir, 'missing.bin'), '--version', '1.0.0-1-gabcdef0', ...withConfig]);
  assert.equal(missingFile.code, 1);
  assert.equal(missingFile.stderr, `nucleon: cannot read ${path.join(server.dir, 'missing.bin')}: no such file [INVALID_ARGUMENT]\n`);
  // Run from a folder without a config.toml, so there is nowhere to find a key.
  const noKey = runCli(['ota', 'list'], { cwd: await tempDir(t), env: { NUCLEON_ADMIN_API_KEY: '', NUCLEON_ADMIN_URL: '' } });
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /^nucleon: no API key/);
  const help = cli(['ota', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /nucleon ota <command>/);
});
