import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/errors.js';
import { loadConfigFile, validateConfig } from '../../src/config/index.js';
import { repoRoot, tempDir } from '../helpers/index.js';

async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'CONFIG_INVALID');
    return error.problems;
  }
  assert.fail('expected the config to be refused');
}

test('the committed config.toml is valid and equals the defaults', async () => {
  const { config } = await loadConfigFile(path.join(repoRoot, 'config.toml'), {});
  const empty = validateConfig({}, { baseDir: repoRoot });
  assert.deepEqual(config, empty);
  assert.equal(config.mqtt.tls.port, 8883);
  assert.equal(config.mqtt.tcp.enabled, false);
  assert.equal(config.mqtt.tcp.host, '127.0.0.1');
  assert.equal(config.admin.host, '127.0.0.1');
  assert.equal(config.store.path, path.join(repoRoot, 'data'));
  assert.equal(config.influx, undefined);
  assert.ok(Object.isFrozen(config.mqtt.limits));
});

test('a wrong type names the file, the key path and the problem', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.toml');
  await writeFile(file, '[mqtt.tls]\nport = "abc"\n');
  assert.deepEqual(await problemsOf(loadConfigFile(file, {})), ['config.toml: mqtt.tls.port: expected an integer 0..65535, got "abc"']);
});

test('every problem is reported at once, unknown keys included', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'nucleon.toml');
  await writeFile(
    file,
    ['[log]', 'level = "loud"', '[mqtt.limits]', 'max_packet_size = 12', 'colour = "red"', '[admin]', 'port = 70000', '[bogus]', 'x = 1'].join('\n'),
  );
  assert.deepEqual((await problemsOf(loadConfigFile(file, {}))).sort(), [
    'nucleon.toml: admin.port: expected an integer 0..65535, got 70000',
    'nucleon.toml: bogus: unknown key',
    'nucleon.toml: log.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"',
    'nucleon.toml: mqtt.limits.colour: unknown key',
    'nucleon.toml: mqtt.limits.max_packet_size: expected an integer 1024..268435455, got 12',
  ]);
});

test('a missing file and a TOML syntax error are clear', async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, 'nope.toml');
  assert.deepEqual(await problemsOf(loadConfigFile(missing, {})), [`${missing}: file not found`]);
  const broken = path.join(dir, 'broken.toml');
  await writeFile(broken, '[mqtt\nport = 1\n');
  const [problem] = await problemsOf(loadConfigFile(broken, {}));
  assert.match(problem ?? '', /^broken\.toml: line 1, column \d+: /);
});

test('a present [influx] section requires its keys', async () => {
  const problems = await problemsOf(Promise.resolve().then(() => validateConfig({ influx: { org: 'o' } }, { label: 'config.toml' })));
  assert.deepEqual(problems.sort(), ['config.toml: influx.bucket: required key is missing', 'config.toml: influx.url: required key is missing']);
});

test('secrets come from the environment', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.toml');
  await writeFile(file, '[influx]\nurl = "http://127.0.0.1:8086"\nbucket = "b"\n');
  const env = { NUCLEON_ADMIN_API_KEY: 'k'.repeat(32), NUCLEON_INFLUX_TOKEN: 'tok', NUCLEON_REDIS_URL: 'redis://127.0.0.1:1', LOG_LEVEL: 'debug' };
  const { config } = await loadConfigFile(file, env);
  assert.equal(config.admin.api_key, 'k'.repeat(32));
  assert.equal(config.influx?.token, 'tok');
  assert.equal(config.cluster?.redis_url, 'redis://127.0.0.1:1');
  assert.equal(config.log.level, 'debug');
  // An influx token alone does not switch Influx on.
  const { config: plain } = await loadConfigFile(path.join(repoRoot, 'config.toml'), { NUCLEON_INFLUX_TOKEN: 'tok' });
  assert.equal(plain.influx, undefined);
  // A bad value from the environment is reported against its key.
  assert.deepEqual(await problemsOf(loadConfigFile(file, { LOG_LEVEL: 'chatty' })), [
    'config.toml: log.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "chatty"',
  ]);
});

test('relative paths resolve against the config file folder', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.toml');
  await writeFile(file, '[store]\npath = "state"\n[certs]\ndir = "/etc/nucleon/certs"\n');
  const { config } = await loadConfigFile(file, {});
  assert.equal(config.store.path, path.join(dir, 'state'));
  assert.equal(config.certs.dir, '/etc/nucleon/certs');
});
