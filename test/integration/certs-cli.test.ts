import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { commonNameOf } from '../../src/certs/index.js';
import { runCli, tempDir } from '../helpers/index.js';

// Runs the built binary (dist/cli.js): `npm run build` first.

test('nucleon certs init, then certs device <uid> --out, with one-line errors', async (t) => {
  const dir = await tempDir(t);
  const config = path.join(dir, 'config.toml');
  await writeFile(config, `[certs]\ndir = "certs"\n`);

  const early = runCli(['certs', 'device', 'dev-1', '--config', config]);
  assert.equal(early.code, 1);
  assert.equal(early.stderr, `nucleon: ${path.join(dir, 'certs', 'ca.crt')} not found: run "nucleon certs init" (or start the server once) first\n`);

  const init = runCli(['certs', 'init', '--config', config]);
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout, new RegExp(`CA: +${path.join(dir, 'certs', 'ca.crt')}`));

  const again = runCli(['certs', 'init', '--config', config]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^nucleon: .* already holds ca\.crt, ca\.key, server\.crt, server\.key; use --force to replace them/);
  assert.equal(runCli(['certs', 'init', '--config', config, '--force']).code, 0);

  const device = runCli(['certs', 'device', 'dev-1', '--config', config, '--out', path.join(dir, 'flash')]);
  assert.equal(device.code, 0, device.stderr);
  assert.equal(commonNameOf(await readFile(path.join(dir, 'flash', 'dev-1.crt'), 'utf8')), 'dev-1');
  assert.equal(await readFile(path.join(dir, 'flash', 'ca.crt'), 'utf8'), await readFile(path.join(dir, 'certs', 'ca.crt'), 'utf8'));

  const usage = runCli(['certs', 'device', '--config', config]);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, 'nucleon: certs device takes exactly one <uid>\n');
  const badUid = runCli(['certs', 'device', 'a b', '--config', config]);
  assert.equal(badUid.code, 1);
  assert.match(badUid.stderr, /^nucleon: invalid device uid "a b"/);
});

test('nucleon certs device refuses to replace an existing key without --force, naming the files', async (t) => {
  const dir = await tempDir(t);
  const config = path.join(dir, 'config.toml');
  await writeFile(config, `[certs]\ndir = "certs"\n`);
  assert.equal(runCli(['certs', 'init', '--config', config]).code, 0);
  const out = path.join(dir, 'flash');
  assert.equal(runCli(['certs', 'device', 'dev-1', '--config', config, '--out', out]).code, 0);
  const key = await readFile(path.join(out, 'dev-1.key'), 'utf8');

  const again = runCli(['certs', 'device', 'dev-1', '--config', config, '--out', out]);
  assert.equal(again.code, 1);
  assert.equal(again.stdout, '');
  assert.equal(again.stderr, `nucleon: ${out} already holds dev-1.key and dev-1.crt for device dev-1; use --force to replace them (a device still using the old key must then be flashed again)\n`);
  assert.equal(await readFile(path.join(out, 'dev-1.key'), 'utf8'), key, 'the key on the device still matches');

  const forced = runCli(['certs', 'device', 'dev-1', '--config', config, '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(await readFile(path.join(out, 'dev-1.key'), 'utf8'), key);
  assert.equal(commonNameOf(await readFile(path.join(out, 'dev-1.crt'), 'utf8')), 'dev-1');
});
