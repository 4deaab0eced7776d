// docs/nucleon.service: systemd's own checker accepts it (an unknown or
// misspelt key is only a warning to systemd, so any output fails the test),
// its sandbox rates OK, and it runs deploy/config.toml with the state
// directories that config names writable and nothing else.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../../src/config/index.js';
import { repoRoot, requireBinary, runToExit } from '../helpers/index.js';

const unitFile = path.join(repoRoot, 'docs/nucleon.service');

/** `Key=value` lines per section; a key may repeat. */
function readUnit(): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of readFileSync(unitFile, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1] ?? '', current);
      continue;
    }
    const at = line.indexOf('=');
    if (!current || at < 0) throw new Error(`nucleon.service: unexpected line ${JSON.stringify(line)}`);
    const key = line.slice(0, at);
    current.set(key, [...(current.get(key) ?? []), line.slice(at + 1)]);
  }
  return sections;
}

function one(section: Map<string, string[]> | undefined, key: string): string {
  const values = section?.get(key) ?? [];
  assert.equal(values.length, 1, `${key} set once`);
  return values[0] ?? '';
}

test('the unit runs deploy/config.toml as its own user, sandboxed, writing only where the config keeps its state, restarted on failure', async () => {
  const unit = readUnit();
  const service = unit.get('Service');
  const user = one(service, 'User');
  assert.ok(user !== 'root' && user !== '0', 'a dedicated user');
  assert.equal(one(service, 'Group'), user);
  assert.equal(one(service, 'NoNewPrivileges'), 'yes');
  assert.equal(one(service, 'ProtectSystem'), 'strict', 'the whole file system read-only but ReadWritePaths');
  assert.equal(one(service, 'Restart'), 'on-failure');
  assert.equal(one(service, 'RestartPreventExitStatus'), '2', 'a config error (exit 2) is not retried in a loop');
  assert.equal(one(service, 'CapabilityBoundingSet'), '');

  const exec = one(service, 'ExecStart').split(/\s+/);
  assert.deepEqual(exec.slice(1, 3), ['/opt/nucleon/dist/bin.cjs', 'serve']);
  assert.equal(exec[exec.indexOf('--config') + 1], '/etc/nucleon/config.toml');

  // The installed config is deploy/config.toml: its state must be writable, and nothing beyond /var/lib/nucleon.
  const { config } = await loadConfigFile(path.join(repoRoot, 'deploy/config.toml'), {});
  const writable = (service?.get('ReadWritePaths') ?? []).flatMap((value) => value.split(/\s+/));
  assert.deepEqual(writable, ['/var/lib/nucleon']);
  assert.equal(one(service, 'StateDirectory'), 'nucleon', 'systemd makes /var/lib/nucleon, owned by the user');
  for (const dir of [config.store.path, config.certs.dir]) {
    assert.ok(writable.some((root) => dir === root || dir.startsWith(`${root}/`)), `${dir} is writable`);
  }
  // A stop may take twice broker.stop_timeout_ms (README "Health, logs and shutdown") before systemd kills.
  assert.ok(Number(/^(\d+)s$/.exec(one(service, 'TimeoutStopSec'))?.[1]) * 1000 > 2 * config.broker.stop_timeout_ms);
  assert.equal(one(unit.get('Install'), 'WantedBy'), 'multi-user.target');
});

test('systemd-analyze verify prints nothing for the unit, and its offline security review rates it OK', async (t) => {
  const analyze = requireBinary(t, 'systemd-analyze', 'systemd');
  if (!analyze) return;
  const verify = await runToExit(analyze, ['verify', unitFile]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(verify.stdout + verify.stderr, '', 'no warning (systemd only warns about unknown keys)');

  const security = await runToExit(analyze, ['security', '--offline=yes', '--no-pager', unitFile]);
  assert.equal(security.code, 0, security.stderr);
  const level = /Overall exposure level for nucleon\.service: (\d+(?:\.\d+)?) (\w+)/.exec(security.stdout);
  assert.ok(level, security.stdout.slice(-500));
  assert.equal(level[2], 'OK', `exposure ${level[1]}`);
});
