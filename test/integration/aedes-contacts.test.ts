// The contacts with aedes' internals (src/mqtt/aedes/): package.json pins
// their packages exactly, the lock file installs the versions each contact was
// written against, and a start against a dependency whose internals moved
// fails before any listener opens, naming the package and its version.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { CONTACTS, installedVersion } from '../../src/mqtt/aedes/index.js';
import { freePort, repoRoot, tempDir } from '../helpers/index.js';

const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };

test('every contact: the lock file installs the version it was written against, and direct dependencies are pinned exactly', () => {
  for (const contact of CONTACTS) {
    assert.equal(lock.packages[`node_modules/${contact.dependency}`]?.version, contact.verifiedWith, `${contact.file}: ${contact.dependency} in package-lock.json`);
    assert.equal(installedVersion(contact.dependency), contact.verifiedWith, `${contact.file}: ${contact.dependency} installed`);
    const spec = pkg.dependencies[contact.dependency];
    if (spec !== undefined) assert.equal(spec, contact.verifiedWith, `package.json pins ${contact.dependency} exactly`);
  }
});

/** Runs a start in a fresh process after `sabotage` (code run before Nucleon is imported). */
function startWith(sabotage: string, port: number, dir: string): { code: number | null; output: string } {
  const script = `
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(path.join(repoRoot, 'package.json'))});
    const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
    ${sabotage}
    const { createNucleon } = await import(${JSON.stringify(path.join(repoRoot, 'src/index.ts'))});
    const { silentLogger } = await import(${JSON.stringify(path.join(repoRoot, 'src/logger.ts'))});
    const nucleon = createNucleon({
      store: { path: ${JSON.stringify(path.join(dir, 'data'))} },
      certs: { dir: ${JSON.stringify(path.join(dir, 'certs'))} },
      mqtt: { tls: { enabled: false }, tcp: { enabled: true, host: '127.0.0.1', port: ${port} } },
      ota: { enabled: false },
      admin: { enabled: false },
    }, { logger: silentLogger() });
    try {
      await nucleon.start();
      console.log('STARTED');
      await nucleon.stop();
    } catch (error) {
      console.log('REFUSED ' + error.code + ' ' + error.message);
    }
  `;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  return { code: run.status, output: `${run.stdout}${run.stderr}` };
}

test('a start against a dependency whose internals moved fails before listening, naming the package and version', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  // mqtt-packet without the method strict-packets.ts wraps (as if an upgrade renamed it).
  const broken = startWith(`delete require(parserPath).prototype._parseMessageId;`, port, dir);
  assert.match(broken.output, /REFUSED DEPENDENCY_MISMATCH mqtt-packet@9\.0\.2: .*_parseMessageId/, broken.output);
  // Nothing was left listening.
  const refused = await new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
  assert.equal(refused, true, 'the MQTT port is not open');
  // The same start with the dependency intact works.
  assert.match(startWith('', port, dir).output, /STARTED/);
});
