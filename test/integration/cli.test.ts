import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cliPath, isolatedConfig, repoRoot, runCli, startProcess, tempDir, waitFor } from '../helpers/index.js';

// These run the built binary (dist/cli.js); `npm test` builds before testing.

test('--version prints the package version, --help lists the commands', () => {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const version = runCli(['--version']);
  assert.equal(version.code, 0);
  assert.equal(version.stdout.trim(), pkg.version);
  const help = runCli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: nucleon <command>/);
  assert.match(help.stdout, /serve\s+run the broker/);
  const serveHelp = runCli(['serve', '--help']);
  assert.equal(serveHelp.code, 0);
  assert.match(serveHelp.stdout, /nucleon serve \[--config <file>\]/);
});

test('an unknown command or option exits 2 with a one-line reason', () => {
  const unknown = runCli(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr, 'nucleon: unknown command "frobnicate" (see nucleon --help)\n');
  const badOption = runCli(['serve', '--colour']);
  assert.equal(badOption.code, 2);
  assert.match(badOption.stderr, /^nucleon: Unknown option '--colour'/);
});

test('serve with a bad config exits 2 naming the key path, one line per problem', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.toml');
  await writeFile(file, '[mqtt.tls]\nport = "abc"\n[admin]\nfoo = 1\n');
  const result = runCli(['serve', '--config', file]);
  assert.equal(result.code, 2);
  assert.equal(
    result.stderr,
    'nucleon: config.toml: mqtt.tls.port: expected an integer 0..65535, got "abc"\nnucleon: config.toml: admin.foo: unknown key\n',
  );
  const missing = runCli(['serve', '--config', path.join(dir, 'missing.toml')]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr, `nucleon: ${path.join(dir, 'missing.toml')}: file not found\n`);
});

test('serve starts, logs each runner, and exits 0 within 5 s of SIGINT, and of SIGTERM', async (t) => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const dir = await tempDir(t);
    const file = path.join(dir, 'config.toml');
    await writeFile(file, isolatedConfig(dir));
    const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', file]);
    await waitFor(() => proc.output().includes('"msg":"nucleon started"'), 'nucleon started', 20_000);
    const sentAt = Date.now();
    proc.child.kill(signal);
    const exit = await proc.exited;
    assert.equal(exit.code, 0, proc.output());
    assert.ok(Date.now() - sentAt < 5000, `took ${Date.now() - sentAt} ms`);
    assert.match(proc.output(), /"msg":"nucleon stopped"/);
  }
});
